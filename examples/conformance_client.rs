//! The client under test for the MCP conformance suite (`@modelcontextprotocol/conformance`).
//!
//! The suite starts a scenario's authorization server and MCP server, then runs this program with
//! the MCP server's URL as the last argument, the scenario's name in `MCP_CONFORMANCE_SCENARIO`
//! and, for scenarios that hand out credentials, a JSON object in `MCP_CONFORMANCE_CONTEXT`
//! (`{"name": "<scenario>", "client_id": "...", "client_secret": "..."}` and so on).
//!
//! The program knows only the MCP server's URL and the credentials: it builds
//! [`ClientCredentialsLayer`] in discovery mode (no token endpoint), so the layer finds the
//! authorization server itself from the server's 401 challenge (RFC 9728, then RFC 8414 / OpenID
//! Connect discovery). Over that it speaks MCP Streamable HTTP: `initialize`,
//! `notifications/initialized`, `tools/list`.
//!
//! It exits 0 when the whole exchange succeeded and 1, with the reason on stderr, otherwise. The
//! crate's own logs go to stderr at INFO (`CONFORMANCE_LOG=debug` for more).
//!
//! `conformance/run.sh` builds it and runs the scenarios; by hand:
//!
//! ```text
//! cargo build --example conformance_client
//! npx @modelcontextprotocol/conformance client \
//!     --command target/debug/examples/conformance_client --scenario auth/client-credentials-basic
//! ```

use std::process::ExitCode;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt as _};
use tower_client_credentials::{BoxError, ClientCredentialsLayer, Credentials};

/// The protocol version offered in `initialize` when the suite does not name one.
const DEFAULT_PROTOCOL_VERSION: &str = "2025-11-25";
/// Newer suites tell the client which protocol version the scenario's server speaks.
const PROTOCOL_VERSION_ENV: &str = "MCP_CONFORMANCE_PROTOCOL_VERSION";
const SCENARIO_ENV: &str = "MCP_CONFORMANCE_SCENARIO";
const CONTEXT_ENV: &str = "MCP_CONFORMANCE_CONTEXT";
/// Stays under the suite's default 30 s client timeout, so a hang ends with a message.
const OVERALL_TIMEOUT: Duration = Duration::from_secs(25);

/// Credentials for scenarios whose context carries none. Those scenarios (`auth/metadata-*`)
/// expect a public authorization-code client that registers itself dynamically; their token
/// endpoint accepts any client, so fixed credentials, sent with `client_secret_basic`, let
/// discovery, the token request and the bearer token be exercised.
const PLACEHOLDER_CLIENT_ID: &str = "tower-client-credentials-conformance";
const PLACEHOLDER_CLIENT_SECRET: &str = "no-credentials-in-context";

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let level = match std::env::var("CONFORMANCE_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(false)
        .init();

    let outcome = match tokio::time::timeout(OVERALL_TIMEOUT, run()).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "gave up after {}s without finishing the MCP exchange",
            OVERALL_TIMEOUT.as_secs()
        )),
    };
    match outcome {
        Ok(()) => {
            println!("conformance_client: OK");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("conformance_client: FAILED: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let server_url = std::env::args()
        .skip(1)
        .next_back()
        .ok_or("usage: conformance_client [args...] <mcp-server-url>")?;
    let scenario = std::env::var(SCENARIO_ENV).unwrap_or_else(|_| "(unnamed)".to_owned());
    let protocol_version = std::env::var(PROTOCOL_VERSION_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_PROTOCOL_VERSION.to_owned());
    tracing::info!(%scenario, %server_url, %protocol_version, "conformance client starting");

    let context = match std::env::var(CONTEXT_ENV) {
        Ok(raw) => Some(Context::parse(&raw)?),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!("{CONTEXT_ENV} is not valid UTF-8"));
        }
    };
    if let Some(name) = context.as_ref().and_then(|c| c.name.as_deref())
        && name != scenario
    {
        tracing::warn!(context_name = name, %scenario, "context names another scenario");
    }
    let kind = CredentialKind::from_context(context.as_ref())?;
    tracing::info!(credential_kind = kind.label(), "credentials from context");
    let credentials = kind.into_credentials()?;

    let layer = ClientCredentialsLayer::builder(server_url.clone(), credentials)
        .map_err(|e| format!("configuring the layer: {e}"))?
        .insecure_allow_http_loopback()
        .build()
        .map_err(|e| format!("building the layer: {e}"))?;
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut client = ServiceBuilder::new().layer(layer).service(http);

    let mut session = McpSession::new(server_url, protocol_version);
    session.initialize(&mut client).await?;
    session.initialized(&mut client).await?;
    session.list_tools(&mut client).await?;
    session.close(&mut client).await;
    Ok(())
}

