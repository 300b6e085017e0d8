//! JSONL and CSV record validation (`node::datasets::check_jsonl`, `check_csv`) against the
//! shipped standards, compiled once. The first byte picks the standard and the format.
//! Properties: no panic; a refusal reports between 1 and `MAX_REPORTED_ERRORS` problems, each
//! on a line of the input; an accepted file counts no more records than it has lines; and the
//! borrowed fast path never accepts a line the validator refuses on the owned `Value`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use yrd_node::model::standard::{CompiledStandard, compile};
use yrd_node::node::datasets::{MAX_REPORTED_ERRORS, check_csv, check_jsonl};
use yrd_node::samples::{STANDARDS, schema_json};

fn standards() -> &'static [CompiledStandard] {
    static COMPILED: OnceLock<Vec<CompiledStandard>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        STANDARDS
            .iter()
            .map(|s| {
                let schema = serde_json::from_str(schema_json(s.id).expect("shipped")).unwrap();
                compile(&schema).expect("a shipped standard compiles")
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let [sel, input @ ..] = data else {
        return;
    };
    let standards = standards();
    let standard = &standards[usize::from(sel / 2) % standards.len()];
    let result = if sel % 2 == 0 {
        check_jsonl(input, standard)
    } else {
        check_csv(input, standard)
    };
    // Lines as the reader counts them: the CSV reader also ends a line at a lone CR.
    let mut lines = input.split(|&b| b == b'\n').count() as u64;
    if sel % 2 == 1 {
        lines += input
            .windows(2)
            .filter(|w| w[0] == b'\r' && w[1] != b'\n')
            .count() as u64;
        lines += u64::from(input.last() == Some(&b'\r'));
    }
    match result {
        Ok(checked) => assert!(checked.records <= lines),
        Err(problems) => {
            assert!(!problems.is_empty() && problems.len() <= MAX_REPORTED_ERRORS);
            for p in &problems {
                assert!(
                    p.line >= 1 && p.line <= lines.max(1),
                    "problem on line {} of {lines}",
                    p.line
                );
            }
        }
    }
    // The fast path decides only "valid": it must never say so where the owned path does not.
    if sel % 2 == 0 {
        for line in input.split(|&b| b == b'\n') {
            let Ok(text) = std::str::from_utf8(line) else {
                continue;
            };
            if standard.is_valid_text(text) {
                let value: serde_json::Value =
                    serde_json::from_str(text).expect("the fast path accepted unparseable JSON");
                assert!(standard.is_valid(&value), "fast path accepted {text:?}");
            }
        }
    }
});
