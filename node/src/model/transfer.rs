//! The wire form of the fetch protocol `/yrd/fetch/1` (R3, R5): the frames a fetcher and a
//! provider exchange on one libp2p stream to move one dataset version in verified chunks.
//! Pure data; the I/O lives in `net::frames` and the decisions in `node::transfer`.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes. Control frames carry one
//! JSON object ([`FetchOpen`], [`FetchReply`], [`ChunkWant`]); a chunk frame carries the chunk
//! index (u32 big-endian) followed by the chunk's bytes. See `docs/protocol.md`, "Fetch".

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::chunks::ChunkTable;
use crate::model::exchange::Manifest;
use crate::model::refusal::RefusalCode;
use crate::model::signed::Signed;

/// Protocol id of the fetch stream.
pub const FETCH_PROTOCOL: &str = "/yrd/fetch/1";
/// Largest control frame, and the limit of the one that needs it: the provider's
/// [`FetchReply`], whose `ready` form carries the chunk table (a 100 GiB file in 1 MiB chunks
/// takes about 7 MiB). Each control message has its own limit, no larger than it needs:
/// [`MAX_OPEN_FRAME`], [`MAX_WANT_FRAME`], this one.
pub const MAX_CONTROL_FRAME: usize = 16 << 20;
/// Largest [`FetchOpen`] frame: a dataset identifier, a version and a grant id take well under
/// a kilobyte; the rest is room for what a peer may send and we refuse by its content.
pub const MAX_OPEN_FRAME: usize = 64 * 1024;
/// Largest [`ChunkWant`] frame: [`MAX_WANT_RANGES`] ranges of the largest indexes, written
/// compactly, take 98,316 bytes (`{"ranges":[` + 4096 × `[4294967295,4294967295]` + commas +
/// `]}`); 128 KiB holds that with room. A want announced beyond it is refused after its 4 length
/// bytes, before anything of it is read.
pub const MAX_WANT_FRAME: usize = 128 * 1024;
/// Bytes before a chunk's data in a chunk frame (its index).
pub const CHUNK_HEADER: usize = 4;
/// Most ranges one [`ChunkWant`] may name.
pub const MAX_WANT_RANGES: usize = 4096;
/// The index a provider puts in place of a chunk's to refuse the rest of a session (the grant
/// was revoked or expired, the chunk request was bad): the frame's bytes after it are a JSON
/// [`FetchReply::Refused`]. No chunk has this index (indexes are below the chunk count).
pub const REFUSAL_INDEX: u32 = u32::MAX;
/// Longest refusal message sent in a chunk frame (bytes; cut at a character boundary), so
/// it fits whatever the chunk size.
pub const MAX_REFUSAL_MESSAGE: usize = 1024;

/// The payload of a refusal sent in place of a chunk: [`REFUSAL_INDEX`], then the refusal.
pub fn refusal_frame(code: RefusalCode, message: &str) -> Vec<u8> {
    let mut end = message.len().min(MAX_REFUSAL_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let reply = FetchReply::Refused {
        code,
        message: message[..end].to_string(),
    };
    let mut out = REFUSAL_INDEX.to_be_bytes().to_vec();
    // A refusal of two plain fields always serialises.
    out.extend(serde_json::to_vec(&reply).unwrap_or_default());
    out
}

/// The refusal a chunk frame carries instead of a chunk, if it is one: `Some(Err(why))` when
/// it says it is one but is not a refusal.
pub fn refusal_in(frame: &[u8]) -> Option<Result<(RefusalCode, String), String>> {
    if frame.get(..CHUNK_HEADER) != Some(&REFUSAL_INDEX.to_be_bytes()[..]) {
        return None;
    }
    Some(
        match serde_json::from_slice::<FetchReply>(&frame[CHUNK_HEADER..]) {
            Ok(FetchReply::Refused { code, message }) => Ok((code, message)),
            Ok(FetchReply::Ready { .. }) => Err("a Ready reply in place of a chunk".into()),
            Err(e) => Err(format!("malformed refusal in place of a chunk: {e}")),
        },
    )
}

/// The fetcher's first frame: which dataset version, under which grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchOpen {
    /// The offer identifier.
    pub dataset: String,
    /// The version wanted; the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The grant it fetches under (conditional offers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// The provider's answer to [`FetchOpen`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FetchReply {
    /// The version is served: its signed manifest (derived, for a masked delivery) and its
    /// chunk table, whose digest the manifest signs.
    Ready {
        /// The manifest of exactly the bytes that will be sent.
        manifest: Box<Signed<Manifest>>,
        /// The chunk table.
        chunk_table: ChunkTable,
    },
    /// Refused; `code` is one of `not-found`, `not-shared`, `grant-required`, `grant-invalid`,
    /// `busy`, `bad-request`, `internal`.
    Refused {
        /// Machine-readable reason.
        code: RefusalCode,
        /// For people: names the cause (e.g. the withheld reason and its legal basis).
        message: String,
    },
}

