//! Test hooks (feature `test-hooks` only, never in a release build): faults a provider injects
//! into what it serves — corrupted chunks, forged manifests, slow chunks — so the multi-node
//! tests can check that fetchers refuse, retry and resume.

use std::time::Duration;

use crate::model::exchange::Manifest;
use crate::model::signed::Signed;
use crate::node::Node;

/// A test-only fault the provider injects into what it serves.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Flip a byte of chunk `index` the next `times` times it is sent.
    CorruptChunk {
        /// The chunk.
        index: u32,
        /// How many sends are corrupted.
        times: u32,
    },
    /// Sign the manifests we serve with a throw-away key instead of ours.
    ForgeManifest,
    /// Wait this long before sending each chunk.
    SlowChunks(Duration),
}

/// The faults in force.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    corrupt: Option<(u32, u32)>,
    forge: bool,
    slow: Option<Duration>,
}

impl Faults {
    fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::CorruptChunk { index, times } => self.corrupt = Some((index, times)),
            Fault::ForgeManifest => self.forge = true,
            Fault::SlowChunks(d) => self.slow = Some(d),
        }
    }

    /// What to do to chunk `index` as it is sent: the wait before it, and whether to corrupt it
    /// (which uses up one of the corruptions asked).
    fn take(&mut self, index: u32) -> (Option<Duration>, bool) {
        let corrupt = match self.corrupt {
            Some((i, n)) if i == index && n > 0 => {
                self.corrupt = if n > 1 { Some((i, n - 1)) } else { None };
                true
            }
            _ => false,
        };
        (self.slow, corrupt)
    }
}

impl Node {
    /// Test hook: makes this node misbehave as a provider.
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Fault) {
        self.inner.transfers.faults.lock().inject(fault);
    }

    /// The manifest as served: re-signed by a throw-away key under [`Fault::ForgeManifest`].
    pub(super) fn maybe_forge(&self, manifest: Signed<Manifest>) -> Signed<Manifest> {
        let forge = self.inner.transfers.faults.lock().forge;
        if !forge {
            return manifest;
        }
        let other = crate::identity::NodeKey::generate();
        Signed::sign(manifest.document.clone(), other.signing_key()).unwrap_or(manifest)
    }

    /// Applies the faults in force to chunk `index` about to be sent.
    pub(super) async fn apply_chunk_faults(&self, index: u32, bytes: &mut [u8]) {
        let (slow, corrupt) = self.inner.transfers.faults.lock().take(index);
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
        }
        if corrupt {
            if let Some(b) = bytes.first_mut() {
                *b ^= 0xff;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_corrupted_the_number_of_times_asked() {
        let mut f = Faults::default();
        f.inject(Fault::CorruptChunk { index: 2, times: 2 });
        assert_eq!(f.take(1), (None, false));
        assert_eq!(f.take(2), (None, true));
        assert_eq!(f.take(2), (None, true));
        assert_eq!(f.take(2), (None, false));
        f.inject(Fault::CorruptChunk { index: 0, times: 0 });
        assert_eq!(f.take(0), (None, false));
        f.inject(Fault::SlowChunks(Duration::from_millis(5)));
        assert_eq!(f.take(0), (Some(Duration::from_millis(5)), false));
    }
}
