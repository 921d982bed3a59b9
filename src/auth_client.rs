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
    /// unless they are loopback and explicitly allowed.
    pub fn hyper() -> Self {
        use hyper_util::client::legacy::Client;
        use hyper_util::rt::TokioExecutor;

        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        #[cfg(feature = "rustls")]
        {
            let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let builder = hyper_rustls::HttpsConnectorBuilder::new();
            match builder.with_provider_and_webpki_roots(provider) {
                Ok(builder) => {
                    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
                    Self::new(Client::builder(TokioExecutor::new()).build(connector))
                }
                // The aws-lc-rs provider always supports the safe default protocol versions; should
                // that ever change, fall back to plain HTTP, which configuration limits to loopback.
                Err(err) => {
                    tracing::error!(error = %err, "rustls setup failed; HTTPS unavailable");
                    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
                    http.set_nodelay(true);
                    Self::new(Client::builder(TokioExecutor::new()).build(http))
                }
            }
        }
        #[cfg(not(feature = "rustls"))]
        {
            Self::new(Client::builder(TokioExecutor::new()).build(http))
        }
    }

    pub(crate) async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<AuthResponseBody>, BoxError> {
        self.inner.clone().oneshot(req).await
    }
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
