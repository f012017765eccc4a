#!/usr/bin/env bash
# Issue 24's fleet scale: for each N, deploy N native deckies (ssh + http,
# loopback addresses 127.2.x.y, ports + 10000) in a scratch DECNET_HOME,
# time `decnet deploy`, then start `decnet mutator` and time until the
# last decky answers HTTP at its own address (sockets are made in name
# order, so it is the last to open), then serve one more request to it.
# Prints deploy seconds, seconds to all listening, the mutator's RSS and
# open descriptors. Every process it starts is stopped on exit.
#   scripts/bench-fleet.sh 1000 5000 10000
#   DECNET_BIN=target/release/decnet scripts/bench-fleet.sh 10000
set -euo pipefail
BIN=${DECNET_BIN:-target/debug/decnet}
sizes=("${@:-1000}")
printf '%8s %10s %14s %10s %8s\n' deckies deploy_s listening_s rss_mib fds
for n in "${sizes[@]}"; do
  home=$(mktemp -d /tmp/bench-fleet.XXXXXX)
  export DECNET_HOME=$home DECNET_DB=$home/decnet.db DECNET_BUS_SOCKET=$home/bus.sock \
    DECNET_INGEST_LOG_FILE=$home/ingest.log DECNET_NATIVE_PORT_OFFSET=10000 DECNET_MUTATOR_DRIVER=native \
    DECNET_NO_RECORDINGS=true
  python3 - "$n" >"$home/fleet.toml" <<'PY'
import sys
n = int(sys.argv[1])
print("interval = 600")
for i in range(n):
    print(f'[[decky]]\nname = "d{i:05d}"\narchetype = "linux-server"\nservices = ["ssh", "http"]')
PY
  t0=$(date +%s.%N)
  "$BIN" deploy --config "$home/fleet.toml" >"$home/deploy.out" 2>&1
  t1=$(date +%s.%N)
  last=$(sqlite3 "$home/decnet.db" "SELECT address FROM fleet_deckies WHERE name = 'd$(printf %05d $((n - 1)))'" 2>/dev/null || true)
  "$BIN" mutator --poll-secs 1 >"$home/mutator.out" 2>&1 &
  mutator=$!
  t2=$(date +%s.%N)
  # Until the last decky answers HTTP on its port: before that the port
  # refuses (or, on a shared port, resets), which opens no session.
  for _ in $(seq 1 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -m 1 "http://$last:10080/" || true)" = 200 ] && break
    sleep 0.05
  done
  t3=$(date +%s.%N)
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://$last:10080/" || true)
  rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$mutator/status)
  fds=$(ls /proc/$mutator/fd | wc -l)
  kill $mutator; wait $mutator 2>/dev/null || true
  printf '%8s %10.2f %14.2f %10s %8s   (last decky %s http %s)\n' "$n" "$(echo "$t1 - $t0" | bc)" "$(echo "$t3 - $t2" | bc)" "$rss" "$fds" "$last" "$code"
  rm -rf "$home"
done
