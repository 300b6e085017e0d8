//! Fetch protocol messages (`model::transfer`): a control frame's bytes parsed as each of
//! `FetchOpen`, `FetchReply` and `ChunkWant` the way `net::frames::read_json` does, and the
//! ranges of a `ChunkWant` checked against a chunk count. Properties: no panic; a parsed
//! message written again parses to the same message; the indexes a want yields are strictly
//! ascending, below the chunk count, and a want rebuilt from them yields them again; a want the
//! provider accepts, written compactly, fits its frame limit `MAX_WANT_FRAME`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yrd_node::model::transfer::{
    ChunkWant, FetchOpen, FetchReply, MAX_WANT_FRAME, MAX_WANT_RANGES,
};

/// Largest chunk count tried: the indexes of a want are materialised, and a chunk count is the
/// provider's own (from its chunk table), never the peer's.
const MAX_CHUNKS: u32 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let [a, b, frame @ ..] = data else {
        return;
    };
    if let Ok(open) = serde_json::from_slice::<FetchOpen>(frame) {
        let again = serde_json::to_vec(&open).unwrap();
        assert_eq!(serde_json::from_slice::<FetchOpen>(&again).unwrap(), open);
    }
    if let Ok(reply) = serde_json::from_slice::<FetchReply>(frame) {
        let again = serde_json::to_vec(&reply).unwrap();
        assert_eq!(serde_json::from_slice::<FetchReply>(&again).unwrap(), reply);
        if let FetchReply::Ready { manifest, .. } = &reply {
            let _ = manifest.verify();
        }
    }
    if let Ok(want) = serde_json::from_slice::<ChunkWant>(frame) {
        let again = serde_json::to_vec(&want).unwrap();
        assert_eq!(serde_json::from_slice::<ChunkWant>(&again).unwrap(), want);
        let count = u32::from_be_bytes([0, 0, *a, *b]) % (MAX_CHUNKS + 1);
        // A want reaching beyond the count is refused before anything is materialised.
        if want.ranges.iter().all(|[s, e]| s < e && *e <= count)
            || want.ranges.len() > MAX_WANT_RANGES
        {
            check_want(&want, count);
        } else {
            assert!(want.indexes(count).is_err());
        }
    }
});

fn check_want(want: &ChunkWant, count: u32) {
    match want.indexes(count) {
        Ok(indexes) => {
            assert!(want.ranges.len() <= MAX_WANT_RANGES);
            // Any want a fetcher may send fits the provider's limit for it.
            assert!(serde_json::to_vec(want).unwrap().len() <= MAX_WANT_FRAME);
            assert!(
                indexes.windows(2).all(|w| w[0] < w[1]),
                "indexes not ascending"
            );
            assert!(indexes.iter().all(|&i| i < count), "index beyond the count");
            let covered: u64 = want.ranges.iter().map(|[s, e]| u64::from(e - s)).sum();
            assert_eq!(covered, indexes.len() as u64);
            let rebuilt = ChunkWant::from_indexes(&indexes);
            assert_eq!(rebuilt.indexes(count).unwrap(), indexes);
            assert!(rebuilt.ranges.len() <= want.ranges.len());
        }
        Err(_) => {
            let ordered = want.ranges.windows(2).all(|w| w[0][1] <= w[1][0]);
            assert!(
                !ordered || want.ranges.len() > MAX_WANT_RANGES,
                "a valid want was refused"
            );
        }
    }
}
