//! Length-prefixed frames on a byte stream: a 4-byte big-endian length, then the payload. Every
//! read is bounded by a size limit (checked before allocating) and by a stall timeout, so a
//! peer can neither make us allocate what it likes nor hold a task forever.

use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream closed or failed.
    #[error("stream failed: {0}")]
    Io(#[from] std::io::Error),
    /// No progress within the stall timeout.
    #[error("stream stalled: nothing for {0} s")]
    Stalled(u64),
    /// The peer announced a frame beyond the limit.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Announced size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A control frame was not the JSON expected.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The stream ended cleanly before a frame began.
    #[error("the peer closed the stream")]
    Closed,
}

/// Most bytes a frame's buffer grows by before they have arrived: a frame is read in steps of
/// this size, so memory follows the bytes received rather than the size announced.
const READ_STEP: usize = 64 * 1024;

async fn timed<T>(
    stall: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, FrameError> {
    match tokio::time::timeout(stall, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(FrameError::Stalled(stall.as_secs())),
    }
}

/// Reads one frame into `buf` (replacing its contents), refusing one larger than `limit`. The
/// buffer grows with the bytes received, never ahead of them by more than 64 KiB.
pub async fn read_frame_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limit: usize,
    stall: Duration,
) -> Result<(), FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = timed(stall, stream.read(&mut len[got..])).await?;
        if n == 0 {
            return Err(if got == 0 {
                FrameError::Closed
            } else {
                FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())
            });
        }
        got += n;
    }
    let size = u32::from_be_bytes(len) as usize;
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    buf.clear();
    // Grow by what arrives, a step at a time: a peer announcing the limit and then stalling
    // holds at most one step of our memory, not the limit.
    let mut filled = 0;
    while filled < size {
        let end = filled + (size - filled).min(READ_STEP);
        if buf.capacity() < end {
            // Double what has arrived (amortised growth), never past the frame's own size.
            buf.reserve_exact(end.max(filled.saturating_mul(2).min(size)) - filled);
        }
        buf.resize(end, 0);
        let n = timed(stall, stream.read(&mut buf[filled..end])).await?;
        filled += n;
        buf.truncate(filled);
        if n == 0 {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(())
}

/// Reads one JSON control frame.
pub async fn read_json<S: AsyncRead + Unpin, T: DeserializeOwned>(
    stream: &mut S,
    limit: usize,
    stall: Duration,
) -> Result<T, FrameError> {
    let mut buf = Vec::new();
    read_frame_into(stream, &mut buf, limit, stall).await?;
    serde_json::from_slice(&buf).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Writes one frame made of `parts` (concatenated) and flushes it.
pub async fn write_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    parts: &[&[u8]],
    stall: Duration,
) -> Result<(), FrameError> {
    let size: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(size).map_err(|_| FrameError::TooLarge {
        size,
        limit: u32::MAX as usize,
    })?;
    timed(stall, stream.write_all(&len.to_be_bytes())).await?;
    for part in parts {
        timed(stall, stream.write_all(part)).await?;
    }
    timed(stall, stream.flush()).await
}

/// Writes one JSON control frame.
pub async fn write_json<S: AsyncWrite + Unpin, T: Serialize>(
    stream: &mut S,
    value: &T,
    stall: Duration,
) -> Result<(), FrameError> {
    let bytes = serde_json::to_vec(value).map_err(|e| FrameError::Malformed(e.to_string()))?;
    write_frame(stream, &[&bytes], stall).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_limits_hold() -> Result<(), Box<dyn std::error::Error>> {
        let stall = Duration::from_secs(1);
        let mut wire = futures::io::Cursor::new(Vec::new());
        write_frame(&mut wire, &[b"ab", b"cd"], stall).await?;
        write_json(&mut wire, &serde_json::json!({"x": 1}), stall).await?;
        let mut reader = futures::io::Cursor::new(wire.into_inner());
        let mut buf = Vec::new();
        read_frame_into(&mut reader, &mut buf, 16, stall).await?;
        assert_eq!(buf, b"abcd");
        let v: serde_json::Value = read_json(&mut reader, 16, stall).await?;
        assert_eq!(v["x"], 1);
        assert!(matches!(
            read_frame_into(&mut reader, &mut buf, 16, stall).await,
            Err(FrameError::Closed)
        ));
        // A length beyond the limit is refused before anything is allocated.
        let mut big = futures::io::Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 0]);
        assert!(matches!(
            read_frame_into(&mut big, &mut buf, 1024, stall).await,
            Err(FrameError::TooLarge { .. })
        ));
        // A frame cut short is an error, not a short frame.
        let mut cut = futures::io::Cursor::new(vec![0, 0, 0, 9, 1, 2]);
        assert!(matches!(
            read_frame_into(&mut cut, &mut buf, 1024, stall).await,
            Err(FrameError::Io(_))
        ));
        Ok(())
    }

    /// A peer that announces a frame at the limit and then sends little (or stalls) must not
    /// make us hold the limit in memory: what is allocated follows what arrives.
    #[tokio::test]
    async fn announced_size_is_not_allocated_before_it_arrives() {
        let stall = Duration::from_secs(1);
        let limit = 16 << 20;
        let mut wire = (limit as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(b"ten bytes!");
        // At once, and a byte per read (as a trickling peer sends them).
        for step in [wire.len(), 1] {
            let mut stream = Trickle { data: &wire, step };
            let mut buf = Vec::new();
            let read = read_frame_into(&mut stream, &mut buf, limit, stall).await;
            assert!(matches!(read, Err(FrameError::Io(_))));
            assert!(
                buf.capacity() <= 2 * READ_STEP,
                "{} bytes held for 10 received in reads of {step}",
                buf.capacity()
            );
        }
    }

    /// Hands out `data` at most `step` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step).min(self.data.len());
            let (head, rest) = self.data.split_at(n);
            buf[..n].copy_from_slice(head);
            self.data = rest;
            std::task::Poll::Ready(Ok(n))
        }
    }
}
