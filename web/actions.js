// The actions: push, kick, change a user's labels. Each calls the admin API and says what
// happened (how many connections were targeted, kicked, updated) or why it was refused.
import { api } from './api.js';
import { $, list, say } from './dom.js';

/** Wires the forms; `changed(user)` is called after an action that changed a user. */
export function installActions(changed) {
  const target = $('push-target');
  const showTarget = () => {
    const t = target.value;
    $('push-id-row').hidden = t !== 'user' && t !== 'connection';
    $('push-id-label').textContent = t === 'connection' ? 'Connection id' : 'User id';
    $('push-labels-row').hidden = t !== 'labels';
  };
  target.addEventListener('change', showTarget);
  for (const k of ['all', 'any', 'not']) {
    $(`push-labels-${k}`).addEventListener('input', (e) => delete e.target.dataset.exact);
  }
  showTarget();

  $('push-form').addEventListener('submit', (e) => {
    e.preventDefault();
    run($('push-result'), () => push());
  });
  $('kick-form').addEventListener('submit', (e) => {
    e.preventDefault();
    run($('kick-result'), async () => {
      const user = $('kick-user').value.trim();
      if (!user) throw new Error('user: required');
      if (!confirm(`Kick every connection of user "${user}"? (code 4503: they will not reconnect)`)) {
        return 'cancelled';
      }
      const body = { user };
      const reason = $('kick-reason').value.trim();
      if (reason) body.reason = reason;
      const r = await api('POST', '/v1/kick', body);
      changed(user);
      return `kicked ${r.kicked} connection${r.kicked === 1 ? '' : 's'} of ${user}`;
    });
  });
  $('labels-form').addEventListener('submit', (e) => {
    e.preventDefault();
    run($('labels-result'), async () => {
      const user = $('labels-user').value.trim();
      if (!user) throw new Error('user: required');
      const add = list($('labels-add').value);
      const remove = list($('labels-remove').value);
      if (add.length + remove.length === 0) throw new Error('give labels to add or to remove');
      const r = await api('POST', `/v1/users/${encodeURIComponent(user)}/labels`, { add, remove });
      changed(user);
      const what = [add.length ? `+${add.join(', +')}` : '', remove.length ? `−${remove.join(', −')}` : '']
        .filter(Boolean)
        .join(' ');
      return `${what} on ${r.connections} connection${r.connections === 1 ? '' : 's'} of ${user}`;
    });
  });
}

async function push() {
  const to = pushTarget();
  const type = $('push-type').value.trim();
  if (!type) throw new Error('type: required');
  const body = { to, type };
  const text = $('push-data').value.trim();
  if (text) {
    try {
      body.data = JSON.parse(text);
    } catch (err) {
      throw new Error(`data: not valid JSON (${err.message})`);
    }
  }
  const qos = Number($('push-qos').value);
  if (qos === 1) body.qos = 1;
  if (to.all && !confirm(`Push "${type}" to every connection?`)) return 'cancelled';
  const r = await api('POST', '/v1/push', body);
  const stored = r.stored !== undefined ? `, stored for ${r.stored} user${r.stored === 1 ? '' : 's'}` : '';
  return `pushed ${r.id}: targeted ${r.targeted} connection${r.targeted === 1 ? '' : 's'}${stored}`;
}

function pushTarget() {
  const t = $('push-target').value;
  if (t === 'all') return { all: true };
  if (t === 'labels') {
    const labels = {};
    for (const k of ['all', 'any', 'not']) {
      const input = $(`push-labels-${k}`);
      // Filled from the label view: the one label as it is (a label may contain a comma).
      const v = input.dataset.exact === input.value ? [input.value] : list(input.value);
      if (v.length) labels[k] = v;
    }
    if (Object.keys(labels).length === 0) throw new Error('labels: give at least one of all, any, not');
    return { labels };
  }
  const id = $('push-id').value.trim();
  if (!id) throw new Error(`${t}: required`);
  return t === 'connection' ? { connection: id } : { user: id };
}

async function run(output, action) {
  say(output, '…');
  try {
    const text = await action();
    say(output, text, text !== 'cancelled');
  } catch (err) {
    say(output, err.code ? `${err.code}: ${err.message}` : err.message, false);
  }
}
