//! The schema registry: publishing data standards (signed `SchemaDoc`s), accepting those of other
//! members (at most `sync.max_standards_per_member` versions from each), the rules that keep an
//! id+version immutable and minor versions compatible, and [`Standards`], the in-memory index
//! by id and version every lookup reads (the database is read once, at start).

use std::collections::{BTreeMap, HashMap};

use libp2p::PeerId;
use parking_lot::RwLock;
use schemars::JsonSchema;
use semver::Version;
use serde::{Deserialize, Serialize};

use super::{Node, NodeError};
use crate::clock::now_rfc3339;
use crate::model::canonical;
use crate::model::catalogue::{SchemaDoc, valid_identifier};
use crate::model::message::{Announcement, SchemaHead};
use crate::model::signed::Signed;
use crate::model::standard::{self, CompiledStandard};

/// What `yrd schema list` shows per standard version.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SchemaSummary {
    /// Standard id.
    pub id: String,
    /// Version.
    pub version: String,
    /// Title.
    pub title: String,
    /// Content digest.
    pub digest: String,
    /// Publishing node.
    pub publisher: String,
    /// "310000 上海市 Shanghai".
    pub region_label: String,
    /// When it was published.
    pub published_at: String,
    /// Whether we published it.
    pub ours: bool,
}

/// BLAKE3 hex of the canonical JSON of a schema: the digest a `SchemaRef` names.
pub fn schema_digest(schema: &serde_json::Value) -> Result<String, NodeError> {
    let canon = canonical::canonicalize(schema).map_err(|e| {
        NodeError::invalid("schema", format!("schema is not canonicalizable JSON: {e}"))
    })?;
    Ok(blake3::hash(canon.as_bytes()).to_hex().to_string())
}

fn parse_version(v: &str) -> Result<Version, NodeError> {
    Version::parse(v).map_err(|e| {
        NodeError::invalid(
            "version",
            format!("version {v:?} is not a semantic version like 1.2.0 ({e})"),
        )
    })
}

/// Every standard version held, by id and then version, and how many each publisher has: the
/// index lookups read, so none scans the registry or touches the database.
#[derive(Debug, Default)]
pub(crate) struct Standards {
    held: RwLock<Index>,
    /// Compiled validators by `id@version` and projection (an id+version never changes, so
    /// an entry never goes stale); at most [`MAX_COMPILED`], emptied when full.
    compiled: parking_lot::Mutex<HashMap<String, std::sync::Arc<CompiledStandard>>>,
}

/// Compiled standards kept at once (each a few KiB to a few hundred).
const MAX_COMPILED: usize = 64;

#[derive(Debug, Default)]
struct Index {
    by_id: BTreeMap<String, BTreeMap<Version, Signed<SchemaDoc>>>,
    per_publisher: HashMap<String, usize>,
}

impl Standards {
    /// Keeps a standard the registry rules accepted (or one read back at start).
    pub(crate) fn insert(&self, doc: Signed<SchemaDoc>) -> Result<(), NodeError> {
        let version = parse_version(&doc.document.version)?;
        let mut held = self.held.write();
        let publisher = doc.document.publisher.clone();
        let versions = held.by_id.entry(doc.document.id.clone()).or_default();
        if versions.insert(version, doc).is_none() {
            *held.per_publisher.entry(publisher).or_default() += 1;
        }
        Ok(())
    }

    /// The standard compiled under `key` (`id@version`, and the projection if any), compiled
    /// from `schema` on first use. Compiling costs milliseconds; every fetch, query and
    /// publish needs one.
    pub(crate) fn compiled(
        &self,
        key: &str,
        schema: impl FnOnce() -> Result<CompiledStandard, NodeError>,
    ) -> Result<std::sync::Arc<CompiledStandard>, NodeError> {
        if let Some(c) = self.compiled.lock().get(key) {
            return Ok(c.clone());
        }
        let c = std::sync::Arc::new(schema()?);
        let mut cache = self.compiled.lock();
        if cache.len() >= MAX_COMPILED {
            cache.clear();
        }
        cache.insert(key.to_string(), c.clone());
        Ok(c)
    }

    /// `id` at `version`, or its highest version.
    pub(crate) fn get(&self, id: &str, version: Option<&str>) -> Option<Signed<SchemaDoc>> {
        let held = self.held.read();
        let versions = held.by_id.get(id)?;
        match version {
            Some(v) => versions.get(&Version::parse(v).ok()?).cloned(),
            None => versions.values().next_back().cloned(),
        }
    }

