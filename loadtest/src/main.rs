//! `podium-loadtest`: see `podium-loadtest --help` and BENCHMARKS.md.
//!
//! Exit status: 0 after a run; 1 on bad flags or a target that cannot be
//! reached; 2 after a flip drill in which a request failed, an answer was
//! inconsistent or a flip failed.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use podium_loadtest::cli::{load_inputs, Args, Plan};
use podium_loadtest::{report, run};

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match args.plan(std::io::stderr().is_terminal()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("podium-loadtest: {e:#}");
            return ExitCode::from(1);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = plan.threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("podium-loadtest: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(main_async(plan)) {
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
