//! Client-authentication JWT assertions (`private_key_jwt`).
//!
//! A client that holds a private key proves who it is to the token endpoint with a short-lived
//! JWT it signs itself (RFC 7523 §2.2, with the changes of RFC 10070). This module loads the key
//! ([`PrivateKey`]) and signs one assertion per token request ([`sign_assertion`]).
//!
//! # Keys
//!
//! [`PrivateKey`] reads PEM ([`PrivateKey::from_pem`]), DER ([`PrivateKey::from_der`]) and JWK
//! ([`PrivateKey::from_jwk`]) private keys. The signing algorithm follows from the key: RSA →
//! `RS256`, P-256 → `ES256`, P-384 → `ES384`, Ed25519 → `EdDSA`; an RSA key can be switched to
//! `PS256` with [`PrivateKey::with_algorithm`]. Every key is checked when it is loaded by signing
//! a probe and verifying it with the key's public half, so a key that loads also signs.
//!
//! # Claims
//!
//! Each assertion carries `iss` and `sub` (the client id), `aud` (one JSON string: the
//! authorization server's issuer identifier by default, or its token endpoint for servers that
//! want that), `iat`, `exp` (`iat` plus a short lifetime, 120 s by default) and a fresh random
//! `jti`. The header carries `alg`, `typ` (`client-authentication+jwt` by default), and `kid` and
//! `x5t#S256` when the key has them. An assertion is never reused: each call signs a new one
//! with a new `jti`.
//!
//! # Example
//!
//! ```
//! use std::time::SystemTime;
//! # use tower_client_credentials::jwt;
//! use jwt::{AssertionClaims, PrivateKey, SigningAlgorithm, TYP_CLIENT_AUTHENTICATION};
//!
//! # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/p256.pkcs8.pem"));
//! let key = PrivateKey::from_pem(pem)?.with_kid("2026-01");
//! assert_eq!(key.algorithm(), SigningAlgorithm::ES256);
//!
//! let claims = AssertionClaims::new("my-client", "https://as.example.com");
//! let jwt = jwt::sign_assertion(&key, &claims, TYP_CLIENT_AUTHENTICATION, SystemTime::now())?;
//! assert_eq!(jwt.split('.').count(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Security
//!
//! Key bytes live in one shared, immutable allocation that is zeroized when the last clone of the
//! key is dropped; decoding buffers are zeroized too. Neither `Debug` of [`PrivateKey`] nor the
//! `Display` or `Debug` of [`KeyError`] and [`SignError`] show key material. Only asymmetric
//! algorithms exist here: there is no HMAC and no `none`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::signature::{
    self as lc, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

/// The default lifetime of an assertion: `exp` is `iat` plus 120 seconds.
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(120);

/// The JWS `typ` that RFC 10070 asks clients to put on client-authentication JWTs.
pub const TYP_CLIENT_AUTHENTICATION: &str = "client-authentication+jwt";

/// The generic JWS `typ`, for authorization servers (such as Microsoft Entra) that expect it.
pub const TYP_JWT: &str = "JWT";

/// The registered claims this module sets; extra claims with these names are ignored.
const RESERVED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "iat", "exp", "jti", "nbf"];

// ---------------------------------------------------------------------------------------------
// Algorithms
// ---------------------------------------------------------------------------------------------

/// An asymmetric JWS algorithm that can sign a client assertion.
///
/// There is deliberately no HMAC variant and no `none`: `private_key_jwt` needs a private key.
///
/// ```
/// # use tower_client_credentials::jwt::SigningAlgorithm;
/// assert_eq!(SigningAlgorithm::PS256.as_str(), "PS256");
/// assert_eq!("ES384".parse::<SigningAlgorithm>(), Ok(SigningAlgorithm::ES384));
/// assert!("HS256".parse::<SigningAlgorithm>().is_err());
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA keys).
    RS256,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256 (RSA keys).
    PS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// EdDSA on Ed25519.
    EdDSA,
}

impl SigningAlgorithm {
    /// The JWA name that goes in the JWS `alg` header, such as `"ES256"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::PS256 => "PS256",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    fn jsonwebtoken(self) -> Algorithm {
        match self {
            Self::RS256 => Algorithm::RS256,
            Self::PS256 => Algorithm::PS256,
            Self::ES256 => Algorithm::ES256,
            Self::ES384 => Algorithm::ES384,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = KeyError;

    /// Parses a JWA name exactly as registered (`"RS256"`, `"EdDSA"`, ...).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(Self::RS256),
            "PS256" => Ok(Self::PS256),
            "ES256" => Ok(Self::ES256),
            "ES384" => Ok(Self::ES384),
            "EdDSA" => Ok(Self::EdDSA),
            other => Err(KeyError::UnsupportedAlgorithm {
                alg: printable(other),
            }),
        }
    }
}

/// The kind of key material, which fixes the algorithms it can sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::Ed25519 => "Ed25519",
        }
    }

    fn default_algorithm(self) -> SigningAlgorithm {
        match self {
            Self::Rsa => SigningAlgorithm::RS256,
            Self::P256 => SigningAlgorithm::ES256,
            Self::P384 => SigningAlgorithm::ES384,
            Self::Ed25519 => SigningAlgorithm::EdDSA,
        }
    }

    fn supports(self, alg: SigningAlgorithm) -> bool {
        use SigningAlgorithm::*;
        matches!(
            (self, alg),
            (Self::Rsa, RS256 | PS256)
                | (Self::P256, ES256)
                | (Self::P384, ES384)
                | (Self::Ed25519, EdDSA)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a private key could not be loaded or used.
///
/// `Display` says what is wrong in lowercase words (`not PEM`, `unsupported curve P-521`,
/// `JWK is missing d`); neither `Display` nor `Debug` ever contains key material. Names taken from
/// the input (a PEM label, a JWK `kty`, `crv` or `alg`) are shortened and stripped of unusual
/// characters before they are kept.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The input has no `-----BEGIN ...-----` line.
    NotPem,
    /// A PEM block is damaged.
    InvalidPem {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The PEM input holds more than one private key.
    MultiplePrivateKeys,
    /// The PEM block is of a kind this module does not read (for example `OPENSSH PRIVATE KEY`).
    UnsupportedPemLabel {
        /// The label of the block.
        label: String,
    },
    /// The key is encrypted; decrypt it first (for example with `openssl pkcs8 -nocrypt`).
    Encrypted,
    /// The input is a public key, which cannot sign.
    PublicKey,
    /// The input is an X.509 certificate, not the private key that goes with it.
    Certificate,
    /// The bytes are not a DER private key in any known layout (PKCS#8, PKCS#1 or SEC1).
    NotDer,
    /// The key has the outline of the named format but its contents are damaged.
    Malformed {
        /// The format it claimed to be, such as `"PKCS#8"`.
        format: &'static str,
    },
    /// A PKCS#1 (`RSA PRIVATE KEY`) block does not hold an RSA private key.
    Pkcs1NotRsa,
    /// A SEC1 (`EC PRIVATE KEY`) block does not hold an EC private key.
    Sec1NotEc,
    /// A SEC1 key that does not name its curve.
    MissingCurve,
    /// An elliptic curve other than P-256 and P-384 (and Ed25519 for OKP keys).
    UnsupportedCurve {
        /// The curve's name, or its OID.
        curve: String,
    },
    /// A key type that cannot sign client assertions (`oct`, X25519, DSA, ...).
    UnsupportedKeyType {
        /// The key type's name, or its OID.
        key_type: String,
    },
    /// An algorithm outside [`SigningAlgorithm`] (`HS256`, `none`, `ES512`, ...).
    UnsupportedAlgorithm {
        /// The algorithm's name.
        alg: String,
    },
    /// The algorithm does not fit the key, such as `ES256` for an RSA key.
    AlgorithmMismatch {
        /// The algorithm asked for.
        algorithm: SigningAlgorithm,
        /// The key's type: `"RSA"`, `"P-256"`, `"P-384"` or `"Ed25519"`.
        key_type: &'static str,
    },
    /// The JWK is not a single JSON object.
    InvalidJwk {
        /// What is wrong with it.
        reason: String,
    },
    /// A member the key needs is absent; a public JWK lacks `d`.
    JwkMissing {
        /// The member's name.
        member: &'static str,
    },
    /// A JWK member has the wrong type, encoding or size.
    JwkInvalidMember {
        /// The member's name.
        member: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The JWK's `use` or `key_ops` say it is not for signing.
    JwkNotForSigning,
    /// The RSA modulus is shorter than 2048 bits.
    RsaKeyTooSmall {
        /// The modulus length in bits.
        bits: usize,
    },
    /// The crypto library refused the key.
    Rejected {
        /// Why, in words.
        reason: &'static str,
    },
    /// The key loaded, but a probe signature did not verify with its public half.
    SelfTestFailed,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPem => f.write_str("not PEM: no -----BEGIN line found"),
            Self::InvalidPem { reason } => write!(f, "malformed PEM: {reason}"),
            Self::MultiplePrivateKeys => {
                f.write_str("the PEM input holds more than one private key")
            }
            Self::UnsupportedPemLabel { label } => write!(f, "unsupported PEM block {label}"),
            Self::Encrypted => f.write_str("the private key is encrypted; decrypt it first"),
            Self::PublicKey => f.write_str("this is a public key; a private key is needed"),
            Self::Certificate => {
                f.write_str("this is a certificate; the private key that goes with it is needed")
            }
            Self::NotDer => f.write_str("not a DER private key (PKCS#8, PKCS#1 or SEC1)"),
            Self::Malformed { format } => write!(f, "malformed {format} key"),
            Self::Pkcs1NotRsa => f.write_str("PKCS#1 key is not RSA"),
            Self::Sec1NotEc => f.write_str("SEC1 key is not an EC private key"),
            Self::MissingCurve => f.write_str("SEC1 key does not name its curve"),
            Self::UnsupportedCurve { curve } => write!(f, "unsupported curve {curve}"),
            Self::UnsupportedKeyType { key_type } => write!(f, "unsupported key type {key_type}"),
            Self::UnsupportedAlgorithm { alg } => write!(
                f,
                "unsupported algorithm {alg} (client assertions use RS256, PS256, ES256, ES384 or EdDSA)"
            ),
            Self::AlgorithmMismatch {
                algorithm,
                key_type,
            } => {
                write!(f, "{algorithm} cannot sign with a {key_type} key")
            }
            Self::InvalidJwk { reason } => write!(f, "JWK {reason}"),
            Self::JwkMissing { member } => write!(f, "JWK is missing {member}"),
            Self::JwkInvalidMember { member, reason } => write!(f, "JWK member {member} {reason}"),
            Self::JwkNotForSigning => f.write_str("JWK is not meant for signing (use or key_ops)"),
            Self::RsaKeyTooSmall { bits } => {
                write!(
                    f,
                    "RSA key of {bits} bits is too small (2048 bits is the minimum)"
                )
            }
            Self::Rejected { reason } => write!(f, "key rejected: {reason}"),
            Self::SelfTestFailed => f.write_str("key failed its test signature"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Why an assertion could not be signed.
///
/// `Display` never contains key material or claim values.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignError {
    /// `issuer`, `subject` or `audience` is empty.
    EmptyClaim {
        /// The claim: `"iss"`, `"sub"` or `"aud"`.
        claim: &'static str,
    },
    /// The lifetime is under one second, or so long that `exp` overflows.
    InvalidLifetime,
    /// The clock reads earlier than 1970-01-01.
    ClockBeforeEpoch,
    /// The `typ` header value is empty.
    EmptyType,
    /// The operating system's random number generator failed.
    Random,
    /// The crypto library failed to sign.
    Signing {
        /// The library's description of the failure.
        reason: String,
    },
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyClaim { claim } => write!(f, "assertion claim {claim} is empty"),
            Self::InvalidLifetime => {
                f.write_str("assertion lifetime is under one second or too long")
            }
            Self::ClockBeforeEpoch => f.write_str("the system clock is before 1970"),
            Self::EmptyType => f.write_str("assertion typ is empty"),
            Self::Random => f.write_str("the system random number generator failed"),
            Self::Signing { reason } => write!(f, "signing the assertion failed: {reason}"),
        }
    }
}

impl std::error::Error for SignError {}

// ---------------------------------------------------------------------------------------------
// PrivateKey
// ---------------------------------------------------------------------------------------------

/// A private key for signing client assertions.
///
/// Cloning is cheap: the key bytes sit behind an [`Arc`] and are zeroized when the last clone
/// is dropped. `Debug` prints the algorithm, `kid` and `x5t#S256`, never key material:
///
/// ```
/// # use tower_client_credentials::jwt::PrivateKey;
/// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/p256.pkcs8.pem"));
/// let key = PrivateKey::from_pem(pem)?.with_kid("k1");
/// assert_eq!(
///     format!("{key:?}"),
///     r#"PrivateKey { algorithm: ES256, kid: Some("k1"), x5t_s256: None }"#
/// );
/// # Ok::<(), tower_client_credentials::jwt::KeyError>(())
/// ```
#[derive(Clone)]
pub struct PrivateKey {
    material: Arc<KeyMaterial>,
    algorithm: SigningAlgorithm,
    kid: Option<Arc<str>>,
    x5t_s256: Option<Arc<str>>,
}

/// The loaded key. `EncodingKey` zeroizes its bytes on drop.
struct KeyMaterial {
    kind: KeyKind,
    encoding: EncodingKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid())
            .field("x5t_s256", &self.x5t_s256())
            .finish()
    }
}

