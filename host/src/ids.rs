//! Identifiers of tenants, contacts and installations: 16 random bytes,
//! written as a short prefix and 32 hex digits (`tnt_0f3a…`). Random, so an
//! id reveals nothing and cannot be guessed from another.
//!
//! An id has one spelling: the one it is written in, lower-case digits,
//! nothing around it. Text in upper case or with surrounding whitespace is
//! not an id (a path naming one answers 404, as for any id that names
//! nothing). It once was, and each spelling of a real channel's id had a
//! webhook rate limit of its own: 2^32 case variants alone. One spelling
//! makes an id one key in every map keyed by it, wherever it came from.

use std::fmt;
use std::str::FromStr;

use flowgate_hex::{from_lower_hex, to_hex};

/// Why text is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a {kind} id (`{prefix}_` followed by 32 lower-case hex digits)")]
pub struct BadId {
    pub text: String,
    pub kind: &'static str,
    pub prefix: &'static str,
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// The text prefix of this kind of id.
            pub const PREFIX: &'static str = $prefix;

            /// A new random id, from the same generator as
            /// `crypto::random_bytes` (the thread's ChaCha generator, seeded
            /// from the operating system): ids sit below `crypto`, which
            /// keys its ring by them.
            pub fn generate() -> Self {
                Self(rand::random())
            }

            /// The id's 16 bytes (how it is stored in keys).
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            /// The id from its 16 stored bytes.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }

            /// The id from a stored key slice, if it is 16 bytes long.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, to_hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = BadId;
            fn from_str(text: &str) -> Result<Self, BadId> {
                text.strip_prefix(concat!($prefix, "_"))
                    .and_then(from_lower_hex::<16>)
                    .map(Self)
                    .ok_or_else(|| BadId {
                        text: text.chars().take(80).collect(),
                        kind: $kind,
                        prefix: $prefix,
                    })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

define_id!(
    /// A tenant: one business using the service.
    TenantId, "tnt", "tenant"
);
define_id!(
    /// A contact of one tenant.
    ContactId, "ctc", "contact"
);
define_id!(
    /// A plugin installation of one tenant.
    InstallationId, "ins", "installation"
);

define_id!(
    /// A WhatsApp channel (business phone number) of one tenant.
    ChannelId, "chn", "channel"
);
define_id!(
    /// A tenant API key (its public half).
    ApiKeyId, "key", "API key"
);
define_id!(
    /// A data-subject request.
    RequestId, "dsr", "data-subject request"
);

impl TenantId {
    /// The operator's own records (the tenant list, the plugin registry):
    /// a reserved id no tenant is ever given.
    pub const SYSTEM: TenantId = TenantId([0; 16]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_other_kinds() {
        let id = ContactId::generate();
        let text = id.to_string();
        assert!(text.starts_with("ctc_") && text.len() == 36);
        assert_eq!(text.parse::<ContactId>().unwrap(), id);
        assert!(text.parse::<TenantId>().is_err());
        assert!("ctc_zz".parse::<ContactId>().is_err());
        // A sign is not a hex digit (`+f` once read as `0f`).
        let signed = ContactId::from_bytes([0x0f; 16])
            .to_string()
            .replacen("_0", "_+", 1);
        assert!(signed.parse::<ContactId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ContactId>(&json).unwrap(), id);
    }

    #[test]
    fn an_id_has_one_spelling() {
        let id = ChannelId::from_bytes([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text.parse::<ChannelId>().unwrap(), id);
        for other in [
            text.to_uppercase(),
            text.replacen("ab", "AB", 1),
            format!(" {text}"),
            format!("{text}\n"),
            format!("{text} "),
        ] {
            assert!(other.parse::<ChannelId>().is_err(), "{other:?}");
        }
        let json = serde_json::to_string(&text.replacen("ab", "Ab", 1)).unwrap();
        assert!(serde_json::from_str::<ChannelId>(&json).is_err());
    }
}
