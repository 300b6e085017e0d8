//! The federation charter: the signed, versioned list of who the members are (their key(s),
//! region and role) and how it may change, with the rules that accept a version — TUF's root
//! rules (threshold of the old version's signers **and** of the new one's, one version at a time,
//! never back) — and the typed outcomes a node acts on (applied, held, equivocation, expired).
//!
//! Pure: no I/O and no clock (the caller passes `now`). docs/charter.md specifies the format and
//! the rules; `schemas/vectors/charter.json` are its published test vectors.

use std::collections::{BTreeSet, HashSet};

use ed25519_dalek::{Signer, SigningKey};
use libp2p::PeerId;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::canonical::{self, MAX_EXACT_INTEGER};
use crate::model::region::Region;
use crate::model::signed::{
    self, DOMAIN_PREFIX, Document, ENVELOPE_VERSION, SignatureError, signing_message_of,
};

/// Most members one charter may list (the Delta has 45 regions; room for several nodes each).
pub const MAX_MEMBERS: usize = 512;
/// Most keys one member may hold at once (current and next during a rotation, spares).
pub const MAX_KEYS_PER_MEMBER: usize = 4;
/// Most signature entries one signed charter may carry.
pub const MAX_SIGNATURES: usize = 512;
/// Longest organisation or federation name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest timestamp text, in bytes.
pub const MAX_TIME_LEN: usize = 64;
/// Largest signed charter, as JSON text or canonical bytes.
pub const MAX_CHARTER_BYTES: usize = 1 << 20;

/// Length of a 统一社会信用代码 (GB 32100-2015).
pub const MEMBER_ID_LEN: usize = 18;
/// The 31 characters a 统一社会信用代码 is written in (no I, O, S, V, Z), in value order.
const USCC_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// Weights of positions 1–17 (3^(i−1) mod 31), GB 32100-2015 §5.
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// The check character of the first 17 characters of a 统一社会信用代码, or `None` if one of them
/// is outside its alphabet.
pub fn uscc_check_char(first17: &str) -> Option<char> {
    let bytes = first17.as_bytes();
    if bytes.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (b, w) in bytes.iter().zip(USCC_WEIGHTS) {
        let v = USCC_CHARS.iter().position(|c| c == b)? as u32;
        sum += v * w;
    }
    let check = (31 - sum % 31) % 31;
    Some(char::from(USCC_CHARS[check as usize]))
}

/// A fictitious 统一社会信用代码 for the devnet's and tests' bureaus: `12` (事业单位), the region
/// code, `YRD0000` and a two-digit number, then a valid GB 32100-2015 check character. No real
/// organisation has it: real codes carry the bureau's organisation code where `YRD0000NN` is.
pub fn fictitious_member_id(region: Region, n: usize) -> String {
    let first17 = format!("12{:06}YRD0000{:02}", region.code(), n % 100);
    let check = uscc_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// Whether `id` is a well-formed 统一社会信用代码: 18 characters of its alphabet whose last is the
/// GB 32100-2015 check character of the others.
pub fn is_valid_member_id(id: &str) -> bool {
    id.len() == MEMBER_ID_LEN
        && id.is_char_boundary(17)
        && uscc_check_char(&id[..17]).is_some_and(|c| id.ends_with(c))
}

/// A member's standing: who may sign changes is set by the policy's `signers` role.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A founding member (the four provinces of the Delta); signs changes under the usual policy.
    Founder,
    /// A full member (a city): connects and exchanges, does not sign changes unless the policy
    /// says members do.
    Member,
    /// Connects and reads; never signs changes.
    Observer,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Role {
    /// The lowercase name, as in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Founder => "founder",
            Role::Member => "member",
            Role::Observer => "observer",
        }
    }
}

/// A signature suite. Only Ed25519 today; a new suite (e.g. SM2 for the national cryptography
/// rules) is a new variant, not a new format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8032), the key is the node's libp2p identity; strict verification.
    Ed25519,
}

/// The federation a charter governs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// Stable identifier, lowercase kebab-case, e.g. `yrd-delta`; never changes across versions.
    #[schemars(length(min = 1, max = 64), pattern("^[a-z0-9]+(-[a-z0-9]+)*$"))]
    pub id: String,
    /// Name for people, e.g. "长三角政务数据共享联盟".
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
}

/// One key a member's node signs and connects with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberKey {
    /// The signature suite.
    pub algorithm: KeyAlgorithm,
    /// The public key; for Ed25519 the lowercase hex of its 32 bytes.
    #[schemars(length(equal = 64), pattern("^[0-9a-f]{64}$"))]
    pub public_key: String,
    /// While a key rotation is under way (both keys in force): the public key this one takes
    /// over from, another key of the same member. Absent for a member's further nodes, which
    /// replace nothing, so that `REGION/DATASET` tells a rotation from a second node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(equal = 64), pattern("^[0-9a-f]{64}$"))]
    pub replaces: Option<String>,
}

impl MemberKey {
    /// An Ed25519 key that replaces no other.
    pub fn ed25519_hex(public_key: impl Into<String>) -> MemberKey {
        MemberKey {
            algorithm: KeyAlgorithm::Ed25519,
            public_key: public_key.into(),
            replaces: None,
        }
    }

