//! Interop tests against third-party servers, run with `cargo test --features interop --test
//! interop` after `npm ci` in `tests/interop` (or `bash tests/interop/run.sh`, which does both):
//!
//! - an authorization server built on `oidc-provider` (a certified OpenID Provider), with the
//!   client credentials grant, RFC 8707 resource indicators (JWT access tokens whose audience is
//!   the MCP server) and clients registered for `client_secret_basic`, `client_secret_post` and
//!   `private_key_jwt` (RS256 and ES256 keys generated when it starts);
//! - an MCP server built with the official TypeScript SDK over Streamable HTTP, verifying those
//!   JWTs against the provider's JWKS, serving RFC 9728 metadata, answering 401 with an RFC 9728
//!   challenge, and exposing an `echo` tool.
//!
//! Each test starts its own pair of servers (`tests/interop/*.mjs`) as child processes on free
//! loopback ports: each prints one JSON line when ready (the authorization server's includes the
//! client secrets and private keys), and is killed when the test ends (its handle is dropped; it
//! also exits when its standard input closes). The layer is given the MCP server's URL and the
//! credentials, nothing else; the servers' admin endpoints count what reached them, so the tests
//! assert exact numbers of token requests, of 401s and of tokens in use.
//!
//! Without Node 20 or later, or without `tests/interop/node_modules`, every test fails with a
//! message saying what to run: these tests never skip.

#![cfg(feature = "interop")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader, Lines};
use tokio::process::{Child, ChildStdin, Command};
use tower::{ServiceBuilder, ServiceExt as _};
use tower_client_credentials::{
    BoxError, ClientCredentials, ClientCredentialsBuilder, ClientCredentialsLayer, Credentials,
    Error, ErrorKind,
};
#[cfg(feature = "private-key-jwt")]
use tower_client_credentials::{ClientAssertion, PrivateKey};

/// What to do when the servers cannot run; every test fails with it.
const NEEDS: &str = "run `npm ci` in tests/interop (needs Node >= 20)";
/// How long a server may take to print its ready line.
const STARTUP: Duration = Duration::from_secs(30);
/// The packages the servers import.
const PACKAGES: [&str; 5] = [
    "oidc-provider",
    "@modelcontextprotocol/sdk",
    "jose",
    "express",
    "zod",
];
/// The scope the MCP server requires and lists in its metadata.
const SCOPE: &str = "mcp:tools";

// ---------------------------------------------------------------------------
// The Node servers
// ---------------------------------------------------------------------------

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Fails the test unless `node` (20 or later) and the servers' packages are there.
fn preflight() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = CHECKED.get_or_init(check_node) {
        panic!("the interop servers cannot run: {why}; {NEEDS}");
    }
}

fn check_node() -> Result<(), String> {
    let output = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map_err(|err| format!("`node` could not be run ({err})"))?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let major = version
        .strip_prefix('v')
        .and_then(|v| v.split('.').next())
        .and_then(|major| major.parse::<u32>().ok())
        .ok_or_else(|| format!("`node --version` printed {version:?}"))?;
    if major < 20 {
        return Err(format!("node is {version}"));
    }
    let modules = interop_dir().join("node_modules");
    for package in PACKAGES {
        if !modules.join(package).join("package.json").is_file() {
            return Err(format!("tests/interop/node_modules/{package} is missing"));
        }
    }
    Ok(())
}

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, line: String) {
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(line);
}

async fn collect<R: AsyncRead + Unpin>(mut lines: Lines<BufReader<R>>, log: Log) {
    while let Ok(Some(line)) = lines.next_line().await {
        push(&log, line);
    }
}

/// A Node server started by a test: killed when dropped; its output is printed if the test
/// fails.
struct NodeServer {
    script: &'static str,
    ready: Value,
    log: Log,
    _child: Child,
    /// Closing it (on drop) also tells the server to exit.
    _stdin: ChildStdin,
}

