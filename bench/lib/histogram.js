// The latency histogram of `pylon bench` (src/cli/bench/histogram.ts), the one implementation:
// logarithmic buckets 1 % wide, counts in one array, mergeable across processes.
export { Histogram } from '../../dist/cli/bench/histogram.js';
