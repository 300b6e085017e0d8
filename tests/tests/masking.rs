//! Personal data never leaves in clear (issue 13, holes 1 and 2), between real nodes: a standard's
//! personal fields (`x-personal-data`) leave masked by their default in every delivery,
//! unconditional included, unless a grant names them with another rule; a version that cannot be
//! projected (`--format file`) is refused at publish when its standard has personal fields, and
//! refused at fetch under a grant that limits or masks fields; the catalogue and its exports say
//! which fields leave masked; and the evidence on both sides describes the projection applied.
//! A hostile member on the harness ([`yrd_tests::hostile`]) asks for what the fetcher would not
//! (the opaque version itself, every chunk of the unconditional offer) and gets no more.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use anyhow::Result;
use serde_json::Value;
use tempfile::TempDir;
use yrd_node::api::exchange::{ApproveBody, FetchBody};
use yrd_node::model::catalogue::ShareType;
use yrd_node::model::exchange::{DataFormat, Grant};
use yrd_node::model::provenance::RecordKind;
use yrd_node::model::refusal::RefusalCode;
use yrd_node::model::signed::Signed;
use yrd_node::model::transfer::{FetchOpen, FetchReply};
use yrd_node::node::transfer::{TransferStatus, TransferView};
use yrd_tests::api::fetch_body;
use yrd_tests::fixtures::{
    FIELDS, STANDARD, UNMARKED, file_digest, grant, offer, publish_sample_standard,
    publish_unmarked_standard, request_body, write_sample_records,
};
use yrd_tests::hostile::{Served, quick_mesh, take_over};
use yrd_tests::{TestNet, WAIT, wait_until};

/// The provider's unconditional offer under the sample standard (personal fields marked).
const OPEN: &str = "sh-licences";
/// The provider's conditional offer under the sample standard.
const COND: &str = "sh-licences-cond";
/// The provider's conditional offer under [`UNMARKED`] (no personal field).
const PLAIN: &str = "sh-register";
/// The ID number field of the sample standard.
const ID: &str = "legal_representative_id_number";
/// The name field of the sample standard.
const NAME: &str = "legal_representative";
/// The purpose of the requests.
const PURPOSE: &str = "跨省通办企业核验";

/// Two meshed nodes; Shanghai (node 0) holds the sample standard and [`UNMARKED`] and offers
/// [`OPEN`], [`COND`] and [`PLAIN`], no version published yet.
async fn offered() -> Result<(TestNet, TempDir)> {
    offered_to(2).await
}

/// [`offered`] with `n` meshed nodes.
async fn offered_to(n: usize) -> Result<(TestNet, TempDir)> {
    let net = quick_mesh(n).await?;
    let dir = tempfile::tempdir()?;
    let sh = net.api(0)?;
    publish_sample_standard(&sh, STANDARD).await?;
    publish_unmarked_standard(&sh).await?;
    let conditions = Some("履职需要，经审批");
    for o in [
        offer(OPEN, STANDARD, ShareType::Unconditional, None),
        offer(COND, STANDARD, ShareType::Conditional, conditions),
        offer(PLAIN, UNMARKED, ShareType::Conditional, conditions),
    ] {
        sh.add_offer(&o).await?;
    }
    net.wait_catalogue_of(0).await?;
    Ok((net, dir))
}

fn target(dataset: &str) -> String {
    format!("310000/{dataset}")
}

