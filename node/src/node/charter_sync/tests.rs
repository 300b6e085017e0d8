//! The proposal pool's rules: only the next version of the same chain, signatures merged from
//! copies (invalid ones dropped), bounds in total and per peer, obsolete ones dropped.

use super::*;
use crate::model::charter::{
    Change, ChangePolicy, Charter, CharterChain, CharterMember, Federation, MemberKey, Role,
};
use crate::model::region::Region;
use ed25519_dalek::SigningKey;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A fictitious 统一社会信用代码 (事业单位, region, `YRD00000n`) with a valid check character.
fn member_id(region: u32, n: u8) -> String {
    let first17 = format!("12{region}YRD0000{n:02}");
    let check = crate::model::charter::uscc_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

fn member(seed: u8, region: u32) -> Result<CharterMember, Box<dyn std::error::Error>> {
    let region = Region::from_code(region)?;
    Ok(CharterMember {
        member_id: member_id(region.code(), seed),
        organisation: format!("测试机构 {seed}"),
        region,
        role: Role::Founder,
        keys: vec![MemberKey::ed25519_hex(hex::encode(
            key(seed).verifying_key().to_bytes(),
        ))],
    })
}

/// A genesis of four founders, 3 to sign; returns the chain.
fn chain() -> Result<CharterChain, Box<dyn std::error::Error>> {
    let doc = Charter {
        federation: Federation {
            id: "yrd-test".into(),
            name: "测试联盟".into(),
        },
        version: 1,
        previous: None,
        issued: "2026-01-01T00:00:00Z".into(),
        expires: "2099-01-01T00:00:00Z".into(),
        members: vec![
            member(1, 310000)?,
            member(2, 320000)?,
            member(3, 330000)?,
            member(4, 340000)?,
        ],
        policy: ChangePolicy {
            signers: Role::Founder,
            threshold: 3,
        },
    };
    let mut g = SignedCharter::draft(doc);
    for s in [1, 2, 3] {
        g.sign(&key(s))?;
    }
    Ok(CharterChain::from_genesis(&g)?)
}

/// A draft of version 2 adding member `seed` (a city).
fn adding(chain: &CharterChain, seed: u8) -> Result<SignedCharter, Box<dyn std::error::Error>> {
    let mut m = member(seed, 320500)?;
    m.role = Role::Member;
    let doc = chain.current().document().next(
        &[Change::AddMember(m)],
        "2026-02-01T00:00:00Z".into(),
        "2099-01-01T00:00:00Z".into(),
    )?;
    Ok(SignedCharter::draft(doc))
}

#[test]
fn copies_merge_their_signatures_and_three_founders_make_it_ready() -> TestResult {
    let chain = chain()?;
    let mut pool = ProposalPool::default();
    let draft = adding(&chain, 9)?;
    let (digest, taken) = pool.add(chain.current(), None, draft.clone())?;
    assert_eq!(taken, Taken::New);
    for (n, seed) in [1u8, 2].into_iter().enumerate() {
        let mut copy = draft.clone();
        copy.sign(&key(seed))?;
        let (d, taken) = pool.add(chain.current(), Some(PeerId::random()), copy.clone())?;
        assert_eq!((d.as_str(), taken), (digest.as_str(), Taken::Signatures));
        assert_eq!(pool.heads()[0].signatures, n as u32 + 1);
        // The same copy again changes nothing, nor do its signatures alone.
        assert!(!pool.add(chain.current(), None, copy.clone())?.1.changed());
        assert_eq!(pool.merge(&digest, &copy.signatures), Some(Taken::Nothing));
    }
    // Signatures alone merge into the copy held; a proposal not held takes none.
    let mut third = draft.clone();
    third.sign(&key(3))?;
    assert_eq!(pool.merge(&"0".repeat(64), &third.signatures), None);
    assert!(pool.ready(chain.current()).is_none(), "2 of 3 founders");
    let view = &pool.views(chain.current())[0];
    assert!(!view.ready);
    assert!(
        view.lacking
            .as_deref()
            .unwrap_or_default()
            .contains("2 of the 3"),
        "{view:?}"
    );
    assert_eq!(
        pool.merge(&digest, &third.signatures),
        Some(Taken::Signatures)
    );
    let ready = pool
        .ready(chain.current())
        .ok_or("ready with 3 of 4 founders")?;
    let mut applied = chain.clone();
    assert_eq!(
        applied.offer(&ready)?,
        crate::model::charter::Offer::Applied { version: 2 }
    );
    assert_eq!(pool.drop_obsolete(2), vec![digest]);
    assert_eq!(pool.len(), 0);
    Ok(())
}

#[test]
fn a_signature_that_does_not_verify_is_not_kept() -> TestResult {
    let chain = chain()?;
    let mut pool = ProposalPool::default();
    let mut forged = adding(&chain, 9)?;
    forged.sign(&key(1))?;
    // Key 2's name on key 1's signature.
    let mut bad = forged.signatures[0].clone();
    bad.signer = hex::encode(key(2).verifying_key().to_bytes());
    forged.signatures.push(bad.clone());
    let (digest, _) = pool.add(chain.current(), None, forged)?;
    assert_eq!(pool.get(&digest).map(|c| c.signatures.len()), Some(1));
    // Sent alone, without the document, it is not kept either.
    assert_eq!(pool.merge(&digest, &[bad]), Some(Taken::Nothing));
    assert_eq!(pool.get(&digest).map(|c| c.signatures.len()), Some(1));
    Ok(())
}

#[test]
fn only_the_next_version_of_this_chain_is_a_proposal() -> TestResult {
    let chain = chain()?;
    let mut pool = ProposalPool::default();
    let draft = adding(&chain, 9)?;
    // A skip.
    let mut skip = draft.clone();
    skip.document.version = 3;
    let e = pool
        .add(chain.current(), None, skip)
        .err()
        .ok_or("refused")?;
    assert_eq!(e.code(), "skipped-version");
    // The genesis again (a rollback).
    let genesis = chain.current().charter.clone();
    let e = pool
        .add(chain.current(), None, genesis)
        .err()
        .ok_or("refused")?;
    assert_eq!(e.code(), "rollback");
    // Another previous.
    let mut other = draft.clone();
    other.document.previous = Some("ab".repeat(32));
    let e = pool
        .add(chain.current(), None, other)
        .err()
        .ok_or("refused")?;
    assert_eq!(e.code(), "wrong-previous");
    // Another federation.
    let mut foreign = draft;
    foreign.document.federation.id = "elsewhere".into();
    let e = pool
        .add(chain.current(), None, foreign)
        .err()
        .ok_or("refused")?;
    assert_eq!(e.code(), "other-federation");
    assert_eq!(pool.len(), 0);
    Ok(())
}

#[test]
fn proposals_are_bounded_in_total_and_per_peer() -> TestResult {
    let chain = chain()?;
    let mut pool = ProposalPool::default();
    let flooder = PeerId::random();
    let variant = |n: usize| -> Result<SignedCharter, Box<dyn std::error::Error>> {
        let mut d = adding(&chain, 9)?;
        d.document.issued = format!("2026-02-01T00:{:02}:{:02}Z", n / 60, n % 60);
        Ok(d)
    };
    for n in 0..MAX_PROPOSALS_PER_PEER {
        pool.add(chain.current(), Some(flooder), variant(n)?)?;
    }
    let e = pool
        .add(chain.current(), Some(flooder), variant(100)?)
        .err()
        .ok_or("over the peer's bound")?;
    assert!(e.to_string().contains("introduced"), "{e}");
    // Others fill the pool up to its bound, no further.
    for n in MAX_PROPOSALS_PER_PEER..MAX_PROPOSALS {
        pool.add(chain.current(), Some(PeerId::random()), variant(n)?)?;
    }
    assert_eq!(pool.len(), MAX_PROPOSALS);
    let e = pool
        .add(chain.current(), None, variant(200)?)
        .err()
        .ok_or("over the bound")?;
    assert!(e.to_string().contains("held already"), "{e}");
    // A copy of one held still merges when the pool is full.
    let mut copy = variant(0)?;
    copy.sign(&key(1))?;
    assert!(
        pool.add(chain.current(), Some(PeerId::random()), copy)?
            .1
            .changed()
    );
    assert_eq!(pool.heads().len(), MAX_PROPOSALS);
    Ok(())
}

#[test]
fn charter_pulls_are_one_per_peer_and_bounded_in_all() {
    use crate::node::charter::{MAX_CHARTER_PULLS, PullSlots};
    let slots = PullSlots::default();
    let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
    let from_a = slots.take(a);
    assert!(from_a.is_some());
    assert!(slots.take(a).is_none(), "a second pull from one peer waits");
    let from_b = slots.take(b);
    assert!(from_b.is_some());
    assert_eq!(MAX_CHARTER_PULLS, 2);
    assert!(slots.take(c).is_none(), "no third pull at once");
    drop(from_a);
    assert!(
        slots.take(c).is_some(),
        "a slot is free again once its pull ends"
    );
}

/// After member 2 replaces its key (seed 2) by seed 6, the new key is the same party as the old
/// one wherever a document names the old key (grants, requests, receipts); a third key is not,
/// and a retired key is no one a fetch may come from.
#[test]
fn a_rotated_member_is_one_party_across_its_keys() -> TestResult {
    let mut c = chain()?;
    let jiangsu = c.current().document().members[1].member_id.clone();
    let next = MemberKey::ed25519_hex(hex::encode(key(6).verifying_key().to_bytes()));
    let doc = c.current().document().next(
        &[Change::RotateKey(jiangsu, next)],
        "2026-02-01T00:00:00Z".into(),
        "2099-01-01T00:00:00Z".into(),
    )?;
    let mut v2 = SignedCharter::draft(doc);
    for s in [1, 3, 4] {
        v2.sign(&key(s))?;
    }
    c.offer(&v2)?;
    let charter = crate::node::charter::FederationCharter::on_chain(c);
    let peer = |seed: u8| crate::identity::peer_id_of(&key(seed).verifying_key()).ok_or("peer");
    let (old, new, other) = (peer(2)?, peer(6)?, peer(3)?);
    assert!(charter.same_member(&old.to_string(), &new));
    assert!(charter.same_member(&new.to_string(), &new));
    assert!(!charter.same_member(&other.to_string(), &new));
    assert!(!charter.same_member(&new.to_string(), &other));
    // The charter vouches for no retired key (the gate refuses its connections anyway).
    assert!(!charter.same_member(&old.to_string(), &old));
    assert!(!charter.same_member("not a peer id", &new));
    // Whoever must reach the member (a revocation, a decision) finds its new key.
    assert_eq!(charter.current_peers_of(&old.to_string()), vec![new]);
    assert!(charter.current_peers_of(&peer(9)?.to_string()).is_empty());
    // A rotation that names no replaced key (as `Change::RotateKey` makes it): the member's
    // one key in force supersedes the retired one, not the other way, and no other member's.
    assert!(charter.supersedes(&new, &old));
    assert!(!charter.supersedes(&old, &new));
    assert!(!charter.supersedes(&other, &old));
    Ok(())
}

/// A member with a second node is not rotating: its keys supersede one another only where a
/// version says the newer one `replaces` the older (what `yrd key rotate` proposes), during
/// the rotation and after the old key is retired; the second node never does.
#[test]
fn a_rotation_is_told_from_a_members_second_node() -> TestResult {
    let mut c = chain()?;
    let jiangsu = c.current().document().members[1].member_id.clone();
    let hex_of = |seed: u8| hex::encode(key(seed).verifying_key().to_bytes());
    let apply = |c: &mut CharterChain, changes: &[Change]| -> TestResult {
        let doc = c.current().document().next(
            changes,
            "2026-02-01T00:00:00Z".into(),
            "2099-01-01T00:00:00Z".into(),
        )?;
        let mut next = SignedCharter::draft(doc);
        for s in [1, 3, 4] {
            next.sign(&key(s))?;
        }
        c.offer(&next)?;
        Ok(())
    };
    // Version 2: Jiangsu's second node (seed 7) and the successor of its first key (seed 6).
    apply(
        &mut c,
        &[
            Change::AddKey(jiangsu.clone(), MemberKey::ed25519_hex(hex_of(7))),
            Change::AddKey(
                jiangsu.clone(),
                MemberKey {
                    replaces: Some(hex_of(2)),
                    ..MemberKey::ed25519_hex(hex_of(6))
                },
            ),
        ],
    )?;
    let peer = |seed: u8| crate::identity::peer_id_of(&key(seed).verifying_key()).ok_or("peer");
    let (first, successor, second) = (peer(2)?, peer(6)?, peer(7)?);
    let during = crate::node::charter::FederationCharter::on_chain(c.clone());
    assert!(during.supersedes(&successor, &first));
    for (newer, older) in [
        (second, first),
        (first, second),
        (successor, second),
        (second, successor),
        (first, successor),
    ] {
        assert!(!during.supersedes(&newer, &older), "{newer} over {older}");
    }
    // Version 3 retires the first key: its successor still supersedes it, the second node not.
    apply(&mut c, &[Change::RetireKey(jiangsu, hex_of(2))])?;
    let after = crate::node::charter::FederationCharter::on_chain(c);
    assert!(after.supersedes(&successor, &first));
    assert!(!after.supersedes(&second, &first));
    assert!(!after.supersedes(&first, &successor));
    Ok(())
}

#[test]
fn a_head_claimed_while_the_slots_are_taken_is_kept_until_taken_highest_first() {
    use crate::model::message::CharterHead;
    use crate::node::charter::PendingHead;
    let pending = PendingHead::default();
    assert!(pending.take().is_none());
    let (a, b) = (PeerId::random(), PeerId::random());
    let head = |version: u64| CharterHead {
        version,
        digest: format!("{version:064}"),
    };
    pending.note(a, head(5));
    pending.note(b, head(4));
    pending.note(b, head(5));
    assert_eq!(
        pending.take(),
        Some((a, head(5))),
        "the first of the highest kept"
    );
    assert!(pending.take().is_none(), "taken once");
    pending.note(b, head(6));
    assert_eq!(pending.take(), Some((b, head(6))));
}

/// Signatures announced before their document wait for it and are merged when it comes; not
/// held within the wait, they are not (the caller pulls); beyond the bound, none waits.
#[tokio::test]
async fn signatures_before_their_document_wait_for_it_within_a_bound() -> TestResult {
    use crate::node::charter::{DOCUMENT_WAIT, FederationCharter, MAX_WAITING_FOR_DOCUMENT};
    use crate::store::Store;
    let chain = chain()?;
    let charter = std::sync::Arc::new(FederationCharter::on_chain(chain.clone()));
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let draft = adding(&chain, 9)?;
    let digest = draft.document.digest()?;
    let mut signed = draft.clone();
    signed.sign(&key(1))?;
    let wait = |digest: String| {
        let (charter, store, signatures) =
            (charter.clone(), store.clone(), signed.signatures.clone());
        tokio::spawn(async move {
            charter
                .wait_for_proposal(&store, 2, &digest, &signatures)
                .await
                .map_err(|e| e.to_string())
        })
    };

    // The signatures first (the waiter runs until it waits), then the document.
    let waiter = wait(digest.clone());
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "it waits for the document");
    charter.propose(&store, None, draft)?;
    assert_eq!(waiter.await??, Some(Taken::Signatures));
    assert_eq!(
        charter.proposal(&digest).map(|p| p.valid_signers()),
        Some(vec![hex::encode(key(1).verifying_key().to_bytes())])
    );

    // A document that never comes: given up after the wait.
    let started = std::time::Instant::now();
    assert_eq!(wait("1".repeat(64)).await??, None);
    assert!(started.elapsed() >= DOCUMENT_WAIT);

    // As many as the bound wait; one more does not (it is done before any of them).
    let waiters: Vec<_> = (0..MAX_WAITING_FOR_DOCUMENT)
        .map(|_| wait("2".repeat(64)))
        .collect();
    tokio::task::yield_now().await;
    let beyond = wait("2".repeat(64));
    tokio::task::yield_now().await;
    assert!(beyond.is_finished(), "one beyond the bound does not wait");
    assert_eq!(beyond.await??, None);
    for w in waiters {
        assert!(!w.is_finished(), "those within the bound wait");
        w.abort();
    }
    Ok(())
}
