//! The setups the test files share: sample standards, offers and dataset versions, the provider
//! every exchange test starts from (Shanghai, node 0), and grants between two nodes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;
use yrd_node::api::exchange::{ApproveBody, RequestBody};
use yrd_node::model::catalogue::{
    Demand, OfferInput, OpenAttribute, ShareMethod, ShareType, UpdateCycle, Withheld,
};
use yrd_node::model::exchange::{DataFormat, Grant, Manifest};
use yrd_node::model::signed::Signed;
use yrd_node::node::access::GrantState;

use crate::api::Api;
use crate::{TestNet, WAIT, wait_until};

/// The sample standard the exchange tests use.
pub const STANDARD: &str = "enterprise-licence";
/// A standard of the same records that marks no field as personal data (the sample standard
/// without its `x-personal-data` annotations): what leaves under it is the publication itself.
pub const UNMARKED: &str = "enterprise-register";
/// The provider's unconditional offer (under [`UNMARKED`], so it is delivered as published).
pub const OPEN: &str = "sh-open";
/// The provider's conditional offer.
pub const COND: &str = "sh-cond";
/// The provider's not-shared offer.
pub const SECRET: &str = "sh-secret";
/// The provider's offer that its withheld list refuses.
pub const WITHHELD: &str = "sh-withheld";
/// The conditions of the conditional offer.
pub const COND_CONDITIONS: &str = "履职需要，经审批";
/// The stated reason of the not-shared offer.
pub const SECRET_REASON: &str = "涉及国家秘密";
/// The reason of the withheld entry.
pub const WITHHELD_REASON: &str = "数据治理整改中";
/// The legal basis of the withheld entry.
pub const WITHHELD_BASIS: &str = "《公共数据管理办法》第十条";
/// The provider's demand.
pub const DEMAND: &str = "js-social-insurance";
/// The fields the tests' conditional requests ask for.
pub const FIELDS: [&str; 4] = [
    "uscc",
    "enterprise_name",
    "legal_representative",
    "legal_representative_id_number",
];

/// The JSON Schema of the sample standard `id`.
pub fn sample_schema(id: &str) -> Result<Value> {
    let text = yrd_node::samples::schema_json(id).context("no sample standard of that id")?;
    Ok(serde_json::from_str(text)?)
}

/// The sample standard `id` with no field marked as personal data, as standard `as_id`.
pub fn unmarked_schema(id: &str, as_id: &str) -> Result<Value> {
    let mut schema = sample_schema(id)?;
    schema["$id"] = format!("https://yrd.example/schemas/datasets/{as_id}/1.0.0").into();
    if let Some(props) = schema["properties"].as_object_mut() {
        for prop in props.values_mut() {
            if let Some(p) = prop.as_object_mut() {
                p.remove("x-personal-data");
            }
        }
    }
    Ok(schema)
}

/// Publishes [`UNMARKED`] (version 1.0.0) on the node behind `api`.
pub async fn publish_unmarked_standard(api: &Api) -> Result<()> {
    api.publish_schema(UNMARKED, "1.0.0", &unmarked_schema(STANDARD, UNMARKED)?)
        .await?;
    Ok(())
}

/// Publishes the sample data standard `id` (version 1.0.0) on the node behind `api`.
pub async fn publish_sample_standard(api: &Api, id: &str) -> Result<()> {
    api.publish_schema(id, "1.0.0", &sample_schema(id)?).await?;
    Ok(())
}

/// Writes `records` as JSON Lines to `path`.
pub fn write_jsonl(path: &Path, records: &[Value]) -> Result<()> {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text)?;
    Ok(())
}

/// Writes `records` sample records of `standard` (generator `seed`) to `path`.
pub fn write_sample_records(path: &Path, standard: &str, records: usize, seed: u64) -> Result<()> {
    write_jsonl(path, &yrd_node::samples::generate(standard, records, seed)?)
}

