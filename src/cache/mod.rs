//! The shared token cache.
//!
//! Each key (authorization server, client, resource, scope set) has one slot, shared by every
//! clone of the service. A slot's token is in one of three states:
//!
//! - **fresh**: used as is; the hot path is one lock-free load and a refcount clone;
//! - **stale** (inside the refresh-ahead window): used as is, and one background refresh starts;
//! - **expired** (inside the safety margin before expiry, or absent): callers wait for the one
//!   shared acquisition.
//!
//! Acquisitions are spawned, so a caller that gives up does not cancel the token request others
//! wait for, and there is only ever one in flight per slot. A background worker refreshes ahead of
//! expiry (with jitter, so replicas spread out) even when no request comes; it stops when the last
//! service handle is dropped. Permanent failures (`invalid_client`…) are remembered briefly so a
//! misconfigured client does not hammer the server. The [`TokenStore`] sits below the slot and is
//! consulted only when a token is about to be requested.

pub(crate) mod clock;
mod store;

use std::collections::BTreeSet;
use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::watch;

use self::clock::Clock;
pub use self::store::{CacheKey, MemoryStore, StoreFuture, StoredToken, TokenStore};
use crate::credentials::Credentials;
use crate::discovery::{Binding, Discovery, ResourceParameter, Source, scope_set};
use crate::error::escape_for_message;
use crate::error::{Error, ErrorKind};
use crate::secret::AccessToken;
use crate::token::{Issued, TokenClient, bearer_header, check_token};
use crate::token_source::TokenSource;

/// A number in `[0, 1)`, random enough for jitter (not for secrets).
pub(crate) fn random_fraction() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// When tokens count as stale or expired, and how failures are paced. See the crate's builder for
/// what each knob means.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CachePolicy {
    pub(crate) refresh_ahead: Duration,
    pub(crate) refresh_jitter: f64,
    pub(crate) expiry_margin: Duration,
    pub(crate) default_lifetime: Duration,
    pub(crate) negative_ttl: Duration,
    pub(crate) forced_renewal_interval: Duration,
    pub(crate) background_retry_min: Duration,
    pub(crate) background_retry_max: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            refresh_ahead: Duration::from_secs(300),
            refresh_jitter: 0.2,
            expiry_margin: Duration::from_secs(30),
            default_lifetime: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(2),
            forced_renewal_interval: Duration::from_secs(5),
            background_retry_min: Duration::from_secs(10),
            background_retry_max: Duration::from_secs(60),
        }
    }
}

/// A token ready to use, with its precomputed header.
pub(crate) struct CachedToken {
    pub(crate) header: HeaderValue,
    pub(crate) token: AccessToken,
    pub(crate) generation: u64,
    pub(crate) issued_at: u64,
    pub(crate) stale_at: u64,
    pub(crate) expired_at: u64,
    pub(crate) expires_at: u64,
    pub(crate) scope: Option<String>,
    /// `stale_at` and `expired_at` as instants: the hot path compares them without arithmetic.
    stale_instant: tokio::time::Instant,
    expired_instant: tokio::time::Instant,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("generation", &self.generation)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

type Outcome = Result<Arc<CachedToken>, Error>;
type Flight = watch::Receiver<Option<Outcome>>;

/// Waits for a token (a shared acquisition, or one already known). Boxed: only cache misses and
/// renewals build one.
pub(crate) type AcquireFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

#[derive(Default)]
struct FlightState {
    inflight: Option<Flight>,
    negative: Option<(u64, Error)>,
    last_forced: Option<u64>,
    worker_running: bool,
}

/// A service handle's cached view of a slot's current token.
#[derive(Clone)]
pub(crate) struct TokenView(
    arc_swap::Cache<Arc<ArcSwapOption<CachedToken>>, Option<Arc<CachedToken>>>,
);

impl std::fmt::Debug for TokenView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenView").finish_non_exhaustive()
    }
}

