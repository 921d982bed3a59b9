//! A scripted HTTP server for the discovery tests (`tests/discovery.rs`).
//!
//! [`ScriptedServer`] binds `127.0.0.1:0` and answers from a table that tests fill and change
//! while it runs:
//!
//! * [`ScriptedServer::route`]: a canned answer (status, headers, body) for a method and a path
//!   (with or without its query); replaceable at any time. Unknown paths get `404`.
//! * [`ScriptedServer::token_route`]: a `client_credentials` token endpoint that issues random
//!   bearer tokens, echoes a requested `scope`, and records the decoded form of every request.
//! * [`ScriptedServer::protected_route`]: an MCP-like endpoint that answers a JSON-RPC result to a
//!   request carrying a token issued by this server (or a server it
//!   [trusts](ScriptedServer::accept_tokens_from)) and `401` with a scripted `WWW-Authenticate`
//!   challenge otherwise; it can be told to require scopes or to force a status.
//!
//! Every request is logged (method, path and query, `Authorization`, `Accept`, body). The server
//! stops when its handle is dropped.

#![allow(dead_code)]
#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderName, HeaderValue, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Logged {
    /// `GET`, `POST`…
    pub method: String,
    /// The path and query, as sent.
    pub path_and_query: String,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// The `Accept` header, verbatim.
    pub accept: Option<String>,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl Logged {
    /// The path without its query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path)
    }
}

#[derive(Clone, Debug)]
struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Clone, Debug)]
struct TokenRoute {
    lifetime_secs: u64,
    /// Replaces the granted `scope` of every response (`Some("")` grants nothing).
    granted_scope: Option<String>,
}

#[derive(Clone, Debug)]
struct Protected {
    challenge: String,
    /// A status (and challenge) answered whatever the request carries.
    forced: Option<(u16, String)>,
    /// Scopes a valid token must hold, and the `403` challenge if it does not.
    required: Option<(Vec<String>, String)>,
}

/// Tokens issued by one server: token -> granted scopes.
type TokenBook = Arc<Mutex<HashMap<String, Vec<String>>>>;

#[derive(Debug, Default)]
struct Inner {
    routes: HashMap<(String, String), Canned>,
    token_routes: HashMap<String, TokenRoute>,
    protected: HashMap<String, Protected>,
    log: Vec<Logged>,
    token_requests: Vec<Vec<(String, String)>>,
    issued: Vec<String>,
    trusted: Vec<TokenBook>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    book: TokenBook,
}

/// A running scripted server; dropping it stops the server.
#[derive(Debug)]
pub struct ScriptedServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must not cascade).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ScriptedServer {
    /// Binds `127.0.0.1:0` and starts serving an empty table (everything is `404`).
    pub async fn start() -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            book: Arc::default(),
        });
        let router = Router::new()
            .fallback(dispatch)
            .with_state(Arc::clone(&shared));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        ScriptedServer {
            addr,
            shared,
            shutdown: Some(tx),
            task,
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers `method path_and_query` with `status`, `headers` and `body`. A `path_and_query`
    /// without `?` also matches requests to that path with any query. A non-empty body without a
    /// `Content-Type` in `headers` is sent as `application/json`.
    pub fn route(
        &self,
        method: &str,
        path_and_query: &str,
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    ) {
        lock(&self.shared.inner).routes.insert(
            (method.to_ascii_uppercase(), path_and_query.to_owned()),
            Canned {
                status,
                headers,
                body,
            },
        );
    }

    /// Shorthand: `GET path` answers `200` with `body` as JSON.
    pub fn json(&self, path: &str, body: &serde_json::Value) {
        self.route("GET", path, 200, Vec::new(), body.to_string());
    }

    /// Makes `path` a token endpoint issuing `Bearer` tokens valid for `lifetime_secs`.
    pub fn token_route(&self, path: &str, lifetime_secs: u64) {
        lock(&self.shared.inner).token_routes.insert(
            path.to_owned(),
            TokenRoute {
                lifetime_secs,
                granted_scope: None,
            },
        );
    }

    /// Makes the token endpoint at `path` grant `scope` (sent as the response's `scope`)
    /// whatever was requested; `None` goes back to echoing the request.
    pub fn set_granted_scope(&self, path: &str, scope: Option<&str>) {
        if let Some(route) = lock(&self.shared.inner).token_routes.get_mut(path) {
            route.granted_scope = scope.map(str::to_owned);
        }
    }

    /// Makes `path` a protected endpoint: `200 {"jsonrpc":"2.0","id":1,"result":{}}` for a known
    /// token, else `401` with `WWW-Authenticate: challenge` (no header if `challenge` is empty).
    /// Calling it again resets forced statuses and scope requirements.
    pub fn protected_route(&self, path: &str, challenge: String) {
        lock(&self.shared.inner).protected.insert(
            path.to_owned(),
            Protected {
                challenge,
                forced: None,
                required: None,
            },
        );
    }

    /// Answers every request to the protected `path` with `status` and `challenge` (no
    /// `WWW-Authenticate` if empty), whatever token it carries.
    pub fn set_protected_status(&self, path: &str, status: u16, challenge: String) {
        if let Some(p) = lock(&self.shared.inner).protected.get_mut(path) {
            p.forced = Some((status, challenge));
        }
    }

    /// Requires a known token at the protected `path` to hold every scope of `scopes`
    /// (space-separated); otherwise `403` with `WWW-Authenticate: challenge`.
    pub fn require_scope(&self, path: &str, scopes: &str, challenge: String) {
        if let Some(p) = lock(&self.shared.inner).protected.get_mut(path) {
            p.required = Some((
                scopes.split_whitespace().map(str::to_owned).collect(),
                challenge,
            ));
        }
    }

    /// Lets this server's protected routes accept tokens issued by `other`.
    pub fn accept_tokens_from(&self, other: &ScriptedServer) {
        lock(&self.shared.inner)
            .trusted
            .push(Arc::clone(&other.shared.book));
    }

    /// Forgets every token issued so far: they are answered `401` from now on.
    pub fn revoke_all(&self) {
        lock(&self.shared.book).clear();
    }

    /// How many requests went to `path` (matched against the path, or the path and query).
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.shared.inner)
            .log
            .iter()
            .filter(|l| l.path_and_query == path || l.path() == path)
            .count()
    }

    /// `(method, path_and_query, Authorization)` of every request, in arrival order.
    pub fn log(&self) -> Vec<(String, String, Option<String>)> {
        lock(&self.shared.inner)
            .log
            .iter()
            .map(|l| {
                (
                    l.method.clone(),
                    l.path_and_query.clone(),
                    l.authorization.clone(),
                )
            })
            .collect()
    }

    /// Every request in full, in arrival order.
    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.shared.inner).log.clone()
    }

    /// `"METHOD path_and_query"` of every request, in arrival order.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.shared.inner)
            .log
            .iter()
            .map(|l| format!("{} {}", l.method, l.path_and_query))
            .collect()
    }

    /// The decoded form parameters of every request to a token route, in arrival order.
    pub fn token_requests(&self) -> Vec<Vec<(String, String)>> {
        lock(&self.shared.inner).token_requests.clone()
    }

    /// Every access token issued, in issue order (revoked ones included).
    pub fn issued(&self) -> Vec<String> {
        lock(&self.shared.inner).issued.clone()
    }
}

