#!/usr/bin/env bash
# Interop tests against third-party servers (see README.md beside this file): installs the
# servers' pinned packages (`npm ci`, from package-lock.json) and runs tests/interop.rs.
#
# usage: bash tests/interop/run.sh [TESTNAME ...] [-- LIBTEST OPTIONS]
#   (arguments go to `cargo test --features interop --test interop`)
#
# Needs Node >= 20 (`node` on PATH), npm, and the npm registry; nothing else. Exits non-zero if
# the install or any test fails; cargo prints its usual `test result:` summary.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

if ! version="$(node --version 2>/dev/null)"; then
    echo "interop: no \`node\` on PATH; run \`npm ci\` in tests/interop (needs Node >= 20)" >&2
    exit 1
fi
major="${version#v}"
major="${major%%.*}"
if [[ ! "$major" =~ ^[0-9]+$ ]] || (( major < 20 )); then
    echo "interop: node is $version; run \`npm ci\` in tests/interop (needs Node >= 20)" >&2
    exit 1
fi

started=$SECONDS
echo "==> npm ci in tests/interop (node $version, npm $(npm --version 2>/dev/null))"
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
echo "<== npm ci done in $((SECONDS - started))s"

started=$SECONDS
echo "==> cargo test --features interop --test interop $*"
cd "$ROOT"
cargo test --features interop --test interop "$@"
echo "<== interop tests done in $((SECONDS - started))s"
