// Summaries of repeated measurements and their formatting for the markdown tables.

export function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** { median, min, max, n } of the finite values. */
export function summarize(xs) {
  const s = xs.filter((x) => Number.isFinite(x));
  if (s.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
  return { median: median(s), min: Math.min(...s), max: Math.max(...s), n: s.length };
}

/** A number with about 3 significant digits and thousands separators. */
export function fmt(x) {
  if (!Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "median (min–max)". */
export function cell(s) {
  if (!s || s.n === 0) return '–';
  return `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
}

export function ratio(a, b) {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–';
  return `${a / b >= 10 ? (a / b).toFixed(1) : (a / b).toFixed(2)}×`;
}
