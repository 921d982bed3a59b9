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

use crate::error::{ConfigError, Error, ErrorKind};
use crate::secret::ClientSecret;

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

/// How the client proves its identity to the token endpoint.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the request body.
    ClientSecretPost,
}

impl AuthMethod {
    /// The method's name as registered by RFC 7591 (`client_secret_basic`…).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The credentials of a pre-registered confidential client.
///
/// `Debug` shows the client id and the method, never the secret.
///
/// ```
/// use tower_client_credentials::{AuthMethod, Credentials};
///
/// let creds = Credentials::client_secret_basic("reporting-job", "s3cr3t")?;
/// assert_eq!(creds.client_id(), "reporting-job");
/// assert_eq!(creds.auth_method(), Some(AuthMethod::ClientSecretBasic));
/// assert!(!format!("{creds:?}").contains("s3cr3t"));
/// # Ok::<(), tower_client_credentials::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Credentials {
    client_id: String,
    auth: ClientAuth,
}

#[derive(Clone)]
enum ClientAuth {
    /// A client secret; the method is fixed, or (`None`) chosen from the server's metadata.
    Secret(ClientSecret, Option<AuthMethod>),
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
        Self::new(client_id.into(), ClientAuth::Secret(secret.into(), None))
    }

    /// A client id and secret sent with HTTP Basic authentication (the default method, RFC 6749
    /// §2.3.1). Both are form-urlencoded before base64, so secrets holding `+`, `:`, `%`, `/` or
    /// non-ASCII characters arrive intact.
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyClientId`] if `client_id` is empty.
    pub fn client_secret_basic(
        client_id: impl Into<String>,
        secret: impl Into<ClientSecret>,
    ) -> Result<Self, ConfigError> {
        Self::new(
            client_id.into(),
            ClientAuth::Secret(secret.into(), Some(AuthMethod::ClientSecretBasic)),
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
        Self::new(
            client_id.into(),
            ClientAuth::Secret(secret.into(), Some(AuthMethod::ClientSecretPost)),
        )
    }

    fn new(client_id: String, auth: ClientAuth) -> Result<Self, ConfigError> {
        if client_id.is_empty() {
            return Err(ConfigError::EmptyClientId);
        }
        Ok(Self { client_id, auth })
    }

    /// The client identifier.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// How these credentials authenticate, or `None` when the method is chosen from the
    /// authorization server's metadata ([`Credentials::client_secret`]).
    pub fn auth_method(&self) -> Option<AuthMethod> {
        match &self.auth {
            ClientAuth::Secret(_, method) => *method,
        }
    }

    /// The method to use with a server that lists `supported` methods (`None`: no list, so the
    /// RFC 8414 default, `client_secret_basic`, REFERENCE R27).
    pub(crate) fn method_for(&self, supported: Option<&[String]>) -> Result<AuthMethod, Error> {
        let listed =
            |m: AuthMethod| supported.is_none_or(|list| list.iter().any(|s| s == m.as_str()));
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

    /// Adds this client's authentication to a token request: exactly one carrier, a Basic header
    /// or body fields, never both (RFC 6749 §2.3).
    pub(crate) fn authenticate(&self, form: &mut Form, method: AuthMethod) -> Option<HeaderValue> {
        let ClientAuth::Secret(secret, _) = &self.auth;
        match method {
            AuthMethod::ClientSecretBasic => {
                let raw = format!(
                    "{}:{}",
                    form_encode(&self.client_id),
                    form_encode(secret.expose_secret())
                );
                let zeroize_raw = zeroize::Zeroizing::new(raw);
                let encoded = zeroize::Zeroizing::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(zeroize_raw.as_bytes())
                ));
                // Base64 output is always a valid header value.
                let mut value = HeaderValue::from_str(&encoded).ok()?;
                value.set_sensitive(true);
                Some(value)
            }
            AuthMethod::ClientSecretPost => {
                form.push("client_id", &self.client_id);
                form.push("client_secret", secret.expose_secret());
                None
            }
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field(
                "auth_method",
                &self
                    .auth_method()
                    .map_or("from metadata", AuthMethod::as_str),
            )
            .finish_non_exhaustive()
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

    fn basic_of(id: &str, secret: &str) -> String {
        let creds = Credentials::client_secret_basic(id, secret).unwrap();
        let mut form = Form::default();
        let header = creds
            .authenticate(&mut form, AuthMethod::ClientSecretBasic)
            .unwrap();
        assert!(header.is_sensitive());
        assert!(
            form.as_str().is_empty(),
            "basic auth must not add body credentials"
        );
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
        let mut form = Form::default();
        form.push("grant_type", "client_credentials");
        assert!(
            creds
                .authenticate(&mut form, AuthMethod::ClientSecretPost)
                .is_none()
        );
        assert_eq!(
            form.as_str(),
            "grant_type=client_credentials&client_id=app&client_secret=p%2Bw%20d"
        );
    }

    #[test]
    fn method_follows_metadata_unless_configured() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let auto = Credentials::client_secret("id", "s").unwrap();
        assert_eq!(
            auto.method_for(None).unwrap(),
            AuthMethod::ClientSecretBasic
        );
        let both = list(&["client_secret_post", "client_secret_basic"]);
        assert_eq!(
            auto.method_for(Some(&both)).unwrap(),
            AuthMethod::ClientSecretBasic
        );
        let post = list(&["client_secret_post"]);
        assert_eq!(
            auto.method_for(Some(&post)).unwrap(),
            AuthMethod::ClientSecretPost
        );
        assert!(auto.method_for(Some(&list(&["private_key_jwt"]))).is_err());
        let basic = Credentials::client_secret_basic("id", "s").unwrap();
        assert_eq!(
            basic.method_for(Some(&post)).unwrap(),
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
    fn debug_never_shows_the_secret() {
        for creds in [
            Credentials::client_secret_basic("id", "hunter2").unwrap(),
            Credentials::client_secret_post("id", "hunter2").unwrap(),
        ] {
            let text = format!("{creds:?} {creds:#?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("id"));
        }
    }
}
