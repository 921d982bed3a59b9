//! The credential kinds beyond the client secret, end to end over loopback against the in-process
//! servers of `examples/support/`: the jwt-bearer grant (workload identity), client assertions
//! (`private_key_jwt` from a callback), cross-app access (an IdP and an MCP authorization server),
//! token sources, a client secret kept in a rotating file, and the redaction of everything secret
//! they handle. Each test names the REFERENCE requirement it checks.

#[path = "../examples/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use support::{
    AssertionClient, AuthServer, AuthServerConfig, CLIENT_KEY_PEM, Capture, ID_JAG_TOKEN_TYPE,
    ID_TOKEN_TYPE, IdpConfig, JWT_BEARER_GRANT, JWT_CLIENT_ASSERTION_TYPE, JwtUse, McpServer,
    RecordedTokenRequest, SIGNATURES_VERIFIED, TOKEN_EXCHANGE_GRANT, TestKey, TokenCheck,
    TokenOverride, TrustedIssuer, basic_authorization, decode_jwt, jsonrpc, new_jti, now_secs,
    workload_claims,
};
use tower::{Service, ServiceBuilder, ServiceExt as _, service_fn};
use tower_client_credentials::auth_client::AuthHttpClient;
use tower_client_credentials::cross_app::{
    IdentityProvider, SubjectTokenType, redeem_id_jag, request_id_jag,
};
use tower_client_credentials::{
    Assertion, AssertionAudience, AssertionContext, BoxError, ClientAssertion, ClientCredentials,
    ClientCredentialsBuilder, ClientCredentialsLayer, Credentials, Error, ErrorKind, SourcedToken,
    token_source_fn,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn service(layer: ClientCredentialsLayer) -> ClientCredentials<HttpClient> {
    ServiceBuilder::new().layer(layer).service(http_client())
}

fn call(url: &str, id: u64) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(jsonrpc(id, "tools/list", json!({})))))
        .unwrap()
}

/// Sends one `tools/list` through `svc` and returns the status (panics on a transport error).
async fn status_of(svc: &ClientCredentials<HttpClient>, url: &str, id: u64) -> StatusCode {
    svc.clone().oneshot(call(url, id)).await.unwrap().status()
}

fn auth_error(err: BoxError) -> Error {
    *err.downcast::<Error>()
        .expect("a tower_client_credentials::Error")
}

/// A layer that knows only the MCP server's URL: everything else is discovered.
fn discovering(mcp: &McpServer, credentials: Credentials) -> ClientCredentialsBuilder {
    ClientCredentialsLayer::builder(mcp.url(), credentials)
        .unwrap()
        .insecure_allow_http_loopback()
}

struct Env {
    auth: AuthServer,
    mcp: McpServer,
}

async fn env(config: AuthServerConfig) -> Env {
    let auth = AuthServer::start(config).await;
    let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
    Env { auth, mcp }
}

/// The token requests with `grant_type` = `grant`.
fn with_grant(auth: &AuthServer, grant: &str) -> Vec<RecordedTokenRequest> {
    auth.state()
        .recorded()
        .into_iter()
        .filter(|r| r.param("grant_type") == Some(grant))
        .collect()
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("tcc-credentials-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `content` and gives the file a modification time `ahead` in the future, so a reader
/// that watches the mtime sees a change even on file systems with coarse timestamps.
fn rewrite(path: &Path, content: &str, ahead: Duration) {
    std::fs::write(path, content).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() + ahead)
        .unwrap();
}

// Workload identity: JWTs from an issuer the authorization server trusts, signed with its key.

const WORKLOAD_ISSUER: &str = "https://workload-identity.example";
const WORKLOAD_SUBJECT: &str = "system:serviceaccount:jobs:nightly-report";

fn workload_key() -> TestKey {
    TestKey::from_pem(CLIENT_KEY_PEM, "workload-key")
}

fn workload_jwt(audience: &str, lifetime_secs: i64) -> String {
    workload_key().sign_jwt(
        "JWT",
        &workload_claims(WORKLOAD_ISSUER, WORKLOAD_SUBJECT, audience, lifetime_secs),
    )
}

async fn workload_env() -> Env {
    env(AuthServerConfig {
        trusted_issuers: vec![TrustedIssuer {
            issuer: WORKLOAD_ISSUER.to_owned(),
            key: workload_key().public_key(),
        }],
        ..AuthServerConfig::default()
    })
    .await
}

/// Asserts that `request` is a jwt-bearer grant presenting `jwt` for `resource` with no client
/// authentication at all (REFERENCE R69, R44).
fn assert_bare_jwt_bearer(request: &RecordedTokenRequest, jwt: &str, resource: &str) {
    assert_eq!(request.method, "POST");
    assert_eq!(request.param("grant_type"), Some(JWT_BEARER_GRANT));
    assert_eq!(request.param("assertion"), Some(jwt));
    assert_eq!(request.param("resource"), Some(resource));
    assert_eq!(request.authorization, None, "no Basic header");
    assert_eq!(request.param("client_secret"), None);
    assert_eq!(request.param("client_assertion"), None);
    assert_eq!(request.client_auth_carriers(), 0);
}

// ---------------------------------------------------------------------------
// jwt-bearer grant (REFERENCE §13)
// ---------------------------------------------------------------------------

/// R69: a static workload JWT is presented as the jwt-bearer grant's `assertion`, with the
/// resource and no client secret or Basic header; the server checks its signature.
#[tokio::test]
async fn jwt_bearer_static_assertion_is_the_grant_with_no_client_secret() {
    let env = workload_env().await;
    let jwt = workload_jwt(&env.auth.url(), 300);
    let creds = Credentials::jwt_bearer(ClientAssertion::from_static(jwt.clone()));
    let svc = service(discovering(&env.mcp, creds).build().unwrap());

    assert_eq!(status_of(&svc, &env.mcp.url(), 1).await, StatusCode::OK);

    let recorded = env.auth.state().recorded();
    assert_eq!(recorded.len(), 1);
    assert_bare_jwt_bearer(&recorded[0], &jwt, &env.mcp.url());
    let issued = env.auth.state().issued();
    assert_eq!(issued[0].grant_type, JWT_BEARER_GRANT);
    assert_eq!(issued[0].client_id, WORKLOAD_SUBJECT);
    let accepted = env.auth.state().accepted(JwtUse::Grant);
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].signature_verified, SIGNATURES_VERIFIED);
}

