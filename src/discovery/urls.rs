//! Well-known URL construction (RFC 9728 §3.1, RFC 8414 §3.1, OpenID Connect Discovery §4) and the
//! comparisons discovery needs. Strings are kept as written: nothing here re-serialises a URL, so
//! no trailing `/` is ever added (REFERENCE R31, P4).

use http::Uri;

/// `scheme://authority` of an absolute URL, as written.
pub(crate) fn origin(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map_or("", |a| a.as_str())
    )
}

/// The path (and query) after the authority, with a lone `/` dropped (RFC 9728 §3.1).
fn path_and_query(uri: &Uri) -> &str {
    let rest = uri.path_and_query().map_or("", |p| p.as_str());
    if rest == "/" { "" } else { rest }
}

/// RFC 9728 candidates for a resource without a `resource_metadata` hint: the path-aware URL,
/// then the root (REFERENCE R12, R13). Each comes with the identifier it was built from.
pub(crate) fn protected_resource_candidates(resource: &Uri) -> Vec<(String, String)> {
    const SUFFIX: &str = "/.well-known/oauth-protected-resource";
    let origin = origin(resource);
    let rest = path_and_query(resource);
    let mut candidates = Vec::with_capacity(2);
    if !rest.is_empty() && !rest.starts_with('?') {
        candidates.push((format!("{origin}{SUFFIX}{rest}"), format!("{origin}{rest}")));
    }
    candidates.push((format!("{origin}{SUFFIX}"), origin));
    candidates
}

/// RFC 8414 then OpenID Connect metadata URLs for an issuer, in the order REFERENCE R23 gives:
/// path insertion for both, then OIDC path appending; for a path-less issuer, the two root forms.
pub(crate) fn authorization_server_candidates(issuer: &Uri) -> Vec<String> {
    let origin = origin(issuer);
    // RFC 8414 §3.1: a trailing `/` is removed before inserting (R24).
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    }
}

/// Scheme, host (both case-insensitive) and effective port.
pub(crate) fn same_origin(a: &Uri, b: &Uri) -> bool {
    fn parts(u: &Uri) -> Option<(String, String, u16)> {
        let scheme = u.scheme_str()?.to_ascii_lowercase();
        let authority = u.authority()?;
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Some((scheme, authority.host().to_ascii_lowercase(), port))
    }
    parts(a).is_some_and(|p| Some(p) == parts(b))
}

/// Whether `prefix`'s path is `path` or a parent of it, segment by segment.
pub(crate) fn path_is_prefix(prefix: &Uri, path: &Uri) -> bool {
    let prefix = prefix.path().trim_end_matches('/');
    let path = path.path().trim_end_matches('/');
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Identical URLs, except that scheme and host compare case-insensitively (REFERENCE R32).
pub(crate) fn same_url(a: &Uri, b: &Uri) -> bool {
    same_origin(a, b)
        && a.path_and_query()
            .map_or("", |p| p.as_str())
            .trim_start_matches('/')
            == b.path_and_query()
                .map_or("", |p| p.as_str())
                .trim_start_matches('/')
}

/// Issuer identifiers compare as plain strings (RFC 8414 §3.3). With `tolerant`, a path-less
/// issuer may differ by one trailing `/` (REFERENCE R25, pitfall P3).
pub(crate) fn same_issuer(expected: &str, actual: &str, tolerant: bool) -> bool {
    if expected == actual {
        return true;
    }
    if !tolerant {
        return false;
    }
    let (e, a) = (
        expected.strip_suffix('/').unwrap_or(expected),
        actual.strip_suffix('/').unwrap_or(actual),
    );
    e == a && is_pathless(e)
}

fn is_pathless(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(_, rest)| !rest.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn protected_resource_urls_insert_the_suffix_after_the_authority() {
        // REFERENCE R13.
        let c = protected_resource_candidates(&uri("https://h:8443/public/mcp"));
        assert_eq!(
            c[0].0,
            "https://h:8443/.well-known/oauth-protected-resource/public/mcp"
        );
        assert_eq!(c[0].1, "https://h:8443/public/mcp");
        assert_eq!(
            c[1].0,
            "https://h:8443/.well-known/oauth-protected-resource"
        );
        assert_eq!(c[1].1, "https://h:8443");
        let root = protected_resource_candidates(&uri("https://h/"));
        assert_eq!(
            root,
            vec![(
                "https://h/.well-known/oauth-protected-resource".into(),
                "https://h".into()
            )]
        );
        assert_eq!(protected_resource_candidates(&uri("https://h")).len(), 1);
    }

    #[test]
    fn authorization_server_urls_in_order() {
        // REFERENCE R23, R24.
        assert_eq!(
            authorization_server_candidates(&uri("https://a/tenant1")),
            vec![
                "https://a/.well-known/oauth-authorization-server/tenant1",
                "https://a/.well-known/openid-configuration/tenant1",
                "https://a/tenant1/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            authorization_server_candidates(&uri("https://a/realm/x/"))[0],
            "https://a/.well-known/oauth-authorization-server/realm/x"
        );
        assert_eq!(
            authorization_server_candidates(&uri("https://a")),
            vec![
                "https://a/.well-known/oauth-authorization-server",
                "https://a/.well-known/openid-configuration"
            ]
        );
    }

    #[test]
    fn issuer_comparison() {
        assert!(same_issuer("https://a", "https://a", false));
        assert!(same_issuer("https://a", "https://a/", true));
        assert!(same_issuer("https://a/", "https://a", true));
        assert!(!same_issuer("https://a", "https://a/", false));
        assert!(
            !same_issuer("https://a/t", "https://a/t/", true),
            "only path-less issuers are tolerated"
        );
        assert!(!same_issuer(
            "https://honest.example",
            "https://attacker.example",
            true
        ));
    }

    #[test]
    fn origin_and_prefix() {
        assert!(same_origin(&uri("HTTPS://H/x"), &uri("https://h:443/y")));
        assert!(!same_origin(&uri("https://h/x"), &uri("http://h/x")));
        assert!(path_is_prefix(&uri("https://h"), &uri("https://h/mcp")));
        assert!(path_is_prefix(
            &uri("https://h/mcp/"),
            &uri("https://h/mcp")
        ));
        assert!(!path_is_prefix(&uri("https://h/mc"), &uri("https://h/mcp")));
        assert!(same_url(
            &uri("HTTPS://MCP.Example.com/mcp"),
            &uri("https://mcp.example.com/mcp")
        ));
    }
}
