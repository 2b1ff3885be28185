//! regcheck: finds out why a cluster cannot reach its container registry.
//!
//! Data flows one way: input → plan of endpoints (`target`) → probes (`probe`, the only
//! network I/O) → [`evidence::Evidence`] → diagnosis (pure) → [`findings::Report`] → output.

pub mod aggregate;
pub mod authparse;
pub mod catalogue;
pub mod check;
pub mod controller;
pub mod crd;
pub mod diagnosis;
pub mod evidence;
pub mod findings;
pub mod jobs;
pub mod output;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod probe_cmd;
pub mod proxy;
pub mod reference;
pub mod target;

/// Whether text logs get ANSI colours: only on a terminal, and not with `NO_COLOR` set
/// (`kubectl logs`, files and pipes would show the escape codes as garbage).
pub fn log_colours() -> bool {
    use std::io::IsTerminal;
    colours_for(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// [`log_colours`] for stderr being a terminal (`tty`) and the value of `NO_COLOR`.
pub fn colours_for(tty: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    tty && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod log_tests {
    use super::colours_for;
    use std::ffi::OsStr;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours_for(true, None));
        assert!(colours_for(true, Some(OsStr::new(""))));
        assert!(!colours_for(true, Some(OsStr::new("1"))));
        assert!(!colours_for(false, None));
    }
}
