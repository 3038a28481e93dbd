//! `chat-server doctor` names what is wrong and exits non-zero.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cli;

#[test]
fn a_healthy_setup_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = cli(
        dir.path(),
        &["doctor", "--redis-url", "redis://127.0.0.1:6379"],
        "",
    );
    assert!(ok, "doctor failed on a healthy setup:\n{out}\n{err}");
    assert!(out.contains("ok    database"), "{out}");
    assert!(out.contains("Pub/Sub round trip works"), "{out}");
}

#[test]
fn wrong_urls_are_named_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = cli(
        dir.path(),
        &[
            "doctor",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--database-url",
            "postgres://127.0.0.1:1/nope",
            "--allowed-origins",
            "chat.example.com",
        ],
        "",
    );
    assert!(!ok, "doctor must exit non-zero:\n{out}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"))
            .to_owned()
    };
    assert!(line("FAIL  redis").contains("redis://127.0.0.1:1"), "{out}");
    assert!(
        line("FAIL  database").contains("postgres://127.0.0.1:1/nope"),
        "{out}"
    );
    assert!(
        line("FAIL  allowed origins").contains("chat.example.com"),
        "{out}"
    );
    assert!(
        out.matches("fix:").count() >= 3,
        "every failure says how to fix it:\n{out}"
    );
}
