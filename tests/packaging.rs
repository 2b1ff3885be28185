//! Packaging checks with the real engines: the Helm chart (rendered and linted by Helm's own
//! library), the Kubernetes schemas, the alert rules (promtool), the Dockerfile (hadolint), and
//! the copies the chart carries of the CRD, the rules and the dashboard.
//!
//! Tools: Debian's `prometheus` package (for `promtool`; its service is never started) and the
//! Python packages of `tests/packaging/requirements.txt` in a venv under the target directory.
//! As root, missing ones are installed first and a failed install fails the tests; without
//! root the tests that need them are reported as *ignored* with the reason
//! (`REGCHECK_PACKAGING_REQUIRED=1` makes that a failure). Nothing here touches the network
//! beyond those package installs.
//!
//! Run: `cargo test --test packaging`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[path = "common/deps.rs"]
mod deps;
#[path = "common/venv.rs"]
mod venv;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn root() -> &'static Path {
    Path::new(ROOT)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Pure checks (always run)

fn chart_copies_are_identical() -> Result<(), String> {
    let pairs = [
        (
            "crds/regcheck.dev_registryconnectivitychecks.yaml",
            "charts/regcheck/crds/regcheck.dev_registryconnectivitychecks.yaml",
        ),
        (
            regcheck::generate::RULES_PATH,
            "charts/regcheck/files/regcheck-rules.yaml",
        ),
        (
            "deploy/grafana/regcheck-dashboard.json",
            "charts/regcheck/files/regcheck-dashboard.json",
        ),
    ];
    for (src, copy) in pairs {
        if read(src) != read(copy) {
            return Err(format!("{copy} differs from {src}: run `cp {src} {copy}`"));
        }
    }
    // The generated CRD itself is kept in sync with the types by a unit test (src/operator/crd.rs).
    if read("crds/regcheck.dev_registryconnectivitychecks.yaml")
        != regcheck::operator::crd::crd_yaml()
    {
        return Err("crds/ differs from `regcheck crdgen`".into());
    }
    Ok(())
}

/// The platforms the Dockerfile builds (its `# PLATFORMS:` line, each with its own
/// TARGETPLATFORM case and Rust musl target) are the default of `--probe-image-platforms`, in
/// the same order: Jobs then never require an architecture the image lacks.
fn dockerfile_platforms_match_the_flag_default(d: &str) -> Result<(), String> {
    let line = d
        .lines()
        .find_map(|l| l.strip_prefix("# PLATFORMS: "))
        .ok_or("Dockerfile has no `# PLATFORMS: ` line")?
        .trim();
    let default = regcheck::operator::platform::DEFAULT_PROBE_PLATFORMS;
    if line != default {
        return Err(format!(
            "Dockerfile builds {line}, --probe-image-platforms defaults to {default}"
        ));
    }
    for p in line.split(',') {
        let triple = match p {
            "linux/amd64" => "x86_64-unknown-linux-musl",
            "linux/arm64" => "aarch64-unknown-linux-musl",
            other => return Err(format!("no Rust target known here for {other}")),
        };
        let arm = format!("{p}) target={triple};");
        if !d.contains(&arm) {
            return Err(format!("Dockerfile has no TARGETPLATFORM case `{arm}`"));
        }
    }
    if !d.contains(&format!("(PLATFORMS: {line})")) {
        return Err("the unsupported-platform error does not list the PLATFORMS".into());
    }
    Ok(())
}

