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
use yrd_node::model::provenance::{ProvenanceRecord, RecordKind, verify_bundle_value};
use yrd_node::model::query::{
    AccessMode, FieldValue, MAX_QUERY_BATCH, QueryBatchResponse, QueryLimits, QueryMode,
    QueryResponse, result_digest,
};
use yrd_node::model::refusal::RefusalCode;
use yrd_node::model::signed::Signed;
use yrd_node::node::query::{QueryInput, QueryOutcome};
use yrd_node::node::transfer::{TransferStatus, TransferView};
use yrd_node::node::{Node, NodeError};
use yrd_tests::TestNet;
use yrd_tests::fixtures::{
    FIELDS, STANDARD, offer, publish_sample_standard, request_body, write_sample_records,
};
use yrd_tests::verifiers::{python_verify, yrd_verify};

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
        .query(input(COND, QueryMode::Lookup, vec![nobody.clone()]), None)
        .await?;
    assert_signed(&nf, net);
    assert!(!nf.answer.document.found && nf.records.is_empty());
    // The data subject's report (what `yrd provenance queries` shows) says found or not found,
    // on both sides; neither record holds the key in clear.
    let report = |api: yrd_tests::api::Api, publisher: Option<String>, key: &FieldValue| {
        let body = json!({ "dataset": COND, "key": key, "publisher": publisher });
        async move {
            api.raw()
                .post::<_, Vec<ProvenanceRecord>>("/api/v1/provenance/queries", &body)
                .await
        }
    };
    let sh_id = net.nodes[0].peer_id().to_string();
    for (api, publisher, kind) in [
        (net.api(0)?, None, RecordKind::QueryAnswered),
        (net.api(2)?, Some(sh_id.clone()), RecordKind::QuerySent),
    ] {
        let calls = report(api, publisher, &nobody).await?;
        let found: Vec<_> = calls.iter().map(|r| (r.kind, r.found)).collect();
        assert_eq!(found, vec![(kind, Some(false))], "{calls:#?}");
        assert!(!serde_json::to_string(&calls)?.contains(&nobody.value));
    }
    let calls = report(net.api(0)?, None, &uscc).await?;
    let answered: Vec<_> = calls
        .iter()
        .filter(|r| r.kind == RecordKind::QueryAnswered)
        .collect();
    assert!(answered.len() >= 4, "{calls:#?}");
    assert!(answered.iter().all(|r| r.found == Some(true)), "{calls:#?}");

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

    // The provider's evidence of the calls verifies offline, by `yrd verify` and the Python
    // verifier alike (query records: mode, key hash, found).
    let bundle = net.api(0)?.export(COND).await?;
    let verified =
        verify_bundle_value(&serde_json::to_value(&bundle)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(verified.complete, "{}", verified.completeness);
    assert!(
        bundle
            .entries
            .iter()
            .any(|e| e.record.kind == RecordKind::QueryAnswered),
        "the bundle holds the calls"
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("queries.json");
    std::fs::write(&file, serde_json::to_string_pretty(&bundle)?)?;
    let (ok, out) = yrd_verify(&file)?;
    assert!(ok, "{out}");
    if let Some((ok, python)) = python_verify(&file)? {
        assert!(ok, "{python}");
        assert_eq!(python, out, "the two verifiers print the same account");
    }
    s.net.stop_all().await
}

/// Queries asked at once leave together in batches on `/yrd/query/2`, and each is still
/// answered, checked and recorded on its own: every caller gets the answer to its own query (a
/// lookup its own record, a key not held a signed "not found"), never a neighbour's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_asked_at_once_leave_in_batches_and_each_gets_its_own_answer() -> Result<()> {
    use yrd_node::model::provenance::Query as LogQuery;
    let mut s = setup().await?;
    let net = &s.net;
    let (sh, js) = (node(net, 0)?, node(net, 1)?);
    query_grant(
        net,
        1,
        &["uscc", "enterprise_name"],
        vec![AccessMode::Lookup],
        None,
    )
    .await?;
    const CALLS: usize = 48;
    let count = |n: &Node, kind: RecordKind| {
        n.provenance_query(&LogQuery {
            kind: Some(kind.name()),
            limit: Some(1000),
            ..LogQuery::default()
        })
        .map(|r| r.len())
    };
    let (answered, sent) = (
        count(sh, RecordKind::QueryAnswered)?,
        count(js, RecordKind::QuerySent)?,
    );
    let stats = js.net().stats().await?;
    // Every other call asks for a key no record holds.
    let key = |i: usize| {
        if i.is_multiple_of(2) {
            kv("uscc", &s.records[i]["uscc"])
        } else {
            kv("uscc", &json!(format!("91000000MA0000{i:04}")))
        }
    };
    let outcomes = futures::future::join_all(
        (0..CALLS).map(|i| js.query(input(COND, QueryMode::Lookup, vec![key(i)]), None)),
    )
    .await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let out = outcome?;
        assert_signed(&out, net);
        let a = &out.answer.document;
        if i.is_multiple_of(2) {
            assert!(a.found, "{i}: {a:?}");
            assert_eq!(out.records.len(), 1, "{i}");
            assert_eq!(out.records[0]["uscc"], s.records[i]["uscc"], "{i}");
            assert_eq!(
                out.records[0]["enterprise_name"],
                s.records[i]["enterprise_name"]
            );
        } else {
            assert!(!a.found && out.records.is_empty(), "{i}: {a:?}");
        }
    }
    // They left in fewer batches than queries, and each has its record on both sides.
    let after = js.net().stats().await?;
    assert_eq!(after.queries_sent - stats.queries_sent, CALLS as u64);
    let batches = after.query_batches_sent - stats.query_batches_sent;
    assert!(
        batches < CALLS as u64,
        "{batches} batches for {CALLS} queries"
    );
    assert_eq!(count(sh, RecordKind::QueryAnswered)?, answered + CALLS);
    assert_eq!(count(js, RecordKind::QuerySent)?, sent + CALLS);
    s.net.stop_all().await
}

