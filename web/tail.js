// The live tail: GET /v1/tail (Server-Sent Events, read with fetch so the admin key stays in the
// header), one line per push to the user or label and per request or message from the user. The
// server bounds it (16 tails per process, 10 minutes each); the page keeps the last 200 lines.
import { getKey } from './api.js';
import { $, clock, el, say } from './dom.js';

const KEEP = 200;
let running;

export function installTail() {
  $('tail-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('tail-name').value.trim();
    if (!name) return say($('tail-result'), 'name: required', false);
    stop();
    void start($('tail-kind').value, name);
  });
  $('tail-stop').addEventListener('click', () => {
    stop();
    say($('tail-result'), 'stopped');
  });
}

function stop() {
  running?.abort();
  running = undefined;
  $('tail-stop').hidden = true;
}

async function start(kind, name) {
  const abort = new AbortController();
  running = abort;
  const headers = getKey() ? { authorization: `Bearer ${getKey()}` } : {};
  let res;
  try {
    res = await fetch(`/v1/tail?${new URLSearchParams({ [kind]: name })}`, { headers, signal: abort.signal });
  } catch (err) {
    if (!abort.signal.aborted) say($('tail-result'), `ERROR: ${err.message}`, false);
    return;
  }
  if (res.status === 404) {
    say(
      $('tail-result'),
      'the live tail is off on this server: startAdmin({ tail: true }) or pylon start --admin-tail',
      false,
    );
    return;
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    say(
      $('tail-result'),
      `${body.error?.code ?? res.status}: ${body.error?.message ?? res.statusText}`,
      false,
    );
    return;
  }
  $('tail-log').replaceChildren();
  $('tail-stop').hidden = false;
  say($('tail-result'), `tailing ${kind} ${name}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end = buffer.indexOf('\n\n');
      while (end >= 0) {
        const chunk = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (chunk.startsWith('data: ')) show(JSON.parse(chunk.slice(6)));
        end = buffer.indexOf('\n\n');
      }
    }
    if (running === abort) say($('tail-result'), 'the tail ended (10 minutes at most)');
  } catch {
    // aborted
  }
  if (running === abort) stop();
}

function show(e) {
  const what =
    e.dir === 'push'
      ? `push ${e.type} (qos ${e.qos}) to ${e.target}`
      : `${e.kind} ${e.type ?? ''} from ${e.user} (${e.connection})`;
  const line = el(
    'li',
    { class: e.dir },
    el('span', { class: 'mono' }, clock(new Date(e.at).toISOString())),
    ` ${what} `,
    el('code', {}, e.data ?? ''),
  );
  const log = $('tail-log');
  log.prepend(line);
  while (log.children.length > KEEP) log.lastElementChild.remove();
}
