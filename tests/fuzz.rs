//! Bounded fuzzing of everything that parses input a user, a registry, a proxy or a probe
//! controls (cargo-fuzz needs nightly; these are proptest targets that run in `cargo test`).
//!
//! Each target runs `FUZZ_CASES` cases (default 3,000; set `REGCHECK_FUZZ_CASES` for a longer
//! run) of two kinds: arbitrary input, and mutations (byte insert/replace/delete, splicing) of
//! the seed corpus in `tests/corpus/<target>/`. The seeds themselves are also fed through
//! every parser by `corpus_seeds_parse`. Failures are persisted by proptest in
//! `proptest-regressions/fuzz.txt` and replayed first (through every target) on the next run.
//!
//! Properties beyond "never panics": errors name the field and show a bounded value, accepted
//! values are canonical (validating the output again gives the same output), and redacted
//! forms never contain a password.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use regcheck::engine::authparse::{denied_client_ip, parse_registry_error, parse_www_authenticate};
use regcheck::engine::inputs::{self, InputError};
use regcheck::engine::probe::dns::{candidate_names, parse_hosts, parse_resolv_conf};
use regcheck::engine::proxy::{NoProxy, ProxyConfig, ProxyUrl};
use regcheck::operator::aggregate::{self, MAX_TERMINATION_MESSAGE};
use regcheck::operator::policy::{self, HostPattern, NamespaceRule};
use std::net::IpAddr;
use std::path::Path;

fn cases() -> u32 {
    std::env::var("REGCHECK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/fuzz.txt",
        ))),
        ..Config::default()
    }
}

/// The seed files of one corpus directory, sorted by name.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let out: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).expect("read seed"))
        .collect();
    assert!(!out.is_empty(), "corpus {target} is empty");
    out
}

#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    /// Copy a slice of the input to another place (grows structure: nesting, repetition).
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(a, b, c)| Edit::Splice(a, b, c)),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = data.len();
        match *e {
            Edit::Replace(i, b) if n > 0 => data[i % n] = b,
            Edit::Insert(i, b) => data.insert(i % (n + 1), b),
            Edit::Delete(i) if n > 0 => {
                data.remove(i % n);
            }
            Edit::Splice(a, len, at) if n > 0 => {
                let start = a % n;
                let end = (start + len % 64).min(n);
                let piece = data[start..end].to_vec();
                let at = at % (n + 1);
                data.splice(at..at, piece);
            }
            _ => {}
        }
    }
    data
}

