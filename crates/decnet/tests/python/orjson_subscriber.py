#!/usr/bin/env python3
"""A bus subscriber that reads events the way DECNET's Python client does:
every frame within the 1 MiB limit of SPEC §2 and every EVT body through
orjson.loads. Like that client, it gives up (exits non-zero) on the first
frame it cannot take, which in DECNET drops the connection and every
subscription on it; the Rust tests check the daemon never sends one.

    orjson_subscriber.py SOCKET PATTERN READY_FILE

Prints one line per event, `<type> <payload as JSON>`, and exits 0 after
an event of type "done".
"""
import socket
import struct
import sys

import orjson

MAX_BODY = 1_048_576
MAX_HEADER = 4096


def send_frame(sock, header, body=b""):
    sock.sendall(header.encode("ascii") + b"\n" + struct.pack(">I", len(body)) + body)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("bus closed the connection")
        buf += chunk
    return bytes(buf)


def recv_frame(sock):
    header = b""
    while not header.endswith(b"\n"):
        header += recv_exact(sock, 1)
        if len(header) > MAX_HEADER:
            raise SystemExit("header line over the limit")
    (length,) = struct.unpack(">I", recv_exact(sock, 4))
    if length > MAX_BODY:
        raise SystemExit(f"frame body of {length} bytes is over the 1 MiB limit")
    body = recv_exact(sock, length)
    verb, _, arg = header.decode("ascii").rstrip("\r\n").partition(" ")
    return verb, arg.strip(), body


def main():
    path, pattern, ready = sys.argv[1], sys.argv[2], sys.argv[3]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    send_frame(sock, "HELLO orjson-subscriber")
    send_frame(sock, "SUB " + pattern)
    open(ready, "w").close()
    while True:
        verb, topic, body = recv_frame(sock)
        if verb != "EVT":
            raise SystemExit("unexpected frame " + verb)
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise SystemExit(f"orjson cannot parse an event on {topic}: {e}")
        assert envelope["topic"] == topic, (envelope["topic"], topic)
        print(envelope["type"], orjson.dumps(envelope["payload"]).decode(), flush=True)
        if envelope["type"] == "done":
            break
    send_frame(sock, "BYE")
    sock.close()


if __name__ == "__main__":
    main()
