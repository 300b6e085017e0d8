//! The pipelined receiver: checks a fetched file while its chunks arrive. Each chunk, once
//! verified and written, is taken in file order (the contiguous prefix grows; a chunk that
//! arrives ahead of a gap is read back from the partial file when the gap fills), hashed once
//! for the whole-file digest, and its records validated against the standard: JSON Lines in
//! blocks of whole lines (a partial line carried across chunk boundaries) on a bounded pool of
//! worker threads, one per core, merged in file order; CSV on one streaming thread (a quoted
//! cell may hold a newline, so CSV is not cut into blocks). The verdict, text and line numbers
//! are those of checking the finished file in one pass (`datasets::check_jsonl`/`check_csv`).
//!
//! A new attempt (a dropped connection, a restart) starts a new check that re-reads what the
//! resumed partial already holds: the validation position is not persisted.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use crate::model::exchange::DataFormat;
use crate::model::standard::CompiledStandard;
use crate::node::datasets::{
    BlockChecked, Checked, MAX_LINE_BYTES, MAX_REPORTED_ERRORS, RecordProblem, check_csv,
    check_jsonl_block, verdict,
};
use crate::store::blobs::{BlobError, Partial};

/// Bytes of JSON Lines handed to a worker at a time (whole lines; one longer line is one block).
const BLOCK_BYTES: usize = 256 << 10;
/// Most validation workers, whatever the machine has: memory stays bounded (a block in each
/// worker and one per worker queued, at most 16 × [`BLOCK_BYTES`] = 4 MiB).
const MAX_WORKERS: usize = 8;
/// CSV pieces queued for the CSV thread.
const CSV_QUEUE: usize = 4;

/// The check of one fetch attempt's file, fed in file order.
pub(crate) struct ReceiveCheck {
    /// The next chunk in file order to take.
    next: u32,
    chunk_count: u32,
    whole: blake3::Hasher,
    records: Option<Records>,
    /// Set once the records are known to be refused (nothing more need arrive).
    failed: Arc<AtomicBool>,
    buf: Vec<u8>,
}

enum Records {
    Jsonl(JsonlPool),
    Csv(CsvStream),
}

/// The outcome of a completed check.
pub(crate) struct Outcome {
    /// BLAKE3 of the whole file, hex.
    pub digest: String,
    /// The records' verdict (`None`: no standard to check them against).
    pub records: Option<Result<Checked, Vec<RecordProblem>>>,
}

impl ReceiveCheck {
    /// A check of a file of `chunk_count` chunks in `format`, its records against `standard`
    /// (none: only the digest).
    pub(crate) fn new(
        chunk_count: u32,
        format: DataFormat,
        standard: Option<CompiledStandard>,
    ) -> Result<ReceiveCheck, std::io::Error> {
        let failed = Arc::new(AtomicBool::new(false));
        let records = match standard {
            None => None,
            Some(s) if format == DataFormat::Csv => Some(Records::Csv(CsvStream::start(s)?)),
            Some(s) => Some(Records::Jsonl(JsonlPool::start(s, failed.clone())?)),
        };
        Ok(ReceiveCheck {
            next: 0,
            chunk_count,
            whole: blake3::Hasher::new(),
            records,
            failed,
            buf: Vec::new(),
        })
    }

    /// Whether the records are already known to be refused.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Chunk `index` was verified and is in `partial`, its bytes `bytes`: takes it if it is
    /// next in file order, then whatever follows it that the partial already holds.
    pub(crate) fn arrived(
        &mut self,
        partial: &Partial,
        index: u32,
        bytes: &[u8],
    ) -> Result<(), BlobError> {
        if index == self.next && partial.has_chunk(index) {
            self.take(bytes);
        }
        self.catch_up(partial)
    }

    /// Takes every chunk from the next in file order that `partial` holds (read back from its
    /// file): at the start of an attempt, what a resumed partial held; later, the chunks that
    /// arrived ahead of a gap once it is filled.
    pub(crate) fn catch_up(&mut self, partial: &Partial) -> Result<(), BlobError> {
        while self.next < self.chunk_count && partial.has_chunk(self.next) {
            let mut buf = std::mem::take(&mut self.buf);
            partial.read_chunk(self.next, &mut buf)?;
            self.take(&buf);
            self.buf = buf;
        }
        Ok(())
    }