/// Arbitrary bytes, or a mutated seed of `target`.
fn input(target: &'static str) -> BoxedStrategy<Vec<u8>> {
    let corpus = seeds(target);
    let mutated = (
        proptest::sample::select(corpus),
        proptest::collection::vec(edit(), 0..12),
    )
        .prop_map(|(seed, edits)| apply(seed, &edits));
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..300),
        1 => "\\PC{0,200}".prop_map(String::into_bytes),
        3 => mutated,
    ]
    .boxed()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn check_error(e: &InputError, field: &str) {
    assert_eq!(e.field, field);
    assert!(e.value.chars().count() <= 81, "shown value too long: {e}");
    assert!(
        !e.value.chars().any(|c| c.is_control()),
        "control character shown: {e:?}"
    );
    assert!(!e.problem.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

fn termination(b: &[u8]) {
    let s = text(b);
    match aggregate::parse_termination_message(&s) {
        Ok(r) => {
            assert!(!r.findings.is_empty());
            assert!(s.len() <= MAX_TERMINATION_MESSAGE);
            // What the controller does next with it must not panic either.
            let _ = regcheck::engine::report::to_compact_json(&r);
            let _ = aggregate::timings(&r);
        }
        Err(e) => assert!(e.to_string().len() < 400, "{e}"),
    }
}

fn registry_error(b: &[u8]) {
    if let Some(e) = parse_registry_error(b) {
        assert!(e.code.chars().count() <= 65, "{e:?}");
        assert!(e.message.chars().count() <= 301, "{e:?}");
        if let Some(ip) = denied_client_ip(&e.message) {
            assert!(e.message.contains(&ip.to_string()) || e.message.contains(':'));
        }
    }
    let s = text(b);
    if let Some(ip) = denied_client_ip(&s) {
        let _: IpAddr = ip;
    }
}

fn www_authenticate(b: &[u8]) {
    let s = text(b);
    if let Ok(c) = parse_www_authenticate(&s) {
        assert!(!c.scheme.is_empty(), "{c:?}");
        assert!(c.scheme.len() <= s.len());
        for v in [&c.realm, &c.service].into_iter().flatten() {
            assert!(v.len() <= s.len(), "{c:?}");
        }
    }
}

fn proxy_url(b: &[u8]) {
    let s = text(b);
    match ProxyUrl::parse("--proxy", &s) {
        Ok(p) => {
            assert!(p.port > 0);
            let red = p.redacted();
            // The user information is replaced as a whole (a password such as "0.0" may
            // well occur in the host, so compare the userinfo part, not substrings).
            if p.username.is_some() || p.password.is_some() {
                let scheme = format!("{}://", p.scheme.as_str());
                assert!(red.starts_with(&format!("{scheme}***@")), "{red}");
                // Debug shows the redacted URL (escaped as a Rust string literal).
                assert!(format!("{p:?}").contains(&format!("{red:?}")));
            }
            if let Some(pw) = p.password.as_deref().filter(|pw| pw.len() >= 3) {
                assert!(!red[..red.find('@').unwrap_or(0)].contains(pw), "{red}");
            }
            let _ = p.authority();
            let _ = p.basic_auth_header();
        }
        Err(e) => check_error(&e, "--proxy"),
    }
}

fn no_proxy(b: &[u8]) {
    let s = text(b);
    let np = NoProxy::parse(&s);
    for host in ["myreg.azurecr.io", "10.0.0.5", "::1", "localhost", ""] {
        let _ = np.matches(host, 443);
    }
    for ip in ["10.0.0.5", "fd00::1", "127.0.0.1"] {
        let _ = np.ip_entries_containing(ip.parse().unwrap(), 443);
    }
    let _ = np.entries();
    let env = |k: &str| match k {
        "HTTPS_PROXY" => Some("http://proxy.test:3128".to_string()),
        "NO_PROXY" => Some(s.clone()),
        _ => None,
    };
    let cfg = ProxyConfig::from_env(env).expect("valid proxy, any NO_PROXY");
    let _ = cfg.route("myreg.azurecr.io", 443, &["10.0.0.5".parse().unwrap()]);
    let _ = cfg.https_proxy_for("myreg.azurecr.io", 443);
}

fn host(b: &[u8]) {
    let s = text(b);
    match inputs::validate_host("--registry", &s) {
        Ok(h) => {
            assert_eq!(
                inputs::validate_host("--registry", &h).as_deref(),
                Ok(h.as_str()),
                "not canonical"
            );
            assert!(h.len() <= 253 || h.parse::<IpAddr>().is_ok());
        }
        Err(e) => check_error(&e, "--registry"),
    }
    match inputs::parse_host_port("--data-endpoint", &s, 443) {
        Ok((h, p)) => {
            assert!(p >= 1);
            assert!(inputs::validate_host("--data-endpoint", &h).is_ok(), "{h}");
        }
        Err(e) => check_error(&e, "--data-endpoint"),
    }
    if let Err(e) = inputs::parse_dns_server(&s) {
        check_error(&e, "--dns-server");
    }
    if let Err(e) = inputs::parse_duration("--timeout", &s, std::time::Duration::from_secs(300)) {
        check_error(&e, "--timeout");
    }
    if let Err(e) = inputs::azure_data_endpoint("myreg.azurecr.io", &s) {
        check_error(&e, "--region");
    }
    // The controller's policy parsers take the same kind of input.
    if let Ok(p) = HostPattern::parse("--allowed-registries", &s) {
        let _ = p.matches("myreg.azurecr.io");
        let again = HostPattern::parse("--allowed-registries", &p.to_string());
        assert_eq!(again.as_ref(), Ok(&p), "{p} does not parse back");
    }
    let _ = policy::parse_registry_hosts(&s);
    let _ = policy::parse_ports(&s);
    let _ = NamespaceRule::parse(&s);
}

fn image(b: &[u8]) {
    let s = text(b);
    match inputs::parse_image("--image", &s, ("myreg.azurecr.io", 443)) {
        Ok(i) => assert!(!i.repository.is_empty()),
        Err(e) => check_error(&e, "--image"),
    }
}

fn resolv_conf(b: &[u8]) {
    let s = text(b);
    let conf = parse_resolv_conf(&s);
    assert!(conf.nameservers.len() <= 8);
    assert!(conf.search.len() <= 6);
    let names = candidate_names("myreg.azurecr.io", &conf);
    assert!(!names.is_empty() && names.len() <= 7, "{names:?}");
}

fn hosts(b: &[u8]) {
    let s = text(b);
    let h = parse_hosts(&s);
    for (name, addrs) in &h {
        assert_eq!(name, &name.to_ascii_lowercase());
        assert!(!addrs.is_empty());
    }
}

/// One fuzz target: panics when a property does not hold.
type FuzzFn = fn(&[u8]);

macro_rules! fuzz_target {
    ($name:ident, $corpus:literal, $f:ident) => {
        #[test]
        fn $name() {
            proptest!(config(), |(b in input($corpus))| { $f(&b); });
        }
    };
}

fuzz_target!(fuzz_termination_message, "termination", termination);
fuzz_target!(fuzz_registry_error_body, "registry_error", registry_error);
fuzz_target!(fuzz_www_authenticate, "www_authenticate", www_authenticate);
fuzz_target!(fuzz_proxy_url, "proxy_url", proxy_url);
fuzz_target!(fuzz_no_proxy, "no_proxy", no_proxy);
fuzz_target!(fuzz_host_validation, "host", host);
fuzz_target!(fuzz_image_reference, "image", image);
fuzz_target!(fuzz_resolv_conf, "resolv_conf", resolv_conf);
fuzz_target!(fuzz_hosts_file, "hosts", hosts);

/// Every seed goes through its parser, and the seeds' expected outcomes hold (so that the
/// corpus stays meaningful: realistic inputs that parse, and broken ones that do not).
#[test]
fn corpus_seeds_parse() {
    let targets: [(&str, FuzzFn); 9] = [
        ("termination", termination),
        ("registry_error", registry_error),
        ("www_authenticate", www_authenticate),
        ("proxy_url", proxy_url),
        ("no_proxy", no_proxy),
        ("host", host),
        ("image", image),
        ("resolv_conf", resolv_conf),
        ("hosts", hosts),
    ];
    for (t, f) in targets {
        for s in seeds(t) {
            f(&s);
        }
    }
    let read = |t: &str, f: &str| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/corpus")
                .join(t)
                .join(f),
        )
        .unwrap()
    };
    assert!(aggregate::parse_termination_message(&read("termination", "timeout.json")).is_ok());
    assert!(aggregate::parse_termination_message(&read("termination", "truncated.json")).is_err());
    let acr =
        parse_registry_error(read("registry_error", "acr_denied_ip.json").as_bytes()).unwrap();
    assert_eq!(acr.code, "DENIED");
    assert_eq!(
        denied_client_ip(&acr.message),
        Some("203.0.113.7".parse().unwrap())
    );
    let c = parse_www_authenticate(&read("www_authenticate", "acr_bearer.txt")).unwrap();
    assert_eq!(
        c.realm.as_deref(),
        Some("https://myreg.azurecr.test/oauth2/token")
    );
    let np = NoProxy::parse(&read("no_proxy", "aks.txt"));
    assert!(np.matches("myreg.azurecr.io", 443).is_some());
    assert!(ProxyUrl::parse("--proxy", &read("proxy_url", "plain.txt")).is_ok());
    assert!(inputs::validate_host("--registry", &read("host", "acr.txt")).is_ok());
    assert!(inputs::validate_host("--registry", &read("host", "ctrl.txt")).is_err());
    let conf = parse_resolv_conf(&read("resolv_conf", "pod.conf"));
    assert_eq!(conf.ndots, 5);
    let h = parse_hosts(&read("hosts", "etc_hosts"));
    assert_eq!(
        h.get("myreg.azurecr.io"),
        Some(&vec!["10.0.0.5".parse::<IpAddr>().unwrap()])
    );
}

