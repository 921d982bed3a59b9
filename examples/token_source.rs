//! Bring your own token: an API key from a secret store, with a refresh hook for when the
//! resource refuses it.
//!
//! Some MCP servers and gateways hand out API keys instead of running an OAuth token endpoint.
//! `ClientCredentialsLayer::with_token_source` still gives the layer's guarantees: the key goes
//! only to the resource, it is cached, and a 401 calls the source's `on_unauthorized` hook (here:
//! ask the gateway for a new key and store it) before the request is replayed once. Everything
//! runs on 127.0.0.1:
//!
//! 1. the secret store holds a key issued out of band: calls carry it;
//! 2. a request to another server on the same machine does not get it;
//! 3. the gateway revokes the key: the next call gets a 401, the hook fetches a new key, and the
//!    call is replayed with it, transparently.
//!
//! Run it with `cargo run --example token_source`. It exits 0 when every step behaved as
//! described, 1 otherwise.

mod support;

use support::check;

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use support::{AuthServer, AuthServerConfig, AuthState, McpServer, jsonrpc, post_jsonrpc};
use tower::ServiceBuilder;
use tower_client_credentials::{BoxError, ClientCredentialsLayer, SourcedToken, token_source_fn};

#[tokio::main]
async fn main() -> ExitCode {
    support::finish("token_source", run().await)
}

/// A stand-in for the gateway that issues API keys for the MCP server.
fn new_key(gateway: &AuthState, resource: &str) -> String {
    gateway.issue_token("reporting-job", Some(resource))
}

async fn run() -> Result<(), BoxError> {
    let gateway = AuthServer::start(AuthServerConfig::default()).await;
    let mcp = McpServer::start(gateway.state(), gateway.url(), "/mcp").await;
    let elsewhere = McpServer::start(gateway.state(), gateway.url(), "/mcp").await;
    println!("MCP server             {}", mcp.url());
    println!("another server         {}", elsewhere.url());

    // The secret store, filled out of band.
    let store = Arc::new(Mutex::new(new_key(&gateway.state(), &mcp.url())));
    let hook_calls = Arc::new(AtomicUsize::new(0));

    // The part a real program writes: where the key comes from, and what to do on a 401.
    let (read_store, write_store) = (Arc::clone(&store), Arc::clone(&store));
    let (state, resource, calls) = (gateway.state(), mcp.url(), Arc::clone(&hook_calls));
    let source = token_source_fn(move || {
        let key = read_store.lock().unwrap().clone();
        async move { Ok(SourcedToken::new(key)) }
    })
    .on_unauthorized(move || {
        calls.fetch_add(1, Ordering::SeqCst);
        let key = new_key(&state, &resource);
        *write_store.lock().unwrap() = key.clone();
        async move { Ok(SourcedToken::new(key)) }
    });
    let layer = ClientCredentialsLayer::with_token_source(mcp.url(), source)?
        .insecure_allow_http_loopback() // the demo servers speak plain http on loopback
        .build()?;
    let mut client = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    println!("\n1. tools/list with the key from the secret store");
    let first_key = store.lock().unwrap().clone();
    let (status, _) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(1, "tools/list", json!({})),
    )
    .await?;
    let sent = mcp.seen_authorization() == vec![Some(format!("Bearer {first_key}"))];
    println!(
        "   HTTP {}; the server saw `Authorization: Bearer <the stored key>`: {sent}",
        status.as_u16(),
    );
    check(status == StatusCode::OK && sent, "the key was not sent")?;

    println!("\n2. a request through the same client to another server");
    let (status, _) = post_jsonrpc(
        &mut client,
        &elsewhere.url(),
        &jsonrpc(2, "tools/list", json!({})),
    )
    .await?;
    println!(
        "   HTTP {} from the other server, which saw Authorization: {:?}",
        status.as_u16(),
        elsewhere.seen_authorization()[0]
    );
    check(
        elsewhere.seen_authorization() == vec![None],
        "the key went to another server",
    )?;

    println!("\n3. the gateway revokes the key");
    gateway.state().revoke_all();
    let (status, _) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(3, "tools/list", json!({})),
    )
    .await?;
    let new = store.lock().unwrap().clone();
    println!(
        "   the call got a 401; the hook ran {} time(s) and stored a new key (different: {}); the replay answered HTTP {}",
        hook_calls.load(Ordering::SeqCst),
        new != first_key,
        status.as_u16()
    );
    check(
        status == StatusCode::OK
            && hook_calls.load(Ordering::SeqCst) == 1
            && mcp.unauthorized() == 1
            && new != first_key,
        "the revoked key was not replaced through the hook",
    )?;
    let (status, _) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(4, "tools/list", json!({})),
    )
    .await?;
    println!(
        "   the next call carries the new key: HTTP {}",
        status.as_u16()
    );
    check(
        status == StatusCode::OK
            && mcp.seen_authorization().last() == Some(&Some(format!("Bearer {new}"))),
        "the new key was not kept",
    )?;
    Ok(())
}
