//! The stream multiplexer of TCP connections (Yamux), and the bound on what one peer can make
//! this node buffer through it.
//!
//! Yamux gives every stream a receive window of 256 KiB and doubles it whenever half of it was
//! read within two round trips, up to a window shared by the connection's streams: 1 GiB in
//! yamux's default. The round trip is measured with pings the peer answers, so a peer that
//! answers late looks far away; and "read" is the node's reading, so a receiver that pauses (its
//! chunk queue full while the disk syncs) and then drains what waited reads half a window within
//! a round trip of a millisecond, and the window doubles at such pauses. What the peer sends
//! beyond what the node has read waits in that window, in memory: over loopback, 1 GiB fetches
//! grew their stream's window to 2–16 MiB, and the receiver's peak memory followed it, past
//! 64 MiB at 16 MiB (docs/benchmarks.md, "Yamux's receive window").
//!
//! Here, invariants:
//! - a connection carries at most [`MAX_STREAMS`] streams at once (QUIC's own limit in libp2p;
//!   a peer that opens more loses the connection, yamux's rule; a node opens far fewer to one
//!   peer: at most 4 query batches, and fetches bounded by `exchange.max_transfers_per_peer`);
//! - its streams together grow their windows by at most `growth` bytes (config
//!   `network.tcp_window_mib`) beyond each stream's first 256 KiB, so one stream's window stays
//!   within 256 KiB + `growth`, and what a peer can make the node buffer for one connection
//!   within [`MAX_STREAMS`] × 256 KiB + `growth`.
//!
//! One stream's throughput is at most its window ÷ the round trip: 8.25 MiB at 40 ms is about
//! 200 MiB/s, more than a transfer moves on this project's machines.

/// Most streams open at once on one TCP connection (libp2p's QUIC transport allows as many).
pub const MAX_STREAMS: usize = 256;

/// The window yamux gives every stream before any growth (its specification's 256 KiB).
pub const STREAM_CREDIT: usize = yamux::DEFAULT_CREDIT as usize;

/// The most one connection's streams may hold unread: each stream's first window plus the
/// growth they share.
pub fn connection_window(growth: usize) -> usize {
    MAX_STREAMS * STREAM_CREDIT + growth
}

/// The yamux configuration of every TCP connection: at most [`MAX_STREAMS`] streams, sharing
/// `growth` bytes of window growth.
pub fn yamux_config(growth: usize) -> yamux::Config {
    let mut c = yamux::Config::default();
    // In this order: each setter checks the window covers every stream's first 256 KiB, which
    // `connection_window` always does for MAX_STREAMS.
    c.set_max_num_streams(MAX_STREAMS);
    c.set_max_connection_receive_window(Some(connection_window(growth)));
    c
}

/// The libp2p upgrade that multiplexes a secured TCP connection with [`yamux_config`].
pub fn upgrade(growth: usize) -> libp2p::yamux::Config {
    yamux_config(growth).into()
}

#[cfg(test)]
mod tests {
    //! The attack the bound is for: a peer whose pongs come back late (here every byte it sends
    //! arrives 50 ms late) while the node reads its stream quickly, so yamux sees a long, fast
    //! link and grows the stream's window; then the node stops reading and the peer sends all
    //! the window allows. Real yamux on both ends, over in-memory pipes.
    use super::*;
    use futures::AsyncReadExt;
    use futures::AsyncWriteExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
    use tokio::task::JoinHandle;
    use tokio_util::compat::TokioAsyncReadCompatExt;

    const MIB: u64 = 1 << 20;
    const PIPE: usize = 256 * 1024;
    /// How late the peer's bytes (its pongs among them) reach the node.
    const LAG: Duration = Duration::from_millis(50);
    /// What the node reads eagerly first, so that its window grows as far as it may.
    const READ_EAGERLY: u64 = 96 * MIB;
    /// How long the peer may try to get ahead once the node stops reading.
    const PUSH_FOR: Duration = Duration::from_secs(3);

