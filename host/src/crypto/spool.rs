//! A sealed spool: room on disk for an answer too large to hold in memory
//! that carries personal data — a tenant's whole export — without that data
//! ever reaching the disk in plaintext.
//!
//! The tenant export used to go to a plain temporary file: unlinked at
//! once, but its blocks (or a swapped-out page cache, or a snapshot of the
//! volume taken meanwhile) held every contact's number and name in clear,
//! outside the sealed records, past any erasure. Here the file holds
//! chunks sealed with AES-SIV under a random key that lives only in this
//! value's memory: once the spool is dropped the key is wiped, and what is
//! left on the disk is crypto-shredded, as an erased contact's records are.
//!
//! Each chunk's associated data names its position and whether it is the
//! last, so chunks cannot be reordered, dropped or cut off unnoticed: a
//! spool reads back exactly as written, or fails.
//!
//! ```
//! use std::io::Write;
//! let mut spool = flowgate::crypto::spool::SealedSpool::create().unwrap();
//! spool.write_all(b"{\"type\":\"contact\"}\n").unwrap();
//! let chunks: Vec<Vec<u8>> = spool.finish().unwrap().collect::<Result<_, _>>().unwrap();
//! assert_eq!(chunks.concat(), b"{\"type\":\"contact\"}\n");
//! ```

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use super::SecretKey;

/// Plaintext bytes per sealed chunk: large enough that sealing's overhead
/// (32 bytes a chunk) is negligible, small enough to stream.
pub const CHUNK: usize = 64 * 1024;

/// A chunk's associated data: its position and whether it ends the spool.
fn context(index: u64, last: bool) -> [u8; 9] {
    let mut context = [0u8; 9];
    context[..8].copy_from_slice(&index.to_be_bytes());
    context[8] = u8::from(last);
    context
}

/// The writing end: a `Write` that seals every [`CHUNK`] bytes.
pub struct SealedSpool {
    file: BufWriter<File>,
    key: SecretKey,
    pending: Vec<u8>,
    written: u64,
}

impl SealedSpool {
    /// A spool in an unnamed temporary file (unlinked from the start), under
    /// a fresh key.
    pub fn create() -> io::Result<SealedSpool> {
        Ok(SealedSpool {
            file: BufWriter::new(tempfile::tempfile()?),
            key: SecretKey::generate(),
            pending: Vec::with_capacity(CHUNK),
            written: 0,
        })
    }

    /// Frame: `last` (1 byte, also in the associated data), the sealed
    /// length (4 bytes, big endian), the sealed chunk.
    fn seal_pending(&mut self, last: bool) -> io::Result<()> {
        let sealed = self.key.seal(&context(self.written, last), &self.pending);
        self.pending.clear();
        let length = u32::try_from(sealed.len()).expect("a chunk is far below 4 GiB");
        self.file.write_all(&[u8::from(last)])?;
        self.file.write_all(&length.to_be_bytes())?;
        self.file.write_all(&sealed)?;
        self.written += 1;
        Ok(())
    }

    /// Seal what is pending as the last chunk and read the spool back from
    /// its start.
    pub fn finish(mut self) -> io::Result<SpoolChunks> {
        self.seal_pending(true)?;
        let SealedSpool { file, key, .. } = self;
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        Ok(SpoolChunks {
            file: BufReader::new(file),
            key,
            next: 0,
            done: false,
        })
    }
}

impl Write for SealedSpool {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let taken = bytes.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&bytes[..taken]);
        if self.pending.len() == CHUNK {
            self.seal_pending(false)?;
        }
        Ok(taken)
    }

    /// Pending bytes wait for a full chunk or [`SealedSpool::finish`]:
    /// sealing them now would make a short chunk, not a durable one.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading end: the plaintext chunks in order, each checked.
pub struct SpoolChunks {
    file: BufReader<File>,
    key: SecretKey,
    next: u64,
    done: bool,
}

