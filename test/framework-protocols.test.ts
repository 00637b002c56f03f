import { describe, expect, it } from 'vitest';
import { Connection, type ConnectionHost } from '../src/framework/connection.js';
import {
  encodeResponse,
  type HttpProtocolOptions,
  type HttpReply,
  type HttpRequest,
  httpProtocol,
} from '../src/framework/http.js';
import { frameProtocol, lengthProtocol, lineProtocol, type Protocol } from '../src/framework/protocol.js';
import { clientAddress, trustSet } from '../src/net/proxy.js';
import type { ProtocolError } from '../src/protocol/errors.js';
import { frame } from '../src/protocol/framing.js';
import { Reassembler } from '../src/protocol/reassembly.js';
import { FakeLink } from './support/fake-link.js';

/**
 * Runs bytes through the one reassembly loop with a protocol's `input`, as the socket layer
 * does for a framework connection (here on a FakeLink); returns what came out.
 */
function reader<In, Out>(protocol: Protocol<In, Out>, maxPacket = 1 << 20) {
  const messages: In[] = [];
  const errors: ProtocolError[] = [];
  const host: ConnectionHost<In, Out> = {
    protocol,
    highWaterMark: 1 << 20,
    report: () => {},
    bufferFull: () => {},
  };
  const link = new FakeLink();
  const conn = new Connection<In, Out>(1, link, link.info, host);
  link.owner = conn;
  const r = new Reassembler(maxPacket, (n) => Buffer.allocUnsafe(n));
  const length = (b: Uint8Array, c: Connection<In, Out>) => protocol.input(b, c);
  const take = (p: Uint8Array, c: Connection<In, Out>) => {
    if (c.state !== 'open') return false;
    messages.push(protocol.decode(p, c));
    return true;
  };
  return {
    conn,
    link,
    messages,
    errors,
    push(...chunks: Array<Uint8Array | string>) {
      for (const c of chunks) {
        if (conn.state !== 'open') return;
        try {
          r.push(Buffer.from(typeof c === 'string' ? Buffer.from(c) : c), length, take, conn);
        } catch (err) {
          errors.push(err as ProtocolError);
          conn.state = 'closing';
        }
      }
    },
  };
}

/** Every way of cutting `bytes` in two, and one byte at a time. */
function splits(bytes: Buffer): Buffer[][] {
  const out: Buffer[][] = [[bytes]];
  for (let i = 1; i < bytes.length; i++) out.push([bytes.subarray(0, i), bytes.subarray(i)]);
  out.push([...bytes].map((b) => Buffer.from([b])));
  return out;
}

function expectSame<In>(protocol: Protocol<In, unknown>, bytes: Buffer, expected: In[]): void {
  for (const chunks of splits(bytes)) {
    const r = reader(protocol);
    r.push(...chunks);
    expect(r.errors).toEqual([]);
    expect(r.messages).toEqual(expected);
  }
}

describe('frame protocol', () => {
  const p = frameProtocol();
  const a = Buffer.from(frame(Buffer.from('{"kind":"msg","type":"Echo","data":{"M":1}}')));
  const b = Buffer.from(frame(Buffer.from('{"type":"x","data":[1,2]}')));

  it('reads envelopes split anywhere and coalesced', () => {
    expectSame(p, Buffer.concat([a, b, a]), [
      { kind: 'msg', type: 'Echo', data: { M: 1 } },
      { kind: 'msg', type: 'x', data: [1, 2] },
      { kind: 'msg', type: 'Echo', data: { M: 1 } },
    ]);
  });

  it('encodes with the 4-byte header', () => {
    const bytes = p.encode({ kind: 'push', type: 'Echo', data: 1 }, reader(p).conn);
    expect(Buffer.from(bytes).readUInt32BE(0)).toBe(bytes.length - 4);
    expect(Buffer.from(bytes.subarray(4)).toString()).toBe('{"kind":"push","type":"Echo","data":1}');
  });

  it('refuses an over-size header before its body, and garbage JSON', () => {
    const r = reader(frameProtocol({ maxFrame: 10 }));
    r.push(Buffer.from([0, 0, 0, 11]));
    expect(r.errors[0]?.code).toBe('FRAME_TOO_LARGE');
    const g = reader(p);
    g.push(Buffer.from(frame(Buffer.from('not json'))));
    expect(g.errors[0]?.code).toBe('PROTOCOL');
  });
});

