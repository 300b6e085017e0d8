//! A user-space WAN link emulator for the benchmarks (issue 16, `scripts/bench_wan.py`): forwards
//! IP packets between two TUN devices, each in its own network namespace, through a model of one
//! bottleneck link per direction: one-way propagation delay, a serialisation rate, iid random
//! loss (seeded) and a bounded drop-tail queue. This kernel has no `netem` qdisc, hence this.
//!
//! The model ([`Direction`]) is a virtual clock: a packet offered at `now` is lost with
//! probability `loss` (before the queue, as netem does); otherwise, if the bytes still waiting to
//! be serialised plus its own exceed `queue_bytes`, it is dropped (tail drop); otherwise it leaves
//! the bottleneck at `max(now, link_free) + size·8/rate` (a token bucket one packet deep) and
//! arrives `one_way` later. Arrival times only grow, so the delay line is a FIFO. What it does
//! not model: jitter, reordering, correlated (burst) loss, cross traffic.
//!
//! `wan-link [--rtt-ms 40] [--rate-mbit 1000] [--loss 0.001] [--seed 1] [--queue-bytes N]
//!  [--stats-out FILE] <TUN-A >TUN-B`
//!
//! Side A's TUN device is its stdin, side B's its stdout: the caller (`scripts/bench_wan.py`)
//! creates each device (IFF_TUN|IFF_NO_PI) inside its namespace and hands over the descriptors,
//! so this program needs no privilege and no `unsafe` (the workspace forbids it; a TUNSETIFF
//! ioctl would need it). It prints `ready` on stderr, forwards until killed, and rewrites its
//! counters (JSON) to `--stats-out` every 250 ms. The default queue is one bandwidth-delay
//! product (rate × RTT): a loss-based sender that fills it sees at most twice the base RTT.

use std::collections::VecDeque;
use std::fs::File;
use std::num::NonZeroU64;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::io::Errno;
use serde_json::json;

/// The largest packet read from a TUN device (no GSO/GRO: packets are at most the MTU).
const MAX_PACKET: usize = 65_536;
/// At most this many packets are read from one device per wake-up, so the other direction and
/// the releases are not starved.
const READ_BATCH: usize = 64;
/// Hard bound on packets held by one direction (queue + delay line), whatever their sizes.
const MAX_HELD_PACKETS: usize = 1 << 20;
/// The longest sleep when nothing is due (so a stop signal is seen promptly).
const IDLE_WAIT_NS: u64 = 50_000_000;
/// How often the counters are rewritten to `--stats-out`.
const STATS_EVERY_NS: u64 = 250_000_000;

/// One direction of the link.
#[derive(Debug, Clone)]
struct LinkConfig {
    one_way_ns: u64,
    rate_bps: u64,
    loss: f64,
    queue_bytes: u64,
}

/// What became of an offered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Delivered at this time (ns on the link's clock).
    Queued(u64),
    Lost,
    QueueFull,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Counters {
    offered: u64,
    offered_bytes: u64,
    lost: u64,
    tail_dropped: u64,
    delivered: u64,
    delivered_bytes: u64,
    write_errors: u64,
    max_backlog_bytes: u64,
}

/// SplitMix64: a small, seeded, reproducible generator for the loss draws.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The bottleneck model of one direction: see the module comment.
#[derive(Debug)]
struct Direction {
    cfg: LinkConfig,
    rng: SplitMix,
    /// When the bottleneck finishes serialising what it holds (ns).
    link_free_ns: u64,
    /// (arrival time ns, packet), arrival times non-decreasing.
    line: VecDeque<(u64, Vec<u8>)>,
    counters: Counters,
}