impl NodeServer {
    async fn start(script: &'static str, args: &[String]) -> Self {
        preflight();
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("`node {script}` could not start ({err}); {NEEDS}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let log = Log::default();
        let stderr = child.stderr.take().expect("piped stderr");
        tokio::spawn(collect(BufReader::new(stderr).lines(), Arc::clone(&log)));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let started = Instant::now();
        // The first JSON line with a "ready" member; anything before it is kept for the log.
        let ready = tokio::time::timeout(STARTUP, async {
            while let Ok(Some(line)) = stdout.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) if value.get("ready").is_some() => return Some(value),
                    _ => push(&log, line),
                }
            }
            None
        })
        .await;
        let Ok(Some(ready)) = ready else {
            let waited = started.elapsed();
            // Give stderr a moment to be read, then fail with everything the server said.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let exit = match child.try_wait() {
                Ok(Some(status)) => format!("exited ({status})"),
                Ok(None) => "still running".to_owned(),
                Err(err) => format!("state unknown ({err})"),
            };
            let log = log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .join("\n");
            panic!(
                "`node {script} {}` did not become ready in {waited:.1?}, {exit}; {NEEDS}\n{log}",
                args.join(" ")
            );
        };
        tokio::spawn(collect(stdout, Arc::clone(&log)));
        NodeServer {
            script,
            ready,
            log,
            _child: child,
            _stdin: stdin,
        }
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            eprintln!("---- output of node {} ----", self.script);
            for line in log.iter() {
                eprintln!("{line}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A pair of servers
// ---------------------------------------------------------------------------

type HttpClient = Client<HttpConnector, Full<Bytes>>;
type Svc = ClientCredentials<HttpClient>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn service(layer: ClientCredentialsLayer) -> Svc {
    ServiceBuilder::new().layer(layer).service(http_client())
}

/// How the authorization server is started.
#[derive(Clone, Copy, Debug)]
struct AuthOptions {
    /// Access token lifetime in seconds.
    ttl: u64,
    /// Seconds added to `expires_in` (a server whose clock runs ahead of the client's).
    skew: u64,
    /// 404 at `/.well-known/oauth-authorization-server`: OpenID Connect discovery only.
    oidc_discovery_only: bool,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            ttl: 300,
            skew: 0,
            oidc_discovery_only: false,
        }
    }
}

struct Servers {
    auth: NodeServer,
    mcp: NodeServer,
    raw: HttpClient,
}

impl Servers {
    async fn start(options: AuthOptions) -> Self {
        let mut args = vec![
            "--ttl".to_owned(),
            options.ttl.to_string(),
            "--skew".to_owned(),
            options.skew.to_string(),
        ];
        if options.oidc_discovery_only {
            args.push("--oidc-discovery-only".to_owned());
        }
        let auth = NodeServer::start("authorization-server.mjs", &args).await;
        let issuer = auth.ready["issuer"].as_str().expect("issuer").to_owned();
        let mcp = NodeServer::start("mcp-server.mjs", &["--issuer".to_owned(), issuer]).await;
        let servers = Servers {
            auth,
            mcp,
            raw: http_client(),
        };
        // The MCP server read the provider's metadata when it started: count from zero.
        servers
            .admin(&servers.issuer(), "POST", "/admin/reset")
            .await;
        servers
    }

    fn issuer(&self) -> String {
        self.auth.ready["issuer"].as_str().unwrap().to_owned()
    }

    fn mcp_url(&self) -> String {
        self.mcp.ready["url"].as_str().unwrap().to_owned()
    }

    fn mcp_origin(&self) -> String {
        self.mcp_url().trim_end_matches("/mcp").to_owned()
    }

    fn client(&self, id: &str, field: &str) -> String {
        self.auth.ready["clients"][id][field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} for {id} in {}", self.auth.ready))
            .to_owned()
    }

    fn secret(&self, id: &str) -> String {
        self.client(id, "secret")
    }

    #[cfg(feature = "private-key-jwt")]
    fn private_key(&self, id: &str) -> PrivateKey {
        PrivateKey::from_pem(&self.client(id, "private_key_pem")).expect("a PKCS#8 PEM key")
    }

    /// A layer that knows only the MCP server's URL and the credentials.
    fn builder(&self, credentials: Credentials) -> ClientCredentialsBuilder {
        ClientCredentialsLayer::builder(self.mcp_url(), credentials)
            .unwrap()
            .insecure_allow_http_loopback()
    }

