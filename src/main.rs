//! The `jwt-authz` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser as _;
use jwt_authz::config::{Cli, Command, Config, LogFormat, ServeArgs};

/// Exit code for a configuration error (sysexits `EX_USAGE`).
const EXIT_CONFIG: u8 = 64;

/// Exit code when a service the command needs does not answer (sysexits
/// `EX_UNAVAILABLE`).
const EXIT_UNAVAILABLE: u8 = 69;

/// `explain`'s exit code for a request the service denies.
const EXIT_DENIED: u8 = 1;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    match cli.command {
        Command::Serve(args) => {
            let config = match Config::load(&args) {
                Ok(config) => config,
                Err(errors) => return config_error(errors.lines()),
            };
            if let Err(e) =
                jwt_authz::telemetry::init(&config.startup.log_level, config.startup.log_format)
            {
                return config_error(vec![e]);
            }
            block_on(jwt_authz::server::run(config))
        }
        Command::Demo(args) => {
            if let Err(e) = jwt_authz::telemetry::init(&args.log_level, LogFormat::Human) {
                return config_error(vec![e]);
            }
            block_on(jwt_authz::demo::run(*args))
        }
        Command::Explain(args) => {
            let explained = runtime().map_err(|e| e.to_string()).and_then(|rt| {
                rt.block_on(jwt_authz::explain::run(&args))
                    .map_err(|e| e.to_string())
            });
            match explained {
                Ok(explained) => {
                    print!("{}", explained.output);
                    ExitCode::from(if explained.allowed { 0 } else { EXIT_DENIED })
                }
                Err(e) => {
                    for line in e.lines() {
                        eprintln!("jwt-authz: {line}");
                    }
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Revoke(args) => {
            use jwt_authz::revocation::cli::{Failure, run};
            let done = runtime()
                .map_err(|e| Failure::Unavailable(e.to_string()))
                .and_then(|rt| rt.block_on(run(&args)));
            match done {
                Ok(output) => {
                    print!("{output}");
                    ExitCode::SUCCESS
                }
                Err(Failure::Usage(e)) => config_error(e.lines().map(str::to_owned).collect()),
                Err(Failure::Unavailable(e)) => {
                    eprintln!("jwt-authz: {e}");
                    ExitCode::from(EXIT_UNAVAILABLE)
                }
            }
        }
        Command::CheckConfig { file } => {
            let args = ServeArgs {
                config: Some(file.clone()),
                ..ServeArgs::default()
            };
            match Config::load(&args) {
                Ok(config) => {
                    println!(
                        "{}: ok ({} issuer(s), {} route rule(s), {} claim header(s))",
                        file.display(),
                        config.settings.issuers.len(),
                        config.settings.policy.rules().len(),
                        config.settings.upstream.claim_headers.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(errors) => config_error(errors.lines()),
            }
        }
    }
}

/// A command line clap refuses: its message, and `EX_USAGE`. `--help` and `--version`
/// print and succeed.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = error.print();
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_CONFIG),
    }
}

fn config_error(lines: Vec<String>) -> ExitCode {
    for line in lines {
        eprintln!("jwt-authz: {line}");
    }
    ExitCode::from(EXIT_CONFIG)
}

fn block_on(task: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    match block_on_value(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwt-authz: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on_value<T>(
    task: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    runtime()
        .map_err(|e| anyhow::anyhow!("cannot start runtime: {e}"))?
        .block_on(task)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
