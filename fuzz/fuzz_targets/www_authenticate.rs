//! Feeds arbitrary bytes to the `WWW-Authenticate` parser.
#![no_main]

use http::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use libfuzzer_sys::fuzz_target;
use tower_client_credentials::challenge::{self, BearerChallenge, MAX_CHALLENGES, MAX_PARAMS};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&challenge::parse(&text));

    // The same bytes as header fields: whole, and split on newlines into several fields.
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(data) {
        headers.append(WWW_AUTHENTICATE, value);
    }
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(WWW_AUTHENTICATE, value);
        }
    }
    let all = challenge::parse_all(&headers);
    check(&all);

    let bearer = BearerChallenge::from_headers(&headers);
    let first = all.iter().find_map(BearerChallenge::from_challenge);
    assert_eq!(bearer, first);
});

fn check(challenges: &[challenge::Challenge]) {
    assert!(challenges.len() <= MAX_CHALLENGES);
    for c in challenges {
        assert!(!c.scheme().is_empty());
        assert!(c.params().count() <= MAX_PARAMS);
        for (name, _) in c.params() {
            assert!(c.param(name).is_some());
            assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
        }
    }
}