/// The BLAKE3 digest (hex) of a file, as manifests name it.
pub fn file_digest(path: &Path) -> Result<String> {
    Ok(blake3::hash(&std::fs::read(path)?).to_hex().to_string())
}

/// Writes `records` sample records of `standard` (generator `seed`) to `dir/DATASET-SEED.jsonl`
/// and publishes them as the next version of the offer `dataset`; returns the file.
pub async fn publish_sample_version(
    api: &Api,
    dir: &Path,
    dataset: &str,
    standard: &str,
    records: usize,
    seed: u64,
) -> Result<(PathBuf, Signed<Manifest>)> {
    let file = dir.join(format!("{dataset}-{seed}.jsonl"));
    write_sample_records(&file, standard, records, seed)?;
    let manifest = api
        .publish_version(dataset, &file, DataFormat::Jsonl)
        .await?;
    Ok((file, manifest))
}

/// Node 0 of `net` as the provider (`provider`), a 30-day grant of its conditional offer to
/// node 1 for `purpose` (fields [`FIELDS`]), and node 1's first fetch under it.
pub async fn granted_fetch(
    net: &TestNet,
    dir: &Path,
    purpose: &str,
) -> Result<(Signed<Grant>, yrd_node::node::transfer::TransferView)> {
    provider(net, dir, 20).await?;
    let (sh, js) = (net.api(0)?, net.api(1)?);
    let request = request_body(COND, purpose, &FIELDS);
    let grant = grant(&sh, &js, &request, &approval_30_days()).await?;
    let fetched = js.fetch_done(&format!("310000/{COND}")).await?;
    anyhow::ensure!(
        fetched.grant.as_deref() == Some(grant.document.id.as_str()),
        "fetched under {:?}, not grant {}",
        fetched.grant,
        grant.document.id
    );
    Ok((grant, fetched))
}

/// An approval as requested (fields, default masks, fetch), valid for 30 days.
pub fn approval_30_days() -> ApproveBody {
    ApproveBody {
        masks: Vec::new(),
        expires: Some("30d".into()),
        fields: None,
        modes: Vec::new(),
        query_limits: None,
    }
}

/// Fetches `target` until a version above `version` arrives (the provider published one);
/// returns that transfer.
pub async fn fetch_newer(
    api: &Api,
    target: &str,
    version: Option<u64>,
) -> Result<yrd_node::node::transfer::TransferView> {
    wait_until("a newer version fetched", WAIT, || async {
        let t = api.fetch_done(target).await?;
        Ok((t.version > version).then_some(t))
    })
    .await
}

/// An offer `id` of data under `standard` 1.0.0; `conditions` are the share conditions (or
/// the reason it is not shared).
pub fn offer(id: &str, standard: &str, share: ShareType, conditions: Option<&str>) -> OfferInput {
    OfferInput {
        identifier: id.into(),
        title: format!("营业执照 {id}"),
        description: "测试数据".into(),
        theme: Vec::new(),
        keyword: vec!["营业执照".into()],
        media_type: "application/jsonl".into(),
        resource_code: "310000-SCJG-00001".into(),
        share_type: share,
        share_conditions: conditions.map(str::to_string),
        share_method: ShareMethod::File,
        open_attribute: OpenAttribute::default(),
        update_cycle: UpdateCycle::Daily,
        schema_id: standard.into(),
        schema_version: "1.0.0".into(),
        spatial: Vec::new(),
        temporal: None,
        license: None,
        issued: None,
        query_keys: Vec::new(),
    }
}

/// What the provider published.
#[derive(Debug)]
pub struct Provider {
    /// The file of version 1 of the unconditional offer (and of the withheld one).
    pub open: PathBuf,
    /// The file of version 1 of the conditional offer (300 records).
    pub cond: PathBuf,
}