    fn take(&mut self, bytes: &[u8]) {
        self.whole.update(bytes);
        self.next += 1;
        if self.failed() {
            return;
        }
        let stopped = match &mut self.records {
            None => false,
            Some(Records::Jsonl(pool)) => {
                pool.push(bytes);
                false
            }
            Some(Records::Csv(csv)) => !csv.push(bytes),
        };
        if stopped {
            // The CSV check stopped reading before the end: it found its problems.
            self.failed.store(true, Ordering::Relaxed);
        }
    }

    /// Whether every chunk was taken.
    pub(crate) fn complete(&self) -> bool {
        self.next == self.chunk_count
    }

    /// Ends the check: the records' verdict once the workers are done (the problems found so
    /// far if the file is incomplete because they ended the fetch) and the digest.
    pub(crate) fn finish(self) -> Outcome {
        let records = self.records.map(|r| match r {
            Records::Jsonl(pool) => pool.finish(),
            Records::Csv(csv) => csv.finish(),
        });
        Outcome {
            digest: self.whole.finalize().to_hex().to_string(),
            records,
        }
    }
}

/// JSON Lines cut into blocks of whole lines, checked by worker threads, merged in order.
struct JsonlPool {
    /// The start of a line whose end has not arrived.
    carry: Vec<u8>,
    /// A line too long was sent: nothing after it is checked.
    stopped: bool,
    /// Blocks sent so far (the next block's number).
    sent: u64,
    jobs: Option<SyncSender<(u64, Vec<u8>)>>,
    results: Receiver<(u64, BlockChecked)>,
    workers: Vec<std::thread::JoinHandle<()>>,
    merge: Merge,
}

/// The verdict so far, from the blocks merged in file order.
struct Merge {
    /// The next block to merge.
    next: u64,
    /// Blocks checked ahead of it.
    waiting: BTreeMap<u64, BlockChecked>,
    lines: u64,
    records: u64,
    problems: Vec<RecordProblem>,
    /// The verdict is decided (enough problems, or a line too long).
    done: bool,
    failed: Arc<AtomicBool>,
}

impl Merge {
    fn add(&mut self, seq: u64, block: BlockChecked) {
        self.waiting.insert(seq, block);
        while let Some(b) = self.waiting.remove(&self.next) {
            self.next += 1;
            if self.done {
                continue;
            }
            let before = self.lines;
            self.problems
                .extend(b.problems.into_iter().map(|p| RecordProblem {
                    line: before + p.line,
                    ..p
                }));
            self.lines += b.lines;
            self.records += b.records;
            if b.stop || self.problems.len() >= MAX_REPORTED_ERRORS {
                self.done = true;
                self.failed.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// How many threads check a JSON Lines file: one per core, at most [`MAX_WORKERS`]. Asked of
/// the system once, not on every fetch: on Linux the answer reads the process's cgroup files.
fn workers() -> usize {
    static WORKERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *WORKERS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WORKERS)
    })
}

impl JsonlPool {
    fn start(standard: CompiledStandard, failed: Arc<AtomicBool>) -> std::io::Result<JsonlPool> {
        let n = workers();
        let (jobs, queue) = sync_channel::<(u64, Vec<u8>)>(n);
        // Never full: at most n blocks queued, n being checked and n + 1 checked between two
        // drains by the feeder.
        let (done, results) = sync_channel(3 * n + 2);
        let queue = Arc::new(Mutex::new(queue));
        let standard = Arc::new(standard);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (queue, done, standard, failed) = (
                queue.clone(),
                done.clone(),
                standard.clone(),
                failed.clone(),
            );
            let worker = std::thread::Builder::new()
                .name(format!("yrd-validate-{i}"))
                .spawn(move || {
                    loop {
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok((seq, block)) = job else { break };
                        // Once refused, the rest need not be checked (only merged in order).
                        let checked = if failed.load(Ordering::Relaxed) {
                            BlockChecked::default()
                        } else {
                            check_jsonl_block(&standard, &block)
                        };
                        if done.send((seq, checked)).is_err() {
                            break;
                        }
                    }
                })?;
            workers.push(worker);
        }
        Ok(JsonlPool {
            carry: Vec::new(),
            stopped: false,
            sent: 0,
            jobs: Some(jobs),
            results,
            workers,
            merge: Merge {
                next: 0,
                waiting: BTreeMap::new(),
                lines: 0,
                records: 0,
                problems: Vec::new(),
                done: false,
                failed,
            },
        })
    }

