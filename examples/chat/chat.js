// The Pylon chat page: plain ES modules over the browser SDK that `pylon start` serves.
// Rooms are labels "room:<name>"; the server's chat.send pushes chat.message to the room with
// qos 1, so a page whose link drops gets what it missed when it comes back (the SDK resumes the
// session and deduplicates by seq).
import { connect } from '/pylon-client.js';

const ROOM_NAME = /^[a-z0-9_-]{1,32}$/;
const MAX_MESSAGES = 500;
const MAX_TEXT = 2000;

/**
 * Everything the page shows. status: idle | connecting | connected | reconnecting | resumed | offline | closed.
 * rooms: name -> { name, messages, byId, online, unread }; a message is
 * { id, room, user, text, at, mine, status: sending | sent | failed, via: self | push | history }.
 */
const state = {
  user: '',
  status: 'idle',
  resumes: 0,
  current: '',
  rooms: new Map(),
};
/** For tests and the console. */
window.pylonChat = { client: undefined, state };

const $ = (id) => document.getElementById(id);
let client;
let order = 0;

// ---- connection ----

async function login(name) {
  setStatus('connecting', 'connecting…');
  $('login-error').textContent = '';
  const url = new URL('/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  try {
    client = await connect(url, { token: name });
  } catch (err) {
    setStatus('idle', 'not connected');
    $('login-error').textContent = `Could not connect: ${err.message}`;
    return;
  }
  window.pylonChat.client = client;
  listen(client);
  state.user = client.welcome?.user ?? name;
  try {
    localStorage.setItem('pylon-chat-name', state.user);
  } catch {}
  setStatus('connected', 'connected');
  $('login').hidden = true;
  $('app').hidden = false;
  $('me').hidden = false;
  $('me').textContent = state.user;
  await joinRoom('general');
  $('text').focus();
}

function listen(c) {
  c.on('chat.message', (m) => {
    if (addMessage(m, 'push')) render();
  });
  // One announcement may list several users (the server coalesces joins and leaves).
  c.on('presence.join', ({ label, user, users }) => {
    const room = roomOf(label);
    if (room === undefined) return;
    for (const u of users ?? [user]) room.online.add(u);
    renderOnline();
  });
  c.on('presence.leave', ({ label, user, users }) => {
    const room = roomOf(label);
    if (room === undefined) return;
    for (const u of users ?? [user]) room.online.delete(u);
    renderOnline();
  });
  c.on('close', (e) => {
    if (e.willReconnect) setStatus('reconnecting', 'reconnecting…');
    else closed(e);
  });
  c.on('reconnecting', ({ attempt }) => setStatus('reconnecting', `reconnecting… (${attempt})`));
  c.on('reconnected', (welcome) => {
    if (welcome.resumed) {
      // Labels are back and what was pushed meanwhile comes now (qos 1 from the inbox).
      state.resumes++;
      setStatus('resumed', 'resumed');
      // Who came and went while this page was away.
      for (const name of state.rooms.keys()) loadPresence(name);
    } else {
      // A new session: the SDK joins the rooms again before anything queued goes out; once they
      // are joined, fill the gap from their history and read who is there (this page included).
      setStatus('connected', 'connected');
      const labels = [...state.rooms.keys()].map(label);
      if (labels.length > 0) {
        client
          .subscribe(labels)
          .then(() => {
            for (const name of state.rooms.keys()) {
              loadHistory(name);
              loadPresence(name);
            }
          })
          .catch(showError);
      }
    }
  });
}

// The browser says when the network is gone. The SDK notices a dead link by its heartbeat, but
// a browser WebSocket in that state only reports its close once the network is back; until
// then the page says it is offline (the server drops the connection after its keepalive
// timeout, keeps the session for resume, and the room's messages wait in the inbox).
addEventListener('offline', () => {
  if (client !== undefined) setStatus('offline', 'offline');
});
addEventListener('online', () => {
  if (client !== undefined && state.status === 'offline') {
    if (client.connected) setStatus('connected', 'connected');
    else setStatus('reconnecting', 'reconnecting…');
  }
});

