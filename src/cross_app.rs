//! Enterprise-managed authorization, or cross-app access (SEP-990, the ID-JAG profile of RFC 8693
//! and RFC 7523): an identity assertion from the enterprise IdP (an ID token from an earlier
//! single sign-on) is exchanged at the IdP for an Identity Assertion JWT Authorization Grant
//! (ID-JAG) for one authorization server, which is then redeemed there with the jwt-bearer grant.
//!
//! Use it as a credential kind ([`Credentials::cross_app_access`]): the layer does both exchanges,
//! keeps the ID-JAG while it lives (REFERENCE R74) and asks the IdP again when it expires. Or call
//! [`request_id_jag`] and [`redeem_id_jag`] yourself for flows the layer does not cover.
//!
//! The ID-JAG is treated as a secret and is only ever sent to the authorization server named in
//! its audience (R76); it never reaches the MCP server.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::Uri;
use serde_json::Value;

use crate::auth_client::AuthHttpClient;
use crate::credentials::{AssertionContext, ClientAssertion, Credentials, Destination, Form};
use crate::discovery::Discovery;
use crate::error::{ConfigError, Error, ErrorKind, escape_for_message};
use crate::secret::{AccessToken, Assertion};
use crate::target::parse_url;
use crate::token::{error_response, form_request, parse_response, post_form};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// The kind of identity assertion presented to the IdP (RFC 8693 `subject_token_type`).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubjectTokenType {
    /// An OpenID Connect ID token (the default).
    #[default]
    IdToken,
    /// A SAML 2.0 assertion.
    Saml2,
    /// A refresh token issued by the IdP, where it supports that.
    RefreshToken,
}

impl SubjectTokenType {
    fn urn(self) -> &'static str {
        match self {
            SubjectTokenType::IdToken => "urn:ietf:params:oauth:token-type:id_token",
            SubjectTokenType::Saml2 => "urn:ietf:params:oauth:token-type:saml2",
            SubjectTokenType::RefreshToken => "urn:ietf:params:oauth:token-type:refresh_token",
        }
    }
}

/// Where and how to get ID-JAGs from the enterprise IdP.
///
/// ```
/// use tower_client_credentials::cross_app::IdentityProvider;
/// use tower_client_credentials::{ClientAssertion, Credentials};
///
/// let idp = IdentityProvider::new(
///     "https://idp.example.com/oauth2/token",
///     ClientAssertion::from_file("/run/sso/id_token"), // the user's ID token from SSO
/// )?
/// .client(Credentials::client_secret("idp-client", "idp-secret")?);
/// let credentials = Credentials::cross_app_access(idp, Credentials::client_secret("mcp-client", "mcp-secret")?);
/// # Ok::<(), tower_client_credentials::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct IdentityProvider {
    endpoint: IdpEndpoint,
    subject: ClientAssertion,
    subject_type: SubjectTokenType,
    client: Option<Credentials>,
    scope: Option<String>,
    http: Option<AuthHttpClient>,
}

impl IdentityProvider {
    /// The IdP's token endpoint and where the subject token (the ID token) comes from.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] if the endpoint is not an absolute `http(s)` URL.
    pub fn new(token_endpoint: &str, subject: ClientAssertion) -> Result<Self, ConfigError> {
        Ok(Self {
            endpoint: IdpEndpoint::Known(parse_url(token_endpoint, "idp_token_endpoint")?),
            subject,
            subject_type: SubjectTokenType::default(),
            client: None,
            scope: None,
            http: None,
        })
    }

