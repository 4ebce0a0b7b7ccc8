//! `--backend`: `auto`, or one of the data paths of `reflector_io::datapath` (their names and
//! help come from there, so a new data path needs no line here).

use std::sync::LazyLock;

use clap::ValueEnum;
use clap::builder::PossibleValue;
use reflector_io::datapath::{AUTO, Backend};

/// Which data path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// The best one available here (`reflector_io::datapath::AUTO`).
    Auto,
    /// The one named.
    Named(Backend),
}

/// `auto`, then every data path.
static CHOICES: LazyLock<Vec<BackendChoice>> = LazyLock::new(|| {
    std::iter::once(BackendChoice::Auto)
        .chain(Backend::ALL.iter().map(|&b| BackendChoice::Named(b)))
        .collect()
});

impl ValueEnum for BackendChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &CHOICES
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            BackendChoice::Auto => PossibleValue::new("auto").help(
                "The best one available here: af-xdp, else af-packet on Linux; bpf on macOS and FreeBSD",
            ),
            BackendChoice::Named(b) => PossibleValue::new(b.name()).help(b.about()),
        })
    }
}

impl BackendChoice {
    /// The backend `auto` stands for on this system (the first it tries).
    pub fn resolve(self) -> Backend {
        match self {
            BackendChoice::Auto => AUTO[0],
            BackendChoice::Named(b) => b,
        }
    }

    /// The backend named, `None` for `auto`.
    pub fn named(self) -> Option<Backend> {
        match self {
            BackendChoice::Auto => None,
            BackendChoice::Named(b) => Some(b),
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Named(b) => b.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_path_is_a_choice_by_its_name() {
        for &b in Backend::ALL {
            assert_eq!(BackendChoice::from_str(b.name(), false), Ok(BackendChoice::Named(b)));
        }
        assert_eq!(BackendChoice::from_str("auto", false), Ok(BackendChoice::Auto));
        assert!(BackendChoice::from_str("netmap", false).is_err());
        assert_eq!(BackendChoice::Auto.resolve(), AUTO[0]);
    }
}