/// `MCP_CONFORMANCE_CONTEXT`: every field any scenario is known to send, all optional. Which ones
/// are present tells the credential kind (see [`CredentialKind::from_context`]).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Context {
    /// The scenario's name (the suite adds it).
    name: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    /// `auth/client-credentials-jwt`: PKCS#8 PEM private key for `private_key_jwt`.
    private_key_pem: Option<String>,
    /// `auth/client-credentials-jwt`: JWS algorithm for the client assertion (`ES256`).
    signing_algorithm: Option<String>,
    /// Cross-app access / enterprise-managed authorization (SEP-990): the IdP side.
    idp_client_id: Option<String>,
    idp_id_token: Option<String>,
    idp_issuer: Option<String>,
    idp_token_endpoint: Option<String>,
    /// `auth/wif-jwt-bearer` (SEP-1933): workload JWTs, one valid and two the AS must refuse.
    valid_jwt: Option<String>,
    wrong_audience_jwt: Option<String>,
    expired_jwt: Option<String>,
}

impl Context {
    fn parse(raw: &str) -> Result<Self, String> {
        serde_json::from_str(raw)
            .map_err(|e| format!("{CONTEXT_ENV} is not the expected JSON: {e}"))
    }
}

/// How the client proves who it is, as the scenario's context describes it.
#[allow(
    dead_code,
    reason = "the JWT, cross-app and workload kinds are parsed now and used once the crate supports them"
)]
enum CredentialKind {
    /// `client_id` + `client_secret`; the layer picks `client_secret_basic` or
    /// `client_secret_post` from the authorization server's metadata.
    ClientSecret {
        client_id: String,
        client_secret: String,
    },
    /// No context at all: placeholder credentials (see [`PLACEHOLDER_CLIENT_ID`]).
    Placeholder,
    /// `private_key_jwt` client authentication (RFC 7523 §2.2).
    PrivateKeyJwt {
        client_id: String,
        private_key_pem: String,
        signing_algorithm: String,
    },
    /// SEP-990: exchange the IdP's ID token for an ID-JAG at the IdP (RFC 8693), then the
    /// ID-JAG for an access token with the JWT-bearer grant (RFC 7523 §2.1).
    CrossAppAccess {
        client_id: String,
        client_secret: String,
        idp_client_id: String,
        idp_id_token: String,
        idp_issuer: String,
        idp_token_endpoint: String,
    },
    /// SEP-1933: the workload's JWT as a JWT-bearer grant assertion (RFC 7523 §2.1).
    WorkloadIdentity {
        client_id: String,
        valid_jwt: String,
        wrong_audience_jwt: Option<String>,
        expired_jwt: Option<String>,
    },
}

