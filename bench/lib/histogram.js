// A compact latency histogram: logarithmic buckets 1 % wide over 1 µs .. 100 s, counts in one
// Uint32Array (8 KiB however many samples), so recording costs one log and one increment and a
// client process can record millions of latencies without keeping any of them.

const GROWTH = 1.01;
const K = 1 / Math.log(GROWTH);
const SIZE = Math.ceil(Math.log(1e8) * K) + 2;

export class Histogram {
  constructor() {
    this.counts = new Uint32Array(SIZE);
    this.total = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.max = 0;
    this.sum = 0;
  }

  /** Records one value in microseconds (negative values count as 0). */
  record(us) {
    const v = us > 0 ? us : 0;
    const i = v < 1 ? 0 : Math.min(SIZE - 1, 1 + Math.floor(Math.log(v) * K));
    this.counts[i]++;
    this.total++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  reset() {
    this.counts.fill(0);
    this.total = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.max = 0;
    this.sum = 0;
  }

  /** A plain object for IPC or JSON: the non-empty buckets as [index, count] pairs. */
  toJSON() {
    const buckets = [];
    for (let i = 0; i < SIZE; i++) if (this.counts[i] !== 0) buckets.push([i, this.counts[i]]);
    return { total: this.total, min: this.total ? this.min : 0, max: this.max, sum: this.sum, buckets };
  }

  /** Adds a histogram or its toJSON() form into this one. */
  merge(h) {
    const buckets = h instanceof Histogram ? h.toJSON().buckets : h.buckets;
    for (const [i, n] of buckets) this.counts[i] += n;
    this.total += h.total;
    this.sum += h.sum;
    if (h.total > 0) {
      this.min = Math.min(this.min, h.min);
      this.max = Math.max(this.max, h.max);
    }
    return this;
  }

  /** The value (µs) at quantile q (0..1): the geometric middle of its bucket, within 0.5 %. */
  quantile(q) {
    if (this.total === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < SIZE; i++) {
      seen += this.counts[i];
      if (seen >= rank) {
        if (i === 0) return Math.min(this.max, 0.5);
        const mid = Math.exp((i - 0.5) / K);
        return Math.min(this.max, Math.max(this.min, mid));
      }
    }
    return this.max;
  }

  mean() {
    return this.total ? this.sum / this.total : Number.NaN;
  }
}
