//! The provenance log's Merkle tree: RFC 6962 (section 2.1) hashing over SHA-256, the layout of
//! its node hashes in a key-value store, root computation, and inclusion/consistency proof
//! generation and verification (verification per RFC 9162 sections 2.1.3.2 and 2.1.4.2). Pure:
//! every read goes through a caller-supplied [`NodeStore`] or closure, and nothing is written.
//!
//! # Hashing
//! `leaf_hash(d) = SHA-256(0x00 || d)`, `node_hash(l, r) = SHA-256(0x01 || l || r)`, and the
//! empty tree's root is `SHA-256("")`. The tree hash is RFC 6962's MTH: a list of `n > 1` leaves
//! splits at `k`, the largest power of two `< n`, into `MTH(D[0:k])` and `MTH(D[k:n])`.
//!
//! # Storage layout
//! Only hashes of *perfect* (complete) subtrees are stored. The node at `(level, index)` is the
//! root of the perfect subtree over leaves `[index * 2^level, (index + 1) * 2^level)`; level 0
//! holds the leaf hashes. Such a node never changes once the log has grown past its last leaf,
//! so the store is append-only, and it also answers for every *earlier* tree size. A log of `n`
//! leaves holds fewer than `2n` nodes. [`node_key`] gives a 9-byte key (level, then big-endian
//! index) that keeps each level in index order in a sorted store such as sled.
//!
//! A store may keep fewer: with *tiles* (C2SP tlog-tiles) only the nodes of levels that are
//! multiples of [`TILE_HEIGHT`] are kept, 256 to a tile, and [`node_from_tiles`] computes any
//! other node from the tile below it; [`tile_appends`] turns an append's node writes into tile
//! writes. The provenance log stores its tree so (`store::provenance`).
//!
//! Appending leaf `n` creates `(0, n)` and then one parent per trailing one-bit of `n`:
//! [`append_updates`] (or [`append_batch_updates`] for many leaves) returns exactly those
//! `(level, index, hash)` triples, reading only the left siblings it needs; the caller writes them
//! in the same batch as the record itself.
//!
//! # Why no proof rebuilds the tree
//! Every range that MTH recursion visits, `[s, s + m)`, has `s` aligned to the power of two
//! at or above `m`, so it is the concatenation of the perfect subtrees given by the binary digits
//! of `m` (largest first), and its MTH is the right fold
//! `node_hash(P1, node_hash(P2, ... Pk))` of their stored hashes. Hence a root costs
//! `popcount(n)` reads, and an inclusion or consistency proof at most about `2 log2 n` reads:
//! on the way down only the first step into a left half has a non-perfect sibling. No leaf data
//! is ever needed.
//!
//! # Conventions
//! * Size 0 is the empty tree: [`root`] returns [`empty_root`] and there is no inclusion proof
//!   in it. A consistency proof from size 0 (every tree extends the empty one) or between equal
//!   sizes is empty; [`verify_consistency`] then checks `old_root == empty_root()`, respectively
//!   `old_root == new_root`.
//! * A node absent from the store yields [`MerkleError::MissingNode`]: asking about a size
//!   beyond what the store holds fails rather than inventing hashes. An append checks that leaf
//!   `size_before - 1` is stored and leaf `size_before` is not, so a stale size cannot overwrite
//!   history ([`MerkleError::SizeMismatch`]).
//! * Proof lengths are fully determined by the sizes ([`inclusion_proof_len`],
//!   [`consistency_proof_len`]); verifiers reject any other length before hashing.
//! * All functions return [`MerkleError`]; none panics, and all u64 arithmetic stays within
//!   `[0, size]`, so sizes up to `u64::MAX` work.

use std::collections::HashMap;
use std::convert::Infallible;

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// One node write produced by an append: `(level, index, hash)`.
pub type NodeUpdate = (u8, u64, Hash);

/// Errors from building, proving and verifying; `E` is the node store's error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError<E = Infallible> {
    /// The operation needs a non-empty tree.
    #[error("the tree is empty (size 0)")]
    EmptyTree,
    /// A leaf index is not below the tree size.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size it was checked against.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("old tree size {old_size} exceeds new tree size {new_size}")]
    SizeRegression {
        /// The earlier tree size.
        old_size: u64,
        /// The later tree size.
        new_size: u64,
    },
    /// The tree would grow beyond `u64::MAX` leaves.
    #[error("tree size would exceed u64::MAX leaves")]
    SizeOverflow,
    /// An append was given a size that does not match the leaves in the store.
    #[error("the store does not hold exactly {size} leaves")]
    SizeMismatch {
        /// The size the caller claimed.
        size: u64,
    },
    /// A complete-subtree hash that must exist is absent from the store.
    #[error("node (level {level}, index {index}) is missing from the store")]
    MissingNode {
        /// Level of the missing node (0 = leaf).
        level: u8,
        /// Index of the missing node within its level.
        index: u64,
    },
    /// A proof has the wrong number of hashes for the given sizes.
    #[error("proof has {actual} hashes, expected {expected}")]
    WrongProofLength {
        /// The length the sizes imply.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// The root recomputed from a proof differs from the expected (new) root.
    #[error("the root computed from the proof does not match the expected root")]
    RootMismatch,
    /// The old root recomputed from a consistency proof differs from the given old root.
    #[error("the old root computed from the proof does not match the expected old root")]
    OldRootMismatch,
    /// The node store failed.
    #[error("node store error")]
    Store(#[source] E),
}

impl MerkleError<Infallible> {
    /// Converts a store-free error (as from verification) into one for any store error type.
    pub fn widen<E>(self) -> MerkleError<E> {
        match self {
            Self::EmptyTree => MerkleError::EmptyTree,
            Self::IndexOutOfRange { index, size } => MerkleError::IndexOutOfRange { index, size },
            Self::SizeRegression { old_size, new_size } => {
                MerkleError::SizeRegression { old_size, new_size }
            }
            Self::SizeOverflow => MerkleError::SizeOverflow,
            Self::SizeMismatch { size } => MerkleError::SizeMismatch { size },
            Self::MissingNode { level, index } => MerkleError::MissingNode { level, index },
            Self::WrongProofLength { expected, actual } => {
                MerkleError::WrongProofLength { expected, actual }
            }
            Self::RootMismatch => MerkleError::RootMismatch,
            Self::OldRootMismatch => MerkleError::OldRootMismatch,
            Self::Store(never) => match never {},
        }
    }
}

/// Read access to stored complete-subtree hashes, keyed by `(level, index)`.
///
/// Any `Fn(u8, u64) -> Result<Option<Hash>, E>` is a `NodeStore` too (annotate the closure's
/// argument types).
pub trait NodeStore {
    /// The store's own error.
    type Error;
    /// The hash of the perfect subtree at `(level, index)`, or `None` if not stored.
    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error>;
}

impl<F, E> NodeStore for F
where
    F: Fn(u8, u64) -> Result<Option<Hash>, E>,
{
    type Error = E;

    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, E> {
        self(level, index)
    }
}

/// An in-memory node store that also tracks its leaf count; for tests and tools.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    nodes: HashMap<(u8, u64), Hash>,
    size: u64,
}

