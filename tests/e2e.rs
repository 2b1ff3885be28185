//! End-to-end tests of the operator on a real Kubernetes cluster.
//!
//! The tests build nothing themselves beyond what `cargo test` built: they load this crate's
//! `regcheck` binary as an image (`localhost/regcheck:dev`, with the lab CA as the system trust
//! store), install `crds/` and `deploy/` (through `tests/e2e/overlay`, so the RBAC under test is
//! exactly `deploy/`'s), start lab servers on the cluster's bridge address (`tests/e2e/servers.py`:
//! dnsmasq, a registry behind nginx TLS, a registry that denies the client IP, one that never
//! answers), create `RegistryConnectivityCheck`s and watch what the controller does.
//!
//! Which cluster (see `tests/e2e/README.md`):
//! - the shared test cluster (`../shared/cluster`, started by `tests/e2e/cluster.sh up`; `.ci/run`
//!   does that) when it is up and we are root;
//! - otherwise every test is reported *ignored* with the reason; `REGCHECK_E2E_REQUIRED=1` turns
//!   that into a failure (CI sets it).
//!
//! NETWORK SAFETY: the only addresses involved are the cluster's loopback API server, the
//! bridge address the lab servers bind to (10.88.0.1) and pod IPs. Every name the probes look up
//! is answered by the lab's dnsmasq (anything unknown is NXDOMAIN, nothing is forwarded).
//!
//! Run: `cargo test --test e2e` (the tests run in parallel, each in its own namespace).

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

#[path = "common/deps.rs"]
mod deps;
#[path = "e2e/faults.rs"]
mod faults;
use faults::*;
#[path = "e2e/helm.rs"]
mod helm;
#[path = "e2e/kubelet.rs"]
mod kubelet;
use helm::helm_chart_lifecycle_on_the_test_cluster;
use kubelet::*;
#[path = "e2e/prometheus.rs"]
mod prometheus;
#[path = "e2e/quickstart.rs"]
mod quickstart;
#[path = "common/venv.rs"]
mod venv;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const REGCHECK: &str = env!("CARGO_BIN_EXE_regcheck");
const TMP: &str = env!("CARGO_TARGET_TMPDIR");

const OPERATOR_NS: &str = "regcheck-system";
/// The image the tests load into the shared cluster (tests/e2e/overlay names it).
const SHARED_IMAGE: &str = "localhost/regcheck:dev";
/// The shared cluster's bridge address, where the lab servers listen.
const SHARED_LAB_IP: &str = "10.88.0.1";
/// The controller's metrics listener on the shared cluster (host network, loopback).
const METRICS: &str = "127.0.0.1:18080";

const LOGIN: &str = "e2ereg.azurecr.io";
const DENY: &str = "e2edeny.azurecr.io";
const HANG: &str = "e2ehang.azurecr.io";
const MISSING: &str = "nosuch.azurecr.io";
const LAB_IMAGE: &str = "e2e/hello:1.0";

const LABEL_CHECK_UID: &str = "regcheck.dev/check-uid";
const LABEL_RUN: &str = "regcheck.dev/run";
const LABEL_CONTEXT: &str = "regcheck.dev/context";

/// Bound of one wait for a run to finish (scheduling, image start, probe deadline, status write).
const RUN_WAIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Environment: which cluster, and the one-time installation

struct Cluster {
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    mode: Mode,
    /// Address of this machine the nodes and pods reach; the lab servers bind to it.
    lab_ip: String,
    /// Image of controller and probes.
    image: String,
    /// State directory of the lab servers (their CA is baked into the image).
    state: PathBuf,
    /// Names of the cluster's nodes (filled in by `install`).
    nodes: Vec<String>,
    /// The kustomization the operator is installed from (set by `install`).
    overlay: PathBuf,
}

enum Mode {
    /// `../shared/cluster`: the tests load the image and use tests/e2e/overlay.
    Shared { home: PathBuf },
    /// A cluster of the user's (KUBECONFIG): image and lab address given by the environment.
    External,
}

fn cluster_home() -> PathBuf {
    std::env::var_os("REGCHECK_CLUSTER_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("../shared/cluster"))
}

fn cluster_dir() -> PathBuf {
    std::env::var_os("REGCHECK_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/regcheck-cluster"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The cluster to test against, or why there is none.
fn detect() -> Result<Cluster, String> {
    if !is_root() {
        return Err(
            "not running as root (the lab servers bind DNS and HTTPS ports, and the \
                    image is loaded into the test cluster's containerd)"
                .into(),
        );
    }
    let state = env("REGCHECK_E2E_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(TMP).join("e2e-servers"));
    let dir = cluster_dir();
    let shared_kubeconfigs = [dir.join("kubeconfig"), dir.join("kubeconfig-token")];
    if let Some(kc) = env("KUBECONFIG").map(PathBuf::from)
        && !shared_kubeconfigs.contains(&kc)
    {
        let kubectl = env("REGCHECK_E2E_KUBECTL")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("kubectl"));
        let reachable = run(Command::new(&kubectl).env("KUBECONFIG", &kc).args([
            "get",
            "--raw",
            "/readyz",
            "--request-timeout=10s",
        ]));
        match reachable {
            Ok(_) => {
                let (Some(image), Some(lab_ip)) =
                    (env("REGCHECK_E2E_IMAGE"), env("REGCHECK_E2E_LAB_IP"))
                else {
                    return Err(format!(
                        "KUBECONFIG={} is reachable, but REGCHECK_E2E_IMAGE and \
                         REGCHECK_E2E_LAB_IP are not both set (see tests/e2e/README.md)",
                        kc.display()
                    ));
                };
                return Ok(Cluster {
                    kubectl,
                    kubeconfig: kc,
                    mode: Mode::External,
                    lab_ip,
                    image,
                    state,
                    nodes: Vec::new(),
                    overlay: PathBuf::new(),
                });
            }
            Err(e) => say(&format!(
                "KUBECONFIG={} is not reachable, trying the shared test cluster ({})",
                kc.display(),
                e.lines().last().unwrap_or("")
            )),
        }
    }
    let home = cluster_home();
    let status = home.join("status");
    if !status.is_file() {
        return Err(format!(
            "no test cluster scripts at {} (set REGCHECK_CLUSTER_HOME) and no KUBECONFIG",
            home.display()
        ));
    }
    let st = Command::new(&status)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("running {}: {e}", status.display()))?;
    if !st.success() {
        return Err(format!(
            "the test cluster is not up ({} exited {:?}); start it with tests/e2e/cluster.sh up",
            status.display(),
            st.code()
        ));
    }
    Ok(Cluster {
        kubectl: dir.join("bin/kubectl"),
        kubeconfig: dir.join("kubeconfig"),
        mode: Mode::Shared { home },
        lab_ip: SHARED_LAB_IP.into(),
        image: SHARED_IMAGE.into(),
        state,
        nodes: Vec::new(),
        overlay: PathBuf::new(),
    })
}

struct Fixture {
    cluster: Cluster,
    /// Held shared by ordinary tests, exclusively by the one that restarts the controller.
    controller_lock: RwLock<()>,
}

static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();
static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);

fn fixture() -> &'static Fixture {
    match FIXTURE.get_or_init(|| {
        let mut cluster = CLUSTER
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| "no cluster".to_string())?;
        lock_cluster(&cluster)?;
        install(&mut cluster)?;
        Ok(Fixture {
            cluster,
            controller_lock: RwLock::new(()),
        })
    }) {
        Ok(f) => f,
        Err(e) => panic!("e2e setup failed: {e}"),
    }
}

/// The shared hold on the controller that ordinary tests keep while they run.
fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    fixture()
        .controller_lock
        .read()
        .unwrap_or_else(|e| e.into_inner())
}

fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "e2e: {msg}");
}

/// Run a command; Err with its output when it fails.
fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{shown} exited {:?}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

impl Cluster {
    fn kubectl(&self) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.env("KUBECONFIG", &self.kubeconfig);
        c
    }

    fn k(&self, args: &[&str]) -> Result<String, String> {
        run(self.kubectl().args(args))
    }

    /// `kubectl apply -f -` of a JSON object.
    fn apply(&self, obj: &Value) -> Result<String, String> {
        let mut child = self
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("kubectl apply: {e}"))?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(obj.to_string().as_bytes())
            .map_err(|e| format!("kubectl apply stdin: {e}"))?;
        let out = child
            .wait_with_output()
            .map_err(|e| format!("kubectl apply: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "kubectl apply of {obj}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn get_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let out = self.k(&a)?;
        serde_json::from_str(&out).map_err(|e| format!("kubectl {a:?}: not JSON ({e}): {out}"))
    }
}

/// Held for the rest of the process: one e2e run per cluster at a time (another worktree's
/// `cargo test` would replace the image, the controller and the lab servers under our feet).
static CLUSTER_LOCK: OnceLock<std::fs::File> = OnceLock::new();

fn lock_cluster(c: &Cluster) -> Result<(), String> {
    let path = match c.mode {
        Mode::Shared { .. } => cluster_dir().join("e2e.lock"),
        Mode::External => std::env::temp_dir().join("regcheck-e2e.lock"),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let limit = Duration::from_secs(30 * 60);
    let start = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < limit => {
                if !told {
                    say(&format!(
                        "another e2e run holds {}; waiting (at most {limit:?})",
                        path.display()
                    ));
                    told = true;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "another e2e run held {} for {limit:?}",
                    path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("locking {}: {e}", path.display()));
            }
        }
    }
    let _ = CLUSTER_LOCK.set(file);
    Ok(())
}

