//! The WebSocket library is the patched copy in `vendor/tungstenite` (see `vendor/README.md`):
//! the crates.io release keeps every idle socket's largest burst in its write buffer.

#[test]
fn the_patched_tungstenite_is_built() {
    assert!(
        tokio_tungstenite::tungstenite::patched_for_chat(),
        "tungstenite is not the copy in vendor/: is [patch.crates-io] in place?"
    );
}
