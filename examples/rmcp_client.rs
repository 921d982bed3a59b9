//! An rmcp client with machine-to-machine OAuth: lists an MCP server's tools and calls one, its
//! Streamable HTTP traffic going through `ClientCredentialsLayer` (`tower_client_credentials::rmcp`).
//!
//! Without arguments it starts, on 127.0.0.1, the authorization server and MCP server of
//! `examples/support` and runs against them (then also revokes every token to show the layer
//! renewing and replaying under rmcp's feet):
//!
//! ```sh
//! cargo run --features rmcp --example rmcp_client
//! ```
//!
//! Against another server, give its URL and the client's credentials (the authorization server is
//! discovered from the MCP server's 401):
//!
//! ```sh
//! MCP_CLIENT_SECRET=… cargo run --features rmcp --example rmcp_client -- \
//!     --mcp-url http://127.0.0.1:3000/mcp --client-id my-client [--scope mcp:tools]… \
//!     [--issuer URL | --token-endpoint URL] [--tool NAME] [--arguments JSON]
//! ```
//!
//! Every option has an environment variable: `MCP_URL`, `MCP_CLIENT_ID`, `MCP_CLIENT_SECRET`
//! (better than `--client-secret`, which other users can read from the process list),
//! `MCP_SCOPES` (space-separated), `MCP_ISSUER`, `MCP_TOKEN_ENDPOINT`, `MCP_TOOL`,
//! `MCP_TOOL_ARGUMENTS`. Without `--tool`, the `echo` tool is called with "hello from rmcp" in its
//! first string parameter (`text`, `message`…) and must echo it. Plain `http` is allowed for loopback hosts
//! only.
//!
//! It exits 0 only when the server listed at least one tool and the call succeeded; 1 otherwise,
//! 2 for bad arguments.

mod support;

use std::process::ExitCode;

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use serde_json::{Map, Value};
use support::{AuthServer, AuthServerConfig, McpServer, check};
use tower_client_credentials::{BoxError, ClientCredentialsLayer, Credentials};

const USAGE: &str = "usage: rmcp_client [--mcp-url URL --client-id ID [--client-secret SECRET] \
[--scope SCOPE]... [--issuer URL | --token-endpoint URL] [--tool NAME] [--arguments JSON]]
Without --mcp-url (or MCP_URL) it runs against in-process servers. See the example's docs.";

const ECHO_TEXT: &str = "hello from rmcp";

/// Where to connect and as whom.
struct Target {
    mcp_url: String,
    client_id: String,
    client_secret: String,
    scopes: Vec<String>,
    issuer: Option<String>,
    token_endpoint: Option<String>,
    tool: Option<String>,
    arguments: Option<Map<String, Value>>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let target = match parse_args(std::env::args().skip(1)) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match target {
        Some(target) => external(target).await,
        None => in_process().await,
    };
    if let Err(err) = &result
        && let Some(auth) = tower_client_credentials::rmcp::auth_error(err.as_ref())
    {
        eprintln!("authentication failed ({:?}): {auth}", auth.kind());
    }
    support::finish("rmcp_client", result)
}

/// Against the MCP server named on the command line or in the environment.
async fn external(target: Target) -> Result<(), BoxError> {
    println!("MCP server  {}", target.mcp_url);
    let credentials = Credentials::client_secret(&target.client_id, target.client_secret)?;
    let mut builder = ClientCredentialsLayer::builder(&target.mcp_url, credentials)?
        // Refuses plain http except for loopback hosts, where test servers live.
        .insecure_allow_http_loopback();
    if !target.scopes.is_empty() {
        builder = builder.scopes(target.scopes)?;
    }
    if let Some(issuer) = target.issuer {
        builder = builder.issuer(issuer)?;
    }
    if let Some(endpoint) = target.token_endpoint {
        builder = builder.token_endpoint(endpoint)?;
    }
    let layer = builder.build()?;
    list_and_call(&layer, &target.mcp_url, target.tool, target.arguments).await
}

/// Against the in-process servers of `examples/support`.
async fn in_process() -> Result<(), BoxError> {
    let auth = AuthServer::start(AuthServerConfig::default()).await;
    let mcp = McpServer::start(auth.state(), auth.url(), "/mcp").await;
    println!("authorization server  {}", auth.url());
    println!("MCP server            {} (in process)", mcp.url());

    // What a real program writes: the server's URL and the credentials; the rest is discovered.
    let credentials = Credentials::client_secret("demo-client", "demo-secret")?;
    let layer = ClientCredentialsLayer::builder(mcp.url(), credentials)?
        .insecure_allow_http_loopback() // the demo servers speak plain http on loopback
        .build()?;

    list_and_call(&layer, &mcp.url(), None, None).await?;
    println!(
        "   401s: {} (the first request, sent before anything was known); token requests: {}",
        mcp.unauthorized(),
        auth.state().token_requests()
    );
    check(
        mcp.unauthorized() == 1 && auth.state().token_requests() == 1,
        "expected one 401 and one token request",
    )?;

    println!("\nthe authorization server revokes every token; rmcp calls again");
    auth.state().revoke_all();
    let client = ().serve(tower_client_credentials::rmcp::transport(mcp.url(), &layer)).await?;
    let result = client.call_tool(echo_call(None, None)).await?;
    client.cancel().await?;
    println!(
        "   echo says {:?}; 401s: {}, token requests: {} (renewed and replayed inside the layer)",
        first_text(&result).unwrap_or_default(),
        mcp.unauthorized(),
        auth.state().token_requests()
    );
    check(
        first_text(&result).as_deref() == Some(ECHO_TEXT)
            && mcp.unauthorized() == 2
            && auth.state().token_requests() == 2,
        "the revoked token was not replaced transparently",
    )
}

