//! Token cache behaviour over time, on paused Tokio time with an in-process authorization server
//! (a `service_fn`, no sockets), so every count is exact. Guards issue #2 (core): refresh ahead with
//! no waits, background refresh and its shutdown, single flight, retries, the negative cache, and
//! bounded 401 renewals.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;
use tower::{Service, ServiceExt as _, service_fn};
use tower_client_credentials::auth_client::AuthHttpClient;
use tower_client_credentials::{
    BoxError, ClientCredentialsBuilder, ClientCredentialsLayer, Credentials, Error, ErrorKind,
};

const RESOURCE: &str = "https://mcp.example.com/mcp";

/// An authorization server living in memory: answers from a script first, then issues tokens.
#[derive(Default)]
struct MockAs {
    requests: AtomicUsize,
    lifetime: Mutex<Option<u64>>,
    script: Mutex<VecDeque<(u16, Vec<(&'static str, &'static str)>, String)>>,
    issued: Mutex<Vec<(String, Instant)>>,
    delay: Mutex<Duration>,
}

impl MockAs {
    fn new(lifetime: Option<u64>) -> Arc<Self> {
        let mock = Arc::new(Self::default());
        *mock.lifetime.lock().unwrap() = lifetime;
        mock
    }

    fn then(&self, status: u16, headers: Vec<(&'static str, &'static str)>, body: &str) {
        self.script
            .lock()
            .unwrap()
            .push_back((status, headers, body.to_owned()));
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn valid(&self, header: Option<&str>) -> bool {
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let now = Instant::now();
        self.issued
            .lock()
            .unwrap()
            .iter()
            .any(|(t, exp)| t == token && now < *exp)
    }

    fn client(self: &Arc<Self>) -> AuthHttpClient {
        let mock = Arc::clone(self);
        AuthHttpClient::new(service_fn(move |_req: Request<Full<Bytes>>| {
            let mock = Arc::clone(&mock);
            async move {
                let n = mock.requests.fetch_add(1, Ordering::SeqCst) + 1;
                let delay = *mock.delay.lock().unwrap();
                tokio::time::sleep(delay).await;
                let scripted = mock.script.lock().unwrap().pop_front();
                let (status, headers, body) = scripted.unwrap_or_else(|| {
                    let token = format!("token-{n}");
                    let lifetime = *mock.lifetime.lock().unwrap();
                    let expires = Instant::now() + Duration::from_secs(lifetime.unwrap_or(300));
                    mock.issued.lock().unwrap().push((token.clone(), expires));
                    let body = match lifetime {
                        Some(l) => format!(
                            r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{l}}}"#
                        ),
                        None => format!(r#"{{"access_token":"{token}","token_type":"Bearer"}}"#),
                    };
                    (200, vec![], body)
                });
                let mut res = Response::builder().status(status);
                for (k, v) in headers {
                    res = res.header(k, v);
                }
                Ok::<_, Infallible>(res.body(Full::new(Bytes::from(body))).unwrap())
            }
        }))
    }
}

fn builder(mock: &Arc<MockAs>) -> ClientCredentialsBuilder {
    ClientCredentialsLayer::builder(
        RESOURCE,
        Credentials::client_secret_basic("svc", "hunter2").unwrap(),
    )
    .unwrap()
    .token_endpoint("https://auth.example.com/token")
    .unwrap()
    .http_client(mock.client())
}

/// A resource that accepts only tokens the mock issued and that have not expired (by Tokio time).
fn resource(
    mock: &Arc<MockAs>,
    unauthorized: Arc<AtomicUsize>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    let mock = Arc::clone(mock);
    service_fn(move |req: Request<Full<Bytes>>| {
        let ok = mock.valid(
            req.headers()
                .get("authorization")
                .and_then(|h| h.to_str().ok()),
        );
        if !ok {
            unauthorized.fetch_add(1, Ordering::SeqCst);
        }
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        std::future::ready(Ok(Response::builder()
            .status(status)
            .body(Full::new(Bytes::new()))
            .unwrap()))
    })
}