    /// The Ed25519 key of this entry.
    pub fn ed25519(&self) -> Result<ed25519_dalek::VerifyingKey, SignatureError> {
        match self.algorithm {
            KeyAlgorithm::Ed25519 => signed::parse_signer(&self.public_key),
        }
    }

    /// The libp2p peer id of a node using this key.
    pub fn peer_id(&self) -> Option<PeerId> {
        self.ed25519()
            .ok()
            .and_then(|k| crate::identity::peer_id_of(&k))
    }
}

/// One member of the federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CharterMember {
    /// The bureau's 统一社会信用代码 (GB 32100-2015, 18 characters with a check character).
    #[schemars(length(equal = 18), pattern("^[0-9A-HJ-NPQRTUWXY]{18}$"))]
    pub member_id: String,
    /// Organisation name, e.g. "江苏省大数据管理中心".
    #[schemars(length(min = 1, max = 200))]
    pub organisation: String,
    /// The GB/T 2260 region this member serves: the only region any node takes for its keys.
    pub region: Region,
    /// Its standing.
    pub role: Role,
    /// Its node key(s), 1 to 4.
    #[schemars(length(min = 1, max = 4))]
    pub keys: Vec<MemberKey>,
}

/// How the charter changes: which role signs, and how many of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePolicy {
    /// The role whose members sign versions (`founder` or `member`; never `observer`).
    pub signers: Role,
    /// How many distinct members of that role must sign (at least 1, at most their number).
    #[schemars(range(min = 1))]
    pub threshold: u32,
}

/// The charter document: version `version` of the federation's membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Charter {
    /// The federation.
    pub federation: Federation,
    /// 1 for the genesis, then each version one more than the one it replaces.
    #[schemars(range(min = 1))]
    pub version: u64,
    /// The version it replaces: lowercase hex of BLAKE3-256 of `yrd/v1/charter` + RFC 8785 of its
    /// document (what its signatures cover); absent at genesis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(equal = 64), pattern("^[0-9a-f]{64}$"))]
    pub previous: Option<String>,
    /// When it was written (RFC 3339).
    pub issued: String,
    /// After this (RFC 3339) the charter is expired: nodes alarm and stop new grants.
    pub expires: String,
    /// The members, 1 to 512; member ids and keys each appear once.
    #[schemars(length(min = 1, max = 512))]
    pub members: Vec<CharterMember>,
    /// Who signs the next version.
    pub policy: ChangePolicy,
}

impl Document for Charter {
    const TYPE: &'static str = "charter";
}

/// One signature of a charter document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CharterSignature {
    /// The signing key (for Ed25519: lowercase hex of its 32 bytes); a key some member holds.
    #[schemars(length(equal = 64), pattern("^[0-9a-f]{64}$"))]
    pub signer: String,
    /// The signature suite.
    pub algorithm: KeyAlgorithm,
    /// For Ed25519: lowercase hex of the 64-byte signature over `yrd/v1/charter` + RFC 8785 of
    /// the document.
    #[schemars(length(equal = 128), pattern("^[0-9a-f]{128}$"))]
    pub signature: String,
}

/// A charter with any number of signatures: `{type, version, document, signatures}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedCharter {
    /// Always `"charter"`.
    #[serde(rename = "type")]
    #[schemars(schema_with = "charter_type_schema")]
    pub doc_type: String,
    /// The envelope version, always 1.
    #[schemars(schema_with = "envelope_version_schema")]
    pub version: u32,
    /// The signed document.
    pub document: Charter,
    /// The signatures, at most 512; only those of the policy's role count, each member once.
    #[schemars(length(max = 512))]
    pub signatures: Vec<CharterSignature>,
}

fn charter_type_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "const": Charter::TYPE })
}

fn envelope_version_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "const": ENVELOPE_VERSION })
}

/// Which version's signers a threshold was counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Against {
    /// The version being replaced (N, for N+1).
    Previous,
    /// The version itself.
    Own,
}

impl std::fmt::Display for Against {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Against::Previous => "the members of the version it replaces",
            Against::Own => "its own members",
        })
    }
}

/// Why a charter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CharterError {
    /// Over [`MAX_CHARTER_BYTES`].
    #[error("charter of {bytes} bytes is over the limit of {max}")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON of the signed-charter shape (or a repeated member name, a wrong type or version).
    #[error("malformed signed charter: {0}")]
    Malformed(String),
    /// A field outside its rules.
    #[error("charter field `{field}`: {reason}")]
    Invalid {
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Fewer distinct members of the signing role signed than the threshold.
    #[error(
        "charter version {version}: {counted} of the {needed} {role} signatures needed from {against}"
    )]
    BelowThreshold {
        /// The version offered.
        version: u64,
        /// Whose members were counted.
        against: Against,
        /// The role counted.
        role: Role,
        /// The threshold.
        needed: u32,
        /// Distinct members of that role whose signature verifies.
        counted: u32,
    },
    /// Version N+1 names another digest than version N's.
    #[error("charter version {version} names previous {found}, but version {} is {expected}", version - 1)]
    WrongPrevious {
        /// The version offered.
        version: u64,
        /// Digest of the version in force.
        expected: String,
        /// The digest it names.
        found: String,
    },
    /// A version beyond the next one: versions are applied one at a time.
    #[error("charter version {found} skips ahead: the next version is {expected}")]
    SkippedVersion {
        /// The next version.
        expected: u64,
        /// The version offered.
        found: u64,
    },
    /// A version below the one in force that is not one already applied.
    #[error("charter version {found} is older than version {current} in force (rollback refused)")]
    Rollback {
        /// The version in force.
        current: u64,
        /// The version offered.
        found: u64,
    },
    /// A version of another federation.
    #[error("charter of federation {found:?}, not {expected:?}")]
    OtherFederation {
        /// Ours.
        expected: String,
        /// The one offered.
        found: String,
    },
    /// Two versions of one number were seen: nothing more is applied until the next version,
    /// signed by the members, resolves it.
    #[error(
        "charter equivocation at version {0}: no version is applied until the next one, signed \
         by the members, names the document they keep"
    )]
    Equivocated(u64),
    /// The document of an equivocation that the version resolving it did not keep.
    #[error(
        "charter version {version} is document {digest}, dropped when its equivocation was resolved"
    )]
    Dropped {
        /// Its version.
        version: u64,
        /// Its digest.
        digest: String,
    },
}