impl CredentialKind {
    /// Most specific first: cross-app contexts also carry `client_id` and `client_secret`.
    fn from_context(context: Option<&Context>) -> Result<Self, String> {
        let Some(ctx) = context else {
            return Ok(Self::Placeholder);
        };
        let need = |field: &Option<String>, name: &str| {
            field
                .clone()
                .ok_or_else(|| format!("{CONTEXT_ENV} lacks \"{name}\""))
        };
        if ctx.idp_id_token.is_some() {
            return Ok(Self::CrossAppAccess {
                client_id: need(&ctx.client_id, "client_id")?,
                client_secret: need(&ctx.client_secret, "client_secret")?,
                idp_client_id: need(&ctx.idp_client_id, "idp_client_id")?,
                idp_id_token: need(&ctx.idp_id_token, "idp_id_token")?,
                idp_issuer: need(&ctx.idp_issuer, "idp_issuer")?,
                idp_token_endpoint: need(&ctx.idp_token_endpoint, "idp_token_endpoint")?,
            });
        }
        if ctx.valid_jwt.is_some() {
            return Ok(Self::WorkloadIdentity {
                client_id: need(&ctx.client_id, "client_id")?,
                valid_jwt: need(&ctx.valid_jwt, "valid_jwt")?,
                wrong_audience_jwt: ctx.wrong_audience_jwt.clone(),
                expired_jwt: ctx.expired_jwt.clone(),
            });
        }
        if ctx.private_key_pem.is_some() {
            return Ok(Self::PrivateKeyJwt {
                client_id: need(&ctx.client_id, "client_id")?,
                private_key_pem: need(&ctx.private_key_pem, "private_key_pem")?,
                signing_algorithm: need(&ctx.signing_algorithm, "signing_algorithm")?,
            });
        }
        if ctx.client_secret.is_some() {
            return Ok(Self::ClientSecret {
                client_id: need(&ctx.client_id, "client_id")?,
                client_secret: need(&ctx.client_secret, "client_secret")?,
            });
        }
        if ctx.client_id.is_some() {
            return Err(format!(
                "{CONTEXT_ENV} has a client_id but no credential this client knows \
                 (client_secret, private_key_pem, idp_id_token or valid_jwt)"
            ));
        }
        // A context with nothing but the scenario's name.
        Ok(Self::Placeholder)
    }

    fn label(&self) -> &'static str {
        match self {
            Self::ClientSecret { .. } => "client_secret",
            Self::Placeholder => "placeholder client_secret (no credentials in context)",
            Self::PrivateKeyJwt { .. } => "private_key_jwt",
            Self::CrossAppAccess { .. } => "cross-app access (ID token -> ID-JAG -> JWT bearer)",
            Self::WorkloadIdentity { .. } => "workload identity JWT bearer",
        }
    }

    fn into_credentials(self) -> Result<Credentials, String> {
        let built = match self {
            Self::ClientSecret {
                client_id,
                client_secret,
            } => Credentials::client_secret(client_id, client_secret),
            // Fixed to Basic: those scenarios' servers list only `none` (public clients), so
            // the method cannot be chosen from their metadata (the layer would refuse).
            Self::Placeholder => {
                Credentials::client_secret_basic(PLACEHOLDER_CLIENT_ID, PLACEHOLDER_CLIENT_SECRET)
            }
            unsupported @ (Self::PrivateKeyJwt { .. }
            | Self::CrossAppAccess { .. }
            | Self::WorkloadIdentity { .. }) => {
                return Err(format!(
                    "unsupported credential kind in this version: {}",
                    unsupported.label()
                ));
            }
        };
        built.map_err(|e| format!("invalid credentials in {CONTEXT_ENV}: {e}"))
    }
}

/// One MCP Streamable HTTP session: the endpoint, the negotiated protocol version and the
/// session id the server assigned, if any.
struct McpSession {
    url: String,
    protocol_version: String,
    session_id: Option<HeaderValue>,
    /// Whether `initialize` completed, after which `MCP-Protocol-Version` is sent.
    initialized: bool,
    next_id: u64,
}

impl McpSession {
    fn new(url: String, protocol_version: String) -> Self {
        Self {
            url,
            protocol_version,
            session_id: None,
            initialized: false,
            next_id: 1,
        }
    }

    async fn initialize<S>(&mut self, client: &mut S) -> Result<(), String>
    where
        S: McpHttp,
    {
        let params = json!({
            "protocolVersion": self.protocol_version,
            "capabilities": {},
            "clientInfo": {
                "name": "tower-client-credentials-conformance",
                "version": env!("CARGO_PKG_VERSION"),
            },
        });
        let (result, headers) = self.request(client, "initialize", params).await?;
        if let Some(id) = headers.get(&MCP_SESSION_ID) {
            tracing::info!("server assigned an MCP session id");
            self.session_id = Some(id.clone());
        }
        match result.get("protocolVersion").and_then(Value::as_str) {
            Some(version) => {
                if version != self.protocol_version {
                    tracing::info!(
                        offered = %self.protocol_version,
                        negotiated = version,
                        "server chose another protocol version"
                    );
                }
                self.protocol_version = version.to_owned();
            }
            None => return Err("initialize result has no protocolVersion".to_owned()),
        }
        let server = result
            .pointer("/serverInfo/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        tracing::info!(server, protocol_version = %self.protocol_version, "initialized");
        self.initialized = true;
        Ok(())
    }

    async fn initialized<S>(&mut self, client: &mut S) -> Result<(), String>
    where
        S: McpHttp,
    {
        let body = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = self.post(client, &body).await?;
        let status = response.status();
        // Drain the (normally empty) body so the connection can be reused.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("notifications/initialized answered {status}"))
        }
    }

