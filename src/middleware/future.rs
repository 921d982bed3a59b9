//! The response future of [`ClientCredentials`](crate::ClientCredentials).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

use crate::cache::{AcquireFuture, Slot};
use crate::error::{BoxError, Error, ErrorKind};
use crate::retry::{self, Refusal};

pin_project! {
    /// Response future for [`ClientCredentials`](crate::ClientCredentials).
    ///
    /// On a cache hit it is the inner service's future plus a status check: nothing is boxed.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future, S, B>,
        slot: Option<Arc<Slot>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B> {
        // Not for the protected resource: the inner future, untouched.
        Passthrough { #[pin] fut: F },
        // Waiting for the shared token acquisition, holding the (ready) inner service. Boxed, like
        // every state off the hot path, to keep the future small.
        Acquire { waiting: Option<Box<Waiting<S, B>>> },
        // The request is in flight: with the token of `generation`, or with none (a probe).
        Call {
            #[pin] fut: F,
            generation: Option<u64>,
            replay: Option<(S, Request<B>)>,
        },
        // The token was rejected: waiting for its replacement.
        Renew { token: AcquireFuture, replay: Option<(S, Request<B>)> },
        // Replaying once with the new token.
        Replay { replay: Option<(S, Request<B>)> },
        Replayed { #[pin] fut: F },
    }
}

struct Waiting<S, B> {
    token: AcquireFuture,
    svc: S,
    req: Request<B>,
    replay: Option<(S, Request<B>)>,
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn passthrough(fut: S::Future) -> Self {
        Self {
            state: State::Passthrough { fut },
            slot: None,
        }
    }

    pub(crate) fn call(
        fut: S::Future,
        generation: Option<u64>,
        replay: Option<(S, Request<B>)>,
        slot: Arc<Slot>,
    ) -> Self {
        Self {
            state: State::Call {
                fut,
                generation,
                replay,
            },
            slot: Some(slot),
        }
    }

    pub(crate) fn acquire(
        token: AcquireFuture,
        svc: S,
        req: Request<B>,
        replay: Option<(S, Request<B>)>,
        slot: Arc<Slot>,
    ) -> Self {
        Self {
            state: State::Acquire {
                waiting: Some(Box::new(Waiting {
                    token,
                    svc,
                    req,
                    replay,
                })),
            },
            slot: Some(slot),
        }
    }
}

fn polled_after_completion() -> BoxError {
    Box::new(Error::new(
        ErrorKind::Runtime,
        "response future polled after completion",
    ))
}

fn set_authorization<B>(req: &mut Request<B>, header: &HeaderValue) {
    req.headers_mut().insert(AUTHORIZATION, header.clone());
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Passthrough { fut } => return fut.poll(cx).map_err(Into::into),
                StateProj::Acquire { waiting } => {
                    let Some(state) = waiting.as_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let token = ready!(state.token.as_mut().poll(cx))?;
                    let Some(state) = waiting.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let Waiting {
                        mut svc,
                        mut req,
                        mut replay,
                        ..
                    } = *state;
                    set_authorization(&mut req, &token.header);
                    if let Some(copy) = &mut replay {
                        set_authorization(&mut copy.1, &token.header);
                    }
                    let fut = svc.call(req);
                    this.state.set(State::Call {
                        fut,
                        generation: Some(token.generation),
                        replay,
                    });
                }
                StateProj::Call {
                    fut,
                    generation,
                    replay,
                } => {
                    let response = ready!(fut.poll(cx)).map_err(Into::into)?;
                    let refusal = retry::classify(&response);
                    let Some(slot) = this.slot.as_ref() else {
                        return Poll::Ready(Ok(response));
                    };
                    // Each path below starts (or joins) a token acquisition on its own task, so
                    // even a request that cannot be replayed leaves a usable token behind.
                    let token = match (refusal, *generation) {
                        (Refusal::None, _) => return Poll::Ready(Ok(response)),
                        (
                            Refusal::Unauthorized(hints) | Refusal::InsufficientScope(hints),
                            None,
                        ) => Some(slot.acquire_with(hints)),
                        (Refusal::Unauthorized(_), Some(_)) if slot.rejection_is_final() => {
                            return Poll::Ready(Err(Box::new(Error::new(
                                ErrorKind::Unauthorized,
                                "the resource refused the token source's token (HTTP 401) and the source has no refresh hook",
                            ))));
                        }
                        (Refusal::Unauthorized(hints), Some(generation)) => {
                            slot.renew_rejected(generation, hints)
                        }
                        (Refusal::InsufficientScope(hints), Some(_)) => slot.step_up(hints),
                    };
                    match (replay.take(), token) {
                        (Some(replay), Some(token)) => {
                            tracing::debug!(
                                status = response.status().as_u16(),
                                "request refused; replaying once with a new token"
                            );
                            this.state.set(State::Renew {
                                token,
                                replay: Some(replay),
                            });
                        }
                        _ => return Poll::Ready(Ok(response)),
                    }
                }
                StateProj::Renew { token, replay } => {
                    let token = ready!(token.as_mut().poll(cx))?;
                    let mut replay = replay.take();
                    if let Some(copy) = &mut replay {
                        set_authorization(&mut copy.1, &token.header);
                    }
                    this.state.set(State::Replay { replay });
                }
                StateProj::Replay { replay } => {
                    let Some(copy) = replay.as_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    ready!(copy.0.poll_ready(cx)).map_err(Into::into)?;
                    let Some(copy) = replay.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let (mut svc, req) = copy;
                    let fut = svc.call(req);
                    this.state.set(State::Replayed { fut });
                }
                // The replay's answer goes back as it is, even a second 401: never a loop.
                StateProj::Replayed { fut } => return fut.poll(cx).map_err(Into::into),
            }
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
