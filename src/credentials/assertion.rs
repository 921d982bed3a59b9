//! Where JWT assertions come from: a key the crate signs with, a callback that is handed the
//! audience (workload identity providers, a KMS, a sidecar), a static JWT, or a file re-read for
//! every token request (a Kubernetes projected service-account token, which rotates on disk).
//!
//! The same sources serve client authentication (`private_key_jwt`, RFC 7523 §2.2) and the
//! jwt-bearer grant (RFC 7523 §2.1). Assertions that arrive ready-made are checked locally before
//! use: exactly one JWT, not expired (REFERENCE R53, R70), so an expired token on disk fails fast
//! with no request.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

#[cfg(feature = "private-key-jwt")]
use super::WatchedFile;
use crate::error::{BoxError, Error, ErrorKind, escape_for_message};
use crate::secret::Assertion;

/// What an assertion is for, handed to callbacks: the audience the crate computed and where the
/// assertion will be sent.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AssertionContext {
    /// The `aud` the assertion should carry: the authorization server's issuer by default, or the
    /// token endpoint URL with [`AssertionAudience::TokenEndpoint`].
    pub audience: String,
    /// The token endpoint the assertion will be sent to.
    pub token_endpoint: String,
    /// The client identifier, when one is configured.
    pub client_id: Option<String>,
    /// The protected resource the token is for (the RFC 8707 `resource` value), when known.
    pub resource: Option<String>,
}

/// Which `aud` a client assertion carries.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AssertionAudience {
    /// The authorization server's issuer identifier, byte for byte from its metadata (RFC 10070,
    /// REFERENCE R50). The default.
    #[default]
    Issuer,
    /// The token endpoint URL, for servers that still require it (Microsoft Entra ID, Spring's
    /// default converter; REFERENCE A2, P14).
    TokenEndpoint,
}

type Callback = dyn Fn(AssertionContext) -> Pin<Box<dyn Future<Output = Result<Assertion, BoxError>> + Send>>
    + Send
    + Sync;

#[derive(Clone)]
enum Kind {
    #[cfg(feature = "private-key-jwt")]
    Signed(Arc<Signer>),
    Callback(Arc<Callback>),
    IdJag(Arc<crate::cross_app::IdJagSource>),
    Static(Assertion),
    File(PathBuf),
}

/// A source of JWT assertions.
///
/// ```
/// use tower_client_credentials::{Assertion, ClientAssertion};
///
/// // A workload identity token minted by someone else, for the audience the crate asks for.
/// let from_provider = ClientAssertion::callback(|ctx| async move {
///     let jwt = format!("token-for-{}", ctx.audience); // call your identity provider here
///     Ok(Assertion::new(jwt))
/// });
/// // A Kubernetes projected service-account token, re-read for every token request.
/// let from_disk = ClientAssertion::from_file("/var/run/secrets/tokens/mcp-token");
/// # let _ = (from_provider, from_disk);
/// ```
#[derive(Clone)]
pub struct ClientAssertion {
    kind: Kind,
    audience: AssertionAudience,
    /// The last ready-made assertion the authorization server refused; shared by clones.
    refused: Arc<Mutex<Option<Assertion>>>,
}

impl ClientAssertion {
    /// Assertions from an async callback, called for every token request with the audience the
    /// crate computed. The callback's error becomes an [`ErrorKind::Assertion`] error.
    pub fn callback<F, Fut>(callback: F) -> Self
    where
        F: Fn(AssertionContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Assertion, BoxError>> + Send + 'static,
    {
        let callback: Arc<Callback> = Arc::new(move |ctx| Box::pin(callback(ctx)));
        Self::from_kind(Kind::Callback(callback))
    }

    /// One fixed assertion. It is checked before every use and refused locally once expired.
    pub fn from_static(assertion: impl Into<Assertion>) -> Self {
        Self::from_kind(Kind::Static(assertion.into()))
    }

    /// An assertion read from `path` for every token request (surrounding whitespace trimmed),
    /// so a token that rotates on disk is always current.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self::from_kind(Kind::File(path.into()))
    }

