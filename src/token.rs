//! The token endpoint client: builds a grant request, sends it with bounded retries, and parses
//! the answer.
//!
//! Parsing is lenient where real servers differ (`token_type` in any case or absent, `expires_in`
//! as a number, a numeric string, or absent) and strict where safety needs it: the body is capped at
//! 1 MiB, redirects are errors, and a token that could not travel safely in a header is refused
//! (REFERENCE R4, R54–R59).

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Map, Value};

use crate::auth_client::AuthHttpClient;
use crate::cache::clock::Clock;
use crate::credentials::{Credentials, Destination, Form};
use crate::discovery::Binding;
use crate::error::{Error, ErrorKind, escape_for_message};
use crate::secret::{AccessToken, Assertion};

/// Largest response body read from the authorization server.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How token requests are retried.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryConfig {
    pub(crate) attempts: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) total_timeout: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
        }
    }
}

/// A token as the endpoint issued it.
pub(crate) struct Issued {
    pub(crate) token: AccessToken,
    pub(crate) header: HeaderValue,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) scope: Option<String>,
    /// When the successful attempt started (clock milliseconds): expiry counts from here.
    pub(crate) started_ms: u64,
}

/// Everything needed to ask a token endpoint for tokens, except where it is: that comes from
/// discovery (a [`Binding`]).
#[derive(Debug)]
pub(crate) struct TokenClient {
    pub(crate) client: AuthHttpClient,
    pub(crate) credentials: Credentials,
    pub(crate) extra_params: Vec<(String, String)>,
    pub(crate) retry: RetryConfig,
}

impl TokenClient {
    /// Requests a token, retrying transient failures with exponential backoff and full jitter,
    /// honouring `Retry-After`, within the attempt and total time limits.
    pub(crate) async fn request(
        &self,
        binding: &Binding,
        scope: Option<&str>,
        clock: &Clock,
    ) -> Result<Issued, Error> {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            "token_request",
            issuer_host = %binding.token_endpoint.host().unwrap_or(""),
            client_id = %self.credentials.client_id().unwrap_or(""),
            grant = self.credentials.grant_name(),
            auth_method = %binding.auth_method,
        );
        self.request_with_retries(binding, scope, clock)
            .instrument(span)
            .await
    }

    async fn request_with_retries(
        &self,
        binding: &Binding,
        scope: Option<&str>,
        clock: &Clock,
    ) -> Result<Issued, Error> {
        let deadline = tokio::time::Instant::now() + self.retry.total_timeout;
        let started = tokio::time::Instant::now();
        let mut attempt = 1;
        loop {
            let started_ms = clock.now_ms();
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let limit = self.retry.attempt_timeout.min(remaining);
            let result = match tokio::time::timeout(limit, self.attempt(binding, scope)).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(ErrorKind::Timeout, "token request timed out")),
            };
            match result {
                Ok((token, header, expires_in, scope)) => {
                    tracing::debug!(
                        attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        expires_in = ?expires_in,
                        outcome = "issued",
                        "token issued"
                    );
                    return Ok(Issued {
                        token,
                        header,
                        expires_in,
                        scope,
                        started_ms,
                    });
                }
                Err(err) => {
                    let wait = if err.is_transient() && attempt < self.retry.attempts {
                        let backoff = err.retry_after().unwrap_or_else(|| {
                            let cap = self
                                .retry
                                .initial_backoff
                                .saturating_mul(1 << (attempt - 1).min(16));
                            cap.mul_f64(crate::cache::random_fraction())
                        });
                        (tokio::time::Instant::now() + backoff < deadline).then_some(backoff)
                    } else {
                        None
                    };
                    match wait {
                        Some(backoff) => {
                            tracing::debug!(attempt, error = %err, backoff_ms = backoff.as_millis() as u64, "token request failed, retrying");
                            tokio::time::sleep(backoff).await;
                            attempt += 1;
                        }
                        None => {
                            tracing::warn!(
                                attempt,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                error = %err,
                                outcome = "failed",
                                "token request failed"
                            );
                            return Err(err);
                        }
                    }
                }
            }
        }
    }

    /// Builds the token request: the grant's form plus exactly one client authentication. Called
    /// for every attempt, so every attempt carries fresh assertions (REFERENCE R52). Also returns
    /// the grant's assertion, if any, so a refusal can be remembered.
    pub(crate) async fn build_request(
        &self,
        binding: &Binding,
        scope: Option<&str>,
    ) -> Result<(Request<Full<Bytes>>, Option<Assertion>), Error> {
        let endpoint = binding.token_endpoint.to_string();
        let to = Destination {
            issuer: &binding.issuer,
            token_endpoint: &endpoint,
            resource: binding.resource.as_deref(),
        };
        let mut form = Form::default();
        let grant_assertion = self.credentials.grant(&mut form, &to).await?;
        if let Some(scope) = scope {
            form.push("scope", scope);
        }
        if let Some(resource) = &binding.resource {
            form.push("resource", resource);
        }
        for (name, value) in &self.extra_params {
            form.push(name, value);
        }
        let auth = self
            .credentials
            .authenticate(&mut form, binding.auth_method, &to)
            .await?;
        Ok((
            form_request(&binding.token_endpoint, form, auth),
            grant_assertion,
        ))
    }

    async fn attempt(
        &self,
        binding: &Binding,
        scope: Option<&str>,
    ) -> Result<(AccessToken, HeaderValue, Option<Duration>, Option<String>), Error> {
        let (request, grant_assertion) = self.build_request(binding, scope).await?;
        let (status, headers, body) =
            post_form(&self.client, request, "the token endpoint").await?;
        let parsed = parse_response(status, &headers, &body).inspect_err(|err| {
            // REFERENCE R70: a refused assertion is never presented again.
            if let Some(assertion) = &grant_assertion
                && matches!(
                    err.oauth_error(),
                    Some("invalid_grant" | "invalid_scope" | "unauthorized_client")
                )
            {
                self.credentials.grant_refused(assertion);
            }
        })?;
        Ok((parsed.token, parsed.header, parsed.expires_in, parsed.scope))
    }
}

