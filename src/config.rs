//! The typed [`Config`] built at start-up from defaults < file < environment < flags.
//!
//! This is the only module that reads the environment (through clap's `env` twins, in
//! [`cli`]) or the configuration file ([`file`]). Every value is parsed into the type the
//! module that uses it owns, and every problem is reported at once, so the rest of the
//! service never sees an unchecked setting.

mod cli;
pub mod defaults;
mod error;
mod file;
mod issuers;
mod locate;
mod rules;
mod settings;
mod signals;
pub mod source;
mod startup;
mod token_sources;
mod traces;
pub mod values;

use std::path::Path;

use crate::clock::Clock;
pub use cli::{Cli, Command, DemoArgs, ExplainArgs, RevokeArgs, ServeArgs};
pub use error::{ConfigError, ConfigErrors};
pub use file::FileConfig;
pub use settings::Settings;
pub use signals::{RevocationConfig, RevocationStoreConfig, SsfConfig, TransmitterConfig};
pub use startup::{HttpLimits, LogFormat, ReplayStoreConfig, Startup, TokenCacheConfig};
pub use traces::{BatchSettings, TraceSampler, TracesConfig};
pub use values::{parse_algorithms, parse_duration};

/// The whole, checked configuration of a running service: what is bound at start-up and
/// what a reload may change, two types, so a reload cannot apply the first by mistake.
#[derive(Debug, Clone)]
pub struct Config {
    pub startup: Startup,
    pub settings: Settings,
    /// The wall clock tokens are checked against: the system's, or a manual one in tests.
    pub clock: Clock,
    /// The flags and environment this configuration was built from; a reload re-reads
    /// the file and applies them over it again.
    pub origin: ServeArgs,
}

/// Collects errors while a configuration is being built.
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, field: &str, message: impl std::fmt::Display) {
        self.0.push(ConfigError::new(field, message));
    }

    /// Records an error and yields `None`, or yields the value.
    fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|e| self.push(field, e)).ok()
    }
}

impl Config {
    /// Builds the configuration from `serve` flags, reading `--config` if given.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigErrors> {
        match &args.config {
            None => Config::from_sources(args, FileConfig::default()),
            Some(path) => {
                let bytes = source::read(path).map_err(|err| ConfigErrors::one("config", err))?;
                Config::load_bytes(args, &bytes)
            }
        }
    }

    /// Builds the configuration from `serve` flags and `bytes`, the content of their
    /// `--config` file already read ([`source::read`]). Every problem is reported at once:
    /// the file's (unknown keys, wrong types, with their line and column) and those of the
    /// settings it gives, except the settings under a key already reported.
    pub fn load_bytes(args: &ServeArgs, bytes: &[u8]) -> Result<Config, ConfigErrors> {
        let name = args.config.as_deref().map(|p| p.display().to_string());
        let text = std::str::from_utf8(bytes).map_err(|_| {
            let file = name.as_deref().unwrap_or("the file");
            ConfigErrors::one("config", format!("{file} is not UTF-8 text"))
        })?;
        let (file, errors) = file::parse(text);
        let mut errors: Vec<ConfigError> = errors
            .into_iter()
            .map(|e| match &name {
                Some(name) => e.in_file(name),
                None => e,
            })
            .collect();
        let Some(file) = file else {
            return Err(ConfigErrors(errors));
        };
        match Config::from_sources(args, file) {
            Ok(config) if errors.is_empty() => Ok(config),
            Ok(_) => Err(ConfigErrors(errors)),
            Err(ConfigErrors(checked)) => {
                // A setting under one already reported was reported. (An entry whose bad
                // key was taken out may be named once more, for what it then lacks: better
                // than hiding its other problems.)
                let reported: Vec<String> = errors.iter().map(|e| e.field.clone()).collect();
                errors.extend(
                    checked
                        .into_iter()
                        .filter(|e| !reported.iter().any(|r| !r.is_empty() && under(&e.field, r))),
                );
                Err(ConfigErrors(errors))
            }
        }
    }

    /// Merges defaults < `file` < `args` into a checked configuration.
    pub fn from_sources(args: &ServeArgs, file: FileConfig) -> Result<Config, ConfigErrors> {
        let mut e = Errors(Vec::new());
        let allow_http = args.insecure_allow_http || file.insecure_allow_http.unwrap_or(false);
        let startup = startup::parse(&mut e, args, &file, allow_http);
        let settings = settings::parse(&mut e, args, file, allow_http);
        if let (Some(startup), Some(settings)) = (&startup, &settings) {
            signals::check_token_issuers(&mut e, startup.ssf.as_ref(), &settings.issuers);
        }
        match (startup, settings) {
            (Some(startup), Some(settings)) if e.0.is_empty() => Ok(Config {
                startup,
                settings,
                clock: Clock::system(),
                origin: args.clone(),
            }),
            _ => Err(ConfigErrors(e.0)),
        }
    }
}

/// Reads and parses a configuration file; errors name the setting and where it is.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigErrors> {
    let bytes = source::read(path).map_err(|err| ConfigErrors::one("config", err))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ConfigErrors::one("config", "the file is not UTF-8 text"))?;
    parse_file(text)
}

/// Parses configuration file text (YAML); every problem is named with its line and
/// column.
pub fn parse_file(text: &str) -> Result<FileConfig, ConfigErrors> {
    match file::parse(text) {
        (Some(file), errors) if errors.is_empty() => Ok(file),
        (_, errors) => Err(ConfigErrors(errors)),
    }
}

/// Whether setting `field` is `path` or lies under it.
fn under(field: &str, path: &str) -> bool {
    field
        .strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// A secret given as `<name>_file` (its content, a trailing newline dropped) or
/// `<name>_env` (an environment variable), exactly one of them; `None` when neither or
/// both, or it cannot be read (recorded, with `why` saying why it is needed). The value is
/// never part of an error.
fn read_secret(
    e: &mut Errors,
    field: &str,
    name: &str,
    (file, env): (&Option<String>, &Option<String>),
    why: &str,
) -> Option<String> {
    let key = |suffix: &str| format!("{field}{name}_{suffix}");
    match (file, env) {
        (Some(path), None) => e.check(
            &key("file"),
            std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|err| format!("cannot read `{path}`: {}", err.kind())),
        ),
        (None, Some(variable)) => e.check(
            &key("env"),
            std::env::var(variable)
                .map_err(|_| format!("the environment variable `{variable}` is not set")),
        ),
        _ => {
            e.push(
                &key("file"),
                format!("exactly one of {name}_file and {name}_env is required{why}"),
            );
            None
        }
    }
}

fn pick(flag: &Option<String>, file: &Option<String>, default: &str) -> String {
    flag.clone()
        .or_else(|| file.clone())
        .unwrap_or_else(|| default.to_owned())
}

fn trimmed(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

#[cfg(test)]
mod tests;
