//! The three-list catalogue (R1): what a node shares (offers), what it needs for its duties
//! (demands) and what it will not share (withheld), with the DCAT core and the fields of the
//! Chinese government resource catalogue; and the signed, sequence-numbered snapshot peers exchange.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::masking::MaskRule;
use crate::model::region::Region;
use crate::model::signed::Document;

/// 共享类型: how a dataset may be shared (R5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ShareType {
    /// 无条件共享: any member may fetch.
    Unconditional,
    /// 有条件共享: a signed request and a signed grant are needed.
    Conditional,
    /// 不予共享: refused, with the legal reason.
    NotShared,
}

impl ShareType {
    /// The Chinese catalogue term.
    pub fn zh(self) -> &'static str {
        match self {
            ShareType::Unconditional => "无条件共享",
            ShareType::Conditional => "有条件共享",
            ShareType::NotShared => "不予共享",
        }
    }
}

/// 共享方式: how the data is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ShareMethod {
    /// 文件下载: the whole dataset version is fetched peer to peer.
    File,
    /// 接口调用: served through an interface (recorded; delivery still peer to peer).
    Interface,
}

impl ShareMethod {
    /// The Chinese catalogue term.
    pub fn zh(self) -> &'static str {
        match self {
            ShareMethod::File => "文件下载",
            ShareMethod::Interface => "接口调用",
        }
    }
}

/// 更新周期 / dct:accrualPeriodicity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateCycle {
    /// 实时
    Realtime,
    /// 每日
    Daily,
    /// 每周
    Weekly,
    /// 每月
    Monthly,
    /// 每季度
    Quarterly,
    /// 每年
    Annual,
    /// 不定期
    Irregular,
}

impl UpdateCycle {
    /// The Chinese catalogue term.
    pub fn zh(self) -> &'static str {
        match self {
            UpdateCycle::Realtime => "实时",
            UpdateCycle::Daily => "每日",
            UpdateCycle::Weekly => "每周",
            UpdateCycle::Monthly => "每月",
            UpdateCycle::Quarterly => "每季度",
            UpdateCycle::Annual => "每年",
            UpdateCycle::Irregular => "不定期",
        }
    }

    /// The EU Publications Office frequency authority term used by DCAT-AP.
    pub fn eu_frequency(self) -> &'static str {
        match self {
            UpdateCycle::Realtime => "UPDATE_CONT",
            UpdateCycle::Daily => "DAILY",
            UpdateCycle::Weekly => "WEEKLY",
            UpdateCycle::Monthly => "MONTHLY",
            UpdateCycle::Quarterly => "QUARTERLY",
            UpdateCycle::Annual => "ANNUAL",
            UpdateCycle::Irregular => "IRREG",
        }
    }
}

/// 开放属性: whether the data is also open to the public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OpenAttribute {
    /// 无条件开放
    Open,
    /// 有条件开放
    ConditionallyOpen,
    /// 不予开放
    #[default]
    NotOpen,
}

impl OpenAttribute {
    /// The Chinese catalogue term.
    pub fn zh(self) -> &'static str {
        match self {
            OpenAttribute::Open => "无条件开放",
            OpenAttribute::ConditionallyOpen => "有条件开放",
            OpenAttribute::NotOpen => "不予开放",
        }
    }
}

/// A reference to one version of a data standard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaRef {
    /// Standard id, e.g. "enterprise-licence".
    pub id: String,
    /// Semantic version, e.g. "1.0.0".
    pub version: String,
    /// BLAKE3 (hex) of the canonical JSON of the standard's JSON Schema.
    pub digest: String,
}

/// 信息项: one field of the data, taken from the standard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InformationItem {
    /// Field name in the records.
    pub name: String,
    /// Title (Chinese / English).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// JSON type(s).
    pub data_type: String,
    /// Whether every record has it.
    pub required: bool,
    /// The kind of personal data it holds (the standard's `x-personal-data`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_data: Option<String>,
    /// How it leaves in every delivery unless a grant names it with another rule: personal
    /// fields never leave in clear (see docs/protocol.md, "Masking").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskRule>,
}

