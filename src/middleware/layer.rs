//! [`ClientCredentialsLayer`] and its builder.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::service::ClientCredentials;
use crate::auth_client::AuthHttpClient;
use crate::cache::{Acquirer, CacheKey, CachePolicy, MemoryStore, Slot, TokenStore};
use crate::credentials::Credentials;
use crate::discovery::{Discovery, DiscoveryConfig, ResourceParameter, Source};
use crate::error::{ConfigError, Error, escape_for_message};
use crate::retry::DefaultReplay;
use crate::target::{Target, check_secure, parse_url};
use crate::token::{RetryConfig, TokenClient};
use crate::token_source::TokenSource;

/// What every service made by one layer shares: where tokens go, and the cache slot.
pub(crate) struct Shared {
    pub(crate) target: Target,
    pub(crate) slot: Arc<Slot>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("target", &self.target)
            .field("slot", &self.slot)
            .finish()
    }
}

/// Applies [`ClientCredentials`] to a service. Services made by one layer (and their clones)
/// share one token cache.
///
/// See the [crate docs](crate) for an example.
pub struct ClientCredentialsLayer<R = DefaultReplay> {
    shared: Arc<Shared>,
    replay: R,
}

impl ClientCredentialsLayer {
    /// Starts configuring a layer for the protected resource at `resource` (for MCP, the server's
    /// URL, such as `https://mcp.example.com/mcp`), authenticating with `credentials`.
    ///
    /// The resource URL is sent verbatim as the RFC 8707 `resource` parameter of every token
    /// request, and bounds where the token goes: only requests with the same scheme, host and
    /// port, and a path at or below the resource path, get it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] if `resource` is not an absolute `http(s)` URL without
    /// credentials or a fragment.
    pub fn builder(
        resource: impl Into<String>,
        credentials: Credentials,
    ) -> Result<ClientCredentialsBuilder, ConfigError> {
        Self::builder_for(resource.into(), TokenOrigin::Credentials(credentials))
    }

    /// Starts configuring a layer whose tokens come from `source` (an API key, a gateway, a
    /// secret store) instead of an OAuth token endpoint. The tokens still go only to `resource`,
    /// are cached and refreshed ahead of a known expiry; on a 401 the source's refresh hook is
    /// called, or, without one, the request fails with
    /// [`ErrorKind::Unauthorized`](crate::ErrorKind::Unauthorized). Discovery settings do not apply.
    ///
    /// ```
    /// use tower_client_credentials::{ClientCredentialsLayer, SourcedToken, token_source_fn};
    ///
    /// let layer = ClientCredentialsLayer::with_token_source(
    ///     "https://api.example.com/v1",
    ///     token_source_fn(|| async { Ok(SourcedToken::new("api-key-from-vault")) }),
    /// )?
    /// .build()?;
    /// # Ok::<(), tower_client_credentials::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] if `resource` is not an absolute `http(s)` URL.
    pub fn with_token_source(
        resource: impl Into<String>,
        source: impl TokenSource,
    ) -> Result<ClientCredentialsBuilder, ConfigError> {
        Self::builder_for(resource.into(), TokenOrigin::TokenSource(Arc::new(source)))
    }

    fn builder_for(
        resource: String,
        credentials: TokenOrigin,
    ) -> Result<ClientCredentialsBuilder, ConfigError> {
        parse_url(&resource, "resource")?;
        Ok(ClientCredentialsBuilder {
            resource,
            credentials,
            token_endpoint: None,
            issuer: None,
            expected_issuer: None,
            strict_resource: false,
            strict_issuer: false,
            resource_parameter: ResourceParameter::default(),
            metadata_max_age: Duration::from_secs(3600),
            scopes: BTreeSet::new(),
            client: None,
            store: None,
            policy: CachePolicy::default(),
            retry: RetryConfig::default(),
            allow_http_loopback: false,
            extra_params: Vec::new(),
        })
    }
}

impl<R> ClientCredentialsLayer<R> {
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Chooses how request bodies are copied for a replay after a 401: [`DefaultReplay`] (the
    /// default), [`NoReplay`](crate::retry::NoReplay), or a closure `Fn(&B) -> Option<B>`.
    pub fn replay_bodies<R2>(self, replay: R2) -> ClientCredentialsLayer<R2> {
        ClientCredentialsLayer {
            shared: self.shared,
            replay,
        }
    }

    /// The cache key of this layer's token, once the authorization server is known (at once
    /// when the token endpoint is configured, after discovery otherwise).
    pub fn cache_key(&self) -> Option<CacheKey> {
        self.shared.slot.key()
    }

    /// Gets a token now, so the first request does not wait for the token endpoint. Call it
    /// before taking traffic. In discovery mode, with no challenge to go by, it looks for the
    /// protected resource metadata at the well-known URLs (REFERENCE R12).
    ///
    /// # Errors
    ///
    /// The token request's [`Error`].
    pub async fn warm_up(&self) -> Result<(), Error> {
        self.shared.slot.acquire().await.map(|_| ())
    }
}

impl<R: Clone> Clone for ClientCredentialsLayer<R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            replay: self.replay.clone(),
        }
    }
}

