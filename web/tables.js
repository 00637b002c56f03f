// The tables: nodes with their load, the top labels, a user lookup, the recent disconnects.
import { api } from './api.js';
import { $, clock, duration, el, fillRows, num } from './dom.js';

// ---- nodes (from the stream's stats.nodes; rates from consecutive samples) ----

let previousNodes = new Map();

export function renderNodes(sample) {
  const now = sample.t;
  const rows = [];
  const next = new Map();
  for (const n of sample.stats.nodes ?? []) {
    const prev = previousNodes.get(n.node);
    const secs = prev ? (now - prev.t) / 1000 : 0;
    const rate = (k) => (prev && secs > 0 ? Math.max(0, n[k] - prev.n[k]) / secs : undefined);
    next.set(n.node, { t: now, n });
    rows.push(
      el(
        'tr',
        {},
        el('td', { class: 'mono' }, n.node),
        el('td', {}, duration(n.uptime)),
        el('td', { class: 'num' }, num(n.connections)),
        el('td', { class: 'num' }, num(n.users)),
        el('td', { class: 'num' }, num(n.labels)),
        el('td', { class: 'num' }, num(rate('messagesIn'))),
        el('td', { class: 'num' }, num(rate('messagesOut'))),
        el('td', { class: 'num' }, num(n.pushesDropped)),
        el('td', { class: 'num' }, num(n.slowConsumers)),
        el('td', { class: 'num' }, num(n.resumable)),
        el('td', { class: 'num' }, bytes(n.process?.rss)),
        el('td', { class: 'num' }, bytes(n.process?.heapUsed)),
        el('td', { class: 'num' }, num(n.qos1?.stored)),
        el('td', { class: 'num' }, num(n.qos1?.deadLetters)),
        el('td', { class: 'num' }, num(n.authFailures)),
      ),
    );
  }
  previousNodes = next;
  fillRows($('nodes-body'), rows, 15);
}

// ---- top labels: /v1/labels is name-ordered and paged; read pages, sort by count here ----

const PAGE = 1000;
// Each page costs the gateway a sort of every label name: scan at most 5,000 labels, every 30 s.
const MAX_PAGES = 5;
const TOP = 15;

export async function refreshLabels() {
  const all = [];
  let after;
  let pages = 0;
  do {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (after !== undefined) q.set('after', after);
    const page = await api('GET', `/v1/labels?${q}`);
    all.push(...page.labels);
    after = page.next;
    pages++;
  } while (after !== undefined && pages < MAX_PAGES);
  all.sort((a, b) => b.count - a.count || (a.label < b.label ? -1 : 1));
  const top = all.slice(0, TOP);
  const most = top[0]?.count ?? 1;
  const rows = top.map((l) =>
    el(
      'tr',
      {},
      el('td', {}, el('button', { type: 'button', class: 'link mono', 'data-label': l.label }, l.label)),
      el('td', { class: 'num' }, num(l.count)),
      el('td', { class: 'bar-cell' }, el('meter', { min: 0, max: most, value: l.count })),
    ),
  );
  fillRows($('labels-body'), rows, 3, 'no labels');
  const capped = after !== undefined ? ` (the first ${num(all.length)} by name)` : '';
  $('labels-note').textContent = `top ${top.length} of ${num(all.length)} labels${capped}`;
}

/** Bytes as MiB (one decimal); '–' when the node did not report it. */
function bytes(n) {
  return typeof n === 'number' ? `${(n / 1048576).toFixed(1)} MiB` : '–';
}

// ---- one label: its members, a page at a time, and a push to it ----

let labelShown = { label: undefined, next: undefined };
/** The label a request is under way for (a second click waits for it; another label wins). */
let loading;

export async function showLabel(label, more = false) {
  if (more && loading === label) return;
  loading = label;
  const q = new URLSearchParams({ limit: '100' });
  if (more && labelShown.next !== undefined) q.set('after', labelShown.next);
  const path = `/v1/labels/${encodeURIComponent(label)}`;
  let page;
  let presence;
  let history;
  try {
    // The first view also reads who is present and the last pushes kept for the label.
    [page, presence, history] = await Promise.all([
      api('GET', `${path}?${q}`),
      more ? undefined : api('GET', `${path}/presence?limit=50`),
      more ? undefined : api('GET', `${path}/history?limit=20`),
    ]);
  } finally {
    if (loading === label) loading = undefined;
  }
  if (more && labelShown.label !== label) return; // another label was opened meanwhile
  if (!more) {
    renderPresence(presence);
    renderHistory(history);
  }
  const rows = page.members.map((m) =>
    el(
      'tr',
      {},
      el('td', { class: 'mono' }, m.connection),
      el('td', { class: 'mono' }, m.user ?? '(anonymous)'),
    ),
  );
  const body = $('label-view-body');
  if (more) body.append(...rows);
  else fillRows(body, rows, 2, 'no member on this node');
  labelShown = { label, next: page.next };
  $('label-view').hidden = false;
  $('label-view-name').textContent = label;
  $('label-view-note').textContent =
    `${num(page.count)} connection${page.count === 1 ? '' : 's'} on this node`;
  $('label-view-more').hidden = page.next === undefined;
  if (!more) $('label-view-name').closest('h2').focus();
}

