//! Bundles on a federation charter (docs/evidence.md, step 9): every signer a member when it
//! signed, with the region its record says; and the published vectors of
//! `schemas/vectors/evidence-charter/`, which the Python verifier must judge the same way.

use super::*;
use crate::model::charter::{
    ChangePolicy, Charter, CharterMember, Federation, MemberKey, Role, uscc_check_char,
};

const VECTORS_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../schemas/vectors/evidence-charter"
);

/// A fictitious 统一社会信用代码 with a valid check character, as the devnet makes them (the
/// model layer cannot import the devnet's).
fn fictitious_member_id(region: Region, n: usize) -> String {
    let first17 = format!("12{:06}YRD0000{:02}", region.code(), n % 100);
    format!("{first17}{}", uscc_check_char(&first17).unwrap())
}

fn member(p: &Party, region: u32, n: usize, role: Role) -> CharterMember {
    let region = Region::from_code(region).unwrap();
    CharterMember {
        member_id: fictitious_member_id(region, n),
        organisation: format!("{}大数据中心", region.name_zh()),
        region,
        role,
        keys: vec![MemberKey::ed25519_hex(hex::encode(
            p.key.signing_key().verifying_key().to_bytes(),
        ))],
    }
}

/// The city that version 2 admits.
fn city() -> Party {
    Party::new(7, 320500)
}

/// A two-version chain: the genesis (the fixture's three parties as founders, the owner bound
/// to `owner_region`, issued `genesis_issued`), then version 2 admitting a city, issued 19 days
/// later, each signed by two founders.
fn chain(f: &Fixture, owner_region: u32, genesis_issued: &str) -> Vec<SignedCharter> {
    let genesis = Charter {
        federation: Federation {
            id: "yrd-delta".into(),
            name: "长三角政务数据共享联盟".into(),
        },
        version: 1,
        previous: None,
        issued: genesis_issued.into(),
        expires: "2027-11-01T00:00:00Z".into(),
        members: vec![
            member(&f.owner, owner_region, 1, Role::Founder),
            member(&f.requester, f.requester.region, 2, Role::Founder),
            member(&f.witness, f.witness.region, 3, Role::Founder),
        ],
        policy: ChangePolicy {
            signers: Role::Founder,
            threshold: 2,
        },
    };
    let issued2 = crate::clock::parse_rfc3339(genesis_issued).unwrap() + time::Duration::days(19);
    let issued2 = issued2
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut members = genesis.members.clone();
    members.push(member(&city(), 320500, 4, Role::Member));
    let v2 = Charter {
        version: 2,
        previous: Some(genesis.digest().unwrap()),
        issued: issued2,
        members,
        ..genesis.clone()
    };
    let mut one = SignedCharter::draft(genesis);
    one.sign(f.owner.key.signing_key()).unwrap();
    one.sign(f.requester.key.signing_key()).unwrap();
    let mut two = SignedCharter::draft(v2);
    two.sign(f.owner.key.signing_key()).unwrap();
    two.sign(f.witness.key.signing_key()).unwrap();
    vec![one, two]
}

const GENESIS_ISSUED: &str = "2026-11-01T00:00:00Z";
/// A genesis issued after every record, head and cosignature of the fixture.
const LATE_GENESIS: &str = "2026-11-27T00:00:00Z";

/// Appends a `refused` record naming a key no charter lists; returns its party.
fn refused_stranger(f: &mut Fixture) -> Party {
    let stranger = Party::new(9, 340000);
    let mut refused = record(&f.owner, RecordKind::Refused, Some(&stranger));
    refused.seq = 6;
    refused.prev_about_dataset = Some(5);
    refused.cause = Some("not a member".into());
    f.records.push(refused);
    stranger
}

/// The fixture's bundle carrying `charters`.
fn on_charter(f: &Fixture, charters: &[SignedCharter]) -> Value {
    let mut b = f.bundle(6);
    b["charters"] = serde_json::to_value(charters).unwrap();
    b
}