impl<R> fmt::Debug for ClientCredentialsLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsLayer")
            .field("shared", &self.shared)
            .field("replay", &crate::retry::TypeName::of(&self.replay))
            .finish()
    }
}

impl<S, R: Clone> Layer<S> for ClientCredentialsLayer<R> {
    type Service = ClientCredentials<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientCredentials::from_parts(inner, Arc::clone(&self.shared), self.replay.clone())
    }
}

/// Parameters the crate sets itself; extra parameters may not override them.
const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "scope",
    "resource",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "assertion",
];

/// Where the builder's tokens come from.
enum TokenOrigin {
    Credentials(Credentials),
    TokenSource(Arc<dyn TokenSource>),
}

impl fmt::Debug for TokenOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenOrigin::Credentials(credentials) => credentials.fmt(f),
            TokenOrigin::TokenSource(_) => f.write_str("TokenSource"),
        }
    }
}

/// Configures a [`ClientCredentialsLayer`]. Made by [`ClientCredentialsLayer::builder`].
///
/// Every setting has a default from the crate's design notes; most deployments set only the token
/// endpoint and maybe scopes.
pub struct ClientCredentialsBuilder {
    resource: String,
    credentials: TokenOrigin,
    token_endpoint: Option<String>,
    issuer: Option<String>,
    expected_issuer: Option<String>,
    strict_resource: bool,
    strict_issuer: bool,
    resource_parameter: ResourceParameter,
    metadata_max_age: Duration,
    scopes: BTreeSet<String>,
    client: Option<AuthHttpClient>,
    store: Option<Arc<dyn TokenStore>>,
    policy: CachePolicy,
    retry: RetryConfig,
    allow_http_loopback: bool,
    extra_params: Vec<(String, String)>,
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("resource", &self.resource)
            .field("credentials", &self.credentials)
            .field("token_endpoint", &self.token_endpoint)
            .field("issuer", &self.issuer)
            .field("expected_issuer", &self.expected_issuer)
            .field("strict_resource", &self.strict_resource)
            .field("strict_issuer", &self.strict_issuer)
            .field("resource_parameter", &self.resource_parameter)
            .field("metadata_max_age", &self.metadata_max_age)
            .field("scopes", &self.scopes)
            .field("policy", &self.policy)
            .field("retry", &self.retry)
            .field("allow_http_loopback", &self.allow_http_loopback)
            .field(
                "extra_params",
                &self.extra_params.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ClientCredentialsBuilder {
    /// The authorization server's token endpoint, which skips all discovery. The `resource`
    /// parameter is still sent (the configured resource URL). Client assertions are addressed to
    /// the [`issuer`](Self::issuer) when one is also configured (RFC 10070), else to this URL.
    ///
    /// Without a token endpoint or an [`issuer`](Self::issuer), the layer discovers everything
    /// from the resource: the first request goes out without a token, and the `401`'s
    /// `WWW-Authenticate` challenge names the protected resource metadata (RFC 9728), which names
    /// the authorization server, whose metadata (RFC 8414 / OpenID Connect) names the token
    /// endpoint. After that, every request carries a token.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] if it is not an absolute `http(s)` URL without credentials or
    /// a fragment.
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Result<Self, ConfigError> {
        let url = url.into();
        parse_url(&url, "token_endpoint")?;
        self.token_endpoint = Some(url);
        Ok(self)
    }

    /// The authorization server's issuer: skips the protected resource metadata and fetches this
    /// server's metadata (RFC 8414 / OpenID Connect) for its token endpoint. Also binds the
    /// credentials to it, like [`expected_issuer`](Self::expected_issuer).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] if it is not an absolute `http(s)` URL without credentials or
    /// a fragment.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Result<Self, ConfigError> {
        let issuer = issuer.into();
        parse_url(&issuer, "issuer")?;
        self.issuer = Some(issuer);
        Ok(self)
    }

    /// Binds the credentials to this authorization server (REFERENCE R20–R22): when the
    /// protected resource lists several, this one is used; when it no longer lists this one, the
    /// credentials are sent nowhere and requests fail with
    /// [`ErrorKind::IssuerNotListed`](crate::ErrorKind::IssuerNotListed).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] if it is not an absolute `http(s)` URL.
    pub fn expected_issuer(mut self, issuer: impl Into<String>) -> Result<Self, ConfigError> {
        let issuer = issuer.into();
        parse_url(&issuer, "expected_issuer")?;
        self.expected_issuer = Some(issuer);
        Ok(self)
    }

    /// Accepts protected resource metadata only when its `resource` is exactly the resource URL
    /// (RFC 9728 §3.3). By default a same-origin `resource` whose path is a parent of the resource
    /// URL's path is also accepted, as the official MCP SDKs do; another origin is always refused.
    pub fn strict_resource_validation(mut self) -> Self {
        self.strict_resource = true;
        self
    }

    /// Accepts authorization server metadata only when its `issuer` is exactly the issuer it was
    /// looked up for. By default a path-less issuer may differ by one trailing `/` (many large
    /// servers publish that way; both spellings map to the same metadata URL).
    pub fn strict_issuer_validation(mut self) -> Self {
        self.strict_issuer = true;
        self
    }

    /// Overrides the RFC 8707 `resource` parameter for servers that reject it. Off by default and
    /// outside the MCP specification, which requires `resource` on every token request.
    pub fn resource_parameter(mut self, parameter: ResourceParameter) -> Self {
        self.resource_parameter = parameter;
        self
    }

    /// The longest time discovered metadata is trusted before it is fetched again (it is also
    /// bounded by the documents' `Cache-Control: max-age`). Default one hour.
    pub fn metadata_max_age(mut self, max_age: Duration) -> Self {
        self.metadata_max_age = max_age;
        self
    }

    /// The scopes to request. Order and duplicates do not matter: they are sent sorted and
    /// de-duplicated, and the set is part of the cache key (RFC 6749 §3.3). Without scopes, none
    /// is sent and the server applies its default.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidScope`] for an empty scope or one with a space, `"`, `\`, a control
    /// character or a non-ASCII character.
    pub fn scopes<I, T>(mut self, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        for scope in scopes {
            let scope = scope.into();
            let valid = !scope.is_empty()
                && scope
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !valid {
                return Err(ConfigError::InvalidScope {
                    scope: escape_for_message(&scope),
                });
            }
            self.scopes.insert(scope);
        }
        Ok(self)
    }

    /// Adds a parameter to every token request, such as an `audience` some servers want.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ReservedParameter`] for a parameter the crate sets itself (`grant_type`,
    /// `scope`, `resource`, `client_id`, `client_secret`, the assertion parameters).
    pub fn extra_param(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let name = name.into();
        if RESERVED_PARAMS.contains(&name.as_str()) || name.is_empty() {
            return Err(ConfigError::ReservedParameter { name });
        }
        self.extra_params.push((name, value.into()));
        Ok(self)
    }

    /// The HTTP client for authorization traffic; by default [`AuthHttpClient::hyper`].
    pub fn http_client(mut self, client: AuthHttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Where tokens are kept below the in-process slot; by default a fresh [`MemoryStore`].
    /// Give several layers the same store to share tokens between them.
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// How long before expiry a token is refreshed in the background: at most this long, and at
    /// most half the token's lifetime. Default 5 minutes.
    pub fn refresh_ahead(mut self, ahead: Duration) -> Self {
        self.policy.refresh_ahead = ahead;
        self
    }

    /// How much earlier than [`refresh_ahead`](Self::refresh_ahead) a refresh may start, at random,
    /// as a fraction of it (so replicas do not refresh in step). Default 0.2.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] unless `0.0 <= jitter <= 1.0`.
    pub fn refresh_jitter(mut self, jitter: f64) -> Result<Self, ConfigError> {
        if !(0.0..=1.0).contains(&jitter) {
            return Err(ConfigError::InvalidSetting {
                name: "refresh_jitter",
                reason: "must be between 0.0 and 1.0",
            });
        }
        self.policy.refresh_jitter = jitter;
        Ok(self)
    }

    /// How long before expiry a token stops being used (requests then wait for a new one): at
    /// most this long, and at most a quarter of the token's lifetime. Default 30 seconds.
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.policy.expiry_margin = margin;
        self
    }

    /// The lifetime assumed when a token response has no `expires_in`. Default 5 minutes; a 401
    /// from the resource still renews such a token earlier.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] for zero.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Result<Self, ConfigError> {
        if lifetime.is_zero() {
            return Err(ConfigError::InvalidSetting {
                name: "default_lifetime",
                reason: "must be more than zero",
            });
        }
        self.policy.default_lifetime = lifetime;
        Ok(self)
    }