impl PrivateKey {
    /// Loads a PEM private key: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`).
    ///
    /// The algorithm is inferred from the key: RSA → `RS256`, P-256 → `ES256`, P-384 → `ES384`,
    /// Ed25519 → `EdDSA`. `EC PARAMETERS` blocks (as `openssl ecparam -genkey` writes them) are
    /// skipped; any other block beside the key is ignored, but two private keys are refused.
    ///
    /// # Errors
    ///
    /// A [`KeyError`] saying what is wrong: [`KeyError::NotPem`], [`KeyError::Encrypted`],
    /// [`KeyError::PublicKey`], [`KeyError::Certificate`], [`KeyError::UnsupportedCurve`], ...
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let blocks = pem::blocks(pem)?;
        let mut private = blocks.iter().filter(|b| pem::is_private_key_label(b.label));
        let Some(block) = private.next() else {
            return Err(pem::explain_missing_key(&blocks));
        };
        if private.next().is_some() {
            return Err(KeyError::MultiplePrivateKeys);
        }
        let der = block.decode()?;
        match block.label {
            "PRIVATE KEY" => match der::classify(&der) {
                DerLayout::Pkcs8 => load_pkcs8(&der),
                _ => Err(KeyError::Malformed { format: "PKCS#8" }),
            },
            "RSA PRIVATE KEY" => match der::classify(&der) {
                DerLayout::Pkcs1 => load_pkcs1(&der),
                _ => Err(KeyError::Pkcs1NotRsa),
            },
            _ => match der::classify(&der) {
                DerLayout::Sec1 => load_sec1(&der),
                _ => Err(KeyError::Sec1NotEc),
            },
        }
    }

    /// Loads a DER private key, detecting PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    ///
    /// # Errors
    ///
    /// [`KeyError::NotDer`] for bytes in none of those layouts, [`KeyError::PublicKey`] or
    /// [`KeyError::Certificate`] for those, and the other [`KeyError`]s for keys that are not
    /// supported or do not sign.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        match der::classify(der) {
            DerLayout::Pkcs8 => load_pkcs8(der),
            DerLayout::Pkcs1 => load_pkcs1(der),
            DerLayout::Sec1 => load_sec1(der),
            DerLayout::EncryptedPkcs8 => Err(KeyError::Encrypted),
            DerLayout::PublicKey => Err(KeyError::PublicKey),
            DerLayout::Certificate => Err(KeyError::Certificate),
            DerLayout::Unknown => Err(KeyError::NotDer),
        }
    }

    /// Loads a private JWK (RFC 7517, RFC 7518 §6): RSA with `n e d p q dp dq qi`, EC P-256 or
    /// P-384 with `x y d`, or OKP Ed25519 with `x d`.
    ///
    /// The `alg` member, when present, sets the algorithm (and must fit the key), `kid` sets the
    /// key id, and `x5t#S256` the certificate thumbprint. A JWK whose `use` is not `sig` or whose
    /// `key_ops` lack `sign` is refused. String members are zeroized after parsing.
    ///
    /// ```
    /// # use tower_client_credentials::jwt::{PrivateKey, SigningAlgorithm};
    /// # let jwk = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/ed25519.jwk.json"));
    /// let key = PrivateKey::from_jwk(jwk)?;
    /// assert_eq!(key.algorithm(), SigningAlgorithm::EdDSA);
    /// assert_eq!(key.kid(), Some("ed25519-test"));
    /// # Ok::<(), tower_client_credentials::jwt::KeyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidJwk`], [`KeyError::JwkMissing`] (a public JWK lacks `d`),
    /// [`KeyError::JwkInvalidMember`], [`KeyError::UnsupportedKeyType`] (`oct` keys),
    /// [`KeyError::UnsupportedCurve`], [`KeyError::UnsupportedAlgorithm`],
    /// [`KeyError::AlgorithmMismatch`], or [`KeyError::Rejected`] for inconsistent values.
    pub fn from_jwk(jwk_json: &str) -> Result<Self, KeyError> {
        let mut value: Value =
            serde_json::from_str(jwk_json).map_err(|e| KeyError::InvalidJwk {
                reason: format!(
                    "is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        let result = jwk::load(&value);
        jwk::scrub(&mut value);
        result
    }

    /// Switches to another algorithm that fits the key, such as `PS256` for an RSA key.
    ///
    /// ```
    /// # use tower_client_credentials::jwt::{KeyError, PrivateKey, SigningAlgorithm};
    /// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/rsa.pkcs1.pem"));
    /// let key = PrivateKey::from_pem(pem)?;
    /// assert_eq!(key.algorithm(), SigningAlgorithm::RS256);
    /// let pss = key.clone().with_algorithm(SigningAlgorithm::PS256)?;
    /// assert_eq!(pss.algorithm(), SigningAlgorithm::PS256);
    /// assert!(matches!(
    ///     key.with_algorithm(SigningAlgorithm::ES256),
    ///     Err(KeyError::AlgorithmMismatch { .. })
    /// ));
    /// # Ok::<(), KeyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::AlgorithmMismatch`] when the algorithm does not fit the key (`ES256` for an RSA
    /// key, `ES384` for a P-256 key, ...).
    pub fn with_algorithm(mut self, alg: SigningAlgorithm) -> Result<Self, KeyError> {
        let kind = self.material.kind;
        if !kind.supports(alg) {
            return Err(KeyError::AlgorithmMismatch {
                algorithm: alg,
                key_type: kind.name(),
            });
        }
        self.algorithm = alg;
        Ok(self)
    }

    /// Sets the key id sent in the JWS `kid` header.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(Arc::from(kid.into()));
        self
    }

    /// Sets the `x5t#S256` header: the base64url (unpadded) SHA-256 of the DER certificate that
    /// holds this key's public half, for servers that identify the key by its certificate.
    pub fn with_x5t_s256(mut self, thumbprint: impl Into<String>) -> Self {
        self.x5t_s256 = Some(Arc::from(thumbprint.into()));
        self
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The key id, if one is set.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `x5t#S256` certificate thumbprint, if one is set.
    pub fn x5t_s256(&self) -> Option<&str> {
        self.x5t_s256.as_deref()
    }

    /// Whether this key can sign with `alg`; use it to match the algorithms an authorization
    /// server lists in `token_endpoint_auth_signing_alg_values_supported`.
    pub fn supports(&self, alg: SigningAlgorithm) -> bool {
        self.material.kind.supports(alg)
    }

    /// Wraps checked key bytes, after a probe signature verified with the public key.
    fn new(kind: KeyKind, encoding: EncodingKey, public_key: &[u8]) -> Result<Self, KeyError> {
        let algorithm = kind.default_algorithm();
        let probe = b"tower-client-credentials key check";
        let signature =
            sign_bytes(&encoding, algorithm, probe).map_err(|_| KeyError::SelfTestFailed)?;
        let verify: &'static dyn lc::VerificationAlgorithm = match kind {
            KeyKind::Rsa => &lc::RSA_PKCS1_2048_8192_SHA256,
            KeyKind::P256 => &lc::ECDSA_P256_SHA256_FIXED,
            KeyKind::P384 => &lc::ECDSA_P384_SHA384_FIXED,
            KeyKind::Ed25519 => &lc::ED25519,
        };
        lc::UnparsedPublicKey::new(verify, public_key)
            .verify(probe, &signature)
            .map_err(|_| KeyError::SelfTestFailed)?;
        Ok(Self {
            material: Arc::new(KeyMaterial { kind, encoding }),
            algorithm,
            kid: None,
            x5t_s256: None,
        })
    }
}

/// Signs `message` with jsonwebtoken's aws-lc-rs provider, named explicitly so that signing never
/// depends on (or panics for want of) a process-wide default provider.
fn sign_bytes(
    key: &EncodingKey,
    alg: SigningAlgorithm,
    message: &[u8],
) -> Result<Vec<u8>, jsonwebtoken::errors::Error> {
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    let signer = (provider.signer_factory)(&alg.jsonwebtoken(), key)?;
    Ok(signer.try_sign(message)?)
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// The outline of a DER structure, read before any crypto parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DerLayout {
    Pkcs8,
    EncryptedPkcs8,
    Pkcs1,
    Sec1,
    PublicKey,
    Certificate,
    Unknown,
}

fn rejected(e: KeyRejected) -> KeyError {
    let reason = match e.description_() {
        "TooSmall" => "the key is too small",
        "TooLarge" => "the key is too large",
        "InconsistentComponents" => "the key's components do not match each other",
        "InvalidEncoding" => "the key's encoding is invalid",
        "WrongAlgorithm" => "the key is for another algorithm",
        _ => "the crypto library refused the key",
    };
    KeyError::Rejected { reason }
}

fn ec_signing(kind: KeyKind) -> &'static lc::EcdsaSigningAlgorithm {
    if kind == KeyKind::P384 {
        &ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &ECDSA_P256_SHA256_FIXED_SIGNING
    }
}

