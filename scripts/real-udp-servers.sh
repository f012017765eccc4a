#!/usr/bin/env bash
# Print what this machine's real Debian BIND 9 and net-snmp answer, to
# compare with the dns and snmp deckies (crates/decnet-decky/src/services/
# dns.rs, snmp.rs): version.bind, the flags and status of an in-zone,
# missing and out-of-zone query from an authoritative-only named, and
# snmpd's system group, SET and wrong-community behaviour under Debian's
# shipped snmpd.conf values. Runs both inside a network namespace it makes
# and deletes (root; apt-get install bind9 snmpd bind9-dnsutils snmp).
set -euo pipefail

ns="dn-real-udp-$$"
dir="$(mktemp -d)"
cleanup() {
  [ -f "$dir/named.pid" ] && kill "$(cat "$dir/named.pid")" 2>/dev/null || true
  [ -f "$dir/snmpd.pid" ] && kill "$(cat "$dir/snmpd.pid")" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up

cat >"$dir/named.conf" <<EOF
options { directory "$dir"; listen-on { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; pid-file "$dir/named.pid"; dnssec-validation no; };
zone "corp.internal" { type master; file "$dir/db.corp"; };
EOF
cat >"$dir/db.corp" <<'EOF'
$TTL 604800
@ IN SOA ns-01.corp.internal. hostmaster.corp.internal. ( 2025120101 604800 86400 2419200 604800 )
@ IN NS ns-01.corp.internal.
ns-01 IN A 127.0.0.1
EOF
ip netns exec "$ns" /usr/sbin/named -c "$dir/named.conf" -u root -g >"$dir/named.log" 2>&1 &
cat >"$dir/snmpd.conf" <<'EOF'
agentAddress udp:127.0.0.1:161
rocommunity public default
sysLocation    Sitting on the Dock of the Bay
sysContact     Me <me@example.org>
EOF
ip netns exec "$ns" /usr/sbin/snmpd -f -Lo -C -c "$dir/snmpd.conf" -p "$dir/snmpd.pid" >"$dir/snmpd.log" 2>&1 &
sleep 3

echo "== named $(dpkg-query -W -f '${Version}' bind9)"
for q in "-c CH -t TXT version.bind" "ns-01.corp.internal A" "nothere.corp.internal A" "www.example.com A"; do
  echo "-- dig $q"
  # shellcheck disable=SC2086
  ip netns exec "$ns" dig @127.0.0.1 $q +tries=1 +time=2 | grep -E 'status|flags|WARNING|^[a-z0-9].*IN|TXT' || true
done
echo "== snmpd $(dpkg-query -W -f '${Version}' snmpd)"
ip netns exec "$ns" snmpget -v2c -c public 127.0.0.1 1.3.6.1.2.1.1.1.0 1.3.6.1.2.1.1.2.0 1.3.6.1.2.1.1.7.0 \
  1.3.6.1.2.1.2.2.1.3.1 1.3.6.1.2.1.2.2.1.5.1 1.3.6.1.2.1.25.1.3.0 1.3.6.1.2.1.25.1.7.0 || true
ip netns exec "$ns" snmpset -v2c -c public 127.0.0.1 1.3.6.1.2.1.1.5.0 s x || true
ip netns exec "$ns" snmpget -v2c -c wrong -t 1 -r 0 127.0.0.1 1.3.6.1.2.1.1.5.0 || true
