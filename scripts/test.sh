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

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