/// Lab servers, image, CRD, operator: once per test process.
fn install(c: &mut Cluster) -> Result<(), String> {
    let started = Instant::now();
    // The lab servers' and Prometheus' Debian packages (tests/common/debian-packages.tsv).
    deps::ensure("e2e")?;
    let state = c.state.clone();
    let servers = Path::new(ROOT).join("tests/e2e/servers.py");
    let line = run(Command::new("python3").arg(&servers).args([
        "up",
        "--state",
        state.to_str().unwrap(),
        "--ip",
        &c.lab_ip,
    ]))?;
    let lab: Value = serde_json::from_str(line.trim())
        .map_err(|e| format!("servers.py up printed {line:?}: {e}"))?;
    let ca = lab["ca"].as_str().ok_or("servers.py: no ca")?.to_string();
    say(&format!("lab servers up on {}", c.lab_ip));

    let overlay = match &c.mode {
        Mode::Shared { home } => {
            // What node probes mount of the host (tests/e2e/overlay/controller.yaml): the
            // containerd registry configuration and an empty drop-in directory, both present.
            let dir = cluster_dir();
            if dir != Path::new("/var/lib/regcheck-cluster") {
                return Err(format!(
                    "tests/e2e/overlay names /var/lib/regcheck-cluster for node probes' host files; \
                     REGCHECK_CLUSTER_DIR is {}",
                    dir.display()
                ));
            }
            let dropins = dir.join("e2e/containerd.service.d");
            let _ = std::fs::remove_dir_all(&dropins);
            for d in [dir.join("certs.d"), dropins] {
                std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
            }
            load_image(home, &ca)?;
            say(&format!("image {} loaded", c.image));
            Path::new(ROOT).join("tests/e2e/overlay")
        }
        Mode::External => external_overlay(&c.image)?,
    };
    c.overlay = overlay;
    install_operator(c)?;
    let nodes = c.get_json(&["nodes"])?;
    c.nodes = nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
        .collect();
    say(&format!(
        "operator installed and ready in {:?}",
        started.elapsed()
    ));
    Ok(())
}

/// The CRD and the operator (`c.overlay`), replacing a controller left from an earlier run,
/// until the controller is ready. Also restores the operator after the quick start test
/// uninstalled it.
fn install_operator(c: &Cluster) -> Result<(), String> {
    let overlay = &c.overlay;
    // CRD (its CEL rules are unknown to kubectl 1.20's client-side validation).
    c.k(&["apply", "--validate=false", "-k", &format!("{ROOT}/crds")])?;
    c.k(&[
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/registryconnectivitychecks.regcheck.dev",
    ])?;
    // A controller left from an earlier run runs an older image under the same tag: replace it.
    c.k(&[
        "delete",
        "deployment",
        "-n",
        OPERATOR_NS,
        "regcheck-controller",
        "--ignore-not-found",
        "--wait=true",
        "--timeout=60s",
    ])?;
    wait_for("old controller pods gone", Duration::from_secs(60), || {
        let pods = c
            .get_json(&["pods", "-n", OPERATOR_NS, "-l", CONTROLLER_SELECTOR])
            .ok()?;
        pods["items"]
            .as_array()
            .is_some_and(|a| a.is_empty())
            .then_some(())
    })?;
    c.k(&["apply", "-k", overlay.to_str().unwrap()])?;
    // Until the controller pod is ready; a crash loop fails at once, with its logs.
    let mut crashed = None;
    wait_for(
        "the controller pod to be ready",
        Duration::from_secs(120),
        || {
            let pods = c
                .get_json(&["pods", "-n", OPERATOR_NS, "-l", CONTROLLER_SELECTOR])
                .ok()?;
            let items = pods["items"].as_array()?;
            for p in items {
                let cs = &p["status"]["containerStatuses"][0];
                if cs["restartCount"].as_u64() >= Some(2) {
                    crashed = Some(format!(
                        "controller pod restarted {} times",
                        cs["restartCount"]
                    ));
                    return Some(());
                }
            }
            items
                .iter()
                .any(|p| p["status"]["containerStatuses"][0]["ready"] == true)
                .then_some(())
        },
    )
    .map_err(|e| format!("{e}\n{}", controller_logs(c)))?;
    if let Some(why) = crashed {
        return Err(format!("{why}\n{}", controller_logs(c)));
    }
    wait_for("controller /readyz", Duration::from_secs(60), || {
        c.http_get("/readyz").ok().filter(|(s, _)| *s == 200)
    })
    .map_err(|e| format!("{e}\n{}", controller_logs(c)))?;
    Ok(())
}

/// The binary cargo built (stripped: a debug binary is ~170 MB) as `/regcheck`, with the lab CA as
/// the system trust store that rustls-native-certs reads.
fn load_image(home: &Path, ca: &str) -> Result<(), String> {
    let img_dir = Path::new(TMP).join("e2e-image");
    std::fs::create_dir_all(&img_dir).map_err(|e| format!("{}: {e}", img_dir.display()))?;
    let bin = img_dir.join("regcheck");
    run(Command::new("strip").arg("-o").arg(&bin).arg(REGCHECK)).or_else(|_| {
        std::fs::copy(REGCHECK, &bin)
            .map(|_| String::new())
            .map_err(|e| format!("copy {REGCHECK}: {e}"))
    })?;
    run(Command::new(home.join("load-image"))
        .arg(SHARED_IMAGE)
        .arg(&bin)
        .args(["--as", "/regcheck", "--add"])
        .arg(format!("{ca}:/etc/ssl/certs/ca-certificates.crt")))?;
    Ok(())
}

/// The environment that opens deploy/'s multi-tenant defaults up for the tests (as
/// tests/e2e/overlay/controller.yaml does): they create checks with node probes in namespaces
/// of their own, with 30s intervals.
/// deploy/'s multi-tenant defaults opened up for the tests' checks, and no host resolv.conf for
/// node probes: on a cluster of the user's it names the node's real resolver, and the lab's
/// names must only ever be asked of the lab's dnsmasq.
const OPEN_UP: &str = "        - name: REGCHECK_NODE_CONTEXT_NAMESPACES\n          value: \"*\"\n        \
     - name: REGCHECK_MIN_INTERVAL\n          value: 30s\n        \
     - name: REGCHECK_ALLOWED_PROXIES\n          value: \"*\"\n        \
     - name: REGCHECK_NODE_RESOLV_CONF\n          value: \"\"\n";

/// For a cluster of the user's: deploy/ with the given image for controller and probes.
fn external_overlay(image: &str) -> Result<PathBuf, String> {
    let dir = Path::new(TMP).join("e2e-overlay");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (name, tag) = match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (image, "latest"),
    };
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         resources:\n- {ROOT}/deploy\nimages:\n- name: regcheck\n  newName: {name}\n  newTag: {tag}\n\
         patchesStrategicMerge:\n- probe-image.yaml\n"
    );
    let patch = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: regcheck-controller\n  \
         namespace: {OPERATOR_NS}\nspec:\n  template:\n    spec:\n      containers:\n      \
         - name: controller\n        env:\n        - name: REGCHECK_PROBE_IMAGE\n          \
         value: {image}\n{OPEN_UP}"
    );
    for (file, text) in [
        ("kustomization.yaml", kustomization),
        ("probe-image.yaml", patch),
    ] {
        std::fs::write(dir.join(file), text).map_err(|e| format!("{file}: {e}"))?;
    }
    Ok(dir)
}

const CONTROLLER_SELECTOR: &str =
    "app.kubernetes.io/name=regcheck,app.kubernetes.io/component=controller";

fn controller_logs(c: &Cluster) -> String {
    c.k(&[
        "logs",
        "-n",
        OPERATOR_NS,
        "-l",
        CONTROLLER_SELECTOR,
        "--tail=60",
    ])
    .unwrap_or_else(|e| format!("(no controller logs: {e})"))
}

