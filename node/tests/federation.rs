//! Black-box tests of `yrd federation`: a genesis proposed, signed offline by each founder's node
//! key, assembled and verified; an update adding a city; the refusals (a non-founder signing, too
//! few signatures, a skipped version, two versions of one number).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;
use yrd_node::identity::NodeKey;
use yrd_node::model::charter::{SignedCharter, uscc_check_char};

const YRD: &str = env!("CARGO_BIN_EXE_yrd");

fn yrd(args: &[&str]) -> Output {
    Command::new(YRD)
        .args(args)
        .env_remove("YRD_DATA_DIR")
        .env_remove("YRD_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run yrd")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The standard error of a failed command (exit code 1 or 2).
fn refused(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "accepted: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn member_id(region: u32, n: u8) -> String {
    let first17 = format!("12{region}YRD0000{n:02}");
    format!("{first17}{}", uscc_check_char(&first17).expect("alphabet"))
}

/// Four provinces' key files and a city's, in `dir`.
struct Keys {
    files: Vec<PathBuf>,
    peers: Vec<String>,
}

fn keys(dir: &Path) -> Keys {
    let mut files = Vec::new();
    let mut peers = Vec::new();
    for seed in 1..=5u8 {
        let key = NodeKey::from_seed([seed; 32]);
        let path = dir.join(format!("key{seed}"));
        key.save_new(&path).expect("write key");
        files.push(path);
        peers.push(key.peer_id().to_string());
    }
    Keys { files, peers }
}

const REGIONS: [u32; 4] = [310000, 320000, 330000, 340000];

fn propose_genesis(dir: &Path, keys: &Keys) -> PathBuf {
    let out = dir.join("genesis.json");
    let specs: Vec<String> = REGIONS
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "{},{r},founder,{},省级大数据中心 {i}",
                member_id(*r, i as u8 + 1),
                keys.peers[i]
            )
        })
        .collect();
    let mut args = vec![
        "federation",
        "propose",
        "--genesis",
        "--id",
        "yrd-delta",
        "--name",
        "长三角政务数据共享联盟",
        "--threshold",
        "3",
        "--out",
        s(&out),
    ];
    for spec in &specs {
        args.push("--member");
        args.push(spec);
    }
    ok(&yrd(&args));
    out
}

/// Each of `signers` signs its own copy of `draft`; the copies' paths.
fn sign_copies(
    dir: &Path,
    draft: &Path,
    keys: &Keys,
    signers: &[usize],
    extra: &[&str],
) -> Vec<PathBuf> {
    signers
        .iter()
        .map(|i| {
            let copy = dir.join(format!(
                "{}-signed-{i}.json",
                draft.file_stem().and_then(|f| f.to_str()).unwrap_or("c")
            ));
            let mut args = vec![
                "federation",
                "sign",
                s(draft),
                "--key",
                s(&keys.files[*i]),
                "--out",
                s(&copy),
            ];
            args.extend_from_slice(extra);
            ok(&yrd(&args));
            copy
        })
        .collect()
}

fn assemble(files: &[PathBuf], chain: &[&Path], out: &Path) -> Output {
    let mut args = vec!["federation", "assemble"];
    args.extend(files.iter().map(|f| s(f)));
    if !chain.is_empty() {
        args.push("--chain");
        args.extend(chain.iter().map(|f| s(f)));
    }
    args.push("--out");
    args.push(s(out));
    yrd(&args)
}

