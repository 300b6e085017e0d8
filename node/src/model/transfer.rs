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
/// Largest control frame (a chunk table of a 100 GiB file in 1 MiB chunks is about 7 MiB).
pub const MAX_CONTROL_FRAME: usize = 16 << 20;
/// Bytes before a chunk's data in a chunk frame (its index).
pub const CHUNK_HEADER: usize = 4;
/// Most ranges one [`ChunkWant`] may name.
pub const MAX_WANT_RANGES: usize = 4096;

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
