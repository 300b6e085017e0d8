//! The charter verbs of the CLI: offline, `federation propose|sign|assemble|verify|show` (files
//! in, files out; the rules are `model::charter`'s); online, `federation
//! history|proposals|submit|approve|apply` (the running node's API).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::output::print_json;
use super::{Cli, CliError, FederationCommand, ProposeArgs, client, table};
use crate::config::{CONFIG_FILE, NodeConfig};
use crate::identity::{self, NodeKey};
use crate::model::charter::{
    Change, ChangePolicy, Charter, CharterChain, CharterMember, CharterState, Federation, Offer,
    Role, SignedCharter, key_from_text,
};
use crate::model::region::Region;
use crate::node::CharterVersionView;
use crate::node::charter_sync::ProposalView;

/// Runs one `yrd federation` verb.
pub(super) async fn federation(cli: &Cli, cmd: &FederationCommand) -> Result<(), CliError> {
    match cmd {
        FederationCommand::History => history(cli).await,
        FederationCommand::Chain { out } => chain(cli, out).await,
        FederationCommand::Proposals => proposals(cli).await,
        FederationCommand::Submit { file } => {
            let charter = read_charter(file)?;
            let view: ProposalView = client(cli)?
                .post("/api/v1/federation/proposals", &charter)
                .await?;
            print_proposal(cli, &view)
        }
        FederationCommand::Approve { digest } => {
            let view: ProposalView = client(cli)?
                .post(
                    &format!("/api/v1/federation/proposals/{digest}/sign"),
                    &serde_json::json!({}),
                )
                .await?;
            print_proposal(cli, &view)
        }
        FederationCommand::Apply { file } => {
            let charter = read_charter(file)?;
            let applied: CharterVersionView = client(cli)?
                .post("/api/v1/federation/apply", &charter)
                .await?;
            if cli.json {
                return print_json(&applied);
            }
            println!(
                "charter version {} in force ({})",
                applied.version, applied.digest
            );
            Ok(())
        }
        FederationCommand::Propose(args) => propose(cli, args),
        FederationCommand::Sign {
            file,
            key,
            previous,
            out,
        } => sign(
            cli,
            file,
            key.as_deref(),
            previous.as_deref(),
            out.as_deref(),
        ),
        FederationCommand::Assemble { files, chain, out } => assemble(cli, files, chain, out),
        FederationCommand::Verify { files } => verify(cli, files),
        FederationCommand::Show { file } => show(cli, file.as_deref()),
    }
}

fn file_error(path: &Path, message: impl ToString) -> CliError {
    CliError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reads and shape-checks a signed charter (signatures are for the rules to count).
pub(crate) fn read_charter(path: &Path) -> Result<SignedCharter, CliError> {
    let limit = crate::model::charter::MAX_CHARTER_BYTES as u64;
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, e))?;
    if meta.len() > limit {
        return Err(file_error(
            path,
            format!("{} bytes; a charter is at most {limit}", meta.len()),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    SignedCharter::from_json(&text).map_err(|e| file_error(path, e))
}

/// Writes a charter through a temp file renamed over `path`, so a reader never sees half of it.
fn write_charter(path: &Path, charter: &SignedCharter) -> Result<(), CliError> {
    write_atomically(path, &charter.to_json_pretty()?)
}

fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| file_error(path, e))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| file_error(path, e))?;
    tmp.as_file().sync_all().map_err(|e| file_error(path, e))?;
    tmp.persist(path).map_err(|e| file_error(path, e.error))?;
    Ok(())
}

fn usage(message: String) -> CliError {
    CliError::Usage(message)
}

fn parse_role(text: &str, flag: &str) -> Result<Role, CliError> {
    match text.trim() {
        "founder" => Ok(Role::Founder),
        "member" => Ok(Role::Member),
        "observer" => Ok(Role::Observer),
        other => Err(usage(format!(
            "{flag} {other:?}: expected founder, member or observer"
        ))),
    }
}

fn parse_region(text: &str, flag: &str) -> Result<Region, CliError> {
    crate::node::access::parse_region(text).ok_or_else(|| {
        usage(format!(
            "{flag} {text:?}: not a Delta region code or name (`yrd regions`)"
        ))
    })
}

/// `MEMBER_ID,REGION,ROLE,KEY,ORGANISATION`.
fn parse_member(spec: &str) -> Result<CharterMember, CliError> {
    let parts: Vec<&str> = spec.splitn(5, ',').map(str::trim).collect();
    let [member_id, region, role, key, organisation] = parts.as_slice() else {
        return Err(usage(format!(
            "--member {spec:?}: expected MEMBER_ID,REGION,ROLE,KEY,ORGANISATION"
        )));
    };
    Ok(CharterMember {
        member_id: (*member_id).to_owned(),
        organisation: (*organisation).to_owned(),
        region: parse_region(region, "--member")?,
        role: parse_role(role, "--member")?,
        keys: vec![key_from_text(key).map_err(|e| usage(format!("--member: {e}")))?],
    })
}

