"""A VNC client doing RFB 3.8 VNC authentication with a known password,
as every VNC viewer does it (DES of the server's challenge, the key the
password's bytes with their bits reversed). Prints what it sent and what
the server answered as JSON, so the decnet test can compare the decky's
record with an independent computation.

usage: vnc_client.py HOST PORT PASSWORD
"""
import json
import socket
import struct
import sys

from Crypto.Cipher import DES


def vnc_key(password: str) -> bytes:
    raw = password.encode("latin-1")[:8].ljust(8, b"\0")
    return bytes(int(f"{b:08b}"[::-1], 2) for b in raw)


def recv_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def main() -> None:
    host, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.create_connection((host, port), timeout=10)
    version = recv_exact(s, 12)
    s.sendall(b"RFB 003.008\n")
    (count,) = struct.unpack("B", recv_exact(s, 1))
    types = list(recv_exact(s, count))
    s.sendall(b"\x02")
    challenge = recv_exact(s, 16)
    response = DES.new(vnc_key(password), DES.MODE_ECB).encrypt(challenge)
    s.sendall(response)
    (result,) = struct.unpack(">I", recv_exact(s, 4))
    (n,) = struct.unpack(">I", recv_exact(s, 4))
    reason = recv_exact(s, n).decode()
    print(json.dumps({
        "version": version.decode(),
        "types": types,
        "challenge": challenge.hex().upper(),
        "response": response.hex().upper(),
        "result": result,
        "reason": reason,
    }))


main()