/// A form POST to a token endpoint (this crate's, an IdP's): exactly one client authentication,
/// JSON asked for (REFERENCE R41, R44, R45).
pub(crate) fn form_request(
    uri: &Uri,
    form: Form,
    auth: Option<HeaderValue>,
) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(form.into_bytes()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri.clone();
    let headers = req.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(auth) = auth {
        headers.insert(AUTHORIZATION, auth);
    }
    req
}

/// Sends a token-endpoint request and reads the answer (capped, no redirects followed).
pub(crate) async fn post_form(
    client: &AuthHttpClient,
    request: Request<Full<Bytes>>,
    what: &'static str,
) -> Result<(StatusCode, HeaderMap, Bytes), Error> {
    let response = client.send(request).await.map_err(|e| {
        Error::with_source(ErrorKind::Transport, format!("could not reach {what}"), e)
    })?;
    let (parts, body) = response.into_parts();
    let body = read_body(body).await?;
    Ok((parts.status, parts.headers, body))
}

/// Reads a response body, refusing more than [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(
    mut body: crate::auth_client::AuthResponseBody,
) -> Result<Bytes, Error> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            Error::with_source(
                ErrorKind::Transport,
                "could not read the response body",
                err,
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY_BYTES {
                return Err(Error::new(
                    ErrorKind::TokenResponse,
                    "response body exceeds 1 MiB",
                ));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// A successful token response, validated.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) token: AccessToken,
    pub(crate) header: HeaderValue,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) scope: Option<String>,
}