/// What a `WWW-Authenticate` challenge told us.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hints {
    pub(crate) resource_metadata: Option<String>,
    pub(crate) scope: Option<String>,
}

impl Hints {
    pub(crate) fn from_challenge(challenge: Option<&crate::challenge::BearerChallenge>) -> Self {
        Self {
            resource_metadata: challenge
                .and_then(|c| c.resource_metadata())
                .map(str::to_owned),
            scope: challenge.and_then(|c| c.scope()).map(str::to_owned),
        }
    }
}

struct StepUp {
    previous: BTreeSet<String>,
    challenged: BTreeSet<String>,
}

/// Why a token is being acquired.
#[derive(Default)]
struct Ask {
    /// The token the resource rejected (a forced renewal).
    rejected: Option<AccessToken>,
    hints: Hints,
    step_up: Option<StepUp>,
}

/// What the hot path should do with a request.
pub(crate) enum Lookup {
    /// Send it with this header; remember the token's generation.
    Hit(HeaderValue, u64),
    /// Wait for a token first.
    Wait(AcquireFuture),
    /// Nothing is known about the server yet: send it without a token and learn from the 401.
    Probe,
}

/// How a slot gets tokens.
// One per layer, never moved on a hot path: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Acquirer {
    /// Discovery (as configured) and a token endpoint.
    OAuth {
        discovery: Discovery,
        tokens: TokenClient,
    },
    /// A token source the user brought, for `resource`.
    Source {
        source: Arc<dyn TokenSource>,
        resource: String,
    },
}

impl std::fmt::Debug for Acquirer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Acquirer::OAuth { discovery, tokens } => f
                .debug_struct("OAuth")
                .field("discovery", discovery)
                .field("credentials", &tokens.credentials)
                .finish_non_exhaustive(),
            Acquirer::Source { resource, .. } => f
                .debug_struct("Source")
                .field("resource", resource)
                .finish_non_exhaustive(),
        }
    }
}

/// One cache entry and everything needed to fill it.
pub(crate) struct Slot {
    acquirer: Acquirer,
    configured_scopes: BTreeSet<String>,
    binding: Mutex<Option<Arc<Binding>>>,
    /// The `resource_metadata` URL that last led to a binding, reused when it expires.
    last_hint: Mutex<Option<String>>,
    /// The scope set being requested; decided at the first acquisition (REFERENCE R34).
    scopes: Mutex<Option<BTreeSet<String>>>,
    key: ArcSwapOption<CacheKey>,
    store: Arc<dyn TokenStore>,
    policy: CachePolicy,
    clock: Clock,
    current: Arc<ArcSwapOption<CachedToken>>,
    refreshing: AtomicBool,
    generation: AtomicU64,
    state: Mutex<FlightState>,
    /// Dropped with the slot, which tells the background worker to stop.
    shutdown: watch::Sender<()>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("key", &self.key.load().as_deref())
            .field("acquirer", &self.acquirer)
            .field("current", &self.current.load().as_deref())
            .finish_non_exhaustive()
    }
}