/// Adds a witness cosignature of the bundle's own head by `p` (and its NodeInfo).
fn add_witness(b: &mut Value, owner: &Party, p: &Party) {
    let head = &b["head"]["document"];
    let cosignature = p.sign(
        "cosignature",
        json!({"log": owner.id(), "size": head["size"], "root": head["root"],
               "witness": p.id(), "time": "2026-11-26T21:09:40Z"}),
    );
    b["parties"].as_array_mut().unwrap().push(json!(p.info()));
    b["witnesses"]
        .as_array_mut()
        .unwrap()
        .push(json!({"cosignature": cosignature, "consistency": []}));
}

/// The published vectors: file name, bundle, and `None` (verifies) or a phrase the refusal
/// of both verifiers contains.
fn vectors() -> Vec<(&'static str, Value, Option<&'static str>)> {
    let f = fixture();
    let ok = on_charter(&f, &chain(&f, f.owner.region, GENESIS_ISSUED));
    let mut puppet = ok.clone();
    add_witness(&mut puppet, &f.owner, &Party::new(9, 320000));
    let region = on_charter(&f, &chain(&f, 320000, GENESIS_ISSUED));
    let early = on_charter(&f, &chain(&f, f.owner.region, LATE_GENESIS));
    let mut with_stranger = fixture();
    refused_stranger(&mut with_stranger);
    let stranger = on_charter(
        &with_stranger,
        &chain(&with_stranger, f.owner.region, GENESIS_ISSUED),
    );
    let mut broken = ok.clone();
    // Version 2 altered after its founders signed: the city moved to Wuxi.
    broken["charters"][1]["document"]["members"][3]["region"] = json!("320200");
    vec![
        ("ok", ok, None),
        ("before-genesis", early, None),
        ("refused-non-member", stranger, None),
        (
            "sock-puppet-witness",
            puppet,
            Some("is not a member of the charter in force"),
        ),
        ("region-mismatch", region, Some("region mismatch")),
        ("broken-chain", broken, Some("charters:")),
    ]
}

#[test]
fn a_bundle_on_a_charter_checks_every_signer_and_labels_from_it() {
    let f = fixture();
    let charters = chain(&f, f.owner.region, GENESIS_ISSUED);
    let v = verify_bundle_value(&on_charter(&f, &charters)).unwrap();
    let genesis = charters[0].document.digest().unwrap();
    assert_eq!(
        v.membership,
        format!(
            "membership: checked against charter yrd-delta versions 1 to 2 (genesis {genesis}); \
             log owner: member {} 上海市大数据中心; member witnesses: 1 of 1",
            fictitious_member_id(Region::from_code(310000).unwrap(), 1)
        )
    );
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    assert_eq!(
        v.log.organisation, "上海市大数据中心",
        "the charter's, not NodeInfo's"
    );
    assert!(
        v.account[1].contains("with Zhejiang (330000)")
            && v.account[1].ends_with("[witnessed by Jiangsu (320000)]"),
        "{:?}",
        v.account
    );
}

#[test]
fn without_a_charter_membership_is_said_not_checked() {
    let v = verify_bundle_value(&fixture().bundle(6)).unwrap();
    assert!(
        v.membership.starts_with("membership: not checked"),
        "{}",
        v.membership
    );
    // An empty list is not "no charter": the genesis is missing.
    let mut b = fixture().bundle(6);
    b["charters"] = json!([]);
    assert!(refusal(&b).contains("charters:"));
}

#[test]
fn a_sock_puppet_witness_is_refused_as_not_a_member() {
    let f = fixture();
    let mut b = on_charter(&f, &chain(&f, f.owner.region, GENESIS_ISSUED));
    let puppet = Party::new(9, 320000);
    add_witness(&mut b, &f.owner, &puppet);
    let e = refusal(&b);
    assert!(
        e.starts_with(&format!(
            "witness 1: the witness {} is not a member",
            puppet.id()
        )),
        "{e}"
    );
    // Without a charter the same bundle verifies and counts it: the hole this closes.
    b.as_object_mut().unwrap().remove("charters");
    let v = verify_bundle_value(&b).unwrap();
    assert_eq!(v.witnesses.len(), 2);
}

