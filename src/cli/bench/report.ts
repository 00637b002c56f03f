// Text forms of a bench: the one-line progress and the final report.
import type { BenchLatency, BenchProgress, BenchReport } from './types.js';

const nf = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** An integer with thousands separators. */
export function int(n: number): string {
  return Number.isFinite(n) ? nf.format(Math.round(n)) : '-';
}

/** Milliseconds: 3 significant decimals under 10, 1 under 1000, none above. */
function ms(n: number): string {
  if (!Number.isFinite(n)) return '-';
  if (n < 10) return n.toFixed(2);
  if (n < 1000) return n.toFixed(1);
  return int(n);
}

function bytes(n: number | null): string {
  if (n === null) return 'n/a';
  const a = Math.abs(n);
  if (a >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (a >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (a >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${int(n)} B`;
}

function bar(done: number, total: number, width = 10): string {
  const f = total > 0 ? Math.max(0, Math.min(1, done / total)) : 0;
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}]`;
}

function counts(map: Record<string, number>): string {
  const entries = Object.entries(map).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k}: ${int(v)}`).join(', ');
}

/** One line of progress, e.g. `[#####.....] 52,000/100,000 connected  3,100/s  errors 0`. */
export function progressLine(p: BenchProgress): string {
  const errors = `errors ${int(p.errors)}`;
  switch (p.phase) {
    case 'starting':
      return `${bar(0, 1)} 0/${int(p.requested)} connected  starting client processes`;
    case 'connecting':
      return `${bar(p.connected + p.failed, p.requested)} ${int(p.connected)}/${int(p.requested)} connected  ${int(p.connectPerSecond)}/s  ${errors}`;
    case 'settling':
      return `${bar(1, 1)} ${int(p.connected)}/${int(p.requested)} connected  waiting for the server's stats  ${errors}`;
    case 'running':
      return `${bar(p.elapsed, p.duration)} ${p.workload} ${p.elapsed.toFixed(1)}/${p.duration} s  ${int(p.messages)} messages  ${int(p.messagesPerSecond)}/s  open ${int(p.open)}  ${errors}`;
    case 'draining':
      return `${bar(p.messages, p.expected ?? p.messages)} ${p.workload} draining  ${int(p.messages)}/${int(p.expected ?? 0)} received  ${errors}`;
    case 'closing':
      return `${bar(1, 1)} closing ${int(p.open)} connections  ${errors}`;
  }
}

function latencyRow(l: BenchLatency): string {
  return `p50 ${ms(l.p50)}  p90 ${ms(l.p90)}  p99 ${ms(l.p99)}  max ${ms(l.max)}  mean ${ms(l.mean)}`;
}

/** The report as a text table. */
export function formatReport(r: BenchReport): string {
  const o = r.options;
  const target = o.transport === 'ws' ? (o.ws ?? o.tcp) : o.tcp;
  const lines: string[] = [];
  const row = (label: string, text: string) => lines.push(`${label.padEnd(22)}${text}`);
  lines.push(
    `pylon bench: ${int(o.connections)} ${o.transport} connections to ${target}, ${o.workload} for ${o.duration} s` +
      ` (${r.clientProcesses} client process${r.clientProcesses === 1 ? '' : 'es'}, started ${r.startedAt})`,
  );
  lines.push('');
  const c = r.connect;
  row(
    'connect',
    `connected ${int(c.connected)}/${int(c.requested)}  failed ${int(c.failed)}  in ${c.seconds.toFixed(1)} s  ${int(c.perSecond)}/s`,
  );
  row('  connect+welcome ms', latencyRow(c));
  const w = r.workload;
  if (w.kind === 'idle') {
    row('workload', `idle, held ${w.seconds.toFixed(1)} s`);
  } else {
    const what = w.kind === 'echo' ? 'answers' : 'deliveries';
    row(
      'workload',
      `${w.kind}: ${int(w.messages)} ${what} in ${w.seconds.toFixed(1)} s  ${int(w.perSecond)}/s`,
    );
    row('  latency ms', latencyRow(w.latency));
    if (w.pushes !== null) {
      row(
        '  pushes',
        `sent ${int(w.pushes.sent)}  accepted ${int(w.pushes.accepted)}  failed ${int(w.pushes.failed)}` +
          (w.pushes.behind > 0 ? `  not sent (rate not kept) ${int(w.pushes.behind)}` : ''),
      );
    }
    if (w.expected !== null) {
      row(
        '  delivery',
        `expected ${int(w.expected)}  received ${int(w.messages)}  missing ${int(w.missing ?? 0)}  duplicates ${int(w.duplicates)}` +
          (w.stale > 0 ? `  stale ${int(w.stale)}` : ''),
      );
    }
  }
  const e = r.errors;
  row(
    'errors',
    `connect ${int(e.connect)}  closed ${int(e.closed)}  timeouts ${int(e.timeouts)}` +
      `  request errors ${int(e.requestErrors)}  admin ${int(e.admin)}`,
  );
  if (e.connect > 0) row('  connect failures', counts(e.connectReasons));
  row('  kicked', counts(e.kicked));
  const s = r.server;
  if (s === null) {
    row('server', 'n/a (no admin API given)');
  } else {
    row(
      'server',
      `nodes ${s.nodes === null ? 'n/a' : int(s.nodes)}  connections ${s.connections === null ? 'n/a' : int(s.connections)}` +
        (s.settled ? '' : ' (not settled)'),
    );
    if (s.rssBefore !== null || s.rssAfter !== null) {
      row('  rss', `${bytes(s.rssBefore)} -> ${bytes(s.rssAfter)}  (end ${bytes(s.rssEnd)})`);
      row('  heap used', `${bytes(s.heapBefore)} -> ${bytes(s.heapAfter)}  (end ${bytes(s.heapEnd)})`);
    }
    const per = s.bytesPerConnection;
    row(
      '  per connection',
      per.rss === null && per.heap === null
        ? 'n/a (the server does not report process memory)'
        : `rss ${per.rss === null ? 'n/a' : `${int(per.rss)} B`}  heap ${per.heap === null ? 'n/a' : `${int(per.heap)} B`}`,
    );
    if (s.note !== null) row('  note', s.note);
  }
  row('total', `${r.seconds.toFixed(1)} s`);
  return `${lines.join('\n')}\n`;
}
