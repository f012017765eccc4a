#!/usr/bin/env bash
# Build the Debian package of decnet with cargo-deb and inspect it.
#
#   scripts/build-deb.sh            # release build, .deb in target/debian/
#   scripts/build-deb.sh --no-build # package the existing target/release/decnet
#
# The package holds the same files `decnet install` embeds (see
# [package.metadata.deb] in crates/decnet/Cargo.toml). The release build
# takes minutes, which is why this is not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "cargo-deb is missing: cargo install --locked cargo-deb" >&2
    cargo install --locked cargo-deb
fi
command -v dpkg-deb >/dev/null || { echo "dpkg-deb (package dpkg) is needed to inspect the package" >&2; exit 1; }

# --strip: the release profile keeps line tables (debug = 1) for
# backtraces; the package ships the binary without them (187 MB -> 28 MB; the .deb is 8 MB).
cargo deb -p decnet --strip "$@"
deb=$(ls -t target/debian/decnet_*.deb | head -n 1)
echo "== $deb"
echo "== contents (dpkg-deb -c)"
dpkg-deb -c "$deb"
echo "== control (dpkg-deb -I)"
dpkg-deb -I "$deb"

# What must be in it: the binary, a unit per daemon, the logrotate snippet,
# the config and the maintainer script that makes the user.
contents=$(dpkg-deb -c "$deb")
missing=0
for path in ./usr/bin/decnet ./etc/logrotate.d/decnet ./etc/decnet/decnet.toml; do
    grep -q " $path\$" <<<"$contents" || { echo "missing from the package: $path" >&2; missing=1; }
done
for unit in deploy/*.service; do
    grep -q " ./lib/systemd/system/$(basename "$unit")\$" <<<"$contents" \
        || { echo "missing from the package: $unit" >&2; missing=1; }
done
dpkg-deb -I "$deb" postinst | grep -q adduser || { echo "postinst does not create the user" >&2; missing=1; }
dpkg-deb -I "$deb" conffiles | grep -q /etc/decnet/decnet.toml || { echo "the config is not a conffile" >&2; missing=1; }
[ "$missing" = 0 ] || exit 1

if command -v lintian >/dev/null; then
    echo "== lintian"
    # Informational: a cargo-deb package has no Debian changelog or man page.
    lintian --no-tag-display-limit "$deb" || true
else
    echo "(lintian not installed: apt-get install lintian for the policy check)"
fi
echo "ok: $deb"