/// Remove what the tests created; the controller goes last (it removes the finalizers).
fn teardown(c: &Cluster) {
    if let Ok(nss) = c.get_json(&["namespaces", "-l", "regcheck-e2e=true"]) {
        let names: Vec<String> = nss["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
            .collect();
        if !names.is_empty() {
            let mut args = vec!["delete", "namespace", "--wait=true", "--timeout=120s"];
            args.extend(names.iter().map(String::as_str));
            if let Err(e) = c.k(&args) {
                say(&format!("cleanup: {e}"));
            }
        }
    }
    if let Err(e) = c.k(&[
        "delete",
        "deployment",
        "-n",
        OPERATOR_NS,
        "regcheck-controller",
        "--ignore-not-found",
    ]) {
        say(&format!("cleanup: {e}"));
    }
    stop_servers();
}

fn stop_servers() {
    let state = env("REGCHECK_E2E_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(TMP).join("e2e-servers"));
    let _ = Command::new("python3")
        .arg(Path::new(ROOT).join("tests/e2e/servers.py"))
        .args(["down", "--state", state.to_str().unwrap()])
        .stdout(Stdio::null())
        .status();
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Poll `f` every second until it returns Some, at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() >= limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// GET on the controller's metrics listener: on the shared cluster straight to loopback (it
/// runs on the host network), elsewhere through the API server's service proxy.
impl Cluster {
    fn http_get(&self, path: &str) -> Result<(u16, String), String> {
        match self.mode {
            Mode::Shared { .. } => http_get_loopback(path),
            Mode::External => self
                .k(&[
                    "get",
                    "--raw",
                    &format!(
                        "/api/v1/namespaces/{OPERATOR_NS}/services/regcheck-metrics:metrics/proxy{path}"
                    ),
                ])
                .map(|body| (200, body)),
        }
    }
}

fn http_get_loopback(path: &str) -> Result<(u16, String), String> {
    http_get_at(METRICS, path)
}

/// GET on a listener of this machine (`addr` is `127.0.0.1:PORT`).
fn http_get_at(addr: &str, path: &str) -> Result<(u16, String), String> {
    let sa: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not HTTP: {text:.200}"))?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    // Chunked bodies: the tests parse lines, chunk-size lines parse as nothing.
    Ok((status, body.to_string()))
}

/// One test's namespace and checks.
struct Ns<'a> {
    c: &'a Cluster,
    name: String,
}

impl<'a> Ns<'a> {
    /// A fresh namespace (an old one of the same name is deleted first).
    fn fresh(c: &'a Cluster, test: &str) -> Ns<'a> {
        let name = format!("e2e-{}", test.replace('_', "-"))
            .chars()
            .take(40)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string();
        c.k(&[
            "delete",
            "namespace",
            &name,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ])
        .unwrap();
        c.apply(&json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"regcheck-e2e": "true"}}
        }))
        .unwrap();
        Ns { c, name }
    }

    /// Create a check with the test defaults (short interval, threshold 1) merged with `spec`.
    fn check(&self, name: &str, spec: Value) -> Value {
        let mut s = json!({
            "interval": "30s",
            "timeoutSeconds": 5,
            "failureThreshold": 1,
            "successThreshold": 1,
        });
        for (k, v) in spec.as_object().unwrap() {
            s[k] = v.clone();
        }
        self.c
            .apply(&json!({
                "apiVersion": "regcheck.dev/v1alpha1",
                "kind": "RegistryConnectivityCheck",
                "metadata": {"name": name, "namespace": self.name},
                "spec": s,
            }))
            .unwrap();
        self.get(name).expect("the check exists after apply")
    }

    fn get(&self, name: &str) -> Option<Value> {
        self.c.get_json(&["rcc", "-n", &self.name, name]).ok()
    }

    /// Wait until `pred` holds for the check; the message shows the last status seen.
    fn wait_check(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        let r = wait_for(what, limit, || {
            let v = self.get(name)?;
            last = v.clone();
            pred(&v).then_some(v)
        });
        r.unwrap_or_else(|e| {
            panic!(
                "{}/{name}: {e}\nlast seen:\n{}\njobs:\n{}\ncontroller:\n{}",
                self.name,
                serde_json::to_string_pretty(&last).unwrap_or_default(),
                self.c
                    .k(&[
                        "get",
                        "jobs,pods",
                        "-A",
                        "-l",
                        "app.kubernetes.io/name=regcheck",
                        "-o",
                        "wide"
                    ])
                    .unwrap_or_default(),
                controller_logs(self.c)
            )
        })
    }

    /// Jobs of a check in every namespace.
    fn jobs(&self, uid: &str) -> Vec<Value> {
        self.c
            .get_json(&["jobs", "-A", "-l", &format!("{LABEL_CHECK_UID}={uid}")])
            .map(|v| v["items"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn events(&self, name: &str) -> Vec<Value> {
        self.c
            .get_json(&[
                "events",
                "-n",
                &self.name,
                "--field-selector",
                &format!("involvedObject.name={name}"),
            ])
            .map(|v| v["items"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

fn condition<'v>(check: &'v Value, ty: &str) -> Option<&'v Value> {
    check["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

fn ready(check: &Value) -> Option<&str> {
    condition(check, "Ready").and_then(|c| c["status"].as_str())
}

fn reason(check: &Value) -> Option<&str> {
    check["status"]["diagnosis"]["reason"].as_str()
}

fn last_run(check: &Value) -> Option<&str> {
    check["status"]["lastRun"]["id"].as_str()
}

fn uid(check: &Value) -> String {
    check["metadata"]["uid"].as_str().unwrap().to_string()
}

fn label<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    obj["metadata"]["labels"][key].as_str()
}

// ---------------------------------------------------------------------------------------------
// Tests

fn controller_runs_with_the_deploy_rbac_and_nothing_more() {
    let c = &fixture().cluster;
    let _g = shared();
    let pods = c
        .get_json(&["pods", "-n", OPERATOR_NS, "-l", CONTROLLER_SELECTOR])
        .unwrap();
    let pod = &pods["items"][0];
    assert_eq!(pod["spec"]["serviceAccountName"], "regcheck-controller");
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    for path in ["/healthz", "/readyz"] {
        let (status, body) = c.http_get(path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
    }
    // What the bound ServiceAccount may do, asked of the API server's authorizer.
    let sa = "system:serviceaccount:regcheck-system:regcheck-controller";
    let can = |verb: &str, resource: &str, ns: Option<&str>| -> bool {
        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let mut args = vec!["auth", "can-i", verb, resource, "--as", sa];
        if !sub.is_empty() {
            args.extend(["--subresource", sub]);
        }
        match ns {
            Some(n) => args.extend(["-n", n]),
            None => args.push("--all-namespaces"),
        }
        // `can-i` exits 1 for "no": read the answer instead of the exit code.
        let out = c.kubectl().args(&args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    for (verb, res) in [
        ("create", "jobs.batch"),
        ("deletecollection", "jobs.batch"),
        ("list", "pods"),
        ("watch", "pods"),
        // Pull canaries (the kubelet context) and the kubelet's Events about them.
        ("create", "pods"),
        ("delete", "pods"),
        ("list", "events"),
        ("list", "nodes"),
        ("get", "namespaces"),
        ("patch", "registryconnectivitychecks.regcheck.dev"),
        (
            "update",
            "registryconnectivitychecks.regcheck.dev/finalizers",
        ),
        ("patch", "registryconnectivitychecks.regcheck.dev/status"),
        ("create", "events.events.k8s.io"),
    ] {
        assert!(can(verb, res, None), "controller may {verb} {res}");
    }
    assert!(can(
        "update",
        "leases.coordination.k8s.io",
        Some(OPERATOR_NS)
    ));
    for (verb, res, ns) in [
        ("get", "secrets", None),
        ("list", "namespaces", None),
        ("list", "secrets", Some(OPERATOR_NS)),
        // Pull canaries are created and deleted, never changed or exec'd into.
        ("update", "pods", None),
        ("create", "pods/exec", None),
        (
            "get",
            "registryconnectivitychecks.regcheck.dev/finalizers",
            None,
        ),
        ("delete", "registryconnectivitychecks.regcheck.dev", None),
        ("update", "leases.coordination.k8s.io", Some("default")),
        ("update", "nodes", None),
        ("create", "deployments.apps", Some(OPERATOR_NS)),
    ] {
        assert!(
            !can(verb, res, ns),
            "controller must not {verb} {res} in {ns:?}"
        );
    }
}

fn api_server_accepts_the_examples_and_rejects_a_bad_spec() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "examples");
    let dir = Path::new(ROOT).join("deploy/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        // Server-side dry run (in the examples' own namespace; nothing is created): the API
        // server validates against the installed CRD schema.
        let out = c
            .k(&[
                "apply",
                "--dry-run=server",
                "--validate=false",
                "-f",
                f.to_str().unwrap(),
            ])
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(
            out.contains("created (server dry run)"),
            "{}: {out}",
            f.display()
        );
    }
    let bad = json!({
        "apiVersion": "regcheck.dev/v1alpha1", "kind": "RegistryConnectivityCheck",
        "metadata": {"name": "bad", "namespace": ns.name},
        "spec": {"registry": "bad host!", "timeoutSeconds": 0},
    });
    let err = c.apply(&bad).expect_err("a bad spec is refused");
    assert!(
        err.contains("spec.registry") && err.contains("spec.timeoutSeconds"),
        "{err}"
    );
}

fn probe_jobs_run_on_the_node_with_restricted_security() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "jobs-security");
    // A registry that never answers keeps the Jobs around long enough to look at them.
    let check = ns.check(
        "hang",
        json!({"registry": HANG, "timeoutSeconds": 20, "interval": "10m"}),
    );
    let uid = uid(&check);
    let jobs = wait_for("node and pod Jobs", RUN_WAIT, || {
        let jobs = ns.jobs(&uid);
        let ctxs: BTreeSet<&str> = jobs
            .iter()
            .filter_map(|j| label(j, LABEL_CONTEXT))
            .collect();
        (ctxs.len() == 2).then_some(jobs.clone())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
    for job in &jobs {
        let ctx = label(job, LABEL_CONTEXT).unwrap();
        let name = job["metadata"]["name"].as_str().unwrap();
        let want_ns = if ctx == "node" {
            OPERATOR_NS
        } else {
            ns.name.as_str()
        };
        assert_eq!(job["metadata"]["namespace"], want_ns, "{name}: namespace");
        assert_eq!(job["spec"]["backoffLimit"], 0, "{name}");
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(
            pod["hostNetwork"].as_bool().unwrap_or(false),
            ctx == "node",
            "{name}: hostNetwork"
        );
        assert_eq!(
            pod["dnsPolicy"],
            if ctx == "node" {
                "Default"
            } else {
                "ClusterFirst"
            },
            "{name}: dnsPolicy"
        );
        assert_eq!(
            pod["automountServiceAccountToken"], false,
            "{name}: no token"
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        let ctr = &pod["containers"][0];
        assert_eq!(
            ctr["image"],
            c.image.as_str(),
            "{name}: the controller's image"
        );
        assert_eq!(
            ctr["imagePullPolicy"], "Never",
            "{name}: the configured pull policy"
        );
        let sc = &ctr["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
        assert!(
            ctr["resources"]["limits"]["memory"].is_string(),
            "{name}: limits"
        );
        assert_eq!(ctr["args"][0], "probe", "{name}: runs regcheck probe");
        // The pod really runs on the node it was pinned to, with those settings.
        let p = wait_for("the Job's pod", Duration::from_secs(60), || {
            let pods = c
                .get_json(&["pods", "-n", want_ns, "-l", &format!("job-name={name}")])
                .ok()?;
            pods["items"][0]["spec"]["nodeName"]
                .as_str()
                .map(|_| pods["items"][0].clone())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
        let node = p["spec"]["nodeName"].as_str().unwrap();
        assert!(c.nodes.iter().any(|n| n == node), "{name}: node {node}");
        if let Some(pinned) = label(job, "regcheck.dev/node") {
            assert_eq!(pinned, node, "{name}: runs on the node it was made for");
        }
        assert_eq!(
            p["spec"]["hostNetwork"].as_bool().unwrap_or(false),
            ctx == "node",
            "{name}: pod hostNetwork"
        );
        assert!(
            p["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|v| v["projected"].is_null() && v["secret"].is_null()),
            "{name}: no service-account token volume: {}",
            p["spec"]["volumes"]
        );
    }
}

/// Pull canaries (spec.contexts.kubelet) on the real kubelet: the node probe reaches the lab
/// registry by name (the lab's DNS), while the kubelet's own pull of that name goes through
/// containerd's proxy (a dead one on this cluster) and fails there. The controller names the
/// difference (KubeletProxyDiffers), and no canary outlives its run.
fn kubelet_pull_through_containerds_proxy_differs_from_the_node_probe() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "kubelet-proxy");
    ns.check(
        "lab",
        json!({"registry": LOGIN, "image": LAB_IMAGE,
               "contexts": {"pod": {"enabled": false}, "kubelet": {"enabled": true}}}),
    );
    let v = ns.wait_check("lab", "ImagePullable reported", RUN_WAIT, |v| {
        condition(v, "ImagePullable").is_some_and(|c| c["status"] != "Unknown")
    });
    let st = &v["status"];
    let pullable = condition(&v, "ImagePullable").unwrap();
    assert_eq!(pullable["status"], "False", "{st:#}");
    assert_eq!(pullable["reason"], "KubeletProxyDiffers", "{st:#}");
    let contexts = condition(&v, "ContextsConsistent").unwrap();
    assert_eq!(contexts["status"], "False", "{st:#}");
    assert_eq!(contexts["reason"], "KubeletProxyDiffers", "{st:#}");
    assert!(
        contexts["message"]
            .as_str()
            .unwrap_or("")
            .contains("proxyconnect"),
        "the runtime's own words: {st:#}"
    );
    let results = st["results"].as_array().expect("results");
    assert!(
        results
            .iter()
            .any(|r| r["context"] == "Node" && r["verdict"] == "Healthy"),
        "the node probe reached the registry: {st:#}"
    );
    assert!(
        results
            .iter()
            .any(|r| r["context"] == "Kubelet" && r["reason"] == "KubeletProxyDiffers"),
        "{st:#}"
    );
    assert_eq!(
        condition(&v, "ProbesHealthy").unwrap()["status"],
        "True",
        "{st:#}"
    );
    // The canaries are gone once their outcome is known.
    let uid = uid(&v);
    wait_for("no pull canary left", Duration::from_secs(30), || {
        let pods = c
            .get_json(&[
                "pods",
                "-n",
                &ns.name,
                "-l",
                &format!("{LABEL_CHECK_UID}={uid},{LABEL_CONTEXT}=kubelet"),
            ])
            .ok()?;
        pods["items"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .all(|p| !p["metadata"]["deletionTimestamp"].is_null())
            })
            .then_some(())
    })
    .unwrap();
}

fn healthy_registry_gets_ready_true_from_real_termination_messages() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "healthy");
    ns.check(
        "lab",
        json!({"registry": LOGIN, "regions": ["eastus"], "image": LAB_IMAGE}),
    );
    let v = ns.wait_check("lab", "Ready=True", RUN_WAIT, |v| ready(v) == Some("True"));
    assert_eq!(reason(&v), Some("Healthy"), "{v:#}");
    let st = &v["status"];
    assert_eq!(st["consecutiveFailures"], 0);
    assert_eq!(st["counts"]["nodesChecked"], 1, "{st:#}");
    assert_eq!(st["counts"]["nodesFailing"], 0, "{st:#}");
    assert_eq!(st["observedGeneration"], v["metadata"]["generation"]);
    // Both contexts reported from the node, with phase timings parsed from the real
    // termination messages.
    let results = st["results"].as_array().expect("results");
    let ctxs: BTreeSet<&str> = results
        .iter()
        .filter_map(|r| r["context"].as_str())
        .collect();
    assert_eq!(ctxs, BTreeSet::from(["Node", "Pod"]), "{st:#}");
    for r in results {
        assert_eq!(r["verdict"], "Healthy", "{r}");
        assert!(
            c.nodes.iter().any(|n| r["node"] == n.as_str()),
            "a node of the cluster: {r}"
        );
        assert!(r["timings"]["tlsMs"].is_u64(), "TLS timed: {r}");
        assert!(r["timings"]["httpMs"].is_u64(), "HTTP timed: {r}");
    }
    for ty in [
        "ProbesHealthy",
        "DNSResolved",
        "RegistryReachable",
        "TLSVerified",
    ] {
        assert_eq!(
            condition(&v, ty).and_then(|c| c["status"].as_str()),
            Some("True"),
            "{ty}: {st:#}"
        );
    }
    // The Ready transition was announced, as a Normal event.
    let events = wait_for("a Ready event", Duration::from_secs(30), || {
        let ev = ns.events("lab");
        ev.iter()
            .any(|e| e["reason"] == "Ready" && e["type"] == "Normal")
            .then_some(ev)
    })
    .unwrap_or_else(|e| panic!("{e}: {:#?}", ns.events("lab")));
    assert!(
        events.iter().all(|e| e["type"] == "Normal"),
        "a healthy check has no warnings: {events:#?}"
    );
}

fn denied_client_ip_turns_ready_false_with_events() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "denied");
    ns.check("denied", json!({"registry": DENY}));
    let v = ns.wait_check("denied", "Ready=False", RUN_WAIT, |v| {
        ready(v) == Some("False")
    });
    assert_eq!(reason(&v), Some("RegistryDeniedPrivateClientIP"), "{v:#}");
    let d = &v["status"]["diagnosis"];
    let msg = d["message"].as_str().unwrap_or_default();
    // The IP the registry saw: the bridge address (node) or a pod address.
    assert!(msg.contains(DENY) && msg.contains("10.88.0."), "{d:#}");
    // A private client address: a VNet rule or the private endpoint is the fix.
    assert_eq!(d["cause"], "VirtualNetworkConfiguration", "{d:#}");
    assert_eq!(v["status"]["counts"]["nodesFailing"], 1, "{v:#}");
    // The transition to NotReady was announced as a Warning naming the finding (the reason
    // is `NotReady` or the finding's own reason, see the contract).
    wait_for(
        "a Warning event about the denial",
        Duration::from_secs(30),
        || {
            ns.events("denied")
                .iter()
                .any(|e| {
                    e["type"] == "Warning"
                        && (e["reason"] == "NotReady"
                            || e["reason"] == "RegistryDeniedPrivateClientIP")
                        && (e["reason"] == "RegistryDeniedPrivateClientIP"
                            || e["message"]
                                .as_str()
                                .unwrap_or("")
                                .contains("RegistryDeniedPrivateClientIP")
                            || e["message"].as_str().unwrap_or("").contains(DENY))
                })
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:#?}", ns.events("denied")));
}

fn unresolvable_name_fails_only_after_failure_threshold_runs() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "nxdomain");
    ns.check(
        "missing",
        json!({"registry": MISSING, "failureThreshold": 2}),
    );
    // First failed run: counted, but Ready is not False yet.
    let v = ns.wait_check("missing", "the first run", RUN_WAIT, |v| {
        last_run(v).is_some()
    });
    assert_eq!(reason(&v), Some("DNSNameNotFound"), "{v:#}");
    assert_eq!(v["status"]["consecutiveFailures"], 1, "{v:#}");
    assert_ne!(ready(&v), Some("False"), "one failed run of two: {v:#}");
    let first = last_run(&v).unwrap().to_string();
    // Second failed run (30 s later): now Ready=False.
    let v = ns.wait_check(
        "missing",
        "Ready=False after the second run",
        RUN_WAIT,
        |v| ready(v) == Some("False"),
    );
    assert_ne!(last_run(&v), Some(first.as_str()), "{v:#}");
    assert!(
        v["status"]["consecutiveFailures"].as_u64() >= Some(2),
        "{v:#}"
    );
    assert_eq!(reason(&v), Some("DNSNameNotFound"), "{v:#}");
    assert_eq!(
        condition(&v, "DNSResolved").and_then(|c| c["status"].as_str()),
        Some("False"),
        "{v:#}"
    );
}

fn metrics_describe_each_check() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "metrics");
    ns.check("denied", json!({"registry": DENY}));
    ns.check("ok", json!({"registry": LOGIN}));
    ns.wait_check("denied", "Ready=False", RUN_WAIT, |v| {
        ready(v) == Some("False")
    });
    ns.wait_check("ok", "Ready=True", RUN_WAIT, |v| ready(v) == Some("True"));
    let n = ns.name.as_str();
    let check = |name: &'static str| {
        move |l: &BTreeMap<String, String>| {
            l.get("namespace").map(String::as_str) == Some(n)
                && l.get("name").map(String::as_str) == Some(name)
        }
    };
    let wanted = |m: &[Sample]| -> Vec<String> {
        let mut missing = Vec::new();
        let mut need = |what: &str, ok: bool| {
            if !ok {
                missing.push(what.to_string());
            }
        };
        need(
            "ready of denied = 0",
            value(m, "regcheck_check_ready", check("denied")) == Some(0.0),
        );
        need(
            "ready of ok = 1",
            value(m, "regcheck_check_ready", check("ok")) == Some(1.0),
        );
        need(
            "consecutive failures of denied >= 1",
            value(m, "regcheck_check_consecutive_failures", check("denied")) >= Some(1.0),
        );
        need(
            "last run timestamp of ok",
            value(m, "regcheck_check_last_run_timestamp_seconds", check("ok")) > Some(1.0e9),
        );
        need(
            "info of denied with its reason",
            value(m, "regcheck_check_info", |l| {
                check("denied")(l)
                    && l.get("reason").map(String::as_str) == Some("RegistryDeniedPrivateClientIP")
            }) == Some(1.0),
        );
        for ctx in ["node", "pod"] {
            need(
                &format!("jobs created ({ctx})"),
                value(m, "regcheck_probe_jobs_created_total", |l| {
                    l.get("context").map(String::as_str) == Some(ctx)
                }) >= Some(1.0),
            );
        }
        for result in ["healthy", "unreachable"] {
            need(
                &format!("runs ({result})"),
                value(m, "regcheck_runs_total", |l| {
                    l.get("result").map(String::as_str) == Some(result)
                }) >= Some(1.0),
            );
        }
        need(
            "phase duration histogram",
            m.iter()
                .any(|s| s.name == "regcheck_probe_phase_duration_seconds_count" && s.value >= 1.0),
        );
        missing
    };
    let mut last = String::new();
    let m = wait_for(
        "the metrics of both checks",
        Duration::from_secs(60),
        || {
            let (_, body) = c.http_get("/metrics").ok()?;
            let m = parse_metrics(&body);
            let ok = wanted(&m).is_empty();
            last = body;
            ok.then_some(m)
        },
    )
    .unwrap_or_else(|e| {
        let missing = wanted(&parse_metrics(&last));
        panic!("{e}; missing {missing:#?}\n{last}")
    });
    // One info series per check; no node names in label values.
    let info = m
        .iter()
        .filter(|s| s.name == "regcheck_check_info" && check("denied")(&s.labels))
        .count();
    assert_eq!(info, 1, "one regcheck_check_info series per check");
    assert!(
        m.iter()
            .all(|s| s.labels.values().all(|v| !c.nodes.contains(v))),
        "a node name in a label value"
    );
}

/// One sample of the Prometheus text format.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Samples of a Prometheus/OpenMetrics text exposition (comments skipped; label values
/// without escaped quotes, which is all the controller emits for these tests).
fn parse_metrics(body: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, rest) = match line.find('{') {
            Some(i) => {
                let close = line.rfind('}').unwrap_or(line.len() - 1);
                (&line[..i], (&line[i + 1..close], &line[close + 1..]))
            }
            None => match line.split_once(' ') {
                Some((h, v)) => (h, ("", v)),
                None => continue,
            },
        };
        let (label_text, value_text) = rest;
        let mut labels = BTreeMap::new();
        for pair in label_text.split("\",").filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once("=\"") {
                labels.insert(
                    k.trim_start_matches(',').to_string(),
                    v.trim_end_matches('"').to_string(),
                );
            }
        }
        let Some(value) = value_text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
        else {
            continue;
        };
        out.push(Sample {
            name: head.to_string(),
            labels,
            value,
        });
    }
    out
}

