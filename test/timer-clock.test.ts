import { describe, expect, it } from 'vitest';
import { FakeClock, systemClock } from '../src/timer/clock.js';

describe('FakeClock', () => {
  it('starts at 0 or at the given start, and only moves on advance()', () => {
    expect(new FakeClock().now()).toBe(0);
    const clock = new FakeClock(1000);
    expect(clock.now()).toBe(1000);
    clock.advance(250);
    expect(clock.now()).toBe(1250);
    clock.advance(0);
    expect(clock.now()).toBe(1250);
  });

  it('runs due timers in deadline order, ties in the order set, with now() at each deadline', () => {
    const clock = new FakeClock();
    const log: string[] = [];
    const at = (name: string) => () => log.push(`${name}@${clock.now()}`);
    clock.setTimer(at('c'), 30);
    clock.setTimer(at('a'), 10);
    clock.setTimer(at('b1'), 20);
    clock.setTimer(at('b2'), 20);
    clock.setTimer(at('late'), 31);
    clock.advance(30);
    expect(log).toEqual(['a@10', 'b1@20', 'b2@20', 'c@30']);
    expect(clock.now()).toBe(30);
    expect(clock.pending).toBe(1);
    clock.advance(1);
    expect(log.at(-1)).toBe('late@31');
    expect(clock.pending).toBe(0);
  });

  it('runs timers set by callbacks during advance when they are due before the end', () => {
    const clock = new FakeClock();
    const log: number[] = [];
    const tick = () => {
      log.push(clock.now());
      clock.setTimer(tick, 7);
    };
    clock.setTimer(tick, 7);
    clock.advance(30);
    expect(log).toEqual([7, 14, 21, 28]);
    expect(clock.pending).toBe(1);
    expect(clock.now()).toBe(30);
  });

  it('treats zero, negative and NaN delays as due now', () => {
    const clock = new FakeClock(5);
    const log: number[] = [];
    clock.setTimer(() => log.push(clock.now()), 0);
    clock.setTimer(() => log.push(clock.now()), -10);
    clock.setTimer(() => log.push(clock.now()), Number.NaN);
    clock.advance(0);
    expect(log).toEqual([5, 5, 5]);
  });

  it('clearTimer removes a timer, and pending counts what is left', () => {
    const clock = new FakeClock();
    let fired = 0;
    const a = clock.setTimer(() => fired++, 10);
    clock.setTimer(() => fired++, 10);
    expect(clock.pending).toBe(2);
    clock.clearTimer(a);
    clock.clearTimer(a);
    expect(clock.pending).toBe(1);
    clock.advance(10);
    expect(fired).toBe(1);
    expect(clock.pending).toBe(0);
  });

  it('rejects a negative advance', () => {
    expect(() => new FakeClock().advance(-1)).toThrow(RangeError);
  });
});

describe('systemClock', () => {
  it('now() is performance.now() and monotonic', () => {
    const a = systemClock.now();
    const b = systemClock.now();
    expect(b).toBeGreaterThanOrEqual(a);
    expect(Math.abs(a - performance.now())).toBeLessThan(1000);
  });

  it('setTimer fires after the delay, and its handle is unref’d', async () => {
    const start = systemClock.now();
    let handle: unknown;
    await new Promise<void>((resolve) => {
      handle = systemClock.setTimer(resolve, 20);
      expect((handle as NodeJS.Timeout).hasRef()).toBe(false);
    });
    expect(systemClock.now() - start).toBeGreaterThanOrEqual(19);
  });

  it('clearTimer cancels', async () => {
    let fired = false;
    const handle = systemClock.setTimer(() => {
      fired = true;
    }, 5);
    systemClock.clearTimer(handle);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(fired).toBe(false);
  });
});
