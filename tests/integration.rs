//! End-to-end behaviour against the in-process axum authorization server and MCP server over
//! loopback, through a hyper-util client. Guards issue #2 (core).

#[path = "../examples/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use support::{AuthServer, AuthServerConfig, Capture, McpServer, TokenOverride, jsonrpc};
use tower::{Service, ServiceBuilder, ServiceExt as _, service_fn};
use tower_client_credentials::{
    BoxError, ClientCredentials, ClientCredentialsBuilder, ClientCredentialsLayer, ClientSecret,
    ConfigError, Credentials, Error, ErrorKind,
};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
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

fn builder(env: &Env, credentials: Credentials) -> ClientCredentialsBuilder {
    ClientCredentialsLayer::builder(env.mcp.url(), credentials)
        .unwrap()
        .token_endpoint(env.auth.token_endpoint())
        .unwrap()
        .insecure_allow_http_loopback()
}

fn demo() -> Credentials {
    Credentials::client_secret_basic("demo-client", "demo-secret").unwrap()
}

fn service(layer: ClientCredentialsLayer) -> ClientCredentials<HttpClient> {
    ServiceBuilder::new().layer(layer).service(http_client())
}

fn call(url: &str, id: u64, method: &str) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(jsonrpc(id, method, json!({})))))
        .unwrap()
}

