//! Integration tests of `regcheck probe`: the in-cluster target policy, the termination log and
//! credentials, against in-process servers on loopback (tests/support).
//!
//! The probe refuses loopback targets, so most tests here check that nothing is dialled. The
//! tests that need a real exchange with the lab (an authenticated pull) run the probe engine
//! in-process through the library and swap only its target policy for the CLI one.

mod support;

use base64::Engine as _;
use clap::Parser;
use regcheck::cli::probe::{self, NODE_IPS_ENV, ProbeArgs};
use regcheck::engine::findings::{Reason, Verdict};
use regcheck::engine::probe::TargetPolicy;
use regcheck::operator::aggregate::{MAX_TERMINATION_MESSAGE, parse_termination_message};
use regcheck::operator::crd::ProbeContext;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use support::*;

const REGISTRY: &str = "registry.test";
const DATA: &str = "data.test";
const METADATA_NAME: &str = "metadata.test";
const USER: &str = "puller";
const PASSWORD: &str = "Pr0be-S3cret-pa55word-7f3a";

fn probe_argv(registry: &str, resolv: &Path, log: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "probe",
        "--registry",
        registry,
        "--context",
        "node",
        "--node",
        "aks-sys-1",
        "--resolv-conf",
        &resolv.display().to_string(),
        "--hosts-file",
        "/dev/null",
        "--termination-log",
        &log.display().to_string(),
        "--no-proxy",
        "--timeout",
        "5s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Asserts the run ended with exit 0, stdout is one line of JSON of at most 4096 bytes that
/// the controller parses, and the termination log holds the same message; returns the JSON.
#[track_caller]
fn assert_reported(run: &Run, log: &Path) -> Value {
    assert_eq!(run.code, 0, "{}", run.dump());
    let line = run.stdout.trim_end_matches('\n');
    assert!(!line.contains('\n'), "one line\n{}", run.dump());
    assert!(line.len() <= MAX_TERMINATION_MESSAGE, "{}", run.dump());
    let logged = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{e}\n{}", run.dump()));
    assert_eq!(logged, line, "termination log = stdout");
    let report =
        parse_termination_message(&logged).unwrap_or_else(|e| panic!("{e}\n{}", run.dump()));
    assert_eq!(report.context, Some(ProbeContext::Node));
    assert_eq!(report.node.as_deref(), Some("aks-sys-1"));
    run.json()
}

#[test]
fn loopback_registry_is_blocked_and_not_dialled() {
    let lab = Lab::new();
    let server = lab.silent();
    let dns = lab.dns(&[(REGISTRY, Dns::A(vec![LOOPBACK]))]);
    let resolv = lab.resolv_conf(&dns);
    let log = lab.dir().join("termination-log");
    let target = format!("{REGISTRY}:{}", server.port());
    let run = regcheck(&probe_argv(&target, &resolv, &log, &[]), None);
    let j = assert_reported(&run, &log);
    assert_eq!(
        j["findings"][0]["reason"],
        "TargetAddressBlocked",
        "{}",
        run.dump()
    );
    assert_eq!(j["verdict"], "Unreachable", "{}", run.dump());
    assert_eq!(j["context"], "Node");
    assert_eq!(
        j["endpoints"][0]["tcp"][0]["outcome"],
        "Blocked",
        "{}",
        run.dump()
    );
    assert_eq!(
        j["endpoints"][0]["dns"]["system"]["addresses"][0]["ip"],
        "127.0.0.1"
    );
    let msg = j["findings"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("127.0.0.1") && msg.contains("loopback"),
        "{msg}"
    );
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        0,
        "the probe dialled loopback"
    );
    assert!(dns.query_count() > 0, "the lab DNS server was asked");

    // The same registry is reachable for `regcheck check` (loopback allowed there), which shows
    // the block comes from the probe's policy and not from the lab.
    let run = regcheck(
        &[
            "check",
            &target,
            "--resolv-conf",
            &resolv.display().to_string(),
            "--hosts-file",
            "/dev/null",
            "--no-proxy",
            "--timeout",
            "2s",
            "--output",
            "json",
        ],
        None,
    );
    assert_ne!(
        run.json()["findings"][0]["reason"],
        "TargetAddressBlocked",
        "{}",
        run.dump()
    );
    assert!(server.accepted.load(Ordering::SeqCst) > 0);
}

