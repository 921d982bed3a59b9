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
use crate::error::{Error, ErrorKind};
use crate::secret::AccessToken;
use crate::token::{Issued, TokenEndpoint, bearer_header};

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

/// One cache entry and everything needed to fill it.
pub(crate) struct Slot {
    key: CacheKey,
    scope_param: Option<String>,
    endpoint: TokenEndpoint,
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
            .field("key", &self.key)
            .field("current", &self.current.load().as_deref())
            .finish_non_exhaustive()
    }
}

impl Slot {
    pub(crate) fn new(
        key: CacheKey,
        endpoint: TokenEndpoint,
        store: Arc<dyn TokenStore>,
        policy: CachePolicy,
    ) -> Self {
        let scope_param = (!key.scope().is_empty()).then(|| key.scope().to_owned());
        Self {
            key,
            scope_param,
            endpoint,
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

    pub(crate) fn key(&self) -> &CacheKey {
        &self.key
    }

    fn lock(&self) -> MutexGuard<'_, FlightState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A per-handle view of the current token: reading it is one atomic load and a pointer
    /// comparison, with no reference-count traffic (see [`Slot::lookup`]).
    pub(crate) fn view(&self) -> TokenView {
        TokenView(arc_swap::Cache::new(Arc::clone(&self.current)))
    }

    /// The hot path: a usable token's header and generation now, or a future that waits for one.
    /// One atomic load through the caller's view and one `HeaderValue` clone.
    #[inline]
    pub(crate) fn lookup(
        self: &Arc<Self>,
        view: &mut TokenView,
    ) -> Result<(HeaderValue, u64), AcquireFuture> {
        if let Some(token) = view.0.load() {
            let now = tokio::time::Instant::now();
            if now < token.stale_instant {
                return Ok((token.header.clone(), token.generation));
            }
            if now < token.expired_instant {
                let hit = (token.header.clone(), token.generation);
                self.refresh_ahead();
                return Ok(hit);
            }
        }
        Err(self.acquire())
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
            && let Err(err) = self.start_flight(&mut state, None)
        {
            tracing::debug!(error = %err, "could not start a refresh ahead of expiry");
        }
    }

    /// Waits for a usable token: the current one, the acquisition in flight, or a new one.
    pub(crate) fn acquire(self: &Arc<Self>) -> AcquireFuture {
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
        let flight = match live(&state.inflight) {
            Some(flight) => flight,
            None => match self.start_flight(&mut state, None) {
                Ok(flight) => flight,
                Err(err) => return ready(Err(err)),
            },
        };
        drop(state);
        wait(flight)
    }

    /// A resource rejected `rejected`: invalidate it (only if it is still current), and return a
    /// future for its replacement. `None` when renewals are rate-limited (the caller hands the
    /// rejection back).
    pub(crate) fn renew_rejected(
        self: &Arc<Self>,
        rejected_generation: u64,
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
        if state
            .last_forced
            .is_some_and(|last| now < last + self.policy.forced_renewal_interval.as_millis() as u64)
        {
            tracing::debug!(key = %self.key, "token rejected again within the renewal interval; not renewing");
            return None;
        }
        state.last_forced = Some(now);
        let rejected = current
            .filter(|t| t.generation == rejected_generation)
            .map(|t| {
                self.current.store(None);
                t.token.clone()
            });
        tracing::info!(client_id = %self.key.client_id(), "resource rejected the token; renewing");
        Some(match self.start_flight(&mut state, rejected) {
            Ok(flight) => wait(flight),
            Err(err) => ready(Err(err)),
        })
    }

    fn start_flight(
        self: &Arc<Self>,
        state: &mut FlightState,
        rejected: Option<AccessToken>,
    ) -> Result<Flight, Error> {
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
            let outcome = slot.obtain(rejected).await;
            slot.complete(&outcome);
            let _ = tx.send(Some(outcome));
        });
        Ok(rx)
    }

    /// Gets a token from the store (if someone else refreshed it) or from the token endpoint.
    async fn obtain(&self, rejected: Option<AccessToken>) -> Outcome {
        if let Some(bad) = &rejected {
            if let Err(err) = self.store.invalidate(&self.key, bad).await {
                tracing::warn!(error = %err, "token store invalidate failed");
            }
        } else {
            match self.store.get(&self.key).await {
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
        let issued = self
            .endpoint
            .request(self.scope_param.as_deref(), &self.clock)
            .await?;
        let token = self.cached_from_issued(issued);
        let stored = StoredToken {
            access_token: token.token.clone(),
            issued_at: Clock::to_system_time(token.issued_at),
            expires_at: Clock::to_system_time(token.expires_at),
            scope: token.scope.clone(),
        };
        if let Err(err) = self.store.put(&self.key, stored).await {
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
                None => match slot.start_flight(&mut state, None) {
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