impl CharterError {
    /// A stable short name of the cause, as the test vectors give it.
    pub fn code(&self) -> &'static str {
        match self {
            CharterError::TooLarge { .. } => "too-large",
            CharterError::Malformed(_) => "malformed",
            CharterError::Invalid { .. } => "invalid",
            CharterError::BelowThreshold {
                against: Against::Previous,
                ..
            } => "below-threshold-previous",
            CharterError::BelowThreshold {
                against: Against::Own,
                ..
            } => "below-threshold-own",
            CharterError::WrongPrevious { .. } => "wrong-previous",
            CharterError::SkippedVersion { .. } => "skipped-version",
            CharterError::Rollback { .. } => "rollback",
            CharterError::OtherFederation { .. } => "other-federation",
            CharterError::Equivocated(_) => "equivocated",
            CharterError::Dropped { .. } => "dropped",
        }
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CharterError {
    CharterError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn check_name(field: &str, text: &str) -> Result<(), CharterError> {
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > MAX_NAME_CHARS || text.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("1 to {MAX_NAME_CHARS} characters, no control characters"),
        ));
    }
    Ok(())
}

fn parse_time(field: &str, text: &str) -> Result<OffsetDateTime, CharterError> {
    if text.len() > MAX_TIME_LEN {
        return Err(invalid(field, "too long for an RFC 3339 time"));
    }
    crate::clock::parse_rfc3339(text)
        .ok_or_else(|| invalid(field, format!("{text:?} is not an RFC 3339 time")))
}

impl Charter {
    /// The checks every charter must pass before its signatures are looked at: bounds, unique
    /// member ids and keys, valid keys and member ids, a policy its own members can meet.
    pub fn check(&self) -> Result<(), CharterError> {
        if !signed::is_valid_type_name(&self.federation.id) {
            return Err(invalid(
                "federation.id",
                "lowercase kebab-case of [a-z0-9-], 1 to 64 characters",
            ));
        }
        check_name("federation.name", &self.federation.name)?;
        if self.version == 0 || self.version > MAX_EXACT_INTEGER {
            return Err(invalid("version", "from 1 to 2^53 − 1"));
        }
        match (&self.previous, self.version) {
            (None, 1) => {}
            (Some(_), 1) => return Err(invalid("previous", "absent at genesis (version 1)")),
            (None, _) => {
                return Err(invalid(
                    "previous",
                    "the digest of the version replaced is required after version 1",
                ));
            }
            (Some(p), _) => {
                signed::decode_lower_hex::<32>(p).map_err(|e| invalid("previous", e))?;
            }
        }
        let issued = parse_time("issued", &self.issued)?;
        let expires = parse_time("expires", &self.expires)?;
        if expires <= issued {
            return Err(invalid("expires", "later than `issued`"));
        }
        if self.members.is_empty() || self.members.len() > MAX_MEMBERS {
            return Err(invalid("members", format!("1 to {MAX_MEMBERS} members")));
        }
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        for (i, m) in self.members.iter().enumerate() {
            let at = |f: &str| format!("members[{i}].{f}");
            if !is_valid_member_id(&m.member_id) {
                return Err(invalid(
                    at("member_id"),
                    format!(
                        "{:?} is not a 统一社会信用代码 (18 characters of 0-9 and A-Y without \
                         I, O, S, V; the last the GB 32100-2015 check character)",
                        m.member_id.chars().take(32).collect::<String>()
                    ),
                ));
            }
            if !ids.insert(m.member_id.as_str()) {
                return Err(invalid(at("member_id"), "each member listed once"));
            }
            check_name(&at("organisation"), &m.organisation)?;
            if m.keys.is_empty() || m.keys.len() > MAX_KEYS_PER_MEMBER {
                return Err(invalid(
                    at("keys"),
                    format!("1 to {MAX_KEYS_PER_MEMBER} keys"),
                ));
            }
            for (j, k) in m.keys.iter().enumerate() {
                let field = format!("members[{i}].keys[{j}].public_key");
                k.ed25519().map_err(|e| invalid(&field, e.to_string()))?;
                if !keys.insert(k.public_key.as_str()) {
                    return Err(invalid(field, "a key belongs to one member, once"));
                }
                if let Some(old) = &k.replaces {
                    let others = m.keys.iter().filter(|o| o.public_key != k.public_key);
                    if !others.clone().any(|o| &o.public_key == old) {
                        return Err(invalid(
                            format!("members[{i}].keys[{j}].replaces"),
                            "another key of the same member in this version",
                        ));
                    }
                    if others.clone().any(|o| o.replaces.as_deref() == Some(old)) {
                        return Err(invalid(
                            format!("members[{i}].keys[{j}].replaces"),
                            "a key is replaced by one key, not two",
                        ));
                    }
                }
            }
        }
        if self.policy.signers == Role::Observer {
            return Err(invalid(
                "policy.signers",
                "founder or member; observers never sign",
            ));
        }
        let eligible = self.signers_of_role().count();
        if self.policy.threshold == 0 || self.policy.threshold as usize > eligible {
            return Err(invalid(
                "policy.threshold",
                format!(
                    "from 1 to the number of {}s ({eligible})",
                    self.policy.signers.as_str()
                ),
            ));
        }
        Ok(())
    }

