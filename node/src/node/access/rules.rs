//! The access decisions that are pure functions of what is stored and what arrived: whether a
//! grant lets a peer fetch a dataset now, whether an offer can be delivered at all, whether an
//! inbound access request is admissible, and what an auto-approval rule grants. No I/O, no clock
//! of their own (the caller passes `now`), so each is unit-tested here without a swarm.

use std::sync::Arc;

use libp2p::PeerId;
use time::OffsetDateTime;

use super::{Approval, Direction, GrantRecord, GrantState, MAX_FIELDS, MAX_TEXT_CHARS};
use crate::clock::parse_rfc3339;
use crate::config::AutoRule;
use crate::model::catalogue::{CatalogueEntry, ShareType, Withheld};
use crate::model::exchange::{AccessRequest, Grant};
use crate::model::masking::{FieldMask, is_valid_field_name};
use crate::model::query::AccessMode;
use crate::model::refusal::RefusalCode;
use crate::model::region::Region;
use crate::node::NodeError;

/// Why a request or fetch is refused: a wire code and a message naming the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why, on the wire.
    pub code: RefusalCode,
    /// For people.
    pub message: String,
}

pub(crate) fn refusal(code: RefusalCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// A grant's state at `now`.
pub(crate) fn grant_state(g: &Grant, revoked: bool, now: OffsetDateTime) -> GrantState {
    if revoked {
        return GrantState::Revoked;
    }
    match (parse_rfc3339(&g.not_before), parse_rfc3339(&g.expires_at)) {
        (Some(nb), _) if now < nb => GrantState::NotYetValid,
        (_, Some(exp)) if now <= exp => GrantState::Valid,
        _ => GrantState::Expired,
    }
}

/// The provider's check on every fetch of a conditional offer: the grant named must be one we
/// issued (`record`, looked up by `grant_id`), to the fetching party (`is_fetcher` of the
/// grantee it names: the fetching key, or an earlier key of its member — `Node::same_party`),
/// for `dataset`, valid at `now` and not revoked.
pub(crate) fn grant_for_fetch<R: std::borrow::Borrow<GrantRecord>>(
    record: Option<R>,
    grant_id: Option<&str>,
    is_fetcher: impl Fn(&str) -> bool,
    dataset: &str,
    now: OffsetDateTime,
) -> Result<R, Refusal> {
    let Some(id) = grant_id else {
        return Err(refusal(
            RefusalCode::GrantRequired,
            format!(
                "{dataset} is shared on conditions (有条件共享): request access first \
                 (`yrd request …/{dataset} --purpose … --basis …`)"
            ),
        ));
    };
    let invalid = |message: String| Err(refusal(RefusalCode::GrantInvalid, message));
    let Some(held) = record else {
        return invalid(format!("no grant {id} was issued here"));
    };
    let record: &GrantRecord = held.borrow();
    let g = &record.grant.document;
    if record.direction != Direction::Out {
        return invalid(format!("grant {id} was not issued here"));
    }
    if !is_fetcher(&g.grantee) {
        return invalid(format!("grant {id} was issued to another node"));
    }
    if g.dataset != dataset {
        return invalid(format!("grant {id} is for {}, not {dataset}", g.dataset));
    }
    match grant_state(g, record.revocation.is_some(), now) {
        GrantState::Valid => Ok(held),
        GrantState::Revoked => invalid(format!(
            "grant {id} was revoked: {}",
            record
                .revocation
                .as_ref()
                .map(|r| r.document.reason.as_str())
                .unwrap_or("")
        )),
        GrantState::Expired => invalid(format!("grant {id} expired at {}", g.expires_at)),
        GrantState::NotYetValid => {
            invalid(format!("grant {id} is not valid before {}", g.not_before))
        }
    }
}

/// Our offer `dataset` among `offers`, or why it cannot be delivered: withheld (with the reason
/// and legal basis), not shared, or not offered.
pub(crate) fn deliverable<'a>(
    dataset: &str,
    withheld: &[Withheld],
    offers: &'a [Arc<CatalogueEntry>],
) -> Result<&'a Arc<CatalogueEntry>, Refusal> {
    if let Some(w) = withheld.iter().find(|w| w.identifier == dataset) {
        return Err(refusal(
            RefusalCode::NotShared,
            format!(
                "{dataset} is not shared (不予共享): {} (legal basis: {})",
                w.reason, w.legal_basis
            ),
        ));
    }
    let offer = offers
        .iter()
        .find(|o| o.offer.identifier == dataset)
        .ok_or_else(|| {
            refusal(
                RefusalCode::NotFound,
                format!("{dataset} is not one of our offers"),
            )
        })?;
    if offer.offer.share_type == ShareType::NotShared {
        return Err(refusal(
            RefusalCode::NotShared,
            format!(
                "{dataset} is not shared (不予共享): {}",
                offer
                    .offer
                    .share_conditions
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        ));
    }
    Ok(offer)
}

