//! Attachments against the real binary: a member uploads, the other member of a pair room
//! reads it back byte for byte with headers that keep it inert, nobody else can, and every
//! bad upload gets its status and code and leaves no file behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Client, Server, WAIT, add_user, http_json, login, urlencode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "correct horse battery";

/// A tiny PNG's first bytes (enough for its signature).
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

/// A response with its body as bytes.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn code(&self) -> Value {
        self.json()["error"]["code"].clone()
    }
}

/// One HTTP/1.1 request with a binary body (and `Content-Length`, unless `length` overrides
/// it: a lie, to test the early refusal).
async fn send(
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &[u8],
    length: Option<u64>,
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let length = length.unwrap_or(body.len() as u64);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{cookie}Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // A server that answers early may close before the whole body is written.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// The files in the data directory's `attachments/` (none when it does not exist).
fn stored_files(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("attachments")) else {
        return Vec::new();
    };
    let mut files: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_pair_rooms_members_share_a_file_and_nobody_else_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let ana = add_user(dir.path(), "ana", "Ana", "tutor", PASSWORD);
    let bruno = add_user(dir.path(), "bruno", "Bruno", "vet", PASSWORD);
    add_user(dir.path(), "carla", "Carla", "tutor", PASSWORD);
    let server = Server::start(dir.path(), &[]);
    let addr = &server.addr;
    let (_, ana_cookie) = login(addr, "ana", PASSWORD).await;
    let (_, bruno_cookie) = login(addr, "bruno", PASSWORD).await;
    let (_, carla_cookie) = login(addr, "carla", PASSWORD).await;
    let room = format!("dm_{ana}_{bruno}");

    let path = format!("/api/rooms/{room}/attachments?name=photos%2Frex%20%C3%A0%20tarde.png");
    let up = send(addr, "POST", &path, Some(&ana_cookie), PNG, None).await;
    assert_eq!(up.status, 201, "{:?}", String::from_utf8_lossy(&up.body));
    let info = up.json();
    assert_eq!(info["name"], "rex à tarde.png", "the base name, decoded");
    assert_eq!(info["content_type"], "image/png");
    assert_eq!(info["size"], PNG.len());
    let id = info["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);

    let file = format!("/api/attachments/{id}");
    let got = send(addr, "GET", &file, Some(&bruno_cookie), b"", None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, PNG, "byte for byte");
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    let disposition = got.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("inline; filename*=UTF-8''rex"),
        "{disposition}"
    );
    let csp = got.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );

    // Carla is not in the room: neither reading nor uploading; a visitor must log in.
    let carla = send(addr, "GET", &file, Some(&carla_cookie), b"", None).await;
    assert_eq!((carla.status, carla.code()), (403, "forbidden".into()));
    let anonymous = send(addr, "GET", &file, None, b"", None).await;
    assert_eq!(anonymous.status, 401);
    let intruder = send(addr, "POST", &path, Some(&carla_cookie), PNG, None).await;
    assert_eq!(intruder.status, 403);
    assert_eq!(
        stored_files(dir.path()),
        [format!("{id}.bin"), format!("{id}.json")],
        "only the one upload"
    );
}

