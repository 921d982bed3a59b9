//! In-process test servers for `tower-client-credentials`.
//!
//! This module is shared by the examples (`mod support;`) and by the
//! integration tests (`#[path = "../examples/support/mod.rs"] mod support;`).
//! It provides two small HTTP servers that run on tokio tasks bound to
//! `127.0.0.1:0`:
//!
//! * [`AuthServer`]: an OAuth 2.0 authorization server with a token endpoint
//!   (`POST /token`) and RFC 8414 metadata at
//!   `/.well-known/oauth-authorization-server`. Grants:
//!   - `client_credentials` (RFC 6749 §4.4);
//!   - the JWT bearer grant (RFC 7523 §2.1): a workload JWT or an ID-JAG whose
//!     `aud` is this server's issuer, `exp` in the future, `iss` and `sub`
//!     present, its issuer in [`AuthServerConfig::trusted_issuers`] when that
//!     list is not empty (signature checked when the issuer has a key); an
//!     ID-JAG (header `typ` `oauth-id-jag+jwt`, or a `client_id` claim) also
//!     needs client authentication as the client it names;
//!   - with [`AuthServerConfig::idp`], the RFC 8693 token exchange of an ID
//!     token it issued ([`AuthServer::issue_id_token`]) for an ID-JAG, as the
//!     enterprise IdP of cross-app access (SEP-990).
//!
//!   Client authentication: `client_secret_basic` (with the RFC 6749 §2.3.1
//!   form-url encoding of the identifier and secret), `client_secret_post`,
//!   and `private_key_jwt` (RFC 7523 §2.2: `iss` = `sub` = a registered
//!   [`AssertionClient`], `aud` = the issuer, `exp` in the future, `jti` never
//!   seen before, the signature when the client has a key); exactly one method
//!   per request. Every token request is counted and recorded, and tests can
//!   revoke tokens, slow the endpoint down, change the token lifetime or
//!   replace its answers (for good or for the next request only).
//! * [`McpServer`]: a tiny MCP server speaking JSON-RPC 2.0 over Streamable
//!   HTTP that demands `Authorization: Bearer <token>` on every request to its
//!   endpoint, checks the token with the shared [`AuthState`] (audience-bound
//!   to the server's own URL), answers `401` with an RFC 9728
//!   `resource_metadata` challenge otherwise, and serves its protected-resource
//!   metadata document. It records every request, headers and body included.
//!
//! JWT helpers: [`unsigned_jwt`] (structure only, a dummy signature),
//! [`decode_jwt`], and [`TestKey`] for signed JWTs (ES256 with the embedded
//! test keys). Signatures are made and verified with the crypto provider of
//! `rustls` (aws-lc-rs, through the crate's default `rustls` feature), not
//! with the crate's own JWT code; without that feature
//! [`SIGNATURES_VERIFIED`] is `false`, [`TestKey::sign_jwt`] makes a dummy
//! signature and keys are not checked.
//!
//! Both servers stop when their handle is dropped. Token expiry is measured
//! with [`tokio::time::Instant`], so tests running with a paused tokio clock
//! can expire tokens with `tokio::time::advance`; JWT `exp` claims are wall
//! clock seconds.
//!
//! ```ignore
//! let auth = AuthServer::start(AuthServerConfig::default()).await;
//! let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
//! // Point the client at `auth.token_endpoint()` with ("demo-client", "demo-secret")
//! // and resource `mcp.url()`, then POST `jsonrpc(1, "tools/list", json!({}))`
//! // to `mcp.url()`.
//!
//! // Cross-app access: an IdP, and an MCP authorization server that trusts it.
//! let idp = AuthServer::start(AuthServerConfig { idp: Some(IdpConfig::default()), ..Default::default() }).await;
//! let auth = AuthServer::start(AuthServerConfig { trusted_issuers: vec![idp.trusted_issuer()], ..Default::default() }).await;
//! let id_token = idp.issue_id_token("alice@example.com");
//! ```

#![allow(dead_code)]
#![allow(unreachable_pub)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{any, get};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// Shared plumbing
// ---------------------------------------------------------------------------

/// A running axum server; dropping it stops the server.
#[derive(Debug)]
struct ServerHandle {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

async fn bind_loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address of listener");
    (listener, addr)
}

