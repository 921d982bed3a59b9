//! Parsing of HTTP `WWW-Authenticate` challenges (RFC 9110 §11.6.1, RFC 6750 §3).
//!
//! [`parse`] splits one field value into [`Challenge`]s and [`parse_all`] does the
//! same for every `WWW-Authenticate` field of a response, in order.
//! [`BearerChallenge`] picks out the parameters an OAuth client cares about
//! (`error`, `scope`, `resource_metadata`, ...) from the first `Bearer` challenge.
//! Other schemes, such as `DPoP`, are available through the generic [`Challenge`].
//!
//! The grammar is followed where servers follow it and bent where they do not:
//!
//! * scheme and parameter names match case-insensitively; parameter names are
//!   stored lowercased, schemes as written;
//! * values are tokens or quoted strings (backslash escapes, commas inside quotes);
//!   whitespace is allowed around `=`;
//! * an unquoted value runs up to the next comma or whitespace, so unquoted URLs work;
//! * `'single quoted'` values are accepted when the closing `'` comes before the
//!   next comma;
//! * an unterminated quoted string takes the rest of the field value;
//! * a list element that is only a parameter (`Bearer, resource_metadata="..."`, as
//!   vouch-proxy sends it) belongs to the challenge before it in the same field
//!   value, and is dropped if there is none;
//! * a missing comma between parameters is tolerated;
//! * empty list elements, trailing commas and unparsable elements are skipped;
//! * a parameter repeated within a challenge keeps its first value and logs a
//!   warning naming the parameter (never its value).
//!
//! Work is bounded by [`MAX_VALUE_LEN`], [`MAX_CHALLENGES`] and [`MAX_PARAMS`].
//! No input makes the parser panic.
//!
//! # Example
//!
//! ```
//! use http::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
//! use tower_client_credentials::challenge::{self, BearerChallenge, BearerError};
//!
//! let mut headers = HeaderMap::new();
//! headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Basic realm="api""#));
//! headers.append(
//!     WWW_AUTHENTICATE,
//!     HeaderValue::from_static(
//!         r#"Bearer error="insufficient_scope", scope="files:read files:write", resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp""#,
//!     ),
//! );
//!
//! let challenges = challenge::parse_all(&headers);
//! assert_eq!(challenges.len(), 2);
//! assert!(challenges[0].is_scheme("basic"));
//! assert_eq!(challenges[0].param("Realm"), Some("api"));
//!
//! let bearer = BearerChallenge::from_headers(&headers).expect("a Bearer challenge");
//! assert_eq!(bearer.error(), Some(&BearerError::InsufficientScope));
//! assert!(bearer.is_insufficient_scope());
//! assert_eq!(bearer.scope(), Some("files:read files:write"));
//! assert_eq!(
//!     bearer.resource_metadata(),
//!     Some("https://mcp.example/.well-known/oauth-protected-resource/mcp"),
//! );
//! ```

use std::borrow::Cow;
use std::fmt;

use http::HeaderMap;
use http::header::WWW_AUTHENTICATE;

/// Longest field value, in bytes, that is parsed; longer values are ignored whole.
pub const MAX_VALUE_LEN: usize = 16 * 1024;

/// Most challenges returned by one call to [`parse`] or [`parse_all`]; later ones are dropped.
pub const MAX_CHALLENGES: usize = 64;

/// Most parameters kept for one challenge; later ones are dropped.
pub const MAX_PARAMS: usize = 64;

// Duplicate warnings are tracked in a `u64` bit set indexed by parameter position.
const _: () = assert!(MAX_PARAMS <= 64);

/// One authentication challenge: a scheme followed by a token68 or parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
    token68: Option<String>,
}

impl Challenge {
    fn new(scheme: &str) -> Self {
        Self {
            scheme: scheme.to_owned(),
            params: Vec::new(),
            token68: None,
        }
    }

    /// Returns the authentication scheme as the server wrote it.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Returns whether the scheme equals `scheme`, ignoring ASCII case.
    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// Returns the value of the parameter `name` (case-insensitive), if present.
    ///
    /// A parameter repeated by the server yields its first value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Iterates over the parameters in order as `(lowercased name, value)` pairs.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Returns the token68 form of the challenge (`Basic dXNlcjpwYXNz`), if used.
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }
}

/// Parses one `WWW-Authenticate` field value into its challenges.
///
/// Values longer than [`MAX_VALUE_LEN`] yield no challenges; at most
/// [`MAX_CHALLENGES`] challenges with at most [`MAX_PARAMS`] parameters each are kept.
pub fn parse(value: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    parse_into(value, &mut out);
    out
}