    /// An IdP known by its issuer: its token endpoint comes from its metadata (RFC 8414, then
    /// OpenID Connect discovery), fetched once at the first exchange. The issuer must match
    /// exactly (one trailing `/` tolerated) and every URL must be `https`, or loopback `http`
    /// after [`insecure_allow_http_loopback`](Self::insecure_allow_http_loopback).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] if the issuer is not an absolute `http(s)` URL.
    pub fn discover(issuer: &str, subject: ClientAssertion) -> Result<Self, ConfigError> {
        parse_url(issuer, "idp_issuer")?;
        Ok(Self {
            endpoint: IdpEndpoint::Issuer {
                issuer: issuer.to_owned(),
                allow_http_loopback: false,
                resolved: Arc::new(Mutex::new(None)),
            },
            subject,
            subject_type: SubjectTokenType::default(),
            client: None,
            scope: None,
            http: None,
        })
    }

    /// Allows plain `http` for a loopback IdP found by [`discover`](Self::discover) (local
    /// development and tests).
    pub fn insecure_allow_http_loopback(mut self) -> Self {
        if let IdpEndpoint::Issuer {
            allow_http_loopback,
            ..
        } = &mut self.endpoint
        {
            *allow_http_loopback = true;
        }
        self
    }

    /// The token endpoint: configured, or from the issuer's metadata (once).
    async fn token_endpoint(&self, http: &AuthHttpClient) -> Result<Uri, Error> {
        let (issuer, allow_http_loopback, resolved) = match &self.endpoint {
            IdpEndpoint::Known(uri) => return Ok(uri.clone()),
            IdpEndpoint::Issuer {
                issuer,
                allow_http_loopback,
                resolved,
            } => (issuer, *allow_http_loopback, resolved),
        };
        if let Some(uri) = resolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(uri);
        }
        let uri = Discovery::token_endpoint_of(http.clone(), issuer, allow_http_loopback).await?;
        *resolved.lock().unwrap_or_else(PoisonError::into_inner) = Some(uri.clone());
        Ok(uri)
    }

    /// How the client authenticates at the IdP (a secret, an assertion, or
    /// [`Credentials::public_client`] for a client id alone). Without it, no client
    /// authentication is sent.
    pub fn client(mut self, credentials: Credentials) -> Self {
        self.client = Some(credentials);
        self
    }

    /// The kind of subject token; an ID token by default.
    pub fn subject_token_type(mut self, kind: SubjectTokenType) -> Self {
        self.subject_type = kind;
        self
    }

    /// The scopes to ask the IdP to put in the ID-JAG (space-separated).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The HTTP client for the IdP; by default the layer's default client.
    pub fn http_client(mut self, client: AuthHttpClient) -> Self {
        self.http = Some(client);
        self
    }
}

/// Where the IdP's token endpoint comes from.
#[derive(Clone, Debug)]
enum IdpEndpoint {
    Known(Uri),
    Issuer {
        issuer: String,
        allow_http_loopback: bool,
        resolved: Arc<Mutex<Option<Uri>>>,
    },
}

impl fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityProvider")
            .field("token_endpoint", &self.endpoint)
            .field("subject", &self.subject)
            .field("subject_type", &self.subject_type)
            .field("client", &self.client)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// An Identity Assertion JWT Authorization Grant, as the IdP issued it.
#[derive(Clone, Debug)]
pub struct IdJag {
    /// The ID-JAG itself (a JWT; a secret, never sent to the MCP server).
    pub assertion: Assertion,
    /// How long the IdP says it lives, if it said.
    pub expires_in: Option<Duration>,
    /// The scope the IdP granted, when narrower than asked.
    pub scope: Option<String>,
}