    /// Copies `from` into `to`, every piece `lag` after it was read.
    async fn pump(
        mut from: impl AsyncRead + Unpin + Send + 'static,
        mut to: impl AsyncWrite + Unpin,
        lag: Duration,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(4096);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf).await {
                let due = tokio::time::Instant::now() + lag;
                if tx.send((due, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        });
        while let Some((due, piece)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&piece).await.is_err() {
                break;
            }
        }
        reader.abort();
    }

    /// Drives a yamux connection, handing its first inbound stream to `first`.
    fn drive<T: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static>(
        mut conn: yamux::Connection<T>,
        first: Option<tokio::sync::oneshot::Sender<yamux::Stream>>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut first = first;
            while let Some(Ok(s)) = futures::future::poll_fn(|cx| conn.poll_next_inbound(cx)).await
            {
                if let Some(tx) = first.take() {
                    let _ = tx.send(s);
                }
            }
        })
    }

    /// How far ahead of the node's reading the peer got: bytes it wrote beyond what the node
    /// had read when it stopped reading. Waits until the peer is `give_up_at` ahead or
    /// `PUSH_FOR` has passed.
    async fn attack(node_config: yamux::Config, give_up_at: u64) -> u64 {
        let (node_io, node_link) = tokio::io::duplex(PIPE);
        let (peer_io, peer_link) = tokio::io::duplex(PIPE);
        let (node_link_r, node_link_w) = tokio::io::split(node_link);
        let (peer_link_r, peer_link_w) = tokio::io::split(peer_link);
        let mut tasks = vec![
            tokio::spawn(pump(node_link_r, peer_link_w, Duration::ZERO)),
            tokio::spawn(pump(peer_link_r, node_link_w, LAG)),
        ];
        let node = yamux::Connection::new(node_io.compat(), node_config, yamux::Mode::Server);
        let mut peer = yamux::Connection::new(
            peer_io.compat(),
            yamux::Config::default(),
            yamux::Mode::Client,
        );
        let (stream_tx, stream_rx) = tokio::sync::oneshot::channel();
        tasks.push(drive(node, Some(stream_tx)));
        let opened = futures::future::poll_fn(|cx| peer.poll_new_outbound(cx)).await;
        let Ok(mut out) = opened else {
            panic!("the peer could not open a stream");
        };
        tasks.push(drive(peer, None));

        // The peer writes as fast as its window allows, counting what it wrote.
        let written = Arc::new(AtomicU64::new(0));
        let (w, progress) = (written.clone(), Arc::new(tokio::sync::Notify::new()));
        let notify = progress.clone();
        tasks.push(tokio::spawn(async move {
            let piece = vec![7u8; 64 * 1024];
            while out.write_all(&piece).await.is_ok() {
                w.fetch_add(piece.len() as u64, Ordering::SeqCst);
                notify.notify_one();
            }
        }));

        let Ok(mut inbound) = stream_rx.await else {
            panic!("the node got no stream");
        };
        let mut buf = vec![0u8; 256 * 1024];
        let mut read = 0u64;
        while read < READ_EAGERLY {
            match inbound.read(&mut buf).await {
                Ok(n @ 1..) => read += n as u64,
                other => panic!("the stream ended after {read} bytes: {other:?}"),
            }
        }
        // The node stops reading; the peer pushes what the window allows.
        let ahead = || written.load(Ordering::SeqCst).saturating_sub(read);
        let _ = tokio::time::timeout(PUSH_FOR, async {
            while ahead() < give_up_at {
                progress.notified().await;
            }
        })
        .await;
        let got = ahead();
        for t in tasks {
            t.abort();
        }
        got
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_looks_far_away_cannot_make_a_stream_buffer_beyond_the_bound() {
        let growth = 8 * MIB;
        let bound = STREAM_CREDIT as u64 + growth;
        // Yamux's default first: the attack works, so the bounded case below can fail.
        let unbounded = attack(yamux::Config::default(), 2 * bound).await;
        assert!(
            unbounded >= 2 * bound,
            "with yamux's default window the peer got only {unbounded} bytes ahead"
        );
        let bounded = attack(yamux_config(growth as usize), 2 * bound).await;
        assert!(
            bounded <= bound,
            "the peer got {bounded} bytes ahead of the node's reading; the bound is {bound}"
        );
        assert!(
            bounded >= growth / 2,
            "the window should still grow within the bound, for long links ({bounded} bytes ahead)"
        );
    }

    #[test]
    fn the_windows_the_config_allows_are_built_and_bounded() {
        // yamux's setters panic when the connection's window cannot hold every stream's first
        // window; the config file allows 1 to 1024 MiB of growth.
        for mib in [1usize, 8, 1024] {
            let _ = yamux_config(mib << 20);
            assert_eq!(connection_window(mib << 20), (64 + mib) << 20);
        }
    }
}