fn request() -> Request<Full<Bytes>> {
    Request::post(RESOURCE)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

fn auth_error(err: BoxError) -> Error {
    *err.downcast::<Error>()
        .expect("a tower_client_credentials::Error")
}

#[tokio::test(start_paused = true)]
async fn steady_stream_never_waits_and_never_sees_401() {
    let mock = MockAs::new(Some(60));
    let layer = builder(&mock).build().unwrap();
    let unauthorized = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer_service(resource(&mock, Arc::clone(&unauthorized)));

    layer.warm_up().await.unwrap();
    assert_eq!(mock.count(), 1);

    // Five token lifetimes, a request every 100 ms: each must complete on its first poll, which
    // is only possible if the token was already in the cache (no wait on the token endpoint).
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(300) {
        svc.ready().await.unwrap();
        let response = svc.call(request()).now_or_never();
        let response = response
            .expect("a request waited for the token endpoint")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sent, 3000);
    assert_eq!(unauthorized.load(Ordering::SeqCst), 0);
    // A 60 s token is refreshed 30-36 s before expiry: one request per 24-30 s, no more.
    let tokens = mock.count();
    assert!(
        (10..=14).contains(&tokens),
        "{tokens} token requests in 300 s"
    );
}

trait LayerExt {
    fn layer_service<S>(&self, inner: S) -> tower_client_credentials::ClientCredentials<S>;
}

impl LayerExt for ClientCredentialsLayer {
    fn layer_service<S>(&self, inner: S) -> tower_client_credentials::ClientCredentials<S> {
        tower::Layer::layer(self, inner)
    }
}

#[tokio::test(start_paused = true)]
async fn background_worker_refreshes_while_idle_and_stops_with_the_last_handle() {
    let mock = MockAs::new(Some(100));
    let layer = builder(&mock).build().unwrap();
    let svc = layer.layer_service(resource(&mock, Arc::new(AtomicUsize::new(0))));
    layer.warm_up().await.unwrap();
    assert_eq!(mock.count(), 1);

    // No request at all for 1000 s: the worker still refreshes ahead of each expiry.
    tokio::time::sleep(Duration::from_secs(1000)).await;
    let refreshed = mock.count();
    assert!(
        refreshed >= 11,
        "only {refreshed} token requests while idle"
    );

    // The token in the cache is valid right now.
    let mut svc2 = svc.clone();
    let response = svc2
        .ready()
        .await
        .unwrap()
        .call(request())
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    drop((layer, svc, svc2));
    tokio::time::sleep(Duration::from_secs(1000)).await;
    assert_eq!(
        mock.count(),
        refreshed,
        "the worker kept refreshing after every handle was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn missing_expires_in_uses_the_default_lifetime() {
    let mock = MockAs::new(None);
    let layer = builder(&mock)
        .default_lifetime(Duration::from_secs(120))
        .unwrap()
        .build()
        .unwrap();
    layer.warm_up().await.unwrap();
    // 120 s lifetime: stale 60-72 s before expiry, so the second request comes 48-60 s in.
    tokio::time::sleep(Duration::from_secs(47)).await;
    assert_eq!(mock.count(), 1);
    tokio::time::sleep(Duration::from_secs(14)).await;
    assert_eq!(mock.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn cold_start_makes_one_token_request_for_many_callers() {
    let mock = MockAs::new(Some(3600));
    let layer = builder(&mock).build().unwrap();
    let svc = layer.layer_service(resource(&mock, Arc::new(AtomicUsize::new(0))));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            svc.oneshot(request()).await.map(|r| r.status())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(mock.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_caller_does_not_cancel_the_acquisition() {
    let mock = MockAs::new(Some(3600));
    let layer = builder(&mock).build().unwrap();
    let mut svc = layer.layer_service(resource(&mock, Arc::new(AtomicUsize::new(0))));
    svc.ready().await.unwrap();
    let first = svc.call(request());
    assert!(
        first.now_or_never().is_none(),
        "the cold request must wait for a token"
    );
    // The caller gave up; the token request goes on.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(mock.count(), 1);
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(request())
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_backoff_honouring_retry_after() {
    let mock = MockAs::new(Some(3600));
    mock.then(503, vec![("retry-after", "3")], "");
    mock.then(500, vec![], r#"{"error":"server_error"}"#);
    let layer = builder(&mock).build().unwrap();
    let started = Instant::now();
    layer.warm_up().await.unwrap();
    assert_eq!(mock.count(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "Retry-After ignored"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_stop_after_the_configured_attempts() {
    let mock = MockAs::new(Some(3600));
    for _ in 0..5 {
        mock.then(503, vec![], "");
    }
    let layer = builder(&mock)
        .token_request_attempts(2)
        .unwrap()
        .build()
        .unwrap();
    let err = layer.warm_up().await.unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(mock.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_are_not_retried_and_are_remembered_briefly() {
    let mock = MockAs::new(Some(3600));
    mock.then(
        401,
        vec![],
        r#"{"error":"invalid_client","error_description":"unknown client"}"#,
    );
    let layer = builder(&mock).build().unwrap();
    let mut svc = layer.layer_service(resource(&mock, Arc::new(AtomicUsize::new(0))));

    let err = auth_error(
        svc.ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.kind(), ErrorKind::TokenEndpoint);
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert_eq!(mock.count(), 1);

    // Within the negative-cache window: the same error, no new request.
    let err = auth_error(
        svc.ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert_eq!(mock.count(), 1);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_resource_that_always_says_401_gets_one_replay_and_bounded_renewals() {
    let mock = MockAs::new(Some(3600));
    let layer = builder(&mock).build().unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&attempts);
    let always_401 = service_fn(move |_req: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok::<_, Infallible>(
            Response::builder()
                .status(401)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ))
    });
    let svc = layer.layer_service(always_401);

    let response = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "one replay, no loop");
    assert_eq!(mock.count(), 2, "one renewal");

    // Within the renewal interval: the 401 comes back without another token request.
    let response = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(mock.count(), 2);

    // A minute of requests every 100 ms causes at most one renewal per 5 s.
    for _ in 0..600 {
        let _ = svc.clone().oneshot(request()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let renewals = mock.count() - 2;
    assert!(renewals <= 13, "{renewals} renewals in 60 s");
}

#[tokio::test(start_paused = true)]
async fn concurrent_401s_for_one_token_cause_one_renewal() {
    let mock = MockAs::new(Some(3600));
    let layer = builder(&mock).build().unwrap();
    let unauthorized = Arc::new(AtomicUsize::new(0));
    // The resource checks the token on arrival and answers 10 ms later, so all 50 requests are
    // in flight with the first token before any 401 comes back.
    let checker = Arc::clone(&mock);
    let refused = Arc::clone(&unauthorized);
    let slow = service_fn(move |req: Request<Full<Bytes>>| {
        let ok = checker.valid(
            req.headers()
                .get("authorization")
                .and_then(|h| h.to_str().ok()),
        );
        if !ok {
            refused.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, Infallible>(
                Response::builder()
                    .status(if ok { 200 } else { 401 })
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
        }
    });
    let svc = layer.layer_service(slow);
    layer.warm_up().await.unwrap();
    // Revoke: the resource no longer accepts the first token.
    mock.issued.lock().unwrap().clear();

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            svc.oneshot(request()).await.map(|r| r.status())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(mock.count(), 2, "50 rejections of one token, one renewal");
    assert_eq!(unauthorized.load(Ordering::SeqCst), 50);
}

#[tokio::test(start_paused = true)]
async fn an_unreplayable_body_gets_its_401_back_and_the_next_request_the_new_token() {
    struct Streaming;
    impl http_body::Body for Streaming {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            std::task::Poll::Ready(None)
        }
    }
    let mock = MockAs::new(Some(3600));
    let layer = builder(&mock).build().unwrap();
    layer.warm_up().await.unwrap();
    mock.issued.lock().unwrap().clear();
    let checker = Arc::clone(&mock);
    let inner = service_fn(move |req: Request<Streaming>| {
        let ok = checker.valid(
            req.headers()
                .get("authorization")
                .and_then(|h| h.to_str().ok()),
        );
        std::future::ready(Ok::<_, Infallible>(
            Response::builder()
                .status(if ok { 200 } else { 401 })
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ))
    });
    let svc = layer.layer_service(inner);
    let stream = || Request::post(RESOURCE).body(Streaming).unwrap();
    assert_eq!(
        svc.clone().oneshot(stream()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        svc.clone().oneshot(stream()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(mock.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn expiry_counts_from_the_start_of_the_token_request() {
    // Issue #2: a 60 s token whose response took 8 s to arrive has 52 s left, not 60. Refresh
    // ahead is min(5 min, 30 s) plus up to 20 % jitter, so the next token request starts 24-30 s
    // after the first one *started*; counted from the response it would start 32-38 s after.
    let mock = MockAs::new(Some(60));
    *mock.delay.lock().unwrap() = Duration::from_secs(8);
    let layer = builder(&mock).build().unwrap();
    let started = Instant::now();
    layer.warm_up().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(8));
    tokio::time::sleep_until(started + Duration::from_secs(23)).await;
    assert_eq!(mock.count(), 1, "refreshed too early");
    tokio::time::sleep_until(started + Duration::from_secs(31)).await;
    assert_eq!(
        mock.count(),
        2,
        "expiry was counted from the response, not the request start"
    );
}