impl MemoryStore {
    /// An empty store (tree size 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves appended through [`MemoryStore::append`]/[`MemoryStore::append_batch`].
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of stored nodes (all levels).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Appends one leaf hash; returns the new tree size.
    pub fn append(&mut self, leaf: Hash) -> Result<u64, MerkleError> {
        self.append_batch(&[leaf])
    }

    /// Appends leaf hashes in order; returns the new tree size. On error nothing is written.
    pub fn append_batch(&mut self, leaves: &[Hash]) -> Result<u64, MerkleError> {
        let updates =
            append_batch_updates(self.size, leaves, |level, index| self.get(level, index))?;
        let added = u64::try_from(leaves.len()).map_err(|_| MerkleError::SizeOverflow)?;
        let size = self
            .size
            .checked_add(added)
            .ok_or(MerkleError::SizeOverflow)?;
        self.nodes.extend(
            updates
                .into_iter()
                .map(|(level, index, hash)| ((level, index), hash)),
        );
        self.size = size;
        Ok(size)
    }

    /// Sets one node directly (does not change the size); lets tests damage a store.
    pub fn insert(&mut self, level: u8, index: u64, hash: Hash) {
        self.nodes.insert((level, index), hash);
    }

    /// Removes one node (does not change the size); lets tests damage a store.
    pub fn remove(&mut self, level: u8, index: u64) -> Option<Hash> {
        self.nodes.remove(&(level, index))
    }
}

impl NodeStore for MemoryStore {
    type Error = Infallible;

    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, Infallible> {
        Ok(self.nodes.get(&(level, index)).copied())
    }
}

/// `SHA-256(0x00 || data)`: the RFC 6962 leaf hash.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the RFC 6962 interior node hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// `SHA-256("")`: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A 9-byte store key for node `(level, index)`: the level byte, then the index big-endian.
pub fn node_key(level: u8, index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = level;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The nodes created by appending leaf hash `leaf` to a tree of `size_before` leaves: `(0,
/// size_before)` first, then each parent that becomes complete, bottom-up.
///
/// `get` reads stored nodes. As a guard against a wrong size, leaf `size_before - 1` must be
/// stored and leaf `size_before` must not be ([`MerkleError::SizeMismatch`]).
pub fn append_updates<E>(
    size_before: u64,
    leaf: Hash,
    get: impl Fn(u8, u64) -> Result<Option<Hash>, E>,
) -> Result<Vec<NodeUpdate>, MerkleError<E>> {
    append_batch_updates(size_before, &[leaf], get)
}

/// Like [`append_updates`] for many leaves at once: all nodes created by appending `leaves` in
/// order, in creation order. Nodes created within the batch are not read back from `get`.
pub fn append_batch_updates<E>(
    size_before: u64,
    leaves: &[Hash],
    get: impl Fn(u8, u64) -> Result<Option<Hash>, E>,
) -> Result<Vec<NodeUpdate>, MerkleError<E>> {
    let added = u64::try_from(leaves.len()).map_err(|_| MerkleError::SizeOverflow)?;
    // The largest index appended is `size_before + added - 1`, so the new size must fit in u64;
    // that also keeps every level below 64.
    size_before
        .checked_add(added)
        .ok_or(MerkleError::SizeOverflow)?;
    if leaves.is_empty() {
        return Ok(Vec::new());
    }
    if get(0, size_before).map_err(MerkleError::Store)?.is_some() {
        return Err(MerkleError::SizeMismatch { size: size_before });
    }
    if let Some(last) = size_before.checked_sub(1) {
        if get(0, last).map_err(MerkleError::Store)?.is_none() {
            return Err(MerkleError::SizeMismatch { size: size_before });
        }
    }
    // `pending[l]` holds the newest even-indexed node created at level `l` in this batch: the left
    // sibling of the next node created at that level.
    let mut pending: [Option<Hash>; 64] = [None; 64];
    let mut updates = Vec::with_capacity(leaves.len().saturating_mul(2).saturating_add(64));
    for (offset, leaf) in leaves.iter().enumerate() {
        let mut level: u8 = 0;
        // No overflow: offset < added, and size_before + added fits in u64.
        let mut index = size_before + offset as u64;
        let mut hash = *leaf;
        loop {
            updates.push((level, index, hash));
            let slot = pending
                .get_mut(usize::from(level))
                .ok_or(MerkleError::SizeOverflow)?;
            if index & 1 == 0 {
                *slot = Some(hash);
                break;
            }
            let left = match slot.take() {
                Some(left) => left,
                None => load(&get, level, index - 1)?,
            };
            hash = node_hash(&left, &hash);
            index >>= 1;
            level += 1;
        }
    }
    Ok(updates)
}

/// The root (MTH) of the tree of the first `size` leaves, from `popcount(size)` stored nodes.
pub fn root<S: NodeStore + ?Sized>(size: u64, store: &S) -> Result<Hash, MerkleError<S::Error>> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(store, 0, size)
}