/// R69, R53: a file assertion is read for every token request, so a token rotated on disk is the
/// one presented after the access token is renewed.
#[tokio::test]
async fn jwt_bearer_file_assertion_is_reread_after_rotation() {
    let env = workload_env().await;
    let dir = TempDir::new("jwt-bearer-file");
    let path = dir.join("token");
    let first = workload_jwt(&env.auth.url(), 300);
    std::fs::write(&path, format!("{first}\n")).unwrap();
    let creds = Credentials::jwt_bearer(ClientAssertion::from_file(&path));
    let layer = discovering(&env.mcp, creds).build().unwrap();
    let svc = service(layer.clone());
    layer.warm_up().await.unwrap();
    assert_eq!(status_of(&svc, &env.mcp.url(), 1).await, StatusCode::OK);

    // The platform rotates the projected token; the server revokes the access token.
    let second = workload_jwt(&env.auth.url(), 300);
    std::fs::write(&path, &second).unwrap();
    env.auth.state().revoke_all();
    assert_eq!(status_of(&svc, &env.mcp.url(), 2).await, StatusCode::OK);

    let recorded = env.auth.state().recorded();
    assert_eq!(recorded.len(), 2);
    assert_bare_jwt_bearer(&recorded[0], &first, &env.mcp.url());
    assert_bare_jwt_bearer(&recorded[1], &second, &env.mcp.url());
    assert_eq!(env.mcp.unauthorized(), 1, "one 401: the revoked token");
}

/// R53, R50, R69: a callback is handed the audience the crate computed: in discovery mode, the
/// authorization server's issuer from its metadata; plus the token endpoint, client id and
/// resource. Its JWT is the grant's assertion.
#[tokio::test]
async fn jwt_bearer_callback_gets_the_issuer_from_metadata_as_audience() {
    let env = workload_env().await;
    let contexts = Arc::new(Mutex::new(Vec::<AssertionContext>::new()));
    let made = Arc::new(Mutex::new(Vec::<String>::new()));
    let (seen, minted) = (Arc::clone(&contexts), Arc::clone(&made));
    let creds = Credentials::jwt_bearer(ClientAssertion::callback(move |ctx: AssertionContext| {
        let jwt = workload_jwt(&ctx.audience, 300);
        seen.lock().unwrap().push(ctx);
        minted.lock().unwrap().push(jwt.clone());
        async move { Ok(Assertion::new(jwt)) }
    }))
    .with_client_id("nightly-report")
    .unwrap();
    let svc = service(discovering(&env.mcp, creds).build().unwrap());

    assert_eq!(status_of(&svc, &env.mcp.url(), 1).await, StatusCode::OK);

    let contexts = contexts.lock().unwrap().clone();
    assert_eq!(contexts.len(), 1);
    assert_eq!(contexts[0].audience, env.auth.url(), "aud = issuer (R50)");
    assert_eq!(contexts[0].token_endpoint, env.auth.token_endpoint());
    assert_eq!(contexts[0].client_id.as_deref(), Some("nightly-report"));
    assert_eq!(
        contexts[0].resource.as_deref(),
        Some(env.mcp.url().as_str())
    );
    let recorded = env.auth.state().recorded();
    assert_eq!(recorded.len(), 1);
    let made = made.lock().unwrap().clone();
    assert_bare_jwt_bearer(&recorded[0], &made[0], &env.mcp.url());
    assert_eq!(recorded[0].param("client_id"), Some("nightly-report"));
}

/// R53, R70: an expired static or file JWT fails locally with `ErrorKind::Assertion`; no token
/// request is made.
#[tokio::test]
async fn expired_static_or_file_jwt_fails_locally_with_no_token_request() {
    let env = workload_env().await;
    let dir = TempDir::new("expired");
    let expired = workload_jwt(&env.auth.url(), -60);
    let path = dir.join("token");
    std::fs::write(&path, &expired).unwrap();
    for source in [
        ClientAssertion::from_static(expired.clone()),
        ClientAssertion::from_file(&path),
    ] {
        let label = format!("{source:?}");
        let layer = discovering(&env.mcp, Credentials::jwt_bearer(source))
            .build()
            .unwrap();
        let err = layer.warm_up().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Assertion, "{label}: {err}");
        let err = auth_error(
            service(layer)
                .oneshot(call(&env.mcp.url(), 1))
                .await
                .unwrap_err(),
        );
        assert_eq!(err.kind(), ErrorKind::Assertion, "{label}: {err}");
    }
    assert_eq!(env.auth.state().token_requests(), 0);
    assert_eq!(env.mcp.seen_authorization().iter().flatten().count(), 0);
}

/// R70: `invalid_grant` from the authorization server ends the attempt after exactly one
/// request: no retry with the same assertion, no switch to another grant type.
#[tokio::test]
async fn invalid_grant_is_final_after_one_request_without_grant_switch() {
    let env = workload_env().await;
    // Made out for another audience: the server answers invalid_grant.
    let jwt = workload_jwt("https://another-as.example", 300);
    let creds = Credentials::jwt_bearer(ClientAssertion::from_static(jwt.clone()))
        .with_client_id("demo-client")
        .unwrap();
    let layer = discovering(&env.mcp, creds).build().unwrap();

    let err = layer.warm_up().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::TokenEndpoint, "{err}");
    assert_eq!(err.oauth_error(), Some("invalid_grant"));
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert!(!err.is_transient());
    let recorded = env.auth.state().recorded();
    assert_eq!(recorded.len(), 1, "exactly one token request");
    assert_eq!(recorded[0].param("grant_type"), Some(JWT_BEARER_GRANT));
    assert_eq!(recorded[0].param("assertion"), Some(jwt.as_str()));
    assert!(env.auth.state().issued().is_empty());
}

/// The support servers' checks are real, so the tests here cannot pass by accident: a workload
/// JWT signed with a key its issuer does not use is refused (`invalid_grant`), and a client
/// assertion presented twice is refused the second time, its `jti` already seen (R52 from the
/// server's side: why a static client assertion only works once).
#[tokio::test]
async fn support_servers_refuse_forged_signatures_and_replayed_assertions() {
    let env = workload_env().await;
    let forged = TestKey::server().sign_jwt(
        "JWT",
        &workload_claims(WORKLOAD_ISSUER, WORKLOAD_SUBJECT, &env.auth.url(), 300),
    );
    let err = discovering(
        &env.mcp,
        Credentials::jwt_bearer(ClientAssertion::from_static(forged)),
    )
    .build()
    .unwrap()
    .warm_up()
    .await;
    if SIGNATURES_VERIFIED {
        assert_eq!(err.unwrap_err().oauth_error(), Some("invalid_grant"));
    }

    let env = assertion_env(false).await;
    let ctx_claims = json!({
        "iss": ASSERTION_CLIENT, "sub": ASSERTION_CLIENT, "aud": env.auth.url(),
        "iat": now_secs(), "exp": now_secs() + 120, "jti": new_jti(),
    });
    let once = TestKey::client().sign_jwt("client-authentication+jwt", &ctx_claims);
    let layer = || {
        let creds = Credentials::client_assertion(
            ASSERTION_CLIENT,
            ClientAssertion::from_static(once.clone()),
        )
        .unwrap();
        discovering(&env.mcp, creds).build().unwrap()
    };
    layer().warm_up().await.unwrap();
    let err = layer().warm_up().await.unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_client"), "{err}");
    assert_eq!(env.auth.state().token_requests(), 2);
}

// ---------------------------------------------------------------------------
// Client assertions: private_key_jwt from a callback (REFERENCE §9)
// ---------------------------------------------------------------------------