fn curve_from_oid(oid: &[u8]) -> Result<KeyKind, KeyError> {
    match der::oid_string(oid).as_deref() {
        Some("1.2.840.10045.3.1.7") => Ok(KeyKind::P256),
        Some("1.3.132.0.34") => Ok(KeyKind::P384),
        Some("1.3.132.0.35") => Err(KeyError::UnsupportedCurve {
            curve: "P-521".into(),
        }),
        Some("1.3.132.0.10") => Err(KeyError::UnsupportedCurve {
            curve: "secp256k1".into(),
        }),
        Some(other) => Err(KeyError::UnsupportedCurve {
            curve: format!("OID {other}"),
        }),
        None => Err(KeyError::Malformed { format: "EC" }),
    }
}

/// PKCS#8 `PrivateKeyInfo` / `OneAsymmetricKey` (RFC 5208, RFC 5958).
fn load_pkcs8(der: &[u8]) -> Result<PrivateKey, KeyError> {
    const MALFORMED: KeyError = KeyError::Malformed { format: "PKCS#8" };
    let fields = der::exactly(der, der::SEQUENCE)
        .and_then(der::children)
        .ok_or(MALFORMED)?;
    let (Some(alg_id), Some(private_key)) = (fields.get(1), fields.get(2)) else {
        return Err(MALFORMED);
    };
    let alg_fields = der::children(alg_id.value).ok_or(MALFORMED)?;
    let oid = alg_fields
        .first()
        .filter(|t| t.tag == der::OID)
        .ok_or(MALFORMED)?;
    let oid = der::oid_string(oid.value).ok_or(MALFORMED)?;
    match oid.as_str() {
        "1.2.840.113549.1.1.1" => {
            if private_key.tag != der::OCTET_STRING {
                return Err(MALFORMED);
            }
            load_pkcs1(private_key.value)
        }
        "1.2.840.10045.2.1" => {
            let curve = alg_fields
                .get(1)
                .filter(|t| t.tag == der::OID)
                .ok_or(KeyError::MissingCurve)?;
            let kind = curve_from_oid(curve.value)?;
            let pair = EcdsaKeyPair::from_pkcs8(ec_signing(kind), der).map_err(rejected)?;
            ec_key(kind, &pair)
        }
        "1.3.101.112" => {
            let pair = Ed25519KeyPair::from_pkcs8(der).map_err(rejected)?;
            ed25519_key(&pair)
        }
        other => {
            let key_type = match other {
                "1.3.101.110" => "X25519".to_owned(),
                "1.3.101.111" => "X448".to_owned(),
                "1.3.101.113" => "Ed448".to_owned(),
                "1.2.840.113549.1.1.10" => "RSASSA-PSS (export the key as plain RSA)".to_owned(),
                "1.2.840.10040.4.1" => "DSA".to_owned(),
                _ => format!("OID {other}"),
            };
            Err(KeyError::UnsupportedKeyType { key_type })
        }
    }
}

/// PKCS#1 `RSAPrivateKey` (RFC 8017 appendix A.1.2), which jsonwebtoken signs with directly.
fn load_pkcs1(der: &[u8]) -> Result<PrivateKey, KeyError> {
    // Checked here rather than left to the crypto library, whose reason varies by version.
    let fields = der::exactly(der, der::SEQUENCE)
        .and_then(der::children)
        .ok_or(KeyError::Malformed { format: "PKCS#1" })?;
    let modulus = fields
        .get(1)
        .ok_or(KeyError::Malformed { format: "PKCS#1" })?;
    let bits = der::uint_bits(modulus.value);
    if bits < 2048 {
        return Err(KeyError::RsaKeyTooSmall { bits });
    }
    let pair = RsaKeyPair::from_der(der).map_err(rejected)?;
    PrivateKey::new(
        KeyKind::Rsa,
        EncodingKey::from_rsa_der(der),
        pair.public_key().as_ref(),
    )
}

/// SEC1 `ECPrivateKey` (RFC 5915), turned into PKCS#8 for jsonwebtoken.
fn load_sec1(der: &[u8]) -> Result<PrivateKey, KeyError> {
    const MALFORMED: KeyError = KeyError::Malformed { format: "SEC1" };
    let fields = der::exactly(der, der::SEQUENCE)
        .and_then(der::children)
        .ok_or(MALFORMED)?;
    let params = fields
        .iter()
        .find(|t| t.tag == der::CONTEXT_0)
        .ok_or(KeyError::MissingCurve)?;
    let (curve, _) = der::next(params.value).ok_or(MALFORMED)?;
    if curve.tag != der::OID {
        return Err(KeyError::UnsupportedCurve {
            curve: "with explicit parameters".into(),
        });
    }
    let kind = curve_from_oid(curve.value)?;
    let pair = EcdsaKeyPair::from_private_key_der(ec_signing(kind), der).map_err(rejected)?;
    ec_key(kind, &pair)
}

fn ec_key(kind: KeyKind, pair: &EcdsaKeyPair) -> Result<PrivateKey, KeyError> {
    let pkcs8 = pair.to_pkcs8v1().map_err(|_| KeyError::Rejected {
        reason: "could not re-encode the EC key",
    })?;
    PrivateKey::new(
        kind,
        EncodingKey::from_ec_der(pkcs8.as_ref()),
        pair.public_key().as_ref(),
    )
}

fn ed25519_key(pair: &Ed25519KeyPair) -> Result<PrivateKey, KeyError> {
    let pkcs8 = pair.to_pkcs8v1().map_err(|_| KeyError::Rejected {
        reason: "could not re-encode the Ed25519 key",
    })?;
    PrivateKey::new(
        KeyKind::Ed25519,
        EncodingKey::from_ed_der(pkcs8.as_ref()),
        pair.public_key().as_ref(),
    )
}