/// `MEMBER_ID=VALUE`.
fn split_pair<'a>(text: &'a str, flag: &str) -> Result<(String, &'a str), CliError> {
    text.split_once('=')
        .map(|(id, v)| (id.trim().to_owned(), v.trim()))
        .ok_or_else(|| usage(format!("{flag} {text:?}: expected MEMBER_ID=VALUE")))
}

fn validity(args: &ProposeArgs) -> Result<(String, String), CliError> {
    let secs = crate::clock::parse_duration(&args.expires_in)
        .filter(|s| *s > 0)
        .ok_or_else(|| {
            usage(format!(
                "--expires-in {:?}: expected a length such as 365d or 12h",
                args.expires_in
            ))
        })?;
    let now = std::time::SystemTime::now();
    let later = now + std::time::Duration::from_secs(secs);
    Ok((
        crate::clock::format_system_time(now),
        crate::clock::format_system_time(later),
    ))
}

fn propose(cli: &Cli, args: &ProposeArgs) -> Result<(), CliError> {
    let (issued, expires) = validity(args)?;
    let draft = match &args.from {
        None => genesis_draft(args, issued, expires)?,
        Some(from) => {
            let current = read_charter(from)?;
            let changes = changes(args, &current.document)?;
            current.document.next(&changes, issued, expires)?
        }
    };
    let draft = SignedCharter::draft(draft);
    write_charter(&args.out, &draft)?;
    let doc = &draft.document;
    if cli.json {
        return print_json(&serde_json::json!({
            "file": args.out,
            "version": doc.version,
            "digest": doc.digest()?,
            "members": doc.members.len(),
        }));
    }
    println!(
        "wrote draft charter version {} of {} ({} members) to {}",
        doc.version,
        doc.federation.id,
        doc.members.len(),
        args.out.display()
    );
    println!(
        "digest {}; it needs {} {} signature(s){}: `yrd federation sign {}`",
        doc.digest()?,
        doc.policy.threshold,
        doc.policy.signers,
        if doc.version > 1 {
            " of its own and a threshold of the previous version's"
        } else {
            ""
        },
        args.out.display()
    );
    Ok(())
}

fn genesis_draft(args: &ProposeArgs, issued: String, expires: String) -> Result<Charter, CliError> {
    let need = |v: &Option<String>, flag: &str| {
        v.clone()
            .ok_or_else(|| usage(format!("--genesis needs {flag}")))
    };
    let threshold = args
        .threshold
        .ok_or_else(|| usage("--genesis needs --threshold N".into()))?;
    let signers = match &args.signers {
        Some(s) => parse_role(s, "--signers")?,
        None => Role::Founder,
    };
    let edits = !args.remove.is_empty()
        || !args.set_region.is_empty()
        || !args.set_role.is_empty()
        || !args.rotate_key.is_empty()
        || !args.add_key.is_empty();
    if edits {
        return Err(usage(
            "--genesis takes --member for each member; the other changes need --from".into(),
        ));
    }
    let charter = Charter {
        federation: Federation {
            id: need(&args.id, "--id ID")?,
            name: need(&args.name, "--name NAME")?,
        },
        version: 1,
        previous: None,
        issued,
        expires,
        members: args
            .members
            .iter()
            .map(|m| parse_member(m))
            .collect::<Result<_, _>>()?,
        policy: ChangePolicy { signers, threshold },
    };
    charter.check()?;
    Ok(charter)
}

