//! The `regcheck` subcommands' own pieces: `probe` (the in-cluster probe a Job runs) and the
//! controller's flags and start-up.

pub mod controller;
pub mod probe;
