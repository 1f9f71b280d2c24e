//! The WhatsApp webhook: the body parser and the `X-Hub-Signature-256` check.
//!
//! The whole input is the request body, so the committed corpus is plain
//! webhook JSON that libFuzzer mutates directly. What the check needs beyond
//! the body (which byte to change, which header byte to replace) is derived
//! from a hash of the body: deterministic, so every crash replays.
//!
//! Properties:
//! - `payload::parse` never panics; what it accepts has an identified sender
//!   for every message and survives the JSON round trip the inbox stores it
//!   through;
//! - `signature::verify` never panics, whatever the header;
//! - the correct signature verifies, and any single-byte change to the body,
//!   a truncated or extended body, another secret, or any single-byte change
//!   to the header (other than the case of a hex letter) is refused.

#![no_main]

use std::hash::{DefaultHasher, Hash, Hasher};

use flowgate::channel::whatsapp::payload::{self, DeliveryItem};
use flowgate::channel::whatsapp::signature::{self, SignatureError};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-app-secret";

fuzz_target!(|body: &[u8]| {
    check_parse(body);
    check_signature(body);
});

fn check_parse(body: &[u8]) {
    let Ok(delivery) = payload::parse(body) else {
        return;
    };
    for item in &delivery.items {
        if let DeliveryItem::Message(message) = item {
            assert!(
                message.from.is_identified(),
                "an accepted message must name its sender: {message:?}"
            );
        }
        // Accepted items are sealed into the inbox as JSON and read back by a
        // worker; one that does not survive that would be stuck there.
        let json = serde_json::to_vec(item).expect("delivery items serialize");
        let back: DeliveryItem = serde_json::from_slice(&json).expect("delivery items deserialize");
        assert_eq!(&back, item, "inbox JSON round trip");
    }
}

fn check_signature(body: &[u8]) {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    let seed = hasher.finish();

    // Arbitrary header text: the body itself, and its first line, as a
    // header value (header values reach `verify` as `&str`).
    let text = String::from_utf8_lossy(body);
    let _ = signature::verify(SECRET, body, Some(&text));
    let first_line = text.lines().next().unwrap_or_default();
    let _ = signature::verify(SECRET, body, Some(first_line));
    assert_eq!(
        signature::verify(SECRET, body, None),
        Err(SignatureError::Missing)
    );

    let header = signature::sign(SECRET, body);
    assert_eq!(
        signature::verify(SECRET, body, Some(&header)),
        Ok(()),
        "the correct signature must verify"
    );
    assert_eq!(
        signature::verify(b"another-secret", body, Some(&header)),
        Err(SignatureError::Mismatch)
    );

    if !body.is_empty() {
        let position = (seed as usize) % body.len();
        let flip = ((seed >> 32) as u8).max(1);
        let mut changed = body.to_vec();
        changed[position] ^= flip;
        assert_eq!(
            signature::verify(SECRET, &changed, Some(&header)),
            Err(SignatureError::Mismatch),
            "body byte {position} changed (xor {flip:#04x}) but the signature still verifies"
        );
        assert_eq!(
            signature::verify(SECRET, &body[..body.len() - 1], Some(&header)),
            Err(SignatureError::Mismatch),
            "a truncated body still verifies"
        );
    }
    let mut extended = body.to_vec();
    extended.push(seed as u8);
    assert_eq!(
        signature::verify(SECRET, &extended, Some(&header)),
        Err(SignatureError::Mismatch),
        "an extended body still verifies"
    );

    // Replace header bytes with bytes taken from the body: the replacement
    // is then under the fuzzer's control.
    let mut tampered = header.clone().into_bytes();
    for round in 0..4u64 {
        let position = (seed.rotate_left(16 * round as u32) as usize) % tampered.len();
        let replacement = if body.is_empty() {
            b'+'
        } else {
            body[(seed >> 8).wrapping_add(round) as usize % body.len()]
        };
        let original = header.as_bytes()[position];
        tampered[position] = replacement;
        if let Ok(tampered_text) = std::str::from_utf8(&tampered) {
            let same_digit = original.is_ascii_hexdigit()
                && position >= "sha256=".len()
                && original.eq_ignore_ascii_case(&replacement);
            if replacement != original && !same_digit {
                assert_ne!(
                    signature::verify(SECRET, body, Some(tampered_text)),
                    Ok(()),
                    "header byte {position} {:?} replaced by {:?} still verifies: {tampered_text:?}",
                    original as char,
                    replacement as char
                );
            }
        }
        tampered[position] = original;
    }
}
