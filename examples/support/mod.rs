//! In-process test servers for `tower-client-credentials`.
//!
//! This module is shared by the examples (`mod support;`) and by the
//! integration tests (`#[path = "../examples/support/mod.rs"] mod support;`).
//! It provides two small HTTP servers that run on tokio tasks bound to
//! `127.0.0.1:0`:
//!
//! * [`AuthServer`]: an OAuth 2.0 authorization server with a
//!   `client_credentials` token endpoint (`POST /token`, RFC 6749 §4.4) that
//!   accepts `client_secret_basic` (with the RFC 6749 §2.3.1 form-url encoding
//!   of the identifier and secret) and `client_secret_post`, plus RFC 8414
//!   metadata at `/.well-known/oauth-authorization-server`. Every token request
//!   is counted and recorded, and tests can revoke tokens, slow the endpoint
//!   down, change the token lifetime or replace its answer altogether.
//! * [`McpServer`]: a tiny MCP server speaking JSON-RPC 2.0 over Streamable
//!   HTTP that demands `Authorization: Bearer <token>` on every request to its
//!   endpoint, checks the token with the shared [`AuthState`] (audience-bound
//!   to the server's own URL), answers `401` with an RFC 9728
//!   `resource_metadata` challenge otherwise, and serves its protected-resource
//!   metadata document.
//!
//! Both servers stop when their handle is dropped. Token expiry is measured
//! with [`tokio::time::Instant`], so tests running with a paused tokio clock
//! can expire tokens with `tokio::time::advance`.
//!
//! ```ignore
//! let auth = AuthServer::start(AuthServerConfig::default()).await;
//! let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
//! // Point the client at `auth.token_endpoint()` with ("demo-client", "demo-secret")
//! // and resource `mcp.url()`, then POST `jsonrpc(1, "tools/list", json!({}))`
//! // to `mcp.url()`.
//! ```

#![allow(dead_code)]
#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{any, get};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// Shared plumbing
// ---------------------------------------------------------------------------

/// A running axum server; dropping it stops the server.
#[derive(Debug)]
struct ServerHandle {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

async fn bind_loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address of listener");
    (listener, addr)
}

fn spawn_server(listener: TcpListener, router: Router) -> ServerHandle {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // Either an explicit send or the sender being dropped stops us.
                let _ = rx.await;
            })
            .await;
    });
    ServerHandle {
        shutdown: Some(tx),
        task,
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must not cascade).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn header_string(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// 32 random lowercase hex characters (128 bits), without a `rand` dependency:
/// SipHash with the process's random keys over a global counter and the clock.
fn random_hex32() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(nanos);
        let _ = write!(out, "{:016x}", hasher.finish());
    }
    out
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn empty_response(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = empty_response(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` becomes a
/// space, then `%XX` escapes are decoded. `None` if the result is not UTF-8.
fn form_decode(component: &str) -> Option<String> {
    percent_decode_str(&component.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

fn parse_form(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// Encodes `input` as `application/x-www-form-urlencoded` (the encoding RFC
/// 6749 §2.3.1 prescribes for the client identifier and secret before they go
/// into HTTP Basic): ASCII alphanumerics and `*-._` stay, space becomes `+`,
/// every other byte of the UTF-8 encoding becomes `%XX`.
pub fn form_urlencode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// The `Authorization` header value a correct `client_secret_basic` client
/// sends: `Basic base64(form_urlencode(id) ":" form_urlencode(secret))`.
pub fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let credentials = format!(
        "{}:{}",
        form_urlencode(client_id),
        form_urlencode(client_secret)
    );
    format!("Basic {}", STANDARD.encode(credentials))
}

// ---------------------------------------------------------------------------
// Authorization server
// ---------------------------------------------------------------------------

/// Configuration of an [`AuthServer`].
#[derive(Clone, Debug)]
pub struct AuthServerConfig {
    /// Registered confidential clients as `(client_id, client_secret)`.
    pub clients: Vec<(String, String)>,
    /// Lifetime of issued tokens (`expires_in` is its whole seconds).
    pub token_lifetime: Duration,
    /// The `token_type` of successful responses (normally `"Bearer"`).
    pub token_type: String,
}

impl Default for AuthServerConfig {
    /// One client `("demo-client", "demo-secret")`, 3600 s tokens, `"Bearer"`.
    fn default() -> Self {
        Self {
            clients: vec![("demo-client".to_owned(), "demo-secret".to_owned())],
            token_lifetime: Duration::from_secs(3600),
            token_type: "Bearer".to_owned(),
        }
    }
}

/// A running OAuth 2.0 authorization server; dropping it stops the server.
///
/// Routes: `POST /token` and `GET /.well-known/oauth-authorization-server`.
#[derive(Debug)]
pub struct AuthServer {
    addr: SocketAddr,
    state: Arc<AuthState>,
    _server: ServerHandle,
}

impl AuthServer {
    /// Binds `127.0.0.1:0` and starts serving on a tokio task.
    pub async fn start(config: AuthServerConfig) -> AuthServer {
        let (listener, addr) = bind_loopback().await;
        let state = Arc::new(AuthState::new(config, format!("http://{addr}")));
        let router = Router::new()
            .route("/token", any(token_handler))
            .route(
                "/.well-known/oauth-authorization-server",
                get(as_metadata_handler),
            )
            .with_state(Arc::clone(&state));
        AuthServer {
            addr,
            state,
            _server: spawn_server(listener, router),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash); also the `issuer`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.url())
    }

    /// The shared state: inspection, knobs, and token validation.
    pub fn state(&self) -> Arc<AuthState> {
        Arc::clone(&self.state)
    }
}

/// Result of [`AuthState::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// Issued, not expired, not revoked, and usable for the resource.
    Valid,
    /// Never issued by this server, or revoked.
    Unknown,
    /// Issued but its lifetime has elapsed.
    Expired,
    /// Issued for a different `resource` than the one asked about.
    WrongResource,
}

/// A token issued by the [`AuthServer`].
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The opaque access token (32 lowercase hex characters).
    pub access_token: String,
    /// The authenticated client it was issued to.
    pub client_id: String,
    /// The `resource` parameter of the request, if any. A token without a
    /// resource is accepted for every resource.
    pub resource: Option<String>,
    /// The `scope` parameter of the request, if any.
    pub scope: Option<String>,
    /// When it expires (tokio clock).
    pub expires_at: Instant,
    /// Whether [`AuthState::revoke_all`] has revoked it.
    pub revoked: bool,
}