fn dockerfile_builds_static_nonroot_image() -> Result<(), String> {
    let d = read("Dockerfile");
    let want = [
        (
            "cross-compiling builder",
            "FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS builder",
        ),
        ("target platform", "ARG TARGETPLATFORM"),
        ("musl tools", "musl-tools"),
        ("aarch64 cross compiler", "gcc-aarch64-linux-gnu=4:12.2.0-3"),
        ("musl target", "rustup target add \"${target}\""),
        (
            "locked release build",
            "cargo build --release --locked --target \"${TARGET}\"",
        ),
        (
            "final stage",
            "FROM gcr.io/distroless/static-debian12:nonroot",
        ),
        ("binary", "COPY --from=builder /out/regcheck /regcheck"),
        ("user", "USER 65532:65532"),
        ("entrypoint", "ENTRYPOINT [\"/regcheck\"]"),
        ("OCI labels", "org.opencontainers.image.title"),
    ];
    let missing: Vec<&str> = want
        .iter()
        .filter(|(_, s)| !d.contains(s))
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(format!("Dockerfile lacks: {}", missing.join(", ")));
    }
    dockerfile_platforms_match_the_flag_default(&d)?;
    // The build context holds what the build copies, and no more.
    let ignore = read(".dockerignore");
    for line in ["*", "!Cargo.toml", "!Cargo.lock", "!src/"] {
        if !ignore.lines().any(|l| l.trim() == line) {
            return Err(format!(".dockerignore lacks `{line}`"));
        }
    }
    for copied in d
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        for src in copied
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .split_last()
            .unwrap()
            .1
        {
            let allowed = ["Cargo.toml", "Cargo.lock", "src"];
            if !allowed.contains(&src.trim_end_matches('/')) {
                return Err(format!(
                    "Dockerfile copies {src}, which .dockerignore excludes"
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tools

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

use venv::run;

/// The venv with the pinned packages (tests/common/venv.rs).
fn python_tools() -> &'static Result<PathBuf, String> {
    static ONCE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ONCE.get_or_init(|| venv::python(root()))
}

fn promtool() -> &'static Result<PathBuf, String> {
    static ONCE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ONCE.get_or_init(|| {
        let found = || {
            ["/usr/bin/promtool", "/usr/local/bin/promtool"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        };
        if let Some(p) = found() {
            return Ok(p);
        }
        if !is_root() {
            return Err("promtool is not installed (Debian package prometheus)".into());
        }
        // tests/common/debian-packages.tsv; the package's service is never started.
        deps::ensure("packaging")?;
        found().ok_or_else(|| "promtool missing after installing prometheus".into())
    })
}

// ---------------------------------------------------------------------------------------------
// Checks with the engines

/// `promtool check rules` and `promtool test rules` on deploy/prometheus. The test files'
/// `${remediation:Reason}` values are filled in from the catalogue in a scratch copy.
fn promtool_rules() -> Result<(), String> {
    let promtool = promtool().clone()?;
    let out = run(
        Command::new(&promtool)
            .args(["check", "rules"])
            .arg(root().join(regcheck::generate::RULES_PATH)),
        "promtool check rules",
    )?;
    eprintln!("{}", out.trim());
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::create_dir(scratch.path().join("tests")).map_err(|e| e.to_string())?;
    std::fs::copy(
        root().join(regcheck::generate::RULES_PATH),
        scratch.path().join("regcheck-rules.yaml"),
    )
    .map_err(|e| e.to_string())?;
    let dir = root().join("deploy/prometheus/tests");
    let mut tests = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let filled = fill_remediations(&text)?;
        let dest = scratch.path().join("tests").join(path.file_name().unwrap());
        std::fs::write(&dest, filled).map_err(|e| e.to_string())?;
        tests.push(dest);
    }
    if tests.is_empty() {
        return Err(format!("no promtool test files in {}", dir.display()));
    }
    let out = run(
        Command::new(&promtool).args(["test", "rules"]).args(&tests),
        "promtool test rules",
    )?;
    eprintln!("{}", out.trim());
    Ok(())
}

/// Replaces `${remediation:Reason}` with the catalogue's remediation as a YAML string, and
/// `${runbook}` with the default base of the alerts' `runbook_url`.
fn fill_remediations(text: &str) -> Result<String, String> {
    let re = regex::Regex::new(r"\$\{remediation:(\w+)\}").unwrap();
    let mut err = None;
    let out =
        re.replace_all(
            text,
            |c: &regex::Captures| match regcheck::engine::findings::Reason::ALL
                .iter()
                .find(|r| r.as_str() == &c[1])
            {
                Some(r) => serde_json::to_string(r.remediation()).unwrap(),
                None => {
                    err = Some(format!("unknown reason {} in a promtool test", &c[1]));
                    String::new()
                }
            },
        );
    match err {
        Some(e) => Err(e),
        None => Ok(out.replace("${runbook}", &regcheck::generate::default_runbook_base())),
    }
}

fn helm_chart_and_manifests() -> Result<(), String> {
    let python = python_tools().clone()?;
    let promtool = promtool().clone()?;
    let path = format!(
        "{}:{}",
        promtool.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run(
        Command::new(&python)
            .arg(root().join("tests/packaging/check.py"))
            .env("PATH", path),
        "tests/packaging/check.py",
    )?;
    eprintln!("{}", out.trim());
    Ok(())
}

fn hadolint_dockerfile() -> Result<(), String> {
    let python = python_tools().clone()?;
    let hadolint = python.parent().unwrap().join("hadolint");
    let out = run(
        Command::new(&hadolint)
            .args(["--no-color", "--failure-threshold", "info"])
            .arg(root().join("Dockerfile")),
        "hadolint Dockerfile",
    )?;
    eprintln!(
        "hadolint: clean{}",
        if out.trim().is_empty() { "" } else { &out }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let required = std::env::var_os("REGCHECK_PACKAGING_REQUIRED").is_some_and(|v| v == "1");
    let may_install = is_root() || required;
    type Check = fn() -> Result<(), String>;
    // (name, check, needs tools)
    let checks: &[(&str, Check, bool)] = &[
        (
            "chart_copies_are_identical",
            chart_copies_are_identical,
            false,
        ),
        (
            "dockerfile_builds_static_nonroot_image",
            dockerfile_builds_static_nonroot_image,
            false,
        ),
        ("promtool_rules", promtool_rules, true),
        ("helm_chart_and_manifests", helm_chart_and_manifests, true),
        ("hadolint_dockerfile", hadolint_dockerfile, true),
    ];
    // Without root, tools that are already there are still used; only missing ones skip.
    let tools_missing = |name: &str| -> Option<String> {
        if may_install {
            return None;
        }
        let promtool_missing = promtool().as_ref().err().cloned();
        let python_missing = || python_tools().as_ref().err().cloned();
        match name {
            "promtool_rules" => promtool_missing,
            "helm_chart_and_manifests" => promtool_missing.or_else(python_missing),
            _ => python_missing(),
        }
    };
    let trials = checks
        .iter()
        .map(|&(name, check, needs_tools)| {
            let skip = if needs_tools && !args.list {
                tools_missing(name)
            } else {
                None
            };
            if let Some(why) = &skip {
                eprintln!("packaging: {name} is ignored: not root, and {why}");
            }
            libtest_mimic::Trial::test(name, move || check().map_err(Into::into))
                .with_ignored_flag(skip.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
