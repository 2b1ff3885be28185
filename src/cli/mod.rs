//! The `regcheck` subcommands' own pieces: `probe` (the in-cluster probe a Job runs) and the
//! controller's flags and start-up.

pub mod controller;
pub mod probe;

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