/// One request received on `/token`, as recorded before it is answered.
#[derive(Clone, Debug)]
pub struct RecordedTokenRequest {
    /// HTTP method (`"POST"` for a well-behaved client).
    pub method: String,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// The `Content-Type` header, verbatim.
    pub content_type: Option<String>,
    /// The `Accept` header, verbatim.
    pub accept: Option<String>,
    /// Form parameters, decoded, in body order (duplicates kept).
    pub form: Vec<(String, String)>,
    /// The body as received (lossy UTF-8).
    pub raw_body: String,
}

impl RecordedTokenRequest {
    /// The decoded value of the first form parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A canned answer for `/token`, installed with [`AuthState::set_override`].
#[derive(Clone, Debug)]
pub struct TokenOverride {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of the answer; not sent when empty.
    pub content_type: String,
    /// Body, sent verbatim.
    pub body: String,
    /// Extra response headers (appended, so a name may repeat).
    pub headers: Vec<(String, String)>,
}

impl TokenOverride {
    /// An override answering `status` with a JSON `body`.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "application/json".to_owned(),
            body: body.into(),
            headers: Vec::new(),
        }
    }
}

/// State of an [`AuthServer`], shared with [`McpServer`] for validation.
#[derive(Debug)]
pub struct AuthState {
    issuer: String,
    clients: Vec<(String, String)>,
    token_type: String,
    inner: Mutex<AuthInner>,
}

#[derive(Debug)]
struct AuthInner {
    lifetime: Duration,
    delay: Duration,
    token_override: Option<TokenOverride>,
    issued: Vec<IssuedToken>,
    by_token: HashMap<String, usize>,
    recorded: Vec<RecordedTokenRequest>,
}

impl AuthState {
    fn new(config: AuthServerConfig, issuer: String) -> Self {
        Self {
            issuer,
            clients: config.clients,
            token_type: config.token_type,
            inner: Mutex::new(AuthInner {
                lifetime: config.token_lifetime,
                delay: Duration::ZERO,
                token_override: None,
                issued: Vec::new(),
                by_token: HashMap::new(),
                recorded: Vec::new(),
            }),
        }
    }

