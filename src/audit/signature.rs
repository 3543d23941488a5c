//! Signed attestations: a service that has registered an Ed25519 public key
//! may sign its events, and anyone can check the signature from the log
//! alone.
//!
//! The signed bytes are
//!
//! ```text
//! "modeltrail/event-signature/v1\n" ‖ JCS(event without integrity.signature)
//! ```
//!
//! where JCS is RFC 8785 canonical JSON, and "without integrity.signature"
//! removes that one member (and `integrity` itself if nothing else is left
//! in it). The event must carry its own `event_id`, so the signature covers
//! it. `integrity.signature` is the standard base64 of the 64-byte Ed25519
//! signature. Pure: no I/O.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde_json::Value;

/// The prefix that keeps these signatures from meaning anything elsewhere.
pub const CONTEXT: &[u8] = b"modeltrail/event-signature/v1\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the event is not a JSON object")]
    NotObject,
    #[error("the event has no integrity.signature")]
    Unsigned,
    #[error("a signed event must carry its own event_id")]
    NoEventId,
    #[error("integrity.signature is not base64 of 64 bytes")]
    Malformed,
    #[error("public key is not base64 of 32 bytes of a valid Ed25519 key")]
    BadKey,
    #[error("the signature does not verify with this key")]
    Invalid,
}

/// The bytes a signature covers, and the signature the event carries.
pub fn signed_message(event: &Value) -> Result<(Vec<u8>, Option<String>), SignatureError> {
    let mut v = event.clone();
    let obj = v.as_object_mut().ok_or(SignatureError::NotObject)?;
    if !obj.contains_key("event_id") {
        return Err(SignatureError::NoEventId);
    }
    let mut sig = None;
    let mut drop_integrity = false;
    if let Some(Value::Object(i)) = obj.get_mut("integrity") {
        sig = i
            .remove("signature")
            .and_then(|s| s.as_str().map(str::to_string));
        drop_integrity = i.is_empty();
    }
    if drop_integrity {
        obj.remove("integrity");
    }
    let canonical = super::jcs::to_vec(&v);
    let mut msg = CONTEXT.to_vec();
    msg.extend_from_slice(&canonical);
    Ok((msg, sig))
}

/// Parse a public key given as base64 of its 32 bytes.
pub fn parse_public_key(b64: &str) -> Result<VerifyingKey, SignatureError> {
    let raw: [u8; 32] = B64
        .decode(b64.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(SignatureError::BadKey)?;
    VerifyingKey::from_bytes(&raw).map_err(|_| SignatureError::BadKey)
}

/// Check an event's `integrity.signature` against one public key.
pub fn verify(event: &Value, key: &VerifyingKey) -> Result<(), SignatureError> {
    let (msg, sig) = signed_message(event)?;
    let sig = sig.ok_or(SignatureError::Unsigned)?;
    let raw: [u8; 64] = B64
        .decode(&sig)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(SignatureError::Malformed)?;
    let sig = ed25519_dalek::Signature::from_bytes(&raw);
    key.verify_strict(&msg, &sig)
        .map_err(|_| SignatureError::Invalid)
}

/// Sign an event (which must have its `event_id`): returns it with
/// `integrity.signature` set.
pub fn sign(event: &Value, key: &SigningKey) -> Result<Value, SignatureError> {
    let mut v = event.clone();
    if let Some(Value::Object(i)) = v.get_mut("integrity") {
        i.remove("signature");
    }
    let (msg, _) = signed_message(&v)?;
    let sig = B64.encode(key.sign(&msg).to_bytes());
    let obj = v.as_object_mut().ok_or(SignatureError::NotObject)?;
    let integrity = obj
        .entry("integrity")
        .or_insert_with(|| Value::Object(Default::default()));
    match integrity {
        Value::Object(i) => {
            i.insert("signature".into(), Value::String(sig));
        }
        _ => return Err(SignatureError::NotObject),
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn sign_verify_and_tamper() {
        let ev = json!({
            "event_id": "0190c0de-0000-7000-8000-000000000001",
            "action": "attest",
            "actor": {"type": "service", "id": "ci"},
            "timestamp": "2025-05-05T14:03:00Z",
            "subject": {"type": "model_version", "id": "fraud:v3"},
            "metadata": {"kind": "tests", "passed": true},
            "integrity": {"artifact_sha256": "ab".repeat(32)}
        });
        let signed = sign(&ev, &key(1)).unwrap();
        verify(&signed, &key(1).verifying_key()).unwrap();
        assert_eq!(
            signed["integrity"]["artifact_sha256"],
            ev["integrity"]["artifact_sha256"]
        );
        // Key order and whitespace do not matter: the bytes are canonical.
        let reparsed: Value =
            serde_json::from_str(&serde_json::to_string_pretty(&signed).unwrap()).unwrap();
        verify(&reparsed, &key(1).verifying_key()).unwrap();
        // Another key, or any change of content, fails.
        assert_eq!(
            verify(&signed, &key(2).verifying_key()),
            Err(SignatureError::Invalid)
        );
        let mut t = signed.clone();
        t["metadata"]["passed"] = json!(false);
        assert_eq!(
            verify(&t, &key(1).verifying_key()),
            Err(SignatureError::Invalid)
        );
        let mut t = signed.clone();
        t["event_id"] = json!("0190c0de-0000-7000-8000-000000000002");
        assert_eq!(
            verify(&t, &key(1).verifying_key()),
            Err(SignatureError::Invalid)
        );
        let mut t = signed.clone();
        t["integrity"]["signature"] = json!("AAAA");
        assert_eq!(
            verify(&t, &key(1).verifying_key()),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&ev, &key(1).verifying_key()),
            Err(SignatureError::Unsigned)
        );
        let mut no_id = ev.clone();
        no_id.as_object_mut().unwrap().remove("event_id");
        assert_eq!(sign(&no_id, &key(1)), Err(SignatureError::NoEventId));
    }

    #[test]
    fn the_signed_bytes_are_as_documented() {
        let ev = json!({
            "event_id": "0190c0de-0000-7000-8000-000000000001",
            "action": "attest",
            "actor": {"type": "service", "id": "ci"},
            "timestamp": "2025-05-05T14:03:00Z",
            "subject": {"type": "run", "id": "r1"},
        });
        let signed = sign(&ev, &key(3)).unwrap();
        let (msg, sig) = signed_message(&signed).unwrap();
        let expected = concat!(
            "modeltrail/event-signature/v1\n",
            r#"{"action":"attest","actor":{"id":"ci","type":"service"},"event_id":"0190c0de-0000-7000-8000-000000000001","#,
            r#""subject":{"id":"r1","type":"run"},"timestamp":"2025-05-05T14:03:00Z"}"#
        );
        assert_eq!(String::from_utf8(msg.clone()).unwrap(), expected);
        // Checked with the bare Ed25519 API too.
        let raw: [u8; 64] = B64.decode(sig.unwrap()).unwrap().try_into().unwrap();
        key(3)
            .verifying_key()
            .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&raw))
            .unwrap();
        assert!(parse_public_key("AAAA").is_err());
        assert!(parse_public_key(&B64.encode(key(3).verifying_key().as_bytes())).is_ok());
    }
}
