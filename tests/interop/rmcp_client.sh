#!/usr/bin/env bash
# Runs examples/rmcp_client.rs (an rmcp client through the layer) against the interop servers:
# oidc-provider and the MCP server built with the official TypeScript SDK. Needs `npm ci` in
# tests/interop first (tests/interop/run.sh does it). Exits non-zero unless the example listed and
# called tools with client credentials.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -d tests/interop/node_modules ]; then
    echo "rmcp_client: run \`npm ci\` in tests/interop (needs Node >= 20)" >&2
    exit 1
fi
cargo build --features rmcp --example rmcp_client

field() { node -e 'const v = JSON.parse(process.argv[1]); console.log(process.argv[2].split(".").reduce((o, k) => o[k], v))' "$1" "$2"; }

# Both servers print one JSON line when ready and exit when their standard input closes: each
# reads from a FIFO this script holds open until the end.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkfifo "$tmp/as.in" "$tmp/mcp.in"

first_line() {  # waits (at most 30 s) for a server's ready line
    for _ in $(seq 300); do
        if [ -s "$1" ]; then head -n 1 "$1"; return 0; fi
        sleep 0.1
    done
    echo "rmcp_client: a server did not start (see $1)" >&2
    return 1
}

node tests/interop/authorization-server.mjs <"$tmp/as.in" >"$tmp/as.out" 2>/dev/null &
exec 3>"$tmp/as.in"
as_line="$(first_line "$tmp/as.out")"
node tests/interop/mcp-server.mjs --issuer "$(field "$as_line" issuer)" <"$tmp/mcp.in" >"$tmp/mcp.out" 2>/dev/null &
exec 4>"$tmp/mcp.in"
mcp_line="$(first_line "$tmp/mcp.out")"

status=0
MCP_CLIENT_SECRET="$(field "$as_line" clients.basic-client.secret)" \
    ./target/debug/examples/rmcp_client \
    --mcp-url "$(field "$mcp_line" url)" \
    --client-id basic-client || status=$?
exec 3>&- 4>&-
wait || true
exit "$status"
