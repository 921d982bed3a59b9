//! When a refused request is retried, and how its body is replayed.
//!
//! A 401 from the protected resource means the token was rejected (revoked, or expired early):
//! the cache drops that token (only if it is still the current one), gets a new one, and the
//! request is replayed once with it, provided its body can be replayed. A second 401 is returned
//! to the caller, never looped (REFERENCE R62, R63). A 401 to a request sent before anything was
//! known about the server starts discovery from its challenge (R66). A 403 (or 401) with
//! `Bearer error="insufficient_scope"` asks once for the union of the scopes so far and the
//! challenged ones, then replays (R37, R38); any other 403 is handed back (R39).
//!
//! Bodies are cloned before the first attempt by a [`CloneBody`] policy. [`DefaultReplay`] knows
//! the common in-memory bodies; [`NoReplay`] turns replay off; a closure handles your own type.

use std::any::Any;
use std::fmt;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};

use crate::cache::Hints;
use crate::challenge::BearerChallenge;

/// Clones request bodies so that a request refused with 401 can be sent again.
///
/// Implemented by [`DefaultReplay`], [`NoReplay`], and any `Fn(&B) -> Option<B> + Clone`:
///
/// ```
/// use tower_client_credentials::retry::CloneBody;
///
/// #[derive(Clone)]
/// struct MyBody(std::sync::Arc<[u8]>);
///
/// let replay = |body: &MyBody| Some(body.clone());
/// assert!(replay.clone_body(&MyBody(b"{}".as_slice().into())).is_some());
/// ```
pub trait CloneBody<B>: Clone {
    /// Returns a copy of `body` to send again, or `None` if it cannot be replayed (a stream).
    fn clone_body(&self, body: &B) -> Option<B>;
}

/// Replays the in-memory bodies: `Full<Bytes>`, `Empty<Bytes>`, `String`, `Vec<u8>`, `Bytes`,
/// `&'static str` and `()`. Requests with other bodies are not replayed: their 401 is returned
/// and the next request uses the renewed token.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultReplay;

impl<B: 'static> CloneBody<B> for DefaultReplay {
    fn clone_body(&self, body: &B) -> Option<B> {
        let any = body as &dyn Any;
        if let Some(b) = any.downcast_ref::<Full<Bytes>>() {
            return cast(b.clone());
        }
        if let Some(b) = any.downcast_ref::<Empty<Bytes>>() {
            return cast(*b);
        }
        if let Some(b) = any.downcast_ref::<String>() {
            return cast(b.clone());
        }
        if let Some(b) = any.downcast_ref::<Bytes>() {
            return cast(b.clone());
        }
        if let Some(b) = any.downcast_ref::<Vec<u8>>() {
            return cast(b.clone());
        }
        if let Some(b) = any.downcast_ref::<&'static str>() {
            return cast(*b);
        }
        if any.is::<()>() {
            return cast(());
        }
        None
    }
}

/// Moves a value of a type known (by `TypeId`) to be `B` into a `B`.
fn cast<T: 'static, B: 'static>(value: T) -> Option<B> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<B>>()
        .and_then(Option::take)
}

/// Never replays: a 401 is always returned to the caller (the cache still renews the token).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoReplay;

impl<B> CloneBody<B> for NoReplay {
    fn clone_body(&self, _body: &B) -> Option<B> {
        None
    }
}

impl<B, F> CloneBody<B> for F
where
    F: Fn(&B) -> Option<B> + Clone,
{
    fn clone_body(&self, body: &B) -> Option<B> {
        self(body)
    }
}

/// Copies a request for a later replay, or `None` if its body cannot be copied.
pub(crate) fn clone_request<B, R: CloneBody<B>>(
    replay: &R,
    req: &Request<B>,
) -> Option<Request<B>> {
    let body = replay.clone_body(req.body())?;
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    Some(copy)
}

/// What a response says about the token it was sent with.
pub(crate) enum Refusal {
    /// Nothing: hand the response back.
    None,
    /// 401: no token, or a rejected one (REFERENCE R62, R66).
    Unauthorized(Hints),
    /// 403 (or 401) with `Bearer error="insufficient_scope"`: more scope needed (R37). A 403
    /// without it is a plain refusal and triggers nothing (R39).
    InsufficientScope(Hints),
}

/// Classifies a response. Only 401 and 403 are looked at further, so the hot path pays one
/// status comparison.
#[inline]
pub(crate) fn classify<B>(response: &Response<B>) -> Refusal {
    let status = response.status();
    if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
        return Refusal::None;
    }
    let challenge = BearerChallenge::from_headers(response.headers());
    let hints = Hints::from_challenge(challenge.as_ref());
    match challenge {
        Some(c) if c.is_insufficient_scope() => Refusal::InsufficientScope(hints),
        _ if status == StatusCode::UNAUTHORIZED => Refusal::Unauthorized(hints),
        _ => Refusal::None,
    }
}

/// Prints a value's type name in `Debug` output, for strategies that may be closures.
pub(crate) struct TypeName(&'static str);

impl TypeName {
    pub(crate) fn of<T>(_: &T) -> Self {
        Self(std::any::type_name::<T>())
    }
}

impl fmt::Debug for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_replay_clones_in_memory_bodies() {
        let r = DefaultReplay;
        assert!(
            CloneBody::<Full<Bytes>>::clone_body(&r, &Full::new(Bytes::from_static(b"x")))
                .is_some()
        );
        assert!(CloneBody::<Empty<Bytes>>::clone_body(&r, &Empty::new()).is_some());
        assert_eq!(r.clone_body(&String::from("s")), Some(String::from("s")));
        assert_eq!(r.clone_body(&vec![1u8]), Some(vec![1u8]));
        assert_eq!(r.clone_body(&"static"), Some("static"));
        assert_eq!(r.clone_body(&()), Some(()));
        struct Stream;
        assert!(r.clone_body(&Stream).is_none());
    }

    #[test]
    fn clone_request_keeps_everything() {
        let mut req = Request::post("https://h/mcp")
            .header("x-a", "1")
            .body(String::from("body"))
            .unwrap();
        req.extensions_mut().insert(7u32);
        let copy = clone_request(&DefaultReplay, &req).unwrap();
        assert_eq!(copy.method(), req.method());
        assert_eq!(copy.uri(), req.uri());
        assert_eq!(copy.headers(), req.headers());
        assert_eq!(copy.extensions().get::<u32>(), Some(&7));
        assert_eq!(copy.body(), "body");
        assert!(clone_request(&NoReplay, &req).is_none());
    }
}