/// Exchanges the IdP's identity assertion for an ID-JAG for the authorization server `audience`
/// (its issuer identifier) and the protected resource `resource` (RFC 8693 §2.1, REFERENCE R71,
/// R72). `resource` is always sent (A13).
///
/// # Errors
///
/// The IdP's OAuth error ([`ErrorKind::TokenEndpoint`]), a response that is not an ID-JAG
/// ([`ErrorKind::TokenResponse`]), or an unusable subject token ([`ErrorKind::Assertion`]).
pub async fn request_id_jag(
    idp: &IdentityProvider,
    audience: &str,
    resource: Option<&str>,
) -> Result<IdJag, Error> {
    let http = idp.http.clone().unwrap_or_default();
    let token_endpoint = idp.token_endpoint(&http).await?;
    let endpoint = token_endpoint.to_string();
    let subject = idp
        .subject
        .produce(
            AssertionContext {
                audience: endpoint.clone(),
                token_endpoint: endpoint.clone(),
                client_id: idp
                    .client
                    .as_ref()
                    .and_then(|c| c.client_id().map(str::to_owned)),
                resource: resource.map(str::to_owned),
            },
            SystemTime::now(),
        )
        .await?;
    let mut form = Form::default();
    form.push("grant_type", TOKEN_EXCHANGE);
    form.push("requested_token_type", ID_JAG);
    form.push("audience", audience);
    if let Some(resource) = resource {
        form.push("resource", resource);
    }
    if let Some(scope) = &idp.scope {
        form.push("scope", scope);
    }
    form.push("subject_token", subject.expose_secret());
    form.push("subject_token_type", idp.subject_type.urn());
    let auth = match &idp.client {
        Some(client) => {
            let method = client.method_for(None, None)?;
            let to = Destination {
                issuer: &endpoint,
                token_endpoint: &endpoint,
                resource,
            };
            client.authenticate(&mut form, method, &to).await?
        }
        None => None,
    };
    let request = form_request(&token_endpoint, form, auth);
    let (status, headers, body) = post_form(&http, request, "the IdP token endpoint").await?;
    if status != http::StatusCode::OK {
        return Err(error_response(status, &headers, &body));
    }
    parse_id_jag(&body)
}