fn spawn_server(listener: TcpListener, router: Router) -> ServerHandle {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // Either an explicit send or the sender being dropped stops us.
                let _ = rx.await;
            })
            .await;
    });
    ServerHandle {
        shutdown: Some(tx),
        task,
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must not cascade).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn header_string(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// 32 random lowercase hex characters (128 bits), without a `rand` dependency:
/// SipHash with the process's random keys over a global counter and the clock.
fn random_hex32() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(nanos);
        let _ = write!(out, "{:016x}", hasher.finish());
    }
    out
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn empty_response(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = empty_response(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` becomes a
/// space, then `%XX` escapes are decoded. `None` if the result is not UTF-8.
fn form_decode(component: &str) -> Option<String> {
    percent_decode_str(&component.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

fn parse_form(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// Encodes `input` as `application/x-www-form-urlencoded` (the encoding RFC
/// 6749 §2.3.1 prescribes for the client identifier and secret before they go
/// into HTTP Basic): ASCII alphanumerics and `*-._` stay, space becomes `+`,
/// every other byte of the UTF-8 encoding becomes `%XX`.
pub fn form_urlencode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// The `Authorization` header value a correct `client_secret_basic` client
/// sends: `Basic base64(form_urlencode(id) ":" form_urlencode(secret))`.
pub fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let credentials = format!(
        "{}:{}",
        form_urlencode(client_id),
        form_urlencode(client_secret)
    );
    format!("Basic {}", STANDARD.encode(credentials))
}

// ---------------------------------------------------------------------------
// JWTs and test keys
// ---------------------------------------------------------------------------

/// The `rustls` crypto provider the crate's `rustls` dependency is built with.
#[cfg(feature = "rustls")]
use rustls::crypto::aws_lc_rs as crypto_provider;

/// Whether [`TestKey`] signs for real and servers check signatures against
/// registered keys (the crate's `rustls` feature brings the *ring* provider).
pub const SIGNATURES_VERIFIED: bool = cfg!(feature = "rustls");

/// A P-256 key (PKCS#8) the authorization servers sign ID tokens and ID-JAGs
/// with. A test key: never use it for anything else.
pub const SERVER_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghc2waC8IBlJ53cv7
x9TE4JPO2joeO40vaKSCtIGYFMGhRANCAARLFHq2ckheGXsHthj1S3BMyCv9NRfV
KO8lYY51bx3+vA1hyM8wsQ8aQtuGOSsSZbl8pGNEiawbxTz93RmU1puA
-----END PRIVATE KEY-----
";

/// A P-256 key (PKCS#8) for clients that authenticate with `private_key_jwt`.
/// A test key: never use it for anything else.
pub const CLIENT_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgq52NZW+YhdmP4RE8
2hPXYAbB6sIXD98FJSJewxWCv+2hRANCAAQnE2H7fD0NGsqEyH/fXW+8xgFwT1ie
IHgegIZTZxrLleFHazaDyiUxdtOdMz8o/rqwh5VFL0GVBoQV+BY/ZHU/
-----END PRIVATE KEY-----
";

/// The public half of [`CLIENT_KEY_PEM`] (SubjectPublicKeyInfo).
pub const CLIENT_PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEJxNh+3w9DRrKhMh/311vvMYBcE9Y
niB4HoCGU2cay5XhR2s2g8olMXbTnTM/KP66sIeVRS9BlQaEFfgWP2R1Pw==
-----END PUBLIC KEY-----
";

/// Seconds since the Unix epoch (wall clock, as JWT `exp`/`iat` use).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A fresh random `jti` (32 hex characters).
pub fn new_jti() -> String {
    random_hex32()
}

fn b64url_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A compact JWT with header `{"alg":"ES256","typ":"JWT"}` and a dummy
/// signature: for tests that only need the structure and the claims.
pub fn unsigned_jwt(claims: Value) -> String {
    jwt_with_header(json!({ "alg": "ES256", "typ": "JWT" }), claims)
}

/// A compact JWT with the given header and claims and a dummy signature.
pub fn jwt_with_header(header: Value, claims: Value) -> String {
    format!(
        "{}.{}.{}",
        b64url_json(&header),
        b64url_json(&claims),
        URL_SAFE_NO_PAD.encode(b"not-a-real-signature")
    )
}

/// Claims of a workload identity token: `iss`, `sub`, `aud`, `iat`, `exp`
/// (`lifetime_secs` from now; negative for an expired token) and a fresh `jti`.
pub fn workload_claims(iss: &str, sub: &str, aud: &str, lifetime_secs: i64) -> Value {
    let now = now_secs();
    json!({
        "iss": iss,
        "sub": sub,
        "aud": aud,
        "iat": now,
        "exp": now.saturating_add_signed(lifetime_secs),
        "jti": new_jti(),
    })
}

/// A JWT taken apart (not verified).
#[derive(Clone, Debug)]
pub struct DecodedJwt {
    /// The JOSE header.
    pub header: Value,
    /// The claims.
    pub claims: Value,
    /// `base64url(header) "." base64url(claims)`, what the signature covers.
    pub signing_input: String,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

impl DecodedJwt {
    /// The string claim `name`, if any.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Splits a compact JWT (exactly three base64url parts, header and claims JSON
/// objects). `None` if it is anything else.
pub fn decode_jwt(jwt: &str) -> Option<DecodedJwt> {
    let mut parts = jwt.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let object = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .filter(Value::is_object)
    };
    Some(DecodedJwt {
        header: object(header)?,
        claims: object(claims)?,
        signing_input: format!("{header}.{claims}"),
        signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
    })
}

/// The claims of a compact JWT, or `Value::Null` if it is not one.
pub fn jwt_claims(jwt: &str) -> Value {
    decode_jwt(jwt).map_or(Value::Null, |decoded| decoded.claims)
}

fn pem_to_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = pem[start..].find(&end)? + start;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// One DER element: `(tag, contents, rest)`.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    EcP256,
    Ed25519,
    Rsa,
}

/// A public key that servers check JWT signatures with: EC P-256 (`ES256`),
/// Ed25519 (`EdDSA`) or RSA (`RS256`).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kind: KeyType,
    /// The `subjectPublicKey` bits of the SubjectPublicKeyInfo.
    key: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.jws_alg())
    }
}

impl PublicKey {
    /// From a `-----BEGIN PUBLIC KEY-----` PEM (SubjectPublicKeyInfo).
    pub fn from_pem(pem: &str) -> Option<PublicKey> {
        Self::from_spki_der(&pem_to_der(pem, "PUBLIC KEY")?)
    }

    /// From a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Option<PublicKey> {
        let (0x30, spki, _) = der_next(der)? else {
            return None;
        };
        let (0x30, algorithm, rest) = der_next(spki)? else {
            return None;
        };
        let (0x06, oid, parameters) = der_next(algorithm)? else {
            return None;
        };
        let (0x03, bits, _) = der_next(rest)? else {
            return None;
        };
        let (&0, key) = bits.split_first()? else {
            return None;
        };
        let kind = match oid {
            OID_EC_PUBLIC_KEY => match der_next(parameters)? {
                (0x06, OID_P256, _) => KeyType::EcP256,
                _ => return None,
            },
            OID_ED25519 => KeyType::Ed25519,
            OID_RSA => KeyType::Rsa,
            _ => return None,
        };
        Some(PublicKey {
            kind,
            key: key.to_vec(),
        })
    }

    /// The JWS `alg` this key verifies.
    pub fn jws_alg(&self) -> &'static str {
        match self.kind {
            KeyType::EcP256 => "ES256",
            KeyType::Ed25519 => "EdDSA",
            KeyType::Rsa => "RS256",
        }
    }

    /// Checks the signature of `jwt`: its header `alg` must be this key's
    /// (never `none`, never an HMAC), and the signature must verify. Without
    /// the `rustls` feature, always an error.
    pub fn verify(&self, jwt: &DecodedJwt) -> Result<(), String> {
        let alg = jwt.header.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg != self.jws_alg() {
            return Err(format!(
                "alg {alg:?} does not fit the registered {} key",
                self.jws_alg()
            ));
        }
        self.verify_signature(jwt.signing_input.as_bytes(), &jwt.signature)
    }

    #[cfg(feature = "rustls")]
    fn verify_signature(&self, message: &[u8], signature: &[u8]) -> Result<(), String> {
        use rustls::SignatureScheme;

        let (scheme, signature) = match self.kind {
            KeyType::EcP256 => (
                SignatureScheme::ECDSA_NISTP256_SHA256,
                ecdsa_raw_to_der(signature).ok_or("an ES256 signature is 64 bytes")?,
            ),
            KeyType::Ed25519 => (SignatureScheme::ED25519, signature.to_vec()),
            KeyType::Rsa => (SignatureScheme::RSA_PKCS1_SHA256, signature.to_vec()),
        };
        let provider = crypto_provider::default_provider();
        let verified = provider
            .signature_verification_algorithms
            .mapping
            .iter()
            .filter(|(candidate, _)| *candidate == scheme)
            .flat_map(|(_, algorithms)| algorithms.iter())
            .any(|algorithm| {
                algorithm
                    .verify_signature(&self.key, message, &signature)
                    .is_ok()
            });
        if verified {
            Ok(())
        } else {
            Err("bad signature".to_owned())
        }
    }

    #[cfg(not(feature = "rustls"))]
    fn verify_signature(&self, _message: &[u8], _signature: &[u8]) -> Result<(), String> {
        Err("signatures cannot be checked without the rustls feature".to_owned())
    }
}

/// JWS ES256 signature (`r || s`, 32 bytes each) to an ASN.1 `Ecdsa-Sig-Value`.
fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let integer = |half: &[u8]| {
        let start = half.iter().position(|&b| b != 0).unwrap_or(half.len() - 1);
        let mut bytes = half[start..].to_vec();
        if bytes[0] & 0x80 != 0 {
            bytes.insert(0, 0);
        }
        let mut out = vec![0x02, u8::try_from(bytes.len()).unwrap_or(0)];
        out.extend(bytes);
        out
    };
    let (r, s) = (integer(&raw[..32]), integer(&raw[32..]));
    let mut der = vec![0x30, u8::try_from(r.len() + s.len()).ok()?];
    der.extend(r);
    der.extend(s);
    Some(der)
}

/// ASN.1 `Ecdsa-Sig-Value` to the JWS form (`r || s`, 32 bytes each).
fn ecdsa_der_to_raw(der: &[u8]) -> Option<Vec<u8>> {
    let (0x30, sequence, _) = der_next(der)? else {
        return None;
    };
    let (0x02, r, rest) = der_next(sequence)? else {
        return None;
    };
    let (0x02, s, _) = der_next(rest)? else {
        return None;
    };
    let mut raw = Vec::with_capacity(64);
    for int in [r, s] {
        let start = int.iter().position(|&b| b != 0).unwrap_or(int.len());
        let int = &int[start..];
        if int.len() > 32 {
            return None;
        }
        raw.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        raw.extend_from_slice(int);
    }
    Some(raw)
}

/// A private key that signs test JWTs (PKCS#8: EC P-256, Ed25519 or RSA).
#[derive(Clone)]
pub struct TestKey {
    pem: String,
    kid: String,
    #[cfg(feature = "rustls")]
    signer: Arc<dyn rustls::sign::SigningKey>,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TestKey {
    /// A key from a `-----BEGIN PRIVATE KEY-----` PEM, with key id `kid`.
    ///
    /// # Panics
    /// If the PEM is not a PKCS#8 key the `rustls` crypto provider can sign with.
    pub fn from_pem(pem: &str, kid: &str) -> TestKey {
        let der = pem_to_der(pem, "PRIVATE KEY").expect("a PKCS#8 PEM private key");
        #[cfg(feature = "rustls")]
        let signer = {
            use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
            let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der));
            crypto_provider::sign::any_supported_type(&der).expect("a key the provider signs with")
        };
        #[cfg(not(feature = "rustls"))]
        let _ = der;
        TestKey {
            pem: pem.to_owned(),
            kid: kid.to_owned(),
            #[cfg(feature = "rustls")]
            signer,
        }
    }

    /// The key the authorization servers sign with ([`SERVER_KEY_PEM`]).
    pub fn server() -> TestKey {
        Self::from_pem(SERVER_KEY_PEM, "test-server-key")
    }

    /// The `private_key_jwt` client test key ([`CLIENT_KEY_PEM`]).
    pub fn client() -> TestKey {
        Self::from_pem(CLIENT_KEY_PEM, "test-client-key")
    }

    /// The private key, PEM.
    pub fn private_key_pem(&self) -> &str {
        &self.pem
    }

    /// The key id put in the header of JWTs it signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half; `None` without the `rustls` feature.
    pub fn public_key(&self) -> Option<PublicKey> {
        #[cfg(feature = "rustls")]
        {
            PublicKey::from_spki_der(self.signer.public_key()?.as_ref())
        }
        #[cfg(not(feature = "rustls"))]
        {
            None
        }
    }

    /// The JWS `alg` it signs with.
    pub fn jws_alg(&self) -> &'static str {
        #[cfg(feature = "rustls")]
        {
            match self.signer.algorithm() {
                rustls::SignatureAlgorithm::ED25519 => "EdDSA",
                rustls::SignatureAlgorithm::RSA => "RS256",
                _ => "ES256",
            }
        }
        #[cfg(not(feature = "rustls"))]
        {
            "ES256"
        }
    }

    /// A compact JWT of `claims`, header `{"alg","typ":typ,"kid"}`, signed
    /// with this key (a dummy signature without the `rustls` feature).
    pub fn sign_jwt(&self, typ: &str, claims: &Value) -> String {
        let header = json!({ "alg": self.jws_alg(), "typ": typ, "kid": self.kid });
        let signing_input = format!("{}.{}", b64url_json(&header), b64url_json(claims));
        let signature = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    #[cfg(feature = "rustls")]
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        use rustls::SignatureScheme;
        let scheme = match self.jws_alg() {
            "EdDSA" => SignatureScheme::ED25519,
            "RS256" => SignatureScheme::RSA_PKCS1_SHA256,
            _ => SignatureScheme::ECDSA_NISTP256_SHA256,
        };
        let signer = self
            .signer
            .choose_scheme(&[scheme])
            .expect("the key signs its own scheme");
        let signature = signer.sign(message).expect("signing works");
        if scheme == SignatureScheme::ECDSA_NISTP256_SHA256 {
            ecdsa_der_to_raw(&signature).expect("the provider's ECDSA signatures are DER")
        } else {
            signature
        }
    }

    #[cfg(not(feature = "rustls"))]
    fn sign(&self, _message: &[u8]) -> Vec<u8> {
        b"not-a-real-signature".to_vec()
    }
}

// ---------------------------------------------------------------------------
// Authorization server
// ---------------------------------------------------------------------------

/// `grant_type` of the JWT bearer grant (RFC 7523 §2.1).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// `client_assertion_type` of `private_key_jwt` (RFC 7523 §2.2).
pub const JWT_CLIENT_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `grant_type` of the token exchange (RFC 8693).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The ID-JAG token type (`requested_token_type`, `issued_token_type`).
pub const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
/// The ID token subject token type.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The JOSE `typ` of an ID-JAG.
pub const ID_JAG_JWT_TYP: &str = "oauth-id-jag+jwt";

/// A client that authenticates with `private_key_jwt`.
#[derive(Clone, Debug)]
pub struct AssertionClient {
    /// Its id: the assertion's `iss` and `sub`.
    pub client_id: String,
    /// Its public key; `None` checks the assertion's structure and claims only.
    pub key: Option<PublicKey>,
}

/// An issuer whose JWTs the jwt-bearer grant accepts.
#[derive(Clone, Debug)]
pub struct TrustedIssuer {
    /// The `iss` claim, compared exactly.
    pub issuer: String,
    /// Its public key; `None` checks structure and claims only.
    pub key: Option<PublicKey>,
}

impl TrustedIssuer {
    /// An issuer trusted without a signature check.
    pub fn unsigned(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            key: None,
        }
    }
}

/// The enterprise IdP mode of an [`AuthServer`] (cross-app access): the token
/// exchange of an ID token it issued for an ID-JAG.
#[derive(Clone, Debug)]
pub struct IdpConfig {
    /// Client ids accepted without authentication (public clients).
    pub public_clients: Vec<String>,
    /// `(client id at the IdP, client id at the resource's authorization
    /// server)`: the ID-JAG's `client_id` claim. Unmapped ids are used as is.
    pub client_mapping: Vec<(String, String)>,
    /// Lifetime of issued ID-JAGs.
    pub id_jag_lifetime: Duration,
}

impl Default for IdpConfig {
    /// Public client `idp-client`, mapped to `demo-client` (the default
    /// client of [`AuthServerConfig`]); 300 s ID-JAGs.
    fn default() -> Self {
        Self {
            public_clients: vec!["idp-client".to_owned()],
            client_mapping: vec![("idp-client".to_owned(), "demo-client".to_owned())],
            id_jag_lifetime: Duration::from_secs(300),
        }
    }
}

/// Configuration of an [`AuthServer`].
#[derive(Clone, Debug)]
pub struct AuthServerConfig {
    /// Registered confidential clients as `(client_id, client_secret)`.
    pub clients: Vec<(String, String)>,
    /// Lifetime of issued tokens (`expires_in` is its whole seconds).
    pub token_lifetime: Duration,
    /// The `token_type` of successful responses (normally `"Bearer"`).
    pub token_type: String,
    /// Clients registered for `private_key_jwt`.
    pub assertion_clients: Vec<AssertionClient>,
    /// Issuers the jwt-bearer grant accepts; empty accepts any issuer.
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// Whether the jwt-bearer grant needs client authentication even for a
    /// JWT that is not an ID-JAG (an ID-JAG always needs it).
    pub jwt_bearer_requires_client_auth: bool,
    /// Whether a client assertion may name the token endpoint as its `aud`
    /// (legacy servers); by default only the issuer is accepted (R50).
    pub accept_token_endpoint_audience: bool,
    /// Act as an enterprise IdP: accept the token exchange for ID-JAGs.
    pub idp: Option<IdpConfig>,
    /// The metadata's `token_endpoint_auth_signing_alg_values_supported`.
    pub signing_alg_values: Vec<String>,
}

impl Default for AuthServerConfig {
    /// One client `("demo-client", "demo-secret")`, 3600 s tokens, `"Bearer"`,
    /// no assertion clients, any jwt-bearer issuer, not an IdP, assertions
    /// signed with ES256, EdDSA or RS256 listed.
    fn default() -> Self {
        Self {
            clients: vec![("demo-client".to_owned(), "demo-secret".to_owned())],
            token_lifetime: Duration::from_secs(3600),
            token_type: "Bearer".to_owned(),
            assertion_clients: Vec::new(),
            trusted_issuers: Vec::new(),
            jwt_bearer_requires_client_auth: false,
            accept_token_endpoint_audience: false,
            idp: None,
            signing_alg_values: ["ES256", "EdDSA", "RS256"].map(str::to_owned).to_vec(),
        }
    }
}

/// A running OAuth 2.0 authorization server; dropping it stops the server.
///
/// Routes: `POST /token` and `GET /.well-known/oauth-authorization-server`.
#[derive(Debug)]
pub struct AuthServer {
    addr: SocketAddr,
    state: Arc<AuthState>,
    _server: ServerHandle,
}

impl AuthServer {
    /// Binds `127.0.0.1:0` and starts serving on a tokio task.
    pub async fn start(config: AuthServerConfig) -> AuthServer {
        let (listener, addr) = bind_loopback().await;
        let state = Arc::new(AuthState::new(config, format!("http://{addr}")));
        let router = Router::new()
            .route("/token", any(token_handler))
            .route(
                "/.well-known/oauth-authorization-server",
                get(as_metadata_handler),
            )
            .with_state(Arc::clone(&state));
        AuthServer {
            addr,
            state,
            _server: spawn_server(listener, router),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash); also the `issuer`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.url())
    }

    /// The shared state: inspection, knobs, and token validation.
    pub fn state(&self) -> Arc<AuthState> {
        Arc::clone(&self.state)
    }

    /// This server as a [`TrustedIssuer`] for another server's jwt-bearer
    /// grant: its issuer and the public key it signs with.
    pub fn trusted_issuer(&self) -> TrustedIssuer {
        TrustedIssuer {
            issuer: self.url(),
            key: self.state.signing_key.public_key(),
        }
    }

    /// An ID token for `sub`, as after a single sign-on: signed by this server,
    /// `iss` = [`url`](Self::url), `aud` = the first public client of the IdP
    /// configuration (or `idp-client`), one hour of lifetime, a fresh `jti`.
    /// The IdP mode accepts it as a `subject_token`.
    pub fn issue_id_token(&self, sub: &str) -> String {
        self.state.issue_id_token(sub, 3600)
    }

    /// Signs `claims` with this server's key (header `typ` = `typ`).
    pub fn sign_jwt(&self, typ: &str, claims: &Value) -> String {
        self.state.signing_key.sign_jwt(typ, claims)
    }
}

/// Result of [`AuthState::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// Issued, not expired, not revoked, and usable for the resource.
    Valid,
    /// Never issued by this server, or revoked.
    Unknown,
    /// Issued but its lifetime has elapsed.
    Expired,
    /// Issued for a different `resource` than the one asked about.
    WrongResource,
}