const ASSERTION_CLIENT: &str = "assertion-client";

/// Claims of a `private_key_jwt` client assertion for `ctx` (R50).
fn client_assertion_claims(ctx: &AssertionContext) -> Value {
    let id = ctx.client_id.clone().expect("the client id is handed over");
    let now = now_secs();
    json!({ "iss": id, "sub": id, "aud": ctx.audience, "iat": now, "exp": now + 120, "jti": new_jti() })
}

async fn assertion_env(accept_token_endpoint_audience: bool) -> Env {
    env(AuthServerConfig {
        assertion_clients: vec![AssertionClient {
            client_id: ASSERTION_CLIENT.to_owned(),
            key: TestKey::client().public_key(),
        }],
        accept_token_endpoint_audience,
        ..AuthServerConfig::default()
    })
    .await
}

/// Client assertions signed with the client test key by a callback, counting its calls and
/// keeping the contexts it was handed.
fn signing_callback(
    calls: &Arc<AtomicUsize>,
    contexts: &Arc<Mutex<Vec<AssertionContext>>>,
) -> ClientAssertion {
    let (calls, contexts) = (Arc::clone(calls), Arc::clone(contexts));
    ClientAssertion::callback(move |ctx: AssertionContext| {
        calls.fetch_add(1, Ordering::SeqCst);
        let jwt =
            TestKey::client().sign_jwt("client-authentication+jwt", &client_assertion_claims(&ctx));
        contexts.lock().unwrap().push(ctx);
        async move { Ok(Assertion::new(jwt)) }
    })
}

/// R44, R49, R50: `private_key_jwt` puts `client_assertion_type`, one JWT in `client_assertion`
/// and `client_id` (= the JWT's `sub`) in the body, with no Basic header and no client secret;
/// the callback was handed the issuer as audience and the server verified the signature.
#[tokio::test]
async fn client_assertion_body_has_the_assertion_fields_and_no_secret_or_basic() {
    let env = assertion_env(false).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let contexts = Arc::new(Mutex::new(Vec::new()));
    let creds =
        Credentials::client_assertion(ASSERTION_CLIENT, signing_callback(&calls, &contexts))
            .unwrap();
    let svc = service(discovering(&env.mcp, creds).build().unwrap());

    assert_eq!(status_of(&svc, &env.mcp.url(), 1).await, StatusCode::OK);

    let recorded = env.auth.state().recorded();
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert_eq!(request.param("grant_type"), Some("client_credentials"));
    assert_eq!(
        request.param("client_assertion_type"),
        Some(JWT_CLIENT_ASSERTION_TYPE)
    );
    let assertion = request.param("client_assertion").unwrap();
    assert_eq!(assertion.matches('.').count(), 2, "exactly one compact JWT");
    let decoded = decode_jwt(assertion).unwrap();
    assert_eq!(request.param("client_id"), Some(ASSERTION_CLIENT));
    assert_eq!(decoded.claim("sub"), Some(ASSERTION_CLIENT));
    assert_eq!(
        decoded.claims["aud"],
        Value::from(env.auth.url()),
        "aud is the issuer, as a string"
    );
    assert_eq!(request.authorization, None, "no Basic header");
    assert_eq!(request.param("client_secret"), None);
    assert_eq!(request.client_auth_carriers(), 1);
    assert_eq!(request.param("resource"), Some(env.mcp.url().as_str()));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(contexts.lock().unwrap()[0].audience, env.auth.url());
    let accepted = env.auth.state().accepted(JwtUse::ClientAssertion);
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].signature_verified, SIGNATURES_VERIFIED);
}

/// R52: a retry after a 503 asks the callback again: every attempt carries a fresh assertion.
#[tokio::test]
async fn a_retry_after_503_gets_a_fresh_client_assertion() {
    let env = assertion_env(false).await;
    env.auth.state().queue_override(
        TokenOverride::json(
            503,
            r#"{"error":"temporarily_unavailable","error_description":"try again"}"#,
        )
        .header("retry-after", "0"),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let contexts = Arc::new(Mutex::new(Vec::new()));
    let creds =
        Credentials::client_assertion(ASSERTION_CLIENT, signing_callback(&calls, &contexts))
            .unwrap();
    let layer = discovering(&env.mcp, creds)
        .token_request_backoff(Duration::from_millis(10))
        .build()
        .unwrap();

    layer.warm_up().await.unwrap();

    let recorded = env.auth.state().recorded();
    assert_eq!(recorded.len(), 2, "the 503, then the retry");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one callback call per attempt"
    );
    let (first, second) = (
        recorded[0].param("client_assertion").unwrap(),
        recorded[1].param("client_assertion").unwrap(),
    );
    assert_ne!(first, second, "an assertion is never re-sent");
    assert_ne!(
        decode_jwt(first).unwrap().claim("jti"),
        decode_jwt(second).unwrap().claim("jti")
    );
    assert_eq!(env.auth.state().issued().len(), 1);
}

/// R53, R50 (DESIGN override for legacy servers): with `AssertionAudience::TokenEndpoint` the
/// callback is handed the token endpoint URL as audience.
#[tokio::test]
async fn token_endpoint_audience_hands_the_callback_the_token_endpoint() {
    let env = assertion_env(true).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let contexts = Arc::new(Mutex::new(Vec::new()));
    let source = signing_callback(&calls, &contexts).audience(AssertionAudience::TokenEndpoint);
    let creds = Credentials::client_assertion(ASSERTION_CLIENT, source).unwrap();
    let svc = service(discovering(&env.mcp, creds).build().unwrap());

    assert_eq!(status_of(&svc, &env.mcp.url(), 1).await, StatusCode::OK);

    let contexts = contexts.lock().unwrap().clone();
    assert_eq!(contexts.len(), 1);
    assert_eq!(contexts[0].audience, env.auth.token_endpoint());
    assert_eq!(contexts[0].token_endpoint, env.auth.token_endpoint());
    let assertion = env.auth.state().recorded()[0]
        .param("client_assertion")
        .map(str::to_owned)
        .unwrap();
    assert_eq!(
        decode_jwt(&assertion).unwrap().claim("aud"),
        Some(env.auth.token_endpoint().as_str())
    );
}

#[tokio::test]
async fn a_configured_token_endpoint_with_its_issuer_addresses_assertions_to_the_issuer() {
    // R50 (RFC 10070): with the token endpoint configured directly, client assertions still carry
    // the issuer as `aud` when the issuer is configured beside it.
    let env = assertion_env(true).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let contexts = Arc::new(Mutex::new(Vec::new()));
    let creds =
        Credentials::client_assertion(ASSERTION_CLIENT, signing_callback(&calls, &contexts))
            .unwrap();
    let layer = ClientCredentialsLayer::builder(env.mcp.url(), creds)
        .unwrap()
        .insecure_allow_http_loopback()
        .issuer(env.auth.url())
        .unwrap()
        .token_endpoint(env.auth.token_endpoint())
        .unwrap()
        .build()
        .unwrap();
    let svc = service(layer);

    assert_eq!(status_of(&svc, &env.mcp.url(), 1).await, StatusCode::OK);
    let contexts = contexts.lock().unwrap().clone();
    assert_eq!(contexts[0].audience, env.auth.url());
    assert_eq!(contexts[0].token_endpoint, env.auth.token_endpoint());
}

