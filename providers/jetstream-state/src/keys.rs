//! Component keys as JetStream KV keys.
//!
//! A KV key is the last part of a NATS subject: JetStream accepts only
//! `[-/_=.a-zA-Z0-9]`, no leading or trailing `.`, and a `.` separates
//! subject tokens. The project's keys hold `:`, `#`, spaces, `.` and any
//! unicode, so every byte outside `[A-Za-z0-9_/-]` is written as `=HH`
//! (uppercase hex of the UTF-8 byte). `.` and `=` are escaped as well, so
//! an encoded key is always one subject token and decoding is unambiguous.
//! The empty key, which JetStream cannot store, is written as a lone `=`
//! (no escape is a lone `=`).

/// Why a stored key could not be turned back into a component key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyDecodeError {
    /// `=` not followed by two hex digits.
    #[error("malformed escape at byte {at} of {encoded:?}")]
    BadEscape { encoded: String, at: usize },
    /// The decoded bytes are not UTF-8.
    #[error("{encoded:?} does not decode to UTF-8")]
    NotUtf8 { encoded: String },
}

const EMPTY_KEY: &str = "=";

fn passes_through(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/' | b'-')
}

/// The JetStream KV key for a component key.
pub fn encode(key: &str) -> String {
    if key.is_empty() {
        return EMPTY_KEY.to_string();
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        if passes_through(b) {
            out.push(char::from(b));
        } else {
            out.push('=');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// The component key for a JetStream KV key written by [`encode`].
///
/// Bytes other than escapes are taken as they are, so keys written by other
/// NATS clients (with a raw `.`, say) still list.
pub fn decode(encoded: &str) -> Result<String, KeyDecodeError> {
    if encoded == EMPTY_KEY {
        return Ok(String::new());
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                _ => return Err(KeyDecodeError::BadEscape { encoded: encoded.to_string(), at: i }),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| KeyDecodeError::NotUtf8 { encoded: encoded.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What JetStream accepts as a KV key (async-nats checks the same).
    fn valid_jetstream_key(k: &str) -> bool {
        !k.is_empty()
            && !k.starts_with('.')
            && !k.ends_with('.')
            && !k.contains("..")
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'=' | b'.'))
    }

    #[test]
    fn odd_keys_round_trip_and_encode_to_valid_keys() {
        let keys = [
            "",
            "plain",
            "with/slash_and-dash",
            "a.b",
            ".leading",
            "trailing.",
            "a..b",
            "=",
            "==",
            "=41",
            "a=b",
            "with space",
            "frag#ment",
            "urn:example:aas:1",
            "https://example.com/ids/sm/1#x?y=z&w",
            "ünïcödé",
            "日本語キー",
            "emoji 🦀",
            "*>$\t\n\"'\\%",
        ];
        for key in keys {
            let encoded = encode(key);
            assert!(valid_jetstream_key(&encoded), "{key:?} encoded to invalid {encoded:?}");
            assert!(!encoded.contains('.'), "{encoded:?} would span subject tokens");
            assert_eq!(decode(&encoded).as_deref(), Ok(key), "round trip of {key:?} via {encoded:?}");
        }
    }

    #[test]
    fn encoding_is_stable_and_injective_on_neighbours() {
        assert_eq!(encode("a.b"), "a=2Eb");
        assert_eq!(encode("a=b"), "a=3Db");
        assert_eq!(encode("ü"), "=C3=BC");
        assert_eq!(encode("x/y_z-1"), "x/y_z-1");
        // A key that looks like an escape is itself escaped.
        assert_ne!(encode("=2E"), encode("."));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(matches!(decode("a=4"), Err(KeyDecodeError::BadEscape { at: 1, .. })));
        assert!(matches!(decode("=ZZ"), Err(KeyDecodeError::BadEscape { .. })));
        assert!(matches!(decode("=FF"), Err(KeyDecodeError::NotUtf8 { .. })));
        // Foreign keys without escapes list as they are.
        assert_eq!(decode("a.b").as_deref(), Ok("a.b"));
    }
}