fn join(scopes: &BTreeSet<String>) -> String {
    scopes
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Slot {
    pub(crate) fn new(
        acquirer: Acquirer,
        configured_scopes: BTreeSet<String>,
        store: Arc<dyn TokenStore>,
        policy: CachePolicy,
    ) -> Self {
        // With the token endpoint configured (or a token source) the key is known now; otherwise
        // after discovery.
        let key = match &acquirer {
            Acquirer::OAuth { discovery, tokens } => match &discovery.config().source {
                Source::TokenEndpoint(raw, _) => {
                    let resource = match &discovery.config().resource_parameter {
                        ResourceParameter::Discovered => discovery.config().resource_url.clone(),
                        ResourceParameter::Replace(value) => value.clone(),
                        ResourceParameter::Omit => String::new(),
                    };
                    Some(Arc::new(CacheKey::new(
                        discovery.config().configured_issuer(raw),
                        tokens.credentials.client_id().unwrap_or_default(),
                        &resource,
                        &join(&configured_scopes),
                    )))
                }
                _ => None,
            },
            Acquirer::Source { resource, .. } => {
                Some(Arc::new(CacheKey::new("token-source", "", resource, "")))
            }
        };
        Self {
            acquirer,
            configured_scopes,
            binding: Mutex::new(None),
            last_hint: Mutex::new(None),
            scopes: Mutex::new(None),
            key: ArcSwapOption::new(key),
            store,
            policy,
            clock: Clock::new(),
            current: Arc::new(ArcSwapOption::empty()),
            refreshing: AtomicBool::new(false),
            generation: AtomicU64::new(1),
            state: Mutex::new(FlightState::default()),
            shutdown: watch::channel(()).0,
        }
    }

    /// The cache key of the token being used, once known.
    pub(crate) fn key(&self) -> Option<CacheKey> {
        self.key.load_full().map(|k| (*k).clone())
    }

    fn lock(&self) -> MutexGuard<'_, FlightState> {
        lock(&self.state)
    }

    /// A per-handle view of the current token: reading it is one atomic load and a pointer
    /// comparison, with no reference-count traffic (see [`Slot::lookup`]).
    pub(crate) fn view(&self) -> TokenView {
        TokenView(arc_swap::Cache::new(Arc::clone(&self.current)))
    }

    /// The hot path: a usable token's header and generation, a future that waits for one, or
    /// (before anything is known about the server) a probe.
    #[inline]
    pub(crate) fn lookup(self: &Arc<Self>, view: &mut TokenView) -> Lookup {
        if let Some(token) = view.0.load() {
            let now = tokio::time::Instant::now();
            if now < token.stale_instant {
                return Lookup::Hit(token.header.clone(), token.generation);
            }
            if now < token.expired_instant {
                let hit = Lookup::Hit(token.header.clone(), token.generation);
                self.refresh_ahead();
                return hit;
            }
        }
        self.miss()
    }

    fn usable(&self, now: u64) -> Option<Arc<CachedToken>> {
        self.current.load_full().filter(|t| now < t.expired_at)
    }

    /// Starts one background refresh of a stale token, unless one is already running.
    fn refresh_ahead(self: &Arc<Self>) {
        if self.refreshing.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        if live(&state.inflight).is_none()
            && let Err(err) = self.start_flight(&mut state, Ask::default())
        {
            tracing::debug!(error = %err, "could not start a refresh ahead of expiry");
        }
    }

    fn miss(self: &Arc<Self>) -> Lookup {
        let mut state = self.lock();
        let now = self.clock.now_ms();
        if let Some(token) = self.usable(now) {
            return Lookup::Hit(token.header.clone(), token.generation);
        }
        if let Some(flight) = live(&state.inflight) {
            return Lookup::Wait(wait(flight));
        }
        if let Some((until, err)) = &state.negative
            && now < *until
        {
            return Lookup::Wait(ready(Err(err.clone())));
        }
        if let Acquirer::OAuth { discovery, .. } = &self.acquirer
            && matches!(discovery.config().source, Source::Discover)
            && lock(&self.binding).is_none()
        {
            return Lookup::Probe;
        }
        Lookup::Wait(self.start_or_fail(&mut state, Ask::default()))
    }

    /// Waits for a usable token: the current one, the acquisition in flight, or a new one
    /// (discovering the server through its well-known URLs if needed).
    pub(crate) fn acquire(self: &Arc<Self>) -> AcquireFuture {
        self.acquire_with(Hints::default())
    }

    /// Like [`acquire`](Self::acquire), with what a challenge said.
    pub(crate) fn acquire_with(self: &Arc<Self>, hints: Hints) -> AcquireFuture {
        let mut state = self.lock();
        let now = self.clock.now_ms();
        if let Some(token) = self.usable(now) {
            return ready(Ok(token));
        }
        if let Some((until, err)) = &state.negative
            && now < *until
        {
            return ready(Err(err.clone()));
        }
        match live(&state.inflight) {
            Some(flight) => wait(flight),
            None => self.start_or_fail(
                &mut state,
                Ask {
                    hints,
                    ..Ask::default()
                },
            ),
        }
    }

    fn start_or_fail(self: &Arc<Self>, state: &mut FlightState, ask: Ask) -> AcquireFuture {
        match self.start_flight(state, ask) {
            Ok(flight) => wait(flight),
            Err(err) => ready(Err(err)),
        }
    }

    /// Whether a renewal forced by the resource is allowed now (one per interval, REFERENCE R65).
    fn may_force(&self, state: &mut FlightState, now: u64) -> bool {
        let interval = self.policy.forced_renewal_interval.as_millis() as u64;
        if state.last_forced.is_some_and(|last| now < last + interval) {
            return false;
        }
        state.last_forced = Some(now);
        true
    }

    /// A resource rejected the token of `rejected_generation`: invalidate it (only if it is still
    /// current), and return a future for its replacement. `None` when renewals are rate-limited
    /// (the caller hands the rejection back).
    pub(crate) fn renew_rejected(
        self: &Arc<Self>,
        rejected_generation: u64,
        hints: Hints,
    ) -> Option<AcquireFuture> {
        let mut state = self.lock();
        let now = self.clock.now_ms();
        let current = self.current.load_full();
        if let Some(token) = &current
            && token.generation != rejected_generation
            && now < token.expired_at
        {
            return Some(ready(Ok(Arc::clone(token))));
        }
        if let Some(flight) = live(&state.inflight) {
            return Some(wait(flight));
        }
        if !self.may_force(&mut state, now) {
            tracing::debug!("token rejected again within the renewal interval; not renewing");
            return None;
        }
        let rejected = current
            .filter(|t| t.generation == rejected_generation)
            .map(|t| {
                self.current.store(None);
                t.token.clone()
            });
        tracing::info!("resource rejected the token; renewing");
        let ask = Ask {
            rejected,
            hints,
            step_up: None,
        };
        Some(self.start_or_fail(&mut state, ask))
    }

    /// The resource answered `insufficient_scope`: ask once for the union of the scopes requested
    /// so far and the challenged ones (REFERENCE R37, SEP-2350). `None` when there is nothing new
    /// to ask for (R38) or renewals are rate-limited.
    pub(crate) fn step_up(self: &Arc<Self>, hints: Hints) -> Option<AcquireFuture> {
        let challenged = scope_set(hints.scope.as_deref()?);
        let mut state = self.lock();
        let mut scopes = lock(&self.scopes);
        let previous = scopes
            .clone()
            .unwrap_or_else(|| self.configured_scopes.clone());
        let union: BTreeSet<String> = previous.union(&challenged).cloned().collect();
        if union == previous {
            tracing::debug!("insufficient_scope for scopes already requested; not stepping up");
            return None;
        }
        if let Some(flight) = live(&state.inflight) {
            return Some(wait(flight));
        }
        if !self.may_force(&mut state, self.clock.now_ms()) {
            return None;
        }
        tracing::info!(scope = %join(&union), "resource asked for more scope; stepping up");
        *scopes = Some(union);
        drop(scopes);
        let ask = Ask {
            rejected: None,
            hints,
            step_up: Some(StepUp {
                previous,
                challenged,
            }),
        };
        Some(self.start_or_fail(&mut state, ask))
    }

    fn start_flight(self: &Arc<Self>, state: &mut FlightState, ask: Ask) -> Result<Flight, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::new(
                ErrorKind::Runtime,
                "no Tokio runtime to run the token request on",
            )
        })?;
        let (tx, rx) = watch::channel(None);
        state.inflight = Some(rx.clone());
        self.refreshing.store(true, Ordering::Release);
        let slot = Arc::clone(self);
        runtime.spawn(async move {
            let outcome = slot.obtain(ask).await;
            slot.complete(&outcome);
            let _ = tx.send(Some(outcome));
        });
        Ok(rx)
    }

    /// The binding to use: the cached one, or a fresh discovery when there is none, it expired,
    /// or a renewal's challenge names protected resource metadata (REFERENCE R16).
    async fn binding(
        &self,
        discovery: &Discovery,
        credentials: &Credentials,
        hints: &Hints,
        forced: bool,
    ) -> Result<Arc<Binding>, Error> {
        let cached = lock(&self.binding).clone();
        let refresh = forced && hints.resource_metadata.is_some();
        if let Some(binding) = &cached
            && !refresh
            && tokio::time::Instant::now() < binding.expires
        {
            return Ok(Arc::clone(binding));
        }
        let hint = hints
            .resource_metadata
            .clone()
            .or_else(|| lock(&self.last_hint).clone());
        match discovery.bind(credentials, hint.as_deref(), refresh).await {
            Ok(binding) => {
                let binding = Arc::new(binding);
                if hints.resource_metadata.is_some() {
                    *lock(&self.last_hint) = hints.resource_metadata.clone();
                }
                *lock(&self.binding) = Some(Arc::clone(&binding));
                Ok(binding)
            }
            Err(err) => match cached {
                // Metadata briefly unreachable: the binding we had is still the best guess.
                Some(previous) if err.is_transient() && !refresh => {
                    tracing::warn!(error = %err, "could not refresh discovery; keeping the previous binding");
                    Ok(previous)
                }
                // The server's metadata now says something we refuse (another authorization
                // server, another resource): forget the old binding, so later acquisitions
                // discover again and fail the same way rather than quietly reusing it
                // (REFERENCE R16, R21).
                _ => {
                    if !err.is_transient() {
                        *lock(&self.binding) = None;
                    }
                    Err(err)
                }
            },
        }
    }

    /// The scope set to request: decided once (configured scopes, else the challenge's, else the
    /// metadata's `scopes_supported`, else none, REFERENCE R34), widened only by step-up.
    fn scopes_for(&self, binding: &Binding, hints: &Hints) -> BTreeSet<String> {
        let mut scopes = lock(&self.scopes);
        scopes
            .get_or_insert_with(|| {
                if !self.configured_scopes.is_empty() {
                    self.configured_scopes.clone()
                } else if let Some(scope) = &hints.scope {
                    scope_set(scope)
                } else {
                    binding.scopes_supported.iter().cloned().collect()
                }
            })
            .clone()
    }

    /// Gets a token from the store (if someone else refreshed it) or from the token endpoint.
    async fn obtain(&self, ask: Ask) -> Outcome {
        let result = self.obtain_inner(&ask).await;
        if result.is_err()
            && let Some(step) = &ask.step_up
        {
            *lock(&self.scopes) = Some(step.previous.clone());
        }
        result
    }

    async fn obtain_inner(&self, ask: &Ask) -> Outcome {
        match &self.acquirer {
            Acquirer::OAuth { discovery, tokens } => {
                self.obtain_oauth(discovery, tokens, ask).await
            }
            Acquirer::Source { source, .. } => self.obtain_sourced(source.as_ref(), ask).await,
        }
    }

    /// Asks the token source; on a rejection, its refresh hook.
    async fn obtain_sourced(&self, source: &dyn TokenSource, ask: &Ask) -> Outcome {
        let started_ms = self.clock.now_ms();
        let fetch = if ask.rejected.is_some() {
            source.refresh()
        } else {
            source.token()
        };
        let sourced = fetch.await.map_err(|e| {
            Error::with_source(ErrorKind::Credentials, "the token source failed", e)
        })?;
        check_token(sourced.token.expose_secret())?;
        let header = bearer_header(&sourced.token)?;
        Ok(self.cached_from_issued(Issued {
            token: sourced.token,
            header,
            expires_in: sourced.expires_in,
            scope: None,
            started_ms,
        }))
    }

    /// Whether the resource's 401 is the caller's answer, as an error: a token source without a
    /// refresh hook has nothing better to offer.
    pub(crate) fn rejection_is_final(&self) -> bool {
        matches!(&self.acquirer, Acquirer::Source { source, .. } if !source.can_refresh())
    }

    async fn obtain_oauth(
        &self,
        discovery: &Discovery,
        tokens: &TokenClient,
        ask: &Ask,
    ) -> Outcome {
        let binding = self
            .binding(
                discovery,
                &tokens.credentials,
                &ask.hints,
                ask.rejected.is_some(),
            )
            .await?;
        let scopes = self.scopes_for(&binding, &ask.hints);
        let scope = join(&scopes);
        let key = CacheKey::new(
            &binding.issuer,
            tokens.credentials.client_id().unwrap_or_default(),
            binding.resource.as_deref().unwrap_or(""),
            &scope,
        );
        self.key.store(Some(Arc::new(key.clone())));
        if let Some(bad) = &ask.rejected {
            if let Err(err) = self.store.invalidate(&key, bad).await {
                tracing::warn!(error = %err, "token store invalidate failed");
            }
        } else if ask.step_up.is_none() {
            match self.store.get(&key).await {
                Ok(Some(stored)) => {
                    if let Some(token) = self.adopt_stored(stored) {
                        return Ok(token);
                    }
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "token store read failed; asking the token endpoint")
                }
            }
        }
        let scope_param = (!scope.is_empty()).then_some(scope.as_str());
        let issued = tokens.request(&binding, scope_param, &self.clock).await?;
        if let Some(step) = &ask.step_up
            && let Some(granted) = &issued.scope
        {
            let granted = scope_set(granted);
            let missing: Vec<&str> = step
                .challenged
                .difference(&granted)
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(Error::new(
                    ErrorKind::InsufficientScope,
                    format!(
                        "the authorization server did not grant {}",
                        escape_for_message(&missing.join(" "))
                    ),
                ));
            }
        }
        let token = self.cached_from_issued(issued);
        let stored = StoredToken {
            access_token: token.token.clone(),
            issued_at: Clock::to_system_time(token.issued_at),
            expires_at: Clock::to_system_time(token.expires_at),
            scope: token.scope.clone(),
        };
        if let Err(err) = self.store.put(&key, stored).await {
            tracing::warn!(error = %err, "token store write failed");
        }
        Ok(token)
    }

    /// A stored token is used only if it is fresh and newer than the one we hold.
    fn adopt_stored(&self, stored: StoredToken) -> Option<Arc<CachedToken>> {
        let issued = Clock::from_system_time(stored.issued_at);
        let expires_at = Clock::from_system_time(stored.expires_at);
        if self
            .current
            .load()
            .as_ref()
            .is_some_and(|t| t.expires_at >= expires_at)
        {
            return None;
        }
        let header = bearer_header(&stored.access_token).ok()?;
        let token = self.build(
            stored.access_token,
            header,
            issued,
            expires_at,
            stored.scope,
        );
        (self.clock.now_ms() < token.stale_at).then(|| Arc::new(token))
    }

    fn cached_from_issued(&self, issued: Issued) -> Arc<CachedToken> {
        let lifetime = issued.expires_in.unwrap_or(self.policy.default_lifetime);
        let expires_at = issued.started_ms + lifetime.as_millis() as u64;
        Arc::new(self.build(
            issued.token,
            issued.header,
            issued.started_ms,
            expires_at,
            issued.scope,
        ))
    }

    fn build(
        &self,
        token: AccessToken,
        header: HeaderValue,
        issued_at: u64,
        expires_at: u64,
        scope: Option<String>,
    ) -> CachedToken {
        let lifetime = expires_at.saturating_sub(issued_at);
        let ahead = (self.policy.refresh_ahead.as_millis() as u64).min(lifetime / 2);
        let jitter = (ahead as f64 * self.policy.refresh_jitter * random_fraction()) as u64;
        let margin = (self.policy.expiry_margin.as_millis() as u64).min(lifetime / 4);
        let stale_at = expires_at.saturating_sub(ahead + jitter);
        let expired_at = expires_at.saturating_sub(margin);
        CachedToken {
            header,
            token,
            generation: self.generation.fetch_add(1, Ordering::Relaxed),
            issued_at,
            stale_at,
            expired_at,
            expires_at,
            scope,
            stale_instant: self.clock.instant_at(stale_at),
            expired_instant: self.clock.instant_at(expired_at),
        }
    }

    fn complete(self: &Arc<Self>, outcome: &Outcome) {
        let mut state = self.lock();
        state.inflight = None;
        self.refreshing.store(false, Ordering::Release);
        match outcome {
            Ok(token) => {
                self.current.store(Some(Arc::clone(token)));
                state.negative = None;
                if !state.worker_running {
                    state.worker_running = true;
                    let weak = Arc::downgrade(self);
                    tokio::spawn(worker(weak, self.shutdown.subscribe(), self.clock));
                }
            }
            Err(err) if !err.is_transient() => {
                let until = self.clock.now_ms() + self.policy.negative_ttl.as_millis() as u64;
                state.negative = Some((until, err.clone()));
            }
            Err(_) => {}
        }
    }
}