/// A token issued by the [`AuthServer`].
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The opaque access token (32 lowercase hex characters).
    pub access_token: String,
    /// The client it was issued to: the authenticated (or identified) client,
    /// else the `sub` of a jwt-bearer assertion.
    pub client_id: String,
    /// The `resource` parameter of the request, if any. A token without a
    /// resource is accepted for every resource.
    pub resource: Option<String>,
    /// The `scope` parameter of the request, if any.
    pub scope: Option<String>,
    /// When it expires (tokio clock).
    pub expires_at: Instant,
    /// Whether [`AuthState::revoke_all`] has revoked it.
    pub revoked: bool,
    /// The grant it was issued for (`client_credentials` or the jwt-bearer URN).
    pub grant_type: String,
}

/// One request received on `/token`, as recorded before it is answered.
#[derive(Clone, Debug)]
pub struct RecordedTokenRequest {
    /// HTTP method (`"POST"` for a well-behaved client).
    pub method: String,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// The `Content-Type` header, verbatim.
    pub content_type: Option<String>,
    /// The `Accept` header, verbatim.
    pub accept: Option<String>,
    /// Form parameters, decoded, in body order (duplicates kept).
    pub form: Vec<(String, String)>,
    /// The body as received (lossy UTF-8).
    pub raw_body: String,
}