/// The part every rmcp program writes: connect, list the tools, call one.
async fn list_and_call(
    layer: &ClientCredentialsLayer,
    mcp_url: &str,
    tool: Option<String>,
    arguments: Option<Map<String, Value>>,
) -> Result<(), BoxError> {
    let transport = tower_client_credentials::rmcp::transport(mcp_url, layer);
    let client = ().serve(transport).await?;
    if let Some(server) = client.peer_info() {
        let (name, version) = server.server_info.as_ref().map_or(("?", "?"), |info| {
            (info.name.as_str(), info.version.as_str())
        });
        println!(
            "\nconnected: {name} {version} (protocol {})",
            server.protocol_version
        );
    }

    let tools = client.list_all_tools().await?;
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    println!("tools/list  {names:?}");
    check(!tools.is_empty(), "the server lists no tools")?;

    let (name, expect_echo) = match tool {
        Some(name) => (name, false),
        None if names.contains(&"echo") => ("echo".to_owned(), true),
        None => return Err("the server has no `echo` tool: name one with --tool".into()),
    };
    let call = match (expect_echo, arguments) {
        (true, arguments) => echo_call(tools.iter().find(|tool| tool.name == "echo"), arguments),
        (false, Some(arguments)) => {
            CallToolRequestParams::new(name.clone()).with_arguments(arguments)
        }
        (false, None) => CallToolRequestParams::new(name.clone()),
    };
    let result = client.call_tool(call).await?;
    println!(
        "tools/call  {name} -> {}",
        first_text(&result).unwrap_or_else(|| "(no text content)".to_owned())
    );
    check(result.is_error != Some(true), "the tool reported an error")?;
    if expect_echo && !result.content.is_empty() {
        check(
            first_text(&result).is_some_and(|text| text.contains(ECHO_TEXT)),
            "echo did not echo",
        )?;
    }
    client.cancel().await?;
    Ok(())
}

/// A call of `echo`: the given arguments, or [`ECHO_TEXT`] in the tool's first required string
/// parameter (`text` on the in-process server, `message` on the TypeScript SDK's).
fn echo_call(tool: Option<&Tool>, arguments: Option<Map<String, Value>>) -> CallToolRequestParams {
    let arguments = arguments.unwrap_or_else(|| {
        let schema = tool.map(|tool| tool.input_schema.as_ref());
        let properties = schema.and_then(|schema| schema.get("properties")?.as_object());
        let is_string = |name: &str| {
            properties.and_then(|p| p.get(name)?.get("type")?.as_str()) == Some("string")
        };
        let required = schema
            .and_then(|schema| schema.get("required")?.as_array())
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        let any = properties
            .into_iter()
            .flat_map(|p| p.keys().map(String::as_str));
        let parameter = required
            .chain(any)
            .find(|name| is_string(name))
            .unwrap_or("text");
        let mut arguments = Map::new();
        arguments.insert(parameter.to_owned(), Value::from(ECHO_TEXT));
        arguments
    });
    CallToolRequestParams::new("echo").with_arguments(arguments)
}

fn first_text(result: &CallToolResult) -> Option<String> {
    result
        .content
        .iter()
        .find_map(|content| content.as_text())
        .map(|text| text.text.clone())
}

/// `None`: no server named, run in process.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Target>, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let mut mcp_url = env("MCP_URL");
    let mut client_id = env("MCP_CLIENT_ID");
    let mut client_secret = env("MCP_CLIENT_SECRET");
    let mut scopes: Vec<String> = env("MCP_SCOPES")
        .map(|value| value.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let mut issuer = env("MCP_ISSUER");
    let mut token_endpoint = env("MCP_TOKEN_ENDPOINT");
    let mut tool = env("MCP_TOOL");
    let mut arguments = env("MCP_TOOL_ARGUMENTS");

    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        if flag == "--help" || flag == "-h" {
            return Err("rmcp_client: an rmcp client with OAuth client credentials".to_owned());
        }
        let slot = match flag.as_str() {
            "--mcp-url" => &mut mcp_url,
            "--client-id" => &mut client_id,
            "--client-secret" => &mut client_secret,
            "--issuer" => &mut issuer,
            "--token-endpoint" => &mut token_endpoint,
            "--tool" => &mut tool,
            "--arguments" => &mut arguments,
            "--scope" => {
                let value = inline
                    .or_else(|| args.next())
                    .ok_or("--scope needs a value")?;
                scopes.extend(value.split_whitespace().map(str::to_owned));
                continue;
            }
            other => return Err(format!("unknown argument {other:?}")),
        };
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        *slot = Some(value);
    }

    let Some(mcp_url) = mcp_url else {
        if client_id.is_some() || client_secret.is_some() {
            return Err("credentials given without --mcp-url".to_owned());
        }
        return Ok(None);
    };
    let arguments = match arguments {
        Some(json) => match serde_json::from_str::<Value>(&json) {
            Ok(Value::Object(map)) => Some(map),
            _ => return Err("--arguments must be a JSON object".to_owned()),
        },
        None => None,
    };
    Ok(Some(Target {
        mcp_url,
        client_id: client_id.ok_or("--mcp-url needs --client-id (or MCP_CLIENT_ID)")?,
        client_secret: client_secret
            .ok_or("--mcp-url needs --client-secret (or MCP_CLIENT_SECRET)")?,
        scopes,
        issuer,
        token_endpoint,
        tool,
        arguments,
    }))
}
