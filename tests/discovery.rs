//! Discovery end to end: RFC 9728 protected-resource metadata, RFC 8414 / OIDC authorization
//! server metadata, issuer binding, the `resource` parameter, scope selection and step-up, against
//! scripted loopback servers. Each test names the REFERENCE requirement (R-number) it checks.
//!
//! Layout of a standard [`World`]: the MCP server (`mcp`) serves its protected endpoint at `/mcp`
//! and its PRM at `/.well-known/oauth-protected-resource/mcp` (named by the 401 challenge); the
//! authorization server (`auth`) serves RFC 8414 metadata at its root well-known URL and a token
//! endpoint at `/token`.

mod support_scripted;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use support_scripted::{ScriptedServer, param};
use tower::{ServiceBuilder, ServiceExt as _};
use tower_client_credentials::{
    BoxError, ClientCredentials, ClientCredentialsBuilder, ClientCredentialsLayer, ConfigError,
    Credentials, Error, ErrorKind, ResourceParameter,
};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const CLIENT_ID: &str = "demo-client";
const CLIENT_SECRET: &str = "demo-secret";
const PRM_PATH: &str = "/.well-known/oauth-protected-resource/mcp";
const ROOT_PRM: &str = "/.well-known/oauth-protected-resource";
const AS_ROOT: &str = "/.well-known/oauth-authorization-server";
const OIDC_ROOT: &str = "/.well-known/openid-configuration";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Every await on the network goes through this: a hung test fails instead of blocking CI.
async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .expect("timed out after 5 s")
}

fn creds() -> Credentials {
    Credentials::client_secret(CLIENT_ID, CLIENT_SECRET).unwrap()
}

fn prm(resource: &str, servers: &[&str]) -> Value {
    json!({
        "resource": resource,
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
    })
}

/// Complete RFC 8414 metadata, including a registration endpoint that must never be used (R42).
fn as_metadata(issuer: &str, token_endpoint: &str) -> Value {
    json!({
        "issuer": issuer,
        "token_endpoint": token_endpoint,
        "registration_endpoint": format!("{issuer}/register"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "response_types_supported": ["token"],
    })
}

fn challenge(resource_metadata: &str) -> String {
    format!("Bearer resource_metadata=\"{resource_metadata}\"")
}

/// An authorization server at the root of its origin: metadata at the RFC 8414 root URL,
/// tokens at `/token`, and a registration endpoint trap.
async fn auth_server() -> ScriptedServer {
    let auth = ScriptedServer::start().await;
    auth.json(
        AS_ROOT,
        &as_metadata(&auth.url(), &format!("{}/token", auth.url())),
    );
    auth.token_route("/token", 3600);
    auth.route("POST", "/register", 201, Vec::new(), "{}".to_owned());
    auth
}

struct World {
    mcp: ScriptedServer,
    auth: ScriptedServer,
}

impl World {
    /// `http://127.0.0.1:PORT/mcp`.
    fn mcp_url(&self) -> String {
        format!("{}/mcp", self.mcp.url())
    }

    fn prm_url(&self) -> String {
        format!("{}{PRM_PATH}", self.mcp.url())
    }

    fn builder(&self) -> ClientCredentialsBuilder {
        ClientCredentialsLayer::builder(self.mcp_url(), creds())
            .unwrap()
            .insecure_allow_http_loopback()
    }

    fn token_requests(&self) -> Vec<Vec<(String, String)>> {
        self.auth.token_requests()
    }
}

/// The MCP server only: protected `/mcp` whose 401 names the path-aware PRM URL, and nothing
/// else (the PRM itself is left to the test).
async fn bare_world() -> World {
    let auth = auth_server().await;
    let mcp = ScriptedServer::start().await;
    mcp.accept_tokens_from(&auth);
    mcp.protected_route("/mcp", challenge(&format!("{}{PRM_PATH}", mcp.url())));
    World { mcp, auth }
}

/// The standard world: PRM at the path-aware well-known URL naming `auth`.
async fn world() -> World {
    let w = bare_world().await;
    w.mcp.json(PRM_PATH, &prm(&w.mcp_url(), &[&w.auth.url()]));
    w
}

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn service(layer: ClientCredentialsLayer) -> ClientCredentials<HttpClient> {
    ServiceBuilder::new().layer(layer).service(http_client())
}

fn rpc(url: &str, id: u64) -> Request<Full<Bytes>> {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}});
    Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn send(
    svc: &ClientCredentials<HttpClient>,
    url: &str,
    id: u64,
) -> Result<Response<Incoming>, BoxError> {
    bounded(svc.clone().oneshot(rpc(url, id))).await
}

fn auth_error(err: BoxError) -> Error {
    match err.downcast::<Error>() {
        Ok(err) => *err,
        Err(other) => panic!("expected a tower_client_credentials::Error, got {other:?}"),
    }
}

/// The error of a call that must fail with one of this crate's errors.
async fn send_err(svc: &ClientCredentials<HttpClient>, url: &str) -> Error {
    match send(svc, url, 1).await {
        Ok(response) => panic!(
            "expected an error, got HTTP {} ({:?})",
            response.status(),
            response.headers()
        ),
        Err(err) => auth_error(err),
    }
}

fn scope_set(scope: &str) -> BTreeSet<String> {
    scope.split(' ').map(str::to_owned).collect()
}

/// Whether `text` contains `word` delimited by characters that cannot be part of a scope token.
fn names_word(text: &str, word: &str) -> bool {
    text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | ',' | '[' | ']' | '`' | ':' | '(' | ')' | '{' | '}'
            )
    })
    .any(|part| part == word)
}

fn assert_kind(err: &Error, kind: ErrorKind) {
    assert_eq!(err.kind(), kind, "unexpected error: {err} / {err:?}");
}

// ---------------------------------------------------------------------------
// R66, R10, R11, R30, R63: the service flow
// ---------------------------------------------------------------------------

