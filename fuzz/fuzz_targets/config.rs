//! Config parsing (`config::NodeConfig::parse`, the node's `yrd.toml`). Properties: no panic;
//! an accepted config written back (`to_toml`, what `yrd init` writes) parses to the same
//! config and passes the same checks.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use yrd_node::config::NodeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/yrd.toml");
    if let Ok(config) = NodeConfig::parse(text, path) {
        let written = config.to_toml().expect("an accepted config is written");
        let again = NodeConfig::parse(&written, path).expect("a written config is read back");
        assert_eq!(again, config);
        let _ = config.member_ids();
        let _ = config.data_dir(path);
    }
});