    /// How many requests `/token` has received (any outcome, any method,
    /// overridden ones included); counted on arrival, before any delay.
    pub fn token_requests(&self) -> usize {
        lock(&self.inner).recorded.len()
    }

    /// Every request `/token` has received, in arrival order.
    pub fn recorded(&self) -> Vec<RecordedTokenRequest> {
        lock(&self.inner).recorded.clone()
    }

    /// Every token issued so far, in issue order (revoked ones included).
    pub fn issued(&self) -> Vec<IssuedToken> {
        lock(&self.inner).issued.clone()
    }

    /// Revokes every token issued so far; they validate as `Unknown`.
    pub fn revoke_all(&self) {
        for token in &mut lock(&self.inner).issued {
            token.revoked = true;
        }
    }

    /// Checks `token` for use at `resource` (compared as exact strings).
    pub fn validate(&self, token: &str, resource: &str) -> TokenCheck {
        let inner = lock(&self.inner);
        let Some(issued) = inner.by_token.get(token).map(|&i| &inner.issued[i]) else {
            return TokenCheck::Unknown;
        };
        if issued.revoked {
            TokenCheck::Unknown
        } else if Instant::now() >= issued.expires_at {
            TokenCheck::Expired
        } else if issued.resource.as_deref().is_some_and(|r| r != resource) {
            TokenCheck::WrongResource
        } else {
            TokenCheck::Valid
        }
    }

    /// While `Some`, `/token` answers with the override instead of running
    /// the normal logic (requests are still counted, recorded and delayed).
    ///
    /// # Panics
    /// If the status, content type or a header is not valid HTTP.
    pub fn set_override(&self, token_override: Option<TokenOverride>) {
        if let Some(o) = &token_override {
            StatusCode::from_u16(o.status).expect("override status must be 100..=999");
            HeaderValue::from_str(&o.content_type).expect("override content type");
            for (name, value) in &o.headers {
                HeaderName::from_bytes(name.as_bytes()).expect("override header name");
                HeaderValue::from_str(value).expect("override header value");
            }
        }
        lock(&self.inner).token_override = token_override;
    }

