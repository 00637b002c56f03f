import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { FakeClock, systemClock } from '../src/timer/clock.js';
import { TimingWheel, WheelEntry, type WheelTimer } from '../src/timer/wheel.js';

/** A FakeClock that remembers the most timers ever pending at once. */
class WatchedClock extends FakeClock {
  maxPending = 0;
  override setTimer(fn: () => void, ms: number): unknown {
    const handle = super.setTimer(fn, ms);
    this.maxPending = Math.max(this.maxPending, this.pending);
    return handle;
  }
}

function setup(tickMs = 10, start = 0) {
  const clock = new WatchedClock(start);
  const errors: unknown[] = [];
  const wheel = new TimingWheel({ clock, tickMs, onError: (err) => errors.push(err) });
  const log: string[] = [];
  const record = (name: string) => log.push(`${name}@${clock.now() - start}`);
  return { clock, wheel, errors, log, record };
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

describe('TimingWheel entries (objects that are their own timer)', () => {
  class Entry extends WheelEntry {
    constructor(
      readonly name: string,
      readonly ran: string[],
      readonly now: () => number,
    ) {
      super();
    }
    onWheelTimer(): void {
      this.ran.push(`${this.name}@${this.now()}`);
    }
  }

  it('runs once per start, in deadline order with tasks; stop, restart and a restart from its own callback', () => {
    const { clock, wheel, log, record } = setup();
    const a = new Entry('a', log, () => clock.now());
    const b = new Entry('b', log, () => clock.now());
    wheel.start(a, 50);
    wheel.start(b, 20);
    wheel.schedule(30, record, 't');
    expect(wheel.size).toBe(3);
    clock.advance(100);
    expect(log).toEqual(['b@20', 't@30', 'a@50']);
    expect(wheel.size).toBe(0);
    // Stopped before its deadline: it does not run; started again it does, at the new deadline.
    wheel.start(a, 10);
    wheel.stop(a);
    wheel.stop(a); // a no-op when not scheduled
    clock.advance(50);
    expect(log).toHaveLength(3);
    wheel.start(a, 10);
    wheel.start(a, 40); // moved, not added twice
    expect(wheel.size).toBe(1);
    clock.advance(50);
    expect(log.slice(3)).toEqual(['a@190']);
    // An entry that starts itself again from its callback (a keepalive check).
    let runs = 0;
    const again = new (class extends WheelEntry {
      onWheelTimer(): void {
        if (++runs < 3) wheel.start(this, 1000);
      }
    })();
    wheel.start(again, 1000);
    clock.advance(10 * 60 * 1000);
    expect(runs).toBe(3);
    expect(wheel.size).toBe(0);
  });
});

describe('TimingWheel one-shots', () => {
  it('fires at the deadline tick and not before', () => {
    const { clock, wheel, log, record } = setup();
    wheel.schedule(25, record, 'a'); // rounds up to the 30 ms tick
    wheel.schedule(30, record, 'b');
    wheel.after(1, () => record('c'));
    clock.advance(9);
    expect(log).toEqual([]);
    clock.advance(1);
    expect(log).toEqual(['c@10']);
    clock.advance(19);
    expect(log).toEqual(['c@10']);
    clock.advance(1);
    expect(log).toEqual(['c@10', 'a@30', 'b@30']);
    expect(wheel.size).toBe(0);
  });

  it('measures deadlines from the clock at schedule time, whatever the clock’s start', () => {
    const { clock, wheel, log, record } = setup(10, 123_456.5);
    clock.advance(3);
    wheel.schedule(100, record, 'x'); // due at 103 after start -> the tick ending at 110
    clock.advance(99);
    expect(log).toEqual([]);
    clock.advance(8);
    expect(log).toEqual(['x@110']);
  });

  it('a delay of 0 (or negative) runs on the driver’s next turn, never synchronously', () => {
    const { clock, wheel, log, record } = setup();
    clock.advance(10);
    wheel.schedule(0, record, 'zero');
    wheel.schedule(-5, record, 'neg');
    expect(log).toEqual([]);
    clock.advance(0);
    expect(log).toEqual(['zero@10', 'neg@10']);
  });

  it('cancel prevents firing; cancelling twice or after firing is harmless', () => {
    const { clock, wheel, log, record } = setup();
    const a = wheel.schedule(50, record, 'a');
    const b = wheel.schedule(50, record, 'b');
    expect(a.active).toBe(true);
    a.cancel();
    a.cancel();
    expect(a.active).toBe(false);
    expect(wheel.size).toBe(1);
    clock.advance(100);
    expect(log).toEqual(['b@50']);
    expect(b.active).toBe(false);
    b.cancel();
    expect(wheel.size).toBe(0);
  });

  it('reschedule moves a task and re-activates a fired or cancelled one', () => {
    const { clock, wheel, log, record } = setup();
    const a = wheel.schedule(50, record, 'a');
    clock.advance(20);
    a.reschedule(100); // now due at 120
    clock.advance(90);
    expect(log).toEqual([]);
    clock.advance(10);
    expect(log).toEqual(['a@120']);
    a.reschedule(10);
    expect(a.active).toBe(true);
    clock.advance(10);
    expect(log).toEqual(['a@120', 'a@130']);
    a.cancel();
    a.reschedule(5_000);
    clock.advance(5_000);
    expect(log).toEqual(['a@120', 'a@130', 'a@5130']);
  });

  it('fires in deadline order across slots and levels, schedule order within a tick', () => {
    const { clock, wheel, log, record } = setup();
    wheel.schedule(20_000, record, 'l1-b');
    wheel.schedule(3_000, record, 'l1-a');
    wheel.schedule(200, record, 'l0-c');
    wheel.schedule(150, record, 'l0-b');
    wheel.schedule(145, record, 'l0-a'); // same 150 ms tick as l0-b, scheduled later
    clock.advance(2_990);
    wheel.schedule(10, record, 'l1-a2'); // same tick as l1-a, which was cascaded from level 1
    clock.advance(17_010);
    expect(log).toEqual(['l0-b@150', 'l0-a@150', 'l0-c@200', 'l1-a@3000', 'l1-a2@3000', 'l1-b@20000']);
  });

  it('keeps schedule order for equal deadlines even when the earlier task is still on a higher level', () => {
    const { clock, wheel, log, record } = setup(1);
    wheel.schedule(300, record, 'first'); // level 1 until tick 256
    clock.advance(50);
    wheel.schedule(250, record, 'second'); // same tick 300
    clock.advance(250);
    expect(log).toEqual(['first@300', 'second@300']);
  });

  it.each([
    ['1 s', SECOND],
    ['3 min', 3 * MINUTE],
    ['2 h', 2 * HOUR],
    ['3 days', 3 * DAY],
    ['40 days', 40 * DAY],
    ['2 years (beyond the last level)', 730 * DAY],
  ])('a %s delay fires within one tick of its deadline', (_name, delay) => {
    const { clock, wheel, log, record } = setup();
    clock.advance(7); // not on a tick boundary
    wheel.schedule(delay + 3, record, 'x'); // due at delay + 10
    clock.advance(delay + 2);
    expect(log).toEqual([]);
    clock.advance(20);
    expect(log).toEqual([`x@${delay + 10}`]);
    expect(clock.pending).toBe(0);
    expect(clock.maxPending).toBe(1);
  });

  it('a delay beyond the last level still fires on time with a 1 ms tick (2^32 ticks is ~50 days)', () => {
    const { clock, wheel, log, record } = setup(1);
    const delays = [60 * DAY + 1, 49 * DAY + 17, 200 * DAY + 5, 60 * DAY + 1];
    delays.forEach((d, i) => {
      wheel.schedule(d, record, `t${i}`);
    });
    clock.advance(201 * DAY);
    expect(log).toEqual([
      `t1@${49 * DAY + 17}`,
      `t0@${60 * DAY + 1}`,
      `t3@${60 * DAY + 1}`,
      `t2@${200 * DAY + 5}`,
    ]);
  });
  it.each([1, 2, 3, 4])('a task in the last slot of level %i fires on time (1 ms tick)', (level) => {
    const { clock, wheel, log, record } = setup(1);
    const delay = 63 * 2 ** (2 + 6 * level) + 5;
    wheel.schedule(delay, record, 'last');
    clock.advance(delay - 1);
    expect(log).toEqual([]);
    clock.advance(1);
    expect(log).toEqual([`last@${delay}`]);
  });
});

describe('TimingWheel repeating', () => {
  it('every() runs each interval, without drift, until cancelled', () => {
    const { clock, wheel, log, record } = setup();
    const t = wheel.every(25, record, 'r'); // 25, 50, 75, 100 -> ticks 30, 50, 80, 100
    clock.advance(100);
    expect(log).toEqual(['r@30', 'r@50', 'r@80', 'r@100']);
    expect(t.active).toBe(true);
    expect(wheel.size).toBe(1);
    t.cancel();
    expect(wheel.size).toBe(0);
    expect(clock.pending).toBe(0);
    clock.advance(1_000);
    expect(log).toHaveLength(4);
  });

  it('a repeating task can cancel itself from its callback', () => {
    const { clock, wheel } = setup();
    const state: { timer?: WheelTimer; runs: number } = { runs: 0 };
    state.timer = wheel.every(
      1_000,
      (s) => {
        if (++s.runs === 3) s.timer?.cancel();
      },
      state,
    );
    clock.advance(10_000);
    expect(state.runs).toBe(3);
    expect(state.timer.active).toBe(false);
    expect(wheel.size).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('reschedule on a repeating task shifts its phase', () => {
    const { clock, wheel, log, record } = setup();
    const t = wheel.every(100, record, 'r');
    clock.advance(100);
    t.reschedule(30); // 130, then 230, 330
    clock.advance(200);
    expect(log).toEqual(['r@100', 'r@130', 'r@230']);
  });

  it('rejects a non-positive interval', () => {
    const { wheel } = setup();
    expect(() => wheel.every(0, () => {}, null)).toThrow(RangeError);
    expect(() => wheel.schedule(Number.NaN, () => {}, null)).toThrow(RangeError);
    expect(() => new TimingWheel({ tickMs: 0 })).toThrow(RangeError);
  });
});

describe('TimingWheel callbacks', () => {
  it('a throwing callback goes to onError and does not stop the others', () => {
    const { clock, wheel, errors, log, record } = setup();
    const boom = new Error('boom');
    wheel.schedule(10, record, 'a');
    wheel.after(10, () => {
      throw boom;
    });
    wheel.schedule(10, record, 'b');
    const r = wheel.every(10, record, 'r');
    wheel.every(
      10,
      () => {
        throw boom;
      },
      null,
    );
    clock.advance(20);
    expect(errors).toEqual([boom, boom, boom]);
    expect(log).toEqual(['a@10', 'b@10', 'r@10', 'r@20']);
    r.cancel();
    expect(wheel.size).toBe(1); // the throwing repeater is still scheduled
  });

  it('default onError is console.error', () => {
    const spy = vi.spyOn(console, 'error').mockImplementation(() => {});
    const clock = new FakeClock();
    const wheel = new TimingWheel({ clock });
    wheel.after(10, () => {
      throw new Error('x');
    });
    clock.advance(10);
    expect(spy).toHaveBeenCalledTimes(1);
    spy.mockRestore();
  });

  it('callbacks may schedule new tasks; those due before the end of advance() run in it', () => {
    const { clock, wheel, log, record } = setup();
    wheel.after(100, () => {
      record('parent');
      wheel.schedule(0, record, 'now');
      wheel.schedule(25, record, 'soon');
      wheel.schedule(5_000, record, 'later');
    });
    clock.advance(200);
    expect(log).toEqual(['parent@100', 'now@110', 'soon@130']);
    expect(wheel.size).toBe(1);
    clock.advance(5_000);
    expect(log.at(-1)).toBe('later@5100');
  });

  it('a callback may cancel or reschedule tasks of the same tick that have not run yet', () => {
    const { clock, wheel, log, record } = setup();
    const others: WheelTimer[] = [];
    wheel.after(50, () => {
      record('a');
      others[0]?.cancel();
      others[1]?.reschedule(40);
    });
    others.push(wheel.schedule(50, record, 'b'), wheel.schedule(50, record, 'c'));
    wheel.schedule(50, record, 'd');
    clock.advance(200);
    expect(log).toEqual(['a@50', 'd@50', 'c@90']);
  });

  it('a one-shot may reschedule itself from its callback', () => {
    const { clock, wheel, log } = setup();
    const state: { timer?: WheelTimer; n: number } = { n: 0 };
    state.timer = wheel.schedule(
      10,
      (s) => {
        log.push(`${clock.now()}`);
        if (++s.n < 4) s.timer?.reschedule(10);
      },
      state,
    );
    clock.advance(1_000);
    expect(log).toEqual(['10', '20', '30', '40']);
    expect(wheel.size).toBe(0);
  });
});

describe('TimingWheel driver and bookkeeping', () => {
  it('size counts scheduled tasks', () => {
    const { clock, wheel } = setup();
    const a = wheel.after(10, () => {});
    wheel.after(20, () => {});
    wheel.every(30, () => {}, null);
    expect(wheel.size).toBe(3);
    a.cancel();
    expect(wheel.size).toBe(2);
    clock.advance(30);
    expect(wheel.size).toBe(1);
  });

  it('arms one driver timer only while tasks exist, re-arming earlier for an earlier task', () => {
    const { clock, wheel, log, record } = setup();
    expect(clock.pending).toBe(0);
    const far = wheel.schedule(10 * MINUTE, record, 'far');
    expect(clock.pending).toBe(1);
    wheel.schedule(100, record, 'near');
    expect(clock.pending).toBe(1);
    clock.advance(100);
    expect(log).toEqual(['near@100']);
    expect(clock.pending).toBe(1);
    far.cancel();
    expect(clock.pending).toBe(0);
    wheel.schedule(10, record, 'x');
    clock.advance(10);
    expect(clock.pending).toBe(0);
    expect(clock.maxPending).toBe(1);
  });

  it('wakes rarely for far-off tasks (not every tick)', () => {
    const clock = new FakeClock();
    let wakes = 0;
    const counting = {
      now: () => clock.now(),
      setTimer: (fn: () => void, ms: number) =>
        clock.setTimer(() => {
          wakes++;
          fn();
        }, ms),
      clearTimer: (h: unknown) => clock.clearTimer(h),
    };
    const wheel = new TimingWheel({ clock: counting });
    let fired = 0;
    wheel.after(3 * DAY, () => fired++);
    clock.advance(3 * DAY);
    expect(fired).toBe(1);
    expect(wakes).toBeLessThan(100);
  });

  it('when the driver runs late, catches up in deadline order and skips missed repeats', () => {
    const clock = new FakeClock();
    const late = {
      now: () => clock.now(),
      setTimer: (fn: () => void, ms: number) => clock.setTimer(fn, ms + 1_000),
      clearTimer: (h: unknown) => clock.clearTimer(h),
    };
    const wheel = new TimingWheel({ clock: late });
    const log: string[] = [];
    const record = (name: string) => log.push(`${name}@${clock.now()}`);
    wheel.schedule(300, record, 'c');
    wheel.schedule(20, record, 'b');
    wheel.schedule(10, record, 'a');
    wheel.every(100, record, 'r');
    wheel.schedule(5_000, record, 'z');
    clock.advance(1_010);
    expect(log).toEqual(['a@1010', 'b@1010', 'r@1010', 'c@1010']);
    clock.advance(2_100);
    expect(log.slice(4)).toEqual(['r@2110']); // once per late run, not ten times
    clock.advance(3_300); // driver runs at 3210, 4310, 5410
    expect(log.slice(5)).toEqual(['r@3210', 'r@4310', 'r@5410', 'z@5410']);
  });

  it('close() cancels everything, disarms, and later scheduling throws', () => {
    const { clock, wheel, log, record } = setup();
    const a = wheel.schedule(10, record, 'a');
    wheel.every(10, record, 'b');
    wheel.close();
    wheel.close();
    expect(wheel.size).toBe(0);
    expect(a.active).toBe(false);
    expect(clock.pending).toBe(0);
    clock.advance(100);
    expect(log).toEqual([]);
    expect(() => wheel.after(10, () => {})).toThrow('wheel closed');
    expect(() => a.reschedule(10)).toThrow('wheel closed');
    a.cancel();
  });

  it('close() from a callback stops the tick', () => {
    const { clock, wheel, log, record } = setup();
    wheel.after(10, () => wheel.close());
    wheel.schedule(10, record, 'b');
    clock.advance(100);
    expect(log).toEqual([]);
    expect(clock.pending).toBe(0);
  });

  it('now() is the clock’s now', () => {
    const { clock, wheel } = setup(10, 42);
    clock.advance(8);
    expect(wheel.now()).toBe(50);
  });
});

interface Model {
  id: number;
  due: number;
  seq: number;
  interval: number;
  active: boolean;
  timer: WheelTimer;
}

type Op =
  | { op: 'schedule'; delay: number }
  | { op: 'every'; interval: number }
  | { op: 'cancel'; pick: number }
  | { op: 'reschedule'; pick: number; delay: number }
  | { op: 'advance'; ms: number };

/** Runs ops against the wheel and a plain reference model; checks fires, order, size and the driver. */
function check(tickMs: number, ops: Op[], finalAdvance: number): void {
  const clock = new WatchedClock();
  const wheel = new TimingWheel({ clock, tickMs, onError: (e) => expect.fail(String(e)) });
  const fired: string[] = [];
  const onFire = (m: Model) => fired.push(`${m.id}@${clock.now()}`);
  const tasks: Model[] = [];
  let seq = 0;
  const tickOf = (due: number) => Math.ceil(due / tickMs);

  const advance = (ms: number) => {
    const end = clock.now() + ms;
    const expected: string[] = [];
    for (;;) {
      let next: Model | undefined;
      for (const m of tasks) {
        if (!m.active || tickOf(m.due) * tickMs > end) continue;
        if (
          !next ||
          tickOf(m.due) < tickOf(next.due) ||
          (tickOf(m.due) === tickOf(next.due) && m.seq < next.seq)
        ) {
          next = m;
        }
      }
      if (!next) break;
      expected.push(`${next.id}@${tickOf(next.due) * tickMs}`);
      if (next.interval > 0) {
        next.due += next.interval;
        next.seq = seq++;
      } else next.active = false;
    }
    fired.length = 0;
    clock.advance(ms);
    expect(fired).toEqual(expected);
  };

  for (const o of ops) {
    const live = tasks.filter((m) => m.active);
    const pick = (n: number) => (tasks.length ? tasks[n % tasks.length] : undefined);
    if (o.op === 'schedule' || o.op === 'every') {
      const m = { id: tasks.length, seq: seq++, active: true } as Model;
      m.interval = o.op === 'every' ? o.interval : 0;
      m.due = clock.now() + (o.op === 'every' ? o.interval : o.delay);
      m.timer = o.op === 'every' ? wheel.every(o.interval, onFire, m) : wheel.schedule(o.delay, onFire, m);
      tasks.push(m);
    } else if (o.op === 'cancel') {
      const m = live.length ? live[o.pick % live.length] : pick(o.pick);
      m?.timer.cancel();
      if (m) m.active = false;
    } else if (o.op === 'reschedule') {
      const m = pick(o.pick);
      m?.timer.reschedule(o.delay);
      if (m) Object.assign(m, { active: true, due: clock.now() + o.delay, seq: seq++ });
    } else advance(o.ms);
    const active = tasks.filter((m) => m.active).length;
    expect(wheel.size).toBe(active);
    expect(clock.pending).toBe(active > 0 ? 1 : 0);
  }
  for (const m of tasks) {
    if (m.interval > 0) {
      m.timer.cancel();
      m.active = false;
    }
  }
  advance(finalAdvance);
  expect(wheel.size).toBe(0);
  expect(clock.pending).toBe(0);
  expect(clock.maxPending).toBeLessThanOrEqual(1);
  for (const m of tasks) expect(m.timer.active).toBe(false);
}

describe('TimingWheel against a reference model (fast-check)', () => {
  // Delays spread over every level, and past the last one with a 1 ms tick (2^32 ticks = 49.7 days).
  const delay = fc.oneof(
    fc.integer({ min: 1, max: 300 }),
    fc.integer({ min: 1, max: 20_000 }),
    fc.integer({ min: 1, max: 2 ** 22 }),
    fc.integer({ min: 1, max: 2 ** 27 }),
    fc.integer({ min: 1, max: 2 ** 34 }),
  );
  const advanceMs = fc.oneof(
    fc.integer({ min: 0, max: 300 }),
    fc.integer({ min: 0, max: 30_000 }),
    fc.integer({ min: 0, max: 2 ** 24 }),
    fc.integer({ min: 0, max: 2 ** 33 }),
  );
  const oneShotOp: fc.Arbitrary<Op> = fc.oneof(
    { arbitrary: fc.record({ op: fc.constant('schedule' as const), delay }), weight: 5 },
    { arbitrary: fc.record({ op: fc.constant('cancel' as const), pick: fc.nat() }), weight: 3 },
    { arbitrary: fc.record({ op: fc.constant('reschedule' as const), pick: fc.nat(), delay }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('advance' as const), ms: advanceMs }), weight: 1 },
  );

  it('one-shots: 100,000 random schedules, cancels, reschedules and advances', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 10),
        fc.array(oneShotOp, { minLength: 1000, maxLength: 1000 }),
        (t, ops) => check(t, ops, 2 ** 35),
      ),
      { numRuns: 100 },
    );
  });

  it('repeating and one-shot tasks together', () => {
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        arbitrary: fc.record({
          op: fc.constant('schedule' as const),
          delay: fc.integer({ min: 1, max: 5_000 }),
        }),
        weight: 3,
      },
      {
        arbitrary: fc.record({
          op: fc.constant('every' as const),
          interval: fc.integer({ min: 10, max: 3_000 }),
        }),
        weight: 1,
      },
      { arbitrary: fc.record({ op: fc.constant('cancel' as const), pick: fc.nat() }), weight: 2 },
      {
        arbitrary: fc.record({
          op: fc.constant('reschedule' as const),
          pick: fc.nat(),
          delay: fc.integer({ min: 1, max: 5_000 }),
        }),
        weight: 1,
      },
      {
        arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 2_000 }) }),
        weight: 2,
      },
    );
    fc.assert(
      fc.property(fc.constantFrom(1, 5, 10), fc.array(op, { minLength: 200, maxLength: 400 }), (t, ops) =>
        check(t, ops, 10_000),
      ),
      { numRuns: 100 },
    );
  });
});

describe('TimingWheel on the system clock', () => {
  it('a real 30 ms delay fires after 30 ms', async () => {
    const wheel = new TimingWheel();
    const start = performance.now();
    const elapsed = await new Promise<number>((resolve) => {
      wheel.after(30, () => resolve(performance.now() - start));
    });
    expect(elapsed).toBeGreaterThanOrEqual(30);
    expect(elapsed).toBeLessThan(1_000);
    expect(wheel.size).toBe(0);
    wheel.close();
    expect(systemClock.now()).toBeGreaterThan(start);
  });
});
