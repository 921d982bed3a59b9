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
//! Connect discovery). Over that it speaks MCP Streamable HTTP in the protocol revision named by
//! `MCP_CONFORMANCE_PROTOCOL_VERSION` (default `2025-11-25`): `initialize`,
//! `notifications/initialized`, `tools/list`; or, from `2026-07-28` on (stateless),
//! `server/discover` and `tools/list`, each with `MCP-Protocol-Version` and `params._meta`.
//!
//! The credential kind follows the context: `client_id` + `client_secret`; SEP-990 cross-app
//! access (`idp_id_token`…); SEP-1933 workload identity (`valid_jwt`…); `private_key_jwt`
//! (`private_key_pem`, with the crate's default `private-key-jwt` feature); none at all
//! (placeholder credentials).
//!
//! It exits 0 when the whole exchange succeeded and 1, with the reason on stderr, otherwise. The
//! crate's own logs go to stderr at INFO (`CONFORMANCE_LOG=debug` for more).
//!
//! `conformance/run.sh` also drives error paths through variables the suite passes on:
//! `CONFORMANCE_SCOPES` (scopes to request), `CONFORMANCE_WIF_JWT` (which WIF JWT to present) and
//! `CONFORMANCE_EXPECT_ERROR` (the exchange must fail with an error containing this text, and so
//! must a second attempt made at once; the client then exits 0).
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
use tower_client_credentials::cross_app::IdentityProvider;
use tower_client_credentials::extension::{self, OAUTH_CLIENT_CREDENTIALS};
use tower_client_credentials::{BoxError, ClientAssertion, ClientCredentialsLayer, Credentials};
#[cfg(feature = "private-key-jwt")]
use tower_client_credentials::{PrivateKey, SigningAlgorithm};