/// RFC 6962 `PATH(index, D[0:size])`: the audit path for leaf `index`, bottom-up.
pub fn inclusion_proof<S: NodeStore + ?Sized>(
    index: u64,
    size: u64,
    store: &S,
) -> Result<Vec<Hash>, MerkleError<S::Error>> {
    check_index(index, size)?;
    // Invariant: the current range is [start, start + width) with start + width <= size and
    // start <= index < start + width; `start` is aligned as MTH recursion guarantees.
    let (mut start, mut width) = (0u64, size);
    let mut path = Vec::with_capacity(64);
    while width > 1 {
        let k = split(width);
        if index - start < k {
            path.push(range_hash(store, start + k, width - k)?);
            width = k;
        } else {
            path.push(range_hash(store, start, k)?);
            start += k;
            width -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// RFC 6962 `PROOF(old_size, D[0:new_size])`, bottom-up; empty if `old_size` is 0 or `new_size`.
pub fn consistency_proof<S: NodeStore + ?Sized>(
    old_size: u64,
    new_size: u64,
    store: &S,
) -> Result<Vec<Hash>, MerkleError<S::Error>> {
    if old_size > new_size {
        return Err(MerkleError::SizeRegression { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:start + width], whole) unrolled; invariant 0 < m <= width and
    // start + width <= new_size. `whole` is SUBPROOF's flag b: still at the original old tree.
    let (mut start, mut width, mut m, mut whole) = (0u64, new_size, old_size, true);
    let mut proof = Vec::with_capacity(64);
    while m != width {
        let k = split(width);
        if m <= k {
            proof.push(range_hash(store, start + k, width - k)?);
            width = k;
        } else {
            proof.push(range_hash(store, start, k)?);
            start += k;
            width -= k;
            m -= k;
            whole = false;
        }
    }
    if !whole {
        proof.push(range_hash(store, start, m)?);
    }
    proof.reverse();
    Ok(proof)
}

/// The length every valid inclusion proof for (`index`, `size`) has.
pub fn inclusion_proof_len(index: u64, size: u64) -> Result<usize, MerkleError> {
    check_index(index, size)?;
    let (inner, border) = decompose(index, size);
    Ok(inner + border)
}

/// The length every valid consistency proof from `old_size` to `new_size` has.
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> Result<usize, MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizeRegression { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(0);
    }
    // Path of leaf old_size - 1 in the new tree, minus the levels inside the perfect subtree
    // of 2^shift leaves that ends the old tree, plus that subtree's own hash unless it *is* the
    // old tree.
    let (inner, border) = decompose(old_size - 1, new_size);
    let shift = old_size.trailing_zeros() as usize;
    let seed = usize::from(!old_size.is_power_of_two());
    Ok(inner.saturating_sub(shift) + border + seed)
}

/// Checks an inclusion proof per RFC 9162 section 2.1.3.2; no store needed.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    let expected = inclusion_proof_len(index, size)?;
    let wrong_length = MerkleError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(wrong_length);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_length);
    }
    if r != *root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Checks a consistency proof per RFC 9162 section 2.1.4.2; no store needed.
///
/// Equal sizes need an empty proof and equal roots; from size 0 the proof is empty and
/// `old_root` must be [`empty_root`].
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    let expected = consistency_proof_len(old_size, new_size)?;
    let wrong_length = MerkleError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    if old_size == 0 {
        return if *old_root == empty_root() {
            Ok(())
        } else {
            Err(MerkleError::OldRootMismatch)
        };
    }
    // RFC 9162 step 2: a power-of-two old tree is itself the first node of the path.
    let (seed, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => return Err(wrong_length),
        }
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in rest {
        if snode == 0 {
            return Err(wrong_length);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(MerkleError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Fails unless `index < size` (and so `size > 0`).
fn check_index<E>(index: u64, size: u64) -> Result<(), MerkleError<E>> {
    if size == 0 {
        Err(MerkleError::EmptyTree)
    } else if index >= size {
        Err(MerkleError::IndexOutOfRange { index, size })
    } else {
        Ok(())
    }
}

/// The largest power of two strictly below `n`; requires `n >= 2`.
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Splits the audit path of leaf `index` in a tree of `size` (index < size) into the levels
/// below where it meets the path of leaf `size - 1` (`inner`) and the left siblings above
/// (`border`); their sum is the path length.
fn decompose(index: u64, size: u64) -> (usize, usize) {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner as usize, border as usize)
}

/// Reads a node that must exist.
fn load<S: NodeStore + ?Sized>(
    store: &S,
    level: u8,
    index: u64,
) -> Result<Hash, MerkleError<S::Error>> {
    store
        .get(level, index)
        .map_err(MerkleError::Store)?
        .ok_or(MerkleError::MissingNode { level, index })
}

/// MTH of leaves `[start, start + width)` (`width > 0`, `start + width` within the stored tree,
/// `start` a multiple of the largest power of two `<= width`, as in every MTH recursion range):
/// the right fold of the perfect subtrees given by the one-bits of `width`, read smallest first.
fn range_hash<S: NodeStore + ?Sized>(
    store: &S,
    start: u64,
    width: u64,
) -> Result<Hash, MerkleError<S::Error>> {
    let mut end = start.checked_add(width).ok_or(MerkleError::SizeOverflow)?;
    let mut rest = width;
    let mut acc: Option<Hash> = None;
    while rest != 0 {
        let level = rest.trailing_zeros();
        end -= 1u64 << level;
        let node = load(store, level as u8, end >> level)?;
        acc = Some(match acc {
            None => node,
            Some(right) => node_hash(&node, &right),
        });
        rest &= rest - 1;
    }
    acc.ok_or(MerkleError::EmptyTree)
}

/// Tree levels one tile spans: a tile of tile level `k` holds the hashes of up to
/// [`TILE_WIDTH`] consecutive nodes of tree level `k * TILE_HEIGHT`.
pub const TILE_HEIGHT: u8 = 8;

/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// Where the node `(level, index)` lies in tiles: `(tile level, tile index, offset, count)`:
/// it is the perfect subtree over the `count` hashes from `offset` in that tile. `None` when
/// the node's first leaf is beyond `u64`.
pub fn tile_span(level: u8, index: u64) -> Option<(u8, u64, usize, usize)> {
    let k = level / TILE_HEIGHT;
    let j = u32::from(level % TILE_HEIGHT);
    // The node's first hash at the tile's base level; it must not overflow.
    let first = index.checked_shl(j).filter(|f| f >> j == index)?;
    let offset = usize::try_from(first & (TILE_WIDTH - 1)).ok()?;
    Some((k, first >> TILE_HEIGHT, offset, 1usize << j))
}

/// The hash of node `count` hashes wide from `offset` in `tile` (its 32-byte hashes in order;
/// `count` a power of two): `None` if the tile does not hold them all.
pub fn node_in_tile(tile: &[u8], offset: usize, count: usize) -> Option<Hash> {
    let bytes = tile.get(offset.checked_mul(32)?..offset.checked_add(count)?.checked_mul(32)?)?;
    let mut level: Vec<Hash> = bytes
        .chunks_exact(32)
        .filter_map(|c| c.try_into().ok())
        .collect();
    while level.len() > 1 {
        let half = level.len() / 2;
        for i in 0..half {
            let (l, r) = (level[2 * i], level[2 * i + 1]);
            level[i] = node_hash(&l, &r);
        }
        level.truncate(half);
    }
    level.first().copied()
}

/// Reads tree nodes from a store of tiles: `read(tile level, tile index)` gives a tile's bytes
/// (see [`node_in_tile`]); a node is absent when its tile is, or is too short to hold it.
pub fn node_from_tiles<T: AsRef<[u8]>, E>(
    level: u8,
    index: u64,
    read: impl FnOnce(u8, u64) -> Result<Option<T>, E>,
) -> Result<Option<Hash>, E> {
    let Some((k, t, offset, count)) = tile_span(level, index) else {
        return Ok(None);
    };
    Ok(read(k, t)?.and_then(|tile| node_in_tile(tile.as_ref(), offset, count)))
}

/// The tile writes of `updates` (as from [`append_batch_updates`]): per tile touched, `(tile
/// level, tile index, offset of the first new hash, the new hashes' bytes)`, in key order.
/// Nodes at levels that are not a multiple of [`TILE_HEIGHT`] are dropped: tiles recompute them.
/// The new hashes of one tile are consecutive, as an append makes them.
pub fn tile_appends(updates: &[NodeUpdate]) -> Vec<(u8, u64, usize, Vec<u8>)> {
    let mut out: std::collections::BTreeMap<(u8, u64), (usize, Vec<u8>)> =
        std::collections::BTreeMap::new();
    for (level, index, hash) in updates {
        if level % TILE_HEIGHT != 0 {
            continue;
        }
        let Some((k, t, offset, _)) = tile_span(*level, *index) else {
            continue;
        };
        out.entry((k, t))
            .or_insert_with(|| (offset, Vec::new()))
            .1
            .extend_from_slice(hash);
    }
    out.into_iter()
        .map(|((k, t), (offset, bytes))| (k, t, offset, bytes))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::error::Error;

    use super::*;

    type TestResult = Result<(), Box<dyn Error>>;

    /// The leaf inputs of the Certificate Transparency reference tests (transparency-dev/merkle
    /// `testonly/constants.go`, google/certificate-transparency `merkle_tree_test.cc`).
    const CT_LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    /// Published MTH of the first n CT leaves, n = 0..=8.
    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// Published hashes of every complete subtree of the 8 CT leaves, by level then index
    /// (transparency-dev/merkle `testonly.NodeHashes`).
    const CT_NODES: [&[&str]; 4] = [
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        &[
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        &[
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ];

    /// Published inclusion proofs (transparency-dev/merkle `proof/verify_test.go`), as
    /// (0-based leaf index, tree size, path).
    const CT_INCLUSION: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    /// Published consistency proofs (transparency-dev/merkle `proof/verify_test.go`), as
    /// (old size, new size, proof).
    const CT_CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    /// Largest size in the exhaustive property tests.
    const MAX_SIZE: usize = 130;

    fn h(hex_str: &str) -> Result<Hash, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut out)?;
        Ok(out)
    }

    fn hs(hex_strs: &[&str]) -> Result<Vec<Hash>, hex::FromHexError> {
        hex_strs.iter().map(|s| h(s)).collect()
    }

    fn ct_leaves() -> Result<Vec<Vec<u8>>, hex::FromHexError> {
        CT_LEAVES.iter().map(hex::decode).collect()
    }

    /// The CT leaves followed by generated ones, `count` in all.
    fn leaves(count: usize) -> Result<Vec<Vec<u8>>, hex::FromHexError> {
        let mut data = ct_leaves()?;
        data.extend((data.len()..count).map(|i| format!("yrd leaf {i}").into_bytes()));
        data.truncate(count);
        Ok(data)
    }

    fn store_of(data: &[Vec<u8>]) -> Result<MemoryStore, MerkleError> {
        let mut store = MemoryStore::new();
        for leaf in data {
            store.append(leaf_hash(leaf))?;
        }
        Ok(store)
    }

    fn flip(hash: &Hash, bit: usize) -> Hash {
        let mut out = *hash;
        out[(bit / 8) % 32] ^= 1 << (bit % 8);
        out
    }

    fn u(n: usize) -> Result<u64, std::num::TryFromIntError> {
        u64::try_from(n)
    }

    // ---- Naive reference: RFC 6962 section 2.1 definitions over the leaf list, own hashing. ----

    fn ref_sha(prefix: &[u8], parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update(prefix);
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    /// The largest power of two `k < n` (n > 1), by counting.
    fn ref_k(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// The RFC 6962 functions over a fixed leaf list `D`, on index ranges `[lo, hi)`; MTH results
    /// are memoised so the exhaustive tests stay fast in debug builds.
    struct Reference {
        data: Vec<Vec<u8>>,
        memo: RefCell<HashMap<(usize, usize), Hash>>,
    }

    impl Reference {
        fn new(data: Vec<Vec<u8>>) -> Self {
            Self {
                data,
                memo: RefCell::new(HashMap::new()),
            }
        }

        /// MTH(D[lo:hi]).
        fn mth(&self, lo: usize, hi: usize) -> Hash {
            if let Some(hash) = self.memo.borrow().get(&(lo, hi)) {
                return *hash;
            }
            let hash = match hi - lo {
                0 => ref_sha(&[], &[]),
                1 => ref_sha(&[0], &[&self.data[lo]]),
                n => {
                    let k = ref_k(n);
                    ref_sha(&[1], &[&self.mth(lo, lo + k), &self.mth(lo + k, hi)])
                }
            };
            self.memo.borrow_mut().insert((lo, hi), hash);
            hash
        }

        /// PATH(m, D[lo:hi]).
        fn path(&self, m: usize, lo: usize, hi: usize) -> Vec<Hash> {
            if hi - lo <= 1 {
                return Vec::new();
            }
            let k = ref_k(hi - lo);
            let (mut path, sibling) = if m < k {
                (self.path(m, lo, lo + k), self.mth(lo + k, hi))
            } else {
                (self.path(m - k, lo + k, hi), self.mth(lo, lo + k))
            };
            path.push(sibling);
            path
        }

        /// SUBPROOF(m, D[lo:hi], b).
        fn subproof(&self, m: usize, lo: usize, hi: usize, b: bool) -> Vec<Hash> {
            if m == hi - lo {
                return if b {
                    Vec::new()
                } else {
                    vec![self.mth(lo, hi)]
                };
            }
            let k = ref_k(hi - lo);
            let (mut proof, sibling) = if m <= k {
                (self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi))
            } else {
                (
                    self.subproof(m - k, lo + k, hi, false),
                    self.mth(lo, lo + k),
                )
            };
            proof.push(sibling);
            proof
        }

        /// PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true).
        fn proof(&self, m: usize, n: usize) -> Vec<Hash> {
            self.subproof(m, 0, n, true)
        }
    }

    /// Wraps a store and counts its reads.
    struct Counting<'a, S> {
        inner: &'a S,
        reads: Cell<usize>,
    }

    impl<S: NodeStore> NodeStore for Counting<'_, S> {
        type Error = S::Error;

        fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, S::Error> {
            self.reads.set(self.reads.get() + 1);
            self.inner.get(level, index)
        }
    }

    /// A virtual tree of `size` identical leaves, so any size up to u64::MAX can be stored:
    /// the complete subtree at level l has the same hash everywhere.
    struct Uniform {
        size: u64,
        levels: Vec<Hash>,
    }

    impl Uniform {
        fn new(size: u64) -> Self {
            let mut levels = vec![leaf_hash(b"uniform")];
            for level in 1..64 {
                let below = levels[level - 1];
                levels.push(node_hash(&below, &below));
            }
            Self { size, levels }
        }
    }

    impl NodeStore for Uniform {
        type Error = Infallible;

        fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, Infallible> {
            // Present only if the whole subtree lies inside the tree.
            let end = index
                .checked_add(1)
                .and_then(|i| i.checked_mul(1u64 << (level % 64)));
            let inside = level < 64 && end.is_some_and(|end| end <= self.size);
            Ok(inside.then(|| self.levels[usize::from(level)]))
        }
    }

    #[test]
    fn hash_primitives_match_rfc6962() -> TestResult {
        assert_eq!(empty_root(), h(CT_ROOTS[0])?);
        assert_eq!(leaf_hash(b""), h(CT_ROOTS[1])?);
        assert_eq!(
            node_hash(&h(CT_NODES[0][0])?, &h(CT_NODES[0][1])?),
            h(CT_NODES[1][0])?
        );
        assert_eq!(node_key(3, 0x0102), [3, 0, 0, 0, 0, 0, 0, 0x01, 0x02]);
        Ok(())
    }

    #[test]
    fn known_answer_nodes_and_roots() -> TestResult {
        let data = ct_leaves()?;
        let store = store_of(&data)?;
        let mut expected_nodes = 0;
        for (level, nodes) in (0u8..).zip(CT_NODES) {
            for (index, node) in (0u64..).zip(nodes) {
                assert_eq!(
                    store.get(level, index)?,
                    Some(h(node)?),
                    "node ({level}, {index})"
                );
                expected_nodes += 1;
            }
        }
        assert_eq!(store.node_count(), expected_nodes);
        let reference = Reference::new(data);
        for (size, expected) in CT_ROOTS.iter().enumerate() {
            let expected = h(expected)?;
            assert_eq!(root(u(size)?, &store)?, expected, "root of size {size}");
            assert_eq!(
                reference.mth(0, size),
                expected,
                "reference root of size {size}"
            );
        }
        Ok(())
    }

    #[test]
    fn known_answer_inclusion_proofs() -> TestResult {
        let data = ct_leaves()?;
        let store = store_of(&data)?;
        let some_hash = h("abacaba000000000000000000000000000000000000000000060061e00123456")?;
        for (index, size, published) in CT_INCLUSION {
            let published = hs(published)?;
            let proof = inclusion_proof(index, size, &store)?;
            assert_eq!(proof, published, "inclusion proof ({index}, {size})");
            let leaf = store.get(0, index)?.ok_or("leaf missing")?;
            let tree_root = root(size, &store)?;
            verify_inclusion(&leaf, index, size, &proof, &tree_root)?;
            // The probes of transparency-dev's verifierCheck: all must be rejected.
            let mut probes = vec![
                (index.wrapping_sub(1), size, leaf, tree_root, proof.clone()),
                (index + 1, size, leaf, tree_root, proof.clone()),
                (index ^ 2, size, leaf, tree_root, proof.clone()),
                (index, size * 2, leaf, tree_root, proof.clone()),
                (index, size / 2, leaf, tree_root, proof.clone()),
                (
                    index,
                    size,
                    leaf_hash(b"WrongLeaf"),
                    tree_root,
                    proof.clone(),
                ),
                (index, size, leaf, empty_root(), proof.clone()),
                (index, size, leaf, some_hash, proof.clone()),
                (
                    index,
                    size,
                    leaf,
                    tree_root,
                    [proof.as_slice(), &[tree_root]].concat(),
                ),
                (
                    index,
                    size,
                    leaf,
                    tree_root,
                    [&[tree_root], proof.as_slice()].concat(),
                ),
            ];
            if let Some((_, shorter)) = proof.split_last() {
                probes.push((index, size, leaf, tree_root, shorter.to_vec()));
            }
            for (i, p) in probes.into_iter().enumerate() {
                let outcome = verify_inclusion(&p.2, p.0, p.1, &p.4, &p.3);
                assert!(outcome.is_err(), "probe {i} for ({index}, {size}) verified");
            }
        }
        Ok(())
    }

    #[test]
    fn known_answer_consistency_proofs() -> TestResult {
        let data = ct_leaves()?;
        let store = store_of(&data)?;
        for (old_size, new_size, published) in CT_CONSISTENCY {
            let published = hs(published)?;
            let proof = consistency_proof(old_size, new_size, &store)?;
            assert_eq!(
                proof, published,
                "consistency proof ({old_size}, {new_size})"
            );
            let old_root = root(old_size, &store)?;
            let new_root = root(new_size, &store)?;
            verify_consistency(old_size, new_size, &old_root, &new_root, &proof)?;
            if proof.is_empty() {
                continue;
            }
            let probes = [
                (old_size - 1, new_size, old_root, new_root, proof.clone()),
                (old_size + 1, new_size, old_root, new_root, proof.clone()),
                (old_size ^ 2, new_size, old_root, new_root, proof.clone()),
                (old_size, new_size * 2, old_root, new_root, proof.clone()),
                (old_size, new_size / 2, old_root, new_root, proof.clone()),
                (
                    old_size,
                    new_size,
                    leaf_hash(b"WrongRoot"),
                    new_root,
                    proof.clone(),
                ),
                (
                    old_size,
                    new_size,
                    old_root,
                    leaf_hash(b"WrongRoot"),
                    proof.clone(),
                ),
                (old_size, new_size, new_root, old_root, proof.clone()),
                (old_size, new_size, old_root, new_root, Vec::new()),
                (
                    old_size,
                    new_size,
                    old_root,
                    new_root,
                    [proof.as_slice(), &[old_root]].concat(),
                ),
                (
                    old_size,
                    new_size,
                    old_root,
                    new_root,
                    [&[new_root], proof.as_slice()].concat(),
                ),
                (
                    old_size,
                    new_size,
                    old_root,
                    new_root,
                    [&proof[..1], proof.as_slice()].concat(),
                ),
                (
                    old_size,
                    new_size,
                    old_root,
                    new_root,
                    proof[..proof.len() - 1].to_vec(),
                ),
            ];
            for (i, p) in probes.into_iter().enumerate() {
                let outcome = verify_consistency(p.0, p.1, &p.2, &p.3, &p.4);
                assert!(
                    outcome.is_err(),
                    "probe {i} for ({old_size}, {new_size}) verified"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn store_backed_proofs_match_reference_for_every_size() -> TestResult {
        let data = leaves(MAX_SIZE)?;
        let store = store_of(&data)?;
        let reference = Reference::new(data.clone());
        let counted = Counting {
            inner: &store,
            reads: Cell::new(0),
        };
        let mut roots = vec![empty_root()];
        for size in 1..=MAX_SIZE {
            let tree_root = root(u(size)?, &store)?;
            assert_eq!(tree_root, reference.mth(0, size), "root of size {size}");
            roots.push(tree_root);
        }
        for size in 1..=MAX_SIZE {
            let n = u(size)?;
            let read_limit = 2 * (64 - n.leading_zeros()) as usize;
            for (index, leaf_data) in data.iter().enumerate().take(size) {
                let i = u(index)?;
                counted.reads.set(0);
                let proof = inclusion_proof(i, n, &counted)?;
                assert!(
                    counted.reads.get() <= read_limit,
                    "reads for ({index}, {size})"
                );
                assert_eq!(
                    proof,
                    reference.path(index, 0, size),
                    "path ({index}, {size})"
                );
                assert_eq!(proof.len(), inclusion_proof_len(i, n)?);
                verify_inclusion(&leaf_hash(leaf_data), i, n, &proof, &roots[size])?;
            }
            for old_size in 0..=size {
                let m = u(old_size)?;
                counted.reads.set(0);
                let proof = consistency_proof(m, n, &counted)?;
                assert!(
                    counted.reads.get() <= read_limit,
                    "reads for ({old_size}, {size})"
                );
                let expected = if old_size == 0 {
                    Vec::new()
                } else {
                    reference.proof(old_size, size)
                };
                assert_eq!(proof, expected, "consistency ({old_size}, {size})");
                assert_eq!(proof.len(), consistency_proof_len(m, n)?);
                verify_consistency(m, n, &roots[old_size], &roots[size], &proof)?;
            }
        }
        Ok(())
    }

    #[test]
    fn tampered_inclusion_proofs_fail() -> TestResult {
        let data = leaves(MAX_SIZE)?;
        let store = store_of(&data)?;
        for size in 1..=MAX_SIZE {
            let n = u(size)?;
            let tree_root = root(n, &store)?;
            for (index, leaf_data) in data.iter().enumerate().take(size) {
                let i = u(index)?;
                let leaf = leaf_hash(leaf_data);
                let proof = inclusion_proof(i, n, &store)?;
                // One bit per hash, the position rotating across cases (all 256 are covered);
                // every_bit_of_a_small_proof_matters flips all of them for a few cases.
                let bit = (index * 37 + size * 11) % 256;
                let bad_leaf = verify_inclusion(&flip(&leaf, bit), i, n, &proof, &tree_root);
                assert_eq!(bad_leaf, Err(MerkleError::RootMismatch));
                let bad_root = verify_inclusion(&leaf, i, n, &proof, &flip(&tree_root, bit));
                assert_eq!(bad_root, Err(MerkleError::RootMismatch));
                for k in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[k] = flip(&bad[k], bit + 53 * k);
                    let outcome = verify_inclusion(&leaf, i, n, &bad, &tree_root);
                    assert_eq!(outcome, Err(MerkleError::RootMismatch), "({index}, {size})");
                }
                let wrong_lengths = [
                    [proof.as_slice(), &[leaf]].concat(),
                    [&[leaf], proof.as_slice()].concat(),
                    proof.iter().skip(1).copied().collect(),
                ];
                for bad in wrong_lengths.iter().filter(|bad| bad.len() != proof.len()) {
                    let outcome = verify_inclusion(&leaf, i, n, bad, &tree_root);
                    let expected = MerkleError::WrongProofLength {
                        expected: proof.len(),
                        actual: bad.len(),
                    };
                    assert_eq!(outcome, Err(expected), "({index}, {size})");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn tampered_consistency_proofs_fail() -> TestResult {
        let data = leaves(MAX_SIZE)?;
        let store = store_of(&data)?;
        let roots = (0..=MAX_SIZE).map(|n| root(u(n)?, &store).map_err(Into::into));
        let roots = roots.collect::<Result<Vec<_>, Box<dyn Error>>>()?;
        let rejected =
            |e: &MerkleError| matches!(e, MerkleError::RootMismatch | MerkleError::OldRootMismatch);
        for size in 2..=MAX_SIZE {
            let n = u(size)?;
            for old_size in 1..size {
                let m = u(old_size)?;
                let (old_root, new_root) = (roots[old_size], roots[size]);
                let proof = consistency_proof(m, n, &store)?;
                let bit = (old_size * 37 + size * 11) % 256;
                for k in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[k] = flip(&bad[k], bit + 53 * k);
                    let outcome = verify_consistency(m, n, &old_root, &new_root, &bad);
                    assert!(outcome.is_err_and(|e| rejected(&e)), "({old_size}, {size})");
                }
                let bad_old = verify_consistency(m, n, &flip(&old_root, bit), &new_root, &proof);
                assert!(bad_old.is_err_and(|e| rejected(&e)), "({old_size}, {size})");
                let bad_new = verify_consistency(m, n, &old_root, &flip(&new_root, bit), &proof);
                assert_eq!(
                    bad_new,
                    Err(MerkleError::RootMismatch),
                    "({old_size}, {size})"
                );
                let wrong_lengths = [
                    [proof.as_slice(), &[new_root]].concat(),
                    [&[old_root], proof.as_slice()].concat(),
                    proof.iter().skip(1).copied().collect(),
                    Vec::new(),
                ];
                for bad in wrong_lengths.iter().filter(|bad| bad.len() != proof.len()) {
                    let outcome = verify_consistency(m, n, &old_root, &new_root, bad);
                    let expected = MerkleError::WrongProofLength {
                        expected: proof.len(),
                        actual: bad.len(),
                    };
                    assert_eq!(outcome, Err(expected), "({old_size}, {size})");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn every_bit_of_a_small_proof_matters() -> TestResult {
        let data = leaves(11)?;
        let store = store_of(&data)?;
        let (old_root, new_root) = (root(6, &store)?, root(11, &store)?);
        let leaf = leaf_hash(&data[9]);
        let inclusion = inclusion_proof(9, 11, &store)?;
        let consistency = consistency_proof(6, 11, &store)?;
        for bit in 0..256 {
            let bad = verify_inclusion(&flip(&leaf, bit), 9, 11, &inclusion, &new_root);
            assert!(bad.is_err(), "leaf bit {bit}");
            let bad = verify_inclusion(&leaf, 9, 11, &inclusion, &flip(&new_root, bit));
            assert!(bad.is_err(), "root bit {bit}");
            let bad = verify_consistency(6, 11, &flip(&old_root, bit), &new_root, &consistency);
            assert!(bad.is_err(), "old root bit {bit}");
            let bad = verify_consistency(6, 11, &old_root, &flip(&new_root, bit), &consistency);
            assert!(bad.is_err(), "new root bit {bit}");
            for k in 0..inclusion.len() {
                let mut proof = inclusion.clone();
                proof[k] = flip(&proof[k], bit);
                let bad = verify_inclusion(&leaf, 9, 11, &proof, &new_root);
                assert!(bad.is_err(), "inclusion[{k}] bit {bit}");
            }
            for k in 0..consistency.len() {
                let mut proof = consistency.clone();
                proof[k] = flip(&proof[k], bit);
                let bad = verify_consistency(6, 11, &old_root, &new_root, &proof);
                assert!(bad.is_err(), "consistency[{k}] bit {bit}");
            }
        }
        Ok(())
    }

    #[test]
    fn consistency_edge_cases() -> TestResult {
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let empty = empty_root();
        verify_consistency(0, 0, &empty, &empty, &[])?;
        verify_consistency(0, 5, &empty, &b, &[])?;
        verify_consistency(3, 3, &a, &a, &[])?;
        assert_eq!(
            verify_consistency(0, 5, &a, &b, &[]),
            Err(MerkleError::OldRootMismatch)
        );
        assert_eq!(
            verify_consistency(3, 3, &a, &b, &[]),
            Err(MerkleError::RootMismatch)
        );
        let long = MerkleError::WrongProofLength {
            expected: 0,
            actual: 1,
        };
        assert_eq!(
            verify_consistency(0, 0, &empty, &empty, &[empty]),
            Err(long.clone())
        );
        assert_eq!(
            verify_consistency(0, 1, &empty, &a, &[empty]),
            Err(long.clone())
        );
        assert_eq!(verify_consistency(1, 1, &a, &a, &[a]), Err(long));
        let short = MerkleError::WrongProofLength {
            expected: 1,
            actual: 0,
        };
        assert_eq!(verify_consistency(1, 2, &a, &b, &[]), Err(short));
        let regression = MerkleError::SizeRegression {
            old_size: 2,
            new_size: 1,
        };
        assert_eq!(
            verify_consistency(2, 1, &a, &b, &[]),
            Err(regression.clone())
        );
        let store = MemoryStore::new();
        assert_eq!(consistency_proof(2, 1, &store), Err(regression.widen()));
        assert_eq!(consistency_proof(0, 7, &store)?, Vec::<Hash>::new());
        Ok(())
    }

    #[test]
    fn argument_errors_are_typed() -> TestResult {
        let store = store_of(&leaves(5)?)?;
        let leaf = leaf_hash(b"");
        assert_eq!(root(0, &store)?, empty_root());
        assert_eq!(inclusion_proof(0, 0, &store), Err(MerkleError::EmptyTree));
        let out_of_range = MerkleError::IndexOutOfRange { index: 5, size: 5 };
        assert_eq!(inclusion_proof(5, 5, &store), Err(out_of_range.clone()));
        assert_eq!(
            verify_inclusion(&leaf, 0, 0, &[], &leaf),
            Err(MerkleError::EmptyTree)
        );
        assert_eq!(verify_inclusion(&leaf, 5, 5, &[], &leaf), Err(out_of_range));
        assert_eq!(inclusion_proof_len(0, 0), Err(MerkleError::EmptyTree));
        // Size 1: the root is the leaf hash and the proof is empty.
        verify_inclusion(&leaf, 0, 1, &[], &leaf)?;
        let bad = verify_inclusion(&leaf, 0, 1, &[leaf], &leaf);
        assert_eq!(
            bad,
            Err(MerkleError::WrongProofLength {
                expected: 0,
                actual: 1
            })
        );
        Ok(())
    }

    #[test]
    fn missing_nodes_and_store_errors_are_reported() -> TestResult {
        let mut store = store_of(&leaves(13)?)?;
        // Beyond the stored tree the needed nodes do not exist: leaf 0's sibling [8, 14) is
        // (2, 2) and (1, 6), read smallest first.
        let missing = inclusion_proof(0, 14, &store);
        assert_eq!(
            missing,
            Err(MerkleError::MissingNode { level: 1, index: 6 })
        );
        assert_eq!(
            root(16, &store),
            Err(MerkleError::MissingNode { level: 4, index: 0 })
        );
        store.remove(2, 2);
        assert_eq!(
            root(13, &store),
            Err(MerkleError::MissingNode { level: 2, index: 2 })
        );
        assert_eq!(
            consistency_proof(3, 13, &store),
            Err(MerkleError::MissingNode { level: 2, index: 2 })
        );
        let failing = |_: u8, _: u64| -> Result<Option<Hash>, String> { Err("disk".into()) };
        assert_eq!(
            root(3, &failing),
            Err(MerkleError::Store("disk".to_string()))
        );
        let appended = append_updates(0, leaf_hash(b""), failing);
        assert_eq!(appended, Err(MerkleError::Store("disk".to_string())));
        Ok(())
    }

    #[test]
    fn single_and_batched_appends_write_the_same_nodes() -> TestResult {
        let data = leaves(300)?;
        let hashes: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let single = store_of(&data)?;
        let mut batched = MemoryStore::new();
        let mut seed = 7usize;
        let mut next = 0;
        while next < hashes.len() {
            seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
            let end = (next + seed % 40).min(hashes.len());
            let size = batched.append_batch(&hashes[next..end])?;
            assert_eq!(size, u(end)?);
            next = end;
        }
        assert_eq!(batched.nodes, single.nodes);
        assert_eq!(batched.size(), 300);
        // Per-leaf updates: the leaf, then one parent per trailing one-bit of the old size.
        let mut store = MemoryStore::new();
        for (size, hash) in (0u64..).zip(&hashes) {
            let updates = append_updates(size, *hash, |l, i| store.get(l, i))?;
            assert_eq!(updates.len(), size.trailing_ones() as usize + 1);
            assert_eq!(updates.first().copied(), Some((0, size, *hash)));
            for (level, index, node) in updates {
                assert_eq!(single.get(level, index)?, Some(node));
                store.insert(level, index, node);
            }
        }
        Ok(())
    }

    #[test]
    fn appends_check_the_claimed_size() -> TestResult {
        let mut store = store_of(&leaves(6)?)?;
        let leaf = leaf_hash(b"next");
        let get = |l: u8, i: u64| store.get(l, i);
        assert_eq!(
            append_updates(5, leaf, get),
            Err(MerkleError::SizeMismatch { size: 5 })
        );
        assert_eq!(
            append_updates(7, leaf, get),
            Err(MerkleError::SizeMismatch { size: 7 })
        );
        assert_eq!(
            append_updates(0, leaf, get),
            Err(MerkleError::SizeMismatch { size: 0 })
        );
        assert_eq!(append_batch_updates(6, &[], get)?, Vec::new());
        assert_eq!(append_updates(6, leaf, get)?.len(), 1);
        assert_eq!(store.append(leaf)?, 7);
        let full = Uniform::new(u64::MAX);
        let get_full = |l: u8, i: u64| full.get(l, i);
        let overflow = append_updates(u64::MAX, leaf, get_full);
        assert_eq!(overflow, Err(MerkleError::SizeOverflow));
        let overflow = append_batch_updates(u64::MAX - 1, &[leaf, leaf], get_full);
        assert_eq!(overflow, Err(MerkleError::SizeOverflow));
        Ok(())
    }

    #[test]
    fn extreme_sizes_do_not_overflow() -> TestResult {
        let full = Uniform::new(u64::MAX);
        let counted = Counting {
            inner: &full,
            reads: Cell::new(0),
        };
        let leaf = full.levels[0];
        let half = 1u64 << 63;
        let mut expected_max_root = full.levels[0];
        for level in 1..64 {
            expected_max_root = node_hash(&full.levels[level], &expected_max_root);
        }
        assert_eq!(root(u64::MAX, &full)?, expected_max_root);
        assert_eq!(root(half, &full)?, full.levels[63]);
        let sizes = [u64::MAX, u64::MAX - 1, half + 1, half, half - 1, 3];
        for size in sizes {
            let tree_root = root(size, &full)?;
            for index in [0, 1, size / 2, size - 2, size - 1] {
                counted.reads.set(0);
                let proof = inclusion_proof(index, size, &counted)?;
                assert!(counted.reads.get() <= 128, "reads for ({index}, {size})");
                verify_inclusion(&leaf, index, size, &proof, &tree_root)?;
                let bad = verify_inclusion(&flip(&leaf, 1), index, size, &proof, &tree_root);
                assert_eq!(bad, Err(MerkleError::RootMismatch));
            }
            for old_size in sizes.into_iter().filter(|&m| m <= size) {
                counted.reads.set(0);
                let proof = consistency_proof(old_size, size, &counted)?;
                assert!(counted.reads.get() <= 128, "reads for ({old_size}, {size})");
                let old_root = root(old_size, &full)?;
                verify_consistency(old_size, size, &old_root, &tree_root, &proof)?;
            }
        }
        // The last possible leaf (index u64::MAX - 1) can be appended.
        let before = Uniform::new(u64::MAX - 1);
        let updates = append_updates(u64::MAX - 1, leaf, |l, i| before.get(l, i))?;
        assert_eq!(updates, vec![(0, u64::MAX - 1, leaf)]);
        Ok(())
    }

    #[test]
    fn errors_display_and_widen() {
        let error: MerkleError<String> = MerkleError::MissingNode { level: 2, index: 9 }.widen();
        assert_eq!(
            error.to_string(),
            "node (level 2, index 9) is missing from the store"
        );
        let store_error: MerkleError<std::io::Error> =
            MerkleError::Store(std::io::Error::other("x"));
        assert!(store_error.source().is_some());
    }

    /// Tiles built in uneven batches, as the provenance writer builds them.
    fn tiles_of(leaves: &[Hash], batch: usize) -> TestResultOf<HashMap<(u8, u64), Vec<u8>>> {
        let mut tiles: HashMap<(u8, u64), Vec<u8>> = HashMap::new();
        let mut size = 0u64;
        for chunk in leaves.chunks(batch) {
            let updates = append_batch_updates(size, chunk, |l, i| {
                node_from_tiles(l, i, |k, t| {
                    Ok::<_, Infallible>(tiles.get(&(k, t)).cloned())
                })
            })?;
            for (k, t, offset, bytes) in tile_appends(&updates) {
                let tile = tiles.entry((k, t)).or_default();
                assert_eq!(tile.len(), offset * 32, "new hashes follow the old");
                tile.extend_from_slice(&bytes);
                assert!(tile.len() <= 32 * TILE_WIDTH as usize);
            }
            size += u(chunk.len())?;
        }
        Ok(tiles)
    }

    type TestResultOf<T> = Result<T, Box<dyn Error>>;

    #[test]
    fn tiles_give_every_node_the_full_store_gives() -> TestResult {
        for (n, batch) in [
            (1u64, 1),
            (255, 7),
            (256, 256),
            (257, 1000),
            (600, 97),
            (66_000, 1024),
        ] {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let mut full = MemoryStore::new();
            full.append_batch(&leaves)?;
            let tiles = tiles_of(&leaves, batch)?;
            let tiled = |l: u8, i: u64| {
                node_from_tiles(l, i, |k, t| Ok::<_, Infallible>(tiles.get(&(k, t))))
            };
            for level in 0u8..18 {
                for index in 0..=(n >> level) {
                    assert_eq!(
                        tiled(level, index)?,
                        full.get(level, index)?,
                        "{n}: ({level}, {index})"
                    );
                }
            }
            assert_eq!(root(n, &tiled)?, root(n, &full)?);
            for seq in [0, n / 2, n - 1] {
                assert_eq!(
                    inclusion_proof(seq, n, &tiled)?,
                    inclusion_proof(seq, n, &full)?
                );
                assert_eq!(
                    consistency_proof(seq + 1, n, &tiled)?,
                    consistency_proof(seq + 1, n, &full)?
                );
            }
            // Only the base levels of tiles are kept: 256 leaves take one tile, not 511 nodes.
            let kept: usize = tiles.values().map(|t| t.len() / 32).sum();
            assert!(
                kept < n as usize + n as usize / 128 + 8,
                "{n}: {kept} hashes"
            );
        }
        Ok(())
    }

    #[test]
    fn a_tile_span_beyond_u64_is_no_node() {
        assert_eq!(tile_span(7, u64::MAX), None);
        assert_eq!(tile_span(0, u64::MAX), Some((0, u64::MAX >> 8, 255, 1)));
        assert_eq!(tile_span(9, 3), Some((1, 0, 6, 2)));
        assert_eq!(
            node_in_tile(&[0u8; 64], 1, 2),
            None,
            "a tile too short holds no node"
        );
    }
}
