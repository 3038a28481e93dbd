//! Cross-Site WebSocket Hijacking defence: a browser's handshake must come from an allowed
//! origin. Handshakes without an `Origin` header (services, tests, benchmarks) pass: browsers
//! always send one.

use http::{HeaderMap, header};

/// Whether the request's `Origin` may open a WebSocket. With no configured origins, only the
/// server's own host (the `Host` header) is allowed.
pub fn allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if allowed.is_empty() {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        return matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o));
    }
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(o));
        }
        h
    }

    #[test]
    fn same_host_by_default() {
        assert!(allowed(
            &headers(Some("http://127.0.0.1:8000"), "127.0.0.1:8000"),
            &[]
        ));
        assert!(allowed(&headers(None, "127.0.0.1:8000"), &[]));
        assert!(!allowed(
            &headers(Some("http://evil.example"), "127.0.0.1:8000"),
            &[]
        ));
        assert!(!allowed(&headers(Some("null"), "127.0.0.1:8000"), &[]));
    }

    #[test]
    fn configured_list() {
        let list = vec!["https://chat.example.com".to_owned()];
        assert!(allowed(
            &headers(Some("https://chat.example.com"), "internal:8000"),
            &list
        ));
        assert!(!allowed(
            &headers(Some("http://127.0.0.1:8000"), "127.0.0.1:8000"),
            &list
        ));
    }
}