/// Value of the one sample of `name` whose labels satisfy `pred`.
fn value(
    m: &[Sample],
    name: &str,
    pred: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Option<f64> {
    m.iter()
        .find(|s| s.name == name && pred(&s.labels))
        .map(|s| s.value)
}

/// A Deployment whose image its registry does not have: the kubelet's failed pulls show up in
/// the status of the check of that registry and in regcheck_workload_pull_failures_total.
fn workload_pull_failures_show_on_the_check_and_in_the_metric() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "pull-failures");
    ns.check("lab", json!({"registry": LOGIN}));
    let image = format!("{LOGIN}/nope:1");
    c.apply(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "broken", "namespace": ns.name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "broken"}},
            "template": {
                "metadata": {"labels": {"app": "broken"}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "app", "image": image, "imagePullPolicy": "Always",
                        "securityContext": {"allowPrivilegeEscalation": false,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        },
    }))
    .unwrap();
    let v = ns.wait_check(
        "lab",
        "status.workloadPullFailures",
        Duration::from_secs(240),
        |v| v["status"]["workloadPullFailures"]["count"].as_u64() >= Some(1),
    );
    let w = &v["status"]["workloadPullFailures"];
    say(&format!("workloadPullFailures: {w}"));
    assert_eq!(w["registry"].as_str(), Some(LOGIN), "{w}");
    assert!(w["pods"].as_u64() >= Some(1), "{w}");
    assert_eq!(w["windowSeconds"].as_u64(), Some(900), "{w}");
    let pod = w["lastPod"].as_str().unwrap_or_default();
    assert!(pod.starts_with(&format!("{}/broken-", ns.name)), "{w}");
    assert!(
        w["lastMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("nope:1"),
        "{w}"
    );
    let reason = w["lastReason"].as_str().unwrap_or_default().to_string();
    assert!(!reason.is_empty() && reason != "Healthy", "{w}");
    assert!(
        w["lastNode"]
            .as_str()
            .is_some_and(|n| c.nodes.iter().any(|x| x == n)),
        "{w}"
    );
    let mut last = String::new();
    let counted = wait_for(
        "regcheck_workload_pull_failures_total of the lab registry",
        Duration::from_secs(60),
        || {
            let (_, body) = c.http_get("/metrics").ok()?;
            let n = value(
                &parse_metrics(&body),
                "regcheck_workload_pull_failures_total",
                |l| {
                    l.get("registry").map(String::as_str) == Some(LOGIN)
                        && l.get("reason") == Some(&reason)
                },
            );
            last = body;
            n.filter(|n| *n >= 1.0)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{last}"));
    say(&format!(
        "regcheck_workload_pull_failures_total{{registry={LOGIN},reason={reason}}} = {counted}"
    ));
    c.k(&[
        "delete",
        "deployment",
        "-n",
        &ns.name,
        "broken",
        "--wait=false",
    ])
    .unwrap();
}

fn spec_the_schema_misses_is_invalid_spec_without_jobs_or_restarts() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "invalid-spec");
    let restarts = || -> u64 {
        c.get_json(&["pods", "-n", OPERATOR_NS, "-l", CONTROLLER_SELECTOR])
            .ok()
            .and_then(|p| p["items"][0]["status"]["containerStatuses"][0]["restartCount"].as_u64())
            .unwrap_or(0)
    };
    let before = restarts();
    // The interval must be longer than the probe deadline: a CEL rule, which Kubernetes before
    // 1.25 (like the shared cluster) drops, so the controller has to catch it itself.
    let check = ns.check(
        "bad",
        json!({"registry": LOGIN, "interval": "30s", "timeoutSeconds": 60}),
    );
    let v = ns.wait_check("bad", "Ready=False InvalidSpec", RUN_WAIT, |v| {
        condition(v, "Ready")
            .is_some_and(|r| r["status"] == "False" && r["reason"] == "InvalidSpec")
    });
    let msg = condition(&v, "Ready").unwrap()["message"]
        .as_str()
        .unwrap_or("");
    assert!(msg.contains("spec.interval"), "names the field: {msg}");
    assert_eq!(reason(&v), Some("InvalidSpec"), "{v:#}");
    assert!(
        ns.jobs(&uid(&check)).is_empty(),
        "no probe Jobs for an invalid spec"
    );
    assert_eq!(restarts(), before, "the controller did not crash");
    // Fixing the spec starts runs.
    ns.check(
        "bad",
        json!({"registry": LOGIN, "interval": "30s", "timeoutSeconds": 5}),
    );
    ns.wait_check("bad", "Ready=True after the fix", RUN_WAIT, |v| {
        ready(v) == Some("True")
    });
}

