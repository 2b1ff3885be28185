//! A real Prometheus server (Debian's `prometheus` package, the one whose `promtool` the
//! packaging tests use) that scrapes the controller with the shipped alert rules loaded.
//!
//! Its system service is never started: the test runs `/usr/bin/prometheus` itself, on a free
//! loopback port, with its own storage in a temporary directory, and kills it when the guard
//! is dropped. It scrapes only the controller's loopback metrics listener.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Prometheus binary of Debian's package.
pub const BINARY: &str = "/usr/bin/prometheus";

/// The shipped rules with every `for:` replaced by `for_`; nothing else changes (expressions,
/// labels and annotations are the shipped ones, re-serialised from the parsed document).
///
/// The shipped durations (5–15 min) are what users get and are covered by the promtool unit
/// tests (`deploy/prometheus/tests/`, run by tests/packaging.rs: firing, not firing, not
/// flapping); an end-to-end test cannot wait that long.
pub fn rules_with_for(shipped: &str, for_: &str) -> Result<String, String> {
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(shipped).map_err(|e| format!("the shipped rules: {e}"))?;
    let groups = doc
        .get_mut("groups")
        .and_then(|g| g.as_sequence_mut())
        .ok_or("the shipped rules: no `groups` list")?;
    let mut replaced = 0;
    for group in groups {
        let rules = group
            .get_mut("rules")
            .and_then(|r| r.as_sequence_mut())
            .ok_or("the shipped rules: a group without a `rules` list")?;
        for rule in rules {
            let map = rule
                .as_mapping_mut()
                .ok_or("the shipped rules: a rule that is not a mapping")?;
            if let Some(v) = map.get_mut("for") {
                *v = serde_yaml::Value::String(for_.to_string());
                replaced += 1;
            }
        }
    }
    if replaced == 0 {
        return Err("the shipped rules: no rule has a `for:` to shorten".into());
    }
    serde_yaml::to_string(&doc).map_err(|e| format!("serialising the rules: {e}"))
}

/// The configuration: scrape `target` every 2 s (honor_labels: the controller's `namespace`
/// label is the check's), evaluate every 2 s, load `rules`.
pub fn config(target: &str, rules: &Path) -> String {
    format!(
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 2s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: regcheck\n    honor_labels: true\n    \
         static_configs:\n      - targets: ['{target}']\n",
        rules = rules.display()
    )
}

/// A running Prometheus; killed (and waited for) on drop.
pub struct Prometheus {
    child: Child,
    pub addr: String,
    dir: PathBuf,
}

impl Prometheus {
    /// Start Prometheus in `dir` (config, rules copy, storage, log), scraping `target` with
    /// `rules` loaded, and wait until it is ready.
    pub fn start(dir: &Path, target: &str, rules: &str) -> Result<Prometheus, String> {
        if !Path::new(BINARY).exists() {
            return Err(format!(
                "{BINARY} is missing: install the e2e packages \
                 (python3 tests/common/deps.py install e2e; it does not start the service)"
            ));
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let rules_path = dir.join("regcheck-rules.yaml");
        std::fs::write(&rules_path, rules).map_err(|e| format!("{}: {e}", rules_path.display()))?;
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config(target, &rules_path))
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free loopback port: {e}"))?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("prometheus.log"))
            .map_err(|e| format!("prometheus.log: {e}"))?;
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {BINARY}: {e}"))?;
        let mut p = Prometheus {
            child,
            addr,
            dir: dir.to_path_buf(),
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = p.child.try_wait() {
                return Err(format!("prometheus exited {st}:\n{}", p.log()));
            }
            if p.get("/-/ready").is_ok_and(|(s, _)| s == 200) {
                return Ok(p);
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("prometheus not ready after 60 s:\n{}", p.log()));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The tail of Prometheus' own log.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// GET on the Prometheus API (HTTP/1.0: Go answers without chunked encoding).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect_timeout(&self.addr.parse().unwrap(), Duration::from_secs(2))
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr)
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
        Ok((status, body.to_string()))
    }

    /// `data` of a successful JSON API answer.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = self.get(path)?;
        let v: Value =
            serde_json::from_str(&body).map_err(|e| format!("{path}: not JSON ({e}): {body}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{path}: HTTP {status}: {body}"));
        }
        Ok(v["data"].clone())
    }

    /// Active alerts (pending and firing), from Prometheus' own alerts API.
    pub fn alerts(&self) -> Result<Vec<Value>, String> {
        Ok(self.api("/api/v1/alerts")?["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alerts named `name` whose labels namespace/name are those of the check.
pub fn alerts_of<'a>(alerts: &'a [Value], alert: &str, ns: &str, check: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| {
            a["labels"]["alertname"] == alert
                && a["labels"]["namespace"] == ns
                && a["labels"]["name"] == check
        })
        .collect()
}
