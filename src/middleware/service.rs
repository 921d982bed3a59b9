//! The [`ClientCredentials`] service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower::Service;

use super::future::ResponseFuture;
use super::layer::{ClientCredentialsLayer, Shared};
use crate::cache::{CacheKey, Lookup, TokenView};
use crate::error::{BoxError, Error};
use crate::retry::{self, CloneBody, DefaultReplay};

/// Middleware that adds `Authorization: Bearer <token>` to every request bound for the protected
/// resource, getting and renewing the token with the OAuth 2.0 client credentials grant.
///
/// Clones share one token cache. See the [crate docs](crate) for an example.
pub struct ClientCredentials<S, R = DefaultReplay> {
    inner: S,
    shared: Arc<Shared>,
    view: TokenView,
    replay: R,
}

impl<S> ClientCredentials<S> {
    /// Wraps `inner` with the configuration of `layer`; the service shares the layer's cache.
    pub fn new(inner: S, layer: &ClientCredentialsLayer) -> Self {
        Self::from_parts(inner, Arc::clone(layer.shared()), DefaultReplay)
    }

    /// Starts building a [`ClientCredentialsLayer`]; the same as
    /// [`ClientCredentialsLayer::builder`].
    pub fn layer(
        resource: impl Into<String>,
        credentials: crate::Credentials,
    ) -> Result<crate::ClientCredentialsBuilder, crate::ConfigError> {
        ClientCredentialsLayer::builder(resource, credentials)
    }
}

impl<S, R> ClientCredentials<S, R> {
    pub(crate) fn from_parts(inner: S, shared: Arc<Shared>, replay: R) -> Self {
        let view = shared.slot.view();
        Self {
            inner,
            shared,
            view,
            replay,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The cache key of this service's token, once the authorization server is known.
    pub fn cache_key(&self) -> Option<CacheKey> {
        self.shared.slot.key()
    }

    /// Gets a token now, so the first request does not wait for the token endpoint.
    ///
    /// # Errors
    ///
    /// The token request's [`Error`].
    pub async fn warm_up(&self) -> Result<(), Error> {
        self.shared.slot.acquire().await.map(|_| ())
    }
}

impl<S: Clone, R: Clone> Clone for ClientCredentials<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            view: self.view.clone(),
            replay: self.replay.clone(),
        }
    }
}

impl<S: std::fmt::Debug, R> std::fmt::Debug for ClientCredentials<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .field("replay", &retry::TypeName::of(&self.replay))
            .finish()
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for ClientCredentials<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    R: CloneBody<ReqBody>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The clone goes into `self`; the service that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !self.shared.target.matches(req.uri()) {
            return ResponseFuture::passthrough(inner.call(req));
        }
        let slot = Arc::clone(&self.shared.slot);
        match slot.lookup(&mut self.view) {
            Lookup::Hit(header, generation) => {
                req.headers_mut().insert(AUTHORIZATION, header);
                let replay =
                    retry::clone_request(&self.replay, &req).map(|copy| (self.inner.clone(), copy));
                ResponseFuture::call(inner.call(req), Some(generation), replay, slot)
            }
            Lookup::Probe => {
                // Nothing known about the server yet: its 401 names the metadata to discover.
                let replay =
                    retry::clone_request(&self.replay, &req).map(|copy| (self.inner.clone(), copy));
                ResponseFuture::call(inner.call(req), None, replay, slot)
            }
            Lookup::Wait(token) => {
                let replay =
                    retry::clone_request(&self.replay, &req).map(|copy| (self.inner.clone(), copy));
                ResponseFuture::acquire(token, inner, req, replay, slot)
            }
        }
    }
}
