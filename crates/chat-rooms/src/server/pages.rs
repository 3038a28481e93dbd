//! The embedded web client: static files compiled into the binary (no Node at runtime).

use chat_core::RoomName;
use http::{HeaderValue, StatusCode, header};

use crate::server::respond::{Resp, with_body};

const INDEX_HTML: &str = include_str!("../../web/index.html");
const ROOM_HTML: &str = include_str!("../../web/room.html");
const LOGIN_HTML: &str = include_str!("../../web/login.html");
const STYLE_CSS: &str = include_str!("../../web/style.css");

/// The client's ES modules (no build step: the browser loads each by name); `app.js` is the
/// entry point every page loads.
const MODULES: &[(&str, &str)] = &[
    ("app.js", include_str!("../../web/app.js")),
    ("common.js", include_str!("../../web/common.js")),
    ("contacts.js", include_str!("../../web/contacts.js")),
    ("inbox.js", include_str!("../../web/inbox.js")),
    ("index.js", include_str!("../../web/index.js")),
    ("login.js", include_str!("../../web/login.js")),
    ("messages.js", include_str!("../../web/messages.js")),
    ("poll.js", include_str!("../../web/poll.js")),
    ("room.js", include_str!("../../web/room.js")),
    ("sidebar.js", include_str!("../../web/sidebar.js")),
    ("sound.js", include_str!("../../web/sound.js")),
];

/// Pages may load scripts and styles from this server only and connect to its WebSockets.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                   style-src 'self'; script-src 'self'; frame-ancestors 'none'";

fn page(status: StatusCode, html: impl Into<bytes::Bytes>) -> Resp {
    let mut res = with_body(status, "text/html; charset=utf-8", html);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// `GET /`: choose a room.
pub fn index() -> Resp {
    page(StatusCode::OK, INDEX_HTML)
}

/// `GET /chat/{room}/`: the room page, or a 400 page that says what is wrong with the name.
pub fn room(raw: &str) -> Resp {
    match RoomName::parse(raw) {
        Ok(room) if room.pair().is_none() => page(StatusCode::OK, ROOM_HTML),
        Ok(_) => error_page(
            StatusCode::FORBIDDEN,
            "Private rooms are opened from your contact list once you are logged in.",
        ),
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `GET /login`.
pub fn login() -> Resp {
    page(StatusCode::OK, LOGIN_HTML)
}

/// `GET /dm/{user_id}/`: the pair chat page (the room page, which reads the path).
pub fn pair_room() -> Resp {
    page(StatusCode::OK, ROOM_HTML)
}

/// A small HTML page with a message (escaped) and a way back to the index.
pub fn error_page(status: StatusCode, message: &str) -> Resp {
    error_page_with_link(status, message, "/", "Choose another room")
}

/// A small HTML page with a message (escaped) and a link.
pub fn error_page_with_link(status: StatusCode, message: &str, href: &str, label: &str) -> Resp {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{code}</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
         <body><main class=\"error-page\"><h1>{code}</h1><p data-testid=\"error-message\">{msg}</p>\
         <p><a href=\"{href}\">{label}</a></p></main></body></html>",
        code = status.as_u16(),
        msg = escape_html(message),
        href = escape_html(href),
        label = escape_html(label),
    );
    page(status, html)
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /static/{file}`.
pub fn asset(name: &str) -> Option<Resp> {
    let (body, content_type) = match name {
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => {
            let (_, js) = MODULES.iter().find(|(file, _)| *file == name)?;
            (*js, "text/javascript; charset=utf-8")
        }
    };
    let mut res = with_body(StatusCode::OK, content_type, body);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_escape() {
        assert_eq!(
            escape_html("<b a=\"x\">&'"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn every_module_a_module_imports_is_served() {
        for (file, js) in MODULES {
            for line in js.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .split("from \"./")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_else(|| panic!("{file}: an import not from ./: {line}"));
                assert!(
                    asset(target).is_some(),
                    "{file} imports {target}, which is not served"
                );
            }
        }
        assert!(asset("nope.js").is_none());
    }

    #[test]
    fn room_page_status() {
        assert_eq!(room("lobby").status(), StatusCode::OK);
        assert_eq!(room("bad name").status(), StatusCode::BAD_REQUEST);
        assert_eq!(room("dm_1_2").status(), StatusCode::FORBIDDEN);
    }
}
