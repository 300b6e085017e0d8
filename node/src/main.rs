//! The `yrd` binary: parse the command line, run it, map failures to exit codes.

use std::process::ExitCode;

use clap::Parser;
use yrd_node::cli::Command;

fn main() -> ExitCode {
    // `yrd … | head` closes our stdout early: end quietly, as other tools do, not with a panic.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = match yrd_node::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                yrd_node::cli::EXIT_USAGE
            } else {
                0
            });
        }
    };
    if matches!(
        cli.command,
        Command::Run | Command::Devnet(_) | Command::Sim { .. }
    ) {
        set_malloc_bounds();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // sled's buffers retired on a worker are freed once it idles, not when 64 have waited.
        .on_thread_park(yrd_node::store::release_retired)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(yrd_node::cli::EXIT_FAILED);
        }
    };
    match runtime.block_on(yrd_node::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            eprintln!("error: {:#}", anyhow::Error::new(e));
            ExitCode::from(code)
        }
    }
}

/// glibc's malloc settings a long-running node needs, read once before the first allocation:
/// - `MALLOC_ARENA_MAX=2`: glibc gives threads that allocate at the same time arenas of their
///   own (up to eight per core) and hands little of what is freed inside them back.
/// - `MALLOC_MMAP_THRESHOLD_=131072`: a block of 128 KiB or more (a chunk buffer, a file's
///   records, a listing) gets pages of its own, returned when freed. glibc's default threshold
///   rises to the largest such block freed (up to 32 MiB); from then on those blocks are carved
///   out of the arenas, and the long-lived data allocated between them (sled's cache, growing
///   with every version stored) pins the space: resident memory crept about 0.25 MiB per version
///   published on the devnet and never came back (scripts/soak.py; docs/benchmarks.md, "Memory
///   over time"). Fixed, the same soak stays flat.
///
/// A long-running command whose environment does not set them re-executes itself (same process
/// id, same binary even if replaced on disk) with them set; a value the environment gives is kept.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_malloc_bounds() {
    use std::os::unix::process::CommandExt;
    const VARS: [(&str, &str); 2] = [
        ("MALLOC_ARENA_MAX", "2"),
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
    ];
    let missing: Vec<(&str, &str)> = VARS
        .into_iter()
        .filter(|(var, _)| std::env::var_os(var).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "yrd".into());
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .envs(missing)
        .exec();
    // Still here: exec failed. Run on with glibc's defaults.
    eprintln!(
        "warning: could not set glibc's malloc bounds (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_) and re-exec: {err}"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_malloc_bounds() {}
