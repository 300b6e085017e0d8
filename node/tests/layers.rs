//! The layering of `node/src` (docs/architecture.md, "Layers"), checked from the source: every
//! `crate::X` path in a module's code (its unit tests excluded) must name a module of a lower
//! layer. Strictly lower, so no import points up or sideways and no circle can form.
//!
//! When a module moves or a new one is added, give it a layer here and in the architecture doc.
#![allow(clippy::unwrap_used)] // a test: an unreadable source tree should panic

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each top-level module of the library and its layer; a module may import only from layers
/// below its own.
const LAYERS: &[(&str, u8)] = &[
    // Leaves: no imports from the crate.
    ("clock", 0),
    ("failpoint", 0),
    ("identity", 0),
    ("notify", 0),
    ("samples", 0),
    ("console", 0),
    // Pure data: documents, signatures, canonical JSON, chunk tables, refusal codes.
    ("model", 1),
    // What sits on the data: the database, the swarm, catalogue exports.
    ("store", 2),
    ("net", 2),
    ("export", 2),
    // The config collects the settings of the layers below it; setup writes a data dir.
    ("config", 3),
    ("logging", 4),
    ("setup", 4),
    // The service layer: the only place that decides.
    ("node", 5),
    // HTTP in front of the service.
    ("api", 6),
    // The daemon: a node and its API.
    ("server", 7),
    // Many daemons in one process.
    ("devnet", 8),
    ("sim", 8),
    // The command line, on top of everything.
    ("cli", 9),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module names a file's code refers to as `crate::NAME`, without its unit tests
/// and comments.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn imports_only_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(own) = layer(&top) else {
            problems.push(format!("{}: module {top} has no layer", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_paths(&text) {
            if used == top {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own => {}
                Some(l) => problems.push(format!(
                    "{}: {top} (layer {own}) imports {used} (layer {l})",
                    rel.display()
                )),
                None => problems.push(format!("{}: unknown module {used}", rel.display())),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "imports against the layers:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_module_of_the_library_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(declared.len() >= 15, "lib.rs declares {declared:?}");
    for m in declared {
        assert!(
            layer(m).is_some(),
            "module {m} has no layer in tests/layers.rs"
        );
    }
}

#[test]
fn the_checker_sees_an_upward_import() {
    let text = "use crate::model::x;\nfn f() { crate::api::g(); } // crate::cli::h\n\
                #[cfg(test)]\nmod tests { use crate::sim::x; }";
    let found = crate_paths(text);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        vec!["api".to_string(), "model".to_string()]
    );
}
