//! `confab-bench`: a load generator for Socket.IO chat servers that speak confab's protocol.
//! Run `confab-bench --help` for the scenarios and options.

mod capacity;
mod cli;
mod client;
mod markdown;
mod plot;
mod population;
mod probe;
mod report;
mod scenario;
mod schedule;
mod scrape;
mod stats;
mod tokens;
mod usage;
mod wire;

use std::process::ExitCode;

use clap::Parser;

use crate::scenario::Verdict;

fn main() -> ExitCode {
    // `report` reads results rather than generating load, so it has options of its own.
    if std::env::args_os().nth(1).is_some_and(|a| a == "report") {
        let argv = std::iter::once("confab-bench report".into()).chain(std::env::args_os().skip(2));
        let args = cli::ReportArgs::parse_from::<_, std::ffi::OsString>(argv);
        return match report(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("confab-bench report: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let args = cli::Args::parse();
    let strict = args.strict;
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("confab-bench: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(scenario::run(args));
    // Connection tasks still winding down must not hold up the exit.
    runtime.shutdown_background();
    match outcome {
        Ok(Verdict::Clean) => ExitCode::SUCCESS,
        Ok(Verdict::Problems) if strict => {
            eprintln!("confab-bench: --strict: the result shows problems (see above)");
            ExitCode::from(2)
        }
        Ok(Verdict::Problems) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confab-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn report(args: cli::ReportArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;

    if let Some(path) = &args.stamp {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(file, "{}", markdown::meta_record(&args.command))?;
        return Ok(());
    }
    let results = markdown::Results::load(&args.results)?;
    let plots_dir = args.plots_dir.clone().unwrap_or_else(|| {
        args.out
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join("bench")
    });
    let notes = match &args.notes {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    markdown::write(
        &results,
        &markdown::Options {
            out: &args.out,
            plots_dir: &plots_dir,
            notes,
        },
    )
}
