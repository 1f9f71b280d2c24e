//! A commit group as one log record: every write of the group, in order.
//!
//! `version (1) ‖ op*`, each op `kind code (u8) ‖ flags (u8; 1 = put) ‖
//! tenant (16) ‖ key length (u32 LE) ‖ key ‖ [value length (u32 LE) ‖
//! value]`. Kinds are written by their stable code ([`Kind::code`]), never
//! by their place in a list, so adding a kind cannot change what an old
//! record means. Values arrive sealed; nothing here is plaintext that was
//! not already a key in the store.

use super::{Kind, Op};
use crate::ids::TenantId;

const VERSION: u8 = 1;

/// Encode a group's writes.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let size: usize = ops
        .iter()
        .map(|op| 26 + op.key.len() + op.value.as_ref().map_or(0, |v| 4 + v.len()))
        .sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(VERSION);
    for op in ops {
        out.push(op.kind.code());
        out.push(u8::from(op.value.is_some()));
        out.extend_from_slice(op.tenant.as_bytes());
        out.extend_from_slice(&(op.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&op.key);
        if let Some(value) = &op.value {
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
    }
    out
}

/// Decode a group; `None` when it is damaged or of an unknown version.
pub fn decode(bytes: &[u8]) -> Option<Vec<Op>> {
    let (&version, rest) = bytes.split_first()?;
    if version != VERSION {
        return None;
    }
    let mut cursor = Cursor(rest);
    let mut ops = Vec::new();
    while !cursor.0.is_empty() {
        let header = cursor.take(2)?;
        let kind = Kind::from_code(header[0])?;
        let put = match header[1] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let tenant = TenantId::from_slice(cursor.take(16)?)?;
        let key = cursor.field()?.to_vec();
        let value = if put {
            Some(cursor.field()?.to_vec())
        } else {
            None
        };
        ops.push(Op {
            tenant,
            kind,
            key,
            value,
        });
    }
    Some(ops)
}

/// Reads a record front to back; `None` when it ends too early.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    /// A length (u32 LE) and that many bytes.
    fn field(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_round_trip_and_damage_is_refused() {
        let tenant = TenantId::generate();
        let ops = vec![
            Op {
                tenant,
                kind: Kind::Contacts,
                key: b"c".to_vec(),
                value: Some(b"sealed".to_vec()),
            },
            Op {
                tenant: TenantId::SYSTEM,
                kind: Kind::Inbox,
                key: vec![1, 2, 3],
                value: None,
            },
        ];
        let bytes = encode(&ops);
        assert_eq!(decode(&bytes), Some(ops));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        let mut unknown_kind = bytes.clone();
        unknown_kind[1] = 250;
        assert_eq!(decode(&unknown_kind), None);
        assert_eq!(decode(&[VERSION]), Some(Vec::new()));
        assert_eq!(decode(&[]), None);
    }
}
