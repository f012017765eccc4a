#!/usr/bin/env python3
"""A minimal decnet bus client written from SPEC §2 alone (standard library
only), as a Python DECNET worker would speak it. The Rust tests drive it to
prove the daemon is byte-compatible with Python workers.

    bus_client.py SOCKET pub TOPIC JSON [TYPE]
    bus_client.py SOCKET sub PATTERN COUNT [READY_FILE]
"""
import json
import socket
import struct
import sys


def send_frame(sock, header, body=b""):
    sock.sendall(header.encode("ascii") + b"\n" + struct.pack(">I", len(body)) + body)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("bus closed the connection")
        buf += chunk
    return buf


def recv_frame(sock):
    header = b""
    while not header.endswith(b"\n"):
        header += recv_exact(sock, 1)
    (length,) = struct.unpack(">I", recv_exact(sock, 4))
    body = recv_exact(sock, length)
    line = header.decode("ascii").rstrip("\r\n")
    verb, _, arg = line.partition(" ")
    return verb, arg.strip(), body


def main():
    path, mode = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    send_frame(sock, "HELLO python-worker")
    if mode == "pub":
        topic, payload = sys.argv[3], json.loads(sys.argv[4])
        event_type = sys.argv[5] if len(sys.argv) > 5 else "python"
        body = json.dumps({"type": event_type, "payload": payload}).encode("utf-8")
        send_frame(sock, "PUB " + topic, body)
        send_frame(sock, "BYE")
    elif mode == "sub":
        pattern, count = sys.argv[3], int(sys.argv[4])
        send_frame(sock, "SUB " + pattern)
        if len(sys.argv) > 5:
            open(sys.argv[5], "w").close()  # tell the test we are subscribed
        seen = 0
        while seen < count:
            verb, topic, body = recv_frame(sock)
            if verb != "EVT":
                raise SystemExit("unexpected frame " + verb)
            envelope = json.loads(body)
            assert envelope["topic"] == topic, (envelope, topic)
            print(json.dumps(envelope), flush=True)
            seen += 1
        send_frame(sock, "BYE")
    else:
        raise SystemExit("unknown mode " + mode)
    sock.close()


if __name__ == "__main__":
    main()
