//! Discovery: from the MCP server's URL to a token endpoint.
//!
//! 1. Protected resource metadata (RFC 9728): the URL named by the 401 challenge's
//!    `resource_metadata`, else the path-aware well-known URL, then the root one. The document's
//!    `resource` must name the server (REFERENCE R11–R17).
//! 2. The authorization server: the one the credentials are bound to (`expected_issuer`) if the
//!    document lists it, else the first listed server whose metadata validates (R20–R22).
//! 3. Authorization server metadata (RFC 8414, then OpenID Connect, in the URL shapes of R23–R24),
//!    whose `issuer` must match and whose endpoints must be `https` (R25–R27).
//!
//! Configuring the issuer or the token endpoint skips what it makes unnecessary. Documents are
//! cached for at most `metadata_max_age` (and at most their `Cache-Control: max-age`).

pub(crate) mod urls;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::Full;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::auth_client::AuthHttpClient;
use crate::credentials::{AuthMethod, Credentials};
use crate::error::{Error, ErrorKind, escape_for_message};
use crate::target::{check_secure, parse_url};
use crate::token::read_body;

/// What the RFC 8707 `resource` parameter carries (REFERENCE R30–R33).
///
/// The MCP specification requires `resource` on every token request. Some authorization servers
/// reject it (Microsoft Entra ID wants the resource in the scope instead); for those, replace or
/// omit it. Both are outside the MCP specification and are logged at `warn`.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ResourceParameter {
    /// The validated `resource` of the protected resource metadata, verbatim, or the configured
    /// URL when discovery is skipped. The default.
    #[default]
    Discovered,
    /// Send this value instead.
    Replace(String),
    /// Send no `resource` parameter.
    Omit,
}

/// Where the token endpoint comes from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// Configured directly: no discovery at all.
    TokenEndpoint(String, Uri),
    /// Issuer configured: authorization server metadata only.
    Issuer(String),
    /// Everything from the protected resource.
    Discover,
}

#[derive(Clone, Debug)]
pub(crate) struct DiscoveryConfig {
    pub(crate) resource_url: String,
    pub(crate) resource_uri: Uri,
    pub(crate) source: Source,
    pub(crate) expected_issuer: Option<String>,
    pub(crate) strict_resource: bool,
    pub(crate) strict_issuer: bool,
    pub(crate) allow_http_loopback: bool,
    pub(crate) resource_parameter: ResourceParameter,
    pub(crate) max_age: Duration,
    pub(crate) timeout: Duration,
}

impl DiscoveryConfig {
    /// The issuer of a configured token endpoint: the one configured beside it, else the
    /// endpoint itself (all that is known).
    pub(crate) fn configured_issuer<'a>(&'a self, token_endpoint: &'a str) -> &'a str {
        self.expected_issuer.as_deref().unwrap_or(token_endpoint)
    }
}

/// Everything a token request needs, as discovery found it.
#[derive(Debug)]
pub(crate) struct Binding {
    /// The authorization server's issuer (its own spelling), or the configured token endpoint.
    pub(crate) issuer: String,
    pub(crate) token_endpoint: Uri,
    /// The `resource` parameter to send, after any override.
    pub(crate) resource: Option<String>,
    pub(crate) auth_method: AuthMethod,
    pub(crate) scopes_supported: Vec<String>,
    /// When this binding stops being trusted without a fresh look.
    pub(crate) expires: Instant,
}

struct ResourceMetadata {
    resource: String,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
}

struct ServerMetadata {
    issuer: String,
    token_endpoint: Uri,
    auth_methods: Option<Vec<String>>,
    signing_algs: Option<Vec<String>>,
}

type Cached<T> = (Instant, Arc<T>);

pub(crate) struct Discovery {
    config: DiscoveryConfig,
    client: AuthHttpClient,
    resource_cache: Mutex<HashMap<String, Cached<ResourceMetadata>>>,
    server_cache: Mutex<HashMap<String, Cached<ServerMetadata>>>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn discovery_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Discovery, message.into())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One metadata document fetch: a JSON object, or "not here" (4xx, 3xx) to move on.
enum Fetched {
    Found(Map<String, Value>, Duration),
    NotHere(StatusCode),
}

impl Discovery {
    pub(crate) fn new(config: DiscoveryConfig, client: AuthHttpClient) -> Self {
        Self {
            config,
            client,
            resource_cache: Mutex::new(HashMap::new()),
            server_cache: Mutex::new(HashMap::new()),
        }
    }

