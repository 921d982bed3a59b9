//! Errors: one opaque [`Error`] for everything that happens at run time, [`ConfigError`] for
//! everything a builder can refuse.
//!
//! Neither ever carries a secret, a token, or a response body: an OAuth error response is reduced
//! to its status, its `error` code and an escaped, truncated `error_description`.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// The error type of the [`ClientCredentials`](crate::ClientCredentials) service: the inner
/// service's error or an [`Error`] of this crate, boxed (tower's convention for middleware).
///
/// Downcast it to [`Error`] to learn what went wrong with authentication.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Longest `error` code kept from an OAuth error response, in characters.
const MAX_CODE_CHARS: usize = 64;
/// Longest `error_description` kept from an OAuth error response, in characters.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// What went wrong while getting or using a token.
///
/// Cheap to clone: every request that waited on one failed token request gets the same error.
///
/// # Example
///
/// ```
/// # use tower_client_credentials::{BoxError, Error, ErrorKind};
/// fn is_bad_credentials(err: &BoxError) -> bool {
///     err.downcast_ref::<Error>()
///         .is_some_and(|e| e.kind() == ErrorKind::TokenEndpoint && e.oauth_error() == Some("invalid_client"))
/// }
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    status: Option<StatusCode>,
    oauth: Option<OAuthDetails>,
    retry_after: Option<Duration>,
    transient: Option<bool>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

struct OAuthDetails {
    code: String,
    description: Option<String>,
}

