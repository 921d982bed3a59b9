//! OAuth 2.0 client credentials for [tower] HTTP clients: machine-to-machine access to
//! OAuth-protected MCP servers and any other protected HTTP API.
//!
//! # Overview
//!
//! [`ClientCredentialsLayer`] wraps any `tower::Service<http::Request<B>>` (a hyper-util client,
//! a reqwest-backed service, a test `service_fn`) and adds `Authorization: Bearer <token>` to every
//! request bound for the protected resource. It keeps one token per (authorization server, client,
//! resource, scopes), shared by every clone of the service, and:
//!
//! - refreshes it in the background ahead of expiry, so no request waits for the token endpoint in
//!   steady state;
//! - makes one token request at a time however many requests race for it (single flight);
//! - answers a 401 from the resource by renewing the token and replaying the request once;
//! - discovers the token endpoint from the resource alone (RFC 9728 protected resource metadata,
//!   then RFC 8414 / OpenID Connect metadata, validated at every step), or takes it from you;
//! - sends the token only to the resource it was issued for, and the resource's identifier as the
//!   RFC 8707 `resource` parameter of every token request;
//! - authenticates with a client secret (Basic, post, or from a rotating file), a client
//!   assertion (`private_key_jwt` from a callback, a file or a static JWT), the jwt-bearer grant
//!   (workload identity), cross-app access ([`cross_app`]), or a [`TokenSource`] of your own;
//! - never prints secrets or tokens in `Debug`, `Display`, logs or errors.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_client_credentials::auth_client::AuthHttpClient;
//! use tower_client_credentials::{ClientCredentialsLayer, Credentials};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_client_credentials::BoxError> {
//! # let auth_server = AuthHttpClient::new(service_fn(|_req: Request<Full<Bytes>>| async {
//! #     let body = r#"{"access_token":"t0k3n","token_type":"Bearer","expires_in":3600}"#;
//! #     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(body.as_bytes()))))
//! # }));
//! let credentials = Credentials::client_secret_basic("reporting-job", "s3cr3t")?;
//! let auth = ClientCredentialsLayer::builder("https://mcp.example.com/mcp", credentials)?
//!     .token_endpoint("https://auth.example.com/oauth/token")?
//!     .scopes(["mcp:tools"])?
//! #   .http_client(auth_server)
//!     .build()?;
//!
//! // Any service works; here a stand-in for the MCP server.
//! let client = ServiceBuilder::new().layer(auth).service_fn(|req: Request<Full<Bytes>>| async move {
//!     assert_eq!(req.headers()["authorization"], "Bearer t0k3n");
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
//! });
//!
//! let request = Request::post("https://mcp.example.com/mcp").body(Full::new(Bytes::from_static(b"{}")))?;
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```
//!
//! Over a real network, drop the `http_client` line: the default client is hyper-util with rustls.
//! Without `token_endpoint`, the layer discovers it from the MCP server (see
//! [`ClientCredentialsBuilder::token_endpoint`]). `cargo run --example quickstart` shows the whole
//! flow against an embedded authorization server and MCP server.
//!
//! # Feature flags
//!
//! - `private-key-jwt` (default): `private_key_jwt` client assertions signed with a key the crate
//!   holds ([`jwt::PrivateKey`]: PEM, DER or JWK; RS256, PS256, ES256, ES384, EdDSA), through
//!   jsonwebtoken with the aws-lc-rs backend.
//! - `rustls` (default): HTTPS for authorization traffic through hyper-rustls with the
//!   `aws-lc-rs` provider and the webpki roots. Without it the default client speaks plain HTTP only, which
//!   configuration allows for loopback hosts alone; bring your own [`auth_client::AuthHttpClient`].
//! - `rmcp`: the `rmcp` module, an [rmcp](https://docs.rs/rmcp) (official MCP SDK) client whose
//!   Streamable HTTP traffic goes through the layer: `rmcp::transport(url, &layer)` for
//!   `().serve(..)`, or `rmcp::McpHttpClient` for your own stack. rmcp 3.9 with `client` and
//!   `transport-streamable-http-client` only: no reqwest, no second crypto library.
//!
//! # Security
//!
//! - Tokens go only to requests with the resource's scheme, host and port and a path at or below
//!   its path; other requests pass through untouched.
//! - The `Authorization` value is built once per token and marked sensitive. Tokens holding
//!   characters that could break out of a header are refused.
//! - Authorization traffic never follows redirects and never carries the bearer token. Plain
//!   `http` is refused except for loopback hosts after
//!   [`insecure_allow_http_loopback`](ClientCredentialsBuilder::insecure_allow_http_loopback).
//! - Client secrets in Basic authentication are form-encoded as RFC 6749 §2.3.1 requires.
//! - [`ClientSecret`] and [`AccessToken`] print as `<redacted>` and are zeroized on drop; errors
//!   keep an OAuth error's status, code and a truncated, escaped description, never a body.
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth_client;
pub mod cache;
pub mod challenge;
mod credentials;
pub mod cross_app;
mod discovery;
mod error;
pub mod extension;
#[cfg(feature = "private-key-jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "private-key-jwt")))]
pub mod jwt;
pub mod middleware;
pub mod retry;
#[cfg(feature = "rmcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "rmcp")))]
pub mod rmcp;
mod secret;
mod target;
mod token;
mod token_source;

pub use crate::credentials::{
    AssertionAudience, AssertionContext, AuthMethod, ClientAssertion, Credentials,
};
pub use crate::discovery::ResourceParameter;
pub use crate::error::{BoxError, ConfigError, Error, ErrorKind};
#[cfg(feature = "private-key-jwt")]
pub use crate::jwt::{PrivateKey, SigningAlgorithm};
pub use crate::middleware::{ClientCredentials, ClientCredentialsBuilder, ClientCredentialsLayer};
pub use crate::secret::{AccessToken, Assertion, ClientSecret};
pub use crate::token_source::{
    FnTokenSource, SourcedToken, TokenFuture, TokenSource, token_source_fn,
};