/** Closed for good (kicked, replaced, refused): say why, stop the composer, offer to sign in again. */
function closed(e) {
  setStatus('closed', `disconnected (${e.name})`);
  const why = { kicked: 'You were removed from the chat', replaced: 'You signed in somewhere else' }[e.name];
  const banner = $('closed');
  banner.replaceChildren(
    el('span', {}, `${why ?? 'Disconnected'}${e.reason ? `: ${e.reason}` : ''} (${e.name}).`),
  );
  const again = el('button', { type: 'button', id: 'sign-in-again' }, 'Sign in again');
  again.addEventListener('click', () => location.reload());
  banner.append(again);
  banner.hidden = false;
  $('text').disabled = true;
  $('send').disabled = true;
}

function setStatus(status, text) {
  state.status = status;
  const el = $('status');
  el.dataset.status = status;
  el.textContent = text;
}

// ---- rooms ----

const label = (name) => `room:${name}`;
const roomOf = (l) => (l.startsWith('room:') ? state.rooms.get(l.slice(5)) : undefined);

async function joinRoom(name) {
  if (!ROOM_NAME.test(name)) {
    showError(new Error('a room name is 1 to 32 of a-z, 0-9, _ and -'));
    return;
  }
  if (!state.rooms.has(name)) {
    state.rooms.set(name, { name, messages: [], byId: new Map(), online: new Set(), unread: 0 });
    try {
      await client.subscribe([label(name)]);
    } catch (err) {
      state.rooms.delete(name);
      showError(err);
      render();
      return;
    }
    loadPresence(name);
    loadHistory(name);
  }
  select(name);
}

async function leaveRoom(name) {
  if (state.rooms.size <= 1) return;
  try {
    await client.unsubscribe([label(name)]);
  } catch (err) {
    showError(err);
    return;
  }
  state.rooms.delete(name);
  if (state.current === name) select(state.rooms.keys().next().value);
  else render();
}

function select(name) {
  state.current = name;
  const room = state.rooms.get(name);
  if (room) room.unread = 0;
  render(true);
}

function loadPresence(name) {
  client
    .presence(label(name))
    .then((p) => {
      const room = state.rooms.get(name);
      if (room === undefined) return;
      room.online = new Set(p.users);
      room.online.add(state.user); // a member of its own rooms, whatever the order of events
      renderOnline();
    })
    .catch(showError);
}

function loadHistory(name) {
  client
    .history(label(name), 50)
    .then((h) => {
      let added = false;
      for (const e of h.messages)
        if (e.type === 'chat.message' && addMessage(e.data, 'history')) added = true;
      if (added) render();
    })
    .catch(showError);
}

// ---- messages ----

/** Adds a message from the server unless it is already there (by id). Returns whether it changed anything. */
function addMessage(m, via) {
  const room = state.rooms.get(m.room);
  if (room === undefined) return false;
  const known = room.byId.get(m.id);
  if (known !== undefined) {
    if (known.status !== 'failed') return false;
    known.status = 'sent'; // the server has it after all
    return true;
  }
  if (m.user === state.user) {
    // Our own message, pushed back before the answer to chat.send: attach it to the local copy.
    const local = room.messages.find((x) => x.mine && x.id === undefined && x.text === m.text);
    if (local !== undefined) {
      local.id = m.id;
      local.at = m.at;
      if (local.status === 'failed') local.status = 'sent';
      room.byId.set(m.id, local);
      return true;
    }
  }
  const msg = { ...m, mine: m.user === state.user, status: 'sent', via, order: ++order };
  room.byId.set(m.id, msg);
  room.messages.push(msg);
  sortMessages(room);
  if (via === 'push' && !msg.mine && room.name !== state.current) room.unread++;
  return true;
}