impl RecordedTokenRequest {
    /// The decoded value of the first form parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The names of the form parameters, in body order.
    pub fn param_names(&self) -> Vec<&str> {
        self.form.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// How many client-authentication carriers it holds: a Basic header,
    /// `client_secret`, `client_assertion` (R44: exactly one, or none).
    pub fn client_auth_carriers(&self) -> usize {
        usize::from(self.authorization.is_some())
            + usize::from(self.param("client_secret").is_some())
            + usize::from(self.param("client_assertion").is_some())
    }
}

/// A canned answer for `/token`, installed with [`AuthState::set_override`]
/// or [`AuthState::queue_override`].
#[derive(Clone, Debug)]
pub struct TokenOverride {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of the answer; not sent when empty.
    pub content_type: String,
    /// Body, sent verbatim.
    pub body: String,
    /// Extra response headers (appended, so a name may repeat).
    pub headers: Vec<(String, String)>,
}

impl TokenOverride {
    /// An override answering `status` with a JSON `body`.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "application/json".to_owned(),
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What a JWT the server accepted was used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtUse {
    /// `client_assertion` (`private_key_jwt`).
    ClientAssertion,
    /// `assertion` of the jwt-bearer grant (a workload JWT or an ID-JAG).
    Grant,
    /// `subject_token` of a token exchange (an ID token).
    SubjectToken,
}

/// A JWT the server accepted, with what it found in it.
#[derive(Clone, Debug)]
pub struct AcceptedJwt {
    /// What it was used for.
    pub usage: JwtUse,
    /// The JWT as received.
    pub jwt: String,
    /// Its header.
    pub header: Value,
    /// Its claims.
    pub claims: Value,
    /// Whether its signature was checked against a registered key (and held).
    pub signature_verified: bool,
}

/// An ID-JAG issued by the IdP mode.
#[derive(Clone, Debug)]
pub struct IssuedIdJag {
    /// The ID-JAG (a JWT).
    pub jwt: String,
    /// Its `sub` (from the ID token).
    pub subject: String,
    /// Its `aud`: the `audience` parameter of the exchange.
    pub audience: String,
    /// Its `resource`: the `resource` parameter of the exchange.
    pub resource: String,
    /// Its `client_id`: the requesting client, mapped.
    pub client_id: String,
    /// The client that asked, as known at the IdP.
    pub requested_by: String,
    /// The `scope` parameter of the exchange, if any.
    pub scope: Option<String>,
}

/// State of an [`AuthServer`], shared with [`McpServer`] for validation.
#[derive(Debug)]
pub struct AuthState {
    issuer: String,
    clients: Mutex<Vec<(String, String)>>,
    token_type: String,
    assertion_clients: Vec<AssertionClient>,
    trusted_issuers: Vec<TrustedIssuer>,
    jwt_bearer_requires_client_auth: bool,
    accept_token_endpoint_audience: bool,
    idp: Option<IdpConfig>,
    signing_alg_values: Vec<String>,
    signing_key: TestKey,
    inner: Mutex<AuthInner>,
}

#[derive(Debug)]
struct AuthInner {
    lifetime: Duration,
    delay: Duration,
    token_override: Option<TokenOverride>,
    queued: VecDeque<TokenOverride>,
    issued: Vec<IssuedToken>,
    by_token: HashMap<String, usize>,
    recorded: Vec<RecordedTokenRequest>,
    seen_jtis: HashSet<String>,
    accepted: Vec<AcceptedJwt>,
    id_tokens: HashSet<String>,
    id_jags: Vec<IssuedIdJag>,
}

/// How the client of a token request identified itself.
enum Client {
    /// With a secret or an assertion that checked out.
    Authenticated(String),
    /// With a `client_id` alone.
    Identified(String),
    /// Not at all.
    Anonymous,
}

impl Client {
    fn id(&self) -> Option<&str> {
        match self {
            Client::Authenticated(id) | Client::Identified(id) => Some(id),
            Client::Anonymous => None,
        }
    }
}

impl AuthState {
    fn new(config: AuthServerConfig, issuer: String) -> Self {
        Self {
            issuer,
            clients: Mutex::new(config.clients),
            token_type: config.token_type,
            assertion_clients: config.assertion_clients,
            trusted_issuers: config.trusted_issuers,
            jwt_bearer_requires_client_auth: config.jwt_bearer_requires_client_auth,
            accept_token_endpoint_audience: config.accept_token_endpoint_audience,
            idp: config.idp,
            signing_alg_values: config.signing_alg_values,
            signing_key: TestKey::server(),
            inner: Mutex::new(AuthInner {
                lifetime: config.token_lifetime,
                delay: Duration::ZERO,
                token_override: None,
                queued: VecDeque::new(),
                issued: Vec::new(),
                by_token: HashMap::new(),
                recorded: Vec::new(),
                seen_jtis: HashSet::new(),
                accepted: Vec::new(),
                id_tokens: HashSet::new(),
                id_jags: Vec::new(),
            }),
        }
    }

    /// The issuer identifier (`http://127.0.0.1:PORT`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How many requests `/token` has received (any outcome, any method,
    /// overridden ones included); counted on arrival, before any delay.
    pub fn token_requests(&self) -> usize {
        lock(&self.inner).recorded.len()
    }

    /// How many requests `/token` has received with `grant_type` = `grant`.
    pub fn requests_with_grant(&self, grant: &str) -> usize {
        lock(&self.inner)
            .recorded
            .iter()
            .filter(|r| r.param("grant_type") == Some(grant))
            .count()
    }

    /// How many token exchanges (RFC 8693) `/token` has received, any outcome.
    pub fn token_exchanges(&self) -> usize {
        self.requests_with_grant(TOKEN_EXCHANGE_GRANT)
    }

    /// How many jwt-bearer grant requests `/token` has received, any outcome.
    pub fn jwt_bearer_requests(&self) -> usize {
        self.requests_with_grant(JWT_BEARER_GRANT)
    }

    /// Every request `/token` has received, in arrival order.
    pub fn recorded(&self) -> Vec<RecordedTokenRequest> {
        lock(&self.inner).recorded.clone()
    }

    /// Every token issued so far, in issue order (revoked ones included).
    pub fn issued(&self) -> Vec<IssuedToken> {
        lock(&self.inner).issued.clone()
    }