// ---------------------------------------------------------------------------
// Cross-app access (REFERENCE §14)
// ---------------------------------------------------------------------------

const USER: &str = "alice@example.com";

struct CrossApp {
    idp: AuthServer,
    auth: AuthServer,
    mcp: McpServer,
    id_token: String,
}

/// An enterprise IdP (public client `idp-client`, mapped to `demo-client` at the MCP
/// authorization server), an MCP authorization server that trusts it, an MCP server, and Alice's
/// ID token from an earlier single sign-on.
async fn cross_app(id_jag_lifetime: Duration) -> CrossApp {
    let idp = AuthServer::start(AuthServerConfig {
        clients: Vec::new(),
        idp: Some(IdpConfig {
            id_jag_lifetime,
            ..IdpConfig::default()
        }),
        ..AuthServerConfig::default()
    })
    .await;
    let auth = AuthServer::start(AuthServerConfig {
        trusted_issuers: vec![idp.trusted_issuer()],
        ..AuthServerConfig::default()
    })
    .await;
    let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
    let id_token = idp.issue_id_token(USER);
    CrossApp {
        idp,
        auth,
        mcp,
        id_token,
    }
}

impl CrossApp {
    fn provider(&self) -> IdentityProvider {
        IdentityProvider::new(
            &self.idp.token_endpoint(),
            ClientAssertion::from_static(self.id_token.clone()),
        )
        .unwrap()
        .client(Credentials::public_client("idp-client").unwrap())
    }

    fn credentials(&self) -> Credentials {
        Credentials::cross_app_access(
            self.provider(),
            Credentials::client_secret_basic("demo-client", "demo-secret").unwrap(),
        )
    }
}