/// Shanghai (node 0) publishes the standard (and [`UNMARKED`]), four offers (unconditional, conditional, not
/// shared, and one its withheld list refuses), a demand, and version 1 of the shared offers
/// (`open_records` records unconditional, 300 conditional); returns once every other node holds
/// that catalogue.
pub async fn provider(net: &TestNet, dir: &Path, open_records: usize) -> Result<Provider> {
    let sh = net.api(0)?;
    publish_sample_standard(&sh, STANDARD).await?;
    publish_unmarked_standard(&sh).await?;
    for o in [
        offer(OPEN, UNMARKED, ShareType::Unconditional, None),
        offer(
            COND,
            STANDARD,
            ShareType::Conditional,
            Some(COND_CONDITIONS),
        ),
        offer(SECRET, STANDARD, ShareType::NotShared, Some(SECRET_REASON)),
        offer(WITHHELD, UNMARKED, ShareType::Unconditional, None),
    ] {
        sh.add_offer(&o).await?;
    }
    sh.add_withheld(&Withheld {
        identifier: WITHHELD.into(),
        title: "暂停共享的执照".into(),
        resource_code: None,
        reason: WITHHELD_REASON.into(),
        legal_basis: WITHHELD_BASIS.into(),
    })
    .await?;
    sh.add_demand(&Demand {
        identifier: DEMAND.into(),
        title: "江苏省社保缴费信息".into(),
        schema_id: STANDARD.into(),
        version_req: "^1".into(),
        purpose: "跨省通办资格核验".into(),
        legal_basis: "《社会保险法》".into(),
        frequency: UpdateCycle::Monthly,
        regions: vec!["320000".parse()?],
    })
    .await?;
    let (open, _) = publish_sample_version(&sh, dir, OPEN, STANDARD, open_records, 1).await?;
    let (cond, _) = publish_sample_version(&sh, dir, COND, STANDARD, 300, 2).await?;
    sh.publish_version(WITHHELD, &open, DataFormat::Jsonl)
        .await?;
    net.wait_catalogue_of(0).await?;
    Ok(Provider { open, cond })
}

/// A request for `dataset` of the provider (region 310000) with `purpose` and `fields`.
pub fn request_body(dataset: &str, purpose: &str, fields: &[&str]) -> RequestBody {
    RequestBody {
        target: format!("310000/{dataset}"),
        purpose: purpose.into(),
        basis: "《优化营商环境条例》第三十七条".into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
    }
}

/// `requester` asks `provider` with `request`, `provider` approves with `approval`; returns
/// the grant once `requester` holds it, valid.
pub async fn grant(
    provider: &Api,
    requester: &Api,
    request: &RequestBody,
    approval: &ApproveBody,
) -> Result<Signed<Grant>> {
    let asked = requester.request(request).await?;
    let grant = provider.approve(&asked.id, approval).await?;
    let id = grant.document.id.clone();
    wait_until("the grant to reach the requester", WAIT, || async {
        Ok(requester.grant(&id).await?.state == GrantState::Valid)
    })
    .await?;
    Ok(grant)
}

/// A federation charter genesis (docs/charter.md) of `members` (key, region), all founders with
/// fictitious member ids, `threshold` of them to sign changes, issued at the start of 2026 and
/// valid until 2099, signed by the first `threshold` of them.
pub fn founders_charter(
    members: &[(&yrd_node::identity::NodeKey, u32)],
    threshold: u32,
) -> Result<yrd_node::model::charter::SignedCharter> {
    use yrd_node::model::charter::{CharterMember, MemberKey, Role, SignedCharter};
    use yrd_node::model::region::Region;
    let mut list = Vec::new();
    for (n, (key, region)) in members.iter().enumerate() {
        let region = Region::from_code(*region)?;
        list.push(CharterMember {
            member_id: yrd_node::devnet::fictitious_member_id(region, n + 1),
            organisation: format!("{}大数据中心", region.name_zh()),
            region,
            role: Role::Founder,
            keys: vec![MemberKey::ed25519_hex(key.public_hex())],
        });
    }
    let mut charter = SignedCharter::draft(crate::charter::genesis(list, threshold));
    for (key, _) in members.iter().take(threshold as usize) {
        charter.sign(key.signing_key())?;
    }
    Ok(charter)
}
