//! Quickstart: the whole client-credentials flow on one machine.
//!
//! Starts, on 127.0.0.1, an OAuth 2.0 authorization server (client_credentials grant, 3-second
//! tokens) and a small MCP server over Streamable HTTP that demands a bearer token, then drives a
//! hyper-util client through [`ClientCredentialsLayer`] and narrates what happens:
//!
//! 1. the client knows only the MCP server's URL and its credentials: the first request goes out
//!    without a token, the server's 401 names its protected resource metadata (RFC 9728), which
//!    names the authorization server, whose metadata (RFC 8414) names the token endpoint; the layer
//!    fetches one token and replays the request;
//! 2. `initialize`, `tools/list` and `tools/call` carry it;
//! 3. calls keep flowing across several token lifetimes while the token is refreshed in the
//!    background ahead of expiry, with no failed call;
//! 4. the server revokes the token; the next call gets a 401, which the layer answers by fetching
//!    a new token and replaying the call once, transparently.
//!
//! Run it with `cargo run --example quickstart`. It exits 0 when every step behaved as described,
//! 1 otherwise.

mod support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use support::{
    AuthServer, AuthServerConfig, McpServer, check, jsonrpc, jsonrpc_notification, post_jsonrpc,
};
use tower::ServiceBuilder;
use tower_client_credentials::{BoxError, ClientCredentialsLayer, Credentials};

const TOKEN_LIFETIME: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> ExitCode {
    support::finish("quickstart", run().await)
}

async fn run() -> Result<(), BoxError> {
    let auth = AuthServer::start(AuthServerConfig {
        token_lifetime: TOKEN_LIFETIME,
        ..AuthServerConfig::default()
    })
    .await;
    let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
    println!(
        "authorization server  {} (tokens live {}s)",
        auth.url(),
        TOKEN_LIFETIME.as_secs()
    );
    println!("MCP server            {}", mcp.url());

    // The part a real program writes: the MCP server URL and the credentials. Everything else is
    // discovered.
    let credentials = Credentials::client_secret("demo-client", "demo-secret")?;
    let layer = ClientCredentialsLayer::builder(mcp.url(), credentials)?
        .insecure_allow_http_loopback() // the demo servers speak plain http on loopback
        .build()?;
    let mut client = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let tokens = || auth.state().token_requests();

    println!("\n1. initialize (nothing known yet: the 401 leads to discovery and one token)");
    let (status, body) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(
            1,
            "initialize",
            json!({
                "protocolVersion": support::MCP_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "quickstart", "version": "0.1.0"}
            }),
        ),
    )
    .await?;
    check(status == StatusCode::OK, "initialize failed")?;
    println!(
        "   server {} speaks {}; 401s so far: {} (the first request, sent before anything was known); token requests: {}",
        body["result"]["serverInfo"]["name"],
        body["result"]["protocolVersion"],
        mcp.unauthorized(),
        tokens()
    );
    check(
        tokens() == 1 && mcp.unauthorized() == 1,
        "expected one 401 and exactly one token request",
    )?;
    let (status, _) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc_notification("notifications/initialized", Value::Null),
    )
    .await?;
    check(
        status == StatusCode::ACCEPTED,
        "notifications/initialized was not accepted",
    )?;

    println!("\n2. tools/list and tools/call");
    let (_, body) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(2, "tools/list", json!({})),
    )
    .await?;
    let tool = body["result"]["tools"][0]["name"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let (_, body) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(
            3,
            "tools/call",
            json!({"name": tool, "arguments": {"text": "hello"}}),
        ),
    )
    .await?;
    println!(
        "   tools: [{tool}]; echo says {}",
        body["result"]["content"][0]["text"]
    );
    check(
        body["result"]["content"][0]["text"] == "hello",
        "echo did not answer",
    )?;

    let window = TOKEN_LIFETIME * 2;
    println!(
        "\n3. calling every 100 ms for {}s ({} token lifetimes)",
        window.as_secs(),
        window.as_secs() / TOKEN_LIFETIME.as_secs()
    );
    let started = Instant::now();
    let (mut calls, mut failed, mut slowest) = (0, 0, Duration::ZERO);
    let mut seen_tokens = tokens();
    while started.elapsed() < window {
        calls += 1;
        let sent = Instant::now();
        let (status, _) = post_jsonrpc(
            &mut client,
            &mcp.url(),
            &jsonrpc(
                10 + calls,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": "tick"}}),
            ),
        )
        .await?;
        slowest = slowest.max(sent.elapsed());
        if status != StatusCode::OK {
            failed += 1;
        }
        if tokens() != seen_tokens {
            seen_tokens = tokens();
            println!(
                "   t={:.1}s  token refreshed in the background ahead of expiry (token request #{seen_tokens})",
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The one 401 so far was the first request's, before anything was known (step 1).
    let refused = mcp.unauthorized() - 1;
    println!(
        "   {calls} calls, {failed} failed, {refused} refused with 401, slowest {} ms",
        slowest.as_millis()
    );
    check(
        failed == 0 && refused == 0,
        "a call failed while tokens rotated",
    )?;
    check(tokens() >= 3, "the token was not refreshed ahead of expiry")?;

    println!("\n4. the authorization server revokes every token");
    auth.state().revoke_all();
    let before = tokens();
    let (status, body) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(
            99,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "after revocation"}}),
        ),
    )
    .await?;
    println!(
        "   the call got a 401, the layer fetched token #{} and replayed it once: HTTP {}, echo says {}",
        tokens(),
        status.as_u16(),
        body["result"]["content"][0]["text"]
    );
    check(
        status == StatusCode::OK && mcp.unauthorized() == 2 && tokens() == before + 1,
        "the revoked token was not replaced transparently",
    )?;
    Ok(())
}
