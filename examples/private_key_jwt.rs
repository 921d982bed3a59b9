//! `private_key_jwt`: the client proves its identity with a JWT it signs with its own private key
//! (RFC 7523 §2.2), the method the MCP client-credentials extension recommends. No shared secret
//! is stored anywhere: the authorization server holds only the public key.
//!
//! Everything runs on 127.0.0.1: an authorization server that knows the client `reporting-job` by
//! its public key (`tests/keys/p256.pub.der`, a test key) and an MCP server. The client loads the
//! private key (`tests/keys/p256.pkcs8.pem`) with `PrivateKey::from_pem` and uses
//! `Credentials::private_key_jwt`:
//!
//! 1. discovery from the MCP URL, then one token request whose client assertion the server checks:
//!    `typ`, `alg`, `kid`, `iss` = `sub` = the client id, `aud` = the issuer, a 120 s lifetime, an
//!    unused `jti`, and the ES256 signature against the registered public key;
//! 2. the server revokes the token: the renewal carries a newly signed assertion (new `jti`), as
//!    every token request does; the server would refuse a re-sent one.
//!
//! Needs the `private-key-jwt` feature (on by default). Run it with
//! `cargo run --example private_key_jwt`. It exits 0 when every step behaved as described, 1
//! otherwise.

mod support;

use std::process::ExitCode;

#[cfg(not(feature = "private-key-jwt"))]
fn main() -> ExitCode {
    eprintln!("private_key_jwt needs the `private-key-jwt` feature (on by default)");
    ExitCode::FAILURE
}

#[cfg(feature = "private-key-jwt")]
#[tokio::main]
async fn main() -> ExitCode {
    support::finish("private_key_jwt", demo::run().await)
}

#[cfg(feature = "private-key-jwt")]
mod demo {
    use bytes::Bytes;
    use http::StatusCode;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use serde_json::json;
    use tower::ServiceBuilder;
    use tower_client_credentials::{BoxError, ClientCredentialsLayer, Credentials, PrivateKey};

    use crate::support::{
        AssertionClient, AuthServer, AuthServerConfig, JwtUse, McpServer, PublicKey,
        RecordedTokenRequest, decode_jwt, jsonrpc, post_jsonrpc,
    };

    const CLIENT: &str = "reporting-job";
    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

    use crate::support::check;

    /// Prints what the client assertion of `request` holds (never the JWT itself) and returns
    /// its `jti`.
    fn describe(request: &RecordedTokenRequest) -> Result<String, BoxError> {
        let jwt = request
            .param("client_assertion")
            .ok_or("no client_assertion")?;
        let decoded = decode_jwt(jwt).ok_or("the client assertion is not a JWT")?;
        let (header, claims) = (&decoded.header, &decoded.claims);
        let lifetime = claims["exp"].as_u64().unwrap_or(0) - claims["iat"].as_u64().unwrap_or(0);
        println!(
            "   client assertion: typ={} alg={} kid={}; iss={} sub={} aud={} lifetime={lifetime}s jti={}",
            header["typ"],
            header["alg"],
            header["kid"],
            claims["iss"],
            claims["sub"],
            claims["aud"],
            claims["jti"],
        );
        println!(
            "   other credentials sent: Basic header {}, client_secret {}",
            if request.authorization.is_some() {
                "YES"
            } else {
                "no"
            },
            if request.param("client_secret").is_some() {
                "YES"
            } else {
                "no"
            },
        );
        check(
            request.client_auth_carriers() == 1,
            "exactly one client authentication method",
        )?;
        Ok(claims["jti"].as_str().unwrap_or_default().to_owned())
    }

    pub(crate) async fn run() -> Result<(), BoxError> {
        let public_key = PublicKey::from_spki_der(&std::fs::read(format!("{KEYS}/p256.pub.der"))?)
            .ok_or("tests/keys/p256.pub.der is not a P-256 public key")?;
        let auth = AuthServer::start(AuthServerConfig {
            assertion_clients: vec![AssertionClient {
                client_id: CLIENT.to_owned(),
                key: Some(public_key),
            }],
            ..AuthServerConfig::default()
        })
        .await;
        let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
        println!(
            "authorization server   {} (knows {CLIENT} by its public key)",
            auth.url()
        );
        println!("MCP server             {}", mcp.url());

        // The part a real program writes: the private key, from a file or a secret store.
        let pem = std::fs::read_to_string(format!("{KEYS}/p256.pkcs8.pem"))?;
        let key = PrivateKey::from_pem(&pem)?.with_kid("reporting-job-2026");
        let credentials = Credentials::private_key_jwt(CLIENT, key)?;
        let layer = ClientCredentialsLayer::builder(mcp.url(), credentials)?
            .insecure_allow_http_loopback() // the demo servers speak plain http on loopback
            .build()?;
        let mut client = ServiceBuilder::new()
            .layer(layer)
            .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

        println!("\n1. tools/list: discovery, then one token request signed with the key");
        let (status, _) = post_jsonrpc(
            &mut client,
            &mcp.url(),
            &jsonrpc(1, "tools/list", json!({})),
        )
        .await?;
        let recorded = auth.state().recorded();
        check(
            status == StatusCode::OK && recorded.len() == 1,
            "tools/list failed",
        )?;
        let first = describe(&recorded[0])?;
        let accepted = auth.state().accepted(JwtUse::ClientAssertion);
        println!(
            "   the server checked the claims and the signature against the registered key ({}): HTTP {}",
            if accepted.iter().all(|a| a.signature_verified) {
                "verified"
            } else {
                "NOT verified"
            },
            status.as_u16()
        );
        check(
            accepted.len() == 1 && accepted[0].signature_verified,
            "the server did not verify the assertion",
        )?;

        println!("\n2. the server revokes the token");
        auth.state().revoke_all();
        let (status, _) = post_jsonrpc(
            &mut client,
            &mcp.url(),
            &jsonrpc(2, "tools/list", json!({})),
        )
        .await?;
        let recorded = auth.state().recorded();
        check(
            status == StatusCode::OK && recorded.len() == 2,
            "the revoked token was not replaced",
        )?;
        println!("   the call got a 401; the layer signed a new assertion for the renewal:");
        let second = describe(&recorded[1])?;
        println!(
            "   new jti: {}; the call was replayed: HTTP {}",
            second != first,
            status.as_u16()
        );
        check(second != first, "the renewal re-sent an assertion")?;
        Ok(())
    }
}
