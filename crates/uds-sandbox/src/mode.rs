//! How hard to try: `off`, `auto` or `require`.

use std::fmt;
use std::str::FromStr;

/// How far [`Policy::confine`](crate::Policy::confine) goes, as chosen on a
/// command line (`--sandbox=off|auto|require`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SandboxMode {
    /// Confine nothing. The [`Report`](crate::Report) still says what is in
    /// force (for example `no_new_privs` inherited from a service manager).
    Off,
    /// Confine as far as the running kernel allows and report what was
    /// applied; a kernel without Landlock, or with an older Landlock, is not
    /// an error. The default.
    #[default]
    Auto,
    /// Apply everything the [`Policy`](crate::Policy) asks for, or fail
    /// without applying anything: the caller should then refuse to start.
    Require,
}

impl SandboxMode {
    /// The name used on command lines and in reports: `off`, `auto` or
    /// `require`.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Off => "off",
            SandboxMode::Auto => "auto",
            SandboxMode::Require => "require",
        }
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not `off`, `auto` or `require`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sandbox mode {given:?}: use \"off\", \"auto\" or \"require\"")]
pub struct ParseModeError {
    given: String,
}

impl FromStr for SandboxMode {
    type Err = ParseModeError;

    /// Parses `off`, `auto` or `require` (exactly, in lower case).
    fn from_str(s: &str) -> Result<SandboxMode, ParseModeError> {
        match s {
            "off" => Ok(SandboxMode::Off),
            "auto" => Ok(SandboxMode::Auto),
            "require" => Ok(SandboxMode::Require),
            _ => Err(ParseModeError {
                given: s.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for mode in [SandboxMode::Off, SandboxMode::Auto, SandboxMode::Require] {
            assert_eq!(mode.to_string().parse::<SandboxMode>(), Ok(mode));
        }
        assert_eq!(SandboxMode::default(), SandboxMode::Auto);
    }

    #[test]
    fn unknown_names_are_refused_with_the_choices() {
        for bad in ["", "Auto", "on", "required", " off"] {
            let e = bad.parse::<SandboxMode>().unwrap_err();
            let text = e.to_string();
            assert!(text.contains(&format!("{bad:?}")), "{text}");
            assert!(text.contains("\"off\", \"auto\" or \"require\""), "{text}");
        }
    }
}