    /// Every JWT accepted so far (client assertions, grant assertions,
    /// subject tokens), in order.
    pub fn accepted_jwts(&self) -> Vec<AcceptedJwt> {
        lock(&self.inner).accepted.clone()
    }

    /// The accepted JWTs used for `usage`, in order.
    pub fn accepted(&self, usage: JwtUse) -> Vec<AcceptedJwt> {
        lock(&self.inner)
            .accepted
            .iter()
            .filter(|jwt| jwt.usage == usage)
            .cloned()
            .collect()
    }

    /// Every ID-JAG the IdP mode issued, in order.
    pub fn issued_id_jags(&self) -> Vec<IssuedIdJag> {
        lock(&self.inner).id_jags.clone()
    }

    /// Revokes every token issued so far; they validate as `Unknown`.
    pub fn revoke_all(&self) {
        for token in &mut lock(&self.inner).issued {
            token.revoked = true;
        }
    }

    /// Checks `token` for use at `resource` (compared as exact strings).
    pub fn validate(&self, token: &str, resource: &str) -> TokenCheck {
        let inner = lock(&self.inner);
        let Some(issued) = inner.by_token.get(token).map(|&i| &inner.issued[i]) else {
            return TokenCheck::Unknown;
        };
        if issued.revoked {
            TokenCheck::Unknown
        } else if Instant::now() >= issued.expires_at {
            TokenCheck::Expired
        } else if issued.resource.as_deref().is_some_and(|r| r != resource) {
            TokenCheck::WrongResource
        } else {
            TokenCheck::Valid
        }
    }

    fn check_override(token_override: &TokenOverride) {
        StatusCode::from_u16(token_override.status).expect("override status must be 100..=999");
        HeaderValue::from_str(&token_override.content_type).expect("override content type");
        for (name, value) in &token_override.headers {
            HeaderName::from_bytes(name.as_bytes()).expect("override header name");
            HeaderValue::from_str(value).expect("override header value");
        }
    }

    /// While `Some`, `/token` answers with the override instead of running
    /// the normal logic (requests are still counted, recorded and delayed).
    ///
    /// # Panics
    /// If the status, content type or a header is not valid HTTP.
    pub fn set_override(&self, token_override: Option<TokenOverride>) {
        if let Some(o) = &token_override {
            Self::check_override(o);
        }
        lock(&self.inner).token_override = token_override;
    }

    /// Answers the next `/token` request with `token_override`, once (queued
    /// overrides are used in order, before [`set_override`](Self::set_override)'s).
    ///
    /// # Panics
    /// If the status, content type or a header is not valid HTTP.
    pub fn queue_override(&self, token_override: TokenOverride) {
        Self::check_override(&token_override);
        lock(&self.inner).queued.push_back(token_override);
    }

    /// Sleep this long (`tokio::time::sleep`) before answering `/token`.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.inner).delay = delay;
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        lock(&self.inner).lifetime = lifetime;
    }

