// The connection view: this node's open connections (GET /v1/connections), filtered by user,
// label, transport and address (an IP or a CIDR range), a page at a time, each with a Kick.
import { api } from './api.js';
import { $, clock, el, fillRows, num, say } from './dom.js';

const PAGE = 50;
/** The query of the page shown (without and with its `after`), and the `after` of the next one. */
let shown = { query: new URLSearchParams(), page: new URLSearchParams(), next: undefined };

export function installConnections() {
  $('conns-form').addEventListener('submit', (e) => {
    e.preventDefault();
    load(filters()).catch(report);
  });
  $('conns-next').addEventListener('click', () => {
    if (shown.next === undefined) return;
    const q = new URLSearchParams(shown.query);
    q.set('after', shown.next);
    load(q).catch(report);
  });
  $('conns-body').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-kick]');
    if (!button) return;
    const id = button.dataset.kick;
    if (!confirm(`Kick connection ${id}? (code 4503: it will not reconnect)`)) return;
    api('POST', '/v1/kick', { connection: id, reason: 'kicked from the dashboard' })
      .then(async (r) => {
        await load(shown.page); // the same page again, without the one kicked
        say($('conns-result'), r.kicked === 1 ? `kicked ${id}` : `${id} was gone already`);
      })
      .catch(report);
  });
}

function filters() {
  const q = new URLSearchParams({ limit: String(PAGE) });
  for (const [name, id] of [
    ['user', 'conns-user'],
    ['label', 'conns-label'],
    ['transport', 'conns-transport'],
    ['address', 'conns-address'],
  ]) {
    const v = $(id).value.trim();
    if (v) q.set(name, v);
  }
  return q;
}

async function load(query) {
  const page = await api('GET', `/v1/connections?${query}`);
  const base = new URLSearchParams(query);
  base.delete('after');
  shown = { query: base, page: new URLSearchParams(query), next: page.next };
  const rows = page.connections.map((c) =>
    el(
      'tr',
      {},
      el('td', { class: 'mono' }, c.id),
      el('td', {}, c.user ?? '(anonymous)'),
      el('td', {}, c.transport),
      el('td', {}, c.codec),
      el('td', { class: 'mono' }, c.remoteAddress),
      el('td', {}, c.labels.join(', ')),
      el('td', {}, clock(c.connectedAt)),
      el('td', { class: 'num' }, num(c.buffered)),
      el(
        'td',
        {},
        el(
          'button',
          { type: 'button', class: 'danger small', 'data-kick': c.id, 'aria-label': `Kick ${c.id}` },
          'Kick',
        ),
      ),
    ),
  );
  fillRows($('conns-body'), rows, 9, 'no open connection matches');
  $('conns-next').hidden = page.next === undefined;
  $('conns-note').textContent = `node ${page.node}`;
  say(
    $('conns-result'),
    `${page.connections.length} shown${page.next === undefined ? '' : ', more on the next page'}`,
  );
}

function report(err) {
  say($('conns-result'), `${err.code ?? 'ERROR'}: ${err.message}`, false);
}