fn changes(args: &ProposeArgs, current: &Charter) -> Result<Vec<Change>, CliError> {
    let mut out = Vec::new();
    for m in &args.members {
        out.push(Change::AddMember(parse_member(m)?));
    }
    for id in &args.remove {
        out.push(Change::RemoveMember(id.trim().to_owned()));
    }
    for p in &args.set_region {
        let (id, v) = split_pair(p, "--set-region")?;
        out.push(Change::SetRegion(id, parse_region(v, "--set-region")?));
    }
    for p in &args.set_role {
        let (id, v) = split_pair(p, "--set-role")?;
        out.push(Change::SetRole(id, parse_role(v, "--set-role")?));
    }
    for (list, flag) in [
        (&args.rotate_key, "--rotate-key"),
        (&args.add_key, "--add-key"),
    ] {
        for p in list {
            let (id, v) = split_pair(p, flag)?;
            let key = key_from_text(v).map_err(|e| usage(format!("{flag}: {e}")))?;
            out.push(if flag == "--rotate-key" {
                Change::RotateKey(id, key)
            } else {
                Change::AddKey(id, key)
            });
        }
    }
    if args.signers.is_some() || args.threshold.is_some() {
        let signers = match &args.signers {
            Some(s) => parse_role(s, "--signers")?,
            None => current.policy.signers,
        };
        let threshold = args.threshold.unwrap_or(current.policy.threshold);
        out.push(Change::SetPolicy(ChangePolicy { signers, threshold }));
    }
    if out.is_empty() {
        return Err(usage(
            "--from needs at least one change (--member, --remove-member, --set-region, \
             --set-role, --rotate-key, --add-key, --signers, --threshold)"
                .into(),
        ));
    }
    Ok(out)
}

/// The key to sign with: `--key FILE`, else the node key of `--data-dir`.
fn signing_key(cli: &Cli, key: Option<&Path>) -> Result<NodeKey, CliError> {
    let path = match (key, &cli.data_dir) {
        (Some(k), _) => k.to_path_buf(),
        (None, Some(d)) => d.join(identity::KEY_FILE),
        (None, None) => {
            return Err(usage(
                "sign needs --key KEYFILE or --data-dir DIR (its node key)".into(),
            ));
        }
    };
    NodeKey::load(&path).map_err(|e| CliError::Invalid(e.to_string()))
}

/// Whether `public_key` belongs to a member of `charter`'s signing role; its member if so.
fn signer_in<'a>(charter: &'a Charter, public_key: &str) -> Option<&'a CharterMember> {
    charter
        .member_of_key(public_key)
        .filter(|m| m.role == charter.policy.signers)
}

fn sign(
    cli: &Cli,
    file: &Path,
    key: Option<&Path>,
    previous: Option<&Path>,
    out: Option<&Path>,
) -> Result<(), CliError> {
    let key = signing_key(cli, key)?;
    let mut charter = read_charter(file)?;
    let public = key.public_hex();
    let doc = &charter.document;
    let mut as_member = signer_in(doc, &public).map(|m| (m.clone(), "its own"));
    if let Some(prev_path) = previous {
        let prev = read_charter(prev_path)?;
        if doc.previous.as_deref() != Some(prev.document.digest()?.as_str()) {
            return Err(CliError::Invalid(format!(
                "{} is not the version {} replaces (its digest is not the draft's `previous`)",
                prev_path.display(),
                file.display()
            )));
        }
        if as_member.is_none() {
            as_member = signer_in(&prev.document, &public).map(|m| (m.clone(), "the previous"));
        }
    }
    let Some((member, which)) = as_member else {
        return Err(CliError::Invalid(format!(
            "key {} (peer {}) is not a {} of charter version {}{}: its signature would not count",
            public,
            key.peer_id(),
            doc.policy.signers,
            doc.version,
            if previous.is_some() {
                " nor of the version it replaces"
            } else {
                " (give --previous if it signs as a member of the version replaced)"
            }
        )));
    };
    charter.sign(key.signing_key())?;
    let target = out.unwrap_or(file);
    write_charter(target, &charter)?;
    if cli.json {
        return print_json(&serde_json::json!({
            "file": target,
            "version": charter.document.version,
            "member_id": member.member_id,
            "signatures": charter.signatures.len(),
        }));
    }
    println!(
        "signed charter version {} as {} {} ({}, {}) of {} version; {} signature(s) in {}",
        charter.document.version,
        member.role,
        member.member_id,
        member.organisation,
        member.region.label(),
        which,
        charter.signatures.len(),
        target.display()
    );
    Ok(())
}

fn read_all(files: &[PathBuf]) -> Result<Vec<SignedCharter>, CliError> {
    files.iter().map(|f| read_charter(f)).collect()
}

