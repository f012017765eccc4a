#!/usr/bin/env bash
# Vendor asciinema-player (the dashboard's session replay) into the binary:
# installs the pinned npm release into a scratch folder and copies its
# standalone bundle, stylesheet and licence next to the dashboard.
#
#   scripts/vendor-asciinema-player.sh            # the pinned version
#   VERSION=3.19.0 scripts/vendor-asciinema-player.sh
#
# asciinema-player is Apache-2.0 (vendoring allowed; its LICENSE is kept
# beside the files). Its bundle includes solid-js (MIT), whose licence is
# kept as LICENSE.solid-js. The bundle inlines its terminal emulator as
# WebAssembly, hence 'wasm-unsafe-eval' in the dashboard's CSP
# (crates/decnet/src/api/dashboard.rs). Needs npm.
set -euo pipefail

VERSION="${VERSION:-3.18.0}"
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/crates/decnet/src/api/static/asciinema-player"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cd "$scratch"
npm init -y >/dev/null
npm install --no-audit --no-fund --ignore-scripts "asciinema-player@$VERSION" >/dev/null
pkg="$scratch/node_modules/asciinema-player"
license="$(node -p "require('$pkg/package.json').license")"
if [ "$license" != "Apache-2.0" ]; then
    echo "asciinema-player $VERSION is $license, not Apache-2.0: check it allows vendoring first" >&2
    exit 1
fi
mkdir -p "$dest"
cp "$pkg/dist/bundle/asciinema-player.min.js" "$pkg/dist/bundle/asciinema-player.css" "$pkg/LICENSE" "$dest/"
cp "$scratch/node_modules/solid-js/LICENSE" "$dest/LICENSE.solid-js"
echo "$VERSION" > "$dest/VERSION"
echo "asciinema-player $VERSION vendored into $dest"
