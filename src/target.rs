//! URLs: which requests belong to the protected resource, and which URLs the crate may talk to.

use http::Uri;
use http::uri::Scheme;

use crate::error::ConfigError;

/// The protected resource a token is for. A request belongs to it when it has the same scheme,
/// host and port, and a path equal to or below the resource path (segment-wise), REFERENCE R5.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The authority as configured, lower-cased: most requests spell it the same way, and one
    /// string comparison then replaces parsing host and port.
    authority: String,
    https: bool,
    host: String,
    port: u16,
    /// The resource path without a trailing `/`; empty for the whole origin.
    path: String,
}

impl Target {
    pub(crate) fn new(uri: &Uri) -> Self {
        let https = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"));
        let authority = uri.authority();
        let host = authority.map_or("", |a| a.host()).to_ascii_lowercase();
        let port = authority
            .and_then(|a| a.port_u16())
            .unwrap_or(if https { 443 } else { 80 });
        let path = uri.path().trim_end_matches('/').to_owned();
        let authority = authority.map_or(String::new(), |a| a.as_str().to_ascii_lowercase());
        Self {
            authority,
            https,
            host,
            port,
            path,
        }
    }

    /// Whether a request to `uri` may carry the resource's token. Requests without a scheme and
    /// host (origin-form URIs) never match: the crate cannot tell where they go.
    #[inline]
    pub(crate) fn matches(&self, uri: &Uri) -> bool {
        // `Scheme` parses http and https (in any case) to an enum: comparing it is one branch.
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return false,
        };
        let Some(authority) = uri.authority() else {
            return false;
        };
        if https != self.https {
            return false;
        }
        // Fast path: the authority spelled exactly as configured (a memcmp). Otherwise compare
        // case-insensitively, then host and effective port (`h` and `h:443` are the same
        // origin); userinfo never matches.
        let spelled = authority.as_str();
        let same_origin = spelled == self.authority
            || spelled.eq_ignore_ascii_case(&self.authority)
            || (authority.host().eq_ignore_ascii_case(&self.host)
                && authority.port_u16().unwrap_or(if https { 443 } else { 80 }) == self.port
                && !spelled.contains('@'));
        same_origin && path_is_under(uri.path(), &self.path)
    }
}

fn path_is_under(path: &str, prefix: &str) -> bool {
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    // A dot segment could climb out of the resource path once the server normalises it.
    rest.starts_with('/') && !rest.contains("/.") && !rest.contains("%2e") && !rest.contains("%2E")
}

/// Parses an absolute `http(s)` URL given in configuration.
pub(crate) fn parse_url(url: &str, field: &'static str) -> Result<Uri, ConfigError> {
    let invalid = |reason| ConfigError::InvalidUrl { field, reason };
    if url.contains('#') {
        return Err(invalid("a fragment is not allowed"));
    }
    let uri: Uri = url.parse().map_err(|_| invalid("not a valid URL"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http") => {}
        Some(_) => return Err(invalid("the scheme must be http or https")),
        None => return Err(invalid("the URL must be absolute")),
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid("the URL has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(invalid("credentials in the URL are not allowed"));
    }
    if authority.host().is_empty() {
        return Err(invalid("the URL has no host"));
    }
    Ok(uri)
}

/// Refuses plain `http`, except to loopback hosts when explicitly allowed (REFERENCE R19, R78).
pub(crate) fn check_secure(
    uri: &Uri,
    field: &'static str,
    allow_http_loopback: bool,
) -> Result<(), ConfigError> {
    if uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        return Ok(());
    }
    if allow_http_loopback && uri.host().is_some_and(is_loopback) {
        return Ok(());
    }
    Err(ConfigError::InsecureUrl { field })
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::new(&url.parse().unwrap())
    }

    fn matches(resource: &str, request: &str) -> bool {
        target(resource).matches(&request.parse().unwrap())
    }

    #[test]
    fn same_origin_and_path_below_match() {
        assert!(matches("https://h/mcp", "https://h/mcp"));
        assert!(matches("https://h/mcp", "https://h/mcp/"));
        assert!(matches("https://h/mcp", "https://h/mcp/sub?x=1"));
        assert!(matches("https://h/mcp", "https://h:443/mcp"));
        assert!(matches("https://H/mcp", "HTTPS://h/mcp"));
        assert!(matches("https://h", "https://h/anything"));
        assert!(matches("https://h/", "https://h/anything"));
        assert!(matches(
            "http://127.0.0.1:8080/mcp",
            "http://127.0.0.1:8080/mcp"
        ));
    }

    #[test]
    fn other_origins_and_paths_do_not_match() {
        assert!(!matches("https://h/mcp", "http://h/mcp"));
        assert!(!matches("https://h/mcp", "https://h:8443/mcp"));
        assert!(!matches("https://h/mcp", "https://evil/mcp"));
        assert!(!matches("https://h/mcp", "https://h.evil/mcp"));
        assert!(!matches("https://h/mcp", "https://h/mcpx"));
        assert!(!matches("https://h/mcp", "https://h/"));
        assert!(!matches("https://h/mcp", "https://h/mcp/../admin"));
        assert!(!matches("https://h/mcp", "https://h/mcp/%2e%2e/admin"));
        assert!(!matches("https://h/mcp", "/mcp"));
    }

    #[test]
    fn url_policy() {
        let uri = |s: &str| parse_url(s, "token_endpoint");
        assert!(uri("https://as.example/token").is_ok());
        assert!(uri("ftp://as.example/token").is_err());
        assert!(uri("/token").is_err());
        assert!(uri("https://user:pw@as.example/token").is_err());
        assert!(uri("https://as.example/token#frag").is_err());
        let http = uri("http://as.example/token").unwrap();
        assert!(check_secure(&http, "token_endpoint", true).is_err());
        for loopback in [
            "http://127.0.0.1:1/t",
            "http://localhost/t",
            "http://[::1]:8/t",
        ] {
            let u = uri(loopback).unwrap();
            assert!(
                check_secure(&u, "token_endpoint", true).is_ok(),
                "{loopback}"
            );
            assert!(
                check_secure(&u, "token_endpoint", false).is_err(),
                "{loopback}"
            );
        }
    }
}
