//! Chunks: many small records that grow in key order (audit entries by
//! sequence, a contact's messages, retention-index entries by time) kept as
//! one sled value per run of keys.
//!
//! sled pays per insert (a node update in its page cache, a log write), so
//! writing a checkpoint's ten thousand audit entries one key each cost far
//! more than writing the same bytes as a few hundred values. A chunk's
//! sled key is its first record's key; it holds the records up to the next
//! chunk's first key, sorted. Records are kept as written (already sealed
//! by the data layer): chunking is below encryption and needs no keys.

use std::ops::Bound;

/// A chunk grows past this only by a single record larger than it.
pub const CHUNK_BYTES: usize = 8 << 10;

/// New records extend the last chunk of a run while it is smaller than
/// this; otherwise they start a new chunk (so a growing run rewrites each
/// chunk only a few times).
pub const EXTEND_BELOW: usize = CHUNK_BYTES / 2;

/// Records of one chunk: (key, value), sorted by key, keys unique.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Encode records: per record, key length (u16 LE), key, value length
/// (u32 LE), value.
pub fn encode(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let size = records.iter().map(|(k, v)| 6 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (key, value) in records {
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// Decode a chunk; `None` when it is damaged.
pub fn decode(mut bytes: &[u8]) -> Option<Records> {
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let key_len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
        let key = bytes.get(2..2 + key_len)?.to_vec();
        bytes = &bytes[2 + key_len..];
        let value_len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let value = bytes.get(4..4 + value_len)?.to_vec();
        bytes = &bytes[4 + value_len..];
        records.push((key, value));
    }
    Some(records)
}

/// Encoded size of records.
pub fn size(records: &[(Vec<u8>, Vec<u8>)]) -> usize {
    records.iter().map(|(k, v)| 6 + k.len() + v.len()).sum()
}

/// Apply sorted changes (`None` deletes) to a chunk's sorted records.
pub fn merge(records: Records, changes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Records {
    let mut out = Vec::with_capacity(records.len() + changes.len());
    let mut old = records.into_iter().peekable();
    let mut new = changes.iter().peekable();
    loop {
        match (old.peek(), new.peek()) {
            (None, None) => return out,
            (Some(_), None) => out.push(old.next().expect("peeked")),
            (None, Some(_)) => {
                let (key, value) = new.next().expect("peeked");
                if let Some(value) = value {
                    out.push((key.clone(), value.clone()));
                }
            }
            (Some((old_key, _)), Some((new_key, _))) => {
                if old_key < new_key {
                    out.push(old.next().expect("peeked"));
                } else {
                    if old_key == new_key {
                        old.next();
                    }
                    let (key, value) = new.next().expect("peeked");
                    if let Some(value) = value {
                        out.push((key.clone(), value.clone()));
                    }
                }
            }
        }
    }
}

/// Cut sorted records into chunks of at most [`CHUNK_BYTES`] (a record
/// larger than that is a chunk of its own).
pub fn split(records: Records) -> Vec<Records> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for record in records {
        let record_bytes = 6 + record.0.len() + record.1.len();
        if !current.is_empty() && bytes + record_bytes > CHUNK_BYTES {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += record_bytes;
        current.push(record);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Whether `key` is within `(start, end)` bounds.
pub fn within(key: &[u8], start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    let after_start = match start {
        Bound::Included(s) => key >= s,
        Bound::Excluded(s) => key > s,
        Bound::Unbounded => true,
    };
    let before_end = match end {
        Bound::Included(e) => key <= e,
        Bound::Excluded(e) => key < e,
        Bound::Unbounded => true,
    };
    after_start && before_end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(keys: &[u8]) -> Records {
        keys.iter().map(|k| (vec![*k], vec![*k; 3])).collect()
    }

    #[test]
    fn chunks_round_trip_and_refuse_damage() {
        let records = records(&[1, 2, 3]);
        let bytes = encode(&records);
        assert_eq!(bytes.len(), size(&records));
        assert_eq!(decode(&bytes), Some(records));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(&[]), Some(Vec::new()));
    }

    #[test]
    fn changes_merge_in_order_replacing_and_deleting() {
        let merged = merge(
            records(&[1, 3, 5]),
            &[
                (vec![0], Some(vec![9])),
                (vec![3], None),
                (vec![5], Some(vec![7])),
                (vec![6], Some(vec![6])),
                (vec![8], None),
            ],
        );
        assert_eq!(
            merged,
            vec![
                (vec![0], vec![9]),
                (vec![1], vec![1; 3]),
                (vec![5], vec![7]),
                (vec![6], vec![6]),
            ]
        );
    }

    #[test]
    fn splits_keep_order_and_size() {
        let big: Records = (0u16..2000)
            .map(|i| (i.to_be_bytes().to_vec(), vec![0; 20]))
            .collect();
        let chunks = split(big.clone());
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| size(c) <= CHUNK_BYTES));
        assert_eq!(chunks.concat(), big);
        let huge = vec![(vec![1], vec![0; CHUNK_BYTES * 2])];
        assert_eq!(split(huge.clone()), vec![huge]);
    }
}