/// The error a non-200 token endpoint answer stands for: its status, and the OAuth `error`,
/// `error_description` and `Retry-After` when present; never the body. Redirects are errors:
/// they are not followed.
pub(crate) fn error_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    if status.is_redirection() {
        return Error::endpoint(status, None, None, None)
            .with_message("the token endpoint redirected; redirects are not followed");
    }
    let object = serde_json::from_slice::<Value>(body).ok();
    let field = |name: &str| {
        object
            .as_ref()
            .and_then(|o| o.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Error::endpoint(
        status,
        field("error").as_deref(),
        field("error_description").as_deref(),
        retry_after(headers),
    )
}

/// Turns a token endpoint answer into a token or a typed error. Never panics, never keeps the body.
pub(crate) fn parse_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Parsed, Error> {
    if status != StatusCode::OK {
        return Err(error_response(status, headers, body));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorKind::TokenResponse,
            format!(
                "body is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let Value::Object(object) = value else {
        return Err(Error::new(
            ErrorKind::TokenResponse,
            "body is not a JSON object",
        ));
    };
    let token = access_token(&object)?;
    check_token_type(&object)?;
    let expires_in = expires_in(&object)?;
    let scope = match object.get("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::TokenResponse,
                "scope is not a string",
            ));
        }
    };
    let header = bearer_header(&token)?;
    Ok(Parsed {
        token,
        header,
        expires_in,
        scope,
    })
}

/// Refuses a token that is empty or could break out of an `Authorization` header (R4). RFC 6750's
/// b64token is narrower, but real tokens use other printable characters.
pub(crate) fn check_token(token: &str) -> Result<(), Error> {
    if token.is_empty() {
        return Err(Error::new(ErrorKind::InvalidToken, "access_token is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::new(
            ErrorKind::InvalidToken,
            "access_token contains characters not allowed in an Authorization header",
        ));
    }
    Ok(())
}

fn access_token(object: &Map<String, Value>) -> Result<AccessToken, Error> {
    match object.get("access_token") {
        Some(Value::String(token)) => {
            check_token(token)?;
            Ok(AccessToken::new(token.as_str()))
        }
        Some(_) => Err(Error::new(
            ErrorKind::TokenResponse,
            "access_token is not a string",
        )),
        None => Err(Error::new(
            ErrorKind::TokenResponse,
            "access_token is missing",
        )),
    }
}

fn check_token_type(object: &Map<String, Value>) -> Result<(), Error> {
    match object.get("token_type") {
        // RFC 6749 makes it required, but its absence is harmless: we only ever send Bearer.
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => Ok(()),
        Some(Value::String(t)) if t.eq_ignore_ascii_case("dpop") => Err(Error::new(
            ErrorKind::TokenResponse,
            "the server issued a DPoP-bound token; DPoP is not supported",
        )),
        Some(Value::String(t)) => Err(Error::new(
            ErrorKind::TokenResponse,
            format!("unsupported token_type \"{}\"", escape_for_message(t)),
        )),
        Some(_) => Err(Error::new(
            ErrorKind::TokenResponse,
            "token_type is not a string",
        )),
    }
}

/// Upper bound on a believable lifetime; larger values are clamped (ten years).
const MAX_EXPIRES_IN: u64 = 10 * 365 * 24 * 3600;

fn expires_in(object: &Map<String, Value>) -> Result<Option<Duration>, Error> {
    let invalid = || {
        Error::new(
            ErrorKind::TokenResponse,
            "expires_in is not a non-negative number of seconds",
        )
    };
    let seconds = match object.get("expires_in") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(s), _) => s,
            (None, Some(f)) if f.is_finite() && f >= 0.0 => f as u64,
            _ => return Err(invalid()),
        },
        // Entra ID v1, Apigee and others send a string (REFERENCE P7).
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            s.parse::<u64>().unwrap_or(MAX_EXPIRES_IN)
        }
        Some(_) => return Err(invalid()),
    };
    Ok(Some(Duration::from_secs(seconds.min(MAX_EXPIRES_IN))))
}