/// R71, R72, R73, R76: with discovery from the MCP URL, one token exchange at the IdP (ID-JAG
/// requested for the MCP authorization server's issuer and the MCP resource, from the ID token),
/// then one jwt-bearer request at the MCP authorization server presenting the ID-JAG with Basic
/// client authentication. Neither the ID token nor the ID-JAG ever reaches the MCP server.
#[tokio::test]
async fn an_idp_known_by_its_issuer_is_discovered_once() {
    // Issue #4: the IdP's token endpoint configured or discovered (RFC 8414 metadata).
    let x = cross_app(Duration::from_secs(300)).await;
    let idp = IdentityProvider::discover(
        &x.idp.url(),
        ClientAssertion::from_static(x.id_token.clone()),
    )
    .unwrap()
    .insecure_allow_http_loopback()
    .client(Credentials::public_client("idp-client").unwrap());
    let creds = Credentials::cross_app_access(
        idp,
        Credentials::client_secret_basic("demo-client", "demo-secret").unwrap(),
    );
    let svc = service(discovering(&x.mcp, creds).build().unwrap());

    assert_eq!(status_of(&svc, &x.mcp.url(), 1).await, StatusCode::OK);
    assert_eq!(x.idp.state().token_exchanges(), 1);
    let exchange = &x.idp.state().recorded()[0];
    assert_eq!(exchange.param("audience"), Some(x.auth.url().as_str()));

    // Without the loopback switch, the http IdP is refused before any exchange.
    let strict = IdentityProvider::discover(
        &x.idp.url(),
        ClientAssertion::from_static(x.id_token.clone()),
    )
    .unwrap();
    let err = request_id_jag(&strict, &x.auth.url(), Some(&x.mcp.url()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Discovery);
    assert_eq!(x.idp.state().token_exchanges(), 1);
}

#[tokio::test]
async fn cross_app_access_exchanges_the_id_token_then_redeems_the_id_jag() {
    let x = cross_app(Duration::from_secs(300)).await;
    let svc = service(discovering(&x.mcp, x.credentials()).build().unwrap());

    assert_eq!(status_of(&svc, &x.mcp.url(), 1).await, StatusCode::OK);

    // The exchange at the IdP (R71).
    assert_eq!(x.idp.state().token_exchanges(), 1);
    let exchange = &x.idp.state().recorded()[0];
    assert_eq!(exchange.param("grant_type"), Some(TOKEN_EXCHANGE_GRANT));
    assert_eq!(
        exchange.param("requested_token_type"),
        Some(ID_JAG_TOKEN_TYPE)
    );
    assert_eq!(exchange.param("audience"), Some(x.auth.url().as_str()));
    assert_eq!(exchange.param("resource"), Some(x.mcp.url().as_str()));
    assert_eq!(exchange.param("subject_token"), Some(x.id_token.as_str()));
    assert_eq!(exchange.param("subject_token_type"), Some(ID_TOKEN_TYPE));
    assert_eq!(exchange.param("client_id"), Some("idp-client"));
    assert_eq!(exchange.param("actor_token"), None);
    assert_eq!(exchange.param("actor_token_type"), None);
    let id_jags = x.idp.state().issued_id_jags();
    assert_eq!(id_jags.len(), 1);
    let id_jag = &id_jags[0];
    assert_eq!(
        (id_jag.audience.as_str(), id_jag.resource.as_str()),
        (x.auth.url().as_str(), x.mcp.url().as_str())
    );
    assert_eq!(id_jag.client_id, "demo-client");

    // The redemption at the MCP authorization server (R73).
    let redeemed = with_grant(&x.auth, JWT_BEARER_GRANT);
    assert_eq!(redeemed.len(), 1);
    assert_eq!(x.auth.state().token_requests(), 1);
    let request = &redeemed[0];
    assert_eq!(request.param("assertion"), Some(id_jag.jwt.as_str()));
    assert_eq!(
        request.authorization.as_deref(),
        Some(basic_authorization("demo-client", "demo-secret").as_str())
    );
    assert_eq!(request.client_auth_carriers(), 1);
    assert_eq!(request.param("resource"), Some(x.mcp.url().as_str()));
    let accepted = x.auth.state().accepted(JwtUse::Grant);
    assert_eq!(accepted[0].signature_verified, SIGNATURES_VERIFIED);

    // The MCP server saw the access token and nothing else (R72, R76).
    let token = &x.auth.state().issued()[0].access_token;
    let seen = x.mcp.seen_requests();
    assert!(!seen.is_empty());
    for request in &seen {
        for secret in [&id_jag.jwt, &x.id_token] {
            assert!(!request.contains(secret), "{request:?}");
        }
    }
    assert_eq!(
        x.mcp.seen_authorization().last().unwrap().as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
}

/// R74: when the access token is renewed (here after revocation and a 401), the live ID-JAG is
/// presented again: no new exchange at the IdP.
#[tokio::test]
async fn a_live_id_jag_is_reused_when_the_access_token_is_renewed() {
    let x = cross_app(Duration::from_secs(300)).await;
    let svc = service(discovering(&x.mcp, x.credentials()).build().unwrap());
    assert_eq!(status_of(&svc, &x.mcp.url(), 1).await, StatusCode::OK);

    x.auth.state().revoke_all();
    assert_eq!(status_of(&svc, &x.mcp.url(), 2).await, StatusCode::OK);

    assert_eq!(x.idp.state().token_exchanges(), 1, "no second exchange");
    let redeemed = with_grant(&x.auth, JWT_BEARER_GRANT);
    assert_eq!(redeemed.len(), 2);
    assert_eq!(
        redeemed[0].param("assertion"),
        redeemed[1].param("assertion")
    );
    assert_eq!(
        redeemed[1].param("assertion"),
        Some(x.idp.state().issued_id_jags()[0].jwt.as_str())
    );
}

/// R74: an ID-JAG too close to expiry to present again (the crate keeps a 30 s margin; this one
/// lives 20 s) is replaced: one new IdP exchange, then one authorization server request.
#[tokio::test]
async fn an_id_jag_near_expiry_is_replaced_by_a_new_exchange() {
    let x = cross_app(Duration::from_secs(20)).await;
    let svc = service(discovering(&x.mcp, x.credentials()).build().unwrap());
    assert_eq!(status_of(&svc, &x.mcp.url(), 1).await, StatusCode::OK);

    x.auth.state().revoke_all();
    assert_eq!(status_of(&svc, &x.mcp.url(), 2).await, StatusCode::OK);

    assert_eq!(x.idp.state().token_exchanges(), 2);
    let redeemed = with_grant(&x.auth, JWT_BEARER_GRANT);
    assert_eq!(redeemed.len(), 2);
    let id_jags = x.idp.state().issued_id_jags();
    assert_eq!(
        redeemed[1].param("assertion"),
        Some(id_jags[1].jwt.as_str())
    );
    assert_ne!(id_jags[0].jwt, id_jags[1].jwt);
}

/// R76: one set of cross-app credentials used for two MCP servers behind two authorization
/// servers asks the IdP twice, once per audience, and each authorization server only ever sees
/// the ID-JAG made out for it.
#[tokio::test]
async fn each_authorization_server_gets_its_own_id_jag() {
    let x = cross_app(Duration::from_secs(300)).await;
    let auth2 = AuthServer::start(AuthServerConfig {
        trusted_issuers: vec![x.idp.trusted_issuer()],
        ..AuthServerConfig::default()
    })
    .await;
    let mcp2 = McpServer::start(auth2.state(), auth2.url(), "/mcp").await;
    let creds = x.credentials();
    let svc1 = service(discovering(&x.mcp, creds.clone()).build().unwrap());
    let svc2 = service(discovering(&mcp2, creds).build().unwrap());

    assert_eq!(status_of(&svc1, &x.mcp.url(), 1).await, StatusCode::OK);
    assert_eq!(status_of(&svc2, &mcp2.url(), 2).await, StatusCode::OK);

    let audiences: Vec<String> = x
        .idp
        .state()
        .issued_id_jags()
        .iter()
        .map(|j| j.audience.clone())
        .collect();
    assert_eq!(audiences, vec![x.auth.url(), auth2.url()]);
    for (auth, id_jag) in [&x.auth, &auth2]
        .into_iter()
        .zip(x.idp.state().issued_id_jags())
    {
        let presented: Vec<String> = with_grant(auth, JWT_BEARER_GRANT)
            .iter()
            .filter_map(|r| r.param("assertion").map(str::to_owned))
            .collect();
        assert_eq!(presented, vec![id_jag.jwt.clone()]);
    }
}

/// R71, R73: `request_id_jag` and `redeem_id_jag` run the same two steps by hand.
#[tokio::test]
async fn request_id_jag_and_redeem_id_jag_work_standalone() {
    let x = cross_app(Duration::from_secs(300)).await;
    let provider = x
        .provider()
        .subject_token_type(SubjectTokenType::IdToken)
        .scope("mcp:tools");

    let id_jag = request_id_jag(&provider, &x.auth.url(), Some(&x.mcp.url()))
        .await
        .unwrap();

    assert_eq!(id_jag.expires_in, Some(Duration::from_secs(300)));
    assert_eq!(id_jag.scope.as_deref(), Some("mcp:tools"));
    let issued = &x.idp.state().issued_id_jags()[0];
    assert_eq!(id_jag.assertion.expose_secret(), issued.jwt);
    assert_eq!(
        x.idp.state().recorded()[0].param("scope"),
        Some("mcp:tools")
    );

    let client = Credentials::client_secret_basic("demo-client", "demo-secret").unwrap();
    let (token, expires_in) = redeem_id_jag(
        &AuthHttpClient::default(),
        &x.auth.url(),
        &x.auth.token_endpoint(),
        &id_jag,
        &client,
        Some(&x.mcp.url()),
        Some("mcp:tools"),
    )
    .await
    .unwrap();

    assert_eq!(expires_in, Some(Duration::from_secs(3600)));
    assert_eq!(
        x.auth.state().validate(token.expose_secret(), &x.mcp.url()),
        TokenCheck::Valid
    );
    let request = &x.auth.state().recorded()[0];
    assert_eq!(request.param("grant_type"), Some(JWT_BEARER_GRANT));
    assert_eq!(request.param("assertion"), Some(issued.jwt.as_str()));
    assert_eq!(
        request.authorization.as_deref(),
        Some(basic_authorization("demo-client", "demo-secret").as_str())
    );
}

/// R72: an IdP answer whose `issued_token_type` is an access token, not an ID-JAG, is a
/// `TokenResponse` error, and nothing is presented to the MCP authorization server.
#[tokio::test]
async fn an_idp_answer_that_is_not_an_id_jag_is_a_token_response_error() {
    let x = cross_app(Duration::from_secs(300)).await;
    let not_an_id_jag = support::unsigned_jwt(json!({ "exp": now_secs() + 300, "sub": USER }));
    x.idp.state().set_override(Some(TokenOverride::json(
        200,
        json!({
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "access_token": not_an_id_jag,
            "token_type": "N_A",
            "expires_in": 300,
        })
        .to_string(),
    )));

    let err = request_id_jag(&x.provider(), &x.auth.url(), Some(&x.mcp.url()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenResponse, "{err}");

    let layer = discovering(&x.mcp, x.credentials()).build().unwrap();
    let err = layer.warm_up().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenResponse, "{err}");
    assert_eq!(x.idp.state().token_exchanges(), 2);
    assert_eq!(x.auth.state().token_requests(), 0);
    assert!(!format!("{err} {err:?}").contains(&not_an_id_jag));
}

/// R77: cross-app access is offered only with client authentication at the MCP authorization
/// server; a public client there is a configuration error.
#[tokio::test]
async fn cross_app_access_without_mcp_client_authentication_is_refused() {
    let x = cross_app(Duration::from_secs(300)).await;
    let creds = Credentials::cross_app_access(
        x.provider(),
        Credentials::public_client("demo-client").unwrap(),
    );
    let built = discovering(&x.mcp, creds).build();
    assert!(
        built.is_err(),
        "a public client at the MCP AS must be refused"
    );
}

// ---------------------------------------------------------------------------
// Token sources
// ---------------------------------------------------------------------------

/// What a stand-in resource received.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A stand-in HTTP service recording (URI, Authorization) and answering 401 unless the request
/// carries `Bearer {accept}` (any token when `accept` is `None`).
fn recording_service(
    accept: Option<&'static str>,
    seen: &Seen,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    let seen = Arc::clone(seen);
    service_fn(move |req: Request<Full<Bytes>>| {
        let authorization = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        seen.lock()
            .unwrap()
            .push((req.uri().to_string(), authorization.clone()));
        let ok = match accept {
            None => true,
            Some(token) => authorization.as_deref() == Some(&format!("Bearer {token}")),
        };
        let mut response = Response::new(Full::new(Bytes::new()));
        if !ok {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                "www-authenticate",
                "Bearer error=\"invalid_token\"".parse().unwrap(),
            );
        }
        std::future::ready(Ok(response))
    })
}

const API: &str = "http://127.0.0.1:9/api";

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

/// R5: a sourced token goes to the resource (and paths below it) and nowhere else.
#[tokio::test]
async fn token_source_tokens_go_only_to_the_resource() {
    let seen: Seen = Arc::default();
    let layer = ClientCredentialsLayer::with_token_source(
        API,
        token_source_fn(|| async { Ok(SourcedToken::new("api-key-1")) }),
    )
    .unwrap()
    .insecure_allow_http_loopback()
    .build()
    .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(recording_service(None, &seen));

    for url in [
        API,
        "http://127.0.0.1:9/api/v1/items",
        "http://127.0.0.1:9/apix",
        "http://127.0.0.1:9/other",
        "http://127.0.0.1:10/api",
        "http://localhost:9/api",
        "https://127.0.0.1:9/api",
    ] {
        let response = svc.clone().oneshot(get(url)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
    }

    let seen = seen.lock().unwrap().clone();
    let with_token: Vec<&str> = seen
        .iter()
        .filter(|(_, auth)| auth.as_deref() == Some("Bearer api-key-1"))
        .map(|(uri, _)| uri.as_str())
        .collect();
    assert_eq!(
        with_token,
        vec![API, "http://127.0.0.1:9/api/v1/items"],
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|(_, auth)| auth.is_none()).count(),
        5,
        "{seen:?}"
    );
}

/// R62 (token source without a hook): a 401 is `ErrorKind::Unauthorized`, not a retry.
#[tokio::test]
async fn token_source_401_without_hook_is_an_unauthorized_error() {
    let seen: Seen = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let layer = ClientCredentialsLayer::with_token_source(
        API,
        token_source_fn(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(SourcedToken::new("revoked-key")) }
        }),
    )
    .unwrap()
    .insecure_allow_http_loopback()
    .build()
    .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(recording_service(Some("never"), &seen));

    let err = auth_error(svc.oneshot(get(API)).await.unwrap_err());

    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1, "not replayed");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// R62: with an `on_unauthorized` hook, a 401 calls the hook once and replays the request once