/// The modes an approval grants, checked against the offer: no mode twice, and query modes
/// only for an offer that declares query keys. Fetch only is kept as no modes (the form of a
/// grant issued before query services).
pub(crate) fn check_modes(
    modes: &[AccessMode],
    offer: &CatalogueEntry,
) -> Result<Vec<AccessMode>, NodeError> {
    for (i, m) in modes.iter().enumerate() {
        if modes[..i].contains(m) {
            return Err(NodeError::invalid("modes", format!("mode {m} named twice")));
        }
        if *m != AccessMode::Fetch && offer.offer.query_keys.is_empty() {
            return Err(NodeError::invalid(
                "modes",
                format!(
                    "{} declares no query keys, so it cannot be queried ({m}); add \
                     query_keys to the offer first",
                    offer.offer.identifier
                ),
            ));
        }
    }
    if modes == [AccessMode::Fetch] {
        return Ok(Vec::new());
    }
    Ok(modes.to_vec())
}

/// An id of ours: 32 lowercase hex digits.
pub(crate) fn is_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The form of a grant a provider sent us, before it is stored: an id of ours' form (it becomes
/// part of a key), 1 to [`MAX_FIELDS`] field names, texts within [`MAX_TEXT_CHARS`].
pub(crate) fn check_received_grant(g: &Grant) -> Result<(), NodeError> {
    if !is_id(&g.id) {
        return Err(NodeError::invalid(
            "grant",
            "a grant id is 32 lowercase hex digits".into(),
        ));
    }
    if g.fields.is_empty() || g.fields.len() > MAX_FIELDS || g.masks.len() > MAX_FIELDS {
        return Err(NodeError::invalid(
            "grant",
            format!("a grant must name 1 to {MAX_FIELDS} fields"),
        ));
    }
    if let Some(f) = g.fields.iter().find(|f| !is_valid_field_name(f)) {
        return Err(NodeError::invalid(
            "grant",
            format!(
                "{:?} is not a field name",
                f.chars().take(64).collect::<String>()
            ),
        ));
    }
    check_text("the purpose", &g.purpose)?;
    check_text("the legal basis", &g.legal_basis)?;
    check_text("the grant's decided_by", &g.decided_by)
}

