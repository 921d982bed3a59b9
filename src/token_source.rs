//! Bring your own token: an API key, a gateway's token, a secret store's value. The layer caches
//! it like any other token, refreshes it ahead of its expiry when it has one, and on a 401 calls
//! the source's refresh hook; without a hook, a 401 becomes an
//! [`ErrorKind::Unauthorized`](crate::ErrorKind::Unauthorized) error.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::BoxError;
use crate::secret::AccessToken;

/// A boxed future returned by [`TokenSource`] methods.
pub type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SourcedToken, BoxError>> + Send + 'a>>;

/// A token from a [`TokenSource`], with its lifetime if known.
#[derive(Clone, Debug)]
pub struct SourcedToken {
    pub(crate) token: AccessToken,
    pub(crate) expires_in: Option<Duration>,
}

impl SourcedToken {
    /// A token with no known lifetime: the layer's default lifetime applies, and a 401 renews it.
    pub fn new(token: impl Into<AccessToken>) -> Self {
        Self {
            token: token.into(),
            expires_in: None,
        }
    }

    /// The token's remaining lifetime; it is refreshed ahead of that, like an OAuth token.
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in = Some(lifetime);
        self
    }
}

/// Where tokens come from when they do not come from an OAuth token endpoint.
///
/// Implement it for your type, or use [`token_source_fn`] with closures.
pub trait TokenSource: Send + Sync + 'static {
    /// Returns the current token.
    fn token(&self) -> TokenFuture<'_>;

    /// Whether [`refresh`](Self::refresh) is worth calling when the resource refuses a token.
    /// The default, `false`, returns the refusal to the caller as
    /// [`ErrorKind::Unauthorized`](crate::ErrorKind::Unauthorized).
    fn can_refresh(&self) -> bool {
        false
    }

    /// Called when the resource refused the token `token()` gave (a 401), if
    /// [`can_refresh`](Self::can_refresh); returns a new one. The default asks `token()` again.
    fn refresh(&self) -> TokenFuture<'_> {
        self.token()
    }
}

type SourceFn = dyn Fn() -> TokenFuture<'static> + Send + Sync;

/// A [`TokenSource`] made of closures; see [`token_source_fn`].
#[derive(Clone)]
pub struct FnTokenSource {
    token: Arc<SourceFn>,
    refresh: Option<Arc<SourceFn>>,
}

/// A token source from an async closure.
///
/// ```
/// use tower_client_credentials::{SourcedToken, token_source_fn};
///
/// let source = token_source_fn(|| async {
///     let key = std::env::var("MCP_API_KEY").unwrap_or_default();
///     Ok(SourcedToken::new(key))
/// })
/// // Optional: what to do when the resource says 401 (ask the gateway for a new token…).
/// .on_unauthorized(|| async { Ok(SourcedToken::new("rotated")) });
/// # let _ = source;
/// ```
pub fn token_source_fn<F, Fut>(token: F) -> FnTokenSource
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<SourcedToken, BoxError>> + Send + 'static,
{
    FnTokenSource {
        token: Arc::new(move || Box::pin(token())),
        refresh: None,
    }
}

impl FnTokenSource {
    /// Adds the hook called when the resource refuses the token (a 401).
    pub fn on_unauthorized<F, Fut>(mut self, refresh: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<SourcedToken, BoxError>> + Send + 'static,
    {
        self.refresh = Some(Arc::new(move || Box::pin(refresh())));
        self
    }
}

impl TokenSource for FnTokenSource {
    fn token(&self) -> TokenFuture<'_> {
        (self.token)()
    }

    fn can_refresh(&self) -> bool {
        self.refresh.is_some()
    }

    fn refresh(&self) -> TokenFuture<'_> {
        match &self.refresh {
            Some(refresh) => refresh(),
            None => (self.token)(),
        }
    }
}

impl fmt::Debug for FnTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTokenSource")
            .field("on_unauthorized", &self.refresh.is_some())
            .finish_non_exhaustive()
    }
}
