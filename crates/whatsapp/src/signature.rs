//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw request body under the
//! app secret, checked in constant time before the body is parsed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=` followed by 64 hex digits")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Check a header value against the body.
pub fn verify(app_secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = flowgate_hex::from_hex::<32>(hex).ok_or(SignatureError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(app_secret).expect("HMAC takes keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The header value for a body (for tests, the demo and the load generator).
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(app_secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!(
        "sha256={}",
        flowgate_hex::to_hex(&mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_any_change_is_refused() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign(b"app-secret", body);
        assert_eq!(verify(b"app-secret", body, Some(&header)), Ok(()));
        assert_eq!(
            verify(b"other-secret", body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        let mut tampered = body.to_vec();
        tampered[3] ^= 1;
        assert_eq!(
            verify(b"app-secret", &tampered, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"app-secret", body, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(b"app-secret", body, Some("sha1=abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"app-secret", body, Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_sign_in_the_hex_is_refused() {
        // Found by `fuzz/fuzz_targets/webhook.rs` (artifact
        // crash-23324e5ea4a1fea67495eb52b5648ec367d58fe3): the header's
        // digit `0` at byte 47 replaced by `+` still verified, because the
        // hex decoder took `+c` for `0c`.
        let body = [43, 114, 9, 45, 40];
        let header = sign(b"fuzz-app-secret", &body);
        assert_eq!(&header[47..49], "0c");
        let mut tampered = header.clone().into_bytes();
        tampered[47] = b'+';
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            verify(b"fuzz-app-secret", &body, Some(&tampered)),
            Err(SignatureError::Malformed)
        );
        assert_eq!(verify(b"fuzz-app-secret", &body, Some(&header)), Ok(()));
    }

    #[test]
    fn matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        let header = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            header,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
