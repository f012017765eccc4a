#!/usr/bin/env bash
# Capture what Debian's real database servers send, for the mysql and
# postgres deckies (crates/decnet-decky/src/services/{mysql,postgres}.rs
# hold the bytes this printed on Debian 12: the MariaDB handshake, the
# PostgreSQL errors with their F/L/R fields).
#
# Starts mariadbd and PostgreSQL 15 from Debian's packages on loopback
# high ports in a temporary directory, sends each the probes the deckies
# are compared on, prints the answers, and stops them. Run as root on
# Debian 12 with mariadb-server and postgresql-15 installed.
set -euo pipefail

work=$(mktemp -d /tmp/decnet-db-facts.XXXXXX)
chmod 777 "$work"
cleanup() {
  [ -f "$work/my.pid" ] && kill "$(cat "$work/my.pid")" 2>/dev/null || true
  su postgres -c "/usr/lib/postgresql/15/bin/pg_ctl -D $work/pg stop -m immediate" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/my" && chown mysql:mysql "$work/my"
mariadb-install-db --user=mysql --datadir="$work/my" >/dev/null 2>&1
mariadbd --user=mysql --datadir="$work/my" --port=33061 --bind-address=127.0.0.1 \
  --socket="$work/my.sock" --pid-file="$work/my.pid" >"$work/mysqld.log" 2>&1 &
mkdir "$work/pg" && chown postgres "$work/pg"
echo secret >"$work/pwfile" && chmod 644 "$work/pwfile"
su postgres -c "/usr/lib/postgresql/15/bin/initdb -D $work/pg -A scram-sha-256 --pwfile=$work/pwfile" >/dev/null
su postgres -c "/usr/lib/postgresql/15/bin/pg_ctl -D $work/pg -o '-p 54321 -k $work -c listen_addresses=127.0.0.1' -l $work/pg.log start" >/dev/null
for _ in $(seq 30); do [ -S "$work/my.sock" ] && break; sleep 1; done

echo "== mariadbd $(mariadbd --version | awk '{print $3}')"
python3 - <<'EOF'
import socket
s = socket.create_connection(("127.0.0.1", 33061))
print("handshake:", s.recv(4096).hex())
EOF
mariadb -h127.0.0.1 -P33061 -unobody -pwrong -e 'select 1' 2>&1 || true

echo "== postgres $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}')"
python3 - <<'EOF'
import socket, struct

def conn():
    return socket.create_connection(("127.0.0.1", 54321))

def startup(params, terminated=True):
    body = struct.pack("!I", 196608) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params)
    body += b"\0" if terminated else b""
    return struct.pack("!I", len(body) + 4) + body

def msg(kind, body):
    return kind + struct.pack("!I", len(body) + 4) + body

# nmap's SMBProgNeg probe, read by PostgreSQL as a startup packet.
smb = (b"\0\0\0\xa4\xff\x53\x4d\x42\x72\0\0\0\0\x08\x01\x40" + b"\0" * 14 + b"\x40\x06\0\0\x01\0\0\x81\0"
       + b"\x02PC NETWORK PROGRAM 1.0\0\x02MICROSOFT NETWORKS 1.03\0\x02MICROSOFT NETWORKS 3.0\0\x02LANMAN1.0\0"
       + b"\x02LM1.2X002\0\x02Samba\0\x02NT LANMAN 1.0\0\x02NT LM 0.12\0")
s = conn(); s.send(smb); print("unsupported protocol:", s.recv(4096))
s = conn(); s.send(startup([("database", "x")])); print("no user:", s.recv(4096))
s = conn(); s.send(startup([("user", "bob")], False)); print("no terminator:", s.recv(4096))
s = conn(); s.send(startup([("user", "bob")])); print("auth request:", s.recv(4096))
s.send(msg(b"Q", b"abcd\0")); print("wrong message:", s.recv(4096))
s = conn(); s.send(startup([("user", "bob")])); s.recv(4096)
first = b"n,,n=,r=abcdefghijklmnopqrstuvwx"
s.send(msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)); print("server-first:", s.recv(4096))
s.send(msg(b"p", b"c=biws,r=zz")); print("bad final:", s.recv(4096))
s = conn(); s.send(startup([("user", "bob")])); s.recv(4096)
s.send(msg(b"p", b"X\0" + struct.pack("!i", 1) + b"a")); print("bad mechanism:", s.recv(4096))
EOF