describe('line protocol', () => {
  it('reads \\n and \\r\\n lines split anywhere', () => {
    expectSame(lineProtocol(), Buffer.from('hello\r\nwörld\n\nlast\r\n'), ['hello', 'wörld', '', 'last']);
  });

  it('keeps an unfinished line until its newline', () => {
    const r = reader(lineProtocol());
    r.push('abc', 'def');
    expect(r.messages).toEqual([]);
    r.push('\nx');
    expect(r.messages).toEqual(['abcdef']);
  });

  it('allows exactly maxLength bytes (with \\r\\n) and refuses one more', () => {
    const ok = reader(lineProtocol({ maxLength: 4 }));
    ok.push('abcd\r\n', 'wxyz\n');
    expect(ok.messages).toEqual(['abcd', 'wxyz']);
    expect(ok.errors).toEqual([]);
    const tooLong = reader(lineProtocol({ maxLength: 4 }));
    tooLong.push('abcde\n');
    expect(tooLong.errors[0]?.code).toBe('FRAME_TOO_LARGE');
    const noNewline = reader(lineProtocol({ maxLength: 4 }));
    noNewline.push('ab', 'cdef');
    expect(noNewline.errors[0]?.code).toBe('FRAME_TOO_LARGE');
  });

  it('encodes with a trailing newline', () => {
    const p = lineProtocol();
    expect(Buffer.from(p.encode('hi', reader(p).conn)).toString()).toBe('hi\n');
  });
});

describe('length protocol', () => {
  const payloads = [Buffer.from('one'), Buffer.alloc(0), Buffer.from('three!')];
  const cases = [
    { name: 'hotpot u16 BE payload length', o: { header: 2 as const } },
    { name: 'hotpot u32 BE payload length', o: { header: 4 as const } },
    { name: 'goes u32 BE including the header', o: { header: 4 as const, includesHeader: true } },
    { name: 'woodpecker u16 LE', o: { header: 2 as const, byteOrder: 'le' as const } },
  ];
  for (const { name, o } of cases) {
    it(`${name}: round trip, split and coalesced`, () => {
      const p = lengthProtocol(o);
      const conn = reader(p).conn;
      const bytes = Buffer.concat(payloads.map((x) => Buffer.from(p.encode(x, conn))));
      expectSame(p, bytes, payloads);
    });
  }

  it('writes the header as documented', () => {
    const conn = reader(lengthProtocol()).conn;
    expect([...lengthProtocol({ header: 2 }).encode('ab', conn as never)]).toEqual([0, 2, 97, 98]);
    expect([...lengthProtocol({ header: 2, byteOrder: 'le' }).encode('ab', conn as never)]).toEqual([
      2, 0, 97, 98,
    ]);
    expect([...lengthProtocol({ includesHeader: true }).encode('ab', conn as never)]).toEqual([
      0, 0, 0, 6, 97, 98,
    ]);
  });

  it('refuses a length over max, and one shorter than its header', () => {
    const big = reader(lengthProtocol({ header: 2, max: 5 }));
    big.push(Buffer.from([0, 6]));
    expect(big.errors[0]?.code).toBe('FRAME_TOO_LARGE');
    const short = reader(lengthProtocol({ includesHeader: true }));
    short.push(Buffer.from([0, 0, 0, 3]));
    expect(short.errors[0]?.code).toBe('PROTOCOL');
  });
});