/// with the new token.
#[tokio::test]
async fn token_source_401_with_hook_calls_it_once_and_replays() {
    let seen: Seen = Arc::default();
    let (tokens, refreshes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (t, r) = (Arc::clone(&tokens), Arc::clone(&refreshes));
    let source = token_source_fn(move || {
        t.fetch_add(1, Ordering::SeqCst);
        async { Ok(SourcedToken::new("stale-key")) }
    })
    .on_unauthorized(move || {
        r.fetch_add(1, Ordering::SeqCst);
        async { Ok(SourcedToken::new("fresh-key")) }
    });
    let layer = ClientCredentialsLayer::with_token_source(API, source)
        .unwrap()
        .insecure_allow_http_loopback()
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(recording_service(Some("fresh-key"), &seen));

    let response = svc.clone().oneshot(get(API)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Later requests keep the new token.
    let response = svc.oneshot(get(API)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    assert_eq!(tokens.load(Ordering::SeqCst), 1);
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    let headers: Vec<Option<String>> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, auth)| auth.clone())
        .collect();
    assert_eq!(
        headers,
        ["stale-key", "fresh-key", "fresh-key"].map(|t| Some(format!("Bearer {t}")))
    );
}

/// R64: a sourced token with `expires_in` is refreshed in the background ahead of its expiry
/// (paused clock: a 60 s token is replaced before 40 s have passed, with no request waiting).
#[tokio::test(start_paused = true)]
async fn token_source_with_expiry_is_refreshed_ahead_of_it() {
    let seen: Seen = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let layer =
        ClientCredentialsLayer::with_token_source(
            API,
            token_source_fn(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    Ok(SourcedToken::new(format!("key-{n}")).expires_in(Duration::from_secs(60)))
                }
            }),
        )
        .unwrap()
        .insecure_allow_http_loopback()
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(recording_service(None, &seen));

    svc.clone().oneshot(get(API)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "refreshed in the background"
    );
    svc.oneshot(get(API)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let headers: Vec<Option<String>> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, auth)| auth.clone())
        .collect();
    assert_eq!(
        headers,
        vec![
            Some("Bearer key-1".to_owned()),
            Some("Bearer key-2".to_owned())
        ]
    );
}

// ---------------------------------------------------------------------------
// A client secret in a file
// ---------------------------------------------------------------------------

/// R41, R46: a secret file rotated on disk (new content, later modification time) is read again:
/// after the server revokes the tokens, the next token request authenticates with the new secret.
#[tokio::test]
async fn a_rotated_secret_file_is_used_for_the_next_token_request() {
    let env = env(AuthServerConfig {
        // Both secrets are valid during the rotation window.
        clients: vec![
            ("rotating-client".to_owned(), "old-secret".to_owned()),
            ("rotating-client".to_owned(), "new-secret".to_owned()),
        ],
        ..AuthServerConfig::default()
    })
    .await;
    let dir = TempDir::new("secret-rotation");
    let path = dir.join("client-secret");
    std::fs::write(&path, "old-secret\n").unwrap();
    let creds = Credentials::client_secret_file("rotating-client", &path).unwrap();
    let svc = service(discovering(&env.mcp, creds).build().unwrap());
    assert_eq!(status_of(&svc, &env.mcp.url(), 1).await, StatusCode::OK);

    rewrite(&path, "new-secret\n", Duration::from_secs(5));
    env.auth.state().revoke_all();
    assert_eq!(status_of(&svc, &env.mcp.url(), 2).await, StatusCode::OK);

    let recorded = env.auth.state().recorded();
    assert_eq!(recorded.len(), 2);
    assert_eq!(
        recorded[0].authorization.as_deref(),
        Some(basic_authorization("rotating-client", "old-secret").as_str())
    );
    assert_eq!(
        recorded[1].authorization.as_deref(),
        Some(basic_authorization("rotating-client", "new-secret").as_str())
    );
}

