//! Workload identity: the jwt-bearer grant (RFC 7523 §2.1) with a JWT from a file that rotates.
//!
//! A platform (Kubernetes, a CI system, a cloud) hands the workload a short-lived JWT in a file
//! (a projected service-account token) and rotates it there. The workload needs no client secret:
//! `Credentials::jwt_bearer(ClientAssertion::from_file(path))` presents the current JWT as the
//! grant's `assertion` at every token request. Everything runs on 127.0.0.1:
//!
//! 1. an authorization server that trusts the platform's issuer (and checks its signature), an MCP
//!    server, and a token file: the client knows only the MCP URL and the file's path; discovery
//!    finds the authorization server, and one jwt-bearer request gets the token;
//! 2. the platform rotates the file and the authorization server revokes the token: the next call
//!    gets a 401, the layer reads the file again and presents the new JWT;
//! 3. the job starts again after the platform stopped refreshing the file, which now holds an
//!    expired JWT: the layer refuses it locally (`ErrorKind::Assertion`) without sending it
//!    anywhere.
//!
//! Run it with `cargo run --example jwt_bearer`. It exits 0 when every step behaved as
//! described, 1 otherwise.

mod support;

use support::check;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use support::{
    AuthServer, AuthServerConfig, CLIENT_KEY_PEM, JWT_BEARER_GRANT, McpServer, TestKey,
    TrustedIssuer, decode_jwt, jsonrpc, post_jsonrpc, workload_claims,
};
use tower::ServiceBuilder;
use tower_client_credentials::{
    BoxError, ClientAssertion, ClientCredentialsLayer, Credentials, Error, ErrorKind,
};

const PLATFORM_ISSUER: &str = "https://workload-identity.example";
const WORKLOAD: &str = "system:serviceaccount:reports:nightly-job";

#[tokio::main]
async fn main() -> ExitCode {
    let dir = std::env::temp_dir().join(format!("jwt-bearer-example-{}", std::process::id()));
    let result = run(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    support::finish("jwt_bearer", result)
}

/// The platform's signing key (a test key) and what it writes into the token file.
fn platform_token(audience: &str, lifetime_secs: i64) -> String {
    TestKey::from_pem(CLIENT_KEY_PEM, "platform-key").sign_jwt(
        "JWT",
        &workload_claims(PLATFORM_ISSUER, WORKLOAD, audience, lifetime_secs),
    )
}

fn jti(jwt: &str) -> String {
    decode_jwt(jwt)
        .and_then(|d| d.claim("jti").map(str::to_owned))
        .unwrap_or_default()
}

fn write_token(path: &Path, jwt: &str) -> Result<(), BoxError> {
    std::fs::write(path, format!("{jwt}\n"))?;
    Ok(())
}

async fn run(dir: &PathBuf) -> Result<(), BoxError> {
    let auth = AuthServer::start(AuthServerConfig {
        trusted_issuers: vec![TrustedIssuer {
            issuer: PLATFORM_ISSUER.to_owned(),
            key: TestKey::from_pem(CLIENT_KEY_PEM, "platform-key").public_key(),
        }],
        ..AuthServerConfig::default()
    })
    .await;
    let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
    std::fs::create_dir_all(dir)?;
    let token_file = dir.join("token");
    let first = platform_token(&auth.url(), 600);
    write_token(&token_file, &first)?;
    println!(
        "authorization server  {} (trusts {PLATFORM_ISSUER})",
        auth.url()
    );
    println!("MCP server            {}", mcp.url());
    println!(
        "token file            {} (jti {})",
        token_file.display(),
        jti(&first)
    );

    let credentials = Credentials::jwt_bearer(ClientAssertion::from_file(&token_file));
    let layer = ClientCredentialsLayer::builder(mcp.url(), credentials)?
        .insecure_allow_http_loopback() // the demo servers speak plain http on loopback
        .build()?;
    let mut client = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    println!("\n1. tools/list: discovery, then one jwt-bearer token request");
    let (status, body) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(1, "tools/list", json!({})),
    )
    .await?;
    check(status == StatusCode::OK, "tools/list failed")?;
    let recorded = auth.state().recorded();
    check(recorded.len() == 1, "expected exactly one token request")?;
    let request = &recorded[0];
    println!(
        "   HTTP {}; tool {}; token request: grant_type={}, assertion = the file's JWT (jti {}), resource={}, client secret: {}",
        status.as_u16(),
        body["result"]["tools"][0]["name"],
        request.param("grant_type").unwrap_or("?"),
        jti(request.param("assertion").unwrap_or_default()),
        request.param("resource").unwrap_or("?"),
        if request.client_auth_carriers() == 0 {
            "none"
        } else {
            "SENT"
        },
    );
    check(
        request.param("grant_type") == Some(JWT_BEARER_GRANT)
            && request.param("assertion") == Some(first.as_str())
            && request.client_auth_carriers() == 0,
        "the token request was not a bare jwt-bearer grant with the file's JWT",
    )?;

    println!("\n2. the platform rotates the file; the authorization server revokes the token");
    let second = platform_token(&auth.url(), 600);
    write_token(&token_file, &second)?;
    auth.state().revoke_all();
    let (status, _) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(2, "tools/list", json!({})),
    )
    .await?;
    let recorded = auth.state().recorded();
    let renewal = recorded
        .last()
        .map(|r| r.param("assertion").unwrap_or_default().to_owned());
    println!(
        "   the call got a 401; the layer read the file again and presented jti {}: HTTP {}",
        jti(renewal.as_deref().unwrap_or_default()),
        status.as_u16()
    );
    check(
        status == StatusCode::OK
            && recorded.len() == 2
            && renewal.as_deref() == Some(second.as_str()),
        "the rotated JWT was not presented",
    )?;

    println!("\n3. the job starts again later; the platform has stopped refreshing the file");
    write_token(&token_file, &platform_token(&auth.url(), -60))?;
    let credentials = Credentials::jwt_bearer(ClientAssertion::from_file(&token_file));
    let layer = ClientCredentialsLayer::builder(mcp.url(), credentials)?
        .insecure_allow_http_loopback()
        .build()?;
    let mut client = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let before = auth.state().token_requests();
    let refused = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(3, "tools/list", json!({})),
    )
    .await;
    let kind = refused
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<Error>())
        .map(Error::kind);
    match &refused {
        Err(err) => println!(
            "   refused locally: {err} (token requests still {})",
            auth.state().token_requests()
        ),
        Ok((status, _)) => println!("   unexpectedly answered HTTP {}", status.as_u16()),
    }
    check(
        kind == Some(ErrorKind::Assertion) && auth.state().token_requests() == before,
        "an expired JWT must fail locally with ErrorKind::Assertion and no token request",
    )?;
    Ok(())
}
