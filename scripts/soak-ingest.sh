#!/usr/bin/env bash
# Issue 25's hostile loads (decnet-bench soak-ingest) against a collector
# and one native decky (telnet on 127.1.25.1:10023) in a scratch
# DECNET_HOME; every process it starts is stopped on exit.
#   SECS=5 scripts/soak-ingest.sh        # binaries from target/debug
#   SECS=20 LOADS=udp-flood,stalled-collector scripts/soak-ingest.sh
#   DECNET_BIN=target/release/decnet DECNET_BENCH_BIN=target/release/decnet-bench scripts/soak-ingest.sh
set -euo pipefail
BIN=${DECNET_BIN:-target/debug/decnet}
BENCH=${DECNET_BENCH_BIN:-target/debug/decnet-bench}
SECS=${SECS:-5}
home=$(mktemp -d /tmp/soak-ingest.XXXXXX)
export DECNET_HOME=$home DECNET_DB=$home/decnet.db DECNET_BUS_SOCKET=$home/bus.sock \
  DECNET_INGEST_LOG_FILE=$home/ingest.log DECNET_NATIVE_PORT_OFFSET=10000 DECNET_MUTATOR_DRIVER=native
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  wait || true
  rm -rf "$home"
}
trap cleanup EXIT
printf '[[decky]]\nname = "soak-01"\nservices = ["telnet"]\naddress = "127.1.25.1"\n' >"$home/fleet.toml"
"$BIN" bus >"$home/bus.out" 2>&1 & pids+=($!)
sleep 1
"$BIN" collector --no-docker --listen 127.0.0.1:15514 >"$home/collector.out" 2>&1 & collector=$!; pids+=($collector)
"$BIN" deploy --config "$home/fleet.toml" >/dev/null
"$BIN" mutator --poll-secs 1 >"$home/mutator.out" 2>&1 & mutator=$!; pids+=($mutator)
for _ in $(seq 1 100); do
  # 127.1.25.1:10023 listening (little-endian address, state 0A), read
  # from /proc so the wait opens no session on the honeypot.
  if grep -q '0119017F:2727 00000000:0000 0A' /proc/net/tcp; then break; fi
  sleep 0.2
done
"$BENCH" soak-ingest --collector-pid "$collector" --mutator-pid "$mutator" --collector-addr 127.0.0.1:15514 \
  --ingest-log "$home/ingest.log" --telnet 127.1.25.1:10023 --secs "$SECS" ${LOADS:+--loads "$LOADS"}
