// CPU-heavy work for the worker pool (group.slowCall): plain JavaScript that Node loads in a
// worker thread. Functions cannot cross threads, so they are named: this file + an export.

/** The n-th prime, the slow way. */
export function nthPrime(n) {
  let count = 0;
  for (let candidate = 2; ; candidate++) {
    let prime = true;
    for (let d = 2; d * d <= candidate; d++) {
      if (candidate % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime && ++count === n) return candidate;
  }
}
