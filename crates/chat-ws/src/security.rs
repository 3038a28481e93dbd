//! Who may open a socket from where: Channels' `security.websocket` (`OriginValidator`,
//! `AllowedHostsOriginValidator`) for our upgrade.
//!
//! A browser lets any page open a WebSocket to any server and sends that server's cookies
//! with it, so without an Origin check a hostile page can act as the logged-in visitor
//! (Cross-Site WebSocket Hijacking). Every [`Sockets`](crate::Sockets) checks its
//! [`OriginPolicy`] before a consumer's `connect` runs; the default allows only the server's
//! own host, so forgetting to configure it is safe.
//!
//! A handshake **without** an `Origin` header passes: browsers always send one, and services,
//! command-line clients and tests do not (Channels refuses those unless `*` is allowed; that
//! protects nobody, since a non-browser client can send any `Origin` it likes).

use http::{HeaderMap, header};

/// Which page origins may open sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    rule: Rule,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Rule {
    /// The origin's host and port equal the request's `Host`.
    #[default]
    SameHost,
    /// One of these origins (`https://chat.example.com`), compared without case.
    Origins(Vec<String>),
    /// The origin's host matches one of these hosts (Django's `ALLOWED_HOSTS`).
    Hosts(AllowedHosts),
    /// Any origin.
    Any,
}

/// Why a handshake's origin was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginRefused {
    /// The `Origin` header is not text (`null` from a sandboxed page is text, and refused as
    /// [`OriginRefused::NotAllowed`]).
    #[error("the Origin header is not readable")]
    Unreadable,
    /// The origin is not one the policy allows.
    #[error("the origin {0:?} may not open sockets here")]
    NotAllowed(String),
}

impl OriginPolicy {
    /// Only pages served by this host (the `Origin`'s host and port equal the request's
    /// `Host`). The default.
    pub fn same_host() -> Self {
        Self::default()
    }

    /// Only these origins, as a browser sends them: scheme, host and port
    /// (`https://chat.example.com`, `http://localhost:3000`). `*` allows any; an empty list
    /// is [`OriginPolicy::same_host`].
    pub fn origins<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let list: Vec<String> = origins
            .into_iter()
            .map(|o| o.into().trim_end_matches('/').to_owned())
            .collect();
        let rule = if list.iter().any(|o| o == "*") {
            Rule::Any
        } else if list.is_empty() {
            Rule::SameHost
        } else {
            Rule::Origins(list)
        };
        Self { rule }
    }

    /// Origins whose host is one of `hosts`, whatever their scheme and port: Channels'
    /// `AllowedHostsOriginValidator`, for a service that already keeps a Django-style
    /// `ALLOWED_HOSTS` list.
    pub fn hosts(hosts: AllowedHosts) -> Self {
        Self {
            rule: Rule::Hosts(hosts),
        }
    }

    /// Any origin. Only for sockets that carry no ambient credentials (no cookies), such as
    /// a public feed, or behind a proxy that checks origins itself.
    pub fn any() -> Self {
        Self { rule: Rule::Any }
    }

    /// Checks a handshake's headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), OriginRefused> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .map_err(|_| OriginRefused::Unreadable)?
            .trim_end_matches('/');
        let refused = || Err(OriginRefused::NotAllowed(origin.to_owned()));
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let ok = match &self.rule {
            Rule::Any => true,
            Rule::SameHost => {
                let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
                matches!((host, authority), (Some(h), Some(a)) if h.eq_ignore_ascii_case(a))
            }
            Rule::Origins(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            Rule::Hosts(hosts) => authority.is_some_and(|a| hosts.allows(a)),
        };
        if ok { Ok(()) } else { refused() }
    }
}

/// Host names a server answers to: Django's `ALLOWED_HOSTS`. `example.com` matches that host
/// only, `.example.com` matches it and every subdomain, `*` matches any host. Ports are
/// ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    patterns: Vec<String>,
}

impl AllowedHosts {
    /// The hosts `patterns` describe.
    pub fn new<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            patterns: patterns
                .into_iter()
                .map(|p| p.into().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `authority` (`host`, `host:port`, `[::1]:8000`) is one of these hosts.
    pub fn allows(&self, authority: &str) -> bool {
        let host = strip_port(authority).to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        self.patterns.iter().any(|p| {
            if p == "*" {
                true
            } else if let Some(domain) = p.strip_prefix('.') {
                host == domain || host.ends_with(p.as_str())
            } else {
                host == p
            }
        })
    }

    /// Whether the request's `Host` header is one of these hosts (a request without one is
    /// not): the check that stops DNS-rebinding pages from reaching a server bound to a
    /// private address.
    pub fn allows_request(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| self.allows(h))
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

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
        let p = OriginPolicy::default();
        assert_eq!(
            p.check(&headers(Some("http://127.0.0.1:8000"), "127.0.0.1:8000")),
            Ok(())
        );
        assert_eq!(p.check(&headers(None, "127.0.0.1:8000")), Ok(()));
        for bad in ["http://evil.example", "null", "http://127.0.0.1:8001"] {
            assert_eq!(
                p.check(&headers(Some(bad), "127.0.0.1:8000")),
                Err(OriginRefused::NotAllowed(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_list_of_origins() {
        let p = OriginPolicy::origins(["https://chat.example.com/"]);
        assert_eq!(
            p.check(&headers(Some("https://CHAT.example.com"), "internal:8000")),
            Ok(())
        );
        assert!(
            p.check(&headers(Some("http://127.0.0.1:8000"), "127.0.0.1:8000"))
                .is_err()
        );
        assert_eq!(
            OriginPolicy::origins(Vec::<String>::new()),
            OriginPolicy::same_host()
        );
        assert_eq!(OriginPolicy::origins(["a", "*"]), OriginPolicy::any());
        assert_eq!(
            OriginPolicy::any().check(&headers(Some("http://evil.example"), "x")),
            Ok(())
        );
    }

    #[test]
    fn allowed_hosts_as_django_reads_them() {
        let hosts = AllowedHosts::new(["Example.com", ".clinic.test", "[::1]"]);
        for ok in [
            "example.com",
            "example.com:8000",
            "clinic.test",
            "vet.clinic.test:443",
            "[::1]:8000",
            "example.com.",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "notclinic.test",
            "example.com.evil.com",
            "[::2]",
            "",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        assert!(AllowedHosts::new(["*"]).allows("anything:1"));
        assert!(!AllowedHosts::default().allows("localhost"));
        let p = OriginPolicy::hosts(hosts.clone());
        assert_eq!(
            p.check(&headers(Some("https://vet.clinic.test"), "internal")),
            Ok(())
        );
        assert!(
            p.check(&headers(Some("https://evil.com"), "example.com"))
                .is_err()
        );
        assert!(hosts.allows_request(&headers(None, "example.com:80")));
        assert!(!hosts.allows_request(&HeaderMap::new()));
    }

    #[test]
    fn an_unreadable_origin_is_refused() {
        let mut h = headers(None, "x");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_bytes(b"http://\xff").expect("obs-text is a valid header value"),
        );
        assert_eq!(
            OriginPolicy::any().check(&h),
            Err(OriginRefused::Unreadable)
        );
    }
}