    async fn admin(&self, origin: &str, method: &str, path: &str) -> Value {
        let request = Request::builder()
            .method(method)
            .uri(format!("{origin}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = self.raw.request(request).await.expect("admin request");
        assert!(response.status().is_success(), "{method} {path}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).expect("admin JSON")
        }
    }

    /// The authorization server's counters (see `authorization-server.mjs`).
    async fn auth_counts(&self) -> Value {
        self.admin(&self.issuer(), "GET", "/admin/counts").await
    }

    /// The MCP server's counters (see `mcp-server.mjs`).
    async fn mcp_counts(&self) -> Value {
        self.admin(&self.mcp_origin(), "GET", "/admin/counts").await
    }

    async fn revoke_all(&self) {
        self.admin(&self.mcp_origin(), "POST", "/admin/revoke-all")
            .await;
    }

    async fn reject_all(&self) {
        self.admin(&self.mcp_origin(), "POST", "/admin/reject-all")
            .await;
    }
}

// ---------------------------------------------------------------------------
// MCP calls
// ---------------------------------------------------------------------------

fn echo_request(url: &str, id: u64, message: &str) -> Request<Full<Bytes>> {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": { "name": "echo", "arguments": { "message": message } },
    });
    Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// The JSON-RPC response with `id` in a body that is JSON or a `text/event-stream`.
fn jsonrpc_response(content_type: &str, body: &[u8], id: u64) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?;
    if content_type.starts_with("text/event-stream") {
        text.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .find(|message| message["id"] == id)
    } else {
        serde_json::from_str(text).ok()
    }
}

/// One `echo` through `svc`: the status, and the JSON-RPC response when there is one.
async fn echo(
    svc: &Svc,
    url: &str,
    id: u64,
    message: &str,
) -> Result<(StatusCode, Value), BoxError> {
    let response = svc.clone().oneshot(echo_request(url, id, message)).await?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.into_body().collect().await?.to_bytes();
    let message = jsonrpc_response(&content_type, &body, id).unwrap_or(Value::Null);
    Ok((status, message))
}

/// One `echo` that must succeed, answered for `client`.
async fn expect_echo(svc: &Svc, servers: &Servers, id: u64, client: &str) {
    let message = format!("hello {id} from {client}");
    let (status, response) = echo(svc, &servers.mcp_url(), id, &message)
        .await
        .unwrap_or_else(|err| panic!("echo {id} failed: {err}"));
    assert_eq!(status, StatusCode::OK, "echo {id}: {response}");
    let result = &response["result"];
    assert_eq!(result["content"][0]["text"], message, "{response}");
    assert_eq!(
        result["structuredContent"]["client_id"], client,
        "{response}"
    );
}

fn auth_error(err: BoxError) -> Error {
    match err.downcast::<Error>() {
        Ok(err) => *err,
        Err(other) => panic!("not a tower_client_credentials::Error: {other}"),
    }
}

/// Three `echo` calls with `credentials`, from the MCP server's URL alone: one token request by
/// `client` authenticating with `method`, for the MCP server's URL and the scope it lists; one
/// 401 (the first request, which has no token yet) and three calls answered.
async fn check_credentials(
    servers: &Servers,
    credentials: Credentials,
    client: &str,
    method: &str,
) {
    let svc = service(servers.builder(credentials).build().unwrap());
    for id in 1..=3 {
        expect_echo(&svc, servers, id, client).await;
    }
    let auth = servers.auth_counts().await;
    assert_eq!(auth["token_requests"], 1, "{auth}");
    assert_eq!(auth["failed"], 0, "{auth}");
    assert_eq!(
        auth["by_client"],
        json!({ client: { method: 1 } }),
        "{auth}"
    );
    assert_eq!(auth["resources"], json!({ servers.mcp_url(): 1 }), "{auth}");
    assert_eq!(auth["scopes"], json!({ SCOPE: 1 }), "{auth}");
    let mcp = servers.mcp_counts().await;
    assert_eq!(mcp["requests"], 4, "{mcp}");
    assert_eq!(mcp["unauthorized_without_token"], 1, "{mcp}");
    assert_eq!(mcp["unauthorized_with_token"], json!({}), "{mcp}");
    assert_eq!(mcp["ok"], 3, "{mcp}");
    assert_eq!(mcp["tokens_by_client"], json!({ client: 1 }), "{mcp}");
    // The 401 named the protected resource metadata; nothing else was fetched from the server.
    assert_eq!(
        mcp["metadata"],
        json!({ "/.well-known/oauth-protected-resource/mcp 200": 1 }),
        "{mcp}"
    );
}