/// Keeps a name taken from the input short and plain before it goes into an error.
fn printable(s: &str) -> String {
    const MAX: usize = 24;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || " -_.+#:/".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// PEM (RFC 7468)
// ---------------------------------------------------------------------------------------------

mod pem {
    use super::*;

    /// One `-----BEGIN label----- ... -----END label-----` block.
    pub(super) struct Block<'a> {
        pub(super) label: &'a str,
        body: &'a str,
    }

    impl Block<'_> {
        /// The DER bytes of the block, in a buffer zeroized on drop.
        pub(super) fn decode(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
            if self.body.contains("Proc-Type:") || self.body.contains("DEK-Info:") {
                return Err(KeyError::Encrypted);
            }
            if self.body.contains(':') {
                return Err(KeyError::InvalidPem {
                    reason: "unexpected header lines",
                });
            }
            let mut b64 = Zeroizing::new(String::with_capacity(self.body.len()));
            b64.extend(self.body.chars().filter(|c| !c.is_ascii_whitespace()));
            let der = STANDARD
                .decode(b64.as_bytes())
                .map_err(|_| KeyError::InvalidPem {
                    reason: "the body is not valid base64",
                })?;
            let der = Zeroizing::new(der);
            if der.is_empty() {
                return Err(KeyError::InvalidPem {
                    reason: "the body is empty",
                });
            }
            Ok(der)
        }
    }

    pub(super) fn is_private_key_label(label: &str) -> bool {
        matches!(label, "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY")
    }

    /// Every block in `input`, in order; text outside blocks is ignored.
    pub(super) fn blocks(input: &str) -> Result<Vec<Block<'_>>, KeyError> {
        const BEGIN: &str = "-----BEGIN ";
        const DASHES: &str = "-----";
        let mut out = Vec::new();
        let mut rest = input;
        while let Some(start) = rest.find(BEGIN) {
            let after = &rest[start + BEGIN.len()..];
            let label_end = after
                .find(DASHES)
                .filter(|&i| !after[..i].contains('\n'))
                .ok_or(KeyError::InvalidPem {
                    reason: "the BEGIN line is not closed",
                })?;
            let label = &after[..label_end];
            let body_and_rest = &after[label_end + DASHES.len()..];
            let end_line = format!("-----END {label}-----");
            let body_end = body_and_rest.find(&end_line).ok_or(KeyError::InvalidPem {
                reason: "no END line matches the BEGIN line",
            })?;
            out.push(Block {
                label,
                body: &body_and_rest[..body_end],
            });
            rest = &body_and_rest[body_end + end_line.len()..];
        }
        if out.is_empty() {
            return Err(KeyError::NotPem);
        }
        Ok(out)
    }

    /// The error for PEM input without a private key block, from what it has instead.
    pub(super) fn explain_missing_key(blocks: &[Block<'_>]) -> KeyError {
        let has = |labels: &[&str]| blocks.iter().any(|b| labels.contains(&b.label));
        if has(&["ENCRYPTED PRIVATE KEY"]) {
            KeyError::Encrypted
        } else if has(&["PUBLIC KEY", "RSA PUBLIC KEY"]) {
            KeyError::PublicKey
        } else if has(&["CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE"]) {
            KeyError::Certificate
        } else {
            let label = blocks
                .iter()
                .find(|b| b.label != "EC PARAMETERS")
                .unwrap_or(&blocks[0])
                .label;
            KeyError::UnsupportedPemLabel {
                label: printable(label),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DER: just enough to tell key layouts apart and to write a PKCS#1 key
// ---------------------------------------------------------------------------------------------

mod der {
    use super::{DerLayout, Zeroizing};

    pub(super) const INTEGER: u8 = 0x02;
    pub(super) const BIT_STRING: u8 = 0x03;
    pub(super) const OCTET_STRING: u8 = 0x04;
    pub(super) const OID: u8 = 0x06;
    pub(super) const SEQUENCE: u8 = 0x30;
    pub(super) const CONTEXT_0: u8 = 0xA0;

    /// One element: its tag and its contents.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Tlv<'a> {
        pub(super) tag: u8,
        pub(super) value: &'a [u8],
    }

    /// Reads the element at the front of `input`; returns it and what follows.
    pub(super) fn next(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
        let (&tag, rest) = input.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags never occur in key structures
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        Some((Tlv { tag, value }, rest))
    }

    /// The contents of `input` if it is exactly one element with `tag`.
    pub(super) fn exactly(input: &[u8], tag: u8) -> Option<&[u8]> {
        let (tlv, rest) = next(input)?;
        (tlv.tag == tag && rest.is_empty()).then_some(tlv.value)
    }

    /// The elements inside a constructed value.
    pub(super) fn children(mut value: &[u8]) -> Option<Vec<Tlv<'_>>> {
        let mut out = Vec::new();
        while !value.is_empty() {
            let (tlv, rest) = next(value)?;
            out.push(tlv);
            value = rest;
        }
        Some(out)
    }

    /// The length in bits of a non-negative INTEGER's contents.
    pub(super) fn uint_bits(value: &[u8]) -> usize {
        let value = &value[value.iter().take_while(|&&b| b == 0).count()..];
        match value.first() {
            None => 0,
            Some(&top) => value.len() * 8 - top.leading_zeros() as usize,
        }
    }

    /// Dotted form of an OID's contents, such as `1.3.101.112`.
    pub(super) fn oid_string(oid: &[u8]) -> Option<String> {
        if oid.is_empty() || oid.len() > 32 || oid.last()? & 0x80 != 0 {
            return None;
        }
        let mut arcs = Vec::new();
        let mut arc: u64 = 0;
        for &b in oid {
            arc = arc.checked_mul(128)? | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                arcs.push(arc);
                arc = 0;
            }
        }
        let first = arcs[0];
        let (a, b) = match first {
            0..40 => (0, first),
            40..80 => (1, first - 40),
            _ => (2, first - 80),
        };
        let mut out = format!("{a}.{b}");
        for arc in &arcs[1..] {
            out.push('.');
            out.push_str(&arc.to_string());
        }
        Some(out)
    }

    /// Tells the key layouts apart by the first fields of the outer SEQUENCE.
    pub(super) fn classify(der: &[u8]) -> DerLayout {
        let Some(fields) = exactly(der, SEQUENCE).and_then(children) else {
            return DerLayout::Unknown;
        };
        let tags: Vec<u8> = fields.iter().map(|t| t.tag).collect();
        match tags.as_slice() {
            // version, AlgorithmIdentifier, OCTET STRING privateKey, ...
            [INTEGER, SEQUENCE, OCTET_STRING, ..] => DerLayout::Pkcs8,
            // version 0, n, e, d, p, q, dp, dq, qi
            [
                INTEGER,
                INTEGER,
                INTEGER,
                INTEGER,
                INTEGER,
                INTEGER,
                INTEGER,
                INTEGER,
                INTEGER,
                ..,
            ] => DerLayout::Pkcs1,
            // RSAPublicKey: n, e
            [INTEGER, INTEGER] => DerLayout::PublicKey,
            // version 1, OCTET STRING privateKey, [0] parameters, [1] publicKey
            [INTEGER, OCTET_STRING, ..] => DerLayout::Sec1,
            // SubjectPublicKeyInfo: AlgorithmIdentifier, BIT STRING
            [SEQUENCE, BIT_STRING] => DerLayout::PublicKey,
            // EncryptedPrivateKeyInfo: AlgorithmIdentifier, OCTET STRING
            [SEQUENCE, OCTET_STRING] => DerLayout::EncryptedPkcs8,
            // Certificate: TBSCertificate, AlgorithmIdentifier, BIT STRING
            [SEQUENCE, SEQUENCE, BIT_STRING] => DerLayout::Certificate,
            _ => DerLayout::Unknown,
        }
    }

    /// Appends a DER length.
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }

    /// Appends an unsigned big-endian integer as a DER INTEGER.
    fn push_uint(out: &mut Vec<u8>, be: &[u8]) {
        let be = &be[be.iter().take_while(|&&b| b == 0).count()..];
        let pad = be.first().is_none_or(|&b| b & 0x80 != 0);
        out.push(INTEGER);
        push_len(out, be.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(be);
    }

    /// A two-prime PKCS#1 `RSAPrivateKey` from its big-endian parts (`n e d p q dp dq qi`), in a
    /// buffer zeroized on drop and sized up front so that it never reallocates.
    pub(super) fn rsa_private_key(parts: &[&[u8]; 8]) -> Zeroizing<Vec<u8>> {
        let capacity = parts.iter().map(|p| p.len() + 6).sum::<usize>() + 16;
        let mut body = Zeroizing::new(Vec::with_capacity(capacity));
        push_uint(&mut body, &[0]);
        for part in parts {
            push_uint(&mut body, part);
        }
        let mut out = Zeroizing::new(Vec::with_capacity(body.len() + 8));
        out.push(SEQUENCE);
        push_len(&mut out, body.len());
        out.extend_from_slice(&body);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// JWK (RFC 7517, RFC 7518 §6)
// ---------------------------------------------------------------------------------------------

mod jwk {
    use super::*;

    /// Overwrites every string in the parsed JWK, so that decoded key members do not linger.
    pub(super) fn scrub(value: &mut Value) {
        match value {
            Value::String(s) => s.zeroize(),
            Value::Array(items) => items.iter_mut().for_each(scrub),
            Value::Object(map) => map.values_mut().for_each(scrub),
            _ => {}
        }
    }

    fn string<'a>(
        obj: &'a Map<String, Value>,
        member: &'static str,
    ) -> Result<Option<&'a str>, KeyError> {
        match obj.get(member) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(KeyError::JwkInvalidMember {
                member,
                reason: "is not a string",
            }),
        }
    }

    fn required<'a>(
        obj: &'a Map<String, Value>,
        member: &'static str,
    ) -> Result<&'a str, KeyError> {
        string(obj, member)?.ok_or(KeyError::JwkMissing { member })
    }

    /// A base64url member's bytes (padding tolerated), zeroized on drop.
    fn bytes(
        obj: &Map<String, Value>,
        member: &'static str,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let text = required(obj, member)?.trim_end_matches('=');
        let decoded = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| KeyError::JwkInvalidMember {
                member,
                reason: "is not base64url",
            })?;
        let decoded = Zeroizing::new(decoded);
        if decoded.is_empty() {
            return Err(KeyError::JwkInvalidMember {
                member,
                reason: "is empty",
            });
        }
        Ok(decoded)
    }

    /// A fixed-size field element; a shorter private scalar is left-padded with zeros.
    fn field(
        obj: &Map<String, Value>,
        member: &'static str,
        size: usize,
        pad: bool,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let raw = bytes(obj, member)?;
        if raw.len() == size {
            return Ok(raw);
        }
        if !pad || raw.len() > size {
            return Err(KeyError::JwkInvalidMember {
                member,
                reason: "has the wrong length for the curve",
            });
        }
        let mut out = Zeroizing::new(vec![0; size]);
        out[size - raw.len()..].copy_from_slice(&raw);
        Ok(out)
    }

    pub(super) fn load(value: &Value) -> Result<PrivateKey, KeyError> {
        let Value::Object(obj) = value else {
            return Err(KeyError::InvalidJwk {
                reason: "is not a JSON object".into(),
            });
        };
        if obj.contains_key("keys") {
            return Err(KeyError::InvalidJwk {
                reason: "is a JWK Set; pass one key from its keys".into(),
            });
        }
        let kty = required(obj, "kty")?;
        if string(obj, "use")?.is_some_and(|u| u != "sig") {
            return Err(KeyError::JwkNotForSigning);
        }
        match obj.get("key_ops") {
            None => {}
            Some(Value::Array(ops)) if ops.iter().any(|op| op.as_str() == Some("sign")) => {}
            Some(Value::Array(_)) => return Err(KeyError::JwkNotForSigning),
            Some(_) => {
                return Err(KeyError::JwkInvalidMember {
                    member: "key_ops",
                    reason: "is not an array",
                });
            }
        }
        let alg = string(obj, "alg")?
            .map(str::parse::<SigningAlgorithm>)
            .transpose()?;
        let kid = string(obj, "kid")?;
        let x5t_s256 = string(obj, "x5t#S256")?;

        let mut key = match kty {
            "RSA" => rsa(obj)?,
            "EC" => ec(obj)?,
            "OKP" => okp(obj)?,
            "oct" => {
                return Err(KeyError::UnsupportedKeyType {
                    key_type: "oct (symmetric keys cannot sign assertions)".into(),
                });
            }
            other => {
                return Err(KeyError::UnsupportedKeyType {
                    key_type: printable(other),
                });
            }
        };
        if let Some(alg) = alg {
            key = key.with_algorithm(alg)?;
        }
        if let Some(kid) = kid {
            key = key.with_kid(kid);
        }
        if let Some(x5t) = x5t_s256 {
            key = key.with_x5t_s256(x5t);
        }
        Ok(key)
    }

    fn rsa(obj: &Map<String, Value>) -> Result<PrivateKey, KeyError> {
        if obj.contains_key("oth") {
            return Err(KeyError::UnsupportedKeyType {
                key_type: "multi-prime RSA".into(),
            });
        }
        let n = bytes(obj, "n")?;
        let e = bytes(obj, "e")?;
        let d = bytes(obj, "d")?;
        let p = bytes(obj, "p")?;
        let q = bytes(obj, "q")?;
        let dp = bytes(obj, "dp")?;
        let dq = bytes(obj, "dq")?;
        let qi = bytes(obj, "qi")?;
        let der = der::rsa_private_key(&[&n, &e, &d, &p, &q, &dp, &dq, &qi]);
        load_pkcs1(&der)
    }

    fn ec(obj: &Map<String, Value>) -> Result<PrivateKey, KeyError> {
        let crv = required(obj, "crv")?;
        let (kind, size) = match crv {
            "P-256" => (KeyKind::P256, 32),
            "P-384" => (KeyKind::P384, 48),
            other => {
                return Err(KeyError::UnsupportedCurve {
                    curve: printable(other),
                });
            }
        };
        let x = field(obj, "x", size, false)?;
        let y = field(obj, "y", size, false)?;
        let d = field(obj, "d", size, true)?;
        let mut point = Vec::with_capacity(1 + 2 * size);
        point.push(0x04);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        let pair = EcdsaKeyPair::from_private_key_and_public_key(ec_signing(kind), &d, &point)
            .map_err(rejected)?;
        ec_key(kind, &pair)
    }

    fn okp(obj: &Map<String, Value>) -> Result<PrivateKey, KeyError> {
        let crv = required(obj, "crv")?;
        if crv != "Ed25519" {
            return Err(KeyError::UnsupportedCurve {
                curve: printable(crv),
            });
        }
        let x = field(obj, "x", 32, false)?;
        let d = field(obj, "d", 32, false)?;
        let pair = Ed25519KeyPair::from_seed_and_public_key(&d, &x).map_err(rejected)?;
        ed25519_key(&pair)
    }
}

