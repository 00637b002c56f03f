#!/usr/bin/env python3
"""A Pylon TCP client in Python 3, standard library only, written from PROTOCOL.md alone.

It speaks protocol v1: every frame is a 4-byte big-endian body length, then one envelope.
The `hello` is JSON; later frames use the codec it names: JSON, or (--codec proto) Protocol
Buffers, encoded by hand below from the schema in PROTOCOL.md's appendix (no protobuf library).
It sends `hello` (with a token), reads `welcome`, makes an `echo` request and prints the
answer, then (with --expect-push) waits for a push, acks it when it is qos 1, and says `bye`.

    python3 examples/python-client/client.py --host 127.0.0.1 --port 8081 --token alice --expect-push
    python3 examples/python-client/client.py --codec proto --token alice
"""

import argparse
import json
import socket
import struct
import sys
import time

MAX_FRAME = 1024 * 1024  # the server announces its own in welcome.maxFrame


# ---- Protobuf (PROTOCOL.md, appendix: message pylon.v1.Envelope) ----

KINDS = ["", "hello", "welcome", "req", "res", "msg", "push", "ack", "ping", "pong", "sub", "unsub", "kick", "bye"]


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf, i):
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def _field(number, wire_type):
    return _varint((number << 3) | wire_type)


def _bytes_field(number, data):
    return _field(number, 2) + _varint(len(data)) + data


def proto_encode(envelope):
    """The dict envelope as the bytes of pylon.v1.Envelope (data as UTF-8 JSON text, field 6)."""
    out = _field(1, 0) + _varint(KINDS.index(envelope["kind"]))
    if "id" in envelope:
        out += _field(2, 0) + _varint(envelope["id"])
    if "seq" in envelope:
        out += _field(3, 0) + _varint(envelope["seq"])
    if "type" in envelope:
        out += _bytes_field(4, envelope["type"].encode("utf-8"))
    if "qos" in envelope:
        out += _field(5, 0) + _varint(envelope["qos"])
    if "data" in envelope:
        out += _bytes_field(6, json.dumps(envelope["data"], separators=(",", ":")).encode("utf-8"))
    return out


def _proto_fields(buf):
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, i = _read_varint(buf, i)
        elif wire_type == 2:
            length, i = _read_varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire_type == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire_type == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ConnectionError(f"protobuf wire type {wire_type} is not in the schema")
        yield number, value


def proto_decode(buf):
    """pylon.v1.Envelope bytes as the same dict the JSON codec gives (unknown fields ignored)."""
    envelope = {}
    for number, value in _proto_fields(buf):
        if number == 1:
            envelope["kind"] = KINDS[value] if 0 < value < len(KINDS) else "unknown"
        elif number == 2:
            envelope["id"] = value
        elif number == 3:
            envelope["seq"] = value
        elif number == 4:
            envelope["type"] = value.decode("utf-8")
        elif number == 5:
            envelope["qos"] = value
        elif number == 6:
            envelope["data"] = json.loads(value.decode("utf-8"))
        elif number == 7:
            envelope["data"] = bytes(value)
        elif number == 8:
            error = dict(_proto_fields(value))
            envelope["error"] = {
                "code": error.get(1, b"").decode("utf-8"),
                "message": error.get(2, b"").decode("utf-8"),
            }
    return envelope