describe('http protocol', () => {
  const get = 'GET /hello?x=1 HTTP/1.1\r\nHost: a\r\nX-Many: 1\r\nx-many: 2\r\n\r\n';
  const post = 'POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello';
  const close = 'GET / HTTP/1.0\r\n\r\n';

  function requests(raw: string): HttpRequest[] {
    const r = reader(httpProtocol());
    r.push(raw);
    expect(r.errors).toEqual([]);
    return r.messages;
  }

  it('reads pipelined requests split anywhere', () => {
    for (const chunks of splits(Buffer.from(get + post + close))) {
      const r = reader(httpProtocol());
      r.push(...chunks);
      expect(r.errors).toEqual([]);
      expect(r.messages.map((m) => [m.method, m.path, m.query, m.version, m.keepAlive])).toEqual([
        ['GET', '/hello', 'x=1', '1.1', true],
        ['POST', '/echo', '', '1.1', true],
        ['GET', '/', '', '1.0', false],
      ]);
      expect(Buffer.from(r.messages[1]!.body).toString()).toBe('hello');
      expect(r.messages[0]!.headers['x-many']).toBe('1, 2');
    }
  });

  it('keep-alive: HTTP/1.1 unless close, HTTP/1.0 only when asked', () => {
    expect(requests('GET / HTTP/1.1\r\nConnection: close\r\n\r\n')[0]!.keepAlive).toBe(false);
    expect(requests('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n')[0]!.keepAlive).toBe(true);
  });

  function refused(raw: string, options: HttpProtocolOptions = {}): { status: number; code: string } {
    const p = httpProtocol(options);
    const r = reader(p);
    r.push(raw);
    const err = r.errors[0]!;
    const reply = Buffer.from(p.errorReply!(err, r.conn)!).toString();
    return { status: Number(reply.split(' ')[1]), code: err.code };
  }

  it('answers bad requests with a status and a protocol error', () => {
    expect(refused('POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n')).toEqual({
      status: 411,
      code: 'PROTOCOL',
    });
    expect(refused('GARBAGE\r\n\r\n')).toEqual({ status: 400, code: 'PROTOCOL' });
    expect(refused('GET / HTTP/2.0\r\n\r\n')).toEqual({ status: 505, code: 'PROTOCOL' });
    expect(refused('GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n')).toEqual({
      status: 400,
      code: 'PROTOCOL',
    });
    expect(refused('GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n').status).toBe(400);
    expect(refused('GET / HTTP/1.1\r\nBad Header: 1\r\n\r\n').status).toBe(400);
    expect(refused(`GET / HTTP/1.1\r\nX: ${'a'.repeat(200)}`, { maxHeaderSize: 100 })).toEqual({
      status: 431,
      code: 'FRAME_TOO_LARGE',
    });
    expect(refused('POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n', { maxBody: 10 })).toEqual({
      status: 413,
      code: 'FRAME_TOO_LARGE',
    });
  });

  it('encodes responses with Content-Length and the keep-alive of their request', () => {
    const p = httpProtocol();
    const r = reader(p);
    r.push(get + close);
    const first = Buffer.from(
      p.encode({ status: 201, headers: { 'X-A': 'b' }, body: 'héllo' }, r.conn),
    ).toString();
    expect(first).toMatch(/^HTTP\/1\.1 201 Created\r\n/);
    expect(first).toContain('\r\nX-A: b\r\n');
    expect(first).toContain('\r\nConnection: keep-alive\r\n');
    expect(first).toContain('\r\nContent-Length: 6\r\n');
    expect(first.endsWith('\r\n\r\nhéllo')).toBe(true);
    expect(r.conn.endAfterSend).toBeUndefined();
    const second = Buffer.from(p.encode(new Uint8Array([1, 2]) as HttpReply, r.conn)).toString('latin1');
    expect(second).toContain('Connection: close');
    expect(second).toContain('Content-Type: application/octet-stream');
    expect(r.conn.endAfterSend).toBeDefined();
  });

  it('refuses header injection and sends no body for 204 or HEAD', () => {
    expect(() => encodeResponse({ headers: { 'X-A': 'a\r\nSet-Cookie: x' } }, true, false)).toThrow(
      TypeError,
    );
    expect(Buffer.from(encodeResponse({ status: 204, body: 'x' }, true, false)).toString()).not.toContain(
      'x\r',
    );
    const head = Buffer.from(encodeResponse('hello', true, true)).toString();
    expect(head).toContain('Content-Length: 5');
    expect(head.endsWith('\r\n\r\n')).toBe(true);
  });
});

describe('trusted proxies', () => {
  const trusted = trustSet(['10.0.0.1', '10.0.0.2']);
  it('believes X-Forwarded-For only from a trusted peer, read from the right', () => {
    const h = { 'x-forwarded-for': '6.6.6.6, 1.2.3.4, 10.0.0.2' };
    expect(clientAddress('10.0.0.1', h, trusted)).toBe('1.2.3.4');
    expect(clientAddress('::ffff:10.0.0.1', h, trusted)).toBe('1.2.3.4');
    expect(clientAddress('9.9.9.9', h, trusted)).toBe('9.9.9.9');
    expect(clientAddress('10.0.0.1', { 'x-real-ip': '5.5.5.5' }, trusted)).toBe('5.5.5.5');
    expect(clientAddress('10.0.0.1', { 'x-forwarded-for': 'junk' }, trusted)).toBe('10.0.0.1');
    expect(() => trustSet(['not-an-ip'])).toThrow(TypeError);
  });

  it('takes CIDR ranges (an Ingress controller whose pods change addresses), IPv4 and IPv6', () => {
    const pods = trustSet(['10.244.0.0/16', 'fd00::/8', '192.168.1.7']);
    const h = { 'x-forwarded-for': '203.0.113.9, 10.244.3.1' };
    expect(clientAddress('10.244.7.12', h, pods)).toBe('203.0.113.9'); // hops in the range are skipped
    expect(clientAddress('::ffff:10.244.7.12', h, pods)).toBe('203.0.113.9');
    expect(clientAddress('fd12::5', h, pods)).toBe('203.0.113.9');
    expect(clientAddress('192.168.1.7', h, pods)).toBe('203.0.113.9');
    expect(clientAddress('10.245.0.1', h, pods)).toBe('10.245.0.1'); // outside: not believed
    expect(clientAddress('192.168.1.8', h, pods)).toBe('192.168.1.8');
    for (const bad of ['10.0.0.0/33', '10.0.0.0/x', '10.0.0.0/8/1', 'fd00::/129', 'host/8'])
      expect(() => trustSet([bad]), bad).toThrow(TypeError);
  });
});