fn assemble(cli: &Cli, files: &[PathBuf], chain: &[PathBuf], out: &Path) -> Result<(), CliError> {
    let copies = read_all(files)?;
    let (first, rest) = copies
        .split_first()
        .ok_or_else(|| usage("assemble needs at least one file".into()))?;
    let mut assembled = first.clone();
    for (copy, path) in rest.iter().zip(&files[1..]) {
        assembled.merge(copy).map_err(|e| file_error(path, e))?;
    }
    let verified = if chain.is_empty() {
        if assembled.document.version != 1 {
            return Err(usage(format!(
                "version {} is checked against the versions before it: give them with --chain \
                 (genesis first)",
                assembled.document.version
            )));
        }
        crate::model::charter::verify_genesis(&assembled)?
    } else {
        let mut held = CharterChain::verify_all(&read_all(chain)?)?;
        match held.offer(&assembled)? {
            Offer::Applied { .. } | Offer::Held { .. } | Offer::Resolved { .. } => {}
            Offer::Equivocation(e) => {
                return Err(CliError::Invalid(format!(
                    "equivocation: the chain already holds another version {} (digest {})",
                    e.version,
                    e.held.document.digest()?
                )));
            }
        }
        held.current().clone()
    };
    write_charter(out, &verified.charter)?;
    if cli.json {
        return print_json(&VersionAccount::of(&verified));
    }
    println!(
        "assembled charter version {} ({} signature(s)) into {}",
        verified.version(),
        verified.charter.signatures.len(),
        out.display()
    );
    print_version(&VersionAccount::of(&verified));
    Ok(())
}

/// What `verify` says about one version.
#[derive(Debug, Serialize)]
struct VersionAccount {
    version: u64,
    digest: String,
    members: usize,
    expires: String,
    signed_by_previous: Vec<String>,
    signed_by_own: Vec<String>,
}

impl VersionAccount {
    fn of(v: &crate::model::charter::VerifiedCharter) -> VersionAccount {
        VersionAccount {
            version: v.version(),
            digest: v.digest.clone(),
            members: v.document().members.len(),
            expires: v.document().expires.clone(),
            signed_by_previous: v.signed_by_previous.clone(),
            signed_by_own: v.signed_by_own.clone(),
        }
    }
}

fn print_version(v: &VersionAccount) {
    println!(
        "version {}  digest {}  {} members  expires {}",
        v.version, v.digest, v.members, v.expires
    );
    if v.version > 1 {
        println!(
            "  signed by the previous version's: {}",
            v.signed_by_previous.join(", ")
        );
    }
    println!("  signed by its own: {}", v.signed_by_own.join(", "));
}

fn verify(cli: &Cli, files: &[PathBuf]) -> Result<(), CliError> {
    let charters = read_all(files)?;
    let (first, rest) = charters
        .split_first()
        .ok_or_else(|| usage("verify needs at least the genesis".into()))?;
    let mut chain = CharterChain::from_genesis(first).map_err(|e| file_error(&files[0], e))?;
    for (c, path) in rest.iter().zip(&files[1..]) {
        match chain.offer(c).map_err(|e| file_error(path, e))? {
            Offer::Applied { .. } | Offer::Held { .. } | Offer::Resolved { .. } => {}
            Offer::Equivocation(e) => {
                return Err(CliError::Invalid(format!(
                    "{}: equivocation at version {}: two validly signed documents, digests {} \
                     and {}",
                    path.display(),
                    e.version,
                    e.held.document.digest()?,
                    e.offered.document.digest()?
                )));
            }
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let state = chain.state(now);
    let accounts: Vec<VersionAccount> = chain.versions().iter().map(VersionAccount::of).collect();
    if cli.json {
        return print_json(&serde_json::json!({ "versions": accounts, "state": state }));
    }
    for a in &accounts {
        print_version(a);
    }
    match state {
        CharterState::InForce { version, expires } => {
            println!("valid: version {version} in force until {expires}");
        }
        CharterState::Expired { version, expires } => {
            println!(
                "valid, but EXPIRED: version {version} expired at {expires}; nodes alarm and \
                 issue no new grants until the next version"
            );
        }
        CharterState::Equivocated { version, at } => {
            println!("EQUIVOCATION at version {at}; version {version} held");
        }
    }
    Ok(())
}

/// The charter file of the node that `--config` or `--data-dir` names.
fn configured_charter(cli: &Cli) -> Result<PathBuf, CliError> {
    let config_path = match (&cli.config, &cli.data_dir) {
        (Some(c), _) => c.clone(),
        (None, Some(d)) => d.join(CONFIG_FILE),
        (None, None) => {
            return Err(usage(
                "show needs a FILE, or --config / --data-dir of a node started on a charter".into(),
            ));
        }
    };
    let config = NodeConfig::load(&config_path)?;
    config.charter_path(&config_path).ok_or_else(|| {
        usage(format!(
            "{}: no [federation] charter",
            config_path.display()
        ))
    })
}

fn show(cli: &Cli, file: Option<&Path>) -> Result<(), CliError> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => configured_charter(cli)?,
    };
    let charter = read_charter(&path)?;
    if cli.json {
        return print_json(&charter);
    }
    let doc = &charter.document;
    println!(
        "{} ({})  version {}  issued {}  expires {}",
        doc.federation.name, doc.federation.id, doc.version, doc.issued, doc.expires
    );
    println!(
        "changes need {} {} signature(s); digest {}; {} signature(s) attached",
        doc.policy.threshold,
        doc.policy.signers,
        doc.digest()?,
        charter.signatures.len()
    );
    let mut members: Vec<&CharterMember> = doc.members.iter().collect();
    members.sort_by(|a, b| a.region.cmp(&b.region).then(a.member_id.cmp(&b.member_id)));
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.region.label(),
                m.role.to_string(),
                m.member_id.clone(),
                m.organisation.clone(),
                m.keys
                    .iter()
                    .map(|k| {
                        k.peer_id()
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| k.public_key.clone())
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["REGION", "ROLE", "MEMBER ID", "ORGANISATION", "PEER"],
            &rows
        )
    );
    Ok(())
}