fn parse_id_jag(body: &[u8]) -> Result<IdJag, Error> {
    let bad = |what: &str| {
        Error::new(
            ErrorKind::TokenResponse,
            format!("the IdP's token exchange response {what}"),
        )
    };
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad("is not a JSON object"));
    };
    match object.get("issued_token_type").and_then(Value::as_str) {
        Some(ID_JAG) => {}
        Some(other) => {
            return Err(bad(&format!(
                "issued a {} instead of an ID-JAG",
                escape_for_message(other)
            )));
        }
        None => return Err(bad("has no issued_token_type")),
    }
    match object.get("token_type").and_then(Value::as_str) {
        Some(token_type) if token_type.eq_ignore_ascii_case("N_A") => {}
        Some(_) => return Err(bad("has a token_type other than N_A")),
        None => return Err(bad("has no token_type")),
    }
    let assertion = object
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("has no ID-JAG in access_token"))?;
    crate::credentials::check_assertion(&Assertion::new(assertion), SystemTime::now())?;
    let expires_in = object
        .get("expires_in")
        .and_then(Value::as_u64)
        .map(Duration::from_secs);
    Ok(IdJag {
        assertion: Assertion::new(assertion),
        expires_in,
        scope: object
            .get("scope")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Redeems an ID-JAG at the authorization server's token endpoint with the jwt-bearer grant,
/// authenticating with `client` (REFERENCE R73), and returns the access token and its lifetime.
/// `issuer` is the authorization server's issuer identifier: the audience of client assertions.
///
/// # Errors
///
/// The authorization server's OAuth error, or an unusable token response.
pub async fn redeem_id_jag(
    http: &AuthHttpClient,
    issuer: &str,
    token_endpoint: &str,
    id_jag: &IdJag,
    client: &Credentials,
    resource: Option<&str>,
    scope: Option<&str>,
) -> Result<(AccessToken, Option<Duration>), Error> {
    let uri = parse_url(token_endpoint, "token_endpoint")
        .map_err(|e| Error::new(ErrorKind::Credentials, e.to_string()))?;
    let mut form = Form::default();
    form.push("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
    form.push("assertion", id_jag.assertion.expose_secret());
    if let Some(scope) = scope {
        form.push("scope", scope);
    }
    if let Some(resource) = resource {
        form.push("resource", resource);
    }
    let method = client.method_for(None, None)?;
    let to = Destination {
        issuer,
        token_endpoint,
        resource,
    };
    let auth = client.authenticate(&mut form, method, &to).await?;
    let (status, headers, body) =
        post_form(http, form_request(&uri, form, auth), "the token endpoint").await?;
    let parsed = parse_response(status, &headers, &body)?;
    Ok((parsed.token, parsed.expires_in))
}

/// The ID-JAG source behind [`Credentials::cross_app_access`]: asks the IdP when there is no live
/// ID-JAG for the audience, and reuses a live one otherwise (REFERENCE R74).
pub(crate) struct IdJagSource {
    idp: IdentityProvider,
    cached: Mutex<Option<(String, SystemTime, Assertion)>>,
}

/// An ID-JAG this close to expiry is not presented again.
const ID_JAG_MARGIN: Duration = Duration::from_secs(30);

impl IdJagSource {
    pub(crate) fn new(idp: IdentityProvider) -> Self {
        Self {
            idp,
            cached: Mutex::new(None),
        }
    }

    /// Drops the cached ID-JAG (the authorization server refused it).
    pub(crate) fn forget(&self) {
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub(crate) async fn produce(&self, ctx: &AssertionContext) -> Result<Assertion, Error> {
        let now = SystemTime::now();
        if let Some((audience, until, assertion)) =
            &*self.cached.lock().unwrap_or_else(PoisonError::into_inner)
            && *audience == ctx.audience
            && now + ID_JAG_MARGIN < *until
        {
            return Ok(assertion.clone());
        }
        let id_jag = request_id_jag(&self.idp, &ctx.audience, ctx.resource.as_deref()).await?;
        // Without a lifetime from the IdP, use it once.
        let until = now + id_jag.expires_in.unwrap_or(Duration::ZERO);
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((ctx.audience.clone(), until, id_jag.assertion.clone()));
        Ok(id_jag.assertion)
    }
}

impl fmt::Debug for IdJagSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdJagSource")
            .field("idp", &self.idp)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Cross-app access (SEP-990): ID-JAGs from the enterprise IdP, redeemed with the jwt-bearer
    /// grant at the MCP server's authorization server, authenticating there with `client` (a
    /// confidential client is required, REFERENCE R77).
    pub fn cross_app_access(idp: IdentityProvider, client: Credentials) -> Credentials {
        let source = ClientAssertion::id_jag(IdJagSource::new(idp));
        Credentials::jwt_bearer(source).with_client_authentication(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256","typ":"oauth-id-jag+jwt"}"#),
            b64(claims),
            b64("sig")
        )
    }

    #[test]
    fn id_jag_responses_are_validated() {
        let ok = format!(
            r#"{{"issued_token_type":"{ID_JAG}","access_token":"{}","token_type":"N_A","expires_in":300}}"#,
            jwt(r#"{"exp":4000000000}"#)
        );
        let parsed = parse_id_jag(ok.as_bytes()).unwrap();
        assert_eq!(parsed.expires_in, Some(Duration::from_secs(300)));
        for bad in [
            r#"{"issued_token_type":"urn:ietf:params:oauth:token-type:access_token","access_token":"a.b.c","token_type":"N_A"}"#.to_owned(),
            r#"{"access_token":"a.b.c","token_type":"N_A"}"#.to_owned(),
            format!(r#"{{"issued_token_type":"{ID_JAG}","access_token":"{}","token_type":"Bearer"}}"#, jwt("{}")),
            format!(r#"{{"issued_token_type":"{ID_JAG}","token_type":"N_A"}}"#),
            format!(r#"{{"issued_token_type":"{ID_JAG}","access_token":"{}"}}"#, jwt("{}")),
            "not json".to_owned(),
        ] {
            assert_eq!(parse_id_jag(bad.as_bytes()).unwrap_err().kind(), ErrorKind::TokenResponse, "{bad}");
        }
    }
}
