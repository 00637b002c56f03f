// The dashboard's calls to the admin API. The admin key (when the server has keys) is kept in
// sessionStorage, for this tab only, and sent as `Authorization: Bearer <key>` on every call,
// the stats stream included: it is read with fetch() and a stream reader, not EventSource
// (which cannot send headers), so the key is never put in a URL.

const KEY = 'pylon.adminKey';

export function getKey() {
  return sessionStorage.getItem(KEY) ?? '';
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** An API answer that was not 2xx: `status`, and the server's `{error: {code, message}}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  const key = getKey();
  return key ? { authorization: `Bearer ${key}`, ...extra } : extra;
}

/** Calls `method path` with an optional JSON body; resolves with the parsed JSON answer. */
export async function api(method, path, body) {
  const init = { method, headers: headers(), cache: 'no-store' };
  if (body !== undefined) {
    init.headers = headers({ 'content-type': 'application/json' });
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const err = json?.error ?? {};
    throw new ApiError(res.status, err.code ?? `HTTP_${res.status}`, err.message ?? (text || res.statusText));
  }
  return json;
}

/**
 * Reads `GET /v1/stats/stream` (Server-Sent Events) until `signal` aborts, calling
 * `onSample(sample)` for each `data:` line and `onState('live' | 'reconnecting' | 'unauthorized')`.
 * Reconnects with backoff after an error; stops on 401.
 */
export async function streamStats(onSample, onState, signal) {
  let delay = 500;
  while (!signal.aborted) {
    try {
      const res = await fetch('/v1/stats/stream', { headers: headers(), cache: 'no-store', signal });
      if (res.status === 401) {
        onState('unauthorized');
        return;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      onState('live');
      delay = 500;
      await readEvents(res.body, onSample);
    } catch (err) {
      if (signal.aborted) return;
      console.warn('stats stream:', err);
    }
    if (signal.aborted) return;
    onState('reconnecting');
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10_000);
  }
}

async function readEvents(body, onSample) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trimStart())
        .join('\n');
      if (data) onSample(JSON.parse(data));
      end = buffer.indexOf('\n\n');
    }
  }
}
