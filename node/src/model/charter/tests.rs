//! Each rule of the charter, attacked; and the published vectors.

use super::*;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const VECTORS_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../schemas/vectors/charter.json"
);

const ISSUED: &str = "2026-12-01T00:00:00Z";
const EXPIRES: &str = "2027-12-01T00:00:00Z";

/// Fixed keys: 1–4 the provinces, 5–8 their replacements or impostors, 9 a city.
fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn public(seed: u8) -> String {
    hex::encode(key(seed).verifying_key().to_bytes())
}

/// A fictitious 统一社会信用代码 (事业单位, region, `YRD00000n`) with a valid check character.
fn member_id(region: u32, n: u8) -> String {
    let first17 = format!("12{region}YRD0000{n:02}");
    let check = uscc_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

fn member(seed: u8, region: u32, role: Role) -> CharterMember {
    CharterMember {
        member_id: member_id(region, seed),
        organisation: format!("测试机构 {seed}"),
        region: Region::from_code(region).unwrap_or_else(|_| unreachable!()),
        role,
        keys: vec![MemberKey::ed25519_hex(public(seed))],
    }
}

fn provinces() -> Vec<CharterMember> {
    [(1, 310000), (2, 320000), (3, 330000), (4, 340000)]
        .into_iter()
        .map(|(s, r)| member(s, r, Role::Founder))
        .collect()
}

fn genesis_doc() -> Charter {
    Charter {
        federation: Federation {
            id: "yrd-delta".into(),
            name: "长三角政务数据共享联盟".into(),
        },
        version: 1,
        previous: None,
        issued: ISSUED.into(),
        expires: EXPIRES.into(),
        members: provinces(),
        policy: ChangePolicy {
            signers: Role::Founder,
            threshold: 3,
        },
    }
}

fn signed_by(doc: Charter, seeds: &[u8]) -> Result<SignedCharter, CharterError> {
    let mut s = SignedCharter::draft(doc);
    for seed in seeds {
        s.sign(&key(*seed))?;
    }
    Ok(s)
}

fn genesis() -> Result<SignedCharter, CharterError> {
    signed_by(genesis_doc(), &[1, 2, 3])
}

/// Version 2: Suzhou (seed 9) joins as a member.
fn next_doc(prev: &SignedCharter) -> Result<Charter, CharterError> {
    let mut doc = prev.document.clone();
    doc.version += 1;
    doc.previous = Some(prev.document.digest()?);
    doc.issued = "2026-12-02T00:00:00Z".into();
    // Suzhou (seed 9) joins at version 2, Wuxi (seed 10) at 3, and so on.
    let (seed, region) = match doc.version {
        2 => (9, 320500),
        _ => (8 + doc.version as u8, 320200),
    };
    doc.members.push(member(seed, region, Role::Member));
    Ok(doc)
}

fn code<T: std::fmt::Debug>(r: Result<T, CharterError>) -> String {
    match r {
        Ok(v) => format!("accepted: {v:?}"),
        Err(e) => e.code().to_string(),
    }
}

#[test]
fn uscc_check_character_matches_real_codes() {
    // Published codes of real companies: the check character is GB 32100-2015's.
    for real in [
        "91350100M000100Y43",
        "9144030071526726XG",
        "91330100799655058B",
        "91110000600037341L",
    ] {
        assert!(is_valid_member_id(real), "{real}");
        let mut altered = real.to_string();
        altered.replace_range(5..6, if &real[5..6] == "1" { "2" } else { "1" });
        assert!(!is_valid_member_id(&altered), "{altered}");
    }
    for bad in [
        "",
        "91350100M000100Y4",
        "91350100M000100Y433",
        "91350100I000100Y43", // I is not in the alphabet
        "91350100m000100Y43",
        "91350100M000100Y4中",
    ] {
        assert!(!is_valid_member_id(bad), "{bad:?}");
    }
    assert!(is_valid_member_id(&member_id(310000, 1)));
}

#[test]
fn genesis_needs_a_threshold_of_its_own_founders() -> TestResult {
    let v = verify_genesis(&genesis()?)?;
    assert_eq!(v.signed_by_own.len(), 3);
    assert!(v.signed_by_previous.is_empty());
    assert_eq!(
        code(verify_genesis(&signed_by(genesis_doc(), &[1, 2])?)),
        "below-threshold-own"
    );
    // Three signatures, but by keys no founder holds.
    assert_eq!(
        code(verify_genesis(&signed_by(genesis_doc(), &[1, 5, 6])?)),
        "below-threshold-own"
    );
    // A genesis that names a previous version, or is not version 1.
    let mut doc = genesis_doc();
    doc.previous = Some("00".repeat(32));
    assert_eq!(
        code(verify_genesis(&signed_by(doc, &[1, 2, 3])?)),
        "invalid"
    );
    let mut doc = genesis_doc();
    doc.version = 2;
    doc.previous = Some("00".repeat(32));
    assert_eq!(
        code(verify_genesis(&signed_by(doc, &[1, 2, 3])?)),
        "invalid"
    );
    Ok(())
}

#[test]
fn signatures_by_non_founders_do_not_count() -> TestResult {
    let mut doc = genesis_doc();
    doc.members.push(member(9, 320500, Role::Member));
    doc.members.push(member(8, 320100, Role::Observer));
    // Two founders, a member and an observer: only two count.
    let signed = signed_by(doc.clone(), &[1, 2, 9, 8])?;
    match verify_genesis(&signed) {
        Err(CharterError::BelowThreshold {
            counted, needed, ..
        }) => {
            assert_eq!((counted, needed), (2, 3));
        }
        other => return Err(format!("expected BelowThreshold, got {other:?}").into()),
    }
    // Under a policy of members signing, founders' signatures are the ones that do not count.
    doc.policy = ChangePolicy {
        signers: Role::Member,
        threshold: 1,
    };
    assert!(verify_genesis(&signed_by(doc.clone(), &[9])?).is_ok());
    assert_eq!(
        code(verify_genesis(&signed_by(doc, &[1, 2, 3])?)),
        "below-threshold-own"
    );
    Ok(())
}

#[test]
fn one_member_counts_once_whatever_it_signs_with() -> TestResult {
    // Founder 1 holds two keys and signs with both; founder 2 signs twice by entry.
    let mut doc = genesis_doc();
    doc.members[0].keys.push(MemberKey::ed25519_hex(public(5)));
    let mut signed = signed_by(doc, &[1, 5, 2])?;
    let dup = signed.signatures[2].clone();
    signed.signatures.push(dup);
    match verify_genesis(&signed) {
        Err(CharterError::BelowThreshold { counted: 2, .. }) => Ok(()),
        other => Err(format!("expected 2 counted, got {other:?}").into()),
    }
}

#[test]
fn a_signature_over_another_document_does_not_count() -> TestResult {
    let mut signed = genesis()?;
    signed.document.members[3].organisation = "改过的名字".into();
    assert_eq!(code(verify_genesis(&signed)), "below-threshold-own");
    // A signature entry naming a founder's key but made by another key.
    let mut signed = genesis()?;
    signed.signatures[0].signer = public(4);
    assert_eq!(code(verify_genesis(&signed)), "below-threshold-own");
    Ok(())
}

#[test]
fn keys_and_members_are_unique_and_valid() -> TestResult {
    let mut doc = genesis_doc();
    doc.members[1].keys[0].public_key = public(1);
    match doc.check() {
        Err(CharterError::Invalid { field, .. }) => {
            assert_eq!(field, "members[1].keys[0].public_key")
        }
        other => return Err(format!("expected Invalid, got {other:?}").into()),
    }
    let mut doc = genesis_doc();
    let k = doc.members[0].keys[0].clone();
    doc.members[0].keys.push(k);
    assert_eq!(code(doc.check()), "invalid");
    let mut doc = genesis_doc();
    doc.members[2].member_id = doc.members[0].member_id.clone();
    assert_eq!(code(doc.check()), "invalid");
    let mut doc = genesis_doc();
    let good = member_id(330000, 3);
    let wrong_check = if good.ends_with('0') { '1' } else { '0' };
    doc.members[2].member_id = format!("{}{wrong_check}", &good[..17]);
    let e = doc.check().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("members[2].member_id") && e.contains("统一社会信用代码"),
        "{e}"
    );
    // Weak and malformed keys.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for bad in [hex::encode(identity), public(1).to_uppercase(), "ab".into()] {
        let mut doc = genesis_doc();
        doc.members[0].keys[0].public_key = bad.clone();
        assert_eq!(code(doc.check()), "invalid", "{bad}");
    }
    // A policy its own members cannot meet, or one observers sign.
    let mut doc = genesis_doc();
    doc.policy.threshold = 5;
    assert_eq!(code(doc.check()), "invalid");
    doc.policy.threshold = 0;
    assert_eq!(code(doc.check()), "invalid");
    doc.policy = ChangePolicy {
        signers: Role::Observer,
        threshold: 1,
    };
    assert_eq!(code(doc.check()), "invalid");
    Ok(())
}

