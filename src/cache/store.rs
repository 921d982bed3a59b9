//! Where tokens live between requests: the [`TokenStore`] trait and the default [`MemoryStore`].
//!
//! Every service holds its current token in a lock-free slot (the L1); a store is the layer below
//! it, consulted only when a token is about to be requested. Handing the same store to several
//! layers lets them share tokens; a store backed by Redis (planned) lets a fleet of processes share
//! them.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::error::Error;
use crate::secret::AccessToken;

/// A boxed future returned by [`TokenStore`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Identifies one token: authorization server, client, resource and scope set (REFERENCE R64).
///
/// Its [`Display`](fmt::Display) form is stable and safe to use as a key in a shared store: it
/// holds no secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    issuer: Arc<str>,
    client_id: Arc<str>,
    resource: Arc<str>,
    scope: Arc<str>,
}

impl CacheKey {
    pub(crate) fn new(issuer: &str, client_id: &str, resource: &str, scope: &str) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            resource: resource.into(),
            scope: scope.into(),
        }
    }

    /// The authorization server (its issuer, or the token endpoint when configured directly).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The client identifier.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The protected resource the token is for.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The normalised scope set: sorted, de-duplicated, space-separated; empty for none.
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Space separates scopes and never appears in URLs or client ids written by the builder,
        // so `|` plus lengths keeps the form unambiguous.
        write!(
            f,
            "tcc1|{}:{}|{}:{}|{}:{}|{}",
            self.issuer.len(),
            self.issuer,
            self.client_id.len(),
            self.client_id,
            self.resource.len(),
            self.resource,
            self.scope
        )
    }
}

/// A token as a store keeps it.
#[derive(Clone, Debug)]
pub struct StoredToken {
    /// The token.
    pub access_token: AccessToken,
    /// When the token request that produced it started.
    pub issued_at: SystemTime,
    /// When the authorization server says it expires.
    pub expires_at: SystemTime,
    /// The granted scope, if the server named it.
    pub scope: Option<String>,
}

/// Storage for tokens, shared by every service that holds it.
///
/// Implementations must be cheap to call concurrently. Errors are logged and treated as a miss:
/// a failing store never fails a request that the token endpoint can serve.
pub trait TokenStore: Send + Sync + 'static {
    /// Returns the stored token for `key`, if any. The cache decides whether it is still fresh.
    fn get<'a>(&'a self, key: &'a CacheKey) -> StoreFuture<'a, Option<StoredToken>>;

    /// Stores `token` under `key`, replacing what was there.
    fn put<'a>(&'a self, key: &'a CacheKey, token: StoredToken) -> StoreFuture<'a, ()>;

    /// Removes the token under `key`, but only if it is `token` (the one a resource rejected):
    /// a newer token stored meanwhile by someone else stays.
    fn invalidate<'a>(&'a self, key: &'a CacheKey, token: &'a AccessToken) -> StoreFuture<'a, ()>;
}

/// An in-process [`TokenStore`]; the default. Clones share the same map.
///
/// ```
/// use tower_client_credentials::cache::MemoryStore;
///
/// let store = MemoryStore::new();
/// let shared = store.clone(); // hand both to layers that should share tokens
/// assert!(store.is_empty() && shared.is_empty());
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    map: Arc<Mutex<HashMap<CacheKey, StoredToken>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many tokens are stored.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no token is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .finish()
    }
}

impl TokenStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a CacheKey) -> StoreFuture<'a, Option<StoredToken>> {
        let found = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn put<'a>(&'a self, key: &'a CacheKey, token: StoredToken) -> StoreFuture<'a, ()> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        // Drop long-expired entries so a store shared by many keys does not grow without bound.
        let now = SystemTime::now();
        map.retain(|_, t| t.expires_at > now);
        map.insert(key.clone(), token);
        Box::pin(std::future::ready(Ok(())))
    }

    fn invalidate<'a>(&'a self, key: &'a CacheKey, token: &'a AccessToken) -> StoreFuture<'a, ()> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(key).is_some_and(|t| t.access_token.same_as(token)) {
            map.remove(key);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn token(value: &str) -> StoredToken {
        StoredToken {
            access_token: AccessToken::new(value),
            issued_at: SystemTime::now(),
            expires_at: SystemTime::now() + Duration::from_secs(60),
            scope: None,
        }
    }

    #[tokio::test]
    async fn invalidate_only_removes_the_rejected_token() {
        let store = MemoryStore::new();
        let key = CacheKey::new("https://as", "c", "https://rs/mcp", "");
        store.put(&key, token("new")).await.unwrap();
        store
            .invalidate(&key, &AccessToken::new("old"))
            .await
            .unwrap();
        assert_eq!(store.len(), 1);
        store
            .invalidate(&key, &AccessToken::new("new"))
            .await
            .unwrap();
        assert!(store.get(&key).await.unwrap().is_none());
    }

    #[test]
    fn key_display_is_unambiguous_and_secret_free() {
        let a = CacheKey::new("https://as|x", "c", "r", "s");
        let b = CacheKey::new("https://as", "x|c", "r", "s");
        assert_ne!(a.to_string(), b.to_string());
    }

    #[test]
    fn stored_token_debug_hides_the_token() {
        assert!(!format!("{:?}", token("hunter2")).contains("hunter2"));
    }
}
