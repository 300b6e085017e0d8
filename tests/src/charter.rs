//! Charter setups the test files share: members with fictitious member ids, a genesis, and
//! founders started on it.

use anyhow::Result;
use yrd_node::devnet::fictitious_member_id;
use yrd_node::identity::NodeKey;
use yrd_node::model::charter::{
    ChangePolicy, Charter, CharterMember, Federation, MemberKey, Role, SignedCharter,
};
use yrd_node::model::region::Region;

use crate::TestNode;

/// A founder of `region` holding `key` (the `n`th fictitious member id of that region).
pub fn member(key: &NodeKey, region: u32, n: usize) -> Result<CharterMember> {
    let region = Region::from_code(region)?;
    Ok(CharterMember {
        member_id: fictitious_member_id(region, n),
        organisation: format!("{} 测试局", region.name_zh()),
        region,
        role: Role::Founder,
        keys: vec![MemberKey::ed25519_hex(key.public_hex())],
    })
}

/// A genesis of `members`, all founders, `threshold` of them to sign changes.
pub fn genesis(members: Vec<CharterMember>, threshold: u32) -> Charter {
    Charter {
        federation: Federation {
            id: "yrd-test".into(),
            name: "测试联盟".into(),
        },
        version: 1,
        previous: None,
        issued: "2026-01-01T00:00:00Z".into(),
        expires: "2099-01-01T00:00:00Z".into(),
        members,
        policy: ChangePolicy {
            signers: Role::Founder,
            threshold,
        },
    }
}

/// Four provinces (Shanghai, Jiangsu, Zhejiang, Anhui) as founders, 3 to sign changes: their
/// keys, the genesis signed by the first three, and the nodes started on it.
pub async fn four_founders(
    root: &std::path::Path,
) -> Result<(Vec<NodeKey>, SignedCharter, Vec<TestNode>)> {
    let keys: Vec<NodeKey> = (0..4).map(|_| NodeKey::generate()).collect();
    let regions = [310000, 320000, 330000, 340000];
    let mut members = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        members.push(member(k, regions[i], i + 1)?);
    }
    let mut signed = SignedCharter::draft(genesis(members, 3));
    for k in &keys[..3] {
        signed.sign(k.signing_key())?;
    }
    let nodes = founders(root, &keys, &signed).await?;
    Ok((keys, signed, nodes))
}

/// A node for each key, started on `charter` (written to `root/charter.json`), each bootstrapping
/// to the first; anti-entropy every 2 s.
pub async fn founders(
    root: &std::path::Path,
    keys: &[NodeKey],
    charter: &SignedCharter,
) -> Result<Vec<TestNode>> {
    let path = root.join("charter.json");
    std::fs::write(&path, charter.to_json_pretty()?)?;
    let mut nodes: Vec<TestNode> = Vec::new();
    let ids: Vec<_> = keys.iter().map(NodeKey::peer_id).collect();
    for (i, key) in keys.iter().enumerate() {
        let boot = match nodes.first() {
            Some(first) => vec![first.tcp_address().await?],
            None => Vec::new(),
        };
        let mut node = TestNode::create(root, i, key.clone(), &ids, boot)?;
        on_charter(&mut node, &path)?;
        node.start().await?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// Switches a node created with a member list (the harness's way) to the charter file `path`,
/// with anti-entropy every 2 s; before its start.
pub fn on_charter(node: &mut TestNode, path: &std::path::Path) -> Result<()> {
    node.edit_config(|c| {
        c.federation.members.clear();
        c.federation.charter = Some(path.to_path_buf());
        c.sync.anti_entropy_secs = 2;
    })
}