/// The one client assertion the provider received: signed with `alg`, `iss` = `sub` = the client,
/// `aud` = the provider's issuer, a `jti`.
#[cfg(feature = "private-key-jwt")]
async fn check_assertion(servers: &Servers, client: &str, alg: &str) {
    let auth = servers.auth_counts().await;
    let assertions = auth["assertions"].as_array().unwrap();
    assert_eq!(assertions.len(), 1, "{auth}");
    let assertion = &assertions[0];
    eprintln!("client assertion received by the provider: {assertion}");
    assert_eq!(assertion["alg"], alg, "{assertion}");
    assert_eq!(assertion["iss"], client, "{assertion}");
    assert_eq!(assertion["sub"], client, "{assertion}");
    assert_eq!(assertion["aud"], servers.issuer(), "{assertion}");
    assert_eq!(assertion["jti"], true, "{assertion}");
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("tcc-interop-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, file: &str, content: &str) -> PathBuf {
        let path = self.0.join(file);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------

/// From the MCP URL alone: the 401's `resource_metadata` (RFC 9728), the provider's RFC 8414
/// metadata (oidc-provider serves it beside its OpenID configuration), its token endpoint; the
/// secret goes the way the metadata allows (Basic: both methods are listed).
#[tokio::test]
async fn discovery_from_the_mcp_url_alone() {
    let servers = Servers::start(AuthOptions::default()).await;
    let credentials =
        Credentials::client_secret("basic-client", servers.secret("basic-client")).unwrap();
    check_credentials(&servers, credentials, "basic-client", "client_secret_basic").await;
    let auth = servers.auth_counts().await;
    assert_eq!(
        auth["metadata"],
        json!({ "/.well-known/oauth-authorization-server 200": 1 }),
        "{auth}"
    );
}

/// An OpenID provider without RFC 8414 metadata: the layer falls back to
/// `/.well-known/openid-configuration`.
#[tokio::test]
async fn discovery_falls_back_to_openid_connect_metadata() {
    let servers = Servers::start(AuthOptions {
        oidc_discovery_only: true,
        ..AuthOptions::default()
    })
    .await;
    let credentials =
        Credentials::client_secret("basic-client", servers.secret("basic-client")).unwrap();
    check_credentials(&servers, credentials, "basic-client", "client_secret_basic").await;
    let auth = servers.auth_counts().await;
    assert_eq!(
        auth["metadata"],
        json!({
            "/.well-known/oauth-authorization-server 404": 1,
            "/.well-known/openid-configuration 200": 1,
        }),
        "{auth}"
    );
}

/// `warm_up` discovers through the well-known URLs before any request: no request goes out
/// without a token.
#[tokio::test]
async fn warm_up_discovers_before_the_first_request() {
    let servers = Servers::start(AuthOptions::default()).await;
    let credentials =
        Credentials::client_secret_basic("basic-client", servers.secret("basic-client")).unwrap();
    let layer = servers.builder(credentials).build().unwrap();
    layer.warm_up().await.expect("warm_up");
    let svc = service(layer);
    expect_echo(&svc, &servers, 1, "basic-client").await;
    let auth = servers.auth_counts().await;
    assert_eq!(auth["token_requests"], 1, "{auth}");
    let mcp = servers.mcp_counts().await;
    assert_eq!(mcp["requests"], 1, "{mcp}");
    assert_eq!(mcp["unauthorized_without_token"], 0, "{mcp}");
    assert_eq!(mcp["ok"], 1, "{mcp}");
    // The path-aware well-known URL first (RFC 9728 §3.1), which the SDK serves.
    assert_eq!(
        mcp["metadata"],
        json!({ "/.well-known/oauth-protected-resource/mcp 200": 1 }),
        "{mcp}"
    );
    assert_eq!(
        auth["metadata"],
        json!({ "/.well-known/oauth-authorization-server 200": 1 }),
        "{auth}"
    );
}

// ---------------------------------------------------------------------------
// Credential kinds
// ---------------------------------------------------------------------------

#[tokio::test]
async fn client_secret_basic() {
    let servers = Servers::start(AuthOptions::default()).await;
    let credentials =
        Credentials::client_secret_basic("basic-client", servers.secret("basic-client")).unwrap();
    check_credentials(&servers, credentials, "basic-client", "client_secret_basic").await;
}

#[tokio::test]
async fn client_secret_post() {
    let servers = Servers::start(AuthOptions::default()).await;
    let credentials =
        Credentials::client_secret_post("post-client", servers.secret("post-client")).unwrap();
    check_credentials(&servers, credentials, "post-client", "client_secret_post").await;
}

/// `Credentials::client_secret` with the method from the metadata: oidc-provider lists
/// `client_secret_basic` and `client_secret_post`, so Basic.
#[tokio::test]
async fn client_secret_method_from_metadata() {
    let servers = Servers::start(AuthOptions::default()).await;
    let credentials =
        Credentials::client_secret("basic-client", servers.secret("basic-client")).unwrap();
    check_credentials(&servers, credentials, "basic-client", "client_secret_basic").await;
}

#[tokio::test]
async fn client_secret_file() {
    let servers = Servers::start(AuthOptions::default()).await;
    let dir = TempDir::new("secret");
    let path = dir.write("secret", &format!("{}\n", servers.secret("basic-client")));
    let credentials = Credentials::client_secret_file("basic-client", path).unwrap();
    check_credentials(&servers, credentials, "basic-client", "client_secret_basic").await;
}

#[cfg(feature = "private-key-jwt")]
#[tokio::test]
async fn private_key_jwt_rs256() {
    let servers = Servers::start(AuthOptions::default()).await;
    let key = servers.private_key("rs256-client");
    let credentials = Credentials::private_key_jwt("rs256-client", key).unwrap();
    check_credentials(&servers, credentials, "rs256-client", "private_key_jwt").await;
    check_assertion(&servers, "rs256-client", "RS256").await;
}

#[cfg(feature = "private-key-jwt")]
#[tokio::test]
async fn private_key_jwt_es256() {
    let servers = Servers::start(AuthOptions::default()).await;
    let key = servers.private_key("es256-client");
    let credentials = Credentials::private_key_jwt("es256-client", key).unwrap();
    check_credentials(&servers, credentials, "es256-client", "private_key_jwt").await;
    check_assertion(&servers, "es256-client", "ES256").await;
}

/// `private_key_jwt` with the key in a PEM file (`ClientAssertion::signed_from_file`).
#[cfg(feature = "private-key-jwt")]
#[tokio::test]
async fn private_key_jwt_key_file() {
    let servers = Servers::start(AuthOptions::default()).await;
    let dir = TempDir::new("key");
    let path = dir.write(
        "key.pem",
        &servers.client("es256-client", "private_key_pem"),
    );
    let credentials =
        Credentials::client_assertion("es256-client", ClientAssertion::signed_from_file(path))
            .unwrap();
    check_credentials(&servers, credentials, "es256-client", "private_key_jwt").await;
    check_assertion(&servers, "es256-client", "ES256").await;
}

/// A wrong secret: the provider's `invalid_client` (401) reaches the caller as a typed error,
/// after one token request (a permanent error is not retried).
#[tokio::test]
async fn a_wrong_secret_is_refused_with_invalid_client() {
    let servers = Servers::start(AuthOptions::default()).await;
    let credentials = Credentials::client_secret_basic("basic-client", "not-the-secret").unwrap();
    let svc = service(servers.builder(credentials).build().unwrap());
    let err = auth_error(
        echo(&svc, &servers.mcp_url(), 1, "hello")
            .await
            .expect_err("a wrong secret gets no token"),
    );
    assert_eq!(err.kind(), ErrorKind::TokenEndpoint, "{err}");
    assert_eq!(err.oauth_error(), Some("invalid_client"), "{err}");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED), "{err}");
    let auth = servers.auth_counts().await;
    assert_eq!(auth["token_requests"], 1, "{auth}");
    assert_eq!(auth["failed"], 1, "{auth}");
    let mcp = servers.mcp_counts().await;
    assert_eq!(mcp["requests"], 1, "{mcp}");
    assert_eq!(mcp["ok"], 0, "{mcp}");
}