impl Direction {
    fn new(cfg: LinkConfig, seed: u64) -> Direction {
        Direction {
            cfg,
            rng: SplitMix(seed),
            link_free_ns: 0,
            line: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// Nanoseconds to serialise `bytes` at the link rate (rounded up).
    fn serialisation_ns(&self, bytes: u64) -> u64 {
        let bits = u128::from(bytes) * 8 * 1_000_000_000;
        let rate = u128::from(self.cfg.rate_bps.max(1));
        u64::try_from(bits.div_ceil(rate)).unwrap_or(u64::MAX)
    }

    /// Bytes waiting to be serialised at `now`.
    fn backlog_bytes(&self, now: u64) -> u64 {
        let ns = self.link_free_ns.saturating_sub(now);
        let bytes = u128::from(ns) * u128::from(self.cfg.rate_bps) / 8 / 1_000_000_000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    fn offer(&mut self, now: u64, packet: Vec<u8>) -> Verdict {
        let size = packet.len() as u64;
        self.counters.offered += 1;
        self.counters.offered_bytes += size;
        if self.cfg.loss > 0.0 && self.rng.unit() < self.cfg.loss {
            self.counters.lost += 1;
            return Verdict::Lost;
        }
        let backlog = self.backlog_bytes(now);
        if backlog + size > self.cfg.queue_bytes || self.line.len() >= MAX_HELD_PACKETS {
            self.counters.tail_dropped += 1;
            return Verdict::QueueFull;
        }
        self.counters.max_backlog_bytes = self.counters.max_backlog_bytes.max(backlog + size);
        let leaves = self.link_free_ns.max(now) + self.serialisation_ns(size);
        self.link_free_ns = leaves;
        let arrives = leaves + self.cfg.one_way_ns;
        self.line.push_back((arrives, packet));
        Verdict::Queued(arrives)
    }

    /// When the next packet is due, if any.
    fn next_due(&self) -> Option<u64> {
        self.line.front().map(|(t, _)| *t)
    }

    /// The next packet due at `now`, if any.
    fn pop_due(&mut self, now: u64) -> Option<Vec<u8>> {
        match self.line.front() {
            Some((t, _)) if *t <= now => self.line.pop_front().map(|(_, p)| p),
            _ => None,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The forwarding loop

/// Reads up to READ_BATCH packets from `from` into the model. Returns how many were read.
fn read_batch(from: &File, buf: &mut [u8], dir: &mut Direction, now: u64) -> Result<usize> {
    let mut n = 0;
    while n < READ_BATCH {
        match rustix::io::read(from, &mut *buf) {
            Ok(0) => break,
            Ok(len) => {
                dir.offer(now, buf[..len.min(buf.len())].to_vec());
                n += 1;
            }
            Err(Errno::AGAIN) | Err(Errno::INTR) => break,
            Err(e) => return Err(anyhow::Error::new(e).context("read from TUN")),
        }
    }
    Ok(n)
}

/// Writes every packet due at `now` to `to`; a refused write counts as a drop.
fn release(to: &File, dir: &mut Direction, now: u64) {
    while let Some(p) = dir.pop_due(now) {
        match rustix::io::write(to, &p) {
            Ok(_) => {
                dir.counters.delivered += 1;
                dir.counters.delivered_bytes += p.len() as u64;
            }
            Err(_) => dir.counters.write_errors += 1,
        }
    }
}

/// Forwards until an error (or until killed), rewriting the counters every STATS_EVERY_NS.
fn forward(
    a: &File,
    b: &File,
    ab: &mut Direction,
    ba: &mut Direction,
    stats: &Stats,
) -> Result<()> {
    let start = Instant::now();
    let clock = || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut buf = vec![0u8; MAX_PACKET];
    let mut stats_due = 0;
    loop {
        let now = clock();
        if now >= stats_due {
            stats.write(ab, ba)?;
            stats_due = now + STATS_EVERY_NS;
        }
        let next = [ab.next_due(), ba.next_due()].into_iter().flatten().min();
        let wait = next.map_or(IDLE_WAIT_NS, |t| t.saturating_sub(now).min(IDLE_WAIT_NS));
        let ts = Timespec {
            tv_sec: (wait / 1_000_000_000) as i64,
            tv_nsec: (wait % 1_000_000_000) as _,
        };
        let mut fds = [PollFd::new(a, PollFlags::IN), PollFd::new(b, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("poll")),
        }
        let (ra, rb) = (fds[0].revents(), fds[1].revents());
        let broken = PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL;
        if ra.intersects(broken) || rb.intersects(broken) {
            bail!("a TUN device went away");
        }
        let now = clock();
        if ra.contains(PollFlags::IN) {
            read_batch(a, &mut buf, ab, now)?;
        }
        if rb.contains(PollFlags::IN) {
            read_batch(b, &mut buf, ba, now)?;
        }
        let now = clock();
        release(b, ab, now);
        release(a, ba, now);
    }
}

/// The counters, as JSON, rewritten (atomically) while the link runs.
struct Stats {
    path: Option<String>,
    head: serde_json::Value,
}

impl Stats {
    fn json(&self, ab: &Direction, ba: &Direction) -> serde_json::Value {
        let mut v = self.head.clone();
        v["a_to_b"] = json!(ab.counters);
        v["b_to_a"] = json!(ba.counters);
        v
    }

    fn write(&self, ab: &Direction, ba: &Direction) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, format!("{:#}\n", self.json(ab, ba))).with_context(|| tmp.clone())?;
        std::fs::rename(&tmp, path).with_context(|| path.clone())
    }
}

/// A TUN descriptor the caller handed us as stdin or stdout, non-blocking.
fn tun_from(fd: BorrowedFd<'_>, what: &str) -> Result<File> {
    let file = File::from(fd.try_clone_to_owned().with_context(|| what.to_string())?);
    let flags = rustix::fs::fcntl_getfl(&file).with_context(|| what.to_string())?;
    rustix::fs::fcntl_setfl(&file, flags | OFlags::NONBLOCK).with_context(|| what.to_string())?;
    Ok(file)
}

fn arg(name: &str) -> Option<String> {
    yrd_tests::flag_value(name)
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match arg(name) {
        Some(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} {v}: not a number")),
        None => Ok(default),
    }
}

fn main() -> Result<()> {
    let rtt_ms: f64 = num("--rtt-ms", 40.0)?;
    let rate_mbit: f64 = num("--rate-mbit", 1000.0)?;
    let loss: f64 = num("--loss", 0.0)?;
    let seed: u64 = num("--seed", 1)?;
    let bad = |x: f64| x.is_nan() || x < 0.0;
    if !(0.0..1.0).contains(&loss) || bad(rtt_ms) || bad(rate_mbit) || rate_mbit == 0.0 {
        bail!("--loss in [0, 1), --rtt-ms ≥ 0, --rate-mbit > 0");
    }
    let rate_bps = (rate_mbit * 1e6) as u64;
    let bdp = (rate_bps as f64 / 8.0 * rtt_ms / 1000.0) as u64;
    let queue_bytes: u64 = num("--queue-bytes", bdp.max(64 * 1024))?;
    let cfg = LinkConfig {
        one_way_ns: (rtt_ms * 1e6 / 2.0) as u64,
        rate_bps,
        loss,
        queue_bytes,
    };
    let a = tun_from(std::io::stdin().as_fd(), "TUN a (stdin)")?;
    let b = tun_from(std::io::stdout().as_fd(), "TUN b (stdout)")?;
    // Wake-ups within a microsecond of the due time, not the default 50 µs of timer slack.
    rustix::thread::set_current_timer_slack(NonZeroU64::new(1)).context("timer slack")?;
    let mut ab = Direction::new(cfg.clone(), seed);
    let mut ba = Direction::new(cfg, seed.wrapping_add(0x5EED));
    let stats = Stats {
        path: arg("--stats-out"),
        head: json!({
            "rtt_ms": rtt_ms, "rate_mbit": rate_mbit, "loss": loss, "seed": seed,
            "queue_bytes": queue_bytes, "bdp_bytes": bdp,
        }),
    };
    eprintln!("ready");
    let outcome = forward(&a, &b, &mut ab, &mut ba, &stats);
    eprintln!("{}", stats.json(&ab, &ba));
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn link(rtt_ms: u64, rate_mbit: u64, loss: f64, queue_bytes: u64) -> Direction {
        Direction::new(
            LinkConfig {
                one_way_ns: rtt_ms * MS / 2,
                rate_bps: rate_mbit * 1_000_000,
                loss,
                queue_bytes,
            },
            7,
        )
    }

    #[test]
    fn a_lone_packet_arrives_after_its_serialisation_and_the_one_way_delay() {
        let mut d = link(40, 1000, 0.0, 1 << 20);
        // 1500 B at 1 Gbit/s: 12 µs on the wire, then 20 ms of propagation.
        assert_eq!(
            d.offer(5 * MS, vec![0; 1500]),
            Verdict::Queued(5 * MS + 12_000 + 20 * MS)
        );
        assert_eq!(d.pop_due(25 * MS), None, "not before its time");
        assert_eq!(d.next_due(), Some(25 * MS + 12_000));
        assert_eq!(d.pop_due(25 * MS + 12_000).map(|p| p.len()), Some(1500));
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn back_to_back_packets_are_paced_at_the_link_rate() {
        let mut d = link(0, 100, 0.0, 1 << 30);
        // 1000 packets of 1250 B offered at once at 100 Mbit/s: one every 100 µs, 100 ms in all.
        let times: Vec<u64> = (0..1000)
            .map(|_| match d.offer(0, vec![0; 1250]) {
                Verdict::Queued(t) => t,
                v => panic!("{v:?}"),
            })
            .collect();
        for (i, t) in times.iter().enumerate() {
            assert_eq!(*t, (i as u64 + 1) * 100_000, "packet {i}");
        }
        // An idle link does not bank credit: a packet after a pause waits its own time only.
        assert_eq!(
            d.offer(500 * MS, vec![0; 1250]),
            Verdict::Queued(500 * MS + 100_000)
        );
    }

    #[test]
    fn the_queue_holds_at_most_its_bound_and_drains_at_the_rate() {
        // 10 Mbit/s, a 15,000 B queue: ten 1500 B packets fit, the eleventh is dropped.
        let mut d = link(20, 10, 0.0, 15_000);
        for i in 0..10 {
            assert!(
                matches!(d.offer(0, vec![0; 1500]), Verdict::Queued(_)),
                "packet {i}"
            );
        }
        assert_eq!(d.offer(0, vec![0; 1500]), Verdict::QueueFull);
        assert_eq!(d.counters.tail_dropped, 1);
        assert!(d.counters.max_backlog_bytes <= 15_000);
        // One packet takes 1.2 ms at 10 Mbit/s: after 1.2 ms there is room for exactly one more.
        assert_eq!(d.backlog_bytes(1_200_000), 13_500);
        assert!(matches!(
            d.offer(1_200_000, vec![0; 1500]),
            Verdict::Queued(_)
        ));
        assert_eq!(d.offer(1_200_000, vec![0; 1500]), Verdict::QueueFull);
        assert_eq!(d.backlog_bytes(100 * MS), 0, "drained");
    }

    #[test]
    fn loss_is_iid_at_the_configured_rate_and_reproducible_by_seed() {
        let draw = |seed| {
            let mut d = link(0, 1_000_000, 0.001, u64::MAX);
            d.rng = SplitMix(seed);
            let lost: Vec<bool> = (0..1_000_000)
                .map(|_| d.offer(0, vec![0; 1]) == Verdict::Lost)
                .collect();
            lost
        };
        let a = draw(1);
        let n = a.iter().filter(|x| **x).count();
        // Binomial(10^6, 10^-3): mean 1000, sd ≈ 31.6; ±5 sd.
        assert!((842..=1158).contains(&n), "{n} lost of 10^6 at 0.1 %");
        assert_eq!(a, draw(1), "same seed, same losses");
        assert_ne!(a, draw(2), "another seed, other losses");
        let mut none = link(0, 1000, 0.0, u64::MAX);
        assert!((0..10_000).all(|_| none.offer(0, vec![0; 100]) != Verdict::Lost));
    }

    #[test]
    fn arrival_order_is_offer_order() {
        let mut d = link(10, 1000, 0.0, 1 << 20);
        for (i, size) in [1500usize, 40, 900, 40, 1500].iter().enumerate() {
            d.offer(i as u64 * 1000, vec![i as u8; *size]);
        }
        let out: Vec<u8> = std::iter::from_fn(|| d.pop_due(u64::MAX))
            .map(|p| p[0])
            .collect();
        assert_eq!(out, vec![0, 1, 2, 3, 4]);
    }
}