// ---------------------------------------------------------------------------------------------
// Status stays small however many nodes fail
// ---------------------------------------------------------------------------------------------

#[test]
fn status_stays_small_with_5000_failing_nodes() {
    use regcheck::engine::findings::Reason;
    use regcheck::operator::aggregate::{ProbeOutcome, ProbeRecord, aggregate, next_status};
    use regcheck::operator::crd::{ProbeContext, RegistryConnectivityCheckSpec, RunInfo};
    use regcheck::operator::nodes::Target;

    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/termination/timeout.json"),
    )
    .unwrap();
    let base = aggregate::parse_termination_message(&seed).unwrap();
    let long_name = |i: usize| format!("{}-{i:05}", "aks-nodepool1-12345678-vmss".repeat(8));
    let mut records = Vec::new();
    for i in 0..5000 {
        let mut r = base.clone();
        r.findings[0].message = format!("{}: {}", long_name(i), "x".repeat(3000));
        r.findings[0].endpoint = "e".repeat(2000);
        let target = Some(Target {
            node: long_name(i),
            node_pool: Some("p".repeat(63)),
            zone: Some("z".repeat(63)),
        });
        records.push(ProbeRecord {
            context: ProbeContext::Node,
            target: target.clone(),
            outcome: ProbeOutcome::Report(Box::new(r)),
        });
        // The pod context disagrees on every node, or its probe failed.
        let pod = if i % 2 == 0 {
            let mut ok = base.clone();
            ok.findings[0].reason = Reason::DNSNameNotFound;
            ok.findings[0].message = "y".repeat(3000);
            ProbeOutcome::Report(Box::new(ok))
        } else {
            ProbeOutcome::Failed {
                reason: Reason::ProbeCrashed,
                message: "z".repeat(5000),
            }
        };
        records.push(ProbeRecord {
            context: ProbeContext::Pod,
            target,
            outcome: pod,
        });
    }
    let started = std::time::Instant::now();
    let summary = aggregate(&records);
    let spec: RegistryConnectivityCheckSpec =
        serde_json::from_value(serde_json::json!({"registry": "myreg.azurecr.io"})).unwrap();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap(),
    );
    let mut status = Default::default();
    for run in 0..3 {
        status = next_status(
            &status,
            &spec,
            Some(1),
            &summary,
            RunInfo {
                id: format!("run-{run}"),
                ..Default::default()
            },
            &now,
        );
    }
    let json = serde_json::to_string(&status).unwrap();
    eprintln!(
        "status: {} bytes, {} results",
        json.len(),
        status.results.len()
    );
    assert!(
        json.len() < 64 * 1024,
        "status is {} bytes: {}",
        json.len(),
        &json[..2000]
    );
    let counts = status.counts.as_ref().expect("counts");
    assert_eq!(counts.nodes_checked, 5000);
    assert_eq!(counts.nodes_failing, 5000);
    assert_eq!(counts.probes, 10_000);
    assert_eq!(counts.probes_failed, 2500);
    assert!(!status.results.is_empty() && status.results.len() <= 50);
    for c in &status.conditions {
        assert!(
            c.message.chars().count() <= 1024,
            "{}: {}",
            c.type_,
            c.message.len()
        );
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "aggregating 10,000 probes took {:?}",
        started.elapsed()
    );
}