async fn json_body<B>(response: Response<B>) -> Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn auth_error(err: BoxError) -> Error {
    *err.downcast::<Error>()
        .expect("a tower_client_credentials::Error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_cold_requests_make_one_token_request() {
    let env = env(AuthServerConfig::default()).await;
    // Slow token endpoint: every request arrives while the first token request is in flight.
    env.auth.state().set_delay(Duration::from_millis(200));
    let svc = service(builder(&env, demo()).build().unwrap());
    let mut tasks = Vec::new();
    for id in 0..500 {
        let svc = svc.clone();
        let url = env.mcp.url();
        tasks.push(tokio::spawn(async move {
            svc.oneshot(call(&url, id, "tools/list"))
                .await
                .map(|r| r.status())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(env.auth.state().token_requests(), 1);
    assert_eq!(env.mcp.unauthorized(), 0);
    assert_eq!(env.mcp.requests(), 500);
}

#[tokio::test]
async fn tools_list_and_call_carry_the_bearer_token() {
    let env = env(AuthServerConfig::default()).await;
    let mut svc = service(
        builder(&env, demo())
            .scopes(["mcp:tools"])
            .unwrap()
            .build()
            .unwrap(),
    );
    let list = svc
        .ready()
        .await
        .unwrap()
        .call(call(&env.mcp.url(), 1, "tools/list"))
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    assert_eq!(json_body(list).await["result"]["tools"][0]["name"], "echo");
    let echo = Request::post(env.mcp.url())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(jsonrpc(
            2,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "hi"}}),
        ))))
        .unwrap();
    let echoed = svc.ready().await.unwrap().call(echo).await.unwrap();
    assert_eq!(
        json_body(echoed).await["result"]["content"][0]["text"],
        "hi"
    );

    let issued = &env.auth.state().issued()[0];
    let seen = env.mcp.seen_authorization();
    assert_eq!(seen.len(), 2);
    for header in seen {
        assert_eq!(
            header.as_deref(),
            Some(format!("Bearer {}", issued.access_token).as_str())
        );
    }
    // One token request, with the wire details REFERENCE requires.
    let recorded = env.auth.state().recorded();
    assert_eq!(recorded.len(), 1);
    let token_request = &recorded[0];
    assert_eq!(token_request.method, "POST");
    assert_eq!(
        token_request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(token_request.accept.as_deref(), Some("application/json"));
    assert_eq!(
        token_request.param("grant_type"),
        Some("client_credentials")
    );
    assert_eq!(
        token_request.param("resource"),
        Some(env.mcp.url().as_str())
    );
    assert_eq!(token_request.param("scope"), Some("mcp:tools"));
    assert_eq!(
        token_request.param("client_secret"),
        None,
        "basic auth must not put the secret in the body"
    );
    assert!(
        token_request
            .authorization
            .as_deref()
            .unwrap()
            .starts_with("Basic ")
    );
}

#[tokio::test]
async fn resource_is_sent_verbatim_without_a_trailing_slash() {
    let env = env(AuthServerConfig::default()).await;
    // A resource that is a bare origin: URL libraries would add a "/" (REFERENCE R31, P4).
    let origin = env.mcp.origin();
    let layer = ClientCredentialsLayer::builder(origin.clone(), demo())
        .unwrap()
        .token_endpoint(env.auth.token_endpoint())
        .unwrap()
        .insecure_allow_http_loopback()
        .build()
        .unwrap();
    layer.warm_up().await.unwrap();
    let recorded = env.auth.state().recorded();
    assert_eq!(recorded[0].param("resource"), Some(origin.as_str()));
    assert!(!recorded[0].raw_body.contains("%2F&") && !recorded[0].raw_body.ends_with("%2F"));
}

#[tokio::test]
async fn a_revoked_token_is_replayed_once_with_a_new_token() {
    let env = env(AuthServerConfig::default()).await;
    let mut svc = service(builder(&env, demo()).build().unwrap());
    let ok = svc
        .ready()
        .await
        .unwrap()
        .call(call(&env.mcp.url(), 1, "tools/list"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    env.auth.state().revoke_all();
    let replayed = svc
        .ready()
        .await
        .unwrap()
        .call(call(&env.mcp.url(), 2, "tools/list"))
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::OK);
    assert_eq!(json_body(replayed).await["id"], 2);
    assert_eq!(env.auth.state().token_requests(), 2);
    assert_eq!(env.mcp.unauthorized(), 1);
    assert_eq!(env.mcp.requests(), 3);
    let seen = env.mcp.seen_authorization();
    assert_ne!(seen[1], seen[2], "the replay must carry the new token");
}

#[tokio::test]
async fn a_second_401_is_returned_not_looped() {
    let env = env(AuthServerConfig::default()).await;
    env.mcp.set_always_401(true);
    let svc = service(builder(&env, demo()).build().unwrap());
    let response = svc
        .oneshot(call(&env.mcp.url(), 1, "tools/list"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge =
        tower_client_credentials::challenge::BearerChallenge::from_headers(response.headers())
            .unwrap();
    assert!(challenge.is_invalid_token());
    assert_eq!(env.mcp.requests(), 2);
    assert_eq!(env.auth.state().token_requests(), 2);
}

#[tokio::test]
async fn other_origins_and_paths_never_see_the_token() {
    let env = env(AuthServerConfig::default()).await;
    let other = McpServer::start(env.auth.state(), env.auth.url(), "/mcp").await;
    let mut svc = service(builder(&env, demo()).build().unwrap());
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(call(&other.url(), 1, "tools/list"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(other.seen_authorization(), vec![None]);
    // Same origin, a path outside the resource: not ours either.
    let outside = format!("{}/admin", env.mcp.origin());
    let _ = svc
        .ready()
        .await
        .unwrap()
        .call(call(&outside, 2, "tools/list"))
        .await
        .unwrap();
    assert_eq!(env.mcp.seen_authorization(), vec![None]);
    assert_eq!(
        env.auth.state().token_requests(),
        0,
        "no token is fetched for foreign requests"
    );
}

#[tokio::test]
async fn client_secret_basic_form_encodes_awkward_secrets() {
    let secret = "p+ss/w:rd%é x";
    let env = env(AuthServerConfig {
        clients: vec![("app id".to_owned(), secret.to_owned())],
        ..AuthServerConfig::default()
    })
    .await;
    let creds = Credentials::client_secret_basic("app id", secret).unwrap();
    let svc = service(builder(&env, creds).build().unwrap());
    let response = svc
        .oneshot(call(&env.mcp.url(), 1, "tools/list"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let header = env.auth.state().recorded()[0]
        .authorization
        .clone()
        .unwrap();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(header.trim_start_matches("Basic "))
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        "app%20id:p%2Bss%2Fw%3Ard%25%C3%A9%20x"
    );
}

#[tokio::test]
async fn client_secret_post_sends_both_fields_in_the_body() {
    let env = env(AuthServerConfig::default()).await;
    let creds = Credentials::client_secret_post("demo-client", "demo-secret").unwrap();
    builder(&env, creds)
        .build()
        .unwrap()
        .warm_up()
        .await
        .unwrap();
    let recorded = &env.auth.state().recorded()[0];
    assert_eq!(recorded.authorization, None);
    assert_eq!(recorded.param("client_id"), Some("demo-client"));
    assert_eq!(recorded.param("client_secret"), Some("demo-secret"));
}

async fn warm_up_with(body: &str) -> (Env, Result<(), Error>) {
    let env = env(AuthServerConfig::default()).await;
    env.auth
        .state()
        .set_override(Some(TokenOverride::json(200, body)));
    let layer = builder(&env, demo()).build().unwrap();
    let result = layer.warm_up().await;
    (env, result)
}

#[tokio::test]
async fn malformed_token_responses_are_typed_errors() {
    let cases = [
        ("not json", ErrorKind::TokenResponse),
        (
            r#"{"token_type":"Bearer","expires_in":60}"#,
            ErrorKind::TokenResponse,
        ),
        (
            r#"{"access_token":"abc\r\nX-Evil: 1","token_type":"Bearer"}"#,
            ErrorKind::InvalidToken,
        ),
        (
            r#"{"access_token":"abc","token_type":"mac"}"#,
            ErrorKind::TokenResponse,
        ),
        (
            r#"{"access_token":"abc","token_type":"Bearer","expires_in":"soon"}"#,
            ErrorKind::TokenResponse,
        ),
    ];
    for (body, kind) in cases {
        let (env, result) = warm_up_with(body).await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), kind, "{body}");
        assert_eq!(
            env.auth.state().token_requests(),
            1,
            "permanent errors are not retried: {body}"
        );
        assert!(!format!("{err} {err:?}").contains("X-Evil"));
    }
}

#[tokio::test]
async fn a_token_with_crlf_is_never_sent_to_the_resource() {
    let env = env(AuthServerConfig::default()).await;
    env.auth.state().set_override(Some(TokenOverride::json(
        200,
        r#"{"access_token":"a\r\nX-Evil: 1","token_type":"Bearer"}"#,
    )));
    let svc = service(builder(&env, demo()).build().unwrap());
    let err = auth_error(
        svc.oneshot(call(&env.mcp.url(), 1, "tools/list"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.kind(), ErrorKind::InvalidToken);
    assert_eq!(env.mcp.requests(), 0);
}

#[tokio::test]
async fn a_huge_token_response_is_refused() {
    let huge = format!(
        r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
        "a".repeat(2 * 1024 * 1024)
    );
    let (_env, result) = warm_up_with(&huge).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenResponse);
    assert!(err.to_string().contains("1 MiB"), "{err}");
}

#[tokio::test]
async fn lenient_fields_are_accepted() {
    for body in [
        r#"{"access_token":"abc","token_type":"bearer","expires_in":"3600"}"#,
        r#"{"access_token":"abc","token_type":"BEARER"}"#,
        r#"{"access_token":"abc","token_type":"Bearer","expires_in":3600,"refresh_token":"r","extra":{"x":1}}"#,
    ] {
        let env = env(AuthServerConfig::default()).await;
        env.auth
            .state()
            .set_override(Some(TokenOverride::json(200, body)));
        let seen = Arc::new(Mutex::new(None));
        let record = Arc::clone(&seen);
        let layer = builder(&env, demo()).build().unwrap();
        let svc = ServiceBuilder::new().layer(layer).service(service_fn(
            move |req: Request<Full<Bytes>>| {
                *record.lock().unwrap() = req.headers().get("authorization").cloned();
                std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))))
            },
        ));
        svc.oneshot(call(&env.mcp.url(), 1, "tools/list"))
            .await
            .unwrap();
        let header = seen.lock().unwrap().clone().unwrap();
        assert_eq!(header, "Bearer abc", "{body}");
        assert!(header.is_sensitive());
    }
}

#[tokio::test]
async fn oauth_errors_carry_status_and_code_not_the_body() {
    let env = env(AuthServerConfig::default()).await;
    let creds = Credentials::client_secret_basic("demo-client", "wrong-secret").unwrap();
    let svc = service(builder(&env, creds).build().unwrap());
    let err = auth_error(
        svc.oneshot(call(&env.mcp.url(), 1, "tools/list"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.kind(), ErrorKind::TokenEndpoint);
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert!(!err.is_transient());
    assert_eq!(env.auth.state().token_requests(), 1);
    assert_eq!(env.mcp.requests(), 0);
    assert!(!format!("{err} {err:?}").contains("wrong-secret"));
}

#[tokio::test]
async fn composes_with_tower_http_layers() {
    use tower::timeout::TimeoutLayer;
    use tower_http::follow_redirect::FollowRedirectLayer;
    use tower_http::trace::TraceLayer;

    let env = env(AuthServerConfig::default()).await;
    let layer = builder(&env, demo()).build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(layer)
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        .layer(FollowRedirectLayer::new())
        .service(http_client());
    let response = svc
        .oneshot(call(&env.mcp.url(), 1, "tools/list"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(env.mcp.requests(), 1);
}

#[tokio::test]
async fn configuration_errors_are_typed() {
    let creds = demo();
    let err = ClientCredentialsLayer::builder("not a url", creds.clone()).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::InvalidUrl {
            field: "resource",
            ..
        }
    ));
    let base =
        || ClientCredentialsLayer::builder("https://mcp.example.com/mcp", creds.clone()).unwrap();
    // Neither endpoint nor issuer: discovery mode, a valid configuration.
    assert!(base().build().unwrap().cache_key().is_none());
    let err = base()
        .issuer("https://a.example")
        .unwrap()
        .expected_issuer("https://b.example")
        .unwrap()
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::ConflictingIssuer);
    let err = base()
        .token_endpoint("http://auth.example.com/token")
        .unwrap()
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::InsecureUrl {
            field: "token_endpoint",
            ..
        }
    ));
    let err = base()
        .token_endpoint("http://auth.example.com/token")
        .unwrap()
        .insecure_allow_http_loopback()
        .build()
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::InsecureUrl { .. }),
        "only loopback may use http"
    );
    assert!(matches!(
        base().scopes(["a b"]).err(),
        Some(ConfigError::InvalidScope { .. })
    ));
    assert!(matches!(
        base().scopes([""]).err(),
        Some(ConfigError::InvalidScope { .. })
    ));
    assert!(matches!(
        base().extra_param("resource", "x").err(),
        Some(ConfigError::ReservedParameter { .. })
    ));
    assert!(base().extra_param("audience", "api://x").is_ok());
    assert!(matches!(
        base().refresh_jitter(1.5).err(),
        Some(ConfigError::InvalidSetting { .. })
    ));
    assert!(matches!(
        base().token_request_attempts(0).err(),
        Some(ConfigError::InvalidSetting { .. })
    ));
}