    /// Every version of `id`, lowest first.
    pub(crate) fn versions(&self, id: &str) -> Vec<Signed<SchemaDoc>> {
        let held = self.held.read();
        held.by_id
            .get(id)
            .map(|v| v.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every standard version, by id and version.
    pub(crate) fn all(&self) -> Vec<Signed<SchemaDoc>> {
        let held = self.held.read();
        held.by_id
            .values()
            .flat_map(|v| v.values().cloned())
            .collect()
    }

    /// What `heads` answers: id, version and digest of every standard version, without copying
    /// the schemas.
    pub(crate) fn heads(&self) -> Vec<SchemaHead> {
        let held = self.held.read();
        held.by_id
            .values()
            .flat_map(|v| v.values())
            .map(|d| SchemaHead {
                id: d.document.id.clone(),
                version: d.document.version.clone(),
                digest: d.document.digest.clone(),
            })
            .collect()
    }

    /// How many standard versions of `publisher` are held.
    pub(crate) fn count_of(&self, publisher: &str) -> usize {
        self.held
            .read()
            .per_publisher
            .get(publisher)
            .copied()
            .unwrap_or(0)
    }
}

impl Node {
    /// Reads every stored standard into the index (at start).
    pub(crate) fn load_schemas(&self) -> Result<(), NodeError> {
        for raw in self.store().schemas()? {
            let doc = serde_json::from_value::<Signed<SchemaDoc>>(raw)
                .map_err(|e| NodeError::invalid("schema", e.to_string()))
                .and_then(|doc| self.inner.standards.insert(doc.clone()).map(|()| doc));
            if let Err(e) = doc {
                tracing::error!(error = %e, "unreadable stored schema skipped");
            }
        }
        Ok(())
    }

    /// Every standard version we hold, by id and version.
    pub fn schema_docs(&self) -> Result<Vec<Signed<SchemaDoc>>, NodeError> {
        Ok(self.inner.standards.all())
    }

    /// One standard: `version` or, when `None`, the highest version held.
    pub fn schema_doc(
        &self,
        id: &str,
        version: Option<&str>,
    ) -> Result<Signed<SchemaDoc>, NodeError> {
        let found = self.inner.standards.get(id, version);
        found.ok_or_else(|| {
            NodeError::NotFound(match version {
                Some(v) => format!("no standard {id}@{v} is known"),
                None => format!("no standard {id} is known"),
            })
        })
    }

    /// Summaries for `yrd schema list`; `network = false` lists only ours.
    pub fn schema_summaries(&self, network: bool) -> Result<Vec<SchemaSummary>, NodeError> {
        let ours = |d: &Signed<SchemaDoc>| {
            d.document
                .publisher
                .parse::<PeerId>()
                .is_ok_and(|p| self.is_own_key(&p))
        };
        Ok(self
            .schema_docs()?
            .into_iter()
            .filter(|d| network || ours(d))
            .map(|d| SchemaSummary {
                ours: ours(&d),
                id: d.document.id,
                version: d.document.version,
                title: d.document.title,
                digest: d.document.digest,
                publisher: d.document.publisher,
                region_label: d.document.region.label(),
                published_at: d.document.published_at,
            })
            .collect())
    }

    /// Checks a standard against the registry rules; `Ok(true)` if the very same content is
    /// already held (nothing to do).
    fn check_schema_rules(&self, doc: &SchemaDoc) -> Result<bool, NodeError> {
        if !valid_identifier(&doc.id) {
            return Err(NodeError::invalid(
                "id",
                format!(
                    "standard id {:?}: expected 1-64 characters of a-z 0-9 . _ - starting with a letter or digit",
                    doc.id
                ),
            ));
        }
        let new_version = parse_version(&doc.version)?;
        standard::compile(&doc.schema).map_err(|e| {
            NodeError::invalid("schema", format!("{}@{}: {e}", doc.id, doc.version))
        })?;
        let digest = schema_digest(&doc.schema)?;
        if digest != doc.digest {
            return Err(NodeError::invalid(
                "digest",
                format!(
                    "{}@{}: digest {} does not match the schema's content ({digest})",
                    doc.id, doc.version, doc.digest
                ),
            ));
        }
        let existing = self.inner.standards.versions(&doc.id);
        if let Some(owner) = existing.first().map(|d| d.document.publisher.clone()) {
            // Under a charter a standard is its member's: a publisher that rotated its key
            // goes on adding versions under the new one.
            let owners = owner == doc.publisher
                || doc
                    .publisher
                    .parse::<PeerId>()
                    .is_ok_and(|p| self.same_party(&owner, &p));
            if !owners {
                return Err(NodeError::Conflict(format!(
                    "standard {} belongs to {owner}; another publisher cannot add versions to it",
                    doc.id
                )));
            }
        }
        if let Some(same) = existing.iter().find(|d| d.document.version == doc.version) {
            if same.document.digest == doc.digest {
                return Ok(true);
            }
            return Err(NodeError::Conflict(format!(
                "{}@{} is already published with different content (digest {}); publish a new version",
                doc.id, doc.version, same.document.digest
            )));
        }
        // The previous version is the highest one below the new one.
        let previous = existing
            .iter()
            .filter_map(|d| Version::parse(&d.document.version).ok().map(|v| (v, d)))
            .filter(|(v, _)| *v < new_version)
            .max_by(|a, b| a.0.cmp(&b.0));
        if let Some((prev_version, prev)) = previous {
            standard::check_version_step(
                &prev_version,
                &prev.document.schema,
                &new_version,
                &doc.schema,
            )
            .map_err(|e| NodeError::invalid("schema", e.to_string()))?;
        }
        Ok(false)
    }

    /// Publishes a data standard: validates, signs, stores, announces.
    pub async fn publish_schema(
        &self,
        id: &str,
        version: &str,
        title: Option<String>,
        schema: serde_json::Value,
    ) -> Result<Signed<SchemaDoc>, NodeError> {
        let _guard = self.inner.write_lock.lock().await;
        let title = title
            .or_else(|| {
                schema
                    .get("title")
                    .and_then(|t| t.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| id.to_string());
        let doc = SchemaDoc {
            id: id.to_string(),
            version: version.to_string(),
            title,
            digest: schema_digest(&schema)?,
            schema,
            publisher: self.peer_id_text().to_owned(),
            region: self.region(),
            published_at: now_rfc3339(),
        };
        if self.check_schema_rules(&doc)? {
            return self.schema_doc(id, Some(version));
        }
        let signed = Signed::sign(doc, self.inner.key.signing_key())?;
        self.store().put_schema(id, version, &to_json(&signed)?)?;
        self.inner.standards.insert(signed.clone())?;
        self.store().flush().await?;
        tracing::info!(schema = %id, version = %version, "standard published");
        self.announce(Announcement::Schema {
            publisher: self.peer_id_text().to_owned(),
            id: id.to_string(),
            version: version.to_string(),
            digest: signed.document.digest.clone(),
            schema: Some(Box::new(signed.clone())),
        })
        .await;
        let mut r = self.new_record(crate::model::provenance::RecordKind::SchemaPublished);
        r.dataset = Some(id.to_string());
        r.data_digest = Some(signed.document.digest.clone());
        self.record(
            r,
            None,
            super::provenance::doc(&signed).into_iter().collect(),
        )
        .await;
        Ok(signed)
    }

    /// Accepts a standard a member sent; refuses (and logs) anything that breaks the rules.
    /// The entry point of every standard that arrives from the network.
    pub async fn accept_schema(
        &self,
        from: PeerId,
        signed: Signed<SchemaDoc>,
    ) -> Result<bool, NodeError> {
        signed.verify()?;
        let publisher = self.signer_peer(&signed.signer_key()?, &signed.document.publisher)?;
        if publisher != self.peer_id() && !self.members().contains(&publisher) {
            return Err(NodeError::BadPeer {
                peer: from,
                reason: format!("standard published by non-member {publisher}"),
            });
        }
        let _guard = self.inner.write_lock.lock().await;
        if self.check_schema_rules(&signed.document)? {
            return Ok(false);
        }
        // A member's standards take space and lookup time on every node: a quota each.
        let quota = self.config().sync.max_standards_per_member;
        if publisher != self.peer_id()
            && self.inner.standards.count_of(&signed.document.publisher) >= quota
        {
            return Err(NodeError::BadPeer {
                peer: from,
                reason: format!(
                    "{}@{} refused: {publisher} already has {quota} standard versions here (sync.max_standards_per_member)",
                    signed.document.id, signed.document.version
                ),
            });
        }
        self.store().put_schema(
            &signed.document.id,
            &signed.document.version,
            &to_json(&signed)?,
        )?;
        self.inner.standards.insert(signed.clone())?;
        tracing::info!(
            peer = %from,
            schema = %signed.document.id,
            version = %signed.document.version,
            "standard received"
        );
        Ok(true)
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, NodeError> {
    serde_json::to_value(value).map_err(NodeError::Encode)
}
