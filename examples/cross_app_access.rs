//! Cross-app access (SEP-990, enterprise-managed authorization): an ID token from the enterprise
//! IdP is exchanged for an ID-JAG, which the MCP server's authorization server redeems for an
//! access token.
//!
//! Three servers run on 127.0.0.1: the enterprise IdP, the MCP server's authorization server
//! (which trusts the IdP and knows the client `demo-client`), and the MCP server. Alice signed in
//! to the IdP earlier (single sign-on), so the program holds her ID token. With
//! `Credentials::cross_app_access` the layer:
//!
//! 1. discovers the authorization server from the MCP URL, asks the IdP for an ID-JAG made out for
//!    that authorization server and the MCP resource (RFC 8693 token exchange), and redeems it with
//!    the jwt-bearer grant and the client's own credentials (Basic); the MCP server only ever sees
//!    the access token;
//! 2. renews the short-lived access token ahead of expiry with the same ID-JAG while it lives: the
//!    IdP is not asked again.
//!
//! Run it with `cargo run --example cross_app_access`. It exits 0 when every step behaved as
//! described, 1 otherwise.

mod support;

use support::check;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use support::{
    AuthServer, AuthServerConfig, IdpConfig, McpServer, basic_authorization, jsonrpc, jwt_claims,
    post_jsonrpc,
};
use tower::ServiceBuilder;
use tower_client_credentials::cross_app::IdentityProvider;
use tower_client_credentials::{BoxError, ClientAssertion, ClientCredentialsLayer, Credentials};

const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> ExitCode {
    support::finish("cross_app_access", run().await)
}

async fn run() -> Result<(), BoxError> {
    // The enterprise IdP: `idp-client` is a public client there, known to the MCP authorization
    // server as `demo-client` (the ID-JAG's client_id).
    let idp = AuthServer::start(AuthServerConfig {
        clients: Vec::new(),
        idp: Some(IdpConfig::default()),
        ..AuthServerConfig::default()
    })
    .await;
    let auth = AuthServer::start(AuthServerConfig {
        trusted_issuers: vec![idp.trusted_issuer()],
        token_lifetime: ACCESS_TOKEN_LIFETIME,
        ..AuthServerConfig::default()
    })
    .await;
    let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
    println!("enterprise IdP         {}", idp.url());
    println!(
        "authorization server   {} (trusts the IdP; access tokens live {}s)",
        auth.url(),
        ACCESS_TOKEN_LIFETIME.as_secs()
    );
    println!("MCP server             {}", mcp.url());

    // From Alice's earlier single sign-on.
    let id_token = idp.issue_id_token("alice@example.com");

    // The part a real program writes.
    let idp_config = IdentityProvider::new(
        &idp.token_endpoint(),
        ClientAssertion::from_static(id_token.clone()),
    )?
    .client(Credentials::public_client("idp-client")?);
    let credentials = Credentials::cross_app_access(
        idp_config,
        Credentials::client_secret_basic("demo-client", "demo-secret")?,
    );
    let layer = ClientCredentialsLayer::builder(mcp.url(), credentials)?
        .insecure_allow_http_loopback() // the demo servers speak plain http on loopback
        .build()?;
    let mut client = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    println!("\n1. tools/list with Alice's ID token and the client's credentials");
    let (status, _) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(1, "tools/list", json!({})),
    )
    .await?;
    check(status == StatusCode::OK, "tools/list failed")?;
    let exchange = idp.state().recorded();
    check(
        exchange.len() == 1,
        "expected one token exchange at the IdP",
    )?;
    let exchange = &exchange[0];
    println!(
        "   IdP token exchange: requested_token_type={}, audience={}, resource={}, subject_token_type={}",
        exchange.param("requested_token_type").unwrap_or("?"),
        exchange.param("audience").unwrap_or("?"),
        exchange.param("resource").unwrap_or("?"),
        exchange.param("subject_token_type").unwrap_or("?"),
    );
    let id_jags = idp.state().issued_id_jags();
    check(id_jags.len() == 1, "expected one ID-JAG")?;
    let id_jag = &id_jags[0];
    let claims = jwt_claims(&id_jag.jwt);
    println!(
        "   ID-JAG: iss={} sub={} aud={} client_id={} (lives {}s)",
        claims["iss"],
        claims["sub"],
        claims["aud"],
        claims["client_id"],
        claims["exp"].as_u64().unwrap_or(0) - claims["iat"].as_u64().unwrap_or(0),
    );
    check(
        exchange.param("audience") == Some(auth.url().as_str())
            && exchange.param("resource") == Some(mcp.url().as_str()),
        "the exchange did not name the MCP authorization server and resource",
    )?;
    let redeemed = auth.state().recorded();
    check(redeemed.len() == 1, "expected one jwt-bearer request")?;
    let basic = redeemed[0].authorization.as_deref()
        == Some(basic_authorization("demo-client", "demo-secret").as_str());
    println!(
        "   authorization server: grant_type={}, assertion = the ID-JAG: {}, client authentication: {}",
        redeemed[0].param("grant_type").unwrap_or("?"),
        redeemed[0].param("assertion") == Some(id_jag.jwt.as_str()),
        if basic {
            "Basic demo-client"
        } else {
            "MISSING"
        },
    );
    check(
        redeemed[0].param("assertion") == Some(id_jag.jwt.as_str()) && basic,
        "the ID-JAG was not redeemed with Basic client authentication",
    )?;
    let leaked = mcp
        .seen_requests()
        .iter()
        .any(|r| r.contains(&id_jag.jwt) || r.contains(&id_token));
    println!(
        "   MCP server: HTTP {}; {} requests, {} of them with the ID token or the ID-JAG",
        status.as_u16(),
        mcp.requests(),
        usize::from(leaked)
    );
    check(!leaked, "the MCP server saw the ID token or the ID-JAG")?;

    println!(
        "\n2. calls for {}s while the access token expires and is renewed",
        (ACCESS_TOKEN_LIFETIME * 2).as_secs()
    );
    let started = Instant::now();
    let (mut calls, mut failed) = (0u64, 0);
    while started.elapsed() < ACCESS_TOKEN_LIFETIME * 2 {
        calls += 1;
        let (status, _) = post_jsonrpc(
            &mut client,
            &mcp.url(),
            &jsonrpc(10 + calls, "tools/list", json!({})),
        )
        .await?;
        if status != StatusCode::OK {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let redeemed = auth.state().recorded();
    let same_id_jag = redeemed
        .iter()
        .all(|r| r.param("assertion") == Some(id_jag.jwt.as_str()));
    println!(
        "   {calls} calls, {failed} failed; access tokens fetched: {}, each with the same ID-JAG: {same_id_jag}; IdP exchanges: {}",
        redeemed.len(),
        idp.state().token_exchanges()
    );
    check(
        failed == 0,
        "a call failed while the access token was renewed",
    )?;
    check(
        redeemed.len() >= 2,
        "the access token was not renewed ahead of expiry",
    )?;
    check(
        same_id_jag && idp.state().token_exchanges() == 1,
        "the live ID-JAG was not reused",
    )?;
    Ok(())
}