    /// Assertions the crate signs with `key`, a fresh one (new `jti`, `iat`, `exp`) for every
    /// token request: `iss` = `sub` = the client id, `aud` = the authorization server's issuer
    /// (REFERENCE R50–R52). See [`lifetime`](Self::lifetime), [`header_type`](Self::header_type)
    /// and [`extra_claims`](Self::extra_claims).
    #[cfg(feature = "private-key-jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "private-key-jwt")))]
    pub fn signed(key: crate::jwt::PrivateKey) -> Self {
        Self::signed_with(SigningKey::Fixed(key))
    }

    /// Assertions signed with the private key in the file at `path` (PEM, DER or JWK, detected
    /// from the content), re-read whenever the file's modification time changes: a key rotated by
    /// a secret manager is picked up with no restart. A missing or unusable file fails the token
    /// request with [`ErrorKind::Credentials`] and nothing is sent.
    #[cfg(feature = "private-key-jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "private-key-jwt")))]
    pub fn signed_from_file(path: impl Into<PathBuf>) -> Self {
        Self::signed_with(SigningKey::File(Arc::new(WatchedFile::new(
            path.into(),
            "private key",
        ))))
    }

    #[cfg(feature = "private-key-jwt")]
    fn signed_with(key: SigningKey) -> Self {
        Self::from_kind(Kind::Signed(Arc::new(Signer {
            key,
            key_id: None,
            identity: None,
            lifetime: crate::jwt::DEFAULT_ASSERTION_LIFETIME,
            typ: crate::jwt::TYP_CLIENT_AUTHENTICATION.to_owned(),
            extra: None,
        })))
    }

    /// For signed assertions: the `kid` header, replacing the key's own. Other sources ignore it.
    #[cfg(feature = "private-key-jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "private-key-jwt")))]
    pub fn key_id(self, kid: impl Into<String>) -> Self {
        let kid = kid.into();
        self.map_signer(|s| s.key_id = Some(kid))
    }

    /// For signed assertions: `iss` and `sub` other than the client id, for servers that register
    /// clients under another name. Other sources ignore it.
    #[cfg(feature = "private-key-jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "private-key-jwt")))]
    pub fn identity(self, issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        let identity = (issuer.into(), subject.into());
        self.map_signer(|s| s.identity = Some(identity))
    }

    /// For [`signed`](Self::signed) assertions: how long each is valid (default 120 s). Other
    /// sources ignore it.
    #[cfg(feature = "private-key-jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "private-key-jwt")))]
    pub fn lifetime(self, lifetime: Duration) -> Self {
        self.map_signer(|s| s.lifetime = lifetime)
    }

    /// For [`signed`](Self::signed) assertions: the JWS `typ` header, `client-authentication+jwt`
    /// by default (RFC 10070); `"JWT"` for servers such as Microsoft Entra ID that want it
    /// (REFERENCE A4). Other sources ignore it.
    #[cfg(feature = "private-key-jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "private-key-jwt")))]
    pub fn header_type(self, typ: impl Into<String>) -> Self {
        let typ = typ.into();
        self.map_signer(|s| s.typ = typ)
    }

    /// For [`signed`](Self::signed) assertions: further claims. They never replace `iss`, `sub`,
    /// `aud`, `iat`, `exp`, `jti` or `nbf`. Other sources ignore them.
    #[cfg(feature = "private-key-jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "private-key-jwt")))]
    pub fn extra_claims(self, claims: serde_json::Map<String, serde_json::Value>) -> Self {
        self.map_signer(|s| s.extra = Some(claims))
    }

    #[cfg(feature = "private-key-jwt")]
    fn map_signer(mut self, change: impl FnOnce(&mut Signer)) -> Self {
        if let Kind::Signed(signer) = &mut self.kind {
            change(Arc::make_mut(signer));
        }
        self
    }

    pub(crate) fn id_jag(source: crate::cross_app::IdJagSource) -> Self {
        Self::from_kind(Kind::IdJag(Arc::new(source)))
    }

    fn from_kind(kind: Kind) -> Self {
        Self {
            kind,
            audience: AssertionAudience::default(),
            refused: Arc::new(Mutex::new(None)),
        }
    }

