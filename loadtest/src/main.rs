//! `podium-loadtest`: see `podium-loadtest --help` and BENCHMARKS.md.
//!
//! Exit status: 0 after a run; 1 on bad flags or a target that cannot be
//! reached (and for `--replay`: a table that cannot be read, or nothing in
//! it to replay); 2 after a flip drill in which a request failed, an answer
//! was inconsistent or a flip failed, or a replay in which a request got an
//! error; 3 after a `--replay --compare` in which every request was answered
//! but an answer differs from the recorded one.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use podium_loadtest::cli::{load_inputs, Args, Plan};
use podium_loadtest::replay::{self, ReplayConfig};
use podium_loadtest::{report, run};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // Help and --version go to stdout and succeed; bad flags exit 1
            // (clap's own 2 would read as a replay or drill that failed).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let terminal = std::io::stderr().is_terminal();
    let (plan, threads) = match args.replay_config(terminal) {
        Ok(Some(replay)) => (Err(replay), args.threads),
        Ok(None) => match args.plan(terminal) {
            Ok(p) => {
                let threads = p.threads;
                (Ok(p), threads)
            }
            Err(e) => {
                eprintln!("podium-loadtest: {e:#}");
                return ExitCode::from(1);
            }
        },
        Err(e) => {
            eprintln!("podium-loadtest: {e:#}");
            return ExitCode::from(1);
        }
    };
    if threads == Some(0) {
        eprintln!("podium-loadtest: --threads must be at least 1");
        return ExitCode::from(1);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("podium-loadtest: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = match plan {
        Ok(plan) => runtime.block_on(main_async(plan)),
        Err(replay) => runtime.block_on(replay_main(replay, args.json)),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podium-loadtest: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn main_async(plan: Plan) -> anyhow::Result<ExitCode> {
    let inputs = load_inputs(&plan).await?;
    match &plan.sweep {
        None => {
            let r = run::run(&plan.run, &inputs).await?;
            if plan.json {
                println!("{}", serde_json::to_string_pretty(&r.json())?);
            } else {
                print!("{}", report::summary(&r));
            }
            let drill_failed = r.flip.as_ref().is_some_and(|f| {
                f.failed_flips > 0
                    || r.measured.error_count() > 0
                    || r.checks.inconsistent_total() > 0
            });
            Ok(if drill_failed {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Some(levels) => {
            let mut rows = Vec::new();
            if !plan.json {
                println!(
                    "{} {} ({}), warm-up {:?} per level",
                    plan.run.target.url,
                    plan.run.target.model,
                    plan.run.target.protocol.name(),
                    plan.run.warmup
                );
                println!("{}", report::sweep_header());
            }
            for &c in levels {
                let mut cfg = plan.run.clone();
                cfg.concurrency = c;
                let r = run::run(&cfg, &inputs).await?;
                if plan.json {
                    rows.push(r.json());
                } else {
                    println!("{}", report::sweep_row(&r));
                }
            }
            if plan.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--replay`: prints the report; the exit status says whether every
/// request was answered (and matched, with `--compare`).
async fn replay_main(cfg: ReplayConfig, json: bool) -> anyhow::Result<ExitCode> {
    let r = replay::run(&cfg).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r.json())?);
    } else {
        print!("{}", replay::report::summary(&r));
    }
    if r.replayed() == 0 {
        eprintln!(
            "podium-loadtest: nothing to replay: {} rows within the filters, none with a request that can be sent again (see \"skipped\"; rows need log_payloads = true and a 2xx status)",
            r.selection.skipped_total()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::from(r.exit_code()))
}
