import { afterEach, describe, expect, it } from 'vitest';
import { connect } from '../src/client/index.js';
import { once, RawTcp, startGateway, stopAll } from './support/gateway.js';

afterEach(stopAll);

describe('backpressure', () => {
  it('bounds the memory of a client that stops reading, drops its qos-0 pushes, then closes it as a slow consumer; others keep receiving', async () => {
    const highWaterMark = 64 * 1024;
    const { gateway, tcpUrl, wsUrl } = await startGateway({
      validate: (t) => ({ user: t as string }),
      highWaterMark,
      slowConsumerTimeout: 300,
    });
    const stuck = await RawTcp.open(tcpUrl);
    stuck.sendJson({ kind: 'hello', data: { token: 'stuck' } });
    await stuck.until((r) => r.frames.length === 1);
    stuck.socket.pause(); // stops reading: the kernel buffers fill, then the gateway's

    const healthy = await connect(wsUrl, { token: 'healthy', reconnect: false });
    let received = 0;
    healthy.on('blob', () => {
      received++;
    });
    const slow = gateway.connectionsOf('stuck')[0]!;
    const fast = gateway.connectionsOf('healthy')[0]!;
    const closed = once<{ code: number; name: string }>((resolve) =>
      gateway.on('disconnect', (c, info) => {
        if (c === slow) resolve(info);
      }),
    );

    const blob = 'x'.repeat(10 * 1024);
    let maxBuffered = 0;
    let sent = 0;
    const deadline = Date.now() + 15_000;
    while (slow.open && Date.now() < deadline) {
      // Pace to the healthy reader, as a real producer would: it must never be dropped.
      while (fast.buffered > highWaterMark / 2) await new Promise((r) => setTimeout(r, 1));
      await gateway.push({ all: true }, 'blob', blob);
      sent++;
      maxBuffered = Math.max(maxBuffered, slow.buffered);
    }
    const info = await closed;
    expect(info).toMatchObject({ code: 4004, name: 'slow_consumer' });
    // Bounded: never more than the high-water mark plus one message over it.
    expect(maxBuffered).toBeLessThan(highWaterMark + blob.length + 1024);
    expect(gateway.stats().pushesDropped).toBeGreaterThan(0);
    expect(gateway.stats().slowConsumers).toBe(1);
    await expect.poll(() => received, { timeout: 10_000 }).toBe(sent);
    stuck.destroy();
    await healthy.close();
  });
});