function sortMessages(room) {
  room.messages.sort((a, b) => a.at - b.at || a.order - b.order);
  if (room.messages.length > MAX_MESSAGES) {
    for (const m of room.messages.splice(0, room.messages.length - MAX_MESSAGES)) room.byId.delete(m.id);
  }
}

function send(text, into = state.rooms.get(state.current)) {
  const room = into;
  if (room === undefined) return;
  if ([...text].length > MAX_TEXT) {
    showError(new Error(`a message is at most ${MAX_TEXT} characters`));
    return;
  }
  const local = {
    id: undefined,
    room: room.name,
    user: state.user,
    text,
    at: Date.now(),
    mine: true,
    status: 'sending',
    via: 'self',
    order: ++order,
  };
  room.messages.push(local);
  render(true);
  // Queued by the SDK while reconnecting; answered once the message is stored and sent.
  client.request('chat.send', { room: room.name, text }, { timeout: 30_000 }).then(
    (res) => {
      local.status = 'sent';
      if (local.id === undefined && !room.byId.has(res.id)) {
        local.id = res.id;
        room.byId.set(res.id, local);
      }
      if (local.id === res.id) local.at = res.at;
      sortMessages(room);
      render();
    },
    (err) => {
      if (local.status === 'sending') local.status = 'failed';
      local.error = err.code ?? err.message;
      render();
    },
  );
}

// ---- rendering ----

function render(scroll = false) {
  renderRooms();
  renderOnline();
  renderMessages(scroll);
}

function renderRooms() {
  const list = $('rooms');
  list.replaceChildren();
  for (const room of state.rooms.values()) {
    const li = el('li', { class: room.name === state.current ? 'room active' : 'room' });
    li.dataset.room = room.name;
    const open = el('button', { class: 'room-link', type: 'button' }, `# ${room.name}`);
    open.addEventListener('click', () => select(room.name));
    if (room.unread > 0) open.append(el('span', { class: 'unread' }, String(room.unread)));
    li.append(open);
    if (state.rooms.size > 1) {
      const leave = el(
        'button',
        { class: 'leave', type: 'button', title: `leave #${room.name}`, 'aria-label': `leave #${room.name}` },
        '×',
      );
      leave.addEventListener('click', () => leaveRoom(room.name));
      li.append(leave);
    }
    list.append(li);
  }
}

function renderOnline() {
  const room = state.rooms.get(state.current);
  const users = room ? [...room.online].sort() : [];
  $('online-count').textContent = String(users.length);
  const list = $('online');
  list.replaceChildren();
  for (const user of users) {
    const li = el('li', {}, avatar(user), el('span', { class: 'name' }, user));
    li.dataset.user = user;
    if (user === state.user) li.append(el('span', { class: 'you' }, 'you'));
    list.append(li);
  }
  $('room-info').textContent = room ? `${users.length} online` : '';
}

function renderMessages(forceScroll) {
  const room = state.rooms.get(state.current);
  $('room-title').textContent = room ? `# ${room.name}` : 'no room';
  $('text').placeholder = room ? `Message #${room.name} (Enter to send)` : 'Join a room to chat';
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  list.replaceChildren();
  if (room === undefined) return;
  if (room.messages.length === 0) list.append(el('li', { class: 'empty' }, 'No messages yet. Say hi!'));
  let prev;
  for (const m of room.messages) {
    const continued = prev !== undefined && prev.user === m.user && m.at - prev.at < 5 * 60_000;
    const li = el('li', { class: `message ${m.mine ? 'mine' : 'theirs'}${continued ? ' continued' : ''}` });
    li.dataset.user = m.user;
    li.dataset.status = m.status;
    if (m.id !== undefined) li.dataset.id = m.id;
    const meta = el('div', { class: 'meta' }, el('span', { class: 'author' }, m.user), timeOf(m.at));
    const bubble = el('div', { class: 'bubble' }, el('div', { class: 'text' }, m.text));
    if (m.mine) bubble.append(tick(m));
    li.append(avatar(m.user), el('div', { class: 'body' }, meta, bubble));
    list.append(li);
    prev = m;
  }
  if (forceScroll || atBottom) list.scrollTop = list.scrollHeight;
}