// ---------------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------------

/// The claims of one client assertion.
///
/// Start from [`AssertionClaims::new`], which sets `issuer` and `subject` to the client id and
/// the lifetime to [`DEFAULT_ASSERTION_LIFETIME`], then change fields as needed.
#[non_exhaustive]
#[derive(Clone, Copy, Debug)]
pub struct AssertionClaims<'a> {
    /// `iss`: the client id.
    pub issuer: &'a str,
    /// `sub`: the client id.
    pub subject: &'a str,
    /// `aud`, always sent as one JSON string: the authorization server's issuer identifier
    /// (RFC 10070's choice and the default), or the token endpoint for servers that want it.
    pub audience: &'a str,
    /// How long the assertion is valid: `exp = iat + lifetime`, in whole seconds.
    pub lifetime: Duration,
    /// Further claims. They are added to the payload, but never replace `iss`, `sub`, `aud`,
    /// `iat`, `exp`, `jti` or `nbf`: members with those names are dropped.
    pub extra: Option<&'a Map<String, Value>>,
}

impl<'a> AssertionClaims<'a> {
    /// Claims for `client_id` addressed to `audience`, valid for [`DEFAULT_ASSERTION_LIFETIME`].
    pub fn new(client_id: &'a str, audience: &'a str) -> Self {
        Self {
            issuer: client_id,
            subject: client_id,
            audience,
            lifetime: DEFAULT_ASSERTION_LIFETIME,
            extra: None,
        }
    }
}

