// The lockstep simulation, shared by the server (node) and the browser: the same steps applied
// in the same order give the same state everywhere. Integers only, no clocks, no randomness.

export const WORLD = { width: 640, height: 400 };
export const SIZE = 24;
/** Pixels a square moves per step of input. */
export const SPEED = 6;

/** The state before frame 1. */
export function initial() {
  return { frame: 0, players: {} };
}

/** A deep copy (states travel as JSON). */
export function clone(state) {
  return JSON.parse(JSON.stringify(state));
}

/**
 * Applies one step `{ frame, events, commands }` (frame must be state.frame + 1):
 * events first (`{ user, join: true }` / `{ user, leave: true }`), then each player's command
 * `[user, { dx, dy }]` (dx, dy in -1..1), in the order given (the server sorts by user).
 */
export function apply(state, step) {
  if (step.frame !== state.frame + 1) throw new Error(`step ${step.frame} applied to frame ${state.frame}`);
  for (const e of step.events) {
    if (e.join && state.players[e.user] === undefined) state.players[e.user] = spawn(e.user);
    if (e.leave) delete state.players[e.user];
  }
  for (const [user, cmd] of step.commands) {
    const p = state.players[user];
    if (p === undefined) continue;
    p.x = clamp(p.x + clampUnit(cmd.dx) * SPEED, 0, WORLD.width - SIZE);
    p.y = clamp(p.y + clampUnit(cmd.dy) * SPEED, 0, WORLD.height - SIZE);
  }
  state.frame = step.frame;
  return state;
}

/** Where a user's square starts, and its colour: from a hash of the name. */
export function spawn(user) {
  const h = hash(user);
  return {
    x: h % (WORLD.width - SIZE),
    y: (h >>> 10) % (WORLD.height - SIZE),
    hue: hash(`${user}#hue`) % 360,
  };
}

function hash(text) {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h;
}

function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

function clampUnit(v) {
  return v > 0 ? 1 : v < 0 ? -1 : 0;
}