    /// The authorization server refused `assertion` (`invalid_grant`, `invalid_scope`,
    /// `unauthorized_client`): it is never presented again (REFERENCE R70). A ready-made one is
    /// refused locally until the source yields another; a refused ID-JAG is dropped, so the next
    /// request asks the IdP for a new one.
    pub(crate) fn refused_by_server(&self, assertion: &Assertion) {
        match &self.kind {
            Kind::IdJag(source) => source.forget(),
            _ => {
                *self.refused.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(assertion.clone())
            }
        }
    }

    /// A ready-made assertion, unless the server already refused this very one.
    fn unless_refused(&self, assertion: Assertion) -> Result<Assertion, Error> {
        let refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        if refused
            .as_ref()
            .is_some_and(|r| r.expose_secret() == assertion.expose_secret())
        {
            return Err(Error::new(
                ErrorKind::Assertion,
                "the authorization server refused this assertion; waiting for its source to provide another",
            ));
        }
        Ok(assertion)
    }

    /// Chooses the audience computed for this assertion (and handed to callbacks).
    pub fn audience(mut self, audience: AssertionAudience) -> Self {
        self.audience = audience;
        self
    }

    pub(crate) fn is_id_jag(&self) -> bool {
        matches!(self.kind, Kind::IdJag(_))
    }

    pub(crate) fn is_signed(&self) -> bool {
        #[cfg(feature = "private-key-jwt")]
        if let Kind::Signed(_) = self.kind {
            return true;
        }
        false
    }

    pub(crate) fn audience_mode(&self) -> AssertionAudience {
        self.audience
    }

    #[cfg(feature = "private-key-jwt")]
    pub(crate) fn signing_algorithm(&self) -> Option<crate::jwt::SigningAlgorithm> {
        match &self.kind {
            // A key file's algorithm is known only once it is read.
            Kind::Signed(signer) => match &signer.key {
                SigningKey::Fixed(key) => Some(key.algorithm()),
                SigningKey::File(_) => None,
            },
            _ => None,
        }
    }

    /// Produces one assertion for `ctx`: freshly signed, from the callback, or read and checked.
    pub(crate) async fn produce(
        &self,
        ctx: AssertionContext,
        now: SystemTime,
    ) -> Result<Assertion, Error> {
        match &self.kind {
            #[cfg(feature = "private-key-jwt")]
            Kind::Signed(signer) => signer.sign(&ctx, now).await,
            Kind::Callback(callback) => {
                let assertion = callback(ctx).await.map_err(|e| {
                    Error::with_source(ErrorKind::Assertion, "the assertion callback failed", e)
                })?;
                check(&assertion, now)?;
                self.unless_refused(assertion)
            }
            // Boxed: the exchange produces the IdP's subject token through this same function.
            Kind::IdJag(source) => Box::pin(source.produce(&ctx)).await,
            Kind::Static(assertion) => {
                check(assertion, now)?;
                self.unless_refused(assertion.clone())
            }
            Kind::File(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                    Error::with_source(
                        ErrorKind::Assertion,
                        format!(
                            "could not read the assertion file {}",
                            escape_for_message(&path.display().to_string())
                        ),
                        e,
                    )
                })?;
                let assertion = Assertion::new(text.trim());
                check(&assertion, now)?;
                self.unless_refused(assertion)
            }
        }
    }
}

impl fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientAssertion");
        match &self.kind {
            #[cfg(feature = "private-key-jwt")]
            Kind::Signed(signer) => d.field("signed", signer),
            Kind::Callback(_) => d.field("source", &"callback"),
            Kind::IdJag(source) => d.field("id_jag", source),
            Kind::Static(_) => d.field("source", &"static"),
            Kind::File(path) => d.field("file", path),
        };
        d.field("audience", &self.audience).finish()
    }
}

/// A key and the options of the assertions signed with it.
#[cfg(feature = "private-key-jwt")]
#[derive(Clone, Debug)]
struct Signer {
    key: SigningKey,
    key_id: Option<String>,
    identity: Option<(String, String)>,
    lifetime: Duration,
    typ: String,
    extra: Option<serde_json::Map<String, serde_json::Value>>,
}