    /// An ID token for `sub` living `lifetime_secs` (see
    /// [`AuthServer::issue_id_token`]).
    pub fn issue_id_token(&self, sub: &str, lifetime_secs: i64) -> String {
        let audience = self
            .idp
            .as_ref()
            .and_then(|idp| idp.public_clients.first().cloned())
            .unwrap_or_else(|| "idp-client".to_owned());
        let now = now_secs();
        let jti = new_jti();
        let claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": audience,
            "iat": now,
            "exp": now.saturating_add_signed(lifetime_secs),
            "jti": jti,
        });
        lock(&self.inner).id_tokens.insert(jti);
        self.signing_key.sign_jwt("JWT", &claims)
    }

    /// Replaces the registered `(client_id, client_secret)` pairs: a secret
    /// rotated at the server.
    pub fn set_clients(&self, clients: Vec<(String, String)>) {
        *lock(&self.clients) = clients;
    }

    /// Issues a token for `resource` to `client_id` directly, as if it had
    /// been obtained out of band (an API key from a gateway).
    pub fn issue_token(&self, client_id: &str, resource: Option<&str>) -> String {
        let body = self.issue(
            "out-of-band",
            client_id.to_owned(),
            resource.map(str::to_owned),
            None,
        );
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default()
    }

    fn client_is_valid(&self, id: &str, secret: &str) -> bool {
        lock(&self.clients)
            .iter()
            .any(|(known_id, known_secret)| known_id == id && known_secret == secret)
    }

    fn record(&self, usage: JwtUse, jwt: &str, decoded: &DecodedJwt, signature_verified: bool) {
        lock(&self.inner).accepted.push(AcceptedJwt {
            usage,
            jwt: jwt.to_owned(),
            header: decoded.header.clone(),
            claims: decoded.claims.clone(),
            signature_verified,
        });
    }

    fn issue(
        &self,
        grant_type: &str,
        client_id: String,
        resource: Option<String>,
        scope: Option<String>,
    ) -> Value {
        let mut inner = lock(&self.inner);
        let lifetime = inner.lifetime;
        let mut access_token = random_hex32();
        while inner.by_token.contains_key(&access_token) {
            access_token = random_hex32();
        }
        let index = inner.issued.len();
        inner.by_token.insert(access_token.clone(), index);
        inner.issued.push(IssuedToken {
            access_token: access_token.clone(),
            client_id,
            resource,
            scope: scope.clone(),
            expires_at: Instant::now() + lifetime,
            revoked: false,
            grant_type: grant_type.to_owned(),
        });
        let mut body = Map::new();
        body.insert("access_token".to_owned(), Value::from(access_token));
        body.insert(
            "token_type".to_owned(),
            Value::from(self.token_type.clone()),
        );
        body.insert("expires_in".to_owned(), Value::from(lifetime.as_secs()));
        if let Some(scope) = scope {
            body.insert("scope".to_owned(), Value::from(scope));
        }
        Value::Object(body)
    }

    /// The normal token endpoint logic.
    fn answer(
        &self,
        method: &Method,
        headers: &HeaderMap,
        request: &RecordedTokenRequest,
    ) -> Response {
        match self.try_answer(method, headers, request) {
            Ok(body) => no_store(json_response(StatusCode::OK, &body)),
            Err(error) => error.into_response(),
        }
    }

    fn try_answer(
        &self,
        method: &Method,
        headers: &HeaderMap,
        request: &RecordedTokenRequest,
    ) -> Result<Value, TokenError> {
        if method != Method::POST {
            return Err(TokenError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "the token endpoint only accepts POST",
            ));
        }
        let media_type = request
            .content_type
            .as_deref()
            .and_then(|ct| ct.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(TokenError::bad_request(
                "invalid_request",
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        for (i, (name, _)) in request.form.iter().enumerate() {
            if request.form[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(if name == "resource" {
                    TokenError::bad_request(
                        "invalid_target",
                        "this server issues tokens for a single resource",
                    )
                } else {
                    TokenError::bad_request(
                        "invalid_request",
                        format!("parameter `{name}` is included more than once"),
                    )
                });
            }
        }

        let client = self.authenticate_client(headers, request)?;
        let scope = request
            .param("scope")
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned);

        match request.param("grant_type") {
            Some(JWT_BEARER_GRANT) => {
                let resource = checked_resource(request)?;
                self.jwt_bearer(client, request, resource, scope)
            }
            Some(TOKEN_EXCHANGE_GRANT) if self.idp.is_some() => {
                self.token_exchange(&client, request, scope)
            }
            grant => {
                let Client::Authenticated(client_id) = client else {
                    return Err(TokenError::invalid_client(
                        false,
                        "client authentication is required",
                    ));
                };
                match grant {
                    None => Err(TokenError::bad_request(
                        "invalid_request",
                        "missing grant_type",
                    )),
                    Some("client_credentials") => {
                        let resource = checked_resource(request)?;
                        Ok(self.issue("client_credentials", client_id, resource, scope))
                    }
                    Some(other) => Err(TokenError::bad_request(
                        "unsupported_grant_type",
                        format!("grant type `{other}` is not supported"),
                    )),
                }
            }
        }
    }

    /// Identifies the client: at most one authentication method (R44).
    fn authenticate_client(
        &self,
        headers: &HeaderMap,
        request: &RecordedTokenRequest,
    ) -> Result<Client, TokenError> {
        let body_id = request.param("client_id");
        let body_secret = request.param("client_secret");
        let assertion_type = request.param("client_assertion_type");
        let assertion = request.param("client_assertion");
        let basic = headers.get(header::AUTHORIZATION);
        let carriers = usize::from(basic.is_some())
            + usize::from(body_secret.is_some())
            + usize::from(assertion.is_some() || assertion_type.is_some());
        if carriers > 1 {
            return Err(TokenError::bad_request(
                "invalid_request",
                "more than one client authentication method was used",
            ));
        }

        if let Some(authorization) = basic {
            let (id, secret) = decode_basic(authorization.as_bytes()).ok_or_else(|| {
                TokenError::invalid_client(true, "malformed Basic client credentials")
            })?;
            if body_id.is_some_and(|body_id| body_id != id) {
                return Err(TokenError::bad_request(
                    "invalid_request",
                    "client_id in the body does not match the Authorization header",
                ));
            }
            if !self.client_is_valid(&id, &secret) {
                return Err(TokenError::invalid_client(
                    true,
                    "client authentication failed",
                ));
            }
            return Ok(Client::Authenticated(id));
        }

        if assertion.is_some() || assertion_type.is_some() {
            return self
                .check_client_assertion(body_id, assertion_type, assertion)
                .map(Client::Authenticated)
                .map_err(|why| TokenError::invalid_client(false, &why));
        }

        match (body_id, body_secret) {
            (Some(id), Some(secret)) if self.client_is_valid(id, secret) => {
                Ok(Client::Authenticated(id.to_owned()))
            }
            (_, Some(_)) => Err(TokenError::invalid_client(
                false,
                "client authentication failed",
            )),
            (Some(id), None) => Ok(Client::Identified(id.to_owned())),
            (None, None) => Ok(Client::Anonymous),
        }
    }

    /// `private_key_jwt` (RFC 7523 §2.2, §3): returns the client id.
    fn check_client_assertion(
        &self,
        body_id: Option<&str>,
        assertion_type: Option<&str>,
        assertion: Option<&str>,
    ) -> Result<String, String> {
        if assertion_type != Some(JWT_CLIENT_ASSERTION_TYPE) {
            return Err("unsupported or missing client_assertion_type".to_owned());
        }
        let jwt = assertion.ok_or("client_assertion is missing")?;
        let decoded = decode_jwt(jwt).ok_or("client_assertion is not one compact JWT")?;
        let iss = decoded.claim("iss").ok_or("the assertion has no iss")?;
        let sub = decoded.claim("sub").ok_or("the assertion has no sub")?;
        if iss != sub {
            return Err("the assertion's iss and sub differ".to_owned());
        }
        let client = self
            .assertion_clients
            .iter()
            .find(|client| client.client_id == iss)
            .ok_or("unknown client")?;
        if body_id.is_some_and(|id| id != iss) {
            return Err("client_id does not match the assertion".to_owned());
        }
        let aud_ok = decoded
            .claims
            .get("aud")
            .and_then(Value::as_str)
            .is_some_and(|aud| {
                aud == self.issuer
                    || (self.accept_token_endpoint_audience
                        && aud == format!("{}/token", self.issuer))
            });
        if !aud_ok {
            return Err("the assertion's aud must be the issuer, as a string".to_owned());
        }
        let exp = decoded
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("the assertion has no exp")?;
        if exp <= now_secs() {
            return Err("the assertion has expired".to_owned());
        }
        let jti = decoded.claim("jti").ok_or("the assertion has no jti")?;
        let verified = match &client.key {
            Some(key) if SIGNATURES_VERIFIED => {
                key.verify(&decoded)?;
                true
            }
            _ => false,
        };
        if !lock(&self.inner).seen_jtis.insert(jti.to_owned()) {
            return Err("the assertion's jti was already used".to_owned());
        }
        self.record(JwtUse::ClientAssertion, jwt, &decoded, verified);
        Ok(iss.to_owned())
    }

    /// The jwt-bearer grant (RFC 7523 §2.1), for workload JWTs and ID-JAGs.
    fn jwt_bearer(
        &self,
        client: Client,
        request: &RecordedTokenRequest,
        resource: Option<String>,
        scope: Option<String>,
    ) -> Result<Value, TokenError> {
        let invalid_grant = |why: &str| TokenError::bad_request("invalid_grant", why);
        let Some(jwt) = request.param("assertion") else {
            return Err(TokenError::bad_request(
                "invalid_request",
                "missing assertion",
            ));
        };
        let decoded =
            decode_jwt(jwt).ok_or_else(|| invalid_grant("the assertion is not one compact JWT"))?;
        let (Some(iss), Some(sub)) = (decoded.claim("iss"), decoded.claim("sub")) else {
            return Err(invalid_grant("the assertion needs iss and sub"));
        };
        let aud_ok = match decoded.claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.issuer,
            Some(Value::Array(auds)) => auds.iter().any(|aud| *aud == self.issuer.as_str()),
            _ => false,
        };
        if !aud_ok {
            return Err(invalid_grant(
                "the assertion's aud does not name this server",
            ));
        }
        match decoded.claims.get("exp").and_then(Value::as_u64) {
            Some(exp) if exp > now_secs() => {}
            Some(_) => return Err(invalid_grant("the assertion has expired")),
            None => return Err(invalid_grant("the assertion has no exp")),
        }
        let mut verified = false;
        if !self.trusted_issuers.is_empty() {
            let trusted = self
                .trusted_issuers
                .iter()
                .find(|trusted| trusted.issuer == iss)
                .ok_or_else(|| invalid_grant("the assertion's issuer is not trusted"))?;
            if let Some(key) = &trusted.key
                && SIGNATURES_VERIFIED
            {
                key.verify(&decoded).map_err(|why| invalid_grant(&why))?;
                verified = true;
            }
        }
        let is_id_jag = decoded
            .header
            .get("typ")
            .and_then(Value::as_str)
            .is_some_and(|typ| typ.eq_ignore_ascii_case(ID_JAG_JWT_TYP))
            || decoded.claims.get("client_id").is_some();
        if is_id_jag {
            let Client::Authenticated(client_id) = &client else {
                return Err(TokenError::invalid_client(
                    false,
                    "an ID-JAG is redeemed with client authentication",
                ));
            };
            if decoded.claim("client_id") != Some(client_id.as_str()) {
                return Err(invalid_grant("the ID-JAG was issued to another client"));
            }
            if let (Some(claimed), Some(requested)) = (decoded.claim("resource"), &resource)
                && claimed != requested
            {
                return Err(invalid_grant("the ID-JAG is for another resource"));
            }
        } else if self.jwt_bearer_requires_client_auth
            && !matches!(client, Client::Authenticated(_))
        {
            return Err(TokenError::invalid_client(
                false,
                "client authentication is required",
            ));
        }
        self.record(JwtUse::Grant, jwt, &decoded, verified);
        let client_id = client.id().unwrap_or(sub).to_owned();
        Ok(self.issue(JWT_BEARER_GRANT, client_id, resource, scope))
    }

    /// The IdP mode: an ID token it issued for an ID-JAG (RFC 8693, ID-JAG).
    fn token_exchange(
        &self,
        client: &Client,
        request: &RecordedTokenRequest,
        scope: Option<String>,
    ) -> Result<Value, TokenError> {
        let Some(idp) = &self.idp else {
            return Err(TokenError::bad_request(
                "unsupported_grant_type",
                "this server is not an IdP",
            ));
        };
        let requested_by = match client {
            Client::Authenticated(id) => id.clone(),
            Client::Identified(id) if idp.public_clients.contains(id) => id.clone(),
            Client::Identified(_) => {
                return Err(TokenError::invalid_client(false, "unknown public client"));
            }
            Client::Anonymous => {
                return Err(TokenError::invalid_client(
                    false,
                    "the client must identify itself",
                ));
            }
        };
        let invalid_request = |why: &str| TokenError::bad_request("invalid_request", why);
        if request.param("requested_token_type") != Some(ID_JAG_TOKEN_TYPE) {
            return Err(invalid_request(
                "requested_token_type must be the ID-JAG type",
            ));
        }
        if request.param("subject_token_type") != Some(ID_TOKEN_TYPE) {
            return Err(invalid_request("subject_token_type must be an ID token"));
        }
        if request.param("actor_token").is_some() || request.param("actor_token_type").is_some() {
            return Err(invalid_request("no actor tokens in this profile"));
        }
        let subject_token = request
            .param("subject_token")
            .ok_or_else(|| invalid_request("missing subject_token"))?;
        let audience = request
            .param("audience")
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid_request("missing audience"))?;
        let resource = request
            .param("resource")
            .filter(|r| !r.is_empty())
            .ok_or_else(|| invalid_request("missing resource"))?;

        let invalid_grant = |why: &str| TokenError::bad_request("invalid_grant", why);
        let decoded = decode_jwt(subject_token)
            .ok_or_else(|| invalid_grant("the subject token is not one compact JWT"))?;
        if decoded.claim("iss") != Some(self.issuer.as_str()) {
            return Err(invalid_grant("the subject token was not issued here"));
        }
        let issued_here = decoded
            .claim("jti")
            .is_some_and(|jti| lock(&self.inner).id_tokens.contains(jti));
        if !issued_here {
            return Err(invalid_grant("unknown subject token"));
        }
        match decoded.claims.get("exp").and_then(Value::as_u64) {
            Some(exp) if exp > now_secs() => {}
            _ => return Err(invalid_grant("the subject token has expired")),
        }
        let mut verified = false;
        if let Some(key) = self.signing_key.public_key() {
            key.verify(&decoded).map_err(|why| invalid_grant(&why))?;
            verified = true;
        }
        let subject = decoded
            .claim("sub")
            .ok_or_else(|| invalid_grant("the subject token has no sub"))?
            .to_owned();
        self.record(JwtUse::SubjectToken, subject_token, &decoded, verified);

        let client_id = idp
            .client_mapping
            .iter()
            .find(|(at_idp, _)| *at_idp == requested_by)
            .map_or_else(|| requested_by.clone(), |(_, at_as)| at_as.clone());
        let now = now_secs();
        let lifetime = idp.id_jag_lifetime.as_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "resource": resource,
            "client_id": client_id,
            "jti": new_jti(),
            "iat": now,
            "exp": now + lifetime,
        });
        if let Some(scope) = &scope {
            claims["scope"] = Value::from(scope.clone());
        }
        let jwt = self.signing_key.sign_jwt(ID_JAG_JWT_TYP, &claims);
        lock(&self.inner).id_jags.push(IssuedIdJag {
            jwt: jwt.clone(),
            subject,
            audience: audience.to_owned(),
            resource: resource.to_owned(),
            client_id,
            requested_by,
            scope: scope.clone(),
        });
        let mut body = json!({
            "issued_token_type": ID_JAG_TOKEN_TYPE,
            "access_token": jwt,
            "token_type": "N_A",
            "expires_in": lifetime,
        });
        if let Some(scope) = scope {
            body["scope"] = Value::from(scope);
        }
        Ok(body)
    }
}