/// The first value of the form parameter `name`.
pub fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// 32 random lowercase hex characters, without a `rand` dependency.
fn random_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let _ = write!(out, "{:016x}", hasher.finish());
    }
    out
}

fn parse_form(raw: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn respond(status: u16, headers: &[(String, String)], body: String) -> Response {
    let has_type = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    let json_body = !body.is_empty() && !has_type;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).expect("a valid status code");
    let map = response.headers_mut();
    if json_body {
        map.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
            HeaderValue::from_str(value).expect("a valid header value"),
        );
    }
    response
}

fn challenge_header(challenge: &str) -> Vec<(String, String)> {
    if challenge.is_empty() {
        Vec::new()
    } else {
        vec![("www-authenticate".to_owned(), challenge.to_owned())]
    }
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().as_str().to_owned();
    let path_and_query = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    let path = request.uri().path().to_owned();
    let (authorization, accept) = {
        let headers = request.headers();
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        (text(header::AUTHORIZATION), text(header::ACCEPT))
    };
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();

    let mut inner = lock(&shared.inner);
    inner.log.push(Logged {
        method: method.clone(),
        path_and_query: path_and_query.clone(),
        authorization: authorization.clone(),
        accept,
        body: body.clone(),
    });

    if let Some(protected) = inner.protected.get(&path).cloned() {
        if let Some((status, challenge)) = &protected.forced {
            return respond(*status, &challenge_header(challenge), String::new());
        }
        let token = authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "));
        let granted = token.and_then(|token| {
            std::iter::once(&shared.book)
                .chain(inner.trusted.iter())
                .find_map(|book| lock(book).get(token).cloned())
        });
        return match granted {
            None => respond(401, &challenge_header(&protected.challenge), String::new()),
            Some(granted) => match &protected.required {
                Some((required, challenge)) if !required.iter().all(|s| granted.contains(s)) => {
                    respond(403, &challenge_header(challenge), String::new())
                }
                _ => respond(
                    200,
                    &[],
                    json!({"jsonrpc": "2.0", "id": 1, "result": {}}).to_string(),
                ),
            },
        };
    }

    if let Some(route) = inner.token_routes.get(&path).cloned() {
        let form = parse_form(&body);
        inner.token_requests.push(form.clone());
        let requested = param(&form, "scope").map(str::to_owned);
        let granted = route.granted_scope.clone().or(requested);
        let token = random_token();
        inner.issued.push(token.clone());
        lock(&shared.book).insert(
            token.clone(),
            granted
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        );
        let mut answer = json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": route.lifetime_secs,
        });
        if let Some(scope) = granted {
            answer["scope"] = json!(scope);
        }
        let headers = vec![("cache-control".to_owned(), "no-store".to_owned())];
        return respond(200, &headers, answer.to_string());
    }

    let canned = inner
        .routes
        .get(&(method.clone(), path_and_query))
        .or_else(|| inner.routes.get(&(method, path)))
        .cloned();
    drop(inner);
    match canned {
        Some(c) => respond(c.status, &c.headers, c.body),
        None => respond(404, &[], String::new()),
    }
}