/// Parses every `WWW-Authenticate` field in `headers`, in order, into one list.
///
/// A field value that is not valid UTF-8 is decoded lossily (invalid bytes become
/// U+FFFD) rather than skipped, so a stray Latin-1 byte in an `error_description`
/// does not hide the challenge. The limits of [`parse`] apply to each field value,
/// and [`MAX_CHALLENGES`] to the whole list.
pub fn parse_all(headers: &HeaderMap) -> Vec<Challenge> {
    let mut out = Vec::new();
    for value in headers.get_all(WWW_AUTHENTICATE) {
        if out.len() >= MAX_CHALLENGES {
            break;
        }
        parse_into(&String::from_utf8_lossy(value.as_bytes()), &mut out);
    }
    out
}

/// The error code of a `Bearer` challenge (RFC 6750 §3.1).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BearerError {
    /// `invalid_token`: the token is expired, revoked, malformed or otherwise invalid (401).
    InvalidToken,
    /// `insufficient_scope`: the token lacks the scope the request needs (403).
    InsufficientScope,
    /// `invalid_request`: the request is malformed (400).
    InvalidRequest,
    /// Any other error code, as the server wrote it.
    Other(String),
}

impl BearerError {
    /// Maps an error code to a variant; the known codes match ignoring ASCII case.
    fn from_code(code: &str) -> Self {
        if code.eq_ignore_ascii_case("invalid_token") {
            Self::InvalidToken
        } else if code.eq_ignore_ascii_case("insufficient_scope") {
            Self::InsufficientScope
        } else if code.eq_ignore_ascii_case("invalid_request") {
            Self::InvalidRequest
        } else {
            Self::Other(code.to_owned())
        }
    }

    /// Returns the error code as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidRequest => "invalid_request",
            Self::Other(code) => code,
        }
    }
}

impl fmt::Display for BearerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parameters of a `Bearer` challenge that an OAuth client acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    error: Option<BearerError>,
    error_description: Option<String>,
    scope: Option<String>,
    resource_metadata: Option<String>,
    realm: Option<String>,
}

impl BearerChallenge {
    /// Returns the first `Bearer` challenge (scheme matched case-insensitively) in `headers`.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        parse_all(headers).iter().find_map(Self::from_challenge)
    }

    /// Extracts the Bearer parameters from `c`, or returns `None` if its scheme is not `Bearer`.
    pub fn from_challenge(c: &Challenge) -> Option<Self> {
        if !c.is_scheme("Bearer") {
            return None;
        }
        let owned = |name: &str| c.param(name).map(str::to_owned);
        Some(Self {
            error: c.param("error").map(BearerError::from_code),
            error_description: owned("error_description"),
            scope: owned("scope"),
            resource_metadata: owned("resource_metadata"),
            realm: owned("realm"),
        })
    }

    /// Returns the `error` code, or `None` for a bare challenge.
    pub fn error(&self) -> Option<&BearerError> {
        self.error.as_ref()
    }

    /// Returns the human-readable `error_description`, if present.
    pub fn error_description(&self) -> Option<&str> {
        self.error_description.as_deref()
    }

    /// Returns the space-separated `scope` the resource requires, if present.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Returns the `resource_metadata` URL (RFC 9728 §5.1), if present.
    pub fn resource_metadata(&self) -> Option<&str> {
        self.resource_metadata.as_deref()
    }

    /// Returns the `realm`, if present.
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    /// Returns whether the error is `insufficient_scope`.
    pub fn is_insufficient_scope(&self) -> bool {
        self.error == Some(BearerError::InsufficientScope)
    }

    /// Returns whether the error is `invalid_token`.
    pub fn is_invalid_token(&self) -> bool {
        self.error == Some(BearerError::InvalidToken)
    }
}

/// Parses `value` and appends its challenges to `out`, up to [`MAX_CHALLENGES`] in total.
fn parse_into(value: &str, out: &mut Vec<Challenge>) {
    if value.len() > MAX_VALUE_LEN {
        tracing::warn!(
            len = value.len(),
            max = MAX_VALUE_LEN,
            "ignoring oversized WWW-Authenticate value"
        );
        return;
    }
    let first = out.len();
    let mut cur = Cursor::new(value);
    let mut state = ParamState::default();
    loop {
        cur.skip_separators();
        if cur.at_end() {
            break;
        }
        let mark = cur.pos;
        let Some(scheme) = cur.token() else {
            cur.skip_element();
            continue;
        };
        if cur.eq_ahead() {
            // A parameter without a scheme: it belongs to the previous challenge.
            cur.pos = mark;
            let target = if out.len() > first {
                out.last_mut()
            } else {
                None
            };
            parse_params(&mut cur, target, &mut state);
            continue;
        }
        if out.len() >= MAX_CHALLENGES {
            tracing::warn!(
                max = MAX_CHALLENGES,
                "too many WWW-Authenticate challenges; ignoring the rest"
            );
            break;
        }
        let mut challenge = Challenge::new(scheme);
        state = ParamState::default();
        parse_body(&mut cur, &mut challenge, &mut state);
        out.push(challenge);
    }
}

