#!/usr/bin/env python3
"""A Pylon TCP client in Python 3, standard library only, written from PROTOCOL.md alone.

It speaks protocol v1 with the JSON codec: every frame is a 4-byte big-endian body length,
then one JSON envelope. It sends `hello` (with a token), reads `welcome`, makes an `echo`
request and prints the answer, then (with --expect-push) waits for a push, acks it when it
is qos 1, and says `bye`.

    python3 examples/python-client/client.py --host 127.0.0.1 --port 8081 --token alice --expect-push
"""

import argparse
import json
import socket
import struct
import sys
import time

MAX_FRAME = 1024 * 1024  # the server announces its own in welcome.maxFrame


class PylonError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class Client:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.max_frame = MAX_FRAME
        self.next_id = 0

    # ---- framing (PROTOCOL.md section 1) ----

    def send(self, envelope):
        body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
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
            envelope = json.loads(self._read_exactly(length).decode("utf-8"))
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
        data = {"codec": "json", "client": "pylon-python-example/1.0"}
        if token:
            data["token"] = token
        self.send({"kind": "hello", "data": data})
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
    args = parser.parse_args()

    client = Client(args.host, args.port, args.timeout)
    try:
        welcome = client.hello(args.token)
        print(f"welcome: connection {welcome.get('connection')} user {welcome.get('user')} server {welcome.get('server')}", flush=True)
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