// ---------------------------------------------------------------------------
// Token lifetimes, revocation, concurrency
// ---------------------------------------------------------------------------

/// Tokens that live 3 s, calls for 8 s from four tasks: no call fails, no token is refused, and
/// there is about one token request per lifetime: at least one per lifetime, at most one per 40 %
/// of a lifetime (the layer refreshes half a lifetime ahead of expiry, up to 20 % earlier) plus
/// the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_across_several_token_lifetimes_never_fail() {
    const TTL: u64 = 3;
    const RUN: Duration = Duration::from_secs(8);
    const WORKERS: u64 = 4;
    let servers = Arc::new(
        Servers::start(AuthOptions {
            ttl: TTL,
            ..AuthOptions::default()
        })
        .await,
    );
    let credentials =
        Credentials::client_secret_basic("basic-client", servers.secret("basic-client")).unwrap();
    let svc = service(servers.builder(credentials).build().unwrap());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let (svc, servers) = (svc.clone(), Arc::clone(&servers));
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut calls = 0u64;
            // Bounded by time and by count.
            while started.elapsed() < RUN && calls < 2_000 {
                let id = worker * 10_000 + calls;
                calls += 1;
                match echo(&svc, &servers.mcp_url(), id, "tick").await {
                    Ok((StatusCode::OK, _)) => {}
                    Ok((status, body)) => {
                        failures.push(format!("{:?}: {status} {body}", started.elapsed()))
                    }
                    Err(err) => failures.push(format!("{:?}: {err}", started.elapsed())),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (calls, failures)
        }));
    }
    let mut calls = 0;
    let mut failures = Vec::new();
    for task in tasks {
        let (n, f) = task.await.unwrap();
        calls += n;
        failures.extend(f);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let auth = servers.auth_counts().await;
    let mcp = servers.mcp_counts().await;
    let tokens = auth["token_requests"].as_u64().unwrap();
    let ttl = TTL as f64;
    let (fewest, most) = (
        (elapsed / ttl).ceil() as u64,
        1 + (elapsed / (0.4 * ttl)).ceil() as u64,
    );
    eprintln!(
        "{calls} calls in {elapsed:.1} s, {tokens} token requests (expected {fewest}..={most}); \
         authorization server: {auth}; MCP server: {mcp}"
    );
    assert!(
        failures.is_empty(),
        "{} failed calls: {failures:#?}",
        failures.len()
    );
    assert_eq!(mcp["unauthorized_with_token"], json!({}), "{mcp}");
    assert!(
        mcp["unauthorized_without_token"].as_u64().unwrap() <= WORKERS,
        "only first requests go without a token: {mcp}"
    );
    assert_eq!(mcp["ok"], calls, "{mcp}");
    assert_eq!(auth["failed"], 0, "{auth}");
    assert!(
        (fewest..=most).contains(&tokens),
        "{tokens} token requests in {elapsed:.1} s with {TTL} s tokens, expected {fewest}..={most}"
    );
    let used = mcp["tokens_accepted"].as_u64().unwrap();
    assert!(
        used <= tokens && used + 1 >= tokens,
        "{used} tokens used, {tokens} issued"
    );
}