/// Parses what follows a scheme: nothing, a token68, or parameters.
fn parse_body(cur: &mut Cursor<'_>, challenge: &mut Challenge, state: &mut ParamState) {
    cur.skip_ws();
    if matches!(cur.peek(), None | Some(b',')) {
        return;
    }
    let mark = cur.pos;
    if !cur.take_while(is_token68_char).is_empty() {
        cur.take_while(|b| b == b'=');
        let end = cur.pos;
        cur.skip_ws();
        if matches!(cur.peek(), None | Some(b',')) {
            challenge.token68 = Some(cur.slice(mark, end).to_owned());
            return;
        }
    }
    cur.pos = mark;
    parse_params(cur, Some(challenge), state);
}

/// Parses `name = value` elements until something that is not a parameter.
///
/// Stops in front of the next challenge's scheme. Parameters are added to
/// `target`, or parsed and dropped if there is none.
fn parse_params(cur: &mut Cursor<'_>, mut target: Option<&mut Challenge>, state: &mut ParamState) {
    loop {
        cur.skip_separators();
        if cur.at_end() {
            return;
        }
        let mark = cur.pos;
        let Some(name) = cur.token() else {
            cur.skip_element();
            continue;
        };
        if !cur.eq_ahead() {
            cur.pos = mark;
            return;
        }
        cur.skip_ws();
        cur.bump(); // '='
        cur.skip_ws();
        let value = cur.value();
        match target.as_deref_mut() {
            Some(challenge) => state.add(challenge, name, value),
            None => tracing::debug!(
                param = name,
                "ignoring WWW-Authenticate parameter without a scheme"
            ),
        }
    }
}

/// Per-challenge bookkeeping that keeps warnings to one per cause.
#[derive(Default)]
struct ParamState {
    /// Bit `i` is set once a repeat of parameter `i` has been reported.
    warned_repeat: u64,
    warned_overflow: bool,
}

impl ParamState {
    /// Adds a parameter unless its name is already present or the challenge is full.
    fn add(&mut self, challenge: &mut Challenge, name: &str, value: Cow<'_, str>) {
        let existing = challenge
            .params
            .iter()
            .enumerate()
            .find(|(_, (n, _))| n.eq_ignore_ascii_case(name));
        if let Some((index, (stored, _))) = existing {
            let bit = u32::try_from(index)
                .ok()
                .and_then(|shift| 1u64.checked_shl(shift))
                .unwrap_or(0);
            if self.warned_repeat & bit == 0 {
                self.warned_repeat |= bit;
                tracing::warn!(
                    scheme = challenge.scheme.as_str(),
                    param = stored.as_str(),
                    "WWW-Authenticate challenge repeats a parameter; using the first value"
                );
            }
            return;
        }
        if challenge.params.len() >= MAX_PARAMS {
            if !self.warned_overflow {
                self.warned_overflow = true;
                tracing::warn!(
                    scheme = challenge.scheme.as_str(),
                    max = MAX_PARAMS,
                    "too many WWW-Authenticate parameters; ignoring the rest"
                );
            }
            return;
        }
        challenge
            .params
            .push((name.to_ascii_lowercase(), value.into_owned()));
    }
}

