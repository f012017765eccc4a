#!/usr/bin/env bash
# Run every check CI runs: formatting, lints (warnings are errors), and the
# whole test suite. Installs what the suite needs when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
command -v nats-server >/dev/null || need_apt+=(nats-server)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
# Native decky tests drive the real OpenSSH client (ssh-keygen comes with it).
command -v ssh >/dev/null || need_apt+=(openssh-client)
command -v sshpass >/dev/null || need_apt+=(sshpass)
# decky_capture.rs uploads and downloads with the real scp and sftp (also openssh-client).
{ command -v scp >/dev/null && command -v sftp >/dev/null; } || need_apt+=(openssh-client)
# up_senses.rs plays the attacker's HTTP client with the real curl.
command -v curl >/dev/null || need_apt+=(curl)
# Fingerprint tests: a real sshd as HASSH target (and, in native_deckies.rs,
# the reference the SSH deckies are measured against), the OpenSSH client as the
# independent view of its KEXINIT, openssl for the sniffer's TLS handshake.
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
# ssh_kexinit.rs compares the Dropbear camera decky with the real dropbear.
{ [ -x /usr/sbin/dropbear ] && command -v dropbearkey >/dev/null; } || need_apt+=(dropbear-bin)
# ingest_rotation.rs rotates the ingest logs with the real logrotate and
# deploy/decnet.logrotate while the collector writes.
command -v logrotate >/dev/null || [ -x /usr/sbin/logrotate ] || need_apt+=(logrotate)
command -v openssl >/dev/null || need_apt+=(openssl)
# util-linux logger: the real BSD-syslog client of the collector tests (bsdutils, normally present).
command -v logger >/dev/null || need_apt+=(bsdutils)
# util-linux script: the real pseudo-terminal shell_bot.rs types the bot session into (bsdutils too).
command -v script >/dev/null || need_apt+=(bsdutils)
# rsyslogd: the real relay whose forwarding formats the collector reads.
[ -x /usr/sbin/rsyslogd ] || need_apt+=(rsyslog)
# http_personas.rs compares the HTTP deckies with a real Apache and nginx
# (scripts/real-httpd starts them on loopback), asks nmap -sV -sC what it
# sees, and checks the certificate against ssl-cert's snakeoil template.
[ -x /usr/sbin/apache2 ] || need_apt+=(apache2)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v nmap >/dev/null || need_apt+=(nmap)
[ -f /usr/share/ssl-cert/ssleay.cnf ] || need_apt+=(ssl-cert)
# Line-protocol deckies: real vsftpd beside the FTP decky, nc as the telnet HTTP probe.
[ -x /usr/sbin/vsftpd ] || need_apt+=(vsftpd)
command -v nc >/dev/null || need_apt+=(netcat-openbsd)
# lan_placement.rs: deckies on a veth "LAN" in namespaces (iproute2), pinged
# from an attacker namespace; shared_ports.rs reads a socket's device with ss.
{ command -v ip && command -v ss; } >/dev/null || need_apt+=(iproute2)
command -v ping >/dev/null || need_apt+=(iputils-ping)
[ -x /usr/sbin/nft ] || need_apt+=(nftables)
# units.rs, install.rs: systemd-analyze verify/security of every shipped unit.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# Database deckies: Debian's mariadb and psql clients (services_databases.rs).
command -v mariadb >/dev/null || need_apt+=(mariadb-client)
command -v psql >/dev/null || need_apt+=(postgresql-client)
# services_iot.rs: the docker CLI against the Docker API decky, kubectl
# against the k8s one, Mosquitto's clients and a real broker to compare.
command -v docker >/dev/null || need_apt+=(docker.io)
command -v kubectl >/dev/null || need_apt+=(kubernetes-client)
command -v mosquitto_pub >/dev/null || need_apt+=(mosquitto-clients)
[ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
# Windows deckies (services_windows.rs): smbclient, ldapsearch, xfreerdp
# (an X11 client, run under Xvfb: +auth-only still opens the display).
command -v smbclient >/dev/null || need_apt+=(smbclient)
command -v ldapsearch >/dev/null || need_apt+=(ldap-utils)
command -v xfreerdp >/dev/null || need_apt+=(freerdp2-x11)
command -v xvfb-run >/dev/null || need_apt+=(xvfb xauth)
# x11vnc: the real VNC server the vnc decky is compared with.
command -v x11vnc >/dev/null || need_apt+=(x11vnc)
# services_stores.rs: the redis decky beside a real redis-server, driven by redis-cli.
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
# services_mail.rs: the imap and pop3 deckies beside a real Dovecot.
[ -x /usr/lib/dovecot/imap-login ] || need_apt+=(dovecot-imapd)
[ -x /usr/lib/dovecot/pop3-login ] || need_apt+=(dovecot-pop3d)
# UDP deckies (services_udp.rs): dig for dns and llmnr, snmpget/snmpwalk.
command -v dig >/dev/null || need_apt+=(bind9-dnsutils)
command -v snmpget >/dev/null || need_apt+=(snmp)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  if command -v apt-get >/dev/null && { [ ${#sudo[@]} = 0 ] || command -v sudo >/dev/null; }; then
    echo "==> installing ${need_apt[*]}"
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "warning: missing ${need_apt[*]} and cannot apt-get install; tests needing them will fail" >&2
  fi
fi

# The Python JARM reference (salesforce/jarm's algorithm) the JARM test
# compares against; the test says SKIP when it cannot be had.
if command -v python3 >/dev/null && ! python3 -c "import jarm.scanner.scanner" 2>/dev/null; then
  python3 -m pip install -q pyjarm >/dev/null 2>&1 || echo "warning: pip install pyjarm failed; the JARM reference comparison will be skipped" >&2
fi

# orjson, the JSON parser DECNET's Python bus client uses: the
# compatibility test reads every event with it (3.9+ documents the
# 1024-level nesting limit the daemon enforces).
if command -v python3 >/dev/null && ! python3 -c "import orjson, sys; sys.exit(tuple(map(int, orjson.__version__.split('.')[:2])) < (3, 9))" 2>/dev/null; then
  python3 -m pip install -q -U 'orjson>=3.9' >/dev/null 2>&1 || echo "warning: pip install orjson failed; the orjson compatibility test will fail" >&2
fi
# The SSH decky tests audit every persona with ssh-audit, as a scanner would.
if command -v python3 >/dev/null && ! command -v ssh-audit >/dev/null; then
  python3 -m pip install -q ssh-audit >/dev/null 2>&1 || echo "warning: pip install ssh-audit failed; the ssh-audit tests will fail" >&2
fi

# The mssql decky's client: python-tds, a pure-Python TDS driver.
if command -v python3 >/dev/null && ! python3 -c "import pytds" 2>/dev/null; then
  python3 -m pip install -q python-tds >/dev/null 2>&1 || echo "warning: pip install python-tds failed; the mssql client test will fail" >&2
fi

# The mongodb decky's client test drives it with pymongo (4.x speaks to
# MongoDB 4.4 and later, as the decky's current releases are).
if command -v python3 >/dev/null && ! python3 -c "import pymongo" 2>/dev/null; then
  python3 -m pip install -q pymongo >/dev/null 2>&1 || echo "warning: pip install pymongo failed; the mongodb client test will fail" >&2
fi

# The SIP decky tests scan and crack it with sipvicious (svmap, svcrack).
if command -v python3 >/dev/null && ! command -v sipvicious_svmap >/dev/null; then
  python3 -m pip install -q sipvicious >/dev/null 2>&1 || echo "warning: pip install sipvicious failed; the SIP client tests will fail" >&2
fi

# The session-recording test plays the decky's .cast files with the real
# asciinema CLI (`asciinema cat`).
if command -v python3 >/dev/null && ! command -v asciinema >/dev/null; then
  python3 -m pip install -q asciinema >/dev/null 2>&1 || echo "warning: pip install asciinema failed; the recording playback check will fail" >&2
fi

# services_iot.rs drives the Modbus decky with pymodbus (3.9+: device_id=).
if command -v python3 >/dev/null && ! python3 -c "import pymodbus.client, sys; sys.exit(tuple(map(int, pymodbus.__version__.split('.')[:2])) < (3, 9))" 2>/dev/null; then
  python3 -m pip install -q -U 'pymodbus>=3.9' >/dev/null 2>&1 || echo "warning: pip install pymodbus failed; the Modbus client test will fail" >&2
fi

# services_iot.rs reads the conpot PLC's S7comm identity with python-snap7
# (3.x: a pure-Python client, no libsnap7 needed).
if command -v python3 >/dev/null && ! python3 -c "import snap7.client" 2>/dev/null; then
  python3 -m pip install -q python-snap7 >/dev/null 2>&1 || echo "warning: pip install python-snap7 failed; the S7comm client test will fail" >&2
fi

# pycryptodome: DES and MD4 for the VNC client and the NetNTLMv2 check
# of the Windows decky tests (hashlib's MD4 is gone with OpenSSL 3).
if command -v python3 >/dev/null && ! python3 -c "import Crypto.Cipher.DES, Crypto.Hash.MD4" 2>/dev/null; then
  python3 -m pip install -q pycryptodome >/dev/null 2>&1 || echo "warning: pip install pycryptodome failed; the vnc and NTLM checks will fail" >&2
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
