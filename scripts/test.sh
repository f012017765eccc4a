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
# up_senses.rs plays the attacker's HTTP client with the real curl.
command -v curl >/dev/null || need_apt+=(curl)
# Fingerprint tests: a real sshd as HASSH target, the OpenSSH client as the
# independent view of its KEXINIT, openssl for the sniffer's TLS handshake.
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v openssl >/dev/null || need_apt+=(openssl)
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

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