#[tokio::test]
async fn bad_uploads_get_their_status_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-attachment-bytes", "1024"]);
    let addr = &server.addr;
    let path = "/api/rooms/lobby/attachments?name=x";

    let too_large = send(addr, "POST", path, None, &[b'a'; 2048], None).await;
    assert_eq!(
        (too_large.status, too_large.code()),
        (413, "too_large".into())
    );
    // Announced too large: refused before the body is read.
    let announced = send(addr, "POST", path, None, b"", Some(1 << 30)).await;
    assert_eq!(
        (announced.status, announced.code()),
        (413, "too_large".into())
    );
    let empty = send(addr, "POST", path, None, b"", None).await;
    assert_eq!((empty.status, empty.code()), (400, "empty_message".into()));
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0";
    let program = send(addr, "POST", path, None, elf, None).await;
    assert_eq!(
        (program.status, program.code()),
        (415, "unsupported_type".into())
    );
    let bad_room = send(
        addr,
        "POST",
        "/api/rooms/a%20b/attachments",
        None,
        PNG,
        None,
    )
    .await;
    assert_eq!(
        (bad_room.status, bad_room.code()),
        (400, "invalid_room".into())
    );
    assert_eq!(stored_files(dir.path()), Vec::<String>::new(), "no orphans");

    for id in [
        "0123456789abcdef0123456789abcdef",
        "..%2F..%2Fsecret_key",
        "nope",
    ] {
        let unknown = send(
            addr,
            "GET",
            &format!("/api/attachments/{id}"),
            None,
            b"",
            None,
        )
        .await;
        assert_eq!(
            (unknown.status, unknown.code()),
            (404, "not_found".into()),
            "{id}"
        );
    }

    // A page is not a note: HTML is refused, even as "text".
    let page = b"<html><script>alert(1)</script></html>";
    let html = send(
        addr,
        "POST",
        "/api/rooms/lobby/attachments?name=x.txt",
        None,
        page,
        None,
    )
    .await;
    assert_eq!((html.status, html.code()), (415, "unsupported_type".into()));

    // A guest in a public room attaches a text note; anything not a picture downloads.
    let text = "bom dia, doutora\n".as_bytes();
    let note = send(
        addr,
        "POST",
        "/api/rooms/lobby/attachments?name=note.txt",
        None,
        text,
        None,
    )
    .await;
    assert_eq!(note.status, 201);
    assert_eq!(note.json()["content_type"], "text/plain");
    let id = note.json()["id"].as_str().unwrap().to_owned();
    let got = send(
        addr,
        "GET",
        &format!("/api/attachments/{id}"),
        None,
        b"",
        None,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(
        got.header("content-disposition"),
        Some("attachment; filename*=UTF-8''note%2Etxt")
    );
}

#[tokio::test]
async fn a_file_sent_in_a_message_reaches_the_other_member_and_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let ana = add_user(dir.path(), "ana", "Ana", "tutor", PASSWORD);
    let bruno = add_user(dir.path(), "bruno", "Bruno", "vet", PASSWORD);
    let server = Server::start(dir.path(), &[]);
    let addr = &server.addr;
    let (ana_session, ana_cookie) = login(addr, "ana", PASSWORD).await;
    let (bruno_session, _) = login(addr, "bruno", PASSWORD).await;
    let room = format!("dm_{ana}_{bruno}");
    let path = format!("/api/rooms/{room}/attachments?name=rex.png");
    let up = send(addr, "POST", &path, Some(&ana_cookie), PNG, None).await;
    assert_eq!(up.status, 201);
    let info = up.json();
    let id = info["id"].as_str().unwrap().to_owned();

    let url = |other: i64, session: &str| {
        server.ws_url(&format!("/ws/dm/{other}/?session={}", urlencode(session)))
    };
    let mut a = Client::connect(&url(bruno, &ana_session)).await;
    let mut b = Client::connect(&url(ana, &bruno_session)).await;
    a.send(json!({"type": "message", "body": "o Rex hoje", "attachment": id, "client_id": "a1"}))
        .await;
    assert_eq!(a.recv_type("ack").await["seq"], 1);
    let got = b.recv_type("message").await;
    assert_eq!(got["attachment"], info, "the upload's answer, as it was");
    assert_eq!(got["body"], "o Rex hoje");

    // Bruno cannot pass Ana's file off as his; over HTTP, Ana sends it again without text.
    b.send(json!({"type": "message", "body": "mine", "attachment": id, "client_id": "b1"}))
        .await;
    assert_eq!(b.recv_type("error").await["code"], "forbidden");
    let (status, _) = http_json(
        addr,
        "POST",
        &format!(
            "/api/rooms/{room}/messages?session={}",
            urlencode(&ana_session)
        ),
        Some(json!({"attachment": id, "client_id": "a2"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, history) = http_json(
        addr,
        "GET",
        &format!(
            "/api/rooms/{room}/messages?session={}",
            urlencode(&ana_session)
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let attached: Vec<&Value> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["attachment"])
        .collect();
    assert_eq!(
        attached,
        [&info, &info],
        "both messages carry it, in the history too"
    );
}