/// Signs one client assertion and returns it as a compact JWT.
///
/// The header holds `alg` (from the key), `typ` (pass [`TYP_CLIENT_AUTHENTICATION`], or
/// [`TYP_JWT`] for servers such as Microsoft Entra that want it), and `kid` and `x5t#S256` when
/// the key has them. The payload holds `iss`, `sub`, `aud`, `iat` (`now` in whole seconds), `exp`
/// (`iat` plus the lifetime), a `jti` of 128 random bits from the system CSPRNG in base64url,
/// and the extra claims. Every call makes a new `jti`, so an assertion is never re-sent.
///
/// ```
/// # use std::time::{Duration, SystemTime};
/// # use tower_client_credentials::jwt::{self, AssertionClaims, PrivateKey, TYP_JWT};
/// # let jwk = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/p384.jwk.json"));
/// let key = PrivateKey::from_jwk(jwk)?;
/// let mut claims = AssertionClaims::new("my-client", "https://login.example.com/oauth2/token");
/// claims.lifetime = Duration::from_secs(60);
/// let first = jwt::sign_assertion(&key, &claims, TYP_JWT, SystemTime::now())?;
/// let second = jwt::sign_assertion(&key, &claims, TYP_JWT, SystemTime::now())?;
/// assert_ne!(first, second); // fresh jti every time
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`SignError::EmptyClaim`] for an empty issuer, subject or audience,
/// [`SignError::EmptyType`], [`SignError::InvalidLifetime`] for a lifetime under one second,
/// [`SignError::ClockBeforeEpoch`], [`SignError::Random`] if the CSPRNG fails, and
/// [`SignError::Signing`] if the crypto library fails.
pub fn sign_assertion(
    key: &PrivateKey,
    claims: &AssertionClaims<'_>,
    typ: &str,
    now: SystemTime,
) -> Result<String, SignError> {
    for (claim, value) in [
        ("iss", claims.issuer),
        ("sub", claims.subject),
        ("aud", claims.audience),
    ] {
        if value.is_empty() {
            return Err(SignError::EmptyClaim { claim });
        }
    }
    if typ.is_empty() {
        return Err(SignError::EmptyType);
    }
    let lifetime = claims.lifetime.as_secs();
    if lifetime == 0 {
        return Err(SignError::InvalidLifetime);
    }
    let iat = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| SignError::ClockBeforeEpoch)?
        .as_secs();
    let exp = iat
        .checked_add(lifetime)
        .filter(|&e| e <= i64::MAX as u64)
        .ok_or(SignError::InvalidLifetime)?;

    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).map_err(|_| SignError::Random)?;

    let mut payload = Map::new();
    if let Some(extra) = claims.extra {
        for (name, value) in extra {
            if !RESERVED_CLAIMS.contains(&name.as_str()) {
                payload.insert(name.clone(), value.clone());
            }
        }
    }
    payload.insert("iss".into(), claims.issuer.into());
    payload.insert("sub".into(), claims.subject.into());
    payload.insert("aud".into(), claims.audience.into());
    payload.insert("iat".into(), iat.into());
    payload.insert("exp".into(), exp.into());
    payload.insert("jti".into(), URL_SAFE_NO_PAD.encode(jti).into());

    let mut header = Header::new(key.algorithm.jsonwebtoken());
    header.typ = Some(typ.to_owned());
    header.kid = key.kid.as_deref().map(str::to_owned);
    header.x5t_s256 = key.x5t_s256.as_deref().map(str::to_owned);

    let to_json = |e: serde_json::Error| SignError::Signing {
        reason: format!("JSON encoding failed: {e}"),
    };
    let header = serde_json::to_vec(&header).map_err(to_json)?;
    let payload = serde_json::to_vec(&payload).map_err(to_json)?;
    let mut jwt = URL_SAFE_NO_PAD.encode(header);
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut jwt);
    let signature =
        sign_bytes(&key.material.encoding, key.algorithm, jwt.as_bytes()).map_err(|e| {
            SignError::Signing {
                reason: e.to_string(),
            }
        })?;
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
    Ok(jwt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use std::collections::HashSet;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/", $name)).as_slice()
        };
    }

    const CLIENT: &str = "client-7f3a";
    const AUD: &str = "https://as.example.com/tenant/1";

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    /// 16-character pieces of the base64 body of a PEM file, or of base64 made from DER.
    fn pem_chunks(pem: &str) -> Vec<String> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        windows(&body)
    }

    fn der_chunks(der: &[u8]) -> Vec<String> {
        let mut out = windows(&STANDARD.encode(der));
        out.extend(windows(&URL_SAFE_NO_PAD.encode(der)));
        out
    }

    /// 16-character pieces of every private member of a JWK.
    fn jwk_chunks(jwk: &str) -> Vec<String> {
        let value: Value = serde_json::from_str(jwk).unwrap();
        ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .filter_map(|m| value.get(m).and_then(Value::as_str))
            .flat_map(windows)
            .collect()
    }

    fn windows(s: &str) -> Vec<String> {
        let chars: Vec<char> = s.chars().collect();
        chars
            .windows(16)
            .step_by(8)
            .map(|w| w.iter().collect())
            .collect()
    }

    #[track_caller]
    fn assert_no_leak(shown: &str, chunks: &[String]) {
        assert!(!chunks.is_empty());
        for chunk in chunks {
            assert!(
                !shown.contains(chunk.as_str()),
                "{shown:?} contains key material {chunk:?}"
            );
        }
    }

    #[track_caller]
    fn assert_error_hides(err: &KeyError, chunks: &[String]) {
        assert_no_leak(&err.to_string(), chunks);
        assert_no_leak(&format!("{err:?}"), chunks);
    }

    /// A PEM file's body as DER, decoded here independently of the module's PEM reader.
    fn pem_to_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body).unwrap()
    }

    fn to_pem(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn parts(jwt: &str) -> (Value, Value) {
        let pieces: Vec<&str> = jwt.split('.').collect();
        assert_eq!(pieces.len(), 3, "a compact JWS has three parts");
        let json =
            |p: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
        (json(pieces[0]), json(pieces[1]))
    }

    struct Family {
        name: &'static str,
        algorithms: &'static [SigningAlgorithm],
        public: DecodingKey,
        keys: Vec<(&'static str, Result<PrivateKey, KeyError>, Vec<String>)>,
    }

    /// Every key fixture in every format, with the public key (from openssl) that verifies it.
    fn families() -> Vec<Family> {
        let tail = |der: &'static [u8], n: usize| &der[der.len() - n..];
        vec![
            Family {
                name: "RSA",
                algorithms: &[SigningAlgorithm::RS256, SigningAlgorithm::PS256],
                public: DecodingKey::from_rsa_der(fixture!("rsa.pub.der")),
                keys: vec![
                    (
                        "PKCS#8 PEM",
                        PrivateKey::from_pem(text(fixture!("rsa.pkcs8.pem"))),
                        pem_chunks(text(fixture!("rsa.pkcs8.pem"))),
                    ),
                    (
                        "PKCS#1 PEM",
                        PrivateKey::from_pem(text(fixture!("rsa.pkcs1.pem"))),
                        pem_chunks(text(fixture!("rsa.pkcs1.pem"))),
                    ),
                    (
                        "PKCS#8 DER",
                        PrivateKey::from_der(fixture!("rsa.pkcs8.der")),
                        der_chunks(fixture!("rsa.pkcs8.der")),
                    ),
                    (
                        "PKCS#1 DER",
                        PrivateKey::from_der(fixture!("rsa.pkcs1.der")),
                        der_chunks(fixture!("rsa.pkcs1.der")),
                    ),
                    (
                        "JWK",
                        PrivateKey::from_jwk(text(fixture!("rsa.jwk.json"))),
                        jwk_chunks(text(fixture!("rsa.jwk.json"))),
                    ),
                ],
            },
            Family {
                name: "P-256",
                algorithms: &[SigningAlgorithm::ES256],
                public: DecodingKey::from_ec_der(tail(fixture!("p256.pub.der"), 65)),
                keys: vec![
                    (
                        "PKCS#8 PEM",
                        PrivateKey::from_pem(text(fixture!("p256.pkcs8.pem"))),
                        pem_chunks(text(fixture!("p256.pkcs8.pem"))),
                    ),
                    (
                        "SEC1 PEM",
                        PrivateKey::from_pem(text(fixture!("p256.sec1.pem"))),
                        pem_chunks(text(fixture!("p256.sec1.pem"))),
                    ),
                    (
                        "PKCS#8 DER",
                        PrivateKey::from_der(fixture!("p256.pkcs8.der")),
                        der_chunks(fixture!("p256.pkcs8.der")),
                    ),
                    (
                        "SEC1 DER",
                        PrivateKey::from_der(fixture!("p256.sec1.der")),
                        der_chunks(fixture!("p256.sec1.der")),
                    ),
                    (
                        "JWK",
                        PrivateKey::from_jwk(text(fixture!("p256.jwk.json"))),
                        jwk_chunks(text(fixture!("p256.jwk.json"))),
                    ),
                ],
            },
            Family {
                name: "P-384",
                algorithms: &[SigningAlgorithm::ES384],
                public: DecodingKey::from_ec_der(tail(fixture!("p384.pub.der"), 97)),
                keys: vec![
                    (
                        "PKCS#8 PEM",
                        PrivateKey::from_pem(text(fixture!("p384.pkcs8.pem"))),
                        pem_chunks(text(fixture!("p384.pkcs8.pem"))),
                    ),
                    (
                        "SEC1 PEM",
                        PrivateKey::from_pem(text(fixture!("p384.sec1.pem"))),
                        pem_chunks(text(fixture!("p384.sec1.pem"))),
                    ),
                    (
                        "PKCS#8 DER",
                        PrivateKey::from_der(fixture!("p384.pkcs8.der")),
                        der_chunks(fixture!("p384.pkcs8.der")),
                    ),
                    (
                        "SEC1 DER",
                        PrivateKey::from_der(fixture!("p384.sec1.der")),
                        der_chunks(fixture!("p384.sec1.der")),
                    ),
                    (
                        "JWK",
                        PrivateKey::from_jwk(text(fixture!("p384.jwk.json"))),
                        jwk_chunks(text(fixture!("p384.jwk.json"))),
                    ),
                ],
            },
            Family {
                name: "Ed25519",
                algorithms: &[SigningAlgorithm::EdDSA],
                public: DecodingKey::from_ed_der(tail(fixture!("ed25519.pub.der"), 32)),
                keys: vec![
                    (
                        "PKCS#8 PEM",
                        PrivateKey::from_pem(text(fixture!("ed25519.pkcs8.pem"))),
                        pem_chunks(text(fixture!("ed25519.pkcs8.pem"))),
                    ),
                    (
                        "PKCS#8 DER",
                        PrivateKey::from_der(fixture!("ed25519.pkcs8.der")),
                        der_chunks(fixture!("ed25519.pkcs8.der")),
                    ),
                    (
                        "JWK",
                        PrivateKey::from_jwk(text(fixture!("ed25519.jwk.json"))),
                        jwk_chunks(text(fixture!("ed25519.jwk.json"))),
                    ),
                ],
            },
        ]
    }

    fn p256() -> PrivateKey {
        PrivateKey::from_pem(text(fixture!("p256.pkcs8.pem"))).unwrap()
    }

    #[test]
    fn every_format_and_algorithm_signs_and_verifies() {
        let mut checked = 0;
        for family in families() {
            for (format, loaded, _) in family.keys {
                let key =
                    loaded.unwrap_or_else(|e| panic!("{} {format} did not load: {e}", family.name));
                assert_eq!(
                    key.algorithm(),
                    family.algorithms[0],
                    "{} {format}",
                    family.name
                );
                for &alg in family.algorithms {
                    let key = key.clone().with_algorithm(alg).unwrap();
                    let jwt = sign_assertion(
                        &key,
                        &AssertionClaims::new(CLIENT, AUD),
                        TYP_CLIENT_AUTHENTICATION,
                        SystemTime::now(),
                    )
                    .unwrap();
                    let mut validation = Validation::new(alg.jsonwebtoken());
                    validation.set_audience(&[AUD]);
                    validation.set_issuer(&[CLIENT]);
                    validation.sub = Some(CLIENT.to_owned());
                    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
                    let data = jsonwebtoken::decode::<Value>(&jwt, &family.public, &validation)
                        .unwrap_or_else(|e| panic!("{} {format} {alg}: {e}", family.name));
                    assert_eq!(data.claims["aud"], AUD);
                    assert_eq!(data.header.alg, alg.jsonwebtoken());
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 5 * 2 + 5 + 5 + 3);
    }

    #[test]
    fn verification_fails_for_another_key_or_audience() {
        let jwt = sign_assertion(
            &p256(),
            &AssertionClaims::new(CLIENT, AUD),
            TYP_CLIENT_AUTHENTICATION,
            SystemTime::now(),
        )
        .unwrap();
        let p256_public = DecodingKey::from_ec_der(&fixture!("p256.pub.der")[26..]);
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&["https://other.example.com"]);
        assert!(jsonwebtoken::decode::<Value>(&jwt, &p256_public, &validation).is_err());

        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[AUD]);
        assert!(jsonwebtoken::decode::<Value>(&jwt, &p256_public, &validation).is_ok());
        let other = Ed25519KeyPair::generate().unwrap();
        let other_jwk_key = PrivateKey::from_der(other.to_pkcs8v1().unwrap().as_ref()).unwrap();
        let forged = sign_assertion(
            &other_jwk_key,
            &AssertionClaims::new(CLIENT, AUD),
            TYP_CLIENT_AUTHENTICATION,
            SystemTime::now(),
        )
        .unwrap();
        let (_, forged_payload) = forged.rsplit_once('.').unwrap();
        let (signed, _) = jwt.rsplit_once('.').unwrap();
        let tampered = format!("{signed}.{forged_payload}");
        assert!(jsonwebtoken::decode::<Value>(&tampered, &p256_public, &validation).is_err());
    }

    #[test]
    fn claims_and_header_are_exact() {
        let now = UNIX_EPOCH + Duration::from_millis(1_800_000_000_999);
        let mut claims = AssertionClaims::new(CLIENT, AUD);
        claims.lifetime = Duration::from_millis(90_500);
        let key = p256().with_kid("kid-1").with_x5t_s256("x5t-thumb");
        let (header, payload) =
            parts(&sign_assertion(&key, &claims, TYP_CLIENT_AUTHENTICATION, now).unwrap());

        let header = header.as_object().unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "client-authentication+jwt");
        assert_eq!(header["kid"], "kid-1");
        assert_eq!(header["x5t#S256"], "x5t-thumb");
        assert_eq!(header.len(), 4, "{header:?}");

        let payload = payload.as_object().unwrap();
        assert_eq!(payload["iss"], CLIENT);
        assert_eq!(payload["sub"], CLIENT);
        assert!(
            payload["aud"].is_string(),
            "aud must be a string, not an array"
        );
        assert_eq!(payload["aud"], AUD);
        assert_eq!(payload["iat"], 1_800_000_000u64);
        assert_eq!(payload["exp"], 1_800_000_090u64);
        let jti = payload["jti"].as_str().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(jti).unwrap().len(), 16);
        assert_eq!(payload.len(), 6, "no nbf or other claims: {payload:?}");
    }

    #[test]
    fn header_without_kid_or_thumbprint_has_neither() {
        let (header, _) = parts(
            &sign_assertion(
                &p256(),
                &AssertionClaims::new(CLIENT, AUD),
                TYP_JWT,
                SystemTime::now(),
            )
            .unwrap(),
        );
        assert_eq!(header, serde_json::json!({"alg": "ES256", "typ": "JWT"}));
    }

    #[test]
    fn default_claims_use_client_id_and_120_seconds() {
        let claims = AssertionClaims::new(CLIENT, AUD);
        assert_eq!(
            (claims.issuer, claims.subject, claims.audience),
            (CLIENT, CLIENT, AUD)
        );
        assert_eq!(claims.lifetime, Duration::from_secs(120));
        assert!(claims.extra.is_none());
        let (_, payload) = parts(
            &sign_assertion(
                &p256(),
                &claims,
                TYP_CLIENT_AUTHENTICATION,
                SystemTime::now(),
            )
            .unwrap(),
        );
        assert_eq!(
            payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
            120
        );
    }

    #[test]
    fn extra_claims_are_added_but_never_override() {
        let extra = serde_json::json!({
            "iss": "evil", "sub": "evil", "aud": ["evil"], "iat": 1, "exp": 9_999_999_999u64,
            "jti": "fixed", "nbf": 1, "scope": "mcp:tools", "tenant": {"id": 7}
        });
        let mut claims = AssertionClaims::new(CLIENT, AUD);
        claims.extra = extra.as_object();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (_, payload) =
            parts(&sign_assertion(&p256(), &claims, TYP_CLIENT_AUTHENTICATION, now).unwrap());
        assert_eq!(payload["iss"], CLIENT);
        assert_eq!(payload["sub"], CLIENT);
        assert_eq!(payload["aud"], AUD);
        assert_eq!(payload["iat"], 1_800_000_000u64);
        assert_eq!(payload["exp"], 1_800_000_120u64);
        assert_ne!(payload["jti"], "fixed");
        assert!(payload.get("nbf").is_none());
        assert_eq!(payload["scope"], "mcp:tools");
        assert_eq!(payload["tenant"]["id"], 7);
    }

    #[test]
    fn jti_is_unique_across_1000_assertions() {
        let key = p256();
        let claims = AssertionClaims::new(CLIENT, AUD);
        let now = SystemTime::now();
        let jtis: HashSet<String> = (0..1000)
            .map(|_| {
                let (_, payload) =
                    parts(&sign_assertion(&key, &claims, TYP_CLIENT_AUTHENTICATION, now).unwrap());
                payload["jti"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(jtis.len(), 1000);
    }

    #[test]
    fn jwk_members_set_alg_kid_and_thumbprint() {
        let mut jwk: Value = serde_json::from_slice(fixture!("rsa.jwk.json")).unwrap();
        assert_eq!(
            PrivateKey::from_jwk(&jwk.to_string()).unwrap().kid(),
            Some("rsa-test")
        );
        jwk["alg"] = "PS256".into();
        jwk["use"] = "sig".into();
        jwk["key_ops"] = serde_json::json!(["sign"]);
        jwk["x5t#S256"] = "thumb".into();
        let key = PrivateKey::from_jwk(&jwk.to_string()).unwrap();
        assert_eq!(key.algorithm(), SigningAlgorithm::PS256);
        assert_eq!(key.x5t_s256(), Some("thumb"));
        let key = key.with_kid("override");
        let (header, _) = parts(
            &sign_assertion(
                &key,
                &AssertionClaims::new(CLIENT, AUD),
                TYP_CLIENT_AUTHENTICATION,
                SystemTime::now(),
            )
            .unwrap(),
        );
        assert_eq!(header["alg"], "PS256");
        assert_eq!(header["kid"], "override");
        assert_eq!(header["x5t#S256"], "thumb");
    }

    #[test]
    fn with_algorithm_accepts_only_fitting_algorithms() {
        use SigningAlgorithm::*;
        let rsa = PrivateKey::from_der(fixture!("rsa.pkcs1.der")).unwrap();
        let p384 = PrivateKey::from_der(fixture!("p384.sec1.der")).unwrap();
        let ed = PrivateKey::from_der(fixture!("ed25519.pkcs8.der")).unwrap();
        let cases = [
            (&rsa, "RSA", [RS256, PS256].as_slice()),
            (&p256(), "P-256", &[ES256]),
            (&p384, "P-384", &[ES384]),
            (&ed, "Ed25519", &[EdDSA]),
        ];
        for (key, key_type, fits) in cases {
            for alg in [RS256, PS256, ES256, ES384, EdDSA] {
                let result = key.clone().with_algorithm(alg);
                assert_eq!(key.supports(alg), fits.contains(&alg));
                if fits.contains(&alg) {
                    assert_eq!(result.unwrap().algorithm(), alg);
                } else {
                    let err = result.unwrap_err();
                    assert_eq!(
                        err,
                        KeyError::AlgorithmMismatch {
                            algorithm: alg,
                            key_type
                        }
                    );
                    assert_eq!(
                        err.to_string(),
                        format!("{alg} cannot sign with a {key_type} key")
                    );
                }
            }
        }
    }

    #[test]
    fn signing_algorithm_names_round_trip_and_refuse_hmac_and_none() {
        use SigningAlgorithm::*;
        for alg in [RS256, PS256, ES256, ES384, EdDSA] {
            assert_eq!(alg.as_str().parse::<SigningAlgorithm>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str());
        }
        for bad in ["HS256", "none", "es256", "ES512", ""] {
            assert!(matches!(
                bad.parse::<SigningAlgorithm>(),
                Err(KeyError::UnsupportedAlgorithm { .. })
            ));
        }
    }

    #[test]
    fn pem_variants_load() {
        // `openssl ecparam -genkey` writes the curve parameters before the key.
        let params =
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";
        let sec1 = text(fixture!("p256.sec1.pem"));
        assert_eq!(
            PrivateKey::from_pem(&format!("{params}{sec1}"))
                .unwrap()
                .algorithm(),
            SigningAlgorithm::ES256
        );
        // CRLF line ends and text around the block.
        let crlf = format!("key for tests\r\n{}\r\ntrailer", sec1.replace('\n', "\r\n"));
        assert!(PrivateKey::from_pem(&crlf).is_ok());
        // A certificate next to its key.
        let bundle = format!(
            "{}{}",
            text(fixture!("p256.cert.pem")),
            text(fixture!("p256.pkcs8.pem"))
        );
        assert!(PrivateKey::from_pem(&bundle).is_ok());
    }

    #[test]
    fn bad_keys_are_typed_errors_that_hide_key_material() {
        let rsa_pem = text(fixture!("rsa.pkcs8.pem"));
        let rsa_chunks = pem_chunks(rsa_pem);
        let p256_pem = text(fixture!("p256.pkcs8.pem"));
        let p256_chunks = pem_chunks(p256_pem);
        let sec1_pem = text(fixture!("p256.sec1.pem"));
        let rsa_jwk: Value = serde_json::from_slice(fixture!("rsa.jwk.json")).unwrap();
        let rsa_jwk_chunks = jwk_chunks(&rsa_jwk.to_string());
        let p256_jwk: Value = serde_json::from_slice(fixture!("p256.jwk.json")).unwrap();
        let p256_jwk_chunks = jwk_chunks(&p256_jwk.to_string());
        let jwk_with = |base: &Value, member: &str, value: Value| {
            let mut jwk = base.clone();
            if value.is_null() {
                jwk.as_object_mut().unwrap().remove(member);
            } else {
                jwk[member] = value;
            }
            PrivateKey::from_jwk(&jwk.to_string())
        };
        let flip_last = |s: &str| {
            let (head, last) = s.split_at(s.len() - 1);
            format!("{head}{}", if last == "A" { "E" } else { "A" })
        };
        let body_lines: Vec<&str> = rsa_pem.lines().collect();
        let truncated_body = [&body_lines[..5], &body_lines[body_lines.len() - 1..]]
            .concat()
            .join("\n");
        let sec1_as_pkcs1 = sec1_pem.replace("EC PRIVATE KEY", "RSA PRIVATE KEY");
        let pkcs1_as_sec1 =
            text(fixture!("rsa.pkcs1.pem")).replace("RSA PRIVATE KEY", "EC PRIVATE KEY");
        let p521 = text(fixture!("p521.pkcs8.pem"));
        let p521_jwk = text(fixture!("p521.jwk.json"));
        let oct = r#"{"kty":"oct","k":"c2VjcmV0LWhtYWMta2V5LWZvci10ZXN0cy1vbmx5LTAxMjM0NTY3ODk"}"#;
        let cert = text(fixture!("p256.cert.pem"));
        let public_pem = to_pem("PUBLIC KEY", fixture!("p256.pub.der"));
        let two_keys = format!("{p256_pem}{sec1_pem}");
        let openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----\n";
        let bad_base64 = p256_pem.replacen("M", "!", 1);

        let sec1_chunks = pem_chunks(sec1_pem);
        let pkcs1_chunks = pem_chunks(&pkcs1_as_sec1);
        let p521_chunks = pem_chunks(p521);
        let p521_jwk_chunks = jwk_chunks(p521_jwk);
        let rsa1024_chunks = pem_chunks(text(fixture!("rsa1024.pkcs8.pem")));
        let oct_chunks = jwk_chunks(oct);
        let cases: Vec<(&str, Result<PrivateKey, KeyError>, KeyError, &[String])> = vec![
            (
                "garbage PEM",
                PrivateKey::from_pem("hello, world"),
                KeyError::NotPem,
                &rsa_chunks,
            ),
            (
                "empty PEM",
                PrivateKey::from_pem(""),
                KeyError::NotPem,
                &rsa_chunks,
            ),
            (
                "JWK given as PEM",
                PrivateKey::from_pem(p521_jwk),
                KeyError::NotPem,
                &rsa_chunks,
            ),
            (
                "garbage DER",
                PrivateKey::from_der(b"\x30\x03garbage"),
                KeyError::NotDer,
                &rsa_chunks,
            ),
            (
                "empty DER",
                PrivateKey::from_der(b""),
                KeyError::NotDer,
                &rsa_chunks,
            ),
            (
                "PEM given as DER",
                PrivateKey::from_der(rsa_pem.as_bytes()),
                KeyError::NotDer,
                &rsa_chunks,
            ),
            (
                "truncated PEM",
                PrivateKey::from_pem(&rsa_pem[..rsa_pem.len() / 2]),
                KeyError::InvalidPem {
                    reason: "no END line matches the BEGIN line",
                },
                &rsa_chunks,
            ),
            (
                "truncated body",
                PrivateKey::from_pem(&truncated_body),
                KeyError::Malformed { format: "PKCS#8" },
                &rsa_chunks,
            ),
            (
                "bad base64",
                PrivateKey::from_pem(&bad_base64),
                KeyError::InvalidPem {
                    reason: "the body is not valid base64",
                },
                &p256_chunks,
            ),
            (
                "public key PEM",
                PrivateKey::from_pem(&public_pem),
                KeyError::PublicKey,
                &p256_chunks,
            ),
            (
                "public key DER",
                PrivateKey::from_der(fixture!("p256.pub.der")),
                KeyError::PublicKey,
                &p256_chunks,
            ),
            (
                "RSA public key DER",
                PrivateKey::from_der(fixture!("rsa.pub.der")),
                KeyError::PublicKey,
                &rsa_chunks,
            ),
            (
                "certificate PEM",
                PrivateKey::from_pem(cert),
                KeyError::Certificate,
                &p256_chunks,
            ),
            (
                "certificate DER",
                PrivateKey::from_der(&pem_to_der(cert)),
                KeyError::Certificate,
                &p256_chunks,
            ),
            (
                "encrypted PEM",
                PrivateKey::from_pem(text(fixture!("p256.encrypted.pem"))),
                KeyError::Encrypted,
                &p256_chunks,
            ),
            (
                "encrypted DER",
                PrivateKey::from_der(&pem_to_der(text(fixture!("p256.encrypted.pem")))),
                KeyError::Encrypted,
                &p256_chunks,
            ),
            (
                "two keys",
                PrivateKey::from_pem(&two_keys),
                KeyError::MultiplePrivateKeys,
                &p256_chunks,
            ),
            (
                "OpenSSH key",
                PrivateKey::from_pem(openssh),
                KeyError::UnsupportedPemLabel {
                    label: "OPENSSH PRIVATE KEY".into(),
                },
                &p256_chunks,
            ),
            (
                "SEC1 labelled PKCS#1",
                PrivateKey::from_pem(&sec1_as_pkcs1),
                KeyError::Pkcs1NotRsa,
                &sec1_chunks,
            ),
            (
                "PKCS#1 labelled SEC1",
                PrivateKey::from_pem(&pkcs1_as_sec1),
                KeyError::Sec1NotEc,
                &pkcs1_chunks,
            ),
            (
                "P-521 PEM",
                PrivateKey::from_pem(p521),
                KeyError::UnsupportedCurve {
                    curve: "P-521".into(),
                },
                &p521_chunks,
            ),
            (
                "P-521 JWK",
                PrivateKey::from_jwk(p521_jwk),
                KeyError::UnsupportedCurve {
                    curve: "P-521".into(),
                },
                &p521_jwk_chunks,
            ),
            (
                "RSA 1024",
                PrivateKey::from_pem(text(fixture!("rsa1024.pkcs8.pem"))),
                KeyError::RsaKeyTooSmall { bits: 1024 },
                &rsa1024_chunks,
            ),
            (
                "RSA JWK without d",
                jwk_with(&rsa_jwk, "d", Value::Null),
                KeyError::JwkMissing { member: "d" },
                &rsa_jwk_chunks,
            ),
            (
                "RSA JWK without qi",
                jwk_with(&rsa_jwk, "qi", Value::Null),
                KeyError::JwkMissing { member: "qi" },
                &rsa_jwk_chunks,
            ),
            (
                "RSA JWK with wrong q",
                jwk_with(
                    &rsa_jwk,
                    "q",
                    flip_last(rsa_jwk["q"].as_str().unwrap()).into(),
                ),
                KeyError::Rejected {
                    reason: "the crypto library refused the key",
                },
                &rsa_jwk_chunks,
            ),
            (
                "EC JWK with wrong d",
                jwk_with(
                    &p256_jwk,
                    "d",
                    flip_last(p256_jwk["d"].as_str().unwrap()).into(),
                ),
                KeyError::Rejected {
                    reason: "the key's components do not match each other",
                },
                &p256_jwk_chunks,
            ),
            (
                "EC JWK with bad base64",
                jwk_with(&p256_jwk, "d", "not*base64".into()),
                KeyError::JwkInvalidMember {
                    member: "d",
                    reason: "is not base64url",
                },
                &p256_jwk_chunks,
            ),
            (
                "EC JWK with short x",
                jwk_with(&p256_jwk, "x", "AAAA".into()),
                KeyError::JwkInvalidMember {
                    member: "x",
                    reason: "has the wrong length for the curve",
                },
                &p256_jwk_chunks,
            ),
            (
                "EC JWK with numeric d",
                jwk_with(&p256_jwk, "d", 42.into()),
                KeyError::JwkInvalidMember {
                    member: "d",
                    reason: "is not a string",
                },
                &p256_jwk_chunks,
            ),
            (
                "HMAC JWK",
                PrivateKey::from_jwk(oct),
                KeyError::UnsupportedKeyType {
                    key_type: "oct (symmetric keys cannot sign assertions)".into(),
                },
                &oct_chunks,
            ),
            (
                "HS256 alg",
                jwk_with(&p256_jwk, "alg", "HS256".into()),
                KeyError::UnsupportedAlgorithm {
                    alg: "HS256".into(),
                },
                &p256_jwk_chunks,
            ),
            (
                "none alg",
                jwk_with(&p256_jwk, "alg", "none".into()),
                KeyError::UnsupportedAlgorithm { alg: "none".into() },
                &p256_jwk_chunks,
            ),
            (
                "ES256 alg on RSA JWK",
                jwk_with(&rsa_jwk, "alg", "ES256".into()),
                KeyError::AlgorithmMismatch {
                    algorithm: SigningAlgorithm::ES256,
                    key_type: "RSA",
                },
                &rsa_jwk_chunks,
            ),
            (
                "ES384 alg on P-256 JWK",
                jwk_with(&p256_jwk, "alg", "ES384".into()),
                KeyError::AlgorithmMismatch {
                    algorithm: SigningAlgorithm::ES384,
                    key_type: "P-256",
                },
                &p256_jwk_chunks,
            ),
            (
                "encryption JWK",
                jwk_with(&p256_jwk, "use", "enc".into()),
                KeyError::JwkNotForSigning,
                &p256_jwk_chunks,
            ),
            (
                "verify-only JWK",
                jwk_with(&p256_jwk, "key_ops", serde_json::json!(["verify"])),
                KeyError::JwkNotForSigning,
                &p256_jwk_chunks,
            ),
            (
                "X25519 JWK",
                PrivateKey::from_jwk(r#"{"kty":"OKP","crv":"X25519","x":"AA","d":"AA"}"#),
                KeyError::UnsupportedCurve {
                    curve: "X25519".into(),
                },
                &p256_jwk_chunks,
            ),
            (
                "unknown kty",
                jwk_with(&p256_jwk, "kty", "PQC".into()),
                KeyError::UnsupportedKeyType {
                    key_type: "PQC".into(),
                },
                &p256_jwk_chunks,
            ),
            (
                "JWK Set",
                PrivateKey::from_jwk(&serde_json::json!({"keys": [p256_jwk.clone()]}).to_string()),
                KeyError::InvalidJwk {
                    reason: "is a JWK Set; pass one key from its keys".into(),
                },
                &p256_jwk_chunks,
            ),
            (
                "JWK array",
                PrivateKey::from_jwk("[1]"),
                KeyError::InvalidJwk {
                    reason: "is not a JSON object".into(),
                },
                &p256_jwk_chunks,
            ),
            (
                "truncated JWK",
                PrivateKey::from_jwk(&p256_jwk.to_string()[..60]),
                KeyError::InvalidJwk {
                    reason: "is not valid JSON (line 1, column 60)".into(),
                },
                &p256_jwk_chunks,
            ),
            (
                "PEM given as JWK",
                PrivateKey::from_jwk(p256_pem),
                KeyError::InvalidJwk {
                    reason: "is not valid JSON (line 1, column 2)".into(),
                },
                &p256_chunks,
            ),
            (
                "ES256 for an RSA key",
                PrivateKey::from_pem(rsa_pem)
                    .and_then(|k| k.with_algorithm(SigningAlgorithm::ES256)),
                KeyError::AlgorithmMismatch {
                    algorithm: SigningAlgorithm::ES256,
                    key_type: "RSA",
                },
                &rsa_chunks,
            ),
        ];
        for (name, result, expected, chunks) in cases {
            let err = result.expect_err(name);
            assert_eq!(err, expected, "{name}");
            assert_error_hides(&err, chunks);
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn key_error_messages_read_well() {
        assert_eq!(
            KeyError::NotPem.to_string(),
            "not PEM: no -----BEGIN line found"
        );
        assert_eq!(
            KeyError::UnsupportedCurve {
                curve: "P-521".into()
            }
            .to_string(),
            "unsupported curve P-521"
        );
        assert_eq!(KeyError::Pkcs1NotRsa.to_string(), "PKCS#1 key is not RSA");
        assert_eq!(
            KeyError::JwkMissing { member: "d" }.to_string(),
            "JWK is missing d"
        );
        // Names copied from the input are shortened and stripped.
        let long = format!("{}\u{7}", "A".repeat(40));
        let err = long.parse::<SigningAlgorithm>().unwrap_err();
        assert_eq!(
            err,
            KeyError::UnsupportedAlgorithm {
                alg: format!("{}...", "A".repeat(24))
            }
        );
    }

    #[test]
    fn damaged_der_never_panics() {
        for der in [
            fixture!("p256.sec1.der"),
            fixture!("p256.pkcs8.der"),
            fixture!("ed25519.pkcs8.der"),
            fixture!("rsa.pkcs1.der"),
            fixture!("rsa.pkcs8.der"),
        ] {
            for len in (0..der.len()).step_by(if der.len() > 200 { 13 } else { 1 }) {
                assert!(
                    PrivateKey::from_der(&der[..len]).is_err(),
                    "prefix of {len} bytes"
                );
            }
            for i in (0..der.len()).step_by(if der.len() > 200 { 29 } else { 3 }) {
                let mut damaged = der.to_vec();
                damaged[i] ^= 0x55;
                let _ = PrivateKey::from_der(&damaged);
                let _ = PrivateKey::from_pem(&to_pem("PRIVATE KEY", &damaged));
            }
        }
    }

    #[test]
    fn debug_never_shows_key_material() {
        for family in families() {
            for (format, loaded, chunks) in family.keys {
                let key = loaded.unwrap().with_kid("k1");
                let shown = format!("{key:?}");
                assert_no_leak(&shown, &chunks);
                let alg = family.algorithms[0];
                assert_eq!(
                    shown,
                    format!(
                        "PrivateKey {{ algorithm: {alg:?}, kid: Some(\"k1\"), x5t_s256: None }}"
                    ),
                    "{format}"
                );
            }
        }
    }

    #[test]
    fn sign_errors_are_typed() {
        let key = p256();
        let now = SystemTime::now();
        let mut claims = AssertionClaims::new(CLIENT, AUD);
        claims.lifetime = Duration::from_millis(999);
        assert_eq!(
            sign_assertion(&key, &claims, TYP_JWT, now),
            Err(SignError::InvalidLifetime)
        );
        claims.lifetime = Duration::MAX;
        assert_eq!(
            sign_assertion(&key, &claims, TYP_JWT, now),
            Err(SignError::InvalidLifetime)
        );
        let claims = AssertionClaims::new(CLIENT, AUD);
        assert_eq!(
            sign_assertion(&key, &claims, "", now),
            Err(SignError::EmptyType)
        );
        assert_eq!(
            sign_assertion(&key, &claims, TYP_JWT, UNIX_EPOCH - Duration::from_secs(1)),
            Err(SignError::ClockBeforeEpoch)
        );
        assert_eq!(
            sign_assertion(&key, &AssertionClaims::new(CLIENT, ""), TYP_JWT, now),
            Err(SignError::EmptyClaim { claim: "aud" })
        );
        assert_eq!(
            sign_assertion(&key, &AssertionClaims::new("", AUD), TYP_JWT, now),
            Err(SignError::EmptyClaim { claim: "iss" })
        );
        assert_eq!(
            SignError::EmptyClaim { claim: "aud" }.to_string(),
            "assertion claim aud is empty"
        );
    }

    #[test]
    fn types_are_send_sync_and_clones_share_the_key() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<PrivateKey>();
        assert_send_sync::<KeyError>();
        assert_send_sync::<SignError>();
        let key = p256();
        let clone = key.clone().with_kid("other");
        assert!(Arc::ptr_eq(&key.material, &clone.material));
        assert_eq!(key.kid(), None);
    }
}