/// A token revoked at the MCP server: its 401 (`invalid_token`) makes the layer get a new token
/// and replay the request once; the caller sees only the answer.
#[tokio::test]
async fn a_revoked_token_is_replaced_and_the_request_replayed() {
    let servers = Servers::start(AuthOptions::default()).await;
    let credentials =
        Credentials::client_secret_basic("basic-client", servers.secret("basic-client")).unwrap();
    let svc = service(servers.builder(credentials).build().unwrap());
    expect_echo(&svc, &servers, 1, "basic-client").await;
    servers.revoke_all().await;
    expect_echo(&svc, &servers, 2, "basic-client").await;
    expect_echo(&svc, &servers, 3, "basic-client").await;
    let auth = servers.auth_counts().await;
    assert_eq!(auth["token_requests"], 2, "{auth}");
    let mcp = servers.mcp_counts().await;
    assert_eq!(
        mcp["unauthorized_with_token"],
        json!({ "Token has been revoked": 1 }),
        "{mcp}"
    );
    assert_eq!(mcp["unauthorized_without_token"], 1, "{mcp}");
    assert_eq!(mcp["ok"], 3, "{mcp}");
    assert_eq!(mcp["requests"], 5, "{mcp}");
    assert_eq!(mcp["tokens_accepted"], 2, "{mcp}");
}

