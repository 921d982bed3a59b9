//! The rmcp integration end to end: an rmcp client through the layer against the in-process
//! authorization server and MCP servers over loopback.
//!
//! - against `examples/support`'s MCP server (JSON answers, discovery from its 401): tools listed
//!   and called, the session id sent back, a revoked token replaced without rmcp noticing, a
//!   second 401 handed to rmcp as `AuthRequired`, refused credentials surfacing as a transport
//!   error that still holds this crate's `Error`;
//! - against a small MCP server in this file that answers with Server-Sent Events: an event
//!   reaches rmcp while the server holds the rest of the response back (so nothing is buffered),
//!   the server's own event stream (`GET`) delivers a notification, and the session is deleted
//!   with the token on close.

#![cfg(feature = "rmcp")]

#[path = "../examples/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use rmcp::model::CallToolRequestParams;
use rmcp::service::{MaybeSendFuture, NotificationContext, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpError;
use rmcp::{ClientHandler, RoleClient, ServiceExt as _};
use serde_json::{Map, Value, json};
use support::{AuthServer, AuthServerConfig, AuthState, McpServer, TokenCheck};
use tokio::sync::{Notify, mpsc};
use tower_client_credentials::rmcp::{HttpError, HttpErrorKind, auth_error, transport};
use tower_client_credentials::{ClientCredentialsLayer, Credentials, ErrorKind};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(10);
/// How long the SSE server holds a response back for the client to show it saw the first event.
const HOLD: Duration = Duration::from_secs(5);

fn echo(text: &str) -> CallToolRequestParams {
    let mut arguments = Map::new();
    arguments.insert("text".to_owned(), Value::from(text));
    CallToolRequestParams::new("echo").with_arguments(arguments)
}

fn text_of(result: &rmcp::model::CallToolResult) -> Option<String> {
    result
        .content
        .first()
        .and_then(|content| content.as_text())
        .map(|text| text.text.clone())
}

/// The layer as a real deployment writes it: the MCP server's URL and credentials, everything
/// else discovered from its 401.
fn discovering_layer(mcp_url: &str, secret: &str) -> ClientCredentialsLayer {
    ClientCredentialsLayer::builder(
        mcp_url,
        Credentials::client_secret("demo-client", secret).unwrap(),
    )
    .unwrap()
    .insecure_allow_http_loopback()
    .build()
    .unwrap()
}

#[tokio::test]
async fn lists_and_calls_tools_with_discovery_and_sessions() -> TestResult {
    let auth = AuthServer::start(AuthServerConfig::default()).await;
    let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
    let layer = discovering_layer(&mcp.url(), "demo-secret");

    let client = ().serve(transport(mcp.url(), &layer)).await?;
    let tools = client.list_all_tools().await?;
    assert_eq!(
        tools
            .iter()
            .map(|tool| tool.name.as_ref())
            .collect::<Vec<_>>(),
        ["echo"]
    );
    let result = client.call_tool(echo("hello")).await?;
    assert_eq!(text_of(&result).as_deref(), Some("hello"));
    assert_ne!(result.is_error, Some(true));

    // The first request went out bare and was answered 401 (discovery); one token since.
    assert_eq!(mcp.unauthorized(), 1);
    assert_eq!(auth.state().token_requests(), 1);
    let token = &auth.state().issued()[0].access_token;
    let bearer = format!("Bearer {token}");

    // rmcp opens the server's event stream (a GET; this server has none and answers 405) in the
    // background once the session exists: wait for it.
    let started = tokio::time::Instant::now();
    while !mcp.seen_requests().iter().any(|r| r.method == "GET") {
        assert!(started.elapsed() < WAIT, "no GET for the event stream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let requests = mcp.seen_requests();
    let endpoint: Vec<_> = requests.iter().filter(|r| r.target == "/mcp").collect();
    let header = |request: &support::SeenRequest, name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    // The probe, its replay (the initialize), then every other request with the token.
    assert_eq!(header(endpoint[0], "authorization"), None);
    assert!(endpoint[0].body.contains("\"initialize\""));
    for request in &endpoint[1..] {
        assert_eq!(
            header(request, "authorization").as_deref(),
            Some(bearer.as_str())
        );
    }
    // The session the server handed out at initialize comes back on every later request.
    let session = header(endpoint[1], "mcp-session-id");
    assert_eq!(session, None, "initialize carries no session");
    let later = &endpoint[2..];
    assert!(later.len() >= 3, "{later:?}");
    let first_session = header(later[0], "mcp-session-id");
    assert!(first_session.is_some());
    for request in later {
        assert_eq!(header(request, "mcp-session-id"), first_session);
        assert_eq!(
            header(request, "mcp-protocol-version").as_deref(),
            Some(support::MCP_PROTOCOL_VERSION)
        );
    }
    assert!(later.iter().any(|r| r.method == "GET"));

    client.cancel().await?;
    // Ending the session: a DELETE with the session and the token (405 here, which is fine).
    let deletes: Vec<_> = mcp
        .seen_requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(header(&deletes[0], "mcp-session-id"), first_session);
    assert_eq!(
        header(&deletes[0], "authorization").as_deref(),
        Some(bearer.as_str())
    );
    Ok(())
}

#[tokio::test]
async fn a_revoked_token_is_replaced_without_rmcp_noticing() -> TestResult {
    let auth = AuthServer::start(AuthServerConfig::default()).await;
    let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
    let layer = discovering_layer(&mcp.url(), "demo-secret");
    let client = ().serve(transport(mcp.url(), &layer)).await?;
    client.call_tool(echo("before")).await?;
    assert_eq!((mcp.unauthorized(), auth.state().token_requests()), (1, 1));

    auth.state().revoke_all();
    let result = client.call_tool(echo("after revocation")).await?;
    assert_eq!(text_of(&result).as_deref(), Some("after revocation"));
    // One more 401, answered inside the layer with a new token and a replay.
    assert_eq!((mcp.unauthorized(), auth.state().token_requests()), (2, 2));
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn a_second_401_reaches_rmcp_as_auth_required() -> TestResult {
    let auth = AuthServer::start(AuthServerConfig::default()).await;
    let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
    let layer = discovering_layer(&mcp.url(), "demo-secret");
    let client = ().serve(transport(mcp.url(), &layer)).await?;

    mcp.set_always_401(true);
    let err = client.call_tool(echo("refused")).await.unwrap_err();
    let ServiceError::TransportSend(transport_error) = &err else {
        panic!("expected a transport error, got {err:?}");
    };
    let http = transport_error
        .error
        .downcast_ref::<StreamableHttpError<HttpError>>()
        .expect("the transport's own error type");
    let StreamableHttpError::AuthRequired(required) = http else {
        panic!("expected AuthRequired, got {http:?}");
    };
    assert!(
        required
            .www_authenticate_header
            .contains("error=\"invalid_token\""),
        "{required:?}"
    );
    // The layer renewed once and replayed once; rmcp saw the replay's 401.
    assert_eq!(auth.state().token_requests(), 2);
    assert!(auth_error(&err).is_none(), "not a failure of the layer");
    drop(client);
    Ok(())
}

#[tokio::test]
async fn refused_credentials_surface_as_a_transport_error_holding_the_crate_error() -> TestResult {
    let auth = AuthServer::start(AuthServerConfig::default()).await;
    let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
    let secret = "wrong-secret-do-not-print";
    let layer = discovering_layer(&mcp.url(), secret);

    let err = ().serve(transport(mcp.url(), &layer)).await.unwrap_err();
    let found = auth_error(&err).expect("the crate's error is reachable");
    assert_eq!(found.kind(), ErrorKind::TokenEndpoint);
    assert_eq!(found.oauth_error(), Some("invalid_client"));

    // The message says what happened, and nothing secret.
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("invalid_client"), "{shown}");
    assert!(!shown.contains(secret), "{shown}");

    // Through rmcp's own types: StreamableHttpError::Client(HttpError { kind: Auth, .. }).
    let rmcp::service::ClientInitializeError::TransportError { error, .. } = &err else {
        panic!("expected a transport error, got {err:?}");
    };
    let Some(StreamableHttpError::Client(http)) =
        error.error.downcast_ref::<StreamableHttpError<HttpError>>()
    else {
        panic!("expected a client error, got {error:?}");
    };
    assert_eq!(http.kind(), HttpErrorKind::Auth);
    assert!(http.auth_error().is_some());
    assert!(std::error::Error::source(http).is_some());
    Ok(())
}

// ---------------------------------------------------------------------------
// An MCP server that answers with Server-Sent Events
// ---------------------------------------------------------------------------

const SESSION: &str = "sse-session-7f3a";

struct SseState {
    auth: Arc<AuthState>,
    url: String,
    /// Set by the client's handler when the first event of the tool call reached it.
    released: Arc<Notify>,
    /// Whether the tool call's result was sent after the client saw its first event.
    streamed: AtomicBool,
    /// Held for as long as the server runs, so the `GET` stream stays open.
    open_streams: Mutex<Vec<mpsc::Sender<Bytes>>>,
    /// `(authorized, session)` of every DELETE.
    deletes: Mutex<Vec<(bool, Option<String>)>>,
}

struct SseServer {
    state: Arc<SseState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SseServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SseServer {
    async fn start(auth: Arc<AuthState>, released: Arc<Notify>) -> SseServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let state = Arc::new(SseState {
            auth,
            url,
            released,
            streamed: AtomicBool::new(false),
            open_streams: Mutex::new(Vec::new()),
            deletes: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .fallback(sse_dispatch)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        SseServer { state, task }
    }
}

fn event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

/// A `text/event-stream` response fed by a channel, so events go out one at a time.
fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

fn status(code: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}

async fn sse_dispatch(State(state): State<Arc<SseState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| state.auth.validate(t, &state.url) == TokenCheck::Valid) {
        let mut response = status(StatusCode::UNAUTHORIZED);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return response;
    }
    let session = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match parts.method {
        Method::DELETE => {
            state.deletes.lock().unwrap().push((true, session));
            status(StatusCode::OK)
        }
        Method::GET => {
            if session.as_deref() != Some(SESSION) {
                return status(StatusCode::BAD_REQUEST);
            }
            // The server's own stream: one notification, then it stays open.
            let (tx, rx) = mpsc::channel(4);
            let notification =
                json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
            let _ = tx.send(event(&notification)).await;
            state.open_streams.lock().unwrap().push(tx);
            sse_response(rx)
        }
        Method::POST => {
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let method = message["method"].as_str().unwrap_or_default().to_owned();
            let id = message["id"].clone();
            if method == "initialize" {
                let result = json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {"tools": {"listChanged": true}, "resources": {"listChanged": true}},
                    "serverInfo": {"name": "sse-test", "version": "0.1.0"},
                });
                let (tx, rx) = mpsc::channel(4);
                let _ = tx
                    .send(event(
                        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
                    ))
                    .await;
                let mut response = sse_response(rx);
                response
                    .headers_mut()
                    .insert("mcp-session-id", HeaderValue::from_static(SESSION));
                return response;
            }
            if session.as_deref() != Some(SESSION) {
                return status(StatusCode::BAD_REQUEST);
            }
            if id.is_null() {
                return status(StatusCode::ACCEPTED);
            }
            let (tx, rx) = mpsc::channel(4);
            match method.as_str() {
                "tools/list" => {
                    let result = json!({"tools": [{
                        "name": "echo",
                        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
                    }]});
                    let _ = tx
                        .send(event(
                            &json!({"jsonrpc": "2.0", "id": id, "result": result}),
                        ))
                        .await;
                }
                "tools/call" => {
                    let text = message["params"]["arguments"]["text"].clone();
                    let state = Arc::clone(&state);
                    tokio::spawn(async move {
                        let first = json!({
                            "jsonrpc": "2.0",
                            "method": "notifications/resources/list_changed",
                        });
                        let _ = tx.send(event(&first)).await;
                        // The rest waits until the client has seen the first event: a client
                        // that buffered the response would never see it.
                        let streamed = tokio::time::timeout(HOLD, state.released.notified())
                            .await
                            .is_ok();
                        state.streamed.store(streamed, Ordering::SeqCst);
                        let result =
                            json!({"content": [{"type": "text", "text": text}], "isError": false});
                        let _ = tx
                            .send(event(
                                &json!({"jsonrpc": "2.0", "id": id, "result": result}),
                            ))
                            .await;
                    });
                }
                _ => {
                    let error = json!({"code": -32601, "message": "Method not found"});
                    let _ = tx
                        .send(event(&json!({"jsonrpc": "2.0", "id": id, "error": error})))
                        .await;
                }
            }
            sse_response(rx)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

/// A client handler that reports what the server sent outside responses.
#[derive(Clone)]
struct Observer {
    released: Arc<Notify>,
    list_changed: Arc<Notify>,
}

impl ClientHandler for Observer {
    fn on_resource_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.released.notify_one();
        std::future::ready(())
    }

    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.list_changed.notify_one();
        std::future::ready(())
    }
}

#[tokio::test]
async fn server_sent_events_stream_through_the_layer() -> TestResult {
    let auth = AuthServer::start(AuthServerConfig::default()).await;
    let released = Arc::new(Notify::new());
    let server = SseServer::start(auth.state(), Arc::clone(&released)).await;
    let layer = ClientCredentialsLayer::builder(
        server.state.url.clone(),
        Credentials::client_secret("demo-client", "demo-secret")?,
    )?
    .token_endpoint(auth.token_endpoint())?
    .insecure_allow_http_loopback()
    .build()?;
    let observer = Observer {
        released,
        list_changed: Arc::new(Notify::new()),
    };
    let list_changed = Arc::clone(&observer.list_changed);

    let client = observer
        .serve(transport(server.state.url.clone(), &layer))
        .await?;
    // The server's own event stream (GET, with the session and the token) is open and its
    // notification arrived while it stays open.
    tokio::time::timeout(WAIT, list_changed.notified()).await?;

    let tools = client.list_all_tools().await?;
    assert_eq!(tools.len(), 1);
    let result = tokio::time::timeout(WAIT, client.call_tool(echo("streamed"))).await??;
    assert_eq!(text_of(&result).as_deref(), Some("streamed"));
    assert!(
        server.state.streamed.load(Ordering::SeqCst),
        "the first event did not reach rmcp before the response ended"
    );
    assert_eq!(auth.state().token_requests(), 1);

    client.cancel().await?;
    assert_eq!(
        *server.state.deletes.lock().unwrap(),
        [(true, Some(SESSION.to_owned()))]
    );
    Ok(())
}