#[test]
fn a_genesis_is_proposed_signed_by_three_founders_assembled_and_verified() {
    let dir = TempDir::new().unwrap();
    let keys = keys(dir.path());
    let draft = propose_genesis(dir.path(), &keys);
    let doc: SignedCharter =
        SignedCharter::from_json(&std::fs::read_to_string(&draft).unwrap()).unwrap();
    assert_eq!(doc.document.version, 1);
    assert!(doc.signatures.is_empty());

    // The city's key is no founder: its signature is refused before it is written.
    let e = refused(&yrd(&[
        "federation",
        "sign",
        s(&draft),
        "--key",
        s(&keys.files[4]),
    ]));
    assert!(e.contains("is not a founder of charter version 1"), "{e}");

    let copies = sign_copies(dir.path(), &draft, &keys, &[0, 1], &[]);
    let genesis = dir.path().join("charter-v1.json");
    let e = refused(&assemble(&copies, &[], &genesis));
    assert!(e.contains("2 of the 3 founder signatures"), "{e}");
    assert!(!genesis.exists());

    let mut copies = copies;
    copies.extend(sign_copies(dir.path(), &draft, &keys, &[3], &[]));
    let out = ok(&assemble(&copies, &[], &genesis));
    assert!(
        out.contains("assembled charter version 1 (3 signature(s))"),
        "{out}"
    );

    let out = ok(&yrd(&["federation", "verify", s(&genesis)]));
    assert!(out.contains("valid: version 1 in force until"), "{out}");
    let out = ok(&yrd(&["federation", "show", s(&genesis)]));
    assert!(
        out.contains("310000 上海市 Shanghai") && out.contains(&keys.peers[2]),
        "{out}"
    );
    let out = ok(&yrd(&["--json", "federation", "verify", s(&genesis)]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["versions"][0]["signed_by_own"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(v["state"]["state"], "in-force");
}

#[test]
fn an_update_adds_a_city_with_both_thresholds_and_refusals_name_their_cause() {
    let dir = TempDir::new().unwrap();
    let keys = keys(dir.path());
    let draft = propose_genesis(dir.path(), &keys);
    let genesis = dir.path().join("v1.json");
    ok(&assemble(
        &sign_copies(dir.path(), &draft, &keys, &[0, 1, 2], &[]),
        &[],
        &genesis,
    ));

    // Version 2: Suzhou joins; the Anhui founder is removed.
    let v2_draft = dir.path().join("v2-draft.json");
    let suzhou = format!(
        "{},苏州市,member,{},苏州市大数据管理局",
        member_id(320500, 5),
        keys.peers[4]
    );
    ok(&yrd(&[
        "federation",
        "propose",
        "--from",
        s(&genesis),
        "--member",
        &suzhou,
        "--remove-member",
        &member_id(340000, 4),
        "--out",
        s(&v2_draft),
    ]));
    // Anhui is no founder of version 2, but is one of version 1: it may sign with --previous.
    let e = refused(&yrd(&[
        "federation",
        "sign",
        s(&v2_draft),
        "--key",
        s(&keys.files[3]),
    ]));
    assert!(e.contains("--previous"), "{e}");
    let anhui = sign_copies(
        dir.path(),
        &v2_draft,
        &keys,
        &[3],
        &["--previous", s(&genesis)],
    );
    // Anhui (previous only) + Shanghai + Jiangsu: 3 of version 1's founders, but only 2 of the
    // 3 founders version 2 keeps, which needs 3.
    let mut copies = anhui;
    copies.extend(sign_copies(dir.path(), &v2_draft, &keys, &[0, 1], &[]));
    let v2 = dir.path().join("v2.json");
    let e = refused(&assemble(&copies, &[&genesis], &v2));
    assert!(
        e.contains("2 of the 3 founder signatures") && e.contains("its own members"),
        "{e}"
    );
    copies.extend(sign_copies(dir.path(), &v2_draft, &keys, &[2], &[]));
    ok(&assemble(&copies, &[&genesis], &v2));
    // Without the chain, a version 2 cannot be checked.
    let e = refused(&assemble(&copies, &[], &dir.path().join("x.json")));
    assert!(e.contains("--chain"), "{e}");

    let out = ok(&yrd(&["federation", "verify", s(&genesis), s(&v2)]));
    assert!(out.contains("valid: version 2 in force"), "{out}");
    // Order matters: version 2 alone is no genesis; version 2 before 1 is refused.
    let e = refused(&yrd(&["federation", "verify", s(&v2), s(&genesis)]));
    assert!(e.contains("genesis is version 1"), "{e}");

    // A version 3 offered on version 1 skips ahead.
    let v3_draft = dir.path().join("v3-draft.json");
    ok(&yrd(&[
        "federation",
        "propose",
        "--from",
        s(&v2),
        "--set-region",
        &format!("{}=无锡市", member_id(320500, 5)),
        "--out",
        s(&v3_draft),
    ]));
    let v3_copies = sign_copies(dir.path(), &v3_draft, &keys, &[0, 1, 2], &[]);
    let e = refused(&assemble(
        &v3_copies,
        &[&genesis],
        &dir.path().join("v3.json"),
    ));
    assert!(e.contains("skips ahead"), "{e}");

    // A second version 2, validly signed by 3 founders, is equivocation.
    let other_draft = dir.path().join("v2b-draft.json");
    ok(&yrd(&[
        "federation",
        "propose",
        "--from",
        s(&genesis),
        "--threshold",
        "2",
        "--out",
        s(&other_draft),
    ]));
    let other = dir.path().join("v2b.json");
    ok(&assemble(
        &sign_copies(dir.path(), &other_draft, &keys, &[0, 1, 2], &[]),
        &[&genesis],
        &other,
    ));
    let e = refused(&yrd(&[
        "federation",
        "verify",
        s(&genesis),
        s(&v2),
        s(&other),
    ]));
    assert!(e.contains("equivocation at version 2"), "{e}");
}

#[test]
fn propose_refuses_bad_members_with_their_cause() {
    let dir = TempDir::new().unwrap();
    let keys = keys(dir.path());
    let out = dir.path().join("x.json");
    let bad_check = {
        let good = member_id(310000, 1);
        let last = if good.ends_with('0') { '1' } else { '0' };
        format!("{}{last}", &good[..17])
    };
    for (spec, expected) in [
        (
            format!("{bad_check},310000,founder,{},x", keys.peers[0]),
            "统一社会信用代码",
        ),
        (
            format!(
                "{},110000,founder,{},x",
                member_id(310000, 1),
                keys.peers[0]
            ),
            "region",
        ),
        (
            format!("{},310000,king,{},x", member_id(310000, 1), keys.peers[0]),
            "founder, member or observer",
        ),
        (
            format!("{},310000,founder,notakey,x", member_id(310000, 1)),
            "peer id",
        ),
        (
            "too,few".to_string(),
            "MEMBER_ID,REGION,ROLE,KEY,ORGANISATION",
        ),
    ] {
        let e = refused(&yrd(&[
            "federation",
            "propose",
            "--genesis",
            "--id",
            "x",
            "--name",
            "x",
            "--threshold",
            "1",
            "--member",
            &spec,
            "--out",
            s(&out),
        ]));
        assert!(e.contains(expected), "{spec}: {e}");
        assert!(!out.exists());
    }
}