impl SpoolChunks {
    fn read_chunk(&mut self) -> io::Result<Vec<u8>> {
        let mut header = [0u8; 5];
        self.file.read_exact(&mut header)?;
        let last = match header[0] {
            0 => false,
            1 => true,
            _ => return Err(damaged()),
        };
        let length = u32::from_be_bytes(header[1..].try_into().expect("4 bytes")) as usize;
        if length > CHUNK + super::SEAL_OVERHEAD {
            return Err(damaged());
        }
        let mut sealed = vec![0u8; length];
        self.file.read_exact(&mut sealed)?;
        let plain = self
            .key
            .open(&context(self.next, last), &sealed)
            .map_err(|_| damaged())?;
        self.next += 1;
        self.done = last;
        Ok(plain)
    }
}

fn damaged() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the spool does not read back as written",
    )
}

impl Iterator for SpoolChunks {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let chunk = self.read_chunk();
        if chunk.is_err() {
            self.done = true;
        }
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spooled(bytes: &[u8]) -> SealedSpool {
        let mut spool = SealedSpool::create().unwrap();
        // In uneven pieces, across chunk boundaries.
        for piece in bytes.chunks(1000) {
            spool.write_all(piece).unwrap();
        }
        spool
    }

    #[test]
    fn what_is_written_reads_back_and_the_file_holds_none_of_it() {
        let line = b"{\"wa_id\":\"16505551234\",\"profile_name\":\"Sheena Nelson\"}\n";
        let text: Vec<u8> = line.repeat(3 * CHUNK / line.len() + 1);
        let spool = spooled(&text);
        let mut file = spool.file.get_ref().try_clone().unwrap();
        let chunks = spool.finish().unwrap();
        let read: Vec<Vec<u8>> = chunks.collect::<Result<_, _>>().unwrap();
        assert_eq!(read.len(), 4, "three full chunks and the rest");
        assert_eq!(read.concat(), text);
        let mut on_disk = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut on_disk).unwrap();
        assert!(on_disk.len() > text.len());
        for needle in [b"16505551234".as_slice(), b"Sheena"] {
            assert!(!on_disk.windows(needle.len()).any(|w| w == needle));
        }
    }

    #[test]
    fn an_empty_spool_reads_back_empty() {
        let read: Vec<Vec<u8>> = SealedSpool::create()
            .unwrap()
            .finish()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read.concat(), b"");
    }

    #[test]
    fn a_cut_or_altered_spool_fails_instead_of_reading_short() {
        let text = vec![b'x'; 2 * CHUNK + 10];
        let spool = spooled(&text);
        let file = spool.file.get_ref().try_clone().unwrap();
        let length = |file: &File| file.metadata().unwrap().len();
        let chunks = spool.finish().unwrap();
        // Cut after the first chunk: the reader asks for a second, finds
        // nothing, and says so.
        let frame = (5 + CHUNK + crate::crypto::SEAL_OVERHEAD) as u64;
        assert!(length(&file) > frame);
        file.set_len(frame).unwrap();
        let read: Vec<io::Result<Vec<u8>>> = chunks.collect();
        assert_eq!(read.len(), 2);
        assert!(read[0].is_ok() && read[1].is_err());

        // A flipped bit anywhere fails that chunk.
        let spool = spooled(&text);
        let mut file = spool.file.get_ref().try_clone().unwrap();
        let chunks = spool.finish().unwrap();
        file.seek(SeekFrom::Start(frame + 40)).unwrap();
        let mut byte = [0u8; 1];
        file.read_exact(&mut byte).unwrap();
        file.seek(SeekFrom::Start(frame + 40)).unwrap();
        file.write_all(&[byte[0] ^ 1]).unwrap();
        // The copy shares the reader's position: put it back at the start.
        file.seek(SeekFrom::Start(0)).unwrap();
        let read: Vec<io::Result<Vec<u8>>> = chunks.collect();
        assert!(read[0].is_ok() && read[1].is_err() && read.len() == 2);
    }
}
