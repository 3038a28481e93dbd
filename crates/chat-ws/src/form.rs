//! Query strings and form bodies, decoded the way browsers encode them.

/// Decodes `application/x-www-form-urlencoded` text (`a=1&b=x%20y`), in order, repeated keys
/// included.
///
/// The `form_urlencoded` crate does the work (the WHATWG rules that browsers encode by):
/// `+` is a space, `%XX` is a byte, and a `%` not followed by two hex digits stays as it is.
/// Bytes that are not UTF-8 once decoded become U+FFFD: a query or a form is client input,
/// and a bad one is read as what it says rather than refused or allowed to fail.
pub fn form_decode(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(
            form_decode("name=ana+maria&since=42&x=%3Cb%3E&bad=%zz&flag"),
            vec![
                ("name".into(), "ana maria".into()),
                ("since".into(), "42".into()),
                ("x".into(), "<b>".into()),
                ("bad".into(), "%zz".into()),
                ("flag".into(), String::new()),
            ]
        );
        assert_eq!(form_decode("a=%4"), vec![("a".into(), "%4".into())]);
        assert_eq!(form_decode("a=%C3%A7"), vec![("a".into(), "ç".into())]);
        // Two hex digits exactly: `%+F` is a `%`, a space and an `F` (the hand-written
        // decoder this replaced read it as 0x0F, since `u8::from_str_radix` takes a sign).
        assert_eq!(form_decode("a=%+F"), vec![("a".into(), "% F".into())]);
        assert_eq!(
            form_decode("a=%FF&b"),
            vec![("a".into(), "\u{FFFD}".into()), ("b".into(), String::new())]
        );
        assert_eq!(form_decode("&&a=1&&"), vec![("a".into(), "1".into())]);
    }

    mod props {
        use proptest::prelude::*;

        use super::super::form_decode;

        fn encode(pairs: &[(String, String)]) -> String {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        }

        proptest! {
            /// Any text decodes, into at most one pair per `&`-separated part.
            #[test]
            fn any_text_decodes(s in any::<String>()) {
                let pairs = form_decode(&s);
                prop_assert!(pairs.len() <= s.split('&').count());
            }

            /// Text made of the form alphabet, escapes and broken escapes included.
            #[test]
            fn escapes_and_broken_escapes_decode(s in "([a-z=&+%]|%[0-9a-fA-F]{0,2}|%[g-z+-]{2})*") {
                let _ = form_decode(&s);
            }

            /// What a browser's form encoder writes decodes to the same pairs, in order.
            #[test]
            fn encoded_pairs_round_trip(pairs in prop::collection::vec((any::<String>(), any::<String>()), 0..8)) {
                prop_assert_eq!(form_decode(&encode(&pairs)), pairs);
            }

            /// Text with nothing to decode is read as it is.
            #[test]
            fn plain_text_is_kept(k in "[a-zA-Z0-9._~-]{1,12}", v in "[a-zA-Z0-9._~ç-]{0,12}") {
                prop_assert_eq!(form_decode(&format!("{k}={v}")), vec![(k, v)]);
            }
        }
    }
}