/// R41: a missing secret file is `ErrorKind::Credentials`, before any token request.
#[tokio::test]
async fn a_missing_secret_file_is_a_credentials_error() {
    let env = env(AuthServerConfig::default()).await;
    let dir = TempDir::new("missing-secret");
    let creds = Credentials::client_secret_file("demo-client", dir.join("absent")).unwrap();
    let layer = discovering(&env.mcp, creds).build().unwrap();

    let err = layer.warm_up().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Credentials, "{err}");
    assert_eq!(env.auth.state().token_requests(), 0);
}

// ---------------------------------------------------------------------------
// Redaction (REFERENCE R79, R76)
// ---------------------------------------------------------------------------

/// The parts of a JWT that are its own: the whole, the claims and the signature segments.
fn jwt_needles(jwt: &str) -> Vec<String> {
    let mut needles = vec![jwt.to_owned()];
    needles.extend(jwt.split('.').skip(1).map(str::to_owned));
    needles
}

/// R79, R76: `Debug` of every new credential kind, of the builders, layers and services holding
/// them, their errors (`Display` and `Debug`) and the log output of their full flows never hold
/// a client secret, a workload JWT, a client assertion, the ID token or the ID-JAG, or an issued
/// token.
#[tokio::test]
async fn new_credential_kinds_never_print_or_log_secrets_assertions_or_id_jags() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = TempDir::new("redaction");
    let mut printed = Vec::<String>::new();
    let mut needles = Vec::<String>::new();
    let tokens_of = |auth: &AuthServer, needles: &mut Vec<String>| {
        needles.extend(auth.state().issued().into_iter().map(|t| t.access_token));
    };

    // jwt-bearer: static and file, plus an expired one and one the server refuses.
    let env1 = workload_env().await;
    let static_jwt = workload_jwt(&env1.auth.url(), 300);
    let file_jwt = workload_jwt(&env1.auth.url(), 300);
    let expired_jwt = workload_jwt(&env1.auth.url(), -60);
    let refused_jwt = workload_jwt("https://another-as.example", 300);
    let path = dir.join("token");
    std::fs::write(&path, &file_jwt).unwrap();
    for creds in [
        Credentials::jwt_bearer(ClientAssertion::from_static(static_jwt.clone())),
        Credentials::jwt_bearer(ClientAssertion::from_file(&path))
            .with_client_id("nightly")
            .unwrap(),
    ] {
        let builder = discovering(&env1.mcp, creds.clone());
        printed.push(format!("{creds:?} {builder:?}"));
        let layer = builder.build().unwrap();
        let svc = service(layer.clone());
        assert_eq!(status_of(&svc, &env1.mcp.url(), 1).await, StatusCode::OK);
        printed.push(format!("{layer:?} {svc:?}"));
    }
    for jwt in [&expired_jwt, &refused_jwt] {
        let creds = Credentials::jwt_bearer(ClientAssertion::from_static(jwt.clone()));
        let err = discovering(&env1.mcp, creds)
            .build()
            .unwrap()
            .warm_up()
            .await
            .unwrap_err();
        printed.push(format!("{err} {err:?}"));
    }
    for jwt in [&static_jwt, &file_jwt, &expired_jwt, &refused_jwt] {
        needles.extend(jwt_needles(jwt));
    }
    tokens_of(&env1.auth, &mut needles);

    // private_key_jwt from a callback.
    let env2 = assertion_env(false).await;
    let creds = Credentials::client_assertion(
        ASSERTION_CLIENT,
        signing_callback(&Arc::default(), &Arc::default()),
    )
    .unwrap();
    let layer = discovering(&env2.mcp, creds.clone()).build().unwrap();
    let svc = service(layer.clone());
    assert_eq!(status_of(&svc, &env2.mcp.url(), 1).await, StatusCode::OK);
    printed.push(format!("{creds:?} {layer:?} {svc:?}"));
    for accepted in env2.auth.state().accepted(JwtUse::ClientAssertion) {
        needles.extend(jwt_needles(&accepted.jwt));
    }
    tokens_of(&env2.auth, &mut needles);

    // Cross-app access, with a renewal, then an IdP that refuses.
    let x = cross_app(Duration::from_secs(300)).await;
    let provider = x.provider();
    let creds = x.credentials();
    let layer = discovering(&x.mcp, creds.clone()).build().unwrap();
    let svc = service(layer.clone());
    assert_eq!(status_of(&svc, &x.mcp.url(), 1).await, StatusCode::OK);
    x.auth.state().revoke_all();
    assert_eq!(status_of(&svc, &x.mcp.url(), 2).await, StatusCode::OK);
    let id_jag = request_id_jag(&provider, &x.auth.url(), Some(&x.mcp.url()))
        .await
        .unwrap();
    printed.push(format!(
        "{provider:?} {creds:?} {layer:?} {svc:?} {id_jag:?}"
    ));
    x.idp.state().set_override(Some(TokenOverride::json(
        400,
        r#"{"error":"invalid_grant","error_description":"the subject token was revoked"}"#,
    )));
    let err = request_id_jag(&provider, &x.auth.url(), Some(&x.mcp.url()))
        .await
        .unwrap_err();
    printed.push(format!("{err} {err:?}"));
    needles.extend(jwt_needles(&x.id_token));
    for issued in x.idp.state().issued_id_jags() {
        needles.extend(jwt_needles(&issued.jwt));
    }
    tokens_of(&x.auth, &mut needles);

    // A client secret in a file.
    let secret = "file-secret-5ecr3t-value";
    let env3 = env(AuthServerConfig {
        clients: vec![("file-client".to_owned(), secret.to_owned())],
        ..AuthServerConfig::default()
    })
    .await;
    let secret_path = dir.join("secret");
    std::fs::write(&secret_path, secret).unwrap();
    let creds = Credentials::client_secret_file("file-client", &secret_path).unwrap();
    let layer = discovering(&env3.mcp, creds.clone()).build().unwrap();
    let svc = service(layer.clone());
    assert_eq!(status_of(&svc, &env3.mcp.url(), 1).await, StatusCode::OK);
    printed.push(format!("{creds:?} {layer:?} {svc:?}"));
    needles.push(secret.to_owned());
    tokens_of(&env3.auth, &mut needles);

    // A token source.
    let api_key = "api-key-5ecr3t-value";
    let builder = ClientCredentialsLayer::with_token_source(
        API,
        token_source_fn(move || async move { Ok(SourcedToken::new(api_key)) }),
    )
    .unwrap()
    .insecure_allow_http_loopback();
    printed.push(format!("{builder:?}"));
    let layer = builder.build().unwrap();
    let seen: Seen = Arc::default();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(recording_service(Some("never"), &seen));
    let err = svc.oneshot(get(API)).await.unwrap_err();
    printed.push(format!("{layer:?} {err} {err:?}"));
    needles.push(api_key.to_owned());

    let mut text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("token_request"),
        "the capture saw no log lines: {text}"
    );
    text.push_str(&printed.join("\n"));
    assert!(needles.len() > 20, "{needles:?}");
    for needle in &needles {
        assert!(!text.contains(needle.as_str()), "{needle:?} leaked");
    }
}