class PylonError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class Client:
    def __init__(self, host, port, timeout, codec="json"):
        self.codec = codec
        self.json_frames = True  # the hello is JSON whatever the codec (section 2)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.max_frame = MAX_FRAME
        self.next_id = 0

    # ---- framing (PROTOCOL.md section 1) ----

    def send(self, envelope):
        if self.json_frames:
            body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
        else:
            body = proto_encode(envelope)
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def _read_exactly(self, n):
        chunks = []
        while n > 0:
            chunk = self.sock.recv(min(n, 65536))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def receive(self):
        """The next envelope; answers pings on the way and raises on a kick."""
        while True:
            (length,) = struct.unpack(">I", self._read_exactly(4))
            if length > self.max_frame:
                raise ConnectionError(f"frame of {length} bytes is over the maximum")
            body = self._read_exactly(length)
            envelope = json.loads(body.decode("utf-8")) if self.json_frames else proto_decode(body)
            kind = envelope.get("kind")
            if kind == "ping":  # section 5: answer every ping, echoing its data
                pong = {"kind": "pong"}
                if "data" in envelope:
                    pong["data"] = envelope["data"]
                self.send(pong)
                continue
            if kind == "pong":
                continue
            if kind == "kick":  # section 7
                data = envelope.get("data") or {}
                raise ConnectionError(f"kicked: {data.get('code')} {data.get('name')} {data.get('reason')}")
            return envelope

    # ---- session (sections 4 and 6) ----

    def hello(self, token):
        data = {"codec": self.codec, "client": "pylon-python-example/1.0"}
        if token:
            data["token"] = token
        self.send({"kind": "hello", "data": data})
        self.json_frames = self.codec == "json"  # from the welcome on, the chosen codec
        welcome = self.receive()
        if welcome.get("kind") != "welcome":
            raise ConnectionError(f"expected welcome, got {welcome.get('kind')}")
        self.max_frame = welcome["data"].get("maxFrame", MAX_FRAME)
        return welcome["data"]

    def request(self, type_, data):
        self.next_id += 1
        rid = self.next_id
        self.send({"kind": "req", "id": rid, "type": type_, "data": data})
        while True:
            envelope = self.receive()
            if envelope.get("kind") == "res" and envelope.get("id") == rid:
                if "error" in envelope:
                    raise PylonError(envelope["error"]["code"], envelope["error"]["message"])
                return envelope.get("data")
            self.on_other(envelope)

    def on_other(self, envelope):
        if envelope.get("kind") == "push":
            self.handle_push(envelope)

    def handle_push(self, envelope):
        print(f"push {envelope.get('type')}: {json.dumps(envelope.get('data'))} (qos {envelope.get('qos', 0)})", flush=True)
        if envelope.get("qos") == 1:  # acks are cumulative, by the user's seq
            self.send({"kind": "ack", "seq": envelope["seq"]})
            print(f"acked seq {envelope['seq']}", flush=True)

    def wait_push(self):
        while True:
            envelope = self.receive()
            if envelope.get("kind") == "push":
                self.handle_push(envelope)
                return envelope

    def bye(self):
        try:
            self.send({"kind": "bye"})
            self.sock.shutdown(socket.SHUT_WR)
            while self.sock.recv(65536):  # wait for the server to close its side
                pass
        except OSError:
            pass
        finally:
            self.sock.close()


def main():
    parser = argparse.ArgumentParser(description="Pylon TCP client (JSON codec), standard library only")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="", help="credentials sent in hello (dev mode: the user id)")
    parser.add_argument("--message", default="hello from python", help="data of the echo request")
    parser.add_argument("--expect-push", action="store_true", help="wait for one push (acked if qos 1)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the server")
    parser.add_argument("--codec", choices=["json", "proto"], default="json", help="codec after the hello")
    args = parser.parse_args()

    client = Client(args.host, args.port, args.timeout, args.codec)
    try:
        welcome = client.hello(args.token)
        print(f"welcome: connection {welcome.get('connection')} user {welcome.get('user')} server {welcome.get('server')} codec {welcome.get('codec')}", flush=True)
        started = time.perf_counter()
        answer = client.request("echo", {"text": args.message})
        print(f"echo: {json.dumps(answer)} in {(time.perf_counter() - started) * 1000:.1f} ms", flush=True)
        if args.expect_push:
            print("waiting for a push", flush=True)
            client.wait_push()
    except (ConnectionError, PylonError, socket.timeout) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        client.bye()
    return 0


if __name__ == "__main__":
    sys.exit(main())