    async fn list_tools<S>(&mut self, client: &mut S) -> Result<(), String>
    where
        S: McpHttp,
    {
        let (result, _) = self.request(client, "tools/list", json!({})).await?;
        let tools = result
            .get("tools")
            .and_then(Value::as_array)
            .ok_or("tools/list result has no tools array")?;
        let names: Vec<&str> = tools
            .iter()
            .map(|t| t.get("name").and_then(Value::as_str).unwrap_or("?"))
            .collect();
        tracing::info!(count = names.len(), "tools/list answered");
        println!("tools: {}", names.join(", "));
        Ok(())
    }

    /// Ends the session with `DELETE`, as Streamable HTTP asks, when the server made one.
    /// Best effort: a server may answer 405.
    async fn close<S>(&mut self, client: &mut S)
    where
        S: McpHttp,
    {
        let Some(session_id) = self.session_id.clone() else {
            return;
        };
        let mut request = Request::builder()
            .method(Method::DELETE)
            .uri(&self.url)
            .header(MCP_SESSION_ID, session_id);
        if let Ok(version) = HeaderValue::from_str(&self.protocol_version) {
            request = request.header(MCP_PROTOCOL_VERSION, version);
        }
        let Ok(request) = request.body(Full::new(Bytes::new())) else {
            return;
        };
        match call(client, request).await {
            Ok(response) => tracing::info!(status = %response.status(), "session closed"),
            Err(e) => tracing::info!(error = %e, "closing the session failed"),
        }
    }

    /// Sends a JSON-RPC request and returns its `result` and the response headers.
    async fn request<S>(
        &mut self,
        client: &mut S,
        method: &str,
        params: Value,
    ) -> Result<(Value, http::HeaderMap), String>
    where
        S: McpHttp,
    {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.post(client, &body).await?;
        let status = response.status();
        let (parts, body) = response.into_parts();
        if !status.is_success() {
            let challenge = parts
                .headers
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(|v| format!("; WWW-Authenticate: {v}"))
                .unwrap_or_default();
            let text = body
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(format!(
                "{method} answered {status}{challenge}; body: {}",
                truncate(&text, 500)
            ));
        }
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let message = if content_type.starts_with("text/event-stream") {
            read_sse_response(body, id)
                .await
                .map_err(|e| format!("{method}: {e}"))?
        } else if content_type.starts_with("application/json") {
            let bytes = body
                .collect()
                .await
                .map_err(|e| {
                    let e: BoxError = e.into();
                    format!("{method}: reading the body: {}", chain(&*e))
                })?
                .to_bytes();
            let value: Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{method}: the JSON body does not parse: {e}"))?;
            find_response(value, id)
                .ok_or_else(|| format!("{method}: no JSON-RPC response with id {id} in the body"))?
        } else {
            return Err(format!(
                "{method}: unexpected Content-Type {content_type:?} (wanted application/json or text/event-stream)"
            ));
        };
        if let Some(error) = message.get("error") {
            return Err(format!("{method} returned a JSON-RPC error: {error}"));
        }
        let result = message
            .get("result")
            .cloned()
            .ok_or_else(|| format!("{method}: the response has neither result nor error"))?;
        Ok((result, parts.headers))
    }

    async fn post<S>(&self, client: &mut S, body: &Value) -> Result<Response<S::Body>, String>
    where
        S: McpHttp,
    {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream");
        if let Some(id) = &self.session_id {
            request = request.header(MCP_SESSION_ID, id.clone());
        }
        if self.initialized {
            let version = HeaderValue::from_str(&self.protocol_version)
                .map_err(|_| "the negotiated protocol version is not a header value")?;
            request = request.header(MCP_PROTOCOL_VERSION, version);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("building the request: {e}"))?;
        call(client, request).await
    }
}