// ---------------------------------------------------------------------------
// private_key_jwt with a key the crate signs with (REFERENCE §9)
// ---------------------------------------------------------------------------

#[cfg(feature = "private-key-jwt")]
mod private_key_jwt {
    use super::*;
    use tower_client_credentials::PrivateKey;

    const CLIENT: &str = "signing-client";

    /// The test keys of `tests/keys/` (PKCS#8 PEM) and the JWS `alg` each signs with.
    const KEYS: [(&str, &str); 3] = [
        (include_str!("keys/p256.pkcs8.pem"), "ES256"),
        (include_str!("keys/ed25519.pkcs8.pem"), "EdDSA"),
        (include_str!("keys/rsa.pkcs8.pem"), "RS256"),
    ];

    /// An authorization server that knows `CLIENT` by the public half of `pem`, checked with the
    /// `rustls` crypto provider (not the crate's JWT code).
    async fn env_for(pem: &str, algs: &[&str]) -> Env {
        env(AuthServerConfig {
            assertion_clients: vec![AssertionClient {
                client_id: CLIENT.to_owned(),
                key: TestKey::from_pem(pem, "registered").public_key(),
            }],
            signing_alg_values: algs.iter().map(|a| (*a).to_owned()).collect(),
            ..AuthServerConfig::default()
        })
        .await
    }

    /// R49, R50, R51, R52: for ES256, EdDSA and RS256 keys, each token request carries a client
    /// assertion with `typ` `client-authentication+jwt`, the key's `alg` and `kid`; `iss` = `sub`
    /// = the client id (also in `client_id`), `aud` = the issuer as a string, `exp` = `iat` +
    /// 120 s, a `jti` never used before; the server verifies the signature; no secret, no Basic.
    #[tokio::test]
    async fn private_key_jwt_signs_a_fresh_verified_assertion_per_token_request() {
        for (pem, alg) in KEYS {
            let env = env_for(pem, &["ES256", "EdDSA", "RS256"]).await;
            let key = PrivateKey::from_pem(pem).unwrap().with_kid("key-2026");
            let creds = Credentials::private_key_jwt(CLIENT, key).unwrap();
            let svc = service(discovering(&env.mcp, creds).build().unwrap());
            assert_eq!(
                status_of(&svc, &env.mcp.url(), 1).await,
                StatusCode::OK,
                "{alg}"
            );
            env.auth.state().revoke_all();
            assert_eq!(
                status_of(&svc, &env.mcp.url(), 2).await,
                StatusCode::OK,
                "{alg}"
            );

            let recorded = env.auth.state().recorded();
            assert_eq!(recorded.len(), 2, "{alg}");
            let mut jtis = Vec::new();
            for request in &recorded {
                assert_eq!(request.param("grant_type"), Some("client_credentials"));
                assert_eq!(
                    request.param("client_assertion_type"),
                    Some(JWT_CLIENT_ASSERTION_TYPE)
                );
                assert_eq!(request.param("client_id"), Some(CLIENT));
                assert_eq!(request.authorization, None);
                assert_eq!(request.param("client_secret"), None);
                assert_eq!(request.client_auth_carriers(), 1);
                let jwt = request.param("client_assertion").unwrap();
                assert_eq!(jwt.matches('.').count(), 2);
                let decoded = decode_jwt(jwt).unwrap();
                assert_eq!(decoded.header["typ"], "client-authentication+jwt", "{alg}");
                assert_eq!(decoded.header["alg"], alg);
                assert_eq!(decoded.header["kid"], "key-2026");
                assert_eq!(decoded.claim("iss"), Some(CLIENT));
                assert_eq!(decoded.claim("sub"), Some(CLIENT));
                assert_eq!(decoded.claims["aud"], Value::from(env.auth.url()));
                let (iat, exp) = (
                    decoded.claims["iat"].as_u64().unwrap(),
                    decoded.claims["exp"].as_u64().unwrap(),
                );
                assert_eq!(exp - iat, 120, "{alg}");
                assert!(iat.abs_diff(now_secs()) <= 5);
                jtis.push(decoded.claim("jti").unwrap().to_owned());
            }
            assert_ne!(jtis[0], jtis[1], "{alg}: a fresh jti per request");
            let accepted = env.auth.state().accepted(JwtUse::ClientAssertion);
            assert_eq!(accepted.len(), 2, "{alg}");
            assert!(
                accepted
                    .iter()
                    .all(|a| a.signature_verified == SIGNATURES_VERIFIED),
                "{alg}"
            );
        }
    }

    /// R51: an authorization server that lists only algorithms the key cannot sign with is
    /// refused before any token request (no assertion is sent to be rejected).
    #[tokio::test]
    async fn private_key_jwt_refuses_an_algorithm_the_server_does_not_list() {
        let (pem, _) = KEYS[0];
        let env = env_for(pem, &["RS256"]).await;
        let creds =
            Credentials::private_key_jwt(CLIENT, PrivateKey::from_pem(pem).unwrap()).unwrap();

        let err = discovering(&env.mcp, creds)
            .build()
            .unwrap()
            .warm_up()
            .await
            .unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Discovery, "{err}");
        assert!(err.to_string().contains("ES256"), "{err}");
        assert_eq!(env.auth.state().token_requests(), 0);
    }

    /// R79: neither the private key nor the assertions it signs appear in `Debug` of the key,
    /// the credentials, the layer and service, nor in the log output of a full flow.
    #[tokio::test]
    async fn private_key_jwt_never_prints_or_logs_the_key_or_its_assertions() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(capture.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let (pem, _) = KEYS[0];
        let env = env_for(pem, &["ES256"]).await;
        let key = PrivateKey::from_pem(pem).unwrap().with_kid("key-2026");
        let creds = Credentials::private_key_jwt(CLIENT, key.clone()).unwrap();
        let layer = discovering(&env.mcp, creds.clone()).build().unwrap();
        let svc = service(layer.clone());
        assert_eq!(status_of(&svc, &env.mcp.url(), 1).await, StatusCode::OK);

        let mut text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("token_request"), "no log lines: {text}");
        text.push_str(&format!("{key:?} {key:#?} {creds:?} {layer:?} {svc:?}"));
        let mut needles: Vec<String> = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .map(str::to_owned)
            .collect();
        for accepted in env.auth.state().accepted(JwtUse::ClientAssertion) {
            needles.extend(jwt_needles(&accepted.jwt));
        }
        needles.extend(
            env.auth
                .state()
                .issued()
                .into_iter()
                .map(|t| t.access_token),
        );
        assert!(needles.len() >= 4);
        for needle in &needles {
            assert!(!text.contains(needle.as_str()), "{needle:?} leaked");
        }
    }
}