/// The protocol version offered in `initialize` when the suite does not name one.
const DEFAULT_PROTOCOL_VERSION: &str = "2025-11-25";
/// Revisions with the `initialize` handshake; later ones (`2026-07-28` on) are stateless.
const HANDSHAKE_REVISIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Newer suites tell the client which protocol version the scenario's server speaks.
const PROTOCOL_VERSION_ENV: &str = "MCP_CONFORMANCE_PROTOCOL_VERSION";
const SCENARIO_ENV: &str = "MCP_CONFORMANCE_SCENARIO";
const CONTEXT_ENV: &str = "MCP_CONFORMANCE_CONTEXT";
/// Space-separated scopes for the token request; set by `conformance/run.sh`, not by the suite.
const SCOPES_ENV: &str = "CONFORMANCE_SCOPES";
/// Set by `conformance/run.sh` for runs where the token request must fail: text the error must
/// contain. The client then exits 0 only if the exchange failed that way (twice, see [`run`]).
const EXPECT_ERROR_ENV: &str = "CONFORMANCE_EXPECT_ERROR";
/// Set by `conformance/run.sh`: which of the WIF scenario's JWTs to present (`valid_jwt` unless
/// set; `wrong_audience_jwt` and `expired_jwt` exercise the error paths).
const WIF_JWT_ENV: &str = "CONFORMANCE_WIF_JWT";
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

    let mut builder = ClientCredentialsLayer::builder(server_url.clone(), credentials)
        .map_err(|e| format!("configuring the layer: {e}"))?
        .insecure_allow_http_loopback();
    // Scopes to request, when a run asks for some (the suite's scenarios never do; conformance/run.sh
    // uses this to drive the WIF scenario's error paths).
    if let Ok(scopes) = std::env::var(SCOPES_ENV)
        && !scopes.trim().is_empty()
    {
        tracing::info!(%scopes, "requesting scopes");
        builder = builder
            .scopes(scopes.split_whitespace())
            .map_err(|e| format!("{SCOPES_ENV}: {e}"))?;
    }
    let layer = builder
        .build()
        .map_err(|e| format!("building the layer: {e}"))?;
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut client = ServiceBuilder::new().layer(layer).service(http);

    let Some(expected) = std::env::var(EXPECT_ERROR_ENV)
        .ok()
        .filter(|e| !e.is_empty())
    else {
        let mut session = McpSession::new(server_url, protocol_version);
        session.open(&mut client).await?;
        session.list_tools(&mut client).await?;
        session.close(&mut client).await;
        return Ok(());
    };

    // A run that expects the authorization to be refused: the error must reach the caller, and a
    // second request made at once must get the same error without a new token request (the
    // layer remembers the refusal; the suite records any second token request).
    let mut session = McpSession::new(server_url.clone(), protocol_version.clone());
    let first = match session.open(&mut client).await {
        Ok(()) => {
            return Err(format!(
                "expected the exchange to fail with {expected:?}, but it succeeded"
            ));
        }
        Err(e) if e.contains(&expected) => e,
        Err(e) => return Err(format!("expected an error with {expected:?}, got: {e}")),
    };
    println!("expected error: {first}");
    let mut again = McpSession::new(server_url, protocol_version);
    match again.open(&mut client).await {
        Ok(()) => Err("a second attempt succeeded after the refusal".to_owned()),
        Err(e) if e.contains(&expected) => {
            println!("expected error again: {e}");
            Ok(())
        }
        Err(e) => Err(format!(
            "the second attempt failed differently (expected {expected:?}): {e}"
        )),
    }
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
            // The crate signs a fresh assertion for every token request (iss = sub = client_id,
            // aud = the issuer found by discovery) with the context's key, in the context's
            // algorithm (ES256, which the scenario's AS lists).
            #[cfg(feature = "private-key-jwt")]
            Self::PrivateKeyJwt {
                client_id,
                private_key_pem,
                signing_algorithm,
            } => {
                let algorithm: SigningAlgorithm = signing_algorithm.parse().map_err(|e| {
                    format!("signing_algorithm {signing_algorithm:?} in {CONTEXT_ENV}: {e}")
                })?;
                let key = PrivateKey::from_pem(&private_key_pem)
                    .and_then(|key| key.with_algorithm(algorithm))
                    .map_err(|e| format!("private_key_pem in {CONTEXT_ENV}: {e}"))?;
                Credentials::private_key_jwt(client_id, key)
            }
            #[cfg(not(feature = "private-key-jwt"))]
            Self::PrivateKeyJwt {
                client_id,
                private_key_pem,
                signing_algorithm,
            } => {
                return Err(format!(
                    "unsupported credential kind in this build: private_key_jwt for {client_id} \
                     ({signing_algorithm}, a {}-byte PEM key) needs the crate's private-key-jwt \
                     feature",
                    private_key_pem.len()
                ));
            }
            // The IdP's token exchange takes the ID token and the IdP client id (no secret: the
            // scenario's IdP checks none); the ID-JAG it returns is then redeemed at the MCP
            // server's authorization server, found by discovery, with Basic authentication.
            // `idp_issuer` is not needed: the ID token is passed through as it is.
            Self::CrossAppAccess {
                client_id,
                client_secret,
                idp_client_id,
                idp_id_token,
                idp_issuer,
                idp_token_endpoint,
            } => {
                tracing::debug!(%idp_issuer, %idp_token_endpoint, "enterprise IdP");
                let idp = IdentityProvider::new(
                    &idp_token_endpoint,
                    ClientAssertion::from_static(idp_id_token),
                )
                .map_err(|e| format!("invalid idp_token_endpoint in {CONTEXT_ENV}: {e}"))?
                .client(
                    Credentials::public_client(idp_client_id)
                        .map_err(|e| format!("invalid idp_client_id in {CONTEXT_ENV}: {e}"))?,
                );
                Credentials::client_secret_basic(client_id, client_secret)
                    .map(|client| Credentials::cross_app_access(idp, client))
            }
            // The valid JWT unless a run asks for one of the others (see WIF_JWT_ENV): those
            // exist to be refused, by the authorization server (wrong audience) or, before any
            // request, by the crate's local expiry check.
            Self::WorkloadIdentity {
                client_id,
                valid_jwt,
                wrong_audience_jwt,
                expired_jwt,
            } => {
                let which = std::env::var(WIF_JWT_ENV).unwrap_or_default();
                let jwt = match which.as_str() {
                    "" | "valid_jwt" => valid_jwt,
                    "wrong_audience_jwt" => wrong_audience_jwt
                        .ok_or_else(|| format!("{CONTEXT_ENV} lacks \"wrong_audience_jwt\""))?,
                    "expired_jwt" => {
                        expired_jwt.ok_or_else(|| format!("{CONTEXT_ENV} lacks \"expired_jwt\""))?
                    }
                    other => return Err(format!("{WIF_JWT_ENV}: no JWT named {other:?}")),
                };
                tracing::info!(
                    jwt = if which.is_empty() {
                        "valid_jwt"
                    } else {
                        which.as_str()
                    },
                    "presenting a workload JWT"
                );
                Credentials::jwt_bearer(ClientAssertion::from_static(jwt)).with_client_id(client_id)
            }
        };
        built.map_err(|e| format!("invalid credentials in {CONTEXT_ENV}: {e}"))
    }
}