fn spec_change_starts_a_new_run() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "spec-change");
    // A long interval: any second run comes from the change, not from the schedule.
    ns.check("lab", json!({"registry": LOGIN, "interval": "1h"}));
    let v = ns.wait_check("lab", "the first run", RUN_WAIT, |v| last_run(v).is_some());
    let first = last_run(&v).unwrap().to_string();
    let generation = v["metadata"]["generation"].as_i64().unwrap();
    ns.check("lab", json!({"registry": DENY, "interval": "1h"}));
    let v = ns.wait_check("lab", "a run of the new spec", RUN_WAIT, |v| {
        last_run(v).is_some_and(|r| r != first)
            && v["status"]["observedGeneration"].as_i64() > Some(generation)
    });
    assert_eq!(reason(&v), Some("RegistryDeniedPrivateClientIP"), "{v:#}");
}

fn run_now_annotation_starts_a_run() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "run-now");
    ns.check("lab", json!({"registry": LOGIN, "interval": "1h"}));
    let v = ns.wait_check("lab", "the first run", RUN_WAIT, |v| last_run(v).is_some());
    let first = last_run(&v).unwrap().to_string();
    c.k(&[
        "annotate",
        "--overwrite",
        "rcc",
        "-n",
        &ns.name,
        "lab",
        "regcheck.dev/run-now=e2e-1",
    ])
    .unwrap();
    let v = ns.wait_check("lab", "a second run", RUN_WAIT, |v| {
        last_run(v).is_some_and(|r| r != first)
    });
    assert_eq!(ready(&v), Some("True"), "{v:#}");
}

/// `kubectl regcheck ARGS` through kubectl's own plugin lookup: a `kubectl-regcheck` link to
/// the built binary first in PATH. Exit code, stdout, stderr.
fn kubectl_plugin(c: &Cluster, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = Path::new(TMP).join("kubectl-plugin");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("kubectl-regcheck");
    if std::fs::read_link(&link).ok().as_deref() != Some(Path::new(REGCHECK)) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(REGCHECK, &link).unwrap();
    }
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = c
        .kubectl()
        .env("PATH", path)
        .arg("regcheck")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl runs");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    say(&format!(
        "kubectl regcheck {}: exit {:?}\n{o}{e}",
        args.join(" "),
        out.status.code()
    ));
    (out.status.code(), o, e)
}

fn run_number(id: &str) -> u64 {
    id.trim_start_matches('r').parse().unwrap()
}