#[cfg(feature = "private-key-jwt")]
#[derive(Clone, Debug)]
enum SigningKey {
    Fixed(crate::jwt::PrivateKey),
    File(Arc<WatchedFile<crate::jwt::PrivateKey>>),
}

/// A private key file: PEM, DER or JWK, detected from the content.
#[cfg(feature = "private-key-jwt")]
fn parse_key_file(bytes: &[u8]) -> Result<crate::jwt::PrivateKey, Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.trim_start().starts_with('{') => crate::jwt::PrivateKey::from_jwk(text),
        Ok(text) if text.contains("-----BEGIN") => crate::jwt::PrivateKey::from_pem(text),
        _ => crate::jwt::PrivateKey::from_der(bytes),
    }
    .map_err(|e| {
        Error::with_source(
            ErrorKind::Credentials,
            "the private key file is unusable",
            e,
        )
    })
}

#[cfg(feature = "private-key-jwt")]
impl Signer {
    async fn sign(&self, ctx: &AssertionContext, now: SystemTime) -> Result<Assertion, Error> {
        let client_id = ctx.client_id.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Credentials,
                "a signed assertion needs a client id",
            )
        })?;
        let mut key = match &self.key {
            SigningKey::Fixed(key) => key.clone(),
            SigningKey::File(file) => file.current(parse_key_file).await?,
        };
        if let Some(kid) = &self.key_id {
            key = key.with_kid(kid.as_str());
        }
        let mut claims = crate::jwt::AssertionClaims::new(client_id, &ctx.audience);
        if let Some((issuer, subject)) = &self.identity {
            claims.issuer = issuer;
            claims.subject = subject;
        }
        claims.lifetime = self.lifetime;
        claims.extra = self.extra.as_ref();
        crate::jwt::sign_assertion(&key, &claims, &self.typ, now)
            .map(Assertion::new)
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::Credentials,
                    "could not sign the client assertion",
                    e,
                )
            })
    }
}