#[test]
fn everything_is_bounded() -> TestResult {
    let mut doc = genesis_doc();
    doc.members[0].keys = (10..=14)
        .map(|s| MemberKey::ed25519_hex(public(s)))
        .collect();
    assert_eq!(code(doc.check()), "invalid");
    let mut doc = genesis_doc();
    doc.members[0].organisation = "长".repeat(MAX_NAME_CHARS + 1);
    assert_eq!(code(doc.check()), "invalid");
    let mut doc = genesis_doc();
    doc.federation.id = "a".repeat(65);
    assert_eq!(code(doc.check()), "invalid");
    let mut doc = genesis_doc();
    doc.version = MAX_EXACT_INTEGER + 1;
    doc.previous = Some("00".repeat(32));
    assert_eq!(code(doc.check()), "invalid");
    let mut doc = genesis_doc();
    doc.expires = ISSUED.into();
    assert_eq!(code(doc.check()), "invalid");
    let mut doc = genesis_doc();
    doc.members = (0..=MAX_MEMBERS)
        .map(|_| member(1, 310000, Role::Founder))
        .collect();
    assert_eq!(code(doc.check()), "invalid");
    let mut signed = genesis()?;
    let s = signed.signatures[0].clone();
    signed.signatures = vec![s; MAX_SIGNATURES + 1];
    assert_eq!(code(signed.check()), "invalid");
    // Text over the byte cap is refused before it is parsed.
    let text = format!(
        "{}{}",
        genesis()?.to_json_pretty()?,
        " ".repeat(MAX_CHARTER_BYTES)
    );
    assert_eq!(code(SignedCharter::from_json(&text)), "too-large");
    Ok(())
}