#[test]
fn a_tampered_or_broken_charter_chain_fails() {
    for (name, b, cause) in vectors() {
        if name == "broken-chain" {
            let e = refusal(&b);
            assert!(e.contains(cause.unwrap()), "{e}");
            assert!(
                e.contains("below") || e.contains("signatures needed"),
                "{e}"
            );
        }
    }
    let f = fixture();
    let charters = chain(&f, f.owner.region, GENESIS_ISSUED);
    // The genesis alone changed (a founder's region): its own founders' signatures fail.
    let mut b = on_charter(&f, &charters);
    b["charters"][0]["document"]["members"][1]["region"] = json!("340000");
    assert!(refusal(&b).starts_with("charters:"));
    // Version 2 without the genesis, or the versions out of order.
    let mut b = on_charter(&f, &charters);
    b["charters"].as_array_mut().unwrap().remove(0);
    assert!(refusal(&b).starts_with("charters[0]: version 2, expected 1"));
    let mut b = on_charter(&f, &charters);
    b["charters"].as_array_mut().unwrap().reverse();
    assert!(refusal(&b).starts_with("charters[0]"));
}

#[test]
fn a_record_whose_region_contradicts_the_charter_fails() {
    let f = fixture();
    let e = refusal(&on_charter(&f, &chain(&f, 320000, GENESIS_ISSUED)));
    assert!(
        e.starts_with("tree head")
            || e.starts_with("record seq 0: region mismatch: actor_region is 310000, but charter version 2 binds the log owner"),
        "{e}"
    );
    assert!(e.contains("to 320000"), "{e}");
    // The counterparty's region: the charter binds the requester to Anhui.
    let mut charters = chain(&f, f.owner.region, GENESIS_ISSUED);
    let mut f2 = fixture();
    f2.requester.region = 340000;
    charters[0] = chain(&f2, f.owner.region, GENESIS_ISSUED).remove(0);
    let b = on_charter(&f, &charters);
    let e = refusal(&b);
    assert!(
        e.starts_with("charters:"),
        "version 2 no longer follows: {e}"
    );
    let only_genesis = on_charter(&f, &charters[..1]);
    let e = refusal(&only_genesis);
    assert!(
        e.starts_with(
            "record seq 1: region mismatch: counterparty_region is 330000, but charter version 1 binds the counterparty"
        ),
        "{e}"
    );
}

#[test]
fn signatures_before_the_genesis_are_named_and_not_counted() {
    let f = fixture();
    let b = on_charter(&f, &chain(&f, f.owner.region, LATE_GENESIS));
    let v = verify_bundle_value(&b).unwrap();
    assert!(
        v.membership
            .ends_with("log owner: not checked; member witnesses: 0 of 1"),
        "{}",
        v.membership
    );
    assert_eq!(
        v.warnings.len(),
        4,
        "head, records, witness, dataset-head: {:?}",
        v.warnings
    );
    assert!(v.warnings[1].starts_with("records seq 0, 1, 2, 4, 5 were made before"));
    assert!(v.warnings[2].ends_with("not counted as a member witness"));
    assert!(
        v.account[0].contains("Shanghai (310000) (not checked)"),
        "{:?}",
        v.account
    );
}

#[test]
fn a_refused_record_may_name_a_non_member() {
    let mut f = fixture();
    let stranger = refused_stranger(&mut f);
    let charters = chain(&f, f.owner.region, GENESIS_ISSUED);
    let v = verify_bundle_value(&on_charter(&f, &charters)).unwrap();
    let last = v.account.last().unwrap();
    assert!(
        last.contains(&format!("refused peer {} (not a member)", stranger.id())),
        "{last}"
    );
    // Any other kind naming it fails.
    f.records[6].kind = RecordKind::RequestReceived;
    let e = refusal(&on_charter(&f, &charters));
    assert!(
        e.starts_with(&format!(
            "record seq 6: the counterparty {} is not a member",
            stranger.id()
        )),
        "{e}"
    );
}

