// A compact latency histogram: logarithmic buckets 1 % wide from 1 µs to 100 s, counts in one
// Uint32Array (about 7 KiB however many samples are recorded), so a client process records
// millions of latencies without keeping any of them. Children send `toJSON()` (only the non-empty
// buckets) over IPC and the coordinator merges them.

const GROWTH = 1.01;
const K = 1 / Math.log(GROWTH);
const SIZE = Math.ceil(Math.log(1e8) * K) + 2;

/** The serialisable form of a Histogram: non-empty buckets as [index, count] pairs. */
export interface HistogramJson {
  total: number;
  min: number;
  max: number;
  sum: number;
  buckets: Array<[number, number]>;
}

/** Quantiles of a histogram, in milliseconds. */
export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export class Histogram {
  private readonly counts = new Uint32Array(SIZE);
  total = 0;
  min = Number.POSITIVE_INFINITY;
  max = 0;
  sum = 0;

  /** Records one value in microseconds (negative values count as 0). */
  record(us: number): void {
    const v = us > 0 ? us : 0;
    const i = v < 1 ? 0 : Math.min(SIZE - 1, 1 + Math.floor(Math.log(v) * K));
    this.counts[i]!++;
    this.total++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.max = 0;
    this.sum = 0;
  }

  toJSON(): HistogramJson {
    const buckets: Array<[number, number]> = [];
    for (let i = 0; i < SIZE; i++) {
      const n = this.counts[i]!;
      if (n !== 0) buckets.push([i, n]);
    }
    return { total: this.total, min: this.total ? this.min : 0, max: this.max, sum: this.sum, buckets };
  }

  /** Adds another histogram (or its JSON form) into this one. */
  merge(h: Histogram | HistogramJson): this {
    const json = h instanceof Histogram ? h.toJSON() : h;
    for (const [i, n] of json.buckets) {
      if (i >= 0 && i < SIZE) this.counts[i]! += n;
    }
    this.total += json.total;
    this.sum += json.sum;
    if (json.total > 0) {
      this.min = Math.min(this.min, json.min);
      this.max = Math.max(this.max, json.max);
    }
    return this;
  }

  /** The value (µs) at quantile q (0..1): the geometric middle of its bucket, within 0.5 %. */
  quantile(q: number): number {
    if (this.total === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < SIZE; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        if (i === 0) return Math.min(this.max, 0.5);
        const mid = Math.exp((i - 0.5) / K);
        return Math.min(this.max, Math.max(this.min, mid));
      }
    }
    return this.max;
  }

  /** Count, mean and quantiles in milliseconds (rounded to µs); zeros when empty. */
  summary(): LatencySummary {
    if (this.total === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
    const ms = (us: number) => Math.round(us) / 1000;
    return {
      count: this.total,
      mean: ms(this.sum / this.total),
      p50: ms(this.quantile(0.5)),
      p90: ms(this.quantile(0.9)),
      p99: ms(this.quantile(0.99)),
      max: ms(this.max),
    };
  }
}
