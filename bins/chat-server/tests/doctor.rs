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

#[test]
fn passwords_in_database_urls_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "postgres://chat:s3cret@127.0.0.1:1/nope",
        "postgres://chat@127.0.0.1:1/nope?sslmode=disable&password=s3cret",
    ] {
        let (_, out, err) = cli(dir.path(), &["doctor", "--database-url", url], "");
        assert!(
            !out.contains("s3cret") && !err.contains("s3cret"),
            "{url}:\n{out}\n{err}"
        );
        assert!(out.contains("***"), "the URL is shown, redacted:\n{out}");
    }
    // clap shows environment values in --help unless told not to.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--help")
        .env("DATABASE_URL", "postgres://chat:s3cret@db/chat")
        .env("REDIS_URL", "redis://:s3cret@cache:6379")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("DATABASE_URL"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}