    /// How long a permanent token-endpoint failure (`invalid_client`…) is remembered and returned
    /// without asking again. Default 2 seconds.
    pub fn negative_cache(mut self, ttl: Duration) -> Self {
        self.policy.negative_ttl = ttl;
        self
    }

    /// The shortest time between two renewals forced by 401 responses. Default 5 seconds: a
    /// resource (or a proxy) that answers 401 to everything cannot drive a loop against the
    /// authorization server.
    pub fn renewal_interval(mut self, interval: Duration) -> Self {
        self.policy.forced_renewal_interval = interval;
        self
    }

    /// The first and the longest delay between background refresh attempts while the current
    /// token is still valid (doubling, ±20 %). Default 10 s and 60 s.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] if `first` is zero or longer than `max`.
    pub fn background_retry(mut self, first: Duration, max: Duration) -> Result<Self, ConfigError> {
        if first.is_zero() || first > max {
            return Err(ConfigError::InvalidSetting {
                name: "background_retry",
                reason: "the first delay must be more than zero and at most the longest",
            });
        }
        self.policy.background_retry_min = first;
        self.policy.background_retry_max = max;
        Ok(self)
    }

    /// Attempts per token request for transient failures (network errors, 5xx, 429). Default 3.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] for zero.
    pub fn token_request_attempts(mut self, attempts: u32) -> Result<Self, ConfigError> {
        if attempts == 0 {
            return Err(ConfigError::InvalidSetting {
                name: "token_request_attempts",
                reason: "must be at least 1",
            });
        }
        self.retry.attempts = attempts;
        Ok(self)
    }

