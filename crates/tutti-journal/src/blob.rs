//! Content addressing shared by every backend: the inline limit, blob hashes, and the encoding of an event
//! body with its large payloads moved out of line. It stores nothing itself; backends pass a `put` callback.

use sha2::{Digest, Sha256};

use crate::event::{Event, Payload};
use crate::store::{Error, Result};

/// Inline payloads whose JSON is longer than this many bytes are moved to the blob store.
pub const INLINE_LIMIT: usize = 4096;

/// The key of a blob: the SHA-256 of its bytes, in lowercase hex.
pub fn blob_hash(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The JSON body to store for `event`. Payloads over [`INLINE_LIMIT`] are handed to `put(hash, bytes)` and
/// replaced by [`Payload::Blob`] references; small events are serialized once and never cloned.
pub fn encode_event(event: &Event, put: &mut dyn FnMut(&str, &[u8]) -> Result<()>) -> Result<String> {
    let body = serde_json::to_string(event).map_err(Error::Encode)?;
    // No payload can exceed the limit when the whole body does not: the common case stops here.
    if body.len() <= INLINE_LIMIT {
        return Ok(body);
    }
    let mut event = event.clone();
    if !externalize(&mut event, put)? {
        return Ok(body);
    }
    serde_json::to_string(&event).map_err(Error::Encode)
}

/// Moves the large inline payloads of `event` out of line; true if any moved.
fn externalize(event: &mut Event, put: &mut dyn FnMut(&str, &[u8]) -> Result<()>) -> Result<bool> {
    let mut moved = false;
    for payload in event.payloads_mut() {
        let Payload::Inline(value) = payload else { continue };
        let bytes = serde_json::to_vec(value).map_err(Error::Encode)?;
        if bytes.len() <= INLINE_LIMIT {
            continue;
        }
        let hash = blob_hash(&bytes);
        put(&hash, &bytes)?;
        *payload = Payload::Blob { hash, size: bytes.len() as u64 };
        moved = true;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn small_events_are_left_inline() {
        let event = Event::RunCompleted { output: Payload::Inline(json!({"ok": true})) };
        let mut put = |_: &str, _: &[u8]| -> Result<()> { panic!("nothing should be put") };
        let body = encode_event(&event, &mut put).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&body).unwrap(), event);
    }

    #[test]
    fn large_payloads_become_blob_references() {
        let big = json!("x".repeat(INLINE_LIMIT));
        let event = Event::RunCompleted { output: Payload::Inline(big.clone()) };
        let mut stored = Vec::new();
        let mut put = |hash: &str, bytes: &[u8]| {
            stored.push((hash.to_owned(), bytes.to_vec()));
            Ok(())
        };
        let body = encode_event(&event, &mut put).unwrap();
        let Event::RunCompleted { output: Payload::Blob { hash, size } } = serde_json::from_str(&body).unwrap() else {
            panic!("output should be a blob: {body}");
        };
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].0, hash);
        assert_eq!(size, stored[0].1.len() as u64);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&stored[0].1).unwrap(), big);
    }

    #[test]
    fn a_long_log_message_is_not_a_payload() {
        let event = Event::Log { scope: "root".into(), message: "y".repeat(2 * INLINE_LIMIT) };
        let mut put = |_: &str, _: &[u8]| -> Result<()> { panic!("logs have no payload") };
        let body = encode_event(&event, &mut put).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&body).unwrap(), event);
    }
}
