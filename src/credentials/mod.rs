//! Client credentials and how they authenticate at the token endpoint.
//!
//! A token request is a grant (form parameters such as `grant_type`, `scope`, `resource`) plus
//! one client authentication. This module owns the authentication half: `client_secret_basic`
//! (the default, RFC 6749 §2.3.1) and `client_secret_post`.
//!
//! # Why not the `oauth2` crate
//!
//! `oauth2` 5.0 would cover the client-secret grants, but it rejects `expires_in` sent as a
//! string (seen from Entra ID v1, Apigee and others), has no `private_key_jwt`, jwt-bearer or token
//! exchange (which this crate needs next), keeps no cap on response size, and encodes a space in
//! Basic credentials as `+`, which some servers decode literally. One small token-endpoint client
//! on `http` + `serde` serves every grant the same way instead.

use std::fmt;

use base64::Engine as _;
use http::HeaderValue;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::error::{ConfigError, Error, ErrorKind, escape_for_message};
use crate::secret::{Assertion, ClientSecret};

/// Characters left as they are by `application/x-www-form-urlencoded` encoding; everything else is
/// percent-encoded (a space as `%20`, which every form decoder understands, RFC 6749 §2.3.1 and
/// REFERENCE R46).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Form-urlencodes one name or value.
pub(crate) fn form_encode(value: &str) -> impl fmt::Display + '_ {
    utf8_percent_encode(value, FORM)
}

mod assertion;

pub(crate) use self::assertion::check as check_assertion;
pub use self::assertion::{AssertionAudience, AssertionContext, ClientAssertion};

/// How the client proves its identity to the token endpoint.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the request body.
    ClientSecretPost,
    /// `private_key_jwt`: a JWT client assertion (RFC 7523 §2.2).
    PrivateKeyJwt,
    /// `none`: no client authentication (a jwt-bearer grant whose assertion identifies the
    /// workload, for example).
    None,
}

impl AuthMethod {
    /// The method's name as registered by RFC 7591 (`client_secret_basic`…).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The grant type of token requests.
#[derive(Clone, Debug)]
enum Grant {
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 7523 §2.1: a JWT (a workload identity token, an ID-JAG…) exchanged for an access token.
    JwtBearer(ClientAssertion),
}

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const JWT_CLIENT_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What a machine client presents to the token endpoint: a grant and a client authentication.
///
/// `Debug` shows the client id and the kinds, never a secret, key or assertion.
///
/// ```
/// use tower_client_credentials::{AuthMethod, Credentials};
///
/// let creds = Credentials::client_secret_basic("reporting-job", "s3cr3t")?;
/// assert_eq!(creds.client_id(), Some("reporting-job"));
/// assert_eq!(creds.auth_method(), Some(AuthMethod::ClientSecretBasic));
/// assert!(!format!("{creds:?}").contains("s3cr3t"));
/// # Ok::<(), tower_client_credentials::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Credentials {
    client_id: Option<String>,
    auth: ClientAuth,
    grant: Grant,
    send_client_id: bool,
}

#[derive(Clone)]
enum ClientAuth {
    /// A client secret; the method is fixed, or (`None`) chosen from the server's metadata.
    Secret(SecretSource, Option<AuthMethod>),
    /// `private_key_jwt`.
    Assertion(ClientAssertion),
    /// No client authentication.
    None,
}

#[derive(Clone)]
enum SecretSource {
    Static(ClientSecret),
    File(Arc<WatchedFile<ClientSecret>>),
}

/// A value kept in a file (a mounted Kubernetes secret, a secret manager's agent, a rotated key),
/// read again whenever the file's modification time changes.
pub(crate) struct WatchedFile<T> {
    path: PathBuf,
    /// What the file holds, for error messages ("client secret", "private key").
    what: &'static str,
    cached: Mutex<Option<(SystemTime, T)>>,
}

