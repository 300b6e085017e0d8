//! Scenario parsing (`sim::Scenario::parse`, what `yrd sim FILE` reads). The first byte picks
//! the `--nodes` override. Properties: no panic; an accepted scenario has between 1 and
//! `MAX_NODES` nodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yrd_node::sim::{MAX_NODES, Scenario};

fuzz_target!(|data: &[u8]| {
    let [nodes, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let nodes = match nodes {
        0 => None,
        n => Some(usize::from(*n) * 2),
    };
    if let Ok((_, n)) = Scenario::parse(text, nodes) {
        assert!((1..=MAX_NODES).contains(&n), "{n} nodes accepted");
    }
});