/// A position in a field value.
///
/// Every delimiter the parser looks for is ASCII, so positions where it stops
/// and slices are always on `char` boundaries; slicing goes through
/// [`str::get`] regardless, so a mistake yields an empty string, not a panic.
struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn bump(&mut self) {
        self.pos = (self.pos + 1).min(self.src.len());
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.src.get(start..end).unwrap_or_default()
    }

    /// Consumes bytes while `pred` holds and returns them.
    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    /// Skips spaces and tabs (OWS / BWS).
    fn skip_ws(&mut self) {
        self.take_while(|b| matches!(b, b' ' | b'\t'));
    }

    /// Skips whitespace and commas, including empty list elements.
    fn skip_separators(&mut self) {
        self.take_while(|b| matches!(b, b' ' | b'\t' | b','));
    }

    fn token(&mut self) -> Option<&'a str> {
        Some(self.take_while(is_tchar)).filter(|t| !t.is_empty())
    }

    /// Returns whether the next non-whitespace byte is `=`.
    fn eq_ahead(&self) -> bool {
        let rest = self.src.as_bytes().get(self.pos..).unwrap_or_default();
        rest.iter().find(|b| !matches!(b, b' ' | b'\t')) == Some(&b'=')
    }

    /// Skips an unparsable list element, up to the next comma outside double quotes.
    fn skip_element(&mut self) {
        let mut quoted = false;
        while let Some(b) = self.peek() {
            match b {
                b',' if !quoted => return,
                b'"' => quoted = !quoted,
                b'\\' if quoted => self.bump(),
                _ => {}
            }
            self.bump();
        }
    }

    /// Reads a parameter value: quoted string, single-quoted string or token.
    fn value(&mut self) -> Cow<'a, str> {
        match self.peek() {
            Some(b'"') => self.quoted_string(),
            Some(b'\'') => match self.single_quoted() {
                Some(v) => Cow::Borrowed(v),
                None => Cow::Borrowed(self.unquoted()),
            },
            _ => Cow::Borrowed(self.unquoted()),
        }
    }

    /// Reads up to the next comma or whitespace (lenient `token`).
    fn unquoted(&mut self) -> &'a str {
        self.take_while(|b| !matches!(b, b',' | b' ' | b'\t'))
    }

    /// Reads a double-quoted string, resolving backslash escapes.
    ///
    /// Borrows when there are no escapes; an unterminated string takes the rest.
    fn quoted_string(&mut self) -> Cow<'a, str> {
        self.bump(); // opening quote
        let start = self.pos;
        let mut unescaped: Option<String> = None;
        let mut run = start;
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    let end = self.pos;
                    self.bump();
                    return self.finish_quoted(unescaped, start, run, end);
                }
                b'\\' => {
                    let buf = unescaped.get_or_insert_with(String::new);
                    buf.push_str(self.slice(run, self.pos));
                    self.bump();
                    if let Some(c) = self.src.get(self.pos..).and_then(|r| r.chars().next()) {
                        buf.push(c);
                        self.pos += c.len_utf8();
                    }
                    run = self.pos;
                }
                _ => self.bump(),
            }
        }
        let end = self.pos;
        self.finish_quoted(unescaped, start, run, end)
    }

    fn finish_quoted(
        &self,
        unescaped: Option<String>,
        start: usize,
        run: usize,
        end: usize,
    ) -> Cow<'a, str> {
        match unescaped {
            None => Cow::Borrowed(self.slice(start, end)),
            Some(mut buf) => {
                buf.push_str(self.slice(run, end));
                Cow::Owned(buf)
            }
        }
    }

    /// Reads `'...'` verbatim if the closing quote comes before the next comma.
    fn single_quoted(&mut self) -> Option<&'a str> {
        let start = self.pos + 1;
        let rest = self.src.as_bytes().get(start..)?;
        let len = rest.iter().position(|&b| b == b'\'' || b == b',')?;
        if rest.get(len) != Some(&b'\'') {
            return None;
        }
        self.pos = start + len + 1;
        Some(self.slice(start, start + len))
    }
}