impl<T> fmt::Debug for WatchedFile<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The path and what it holds; never the value.
        f.debug_struct("WatchedFile")
            .field("path", &self.path)
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl<T: Clone> WatchedFile<T> {
    pub(crate) fn new(path: PathBuf, what: &'static str) -> Self {
        Self {
            path,
            what,
            cached: Mutex::new(None),
        }
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The current value: the cached one while the file is unchanged, else `parse` of its bytes
    /// (which are wiped from memory afterwards).
    pub(crate) async fn current(
        &self,
        parse: impl FnOnce(&[u8]) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let unreadable = |e: std::io::Error| {
            Error::with_source(
                ErrorKind::Credentials,
                format!(
                    "could not read the {} file {}",
                    self.what,
                    escape_for_message(&self.path.display().to_string())
                ),
                e,
            )
        };
        let modified = tokio::fs::metadata(&self.path)
            .await
            .and_then(|m| m.modified())
            .map_err(unreadable)?;
        if let Some((seen, value)) = &*self.cached.lock().unwrap_or_else(PoisonError::into_inner)
            && *seen == modified
        {
            return Ok(value.clone());
        }
        let bytes = zeroize::Zeroizing::new(tokio::fs::read(&self.path).await.map_err(unreadable)?);
        let value = parse(&bytes)?;
        tracing::debug!(path = %self.path.display(), "{} (re)loaded from file", self.what);
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((modified, value.clone()));
        Ok(value)
    }
}

impl SecretSource {
    async fn current(&self) -> Result<ClientSecret, Error> {
        let file = match self {
            SecretSource::Static(secret) => return Ok(secret.clone()),
            SecretSource::File(file) => file,
        };
        file.current(|bytes| {
            let text = std::str::from_utf8(bytes).map_err(|_| {
                Error::new(
                    ErrorKind::Credentials,
                    "the client secret file is not UTF-8",
                )
            })?;
            let secret = text.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                return Err(Error::new(
                    ErrorKind::Credentials,
                    "the client secret file is empty",
                ));
            }
            Ok(ClientSecret::new(secret))
        })
        .await
    }
}

