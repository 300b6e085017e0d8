//! Query services (issue 15) between real nodes: Shanghai (node 0) offers business licences with
//! query keys `uscc` and the legal representative's ID number; Jiangsu (node 1) and Zhejiang
//! (node 2) call it. A verify-only grant answers yes/no and never a value; a lookup returns
//! exactly the granted, masked fields; rate limits and quotas refuse with their reason; an
//! expired or revoked grant, a not-shared offer, an unknown field and malformed or oversized queries are
//! refused with their cause; an unknown key gets a signed "not found"; and the provider's call
//! report by key lists exactly the calls made, without either log holding the key in clear.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use anyhow::Result;
use serde_json::{Value, json};
use tempfile::TempDir;
use yrd_node::api::exchange::{ApproveBody, FetchBody};
use yrd_node::model::catalogue::ShareType;
use yrd_node::model::exchange::{DataFormat, Grant};
use yrd_node::model::provenance::{RecordKind, verify_bundle_value};
use yrd_node::model::query::{
    AccessMode, FieldValue, QueryLimits, QueryMode, QueryResponse, result_digest,
};
use yrd_node::model::refusal::RefusalCode;
use yrd_node::model::signed::Signed;
use yrd_node::node::query::{QueryInput, QueryOutcome};
use yrd_node::node::transfer::TransferStatus;
use yrd_node::node::{Node, NodeError};
use yrd_tests::TestNet;
use yrd_tests::fixtures::{
    FIELDS, STANDARD, offer, publish_sample_standard, request_body, write_sample_records,
};

/// The conditional offer with query keys.
const COND: &str = "sh-licences-q";
/// The unconditional offer with query keys.
const OPEN: &str = "sh-licences-open";
/// The not-shared offer.
const SECRET: &str = "sh-licences-secret";
/// The legal representative's ID number (personal: leaves keeping 6 + 4 characters).
const ID: &str = "legal_representative_id_number";
const PURPOSE: &str = "跨省通办企业资格核验";
const BASIS: &str = "《优化营商环境条例》第三十七条";

struct Setup {
    net: TestNet,
    _dir: TempDir,
    /// The published records.
    records: Vec<Value>,
}

/// Three meshed nodes; Shanghai publishes 200 licences as version 1 of [`COND`] and [`OPEN`]
/// (query keys `uscc` and [`ID`]) and offers [`SECRET`] as not shared.
async fn setup() -> Result<Setup> {
    let net = TestNet::meshed(3).await?;
    let dir = tempfile::tempdir()?;
    let sh = net.api(0)?;
    publish_sample_standard(&sh, STANDARD).await?;
    let keys = vec!["uscc".to_string(), ID.to_string()];
    for (id, share, cond) in [
        (COND, ShareType::Conditional, Some("履职需要，经审批")),
        (OPEN, ShareType::Unconditional, None),
        (SECRET, ShareType::NotShared, Some("涉及国家秘密")),
    ] {
        let mut o = offer(id, STANDARD, share, cond);
        o.query_keys = keys.clone();
        sh.add_offer(&o).await?;
    }
    let file = dir.path().join("licences.jsonl");
    write_sample_records(&file, STANDARD, 200, 7)?;
    for d in [COND, OPEN, SECRET] {
        sh.publish_version(d, &file, DataFormat::Jsonl).await?;
    }
    net.wait_catalogue_of(0).await?;
    let records = std::fs::read_to_string(&file)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    Ok(Setup {
        net,
        _dir: dir,
        records,
    })
}

fn node(net: &TestNet, i: usize) -> Result<&Node> {
    net.nodes[i].node()
}

fn kv(field: &str, value: &Value) -> FieldValue {
    FieldValue {
        field: field.into(),
        value: value
            .as_str()
            .map(str::to_string)
            .unwrap_or(value.to_string()),
    }
}

fn input(dataset: &str, mode: QueryMode, key: Vec<FieldValue>) -> QueryInput {
    QueryInput {
        target: format!("310000/{dataset}"),
        mode,
        key,
        fields: Vec::new(),
        purpose: Some(PURPOSE.into()),
        legal_basis: Some(BASIS.into()),
        grant: None,
    }
}

/// Node `i` asks for [`COND`] and Shanghai approves with `modes`, `limits` and `fields`.
async fn query_grant(
    net: &TestNet,
    i: usize,
    fields: &[&str],
    modes: Vec<AccessMode>,
    limits: Option<QueryLimits>,
) -> Result<Signed<Grant>> {
    let approval = ApproveBody {
        fields: None,
        masks: Vec::new(),
        expires: None,
        modes,
        query_limits: limits,
    };
    yrd_tests::fixtures::grant(
        &net.api(0)?,
        &net.api(i)?,
        &request_body(COND, PURPOSE, fields),
        &approval,
    )
    .await
}

