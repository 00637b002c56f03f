// The lockstep client in the browser: joins a room, replays the server's steps with sim.js,
// sends the arrow keys' direction every step, catches up after a reconnection.
import { connect } from '/pylon-client.js';
import { apply, clone, initial, SIZE, WORLD } from '/sim.js';

const params = new URLSearchParams(location.search);
const name = params.get('name') || `player-${Math.random().toString(36).slice(2, 6)}`;
const roomId = params.get('room') || 'lobby';
const canvas = document.getElementById('world');
const ctx2d = canvas.getContext('2d');
const status = document.getElementById('status');
canvas.width = WORLD.width;
canvas.height = WORLD.height;

let state = initial();
/** Steps that came ahead of the next frame, by frame. */
const ahead = new Map();
let catchingUp = false;
let offset = 0; // server clock - local clock, ms
let rtt = 0;
let note = 'connecting…';

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const client = await connect(wsUrl, { token: name, reconnect: { base: 500, max: 5000 } });

client.on('lockstep.step', (step) => receive(step));
client.on('reconnected', () => {
  note = 'reconnected: catching up';
  enter().catch(showError);
});
client.on('reconnecting', ({ attempt }) => {
  note = `link lost, reconnecting (attempt ${attempt + 1})…`;
});
client.on('close', (e) => {
  if (!e.willReconnect)
    note = e.name === 'replaced' ? 'replaced by a newer login of the same name' : `closed: ${e.name}`;
});

await syncTime();
await enter();

/** Join the room, then ask for every step we do not have. */
async function enter() {
  const joined = await client.request('lockstep.join', { room: roomId });
  note = `${joined.you} in room ${joined.room}`;
  await catchup();
}

async function catchup() {
  if (catchingUp) return;
  catchingUp = true;
  try {
    const answer = await client.request('lockstep.catchup', { from: state.frame + 1 });
    if (answer.base !== undefined && answer.base.frame > state.frame) state = clone(answer.base);
    for (const step of answer.steps) receive(step);
  } finally {
    catchingUp = false;
  }
}

function receive(step) {
  if (step.frame <= state.frame) return; // already applied (a replayed push)
  ahead.set(step.frame, step);
  for (let next = ahead.get(state.frame + 1); next !== undefined; next = ahead.get(state.frame + 1)) {
    ahead.delete(next.frame);
    apply(state, next);
  }
  if (ahead.size > 0) catchup().catch(showError); // a gap: some steps were missed
}

/** Cristian's algorithm over a few round trips: keep the one with the smallest RTT. */
async function syncTime() {
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    const { server } = await client.request('lockstep.time', { client: t0 });
    const t1 = Date.now();
    if (t1 - t0 < best) {
      best = t1 - t0;
      offset = server + (t1 - t0) / 2 - t1;
    }
  }
  rtt = best;
}

// Input: the arrows held now; sent once per step while any is held.
const held = new Set();
const DIRS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
addEventListener('keydown', (e) => {
  if (DIRS[e.key]) {
    held.add(e.key);
    e.preventDefault();
  }
});
addEventListener('keyup', (e) => held.delete(e.key));
addEventListener('blur', () => held.clear());
setInterval(() => {
  if (held.size === 0 || !client.connected) return;
  let dx = 0;
  let dy = 0;
  for (const k of held) {
    dx += DIRS[k][0];
    dy += DIRS[k][1];
  }
  client.send('lockstep.cmd', { dx, dy });
}, 100);

function draw() {
  ctx2d.fillStyle = '#111';
  ctx2d.fillRect(0, 0, canvas.width, canvas.height);
  for (const [user, p] of Object.entries(state.players)) {
    ctx2d.fillStyle = `hsl(${p.hue} 70% 55%)`;
    ctx2d.fillRect(p.x, p.y, SIZE, SIZE);
    ctx2d.fillStyle = user === name ? '#fff' : '#aaa';
    ctx2d.font = '12px sans-serif';
    ctx2d.fillText(user, p.x, p.y - 4);
  }
  const serverTime = new Date(Date.now() + offset).toISOString().slice(11, 23);
  status.textContent = `${note} · frame ${state.frame} · players ${Object.keys(state.players).length} · rtt ${rtt} ms · server ${serverTime}`;
  requestAnimationFrame(draw);
}
requestAnimationFrame(draw);

// For the console (and the end-to-end test): the replayed state.
globalThis.lockstep = {
  name,
  get state() {
    return state;
  },
  get note() {
    return note;
  },
};

function showError(err) {
  note = `error: ${err.code ?? ''} ${err.message}`;
}