/// Builds the `Authorization` value once per token: `Bearer` with a capital B whatever case the
/// server used for `token_type` (R3), marked sensitive so HTTP/2 never indexes it.
pub(crate) fn bearer_header(token: &AccessToken) -> Result<HeaderValue, Error> {
    let value = zeroize::Zeroizing::new(format!("Bearer {}", token.expose_secret()));
    let mut header = HeaderValue::from_str(&value).map_err(|_| {
        Error::new(
            ErrorKind::InvalidToken,
            "access token is not a valid header value",
        )
    })?;
    header.set_sensitive(true);
    Ok(header)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    // Only the delay-seconds form; an HTTP-date falls back to our own backoff.
    value
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(300)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Result<Parsed, Error> {
        parse_response(StatusCode::OK, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn accepts_a_plain_response() {
        let parsed = ok(r#"{"access_token":"abc","token_type":"Bearer","expires_in":3600,"scope":"a b","foo":1}"#).unwrap();
        assert_eq!(parsed.token.expose_secret(), "abc");
        assert_eq!(parsed.header, "Bearer abc");
        assert!(parsed.header.is_sensitive());
        assert_eq!(parsed.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(parsed.scope.as_deref(), Some("a b"));
    }

    #[test]
    fn lowercase_token_type_still_gets_capital_bearer() {
        let parsed = ok(r#"{"access_token":"abc","token_type":"bearer"}"#).unwrap();
        assert_eq!(parsed.header, "Bearer abc");
        assert_eq!(parsed.expires_in, None);
    }

    #[test]
    fn expires_in_as_string_number_or_float() {
        let e = |v: &str| {
            ok(&format!(
                r#"{{"access_token":"a","token_type":"Bearer","expires_in":{v}}}"#
            ))
            .map(|p| p.expires_in)
        };
        assert_eq!(e(r#""3600""#).unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(e(r#"" 59 ""#).unwrap(), Some(Duration::from_secs(59)));
        assert_eq!(e("3599.0").unwrap(), Some(Duration::from_secs(3599)));
        assert_eq!(e("null").unwrap(), None);
        assert_eq!(
            e("99999999999999999999").unwrap(),
            Some(Duration::from_secs(MAX_EXPIRES_IN))
        );
        for bad in [
            "-1",
            r#""12abc""#,
            r#""""#,
            r#""-5""#,
            "true",
            "[1]",
            "-0.5",
        ] {
            let err = e(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::TokenResponse, "{bad}");
        }
    }

    #[test]
    fn control_characters_in_token_are_refused() {
        for token in [
            "a\\r\\nX-Evil: 1",
            "a b",
            "caf\\u00e9",
            "tab\\there",
            "nul\\u0000",
        ] {
            let err = ok(&format!(
                r#"{{"access_token":"{token}","token_type":"Bearer"}}"#
            ))
            .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidToken, "{token}");
            assert!(!err.to_string().contains("X-Evil"));
        }
        assert_eq!(
            ok(r#"{"access_token":"","token_type":"Bearer"}"#)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidToken
        );
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        for body in [
            "",
            "not json",
            "[]",
            "42",
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":5}"#,
            r#"{"access_token":"a","scope":1}"#,
            "{\"access_token\":\"a\"",
            "\u{0}",
        ] {
            let err = ok(body).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::TokenResponse, "{body:?}");
        }
    }

    #[test]
    fn unsupported_token_types() {
        let err = ok(r#"{"access_token":"a","token_type":"N_A"}"#).unwrap_err();
        assert!(err.to_string().contains("N_A"));
        let err = ok(r#"{"access_token":"a","token_type":"DPoP"}"#).unwrap_err();
        assert!(err.to_string().contains("DPoP"));
    }

    #[test]
    fn oauth_errors_keep_code_and_description_not_body() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let body = r#"{"error":"invalid_client","error_description":"bad secret","secret_echo":"hunter2"}"#;
        let err = parse_response(StatusCode::UNAUTHORIZED, &headers, body.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TokenEndpoint);
        assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(err.oauth_error(), Some("invalid_client"));
        assert_eq!(err.error_description(), Some("bad secret"));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }

    #[test]
    fn non_json_error_bodies_keep_only_the_status() {
        let err = parse_response(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>upstream hunter2</html>",
        )
        .unwrap_err();
        assert!(err.is_transient());
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }

    #[test]
    fn redirects_are_errors() {
        let err = parse_response(StatusCode::FOUND, &HeaderMap::new(), b"").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TokenEndpoint);
        assert!(err.to_string().contains("redirect"));
    }
}