    fn signers_of_role(&self) -> impl Iterator<Item = &CharterMember> {
        self.members
            .iter()
            .filter(move |m| m.role == self.policy.signers)
    }

    /// The exact bytes each signature covers: `yrd/v1/charter` + RFC 8785 of the document.
    pub fn signing_message(&self) -> Result<Vec<u8>, CharterError> {
        signing_message_of(Charter::TYPE, self).map_err(|e| CharterError::Malformed(e.to_string()))
    }

    /// BLAKE3-256 of [`Charter::signing_message`], lowercase hex: the digest the next version
    /// names as `previous`. It covers the document only, so adding signatures to a version does
    /// not change it.
    pub fn digest(&self) -> Result<String, CharterError> {
        Ok(Self::digest_of_message(&self.signing_message()?))
    }

    /// [`Charter::digest`] from a signing message the caller already holds.
    pub fn digest_of_message(message: &[u8]) -> String {
        blake3::hash(message).to_hex().to_string()
    }

    /// The member holding `public_key` (lowercase hex), if any.
    pub fn member_of_key(&self, public_key: &str) -> Option<&CharterMember> {
        self.members
            .iter()
            .find(|m| m.keys.iter().any(|k| k.public_key == public_key))
    }

    /// The member whose node has peer id `peer` (from one of its Ed25519 keys).
    pub fn member_of_peer(&self, peer: &PeerId) -> Option<&CharterMember> {
        self.members
            .iter()
            .find(|m| m.keys.iter().any(|k| k.peer_id().as_ref() == Some(peer)))
    }

    /// Every peer id the charter admits, with its member.
    pub fn peers(&self) -> Vec<(PeerId, &CharterMember)> {
        self.members
            .iter()
            .flat_map(|m| m.keys.iter().filter_map(move |k| Some((k.peer_id()?, m))))
            .collect()
    }

    /// When it expires.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        crate::clock::parse_rfc3339(&self.expires)
    }

    /// The member ids of the policy's role that signed `message` among `signatures`: a signature
    /// counts if its key belongs to a member of that role, its algorithm is the key's and it
    /// verifies; each member counts once whatever number of keys or entries it signs with.
    fn counted_signers(&self, message: &[u8], signatures: &[CharterSignature]) -> BTreeSet<String> {
        let mut counted = BTreeSet::new();
        for s in signatures {
            let Some(member) = self.member_of_key(&s.signer) else {
                continue;
            };
            if member.role != self.policy.signers || counted.contains(&member.member_id) {
                continue;
            }
            let key_ok = member
                .keys
                .iter()
                .any(|k| k.public_key == s.signer && k.algorithm == s.algorithm);
            if key_ok && verify_signature(message, s) {
                counted.insert(member.member_id.clone());
            }
        }
        counted
    }

    /// Checks this charter's signatures against `signers`' policy and members; the account of
    /// who counted, or why too few did.
    fn meet_threshold(
        &self,
        signers: &Charter,
        against: Against,
        signatures: &[CharterSignature],
    ) -> Result<Vec<String>, CharterError> {
        let counted = signers.counted_signers(&self.signing_message()?, signatures);
        if counted.len() < signers.policy.threshold as usize {
            return Err(CharterError::BelowThreshold {
                version: self.version,
                against,
                role: signers.policy.signers,
                needed: signers.policy.threshold,
                counted: counted.len() as u32,
            });
        }
        Ok(counted.into_iter().collect())
    }
}

fn verify_signature(message: &[u8], s: &CharterSignature) -> bool {
    match s.algorithm {
        KeyAlgorithm::Ed25519 => {
            let Ok(key) = signed::parse_signer(&s.signer) else {
                return false;
            };
            let Ok(bytes) = signed::decode_lower_hex::<64>(&s.signature) else {
                return false;
            };
            let signature = ed25519_dalek::Signature::from_bytes(&bytes);
            key.verify_strict(message, &signature).is_ok()
        }
    }
}

impl SignedCharter {
    /// A charter with no signatures yet (a draft).
    pub fn draft(document: Charter) -> SignedCharter {
        SignedCharter {
            doc_type: Charter::TYPE.to_owned(),
            version: ENVELOPE_VERSION,
            document,
            signatures: Vec::new(),
        }
    }