#[test]
fn strict_parsing_refuses_repeats_unknown_fields_and_other_types() -> TestResult {
    let text = genesis()?.to_json_pretty()?;
    assert!(SignedCharter::from_json(&text).is_ok());
    let repeated = text.replacen("\"version\": 1,", "\"version\": 1, \"version\": 1,", 1);
    assert_eq!(code(SignedCharter::from_json(&repeated)), "malformed");
    let extra = text.replacen("\"signatures\"", "\"comment\": 1, \"signatures\"", 1);
    assert_eq!(code(SignedCharter::from_json(&extra)), "malformed");
    let other = text.replacen("\"charter\"", "\"node-info\"", 1);
    assert_eq!(code(SignedCharter::from_json(&other)), "malformed");
    let unknown = text.replacen("\"ed25519\"", "\"sm9\"", 1);
    assert_eq!(code(SignedCharter::from_json(&unknown)), "malformed");
    Ok(())
}

#[test]
fn an_update_applies_with_both_thresholds() -> TestResult {
    let g = genesis()?;
    let mut chain = CharterChain::from_genesis(&g)?;
    let v2 = signed_by(next_doc(&g)?, &[2, 3, 4])?;
    assert_eq!(chain.offer(&v2)?, Offer::Applied { version: 2 });
    assert_eq!(chain.current().version(), 2);
    assert_eq!(chain.current().signed_by_previous.len(), 3);
    assert_eq!(chain.versions().len(), 2);
    // Offered again with one more signature: held, the signature kept.
    let more = signed_by(next_doc(&g)?, &[1])?;
    assert_eq!(
        chain.offer(&more)?,
        Offer::Held {
            version: 2,
            added: 1
        }
    );
    assert_eq!(chain.current().charter.signatures.len(), 4);
    assert_eq!(
        chain.offer(&g)?,
        Offer::Held {
            version: 1,
            added: 0
        }
    );
    Ok(())
}

#[test]
fn an_update_needs_a_threshold_of_the_previous_signers() -> TestResult {
    // Three impostors name themselves the founders of version 2 and sign it; only one real
    // founder (1) signs along.
    let g = genesis()?;
    let mut doc = next_doc(&g)?;
    doc.members = vec![
        member(1, 310000, Role::Founder),
        member(5, 320000, Role::Founder),
        member(6, 330000, Role::Founder),
        member(7, 340000, Role::Founder),
    ];
    let signed = signed_by(doc.clone(), &[1, 5, 6, 7])?;
    let chain = CharterChain::from_genesis(&g)?;
    assert_eq!(
        code(verify_update(chain.current(), &signed)),
        "below-threshold-previous"
    );
    // With three of the old founders as well, it applies: a legitimate rotation of keys.
    let rotated = signed_by(doc, &[1, 2, 3, 5, 6, 7])?;
    assert!(verify_update(chain.current(), &rotated).is_ok());
    Ok(())
}

#[test]
fn an_update_needs_a_threshold_of_its_own_signers() -> TestResult {
    // The old founders sign a version whose founders are new keys that did not sign: refused,
    // so a version is never in force that its own signers could not have changed.
    let g = genesis()?;
    let mut doc = next_doc(&g)?;
    for (m, seed) in doc.members.iter_mut().zip([5u8, 6, 7, 8]) {
        m.keys[0].public_key = public(seed);
    }
    let signed = signed_by(doc.clone(), &[1, 2, 3])?;
    let chain = CharterChain::from_genesis(&g)?;
    assert_eq!(
        code(verify_update(chain.current(), &signed)),
        "below-threshold-own"
    );
    // A raised threshold is the new version's own: 4 of 4 needed.
    let mut doc = next_doc(&g)?;
    doc.policy.threshold = 4;
    assert_eq!(
        code(verify_update(
            chain.current(),
            &signed_by(doc.clone(), &[1, 2, 3])?
        )),
        "below-threshold-own"
    );
    assert!(verify_update(chain.current(), &signed_by(doc, &[1, 2, 3, 4])?).is_ok());
    Ok(())
}

#[test]
fn an_update_names_the_previous_digest_and_federation() -> TestResult {
    let g = genesis()?;
    let chain = CharterChain::from_genesis(&g)?;
    let mut doc = next_doc(&g)?;
    doc.previous = Some("ab".repeat(32));
    assert_eq!(
        code(verify_update(chain.current(), &signed_by(doc, &[1, 2, 3])?)),
        "wrong-previous"
    );
    let mut doc = next_doc(&g)?;
    doc.federation.id = "other".into();
    assert_eq!(
        code(verify_update(chain.current(), &signed_by(doc, &[1, 2, 3])?)),
        "other-federation"
    );
    // Adding signatures does not change the digest the next version names.
    let mut more = g.clone();
    more.sign(&key(4))?;
    assert_eq!(more.document.digest()?, g.document.digest()?);
    Ok(())
}