function renderPresence(p) {
  const shown = p.users.join(', ');
  $('label-view-presence').textContent =
    p.count === 0
      ? 'no user present on this node'
      : `${num(p.count)} user${p.count === 1 ? '' : 's'} present on this node: ${shown}${
          p.count > p.users.length ? ` and ${num(p.count - p.users.length)} more` : ''
        }`;
}

/** Data as one line of at most 200 characters. */
function preview(m) {
  if (m.binary !== undefined) return `(binary, ${num(Math.floor((m.binary.length * 3) / 4))} bytes)`;
  if (m.data === undefined) return '';
  const text = JSON.stringify(m.data);
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

function renderHistory(h) {
  const rows = h.messages
    .slice()
    .reverse()
    .map((m) =>
      el(
        'tr',
        {},
        el('td', { class: 'num' }, String(m.pos)),
        el('td', {}, clock(m.at)),
        el('td', { class: 'mono' }, m.type),
        el('td', { class: 'mono' }, preview(m)),
      ),
    );
  fillRows(
    $('label-view-history'),
    rows,
    4,
    h.epoch === '' ? 'no history kept for this label' : 'nothing kept yet',
  );
}

export function shownLabel() {
  return labelShown.label;
}

// ---- recent disconnects: /v1/disconnects once, then the stream's deltas ----

const KEEP = 100;
let disconnects = [];

export function setDisconnects(records) {
  disconnects = records.slice(-KEEP);
  renderDisconnects();
}

export function addDisconnects(records) {
  if (!records?.length) return;
  const last = disconnects.at(-1)?.seq ?? 0;
  const fresh = records.filter((r) => r.seq > last);
  if (fresh.length === 0) return;
  disconnects = disconnects.concat(fresh).slice(-KEEP);
  renderDisconnects();
}

function codeClass(code) {
  if (code >= 4500) return 'code bad';
  if (code >= 4000) return 'code warn';
  return 'code';
}

function renderDisconnects() {
  const rows = disconnects
    .slice()
    .reverse()
    .map((d) =>
      el(
        'tr',
        {},
        el('td', {}, clock(d.at)),
        el('td', { class: 'mono' }, d.user ?? '–'),
        el('td', { class: 'mono' }, d.connection),
        el('td', {}, d.transport),
        el('td', {}, el('span', { class: codeClass(d.code) }, d.code)),
        el('td', {}, d.name),
        el('td', { class: 'reason', title: d.reason }, d.reason),
      ),
    );
  fillRows($('disconnects-body'), rows, 7, 'no disconnects yet');
  $('disconnects-note').textContent = `last ${disconnects.length}`;
}

// ---- user lookup ----

export async function lookupUser(user) {
  const info = await api('GET', `/v1/users/${encodeURIComponent(user)}`);
  const n = info.connections.length;
  const summary = $('user-summary');
  summary.replaceChildren(
    el('strong', { class: 'mono' }, info.user),
    ' ',
    el('span', { class: info.online ? 'pill on' : 'pill off' }, info.online ? 'online' : 'offline'),
    ` ${n} connection${n === 1 ? '' : 's'}`,
  );
  const rows = info.connections.map((c) =>
    el(
      'tr',
      {},
      el('td', { class: 'mono' }, c.id),
      el('td', {}, c.transport),
      el('td', { class: 'mono' }, c.remoteAddress),
      el('td', {}, ...labelChips(c.labels)),
      el('td', {}, clock(c.connectedAt)),
      el('td', {}, [c.device, c.version].filter(Boolean).join(' ') || '–'),
    ),
  );
  $('user-table').hidden = false;
  fillRows($('user-body'), rows, 6, 'no open connections');
  return info;
}

function labelChips(labels) {
  if (!labels?.length) return ['–'];
  return labels.map((l) => el('span', { class: 'chip' }, l));
}