/// The fetcher asks for chunks: half-open ranges `[start, end)` of chunk indexes, sent back in
/// the order asked. An empty list ends the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkWant {
    /// The ranges.
    pub ranges: Vec<[u32; 2]>,
}

impl ChunkWant {
    /// Ranges covering `indexes` (sorted ascending), merging runs.
    pub fn from_indexes(indexes: &[u32]) -> ChunkWant {
        let mut ranges: Vec<[u32; 2]> = Vec::new();
        for &i in indexes {
            match ranges.last_mut() {
                Some(r) if r[1] == i => r[1] = i + 1,
                _ => ranges.push([i, i + 1]),
            }
        }
        ChunkWant { ranges }
    }

    /// The indexes asked for, checked against the chunk count: ranges must be non-empty,
    /// in bounds, ascending and disjoint, and at most [`MAX_WANT_RANGES`].
    pub fn indexes(&self, chunk_count: u32) -> Result<Vec<u32>, String> {
        if self.ranges.len() > MAX_WANT_RANGES {
            return Err(format!(
                "{} ranges asked; at most {MAX_WANT_RANGES}",
                self.ranges.len()
            ));
        }
        let mut out = Vec::new();
        let mut floor = 0u32;
        for [start, end] in &self.ranges {
            if start >= end || *end > chunk_count || *start < floor {
                return Err(format!(
                    "range [{start}, {end}) is empty, out of order or beyond the {chunk_count} chunks"
                ));
            }
            out.extend(*start..*end);
            floor = *end;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_frame_reads_back_and_is_never_a_chunk() {
        let long = "撤".repeat(MAX_REFUSAL_MESSAGE);
        let frame = refusal_frame(RefusalCode::GrantInvalid, &long);
        match refusal_in(&frame) {
            Some(Ok((code, message))) => {
                assert_eq!(code, RefusalCode::GrantInvalid);
                assert!(message.len() <= MAX_REFUSAL_MESSAGE && message.starts_with('撤'));
            }
            other => panic!("{other:?}"),
        }
        let mut chunk = 7u32.to_be_bytes().to_vec();
        chunk.extend(b"data");
        assert!(refusal_in(&chunk).is_none());
        let mut bad = REFUSAL_INDEX.to_be_bytes().to_vec();
        bad.extend(b"{");
        assert!(matches!(refusal_in(&bad), Some(Err(_))));
    }

    #[test]
    fn the_largest_valid_want_fits_its_frame_and_a_larger_list_cannot()
    -> Result<(), serde_json::Error> {
        let largest = ChunkWant {
            ranges: vec![[u32::MAX - 1, u32::MAX]; MAX_WANT_RANGES],
        };
        let bytes = serde_json::to_vec(&largest)?;
        assert!(bytes.len() <= MAX_WANT_FRAME, "{} bytes", bytes.len());
        // The JSON form of a want uses no more than the compact bound the limit names.
        assert!(bytes.len() <= 98_316, "{} bytes", bytes.len());
        let open = FetchOpen {
            dataset: "x".repeat(64),
            version: Some(u64::MAX),
            grant: Some("0".repeat(32)),
        };
        assert!(serde_json::to_vec(&open)?.len() < MAX_OPEN_FRAME);
        const { assert!(MAX_OPEN_FRAME < MAX_WANT_FRAME && MAX_WANT_FRAME < MAX_CONTROL_FRAME) };
        Ok(())
    }

    #[test]
    fn want_ranges_round_trip_and_are_checked() {
        let want = ChunkWant::from_indexes(&[0, 1, 2, 5, 7, 8]);
        assert_eq!(want.ranges, vec![[0, 3], [5, 6], [7, 9]]);
        assert_eq!(want.indexes(9), Ok(vec![0, 1, 2, 5, 7, 8]));
        assert!(want.indexes(8).is_err());
        let backwards = ChunkWant {
            ranges: vec![[5, 6], [1, 2]],
        };
        assert!(backwards.indexes(10).is_err());
        let empty = ChunkWant {
            ranges: vec![[3, 3]],
        };
        assert!(empty.indexes(10).is_err());
    }
}