/// One MCP Streamable HTTP session: the endpoint, the negotiated protocol version and the
/// session id the server assigned, if any.
///
/// Two protocol generations: up to `2025-11-25`, `initialize` then `notifications/initialized`
/// (the protocol version negotiated, `MCP-Protocol-Version` sent from then on); from `2026-07-28`
/// on, stateless: no handshake, every request carries `MCP-Protocol-Version` and the protocol
/// version, client info and capabilities in `params._meta`, and `server/discover` replaces
/// `initialize`.
struct McpSession {
    url: String,
    protocol_version: String,
    /// Whether `protocol_version` is a stateless revision (`2026-07-28` and later).
    stateless: bool,
    session_id: Option<HeaderValue>,
    /// Whether `initialize` completed, after which `MCP-Protocol-Version` is sent.
    initialized: bool,
    next_id: u64,
}

impl McpSession {
    fn new(url: String, protocol_version: String) -> Self {
        let stateless = !HANDSHAKE_REVISIONS.contains(&protocol_version.as_str());
        Self {
            url,
            protocol_version,
            stateless,
            session_id: None,
            initialized: false,
            next_id: 1,
        }
    }

    /// The first exchange: `initialize` and `notifications/initialized`, or `server/discover`.
    /// Its first POST is the one the layer answers 401 for and replays with a token.
    async fn open<S>(&mut self, client: &mut S) -> Result<(), String>
    where
        S: McpHttp,
    {
        if self.stateless {
            self.discover(client).await
        } else {
            self.initialize(client).await?;
            self.initialized(client).await
        }
    }

    /// `server/discover` (stateless revisions): the server must support our revision.
    async fn discover<S>(&mut self, client: &mut S) -> Result<(), String>
    where
        S: McpHttp,
    {
        let (result, _) = self.request(client, "server/discover", json!({})).await?;
        let supported: Vec<&str> = result
            .get("supportedVersions")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !supported.contains(&self.protocol_version.as_str()) {
            return Err(format!(
                "server/discover: the server supports {supported:?}, not {}",
                self.protocol_version
            ));
        }
        let server = result
            .pointer("/_meta/io.modelcontextprotocol~1serverInfo/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        tracing::info!(server, protocol_version = %self.protocol_version, "discovered");
        Ok(())
    }

    async fn initialize<S>(&mut self, client: &mut S) -> Result<(), String>
    where
        S: McpHttp,
    {
        let params = json!({
            "protocolVersion": self.protocol_version,
            "capabilities": {},
            "clientInfo": client_info(),
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
        let mut params = params;
        if self.stateless {
            // Per-request protocol version, client info and capabilities (the server checks the
            // version against the MCP-Protocol-Version header).
            let meta = json!({
                "io.modelcontextprotocol/protocolVersion": self.protocol_version,
                "io.modelcontextprotocol/clientInfo": client_info(),
                "io.modelcontextprotocol/clientCapabilities": {},
            });
            if let Some(object) = params.as_object_mut() {
                object.insert("_meta".to_owned(), meta);
            }
        }
        let mut body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        // The crate's extension declaration, where this revision has a place for it (the
        // initialize capabilities in 2025-11-25, every request's _meta from 2026-07-28).
        if extension::declare(&mut body, &self.protocol_version) {
            tracing::debug!(method, "declared {OAUTH_CLIENT_CREDENTIALS}");
        }
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
        if self.initialized || self.stateless {
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

fn client_info() -> Value {
    json!({
        "name": "tower-client-credentials-conformance",
        "version": env!("CARGO_PKG_VERSION"),
    })
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