/// The metadata address is refused and never dialled. Even a broken policy must not send a
/// packet towards 169.254.169.254 from this machine, so the probe runs in a fresh network
/// namespace of its own (`unshare -rn`: only a loopback that is down, no route anywhere) and
/// gets the address from a hosts file instead of a DNS server.
#[test]
fn metadata_address_is_blocked_and_not_dialled() {
    let lab = Lab::new();
    let hosts = lab.dir().join("hosts");
    std::fs::write(&hosts, format!("169.254.169.254 {METADATA_NAME}\n")).unwrap();
    // No DNS server is needed (the hosts file answers); nothing listens on this one.
    let resolv = lab.dir().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1:9\n").unwrap();
    let log = lab.dir().join("termination-log");
    let mut argv = probe_argv(METADATA_NAME, &resolv, &log, &[]);
    let at = argv.iter().position(|a| a == "/dev/null").unwrap();
    argv[at] = hosts.display().to_string();
    let isolated = std::process::Command::new("unshare")
        .args(["-rn", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !isolated {
        // Without a private network namespace the binary is not run at all; the rule itself
        // is covered by the policy's unit tests.
        eprintln!(
            "metadata_address_is_blocked_and_not_dialled: `unshare -rn` is not available here; checked the policy only"
        );
        let policy = TargetPolicy::in_cluster(vec![]);
        assert!(policy.check("169.254.169.254".parse().unwrap()).is_err());
        return;
    }
    let mut wrapped = vec![
        "-rn".to_string(),
        env!("CARGO_BIN_EXE_regcheck").to_string(),
    ];
    wrapped.extend(argv);
    let out = std::process::Command::new("unshare")
        .args(&wrapped)
        .stdin(std::process::Stdio::null())
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("run the probe under unshare");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let dump = format!(
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{dump}");
    let logged = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}\n{dump}"));
    assert_eq!(
        logged,
        stdout.trim_end_matches('\n'),
        "termination log = stdout"
    );
    parse_termination_message(&logged).unwrap_or_else(|e| panic!("{e}\n{dump}"));
    let j: Value = serde_json::from_str(&logged).unwrap();
    assert_eq!(j["findings"][0]["reason"], "TargetAddressBlocked", "{dump}");
    let tcp = j["endpoints"][0]["tcp"].as_array().unwrap();
    assert!(!tcp.is_empty(), "{dump}");
    for t in tcp {
        assert_eq!(t["outcome"], "Blocked", "{dump}");
        assert_eq!(t["ms"], 0, "not dialled: {dump}");
    }
    let msg = j["findings"][0]["message"].as_str().unwrap();
    assert!(msg.contains("169.254.169.254"), "{msg}");
}

/// The node's own address from the downward API (`REGCHECK_NODE_IPS`) is never dialled. The
/// address is a test-cluster bridge address (10.88.0.5): allowed by the network rules even if
/// the policy were broken.
#[test]
fn node_address_from_environment_is_blocked() {
    let lab = Lab::new();
    let node_ip = Ipv4Addr::new(10, 88, 0, 5);
    let dns = lab.dns(&[(REGISTRY, Dns::A(vec![node_ip]))]);
    let resolv = lab.resolv_conf(&dns);
    let log = lab.dir().join("termination-log");
    let args = ProbeArgs::try_parse_from(probe_argv(REGISTRY, &resolv, &log, &[])).unwrap();
    let env = |k: &str| (k == NODE_IPS_ENV).then(|| node_ip.to_string());
    let prepared = probe::prepare(&args, env).unwrap();
    let report = lab.block_on(probe::run(&prepared));
    let f = &report.findings[0];
    assert_eq!(f.reason, Reason::TargetAddressBlocked, "{report:?}");
    assert!(f.message.contains("10.88.0.5"), "{}", f.message);
    let tcp = &report.evidence.endpoints[0].tcp;
    assert!(!tcp.is_empty() && tcp.iter().all(|t| t.ms == 0), "{tcp:?}");
    // Without the node address, the same target is allowed by the policy.
    let prepared = probe::prepare(&args, |_| None).unwrap();
    assert!(prepared.check.config.policy.check(node_ip.into()).is_ok());
}

/// The termination log cannot be written: the report goes to stdout, fitted to what kubelet
/// keeps of the logs, and the probe exits non-zero, so that `FallbackToLogsOnError` applies
/// (it does only to a container that failed). The controller reads the log tail's last line.
#[test]
fn unwritable_termination_log_still_prints_the_report() {
    let lab = Lab::new();
    let dns = lab.dns(&[(REGISTRY, Dns::A(vec![LOOPBACK]))]);
    let resolv = lab.resolv_conf(&dns);
    let log = lab.dir().join("no-such-dir").join("termination-log");
    let run = regcheck(&probe_argv(REGISTRY, &resolv, &log, &[]), None);
    assert_eq!(run.code, 3, "{}", run.dump());
    assert!(
        run.stderr.contains("cannot write the termination log"),
        "{}",
        run.dump()
    );
    assert!(run.stdout.trim().len() <= regcheck::cli::probe::MAX_LOG_FALLBACK);
    let report = parse_termination_message(run.stdout.trim()).unwrap();
    assert_eq!(report.findings[0].reason, Reason::TargetAddressBlocked);
    // What kubelet makes of it: the tail of stderr and stdout together.
    let tail = format!("{}{}", run.stderr, run.stdout);
    let report = parse_termination_message(&tail).unwrap();
    assert_eq!(report.findings[0].reason, Reason::TargetAddressBlocked);
    assert!(!log.exists());
}

#[test]
fn bad_input_exits_2_without_a_report() {
    let lab = Lab::new();
    let dns = lab.dns(&[]);
    let resolv = lab.resolv_conf(&dns);
    let log = lab.dir().join("termination-log");
    for (extra, needle) in [
        (vec!["--timeout", "forever"], "--timeout"),
        (vec!["--node-ip", "not-an-ip"], "--node-ip"),
        (vec!["--context", "host"], "--context"),
    ] {
        let run = regcheck(&probe_argv(REGISTRY, &resolv, &log, &extra), None);
        assert_eq!(run.code, 2, "{}", run.dump());
        assert!(run.stderr.contains(needle), "{}", run.dump());
        assert!(run.stdout.is_empty(), "{}", run.dump());
        assert!(!log.exists());
    }
    assert_eq!(dns.query_count(), 0, "nothing sent on bad input");
}

fn docker_config(lab: &Lab, key: &str, password: &str) -> PathBuf {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    lab.write_file(
        "config.json",
        serde_json::json!({"auths": {key: {"auth": auth}}}).to_string(),
    )
}

#[track_caller]
fn assert_secret_absent(text: &str, password: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    assert!(!text.contains(password), "password leaked:\n{text}");
    assert!(!text.contains(&b64), "encoded credentials leaked:\n{text}");
}

/// The binary with a mounted docker config: the password is in no output, whatever happens.
#[test]
fn password_from_docker_config_is_not_printed_by_the_binary() {
    let lab = Lab::new();
    let dns = lab.dns(&[(REGISTRY, Dns::A(vec![LOOPBACK]))]);
    let resolv = lab.resolv_conf(&dns);
    let log = lab.dir().join("termination-log");
    let cfg = docker_config(&lab, REGISTRY, PASSWORD);
    let image = format!("{REPO}:{TAG}");
    let run = regcheck(
        &probe_argv(
            REGISTRY,
            &resolv,
            &log,
            &[
                "--image",
                &image,
                "--docker-config",
                &cfg.display().to_string(),
            ],
        ),
        None,
    );
    let j = assert_reported(&run, &log);
    assert_eq!(j["pull"]["credentials"], true, "{}", run.dump());
    assert_secret_absent(&run.stdout, PASSWORD);
    assert_secret_absent(&run.stderr, PASSWORD);
    assert_secret_absent(&std::fs::read_to_string(&log).unwrap(), PASSWORD);
}

/// A real authenticated pull with the probe's credentials (the lab is on loopback, so the
/// policy is swapped for the CLI one; everything else is what `regcheck probe` prepares): the
/// registry receives the password, the termination message never contains it, with the right
/// password and with a wrong one.
#[test]
fn password_used_for_a_pull_is_not_in_the_termination_message() {
    for (configured, wanted, healthy) in [
        (PASSWORD, PASSWORD, true),
        (PASSWORD, "another-password", false),
    ] {
        let lab = Lab::new();
        let pki = Pki::new(&lab);
        let dns = lab.dns(&[
            (REGISTRY, Dns::A(vec![LOOPBACK])),
            (DATA, Dns::A(vec![LOOPBACK])),
        ]);
        let resolv = lab.resolv_conf(&dns);
        let dl = lab.listener();
        let dport = dl.port();
        let _data = lab.https(dl, &pki.leaf(&[DATA]), TlsMode::Serve(data_router()));
        let l = lab.listener();
        let port = l.port();
        let reg = lab.https(
            l,
            &pki.leaf(&[REGISTRY]),
            TlsMode::Serve(registry_router(
                REGISTRY,
                port,
                DATA,
                dport,
                Some((USER, wanted)),
            )),
        );
        let target = format!("{REGISTRY}:{port}");
        let cfg = docker_config(&lab, &target, configured);
        let log = lab.dir().join("termination-log");
        let image = format!("{REPO}:{TAG}");
        let args = ProbeArgs::try_parse_from(probe_argv(
            &target,
            &resolv,
            &log,
            &[
                "--image",
                &image,
                "--docker-config",
                &cfg.display().to_string(),
                "--ca-file",
                &pki.ca_file.display().to_string(),
            ],
        ))
        .unwrap();
        let mut prepared = probe::prepare(&args, |_| None).unwrap();
        assert_eq!(
            prepared.check.config.policy,
            TargetPolicy::in_cluster(vec![])
        );
        prepared.check.config.policy = TargetPolicy::cli();
        let report = lab.block_on(probe::run(&prepared));

        let sent: Vec<(String, String)> = reg
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| r.basic_auth())
            .collect();
        assert!(
            sent.contains(&(USER.to_string(), configured.to_string())),
            "the registry received the configured credentials: {sent:?}"
        );
        let msg = probe::fit_termination_message(&report);
        let parsed = parse_termination_message(&msg).unwrap();
        if healthy {
            assert_eq!(parsed.verdict, Verdict::Healthy, "{msg}");
        } else {
            assert_eq!(
                parsed.findings[0].reason,
                Reason::AuthenticationFailed,
                "{msg}"
            );
        }
        assert_secret_absent(&msg, configured);
        assert_secret_absent(
            &regcheck::engine::report::to_json(&report, true),
            configured,
        );
        assert_secret_absent(&format!("{report:?}"), configured);
    }
}