#[test]
fn versions_are_applied_one_at_a_time_never_back() -> TestResult {
    let g = genesis()?;
    let v2 = signed_by(next_doc(&g)?, &[1, 2, 3])?;
    let v3 = signed_by(next_doc(&v2)?, &[1, 2, 3])?;
    let mut chain = CharterChain::from_genesis(&g)?;
    assert_eq!(code(chain.offer(&v3)), "skipped-version");
    chain.offer(&v2)?;
    chain.offer(&v3)?;
    assert_eq!(chain.current().version(), 3);
    // An old version 2 that is not the one applied, and not validly signed: a rollback.
    let mut stale = next_doc(&g)?;
    stale.members.pop();
    assert_eq!(code(chain.offer(&signed_by(stale, &[1])?)), "rollback");
    assert_eq!(chain.current().version(), 3);
    Ok(())
}

#[test]
fn two_validly_signed_documents_of_one_version_are_equivocation() -> TestResult {
    let g = genesis()?;
    let (v2, v2b) = two_versions_2(&g)?;
    let mut chain = CharterChain::from_genesis(&g)?;
    chain.offer(&v2)?;
    match chain.offer(&v2b)? {
        Offer::Equivocation(e) => {
            assert_eq!(e.version, 2);
            assert_eq!(e.held, v2);
            assert_eq!(e.offered, v2b);
        }
        other => return Err(format!("expected equivocation, got {other:?}").into()),
    }
    let now = crate::clock::parse_rfc3339(ISSUED).ok_or("time")?;
    assert_eq!(
        chain.state(now),
        CharterState::Equivocated { version: 2, at: 2 }
    );
    // Nothing after it is applied but the version that resolves it.
    let v4 = signed_by(
        next_doc(&signed_by(next_doc(&v2)?, &[1, 2, 3])?)?,
        &[1, 2, 3],
    )?;
    assert_eq!(code(chain.offer(&v4)), "equivocated");
    assert!(chain.equivocation().is_some());
    // Two geneses, each validly signed, are equivocation too.
    let mut g2 = genesis_doc();
    g2.federation.name = "另一个联盟".into();
    let mut chain = CharterChain::from_genesis(&g)?;
    assert_eq!(
        chain.offer(&signed_by(g2, &[1, 2, 4])?)?.code(),
        "equivocation"
    );
    Ok(())
}

/// Two validly signed versions 2 of `g` that differ (a member's region).
fn two_versions_2(
    g: &SignedCharter,
) -> Result<(SignedCharter, SignedCharter), Box<dyn std::error::Error>> {
    let v2 = signed_by(next_doc(g)?, &[1, 2, 3])?;
    let mut other = next_doc(g)?;
    if let Some(m) = other.members.last_mut() {
        m.region = Region::from_code(330500)?;
    }
    Ok((v2, signed_by(other, &[2, 3, 4])?))
}

/// The chain holding v2 of [`two_versions_2`], v2b offered after it: an equivocation.
fn equivocated_at_2()
-> Result<(CharterChain, SignedCharter, SignedCharter), Box<dyn std::error::Error>> {
    let g = genesis()?;
    let (v2, v2b) = two_versions_2(&g)?;
    let mut chain = CharterChain::from_genesis(&g)?;
    chain.offer(&v2)?;
    assert_eq!(chain.offer(&v2b)?.code(), "equivocation");
    Ok((chain, v2, v2b))
}

#[test]
fn the_next_version_resolves_an_equivocation_for_the_document_it_names() -> TestResult {
    let digest = |c: &SignedCharter| c.document.digest();
    // v3 names the held document: kept, and the chain goes on.
    let (mut chain, v2, v2b) = equivocated_at_2()?;
    let v3 = signed_by(next_doc(&v2)?, &[1, 2, 3])?;
    // Under-signed, it is refused naming the rule, and the equivocation stands.
    let weak = signed_by(next_doc(&v2)?, &[1, 2])?;
    assert_eq!(code(chain.offer(&weak)), "below-threshold-previous");
    assert!(chain.equivocation().is_some());
    assert_eq!(
        chain.offer(&v3)?,
        Offer::Resolved {
            version: 3,
            at: 2,
            kept: digest(&v2)?,
            dropped: digest(&v2b)?,
        }
    );
    assert!(chain.equivocation().is_none());
    assert_eq!(chain.current().version(), 3);
    assert_eq!(chain.versions()[1].charter, v2);

    // v3 names the other document: it takes version 2's place.
    let (mut chain, v2, v2b) = equivocated_at_2()?;
    let v3b = signed_by(next_doc(&v2b)?, &[1, 2, 3])?;
    assert_eq!(
        chain.offer(&v3b)?,
        Offer::Resolved {
            version: 3,
            at: 2,
            kept: digest(&v2b)?,
            dropped: digest(&v2)?,
        }
    );
    assert_eq!(chain.versions()[1].charter, v2b);
    assert_eq!(chain.current().charter, v3b);
    // The resolved chain verifies from the genesis like any other, and v2 is now a rollback.
    let all: Vec<SignedCharter> = chain.versions().iter().map(|v| v.charter.clone()).collect();
    assert_eq!(CharterChain::verify_all(&all)?.current().version(), 3);
    // The dropped document offered again is refused as such, not a new equivocation.
    assert_eq!(code(chain.offer(&v2)), "dropped");
    assert!(chain.equivocation().is_none());

    // A version naming neither document is refused naming the rule.
    let (mut chain, _, _) = equivocated_at_2()?;
    let mut stray = next_doc(&genesis()?)?;
    stray.version = 3;
    assert_eq!(
        code(chain.offer(&signed_by(stray, &[1, 2, 3])?)),
        "wrong-previous"
    );
    assert!(chain.equivocation().is_some());

    // The other document arriving after the chain went on: the next version keeps the held one.
    let g = genesis()?;
    let v2 = signed_by(next_doc(&g)?, &[1, 2, 3])?;
    let v3 = signed_by(next_doc(&v2)?, &[1, 2, 3])?;
    let mut chain = CharterChain::from_genesis(&g)?;
    chain.offer(&v2)?;
    chain.offer(&v3)?;
    let (_, _, v2b) = equivocated_at_2()?;
    assert_eq!(chain.offer(&v2b)?.code(), "equivocation");
    let v4 = signed_by(next_doc(&v3)?, &[1, 2, 3])?;
    assert_eq!(
        chain.offer(&v4)?,
        Offer::Resolved {
            version: 4,
            at: 2,
            kept: digest(&v2)?,
            dropped: digest(&v2b)?,
        }
    );
    Ok(())
}

