//! What a file is, from its first bytes (the `infer` crate's signatures), and whether we
//! accept it.

/// The types an attachment may have: pictures browsers show, PDF, and plain text.
pub const ALLOWED_TYPES: [&str; 6] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
];

/// The type of `data` when it is one of [`ALLOWED_TYPES`]; `None` otherwise. Text is UTF-8
/// without NUL or other control characters than tab and line breaks, and not markup that
/// `infer` recognises (HTML, XML, scripts): those are refused outright, though a text file
/// would be served as `text/plain` with `nosniff` and a sandbox anyway.
pub fn sniff(data: &[u8]) -> Option<&'static str> {
    if let Some(kind) = infer::get(data) {
        let mime = kind.mime_type();
        return ALLOWED_TYPES.iter().copied().find(|t| *t == mime);
    }
    let text = std::str::from_utf8(data).ok()?;
    let plain = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'));
    plain.then_some("text/plain")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0";

    #[test]
    fn the_bytes_decide() {
        assert_eq!(sniff(PNG), Some("image/png"));
        assert_eq!(sniff(JPEG), Some("image/jpeg"));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(sniff("bom dia, doutora\n".as_bytes()), Some("text/plain"));
        // Refused: an executable, a zip, binary junk, text with control characters.
        assert_eq!(sniff(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(sniff(b"PK\x03\x04\x14\0\0\0"), None);
        assert_eq!(sniff(&[0xff, 0xfe, 0x00, 0x01]), None);
        assert_eq!(sniff(b"a\x00b"), None);
        assert_eq!(sniff(b"<html><body>hi</body></html>"), None);
    }
}