/// The "is it fixed?" loop an admin runs: `kubectl regcheck run --wait` on a broken check
/// waits for the run it requested (not the finished one before it) and exits 1; after the
/// registry is fixed it exits 0. Also `status` in its forms, and the timeout exit code.
fn kubectl_plugin_runs_waits_and_shows() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "kubectl-plugin");
    let n = ns.name.clone();
    // kubectl finds the plugin on the PATH.
    let (code, out, _) = kubectl_plugin(c, &["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Usage: kubectl regcheck"), "{out}");

    // A long interval: every run after the first is one that was asked for.
    ns.check("flaky", json!({"registry": DENY, "interval": "1h"}));
    let v = ns.wait_check("flaky", "the first run", RUN_WAIT, |v| {
        last_run(v).is_some()
    });
    let first = run_number(last_run(&v).unwrap());
    let (code, out, err) =
        kubectl_plugin(c, &["run", "-n", &n, "flaky", "--wait", "--timeout", "3m"]);
    assert_eq!(code, Some(1), "a problem exits 1\n{out}{err}");
    assert!(err.contains("requested a run of"), "{err}");
    // The requested run, not the one that had already finished.
    let v = ns.get("flaky").unwrap();
    let second = run_number(last_run(&v).unwrap());
    assert!(second > first, "r{second} after r{first}");
    assert!(out.contains(&format!("Last run:  r{second} ")), "{out}");
    assert_eq!(
        v["status"]["lastRunNow"], v["metadata"]["annotations"]["regcheck.dev/run-now"],
        "{v:#}"
    );
    assert!(
        out.contains("Diagnosis: RegistryDeniedPrivateClientIP"),
        "{out}"
    );
    assert!(out.contains("Remediation:"), "{out}");
    // The per node and context table of the run.
    for want in [
        "NODE", "CONTEXT", "DNS", "TCP", "TLS", "API", " node ", " pod ",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }

    // Fix the registry (the check now points at one that lets the cluster in) and ask again
    // at once: the spec change starts a run of its own; the wait ends with the requested one.
    ns.check("flaky", json!({"registry": LOGIN, "interval": "1h"}));
    let kubeconfig = c.kubeconfig.display().to_string();
    let (code, out, err) = kubectl_plugin(
        c,
        &[
            "run",
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            &n,
            "flaky",
            "--wait",
            "--timeout",
            "3m",
        ],
    );
    assert_eq!(code, Some(0), "healthy exits 0\n{out}{err}");
    assert!(out.contains("Diagnosis: Healthy"), "{out}");
    let v = ns.get("flaky").unwrap();
    assert!(run_number(last_run(&v).unwrap()) > second, "{v:#}");
    assert_eq!(
        v["status"]["lastRunNow"], v["metadata"]["annotations"]["regcheck.dev/run-now"],
        "{v:#}"
    );
    assert_eq!(reason(&v), Some("Healthy"));

    // status: one line per check, all namespaces, wide and JSON; NAME: the matrix.
    let (code, out, _) = kubectl_plugin(c, &["status", "-n", &n]);
    assert_eq!(code, Some(0));
    let line = out.lines().find(|l| l.starts_with("flaky")).expect(&out);
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[..4], ["flaky", LOGIN, "True", "Healthy"], "{out}");
    assert!(
        cols[4].starts_with("node:0/") && cols[5].starts_with("pod:0/"),
        "{out}"
    );
    let (_, out, _) = kubectl_plugin(c, &["status", "-A"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&n) && l.contains(" flaky ")),
        "{out}"
    );
    let (_, out, _) = kubectl_plugin(c, &["status", "-n", &n, "-o", "wide"]);
    assert!(out.lines().next().unwrap().contains("INTERVAL"), "{out}");
    let (code, out, _) = kubectl_plugin(c, &["status", "-A", "-o", "json"]);
    assert_eq!(code, Some(0));
    let j: Value = serde_json::from_str(&out).unwrap();
    let item = j["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["namespace"] == n.as_str() && i["name"] == "flaky")
        .expect(&out)
        .clone();
    assert_eq!(item["reason"], "Healthy", "{item:#}");
    assert_eq!(item["failingNodes"]["node"]["failing"], 0, "{item:#}");
    let (code, out, _) = kubectl_plugin(c, &["status", "-n", &n, "flaky"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("NODE") && out.contains("ok"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");

    // The controller exports the check's interval, which CheckStale measures staleness by.
    wait_for(
        "regcheck_check_interval_seconds of flaky = 3600",
        Duration::from_secs(30),
        || {
            let (code, body) = c.http_get("/metrics").ok()?;
            let m = parse_metrics(&body);
            let v = value(&m, "regcheck_check_interval_seconds", |l| {
                l.get("namespace") == Some(&n) && l.get("name").map(String::as_str) == Some("flaky")
            });
            (code == 200 && v == Some(3600.0)).then_some(())
        },
    )
    .unwrap();

    // A suspended check never runs: the wait gives up with exit 3.
    ns.check(
        "paused",
        json!({"registry": LOGIN, "interval": "1h", "suspend": true}),
    );
    let (code, out, err) =
        kubectl_plugin(c, &["run", "-n", &n, "paused", "--wait", "--timeout", "6s"]);
    assert_eq!(code, Some(3), "timeout exits 3\n{out}{err}");
    assert!(
        err.contains("suspended") && err.contains("timed out"),
        "{err}"
    );
    // A spec the controller refuses (a rule the cluster's CEL cannot check before 1.25): no run
    // will come, the wait ends at once with exit 1 instead of running into the timeout.
    ns.check(
        "refused",
        json!({"registry": LOGIN, "interval": "30s", "timeoutSeconds": 60}),
    );
    ns.wait_check("refused", "InvalidSpec", RUN_WAIT, |v| {
        reason(v) == Some("InvalidSpec")
    });
    let started = Instant::now();
    let (code, out, err) = kubectl_plugin(
        c,
        &["run", "-n", &n, "refused", "--wait", "--timeout", "2m"],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "{err}");
    assert!(
        err.contains("refuses this spec") && out.contains("Diagnosis: InvalidSpec"),
        "{out}{err}"
    );
    // No such check: exit 2 naming it.
    let (code, _, err) = kubectl_plugin(c, &["run", "-n", &n, "nosuch", "--wait"]);
    assert_eq!(code, Some(2));
    assert!(err.contains(&format!("{n}/nosuch not found")), "{err}");
}

fn deleting_the_check_removes_every_job() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "delete");
    let check = ns.check(
        "hang",
        json!({"registry": HANG, "timeoutSeconds": 30, "interval": "10m"}),
    );
    let uid = uid(&check);
    wait_for("Jobs in both namespaces", RUN_WAIT, || {
        let nss: BTreeSet<String> = ns
            .jobs(&uid)
            .iter()
            .filter_map(|j| j["metadata"]["namespace"].as_str().map(String::from))
            .collect();
        (nss.len() == 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
    c.k(&["delete", "rcc", "-n", &ns.name, "hang", "--wait=false"])
        .unwrap();
    wait_for("the check to be gone", Duration::from_secs(60), || {
        ns.get("hang").is_none().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: finalizer not removed?\n{}", controller_logs(c)));
    wait_for(
        "no Job of the check in any namespace",
        Duration::from_secs(60),
        || ns.jobs(&uid).is_empty().then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}: {:#?}", ns.jobs(&uid)));
}

fn controller_restart_mid_run_resumes_without_duplicate_jobs() {
    let c = &fixture().cluster;
    // Exclusive: no other test runs while the controller is gone.
    let _g = fixture()
        .controller_lock
        .write()
        .unwrap_or_else(|e| e.into_inner());
    let ns = Ns::fresh(c, "restart");
    // On the shared cluster the kubelet pulls too, from a mirror that never answers: its
    // canary is still pulling when the controller goes away.
    let shared_cluster = matches!(c.mode, Mode::Shared { .. });
    let _hosts = shared_cluster.then(|| kubelet::HostsToml::mirror(c, HANG, 5446));
    let mut spec = json!({"registry": HANG, "timeoutSeconds": 60, "interval": "1h"});
    if shared_cluster {
        spec["image"] = json!(LAB_IMAGE);
        spec["contexts"] = json!({"kubelet": {"enabled": true}});
    }
    // The probes wait for headers that never come: the run lasts a good part of 60 s.
    let check = ns.check("hang", spec);
    let uid = uid(&check);
    // Every Job ever seen for the check: name -> (run, context, uid).
    let mut seen: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    let mut record = |jobs: &[Value]| {
        for j in jobs {
            let name = j["metadata"]["name"].as_str().unwrap().to_string();
            let entry = (
                label(j, LABEL_RUN).unwrap_or("").to_string(),
                label(j, LABEL_CONTEXT).unwrap_or("").to_string(),
                j["metadata"]["uid"].as_str().unwrap().to_string(),
            );
            if let Some(old) = seen.get(&name) {
                assert_eq!(old, &entry, "Job {name} was recreated");
            }
            seen.insert(name, entry);
        }
    };
    let jobs = wait_for("both Jobs of the first run", RUN_WAIT, || {
        let jobs = ns.jobs(&uid);
        (jobs.len() == 2).then_some(jobs)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
    record(&jobs);
    let run = label(&jobs[0], LABEL_RUN).unwrap().to_string();
    let old_pod = c
        .get_json(&["pods", "-n", OPERATOR_NS, "-l", CONTROLLER_SELECTOR])
        .unwrap()["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    c.k(&[
        "delete",
        "pod",
        "-n",
        OPERATOR_NS,
        &old_pod,
        "--wait=true",
        "--timeout=60s",
    ])
    .unwrap();
    // The old controller is gone and the run is not finished: the new one has to resume it.
    let v = ns.get("hang").unwrap();
    assert_ne!(
        last_run(&v),
        Some(run.as_str()),
        "the run finished before the controller was stopped; nothing was resumed: {v:#}"
    );
    let running = ns.jobs(&uid);
    record(&running);
    assert!(
        running
            .iter()
            .any(|j| j["status"]["completionTime"].is_null() && j["status"]["failed"].is_null()),
        "a Job of run {run} still running while no controller runs: {running:#?}"
    );
    // Watch the Jobs while the new controller takes over and finishes the run.
    let v = wait_for(
        "the interrupted run to complete",
        Duration::from_secs(180),
        || {
            record(&ns.jobs(&uid));
            let v = ns.get("hang")?;
            (last_run(&v) == Some(run.as_str())).then_some(v)
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nstatus: {:#}\njobs seen: {seen:#?}\n{}",
            ns.get("hang").unwrap_or_default()["status"],
            controller_logs(c)
        )
    });
    let of_run: Vec<_> = seen.values().filter(|(r, _, _)| *r == run).collect();
    assert_eq!(
        of_run.len(),
        2,
        "one Job per context in run {run}: {seen:#?}"
    );
    assert_eq!(reason(&v), Some("HeadersTimeout"), "{v:#}");
    if shared_cluster {
        // The canary the old controller created was still pulling at the deadline: the new
        // controller reported the stalled pull and removed it.
        let kubelet = v["status"]["results"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["context"] == "Kubelet"))
            .unwrap_or_else(|| panic!("no Kubelet result: {:#}", v["status"]));
        assert_eq!(kubelet["reason"], "KubeletPullStalled", "{:#}", v["status"]);
        kubelet::wait_no_canary(c, &ns.name, &uid, Duration::from_secs(30));
    }
    // The new controller is a different pod and is ready.
    let pods = c
        .get_json(&["pods", "-n", OPERATOR_NS, "-l", CONTROLLER_SELECTOR])
        .unwrap();
    assert!(
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["metadata"]["name"] != old_pod.as_str()),
        "{pods}"
    );
    wait_for(
        "controller /readyz after the restart",
        Duration::from_secs(60),
        || c.http_get("/readyz").ok().filter(|(s, _)| *s == 200),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Prometheus with the shipped rules, and the README quick start

/// `for:` of every shipped rule in the copy Prometheus loads here.
const TEST_FOR: &str = "10s";

fn shipped_rules() -> String {
    let path = Path::new(ROOT).join("deploy/prometheus/regcheck-rules.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md")
}

/// The block after `<!-- e2e:NAME` in README.md.
fn readme_block(name: &str) -> String {
    quickstart::marked_blocks(&readme())
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("README.md has no `<!-- e2e:{name}` block"))
        .1
}

/// Offline: the copy Prometheus loads differs from the shipped rules in `for:` only.
fn offline_prometheus_rules_copy_changes_only_for() {
    let shipped: serde_yaml::Value = serde_yaml::from_str(&shipped_rules()).unwrap();
    let copy: serde_yaml::Value =
        serde_yaml::from_str(&prometheus::rules_with_for(&shipped_rules(), TEST_FOR).unwrap())
            .unwrap();
    let rules = |doc: &serde_yaml::Value| -> Vec<serde_yaml::Mapping> {
        doc["groups"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
            .map(|r| r.as_mapping().unwrap().clone())
            .collect()
    };
    let (a, b) = (rules(&shipped), rules(&copy));
    assert_eq!(a.len(), b.len());
    assert!(a.len() >= 5, "{a:?}");
    for (mut s, mut c) in a.into_iter().zip(b) {
        let name = s["alert"].as_str().unwrap().to_string();
        assert!(
            s.remove("for").is_some(),
            "{name}: the shipped rule has a for:"
        );
        assert_eq!(c.remove("for"), Some(TEST_FOR.into()), "{name}");
        assert_eq!(s, c, "{name}: everything but for: is the shipped rule");
    }
    assert_eq!(
        prometheus::rules_with_for("groups: []", TEST_FOR).unwrap_err(),
        "the shipped rules: no rule has a `for:` to shorten"
    );
}

/// Offline: every command of the README quick start is run by the quick start test, or
/// skipped with a reason; and the table has nothing the README lacks.
fn offline_readme_quick_start_commands_are_all_accounted_for() {
    let mut keys = Vec::new();
    for block in ["quickstart-install", "quickstart-uninstall"] {
        for cmd in quickstart::commands(&readme_block(block)).unwrap() {
            assert!(
                quickstart::action(&cmd.key).is_some(),
                "README.md quick start command {:?} is not in tests/e2e/quickstart.rs TABLE",
                cmd.key
            );
            keys.push(cmd.key);
        }
    }
    for (k, _) in quickstart::TABLE {
        assert!(
            keys.iter().any(|c| c == k),
            "tests/e2e/quickstart.rs TABLE has {k:?}, which README.md no longer shows"
        );
    }
    // The parser itself: continuations, trailing comments and here-documents.
    let cmds = quickstart::commands(
        "# comment\nfoo a \\\n    b   # note\nbar <<'EOF'\nx: 1\nEOF\nbaz # c\n",
    )
    .unwrap();
    let keys: Vec<&str> = cmds.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["foo a b", "bar <<'EOF'", "baz"]);
    assert_eq!(cmds[1].text, "bar <<'EOF'\nx: 1\nEOF");
    assert!(quickstart::commands("bar <<'EOF'\nx: 1\n").is_err());
    assert!(quickstart::marked_blocks("<!-- e2e:x -->\ntext\n").is_err());
}

/// Percent-encoding of a query parameter.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn prometheus_alert_fires_for_a_broken_registry_and_resolves() {
    let c = &fixture().cluster;
    let _g = shared();
    deps::ensure("e2e").unwrap();
    let rules = prometheus::rules_with_for(&shipped_rules(), TEST_FOR).unwrap();
    let prom =
        prometheus::Prometheus::start(&Path::new(TMP).join("e2e-prometheus"), METRICS, &rules)
            .unwrap_or_else(|e| panic!("{e}"));
    // The shipped rules are loaded, with the test's for:.
    let loaded = prom.api("/api/v1/rules").unwrap();
    let shipped: serde_yaml::Value = serde_yaml::from_str(&shipped_rules()).unwrap();
    let want: BTreeSet<String> = shipped["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect();
    let got: BTreeSet<String> = loaded["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "alerting" && r["duration"] == 10)
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want, "loaded rules: {loaded:#}");

    let ns = Ns::fresh(c, "prometheus-alert");
    let n = ns.name.clone();
    ns.check("broken", json!({"registry": DENY}));
    ns.check("healthy", json!({"registry": LOGIN}));
    // Alerts that must never be active in this test. ProbesFailing is the exception before a
    // check's first run: the controller exports regcheck_check_probes_healthy 0 while the
    // ProbesHealthy condition is not set yet, which the shipped for: (15m) absorbs and the
    // test's 10s may not; so ProbesFailing counts from 20 s (a scrape and an evaluation, with
    // slack) after the check was first seen with a completed run.
    let mut unexpected: Vec<Value> = Vec::new();
    let mut before_first_run: Vec<Value> = Vec::new();
    let mut ran: BTreeMap<&str, Instant> = BTreeMap::new();
    let mut last = Vec::new();
    let mut watch = |alerts: &[Value]| {
        for check in ["broken", "healthy"] {
            if !ran.contains_key(check) && ns.get(check).is_some_and(|v| last_run(&v).is_some()) {
                ran.insert(check, Instant::now());
            }
        }
        for a in alerts
            .iter()
            .filter(|a| a["labels"]["namespace"] == n.as_str())
        {
            let alert = &a["labels"]["alertname"];
            let check = a["labels"]["name"].as_str().unwrap_or("");
            if alert == "RegistryUnreachable" && check == "healthy" {
                unexpected.push(a.clone());
            } else if alert == "ProbesFailing" {
                match ran.get(check) {
                    Some(t) if t.elapsed() > Duration::from_secs(20) => unexpected.push(a.clone()),
                    _ => before_first_run.push(a.clone()),
                }
            }
        }
    };
    let show = |last: &[Value]| {
        format!(
            "last alerts: {:#}\ntargets: {}\nprometheus log:\n{}\n{}",
            json!(last),
            prom.api("/api/v1/targets")
                .map(|t| t["activeTargets"].to_string())
                .unwrap_or_else(|e| e),
            prom.log(),
            controller_logs(c)
        )
    };
    let firing = wait_for(
        "RegistryUnreachable firing for the broken check",
        RUN_WAIT + Duration::from_secs(60),
        || {
            let alerts = prom.alerts().ok()?;
            watch(&alerts);
            let hit = prometheus::alerts_of(&alerts, "RegistryUnreachable", &n, "broken")
                .into_iter()
                .find(|a| a["state"] == "firing")
                .cloned();
            last = alerts;
            hit
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", show(&last)));
    say(&format!("RegistryUnreachable firing: {firing:#}"));
    assert_eq!(firing["labels"]["severity"], "critical", "{firing:#}");
    let ann = &firing["annotations"];
    // What the README shows, for this check.
    let shown = readme_block("alert");
    let line = |key: &str| -> String {
        shown
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("README alert block has no {key}: {shown}"))
            .trim()
            .to_string()
    };
    for pair in line("alertname=")
        .split_whitespace()
        .skip(1)
        .chain(std::iter::once("alertname=RegistryUnreachable"))
    {
        let (k, v) = pair.split_once('=').unwrap();
        let v = match k {
            "namespace" => n.as_str(),
            "name" => "broken",
            _ => v,
        };
        assert_eq!(
            firing["labels"][k], v,
            "label {k} as the README shows: {firing:#}"
        );
    }
    let summary = line("summary:")
        .replace("myregistry.azurecr.io", DENY)
        .replace(
            "PrivateEndpointResolvesPublic",
            "RegistryDeniedPrivateClientIP",
        )
        .replace("default/myregistry", &format!("{n}/broken"));
    assert_eq!(ann["summary"], summary.as_str(), "{firing:#}");
    let remediation =
        regcheck::engine::findings::Reason::RegistryDeniedPrivateClientIP.remediation();
    assert_eq!(
        ann["remediation"].as_str().map(str::trim),
        Some(remediation),
        "{firing:#}"
    );
    let description = ann["description"].as_str().unwrap_or("");
    assert!(
        description.contains("RegistryDeniedPrivateClientIP") && description.contains(DENY),
        "{firing:#}"
    );
    // The README abbreviates a real remediation text.
    let readme_remediation = line("remediation:");
    let real = regcheck::engine::findings::Reason::PrivateEndpointResolvesPublic.remediation();
    for part in readme_remediation
        .split("...")
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        assert!(
            real.contains(part),
            "README remediation {part:?} not in {real:?}"
        );
    }

    // Fix the registry: the check's next run (a spec change starts one) is healthy and the
    // alert goes away.
    ns.check("broken", json!({"registry": LOGIN}));
    wait_for(
        "RegistryUnreachable of the fixed check to resolve",
        RUN_WAIT + Duration::from_secs(60),
        || {
            let alerts = prom.alerts().ok()?;
            watch(&alerts);
            let gone =
                prometheus::alerts_of(&alerts, "RegistryUnreachable", &n, "broken").is_empty();
            last = alerts;
            gone.then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", show(&last)));
    // Resolved because the check is ready, not because its series went away.
    let q = format!("regcheck_check_ready{{namespace=\"{n}\",name=\"broken\"}}");
    let r = prom
        .api(&format!("/api/v1/query?query={}", url_encode(&q)))
        .unwrap();
    assert_eq!(r["result"][0]["value"][1], "1", "{q}: {r:#}");
    let alerts = prom.alerts().unwrap();
    watch(&alerts);
    assert!(
        unexpected.is_empty(),
        "alerts that must not fire: {:#}",
        json!(unexpected)
    );
    if !before_first_run.is_empty() {
        say(&format!(
            "ProbesFailing active before the first run (probes_healthy 0 while unknown): {:?}",
            before_first_run
                .iter()
                .map(|a| format!("{} {}", a["labels"]["name"], a["state"]))
                .collect::<BTreeSet<_>>()
        ));
    }
}

/// Restores the operator the quick start uninstalls, whatever happened in between.
struct Reinstall<'a>(&'a Cluster);

impl Drop for Reinstall<'_> {
    fn drop(&mut self) {
        let c = self.0;
        if let Err(e) = install_operator(c) {
            say(&format!(
                "restoring the operator after the quick start: {e}"
            ));
        }
        let _ = c.k(&[
            "delete",
            "rcc",
            "-n",
            "default",
            "myregistry",
            "--ignore-not-found",
            "--timeout=60s",
        ]);
    }
}

/// A README command run as bash would, from the repository root, with the cluster's kubectl
/// first in PATH; at most 5 minutes.
fn sh(c: &Cluster, text: &str) -> String {
    let mut path = c
        .kubectl
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if let Some(p) = std::env::var_os("PATH") {
        path = format!("{path}:{}", p.to_string_lossy());
    }
    run(Command::new("timeout")
        .args(["300", "bash", "-euo", "pipefail", "-c", text])
        .current_dir(ROOT)
        .env("PATH", path)
        .env("KUBECONFIG", &c.kubeconfig))
    .unwrap_or_else(|e| panic!("README command failed: {e}\n{}", controller_logs(c)))
}

fn readme_quick_start_runs_on_the_test_cluster() {
    let c = &fixture().cluster;
    // Exclusive: the uninstall removes the operator and every check.
    let _g = fixture()
        .controller_lock
        .write()
        .unwrap_or_else(|e| e.into_inner());
    let install = readme_block("quickstart-install");
    let mut cmds = quickstart::commands(&install).unwrap();
    cmds.extend(quickstart::commands(&readme_block("quickstart-uninstall")).unwrap());
    let reinstall = Reinstall(c);
    for cmd in &cmds {
        let action = quickstart::action(&cmd.key)
            .unwrap_or_else(|| panic!("{:?} is not in quickstart::TABLE", cmd.key));
        let out = match action {
            quickstart::Action::Skip(why) => {
                say(&format!("quick start: not run here: {} ({why})", cmd.key));
                continue;
            }
            quickstart::Action::Run => {
                say(&format!("quick start: {}", cmd.key));
                sh(c, &cmd.text)
            }
            quickstart::Action::Instead(text, why) => {
                say(&format!("quick start: {text} for {} ({why})", cmd.key));
                sh(c, text)
            }
        };
        match cmd.key.as_str() {
            "kubectl apply -f - <<'YAML'" => {
                assert!(out.contains("myregistry"), "{out}");
                // Looking at it makes sense after the first run (the lab's DNS knows no
                // myregistry.azurecr.io: NXDOMAIN, and nothing leaves the machine).
                let mut seen = Value::Null;
                wait_for("the quick start check's first run", RUN_WAIT, || {
                    seen = c.get_json(&["rcc", "-n", "default", "myregistry"]).ok()?;
                    reason(&seen).is_some().then_some(())
                })
                .unwrap_or_else(|e| panic!("{e}: {seen:#}\n{}", controller_logs(c)));
                assert_eq!(reason(&seen), Some("DNSNameNotFound"), "{seen:#}");
            }
            "kubectl get rcc -A" => {
                let shown = quickstart::shown_output(&install, "kubectl get rcc -A");
                assert!(
                    !shown.is_empty(),
                    "README shows the output of kubectl get rcc"
                );
                let header = out.lines().next().unwrap_or("");
                assert_eq!(
                    quickstart::header_words(header),
                    quickstart::header_words(&shown[0]),
                    "the printer columns the README shows:\n{out}"
                );
                let row = out
                    .lines()
                    .find(|l| l.starts_with("default ") && l.contains(" myregistry "))
                    .unwrap_or_else(|| panic!("no row for default/myregistry:\n{out}"));
                for cell in ["myregistry.azurecr.io", "DNSNameNotFound"] {
                    assert!(row.contains(cell), "{cell} in {row:?}");
                }
            }
            "kubectl describe rcc -n default myregistry" => {
                for want in [
                    "Kind:         RegistryConnectivityCheck",
                    "Conditions:",
                    "DNSNameNotFound",
                    "Remediation:",
                ] {
                    assert!(out.contains(want), "describe shows {want:?}:\n{out}");
                }
            }
            "kubectl delete rcc --all -A" => {
                let left = c.get_json(&["rcc", "-A"]).unwrap();
                assert_eq!(left["items"], json!([]), "no check left");
                let jobs = c
                    .get_json(&["jobs", "-A", "-l", "app.kubernetes.io/name=regcheck"])
                    .unwrap();
                assert_eq!(jobs["items"], json!([]), "no probe Job left");
            }
            _ => {}
        }
    }
    // Uninstalled: no CRD, no operator namespace.
    let gone = |args: &[&str]| {
        let e = c.k(args).expect_err("deleted");
        assert!(e.contains("NotFound") || e.contains("not found"), "{e}");
    };
    gone(&["get", "crd", "registryconnectivitychecks.regcheck.dev"]);
    gone(&["get", "namespace", OPERATOR_NS]);
    drop(reinstall);
    wait_for(
        "controller /readyz after reinstalling",
        Duration::from_secs(60),
        || c.http_get("/readyz").ok().filter(|(s, _)| *s == 200),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Runner

/// `(name, test)` pairs named after the test functions themselves.
macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        &[$((stringify!($f), $f as fn())),*]
    };
}

fn main() {
    let mut args = libtest_mimic::Arguments::from_args();
    // The tests mostly wait on the cluster: run them side by side unless told otherwise.
    if args.test_threads.is_none() {
        args.test_threads = Some(8);
    }
    let required = std::env::var_os("REGCHECK_E2E_REQUIRED").is_some_and(|v| v == "1");
    let listing = args.list;
    let detected = if listing {
        Err("listing only".to_string())
    } else {
        detect()
    };
    let skip = match &detected {
        Ok(_) => None,
        Err(why) if required && !listing => Some(format!("REGCHECK_E2E_REQUIRED=1 but {why}")),
        Err(why) => {
            if !listing {
                say(&format!("SKIPPED, every e2e test is ignored: {why}"));
            }
            None
        }
    };
    let ignore = detected.is_err() && skip.is_none();
    let detected_ok = detected.is_ok();
    // Prometheus scrapes the controller's loopback listener, and the quick start creates a
    // check whose name only the shared cluster's lab DNS is known to answer (NXDOMAIN).
    let shared_only = match &detected {
        Ok(Cluster {
            mode: Mode::External,
            ..
        }) => Some("needs the shared test cluster (loopback metrics, the lab's DNS)"),
        _ => None,
    };
    if let Ok(c) = detected {
        *CLUSTER.lock().unwrap() = Some(c);
    }

    // Each test is registered by its function's name, written once. Tests that need the
    // shared cluster (loopback metrics, the lab's DNS) are in their own list. The restart test
    // comes last: it takes the controller lock exclusively, after every other test has started.
    let anywhere: &[(&str, fn())] = tests![
        controller_runs_with_the_deploy_rbac_and_nothing_more,
        api_server_accepts_the_examples_and_rejects_a_bad_spec,
        probe_jobs_run_on_the_node_with_restricted_security,
        healthy_registry_gets_ready_true_from_real_termination_messages,
        denied_client_ip_turns_ready_false_with_events,
        unresolvable_name_fails_only_after_failure_threshold_runs,
        metrics_describe_each_check,
        spec_the_schema_misses_is_invalid_spec_without_jobs_or_restarts,
        spec_change_starts_a_new_run,
        run_now_annotation_starts_a_run,
        kubectl_plugin_runs_waits_and_shows,
        workload_pull_failures_show_on_the_check_and_in_the_metric,
        kubelet_pull_through_containerds_proxy_differs_from_the_node_probe,
        deleting_the_check_removes_every_job,
        fault_quota_refusing_probe_jobs_is_ready_unknown_naming_the_quota,
    ];
    let shared_cluster_only: &[(&str, fn())] = tests![
        prometheus_alert_fires_for_a_broken_registry_and_resolves,
        readme_quick_start_runs_on_the_test_cluster,
        helm_chart_lifecycle_on_the_test_cluster,
        kubelet_pull_through_a_hosts_toml_mirror_is_healthy,
        kubelet_pull_of_blobs_redirected_to_a_blocked_data_endpoint,
        kubelet_pull_needs_credentials_then_pulls_with_the_secret,
        kubelet_containerd_not_trusting_the_lab_ca_the_probe_trusts,
        kubelet_canaries_of_a_deleted_check_are_removed,
        kubelet_and_node_probe_agree_through_a_mirror_the_upstream_lacks,
        mixed_cluster_nodes_the_probe_cannot_run_on_are_skipped_not_failed,
    ];
    let last: &[(&str, fn())] = tests![
        controller_restart_mid_run_resumes_without_duplicate_jobs,
        fault_api_server_restart_mid_run_status_current_within_interval_plus_15s,
        fault_frozen_leader_loses_the_lease_and_one_controller_writes_at_a_time,
    ];
    let tests: Vec<(&str, fn(), bool)> = anywhere
        .iter()
        .map(|&(n, f)| (n, f, false))
        .chain(shared_cluster_only.iter().map(|&(n, f)| (n, f, true)))
        .chain(last.iter().map(|&(n, f)| (n, f, false)))
        .collect();
    // Pure checks of the helpers and of what they read (README.md, the shipped rules): they
    // need no cluster and always run.
    let offline: &[(&str, fn())] = tests![
        offline_prometheus_rules_copy_changes_only_for,
        offline_readme_quick_start_commands_are_all_accounted_for,
        offline_epoch_seconds_parses_api_times,
    ];
    let mut trials: Vec<libtest_mimic::Trial> = offline
        .iter()
        .map(|&(name, test)| {
            libtest_mimic::Trial::test(name, move || {
                test();
                Ok(())
            })
        })
        .collect();
    trials.extend(tests.iter().map(|&(name, test, needs_shared)| {
        let skip = skip.clone();
        let not_here = shared_only.filter(|_| needs_shared);
        if let Some(why) = not_here
            && !listing
        {
            say(&format!("{name} ignored: {why}"));
        }
        libtest_mimic::Trial::test(name, move || {
            if let Some(why) = skip {
                return Err(why.into());
            }
            test();
            Ok(())
        })
        .with_ignored_flag(ignore || not_here.is_some())
    }));
    let conclusion = libtest_mimic::run(&args, trials);
    let keep = std::env::var_os("REGCHECK_E2E_KEEP").is_some_and(|v| v == "1");
    match FIXTURE.get() {
        Some(Ok(_)) if keep => {
            say("REGCHECK_E2E_KEEP=1: leaving the test namespaces, controller and lab servers")
        }
        Some(Ok(f)) => teardown(&f.cluster),
        Some(Err(e)) => {
            say(&format!("setup had failed: {e}"));
            stop_servers();
        }
        None if detected_ok => stop_servers(),
        None => {}
    }
    conclusion.exit();
}