#[tokio::test]
async fn scope_sets_are_normalised_into_the_cache_key() {
    let creds = demo();
    let layer = |scopes: &[&str]| {
        ClientCredentialsLayer::builder("https://mcp.example.com/mcp", creds.clone())
            .unwrap()
            .token_endpoint("https://auth.example.com/token")
            .unwrap()
            .scopes(scopes.iter().copied())
            .unwrap()
            .build()
            .unwrap()
    };
    assert_eq!(
        layer(&["b", "a", "a"]).cache_key(),
        layer(&["a", "b"]).cache_key()
    );
    assert_ne!(layer(&["A"]).cache_key(), layer(&["a"]).cache_key());
    assert_eq!(layer(&["b", "a"]).cache_key().unwrap().scope(), "a b");
}

#[tokio::test]
async fn extra_params_are_sent() {
    let env = env(AuthServerConfig::default()).await;
    builder(&env, demo())
        .extra_param("audience", "api://mcp")
        .unwrap()
        .build()
        .unwrap()
        .warm_up()
        .await
        .unwrap();
    assert_eq!(
        env.auth.state().recorded()[0].param("audience"),
        Some("api://mcp")
    );
}

#[tokio::test]
async fn secrets_and_tokens_never_appear_in_debug_errors_or_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let secret = "demo-secret";
    let env = env(AuthServerConfig::default()).await;
    let creds = Credentials::client_secret_basic("demo-client", ClientSecret::new(secret)).unwrap();
    let builder = builder(&env, creds.clone());
    let builder_debug = format!("{builder:?}");
    let layer = builder.build().unwrap();
    let mut svc = service(layer.clone());
    // A full flow: fetch, call, revocation, replay, then a failing client.
    svc.ready()
        .await
        .unwrap()
        .call(call(&env.mcp.url(), 1, "tools/list"))
        .await
        .unwrap();
    env.auth.state().revoke_all();
    svc.ready()
        .await
        .unwrap()
        .call(call(&env.mcp.url(), 2, "tools/list"))
        .await
        .unwrap();
    let bad = Credentials::client_secret_basic("demo-client", "wrong-secret").unwrap();
    let failing = service(crate::builder(&env, bad).build().unwrap());
    let err = failing
        .oneshot(call(&env.mcp.url(), 3, "tools/list"))
        .await
        .unwrap_err();

    use std::fmt::Write as _;
    let tokens: Vec<String> = env
        .auth
        .state()
        .issued()
        .into_iter()
        .map(|t| t.access_token)
        .collect();
    assert_eq!(tokens.len(), 2);
    let mut text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("token_request"),
        "the capture saw no log lines: {text}"
    );
    write!(
        text,
        "{builder_debug} {creds:?} {layer:?} {svc:?} {err} {err:?} {:?} {:?}",
        ClientSecret::new(secret),
        tower_client_credentials::AccessToken::new(tokens[0].clone()),
    )
    .unwrap();
    let text = text.replace("demo-secret\"", "");
    for needle in [secret, "wrong-secret", &tokens[0], &tokens[1]] {
        assert!(!text.contains(needle), "{needle:?} leaked");
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<ClientCredentialsLayer>();
    assert_send_sync::<ClientCredentials<HttpClient>>();
    assert_send_sync::<Credentials>();
    assert_send_sync::<Error>();
    assert_send::<<ClientCredentials<HttpClient> as Service<Request<Full<Bytes>>>>::Future>();
    fn assert_store_object_safe(_: &dyn tower_client_credentials::cache::TokenStore) {}
    let _ = assert_store_object_safe;
}

