//! Declaring the MCP OAuth client credentials extension (`io.modelcontextprotocol/oauth-client-credentials`)
//! in a client's capabilities (REFERENCE R67, R68, A5).
//!
//! OAuth happens at the HTTP level, before any JSON-RPC is read, so the declaration changes
//! nothing in the token flow; some servers use it to decide what to advertise or allow. The crate
//! never rewrites request bodies on its own: call [`declare`] on the messages your MCP client
//! builds.
//!
//! - Protocol `2026-07-28` and later (stateless, per-request capabilities): every request's
//!   `params._meta["io.modelcontextprotocol/clientCapabilities"].extensions`.
//! - Protocol `2025-11-25`: the `initialize` request's `params.capabilities.extensions` (the
//!   SEP-2133 shape).
//! - Earlier revisions have no place for extensions: nothing is added.
//!
//! ```
//! use serde_json::json;
//! use tower_client_credentials::extension::{OAUTH_CLIENT_CREDENTIALS, declare};
//!
//! let mut request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
//! declare(&mut request, "2026-07-28");
//! let extensions = &request["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]["extensions"];
//! assert_eq!(extensions[OAUTH_CLIENT_CREDENTIALS], json!({}));
//! ```

use serde_json::{Map, Value};

/// The extension's identifier.
pub const OAUTH_CLIENT_CREDENTIALS: &str = "io.modelcontextprotocol/oauth-client-credentials";

/// The `_meta` key that carries per-request client capabilities from protocol `2026-07-28` on.
pub const CLIENT_CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";

/// The first revision with per-request capabilities in `_meta`.
const PER_REQUEST: &str = "2026-07-28";
/// The revision whose `initialize` capabilities carry extensions.
const IN_INITIALIZE: &str = "2025-11-25";

/// Adds the extension's declaration to a JSON-RPC request for `protocol_version`, where that
/// revision carries one. Returns whether anything was added. Notifications and responses, and
/// messages that are not JSON-RPC requests, are left alone; existing capabilities are kept.
pub fn declare(message: &mut Value, protocol_version: &str) -> bool {
    let Some(object) = message.as_object_mut() else {
        return false;
    };
    if !object.contains_key("id") {
        return false;
    }
    let Some(method) = object.get("method").and_then(Value::as_str) else {
        return false;
    };
    // Revisions are dates, so they order as strings.
    let capabilities_path: &[&str] = if protocol_version >= PER_REQUEST {
        &["_meta", CLIENT_CAPABILITIES_META, "extensions"]
    } else if protocol_version >= IN_INITIALIZE && method == "initialize" {
        &["capabilities", "extensions"]
    } else {
        return false;
    };
    let mut node = object
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()));
    for key in capabilities_path {
        let Some(map) = node.as_object_mut() else {
            return false;
        };
        node = map.entry(*key).or_insert_with(|| Value::Object(Map::new()));
    }
    match node.as_object_mut() {
        Some(extensions) => {
            extensions
                .entry(OAUTH_CLIENT_CREDENTIALS)
                .or_insert_with(|| Value::Object(Map::new()));
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn per_request_meta_from_2026_07_28() {
        let mut request = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
        assert!(declare(&mut request, "2026-07-28"));
        assert_eq!(
            request["params"]["_meta"][CLIENT_CAPABILITIES_META]["extensions"]
                [OAUTH_CLIENT_CREDENTIALS],
            json!({})
        );
    }

    #[test]
    fn initialize_capabilities_in_2025_11_25_only() {
        let mut init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"capabilities": {"roots": {}, "extensions": {"other/ext": {"x": 1}}}}});
        assert!(declare(&mut init, "2025-11-25"));
        let extensions = &init["params"]["capabilities"]["extensions"];
        assert_eq!(extensions[OAUTH_CLIENT_CREDENTIALS], json!({}));
        assert_eq!(
            extensions["other/ext"],
            json!({"x": 1}),
            "existing extensions are kept"
        );
        assert_eq!(init["params"]["capabilities"]["roots"], json!({}));

        let mut list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        assert!(!declare(&mut list, "2025-11-25"));
        assert_eq!(
            list,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        );
    }

    #[test]
    fn older_revisions_and_non_requests_are_untouched() {
        let original = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});
        let mut init = original.clone();
        assert!(!declare(&mut init, "2025-06-18"));
        assert_eq!(init, original);
        let mut notification = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert!(!declare(&mut notification, "2026-07-28"));
        let mut odd = json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1, 2]});
        assert!(
            !declare(&mut odd, "2026-07-28"),
            "array params have no place for _meta"
        );
        let mut not_object = json!([1]);
        assert!(!declare(&mut not_object, "2026-07-28"));
    }
}