    /// Cuts `data` (the next bytes of the file) into blocks of whole lines and queues them.
    fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.stopped {
            let (piece, rest) = data.split_at(data.len().min(BLOCK_BYTES));
            data = rest;
            match piece.iter().rposition(|&b| b == b'\n') {
                Some(nl) => {
                    let mut block = Vec::with_capacity(self.carry.len() + nl + 1);
                    block.extend_from_slice(&self.carry);
                    block.extend_from_slice(&piece[..=nl]);
                    self.carry.clear();
                    self.carry.extend_from_slice(&piece[nl + 1..]);
                    self.send(block);
                }
                None => {
                    self.carry.extend_from_slice(piece);
                    // Longer than any line may be: checked now (and refused), not kept.
                    if self.carry.len() > MAX_LINE_BYTES {
                        let block = std::mem::take(&mut self.carry);
                        self.send(block);
                        self.stopped = true;
                    }
                }
            }
        }
    }

    fn send(&mut self, block: Vec<u8>) {
        let Some(jobs) = &self.jobs else { return };
        if jobs.send((self.sent, block)).is_err() {
            // Every worker is gone (a panic): finish() reports it.
            self.jobs = None;
            return;
        }
        self.sent += 1;
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            match self.results.try_recv() {
                Ok((seq, b)) => self.merge.add(seq, b),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    fn finish(mut self) -> Result<Checked, Vec<RecordProblem>> {
        if !self.stopped && !self.carry.is_empty() {
            let last = std::mem::take(&mut self.carry);
            self.send(last);
        }
        // Workers end once the queue is empty and closed.
        self.jobs = None;
        while self.merge.next < self.sent {
            match self.results.recv() {
                Ok((seq, b)) => self.merge.add(seq, b),
                Err(_) => break,
            }
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if self.merge.next < self.sent {
            return Err(vec![RecordProblem {
                line: self.merge.lines + 1,
                path: String::new(),
                message: "cannot check the records: a validation worker stopped".into(),
            }]);
        }
        verdict(self.merge.records, self.merge.problems)
    }
}

/// CSV fed in order to [`check_csv`] on its own thread.
struct CsvStream {
    pieces: Option<SyncSender<Vec<u8>>>,
    thread: std::thread::JoinHandle<Result<Checked, Vec<RecordProblem>>>,
}

/// The bytes sent to a [`CsvStream`], as a reader.
struct Pieces {
    rx: Receiver<Vec<u8>>,
    piece: Vec<u8>,
    at: usize,
}

impl Read for Pieces {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.piece.len() {
            match self.rx.recv() {
                Ok(p) => {
                    self.piece = p;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.piece.len() - self.at);
        out[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl CsvStream {
    fn start(standard: CompiledStandard) -> std::io::Result<CsvStream> {
        let (pieces, rx) = sync_channel(CSV_QUEUE);
        let thread = std::thread::Builder::new()
            .name("yrd-validate-csv".into())
            .spawn(move || {
                let reader = Pieces {
                    rx,
                    piece: Vec::new(),
                    at: 0,
                };
                check_csv(reader, &standard)
            })?;
        Ok(CsvStream {
            pieces: Some(pieces),
            thread,
        })
    }

    /// Queues the next bytes; `false` once the check has stopped reading (it found problems).
    fn push(&mut self, data: &[u8]) -> bool {
        let Some(pieces) = &self.pieces else {
            return false;
        };
        if pieces.send(data.to_vec()).is_err() {
            self.pieces = None;
            return false;
        }
        true
    }

    fn finish(mut self) -> Result<Checked, Vec<RecordProblem>> {
        self.pieces = None;
        self.thread.join().unwrap_or_else(|_| {
            Err(vec![RecordProblem {
                line: 1,
                path: String::new(),
                message: "cannot check the records: the validation thread stopped".into(),
            }])
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::model::standard;
    use crate::node::datasets::check_jsonl;

    fn standard() -> CompiledStandard {
        let text = crate::samples::schema_json("enterprise-licence").unwrap();
        standard::compile(&serde_json::from_str(text).unwrap()).unwrap()
    }

    fn records(n: usize) -> Vec<serde_json::Value> {
        crate::samples::generate("enterprise-licence", n, 3).unwrap()
    }

    fn jsonl(records: &[serde_json::Value]) -> Vec<u8> {
        records
            .iter()
            .flat_map(|r| format!("{r}\n").into_bytes())
            .collect()
    }

    /// The verdict of the pipelined check of `bytes` fed in pieces of `piece` bytes (and its
    /// digest checked), as text.
    fn pipelined(format: DataFormat, bytes: &[u8], piece: usize) -> String {
        let mut check = ReceiveCheck::new(0, format, Some(standard())).unwrap();
        for p in bytes.chunks(piece) {
            check.take(p);
        }
        let out = check.finish();
        if out.records.as_ref().is_some_and(Result::is_ok) {
            assert_eq!(out.digest, blake3::hash(bytes).to_hex().to_string());
        }
        format!("{:?}", out.records.unwrap())
    }

    fn one_pass(format: DataFormat, bytes: &[u8]) -> String {
        let s = standard();
        format!(
            "{:?}",
            if format == DataFormat::Csv {
                check_csv(bytes, &s)
            } else {
                check_jsonl(bytes, &s)
            }
        )
    }

    fn assert_same(format: DataFormat, what: &str, bytes: &[u8], pieces: &[usize]) {
        let expected = one_pass(format, bytes);
        for &piece in pieces {
            assert_eq!(
                pipelined(format, bytes, piece),
                expected,
                "{what}, pieces of {piece}"
            );
        }
    }

    const PIECES: [usize; 5] = [1, 7, 1000, BLOCK_BYTES + 3, 1 << 20];

    #[test]
    fn json_lines_checked_in_blocks_while_they_arrive_get_the_one_pass_verdict() {
        let good = records(400);
        assert_same(DataFormat::Jsonl, "valid", &jsonl(&good), &PIECES);
        for at in [0, 200, 399] {
            let mut bad = good.clone();
            bad[at]["uscc"] = 12.into();
            assert_same(
                DataFormat::Jsonl,
                &format!("bad record {at}"),
                &jsonl(&bad),
                &PIECES,
            );
        }
        let mut many = good.clone();
        for r in many.iter_mut().step_by(20) {
            r["enterprise_name"] = serde_json::Value::Null;
        }
        assert_same(
            DataFormat::Jsonl,
            "twenty bad records",
            &jsonl(&many),
            &PIECES,
        );
        // Blank lines, CRLF, a line that is not JSON, one that is not UTF-8, no final newline.
        let mut odd = jsonl(&good[..50]);
        odd.extend_from_slice(b"\n   \n\r\n");
        odd.extend_from_slice(format!("{}\r\n", good[50]).as_bytes());
        odd.extend_from_slice(b"{not json\n\xff\xfe\n");
        odd.extend_from_slice(&jsonl(&good[51..60]));
        odd.extend_from_slice(good[60].to_string().as_bytes());
        assert_same(DataFormat::Jsonl, "odd lines", &odd, &PIECES);
        assert_same(DataFormat::Jsonl, "empty", b"", &[1]);
    }

    #[test]
    fn a_line_too_long_ends_the_check_as_in_one_pass() {
        let good = jsonl(&records(20));
        for len in [
            MAX_LINE_BYTES - 1,
            MAX_LINE_BYTES,
            MAX_LINE_BYTES + 1,
            MAX_LINE_BYTES + 9,
        ] {
            // A line of `len` bytes with its newline, between valid records (and at the end,
            // with no newline).
            let mut long = good.clone();
            long.extend(std::iter::repeat_n(b' ', len - 1));
            long.push(b'\n');
            long.extend_from_slice(&good);
            assert_same(
                DataFormat::Jsonl,
                &format!("a line of {len}"),
                &long,
                &[1000, 1 << 20],
            );
            let mut last = good.clone();
            last.extend(std::iter::repeat_n(b' ', len));
            assert_same(
                DataFormat::Jsonl,
                &format!("a last line of {len}"),
                &last,
                &[1 << 20],
            );
        }
    }

    fn csv(records: &[serde_json::Value]) -> Vec<u8> {
        let names: Vec<String> = standard().fields().iter().map(|f| f.name.clone()).collect();
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&names).unwrap();
        for r in records {
            let row: Vec<String> = names
                .iter()
                .map(|n| match &r[n] {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect();
            w.write_record(&row).unwrap();
        }
        w.into_inner().unwrap()
    }

    #[test]
    fn csv_streamed_while_it_arrives_gets_the_one_pass_verdict() {
        let good = records(300);
        assert_same(DataFormat::Csv, "valid", &csv(&good), &PIECES);
        let mut bad = good.clone();
        bad[150]["uscc"] = "not a code".into();
        // A quoted cell holding newlines, across piece boundaries.
        bad[20]["enterprise_name"] = "甲\n乙\r\n丙,\"丁\"".into();
        assert_same(DataFormat::Csv, "bad record", &csv(&bad), &PIECES);
        let mut ragged = csv(&good);
        ragged.extend_from_slice(b"a,b\n");
        assert_same(DataFormat::Csv, "a short row", &ragged, &[7, 1 << 20]);
        assert_same(
            DataFormat::Csv,
            "not the standard's columns",
            b"x,y\n1,2\n",
            &[1],
        );
    }
}
