//! Limits of what a client may send before it is even routed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a GET with a cookie of `size` bytes and returns the response's status line.
async fn status_with_cookie(addr: &str, size: usize) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nCookie: big={}\r\nConnection: close\r\n\r\n",
        "x".repeat(size)
    );
    // The server may answer (and close) before the whole head is written.
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_request_head_over_16_kib_gets_431() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        status_with_cookie(&server.addr, 8 * 1024).await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        status_with_cookie(&server.addr, 20 * 1024).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}