    /// The token endpoint in `issuer`'s metadata, validated as for an authorization server
    /// (used for an enterprise IdP known by its issuer).
    pub(crate) async fn token_endpoint_of(
        client: AuthHttpClient,
        issuer: &str,
        allow_http_loopback: bool,
    ) -> Result<Uri, Error> {
        let uri = parse_url(issuer, "issuer").map_err(|e| discovery_error(e.to_string()))?;
        let config = DiscoveryConfig {
            resource_url: issuer.to_owned(),
            resource_uri: uri,
            source: Source::Issuer(issuer.to_owned()),
            expected_issuer: Some(issuer.to_owned()),
            strict_resource: true,
            strict_issuer: false,
            allow_http_loopback,
            resource_parameter: ResourceParameter::Omit,
            max_age: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
        };
        let (_, server) = Self::new(config, client)
            .server_metadata(issuer, true)
            .await?;
        Ok(server.token_endpoint.clone())
    }

    pub(crate) fn config(&self) -> &DiscoveryConfig {
        &self.config
    }

    /// Finds the token endpoint. `resource_metadata` is the challenge's hint; `fresh` skips the
    /// document caches (a later challenge asked to look again, REFERENCE R16).
    pub(crate) async fn bind(
        &self,
        credentials: &Credentials,
        resource_metadata: Option<&str>,
        fresh: bool,
    ) -> Result<Binding, Error> {
        match &self.config.source {
            Source::TokenEndpoint(raw, uri) => Ok(Binding {
                issuer: self.config.configured_issuer(raw).to_owned(),
                token_endpoint: uri.clone(),
                resource: self.resource_param(&self.config.resource_url),
                auth_method: credentials.method_for(None, None)?,
                scopes_supported: Vec::new(),
                expires: Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600),
            }),
            Source::Issuer(issuer) => {
                let (expires, server) = self.server_metadata(issuer, fresh).await?;
                Ok(Binding {
                    issuer: server.issuer.clone(),
                    token_endpoint: server.token_endpoint.clone(),
                    resource: self.resource_param(&self.config.resource_url),
                    auth_method: credentials.method_for(
                        server.auth_methods.as_deref(),
                        server.signing_algs.as_deref(),
                    )?,
                    scopes_supported: Vec::new(),
                    expires,
                })
            }
            Source::Discover => self.discover(credentials, resource_metadata, fresh).await,
        }
    }

    async fn discover(
        &self,
        credentials: &Credentials,
        resource_metadata: Option<&str>,
        fresh: bool,
    ) -> Result<Binding, Error> {
        let (prm_expires, prm) = self.resource_metadata(resource_metadata, fresh).await?;
        if prm.authorization_servers.is_empty() {
            return Err(discovery_error(
                "the protected resource metadata lists no authorization_servers",
            ));
        }
        let tolerant = !self.config.strict_issuer;
        let candidates: Vec<&String> = match &self.config.expected_issuer {
            Some(expected) => {
                let bound = prm
                    .authorization_servers
                    .iter()
                    .find(|listed| urls::same_issuer(expected, listed, tolerant));
                match bound {
                    Some(listed) => vec![listed],
                    None => {
                        return Err(Error::new(
                            ErrorKind::IssuerNotListed,
                            format!(
                                "the protected resource no longer lists the authorization server the credentials are bound to ({})",
                                escape_for_message(expected)
                            ),
                        ));
                    }
                }
            }
            None => prm.authorization_servers.iter().collect(),
        };
        let mut last_error = None;
        for issuer in candidates {
            let server = match self.server_metadata(issuer, fresh).await {
                Ok(found) => found,
                Err(err) if err.is_transient() => return Err(err),
                Err(err) => {
                    tracing::debug!(issuer = %issuer, error = %err, "authorization server skipped");
                    last_error = Some(err);
                    continue;
                }
            };
            let (server_expires, server) = server;
            let auth_method = match credentials.method_for(
                server.auth_methods.as_deref(),
                server.signing_algs.as_deref(),
            ) {
                Ok(method) => method,
                Err(err) => {
                    last_error = Some(err);
                    continue;
                }
            };
            tracing::info!(issuer = %server.issuer, auth_method = %auth_method, "authorization server chosen");
            return Ok(Binding {
                issuer: server.issuer.clone(),
                token_endpoint: server.token_endpoint.clone(),
                resource: self.resource_param(&prm.resource),
                auth_method,
                scopes_supported: prm.scopes_supported.clone(),
                expires: prm_expires.min(server_expires),
            });
        }
        Err(last_error.unwrap_or_else(|| discovery_error("no usable authorization server")))
    }

    fn resource_param(&self, discovered: &str) -> Option<String> {
        match &self.config.resource_parameter {
            ResourceParameter::Discovered => Some(discovered.to_owned()),
            ResourceParameter::Replace(value) => {
                tracing::warn!(
                    "sending a replaced resource parameter (outside the MCP specification)"
                );
                Some(value.clone())
            }
            ResourceParameter::Omit => {
                tracing::warn!("omitting the resource parameter (outside the MCP specification)");
                None
            }
        }
    }

    /// RFC 9728 protected resource metadata: the hinted URL alone, or the well-known candidates.
    async fn resource_metadata(
        &self,
        hinted: Option<&str>,
        fresh: bool,
    ) -> Result<(Instant, Arc<ResourceMetadata>), Error> {
        let resource = &self.config.resource_uri;
        let candidates = match hinted {
            // The challenge's URL is used exactly, with no fallback (REFERENCE R11, A15); the
            // document must then name the resource we asked for.
            Some(url) => vec![(url.to_owned(), self.config.resource_url.clone())],
            None => urls::protected_resource_candidates(resource),
        };
        let mut tried = Vec::new();
        for (url, identifier) in candidates {
            if let Some(hit) = fresh_entry(&self.resource_cache, &url, fresh) {
                return Ok(hit);
            }
            let uri = self.learned_url(&url, "resource_metadata")?;
            match self.fetch(&uri, "protected resource metadata").await? {
                Fetched::NotHere(status) => tried.push(format!(
                    "{} ({})",
                    escape_for_message(&url),
                    status.as_u16()
                )),
                Fetched::Found(object, max_age) => {
                    let doc = Arc::new(self.validate_resource(&object, &identifier)?);
                    let expires = Instant::now() + max_age;
                    lock(&self.resource_cache).insert(url, (expires, Arc::clone(&doc)));
                    return Ok((expires, doc));
                }
            }
        }
        Err(discovery_error(format!(
            "no protected resource metadata found (tried {})",
            tried.join(", ")
        )))
    }

    fn validate_resource(
        &self,
        object: &Map<String, Value>,
        identifier: &str,
    ) -> Result<ResourceMetadata, Error> {
        let resource = string_field(object, "resource", "protected resource metadata")?
            .ok_or_else(|| discovery_error("the protected resource metadata has no resource"))?;
        let mismatch = || {
            discovery_error(format!(
                "the protected resource metadata names resource \"{}\", not this server",
                escape_for_message(&resource)
            ))
        };
        let named: Uri = resource.parse().map_err(|_| mismatch())?;
        let expected: Uri = identifier.parse().map_err(|_| mismatch())?;
        let server = &self.config.resource_uri;
        let exact = urls::same_url(&named, &expected);
        // Default: also a same-origin path prefix of the server URL (REFERENCE R15, A6).
        let prefix = !self.config.strict_resource
            && urls::same_origin(&named, server)
            && urls::path_is_prefix(&named, server);
        if !(exact || prefix) {
            return Err(mismatch());
        }
        if object.get("dpop_bound_access_tokens_required") == Some(&Value::Bool(true)) {
            return Err(discovery_error(
                "the protected resource requires DPoP-bound tokens; DPoP is not supported",
            ));
        }
        Ok(ResourceMetadata {
            resource,
            authorization_servers: string_list(
                object,
                "authorization_servers",
                "protected resource metadata",
            )?
            .unwrap_or_default(),
            scopes_supported: string_list(
                object,
                "scopes_supported",
                "protected resource metadata",
            )?
            .unwrap_or_default(),
        })
    }

    /// RFC 8414 / OpenID Connect metadata for `issuer`, from cache when fresh.
    async fn server_metadata(
        &self,
        issuer: &str,
        fresh: bool,
    ) -> Result<(Instant, Arc<ServerMetadata>), Error> {
        if let Some(hit) = fresh_entry(&self.server_cache, issuer, fresh) {
            return Ok(hit);
        }
        let issuer_uri = self.learned_url(issuer, "issuer")?;
        if issuer_uri.query().is_some() {
            return Err(discovery_error(
                "the issuer has a query; RFC 8414 forbids it",
            ));
        }
        let mut tried = Vec::new();
        let mut mismatch = None;
        for url in urls::authorization_server_candidates(&issuer_uri) {
            let uri = self.learned_url(&url, "authorization server metadata")?;
            match self.fetch(&uri, "authorization server metadata").await? {
                Fetched::NotHere(status) => tried.push(format!(
                    "{} ({})",
                    escape_for_message(&url),
                    status.as_u16()
                )),
                Fetched::Found(object, max_age) => match self.validate_server(&object, issuer) {
                    Ok(doc) => {
                        let doc = Arc::new(doc);
                        let expires = Instant::now() + max_age;
                        lock(&self.server_cache)
                            .insert(issuer.to_owned(), (expires, Arc::clone(&doc)));
                        return Ok((expires, doc));
                    }
                    // A document for another issuer is discarded (R25); a later URL may still
                    // hold the right one.
                    Err(err) => mismatch = Some(err),
                },
            }
        }
        Err(mismatch.unwrap_or_else(|| {
            discovery_error(format!(
                "no authorization server metadata found for {} (tried {})",
                escape_for_message(issuer),
                tried.join(", ")
            ))
        }))
    }

    fn validate_server(
        &self,
        object: &Map<String, Value>,
        issuer: &str,
    ) -> Result<ServerMetadata, Error> {
        let what = "authorization server metadata";
        let named = string_field(object, "issuer", what)?
            .ok_or_else(|| discovery_error("the authorization server metadata has no issuer"))?;
        if !urls::same_issuer(issuer, &named, !self.config.strict_issuer) {
            return Err(discovery_error(format!(
                "the authorization server metadata names issuer \"{}\", not \"{}\"",
                escape_for_message(&named),
                escape_for_message(issuer)
            )));
        }
        let endpoint = string_field(object, "token_endpoint", what)?.ok_or_else(|| {
            discovery_error("the authorization server metadata has no token_endpoint")
        })?;
        let token_endpoint = self.learned_url(&endpoint, "token_endpoint")?;
        Ok(ServerMetadata {
            issuer: named,
            token_endpoint,
            auth_methods: string_list(object, "token_endpoint_auth_methods_supported", what)?,
            signing_algs: string_list(
                object,
                "token_endpoint_auth_signing_alg_values_supported",
                what,
            )?,
        })
    }

    /// A URL learned from a server must be absolute, without credentials, and `https` (or
    /// loopback `http` when allowed): REFERENCE R19, R26, R78.
    fn learned_url(&self, url: &str, field: &'static str) -> Result<Uri, Error> {
        let uri = parse_url(url, field)
            .map_err(|e| discovery_error(format!("{e}: \"{}\"", escape_for_message(url))))?;
        check_secure(&uri, field, self.config.allow_http_loopback)
            .map_err(|e| discovery_error(format!("{e}: \"{}\"", escape_for_message(url))))?;
        Ok(uri)
    }

    async fn fetch(&self, uri: &Uri, what: &str) -> Result<Fetched, Error> {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = uri.clone();
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("application/json"));
        let transient = |message: String, source: Option<crate::BoxError>| {
            let err = match source {
                Some(source) => Error::with_source(ErrorKind::Discovery, message, source),
                None => Error::new(ErrorKind::Discovery, message),
            };
            err.transient(true)
        };
        let response =
            match tokio::time::timeout(self.config.timeout, self.client.send(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(err)) => {
                    return Err(transient(format!("could not fetch the {what}"), Some(err)));
                }
                Err(_) => return Err(transient(format!("timed out fetching the {what}"), None)),
            };
        let (parts, body) = response.into_parts();
        let status = parts.status;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(transient(
                format!("the {what} URL answered HTTP {}", status.as_u16()),
                None,
            ));
        }
        if status != StatusCode::OK {
            tracing::debug!(url = %uri, status = status.as_u16(), "no {what} here");
            return Ok(Fetched::NotHere(status));
        }
        let body = read_body(body).await.map_err(|e| {
            let retry = e.is_transient();
            Error::with_source(
                ErrorKind::Discovery,
                format!("could not read the {what}"),
                e,
            )
            .transient(retry)
        })?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(object)) => Ok(Fetched::Found(object, self.max_age(&parts.headers))),
            _ => Err(discovery_error(format!("the {what} is not a JSON object"))),
        }
    }

    fn max_age(&self, headers: &HeaderMap) -> Duration {
        let header = headers
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut age = self.config.max_age;
        for directive in header.split(',').map(str::trim) {
            if directive.eq_ignore_ascii_case("no-store")
                || directive.eq_ignore_ascii_case("no-cache")
            {
                age = Duration::ZERO;
            } else if let Some(seconds) = directive
                .split_once('=')
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("max-age"))
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            {
                age = age.min(Duration::from_secs(seconds));
            }
        }
        age
    }
}

/// A cached document that has not expired, unless the caller wants a fresh one.
fn fresh_entry<T>(
    cache: &Mutex<HashMap<String, Cached<T>>>,
    key: &str,
    fresh: bool,
) -> Option<Cached<T>> {
    if fresh {
        return None;
    }
    lock(cache)
        .get(key)
        .filter(|(expires, _)| Instant::now() < *expires)
        .map(|(expires, doc)| (*expires, Arc::clone(doc)))
}

fn string_field(
    object: &Map<String, Value>,
    name: &str,
    what: &str,
) -> Result<Option<String>, Error> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(discovery_error(format!(
            "{name} in the {what} is not a string"
        ))),
    }
}

fn string_list(
    object: &Map<String, Value>,
    name: &str,
    what: &str,
) -> Result<Option<Vec<String>>, Error> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    discovery_error(format!("{name} in the {what} holds a non-string"))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(discovery_error(format!(
            "{name} in the {what} is not an array"
        ))),
    }
}

/// Splits a space-separated scope string into a set (RFC 6749 §3.3).
pub(crate) fn scope_set(scope: &str) -> BTreeSet<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