/// A time span (dct:temporal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Temporal {
    /// First day covered (YYYY-MM-DD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Last day covered (YYYY-MM-DD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// An offer (共享数据清单 entry): a dataset this node publishes, as the operator writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferInput {
    /// dct:identifier — unique within this node, `[a-z0-9][a-z0-9._-]{0,63}`.
    pub identifier: String,
    /// dct:title (名称).
    pub title: String,
    /// dct:description (摘要).
    pub description: String,
    /// dcat:theme — subject categories.
    #[serde(default)]
    pub theme: Vec<String>,
    /// dcat:keyword.
    #[serde(default)]
    pub keyword: Vec<String>,
    /// dct:format / dcat:mediaType of the distribution, e.g. "application/jsonl" or "text/csv".
    pub media_type: String,
    /// 信息资源代码 (resource code of the government resource catalogue).
    pub resource_code: String,
    /// 共享类型.
    pub share_type: ShareType,
    /// 共享条件 — required unless unconditional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_conditions: Option<String>,
    /// 共享方式.
    pub share_method: ShareMethod,
    /// 开放属性.
    #[serde(default)]
    pub open_attribute: OpenAttribute,
    /// 更新周期 / dct:accrualPeriodicity.
    pub update_cycle: UpdateCycle,
    /// dct:conformsTo — the standard, by id and version (the node fills in the digest).
    pub schema_id: String,
    /// Version of the standard.
    pub schema_version: String,
    /// dct:spatial — region codes covered (default: the node's region).
    #[serde(default)]
    pub spatial: Vec<Region>,
    /// dct:temporal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal: Option<Temporal>,
    /// dct:license (a URL or a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// dct:issued (YYYY-MM-DD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<String>,
    /// Query services: the fields a record can be looked up by (`/yrd/query/1`), e.g. `uscc`;
    /// each version gets a key index of them at publish. Empty: no query service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_keys: Vec<String>,
}

/// An offer as published in the catalogue: the operator's input completed by the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogueEntry {
    /// What the operator wrote.
    pub offer: OfferInput,
    /// dct:publisher — the organisation.
    pub publisher: String,
    /// The standard with its digest.
    pub conforms_to: SchemaRef,
    /// 信息项, from the standard.
    pub information_items: Vec<InformationItem>,
    /// dct:modified (RFC 3339).
    pub modified: String,
    /// Latest published version number, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<u64>,
    /// dcat:byteSize of the latest version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_size: Option<u64>,
    /// spdx:checksum (BLAKE3 hex) of the latest version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// A demand (履职需求数据清单 entry): data this node needs for its duties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Demand {
    /// Unique within this node.
    pub identifier: String,
    /// What is needed.
    pub title: String,
    /// The standard the data must conform to.
    pub schema_id: String,
    /// Acceptable versions as a semver requirement, e.g. "^1.0" or ">=1.2, <3".
    pub version_req: String,
    /// Why (履职事项).
    pub purpose: String,
    /// Legal basis (法律依据).
    pub legal_basis: String,
    /// How often it is needed.
    pub frequency: UpdateCycle,
    /// Regions whose data is needed (empty: any).
    #[serde(default)]
    pub regions: Vec<Region>,
}

/// A withheld entry (不予共享清单): a resource that will not be shared, with the legal reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Withheld {
    /// Unique within this node (may equal an offer identifier to refuse its fetches).
    pub identifier: String,
    /// The resource.
    pub title: String,
    /// 信息资源代码, if catalogued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_code: Option<String>,
    /// Why it is not shared.
    pub reason: String,
    /// The law or rule that says so.
    pub legal_basis: String,
}

/// A node's whole catalogue at one moment, signed as one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// The publishing node.
    pub publisher: String,
    /// Its region.
    pub region: Region,
    /// Its organisation.
    pub organisation: String,
    /// Rises by one with every change; peers refuse anything not newer than what they hold.
    pub sequence: u64,
    /// When this snapshot was signed (RFC 3339).
    pub issued_at: String,
    /// 共享数据清单.
    pub offers: Vec<CatalogueEntry>,
    /// 履职需求数据清单.
    pub demands: Vec<Demand>,
    /// 不予共享清单.
    pub withheld: Vec<Withheld>,
}

impl Document for Catalogue {
    const TYPE: &'static str = "catalogue";
}

/// A data standard: one version of a JSON Schema, published by an integrator's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaDoc {
    /// Standard id, `[a-z0-9][a-z0-9._-]{0,63}`.
    pub id: String,
    /// Semantic version.
    pub version: String,
    /// Title.
    pub title: String,
    /// The JSON Schema (draft 2020-12).
    pub schema: serde_json::Value,
    /// BLAKE3 (hex) of the canonical JSON of `schema`.
    pub digest: String,
    /// Publishing node.
    pub publisher: String,
    /// Its region.
    pub region: Region,
    /// When it was published (RFC 3339).
    pub published_at: String,
}

impl Document for SchemaDoc {
    const TYPE: &'static str = "schema";
}

/// Is `s` an acceptable identifier (datasets, standards, demands)?
pub fn valid_identifier(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}
