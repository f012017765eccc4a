#!/usr/bin/env bash
# Run Debian's real Docker daemon (docker.io, with its containerd and runc)
# on a loopback port, unpacked into a temporary directory (nothing is
# installed, no iptables, no bridge, vfs storage), and print the raw
# answers the docker_api decky reproduces: /_ping (GET, HEAD), OPTIONS,
# the router's 404, /version, /info, API versions too new and too old,
# Go's answer to an HTTP/1.1 request without Host, a create of a missing
# image, a create without an image and its start, a pull with no registry
# reachable, unknown containers and exec instances. The facts in
# crates/decnet-decky/src/services/docker_api.rs (header order, messages,
# component versions, BuildTime) come from this output.
#
# usage: scripts/real-dockerd.sh [port]   (as root; needs apt-get, dpkg-deb, curl, nc)
set -euo pipefail
port=${1:-23750}
work=$(mktemp -d)
cleanup() {
  [ -f "$work/dockerd.pid" ] && kill "$(cat "$work/dockerd.pid")" 2>/dev/null || true
  sleep 2
  # dockerd bind-mounts its data root; a daemon killed mid-start can leave it.
  umount "$work/data" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
(cd "$work" && apt-get download docker.io containerd runc >/dev/null 2>&1)
for deb in "$work"/*.deb; do
  dpkg-deb -x "$deb" "$work/root"
  echo "# $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"
done
export PATH="$work/root/usr/bin:$work/root/usr/sbin:$PATH"
dockerd --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
  -H "tcp://127.0.0.1:$port" --iptables=false --ip6tables=false --bridge=none \
  --storage-driver=vfs >"$work/dockerd.log" 2>&1 &
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$port/_ping" >/dev/null 2>&1 && break
  sleep 0.5
done
h="http://127.0.0.1:$port"
raw() { printf '%b' "$1" | nc -q 2 127.0.0.1 "$port"; echo; }
show() { echo "=== $*"; curl -sS -i "$@"; echo; }
echo "=== raw OPTIONS / HTTP/1.0"; raw 'OPTIONS / HTTP/1.0\r\n\r\n'
echo "=== raw GET / HTTP/1.0"; raw 'GET / HTTP/1.0\r\n\r\n'
echo "=== raw GET /version HTTP/1.1 without Host"; raw 'GET /version HTTP/1.1\r\n\r\n'
show "$h/_ping"
show -I "$h/_ping"
show "$h/version"
show "$h/info"
show "$h/v1.99/info"
show "$h/v1.11/info"
show "$h/images/json"
show -X POST -H 'Content-Type: application/json' -d '{"Image":"alpine","Cmd":["sh"]}' "$h/v1.41/containers/create?name=x"
show -X POST -H 'Content-Type: application/json' -d '{nope' "$h/v1.41/containers/create"
echo "=== create without an image, then start it"
id=$(curl -sS -X POST -H 'Content-Type: application/json' -d '{"Cmd":["sh"]}' "$h/v1.41/containers/create" | sed 's/.*"Id":"\([0-9a-f]*\)".*/\1/')
show -X POST "$h/v1.41/containers/$id/start"
show -X POST "$h/v1.41/images/create?fromImage=alpine&tag=latest"
show -X POST "$h/containers/abc/start"
show -X POST -H 'Content-Type: application/json' -d '{}' "$h/exec/abc/start"