/// `yrd federation chain --out FILE`: every applied version from the running node, checked
/// as a chain here, written as the chain file a joining bureau starts on (docs/charter.md).
async fn chain(cli: &Cli, out: &Path) -> Result<(), CliError> {
    let c = client(cli)?;
    let list: Vec<CharterVersionView> = c.get("/api/v1/federation/history").await?;
    let mut versions = Vec::with_capacity(list.len());
    for v in &list {
        let signed: SignedCharter = c
            .get(&format!("/api/v1/federation/versions/{}", v.version))
            .await?;
        versions.push(signed);
    }
    // The node is trusted for nothing: the chain must verify from its genesis.
    let verified = crate::model::charter::CharterChain::verify_all(&versions)?;
    let text = serde_json::to_string_pretty(&versions)
        .map_err(|e| CliError::Usage(format!("cannot write the chain: {e}")))?;
    write_atomically(out, &format!("{text}\n"))?;
    if cli.json {
        return print_json(&serde_json::json!({
            "file": out,
            "versions": versions.len(),
            "digest": verified.current().digest,
        }));
    }
    println!(
        "{}: versions 1 to {} (current digest {}); set [federation] charter to it",
        out.display(),
        versions.len(),
        verified.current().digest
    );
    Ok(())
}

async fn history(cli: &Cli) -> Result<(), CliError> {
    let list: Vec<CharterVersionView> = client(cli)?.get("/api/v1/federation/history").await?;
    if cli.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                v.digest.chars().take(16).collect(),
                v.issued.clone(),
                v.expires.clone(),
                v.members.to_string(),
                if v.signed_by_previous.is_empty() {
                    v.signed_by_own.join(" ")
                } else {
                    v.signed_by_previous.join(" ")
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "VERSION",
                "DIGEST",
                "ISSUED",
                "EXPIRES",
                "MEMBERS",
                "SIGNED BY"
            ],
            &rows
        )
    );
    Ok(())
}

async fn proposals(cli: &Cli) -> Result<(), CliError> {
    let list: Vec<ProposalView> = client(cli)?.get("/api/v1/federation/proposals").await?;
    if cli.json {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("no proposals held");
    }
    for p in &list {
        print_proposal(cli, p)?;
    }
    Ok(())
}

/// `yrd key rotate`: asks the running node to make its next key and propose the change.
pub(super) async fn rotate_key(cli: &Cli) -> Result<(), CliError> {
    let view: crate::node::key_rotation::KeyRotationView = client(cli)?
        .post("/api/v1/key/rotate", &serde_json::json!({}))
        .await?;
    if cli.json {
        return print_json(&view);
    }
    let then = match view.stage {
        crate::node::key_rotation::RotationStage::AddNextKey => {
            println!(
                "adding next key {} to member {} (now {})",
                view.next_peer_id, view.member_id, view.peer_id
            );
            "Once it is applied the node restarts on the new key and proposes removing the old one."
        }
        crate::node::key_rotation::RotationStage::RetireOldKey => {
            println!(
                "removing the earlier keys of member {}: only {} remains",
                view.member_id, view.peer_id
            );
            "Once it is applied every member refuses the old key."
        }
    };
    print_proposal(cli, &view.proposal)?;
    println!(
        "Each founder approves it: yrd federation approve {}\n{then}",
        view.proposal.digest
    );
    Ok(())
}

fn print_proposal(cli: &Cli, p: &ProposalView) -> Result<(), CliError> {
    if cli.json {
        return print_json(p);
    }
    println!(
        "{}  version {}  {} member(s)  {} signature(s)  {}",
        p.digest,
        p.version,
        p.members,
        p.signers.len(),
        match &p.lacking {
            None => "ready".to_string(),
            Some(l) => format!("not yet: {l}"),
        }
    );
    Ok(())
}