/// The broad category of an [`Error`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The token endpoint refused the request: an OAuth error response (RFC 6749 §5.2) or another
    /// non-success status. See [`Error::status`] and [`Error::oauth_error`].
    TokenEndpoint,
    /// The token endpoint answered 200 but the body is not a usable token response (bad JSON, a
    /// missing `access_token`, an unsupported `token_type`, an oversized body…).
    TokenResponse,
    /// The issued access token cannot be sent safely: it is empty or holds characters that are not
    /// allowed in an `Authorization` header (control characters, spaces, non-ASCII).
    InvalidToken,
    /// The authorization server could not be reached (connection, TLS or I/O failure).
    Transport,
    /// A request to the authorization server did not complete in time.
    Timeout,
    /// The token store failed.
    Store,
    /// The crate could not run its background work (for example, no Tokio runtime).
    Runtime,
    /// Discovery failed: protected resource or authorization server metadata is missing,
    /// unreachable or invalid (a `resource` naming another server, an `issuer` that does not
    /// match, a plain-`http` endpoint, no `authorization_servers`, DPoP required…).
    Discovery,
    /// The protected resource no longer lists the authorization server the credentials are bound
    /// to (`expected_issuer`), so they are not sent anywhere (REFERENCE R21).
    IssuerNotListed,
    /// After a step-up, the authorization server granted fewer scopes than the resource asked for.
    InsufficientScope,
    /// The client's own credentials could not be used: a secret file is missing or empty, a key
    /// cannot sign.
    Credentials,
    /// A JWT assertion could not be produced or is unusable: the callback failed, the file is
    /// missing, the JWT is malformed or expired. Checked locally, before any request.
    Assertion,
    /// The resource refused a token from a token source that has no refresh hook.
    Unauthorized,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::TokenEndpoint => "token endpoint error",
            ErrorKind::TokenResponse => "invalid token response",
            ErrorKind::InvalidToken => "unusable access token",
            ErrorKind::Transport => "authorization server unreachable",
            ErrorKind::Timeout => "authorization server timed out",
            ErrorKind::Store => "token store error",
            ErrorKind::Runtime => "runtime error",
            ErrorKind::Discovery => "discovery failed",
            ErrorKind::IssuerNotListed => "authorization server not listed",
            ErrorKind::InsufficientScope => "insufficient scope granted",
            ErrorKind::Credentials => "credentials unusable",
            ErrorKind::Assertion => "assertion unusable",
            ErrorKind::Unauthorized => "the resource refused the token",
        }
    }
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                message: message.into(),
                status: None,
                oauth: None,
                retry_after: None,
                transient: None,
                source: None,
            }),
        }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<Cow<'static, str>>,
        source: impl Into<BoxError>,
    ) -> Self {
        let mut err = Self::new(kind, message);
        Arc::get_mut(&mut err.inner).expect("fresh error").source = Some(Arc::from(source.into()));
        err
    }

    /// An error status from the token endpoint, with the OAuth fields of its body if it had any.
    pub(crate) fn endpoint(
        status: StatusCode,
        code: Option<&str>,
        description: Option<&str>,
        retry_after: Option<Duration>,
    ) -> Self {
        let mut err = Self::new(ErrorKind::TokenEndpoint, "");
        let inner = Arc::get_mut(&mut err.inner).expect("fresh error");
        inner.status = Some(status);
        inner.retry_after = retry_after;
        inner.oauth = code.map(|code| OAuthDetails {
            code: sanitize(code, MAX_CODE_CHARS),
            description: description.map(|d| sanitize(d, MAX_DESCRIPTION_CHARS)),
        });
        err
    }

    /// Replaces the message of a freshly built error.
    pub(crate) fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.message = message.into(),
            None => return Self::with_source(self.kind(), message, self),
        }
        self
    }

    /// Marks a freshly built error as transient or not, whatever its kind says.
    pub(crate) fn transient(mut self, transient: bool) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.transient = Some(transient),
            None => {
                let kind = self.kind();
                let mut wrapped = Self::with_source(kind, "", self);
                if let Some(inner) = Arc::get_mut(&mut wrapped.inner) {
                    inner.transient = Some(transient);
                }
                return wrapped;
            }
        }
        self
    }

    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether trying again later may succeed: network failures, timeouts, 5xx and 429 answers,
    /// and the OAuth codes `server_error` and `temporarily_unavailable`.
    ///
    /// Permanent errors (`invalid_client`, `invalid_scope`, a malformed response…) are not retried
    /// and are remembered briefly, so a misconfigured client does not hammer the server.
    pub fn is_transient(&self) -> bool {
        if let Some(transient) = self.inner.transient {
            return transient;
        }
        match self.inner.kind {
            ErrorKind::Transport | ErrorKind::Timeout | ErrorKind::Store => true,
            ErrorKind::TokenEndpoint => {
                let status_says = self
                    .inner
                    .status
                    .is_some_and(|s| s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS);
                let code_says = matches!(
                    self.oauth_error(),
                    Some("server_error" | "temporarily_unavailable")
                );
                status_says || code_says
            }
            ErrorKind::TokenResponse
            | ErrorKind::InvalidToken
            | ErrorKind::Runtime
            | ErrorKind::Discovery
            | ErrorKind::IssuerNotListed
            | ErrorKind::InsufficientScope
            | ErrorKind::Credentials
            | ErrorKind::Assertion
            | ErrorKind::Unauthorized => false,
        }
    }

    /// The HTTP status the token endpoint answered with, for [`ErrorKind::TokenEndpoint`].
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.status
    }

    /// The OAuth `error` code of the response (`invalid_client`, `invalid_scope`…), if any.
    pub fn oauth_error(&self) -> Option<&str> {
        self.inner.oauth.as_ref().map(|o| o.code.as_str())
    }

    /// The server's `error_description`, escaped and truncated to 200 characters.
    pub fn error_description(&self) -> Option<&str> {
        self.inner
            .oauth
            .as_ref()
            .and_then(|o| o.description.as_deref())
    }

    /// How long the server asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.write_str(inner.kind.as_str())?;
        if let Some(status) = inner.status {
            write!(f, ": HTTP {}", status.as_u16())?;
        }
        if let Some(oauth) = &inner.oauth {
            write!(f, " {}", oauth.code)?;
            if let Some(description) = &oauth.description {
                write!(f, " ({description})")?;
            }
        }
        if !inner.message.is_empty() {
            write!(f, ": {}", inner.message)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let mut d = f.debug_struct("Error");
        d.field("kind", &inner.kind);
        if !inner.message.is_empty() {
            d.field("message", &inner.message);
        }
        if let Some(status) = inner.status {
            d.field("status", &status.as_u16());
        }
        if let Some(oauth) = &inner.oauth {
            d.field("error", &oauth.code);
            if let Some(description) = &oauth.description {
                d.field("error_description", description);
            }
        }
        if let Some(source) = &inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// Keeps at most `max` characters, escaping anything that is not printable ASCII so a hostile
/// server cannot forge log lines or terminal escapes through an error message.
fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// A configuration the builder refused.
///
/// Raised before anything is sent; never contains a secret.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A URL could not be parsed or is not an absolute `http(s)` URL without a fragment.
    #[non_exhaustive]
    InvalidUrl {
        /// Which setting held the URL.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A URL is plain `http`. Only loopback hosts may use `http`, and only after
    /// [`insecure_allow_http_loopback`](crate::ClientCredentialsBuilder::insecure_allow_http_loopback).
    #[non_exhaustive]
    InsecureUrl {
        /// Which setting held the URL.
        field: &'static str,
    },
    /// `expected_issuer` and `issuer` disagree.
    ConflictingIssuer,
    /// The credentials need client authentication they do not have: cross-app access with a
    /// public client at the authorization server (REFERENCE R77).
    MissingClientAuthentication,
    /// A signed assertion needs a client id (its `iss` and `sub`), and none is configured.
    MissingClientId,
    /// The `client_id` is empty.
    EmptyClientId,
    /// A scope is empty or contains characters RFC 6749 §3.3 does not allow (spaces, `"`, `\`,
    /// control characters, non-ASCII).
    #[non_exhaustive]
    InvalidScope {
        /// The offending scope, with non-printable characters escaped.
        scope: String,
    },
    /// An extra token-request parameter would override one the crate sets itself.
    #[non_exhaustive]
    ReservedParameter {
        /// The parameter name.
        name: String,
    },
    /// A duration or count setting is out of range.
    #[non_exhaustive]
    InvalidSetting {
        /// The setting's name.
        name: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InvalidUrl { field, reason } => write!(f, "invalid {field} URL: {reason}"),
            ConfigError::InsecureUrl { field } => write!(
                f,
                "{field} URL must use https (http is allowed only for loopback hosts with insecure_allow_http_loopback)"
            ),
            ConfigError::ConflictingIssuer => {
                f.write_str("expected_issuer and issuer name different servers")
            }
            ConfigError::MissingClientAuthentication => f.write_str(
                "cross-app access needs client authentication at the authorization server (a secret or an assertion)",
            ),
            ConfigError::MissingClientId => f.write_str("a signed assertion needs a client id"),
            ConfigError::EmptyClientId => f.write_str("client_id is empty"),
            ConfigError::InvalidScope { scope } => {
                write!(
                    f,
                    "invalid scope {scope:?}: RFC 6749 §3.3 allows printable ASCII except space, '\"' and '\\'"
                )
            }
            ConfigError::ReservedParameter { name } => {
                write!(
                    f,
                    "token request parameter {name:?} is set by the crate and cannot be overridden"
                )
            }
            ConfigError::InvalidSetting { name, reason } => write!(f, "invalid {name}: {reason}"),
        }
    }
}

