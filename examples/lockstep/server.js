// Lockstep frame sync (hotpot's demo) on the envelope gateway, one Group per room.
// Run after `npm run build`:  node examples/lockstep/server.js   then open the printed URL in
// two browser windows (?name=alice, ?name=bob) and move the squares with the arrow keys.
//
// Every 100 ms a room's tick collects each player's latest command and pushes the step
// { frame, events, commands } to the room's label; every browser replays the steps with sim.js
// and so draws the same picture. The room keeps the steps, so a player who reconnects asks for
// what it missed (lockstep.catchup); lockstep.time gives the server's clock.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Group, groupOf, intoGroup, leaveGroupsOnDisconnect } from '../../dist/framework/index.js';
import { createGateway, devValidator, PylonError } from '../../dist/index.js';
import { apply, clone, initial } from './sim.js';

const TICK_MS = 100;
/** Steps a room keeps for catch-up (10 minutes); older ones are folded into its base state. */
const HISTORY = 6000;

class Room {
  constructor(gateway, id) {
    this.gateway = gateway;
    this.id = id;
    this.label = `lockstep:${id}`;
    this.state = initial(); // the room's own replay, to know who is in
    this.base = initial(); // the state before history[0]
    this.history = [];
    this.inputs = new Map(); // user -> latest { dx, dy } of this step
    this.events = [];
    this.timer = undefined;
    const group = new Group({ name: `room:${id}` });
    this.group = group;
    // Everything below runs inside the group's mailbox, one at a time: no locks.
    group.on('lockstep.join', (conn) => this.join(conn));
    group.on('lockstep.cmd', (conn, data) => {
      if (conn.user === undefined || typeof data !== 'object' || data === null) return;
      this.inputs.set(conn.user, { dx: unit(data.dx), dy: unit(data.dy) });
    });
    group.on('lockstep.catchup', (_conn, data) => this.catchup(Number(data?.from ?? 1)));
    group.on('$leave', (conn) => this.leave(conn));
  }

  join(conn) {
    if (conn.user === undefined) throw new PylonError('UNAUTHORIZED', 'log in (?token=name) to play');
    for (const label of conn.labels ?? []) if (label.startsWith('lockstep:')) conn.leave(label);
    conn.join(this.label);
    // A leave still pending (the older login just replaced) is cancelled, else the user joins.
    const pendingLeave = this.events.findIndex((e) => e.user === conn.user && e.leave);
    if (pendingLeave >= 0) this.events.splice(pendingLeave, 1);
    else if (this.state.players[conn.user] === undefined && !this.events.some((e) => e.user === conn.user)) {
      this.events.push({ user: conn.user, join: true });
    }
    this.timer ??= this.group.tick(TICK_MS, () => this.step());
    return { room: this.id, frame: this.state.frame, tickMs: TICK_MS, you: conn.user };
  }

  leave(conn) {
    // duplicateLogin 'replace': a newer connection of the same user may be in the room already.
    for (const other of this.group.members) if (other.user === conn.user) return;
    const pendingJoin = this.events.findIndex((e) => e.user === conn.user && e.join);
    if (pendingJoin >= 0) this.events.splice(pendingJoin, 1);
    else if (this.state.players[conn.user] !== undefined && !this.events.some((e) => e.user === conn.user)) {
      this.events.push({ user: conn.user, leave: true });
    }
  }

  step() {
    if (this.group.members.size === 0 && this.events.length === 0) {
      this.timer?.cancel(); // idle room: no steps until someone joins
      this.timer = undefined;
      return;
    }
    const commands = [...this.inputs].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const step = { frame: this.state.frame + 1, events: this.events, commands };
    this.inputs.clear();
    this.events = [];
    apply(this.state, step);
    this.history.push(step);
    if (this.history.length > HISTORY) apply(this.base, this.history.shift());
    void this.gateway.push({ labels: { all: [this.label] } }, 'lockstep.step', step);
  }

  /** The steps from `from` on; with the base state when some are no longer kept. */
  catchup(from) {
    const first = this.base.frame + 1;
    if (!Number.isInteger(from) || from < first) return { base: clone(this.base), steps: this.history };
    return { steps: this.history.slice(from - first) };
  }
}

function unit(v) {
  return v > 0 ? 1 : v < 0 ? -1 : 0;
}

/** Serves the page, its modules and the browser SDK on the gateway's HTTP port. */
function staticFiles() {
  const here = (p) => fileURLToPath(new URL(p, import.meta.url));
  const files = {
    '/': [here('./index.html'), 'text/html; charset=utf-8'],
    '/index.html': [here('./index.html'), 'text/html; charset=utf-8'],
    '/game.js': [here('./game.js'), 'text/javascript; charset=utf-8'],
    '/sim.js': [here('./sim.js'), 'text/javascript; charset=utf-8'],
    '/pylon-client.js': [here('../../dist/browser/pylon-client.js'), 'text/javascript; charset=utf-8'],
  };
  return (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const file = Object.hasOwn(files, path) ? files[path] : undefined;
    if (file === undefined || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    readFile(file[0]).then(
      (body) => res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-cache' }).end(body),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('missing file: run npm run build\n'),
    );
  };
}

export async function startLockstep({ port = 8090, tcpPort = 8091, host = '127.0.0.1' } = {}) {
  const gateway = createGateway({
    ws: { port, host, path: '/ws', httpHandler: staticFiles() },
    tcp: { port: tcpPort, host },
    validate: devValidator(), // the token is the player's name: development only
    duplicateLogin: 'replace', // a second login of the same name kicks the first (4504)
  });
  const rooms = new Map();
  const roomOf = (id) => {
    if (typeof id !== 'string' || !/^[\w-]{1,32}$/.test(id))
      throw new PylonError('BAD_REQUEST', 'room: 1-32 word characters');
    let room = rooms.get(id);
    if (room === undefined) {
      room = new Room(gateway, id);
      rooms.set(id, room);
    }
    return room;
  };
  leaveGroupsOnDisconnect(gateway); // a closed connection leaves its room ($leave)
  gateway.handle('lockstep.join', (data, ctx) => {
    const room = roomOf(data?.room);
    room.group.add(ctx.connection); // leaves its previous room, if any
    return room.group.dispatch(ctx.connection, 'lockstep.join', data);
  });
  // The sender's room handles these, inside its mailbox, serially with its tick.
  const sendersRoom = (ctx) => groupOf(ctx.connection);
  gateway.handle('lockstep.cmd', intoGroup(sendersRoom));
  gateway.handle('lockstep.catchup', intoGroup(sendersRoom));
  gateway.handle('lockstep.time', (data) => ({ server: Date.now(), client: data?.client }));
  const addresses = await gateway.listen();
  return { gateway, rooms, addresses };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { gateway, addresses } = await startLockstep({
    port: Number(process.env.PORT ?? 8090),
    tcpPort: Number(process.env.TCP_PORT ?? 8091),
  });
  console.log(
    `lockstep: http://127.0.0.1:${addresses.ws.port}/ (ws /ws, tcp ${addresses.tcp.port}) — open it twice, ?name=alice and ?name=bob`,
  );
  const stop = () => gateway.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