    /// Sleep this long (`tokio::time::sleep`) before answering `/token`.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.inner).delay = delay;
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        lock(&self.inner).lifetime = lifetime;
    }

    fn client_is_valid(&self, id: &str, secret: &str) -> bool {
        self.clients
            .iter()
            .any(|(known_id, known_secret)| known_id == id && known_secret == secret)
    }

    fn issue(&self, client_id: String, resource: Option<String>, scope: Option<String>) -> Value {
        let mut inner = lock(&self.inner);
        let lifetime = inner.lifetime;
        let mut access_token = random_hex32();
        while inner.by_token.contains_key(&access_token) {
            access_token = random_hex32();
        }
        let index = inner.issued.len();
        inner.by_token.insert(access_token.clone(), index);
        inner.issued.push(IssuedToken {
            access_token: access_token.clone(),
            client_id,
            resource,
            scope: scope.clone(),
            expires_at: Instant::now() + lifetime,
            revoked: false,
        });
        let mut body = Map::new();
        body.insert("access_token".to_owned(), Value::from(access_token));
        body.insert(
            "token_type".to_owned(),
            Value::from(self.token_type.clone()),
        );
        body.insert("expires_in".to_owned(), Value::from(lifetime.as_secs()));
        if let Some(scope) = scope {
            body.insert("scope".to_owned(), Value::from(scope));
        }
        Value::Object(body)
    }

    /// The normal token endpoint logic (RFC 6749 §4.4 with §2.3.1 client
    /// authentication).
    fn answer(
        &self,
        method: &Method,
        headers: &HeaderMap,
        request: &RecordedTokenRequest,
    ) -> Response {
        match self.try_answer(method, headers, request) {
            Ok(body) => no_store(json_response(StatusCode::OK, &body)),
            Err(error) => error.into_response(),
        }
    }

    fn try_answer(
        &self,
        method: &Method,
        headers: &HeaderMap,
        request: &RecordedTokenRequest,
    ) -> Result<Value, TokenError> {
        if method != Method::POST {
            return Err(TokenError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "the token endpoint only accepts POST",
            ));
        }
        let media_type = request
            .content_type
            .as_deref()
            .and_then(|ct| ct.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(TokenError::bad_request(
                "invalid_request",
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        for (i, (name, _)) in request.form.iter().enumerate() {
            if request.form[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(if name == "resource" {
                    TokenError::bad_request(
                        "invalid_target",
                        "this server issues tokens for a single resource",
                    )
                } else {
                    TokenError::bad_request(
                        "invalid_request",
                        format!("parameter `{name}` is included more than once"),
                    )
                });
            }
        }

        let client_id = self.authenticate_client(headers, request)?;

        match request.param("grant_type") {
            None => {
                return Err(TokenError::bad_request(
                    "invalid_request",
                    "missing grant_type",
                ));
            }
            Some("client_credentials") => {}
            Some(other) => {
                return Err(TokenError::bad_request(
                    "unsupported_grant_type",
                    format!("grant type `{other}` is not supported"),
                ));
            }
        }

        let resource = request.param("resource").map(str::to_owned);
        if let Some(resource) = &resource
            && (!resource.contains("://") || resource.contains('#'))
        {
            return Err(TokenError::bad_request(
                "invalid_target",
                "resource must be an absolute URI without a fragment",
            ));
        }
        let scope = request
            .param("scope")
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned);
        Ok(self.issue(client_id, resource, scope))
    }

    /// Returns the authenticated client id.
    fn authenticate_client(
        &self,
        headers: &HeaderMap,
        request: &RecordedTokenRequest,
    ) -> Result<String, TokenError> {
        let body_id = request.param("client_id");
        let body_secret = request.param("client_secret");

        if let Some(authorization) = headers.get(header::AUTHORIZATION) {
            if body_secret.is_some() {
                return Err(TokenError::bad_request(
                    "invalid_request",
                    "more than one client authentication method was used",
                ));
            }
            let (id, secret) = decode_basic(authorization.as_bytes()).ok_or_else(|| {
                TokenError::invalid_client(true, "malformed Basic client credentials")
            })?;
            if body_id.is_some_and(|body_id| body_id != id) {
                return Err(TokenError::bad_request(
                    "invalid_request",
                    "client_id in the body does not match the Authorization header",
                ));
            }
            if !self.client_is_valid(&id, &secret) {
                return Err(TokenError::invalid_client(
                    true,
                    "client authentication failed",
                ));
            }
            return Ok(id);
        }

        match (body_id, body_secret) {
            (Some(id), Some(secret)) if self.client_is_valid(id, secret) => Ok(id.to_owned()),
            (Some(_), Some(_)) => Err(TokenError::invalid_client(
                false,
                "client authentication failed",
            )),
            _ => Err(TokenError::invalid_client(
                false,
                "client authentication is required",
            )),
        }
    }
}

/// Parses `Basic <base64(urlencoded id ":" urlencoded secret)>` (scheme
/// case-insensitive), splitting on the first `:` and form-url-decoding each
/// half as RFC 6749 §2.3.1 requires.
fn decode_basic(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(credentials.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An RFC 6749 §5.2 error response.
#[derive(Debug)]
struct TokenError {
    status: StatusCode,
    error: &'static str,
    description: String,
    basic_challenge: bool,
}

impl TokenError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    fn bad_request(error: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, description)
    }

    fn invalid_client(basic_attempted: bool, description: &str) -> Self {
        Self {
            basic_challenge: basic_attempted,
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
        }
    }

    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut response = no_store(json_response(self.status, &body));
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"test\""),
            );
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