impl StdError for ConfigError {}

pub(crate) fn escape_for_message(text: &str) -> String {
    sanitize(text, MAX_DESCRIPTION_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_keeps_status_code_and_truncated_description() {
        let long = "x".repeat(500);
        let err = Error::endpoint(
            StatusCode::BAD_REQUEST,
            Some("invalid_client"),
            Some(&long),
            None,
        );
        let text = err.to_string();
        assert!(
            text.starts_with("token endpoint error: HTTP 400 invalid_client ("),
            "{text}"
        );
        assert!(text.len() < 300, "{text}");
        assert!(!err.is_transient());
    }

    #[test]
    fn control_characters_are_escaped() {
        let err = Error::endpoint(
            StatusCode::BAD_REQUEST,
            Some("bad\r\ncode"),
            Some("line1\nline2\u{1b}[31m"),
            None,
        );
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains('\n') && !text.contains('\r') && !text.contains('\u{1b}'),
            "{text}"
        );
    }

    #[test]
    fn transient_classification() {
        let e = |status: u16, code: Option<&str>| {
            Error::endpoint(StatusCode::from_u16(status).unwrap(), code, None, None).is_transient()
        };
        assert!(e(503, None));
        assert!(e(429, None));
        assert!(e(400, Some("temporarily_unavailable")));
        assert!(!e(400, Some("invalid_grant")));
        assert!(!e(401, Some("invalid_client")));
        assert!(Error::new(ErrorKind::Timeout, "").is_transient());
        assert!(!Error::new(ErrorKind::InvalidToken, "").is_transient());
    }

    #[test]
    fn error_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<Error>();
        assert_send_sync::<ConfigError>();
    }
}