/// A purpose, legal basis or reason: 1 to [`MAX_TEXT_CHARS`] characters. `what` names it in
/// the message ("the purpose"); the field is the same without "the ".
pub(crate) fn check_text(what: &'static str, text: &str) -> Result<(), NodeError> {
    let n = text.trim().chars().count();
    if n == 0 || n > MAX_TEXT_CHARS {
        return Err(NodeError::invalid(
            what.trim_start_matches("the "),
            format!("{what} must be 1 to {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(())
}

/// The form of an inbound access request, before any offer is looked at: signed by its sender
/// (`signer` == `sender`), addressed to us, a well-formed id, a purpose and legal basis, not too
/// many fields.
pub(crate) fn check_request_form(
    r: &AccessRequest,
    signer: PeerId,
    sender: PeerId,
    us: &str,
) -> Result<(), Refusal> {
    let bad = |m: String| Err(refusal(RefusalCode::BadRequest, m));
    if signer != sender {
        return bad(format!("request signed by {signer}, sent by {sender}"));
    }
    if r.provider != us {
        return bad(format!("request names provider {}, not us", r.provider));
    }
    if !is_id(&r.id) {
        return bad("request id must be 32 lowercase hex digits".into());
    }
    for (what, text) in [("purpose", &r.purpose), ("legal basis", &r.legal_basis)] {
        if let Err(e) = check_text(what, text) {
            return bad(e.to_string());
        }
    }
    if r.fields.len() > MAX_FIELDS {
        return bad(format!("at most {MAX_FIELDS} fields"));
    }
    Ok(())
}

/// An inbound request against the offer it names: only conditional offers take requests, and the
/// region the request claims must be the one we verified for its sender (when we have one).
pub(crate) fn check_request_offer(
    r: &AccessRequest,
    offer: &CatalogueEntry,
    verified_region: Option<Region>,
) -> Result<(), Refusal> {
    if offer.offer.share_type != ShareType::Conditional {
        return Err(refusal(
            RefusalCode::BadRequest,
            format!("{} is shared unconditionally: no request needed", r.dataset),
        ));
    }
    if let Some(verified) = verified_region {
        if verified != r.requester_region {
            return Err(refusal(
                RefusalCode::BadRequest,
                format!(
                    "the request claims region {} but the requester is {}",
                    r.requester_region.label(),
                    verified.label()
                ),
            ));
        }
    }
    Ok(())
}

/// Every field a request names must be a field of the offer's standard (`known`).
pub(crate) fn check_request_fields(r: &AccessRequest, known: &[String]) -> Result<(), Refusal> {
    match r.fields.iter().find(|f| !known.contains(f)) {
        Some(f) => Err(refusal(
            RefusalCode::BadRequest,
            format!("{f:?} is not a field of {}", r.dataset),
        )),
        None => Ok(()),
    }
}

/// One peer may have at most `limit` requests pending with us.
pub(crate) fn pending_within_limit(pending: usize, limit: usize) -> Result<(), Refusal> {
    if pending >= limit {
        return Err(refusal(
            RefusalCode::Limit,
            format!("{pending} of your requests are already pending here (limit {limit})"),
        ));
    }
    Ok(())
}

/// What an approving auto rule grants. A mask the rule cannot parse fails the rule (the request
/// then waits for an operator) rather than being dropped, which would deliver that field in clear.
pub(crate) fn rule_approval(rule: &AutoRule) -> Result<Approval, NodeError> {
    let masks = rule
        .masks
        .iter()
        .map(|m| {
            m.parse::<FieldMask>().map_err(|e| {
                NodeError::invalid("masks", format!("auto rule {}: mask {m:?}: {e}", rule.name))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Approval {
        fields: (!rule.fields.is_empty()).then(|| rule.fields.clone()),
        masks,
        expires_in_secs: rule.expires_days.map(|d| d * 86_400),
        ..Approval::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeKey;
    use crate::model::exchange::Revocation;
    use crate::model::signed::Signed;
    use serde_json::json;
    use std::time::Duration;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse(
            "2026-06-01T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    }

    fn offer(identifier: &str, share: &str) -> CatalogueEntry {
        serde_json::from_value(json!({
            "offer": {
                "identifier": identifier, "title": "社保缴纳", "description": "d",
                "media_type": "application/x-ndjson", "resource_code": "320000-RS-0001",
                "share_type": share, "share_conditions": "仅限核验", "share_method": "file",
                "update_cycle": "daily", "schema_id": "social-insurance-contribution",
                "schema_version": "1.0.0"
            },
            "publisher": "12D3KooWJiangsu",
            "conforms_to": {"id": "social-insurance-contribution", "version": "1.0.0", "digest": "00"},
            "information_items": [],
            "modified": "2026-05-01T00:00:00Z"
        }))
        .unwrap()
    }

    struct Parties {
        provider: NodeKey,
        grantee: NodeKey,
    }

    fn parties() -> Parties {
        Parties {
            provider: NodeKey::from_seed([1; 32]),
            grantee: NodeKey::from_seed([2; 32]),
        }
    }

    fn grant_record(p: &Parties, direction: Direction, valid: (&str, &str)) -> GrantRecord {
        let grant = Grant {
            id: "a".repeat(32),
            request_id: "b".repeat(32),
            request_digest: "c".repeat(64),
            provider: p.provider.peer_id().to_string(),
            grantee: p.grantee.peer_id().to_string(),
            dataset: "js-social-insurance".into(),
            purpose: "养老保险关系转移".into(),
            legal_basis: "《社会保险法》第十九条".into(),
            fields: vec!["name".into()],
            masks: Vec::new(),
            not_before: valid.0.into(),
            expires_at: valid.1.into(),
            issued_at: valid.0.into(),
            decided_by: "operator".into(),
            modes: Vec::new(),
            query_limits: None,
        };
        GrantRecord {
            id: grant.id.clone(),
            direction,
            grant: Signed::sign(grant, p.provider.signing_key()).unwrap(),
            revocation: None,
            revocation_delivered: false,
        }
    }

    const VALID: (&str, &str) = ("2026-01-01T00:00:00Z", "2026-12-31T23:59:59Z");

    fn fetch(
        record: Option<GrantRecord>,
        p: &Parties,
        dataset: &str,
        at: OffsetDateTime,
    ) -> Result<GrantRecord, Refusal> {
        let id = "a".repeat(32);
        let grantee = p.grantee.peer_id().to_string();
        grant_for_fetch(record, Some(&id), |g| g == grantee, dataset, at)
    }

    #[test]
    fn a_valid_grant_of_ours_lets_its_grantee_fetch() {
        let p = parties();
        let r = grant_record(&p, Direction::Out, VALID);
        assert!(fetch(Some(r), &p, "js-social-insurance", now()).is_ok());
    }

    #[test]
    fn no_grant_named_is_grant_required_and_an_unknown_one_invalid() {
        let p = parties();
        let none = grant_for_fetch(None::<GrantRecord>, None, |_| true, "d", now()).unwrap_err();
        assert_eq!(none.code, RefusalCode::GrantRequired);
        let unknown = fetch(None, &p, "js-social-insurance", now()).unwrap_err();
        assert_eq!(unknown.code, RefusalCode::GrantInvalid);
        assert!(unknown.message.contains("no grant"), "{}", unknown.message);
    }

    #[test]
    fn a_grant_issued_to_us_cannot_be_used_to_fetch_from_us() {
        let p = parties();
        let r = grant_record(&p, Direction::In, VALID);
        let e = fetch(Some(r), &p, "js-social-insurance", now()).unwrap_err();
        assert!(e.message.contains("not issued here"), "{}", e.message);
    }

    #[test]
    fn someone_elses_grant_or_another_dataset_is_refused() {
        let p = parties();
        let r = grant_record(&p, Direction::Out, VALID);
        let other = NodeKey::from_seed([3; 32]).peer_id().to_string();
        let id = "a".repeat(32);
        let e = grant_for_fetch(
            Some(r.clone()),
            Some(&id),
            |g| g == other,
            "js-social-insurance",
            now(),
        )
        .unwrap_err();
        assert!(e.message.contains("another node"), "{}", e.message);
        let e = fetch(Some(r), &p, "sh-medical-settlement", now()).unwrap_err();
        assert!(
            e.message.contains("is for js-social-insurance"),
            "{}",
            e.message
        );
    }

    #[test]
    fn expiry_validity_start_and_revocation_are_enforced() {
        let p = parties();
        let r = grant_record(&p, Direction::Out, VALID);
        let after = now() + Duration::from_secs(300 * 86_400);
        let e = fetch(Some(r.clone()), &p, "js-social-insurance", after).unwrap_err();
        assert!(e.message.contains("expired"), "{}", e.message);
        let before = now() - Duration::from_secs(200 * 86_400);
        let e = fetch(Some(r.clone()), &p, "js-social-insurance", before).unwrap_err();
        assert!(e.message.contains("not valid before"), "{}", e.message);
        let mut revoked = r;
        let revocation = Revocation {
            grant_id: revoked.id.clone(),
            provider: p.provider.peer_id().to_string(),
            grantee: p.grantee.peer_id().to_string(),
            reason: "项目结束".into(),
            revoked_at: "2026-05-01T00:00:00Z".into(),
        };
        revoked.revocation = Some(Signed::sign(revocation, p.provider.signing_key()).unwrap());
        let e = fetch(Some(revoked), &p, "js-social-insurance", now()).unwrap_err();
        assert_eq!(e.code, RefusalCode::GrantInvalid);
        assert!(e.message.contains("revoked: 项目结束"), "{}", e.message);
    }

    #[test]
    fn withheld_not_shared_and_unknown_offers_are_not_deliverable() {
        let withheld: Withheld = serde_json::from_value(json!({
            "identifier": "js-tax", "title": "税务", "reason": "涉密",
            "legal_basis": "《保守国家秘密法》"
        }))
        .unwrap();
        let offers = [
            offer("js-social-insurance", "conditional"),
            offer("js-tax", "unconditional"),
            offer("js-secret", "not-shared"),
        ]
        .map(Arc::new);
        let w = deliverable("js-tax", std::slice::from_ref(&withheld), &offers);
        assert_eq!(w.unwrap_err().code, RefusalCode::NotShared);
        let n = deliverable("js-secret", &[], &offers).unwrap_err();
        assert_eq!(n.code, RefusalCode::NotShared);
        assert!(n.message.contains("仅限核验"), "{}", n.message);
        let u = deliverable("js-nothing", &[], &offers).unwrap_err();
        assert_eq!(u.code, RefusalCode::NotFound);
        assert!(deliverable("js-social-insurance", &[withheld], &offers).is_ok());
    }

    fn request(p: &Parties) -> AccessRequest {
        AccessRequest {
            id: "d".repeat(32),
            requester: p.grantee.peer_id().to_string(),
            requester_region: "340000".parse().unwrap(),
            provider: p.provider.peer_id().to_string(),
            dataset: "js-social-insurance".into(),
            purpose: "养老保险关系转移".into(),
            legal_basis: "《社会保险法》第十九条".into(),
            fields: vec!["name".into()],
            requested_at: "2026-06-01T00:00:00Z".into(),
            wanted_until: None,
        }
    }

    #[test]
    fn a_request_must_be_signed_by_its_sender_and_addressed_to_us() {
        let p = parties();
        let r = request(&p);
        let (us, them) = (p.provider.peer_id(), p.grantee.peer_id());
        assert!(check_request_form(&r, them, them, &us.to_string()).is_ok());
        let e = check_request_form(&r, them, us, &us.to_string()).unwrap_err();
        assert!(e.message.contains("sent by"), "{}", e.message);
        let e = check_request_form(&r, them, them, "someone-else").unwrap_err();
        assert!(e.message.contains("not us"), "{}", e.message);
        let mut bad_id = r.clone();
        bad_id.id = "D".repeat(32);
        assert!(check_request_form(&bad_id, them, them, &us.to_string()).is_err());
        let mut empty = r.clone();
        empty.purpose = "  ".into();
        let e = check_request_form(&empty, them, them, &us.to_string()).unwrap_err();
        assert_eq!(e.code, RefusalCode::BadRequest);
        let mut many = r;
        many.fields = (0..=MAX_FIELDS).map(|i| format!("f{i}")).collect();
        assert!(check_request_form(&many, them, them, &us.to_string()).is_err());
    }

    #[test]
    fn a_request_claiming_another_region_or_for_an_open_offer_is_refused() {
        let p = parties();
        let r = request(&p);
        let conditional = offer("js-social-insurance", "conditional");
        let anhui: Region = "340000".parse().unwrap();
        let zhejiang: Region = "330000".parse().unwrap();
        assert!(check_request_offer(&r, &conditional, Some(anhui)).is_ok());
        assert!(check_request_offer(&r, &conditional, None).is_ok());
        let e = check_request_offer(&r, &conditional, Some(zhejiang)).unwrap_err();
        assert!(e.message.contains("claims region"), "{}", e.message);
        let open = offer("js-social-insurance", "unconditional");
        assert!(check_request_offer(&r, &open, Some(anhui)).is_err());
    }

    #[test]
    fn requested_fields_must_exist_and_pending_requests_are_capped() {
        let p = parties();
        let r = request(&p);
        assert!(check_request_fields(&r, &["name".into(), "id_number".into()]).is_ok());
        let e = check_request_fields(&r, &["id_number".into()]).unwrap_err();
        assert!(e.message.contains("\"name\""), "{}", e.message);
        assert!(pending_within_limit(15, 16).is_ok());
        assert_eq!(
            pending_within_limit(16, 16).unwrap_err().code,
            RefusalCode::Limit
        );
    }

    fn rule(masks: &[&str]) -> AutoRule {
        serde_json::from_value(json!({
            "name": "verify", "decision": "approve", "purposes": ["核验"],
            "fields": ["name", "id_number"], "masks": masks, "expires_days": 30
        }))
        .unwrap()
    }

    #[test]
    fn an_auto_rule_grants_its_fields_masks_and_validity() {
        let a = rule_approval(&rule(&["id_number=keep:6:4", "name=hash"])).unwrap();
        assert_eq!(
            a.fields,
            Some(vec!["name".to_string(), "id_number".to_string()])
        );
        assert_eq!(a.masks.len(), 2);
        assert_eq!(a.expires_in_secs, Some(30 * 86_400));
    }

    #[test]
    fn an_auto_rule_with_a_bad_mask_decides_nothing() {
        let e = rule_approval(&rule(&["id_number=blur"])).unwrap_err();
        assert_eq!(e.field(), Some("masks"));
        assert!(e.to_string().contains("id_number=blur"), "{e}");
    }
}
