//! Frame decoding (`net::frames`): length-prefixed frames read from arbitrary bytes, delivered
//! in pieces of arbitrary sizes, under a size limit the input picks. Properties: no panic; a
//! frame read is never longer than the limit; a frame is what a writer of those bytes sent; a
//! length beyond the limit is refused before its bytes are read; a frame cut short holds memory
//! in proportion to the bytes that arrived, not to the length announced.
#![no_main]

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::AsyncRead;
use libfuzzer_sys::fuzz_target;
use yrd_node::model::transfer::MAX_CONTROL_FRAME;
use yrd_node::net::frames::{FrameError, read_frame_into, read_json, write_frame};

/// Hands out the input in pieces of at most `step` bytes, as a network stream would.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(n))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let [limit_sel, step, rest @ ..] = data else {
        return;
    };
    let limit = match limit_sel % 6 {
        0 => 0,
        1 => 1,
        2 => 7,
        3 => 64,
        4 => 4096,
        _ => MAX_CONTROL_FRAME,
    };
    let step = usize::from(*step).max(1);
    let stall = Duration::from_secs(5);
    runtime().block_on(async {
        let mut stream = Trickle { data: rest, step };
        let mut buf = Vec::new();
        let mut offset = 0usize;
        loop {
            let before = stream.data.len();
            match read_frame_into(&mut stream, &mut buf, limit, stall).await {
                Ok(()) => {
                    assert!(buf.len() <= limit, "a frame beyond the limit was read");
                    let len = u32::from_be_bytes(rest[offset..offset + 4].try_into().unwrap());
                    assert_eq!(len as usize, buf.len());
                    assert_eq!(&rest[offset + 4..offset + 4 + buf.len()], &buf[..]);
                    assert_eq!(before - stream.data.len(), 4 + buf.len());
                    // Written again, the frame is the bytes it was read from.
                    let mut wire = futures::io::Cursor::new(Vec::new());
                    write_frame(&mut wire, &[&buf], stall).await.unwrap();
                    assert_eq!(
                        &wire.into_inner()[..],
                        &rest[offset..offset + 4 + buf.len()]
                    );
                    offset += 4 + buf.len();
                }
                Err(FrameError::TooLarge { size, limit: l }) => {
                    assert!(size > l);
                    // Refused on the length alone: nothing after it was consumed.
                    assert_eq!(before - stream.data.len(), 4);
                    break;
                }
                Err(FrameError::Closed) => {
                    assert!(stream.data.is_empty() && before == 0);
                    break;
                }
                Err(FrameError::Io(_)) => {
                    assert!(stream.data.is_empty());
                    // Memory follows what arrived, not what was announced.
                    let received = before.saturating_sub(4);
                    assert!(
                        buf.capacity() <= 2 * (received + 64 * 1024),
                        "{} bytes held for a cut frame of {received}",
                        buf.capacity()
                    );
                    break;
                }
                Err(e) => panic!("unexpected error reading frames from memory: {e}"),
            }
        }
        // The JSON reader over the same bytes: any outcome but a panic.
        let mut stream = Trickle { data: rest, step };
        let _ = read_json::<_, serde_json::Value>(&mut stream, limit, stall).await;
    });
});