#[test]
fn an_expired_charter_is_a_state_not_a_failure() -> TestResult {
    let chain = CharterChain::from_genesis(&genesis()?)?;
    let before = crate::clock::parse_rfc3339("2027-11-30T23:59:59Z").ok_or("time")?;
    let after = crate::clock::parse_rfc3339(EXPIRES).ok_or("time")?;
    assert!(matches!(
        chain.state(before),
        CharterState::InForce { version: 1, .. }
    ));
    assert!(matches!(
        chain.state(after),
        CharterState::Expired { version: 1, .. }
    ));
    // An expired version can still be followed by the next one (as in TUF).
    let mut g = genesis_doc();
    g.expires = "2026-12-01T00:00:01Z".into();
    let g = signed_by(g, &[1, 2, 3])?;
    let mut chain = CharterChain::from_genesis(&g)?;
    let mut next = next_doc(&g)?;
    next.expires = EXPIRES.into();
    assert!(matches!(
        chain.offer(&signed_by(next, &[1, 2, 3])?)?,
        Offer::Applied { .. }
    ));
    Ok(())
}

#[test]
fn peers_and_regions_come_from_the_keys() -> TestResult {
    let doc = genesis_doc();
    let peer = crate::identity::peer_id_of(&key(2).verifying_key()).ok_or("peer")?;
    let m = doc.member_of_peer(&peer).ok_or("member")?;
    assert_eq!(m.region.code(), 320000);
    assert_eq!(doc.peers().len(), 4);
    assert!(doc.member_of_key(&public(9)).is_none());
    Ok(())
}

// ---- published vectors ----

fn key_entry(name: &str, seed: u8) -> Result<Value, Box<dyn std::error::Error>> {
    let peer = crate::identity::peer_id_of(&key(seed).verifying_key()).ok_or("peer")?;
    Ok(json!({
        "name": name,
        "secret_key": hex::encode(key(seed).to_bytes()),
        "public_key": public(seed),
        "peer_id": peer.to_string(),
    }))
}