    /// Parses a signed charter (strict JSON: bounded size, no repeated member names) and checks
    /// its shape and document, not its signatures.
    pub fn from_json(text: &str) -> Result<SignedCharter, CharterError> {
        if text.len() > MAX_CHARTER_BYTES {
            return Err(CharterError::TooLarge {
                bytes: text.len(),
                max: MAX_CHARTER_BYTES,
            });
        }
        let value =
            canonical::parse_strict(text).map_err(|e| CharterError::Malformed(e.to_string()))?;
        let signed: SignedCharter =
            serde_json::from_value(value).map_err(|e| CharterError::Malformed(e.to_string()))?;
        signed.check()?;
        Ok(signed)
    }

    /// Pretty JSON text with a trailing newline, as the CLI writes it.
    pub fn to_json_pretty(&self) -> Result<String, CharterError> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| CharterError::Malformed(e.to_string()))?;
        text.push('\n');
        Ok(text)
    }

    /// The shape checks: type, version, bounded and well-formed signature entries, the document's
    /// own checks, the size of the whole.
    pub fn check(&self) -> Result<(), CharterError> {
        if self.doc_type != Charter::TYPE {
            return Err(CharterError::Malformed(format!(
                "type {:?}, expected {:?}",
                self.doc_type,
                Charter::TYPE
            )));
        }
        if self.version != ENVELOPE_VERSION {
            return Err(CharterError::Malformed(format!(
                "envelope version {}, expected {ENVELOPE_VERSION}",
                self.version
            )));
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(invalid(
                "signatures",
                format!("at most {MAX_SIGNATURES} signatures"),
            ));
        }
        for (i, s) in self.signatures.iter().enumerate() {
            signed::decode_lower_hex::<32>(&s.signer)
                .map_err(|e| invalid(format!("signatures[{i}].signer"), e))?;
            signed::decode_lower_hex::<64>(&s.signature)
                .map_err(|e| invalid(format!("signatures[{i}].signature"), e))?;
        }
        self.document.check()?;
        let bytes = canonical::canonical_bytes(self)
            .map_err(|e| CharterError::Malformed(e.to_string()))?
            .len();
        if bytes > MAX_CHARTER_BYTES {
            return Err(CharterError::TooLarge {
                bytes,
                max: MAX_CHARTER_BYTES,
            });
        }
        Ok(())
    }

    /// Adds `key`'s signature (replacing an earlier one by the same key). Whether it counts is
    /// for the rules to say.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), CharterError> {
        let message = self.document.signing_message()?;
        let signer = hex::encode(key.verifying_key().to_bytes());
        let signature = hex::encode(key.sign(&message).to_bytes());
        self.signatures.retain(|s| s.signer != signer);
        self.signatures.push(CharterSignature {
            signer,
            algorithm: KeyAlgorithm::Ed25519,
            signature,
        });
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(invalid(
                "signatures",
                format!("at most {MAX_SIGNATURES} signatures"),
            ));
        }
        Ok(())
    }

    /// Adds `other`'s signatures that verify and are not already here; `other` must carry the
    /// same document. Returns how many were added.
    pub fn merge(&mut self, other: &SignedCharter) -> Result<usize, CharterError> {
        if other.document != self.document {
            return Err(invalid(
                "document",
                format!(
                    "signatures of another document (version {}) cannot be merged",
                    other.document.version
                ),
            ));
        }
        let message = self.document.signing_message()?;
        Ok(self.merge_signatures(&message, &other.signatures))
    }

    /// Adds the signatures of `signatures` that verify over `message` — this document's
    /// signing message, which the caller computed once for it — and are not already here.
    /// Returns how many were added.
    pub fn merge_signatures(&mut self, message: &[u8], signatures: &[CharterSignature]) -> usize {
        let mut added = 0;
        for s in signatures {
            // Full: nothing more is kept, so nothing more is verified (a member's gossip may
            // carry copies with hundreds of fresh signers, one after another).
            if self.signatures.len() >= MAX_SIGNATURES {
                break;
            }
            if self.signatures.iter().any(|h| h.signer == s.signer) || !verify_signature(message, s)
            {
                continue;
            }
            self.signatures.push(s.clone());
            added += 1;
        }
        added
    }

    /// The keys whose signature verifies over this document, whoever they belong to.
    pub fn valid_signers(&self) -> Vec<String> {
        let Ok(message) = self.document.signing_message() else {
            return Vec::new();
        };
        self.signatures
            .iter()
            .filter(|s| verify_signature(&message, s))
            .map(|s| s.signer.clone())
            .collect()
    }
}

/// One change from version N to the draft of N+1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new member.
    AddMember(CharterMember),
    /// A member leaves (by member id).
    RemoveMember(String),
    /// A member's region changes.
    SetRegion(String, Region),
    /// A member's role changes.
    SetRole(String, Role),
    /// A member's keys are replaced by this one.
    RotateKey(String, MemberKey),
    /// A member gains a key (it keeps the others).
    AddKey(String, MemberKey),
    /// A member's key (by public key) leaves the charter; a key that replaced it replaces
    /// nothing any more (the rotation it was part of is over).
    RetireKey(String, String),
    /// The change policy.
    SetPolicy(ChangePolicy),
}

impl Charter {
    /// The draft of the next version: version + 1, `previous` this version's digest, the given
    /// times, then each change in turn. The draft passes [`Charter::check`] or is refused.
    pub fn next(
        &self,
        changes: &[Change],
        issued: String,
        expires: String,
    ) -> Result<Charter, CharterError> {
        let mut next = self.clone();
        next.version = self.version.saturating_add(1);
        next.previous = Some(self.digest()?);
        next.issued = issued;
        next.expires = expires;
        for change in changes {
            next.apply(change)?;
        }
        next.check()?;
        Ok(next)
    }

