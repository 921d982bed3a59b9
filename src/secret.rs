//! Newtypes for secret values: redacted in `Debug`, no `Display`, zeroized on drop.
//!
//! Every secret the crate handles (client secrets, access tokens) lives in one of these types.
//! They are cheap to clone (an `Arc`), never print their contents, and wipe their memory when the
//! last clone is dropped. Read a value through `expose_secret()`, which is greppable on purpose.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name(Arc<Zeroizing<String>>);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(Arc::new(Zeroizing::new(value.into())))
            }

            /// Returns the secret value.
            ///
            /// # Security
            ///
            /// The returned string is the secret itself: do not log it, print it, or put it in an
            /// error message.
            pub fn expose_secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value)
            }
        }
    };
}

secret_type! {
    /// A client secret registered at the authorization server (RFC 6749 §2.3.1).
    ///
    /// ```
    /// use tower_client_credentials::ClientSecret;
    ///
    /// let secret = ClientSecret::new("s3cr3t");
    /// assert_eq!(format!("{secret:?}"), "ClientSecret(<redacted>)");
    /// assert_eq!(secret.expose_secret(), "s3cr3t");
    /// ```
    ClientSecret
}

secret_type! {
    /// An OAuth 2.0 access token, as issued by the authorization server.
    ///
    /// The crate never decodes it (RFC 9068 §6: tokens are opaque to clients).
    ///
    /// ```
    /// use tower_client_credentials::AccessToken;
    ///
    /// let token = AccessToken::new("eyJhbGciOi...");
    /// assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
    /// ```
    AccessToken
}

secret_type! {
    /// A signed JWT used as a client assertion (RFC 7523 §2.2) or as an authorization grant
    /// (RFC 7523 §2.1): for example a workload identity token.
    ///
    /// ```
    /// use tower_client_credentials::Assertion;
    ///
    /// let jwt = Assertion::new("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ3b3JrbG9hZCJ9.c2ln");
    /// assert_eq!(format!("{jwt:?}"), "Assertion(<redacted>)");
    /// ```
    Assertion
}

impl AccessToken {
    /// Compares two tokens in time independent of where they first differ.
    pub(crate) fn same_as(&self, other: &AccessToken) -> bool {
        let (a, b) = (
            self.expose_secret().as_bytes(),
            other.expose_secret().as_bytes(),
        );
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = ClientSecret::new("hunter2");
        let token = AccessToken::new("tok-123");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{token:?}").contains("tok-123"));
        assert!(!format!("{secret:#?} {token:#?}").contains("hunter2"));
    }

    #[test]
    fn clones_share_the_value() {
        let token = AccessToken::new("abc");
        let copy = token.clone();
        assert!(token.same_as(&copy));
        assert!(!token.same_as(&AccessToken::new("abd")));
        assert!(!token.same_as(&AccessToken::new("ab")));
    }
}
