//! Client secret rotation without a restart: `Credentials::client_secret_file`.
//!
//! A secret manager (a mounted Kubernetes secret, a Vault agent) keeps the client secret in a file
//! and rewrites it when the secret rotates. The layer re-reads the file whenever its modification
//! time changes, so the process keeps running across the rotation. Everything runs on 127.0.0.1:
//!
//! 1. the file holds secret v1: discovery from the MCP URL, one token request with Basic
//!    authentication using v1;
//! 2. the secret rotates: the secret manager writes v2 into the file, and the authorization server
//!    switches to v2 and revokes the tokens issued so far;
//! 3. the next call gets a 401; the layer renews the token, reading v2 from the file, and replays
//!    the call, transparently.
//!
//! Run it with `cargo run --example secret_rotation`. It exits 0 when every step behaved as
//! described, 1 otherwise.

mod support;

use support::check;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use support::{
    AuthServer, AuthServerConfig, McpServer, basic_authorization, jsonrpc, post_jsonrpc,
};
use tower::ServiceBuilder;
use tower_client_credentials::{BoxError, ClientCredentialsLayer, Credentials};

const CLIENT: &str = "reporting-job";
const V1: &str = "secret-v1-8d0f3a";
const V2: &str = "secret-v2-5c71e9";

#[tokio::main]
async fn main() -> ExitCode {
    let dir = std::env::temp_dir().join(format!("secret-rotation-example-{}", std::process::id()));
    let result = run(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    support::finish("secret_rotation", result)
}

/// What the secret manager does: new content and a new modification time.
fn write_secret(path: &Path, secret: &str, modified: SystemTime) -> Result<(), BoxError> {
    std::fs::write(path, format!("{secret}\n"))?;
    std::fs::File::options()
        .write(true)
        .open(path)?
        .set_modified(modified)?;
    Ok(())
}

/// Which of the two secrets a recorded Basic header carries.
fn version(authorization: Option<&str>) -> &'static str {
    match authorization {
        Some(header) if header == basic_authorization(CLIENT, V1) => "v1",
        Some(header) if header == basic_authorization(CLIENT, V2) => "v2",
        Some(_) => "another secret",
        None => "no Basic header",
    }
}

async fn run(dir: &Path) -> Result<(), BoxError> {
    let auth = AuthServer::start(AuthServerConfig {
        clients: vec![(CLIENT.to_owned(), V1.to_owned())],
        ..AuthServerConfig::default()
    })
    .await;
    let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
    std::fs::create_dir_all(dir)?;
    let secret_file = dir.join("client-secret");
    write_secret(&secret_file, V1, SystemTime::now())?;
    println!("authorization server   {}", auth.url());
    println!("MCP server             {}", mcp.url());
    println!("secret file            {}", secret_file.display());

    // The part a real program writes.
    let credentials = Credentials::client_secret_file(CLIENT, &secret_file)?;
    let layer = ClientCredentialsLayer::builder(mcp.url(), credentials)?
        .insecure_allow_http_loopback() // the demo servers speak plain http on loopback
        .build()?;
    let mut client = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    println!("\n1. tools/list with secret v1 in the file");
    let (status, _) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(1, "tools/list", json!({})),
    )
    .await?;
    let recorded = auth.state().recorded();
    println!(
        "   HTTP {}; {} token request(s), authenticated with {}",
        status.as_u16(),
        recorded.len(),
        version(recorded[0].authorization.as_deref())
    );
    check(
        status == StatusCode::OK
            && recorded.len() == 1
            && version(recorded[0].authorization.as_deref()) == "v1",
        "the first token request did not use v1",
    )?;

    println!("\n2. the secret rotates: the file now holds v2; the server accepts only v2");
    // A later modification time, as a secret manager's write gives (set explicitly because some
    // file systems keep coarse timestamps).
    write_secret(&secret_file, V2, SystemTime::now() + Duration::from_secs(2))?;
    auth.state()
        .set_clients(vec![(CLIENT.to_owned(), V2.to_owned())]);
    auth.state().revoke_all();

    println!("\n3. the next tools/list");
    let (status, _) = post_jsonrpc(
        &mut client,
        &mcp.url(),
        &jsonrpc(2, "tools/list", json!({})),
    )
    .await?;
    let recorded = auth.state().recorded();
    println!(
        "   the call got a 401; the layer fetched a new token authenticated with {} and replayed the call: HTTP {}",
        version(recorded.last().and_then(|r| r.authorization.as_deref())),
        status.as_u16()
    );
    check(
        status == StatusCode::OK
            && recorded.len() == 2
            && version(recorded[1].authorization.as_deref()) == "v2"
            && mcp.unauthorized() == 2, // the discovery probe of step 1, and the revoked token
        "the rotated secret was not used",
    )?;
    Ok(())
}
