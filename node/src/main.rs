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
        bound_malloc_arenas();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
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

/// glibc's malloc gives threads that allocate at the same time arenas of their own (up to eight
/// per core) and hands little of what is freed inside them back: a busy node's resident memory
/// crept for as long as it ran (scripts/soak.py; docs/benchmarks.md, "Memory over time"). Two
/// arenas keep it flat at no measurable cost to a node's throughput. glibc reads the bound once,
/// before the first allocation, so a long-running command whose environment does not set it
/// re-executes itself (same process id, same binary even if replaced on disk) with it set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MALLOC_ARENA_MAX";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "yrd".into());
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(VAR, "2")
        .exec();
    // Still here: exec failed. Run on with glibc's default arenas.
    eprintln!("warning: could not bound malloc arenas ({VAR}=2 and re-exec): {err}");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_malloc_arenas() {}
