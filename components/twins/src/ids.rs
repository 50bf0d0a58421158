//! Identifiers and secrets: UUIDv4s, User Secrets, PINs, and the hashes the
//! store keeps instead of secrets.

use crate::bindings::wasi::random::random;
use base64::Engine;
use sha2::{Digest, Sha256};

/// A random UUID, version 4.
pub fn uuid4() -> String {
    let mut b = random::get_random_bytes(16);
    b.resize(16, 0);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Whether `s` is a UUID in its canonical lower-case text form.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

/// A User Secret: 64 characters of base64 (48 random bytes).
pub fn new_secret() -> String {
    base64::engine::general_purpose::STANDARD.encode(random::get_random_bytes(48))
}

/// A User Secret PIN: six characters of `[A-Z0-9]`, each uniform (M7).
pub fn new_pin() -> String {
    let mut pin = String::with_capacity(6);
    while pin.len() < 6 {
        pin.extend(pin_chars(&random::get_random_bytes(8)).take(6 - pin.len()));
    }
    pin
}

/// PIN characters from random bytes, uniform: a byte of 252 or more (past
/// the last whole multiple of 36) is skipped rather than folded onto the
/// first letters.
fn pin_chars(bytes: &[u8]) -> impl Iterator<Item = char> + '_ {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const LIMIT: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    bytes.iter().filter(|b| **b < LIMIT).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
}

/// The store's name for a secret: its SHA-256 in hex. A secret carries 384
/// random bits, so a fast hash is enough; no secret is ever stored.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `a == b`, in a time that depends on their lengths only (not on
/// where they first differ), for comparing presented secrets (L1).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Fold every byte's difference; no early exit.
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A hashed identity (`HID#…`) for ids that do not fit the identity
/// pattern, as `trustedtwin-utils` builds them (but with SHA-256, base64url).
pub fn hashed_identity(kind: &str, data: &str) -> String {
    let digest = Sha256::digest(format!("{kind}:{data}").as_bytes());
    format!("HID#{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..21]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn pin_characters_are_uniform() {
        // every byte value below 252 maps to one character, each character
        // from exactly 7 of them; 252..=255 are skipped
        let all: Vec<u8> = (0..=255).collect();
        let chars: Vec<char> = pin_chars(&all).collect();
        assert_eq!(chars.len(), 252);
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".chars() {
            assert_eq!(chars.iter().filter(|x| **x == c).count(), 7, "{c}");
        }
    }

    #[test]
    fn secret_hash_is_sha256_hex() {
        assert_eq!(secret_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