/// `tchar` from RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The non-padding characters of `token68` from RFC 9110 §11.2.
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use http::HeaderValue;
    use proptest::prelude::*;
    use tracing::field::{Field, Visit};
    use tracing::span;
    use tracing::subscriber::Interest;
    use tracing::{Event, Metadata, Subscriber};

    use super::*;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params().collect()
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                WWW_AUTHENTICATE,
                HeaderValue::from_bytes(v).expect("valid test header"),
            );
        }
        map
    }

    fn bearer(value: &str) -> BearerChallenge {
        parse(value)
            .iter()
            .find_map(BearerChallenge::from_challenge)
            .expect("a Bearer challenge")
    }

    /// Records formatted events so tests can check what was logged.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<String>>>);

    impl Capture {
        fn lines(&self) -> Vec<String> {
            self.0.lock().expect("capture lock").clone()
        }
    }

    struct Line<'a>(&'a mut String);

    impl Visit for Line<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    impl Subscriber for Capture {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            Interest::sometimes()
        }
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut line = event.metadata().level().to_string();
            event.record(&mut Line(&mut line));
            self.0.lock().expect("capture lock").push(line);
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    fn logged<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
        let capture = Capture::default();
        let out = tracing::subscriber::with_default(capture.clone(), f);
        (out, capture.lines())
    }

    #[test]
    fn parses_multiple_challenges_in_one_field() {
        let cs = parse(
            r#"Basic realm="a", Bearer resource_metadata="https://x/.well-known/oauth-protected-resource/mcp", scope="a b""#,
        );
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].scheme(), "Basic");
        assert_eq!(params(&cs[0]), [("realm", "a")]);
        assert_eq!(cs[1].scheme(), "Bearer");
        assert_eq!(
            params(&cs[1]),
            [
                (
                    "resource_metadata",
                    "https://x/.well-known/oauth-protected-resource/mcp"
                ),
                ("scope", "a b"),
            ]
        );
        let b = bearer(r#"Basic realm="a", Bearer scope="a b""#);
        assert_eq!(b.scope(), Some("a b"));
        assert_eq!(b.realm(), None);
    }

    #[test]
    fn extracts_bearer_after_dpop() {
        let cs = parse(r#"DPoP algs="ES256", Bearer scope="files""#);
        assert_eq!(cs.len(), 2);
        assert!(cs[0].is_scheme("dpop"));
        assert_eq!(cs[0].param("algs"), Some("ES256"));
        assert_eq!(BearerChallenge::from_challenge(&cs[0]), None);
        assert_eq!(
            bearer(r#"DPoP algs="ES256", Bearer scope="files""#).scope(),
            Some("files")
        );
    }

    #[test]
    fn matches_names_case_insensitively_with_whitespace_around_equals() {
        let cs = parse(r#"BEARER Scope = "x""#);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].scheme(), "BEARER");
        assert!(cs[0].is_scheme("bearer"));
        assert_eq!(params(&cs[0]), [("scope", "x")]);
        assert_eq!(cs[0].param("SCOPE"), Some("x"));
        assert_eq!(bearer(r#"BEARER Scope = "x""#).scope(), Some("x"));
        assert_eq!(parse("Bearer a\t=\tb")[0].param("a"), Some("b"));
    }

    #[test]
    fn unescapes_quoted_strings_with_commas_and_quotes() {
        let b = bearer(r#"Bearer error_description="say \"hi, there\"""#);
        assert_eq!(b.error_description(), Some(r#"say "hi, there""#));
        let cs = parse(r#"Bearer realm="a\\b\c", scope=x"#);
        assert_eq!(params(&cs[0]), [("realm", r"a\bc"), ("scope", "x")]);
    }

    #[test]
    fn parses_token68_forms() {
        let cs = parse("Basic dXNlcjpwYXNz, Negotiate abc==");
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].scheme(), "Basic");
        assert_eq!(cs[0].token68(), Some("dXNlcjpwYXNz"));
        assert_eq!(cs[0].params().count(), 0);
        assert_eq!(cs[1].scheme(), "Negotiate");
        assert_eq!(cs[1].token68(), Some("abc=="));
        assert_eq!(parse("Negotiate a/b+c=  ")[0].token68(), Some("a/b+c="));
    }

    #[test]
    fn parses_bare_bearer() {
        for value in ["Bearer", "  Bearer  ", "Bearer,"] {
            let cs = parse(value);
            assert_eq!(cs.len(), 1, "{value:?}");
            assert_eq!(cs[0].params().count(), 0);
            assert_eq!(cs[0].token68(), None);
            let b = BearerChallenge::from_challenge(&cs[0]).expect("bearer");
            assert_eq!(b, BearerChallenge::default());
            assert_eq!(b.error(), None);
        }
    }

    #[test]
    fn attaches_param_only_element_to_preceding_bare_challenge() {
        let cs =
            parse(r#"Bearer, resource_metadata="https://x/.well-known/oauth-protected-resource""#);
        assert_eq!(cs.len(), 1);
        assert_eq!(
            bearer(r#"Bearer, resource_metadata="https://x/m""#).resource_metadata(),
            Some("https://x/m")
        );
        let cs = parse(r#"Basic, Bearer, scope="s", realm=r, Negotiate"#);
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[0].params().count(), 0);
        assert_eq!(params(&cs[1]), [("scope", "s"), ("realm", "r")]);
        assert!(cs[2].is_scheme("negotiate"));
    }

    #[test]
    fn drops_param_only_element_without_a_challenge() {
        let cs = parse(r#"realm="x", Bearer scope="s""#);
        assert_eq!(cs.len(), 1);
        assert_eq!(params(&cs[0]), [("scope", "s")]);
        // Does not attach across field values either.
        let cs = parse_all(&headers(&[b"Bearer", br#"scope="s""#]));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].params().count(), 0);
    }

    #[test]
    fn accepts_single_quoted_values() {
        let b = bearer("Bearer scope='a b', realm='r'");
        assert_eq!(b.scope(), Some("a b"));
        assert_eq!(b.realm(), Some("r"));
        // Without a closing quote before the comma the value is read as a token.
        let cs = parse("Bearer scope='a, realm=r'");
        assert_eq!(params(&cs[0]), [("scope", "'a"), ("realm", "r'")]);
    }

    #[test]
    fn accepts_empty_values() {
        let cs = parse(r#"Bearer realm="", scope='', error="#);
        assert_eq!(
            params(&cs[0]),
            [("realm", ""), ("scope", ""), ("error", "")]
        );
        assert_eq!(
            bearer(r#"Bearer error="""#).error(),
            Some(&BearerError::Other(String::new()))
        );
    }

    #[test]
    fn unterminated_quote_takes_the_rest() {
        let cs = parse(r#"Bearer realm="abc, scope=\"x"#);
        assert_eq!(cs.len(), 1);
        assert_eq!(params(&cs[0]), [("realm", r#"abc, scope="x"#)]);
        assert_eq!(parse(r#"Bearer realm=""#)[0].param("realm"), Some(""));
        assert_eq!(parse(r#"Bearer realm="a\"#)[0].param("realm"), Some("a"));
    }

    #[test]
    fn skips_trailing_commas_and_empty_elements() {
        let cs = parse(r#", ,Bearer realm="r" , , scope=s,, , "#);
        assert_eq!(cs.len(), 1);
        assert_eq!(params(&cs[0]), [("realm", "r"), ("scope", "s")]);
        assert!(parse("").is_empty());
        assert!(parse(" , ,\t,").is_empty());
    }

    #[test]
    fn tolerates_missing_commas() {
        let cs = parse(r#"Bearer realm="r" scope="s" Basic realm="b""#);
        assert_eq!(cs.len(), 2);
        assert_eq!(params(&cs[0]), [("realm", "r"), ("scope", "s")]);
        assert_eq!(params(&cs[1]), [("realm", "b")]);
    }

    #[test]
    fn skips_unparsable_elements() {
        let cs = parse(r#""junk, \"x", Bearer scope=s, =oops, @, realm=r"#);
        assert_eq!(cs.len(), 1);
        assert_eq!(params(&cs[0]), [("scope", "s"), ("realm", "r")]);
    }

    #[test]
    fn keeps_unquoted_urls_whole() {
        let b = bearer("Bearer resource_metadata=https://x/.well-known/oauth-protected-resource");
        assert_eq!(
            b.resource_metadata(),
            Some("https://x/.well-known/oauth-protected-resource")
        );
    }

    #[test]
    fn first_duplicate_param_wins() {
        let value = r#"Bearer resource_metadata="https://first/secret-a", scope=s, Resource_Metadata="https://second/secret-b", resource_metadata=third"#;
        let (cs, lines) = logged(|| parse(value));
        assert_eq!(
            params(&cs[0]),
            [
                ("resource_metadata", "https://first/secret-a"),
                ("scope", "s")
            ]
        );
        assert_eq!(
            bearer(value).resource_metadata(),
            Some("https://first/secret-a")
        );
        let warnings: Vec<_> = lines.iter().filter(|l| l.starts_with("WARN")).collect();
        assert_eq!(warnings.len(), 1, "{lines:?}");
        assert!(warnings[0].contains("resource_metadata"), "{lines:?}");
        assert!(!warnings[0].contains("secret"), "value leaked: {lines:?}");
        assert!(!warnings[0].contains("third"), "value leaked: {lines:?}");
    }

    #[test]
    fn recognises_bearer_error_codes() {
        let cases = [
            (
                r#"Bearer error="invalid_token""#,
                Some(BearerError::InvalidToken),
            ),
            (
                r#"Bearer error="insufficient_scope", scope="a""#,
                Some(BearerError::InsufficientScope),
            ),
            (
                "Bearer error=invalid_request",
                Some(BearerError::InvalidRequest),
            ),
            (
                r#"Bearer error="Invalid_Token""#,
                Some(BearerError::InvalidToken),
            ),
            (
                r#"Bearer error="use_dpop_nonce""#,
                Some(BearerError::Other("use_dpop_nonce".to_owned())),
            ),
            (r#"Bearer realm="r""#, None),
            ("Bearer", None),
        ];
        for (value, expected) in cases {
            let b = bearer(value);
            assert_eq!(b.error(), expected.as_ref(), "{value}");
            assert_eq!(
                b.is_invalid_token(),
                expected == Some(BearerError::InvalidToken)
            );
            assert_eq!(
                b.is_insufficient_scope(),
                expected == Some(BearerError::InsufficientScope)
            );
        }
        assert_eq!(
            BearerError::InsufficientScope.to_string(),
            "insufficient_scope"
        );
        assert_eq!(BearerError::Other("x".to_owned()).as_str(), "x");
    }

    #[test]
    fn extracts_all_bearer_fields() {
        let b = bearer(
            r#"Bearer realm="mcp", error="invalid_token", error_description="expired", scope="a b", resource_metadata="https://x/m""#,
        );
        assert_eq!(b.realm(), Some("mcp"));
        assert!(b.is_invalid_token());
        assert_eq!(b.error_description(), Some("expired"));
        assert_eq!(b.scope(), Some("a b"));
        assert_eq!(b.resource_metadata(), Some("https://x/m"));
    }

    #[test]
    fn from_challenge_rejects_other_schemes() {
        for c in parse(r#"Basic realm="a", DPoP algs="ES256", Bearerish x=y"#) {
            assert_eq!(BearerChallenge::from_challenge(&c), None, "{c:?}");
        }
    }

    #[test]
    fn parse_all_reads_every_field_in_order() {
        let map = headers(&[
            br#"Basic realm="a""#,
            br#"DPoP algs="ES256", bearer scope="first""#,
            br#"Bearer scope="second""#,
        ]);
        let schemes: Vec<_> = parse_all(&map)
            .iter()
            .map(|c| c.scheme().to_owned())
            .collect();
        assert_eq!(schemes, ["Basic", "DPoP", "bearer", "Bearer"]);
        let b = BearerChallenge::from_headers(&map).expect("bearer");
        assert_eq!(b.scope(), Some("first"));
        assert_eq!(BearerChallenge::from_headers(&HeaderMap::new()), None);
        assert_eq!(
            BearerChallenge::from_headers(&headers(&[b"Basic realm=x"])),
            None
        );
    }

    #[test]
    fn parse_all_decodes_non_utf8_lossily() {
        let map = headers(&[b"Bearer error_description=\"caf\xe9\", scope=\"\xc3\xa9\""]);
        let b = BearerChallenge::from_headers(&map).expect("bearer");
        assert_eq!(b.error_description(), Some("caf\u{fffd}"));
        assert_eq!(b.scope(), Some("\u{e9}"));
    }

    #[test]
    fn handles_non_ascii_input() {
        let cs = parse("Bearer scope=\"\u{e9}t\u{e9}\", r\u{e9}alm=x, \u{1f600}, Basic \u{e9}");
        assert!(!cs.is_empty());
        assert_eq!(cs[0].param("scope"), Some("\u{e9}t\u{e9}"));
        assert_eq!(
            parse("Bearer a=\"\\\u{1f600}\"")[0].param("a"),
            Some("\u{1f600}")
        );
    }

    #[test]
    fn ignores_oversized_values() {
        let padding = "x".repeat(MAX_VALUE_LEN);
        let value = format!("Bearer scope=\"{padding}\"");
        assert!(value.len() > MAX_VALUE_LEN);
        assert!(parse(&value).is_empty());
        let fits = format!("Bearer a={}", "x".repeat(MAX_VALUE_LEN - 9));
        assert_eq!(fits.len(), MAX_VALUE_LEN);
        assert_eq!(parse(&fits).len(), 1);
    }

    #[test]
    fn caps_challenges_and_params() {
        let many: Vec<String> = (0..MAX_CHALLENGES + 10).map(|i| format!("S{i}")).collect();
        let cs = parse(&many.join(", "));
        assert_eq!(cs.len(), MAX_CHALLENGES);
        assert_eq!(
            cs[MAX_CHALLENGES - 1].scheme(),
            format!("S{}", MAX_CHALLENGES - 1)
        );

        let fields: Vec<Vec<u8>> = many.iter().map(|s| s.clone().into_bytes()).collect();
        let fields: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        assert_eq!(parse_all(&headers(&fields)).len(), MAX_CHALLENGES);

        let ps: Vec<String> = (0..MAX_PARAMS + 10).map(|i| format!("p{i}={i}")).collect();
        let (cs, lines) = logged(|| parse(&format!("Bearer {}, Basic", ps.join(", "))));
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].params().count(), MAX_PARAMS);
        assert_eq!(cs[0].param("p0"), Some("0"));
        assert_eq!(cs[0].param(&format!("p{MAX_PARAMS}")), None);
        assert_eq!(lines.iter().filter(|l| l.starts_with("WARN")).count(), 1);
    }

    // ---- properties -------------------------------------------------------

    #[derive(Clone, Debug)]
    enum Value {
        Token(String),
        /// Quoted value; `true` escapes every character, not just `"` and `\`.
        Quoted(String, bool),
    }

    #[derive(Clone, Debug)]
    struct Param {
        name: String,
        value: Value,
        before_eq: String,
        after_eq: String,
        after_value: String,
        after_comma: String,
    }

    #[derive(Clone, Debug)]
    enum Body {
        Bare,
        Token68(String),
        Params(Vec<Param>),
    }

    #[derive(Clone, Debug)]
    struct Generated {
        scheme: String,
        space: String,
        body: Body,
        separator: String,
    }

    fn token_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}"
    }

    fn ows() -> impl Strategy<Value = String> {
        "[ \t]{0,2}"
    }

    fn value_strategy() -> impl Strategy<Value = Value> {
        prop_oneof![
            // A leading `'` would read as a single-quoted value, so not in first place.
            "[A-Za-z0-9!#$%&*+.^_`|~-][A-Za-z0-9!#$%&'*+.^_`|~-]{0,10}".prop_map(Value::Token),
            ("[ -~\t]{0,16}", any::<bool>()).prop_map(|(s, all)| Value::Quoted(s, all)),
            ("[a-z ,=\"\\\\']{0,16}", any::<bool>()).prop_map(|(s, all)| Value::Quoted(s, all)),
            ("\\PC{0,8}", any::<bool>()).prop_map(|(s, all)| Value::Quoted(s, all)),
        ]
    }

    fn param_strategy() -> impl Strategy<Value = Param> {
        (
            token_strategy(),
            value_strategy(),
            ows(),
            ows(),
            ows(),
            ows(),
        )
            .prop_map(
                |(name, value, before_eq, after_eq, after_value, after_comma)| Param {
                    name,
                    value,
                    before_eq,
                    after_eq,
                    after_value,
                    after_comma,
                },
            )
    }

    fn challenge_strategy() -> impl Strategy<Value = Generated> {
        let body = prop_oneof![
            Just(Body::Bare),
            "[A-Za-z0-9._~+/-]{1,12}={0,2}".prop_map(Body::Token68),
            prop::collection::vec(param_strategy(), 1..6).prop_map(Body::Params),
        ];
        (
            token_strategy(),
            " {1,2}",
            body,
            "[ \t]{0,2},([ \t]{0,2},)?[ \t]{0,2}",
        )
            .prop_map(|(scheme, space, body, separator)| Generated {
                scheme,
                space,
                body,
                separator,
            })
    }

    fn serialise(challenges: &[Generated]) -> String {
        let mut out = String::new();
        for (i, c) in challenges.iter().enumerate() {
            if i > 0 {
                out.push_str(&c.separator);
            }
            out.push_str(&c.scheme);
            match &c.body {
                Body::Bare => {}
                Body::Token68(t) => {
                    out.push_str(&c.space);
                    out.push_str(t);
                }
                Body::Params(ps) => {
                    out.push_str(&c.space);
                    for (j, p) in ps.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                            out.push_str(&p.after_comma);
                        }
                        out.push_str(&p.name);
                        out.push_str(&p.before_eq);
                        out.push('=');
                        out.push_str(&p.after_eq);
                        match &p.value {
                            Value::Token(t) => out.push_str(t),
                            Value::Quoted(s, all) => {
                                out.push('"');
                                for ch in s.chars() {
                                    if *all || ch == '"' || ch == '\\' {
                                        out.push('\\');
                                    }
                                    out.push(ch);
                                }
                                out.push('"');
                            }
                        }
                        out.push_str(&p.after_value);
                    }
                }
            }
        }
        out
    }

    fn expected_params(body: &Body) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        if let Body::Params(ps) = body {
            for p in ps {
                let name = p.name.to_ascii_lowercase();
                if out.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                let value = match &p.value {
                    Value::Token(t) | Value::Quoted(t, _) => t.clone(),
                };
                out.push((name, value));
            }
        }
        out
    }

    fn check_invariants(cs: &[Challenge]) {
        assert!(cs.len() <= MAX_CHALLENGES);
        for c in cs {
            assert!(!c.scheme().is_empty());
            assert!(c.params().count() <= MAX_PARAMS);
            let names: Vec<&str> = c.params().map(|(n, _)| n).collect();
            for (i, n) in names.iter().enumerate() {
                assert_eq!(*n, n.to_ascii_lowercase());
                assert!(!names[..i].contains(n), "duplicate {n}");
            }
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_strings(s in any::<String>()) {
            check_invariants(&parse(&s));
        }

        #[test]
        fn parse_never_panics_on_header_like_strings(
            s in "[A-Za-z=,;:/'\"\\\\ \t\u{0}-\u{1f}\u{7f}\u{e9}\u{1f600}]{0,64}"
        ) {
            check_invariants(&parse(&s));
        }

        #[test]
        fn parse_all_never_panics_on_arbitrary_bytes(
            fields in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4)
        ) {
            let mut map = HeaderMap::new();
            for f in &fields {
                if let Ok(v) = HeaderValue::from_bytes(f) {
                    map.append(WWW_AUTHENTICATE, v);
                }
            }
            check_invariants(&parse_all(&map));
            let _ = BearerChallenge::from_headers(&map);
        }

        #[test]
        fn serialised_challenges_parse_back(
            generated in prop::collection::vec(challenge_strategy(), 1..5),
            leading in "[ \t,]{0,3}",
            trailing in "[ \t,]{0,3}",
        ) {
            let value = format!("{leading}{}{trailing}", serialise(&generated));
            let parsed = parse(&value);
            prop_assert_eq!(parsed.len(), generated.len(), "{:?}", value);
            for (c, g) in parsed.iter().zip(&generated) {
                prop_assert_eq!(c.scheme(), g.scheme.as_str());
                let got: Vec<(String, String)> = c
                    .params()
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect();
                prop_assert_eq!(got, expected_params(&g.body), "{:?}", value);
                let token68 = match &g.body {
                    Body::Token68(t) => Some(t.as_str()),
                    _ => None,
                };
                prop_assert_eq!(c.token68(), token68);
            }
        }
    }
}