#[test]
fn published_evidence_charter_vectors() {
    for (name, generated, cause) in vectors() {
        let path = format!("{VECTORS_DIR}/{name}.json");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let file = canonical::parse_strict(&text).unwrap_or_default();
        assert_eq!(
            file, generated,
            "{path}: run cargo test -p yrd-node -- --ignored regenerate_evidence_charter_vectors"
        );
        match (verify_bundle_value(&file), cause) {
            (Ok(v), None) => assert!(v.membership.contains("checked against charter")),
            (Err(e), Some(c)) => assert!(e.to_string().contains(c), "{name}: {e}"),
            (r, c) => panic!("{name}: {r:?}, expected {c:?}"),
        }
    }
}

#[test]
#[ignore = "writes schemas/vectors/evidence-charter/"]
fn regenerate_evidence_charter_vectors() {
    std::fs::create_dir_all(VECTORS_DIR).unwrap();
    for (name, bundle, _) in vectors() {
        let mut text = serde_json::to_string_pretty(&bundle).unwrap();
        text.push('\n');
        std::fs::write(format!("{VECTORS_DIR}/{name}.json"), text).unwrap();
    }
}

#[test]
fn a_pinned_genesis_refuses_another_federation_or_none() {
    let f = fixture();
    let charters = chain(&f, f.owner.region, GENESIS_ISSUED);
    let ours = charters[0].document.digest().unwrap();
    let v = verify_bundle_value(&on_charter(&f, &charters)).unwrap();
    assert_eq!(v.genesis.as_deref(), Some(ours.as_str()));
    assert!(v.check_genesis(Some(&ours)).is_ok() && v.check_genesis(None).is_ok());
    // A federation the owner made up: same members, its own genesis (another expiry).
    let mut made_up = charters[0].clone();
    made_up.document.expires = "2028-01-01T00:00:00Z".into();
    made_up.signatures.clear();
    made_up.sign(f.owner.key.signing_key()).unwrap();
    made_up.sign(f.requester.key.signing_key()).unwrap();
    let theirs = verify_bundle_value(&on_charter(&f, &[made_up])).unwrap();
    let e = theirs.check_genesis(Some(&ours)).unwrap_err().to_string();
    assert!(e.contains("not from the federation's"), "{e}");
    let none = verify_bundle_value(&f.bundle(6)).unwrap();
    let e = none.check_genesis(Some(&ours)).unwrap_err().to_string();
    assert!(e.starts_with("the bundle carries no charter"), "{e}");
}

/// After the owner's member rotates its key (version 3 replaces it by a new key), the old and
/// the new key are one member for the verifiers; another member's key is not, and stays refused
/// as the log owner of a record.
#[test]
fn a_rotated_owner_is_one_member_and_another_members_key_is_not_the_owner() {
    let f = fixture();
    let mut charters = chain(&f, f.owner.region, GENESIS_ISSUED);
    let rotated = Party::new(8, f.owner.region);
    let v2 = charters[1].document.clone();
    let owner_member = v2.members[0].member_id.clone();
    let v3 = v2
        .next(
            &[crate::model::charter::Change::RotateKey(
                owner_member,
                MemberKey::ed25519_hex(hex::encode(
                    rotated.key.signing_key().verifying_key().to_bytes(),
                )),
            )],
            "2026-11-30T00:00:00Z".into(),
            v2.expires.clone(),
        )
        .unwrap();
    let mut three = SignedCharter::draft(v3);
    three.sign(f.requester.key.signing_key()).unwrap();
    three.sign(f.witness.key.signing_key()).unwrap();
    charters.push(three);
    let m = crate::model::membership::Membership::verify(&charters).unwrap();
    assert!(m.same_member(&f.owner.id(), &rotated.id()));
    assert!(m.same_member(&rotated.id(), &f.owner.id()));
    assert!(!m.same_member(&f.owner.id(), &f.requester.id()));
    assert!(!m.same_member(&f.owner.id(), "not a peer id"));
    // A record whose actor is another member's key is still not the owner's.
    let mut b = on_charter(&f, &charters[..2]);
    b["entries"][0]["record"]["actor"] = json!(f.requester.id());
    assert!(
        refusal(&b).contains("is not the log owner"),
        "{}",
        refusal(&b)
    );
}
