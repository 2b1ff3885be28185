//! The Debian packages of a test harness, from the one list `tests/common/debian-packages.tsv`
//! (through `tests/common/deps.py`, which the Python lab scripts use too).

use std::process::{Command, Stdio};

const DEPS_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/deps.py");

/// The programs of `harness` that are missing here, as `program (package)`.
#[allow(dead_code)]
pub fn missing(harness: &str) -> Result<Vec<String>, String> {
    let out = Command::new("python3")
        .args([DEPS_PY, "missing", harness])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("python3 {DEPS_PY}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "deps.py missing {harness}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Install the missing packages of `harness` (needs root; a no-op when nothing is missing).
pub fn ensure(harness: &str) -> Result<(), String> {
    let out = Command::new("python3")
        .args([DEPS_PY, "install", harness])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("python3 {DEPS_PY}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cannot install the {harness} tests' Debian packages: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
