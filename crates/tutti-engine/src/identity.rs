//! Argument digests for replay checks, the deterministic seed of a run's `Math.random`, message addresses,
//! and the rule for group and member names.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A short, stable digest of a JSON value: SHA-256 of its canonical text (object keys sorted), first 16
/// bytes in hex. Two calls with equal arguments have equal digests in every build.
pub fn digest(value: &Value) -> String {
    let text = value.to_string();
    let hash = Sha256::digest(text.as_bytes());
    hex(&hash[..16])
}

/// The token that lets the agent of one attempt send messages as that effect (`tutti msg send`).
pub fn message_token(secret: &str, run_id: &str, effect: &str, attempt: u32) -> String {
    let hash = Sha256::digest(format!("{secret}\0{run_id}\0{effect}\0{attempt}").as_bytes());
    hex(&hash[..16])
}

/// Lowercase hex of `bytes` (every request is digested: no formatting machinery per byte).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// What a group or member name may be, as the process host words it.
pub const NAME_RULE: &str = "letters, digits, '.', '_' and '-' (1-64 characters, not starting with '.')";

/// Whether `name` may name a group or a member (see [`NAME_RULE`]). Names become scopes
/// (`group:NAME/MEMBER/...`) and message addresses: a '/' would forge another member's identity, a control
/// character would reach logs and terminals.
pub fn is_safe_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The `Math.random` seed of a run, derived from its id.
pub fn seed(run_id: &str) -> u32 {
    let hash = Sha256::digest(run_id.as_bytes());
    u32::from_le_bytes([hash[0], hash[1], hash[2], hash[3]])
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(super::hex(&[]), "");
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn safe_names_are_short_plain_and_slash_free() {
        for ok in ["a", "reviewers", "m1", "team-2.v_3", "x.", &"a".repeat(64)] {
            assert!(is_safe_name(ok), "{ok:?}");
        }
        for bad in ["", ".hidden", "..", "a/b", "/etc/x", "a b", "a\nb", "a\u{1b}[2J", "é", &"a".repeat(65)] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn tokens_differ_per_attempt() {
        let a = message_token("s", "r", "root/0", 1);
        assert_ne!(a, message_token("s", "r", "root/0", 2));
        assert_ne!(a, message_token("t", "r", "root/0", 1));
        assert_eq!(a, message_token("s", "r", "root/0", 1));
    }

    #[test]
    fn digest_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"a": 2, "b": [1, 2]})));
    }
}