    fn member_mut(&mut self, id: &str) -> Result<&mut CharterMember, CharterError> {
        self.members
            .iter_mut()
            .find(|m| m.member_id == id)
            .ok_or_else(|| invalid("members", format!("no member {id:?}")))
    }

    fn apply(&mut self, change: &Change) -> Result<(), CharterError> {
        match change {
            Change::AddMember(m) => {
                if self.members.iter().any(|h| h.member_id == m.member_id) {
                    return Err(invalid(
                        "members",
                        format!("{:?} is already a member", m.member_id),
                    ));
                }
                self.members.push(m.clone());
            }
            Change::RemoveMember(id) => {
                self.member_mut(id)?;
                self.members.retain(|m| &m.member_id != id);
            }
            Change::SetRegion(id, region) => self.member_mut(id)?.region = *region,
            Change::SetRole(id, role) => self.member_mut(id)?.role = *role,
            Change::RotateKey(id, key) => self.member_mut(id)?.keys = vec![key.clone()],
            Change::AddKey(id, key) => self.member_mut(id)?.keys.push(key.clone()),
            Change::RetireKey(id, public_key) => {
                let member = self.member_mut(id)?;
                if !member.keys.iter().any(|k| &k.public_key == public_key) {
                    return Err(invalid(
                        "members",
                        format!("member {id:?} has no key {public_key}"),
                    ));
                }
                member.keys.retain(|k| &k.public_key != public_key);
                for k in &mut member.keys {
                    if k.replaces.as_ref() == Some(public_key) {
                        k.replaces = None;
                    }
                }
            }
            Change::SetPolicy(policy) => self.policy = policy.clone(),
        }
        Ok(())
    }
}

/// The lowercase hex of the Ed25519 public key a peer id embeds (`12D3KooW…` ids do); `None`
/// for an id of another kind of key, or a hash of one.
pub fn public_hex_of_peer(peer: &PeerId) -> Option<String> {
    let key = libp2p::identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()?;
    Some(hex::encode(key.try_into_ed25519().ok()?.to_bytes()))
}

/// A member key from text: the lowercase hex of an Ed25519 public key, or the libp2p peer id of
/// an Ed25519 key (`12D3KooW…`, which embeds the key), as `yrd init` prints it.
pub fn key_from_text(text: &str) -> Result<MemberKey, String> {
    let text = text.trim();
    let public_key = if let Ok(peer) = text.parse::<PeerId>() {
        public_hex_of_peer(&peer)
            .ok_or_else(|| format!("peer id {text} does not embed an Ed25519 public key"))?
    } else {
        text.to_owned()
    };
    let key = MemberKey::ed25519_hex(public_key);
    key.ed25519().map_err(|e| {
        format!("{text:?}: {e}; expected a peer id (12D3KooW…) or 64 lowercase hex characters")
    })?;
    Ok(key)
}

/// A charter version that passed the rules, with the account of who counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedCharter {
    /// The signed charter.
    pub charter: SignedCharter,
    /// [`Charter::digest`] of its document.
    pub digest: String,
    /// Member ids of the previous version's signing role that signed it (empty at genesis).
    pub signed_by_previous: Vec<String>,
    /// Member ids of its own signing role that signed it.
    pub signed_by_own: Vec<String>,
}

impl VerifiedCharter {
    /// The document.
    pub fn document(&self) -> &Charter {
        &self.charter.document
    }

    /// The version number.
    pub fn version(&self) -> u64 {
        self.charter.document.version
    }
}

/// Checks a genesis (version 1): shape, no `previous`, and a threshold of its own signing role.
pub fn verify_genesis(signed: &SignedCharter) -> Result<VerifiedCharter, CharterError> {
    signed.check()?;
    let doc = &signed.document;
    if doc.version != 1 {
        return Err(invalid(
            "version",
            format!("a genesis is version 1, not {}", doc.version),
        ));
    }
    let own = doc.meet_threshold(doc, Against::Own, &signed.signatures)?;
    Ok(VerifiedCharter {
        charter: signed.clone(),
        digest: doc.digest()?,
        signed_by_previous: Vec::new(),
        signed_by_own: own,
    })
}

/// Whether `new` is the next version of `current`: same federation, version N+1, `previous`
/// N's digest (the shape a proposal and an update must both have; signatures apart).
pub fn check_follows(current: &VerifiedCharter, new: &Charter) -> Result<(), CharterError> {
    let old = current.document();
    if new.federation.id != old.federation.id {
        return Err(CharterError::OtherFederation {
            expected: old.federation.id.clone(),
            found: new.federation.id.clone(),
        });
    }
    let expected = old.version.saturating_add(1);
    if new.version > expected {
        return Err(CharterError::SkippedVersion {
            expected,
            found: new.version,
        });
    }
    if new.version < expected {
        return Err(CharterError::Rollback {
            current: old.version,
            found: new.version,
        });
    }
    if new.previous.as_deref() != Some(current.digest.as_str()) {
        return Err(CharterError::WrongPrevious {
            version: new.version,
            expected: current.digest.clone(),
            found: new.previous.clone().unwrap_or_default(),
        });
    }
    Ok(())
}