#[tokio::test]
async fn discovers_everything_from_the_mcp_url_alone() {
    // Issue #3: the user gives only the MCP server URL and the credentials.
    let env = env(AuthServerConfig::default()).await;
    let creds = Credentials::client_secret("demo-client", "demo-secret").unwrap();
    let layer = ClientCredentialsLayer::builder(env.mcp.url(), creds)
        .unwrap()
        .insecure_allow_http_loopback()
        .build()
        .unwrap();
    let svc = service(layer.clone());
    // First request: sent without a token, 401 with resource_metadata, discovery, token, replay.
    let response = svc
        .clone()
        .oneshot(call(&env.mcp.url(), 1, "tools/list"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The MCP server saw: the probe, the metadata GET (never with the token, R6), the replay.
    let seen = env.mcp.seen_authorization();
    assert_eq!(seen.len(), 3);
    assert_eq!((seen[0].as_deref(), seen[1].as_deref()), (None, None));
    assert!(seen[2].as_deref().unwrap().starts_with("Bearer "));
    assert_eq!(env.auth.state().token_requests(), 1);
    let recorded = &env.auth.state().recorded()[0];
    assert_eq!(recorded.param("resource"), Some(env.mcp.url().as_str()));
    assert_eq!(
        recorded.param("scope"),
        Some("mcp:tools"),
        "scopes_supported is the fallback (R34)"
    );
    let key = layer.cache_key().unwrap();
    assert_eq!(key.issuer(), env.auth.url());
    // Many later requests on many clones: all carry the token from the start.
    let mut tasks = Vec::new();
    for id in 0..20 {
        let svc = svc.clone();
        let url = env.mcp.url();
        tasks.push(tokio::spawn(async move {
            svc.oneshot(call(&url, id, "tools/list"))
                .await
                .map(|r| r.status())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(env.mcp.requests(), 23, "discovery ran once");
    assert_eq!(env.mcp.unauthorized(), 1);
    assert_eq!(env.auth.state().token_requests(), 1);
}