fn override_response(o: &TokenOverride) -> Response {
    let mut response = Response::new(Body::from(o.body.clone()));
    *response.status_mut() =
        StatusCode::from_u16(o.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if !o.content_type.is_empty()
        && let Ok(value) = HeaderValue::from_str(&o.content_type)
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    for (name, value) in &o.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    response
}

async fn token_handler(
    State(state): State<Arc<AuthState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let request = RecordedTokenRequest {
        method: method.to_string(),
        authorization: header_string(&headers, header::AUTHORIZATION),
        content_type: header_string(&headers, header::CONTENT_TYPE),
        accept: header_string(&headers, header::ACCEPT),
        form: parse_form(&raw_body),
        raw_body,
    };
    let delay = {
        let mut inner = lock(&state.inner);
        inner.recorded.push(request.clone());
        inner.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let token_override = lock(&state.inner).token_override.clone();
    match token_override {
        Some(o) => override_response(&o),
        None => state.answer(&method, &headers, &request),
    }
}

async fn as_metadata_handler(State(state): State<Arc<AuthState>>) -> Response {
    let body = json!({
        "issuer": state.issuer,
        "token_endpoint": format!("{}/token", state.issuer),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    });
    json_response(StatusCode::OK, &body)
}

// ---------------------------------------------------------------------------
// MCP server
// ---------------------------------------------------------------------------

/// The MCP protocol version the [`McpServer`] announces.
pub const MCP_PROTOCOL_VERSION: &str = "2025-11-25";

/// A running MCP server (Streamable HTTP, JSON responses) protected by bearer
/// tokens from an [`AuthServer`]; dropping it stops the server.
#[derive(Debug)]
pub struct McpServer {
    state: Arc<McpState>,
    _server: ServerHandle,
}

#[derive(Debug)]
struct McpState {
    auth: Arc<AuthState>,
    auth_url: String,
    origin: String,
    path: String,
    url: String,
    metadata_path: String,
    seen: Mutex<Vec<Option<String>>>,
    unauthorized: AtomicUsize,
    always_401: AtomicBool,
}

impl McpServer {
    /// Binds `127.0.0.1:0` and serves the MCP endpoint at `path` (e.g.
    /// `"/mcp"`), validating tokens with `auth` and naming `auth_url` as its
    /// authorization server in its protected-resource metadata.
    pub async fn start(auth: Arc<AuthState>, auth_url: String, path: &str) -> McpServer {
        let (listener, addr) = bind_loopback().await;
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let origin = format!("http://{addr}");
        let metadata_path = if path == "/" {
            "/.well-known/oauth-protected-resource".to_owned()
        } else {
            format!("/.well-known/oauth-protected-resource{path}")
        };
        let state = Arc::new(McpState {
            auth,
            auth_url,
            url: format!("{origin}{path}"),
            origin,
            path,
            metadata_path,
            seen: Mutex::new(Vec::new()),
            unauthorized: AtomicUsize::new(0),
            always_401: AtomicBool::new(false),
        });
        let router = Router::new()
            .fallback(mcp_dispatch)
            .with_state(Arc::clone(&state));
        McpServer {
            state,
            _server: spawn_server(listener, router),
        }
    }

    /// `http://127.0.0.1:PORT/mcp`: the endpoint and the resource identifier.
    pub fn url(&self) -> String {
        self.state.url.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        self.state.origin.clone()
    }

    /// `http://127.0.0.1:PORT/.well-known/oauth-protected-resource/mcp`, the
    /// `resource_metadata` URL named in the `401` challenge.
    pub fn resource_metadata_url(&self) -> String {
        format!("{}{}", self.state.origin, self.state.metadata_path)
    }

    /// Every request received, on any route.
    pub fn requests(&self) -> usize {
        lock(&self.state.seen).len()
    }

    /// How many requests were answered `401`.
    pub fn unauthorized(&self) -> usize {
        self.state.unauthorized.load(Ordering::SeqCst)
    }

    /// The `Authorization` header of every request, in arrival order.
    pub fn seen_authorization(&self) -> Vec<Option<String>> {
        lock(&self.state.seen).clone()
    }

    /// While on, every request to the MCP endpoint is answered `401` with
    /// `error="invalid_token"`, whatever token it carries (the metadata
    /// document stays reachable).
    pub fn set_always_401(&self, on: bool) {
        self.state.always_401.store(on, Ordering::SeqCst);
    }
}

async fn mcp_dispatch(State(state): State<Arc<McpState>>, request: Request) -> Response {
    let authorization = header_string(request.headers(), header::AUTHORIZATION);
    lock(&state.seen).push(authorization.clone());

    let path = request.uri().path();
    if path == state.metadata_path {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        let body = json!({
            "resource": state.url,
            "authorization_servers": [state.auth_url],
            "scopes_supported": ["mcp:tools"],
            "bearer_methods_supported": ["header"],
        });
        return json_response(StatusCode::OK, &body);
    }
    if path != state.path {
        return empty_response(StatusCode::NOT_FOUND);
    }

    // Strict resource server: the scheme must be exactly "Bearer ".
    let token = authorization
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "));
    let always_401 = state.always_401.load(Ordering::SeqCst);
    let valid =
        token.is_some_and(|token| state.auth.validate(token, &state.url) == TokenCheck::Valid);
    if always_401 || !valid {
        state.unauthorized.fetch_add(1, Ordering::SeqCst);
        let mut challenge = format!(
            "Bearer resource_metadata=\"{}{}\"",
            state.origin, state.metadata_path
        );
        if always_401 || token.is_some() {
            challenge.push_str(", error=\"invalid_token\"");
        }
        let mut response = empty_response(StatusCode::UNAUTHORIZED);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        return response;
    }

    if request.method() != Method::POST {
        // No server-initiated SSE stream and no session deletion here.
        return method_not_allowed("POST");
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), 4 * 1024 * 1024).await else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &rpc_error(Value::Null, -32700, "Parse error: unreadable body"),
        );
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &rpc_error(Value::Null, -32700, "Parse error"),
        );
    };
    handle_rpc(&message)
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn handle_rpc(message: &Value) -> Response {
    let Some(object) = message.as_object() else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &rpc_error(
                Value::Null,
                -32600,
                "Invalid Request: expected one JSON object",
            ),
        );
    };
    let id = object.get("id").cloned();
    let invalid = |why: &str| {
        let id = object.get("id").cloned().unwrap_or(Value::Null);
        json_response(
            StatusCode::BAD_REQUEST,
            &rpc_error(id, -32600, &format!("Invalid Request: {why}")),
        )
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("jsonrpc must be \"2.0\"");
    }
    let Some(method) = object.get("method") else {
        if id.is_some() && (object.contains_key("result") || object.contains_key("error")) {
            // A JSON-RPC response from the client: accepted, nothing to say.
            return empty_response(StatusCode::ACCEPTED);
        }
        return invalid("missing method");
    };
    let Some(method) = method.as_str() else {
        return invalid("method must be a string");
    };
    let Some(id) = id else {
        // Notification (e.g. notifications/initialized).
        return empty_response(StatusCode::ACCEPTED);
    };
    if !(id.is_string() || id.is_number()) {
        return invalid("id must be a string or a number");
    }
    let params = object.get("params").cloned().unwrap_or(Value::Null);

    match method {
        "initialize" => {
            let result = json!({
                "protocolVersion": MCP_PROTOCOL_VERSION,
                "capabilities": { "tools": {} },
                "serverInfo": { "name": "demo-mcp", "version": "0.1.0" },
            });
            let mut response = json_response(StatusCode::OK, &rpc_result(id, result));
            if let Ok(session) = HeaderValue::from_str(&random_hex32()) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static("mcp-session-id"), session);
            }
            response
        }
        "ping" => json_response(StatusCode::OK, &rpc_result(id, json!({}))),
        "tools/list" => {
            let result = json!({
                "tools": [{
                    "name": "echo",
                    "description": "Echoes back the given text",
                    "inputSchema": {
                        "type": "object",
                        "properties": { "text": { "type": "string" } },
                        "required": ["text"],
                    },
                }],
            });
            json_response(StatusCode::OK, &rpc_result(id, result))
        }
        "tools/call" => {
            let body = match params.get("name").and_then(Value::as_str) {
                Some("echo") => {
                    match params
                        .get("arguments")
                        .and_then(|arguments| arguments.get("text"))
                        .and_then(Value::as_str)
                    {
                        Some(text) => rpc_result(
                            id,
                            json!({ "content": [{ "type": "text", "text": text }], "isError": false }),
                        ),
                        None => rpc_error(id, -32602, "Invalid params: `text` must be a string"),
                    }
                }
                Some(other) => rpc_error(id, -32602, &format!("Unknown tool: {other}")),
                None => rpc_error(id, -32602, "Invalid params: missing tool name"),
            };
            json_response(StatusCode::OK, &body)
        }
        _ => json_response(
            StatusCode::OK,
            &rpc_error(id, -32601, &format!("Method not found: {method}")),
        ),
    }
}

/// A JSON-RPC 2.0 request body: `{"jsonrpc":"2.0","id":id,"method":method,"params":params}`
/// (`params` is left out when it is `null`).
pub fn jsonrpc(id: u64, method: &str, params: Value) -> String {
    let mut body = json!({ "jsonrpc": "2.0", "id": id, "method": method });
    if !params.is_null() {
        body["params"] = params;
    }
    body.to_string()
}

/// A JSON-RPC 2.0 notification body (no `id`), e.g.
/// `jsonrpc_notification("notifications/initialized", Value::Null)`.
pub fn jsonrpc_notification(method: &str, params: Value) -> String {
    let mut body = json!({ "jsonrpc": "2.0", "method": method });
    if !params.is_null() {
        body["params"] = params;
    }
    body.to_string()
}
