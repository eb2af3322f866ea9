//! The one configuration error: which setting, where in the file when that is known, and
//! what is wrong. Every problem of a configuration is collected ([`ConfigErrors`]) and
//! reported at once, by `check-config`, at start-up and on a refused reload alike.

use std::fmt;

/// One problem with one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting, as the file spells its path (`routes[2].scopes`); empty for the file
    /// as a whole.
    pub field: String,
    /// The configuration file and the line and column (from 1) in it, when known.
    pub file: Option<String>,
    pub location: Option<(usize, usize)>,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl fmt::Display) -> ConfigError {
        ConfigError {
            field: field.into(),
            file: None,
            location: None,
            message: message.to_string(),
        }
    }

    /// The same error, found at `location` of the file.
    pub fn at(mut self, location: Option<(usize, usize)>) -> ConfigError {
        self.location = location;
        self
    }

    /// The same error, in the file named `file`.
    pub fn in_file(mut self, file: &str) -> ConfigError {
        self.file = Some(file.to_owned());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(file), Some(_)) = (&self.file, self.location) {
            write!(f, "{file}: ")?;
        }
        if let Some((line, column)) = self.location {
            write!(f, "line {line}, column {column}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a configuration, in the order found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// One problem.
    pub fn one(field: impl Into<String>, message: impl fmt::Display) -> ConfigErrors {
        ConfigErrors(vec![ConfigError::new(field, message)])
    }

    /// Each problem as a line.
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}
