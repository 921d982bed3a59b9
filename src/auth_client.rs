//! The HTTP client that carries authorization traffic (token requests, and metadata requests
//! once discovery lands), kept apart from the service being authenticated.
//!
//! It never follows redirects (a token request answered with a redirect is an error) and never
//! carries the resource's bearer token. By default it is a hyper-util client; with the default
//! `rustls` feature it speaks HTTPS with the webpki roots and the `aws-lc-rs` provider. Hand in your own
//! with [`AuthHttpClient::new`] for proxies, custom TLS or tests.

use std::fmt;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt as _};

use crate::error::BoxError;

/// The response body type [`AuthHttpClient`] hands back.
pub type AuthResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A type-erased HTTP client for requests to the authorization server.
///
/// Any `tower::Service<http::Request<Full<Bytes>>>` that answers with an `http::Response` of some
/// body works.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower::service_fn;
/// use tower_client_credentials::auth_client::AuthHttpClient;
///
/// let client = AuthHttpClient::new(service_fn(|_req: http::Request<Full<Bytes>>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"{}"))))
/// }));
/// # let _ = client;
/// ```
#[derive(Clone)]
pub struct AuthHttpClient {
    inner: BoxCloneSyncService<Request<Full<Bytes>>, Response<AuthResponseBody>, BoxError>,
}

impl AuthHttpClient {
    /// Wraps any HTTP service.
    pub fn new<S, ResBody>(service: S) -> Self
    where
        S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let service = service
            .map_response(|res: Response<ResBody>| {
                res.map(|body| body.map_err(Into::into).boxed_unsync())
            })
            .map_err(Into::into);
        Self {
            inner: BoxCloneSyncService::new(service),
        }
    }

    /// The default client: hyper-util's pooled client over HTTP/1.1, with HTTPS through rustls when
    /// the `rustls` feature is on (the default). Plain `http` URLs are refused by configuration
    /// unless they are loopback and explicitly allowed. Without the `rustls` feature, `https` URLs
    /// fail to connect (nothing is ever sent unencrypted to an `https` URL).
    pub fn hyper() -> Self {
        Self::new(hyper_service())
    }

    pub(crate) async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<AuthResponseBody>, BoxError> {
        self.inner.clone().oneshot(req).await
    }
}

/// The hyper-util client both the authorization traffic and the `rmcp` transport use: pooled,
/// HTTP/1.1, TLS through rustls (aws-lc-rs provider, webpki roots) with the `rustls` feature.
pub(crate) type HyperService =
    BoxCloneSyncService<Request<Full<Bytes>>, Response<Incoming>, BoxError>;

/// Builds the [`HyperService`].
pub(crate) fn hyper_service() -> HyperService {
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    fn boxed<C>(client: Client<C, Full<Bytes>>) -> HyperService
    where
        C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    {
        BoxCloneSyncService::new(client.map_err(BoxError::from))
    }

    #[cfg(feature = "rustls")]
    {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        // The TLS connector handles `https` itself and hands the TCP connector only hosts.
        http.enforce_http(false);
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        match hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_webpki_roots(provider) {
            Ok(builder) => {
                let connector = builder.https_or_http().enable_http1().wrap_connector(http);
                return boxed(Client::builder(TokioExecutor::new()).build(connector));
            }
            // The aws-lc-rs provider always supports the safe default protocol versions; should
            // that ever change, fall through to plain HTTP, which refuses `https` URLs.
            Err(err) => tracing::error!(error = %err, "rustls setup failed; HTTPS unavailable"),
        }
    }
    // Without TLS, `enforce_http` stays on: an `https` URL fails to connect instead of going out
    // over plain TCP with the credentials in clear text.
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    boxed(Client::builder(TokioExecutor::new()).build(http))
}

impl Default for AuthHttpClient {
    fn default() -> Self {
        Self::hyper()
    }
}

impl fmt::Debug for AuthHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthHttpClient").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without TLS support an `https` URL must fail to connect rather than go out in clear text.
    #[cfg(not(feature = "rustls"))]
    #[tokio::test]
    async fn without_tls_https_urls_are_not_sent_in_clear_text() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });
        let mut req = Request::new(Full::new(Bytes::from_static(b"client_secret=s3cr3t")));
        *req.uri_mut() = format!("https://127.0.0.1:{port}/token").parse().unwrap();
        assert!(AuthHttpClient::hyper().send(req).await.is_err());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !accepted.is_finished(),
            "a plain TCP connection was made to an https URL"
        );
        accepted.abort();
    }

    /// With TLS, an `https` URL gets a TLS handshake, never the request bytes in clear text.
    #[cfg(feature = "rustls")]
    #[tokio::test]
    async fn https_urls_get_tls_not_clear_text() {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 256];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            buf.truncate(n);
            buf
        });
        let mut req = Request::new(Full::new(Bytes::from_static(b"client_secret=s3cr3t")));
        *req.uri_mut() = format!("https://127.0.0.1:{port}/token").parse().unwrap();
        let client = AuthHttpClient::hyper();
        // The handshake fails (no TLS server here); only what reached the socket matters.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), client.send(req)).await;
        let first_bytes = received.await.unwrap();
        assert_eq!(
            first_bytes.first(),
            Some(&0x16),
            "expected a TLS handshake record"
        );
        assert!(!first_bytes.windows(6).any(|w| w == b"s3cr3t"));
    }
}