impl Credentials {
    /// A client id and secret, sent the way the authorization server's metadata asks:
    /// `client_secret_basic` unless its `token_endpoint_auth_methods_supported` lists
    /// `client_secret_post` and not `client_secret_basic` (REFERENCE R47, R48). Without metadata
    /// (a configured token endpoint) or without that list, Basic.
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyClientId`] if `client_id` is empty.
    pub fn client_secret(
        client_id: impl Into<String>,
        secret: impl Into<ClientSecret>,
    ) -> Result<Self, ConfigError> {
        Self::with_secret(client_id.into(), SecretSource::Static(secret.into()), None)
    }

    /// A client id and secret sent with HTTP Basic authentication (RFC 6749 §2.3.1). Both are
    /// form-urlencoded before base64, so secrets holding `+`, `:`, `%`, `/` or non-ASCII
    /// characters arrive intact.
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyClientId`] if `client_id` is empty.
    pub fn client_secret_basic(
        client_id: impl Into<String>,
        secret: impl Into<ClientSecret>,
    ) -> Result<Self, ConfigError> {
        Self::with_secret(
            client_id.into(),
            SecretSource::Static(secret.into()),
            Some(AuthMethod::ClientSecretBasic),
        )
    }

    /// A client id and secret sent in the request body (`client_secret_post`). RFC 6749 calls this
    /// NOT RECOMMENDED; use it for servers that accept nothing else.
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyClientId`] if `client_id` is empty.
    pub fn client_secret_post(
        client_id: impl Into<String>,
        secret: impl Into<ClientSecret>,
    ) -> Result<Self, ConfigError> {
        Self::with_secret(
            client_id.into(),
            SecretSource::Static(secret.into()),
            Some(AuthMethod::ClientSecretPost),
        )
    }

    /// A client id and a secret kept in a file, re-read whenever the file changes: a secret
    /// manager that rotates a mounted file needs no redeploy. A trailing newline is ignored. The
    /// method is chosen as for [`client_secret`](Self::client_secret).
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyClientId`] if `client_id` is empty. A missing or unreadable file is
    /// reported when a token is requested, as [`ErrorKind::Credentials`].
    pub fn client_secret_file(
        client_id: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let file = WatchedFile::new(path.into(), "client secret");
        Self::with_secret(client_id.into(), SecretSource::File(Arc::new(file)), None)
    }

    /// `private_key_jwt` client authentication (RFC 7523 §2.2) with a key the crate signs with:
    /// a fresh assertion for every token request (`iss` = `sub` = `client_id`, `aud` = the
    /// authorization server's issuer, 120 s, random `jti`; REFERENCE R49–R52). For options
    /// (audience, lifetime, `typ`, claims) use [`client_assertion`](Self::client_assertion) with
    /// [`ClientAssertion::signed`].
    ///
    /// ```
    /// use tower_client_credentials::{Credentials, PrivateKey};
    ///
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/p256.pkcs8.pem"));
    /// let key = PrivateKey::from_pem(pem)?.with_kid("2026-11");
    /// let credentials = Credentials::private_key_jwt("reporting-job", key)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyClientId`] if `client_id` is empty.
    #[cfg(feature = "private-key-jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "private-key-jwt")))]
    pub fn private_key_jwt(
        client_id: impl Into<String>,
        key: crate::jwt::PrivateKey,
    ) -> Result<Self, ConfigError> {
        Self::client_assertion(client_id, ClientAssertion::signed(key))
    }

    /// `private_key_jwt` client authentication (RFC 7523 §2.2) with assertions from `assertion`:
    /// signed by the crate ([`ClientAssertion::signed`]), a callback, a static JWT or a file.
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyClientId`] if `client_id` is empty.
    pub fn client_assertion(
        client_id: impl Into<String>,
        assertion: ClientAssertion,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            client_id: Some(non_empty(client_id.into())?),
            auth: ClientAuth::Assertion(assertion),
            grant: Grant::ClientCredentials,
            send_client_id: true,
        })
    }

    /// The jwt-bearer grant (RFC 7523 §2.1): each token request presents a JWT from `assertion`
    /// (a workload identity token, for instance) instead of client credentials. No client
    /// authentication unless added with
    /// [`with_client_authentication`](Self::with_client_authentication).
    pub fn jwt_bearer(assertion: ClientAssertion) -> Self {
        Self {
            client_id: None,
            auth: ClientAuth::None,
            grant: Grant::JwtBearer(assertion),
            send_client_id: true,
        }
    }

    /// A client identified by its id alone, with no authentication (`none`): for an IdP that takes
    /// public clients in the token exchange of [`cross_app_access`](Self::cross_app_access).
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyClientId`] if `client_id` is empty.
    pub fn public_client(client_id: impl Into<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            client_id: Some(non_empty(client_id.into())?),
            auth: ClientAuth::None,
            grant: Grant::ClientCredentials,
            send_client_id: true,
        })
    }

    /// Sets the client id sent with a jwt-bearer grant that has no client authentication.
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyClientId`] if `client_id` is empty.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Result<Self, ConfigError> {
        self.client_id = Some(non_empty(client_id.into())?);
        Ok(self)
    }

    /// Authenticates a jwt-bearer grant with the client id and authentication of `client`
    /// (a secret or an assertion); `client`'s own grant is ignored.
    pub fn with_client_authentication(mut self, client: Credentials) -> Self {
        self.client_id = client.client_id;
        self.auth = client.auth;
        self
    }

    /// Whether a `client_id` goes in the body beside a client assertion (default `true`: many
    /// servers expect it; RFC 7521 §4.2 allows it; REFERENCE R49, A3).
    pub fn send_client_id(mut self, send: bool) -> Self {
        self.send_client_id = send;
        self
    }

    fn with_secret(
        client_id: String,
        secret: SecretSource,
        method: Option<AuthMethod>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            client_id: Some(non_empty(client_id)?),
            auth: ClientAuth::Secret(secret, method),
            grant: Grant::ClientCredentials,
            send_client_id: true,
        })
    }

    /// The client identifier, if there is one (a jwt-bearer grant may have none).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// Refuses combinations that cannot work, before anything is sent.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if let Grant::JwtBearer(assertion) = &self.grant {
            if assertion.is_id_jag() && matches!(self.auth, ClientAuth::None) {
                return Err(ConfigError::MissingClientAuthentication);
            }
            if assertion.is_signed() && self.client_id.is_none() {
                return Err(ConfigError::MissingClientId);
            }
        }
        Ok(())
    }

    /// The grant's name: `client_credentials` or the jwt-bearer URN.
    pub(crate) fn grant_name(&self) -> &'static str {
        match self.grant {
            Grant::ClientCredentials => "client_credentials",
            Grant::JwtBearer(_) => "jwt-bearer",
        }
    }

    /// How these credentials authenticate, or `None` when the method is chosen from the
    /// authorization server's metadata ([`Credentials::client_secret`]).
    pub fn auth_method(&self) -> Option<AuthMethod> {
        match &self.auth {
            ClientAuth::Secret(_, method) => *method,
            ClientAuth::Assertion(_) => Some(AuthMethod::PrivateKeyJwt),
            ClientAuth::None => Some(AuthMethod::None),
        }
    }

    /// The method to use with a server that lists `supported` methods and `signing` algorithms
    /// (`None`: no list, so the RFC 8414 default applies, REFERENCE R27).
    pub(crate) fn method_for(
        &self,
        supported: Option<&[String]>,
        signing: Option<&[String]>,
    ) -> Result<AuthMethod, Error> {
        let listed =
            |m: AuthMethod| supported.is_none_or(|list| list.iter().any(|s| s == m.as_str()));
        #[cfg(feature = "private-key-jwt")]
        if let ClientAuth::Assertion(assertion) = &self.auth
            && let (Some(alg), Some(signing)) = (assertion.signing_algorithm(), signing)
            && !signing.iter().any(|s| s == alg.as_str())
        {
            // REFERENCE R51: refuse before any request rather than be refused.
            return Err(Error::new(
                ErrorKind::Discovery,
                format!(
                    "the authorization server accepts no {} client assertions",
                    alg.as_str()
                ),
            ));
        }
        #[cfg(not(feature = "private-key-jwt"))]
        let _ = signing;
        match self.auth_method() {
            Some(method) => {
                if !listed(method) {
                    tracing::warn!(auth_method = %method, "the authorization server does not list the configured method; using it anyway");
                }
                Ok(method)
            }
            None if listed(AuthMethod::ClientSecretBasic) => Ok(AuthMethod::ClientSecretBasic),
            None if listed(AuthMethod::ClientSecretPost) => Ok(AuthMethod::ClientSecretPost),
            None => Err(Error::new(
                ErrorKind::Discovery,
                "the authorization server supports neither client_secret_basic nor client_secret_post",
            )),
        }
    }

    fn context(&self, assertion: &ClientAssertion, to: &Destination<'_>) -> AssertionContext {
        let audience = match assertion.audience_mode() {
            AssertionAudience::Issuer => to.issuer,
            AssertionAudience::TokenEndpoint => to.token_endpoint,
        };
        AssertionContext {
            audience: audience.to_owned(),
            token_endpoint: to.token_endpoint.to_owned(),
            client_id: self.client_id.clone(),
            resource: to.resource.map(str::to_owned),
        }
    }

    /// Adds the grant's parameters (`grant_type`, and the assertion of a jwt-bearer grant). A
    /// fresh assertion for every call: never re-sent (REFERENCE R52).
    pub(crate) async fn grant(
        &self,
        form: &mut Form,
        to: &Destination<'_>,
    ) -> Result<Option<Assertion>, Error> {
        match &self.grant {
            Grant::ClientCredentials => {
                form.push("grant_type", "client_credentials");
                Ok(None)
            }
            Grant::JwtBearer(assertion) => {
                let ctx = self.context(assertion, to);
                let jwt = assertion.produce(ctx, SystemTime::now()).await?;
                form.push("grant_type", JWT_BEARER_GRANT);
                form.push("assertion", jwt.expose_secret());
                Ok(Some(jwt))
            }
        }
    }

    /// The token endpoint refused the grant's assertion for good: never present it again
    /// (REFERENCE R70).
    pub(crate) fn grant_refused(&self, assertion: &Assertion) {
        if let Grant::JwtBearer(source) = &self.grant {
            source.refused_by_server(assertion);
        }
    }

    /// Adds this client's authentication to a token request: exactly one carrier, a Basic header
    /// or body fields, never both (RFC 6749 §2.3).
    pub(crate) async fn authenticate(
        &self,
        form: &mut Form,
        method: AuthMethod,
        to: &Destination<'_>,
    ) -> Result<Option<HeaderValue>, Error> {
        let client_id = self.client_id.as_deref().unwrap_or_default();
        match (&self.auth, method) {
            (ClientAuth::Secret(source, _), AuthMethod::ClientSecretPost) => {
                let secret = source.current().await?;
                form.push("client_id", client_id);
                form.push("client_secret", secret.expose_secret());
                Ok(None)
            }
            (ClientAuth::Secret(source, _), _) => {
                let secret = source.current().await?;
                let raw = zeroize::Zeroizing::new(format!(
                    "{}:{}",
                    form_encode(client_id),
                    form_encode(secret.expose_secret())
                ));
                let encoded = zeroize::Zeroizing::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
                ));
                // Base64 output is always a valid header value.
                let mut value = HeaderValue::from_str(&encoded).map_err(|_| {
                    Error::new(ErrorKind::Credentials, "could not build the Basic header")
                })?;
                value.set_sensitive(true);
                Ok(Some(value))
            }
            (ClientAuth::Assertion(assertion), _) => {
                let ctx = self.context(assertion, to);
                let jwt = assertion.produce(ctx, SystemTime::now()).await?;
                if self.send_client_id {
                    form.push("client_id", client_id);
                }
                form.push("client_assertion_type", JWT_CLIENT_ASSERTION);
                form.push("client_assertion", jwt.expose_secret());
                Ok(None)
            }
            (ClientAuth::None, _) => {
                if self.send_client_id
                    && let Some(id) = &self.client_id
                {
                    form.push("client_id", id);
                }
                Ok(None)
            }
        }
    }
}

/// Where a token request goes: what assertions are made out for.
pub(crate) struct Destination<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) token_endpoint: &'a str,
    pub(crate) resource: Option<&'a str>,
}

fn non_empty(client_id: String) -> Result<String, ConfigError> {
    if client_id.is_empty() {
        Err(ConfigError::EmptyClientId)
    } else {
        Ok(client_id)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Credentials");
        d.field("client_id", &self.client_id);
        d.field("grant", &self.grant_name());
        d.field(
            "auth_method",
            &self
                .auth_method()
                .map_or("from metadata", AuthMethod::as_str),
        );
        match &self.auth {
            ClientAuth::Secret(SecretSource::File(file), _) => {
                d.field("secret_file", &file.path());
            }
            ClientAuth::Assertion(assertion) => {
                d.field("assertion", assertion);
            }
            _ => {}
        }
        if let Grant::JwtBearer(assertion) = &self.grant {
            d.field("grant_assertion", assertion);
        }
        d.finish_non_exhaustive()
    }
}

/// An `application/x-www-form-urlencoded` body under construction. Wiped from memory when dropped,
/// as it may hold a client secret.
#[derive(Default)]
pub(crate) struct Form {
    body: zeroize::Zeroizing<String>,
}

impl Form {
    pub(crate) fn push(&mut self, name: &str, value: &str) {
        use fmt::Write as _;
        if !self.body.is_empty() {
            self.body.push('&');
        }
        // Writing to a String cannot fail.
        let _ = write!(self.body, "{}={}", form_encode(name), form_encode(value));
    }

    pub(crate) fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(self.body.as_bytes())
    }

    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn auth(creds: &Credentials, method: AuthMethod) -> (Option<HeaderValue>, String) {
        let mut form = Form::default();
        let header = block(creds.authenticate(
            &mut form,
            method,
            &Destination {
                issuer: "https://as",
                token_endpoint: "https://as/token",
                resource: None,
            },
        ))
        .unwrap();
        (header, form.as_str().to_owned())
    }

    fn basic_of(id: &str, secret: &str) -> String {
        let creds = Credentials::client_secret_basic(id, secret).unwrap();
        let (header, body) = auth(&creds, AuthMethod::ClientSecretBasic);
        let header = header.unwrap();
        assert!(header.is_sensitive());
        assert!(body.is_empty(), "basic auth must not add body credentials");
        header.to_str().unwrap().to_owned()
    }

    #[test]
    fn basic_form_encodes_both_parts_before_base64() {
        // REFERENCE R46: id `my client`, secret `p+s%w:rd`.
        let expected =
            base64::engine::general_purpose::STANDARD.encode("my%20client:p%2Bs%25w%3Ard");
        assert_eq!(
            basic_of("my client", "p+s%w:rd"),
            format!("Basic {expected}")
        );
    }

    #[test]
    fn basic_encodes_slash_and_non_ascii() {
        let expected = base64::engine::general_purpose::STANDARD.encode("id:a%2Fb%C3%A9");
        assert_eq!(basic_of("id", "a/bé"), format!("Basic {expected}"));
    }

    #[test]
    fn post_puts_both_fields_in_the_body_and_no_header() {
        let creds = Credentials::client_secret_post("app", "p+w d").unwrap();
        let (header, body) = auth(&creds, AuthMethod::ClientSecretPost);
        assert!(header.is_none());
        assert_eq!(body, "client_id=app&client_secret=p%2Bw%20d");
    }

    #[test]
    fn method_follows_metadata_unless_configured() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let auto = Credentials::client_secret("id", "s").unwrap();
        assert_eq!(
            auto.method_for(None, None).unwrap(),
            AuthMethod::ClientSecretBasic
        );
        let both = list(&["client_secret_post", "client_secret_basic"]);
        assert_eq!(
            auto.method_for(Some(&both), None).unwrap(),
            AuthMethod::ClientSecretBasic
        );
        let post = list(&["client_secret_post"]);
        assert_eq!(
            auto.method_for(Some(&post), None).unwrap(),
            AuthMethod::ClientSecretPost
        );
        assert!(
            auto.method_for(Some(&list(&["private_key_jwt"])), None)
                .is_err()
        );
        let basic = Credentials::client_secret_basic("id", "s").unwrap();
        assert_eq!(
            basic.method_for(Some(&post), None).unwrap(),
            AuthMethod::ClientSecretBasic
        );
    }

    #[test]
    fn empty_client_id_is_refused() {
        assert_eq!(
            Credentials::client_secret_basic("", "x").unwrap_err(),
            ConfigError::EmptyClientId
        );
    }

    #[test]
    fn secret_files_are_reread_when_they_change() {
        let dir = std::env::temp_dir().join(format!("tcc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        let creds = Credentials::client_secret_file("id", &path).unwrap();
        let mut form = Form::default();
        let err = block(creds.authenticate(
            &mut form,
            AuthMethod::ClientSecretPost,
            &Destination {
                issuer: "a",
                token_endpoint: "t",
                resource: None,
            },
        ))
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Credentials);
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(
            auth(&creds, AuthMethod::ClientSecretPost).1,
            "client_id=id&client_secret=first"
        );
        // A new modification time (set explicitly: file systems may keep coarse timestamps).
        std::fs::write(&path, "second").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(
            auth(&creds, AuthMethod::ClientSecretPost).1,
            "client_id=id&client_secret=second"
        );
        assert!(!format!("{creds:?}").contains("second"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn jwt_bearer_sends_the_assertion_and_no_client_secret() {
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ3In0.c2ln";
        let creds = Credentials::jwt_bearer(ClientAssertion::from_static(jwt))
            .with_client_id("w")
            .unwrap();
        let mut form = Form::default();
        let to = Destination {
            issuer: "https://as",
            token_endpoint: "https://as/token",
            resource: None,
        };
        block(creds.grant(&mut form, &to)).unwrap();
        let (header, auth_body) = auth(&creds, AuthMethod::None);
        assert!(header.is_none());
        assert_eq!(
            form.as_str(),
            format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}"
            )
        );
        assert_eq!(auth_body, "client_id=w");
        assert_eq!(creds.auth_method(), Some(AuthMethod::None));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        for creds in [
            Credentials::client_secret_basic("id", "hunter2").unwrap(),
            Credentials::client_secret_post("id", "hunter2").unwrap(),
            Credentials::client_assertion("id", ClientAssertion::from_static("a.hunter2.c"))
                .unwrap(),
        ] {
            let text = format!("{creds:?} {creds:#?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("id"));
        }
    }
}