/// The refusal code of a failed query.
fn refused(r: Result<QueryOutcome, NodeError>) -> (RefusalCode, String) {
    match r {
        Err(NodeError::Refused { code, message, .. }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The answer is Shanghai's, verifies, and carries exactly the records it names.
fn assert_signed(out: &QueryOutcome, net: &TestNet) {
    out.answer.verify().unwrap();
    assert_eq!(
        out.answer.document.provider,
        net.nodes[0].peer_id().to_string()
    );
    assert_eq!(
        out.answer.document.result_digest,
        result_digest(&out.records).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_only_grants_answer_yes_or_no_and_lookups_return_exactly_the_granted_masked_fields()
-> Result<()> {
    let mut s = setup().await?;
    let net = &s.net;
    let (js, zj) = (node(net, 1)?, node(net, 2)?);
    let rec = &s.records[17];
    let uscc = kv("uscc", &rec["uscc"]);
    let name = kv("enterprise_name", &rec["enterprise_name"]);

    // Jiangsu: verify only.
    let v = query_grant(net, 1, &FIELDS, vec![AccessMode::Verify], None).await?;
    let yes = js
        .query(
            input(COND, QueryMode::Verify, vec![uscc.clone(), name.clone()]),
            None,
        )
        .await?;
    assert_signed(&yes, net);
    let a = &yes.answer.document;
    assert!(a.found && a.matched == Some(true), "{a:?}");
    assert_eq!(a.matched_fields, vec!["uscc", "enterprise_name"]);
    assert_eq!(a.grant.as_deref(), Some(v.document.id.as_str()));
    assert!(yes.records.is_empty() && a.record_count == 0);
    let wrong = kv("enterprise_name", &json!("某某不存在的公司"));
    let no = js
        .query(
            input(COND, QueryMode::Verify, vec![uscc.clone(), wrong]),
            None,
        )
        .await?;
    let a = &no.answer.document;
    assert!(a.found && a.matched == Some(false), "{a:?}");
    assert_eq!(a.matched_fields, vec!["uscc"]);
    // The verify-only grant gets no value: a lookup is refused, whatever grant is named...
    let mut lookup = input(COND, QueryMode::Lookup, vec![uscc.clone()]);
    lookup.grant = Some(v.document.id.clone());
    let (code, msg) = refused(js.query(lookup, None).await);
    assert_eq!(code, RefusalCode::ModeNotGranted, "{msg}");
    // ... and so is a fetch of the dataset under it.
    let fetched = net
        .api(1)?
        .fetch_to_end(&FetchBody {
            target: format!("310000/{COND}"),
            version: None,
            grant: Some(v.document.id.clone()),
        })
        .await?;
    assert_eq!(fetched.status, TransferStatus::Failed, "{fetched:?}");
    assert!(
        fetched
            .error
            .as_deref()
            .is_some_and(|e| e.contains("mode-not-granted")),
        "{fetched:?}"
    );

    // Zhejiang: lookup of three fields; the ID number leaves masked by its standard's default.
    let granted = ["uscc", "enterprise_name", ID];
    let l = query_grant(net, 2, &granted, vec![AccessMode::Lookup], None).await?;
    let out = zj
        .query(input(COND, QueryMode::Lookup, vec![uscc.clone()]), None)
        .await?;
    assert_signed(&out, net);
    assert_eq!(
        out.answer.document.grant.as_deref(),
        Some(l.document.id.as_str())
    );
    assert_eq!(out.records.len(), 1);
    let got = out.records[0].as_object().unwrap();
    let mut keys: Vec<&str> = got.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["enterprise_name", ID, "uscc"]);
    assert_eq!(got["enterprise_name"], rec["enterprise_name"]);
    let (masked, original) = (got[ID].as_str().unwrap(), rec[ID].as_str().unwrap());
    assert_ne!(masked, original);
    assert_eq!(masked[..6], original[..6]);
    assert!(masked.contains('*'));
    // Fewer fields when asked; none beyond the grant; no field the dataset lacks.
    let mut one = input(COND, QueryMode::Lookup, vec![uscc.clone()]);
    one.fields = vec!["uscc".into()];
    let out = zj.query(one, None).await?;
    assert_eq!(out.records, vec![json!({ "uscc": rec["uscc"] })]);
    let mut more = input(COND, QueryMode::Lookup, vec![uscc.clone()]);
    more.fields = vec!["legal_representative".into()];
    let (code, msg) = refused(zj.query(more, None).await);
    assert_eq!(code, RefusalCode::FieldNotGranted, "{msg}");
    let mut unknown = input(COND, QueryMode::Lookup, vec![uscc.clone()]);
    unknown.fields = vec!["salary".into()];
    let (code, msg) = refused(zj.query(unknown, None).await);
    assert_eq!(code, RefusalCode::UnknownField, "{msg}");
    assert!(msg.contains("salary"), "{msg}");
    // A key nobody has: a signed "not found".
    let nobody = kv("uscc", &json!("91310000000000000X"));
    let nf = zj
        .query(input(COND, QueryMode::Lookup, vec![nobody]), None)
        .await?;
    assert_signed(&nf, net);
    assert!(!nf.answer.document.found && nf.records.is_empty());

    // Unconditional: no grant needed by a field that is not personal; by the ID number, one is.
    let open = js
        .query(input(OPEN, QueryMode::Lookup, vec![uscc.clone()]), None)
        .await?;
    assert_eq!(open.records.len(), 1);
    assert_ne!(open.records[0][ID], rec[ID], "personal fields leave masked");
    let by_id = kv(ID, &rec[ID]);
    let (code, msg) = refused(
        js.query(input(OPEN, QueryMode::Verify, vec![by_id]), None)
            .await,
    );
    assert_eq!(code, RefusalCode::GrantRequired, "{msg}");
    // Not shared: refused.
    let (code, msg) = refused(
        js.query(input(SECRET, QueryMode::Verify, vec![uscc.clone()]), None)
            .await,
    );
    assert_eq!(code, RefusalCode::NotShared, "{msg}");

    // The provider's evidence of the calls verifies offline.
    let bundle = net.api(0)?.export(COND).await?;
    let verified =
        verify_bundle_value(&serde_json::to_value(&bundle)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(verified.complete, "{}", verified.completeness);
    s.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_revocation_and_bad_queries_are_refused_and_the_call_report_lists_exactly_the_calls()
-> Result<()> {
    let mut s = setup().await?;
    let net = &s.net;
    let (sh, js, zj) = (node(net, 0)?, node(net, 1)?, node(net, 2)?);
    let rec = &s.records[3];
    let other = &s.records[4];
    let by_id = kv(ID, &rec[ID]);

    // Rate limit: two calls a minute.
    let rated = query_grant(
        net,
        1,
        &FIELDS,
        vec![AccessMode::Verify],
        Some(QueryLimits {
            calls_per_day: None,
            calls_per_minute: Some(2),
        }),
    )
    .await?;
    for _ in 0..2 {
        js.query(input(COND, QueryMode::Verify, vec![by_id.clone()]), None)
            .await?;
    }
    let (code, msg) = refused(
        js.query(input(COND, QueryMode::Verify, vec![by_id.clone()]), None)
            .await,
    );
    assert_eq!(code, RefusalCode::RateLimited, "{msg}");
    assert!(msg.contains("2 calls a minute"), "{msg}");

    // Quota: two calls a day.
    let quota = query_grant(
        net,
        2,
        &FIELDS,
        vec![AccessMode::Verify, AccessMode::Lookup],
        Some(QueryLimits {
            calls_per_day: Some(2),
            calls_per_minute: None,
        }),
    )
    .await?;
    zj.query(input(COND, QueryMode::Lookup, vec![by_id.clone()]), None)
        .await?;
    zj.query(
        input(COND, QueryMode::Verify, vec![kv(ID, &other[ID])]),
        None,
    )
    .await?;
    let (code, msg) = refused(
        zj.query(input(COND, QueryMode::Verify, vec![by_id.clone()]), None)
            .await,
    );
    assert_eq!(code, RefusalCode::QuotaExceeded, "{msg}");
    assert!(msg.contains("2 calls a day"), "{msg}");
    // Expired: refused (before the quota is looked at).
    sh.expire_grant_for_test(&quota.document.id).await?;
    let third = kv(ID, &s.records[9][ID]);
    let (code, msg) = refused(
        zj.query(input(COND, QueryMode::Verify, vec![third]), None)
            .await,
    );
    assert_eq!(code, RefusalCode::GrantInvalid, "{msg}");
    assert!(msg.contains("expired"), "{msg}");

    // Revoked: refused.
    net.api(0)?
        .revoke(&rated.document.id, "核验事项已办结")
        .await?;
    let mut after = input(COND, QueryMode::Verify, vec![by_id.clone()]);
    after.grant = Some(rated.document.id.clone());
    let (code, msg) = refused(js.query(after, None).await);
    assert_eq!(code, RefusalCode::GrantInvalid, "{msg}");
    assert!(msg.contains("revoked"), "{msg}");

    // Malformed: refused with the cause; oversized: refused before it leaves.
    let answer = js
        .send_raw_query_for_test(net.nodes[0].peer_id(), json!({ "nonce": 1 }))
        .await?;
    match answer {
        QueryResponse::Refused { code, message } => {
            assert_eq!(code, RefusalCode::BadRequest);
            assert!(message.contains("malformed query"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let big: Vec<FieldValue> = (0..16)
        .map(|i| kv(&format!("f{i}"), &json!("中".repeat(256))))
        .collect();
    let mut oversized = input(OPEN, QueryMode::Verify, big);
    oversized.purpose = Some("目的".repeat(900));
    match zj.query(oversized, None).await {
        Err(NodeError::Invalid { field, reason }) => {
            assert_eq!(field, "query");
            assert!(reason.contains("at most 16384 bytes"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Sent anyway, the provider does not read it: no answer.
    let raw = json!({ "nonce": "0".repeat(32), "pad": "x".repeat(20 * 1024) });
    assert!(
        js.send_raw_query_for_test(net.nodes[0].peer_id(), raw)
            .await
            .is_err()
    );

    // The provider's report of the calls about the first licence's ID number: the three
    // answered, the rate-limited, the over-quota and the revoked call — and no other.
    let calls = sh.provenance_query_calls(COND, &by_id, None)?;
    let kinds: Vec<RecordKind> = calls.iter().map(|r| r.kind).collect();
    use RecordKind::{QueryAnswered as A, QueryRefused as R};
    assert_eq!(kinds, vec![A, A, R, A, R, R], "{calls:#?}");
    let js_id = net.nodes[1].peer_id().to_string();
    let zj_id = net.nodes[2].peer_id().to_string();
    let who: Vec<&str> = calls
        .iter()
        .map(|r| r.counterparty.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(who, vec![&js_id, &js_id, &js_id, &zj_id, &zj_id, &js_id]);
    assert!(calls.iter().all(|r| r.purpose.as_deref() == Some(PURPOSE)));
    assert_eq!(
        sh.provenance_query_calls(COND, &kv(ID, &other[ID]), None)?
            .len(),
        1
    );
    // The caller's own report names the same calls it made.
    let sent =
        js.provenance_query_calls(COND, &by_id, Some(&net.nodes[0].peer_id().to_string()))?;
    assert_eq!(sent.len(), 4, "{sent:#?}");
    assert!(sent.iter().all(|r| r.kind == RecordKind::QuerySent));
    // Neither log holds the ID number in clear.
    let id_text = rec[ID].as_str().unwrap();
    for n in [sh, js, zj] {
        let all = n.provenance_query(&Default::default())?;
        let text = serde_json::to_string(&all)?;
        assert!(!text.contains(id_text), "a log holds the looked-up value");
    }
    s.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_clients_call_only_what_they_were_given_and_are_named_in_the_records() -> Result<()>
{
    use yrd_node::model::provenance::Query as LogQuery;
    use yrd_tests::api::{Api, status};
    let mut s = setup().await?;
    let net = &s.net;
    let js = node(net, 1)?;
    let rec = &s.records[5];
    let made = js
        .add_client("js-licence-check", &[format!("query:{OPEN}")])
        .await?;
    let client = Api::new(net.nodes[1].api_url()?, made.token.clone());
    let body = input(OPEN, QueryMode::Verify, vec![kv("uscc", &rec["uscc"])]);
    let out: QueryOutcome = client.raw().post("/api/v1/query", &body).await?;
    assert_eq!(out.answer.document.matched, Some(true));
    let sent = js.provenance_query(&LogQuery {
        kind: Some(RecordKind::QuerySent.name()),
        ..LogQuery::default()
    })?;
    assert_eq!(
        sent.last().and_then(|r| r.client.as_deref()),
        Some("js-licence-check")
    );
    // Another dataset, a fetch, an admin route: forbidden.
    let other = input(COND, QueryMode::Verify, vec![kv("uscc", &rec["uscc"])]);
    let err = client
        .raw()
        .post::<_, QueryOutcome>("/api/v1/query", &other)
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(403), "{err}");
    let err = client
        .raw()
        .post::<_, Value>(
            "/api/v1/fetch",
            &json!({ "target": format!("310000/{OPEN}") }),
        )
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(403), "{err}");
    let err = client.health().await.unwrap_err();
    assert_eq!(status(&err), Some(403), "{err}");
    let err = client
        .raw()
        .get::<Value>("/api/v1/clients")
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(403), "{err}");
    // Removed: its token no longer works; the admin token keeps full rights.
    js.remove_client("js-licence-check").await?;
    let err = client
        .raw()
        .post::<_, QueryOutcome>("/api/v1/query", &body)
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(401), "{err}");
    net.api(1)?.health().await?;
    let admin: QueryOutcome = net.api(1)?.raw().post("/api/v1/query", &body).await?;
    assert_eq!(admin.answer.document.matched, Some(true));
    s.net.stop_all().await
}