/// R66 (cold start: 401 → PRM → AS metadata → token → replay, 2 MCP attempts), R11 (the
/// challenge's `resource_metadata` first, no well-known probe), R10, R30 (`resource` sent), R63
/// (a `Full<Bytes>` body is replayed).
#[tokio::test]
async fn cold_start_follows_the_challenge_and_replays_once_with_the_token() {
    let w = bare_world().await;
    // The challenge names a non-standard PRM URL; both well-known PRM URLs are traps (R11).
    let prm_url = format!("{}/meta/prm.json", w.mcp.url());
    w.mcp.protected_route("/mcp", challenge(&prm_url));
    w.mcp
        .json("/meta/prm.json", &prm(&w.mcp_url(), &[&w.auth.url()]));
    w.mcp.json(PRM_PATH, &prm(&w.mcp_url(), &[&w.auth.url()]));
    w.mcp.json(ROOT_PRM, &prm(&w.mcp.url(), &[&w.auth.url()]));

    let svc = service(w.builder().build().unwrap());
    let response = send(&svc, &w.mcp_url(), 7).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    assert_eq!(
        w.mcp.lines(),
        ["POST /mcp", "GET /meta/prm.json", "POST /mcp"],
        "first attempt, PRM from the challenge URL, replay"
    );
    assert_eq!(w.mcp.hits(PRM_PATH), 0, "R11: no path-aware probe");
    assert_eq!(w.mcp.hits(ROOT_PRM), 0, "R11: root PRM is a trap");
    assert_eq!(
        w.auth.lines(),
        [format!("GET {AS_ROOT}"), "POST /token".to_owned()]
    );

    let tokens = w.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(param(&tokens[0], "grant_type"), Some("client_credentials"));
    assert_eq!(param(&tokens[0], "resource"), Some(w.mcp_url().as_str()));

    let requests = w.mcp.requests();
    let mcp_posts: Vec<_> = requests.iter().filter(|r| r.path() == "/mcp").collect();
    assert_eq!(
        mcp_posts[0].authorization, None,
        "first contact carries no token"
    );
    assert_eq!(
        mcp_posts[1].authorization.as_deref(),
        Some(format!("Bearer {}", w.auth.issued()[0]).as_str())
    );
    assert!(mcp_posts[0].body.contains("\"id\":7"));
    assert_eq!(
        mcp_posts[0].body, mcp_posts[1].body,
        "R63: the body is replayed"
    );
}