/// Checks version N+1 against version N in force: same federation, version N+1, `previous` is
/// N's digest, a threshold of N's signing role (N's policy and members) and of its own.
///
/// Expiry is not checked here: as in TUF, an intermediate version may have expired; only the
/// version in force is judged by its expiry ([`CharterChain::state`]).
pub fn verify_update(
    current: &VerifiedCharter,
    next: &SignedCharter,
) -> Result<VerifiedCharter, CharterError> {
    next.check()?;
    let (old, new) = (current.document(), &next.document);
    check_follows(current, new)?;
    let previous = new.meet_threshold(old, Against::Previous, &next.signatures)?;
    let own = new.meet_threshold(new, Against::Own, &next.signatures)?;
    Ok(VerifiedCharter {
        charter: next.clone(),
        digest: new.digest()?,
        signed_by_previous: previous,
        signed_by_own: own,
    })
}

/// Two different documents of one version, each validly signed: proof that signers of the
/// version before signed both. Kept as evidence; nothing after it is applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Equivocation {
    /// The version number.
    pub version: u64,
    /// The version held (applied).
    pub held: SignedCharter,
    /// The other one, offered later.
    pub offered: SignedCharter,
}

/// What offering a charter to a [`CharterChain`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Offer {
    /// It was the next version and passed the rules: now in force.
    Applied {
        /// Its version.
        version: u64,
    },
    /// A version already applied, same document; `added` new valid signatures were kept.
    Held {
        /// Its version.
        version: u64,
        /// Signatures added to the held copy.
        added: usize,
    },
    /// A different document of a version already applied, validly signed: alarm.
    Equivocation(Box<Equivocation>),
    /// The next version after an equivocation, passing the rules against the document it names
    /// as `previous`: now in force, and the equivocation resolved in that document's favour.
    Resolved {
        /// Its version.
        version: u64,
        /// The version that had two documents.
        at: u64,
        /// Digest of the document of `at` kept (the one `version` names, or that the chain
        /// had gone on from).
        kept: String,
        /// Digest of the other document of `at`, dropped from the chain (kept as evidence).
        dropped: String,
    },
}

impl Offer {
    /// The verdict's name, as the test vectors give it.
    pub fn code(&self) -> &'static str {
        match self {
            Offer::Applied { .. } => "applied",
            Offer::Held { .. } => "held",
            Offer::Equivocation(_) => "equivocation",
            Offer::Resolved { .. } => "resolved",
        }
    }
}

/// Where the charter in force stands at a given time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum CharterState {
    /// In force until `expires`.
    InForce {
        /// Version in force.
        version: u64,
        /// Its expiry.
        expires: String,
    },
    /// Past its expiry: alarm; no new grants; existing evidence stays verifiable.
    Expired {
        /// Version in force.
        version: u64,
        /// Its expiry.
        expires: String,
    },
    /// Two documents of one version were seen: alarm; no version is applied until resolved.
    Equivocated {
        /// Version in force.
        version: u64,
        /// The version with two documents.
        at: u64,
    },
}

/// The versions applied, genesis first, each verified against the one before; plus the evidence
/// of an equivocation if one was seen.
#[derive(Debug, Clone)]
pub struct CharterChain {
    versions: Vec<VerifiedCharter>,
    equivocation: Option<Box<Equivocation>>,
    /// Digests of documents dropped by resolved equivocations: offered again, they are refused
    /// as such rather than seen as a new equivocation. At most one per version.
    dropped: Vec<String>,
}

impl CharterChain {
    /// A chain starting at a genesis.
    pub fn from_genesis(genesis: &SignedCharter) -> Result<CharterChain, CharterError> {
        Ok(CharterChain {
            versions: vec![verify_genesis(genesis)?],
            equivocation: None,
            dropped: Vec::new(),
        })
    }

    /// Verifies a whole chain, genesis first, every version applied in order.
    pub fn verify_all(charters: &[SignedCharter]) -> Result<CharterChain, CharterError> {
        let (first, rest) = charters
            .split_first()
            .ok_or_else(|| invalid("charters", "at least the genesis"))?;
        let mut chain = CharterChain::from_genesis(first)?;
        for c in rest {
            match chain.offer(c)? {
                // A chain verified here never holds an equivocation, so nothing resolves one.
                Offer::Applied { .. } | Offer::Held { .. } | Offer::Resolved { .. } => {}
                Offer::Equivocation(e) => return Err(CharterError::Equivocated(e.version)),
            }
        }
        Ok(chain)
    }

    /// The version in force.
    pub fn current(&self) -> &VerifiedCharter {
        // `versions` is never empty: built from a genesis, only ever pushed to.
        &self.versions[self.versions.len() - 1]
    }

    /// The member id the chain binds `public_key` (lowercase hex) to, in any version. A key a
    /// rotation retired still names the member it served, so what it signed or was granted
    /// stays that member's. A key no version listed names nobody, and so does a key two
    /// versions gave to two different members: what it was granted belongs to neither.
    pub fn member_id_of_key(&self, public_key: &str) -> Option<&str> {
        let mut ids = self
            .versions
            .iter()
            .filter_map(|v| v.document().member_of_key(public_key))
            .map(|m| m.member_id.as_str());
        let first = ids.next()?;
        ids.all(|id| id == first).then_some(first)
    }

    /// Every version applied, genesis first.
    pub fn versions(&self) -> &[VerifiedCharter] {
        &self.versions
    }