fn records(text: &str) -> Result<Vec<Value>> {
    Ok(text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// `masked` is `original` with all but its first `first` and last `last` characters hidden.
fn assert_kept(masked: &Value, original: &Value, first: usize, last: usize) {
    let (m, o): (Vec<char>, Vec<char>) = (
        masked.as_str().unwrap().chars().collect(),
        original.as_str().unwrap().chars().collect(),
    );
    assert_eq!(m.len(), o.len(), "{masked} / {original}");
    assert_eq!(m[..first], o[..first], "{masked} / {original}");
    assert_eq!(m[m.len() - last..], o[o.len() - last..], "{masked}");
    assert!(
        m[first..m.len() - last].iter().all(|c| *c == '*'),
        "{masked}"
    );
}

/// Publishes `n` sample records of the sample standard as `dataset`'s next version (JSON Lines).
async fn publish(net: &TestNet, dir: &TempDir, dataset: &str, n: usize) -> Result<Vec<Value>> {
    let file = dir.path().join(format!("{dataset}.jsonl"));
    write_sample_records(&file, STANDARD, n, 5)?;
    net.api(0)?
        .publish_version(dataset, &file, DataFormat::Jsonl)
        .await?;
    records(&std::fs::read_to_string(&file)?)
}

/// What the fetch `t` delivered, downloaded.
async fn delivered(net: &TestNet, dir: &TempDir, t: &TransferView) -> Result<Vec<Value>> {
    let bytes = net.api(1)?.download(&t.id, dir.path()).await?;
    records(&String::from_utf8(bytes)?)
}

/// The fields and masking the provider's deliveries report and the receiver's received record
/// give for the one delivery of `dataset`.
async fn evidence(net: &TestNet, dataset: &str) -> Result<(String, String)> {
    let served = net.api(0)?.deliveries(dataset).await?;
    assert_eq!(served.len(), 1, "{served:?}");
    let received = net
        .api(1)?
        .provenance(Some(dataset), Some(RecordKind::DatasetReceived))
        .await?;
    assert_eq!(received.len(), 1, "{received:?}");
    Ok((
        served[0].fields.clone(),
        received[0].fields.clone().unwrap_or_default(),
    ))
}

// ------------------------------------------------------------------------------------------------
// Hole 1: versions that cannot be projected

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_version_of_an_offer_with_personal_fields_is_refused_at_publish() -> Result<()> {
    let (mut net, dir) = offered().await?;
    let sh = net.api(0)?;
    let raw = dir.path().join("raw.csv");
    write_sample_records(&raw, STANDARD, 20, 9)?;
    for dataset in [COND, OPEN] {
        let err = sh
            .publish_version(dataset, &raw, DataFormat::File)
            .await
            .expect_err("an opaque file of personal data");
        let text = err.to_string();
        assert!(text.contains("personal fields"), "{text}");
        assert!(text.contains(ID) && text.contains(NAME), "{text}");
        assert!(sh.versions(dataset).await?.is_empty());
    }
    // The same records as JSON Lines are published, and a standard without personal fields
    // still takes an opaque file.
    let m = sh.publish_version(COND, &raw, DataFormat::Jsonl).await?;
    assert_eq!(m.document.record_count, 20);
    let m = sh.publish_version(PLAIN, &raw, DataFormat::File).await?;
    assert_eq!(m.document.format, DataFormat::File);
    net.stop_all().await
}

/// [`offered`], then an opaque file of 20 records published as [`PLAIN`]'s version 1 and a
/// grant of it to node 1 approved with `approval`.
async fn file_granted(
    approval: &ApproveBody,
) -> Result<(TestNet, TempDir, std::path::PathBuf, Signed<Grant>)> {
    file_granted_on(2, approval).await
}

/// [`file_granted`] with `n` meshed nodes.
async fn file_granted_on(
    n: usize,
    approval: &ApproveBody,
) -> Result<(TestNet, TempDir, std::path::PathBuf, Signed<Grant>)> {
    let (net, dir) = offered_to(n).await?;
    let (sh, js) = (net.api(0)?, net.api(1)?);
    let raw = dir.path().join("raw.jsonl");
    write_sample_records(&raw, STANDARD, 20, 9)?;
    sh.publish_version(PLAIN, &raw, DataFormat::File).await?;
    let g = grant(&sh, &js, &request_body(PLAIN, PURPOSE, &[]), approval).await?;
    Ok((net, dir, raw, g))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_version_under_a_grant_that_limits_fields_is_refused_naming_why() -> Result<()> {
    let limited = ApproveBody {
        fields: Some(vec!["uscc".into(), "status".into()]),
        masks: vec!["uscc=keep:2:2".parse()?],
        expires: Some("1d".into()),
        modes: Vec::new(),
        query_limits: None,
    };
    let (mut net, _dir, raw, g) = file_granted(&limited).await?;
    let (sh, js) = (net.api(0)?, net.api(1)?);
    let refused = js
        .fetch_to_end(&FetchBody {
            grant: Some(g.document.id.clone()),
            ..fetch_body(&target(PLAIN))
        })
        .await?;
    assert_eq!(refused.status, TransferStatus::Failed, "{refused:?}");
    let why = refused.error.clone().unwrap_or_default();
    assert!(why.contains("grant-invalid"), "{why}");
    assert!(why.contains("opaque file"), "{why}");
    assert!(
        why.contains("fields uscc (keep first 2 last 2), status"),
        "{why}"
    );
    assert!(sh.deliveries(PLAIN).await?.is_empty());
    assert!(!net.nodes[1].node()?.blobs().contains(&file_digest(&raw)?));
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_version_under_a_grant_of_every_field_unmasked_is_delivered_whole() -> Result<()> {
    let whole = ApproveBody {
        fields: None,
        masks: Vec::new(),
        expires: Some("1d".into()),
        modes: Vec::new(),
        query_limits: None,
    };
    let (mut net, _dir, raw, _) = file_granted(&whole).await?;
    let done = net.api(1)?.fetch_done(&target(PLAIN)).await?;
    assert_eq!(done.digest, Some(file_digest(&raw)?));
    assert!(!done.derived, "{done:?}");
    let (served, received) = evidence(&net, PLAIN).await?;
    assert_eq!(served, "all fields");
    assert_eq!(received, "");
    net.stop_all().await
}

/// The honest member (node 2) fetches the unconditional offer's latest version in full.
async fn honest_fetch(net: &TestNet) -> Result<()> {
    let done = net.api(2)?.fetch_done(&target(OPEN)).await?;
    anyhow::ensure!(done.derived, "{done:?}");
    Ok(())
}

/// The grantee turns hostile and asks for the opaque version by number under its limiting
/// grant, on its own frames: refused, naming why, nothing recorded as delivered; an honest
/// member is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_grantee_asking_for_the_file_version_itself_is_refused() -> Result<()> {
    let limited = ApproveBody {
        fields: Some(vec!["uscc".into(), "status".into()]),
        masks: Vec::new(),
        expires: Some("1d".into()),
        modes: Vec::new(),
        query_limits: None,
    };
    let (mut net, dir, _raw, g) = file_granted_on(3, &limited).await?;
    publish(&net, &dir, OPEN, 10).await?;
    let hostile = take_over(&mut net, 1, 0).await?;
    let open = FetchOpen {
        dataset: PLAIN.into(),
        version: Some(1),
        grant: Some(g.document.id.clone()),
    };
    let attack = async { hostile.fetch_stream().await?.open(&open).await };
    let (reply, served) = tokio::join!(attack, honest_fetch(&net));
    served?;
    match reply? {
        FetchReply::Refused { code, message } => {
            assert_eq!(code, RefusalCode::GrantInvalid, "{message}");
            assert!(message.contains("opaque file"), "{message}");
        }
        FetchReply::Ready { manifest, .. } => panic!("served: {:?}", manifest.document),
    }
    assert!(net.api(0)?.deliveries(PLAIN).await?.is_empty());
    hostile.shutdown().await;
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Hole 2: personal fields masked by default

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconditional_offer_delivers_personal_fields_masked_by_default() -> Result<()> {
    let (mut net, dir) = offered().await?;
    let originals = publish(&net, &dir, OPEN, 30).await?;
    let done = net.api(1)?.fetch_done(&target(OPEN)).await?;
    assert!(done.derived, "{done:?}");
    let got = delivered(&net, &dir, &done).await?;
    assert_eq!(got.len(), originals.len());
    for (d, o) in got.iter().zip(&originals) {
        assert_kept(&d[ID], &o[ID], 6, 4);
        assert_kept(&d[NAME], &o[NAME], 1, 0);
        // Every other field leaves as published.
        let mut rest = o.clone();
        let mut rest_d = d.clone();
        for r in [&mut rest, &mut rest_d] {
            let obj = r.as_object_mut().unwrap();
            obj.remove(ID);
            obj.remove(NAME);
        }
        assert_eq!(rest_d, rest);
    }
    // The provider takes the receiver's receipt of the masked copy it served.
    let sh = net.api(0)?;
    wait_until("the receipt of the masked copy", WAIT, || async {
        Ok(sh
            .deliveries(OPEN)
            .await?
            .iter()
            .any(|d| d.receipt_at.is_some()))
    })
    .await?;
    let (served, received) = evidence(&net, OPEN).await?;
    for account in [&served, &received] {
        assert!(
            account.contains(&format!("{ID} (keep first 6 last 4)")),
            "{account}"
        );
        assert!(
            account.contains(&format!("{NAME} (keep first 1 last 0)")),
            "{account}"
        );
    }
    net.stop_all().await
}

/// A member pulling the unconditional offer on its own frames (no fetcher's checks, every
/// chunk) gets the masked copy: the manifest names the projection, and every personal field in
/// the bytes is masked. An honest member is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_member_pulling_an_unconditional_offer_gets_only_masked_bytes() -> Result<()> {
    let (mut net, dir) = offered_to(3).await?;
    let originals = publish(&net, &dir, OPEN, 30).await?;
    let hostile = take_over(&mut net, 1, 0).await?;
    let open = FetchOpen {
        dataset: OPEN.into(),
        version: None,
        grant: None,
    };
    let attack = async {
        let (mut fetch, ready) = hostile.open_fetch(&open).await?;
        let mut bytes = Vec::new();
        fetch.want(&[[0, ready.chunk_count()]]).await?;
        for i in 0..ready.chunk_count() {
            match fetch.next().await? {
                Served::Chunk(index, data) if index == i => bytes.extend(data),
                other => anyhow::bail!("chunk {i} asked, got {other:?}"),
            }
        }
        fetch.want(&[]).await?;
        anyhow::Ok((ready, bytes))
    };
    let (pulled, served) = tokio::join!(attack, honest_fetch(&net));
    served?;
    let (ready, bytes) = pulled?;
    assert!(ready.manifest.document.derived_from.is_some());
    let got = records(&String::from_utf8(bytes)?)?;
    assert_eq!(got.len(), originals.len());
    for (d, o) in got.iter().zip(&originals) {
        assert_kept(&d[ID], &o[ID], 6, 4);
        assert_kept(&d[NAME], &o[NAME], 1, 0);
    }
    hostile.shutdown().await;
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_masks_what_it_names_and_the_default_masks_the_rest() -> Result<()> {
    let (mut net, dir) = offered().await?;
    let originals = publish(&net, &dir, COND, 30).await?;
    let (sh, js) = (net.api(0)?, net.api(1)?);
    // The operator names the name with its own rule and says nothing of the ID number.
    let approval = ApproveBody {
        fields: None,
        masks: vec![format!("{NAME}=hash").parse()?],
        expires: Some("1d".into()),
        modes: Vec::new(),
        query_limits: None,
    };
    let g = grant(&sh, &js, &request_body(COND, PURPOSE, &FIELDS), &approval).await?;
    let masks: Vec<String> = g.document.masks.iter().map(ToString::to_string).collect();
    assert_eq!(masks, [format!("{NAME}=hash"), format!("{ID}=keep:6:4")]);
    let done = js.fetch_done(&target(COND)).await?;
    let got = delivered(&net, &dir, &done).await?;
    for (d, o) in got.iter().zip(&originals) {
        assert_kept(&d[ID], &o[ID], 6, 4);
        assert!(d[NAME].as_str().unwrap().starts_with("h:"), "{d}");
        assert_eq!(d["uscc"], o["uscc"]);
    }
    let (served, received) = evidence(&net, COND).await?;
    for account in [&served, &received] {
        assert!(
            account.contains(&format!("{ID} (keep first 6 last 4)")),
            "{account}"
        );
        assert!(account.contains(&format!("{NAME} (hash)")), "{account}");
    }
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_and_its_exports_say_which_fields_leave_masked() -> Result<()> {
    let (mut net, _dir) = offered().await?;
    let catalogues = net.api(1)?.network_catalogues().await?;
    let sh = catalogues
        .iter()
        .find(|c| c.document.publisher == net.nodes[0].peer_id().to_string())
        .expect("Shanghai's catalogue")
        .document
        .clone();
    let entry = sh
        .offers
        .iter()
        .find(|o| o.offer.identifier == OPEN)
        .unwrap();
    let items = serde_json::to_value(&entry.information_items)?;
    let item = |name: &str| {
        items
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(item(ID)["personal_data"], "id-number");
    assert_eq!(
        item(ID)["mask"],
        serde_json::json!({"rule": "keep", "first": 6, "last": 4})
    );
    assert_eq!(item(NAME)["mask"]["rule"], "keep");
    assert!(item("uscc").get("mask").is_none(), "{items}");
    // The CSV's masked-fields column and the DCAT information items carry it too.
    let csv = yrd_node::export::catalogue_csv(std::slice::from_ref(&sh));
    let header = csv.lines().next().unwrap();
    assert!(header.contains("脱敏信息项"), "{header}");
    let row = csv
        .lines()
        .find(|l| l.contains("营业执照 sh-licences,"))
        .unwrap();
    assert!(row.contains("保留前 6 后 4"), "{row}");
    let dcat = yrd_node::export::dcat_jsonld(std::slice::from_ref(&sh)).to_string();
    assert!(
        dcat.contains("yrd:mask") && dcat.contains("keep:6:4"),
        "{dcat}"
    );
    net.stop_all().await
}
