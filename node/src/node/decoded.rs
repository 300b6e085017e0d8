//! Documents read on every request — the offers and withheld list a fetch or query is judged
//! against, the latest manifest a query answers from, the grants a caller picks from and a
//! provider checks a query's grant against — decoded once per change instead of from sled on
//! every call, and handed out shared (`Arc`), not copied.
//!
//! Invariant: an entry is kept with the store's write generation of its tree read *before* the
//! tree was read ([`Store::local_lists_generation`], [`Store::manifests_generation`],
//! [`Store::grants_generation`]); the store moves a generation on after each write, so an
//! entry is used only while no write has completed since it was read, and a read racing a
//! write is read again next time. Kept: our own lists and at most [`MAX_MANIFESTS`] of our
//! manifests (written by this node's operator and publishing), and the grants tree as a whole
//! (what decoding it on each call would hold anyway, once).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::access::{Direction, GrantRecord};
use crate::model::catalogue::{CatalogueEntry, Withheld};
use crate::model::exchange::Manifest;
use crate::model::signed::Signed;
use crate::store::Store;

use super::{Node, NodeError};

/// How many datasets' latest manifests are kept; past it the map starts again empty.
const MAX_MANIFESTS: usize = 1024;

/// What [`Node::own_lists`] returns: our offers and withheld list, shared.
#[derive(Debug, Clone)]
pub(crate) struct OwnLists {
    pub offers: Arc<Vec<Arc<CatalogueEntry>>>,
    pub withheld: Arc<Vec<Withheld>>,
}

/// Every grant we issued or hold, each shared: a caller's grant rides along with its call.
pub(crate) type SharedGrants = Arc<DecodedGrants>;

/// The grants tree decoded: every record, newest first, and those we issued by id (a provider
/// checks the grant a query names on every call).
#[derive(Debug, Default)]
pub(crate) struct DecodedGrants {
    pub all: Vec<Arc<GrantRecord>>,
    issued: HashMap<String, Arc<GrantRecord>>,
}

impl DecodedGrants {
    fn new(list: Vec<GrantRecord>) -> DecodedGrants {
        let all: Vec<Arc<GrantRecord>> = list.into_iter().map(Arc::new).collect();
        let issued = all
            .iter()
            .filter(|g| g.direction == Direction::Out)
            .map(|g| (g.id.clone(), g.clone()))
            .collect();
        DecodedGrants { all, issued }
    }

    /// The grant we issued with this id.
    pub fn issued(&self, id: &str) -> Option<&Arc<GrantRecord>> {
        self.issued.get(id)
    }
}

/// A decoded document and the store generation it was read at.
type Kept<T> = (u64, T);

/// The decoded documents.
#[derive(Default)]
pub(crate) struct Decoded {
    lists: Mutex<Option<Kept<OwnLists>>>,
    manifests: Mutex<HashMap<String, Kept<Arc<Signed<Manifest>>>>>,
    grants: Mutex<Option<Kept<SharedGrants>>>,
}

impl Node {
    fn decoded(&self) -> &Decoded {
        &self.inner.decoded
    }

    /// Our offers and withheld list, as stored now.
    pub(crate) fn own_lists(&self) -> Result<OwnLists, NodeError> {
        let store: &Store = self.store();
        let generation = store.local_lists_generation();
        if let Some((g, lists)) = self.decoded().lists.lock().as_ref()
            && *g == generation
        {
            return Ok(lists.clone());
        }
        let lists = OwnLists {
            offers: Arc::new(self.offers()?.into_iter().map(Arc::new).collect()),
            withheld: Arc::new(self.withheld()?),
        };
        *self.decoded().lists.lock() = Some((generation, lists.clone()));
        Ok(lists)
    }

    /// The latest version we published of `dataset`, as stored now.
    pub(crate) fn own_latest_manifest(
        &self,
        dataset: &str,
    ) -> Result<Option<Arc<Signed<Manifest>>>, NodeError> {
        let generation = self.store().manifests_generation();
        if let Some((g, m)) = self.decoded().manifests.lock().get(dataset)
            && *g == generation
        {
            return Ok(Some(m.clone()));
        }
        let Some(m) = self.manifest(None, dataset, None)? else {
            return Ok(None);
        };
        let m = Arc::new(m);
        let mut kept = self.decoded().manifests.lock();
        if kept.len() >= MAX_MANIFESTS && !kept.contains_key(dataset) {
            kept.clear();
        }
        kept.insert(dataset.to_string(), (generation, m.clone()));
        Ok(Some(m))
    }

    /// Every grant we issued or hold, newest first, as stored now.
    pub(crate) fn grants_shared(&self) -> Result<SharedGrants, NodeError> {
        let generation = self.store().grants_generation();
        if let Some((g, grants)) = self.decoded().grants.lock().as_ref()
            && *g == generation
        {
            return Ok(grants.clone());
        }
        let grants: SharedGrants = Arc::new(DecodedGrants::new(self.read_grants()?));
        *self.decoded().grants.lock() = Some((generation, grants.clone()));
        Ok(grants)
    }
}
