//! `confab-bench`: a load generator for Socket.IO chat servers that speak confab's protocol.
//! Run `confab-bench --help` for the scenarios and options.

mod capacity;
mod cli;
mod client;
mod population;
mod report;
mod scenario;
mod schedule;
mod stats;
mod tokens;
mod usage;

use std::process::ExitCode;

use clap::Parser;

use crate::scenario::Verdict;

fn main() -> ExitCode {
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
