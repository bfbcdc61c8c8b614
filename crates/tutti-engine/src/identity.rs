//! Argument digests for replay checks, and the deterministic seed of a run's `Math.random`.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A short, stable digest of a JSON value: SHA-256 of its canonical text (object keys sorted), first 16
/// bytes in hex. Two calls with equal arguments have equal digests in every build.
pub fn digest(value: &Value) -> String {
    let text = value.to_string();
    let hash = Sha256::digest(text.as_bytes());
    hash[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Math.random` seed of a run, derived from its id.
pub fn seed(run_id: &str) -> u32 {
    let hash = Sha256::digest(run_id.as_bytes());
    u32::from_le_bytes([hash[0], hash[1], hash[2], hash[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digest_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"a": 2, "b": [1, 2]})));
    }
}
