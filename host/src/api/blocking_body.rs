//! An answer's body read from a blocking source of chunks (a sealed spool
//! on disk: reading it and opening its chunks is blocking work).
//!
//! A blocking task reads the chunks and hands them over through a channel
//! of two, so little waits in memory and a slow client slows the reading
//! down. A chunk that fails ends the body with an error: the client sees a
//! broken transfer, never a short answer that looks whole.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;

/// Chunks waiting between the reading task and the answer.
const IN_FLIGHT: usize = 2;

/// The body of `chunks`, read on the blocking pool; `chunk_size` is what
/// one chunk holds at most.
pub fn blocking_body(
    chunks: impl Iterator<Item = io::Result<Vec<u8>>> + Send + 'static,
    chunk_size: usize,
) -> Body {
    let (sender, receiver) = mpsc::channel(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        for chunk in chunks {
            let failed = chunk.is_err();
            // A client that went away closes the channel: stop reading.
            if sender.blocking_send(chunk).is_err() || failed {
                break;
            }
        }
    });
    let reader = ChannelReader {
        receiver,
        pending: Vec::new(),
        at: 0,
    };
    Body::from_stream(ReaderStream::with_capacity(reader, chunk_size))
}

/// The received chunks as one stream of bytes.
struct ChannelReader {
    receiver: mpsc::Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
    at: usize,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.at == this.pending.len() {
            match ready!(this.receiver.poll_recv(cx)) {
                Some(Ok(chunk)) => (this.pending, this.at) = (chunk, 0),
                Some(Err(error)) => return Poll::Ready(Err(error)),
                // The end: nothing put in `buf`.
                None => return Poll::Ready(Ok(())),
            }
        }
        let taken = buf.remaining().min(this.pending.len() - this.at);
        buf.put_slice(&this.pending[this.at..this.at + taken]);
        this.at += taken;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(body: Body) -> Result<Vec<u8>, axum::Error> {
        axum::body::to_bytes(body, usize::MAX)
            .await
            .map(|b| b.to_vec())
    }

    #[tokio::test]
    async fn chunks_arrive_whole_and_in_order() {
        let chunks = (0..5u8).map(|i| Ok(vec![i; 10]));
        let body = collect(blocking_body(chunks, 4)).await.unwrap();
        let expected: Vec<u8> = (0..5u8).flat_map(|i| [i; 10]).collect();
        assert_eq!(body, expected);
    }

    #[tokio::test]
    async fn a_failed_chunk_fails_the_body_instead_of_ending_it() {
        let chunks = [Ok(b"whole".to_vec()), Err(io::Error::other("damaged"))];
        assert!(collect(blocking_body(chunks.into_iter(), 8)).await.is_err());
    }
}