/// The `resource` parameter, if any, when it is an absolute URI without a fragment.
fn checked_resource(request: &RecordedTokenRequest) -> Result<Option<String>, TokenError> {
    let resource = request.param("resource").map(str::to_owned);
    if let Some(resource) = &resource
        && (!resource.contains("://") || resource.contains('#'))
    {
        return Err(TokenError::bad_request(
            "invalid_target",
            "resource must be an absolute URI without a fragment",
        ));
    }
    Ok(resource)
}

/// Parses `Basic <base64(urlencoded id ":" urlencoded secret)>` (scheme
/// case-insensitive), splitting on the first `:` and form-url-decoding each
/// half as RFC 6749 §2.3.1 requires.
fn decode_basic(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(credentials.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An RFC 6749 §5.2 error response.
#[derive(Debug)]
struct TokenError {
    status: StatusCode,
    error: &'static str,
    description: String,
    basic_challenge: bool,
}

impl TokenError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    fn bad_request(error: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, description)
    }

    fn invalid_client(basic_attempted: bool, description: &str) -> Self {
        Self {
            basic_challenge: basic_attempted,
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
        }
    }

    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut response = no_store(json_response(self.status, &body));
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"test\""),
            );
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

fn override_response(o: &TokenOverride) -> Response {
    let mut response = Response::new(Body::from(o.body.clone()));
    *response.status_mut() =
        StatusCode::from_u16(o.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if !o.content_type.is_empty()
        && let Ok(value) = HeaderValue::from_str(&o.content_type)
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    for (name, value) in &o.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    response
}

async fn token_handler(
    State(state): State<Arc<AuthState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let request = RecordedTokenRequest {
        method: method.to_string(),
        authorization: header_string(&headers, header::AUTHORIZATION),
        content_type: header_string(&headers, header::CONTENT_TYPE),
        accept: header_string(&headers, header::ACCEPT),
        form: parse_form(&raw_body),
        raw_body,
    };
    let delay = {
        let mut inner = lock(&state.inner);
        inner.recorded.push(request.clone());
        inner.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let token_override = {
        let mut inner = lock(&state.inner);
        inner
            .queued
            .pop_front()
            .or_else(|| inner.token_override.clone())
    };
    match token_override {
        Some(o) => override_response(&o),
        None => state.answer(&method, &headers, &request),
    }
}

async fn as_metadata_handler(State(state): State<Arc<AuthState>>) -> Response {
    let mut grants = vec!["client_credentials", JWT_BEARER_GRANT];
    if state.idp.is_some() {
        grants.push(TOKEN_EXCHANGE_GRANT);
    }
    let mut body = json!({
        "issuer": state.issuer,
        "token_endpoint": format!("{}/token", state.issuer),
        "grant_types_supported": grants,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": state.signing_alg_values,
    });
    if !state.trusted_issuers.is_empty() {
        body["authorization_grant_profiles_supported"] =
            json!(["urn:ietf:params:oauth:grant-profile:id-jag"]);
    }
    if state.idp.is_some() {
        body["identity_chaining_requested_token_types_supported"] = json!([ID_JAG_TOKEN_TYPE]);
    }
    json_response(StatusCode::OK, &body)
}

// ---------------------------------------------------------------------------
// MCP server
// ---------------------------------------------------------------------------

/// The MCP protocol version the [`McpServer`] announces.
pub const MCP_PROTOCOL_VERSION: &str = "2025-11-25";

/// A running MCP server (Streamable HTTP, JSON responses) protected by bearer
/// tokens from an [`AuthServer`]; dropping it stops the server.
#[derive(Debug)]
pub struct McpServer {
    state: Arc<McpState>,
    _server: ServerHandle,
}

#[derive(Debug)]
struct McpState {
    auth: Arc<AuthState>,
    auth_url: String,
    origin: String,
    path: String,
    url: String,
    metadata_path: String,
    seen: Mutex<Vec<Option<String>>>,
    requests: Mutex<Vec<SeenRequest>>,
    unauthorized: AtomicUsize,
    always_401: AtomicBool,
}

impl McpServer {
    /// Binds `127.0.0.1:0` and serves the MCP endpoint at `path` (e.g.
    /// `"/mcp"`), validating tokens with `auth` and naming `auth_url` as its
    /// authorization server in its protected-resource metadata.
    pub async fn start(auth: Arc<AuthState>, auth_url: String, path: &str) -> McpServer {
        let (listener, addr) = bind_loopback().await;
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let origin = format!("http://{addr}");
        let metadata_path = if path == "/" {
            "/.well-known/oauth-protected-resource".to_owned()
        } else {
            format!("/.well-known/oauth-protected-resource{path}")
        };
        let state = Arc::new(McpState {
            auth,
            auth_url,
            url: format!("{origin}{path}"),
            origin,
            path,
            metadata_path,
            seen: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            unauthorized: AtomicUsize::new(0),
            always_401: AtomicBool::new(false),
        });
        let router = Router::new()
            .fallback(mcp_dispatch)
            .with_state(Arc::clone(&state));
        McpServer {
            state,
            _server: spawn_server(listener, router),
        }
    }

    /// `http://127.0.0.1:PORT/mcp`: the endpoint and the resource identifier.
    pub fn url(&self) -> String {
        self.state.url.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        self.state.origin.clone()
    }

    /// `http://127.0.0.1:PORT/.well-known/oauth-protected-resource/mcp`, the
    /// `resource_metadata` URL named in the `401` challenge.
    pub fn resource_metadata_url(&self) -> String {
        format!("{}{}", self.state.origin, self.state.metadata_path)
    }

    /// Every request received, on any route.
    pub fn requests(&self) -> usize {
        lock(&self.state.seen).len()
    }

    /// How many requests were answered `401`.
    pub fn unauthorized(&self) -> usize {
        self.state.unauthorized.load(Ordering::SeqCst)
    }

    /// The `Authorization` header of every request, in arrival order.
    pub fn seen_authorization(&self) -> Vec<Option<String>> {
        lock(&self.state.seen).clone()
    }

    /// Every request received, whole (method, target, headers, body), in
    /// arrival order.
    pub fn seen_requests(&self) -> Vec<SeenRequest> {
        lock(&self.state.requests).clone()
    }

    /// While on, every request to the MCP endpoint is answered `401` with
    /// `error="invalid_token"`, whatever token it carries (the metadata
    /// document stays reachable).
    pub fn set_always_401(&self, on: bool) {
        self.state.always_401.store(on, Ordering::SeqCst);
    }
}

/// One request an [`McpServer`] received.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    /// The method.
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// Every header, name and (lossy UTF-8) value, in order.
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl SeenRequest {
    /// Whether `needle` occurs anywhere in the request: target, headers or body.
    pub fn contains(&self, needle: &str) -> bool {
        self.target.contains(needle)
            || self.body.contains(needle)
            || self
                .headers
                .iter()
                .any(|(name, value)| name.contains(needle) || value.contains(needle))
    }
}

async fn mcp_dispatch(State(state): State<Arc<McpState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 4 * 1024 * 1024).await.ok();
    let authorization = header_string(&parts.headers, header::AUTHORIZATION);
    lock(&state.seen).push(authorization.clone());
    lock(&state.requests).push(SeenRequest {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
    });
    let request = Request::from_parts(parts, Body::empty());

    let path = request.uri().path();
    if path == state.metadata_path {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        let body = json!({
            "resource": state.url,
            "authorization_servers": [state.auth_url],
            "scopes_supported": ["mcp:tools"],
            "bearer_methods_supported": ["header"],
        });
        return json_response(StatusCode::OK, &body);
    }
    if path != state.path {
        return empty_response(StatusCode::NOT_FOUND);
    }

    // Strict resource server: the scheme must be exactly "Bearer ".
    let token = authorization
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "));
    let always_401 = state.always_401.load(Ordering::SeqCst);
    let valid =
        token.is_some_and(|token| state.auth.validate(token, &state.url) == TokenCheck::Valid);
    if always_401 || !valid {
        state.unauthorized.fetch_add(1, Ordering::SeqCst);
        let mut challenge = format!(
            "Bearer resource_metadata=\"{}{}\"",
            state.origin, state.metadata_path
        );
        if always_401 || token.is_some() {
            challenge.push_str(", error=\"invalid_token\"");
        }
        let mut response = empty_response(StatusCode::UNAUTHORIZED);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        return response;
    }

    if request.method() != Method::POST {
        // No server-initiated SSE stream and no session deletion here.
        return method_not_allowed("POST");
    }
    let Some(body) = body else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &rpc_error(Value::Null, -32700, "Parse error: unreadable body"),
        );
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &rpc_error(Value::Null, -32700, "Parse error"),
        );
    };
    handle_rpc(&message)
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn handle_rpc(message: &Value) -> Response {
    let Some(object) = message.as_object() else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &rpc_error(
                Value::Null,
                -32600,
                "Invalid Request: expected one JSON object",
            ),
        );
    };
    let id = object.get("id").cloned();
    let invalid = |why: &str| {
        let id = object.get("id").cloned().unwrap_or(Value::Null);
        json_response(
            StatusCode::BAD_REQUEST,
            &rpc_error(id, -32600, &format!("Invalid Request: {why}")),
        )
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("jsonrpc must be \"2.0\"");
    }
    let Some(method) = object.get("method") else {
        if id.is_some() && (object.contains_key("result") || object.contains_key("error")) {
            // A JSON-RPC response from the client: accepted, nothing to say.
            return empty_response(StatusCode::ACCEPTED);
        }
        return invalid("missing method");
    };
    let Some(method) = method.as_str() else {
        return invalid("method must be a string");
    };
    let Some(id) = id else {
        // Notification (e.g. notifications/initialized).
        return empty_response(StatusCode::ACCEPTED);
    };
    if !(id.is_string() || id.is_number()) {
        return invalid("id must be a string or a number");
    }
    let params = object.get("params").cloned().unwrap_or(Value::Null);

    match method {
        "initialize" => {
            let result = json!({
                "protocolVersion": MCP_PROTOCOL_VERSION,
                "capabilities": { "tools": {} },
                "serverInfo": { "name": "demo-mcp", "version": "0.1.0" },
            });
            let mut response = json_response(StatusCode::OK, &rpc_result(id, result));
            if let Ok(session) = HeaderValue::from_str(&random_hex32()) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static("mcp-session-id"), session);
            }
            response
        }
        "ping" => json_response(StatusCode::OK, &rpc_result(id, json!({}))),
        "tools/list" => {
            let result = json!({
                "tools": [{
                    "name": "echo",
                    "description": "Echoes back the given text",
                    "inputSchema": {
                        "type": "object",
                        "properties": { "text": { "type": "string" } },
                        "required": ["text"],
                    },
                }],
            });
            json_response(StatusCode::OK, &rpc_result(id, result))
        }
        "tools/call" => {
            let body = match params.get("name").and_then(Value::as_str) {
                Some("echo") => {
                    match params
                        .get("arguments")
                        .and_then(|arguments| arguments.get("text"))
                        .and_then(Value::as_str)
                    {
                        Some(text) => rpc_result(
                            id,
                            json!({ "content": [{ "type": "text", "text": text }], "isError": false }),
                        ),
                        None => rpc_error(id, -32602, "Invalid params: `text` must be a string"),
                    }
                }
                Some(other) => rpc_error(id, -32602, &format!("Unknown tool: {other}")),
                None => rpc_error(id, -32602, "Invalid params: missing tool name"),
            };
            json_response(StatusCode::OK, &body)
        }
        _ => json_response(
            StatusCode::OK,
            &rpc_error(id, -32601, &format!("Method not found: {method}")),
        ),
    }
}