function tick(m) {
  if (m.status === 'sent') return el('span', { class: 'tick', title: 'stored and sent' }, '✓');
  if (m.status === 'failed') {
    const box = el('span', { class: 'failed-note', role: 'alert' }, `Not sent (${m.error}). `);
    const retry = el('button', { type: 'button', class: 'retry' }, 'Retry');
    retry.addEventListener('click', () => {
      const room = state.rooms.get(m.room);
      if (room === undefined) return;
      room.messages = room.messages.filter((x) => x !== m);
      send(m.text, room);
    });
    box.append(retry);
    return box;
  }
  return el('span', { class: 'tick pending', title: 'sending' }, '…');
}

function timeOf(at) {
  const d = new Date(at);
  const t = el('time', {}, d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
  t.dateTime = d.toISOString();
  return t;
}

function avatar(user) {
  const a = el('span', { class: 'avatar', 'aria-hidden': 'true' }, user.slice(0, 1).toUpperCase());
  a.style.setProperty('--hue', String(hue(user)));
  return a;
}

function hue(s) {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

function showError(err) {
  const box = $('send-error');
  box.textContent = err.code ? `${err.code}: ${err.message}` : err.message;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => {
    box.textContent = '';
  }, 5000);
}

// ---- wiring ----

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('name').value.trim();
  if (name) login(name);
});

$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('join-name').value.trim().toLowerCase();
  if (!name) return;
  $('join-name').value = '';
  joinRoom(name);
});

// The message list scrolls: reachable by keyboard, so its arrow keys scroll it.
$('messages').tabIndex = 0;

// The composer is a textarea (a pasted text keeps its lines): Enter sends, Shift+Enter is a new line.
$('text').addEventListener('keydown', (e) => {
  // Not the Enter that ends an input-method composition (Safari reports it as keyCode 229).
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});

// A room name the pattern refuses says what is allowed (not the browser's bare "match the format").
$('join-name').addEventListener('input', () => $('join-name').setCustomValidity(''));
$('join-name').addEventListener('invalid', () => {
  $('join-name').setCustomValidity('Room names: letters, digits, - and _ (up to 32 characters).');
});

// A phone: the rooms and the online list are a drawer.
function setDrawer(open) {
  const was = $('app').classList.contains('drawer-open');
  $('app').classList.toggle('drawer-open', open);
  $('drawer').setAttribute('aria-expanded', String(open));
  if (open && !was) {
    // Read its style first: that applies the class now (a hidden element takes no focus).
    void getComputedStyle($('sidebar')).visibility;
    $('sidebar').querySelector('button, input')?.focus();
  }
  if (!open && was) $('drawer').focus();
}
// A tap on the conversation beside the open drawer closes it.
$('app').addEventListener('click', (e) => {
  if ($('app').classList.contains('drawer-open') && !e.target.closest('#sidebar, #drawer')) setDrawer(false);
});
$('drawer').addEventListener('click', () => setDrawer(!$('app').classList.contains('drawer-open')));
$('rooms').addEventListener('click', (e) => {
  if (e.target.closest('.room-link')) setDrawer(false);
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') setDrawer(false);
});

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('text');
  const text = input.value;
  if (text.trim() === '' || client === undefined) return;
  // Too long: said, and the text stays in the composer to be shortened.
  if ([...text].length > MAX_TEXT) {
    showError(new Error(`a message is at most ${MAX_TEXT} characters (this one has ${[...text].length})`));
    return;
  }
  input.value = '';
  send(text);
});

const params = new URLSearchParams(location.search);
let remembered = '';
try {
  remembered = localStorage.getItem('pylon-chat-name') ?? '';
} catch {}
$('name').value = params.get('name') ?? remembered;