/// Checks an assertion that arrived ready-made: one compact JWT whose `exp`, if present, is in the
/// future. The signature is not checked (the server does that); nothing is trusted from it.
pub(crate) fn check(assertion: &Assertion, now: SystemTime) -> Result<(), Error> {
    let jwt = assertion.expose_secret();
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::new(
            ErrorKind::Assertion,
            "the assertion is not a single compact JWT",
        ));
    };
    if !jwt
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
    {
        return Err(Error::new(
            ErrorKind::Assertion,
            "the assertion holds characters a JWT cannot",
        ));
    }
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .ok_or_else(|| Error::new(ErrorKind::Assertion, "the assertion's payload is not JSON"))?;
    if let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_f64) {
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        if exp <= now {
            return Err(Error::new(
                ErrorKind::Assertion,
                "the assertion has expired",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> Assertion {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        Assertion::new(format!(
            "{}.{}.{}",
            b64(r#"{"alg":"ES256"}"#),
            b64(claims),
            b64("sig")
        ))
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn ready_made_assertions_are_checked_locally() {
        assert!(check(&jwt(r#"{"exp":2000}"#), at(1000)).is_ok());
        assert!(
            check(&jwt(r#"{"sub":"x"}"#), at(1000)).is_ok(),
            "no exp: the server decides"
        );
        let expired = check(&jwt(r#"{"exp":1000}"#), at(1000)).unwrap_err();
        assert_eq!(expired.kind(), ErrorKind::Assertion);
        assert!(expired.to_string().contains("expired"));
        for bad in ["", "a.b", "a.b.c.d", "a b.c.d", "x.!!!.y"] {
            assert_eq!(
                check(&Assertion::new(bad), at(0)).unwrap_err().kind(),
                ErrorKind::Assertion,
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn callbacks_get_the_audience_and_errors_are_typed() {
        let source = ClientAssertion::callback(|ctx: AssertionContext| async move {
            if ctx.audience == "https://as.example" {
                Ok(jwt(r#"{"exp":4000000000}"#))
            } else {
                Err("wrong audience".into())
            }
        });
        let ctx = |aud: &str| AssertionContext {
            audience: aud.into(),
            token_endpoint: "https://as.example/token".into(),
            client_id: None,
            resource: None,
        };
        assert!(
            source
                .produce(ctx("https://as.example"), SystemTime::now())
                .await
                .is_ok()
        );
        let err = source
            .produce(ctx("https://other"), SystemTime::now())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Assertion);
    }

    #[tokio::test]
    async fn files_are_read_for_every_use() {
        let dir = std::env::temp_dir().join(format!("tcc-assertion-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let source = ClientAssertion::from_file(&path);
        let ctx = AssertionContext {
            audience: "a".into(),
            token_endpoint: "t".into(),
            client_id: None,
            resource: None,
        };
        assert_eq!(
            source.produce(ctx.clone(), at(0)).await.unwrap_err().kind(),
            ErrorKind::Assertion
        );
        std::fs::write(&path, format!("{}\n", jwt(r#"{"n":1}"#).expose_secret())).unwrap();
        let first = source.produce(ctx.clone(), at(0)).await.unwrap();
        std::fs::write(&path, jwt(r#"{"n":2}"#).expose_secret()).unwrap();
        let second = source.produce(ctx, at(0)).await.unwrap();
        assert_ne!(first.expose_secret(), second.expose_secret());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_refused_assertion_is_not_presented_again() {
        let ctx = AssertionContext {
            audience: "a".into(),
            token_endpoint: "t".into(),
            client_id: None,
            resource: None,
        };
        let source = ClientAssertion::from_static(jwt(r#"{"n":1}"#));
        let first = source.produce(ctx.clone(), at(0)).await.unwrap();
        source.clone().refused_by_server(&first);
        let err = source.produce(ctx.clone(), at(0)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Assertion);
        let callback = ClientAssertion::callback(|_| async { Ok(jwt(r#"{"n":2}"#)) });
        callback.refused_by_server(&first);
        assert!(
            callback.produce(ctx, at(0)).await.is_ok(),
            "another assertion is fine"
        );
    }

    #[cfg(feature = "private-key-jwt")]
    #[tokio::test]
    async fn signing_keys_in_files_are_reread_when_they_change() {
        let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
        let dir = std::env::temp_dir().join(format!("tcc-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("client.key");
        let source = ClientAssertion::signed_from_file(&path)
            .key_id("k1")
            .identity("svc-iss", "svc-sub");
        let ctx = AssertionContext {
            audience: "https://as".into(),
            token_endpoint: "https://as/token".into(),
            client_id: Some("client".into()),
            resource: None,
        };
        let header_alg = |jwt: &Assertion| {
            let header = jwt.expose_secret().split('.').next().unwrap().to_owned();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };
        let claims = |jwt: &Assertion| {
            let payload = jwt.expose_secret().split('.').nth(1).unwrap().to_owned();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };

        let missing = source
            .produce(ctx.clone(), SystemTime::now())
            .await
            .unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Credentials);

        std::fs::copy(keys.join("p256.pkcs8.pem"), &path).unwrap();
        let first = source
            .produce(ctx.clone(), SystemTime::now())
            .await
            .unwrap();
        assert_eq!(header_alg(&first)["alg"], "ES256");
        assert_eq!(header_alg(&first)["kid"], "k1");
        assert_eq!(claims(&first)["iss"], "svc-iss");
        assert_eq!(claims(&first)["sub"], "svc-sub");

        // Rotated to an Ed25519 key (DER), with a later modification time.
        std::fs::copy(keys.join("ed25519.pkcs8.der"), &path).unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let second = source
            .produce(ctx.clone(), SystemTime::now())
            .await
            .unwrap();
        assert_eq!(header_alg(&second)["alg"], "EdDSA");

        std::fs::write(&path, "not a key").unwrap();
        let later = SystemTime::now() + Duration::from_secs(10);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let err = source.produce(ctx, SystemTime::now()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Credentials);
        assert!(!format!("{source:?}").contains("BEGIN"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_hides_static_assertions() {
        let source = ClientAssertion::from_static(jwt(r#"{"secret":"hunter2"}"#));
        assert!(!format!("{source:?}").contains(jwt(r#"{"secret":"hunter2"}"#).expose_secret()));
    }
}