    /// The base of the exponential backoff between attempts (full jitter). Default 200 ms.
    pub fn token_request_backoff(mut self, initial: Duration) -> Self {
        self.retry.initial_backoff = initial;
        self
    }

    /// Time limits for one attempt and for a whole token request with its retries. Default 10 s
    /// and 30 s.
    pub fn token_request_timeout(mut self, attempt: Duration, total: Duration) -> Self {
        self.retry.attempt_timeout = attempt;
        self.retry.total_timeout = total;
        self
    }

    /// Allows plain `http` for loopback hosts (`127.0.0.0/8`, `::1`, `localhost`), for local
    /// development and tests. Other `http` URLs are always refused.
    pub fn insecure_allow_http_loopback(mut self) -> Self {
        self.allow_http_loopback = true;
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InsecureUrl`] for an `http` URL that is not an allowed loopback,
    /// [`ConfigError::ConflictingIssuer`] when `issuer` and `expected_issuer` disagree, and
    /// [`ConfigError::MissingClientAuthentication`] or [`ConfigError::MissingClientId`] for
    /// credentials that cannot work.
    pub fn build(self) -> Result<ClientCredentialsLayer, ConfigError> {
        let resource_uri = parse_url(&self.resource, "resource")?;
        check_secure(&resource_uri, "resource", self.allow_http_loopback)?;
        if let TokenOrigin::Credentials(credentials) = &self.credentials {
            credentials.check()?;
        }
        let source = match (&self.token_endpoint, &self.issuer) {
            (Some(endpoint), _) => {
                let uri = parse_url(endpoint, "token_endpoint")?;
                check_secure(&uri, "token_endpoint", self.allow_http_loopback)?;
                Source::TokenEndpoint(endpoint.clone(), uri)
            }
            (None, Some(issuer)) => {
                check_secure(
                    &parse_url(issuer, "issuer")?,
                    "issuer",
                    self.allow_http_loopback,
                )?;
                Source::Issuer(issuer.clone())
            }
            (None, None) => Source::Discover,
        };
        if let (Some(issuer), Some(expected)) = (&self.issuer, &self.expected_issuer)
            && !crate::discovery::urls::same_issuer(expected, issuer, !self.strict_issuer)
        {
            return Err(ConfigError::ConflictingIssuer);
        }
        let client = self.client.unwrap_or_default();
        let discovery = Discovery::new(
            DiscoveryConfig {
                resource_url: self.resource,
                resource_uri: resource_uri.clone(),
                source,
                expected_issuer: self.expected_issuer.or(self.issuer),
                strict_resource: self.strict_resource,
                strict_issuer: self.strict_issuer,
                allow_http_loopback: self.allow_http_loopback,
                resource_parameter: self.resource_parameter,
                max_age: self.metadata_max_age,
                timeout: self.retry.attempt_timeout,
            },
            client.clone(),
        );
        let acquirer = match self.credentials {
            TokenOrigin::Credentials(credentials) => Acquirer::OAuth {
                discovery,
                tokens: TokenClient {
                    client,
                    credentials,
                    extra_params: self.extra_params,
                    retry: self.retry,
                },
            },
            TokenOrigin::TokenSource(source) => Acquirer::Source {
                source,
                resource: discovery.config().resource_url.clone(),
            },
        };
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let slot = Arc::new(Slot::new(acquirer, self.scopes, store, self.policy));
        Ok(ClientCredentialsLayer {
            shared: Arc::new(Shared {
                target: Target::new(&resource_uri),
                slot,
            }),
            replay: DefaultReplay,
        })
    }
}