/// The service stack under test: the layer over hyper-util, as any `tower::Service` with a
/// `Full<Bytes>` request body.
trait McpHttp:
    Service<Request<Full<Bytes>>, Response = Response<Self::Body>, Error = BoxError>
{
    type Body: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Unpin;
}

impl<S, B> McpHttp for S
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = BoxError>,
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Unpin,
{
    type Body = B;
}

async fn call<S: McpHttp>(
    client: &mut S,
    request: Request<Full<Bytes>>,
) -> Result<Response<S::Body>, String> {
    let what = format!("{} {}", request.method(), request.uri());
    let ready = client
        .ready()
        .await
        .map_err(|e| format!("{what}: the client is not ready: {}", chain(&*e)))?;
    ready
        .call(request)
        .await
        .map_err(|e| format!("{what}: {}", chain(&*e)))
}

/// Reads a `text/event-stream` body event by event until the JSON-RPC response with `id`
/// arrives; server requests and notifications on the way are logged and skipped.
async fn read_sse_response<B>(mut body: B, id: u64) -> Result<Value, String>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut buffer = BytesMut::new();
    let mut parser = SseParser::default();
    loop {
        // Handle every complete line already buffered.
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line = buffer.split_to(end + 1);
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(data) = parser.line(line)
                && let Some(found) = match_event(&data, id)?
            {
                return Ok(found);
            }
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buffer.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => {
                let e: BoxError = e.into();
                return Err(format!("reading the event stream: {}", chain(&*e)));
            }
            None => {
                // End of stream: a last line without a newline, then a pending event.
                if !buffer.is_empty() {
                    let rest = String::from_utf8_lossy(&buffer).into_owned();
                    buffer.clear();
                    if let Some(data) = parser.line(rest.trim_end_matches('\r'))
                        && let Some(found) = match_event(&data, id)?
                    {
                        return Ok(found);
                    }
                }
                if let Some(data) = parser.line("")
                    && let Some(found) = match_event(&data, id)?
                {
                    return Ok(found);
                }
                return Err(format!(
                    "the event stream ended without a response to request {id}"
                ));
            }
        }
    }
}

/// The `data` lines of one server-sent event, per the WHATWG event-stream format.
#[derive(Default)]
struct SseParser {
    data: Vec<String>,
}

impl SseParser {
    /// Feeds one line (without its line ending); returns an event's data when `line` ends it.
    fn line(&mut self, line: &str) -> Option<String> {
        if line.is_empty() {
            if self.data.is_empty() {
                return None;
            }
            return Some(std::mem::take(&mut self.data).join("\n"));
        }
        if line.starts_with(':') {
            return None; // comment
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            self.data.push(value.to_owned());
        }
        // `event`, `id` and `retry` do not matter for one request's answer.
        None
    }
}

/// Parses one event's data; returns the JSON-RPC response with `id` if that is what it holds.
fn match_event(data: &str, id: u64) -> Result<Option<Value>, String> {
    if data.trim().is_empty() {
        return Ok(None); // priming events carry no data
    }
    let value: Value = serde_json::from_str(data)
        .map_err(|e| format!("an event's data is not JSON ({e}): {}", truncate(data, 200)))?;
    let found = find_response(value.clone(), id);
    if found.is_none() {
        let method = value.get("method").and_then(Value::as_str).unwrap_or("?");
        tracing::info!(method, "skipping a server message on the event stream");
    }
    Ok(found)
}

/// The JSON-RPC response with `id` in `value`, a single message or a batch.
fn find_response(value: Value, id: u64) -> Option<Value> {
    let is_it = |message: &Value| {
        message.get("id").and_then(Value::as_u64) == Some(id)
            && (message.get("result").is_some() || message.get("error").is_some())
    };
    match value {
        Value::Array(batch) => batch.into_iter().find(is_it),
        single => is_it(&single).then_some(single),
    }
}

/// An error and its sources, `: `-separated.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
