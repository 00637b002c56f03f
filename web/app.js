// The Pylon admin dashboard: logs in with the admin key (when the server has keys), then shows
// the stats stream as tiles and charts and keeps the tables fresh.
import { installActions } from './actions.js';
import { api, getKey, setKey, streamStats } from './api.js';
import { createCharts } from './charts.js';
import { installConnections } from './connections.js';
import { $, duration, num, say } from './dom.js';
import {
  addDisconnects,
  lookupUser,
  refreshLabels,
  renderNodes,
  setDisconnects,
  showLabel,
  shownLabel,
} from './tables.js';
import { installTail } from './tail.js';

const LABELS_EVERY = 30_000;
const USER_EVERY = 5_000;

let charts;
let session; // { abort: AbortController, timers: number[] }
let lastSample = 0;
let shownUser = '';

function showLogin(message) {
  stopSession();
  $('main').hidden = true;
  $('login').hidden = false;
  $('logout').hidden = true;
  $('login-error').textContent = message ?? '';
  setLive('off', 'signed out');
  $('login-key').focus();
}

function setLive(state, text) {
  const live = $('live');
  live.className = `status ${state}`;
  live.textContent = text;
}

async function tryStart() {
  try {
    await api('GET', '/v1/stats');
  } catch (err) {
    if (err.status === 401) {
      const had = getKey() !== '';
      setKey('');
      showLogin(had ? 'That key was refused.' : '');
    } else {
      setLive('bad', `cannot reach the admin API (${err.message}); retrying`);
      setTimeout(tryStart, 3000);
    }
    return;
  }
  startSession();
}

function startSession() {
  stopSession();
  $('login').hidden = true;
  $('main').hidden = false;
  $('logout').hidden = getKey() === '';
  charts.reset();
  const abort = new AbortController();
  session = { abort, timers: [] };
  setLive('wait', 'connecting…');
  api('GET', '/v1/disconnects').then((r) => setDisconnects(r.disconnects), report);
  streamStats(onSample, onStreamState, abort.signal);
  const labels = () => refreshLabels().catch(report);
  labels();
  session.timers.push(setInterval(labels, LABELS_EVERY));
  session.timers.push(
    setInterval(() => {
      if (shownUser) lookupUser(shownUser).catch(() => {});
      if (lastSample && Date.now() - lastSample > 5000) setLive('bad', 'stale: no data for 5 s');
    }, USER_EVERY),
  );
}

function stopSession() {
  if (!session) return;
  session.abort.abort();
  for (const t of session.timers) clearInterval(t);
  session = undefined;
}

function report(err) {
  if (err?.status === 401) showLogin('The key was refused.');
  else console.warn(err);
}

function onStreamState(state) {
  if (state === 'unauthorized') showLogin('The key was refused.');
  else if (state === 'reconnecting') setLive('bad', 'reconnecting…');
}

function onSample(s) {
  lastSample = Date.now();
  const st = s.stats;
  setLive('ok', `live · ${new Date(s.t).toLocaleTimeString('en-GB', { hour12: false })}`);
  $('node').textContent = `${st.node} · up ${duration(st.uptime)}`;
  const tiles = {
    connections: st.connections,
    users: st.users,
    labels: st.labels,
    'messages-in': s.rates.messagesIn,
    'messages-out': s.rates.messagesOut,
    dropped: s.rates.pushesDropped,
    redelivered: s.rates.redelivered,
    lag: s.lag.p99,
  };
  for (const [id, v] of Object.entries(tiles)) $(`tile-${id}`).textContent = num(v);
  // A stream's first sample brings the server's last minutes: the charts start from them
  // (after a reconnect or a reload too), not from an empty chart.
  if (Array.isArray(s.history)) charts.seed(s.history);
  charts.push(s);
  renderNodes(s);
  addDisconnects(s.disconnects);
}

function prefill(user) {
  // Not the Kick field: a lookup must not leave a loaded kick behind.
  for (const id of ['push-id', 'labels-user']) {
    const input = $(id);
    if (!input.value) input.value = user;
  }
}

function boot() {
  // A table that scrolls inside its card is reachable by keyboard (its arrow keys scroll it).
  for (const region of document.querySelectorAll('.scroll, .wide, .tail-log')) region.tabIndex = 0;
  charts = createCharts();
  installActions((user) => {
    if (user === shownUser) setTimeout(() => lookupUser(user).catch(() => {}), 300);
  });
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('login-key').value.trim();
    if (!key) return;
    setKey(key);
    $('login-key').value = '';
    tryStart();
  });
  $('logout').addEventListener('click', () => {
    setKey('');
    tryStart();
  });
  $('lookup-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const user = $('lookup-user').value.trim();
    if (!user) return;
    lookupUser(user).then(
      () => {
        shownUser = user;
        say($('lookup-result'), '');
        prefill(user);
      },
      (err) => say($('lookup-result'), `${err.code ?? 'ERROR'}: ${err.message}`, false),
    );
  });
  $('labels-refresh').addEventListener('click', () => refreshLabels().catch(report));
  // A label of the top list opens its view: members, and a push to it.
  $('labels-body').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-label]');
    if (b) showLabel(b.dataset.label).catch(report);
  });
  $('label-view-more').addEventListener('click', () => showLabel(shownLabel(), true).catch(report));
  $('label-view-push').addEventListener('click', () => {
    $('push-target').value = 'labels';
    $('push-target').dispatchEvent(new Event('change'));
    $('push-labels-all').value = shownLabel() ?? '';
    $('push-labels-all').dataset.exact = shownLabel() ?? '';
    $('push-labels-any').value = '';
    $('push-labels-not').value = '';
    $('push-type').focus();
  });
  installConnections();
  installTail();
  tryStart();
}

boot();