/// A provider that speaks only `/yrd/query/1` (an older node: `network.query_batches = false`)
/// is still called: its identify shows it, and its callers send it their queries one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_batches_gets_its_queries_one_by_one() -> Result<()> {
    let mut s = setup().await?;
    s.net.nodes[0].stop().await?;
    s.net.nodes[0].edit_config(|c| c.network.query_batches = false)?;
    s.net.nodes[0].start().await?;
    s.net.wait_full_mesh().await?;
    let sh = s.net.nodes[0].peer_id().to_string();
    // Jiangsu has Shanghai's identify (its agent string) once it knows what it speaks.
    yrd_tests::wait_until(
        "Shanghai's identify at Jiangsu",
        yrd_tests::WAIT,
        || async {
            let peers = s.net.nodes[1].peers().await?;
            Ok(peers
                .iter()
                .any(|p| p.peer_id == sh && p.agent.is_some())
                .then_some(()))
        },
    )
    .await?;
    let js = node(&s.net, 1)?;
    let before = js.net().stats().await?;
    const CALLS: usize = 8;
    let outcomes = futures::future::join_all((0..CALLS).map(|i| {
        js.query(
            input(
                OPEN,
                QueryMode::Verify,
                vec![kv("uscc", &s.records[i]["uscc"])],
            ),
            None,
        )
    }))
    .await;
    for outcome in outcomes {
        let out = outcome?;
        assert_signed(&out, &s.net);
        assert_eq!(out.answer.document.matched, Some(true));
    }
    let after = js.net().stats().await?;
    assert_eq!(after.queries_sent - before.queries_sent, CALLS as u64);
    assert_eq!(after.query_batches_sent, before.query_batches_sent);
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
    // Sent anyway on `/yrd/query/1`, the provider does not read it: no answer.
    let sh_peer = net.nodes[0].peer_id();
    let raw = json!({ "nonce": "0".repeat(32), "pad": "x".repeat(20 * 1024) });
    assert!(
        js.send_raw_query_for_test(sh_peer, raw.clone())
            .await
            .is_err()
    );
    // In a batch (`/yrd/query/2`), it keeps its bound: refused with the cause, and the query
    // beside it answered as if alone.
    let uscc = kv("uscc", &rec["uscc"]);
    let good = json!({
        "nonce": "1".repeat(32), "dataset": OPEN, "mode": "verify", "key": [uscc],
        "purpose": PURPOSE, "legal_basis": BASIS,
    });
    match js
        .send_raw_query_batch_for_test(sh_peer, vec![raw, good.clone()])
        .await?
    {
        QueryBatchResponse::Responses { responses } => {
            assert_eq!(responses.len(), 2, "{responses:?}");
            match &responses[0] {
                QueryResponse::Refused { code, message } => {
                    assert_eq!(*code, RefusalCode::BadRequest);
                    assert!(message.contains("at most 16384 bytes"), "{message}");
                }
                other => panic!("{other:?}"),
            }
            match &responses[1] {
                QueryResponse::Answer { answer, records } => {
                    answer.verify()?;
                    assert_eq!(answer.document.matched, Some(true));
                    assert!(records.is_empty());
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    // A batch of more queries than one may hold, or of none, is refused whole, unread.
    for n in [MAX_QUERY_BATCH + 1, 0] {
        match js
            .send_raw_query_batch_for_test(sh_peer, vec![good.clone(); n])
            .await?
        {
            QueryBatchResponse::Refused { code, message } => {
                assert_eq!(code, RefusalCode::BadRequest);
                assert!(
                    message.contains(&format!("this one holds {n}")),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // An older caller's single query on `/yrd/query/1` is still answered.
    match js.send_raw_query_for_test(sh_peer, good).await? {
        QueryResponse::Answer { answer, .. } => {
            assert_eq!(answer.document.matched, Some(true))
        }
        other => panic!("{other:?}"),
    }

    // The provider's report of the calls about the first licence's ID number: the three
    // answered, the rate-limited, the over-quota and the revoked call — and no other.
    let calls = sh.provenance_query_calls(COND, &by_id, None)?;
    let kinds: Vec<RecordKind> = calls.iter().map(|r| r.kind).collect();
    use RecordKind::{QueryAnswered as A, QueryRefused as R};
    assert_eq!(kinds, vec![A, A, R, A, R, R], "{calls:#?}");
    let found: Vec<Option<bool>> = calls.iter().map(|r| r.found).collect();
    assert_eq!(
        found,
        vec![Some(true), Some(true), None, Some(true), None, None]
    );
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
    // A client allowed to fetch is named in the records of its fetches: the dataset received,
    // and a fetch that failed.
    let archive = js
        .add_client("js-archive", &[format!("fetch:{OPEN}")])
        .await?;
    let fetcher = Api::new(net.nodes[1].api_url()?, archive.token.clone());
    let fetched = |version: Option<u64>| {
        let body = json!({ "target": format!("310000/{OPEN}"), "version": version });
        let fetcher = &fetcher;
        async move {
            let view: TransferView = fetcher.raw().post("/api/v1/fetch", &body).await?;
            yrd_tests::wait_until("the client's fetch to end", yrd_tests::WAIT, || async {
                Ok(matches!(
                    js.transfer(&view.id)?.status,
                    TransferStatus::Done | TransferStatus::Failed
                ))
            })
            .await?;
            anyhow::Ok(js.transfer(&view.id)?.status)
        }
    };
    assert_eq!(fetched(None).await?, TransferStatus::Done);
    let last_of = |kind: RecordKind| -> Result<ProvenanceRecord> {
        js.provenance_query(&LogQuery {
            kind: Some(kind.name()),
            ..LogQuery::default()
        })?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no {} record", kind.name()))
    };
    let received = last_of(RecordKind::DatasetReceived)?;
    assert_eq!(received.dataset.as_deref(), Some(OPEN));
    assert_eq!(
        received.client.as_deref(),
        Some("js-archive"),
        "{received:?}"
    );
    assert_eq!(fetched(Some(99)).await?, TransferStatus::Failed);
    let failed = last_of(RecordKind::Refused)?;
    assert!(
        failed
            .cause
            .as_deref()
            .is_some_and(|c| c.contains("fetch failed")),
        "{failed:?}"
    );
    assert_eq!(failed.client.as_deref(), Some("js-archive"), "{failed:?}");
    // The operator's own fetch names no client.
    let own = net
        .api(1)?
        .fetch_to_end(&FetchBody {
            target: format!("310000/{OPEN}"),
            version: None,
            grant: None,
        })
        .await?;
    assert_eq!(own.status, TransferStatus::Done, "{own:?}");
    assert!(last_of(RecordKind::DatasetReceived)?.client.is_none());

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

/// How the hostile provider of [`a_hostile_provider_s_wrong_answers_are_refused_with_their_cause_and_never_shown`]
/// answers the next query.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Forgery {
    /// An answer as an honest provider would give it (the control: it must be accepted).
    None,
    OtherKey,
    Tampered,
    OtherQuery,
    OlderVersion,
    OtherFile,
    OtherGrant,
    OtherCaller,
    WrongResult,
    FieldNotGranted,
    LookupToVerify,
    VerifyWithRecords,
    TooManyRecords,
    Oversized,
}

/// A marker in every record the hostile provider returns: it must never be shown or logged.
const FORGED: &str = "FORGED-记录";

/// What the hostile provider (holding Shanghai's key) answers to `raw` as `forgery` says:
/// every answer is built as an honest one from version `latest` (`digest`), then made wrong in
/// exactly one way.
fn forged_answer(
    raw: &Value,
    forgery: Forgery,
    key: &yrd_node::identity::NodeKey,
    caller: &str,
    latest: u64,
    digest: &str,
) -> Option<QueryResponse> {
    use yrd_node::model::query::{Query, QueryAnswer};
    let q: Query = serde_json::from_value(raw.clone()).ok()?;
    let uscc = q.key.iter().find(|kv| kv.field == "uscc")?.value.clone();
    let fields: Vec<String> = ["uscc", "enterprise_name"].map(String::from).to_vec();
    let one = json!({ "uscc": uscc, "enterprise_name": FORGED });
    let mut records = match (q.mode, forgery) {
        (_, Forgery::LookupToVerify | Forgery::VerifyWithRecords) => vec![one],
        (QueryMode::Verify, _) => Vec::new(),
        (QueryMode::Lookup, Forgery::TooManyRecords) => vec![one; 101],
        (QueryMode::Lookup, Forgery::Oversized) => {
            vec![json!({ "uscc": uscc, "enterprise_name": "x".repeat(3 << 20) })]
        }
        (QueryMode::Lookup, _) => vec![one],
    };
    let lookup = !records.is_empty();
    let mut a = QueryAnswer {
        provider: key.peer_id().to_string(),
        caller: caller.to_string(),
        dataset: q.dataset.clone(),
        version: latest,
        data_digest: digest.to_string(),
        mode: q.mode,
        query_digest: q.digest().ok()?,
        grant: q.grant.clone(),
        found: true,
        matched: (!lookup).then_some(true),
        matched_fields: if lookup {
            Vec::new()
        } else {
            vec!["uscc".into()]
        },
        record_count: records.len() as u64,
        truncated: false,
        fields: if lookup { fields } else { Vec::new() },
        masks: Vec::new(),
        result_digest: String::new(),
        answered_at: "2026-12-06T06:00:00Z".into(),
    };
    match forgery {
        Forgery::OtherQuery => a.query_digest = "00".repeat(32),
        Forgery::OlderVersion => a.version = latest - 1,
        Forgery::OtherFile => a.data_digest = "11".repeat(32),
        Forgery::OtherGrant => a.grant = Some("ab".repeat(16)),
        Forgery::OtherCaller => a.caller = key.peer_id().to_string(),
        Forgery::FieldNotGranted => {
            a.fields.push("legal_representative".into());
            records[0]["legal_representative"] = json!(FORGED);
        }
        Forgery::LookupToVerify => {
            a.mode = QueryMode::Lookup;
            a.matched = None;
            a.matched_fields = Vec::new();
            a.fields = vec!["uscc".into(), "enterprise_name".into()];
        }
        _ => {}
    }
    a.result_digest = result_digest(&records).ok()?;
    if forgery == Forgery::WrongResult {
        records[0]["enterprise_name"] = json!(format!("{FORGED}-2"));
    }
    let signer = match forgery {
        Forgery::OtherKey => yrd_node::identity::NodeKey::generate(),
        _ => key.clone(),
    };
    let mut answer = Signed::sign(a, signer.signing_key()).ok()?;
    if forgery == Forgery::Tampered {
        answer.document.found = false;
    }
    Some(QueryResponse::Answer {
        answer: Box::new(answer),
        records,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_provider_s_wrong_answers_are_refused_with_their_cause_and_never_shown()
-> Result<()> {
    use std::sync::{Arc, Mutex};
    use yrd_node::model::provenance::Query as LogQuery;
    let mut s = setup().await?;
    // Version 2, so that an answer can be from an older version than the catalogue lists.
    let v2 = s._dir.path().join("licences-2.jsonl");
    write_sample_records(&v2, STANDARD, 50, 8)?;
    net_publish(&s.net, &v2).await?;
    let granted = ["uscc", "enterprise_name", ID];
    query_grant(
        &s.net,
        1,
        &granted,
        vec![AccessMode::Verify, AccessMode::Lookup],
        None,
    )
    .await?;
    let sh = s.net.nodes[0].peer_id();
    let target = format!("{sh}/{COND}");
    let listed = node(&s.net, 1)?.resolve_target(&target)?.offer;
    assert_eq!(listed.latest_version, Some(2));
    let digest = listed.checksum.clone().unwrap();
    let caller = s.net.nodes[1].peer_id().to_string();

    // Shanghai's node stops; a hostile member holding its key answers Jiangsu's queries.
    let hostile = yrd_tests::hostile::take_over(&mut s.net, 0, 1).await?;
    let forgery = Arc::new(Mutex::new(Forgery::None));
    let (f, key) = (forgery.clone(), hostile.key().clone());
    hostile.answer_queries(Arc::new(move |raw| {
        let now = *f.lock().ok()?;
        forged_answer(raw, now, &key, &caller, 2, &digest)
    }));
    let js = node(&s.net, 1)?;
    let uscc = kv("uscc", &s.records[11]["uscc"]);
    let ask = |mode| {
        let mut i = input(COND, mode, vec![uscc.clone()]);
        i.target = target.clone();
        i
    };

    // The control: an honest answer from the same forger is accepted (so each refusal below is
    // the one wrong thing in its answer).
    let ok = js.query(ask(QueryMode::Lookup), None).await?;
    assert_eq!(ok.records[0]["enterprise_name"], json!(FORGED));
    let ok = js.query(ask(QueryMode::Verify), None).await?;
    assert_eq!(ok.answer.document.matched, Some(true));

    use Forgery as F;
    let cases = [
        (F::OtherKey, QueryMode::Lookup, "is signed by"),
        (F::Tampered, QueryMode::Lookup, "signature does not verify"),
        (F::OtherQuery, QueryMode::Lookup, "names another query"),
        (F::OlderVersion, QueryMode::Lookup, "from version 1 of"),
        (
            F::OtherFile,
            QueryMode::Lookup,
            "another file for version 2",
        ),
        (F::OtherGrant, QueryMode::Lookup, "names another grant"),
        (
            F::OtherCaller,
            QueryMode::Verify,
            "addressed to another node",
        ),
        (F::WrongResult, QueryMode::Lookup, "result digest"),
        (
            F::FieldNotGranted,
            QueryMode::Lookup,
            "field legal_representative, which is not among the fields the grant covers",
        ),
        (F::LookupToVerify, QueryMode::Verify, "is of another mode"),
        (
            F::VerifyWithRecords,
            QueryMode::Verify,
            "of a verify carries records",
        ),
        (
            F::TooManyRecords,
            QueryMode::Lookup,
            "carries more records than one answer may",
        ),
        (F::Oversized, QueryMode::Lookup, "not answered"),
    ];
    let sent = || {
        js.provenance_query(&LogQuery {
            kind: Some(RecordKind::QuerySent.name()),
            ..LogQuery::default()
        })
    };
    for (wrong, mode, cause) in cases {
        *forgery.lock().unwrap() = wrong;
        let before = sent()?.len();
        let err = match js.query(ask(mode), None).await {
            Ok(shown) => panic!("{wrong:?}: a wrong answer was accepted: {shown:?}"),
            Err(e) => e.to_string(),
        };
        if wrong != F::Oversized {
            assert!(err.contains(cause), "{wrong:?}: {err}");
        }
        // Its query-sent record names the cause, and no version: the answer was not taken.
        let records = sent()?;
        assert_eq!(records.len(), before + 1, "{wrong:?}");
        let r = records.last().unwrap();
        let why = r.cause.as_deref().unwrap_or("");
        let prefix = if wrong == F::Oversized {
            "not answered"
        } else {
            "answer refused: "
        };
        assert!(
            why.starts_with(prefix) && why.contains(cause),
            "{wrong:?}: {why}"
        );
        assert!(r.version.is_none() && r.documents.is_empty(), "{r:?}");
    }
    // A batch answered one response short: no query of it is taken, each record names why.
    *forgery.lock().unwrap() = F::None;
    hostile.answer_batches_short(true);
    let before = sent()?.len();
    let err = js.query(ask(QueryMode::Verify), None).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the provider sent 0 responses to a batch of 1 queries"),
        "{err}"
    );
    let records = sent()?;
    assert_eq!(records.len(), before + 1);
    let r = records.last().unwrap();
    assert!(
        r.cause
            .as_deref()
            .is_some_and(|c| c.starts_with("not answered") && c.contains("0 responses")),
        "{r:?}"
    );
    assert!(r.version.is_none() && r.documents.is_empty(), "{r:?}");
    hostile.answer_batches_short(false);

    // Through the API too: a 502 naming the cause, and the forged record nowhere in it.
    *forgery.lock().unwrap() = F::FieldNotGranted;
    let err = s
        .net
        .api(1)?
        .raw()
        .post::<_, Value>("/api/v1/query", &ask(QueryMode::Lookup))
        .await
        .unwrap_err();
    assert_eq!(yrd_tests::api::status(&err), Some(502), "{err}");
    let text = format!("{err:#}");
    assert!(
        text.contains("not among the fields the grant covers"),
        "{text}"
    );
    assert!(!text.contains(FORGED), "{text}");
    // No log of Jiangsu's holds a forged value.
    let all = serde_json::to_string(&js.provenance_query(&Default::default())?)?;
    assert!(!all.contains(FORGED));
    hostile.shutdown().await;
    s.net.stop_all().await
}

/// Shanghai publishes `file` as the next version of [`COND`] and its catalogue reaches the
/// others.
async fn net_publish(net: &TestNet, file: &std::path::Path) -> Result<()> {
    net.api(0)?
        .publish_version(COND, file, DataFormat::Jsonl)
        .await?;
    net.wait_catalogue_of(0).await
}

/// A provider answers from what it holds now, not from what it read for earlier calls (its
/// offers, withheld list and latest manifest are kept decoded between writes,
/// `node/src/node/decoded.rs`): a call after a new version answers from that version; after
/// the offer drops its query keys, a call is refused as no query service; once the dataset is
/// withheld, refused as not shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_the_latest_version_the_offer_and_the_withheld_list() -> Result<()> {
    let mut s = setup().await?;
    let (sh, js) = (s.net.api(0)?, node(&s.net, 1)?);
    let uscc = |r: &Value| kv("uscc", &r["uscc"]);
    let first = js
        .query(
            input(OPEN, QueryMode::Verify, vec![uscc(&s.records[0])]),
            None,
        )
        .await?;
    assert!(first.answer.document.found);
    assert_eq!(first.answer.document.version, 1);

    // Version 2 holds other licences: the first one is no longer found, one of version 2 is.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("v2.jsonl");
    write_sample_records(&file, STANDARD, 50, 99)?;
    let v2: Vec<Value> = std::fs::read_to_string(&file)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(v2.iter().all(|r| r["uscc"] != s.records[0]["uscc"]));
    sh.publish_version(OPEN, &file, DataFormat::Jsonl).await?;
    let gone = js
        .query(
            input(OPEN, QueryMode::Verify, vec![uscc(&s.records[0])]),
            None,
        )
        .await?;
    assert_eq!(gone.answer.document.version, 2);
    assert!(!gone.answer.document.found);
    let found = js
        .query(input(OPEN, QueryMode::Verify, vec![uscc(&v2[3])]), None)
        .await?;
    assert!(found.answer.document.found && found.answer.document.version == 2);

    // The offer, changed to declare no query keys.
    sh.add_offer(&offer(OPEN, STANDARD, ShareType::Unconditional, None))
        .await?;
    let (code, message) = refused(
        js.query(input(OPEN, QueryMode::Verify, vec![uscc(&v2[3])]), None)
            .await,
    );
    assert_eq!(code, RefusalCode::UnknownField, "{message}");
    assert!(message.contains("offers no query service"), "{message}");

    // Withheld: not shared, with the reason.
    sh.add_withheld(&yrd_node::model::catalogue::Withheld {
        identifier: OPEN.into(),
        title: "暂停核验".into(),
        resource_code: None,
        reason: "数据核查中".into(),
        legal_basis: "《数据安全法》第二十一条".into(),
    })
    .await?;
    let (code, message) = refused(
        js.query(input(OPEN, QueryMode::Verify, vec![uscc(&v2[3])]), None)
            .await,
    );
    assert_eq!(code, RefusalCode::NotShared, "{message}");
    assert!(message.contains("数据核查中"), "{message}");
    s.net.stop_all().await
}
