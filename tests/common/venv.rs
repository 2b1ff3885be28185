//! The Python venv of tests/packaging/requirements.txt (helm-python-sdk and friends), shared by
//! tests/packaging.rs and tests/e2e.rs: `<target>/packaging-venv`, next to the test binary's
//! `debug/` directory, created or updated when the requirements changed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `<target>/packaging-venv`.
pub fn venv_dir(root: &Path) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // <target>/debug/deps/<test>-<hash>
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.join("target"));
    target.join("packaging-venv")
}

/// Runs `cmd`; its output, or an error naming `what` with the output.
pub fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{what} failed ({}):\n{}", out.status, text.trim()))
    }
}

/// The venv's python, with the pinned packages installed.
pub fn python(root: &Path) -> Result<PathBuf, String> {
    let venv = venv_dir(root);
    let req_path = root.join("tests/packaging/requirements.txt");
    let reqs = std::fs::read_to_string(&req_path)
        .map_err(|e| format!("reading {}: {e}", req_path.display()))?;
    let stamp = venv.join("regcheck-requirements.txt");
    let python = venv.join("bin/python");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(reqs.as_str()) && python.exists() {
        return Ok(python);
    }
    if !python.exists() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv",
        )?;
    }
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&req_path),
        "pip install -r tests/packaging/requirements.txt",
    )?;
    std::fs::write(&stamp, reqs).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    Ok(python)
}
