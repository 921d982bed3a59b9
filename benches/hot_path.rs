//! The cost of authenticating a request once the token is cached (the steady state).
//!
//! One run measures, on the same machine and the same request:
//! - `bare`: the inner service alone (a `service_fn` that answers at once);
//! - `set_header_floor`: tower-http's `SetRequestHeaderLayer` inserting a static `Authorization`
//!   header, the floor for "add a header";
//! - `cached`: this crate's layer with a cached token (one lock-free load, one header clone, and
//!   a copy of the request kept for a possible 401 replay);
//! - `cached_no_replay`: the same with replay turned off, to show what the copy costs;
//! - `two_threads/*`: the floor and the cached layer hammered from two threads sharing one
//!   cache; the time is per pair of requests, so equal to the one-thread time means linear scaling.
//!
//! Run with `cargo bench --bench hot_path`; compare ratios, not absolute times.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use tower::{Layer, Service, service_fn};
use tower_client_credentials::auth_client::AuthHttpClient;
use tower_client_credentials::retry::NoReplay;
use tower_client_credentials::{ClientCredentialsLayer, Credentials};
use tower_http::set_header::SetRequestHeaderLayer;

const RESOURCE: &str = "https://mcp.example.com/mcp";
const TOKEN: &str =
    "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU";

type Req = Request<Full<Bytes>>;

fn inner() -> impl Service<
    Req,
    Response = Response<()>,
    Error = Infallible,
    Future = Ready<Result<Response<()>, Infallible>>,
> + Clone
+ Send
+ 'static {
    service_fn(|req: Req| {
        black_box(req.headers().get(AUTHORIZATION));
        ready(Ok(Response::new(())))
    })
}

fn request(uri: &Uri) -> Req {
    let mut req = Request::new(Full::new(Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri.clone();
    req
}

/// Sends one request and checks it completed without waiting (the hot path never waits).
fn send<S>(svc: &mut S, uri: &Uri)
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    let response = svc
        .call(request(uri))
        .now_or_never()
        .expect("the hot path waited");
    black_box(response.expect("request failed"));
}

fn layer(runtime: &tokio::runtime::Runtime) -> ClientCredentialsLayer {
    let token_endpoint = AuthHttpClient::new(service_fn(|_req: Req| async {
        let body =
            format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":86400}}"#);
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    }));
    let layer = ClientCredentialsLayer::builder(
        RESOURCE,
        Credentials::client_secret_basic("bench", "secret").unwrap(),
    )
    .unwrap()
    .token_endpoint("https://auth.example.com/token")
    .unwrap()
    .http_client(token_endpoint)
    .build()
    .unwrap();
    runtime.block_on(layer.warm_up()).unwrap();
    layer
}

fn floor_layer() -> SetRequestHeaderLayer<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap();
    value.set_sensitive(true);
    SetRequestHeaderLayer::overriding(AUTHORIZATION, value)
}

/// Runs `iters` requests on each of two threads at once, each with its own clone of the service.
fn two_threads<S>(svc: &S, uri: &Uri, iters: u64) -> Duration
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            // Each thread parses its own URI: a shared one would make both threads contend on its
            // refcount, in every variant alike.
            let uri: Uri = uri.to_string().parse().unwrap();
            let (mut svc, barrier) = (svc.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    send(&mut svc, &uri);
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for handle in handles {
        handle.join().unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let uri: Uri = RESOURCE.parse().unwrap();
    let layer = layer(&runtime);

    let mut group = c.benchmark_group("hot_path");
    let mut bare = inner();
    group.bench_function("bare", |b| b.iter(|| send(&mut bare, &uri)));
    let mut floor = floor_layer().layer(inner());
    group.bench_function("set_header_floor", |b| b.iter(|| send(&mut floor, &uri)));
    let mut cached = layer.layer(inner());
    group.bench_function("cached", |b| b.iter(|| send(&mut cached, &uri)));
    let mut no_replay = layer.clone().replay_bodies(NoReplay).layer(inner());
    group.bench_function("cached_no_replay", |b| {
        b.iter(|| send(&mut no_replay, &uri))
    });
    group.finish();

    let mut group = c.benchmark_group("two_threads");
    let floor = floor_layer().layer(inner());
    group.bench_function("set_header_floor", |b| {
        b.iter_custom(|iters| two_threads(&floor, &uri, iters))
    });
    let cached = layer.layer(inner());
    group.bench_function("cached", |b| {
        b.iter_custom(|iters| two_threads(&cached, &uri, iters))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
