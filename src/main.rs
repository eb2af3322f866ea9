//! The `jwt-authz` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use jwt_authz::config::{Cli, Command, Config};

/// Exit code for a configuration error (sysexits `EX_USAGE`).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match Config::from_args(&args) {
                Ok(config) => config,
                Err(errors) => {
                    for line in errors.0 {
                        eprintln!("jwt-authz: {line}");
                    }
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            if let Err(e) = jwt_authz::telemetry::init(&config.log_level, config.log_format) {
                eprintln!("jwt-authz: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            run(config)
        }
    }
}

fn run(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jwt-authz: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(jwt_authz::server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwt-authz: {e:#}");
            ExitCode::FAILURE
        }
    }
}