/// `(description, held, offered, verdict)`; `held` empty means `offered` is a genesis.
type Case = (&'static str, Vec<SignedCharter>, SignedCharter);

fn vector_cases() -> Result<Vec<Case>, Box<dyn std::error::Error>> {
    let g = genesis()?;
    let v2 = signed_by(next_doc(&g)?, &[2, 3, 4])?;
    let mut other = next_doc(&g)?;
    if let Some(m) = other.members.last_mut() {
        m.region = Region::from_code(330500)?;
    }
    let v2b = signed_by(other, &[1, 2, 3])?;
    let v3 = signed_by(next_doc(&v2)?, &[1, 2, 3])?;
    let v3b = signed_by(next_doc(&v2b)?, &[1, 2, 4])?;
    let mut takeover = next_doc(&g)?;
    takeover.members = vec![
        member(1, 310000, Role::Founder),
        member(5, 320000, Role::Founder),
        member(6, 330000, Role::Founder),
        member(7, 340000, Role::Founder),
    ];
    let mut new_keys = next_doc(&g)?;
    for (m, seed) in new_keys.members.iter_mut().zip([5u8, 6, 7, 8]) {
        m.keys[0].public_key = public(seed);
    }
    let mut wrong_previous = next_doc(&g)?;
    wrong_previous.previous = Some("ab".repeat(32));
    let mut city_signed = genesis_doc();
    city_signed.members.push(member(9, 320500, Role::Member));
    // Jiangsu's key 2 under rotation to key 5 (both in force); and a key claiming to replace
    // another member's key.
    let successor = |of: u8| MemberKey {
        replaces: Some(public(of)),
        ..MemberKey::ed25519_hex(public(5))
    };
    let mut rotating = next_doc(&g)?;
    rotating.members[1].keys.push(successor(2));
    let mut replaces_other = next_doc(&g)?;
    replaces_other.members[1].keys.push(successor(1));
    Ok(vec![
        ("genesis signed by 3 of 4 founders", vec![], g.clone()),
        (
            "genesis signed by 2 of 4 founders",
            vec![],
            signed_by(genesis_doc(), &[1, 2])?,
        ),
        (
            "genesis signed by 2 founders and a member: the member's signature does not count",
            vec![],
            signed_by(city_signed, &[1, 2, 9])?,
        ),
        (
            "update adding Suzhou, signed by 3 of 4 founders",
            vec![g.clone()],
            v2.clone(),
        ),
        (
            "update naming 3 new founders, signed by them and 1 old founder",
            vec![g.clone()],
            signed_by(takeover, &[1, 5, 6, 7])?,
        ),
        (
            "update replacing every founder key, signed by the old keys only",
            vec![g.clone()],
            signed_by(new_keys, &[1, 2, 3])?,
        ),
        (
            "update adding Jiangsu's next key 5, replacing its key 2 (a rotation under way)",
            vec![g.clone()],
            signed_by(rotating, &[1, 2, 3])?,
        ),
        (
            "update adding a key to Jiangsu that claims to replace Shanghai's key",
            vec![g.clone()],
            signed_by(replaces_other, &[1, 2, 3])?,
        ),
        (
            "update naming another previous digest",
            vec![g.clone()],
            signed_by(wrong_previous, &[1, 2, 3])?,
        ),
        (
            "version 3 offered on version 1",
            vec![g.clone()],
            v3.clone(),
        ),
        (
            "a second, different version 2, validly signed",
            vec![g.clone(), v2.clone()],
            v2b.clone(),
        ),
        (
            "version 2 again with an added signature",
            vec![g.clone(), v2.clone()],
            signed_by(next_doc(&g)?, &[1])?,
        ),
        (
            "version 3 after version 2",
            vec![g.clone(), v2.clone()],
            v3.clone(),
        ),
        (
            "after an equivocation at version 2, version 3 naming the version 2 held",
            vec![g.clone(), v2.clone(), v2b.clone()],
            v3.clone(),
        ),
        (
            "after an equivocation at version 2, version 3 naming the other version 2 (it takes its place)",
            vec![g.clone(), v2.clone(), v2b.clone()],
            v3b.clone(),
        ),
        (
            "after an equivocation at version 2, version 3 signed by 2 founders only",
            vec![g.clone(), v2.clone(), v2b.clone()],
            signed_by(next_doc(&v2)?, &[1, 2])?,
        ),
        (
            "after an equivocation at version 2, version 4",
            vec![g.clone(), v2.clone(), v2b.clone()],
            signed_by(next_doc(&v3)?, &[1, 2, 3])?,
        ),
        (
            "the version 2 dropped by the resolution, offered again",
            vec![g.clone(), v2.clone(), v2b.clone(), v3b],
            v2,
        ),
    ])
}

fn verdict(held: &[SignedCharter], offered: &SignedCharter) -> String {
    if held.is_empty() {
        return match verify_genesis(offered) {
            Ok(_) => "applied".into(),
            Err(e) => e.code().into(),
        };
    }
    // The documents held are offered in order, so that a case can hold an equivocation (two
    // documents of one version) or its resolution.
    let mut chain = match CharterChain::from_genesis(&held[0]) {
        Ok(c) => c,
        Err(e) => return format!("held chain refused: {e}"),
    };
    for h in &held[1..] {
        if let Err(e) = chain.offer(h) {
            return format!("held chain refused: {e}");
        }
    }
    match chain.offer(offered) {
        Ok(o) => o.code().into(),
        Err(e) => e.code().into(),
    }
}

fn build_vectors() -> Result<Value, Box<dyn std::error::Error>> {
    let keys = vec![
        key_entry("Shanghai founder", 1)?,
        key_entry("Jiangsu founder", 2)?,
        key_entry("Zhejiang founder", 3)?,
        key_entry("Anhui founder", 4)?,
        key_entry("impostor or replacement 5", 5)?,
        key_entry("impostor or replacement 6", 6)?,
        key_entry("impostor or replacement 7", 7)?,
        key_entry("impostor or replacement 8", 8)?,
        key_entry("Suzhou member", 9)?,
    ];
    let mut cases = Vec::new();
    for (description, held, offered) in vector_cases()? {
        let message = offered.document.signing_message()?;
        cases.push(json!({
            "description": description,
            "held": held,
            "offered": offered,
            "offered_digest": offered.document.digest()?,
            "offered_message_hex": hex::encode(message),
            "verdict": verdict(&held, &offered),
        }));
    }
    Ok(json!({
        "domain": domain_tag(),
        "keys": keys,
        "cases": cases,
    }))
}

#[test]
fn published_charter_vectors_hold() -> TestResult {
    let text = std::fs::read_to_string(VECTORS_PATH)?;
    let file = canonical::parse_strict(&text)?;
    let cases = file["cases"].as_array().ok_or("no cases")?;
    let mut verdicts = BTreeSet::new();
    for case in cases {
        let held: Vec<SignedCharter> = serde_json::from_value(case["held"].clone())?;
        let offered: SignedCharter = serde_json::from_value(case["offered"].clone())?;
        let expected = case["verdict"].as_str().ok_or("verdict")?;
        assert_eq!(
            verdict(&held, &offered),
            expected,
            "{}",
            case["description"]
        );
        assert_eq!(
            case["offered_digest"].as_str(),
            Some(offered.document.digest()?.as_str())
        );
        verdicts.insert(expected.to_string());
    }
    for v in [
        "applied",
        "held",
        "equivocation",
        "below-threshold-own",
        "below-threshold-previous",
        "wrong-previous",
        "skipped-version",
        "resolved",
        "equivocated",
        "dropped",
    ] {
        assert!(verdicts.contains(v), "no vector has verdict {v}");
    }
    assert_eq!(
        file,
        build_vectors()?,
        "run: cargo test -p yrd-node -- --ignored regenerate_charter_vectors"
    );
    Ok(())
}

#[test]
#[ignore = "writes schemas/vectors/charter.json"]
fn regenerate_charter_vectors() -> TestResult {
    let mut text = serde_json::to_string_pretty(&build_vectors()?)?;
    text.push('\n');
    std::fs::write(VECTORS_PATH, text)?;
    Ok(())
}

#[test]
fn changes_make_the_next_draft() -> TestResult {
    let g = genesis_doc();
    let suzhou = member(9, 320500, Role::Member);
    let next = g.next(
        &[
            Change::AddMember(suzhou.clone()),
            Change::SetRegion(suzhou.member_id.clone(), Region::from_code(320200)?),
            Change::RotateKey(g.members[0].member_id.clone(), key_from_text(&public(5))?),
            Change::SetPolicy(ChangePolicy {
                signers: Role::Founder,
                threshold: 4,
            }),
        ],
        "2026-12-02T00:00:00Z".into(),
        EXPIRES.into(),
    )?;
    assert_eq!(next.version, 2);
    assert_eq!(next.previous, Some(g.digest()?));
    assert_eq!(next.members[4].region.code(), 320200);
    assert_eq!(next.members[0].keys[0].public_key, public(5));
    assert_eq!(next.policy.threshold, 4);
    // Changes that break a rule are refused when the draft is made.
    let dup = g.next(
        &[Change::AddMember(g.members[1].clone())],
        ISSUED.into(),
        EXPIRES.into(),
    );
    assert_eq!(code(dup), "invalid");
    let gone = g.next(
        &[Change::RemoveMember("nobody".into())],
        ISSUED.into(),
        EXPIRES.into(),
    );
    assert_eq!(code(gone), "invalid");
    let too_few = g.next(
        &[Change::SetRole(
            g.members[0].member_id.clone(),
            Role::Member,
        )],
        ISSUED.into(),
        EXPIRES.into(),
    );
    assert!(too_few.is_ok(), "3 founders still meet a threshold of 3");
    // A peer id names its key.
    let peer = crate::identity::peer_id_of(&key(3).verifying_key()).ok_or("peer")?;
    assert_eq!(key_from_text(&peer.to_string())?.public_key, public(3));
    assert!(key_from_text("12D3KooWnotapeer").is_err());
    Ok(())
}

/// A key under rotation names the key it replaces: another key of the same member, one
/// successor per key; retiring the old key ends the rotation (the successor replaces nothing).
#[test]
fn a_rotation_names_the_key_it_replaces_and_retiring_it_ends_it() -> TestResult {
    let g = genesis_doc();
    let jiangsu = g.members[1].member_id.clone();
    let successor = |of: u8, seed: u8| MemberKey {
        replaces: Some(public(of)),
        ..MemberKey::ed25519_hex(public(seed))
    };
    // Jiangsu adds a second node (seed 7, replacing nothing) and a successor of key 2 (seed 6).
    let v2 = g.next(
        &[
            Change::AddKey(jiangsu.clone(), MemberKey::ed25519_hex(public(7))),
            Change::AddKey(jiangsu.clone(), successor(2, 6)),
        ],
        ISSUED.into(),
        EXPIRES.into(),
    )?;
    assert_eq!(v2.members[1].keys.len(), 3);
    // The field is absent when unset, so documents without rotations keep their digests.
    let text = serde_json::to_string(&v2.members[1].keys[1])?;
    assert!(!text.contains("replaces"), "{text}");
    let text = serde_json::to_string(&v2.members[1].keys[2])?;
    assert!(
        text.contains(&format!("\"replaces\":\"{}\"", public(2))),
        "{text}"
    );
    // Stage 2 retires key 2: the successor stays and replaces nothing any more.
    let v3 = v2.next(
        &[Change::RetireKey(jiangsu.clone(), public(2))],
        ISSUED.into(),
        EXPIRES.into(),
    )?;
    let keys: Vec<_> = v3.members[1]
        .keys
        .iter()
        .map(|k| k.public_key.clone())
        .collect();
    assert_eq!(keys, vec![public(7), public(6)]);
    assert!(v3.members[1].keys.iter().all(|k| k.replaces.is_none()));
    let e = v3.next(
        &[Change::RetireKey(jiangsu.clone(), public(2))],
        ISSUED.into(),
        EXPIRES.into(),
    );
    assert_eq!(code(e), "invalid", "a key retired twice");
    // Refused: replacing a key the member does not hold (another member's, or none), replacing
    // itself, and two successors of one key.
    for bad in [successor(1, 6), successor(9, 6), successor(6, 6)] {
        let mut doc = genesis_doc();
        doc.members[1].keys.push(bad.clone());
        match doc.check() {
            Err(CharterError::Invalid { field, .. }) => {
                assert_eq!(field, "members[1].keys[1].replaces", "{bad:?}")
            }
            other => return Err(format!("expected Invalid for {bad:?}, got {other:?}").into()),
        }
    }
    let mut doc = genesis_doc();
    doc.members[1].keys.push(successor(2, 6));
    doc.members[1].keys.push(successor(2, 7));
    assert_eq!(code(doc.check()), "invalid", "two successors of key 2");
    // A strict parser: `replaces` must be a string of a key.
    let mut value = serde_json::to_value(successor(2, 6))?;
    value["replaces"] = serde_json::json!(5);
    assert!(serde_json::from_value::<MemberKey>(value).is_err());
    Ok(())
}

#[test]
fn a_rotated_key_still_names_its_member() -> TestResult {
    let g = genesis()?;
    let mut chain = CharterChain::from_genesis(&g)?;
    let jiangsu = g.document.members[1].member_id.clone();
    // Version 2: Jiangsu (seed 2) replaces its key by seed 6, signed by three founders of v1
    // and three of v2.
    let doc = g.document.next(
        &[Change::RotateKey(
            jiangsu.clone(),
            key_from_text(&public(6))?,
        )],
        "2026-12-02T00:00:00Z".into(),
        EXPIRES.into(),
    )?;
    let v2 = signed_by(doc, &[1, 3, 4])?;
    assert_eq!(chain.offer(&v2)?, Offer::Applied { version: 2 });
    assert!(
        chain
            .current()
            .document()
            .member_of_key(&public(2))
            .is_none()
    );
    // The retired key and the new one are the same member's; a key never listed is no one's.
    assert_eq!(chain.member_id_of_key(&public(2)), Some(jiangsu.as_str()));
    assert_eq!(chain.member_id_of_key(&public(6)), Some(jiangsu.as_str()));
    assert_eq!(chain.member_id_of_key(&public(9)), None);
    let peer = crate::identity::peer_id_of(&key(6).verifying_key()).ok_or("peer")?;
    assert_eq!(public_hex_of_peer(&peer), Some(public(6)));
    Ok(())
}

#[test]
fn a_key_given_to_two_members_names_neither() -> TestResult {
    let g = genesis()?;
    let mut chain = CharterChain::from_genesis(&g)?;
    let (shanghai, jiangsu) = (
        g.document.members[0].member_id.clone(),
        g.document.members[1].member_id.clone(),
    );
    // Version 2: Jiangsu retires key 2; version 3 gives key 2 to Shanghai.
    let doc = g.document.next(
        &[Change::RotateKey(jiangsu, key_from_text(&public(6))?)],
        "2026-12-02T00:00:00Z".into(),
        EXPIRES.into(),
    )?;
    let v2 = signed_by(doc, &[1, 3, 4])?;
    chain.offer(&v2)?;
    let doc = v2.document.next(
        &[Change::AddKey(shanghai, key_from_text(&public(2))?)],
        "2026-12-03T00:00:00Z".into(),
        EXPIRES.into(),
    )?;
    chain.offer(&signed_by(doc, &[1, 3, 4])?)?;
    assert_eq!(chain.current().version(), 3);
    assert_eq!(chain.member_id_of_key(&public(2)), None);
    Ok(())
}

/// The signing message is written straight from the document (the fast path) and is the
/// same bytes as through a `serde_json::Value`; a version no double holds exactly is still
/// refused (the fast path leaves it to the `Value` path's check).
#[test]
fn the_signing_message_is_the_same_on_both_canonical_paths() -> TestResult {
    let mut doc = genesis_doc();
    doc.federation.name = "长三角 \u{1F600} \"quoted\" \\ \u{7}".into();
    let value = serde_json::to_value(&doc)?;
    assert_eq!(
        doc.signing_message()?,
        crate::model::signed::signing_message(Charter::TYPE, &value)?
    );
    doc.version = (1 << 53) + 1;
    assert!(doc.signing_message().is_err());
    Ok(())
}

/// A copy full of signatures keeps no more: another copy's new signers are not added (nor
/// verified) once [`MAX_SIGNATURES`] are held.
#[test]
fn a_full_copy_takes_no_more_signatures() -> TestResult {
    let doc = genesis_doc();
    let mut full = SignedCharter::draft(doc.clone());
    for i in 0..MAX_SIGNATURES {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64 + 1000).to_le_bytes());
        full.sign(&SigningKey::from_bytes(&seed))?;
    }
    let mut other = SignedCharter::draft(doc);
    other.sign(&key(1))?;
    assert_eq!(full.merge(&other)?, 0);
    assert_eq!(full.signatures.len(), MAX_SIGNATURES);
    Ok(())
}