/// When the new token is refused too, the second 401 is the answer: one replay, no loop.
#[tokio::test]
async fn a_second_401_is_returned_not_looped() {
    let servers = Servers::start(AuthOptions::default()).await;
    let credentials =
        Credentials::client_secret_basic("basic-client", servers.secret("basic-client")).unwrap();
    let svc = service(servers.builder(credentials).build().unwrap());
    expect_echo(&svc, &servers, 1, "basic-client").await;
    servers.reject_all().await;
    let (status, _) = echo(&svc, &servers.mcp_url(), 2, "hello").await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let auth = servers.auth_counts().await;
    assert_eq!(auth["token_requests"], 2, "{auth}");
    let mcp = servers.mcp_counts().await;
    assert_eq!(
        mcp["unauthorized_with_token"],
        json!({ "Token has been revoked": 2 }),
        "{mcp}"
    );
    assert_eq!(mcp["requests"], 4, "{mcp}");
}

/// A token the client still believes valid has expired at the server (the provider's clock runs
/// ahead: `expires_in` is 60 s longer than the token's `exp`): the 401 `invalid_token` ("Token has
/// expired") makes the layer get a new token and replay the request.
#[tokio::test]
async fn an_expired_token_is_replaced_and_the_request_replayed() {
    let servers = Servers::start(AuthOptions {
        ttl: 2,
        skew: 60,
        ..AuthOptions::default()
    })
    .await;
    let credentials =
        Credentials::client_secret_basic("basic-client", servers.secret("basic-client")).unwrap();
    let svc = service(servers.builder(credentials).build().unwrap());
    expect_echo(&svc, &servers, 1, "basic-client").await;
    // The JWT's `exp` is at most 2 s after the token was issued.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    expect_echo(&svc, &servers, 2, "basic-client").await;
    let auth = servers.auth_counts().await;
    assert_eq!(auth["token_requests"], 2, "{auth}");
    let mcp = servers.mcp_counts().await;
    assert_eq!(
        mcp["unauthorized_with_token"],
        json!({ "Token has expired": 1 }),
        "{mcp}"
    );
    assert_eq!(mcp["ok"], 2, "{mcp}");
}

/// 200 concurrent calls on a cold layer that knows only the MCP server's URL: one token request,
/// every call answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_calls_make_one_token_request() {
    const CALLS: u64 = 200;
    let servers = Arc::new(Servers::start(AuthOptions::default()).await);
    let credentials =
        Credentials::client_secret_basic("basic-client", servers.secret("basic-client")).unwrap();
    let svc = service(servers.builder(credentials).build().unwrap());
    let mut tasks = Vec::new();
    for id in 0..CALLS {
        let (svc, servers) = (svc.clone(), Arc::clone(&servers));
        tasks.push(tokio::spawn(async move {
            echo(&svc, &servers.mcp_url(), id, "concurrent")
                .await
                .map(|(status, _)| status)
                .map_err(|err| err.to_string())
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let auth = servers.auth_counts().await;
    let mcp = servers.mcp_counts().await;
    eprintln!("authorization server: {auth}; MCP server: {mcp}");
    let failed: Vec<_> = statuses
        .iter()
        .filter(|s| !matches!(s, Ok(StatusCode::OK)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} calls failed: {failed:?}",
        failed.len()
    );
    assert_eq!(auth["token_requests"], 1, "{auth}");
    assert_eq!(mcp["ok"], CALLS, "{mcp}");
    assert_eq!(mcp["unauthorized_with_token"], json!({}), "{mcp}");
    assert_eq!(mcp["tokens_accepted"], 1, "{mcp}");
    // Calls that went out before the layer knew the server probed it without a token.
    assert!(
        mcp["unauthorized_without_token"].as_u64().unwrap() <= CALLS,
        "{mcp}"
    );
}
