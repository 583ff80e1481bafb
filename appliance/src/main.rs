//! `appliance [EAL args] -- --config FILE [--check]`, testpmd's convention: everything before `--` goes
//! to the EAL, everything after it to the appliance.

mod config;
mod control;
mod eal_args;
mod metrics;
mod mgmt;
mod prober;
mod role;
mod runtime;
mod shared;
mod stats;
mod tables;
mod worker;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "appliance",
    version,
    about = "Multipath overlay appliance on DPDK",
    override_usage = "appliance [EAL args] -- --config FILE [--check]"
)]
struct Cli {
    /// Configuration file (TOML); environment variables APPLIANCE__SECTION__KEY override it.
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the configuration (and the EAL core and vdev arguments) and exit: 0 valid, 2 invalid.
    /// Never starts the EAL.
    #[arg(long)]
    check: bool,
}

/// Splits argv at the first `--`: (EAL args with the program name first, appliance args). Without `--`,
/// everything is for the appliance.
fn split_args(args: &[String]) -> (Vec<String>, Vec<String>) {
    let prog = args.first().cloned().unwrap_or_else(|| "appliance".into());
    match args.iter().skip(1).position(|a| a == "--") {
        Some(i) => {
            let eal = std::iter::once(prog).chain(args[1..=i].iter().cloned()).collect();
            (eal, args[i + 2..].to_vec())
        }
        None => (vec![prog], args[1..].to_vec()),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().collect();
    let (eal_argv, app) = split_args(&args);
    let cli = match Cli::try_parse_from(std::iter::once("appliance".to_string()).chain(app)) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let eal = match eal_args::EalArgs::parse(&eal_argv[1..]) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let validated = config::load(&cli.config).and_then(|c| c.validate(&eal));
    let v = match validated {
        Ok(v) => v,
        Err(p) => {
            eprintln!("error: configuration {} is invalid:", cli.config.display());
            for problem in &p.0 {
                eprintln!("  {problem}");
            }
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!(
            "configuration {} is valid: {} port(s), {} worker(s) on lcores {:?}",
            cli.config.display(),
            v.ports.len(),
            v.dataplane.workers.len(),
            v.dataplane.workers
        );
        return ExitCode::SUCCESS;
    }
    let reloader = tables::Reloader {
        path: cli.config.clone(),
        eal,
    };
    match runtime::run(v, eal_argv, reloader) {
        Ok(()) => ExitCode::SUCCESS,
        Err(runtime::RunError::Config(p)) => {
            eprintln!("error: configuration does not fit this machine:");
            for problem in &p.0 {
                eprintln!("  {problem}");
            }
            ExitCode::from(2)
        }
        Err(runtime::RunError::Fatal(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_args;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn split_at_double_dash() {
        let (e, a) = split_args(&v(&["app", "-l", "0", "--", "--config", "x"]));
        assert_eq!(e, v(&["app", "-l", "0"]));
        assert_eq!(a, v(&["--config", "x"]));
        let (e, a) = split_args(&v(&["app", "--config", "x"]));
        assert_eq!(e, v(&["app"]));
        assert_eq!(a, v(&["--config", "x"]));
    }
}