    /// The equivocation seen, if any.
    pub fn equivocation(&self) -> Option<&Equivocation> {
        self.equivocation.as_deref()
    }

    /// Remembers a document dropped by an equivocation resolved before (a node restarting
    /// on its stored chain), so that it is refused as such if offered again.
    pub fn remember_dropped(&mut self, digest: String) {
        if !self.dropped.contains(&digest) {
            self.dropped.push(digest);
        }
    }

    /// Offers a charter: the next version is applied if it passes the rules; a version already
    /// held adds its new signatures; a different document of a held version that is validly
    /// signed is an equivocation (kept; the chain then applies nothing more but the version
    /// that resolves it, see [`CharterChain::resolve`]); anything else is refused with its cause.
    pub fn offer(&mut self, offered: &SignedCharter) -> Result<Offer, CharterError> {
        offered.check()?;
        let current = self.current().version();
        let version = offered.document.version;
        if version <= current {
            // `version` ≥ 1 by check(), so the index is in range.
            let index = (version - 1) as usize;
            let held = &self.versions[index];
            if held.charter.document == offered.document {
                let added = self.versions[index].charter.merge(offered)?;
                return Ok(Offer::Held { version, added });
            }
            let digest = offered.document.digest()?;
            if self.dropped.contains(&digest) {
                return Err(CharterError::Dropped { version, digest });
            }
            // A different document: valid by the same rules as the held one means equivocation;
            // otherwise it is only a refused rollback.
            let valid = match index.checked_sub(1) {
                None => verify_genesis(offered).is_ok(),
                Some(before) => verify_update(&self.versions[before], offered).is_ok(),
            };
            if !valid {
                return Err(CharterError::Rollback {
                    current,
                    found: version,
                });
            }
            let evidence = Box::new(Equivocation {
                version,
                held: held.charter.clone(),
                offered: offered.clone(),
            });
            if self.equivocation.is_none() {
                self.equivocation = Some(evidence.clone());
            }
            return Ok(Offer::Equivocation(evidence));
        }
        if self.equivocation.is_some() {
            return self.resolve(offered);
        }
        let verified = verify_update(self.current(), offered)?;
        self.versions.push(verified);
        Ok(Offer::Applied { version })
    }

    /// After an equivocation at version E, the members resolve it the way they change anything:
    /// by the next version, signed by the thresholds of the rules. That version names the
    /// document of E it follows as `previous`:
    /// - when E is the version in force, either document of E may be named; the one named
    ///   must pass the rules against E−1 (it did, or it would not be an equivocation) and the
    ///   new version the rules against it. Naming the other document puts it in E's place.
    /// - when the chain had already gone on past E (the other document arrived late), the
    ///   next version follows the version in force, so the held document of E is kept.
    ///
    /// A version that fails the rules is refused naming the rule; one that is not the next,
    /// `equivocated` as before.
    fn resolve(&mut self, offered: &SignedCharter) -> Result<Offer, CharterError> {
        let Some(e) = self.equivocation.as_deref() else {
            return Err(invalid("equivocation", "none to resolve"));
        };
        let at = e.version;
        let current = self.current().version();
        if offered.document.version != current.saturating_add(1) {
            return Err(CharterError::Equivocated(at));
        }
        let held = self.versions[(at - 1) as usize].digest.clone();
        let other_digest = e.offered.document.digest()?;
        if at == current && offered.document.previous.as_deref() == Some(other_digest.as_str()) {
            let other = match (at as usize).checked_sub(2) {
                None => verify_genesis(&e.offered)?,
                Some(before) => verify_update(&self.versions[before], &e.offered)?,
            };
            let verified = verify_update(&other, offered)?;
            let index = (at - 1) as usize;
            self.versions[index] = other;
            self.versions.push(verified);
            self.equivocation = None;
            self.dropped.push(held.clone());
            return Ok(Offer::Resolved {
                version: offered.document.version,
                at,
                kept: other_digest,
                dropped: held,
            });
        }
        let verified = verify_update(self.current(), offered)?;
        self.versions.push(verified);
        self.equivocation = None;
        self.dropped.push(other_digest.clone());
        Ok(Offer::Resolved {
            version: offered.document.version,
            at,
            kept: held,
            dropped: other_digest,
        })
    }

    /// The state at `now`: equivocated, expired or in force.
    pub fn state(&self, now: OffsetDateTime) -> CharterState {
        let doc = self.current().document();
        let version = doc.version;
        if let Some(e) = &self.equivocation {
            return CharterState::Equivocated {
                version,
                at: e.version,
            };
        }
        let expires = doc.expires.clone();
        match doc.expires_at() {
            Some(t) if now < t => CharterState::InForce { version, expires },
            _ => CharterState::Expired { version, expires },
        }
    }
}

/// The message prefix each charter signature covers (for docs and other implementations).
pub fn domain_tag() -> String {
    format!("{DOMAIN_PREFIX}{}", Charter::TYPE)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bounds_match_schema {
    #[test]
    fn schema_bounds_are_the_constants() {
        assert_eq!(super::MAX_MEMBERS, 512);
        assert_eq!(super::MAX_SIGNATURES, 512);
        assert_eq!(super::MAX_KEYS_PER_MEMBER, 4);
        assert_eq!(super::MAX_NAME_CHARS, 200);
    }
}
