//! `regcheck check` against hostile or broken servers: every run must end within its
//! `--timeout` plus a small slack, with a report and a finding, and with bounded memory (peak
//! RSS under 64 MiB: a bound against unbounded buffering, not a performance benchmark).
//!
//! Also the target policy on the paths a probe takes besides the direct one: through a proxy,
//! and to hosts named by the registry (blob redirects).

mod support;

use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

const REGISTRY: &str = "registry.test";
const DATA: &str = "data.test";
/// Peak RSS allowed to a child run.
const MAX_RSS_KIB: u64 = 64 * 1024;
/// Time allowed beyond `--timeout` (process start, report, exit).
const SLACK: Duration = Duration::from_millis(2500);

fn args(resolv: &Path, ca: &Path, target: &str, timeout: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "check",
        target,
        "--resolv-conf",
        &resolv.display().to_string(),
        "--hosts-file",
        "/dev/null",
        "--ca-file",
        &ca.display().to_string(),
        "--output",
        "json",
        "--timeout",
        timeout,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--proxy") {
        a.push("--no-proxy".into());
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

struct Base {
    lab: Lab,
    pki: Pki,
    resolv: PathBuf,
}

fn base(table: &[(&str, Dns)]) -> Base {
    let lab = Lab::new();
    let pki = Pki::new(&lab);
    let dns = lab.dns(table);
    let resolv = lab.resolv_conf(&dns);
    Base { lab, pki, resolv }
}

fn loopback_names() -> Vec<(&'static str, Dns)> {
    vec![
        (REGISTRY, Dns::A(vec![LOOPBACK])),
        (DATA, Dns::A(vec![LOOPBACK])),
    ]
}

/// Runs the check with `--timeout secs` and asserts: finished in time, bounded memory, a JSON
/// report whose primary finding is not `Healthy`. Returns the report.
#[track_caller]
fn hostile_run(b: &Base, target: &str, secs: u64, extra: &[&str]) -> (Run, Value) {
    let timeout = format!("{secs}s");
    let run = regcheck(
        &args(&b.resolv, &b.pki.ca_file, target, &timeout, extra),
        None,
    );
    let limit = Duration::from_secs(secs) + SLACK;
    assert!(
        run.elapsed < limit,
        "took {:?}, more than {limit:?}\n{}",
        run.elapsed,
        run.dump()
    );
    assert_bounded_memory(&run);
    let j = run.json();
    let reason = j["findings"][0]["reason"].as_str().unwrap_or("<none>");
    eprintln!(
        "primary finding: {reason} ({:?}, peak RSS {:?} KiB)",
        run.elapsed, run.peak_rss_kib
    );
    assert_ne!(reason, "Healthy", "{}", run.dump());
    assert_ne!(reason, "<none>", "{}", run.dump());
    assert_eq!(run.code, 1, "{}", run.dump());
    (run, j)
}

#[track_caller]
fn assert_bounded_memory(run: &Run) {
    let peak = run
        .peak_rss_kib
        .expect("VmHWM readable from /proc/<pid>/status");
    assert!(
        peak > 0 && peak < MAX_RSS_KIB,
        "peak RSS {peak} KiB, limit {MAX_RSS_KIB} KiB\n{}",
        run.dump()
    );
}

fn reasons(j: &Value) -> Vec<String> {
    j["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["reason"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Registry on loopback with `routes` replacing its default routes; the data endpoint serves
/// `data_routes`.
fn world(
    b: &Base,
    routes: impl FnOnce(Router, u16, u16) -> Router,
    data_routes: impl FnOnce(u16) -> Router,
) -> (HttpsServer, HttpsServer) {
    let dl = b.lab.listener();
    let dport = dl.port();
    let data = b
        .lab
        .https(dl, &b.pki.leaf(&[DATA]), TlsMode::Serve(data_routes(dport)));
    let l = b.lab.listener();
    let port = l.port();
    let router = routes(
        registry_router(REGISTRY, port, DATA, dport, None),
        port,
        dport,
    );
    let reg = b
        .lab
        .https(l, &b.pki.leaf(&[REGISTRY]), TlsMode::Serve(router));
    (reg, data)
}

fn image() -> String {
    format!("{REPO}:{TAG}")
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

#[test]
fn endless_fast_v2_body() {
    let b = base(&loopback_names());
    let (reg, _d) = world(
        &b,
        |r, _, _| r.route("/v2/", Route::Firehose),
        |_| data_router(),
    );
    let target = format!("{REGISTRY}:{}", reg.port());
    let run = regcheck(&args(&b.resolv, &b.pki.ca_file, &target, "3s", &[]), None);
    assert!(
        run.elapsed < Duration::from_secs(3) + SLACK,
        "{}",
        run.dump()
    );
    assert_bounded_memory(&run);
    // A 200 without a challenge and with an endless body: a report, whatever the verdict.
    let j = run.json();
    assert!(!reasons(&j).is_empty(), "{}", run.dump());
}

#[test]
fn endless_fast_blob_body() {
    let b = base(&loopback_names());
    let (reg, _d) = world(
        &b,
        |r, _, _| r,
        |_| Router::new().route("/blobs/*", Route::Firehose),
    );
    let img = image();
    let target = format!("{REGISTRY}:{}", reg.port());
    let (run, j) = hostile_run(&b, &target, 4, &["--image", &img]);
    assert_ne!(j["pull"]["blob"]["outcome"], "Ok", "{}", run.dump());
}

#[test]
fn slow_drip_blob_body() {
    let b = base(&loopback_names());
    let (reg, _d) = world(
        &b,
        |r, _, _| r,
        |_| Router::new().route("/blobs/*", Route::Drip(200)),
    );
    let img = image();
    let target = format!("{REGISTRY}:{}", reg.port());
    let (run, j) = hostile_run(&b, &target, 3, &["--image", &img]);
    assert_ne!(j["pull"]["blob"]["outcome"], "Ok", "{}", run.dump());
}

#[test]
fn slow_drip_v2_body() {
    let b = base(&loopback_names());
    let (reg, _d) = world(
        &b,
        |r, _, _| r.route("/v2/", Route::Drip(401)),
        |_| data_router(),
    );
    let target = format!("{REGISTRY}:{}", reg.port());
    hostile_run(&b, &target, 2, &[]);
}

#[test]
fn huge_headers_on_the_manifest() {
    let b = base(&loopback_names());
    let (reg, _d) = world(
        &b,
        |r, _, _| r.route(&format!("/v2/{REPO}/manifests/*"), Route::HugeHeaders),
        |_| data_router(),
    );
    let img = format!("{REPO}:other");
    let target = format!("{REGISTRY}:{}", reg.port());
    let (run, j) = hostile_run(&b, &target, 3, &["--image", &img]);
    assert_ne!(j["pull"]["manifest"]["outcome"], "Ok", "{}", run.dump());
}

#[test]
fn thousands_of_redirects_stop_at_the_cap() {
    let b = base(&loopback_names());
    let (reg, data) = world(
        &b,
        |r, _, _| r,
        |dport| {
            // Every hop redirects again, with a long Location, for up to 5,000 hops.
            Router::new().route(
                "/blobs/*",
                Route::dynamic(move |req| {
                    let n: u32 = req
                        .target
                        .rsplit("hop=")
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if n >= 5000 {
                        return Reply::new(404);
                    }
                    Reply::new(307).header(
                        "Location",
                        format!(
                            "https://{DATA}:{dport}/blobs/x?pad={}&hop={}",
                            "p".repeat(4000),
                            n + 1
                        ),
                    )
                }),
            )
        },
    );
    let img = image();
    let target = format!("{REGISTRY}:{}", reg.port());
    let (run, j) = hostile_run(&b, &target, 4, &["--image", &img]);
    assert!(
        reasons(&j).contains(&"TooManyRedirects".to_string()),
        "{}",
        run.dump()
    );
    let hops = data.paths().len();
    assert!(
        (5..=7).contains(&hops),
        "{hops} requests reached the data endpoint"
    );
    // The report does not carry the 4 KB Locations.
    assert!(run.stdout.len() < 64 * 1024, "{} bytes", run.stdout.len());
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

fn chain_case(depth: usize, padding: usize) -> (Run, Value) {
    let b = base(&loopback_names());
    let leaf = b.pki.hostile_chain_leaf(&[REGISTRY], depth, padding);
    let l = b.lab.listener();
    let port = l.port();
    let _reg = b.lab.https(
        l,
        &leaf,
        TlsMode::Serve(registry_router(REGISTRY, port, DATA, 1, None)),
    );
    hostile_run(&b, &format!("{REGISTRY}:{port}"), 3, &[])
}

#[test]
fn two_hundred_intermediate_certificates() {
    let (run, j) = chain_case(200, 0);
    assert_ne!(
        j["endpoints"][0]["tls"]["outcome"],
        "Verified",
        "{}",
        run.dump()
    );
}

#[test]
fn one_mebibyte_certificate_message() {
    let (run, j) = chain_case(1, 2500);
    assert_ne!(
        j["endpoints"][0]["tls"]["outcome"],
        "Verified",
        "{}",
        run.dump()
    );
}

// ---------------------------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------------------------

fn raw_dns_case(how: RawDns) -> (Run, Value) {
    let lab = Lab::new();
    let pki = Pki::new(&lab);
    let dns = lab.raw_dns(how);
    let resolv = lab.resolv_conf(&dns);
    let b = Base { lab, pki, resolv };
    let out = hostile_run(&b, REGISTRY, 3, &[]);
    assert!(dns.query_count() > 0, "the broken server was asked");
    out
}

#[track_caller]
fn assert_dns_finding(run: &Run, j: &Value) {
    let r = j["findings"][0]["reason"].as_str().unwrap_or_default();
    assert!(r.starts_with("DNS"), "primary {r}\n{}", run.dump());
    assert!(
        j["endpoints"][0]["tcp"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
}

#[test]
fn dns_garbage_packets() {
    let (run, j) = raw_dns_case(RawDns::Garbage);
    assert_dns_finding(&run, &j);
}

#[test]
fn dns_truncated_packets() {
    let (run, j) = raw_dns_case(RawDns::TruncatedPacket);
    assert_dns_finding(&run, &j);
}

#[test]
fn dns_truncated_then_tcp_stalls() {
    let (run, j) = raw_dns_case(RawDns::TruncatedThenTcpGarbage);
    assert_dns_finding(&run, &j);
}

#[test]
fn dns_answers_with_the_wrong_id() {
    let (run, j) = raw_dns_case(RawDns::WrongId);
    assert_dns_finding(&run, &j);
}

#[test]
fn dns_long_cname_chain() {
    // 400 names in a chain: the server follows 32 hops and stops without an address.
    let names: Vec<String> = (0..400).map(|i| format!("c{i}.test")).collect();
    let mut table: Vec<(&str, Dns)> = vec![(REGISTRY, Dns::Cname(names[0].clone()))];
    for i in 0..399 {
        table.push((&names[i], Dns::Cname(names[i + 1].clone())));
    }
    table.push((&names[399], Dns::A(vec![LOOPBACK])));
    let b = base(&table);
    let (run, j) = hostile_run(&b, REGISTRY, 3, &[]);
    assert_dns_finding(&run, &j);
}

#[test]
fn dns_cname_loop_with_a_thousand_a_records_elsewhere() {
    let many: Vec<Ipv4Addr> = (0..1000u32)
        .map(|i| Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8))
        .collect();
    let b = base(&[
        (REGISTRY, Dns::Cname("a.test".into())),
        ("a.test", Dns::Cname("b.test".into())),
        ("b.test", Dns::Cname("a.test".into())),
        ("many.test", Dns::A(many)),
    ]);
    let (run, j) = hostile_run(&b, REGISTRY, 3, &["--also", "many.test:1"]);
    assert_dns_finding(&run, &j);
    // The thousand-address host: at most 8 dialled, and a bounded report.
    let many_ep = j["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["host"] == "many.test")
        .cloned()
        .unwrap_or_default();
    let dialled = many_ep["tcp"].as_array().map(|a| a.len()).unwrap_or(0);
    assert!(
        (1..=8).contains(&dialled),
        "{dialled} dialled\n{}",
        run.dump()
    );
    assert!(run.stdout.len() < 256 * 1024, "{} bytes", run.stdout.len());
}

// ---------------------------------------------------------------------------------------------
// Target policy beyond the direct path
// ---------------------------------------------------------------------------------------------

#[test]
fn strict_policy_refuses_a_loopback_proxy_without_dialling_it() {
    let b = base(&loopback_names());
    let proxy = b.lab.proxy(ProxyMode::Allow, &[(REGISTRY, LOOPBACK)]);
    let url = proxy.url();
    let run = regcheck(
        &args(
            &b.resolv,
            &b.pki.ca_file,
            "registry.test",
            "3s",
            &["--proxy", &url, "--strict-targets"],
        ),
        None,
    );
    let j = run.json();
    assert_eq!(
        j["findings"][0]["reason"],
        "TargetAddressBlocked",
        "{}",
        run.dump()
    );
    assert!(proxy.connects.lock().unwrap().is_empty());
    assert_eq!(run.code, 1, "{}", run.dump());
}

#[test]
fn proxied_host_resolving_to_a_forbidden_address_is_not_sent_to_the_proxy() {
    // The name resolves (here) to 0.0.0.0; the proxy would happily connect it to loopback.
    let b = base(&[(REGISTRY, Dns::A(vec![Ipv4Addr::UNSPECIFIED]))]);
    let proxy = b.lab.proxy(ProxyMode::Allow, &[(REGISTRY, LOOPBACK)]);
    let url = proxy.url();
    let run = regcheck(
        &args(
            &b.resolv,
            &b.pki.ca_file,
            "registry.test",
            "3s",
            &["--proxy", &url],
        ),
        None,
    );
    let j = run.json();
    assert_eq!(
        j["findings"][0]["reason"],
        "TargetAddressBlocked",
        "{}",
        run.dump()
    );
    let msg = j["findings"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("0.0.0.0"), "{msg}");
    assert!(proxy.connects.lock().unwrap().is_empty());
}

#[test]
fn blob_redirect_to_a_forbidden_address_is_not_dialled() {
    // The registry redirects the blob to meta.test, which resolves to 0.0.0.0: dialling it
    // would reach the data server listening on that port on every local address.
    let b = base(&[
        (REGISTRY, Dns::A(vec![LOOPBACK])),
        ("meta.test", Dns::A(vec![Ipv4Addr::UNSPECIFIED])),
    ]);
    let dl = b.lab.listener_at(Ipv4Addr::LOCALHOST, 0).unwrap();
    let dport = dl.port();
    let data = b.lab.https(
        dl,
        &b.pki.leaf(&["meta.test"]),
        TlsMode::Serve(data_router()),
    );
    let l = b.lab.listener();
    let port = l.port();
    let _reg = b.lab.https(
        l,
        &b.pki.leaf(&[REGISTRY]),
        TlsMode::Serve(registry_router(REGISTRY, port, "meta.test", dport, None)),
    );
    let img = image();
    let (run, j) = hostile_run(&b, &format!("{REGISTRY}:{port}"), 3, &["--image", &img]);
    assert_ne!(j["pull"]["blob"]["outcome"], "Ok", "{}", run.dump());
    assert!(
        run.stdout.contains("TargetAddressBlocked") || run.stdout.contains("Blocked"),
        "{}",
        run.dump()
    );
    assert_eq!(
        data.accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the forbidden address was dialled\n{}",
        run.dump()
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets never leak, even with trace logs
// ---------------------------------------------------------------------------------------------

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[track_caller]
fn assert_no_secret(run: &Run, secrets: &[&str]) {
    // Trace logging is on: something was logged, so the check below means something.
    assert!(
        run.stderr.lines().count() > 5,
        "expected trace logs on stderr\n{}",
        run.dump()
    );
    for secret in secrets {
        for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                panic!("{secret:?} appears in {name}: {line}");
            }
        }
    }
}

const USER: &str = "alice";
const PASSWORD: &str = "Tr4ce-S3cret-pw-81x";

fn secret_strings(password: &str) -> Vec<String> {
    vec![
        password.to_string(),
        b64(&format!("{USER}:{password}")),
        // The bearer token the registry hands out.
        format!("Bearer {TOKEN}"),
        format!("\"{TOKEN}\""),
    ]
}

fn creds_world(b: &Base) -> u16 {
    let dl = b.lab.listener();
    let dport = dl.port();
    let _ = b
        .lab
        .https(dl, &b.pki.leaf(&[DATA]), TlsMode::Serve(data_router()));
    let l = b.lab.listener();
    let port = l.port();
    let _ = b.lab.https(
        l,
        &b.pki.leaf(&[REGISTRY]),
        TlsMode::Serve(registry_router(
            REGISTRY,
            port,
            DATA,
            dport,
            Some((USER, PASSWORD)),
        )),
    );
    port
}

#[test]
fn password_stdin_never_appears_in_trace_logs() {
    let b = base(&loopback_names());
    let port = creds_world(&b);
    let img = image();
    for (password, want_code) in [(PASSWORD, 0), ("Wr0ng-Tr4ce-pw-77q", 1)] {
        let a = args(
            &b.resolv,
            &b.pki.ca_file,
            &format!("{REGISTRY}:{port}"),
            "5s",
            &["--image", &img, "--username", USER, "--password-stdin"],
        );
        let run = regcheck_env(&a, Some(&format!("{password}\n")), &[("RUST_LOG", "trace")]);
        assert_eq!(run.code, want_code, "{}", run.dump());
        let secrets = secret_strings(password);
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        assert_no_secret(&run, &refs);
        // The compact form written to the termination log by probes.
        let report: regcheck::engine::findings::Report =
            serde_json::from_str(&run.stdout).expect("report");
        let compact = regcheck::engine::report::to_compact_json(&report);
        for s in &refs {
            assert!(
                !compact.contains(s),
                "{s:?} in the compact report: {compact}"
            );
        }
        // And the table output, which prints more prose.
        let mut t = a.clone();
        let i = t.iter().position(|x| x == "json").unwrap();
        t[i] = "table".into();
        let run = regcheck_env(&t, Some(&format!("{password}\n")), &[("RUST_LOG", "trace")]);
        assert_no_secret(&run, &refs);
    }
}

#[test]
fn docker_config_credentials_never_appear_in_trace_logs() {
    let b = base(&loopback_names());
    let port = creds_world(&b);
    let auth = b64(&format!("{USER}:{PASSWORD}"));
    let cfg = b.lab.write_file(
        "config.json",
        serde_json::json!({"auths": {format!("{REGISTRY}:{port}"): {"auth": auth}}}).to_string(),
    );
    let img = image();
    let a = args(
        &b.resolv,
        &b.pki.ca_file,
        &format!("{REGISTRY}:{port}"),
        "5s",
        &[
            "--image",
            &img,
            "--docker-config",
            &cfg.display().to_string(),
        ],
    );
    let run = regcheck_env(&a, None, &[("RUST_LOG", "trace")]);
    assert_eq!(run.code, 0, "{}", run.dump());
    assert_eq!(run.json()["pull"]["credentials"], true, "{}", run.dump());
    let secrets = secret_strings(PASSWORD);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(&run, &refs);
}