/// The in-flight acquisition, unless its task died without answering.
fn live(inflight: &Option<Flight>) -> Option<Flight> {
    inflight
        .as_ref()
        .filter(|rx| rx.has_changed().is_ok())
        .cloned()
}

fn ready(outcome: Outcome) -> AcquireFuture {
    Box::pin(std::future::ready(outcome))
}

fn wait(mut flight: Flight) -> AcquireFuture {
    Box::pin(async move {
        match flight.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or_else(|| Err(stopped())),
            Err(_) => Err(stopped()),
        }
    })
}

fn stopped() -> Error {
    Error::new(
        ErrorKind::Runtime,
        "the token request task stopped before answering",
    )
}

/// Keeps the slot's token fresh without waiting for requests: sleeps until the token turns stale,
/// refreshes it, and on failure retries with backoff while the token is still valid. Exits when
/// the slot is dropped, or when there is no valid token left to keep fresh (the next request then
/// acquires one and restarts it).
async fn worker(slot: Weak<Slot>, mut shutdown: watch::Receiver<()>, clock: Clock) {
    let mut backoff: Option<Duration> = None;
    loop {
        let wake_at = {
            let Some(slot) = slot.upgrade() else { return };
            let mut state = slot.lock();
            let now = clock.now_ms();
            match slot.usable(now) {
                None => {
                    state.worker_running = false;
                    return;
                }
                Some(token) => match backoff {
                    Some(delay) => (now + delay.as_millis() as u64).min(token.expired_at),
                    None => token.stale_at,
                },
            }
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep_until(clock.instant_at(wake_at)) => {}
        }
        let flight = {
            let Some(slot) = slot.upgrade() else { return };
            let now = clock.now_ms();
            if slot
                .current
                .load()
                .as_ref()
                .is_some_and(|t| now < t.stale_at)
            {
                backoff = None;
                continue;
            }
            let mut state = slot.lock();
            match live(&state.inflight) {
                Some(flight) => flight,
                None => match slot.start_flight(&mut state, Ask::default()) {
                    Ok(flight) => flight,
                    Err(_) => return,
                },
            }
        };
        backoff = match wait(flight).await {
            Ok(_) => None,
            Err(err) => {
                let policy = slot.upgrade().map(|s| s.policy).unwrap_or_default();
                let next = backoff.map_or(policy.background_retry_min, |b| {
                    (b * 2).min(policy.background_retry_max)
                });
                tracing::warn!(error = %err, retry_in_s = next.as_secs(), "background token refresh failed");
                let spread = 0.8 + 0.4 * random_fraction();
                Some(next.mul_f64(spread))
            }
        };
    }
}