/// R66, R18, R29, R64: after the cold start, requests (from clones too) carry the token from the
/// start; PRM, AS metadata and the token are fetched once.
#[tokio::test]
async fn discovery_and_token_are_shared_by_later_requests_and_clones() {
    let w = world().await;
    let layer = w.builder().build().unwrap();
    let svc = service(layer.clone());
    assert_eq!(send(&svc, &w.mcp_url(), 1).await.unwrap().status(), 200);

    // More requests: through clones of the service and a second service from the same layer.
    let other = service(layer);
    let mut tasks = Vec::new();
    for id in 0..20 {
        let svc = if id % 2 == 0 {
            svc.clone()
        } else {
            other.clone()
        };
        let url = w.mcp_url();
        tasks.push(tokio::spawn(async move {
            send(&svc, &url, id + 2).await.map(|r| r.status())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(w.mcp.hits(PRM_PATH), 1);
    assert_eq!(w.auth.hits(AS_ROOT), 1);
    assert_eq!(w.token_requests().len(), 1);
    assert_eq!(w.mcp.hits("/mcp"), 22, "2 for the cold start, then 1 each");
    let token = format!("Bearer {}", w.auth.issued()[0]);
    let posts: Vec<_> = w
        .mcp
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/mcp")
        .collect();
    for post in &posts[1..] {
        assert_eq!(post.authorization.as_deref(), Some(token.as_str()));
    }
}

/// R64 (single flight) with R66: many concurrent first requests all get 401, yet discovery and
/// the token request happen once, and every request succeeds after its replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_share_one_discovery() {
    let w = world().await;
    let svc = service(w.builder().build().unwrap());
    let mut tasks = Vec::new();
    for id in 0..10 {
        let svc = svc.clone();
        let url = w.mcp_url();
        tasks.push(tokio::spawn(async move {
            send(&svc, &url, id).await.map(|r| r.status())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(w.mcp.hits(PRM_PATH), 1);
    assert_eq!(w.auth.hits(AS_ROOT), 1);
    assert_eq!(w.token_requests().len(), 1);
    let hits = w.mcp.hits("/mcp");
    assert!((11..=20).contains(&hits), "{hits} MCP attempts");
}

/// `cache_key()` is `None` before discovery and names the discovered issuer and the PRM
/// `resource` after it (R20, R64).
#[tokio::test]
async fn cache_key_appears_after_discovery() {
    let w = world().await;
    let layer = w.builder().scopes(["b", "a"]).unwrap().build().unwrap();
    assert!(layer.cache_key().is_none());
    bounded(layer.warm_up()).await.unwrap();
    let key = layer.cache_key().expect("a cache key after discovery");
    assert_eq!(key.issuer(), w.auth.url());
    assert_eq!(key.resource(), w.mcp_url());
    assert_eq!(key.scope(), "a b");
}

// ---------------------------------------------------------------------------
// R12, R13, R14: well-known PRM URLs without a challenge
// ---------------------------------------------------------------------------

/// R12: without a challenge, the path-aware PRM URL is tried first; when it answers, nothing else
/// is probed.
#[tokio::test]
async fn warm_up_reads_the_path_aware_prm_first() {
    let w = world().await;
    w.mcp.json(ROOT_PRM, &prm(&w.mcp.url(), &[&w.auth.url()]));
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    assert_eq!(w.mcp.lines(), [format!("GET {PRM_PATH}")]);
    assert_eq!(w.token_requests().len(), 1);
    assert_eq!(
        param(&w.token_requests()[0], "resource"),
        Some(w.mcp_url().as_str())
    );
}

/// R12, R14: path-aware PRM 404 → the root PRM is used (its `resource` is the origin, R15).
#[tokio::test]
async fn warm_up_falls_back_to_the_root_prm_after_a_404() {
    let w = bare_world().await;
    w.mcp.json(ROOT_PRM, &prm(&w.mcp.url(), &[&w.auth.url()]));
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    assert_eq!(
        w.mcp.lines(),
        [format!("GET {PRM_PATH}"), format!("GET {ROOT_PRM}")]
    );
    let tokens = w.token_requests();
    assert_eq!(tokens.len(), 1);
    // R31: the PRM `resource` verbatim, a bare origin without a trailing slash.
    assert_eq!(param(&tokens[0], "resource"), Some(w.mcp.url().as_str()));
}

/// R14: a 503 at the path-aware PRM URL is a transient discovery error; the root is not tried.
#[tokio::test]
async fn a_503_prm_is_a_transient_error_and_the_root_is_not_tried() {
    let w = bare_world().await;
    w.mcp.route("GET", PRM_PATH, 503, Vec::new(), String::new());
    w.mcp.json(ROOT_PRM, &prm(&w.mcp.url(), &[&w.auth.url()]));
    let layer = w.builder().build().unwrap();
    let err = bounded(layer.warm_up()).await.unwrap_err();
    assert_kind(&err, ErrorKind::Discovery);
    assert!(err.is_transient(), "{err}");
    assert!(w.mcp.hits(PRM_PATH) >= 1);
    assert_eq!(w.mcp.hits(ROOT_PRM), 0, "R14: a 5xx does not fall through");
    assert!(w.token_requests().is_empty());
}

/// R12, R13, R31: an MCP URL without a path (with or without a lone `/`) tries only the root PRM
/// URL, and the `resource` is sent exactly as the PRM spells it.
#[tokio::test]
async fn an_mcp_url_without_a_path_tries_only_the_root_prm() {
    for slash in ["", "/"] {
        let w = bare_world().await;
        let mcp_url = format!("{}{slash}", w.mcp.url());
        w.mcp.json(ROOT_PRM, &prm(&mcp_url, &[&w.auth.url()]));
        let layer = ClientCredentialsLayer::builder(mcp_url.clone(), creds())
            .unwrap()
            .insecure_allow_http_loopback()
            .build()
            .unwrap();
        bounded(layer.warm_up()).await.unwrap();
        assert_eq!(w.mcp.lines(), [format!("GET {ROOT_PRM}")], "{mcp_url}");
        let tokens = w.token_requests();
        assert_eq!(tokens.len(), 1);
        assert_eq!(param(&tokens[0], "resource"), Some(mcp_url.as_str()));
    }
}

/// R13: the well-known suffix goes between host:port and a multi-segment path.
#[tokio::test]
async fn the_well_known_prm_url_keeps_the_port_and_the_whole_path() {
    let w = bare_world().await;
    let mcp_url = format!("{}/public/mcp", w.mcp.url());
    let path = "/.well-known/oauth-protected-resource/public/mcp";
    w.mcp.json(path, &prm(&mcp_url, &[&w.auth.url()]));
    let layer = ClientCredentialsLayer::builder(mcp_url.clone(), creds())
        .unwrap()
        .insecure_allow_http_loopback()
        .build()
        .unwrap();
    bounded(layer.warm_up()).await.unwrap();
    assert_eq!(w.mcp.lines(), [format!("GET {path}")]);
    assert_eq!(
        param(&w.token_requests()[0], "resource"),
        Some(mcp_url.as_str())
    );
}

// ---------------------------------------------------------------------------
// R15, R31, R32: the PRM `resource`
// ---------------------------------------------------------------------------

/// R15: a PRM naming another origin (another host, or another port of the same host) is refused;
/// nothing reaches the authorization server.
#[tokio::test]
async fn a_prm_resource_on_another_origin_is_refused() {
    let elsewhere = ScriptedServer::start().await;
    for resource in [
        "https://evil.example.com/mcp".to_owned(),
        format!("{}/mcp", elsewhere.url()),
    ] {
        let w = bare_world().await;
        w.mcp.json(PRM_PATH, &prm(&resource, &[&w.auth.url()]));
        let svc = service(w.builder().build().unwrap());
        let err = send_err(&svc, &w.mcp_url()).await;
        assert_kind(&err, ErrorKind::Discovery);
        assert!(w.token_requests().is_empty(), "{resource}");
        assert!(w.auth.log().is_empty(), "{resource}: the AS was contacted");
        assert_eq!(w.mcp.hits("/mcp"), 1, "no token, so no replay");
    }
    assert!(elsewhere.log().is_empty());
}

/// R15 (default tolerance) + R31: a PRM whose `resource` is the origin of the MCP URL `/mcp` is
/// accepted, and the origin is sent verbatim, without a trailing slash.
#[tokio::test]
async fn an_origin_prm_resource_is_accepted_by_default_and_sent_verbatim() {
    let w = bare_world().await;
    w.mcp.json(PRM_PATH, &prm(&w.mcp.url(), &[&w.auth.url()]));
    let svc = service(w.builder().build().unwrap());
    let response = send(&svc, &w.mcp_url(), 1).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = w.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(param(&tokens[0], "resource"), Some(w.mcp.url().as_str()));
    assert_eq!(w.mcp.hits("/mcp"), 2);
}

/// R15 strict mode: the same origin-only PRM `resource` is refused.
#[tokio::test]
async fn strict_resource_validation_refuses_an_origin_prm_resource() {
    let w = bare_world().await;
    w.mcp.json(PRM_PATH, &prm(&w.mcp.url(), &[&w.auth.url()]));
    let svc = service(w.builder().strict_resource_validation().build().unwrap());
    let err = send_err(&svc, &w.mcp_url()).await;
    assert_kind(&err, ErrorKind::Discovery);
    assert!(w.token_requests().is_empty());
}

/// R32 (+ R15): a configured URL with an upper-case scheme and host matches the PRM `resource`,
/// and `resource` is sent with the PRM's spelling.
#[tokio::test]
async fn an_upper_case_configured_url_matches_and_the_prm_spelling_is_sent() {
    let auth = auth_server().await;
    let mcp = ScriptedServer::start().await;
    mcp.accept_tokens_from(&auth);
    let port = mcp.url().rsplit(':').next().unwrap().to_owned();
    let lower = format!("http://localhost:{port}/mcp");
    let upper = format!("HTTP://LOCALHOST:{port}/mcp");
    mcp.protected_route(
        "/mcp",
        challenge(&format!("http://localhost:{port}{PRM_PATH}")),
    );
    mcp.json(PRM_PATH, &prm(&lower, &[&auth.url()]));
    let layer = ClientCredentialsLayer::builder(upper, creds())
        .unwrap()
        .insecure_allow_http_loopback()
        .build()
        .unwrap();
    let svc = service(layer);
    let response = send(&svc, &lower, 1).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = auth.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(param(&tokens[0], "resource"), Some(lower.as_str()));
}

// ---------------------------------------------------------------------------
// R17, R81: PRM content
// ---------------------------------------------------------------------------

/// R17: a PRM without `authorization_servers` is a discovery error naming the field.
#[tokio::test]
async fn a_prm_without_authorization_servers_is_an_error_naming_the_field() {
    let w = bare_world().await;
    w.mcp.json(PRM_PATH, &json!({ "resource": w.mcp_url() }));
    let layer = w.builder().build().unwrap();
    let err = bounded(layer.warm_up()).await.unwrap_err();
    assert_kind(&err, ErrorKind::Discovery);
    assert!(err.to_string().contains("authorization_servers"), "{err}");
    assert!(w.auth.log().is_empty());
}

/// R81: a PRM demanding DPoP-bound tokens fails before any token request.
#[tokio::test]
async fn a_prm_requiring_dpop_fails_before_any_token_request() {
    let w = bare_world().await;
    let mut doc = prm(&w.mcp_url(), &[&w.auth.url()]);
    doc["dpop_bound_access_tokens_required"] = json!(true);
    w.mcp.json(PRM_PATH, &doc);
    let svc = service(w.builder().build().unwrap());
    let err = send_err(&svc, &w.mcp_url()).await;
    assert_kind(&err, ErrorKind::Discovery);
    assert!(w.token_requests().is_empty());
    assert_eq!(w.mcp.hits("/mcp"), 1);
}

// ---------------------------------------------------------------------------
// R16, R21, R22: choosing and binding the authorization server
// ---------------------------------------------------------------------------

/// R21/R22: PRM lists `[AS2, AS1]` and the credentials are bound to AS1 → AS1 is used and AS2 is
/// never contacted.
#[tokio::test]
async fn the_pinned_issuer_is_chosen_among_several() {
    let w = bare_world().await;
    let as2 = auth_server().await;
    w.mcp.accept_tokens_from(&as2);
    w.mcp
        .json(PRM_PATH, &prm(&w.mcp_url(), &[&as2.url(), &w.auth.url()]));
    let svc = service(
        w.builder()
            .expected_issuer(w.auth.url())
            .unwrap()
            .build()
            .unwrap(),
    );
    assert_eq!(send(&svc, &w.mcp_url(), 1).await.unwrap().status(), 200);
    assert_eq!(w.token_requests().len(), 1);
    assert!(as2.log().is_empty(), "AS2 was contacted: {:?}", as2.lines());
}

/// R22: without a pin, the first listed authorization server is used (deterministic choice).
#[tokio::test]
async fn without_a_pin_the_first_listed_authorization_server_is_used() {
    let w = bare_world().await;
    let as2 = auth_server().await;
    w.mcp.accept_tokens_from(&as2);
    w.mcp
        .json(PRM_PATH, &prm(&w.mcp_url(), &[&as2.url(), &w.auth.url()]));
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    assert_eq!(as2.token_requests().len(), 1);
    assert!(w.token_requests().is_empty());
    assert_eq!(layer.cache_key().unwrap().issuer(), as2.url());
}

/// R21: a pinned issuer that PRM does not list → `IssuerNotListed`, no token request anywhere.
#[tokio::test]
async fn a_pinned_issuer_missing_from_the_prm_is_issuer_not_listed() {
    let w = bare_world().await;
    let as2 = auth_server().await;
    w.mcp.json(PRM_PATH, &prm(&w.mcp_url(), &[&as2.url()]));
    let svc = service(
        w.builder()
            .expected_issuer(w.auth.url())
            .unwrap()
            .build()
            .unwrap(),
    );
    let err = send_err(&svc, &w.mcp_url()).await;
    assert_kind(&err, ErrorKind::IssuerNotListed);
    assert!(w.token_requests().is_empty());
    assert!(as2.token_requests().is_empty());
    assert_eq!(as2.hits("/token"), 0);
}

/// R16 + R21: after a revocation, the 401's `resource_metadata` now names a different AS while
/// the credentials are pinned to the old one → PRM is re-read and the call fails with
/// `IssuerNotListed`; nothing is sent to the new AS.
#[tokio::test]
async fn a_migrated_authorization_server_is_refused_after_revocation() {
    let w = world().await;
    let as2 = auth_server().await;
    w.mcp.accept_tokens_from(&as2);
    let layer = w
        .builder()
        .expected_issuer(w.auth.url())
        .unwrap()
        .build()
        .unwrap();
    bounded(layer.warm_up()).await.unwrap();
    let svc = service(layer);
    assert_eq!(send(&svc, &w.mcp_url(), 1).await.unwrap().status(), 200);
    assert_eq!(w.mcp.hits(PRM_PATH), 1);

    // The resource moves to AS2 and revokes every AS1 token.
    w.mcp.json(PRM_PATH, &prm(&w.mcp_url(), &[&as2.url()]));
    w.auth.revoke_all();
    let err = send_err(&svc, &w.mcp_url()).await;
    assert_kind(&err, ErrorKind::IssuerNotListed);
    assert_eq!(
        w.mcp.hits(PRM_PATH),
        2,
        "R16: PRM re-read after the challenge"
    );
    assert!(as2.token_requests().is_empty(), "credentials sent to AS2");
    assert_eq!(as2.hits("/token"), 0);
    assert_eq!(
        w.token_requests().len(),
        1,
        "no new token from the unlisted AS1"
    );
}

// ---------------------------------------------------------------------------
// R23, R24, R25: authorization server metadata
// ---------------------------------------------------------------------------

/// A world whose PRM names the path issuer `{auth}{issuer_path}` and whose token endpoint is
/// `{auth}/tenant-token`; no AS metadata is served yet.
async fn path_issuer_world(issuer_path: &str) -> (World, String) {
    let w = bare_world().await;
    let issuer = format!("{}{issuer_path}", w.auth.url());
    w.mcp.json(PRM_PATH, &prm(&w.mcp_url(), &[&issuer]));
    w.auth.token_route("/tenant-token", 3600);
    (w, issuer)
}

/// R23: for a path issuer, RFC 8414 insertion, then OIDC insertion, then OIDC append; the root
/// RFC 8414 URL is never requested.
#[tokio::test]
async fn a_path_issuer_tries_insertion_then_oidc_insertion_then_oidc_append() {
    let (w, issuer) = path_issuer_world("/tenant1").await;
    let token_endpoint = format!("{}/tenant-token", w.auth.url());
    w.auth.json(
        "/tenant1/.well-known/openid-configuration",
        &as_metadata(&issuer, &token_endpoint),
    );
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    assert_eq!(
        w.auth.lines(),
        [
            "GET /.well-known/oauth-authorization-server/tenant1",
            "GET /.well-known/openid-configuration/tenant1",
            "GET /tenant1/.well-known/openid-configuration",
            "POST /tenant-token",
        ]
    );
    assert_eq!(w.auth.hits(AS_ROOT), 0, "wrong path for a path issuer");
}

/// R23: the RFC 8414 path-insertion URL is tried first and, when it answers, alone.
#[tokio::test]
async fn a_path_issuer_uses_rfc8414_insertion_first() {
    let (w, issuer) = path_issuer_world("/tenant1").await;
    let token_endpoint = format!("{}/tenant-token", w.auth.url());
    w.auth.json(
        "/.well-known/oauth-authorization-server/tenant1",
        &as_metadata(&issuer, &token_endpoint),
    );
    w.auth.json(
        "/tenant1/.well-known/openid-configuration",
        &as_metadata(&issuer, &token_endpoint),
    );
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    assert_eq!(
        w.auth.lines(),
        [
            "GET /.well-known/oauth-authorization-server/tenant1",
            "POST /tenant-token",
        ]
    );
}

/// R23: a path-less issuer tries the RFC 8414 root URL, then the OIDC root URL.
#[tokio::test]
async fn a_pathless_issuer_falls_back_to_openid_configuration() {
    let w = world().await;
    w.auth.route("GET", AS_ROOT, 404, Vec::new(), String::new());
    w.auth.json(
        OIDC_ROOT,
        &as_metadata(&w.auth.url(), &format!("{}/token", w.auth.url())),
    );
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    assert_eq!(
        w.auth.lines(),
        [
            format!("GET {AS_ROOT}"),
            format!("GET {OIDC_ROOT}"),
            "POST /token".to_owned(),
        ]
    );
}

/// R24: a trailing `/` on a path issuer is removed before the well-known segment is inserted.
#[tokio::test]
async fn a_trailing_slash_on_a_path_issuer_is_removed_before_insertion() {
    let (w, issuer) = path_issuer_world("/realm/x/").await;
    w.auth.json(
        "/.well-known/oauth-authorization-server/realm/x",
        &as_metadata(&issuer, &format!("{}/tenant-token", w.auth.url())),
    );
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    assert_eq!(
        w.auth.lines(),
        [
            "GET /.well-known/oauth-authorization-server/realm/x",
            "POST /tenant-token",
        ]
    );
}

/// R25: metadata whose `issuer` names another server is discarded even though its token endpoint
/// would work; no token request is made.
#[tokio::test]
async fn metadata_naming_another_issuer_is_refused() {
    let w = world().await;
    let honest = ScriptedServer::start().await;
    w.auth.json(
        AS_ROOT,
        &as_metadata(&honest.url(), &format!("{}/token", w.auth.url())),
    );
    w.auth.json(
        OIDC_ROOT,
        &as_metadata(&honest.url(), &format!("{}/token", w.auth.url())),
    );
    let layer = w.builder().build().unwrap();
    let err = bounded(layer.warm_up()).await.unwrap_err();
    assert_kind(&err, ErrorKind::Discovery);
    assert!(w.token_requests().is_empty());
    assert!(honest.log().is_empty());
}

/// R25 tolerance: a path-less issuer differing only by one trailing `/` is accepted by default,
/// and the document's own spelling is the issuer used afterwards.
#[tokio::test]
async fn a_trailing_slash_issuer_difference_is_tolerated_by_default() {
    let w = world().await;
    let slashed = format!("{}/", w.auth.url());
    w.auth.json(
        AS_ROOT,
        &as_metadata(&slashed, &format!("{}/token", w.auth.url())),
    );
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    assert_eq!(w.token_requests().len(), 1);
    assert_eq!(layer.cache_key().unwrap().issuer(), slashed);
}

/// R25 strict: the same trailing-slash difference is refused.
#[tokio::test]
async fn strict_issuer_validation_refuses_a_trailing_slash_difference() {
    let w = world().await;
    let slashed = format!("{}/", w.auth.url());
    w.auth.json(
        AS_ROOT,
        &as_metadata(&slashed, &format!("{}/token", w.auth.url())),
    );
    w.auth.json(
        OIDC_ROOT,
        &as_metadata(&slashed, &format!("{}/token", w.auth.url())),
    );
    let layer = w.builder().strict_issuer_validation().build().unwrap();
    let err = bounded(layer.warm_up()).await.unwrap_err();
    assert_kind(&err, ErrorKind::Discovery);
    assert!(w.token_requests().is_empty());
}

// ---------------------------------------------------------------------------
// R19, R26, R78: transport security of discovered URLs
// ---------------------------------------------------------------------------

/// R26/R78: an `http` token endpoint on a non-loopback host is refused, even with the loopback
/// switch on.
#[tokio::test]
async fn an_http_token_endpoint_on_a_remote_host_is_refused() {
    let w = world().await;
    w.auth.json(
        AS_ROOT,
        &as_metadata(&w.auth.url(), "http://auth.example.com/token"),
    );
    let layer = w.builder().build().unwrap();
    let err = bounded(layer.warm_up()).await.unwrap_err();
    assert_kind(&err, ErrorKind::Discovery);
    assert!(w.token_requests().is_empty());
}

/// R19/R78: a PRM naming an `http` authorization server on a non-loopback host is refused.
#[tokio::test]
async fn an_http_issuer_on_a_remote_host_is_refused() {
    let w = bare_world().await;
    w.mcp
        .json(PRM_PATH, &prm(&w.mcp_url(), &["http://auth.example.com"]));
    let layer = w.builder().build().unwrap();
    let err = bounded(layer.warm_up()).await.unwrap_err();
    assert_kind(&err, ErrorKind::Discovery);
}

/// R78: plain `http` on loopback needs the explicit switch; without it the MCP URL is refused.
#[tokio::test]
async fn http_loopback_needs_the_explicit_switch() {
    let w = world().await;
    let result = ClientCredentialsLayer::builder(w.mcp_url(), creds()).and_then(|b| b.build());
    assert!(
        matches!(result, Err(ConfigError::InsecureUrl { .. })),
        "{result:?}"
    );
    assert!(w.mcp.log().is_empty());
}

// ---------------------------------------------------------------------------
// R27, R28, R42, R47, R48: what the metadata may omit, and the auth method
// ---------------------------------------------------------------------------

/// R27: metadata with only `issuer` and `token_endpoint` (no `grant_types_supported`, no
/// `authorization_endpoint`, no auth-methods list) works, with `client_secret_basic`.
#[tokio::test]
async fn minimal_metadata_works_with_client_secret_basic() {
    let w = world().await;
    w.auth.json(
        AS_ROOT,
        &json!({ "issuer": w.auth.url(), "token_endpoint": format!("{}/token", w.auth.url()) }),
    );
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    let post = w
        .auth
        .requests()
        .into_iter()
        .find(|r| r.path() == "/token")
        .unwrap();
    assert_eq!(
        post.authorization.as_deref(),
        Some(basic_header(CLIENT_ID, CLIENT_SECRET).as_str())
    );
    let form = &w.token_requests()[0];
    assert_eq!(param(form, "client_secret"), None);
    assert_eq!(param(form, "grant_type"), Some("client_credentials"));
}

/// `Basic base64(id ":" secret)` for identifiers and secrets that need no form encoding.
fn basic_header(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// R28: metadata of a full OAuth server without `code_challenge_methods_supported` does not stop
/// the client-credentials flow.
#[tokio::test]
async fn missing_pkce_methods_do_not_block_client_credentials() {
    let w = world().await;
    let mut doc = as_metadata(&w.auth.url(), &format!("{}/token", w.auth.url()));
    doc["authorization_endpoint"] = json!(format!("{}/authorize", w.auth.url()));
    doc["response_types_supported"] = json!(["code"]);
    doc["grant_types_supported"] = json!(["authorization_code", "client_credentials"]);
    w.auth.json(AS_ROOT, &doc);
    let svc = service(w.builder().build().unwrap());
    assert_eq!(send(&svc, &w.mcp_url(), 1).await.unwrap().status(), 200);
    assert_eq!(w.token_requests().len(), 1);
}

/// R47: an AS listing only `client_secret_post` gets both fields in the body and no Basic header.
#[tokio::test]
async fn a_post_only_authorization_server_gets_the_secret_in_the_body() {
    let w = world().await;
    let mut doc = as_metadata(&w.auth.url(), &format!("{}/token", w.auth.url()));
    doc["token_endpoint_auth_methods_supported"] = json!(["client_secret_post"]);
    w.auth.json(AS_ROOT, &doc);
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    let form = &w.token_requests()[0];
    assert_eq!(param(form, "client_id"), Some(CLIENT_ID));
    assert_eq!(param(form, "client_secret"), Some(CLIENT_SECRET));
    let post = w
        .auth
        .requests()
        .into_iter()
        .find(|r| r.path() == "/token")
        .unwrap();
    assert_eq!(post.authorization, None);
}

/// R48: an AS listing both `client_secret_post` and `client_secret_basic` gets Basic.
#[tokio::test]
async fn basic_is_preferred_when_the_authorization_server_lists_both() {
    let w = world().await;
    let mut doc = as_metadata(&w.auth.url(), &format!("{}/token", w.auth.url()));
    doc["token_endpoint_auth_methods_supported"] =
        json!(["client_secret_post", "client_secret_basic"]);
    w.auth.json(AS_ROOT, &doc);
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    let form = &w.token_requests()[0];
    assert_eq!(param(form, "client_secret"), None);
    let post = w
        .auth
        .requests()
        .into_iter()
        .find(|r| r.path() == "/token")
        .unwrap();
    assert_eq!(
        post.authorization.as_deref(),
        Some(basic_header(CLIENT_ID, CLIENT_SECRET).as_str())
    );
}

/// R42: the `registration_endpoint` in the metadata is never called.
#[tokio::test]
async fn the_registration_endpoint_is_never_called() {
    let w = world().await;
    let svc = service(w.builder().build().unwrap());
    assert_eq!(send(&svc, &w.mcp_url(), 1).await.unwrap().status(), 200);
    assert_eq!(w.auth.hits("/register"), 0);
    assert_eq!(w.token_requests().len(), 1);
}

// ---------------------------------------------------------------------------
// R6, R45: what discovery and token requests carry
// ---------------------------------------------------------------------------

/// R6: PRM, AS metadata and token requests never carry the bearer token, also when discovery runs
/// again after a revocation.
#[tokio::test]
async fn metadata_and_token_requests_never_carry_the_bearer_token() {
    let w = world().await;
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    let svc = service(layer);
    assert_eq!(send(&svc, &w.mcp_url(), 1).await.unwrap().status(), 200);
    w.auth.revoke_all();
    assert_eq!(send(&svc, &w.mcp_url(), 2).await.unwrap().status(), 200);
    assert_eq!(w.token_requests().len(), 2);
    // R16: the second 401 named the PRM, so discovery ran again while a token was held.
    assert_eq!(w.mcp.hits(PRM_PATH), 2);

    for request in w.mcp.requests() {
        if request.path() != "/mcp" {
            assert_eq!(request.authorization, None, "{request:?}");
        }
    }
    let basic = basic_header(CLIENT_ID, CLIENT_SECRET);
    for request in w.auth.requests() {
        match request.method.as_str() {
            "GET" => assert_eq!(request.authorization, None, "{request:?}"),
            _ => assert_eq!(
                request.authorization.as_deref(),
                Some(basic.as_str()),
                "{request:?}"
            ),
        }
    }
}

/// R45: PRM, AS metadata and token requests ask for `application/json`.
#[tokio::test]
async fn metadata_and_token_requests_accept_json() {
    let w = world().await;
    let layer = w.builder().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    let requests: Vec<_> = w
        .mcp
        .requests()
        .into_iter()
        .chain(w.auth.requests())
        .collect();
    let lines: Vec<_> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path_and_query))
        .collect();
    assert_eq!(
        lines,
        [
            format!("GET {PRM_PATH}"),
            format!("GET {AS_ROOT}"),
            "POST /token".to_owned()
        ]
    );
    for request in requests {
        let accept = request.accept.clone().unwrap_or_default();
        let accepts_json = accept
            .split(',')
            .any(|range| range.split(';').next().unwrap().trim() == "application/json");
        assert!(accepts_json, "{request:?}");
    }
}

// ---------------------------------------------------------------------------
// R10, R22, R30, R33: configuration that bypasses discovery, and the `resource` parameter
// ---------------------------------------------------------------------------

/// R22 (+ R23, R30): a configured issuer skips PRM; its metadata is discovered and `resource` is
/// still the MCP URL.
#[tokio::test]
async fn a_configured_issuer_skips_prm() {
    let (w, issuer) = path_issuer_world("/tenant").await;
    w.auth.json(
        "/.well-known/oauth-authorization-server/tenant",
        &as_metadata(&issuer, &format!("{}/tenant-token", w.auth.url())),
    );
    let layer = w.builder().issuer(issuer.clone()).unwrap().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    assert!(
        w.mcp.log().is_empty(),
        "PRM was fetched: {:?}",
        w.mcp.lines()
    );
    assert_eq!(
        w.auth.lines(),
        [
            "GET /.well-known/oauth-authorization-server/tenant",
            "POST /tenant-token",
        ]
    );
    assert_eq!(
        param(&w.token_requests()[0], "resource"),
        Some(w.mcp_url().as_str())
    );
}

/// R22 + R30: a configured token endpoint skips all discovery; `resource` is still sent.
#[tokio::test]
async fn a_configured_token_endpoint_skips_all_discovery() {
    let w = world().await;
    let layer = w
        .builder()
        .token_endpoint(format!("{}/token", w.auth.url()))
        .unwrap()
        .build()
        .unwrap();
    let svc = service(layer);
    assert_eq!(send(&svc, &w.mcp_url(), 1).await.unwrap().status(), 200);
    assert!(
        w.mcp.lines().iter().all(|l| l == "POST /mcp"),
        "{:?}",
        w.mcp.lines()
    );
    assert_eq!(w.auth.lines(), ["POST /token"]);
    assert_eq!(
        param(&w.token_requests()[0], "resource"),
        Some(w.mcp_url().as_str())
    );
}

/// R33: `ResourceParameter::Omit` sends no `resource`; `Replace` sends the replacement.
#[tokio::test]
async fn the_resource_parameter_can_be_omitted_or_replaced() {
    let w = world().await;
    let layer = w
        .builder()
        .resource_parameter(ResourceParameter::Omit)
        .build()
        .unwrap();
    bounded(layer.warm_up()).await.unwrap();
    let form = &w.token_requests()[0];
    assert!(form.iter().all(|(name, _)| name != "resource"), "{form:?}");

    let w = world().await;
    let layer = w
        .builder()
        .resource_parameter(ResourceParameter::Replace("api://x".into()))
        .build()
        .unwrap();
    bounded(layer.warm_up()).await.unwrap();
    let form = &w.token_requests()[0];
    let resources: Vec<_> = form.iter().filter(|(name, _)| name == "resource").collect();
    assert_eq!(resources.len(), 1, "{form:?}");
    assert_eq!(resources[0].1, "api://x");
}

// ---------------------------------------------------------------------------
// R34: initial scope selection
// ---------------------------------------------------------------------------

/// R34: the challenge's `scope` is requested.
#[tokio::test]
async fn the_challenge_scope_is_requested() {
    let w = world().await;
    let mut doc = prm(&w.mcp_url(), &[&w.auth.url()]);
    doc["scopes_supported"] = json!(["x", "y"]);
    w.mcp.json(PRM_PATH, &doc);
    w.mcp.protected_route(
        "/mcp",
        format!(
            "Bearer resource_metadata=\"{}\", scope=\"a b\"",
            w.prm_url()
        ),
    );
    let svc = service(w.builder().build().unwrap());
    let _ = send(&svc, &w.mcp_url(), 1).await.unwrap();
    let tokens = w.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        param(&tokens[0], "scope").map(scope_set),
        Some(scope_set("a b"))
    );
}

/// R34: without a challenge scope, every entry of PRM `scopes_supported` is requested.
#[tokio::test]
async fn prm_scopes_supported_are_requested_without_a_challenge_scope() {
    let w = world().await;
    let mut doc = prm(&w.mcp_url(), &[&w.auth.url()]);
    doc["scopes_supported"] = json!(["x", "y"]);
    w.mcp.json(PRM_PATH, &doc);
    let svc = service(w.builder().build().unwrap());
    assert_eq!(send(&svc, &w.mcp_url(), 1).await.unwrap().status(), 200);
    let tokens = w.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        param(&tokens[0], "scope").map(scope_set),
        Some(scope_set("x y"))
    );
}

/// R34: with neither a challenge scope nor `scopes_supported`, no `scope` is sent.
#[tokio::test]
async fn no_scope_is_sent_when_nothing_names_one() {
    let w = world().await;
    let svc = service(w.builder().build().unwrap());
    assert_eq!(send(&svc, &w.mcp_url(), 1).await.unwrap().status(), 200);
    let tokens = w.token_requests();
    assert_eq!(tokens.len(), 1);
    assert!(
        tokens[0].iter().all(|(name, _)| name != "scope"),
        "{:?}",
        tokens[0]
    );
}

/// R34 (DESIGN): configured scopes win over the challenge and `scopes_supported`.
#[tokio::test]
async fn configured_scopes_win_over_challenge_and_prm() {
    let w = world().await;
    let mut doc = prm(&w.mcp_url(), &[&w.auth.url()]);
    doc["scopes_supported"] = json!(["x", "y"]);
    w.mcp.json(PRM_PATH, &doc);
    w.mcp.protected_route(
        "/mcp",
        format!(
            "Bearer resource_metadata=\"{}\", scope=\"a b\"",
            w.prm_url()
        ),
    );
    let svc = service(w.builder().scopes(["cfg"]).unwrap().build().unwrap());
    assert_eq!(send(&svc, &w.mcp_url(), 1).await.unwrap().status(), 200);
    let tokens = w.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(param(&tokens[0], "scope"), Some("cfg"));
}

// ---------------------------------------------------------------------------
// R37, R38, R39, R40: step-up on 403 insufficient_scope
// ---------------------------------------------------------------------------

const INSUFFICIENT_C: &str = "Bearer error=\"insufficient_scope\", scope=\"c\"";

/// A warmed-up service with configured scope `a` (one token request already made).
async fn stepped_world() -> (World, ClientCredentials<HttpClient>) {
    let w = world().await;
    let layer = w.builder().scopes(["a"]).unwrap().build().unwrap();
    bounded(layer.warm_up()).await.unwrap();
    assert_eq!(w.token_requests().len(), 1);
    assert_eq!(param(&w.token_requests()[0], "scope"), Some("a"));
    (w, service(layer))
}

/// R37: a 403 `insufficient_scope` for `c` → one token request for the union `a c`, then one
/// replay that succeeds.
#[tokio::test]
async fn insufficient_scope_steps_up_once_with_the_union_and_replays() {
    let (w, svc) = stepped_world().await;
    w.mcp
        .require_scope("/mcp", "a c", INSUFFICIENT_C.to_owned());
    let response = send(&svc, &w.mcp_url(), 1).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = w.token_requests();
    assert_eq!(tokens.len(), 2, "one step-up token request");
    assert_eq!(
        param(&tokens[1], "scope").map(scope_set),
        Some(scope_set("a c"))
    );
    assert_eq!(param(&tokens[1], "resource"), Some(w.mcp_url().as_str()));
    assert_eq!(w.mcp.hits("/mcp"), 2, "the 403, then one replay");
}

/// R38: a resource that keeps answering 403 `insufficient_scope` → 2 attempts, 1 extra token
/// request, and the 403 is returned.
#[tokio::test]
async fn a_repeated_insufficient_scope_is_returned_after_one_step_up() {
    let (w, svc) = stepped_world().await;
    w.mcp
        .set_protected_status("/mcp", 403, INSUFFICIENT_C.to_owned());
    let response = send(&svc, &w.mcp_url(), 1).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(w.mcp.hits("/mcp"), 2);
    assert_eq!(w.token_requests().len(), 2);
}

/// R39: a 403 without a Bearer `insufficient_scope` challenge is returned as is, with no token
/// request and no retry.
#[tokio::test]
async fn a_403_without_insufficient_scope_is_returned_as_is() {
    for challenge in ["", "Bearer error=\"invalid_token\"", "Basic realm=\"x\""] {
        let (w, svc) = stepped_world().await;
        w.mcp
            .set_protected_status("/mcp", 403, challenge.to_owned());
        let response = send(&svc, &w.mcp_url(), 1).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{challenge}");
        assert_eq!(w.mcp.hits("/mcp"), 1, "{challenge}");
        assert_eq!(w.token_requests().len(), 1, "{challenge}");
    }
}

/// R40: the AS grants only `a` when the step-up asks for `a c` → an `InsufficientScope` error
/// naming `c`, and no second step-up.
#[tokio::test]
async fn a_step_up_granting_fewer_scopes_is_an_error_naming_the_missing_ones() {
    let (w, svc) = stepped_world().await;
    w.mcp
        .require_scope("/mcp", "a c", INSUFFICIENT_C.to_owned());
    w.auth.set_granted_scope("/token", Some("a"));
    let err = send_err(&svc, &w.mcp_url()).await;
    assert_kind(&err, ErrorKind::InsufficientScope);
    assert!(names_word(&err.to_string(), "c"), "{err}");
    let tokens = w.token_requests();
    assert_eq!(tokens.len(), 2, "exactly one step-up");
    assert_eq!(
        param(&tokens[1], "scope").map(scope_set),
        Some(scope_set("a c"))
    );
    assert_eq!(
        w.mcp.hits("/mcp"),
        1,
        "no replay with a token known to lack `c`"
    );
}