/// A JSON-RPC 2.0 request body: `{"jsonrpc":"2.0","id":id,"method":method,"params":params}`
/// (`params` is left out when it is `null`).
pub fn jsonrpc(id: u64, method: &str, params: Value) -> String {
    let mut body = json!({ "jsonrpc": "2.0", "id": id, "method": method });
    if !params.is_null() {
        body["params"] = params;
    }
    body.to_string()
}

/// A JSON-RPC 2.0 notification body (no `id`), e.g.
/// `jsonrpc_notification("notifications/initialized", Value::Null)`.
pub fn jsonrpc_notification(method: &str, params: Value) -> String {
    let mut body = json!({ "jsonrpc": "2.0", "method": method });
    if !params.is_null() {
        body["params"] = params;
    }
    body.to_string()
}

// ---------------------------------------------------------------------------
// Client side (for the examples)
// ---------------------------------------------------------------------------

/// The error type of [`post_jsonrpc`].
pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// Ends an example: prints its outcome and turns it into the process's exit code (0 only when
/// every step succeeded).
pub fn finish(example: &str, result: Result<(), ClientError>) -> std::process::ExitCode {
    match result {
        Ok(()) => {
            println!("\n{example}: every step succeeded");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("\n{example} FAILED: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Fails an example's step with `what` unless `ok`.
pub fn check(ok: bool, what: &str) -> Result<(), ClientError> {
    if ok {
        Ok(())
    } else {
        Err(what.to_owned().into())
    }
}

/// POSTs one JSON-RPC message `body` to `url` through `client` (for example
/// a hyper-util client wrapped in the crate's layer) and returns the status and
/// the JSON body (`Value::Null` when empty).
pub async fn post_jsonrpc<S, B>(
    client: &mut S,
    url: &str,
    body: &str,
) -> Result<(StatusCode, Value), ClientError>
where
    S: tower::Service<http::Request<http_body_util::Full<Bytes>>, Response = http::Response<B>>,
    S::Error: Into<ClientError>,
    B: http_body::Body,
    B::Error: Into<ClientError>,
{
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let request = http::Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(http_body_util::Full::new(Bytes::from(body.to_owned())))?;
    let response = client
        .ready()
        .await
        .map_err(Into::into)?
        .call(request)
        .await
        .map_err(Into::into)?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(Into::into)?
        .to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)?
    };
    Ok((status, json))
}

/// A `tracing` writer that keeps everything written, so tests can search the logs for secrets.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
