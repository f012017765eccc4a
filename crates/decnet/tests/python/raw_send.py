"""Send bytes (hex) to HOST:PORT, then read until the server closes (at
most 10 s). Prints what came back, hex. For the decky tests' hostile
inputs: a client that lies about lengths or sends garbage.

usage: raw_send.py HOST PORT HEX [READ_FIRST_BYTES]
"""
import socket
import sys

host, port, data = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.create_connection((host, port), timeout=10)
if len(sys.argv) > 4:
    got = b""
    while len(got) < int(sys.argv[4]):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
s.sendall(data)
back = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        back += chunk
except (socket.timeout, ConnectionResetError):
    pass
print(back.hex())
