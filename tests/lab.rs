//! Network lab: every symptom of the registry troubleshooting guide, reproduced with real
//! servers (unbound, dnsmasq, docker-registry behind nginx, squid, iptables) inside network
//! namespaces that each test creates, and `regcheck check` run against it.
//!
//! The harness is `tests/lab/lab.py` (see `tests/lab/README.md`). Each lab has its own pair of
//! namespaces with no route out: nothing here sends a packet anywhere else.
//!
//! Needs root (namespaces, iptables). As root, missing Debian packages are installed first
//! (a failed install fails the tests). Without root every lab test is reported as *ignored*,
//! with the reason printed once; `REGCHECK_LAB_REQUIRED=1` makes that a failure instead.
//! The file has its own `main` (libtest-mimic) because libtest cannot skip at run time.
//!
//! Run: `cargo test --test lab -- --test-threads=2`

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const LAB_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab/lab.py");
const REGCHECK: &str = env!("CARGO_BIN_EXE_regcheck");

const REGISTRY: &str = "labreg.azurecr.io";
const DATA: &str = "labreg.eastus.data.azurecr.io";
const IMAGE: &str = "lab/hello:1.0";
const CLIENT_IP: &str = "10.1.0.100";
const DNS: &str = "10.1.0.53";
const CUSTOM_DNS: &str = "10.1.0.54";
const SQUID: &str = "http://10.1.0.80:3128";
const EOF_PROXY: &str = "http://10.1.0.81:3128";
const PUB_LOGIN: &str = "203.0.113.10";
const PUB_DATA: &str = "203.0.113.11";
const PRIV_LOGIN: &str = "10.2.0.10";
const STALE: &str = "10.2.0.99";
/// The lab's IPv6 (ULA) addresses of the login server, data endpoint and resolver.
const PUB_LOGIN6: &str = "fd00:2::10";
const PUB_DATA6: &str = "fd00:2::11";
const DNS6: &str = "fd00:2::53";
/// The address the lab's registry names in scenario registry-denied-nat-ip (`NAT_SEEN_IP`).
const NAT_SEEN: &str = "198.51.100.77";
/// The registry mirror of the containerd scenarios (`MIRROR`, `MIRROR_IP`).
const MIRROR: &str = "mirror.lab.example";
const MIRROR_IP: &str = "10.1.0.90";

/// Brings up a lab scenario (the test fails when it cannot be built).
macro_rules! lab {
    ($scenario:expr) => {
        Lab::up($scenario)
    };
}

// ---------------------------------------------------------------------------------------------
// Scenarios: one test each.

fn healthy_public_registry() {
    let lab = lab!("healthy-public");
    let r = lab.check(&[REGISTRY, "--region", "eastus", "--image", IMAGE]);
    r.expect_healthy();
    // All phases of the login server were timed.
    let ep = r.endpoint(REGISTRY);
    for path in ["/dns/system/ms", "/tcp/0/ms", "/tls/ms", "/http/ms"] {
        assert!(
            ep.pointer(path).and_then(Value::as_u64).is_some(),
            "{path} missing\n{}",
            r.pretty()
        );
    }
    assert_eq!(
        ep.pointer("/dns/system/addresses/0/ip")
            .and_then(Value::as_str),
        Some(PUB_LOGIN),
        "{}",
        r.pretty()
    );
    assert_eq!(
        r.json.pointer("/pull/blob/outcome").and_then(Value::as_str),
        Some("Ok"),
        "{}",
        r.pretty()
    );
}

fn healthy_private_endpoint() {
    let lab = lab!("healthy-private");
    let r = lab.check(&[
        REGISTRY, "--region", "eastus", "--expect", "private", "--image", IMAGE,
    ]);
    r.expect_healthy();
    let ep = r.endpoint(REGISTRY);
    assert_eq!(
        ep.pointer("/dns/system/addresses/0/class")
            .and_then(Value::as_str),
        Some("Private"),
        "{}",
        r.pretty()
    );
    let data = r.endpoint(DATA);
    assert_eq!(
        data.pointer("/dns/system/addresses/0/class")
            .and_then(Value::as_str),
        Some("Private"),
        "{}",
        r.pretty()
    );
}

fn healthy_through_proxy() {
    let lab = lab!("healthy-proxy");
    let r = lab.check_env(
        &[REGISTRY, "--image", IMAGE],
        &[("HTTPS_PROXY", SQUID)],
        None,
    );
    r.expect_healthy();
}

fn healthy_lab_gives_no_false_alarm_in_20_runs() {
    let lab = lab!("healthy-public");
    for i in 0..20 {
        let r = lab.check(&[REGISTRY, "--region", "eastus"]);
        let reasons: Vec<&str> = r.reasons();
        assert!(
            reasons.iter().all(|x| *x == "Healthy") && r.code == 0,
            "run {i}: reasons {reasons:?}\n{}",
            r.pretty()
        );
    }
}

fn name_does_not_exist() {
    let lab = lab!("dns-name-not-found");
    let r = lab.check(&["nosuchreg.azurecr.io"]);
    r.expect("DNSNameNotFound", &["nosuchreg.azurecr.io"]);
}

fn custom_dns_without_forwarder_resolves_public() {
    let lab = lab!("custom-dns-no-forwarder");
    let r = lab.check(&[REGISTRY, "--expect", "private"]);
    r.expect(
        "PrivateEndpointResolvesPublic",
        &[REGISTRY, CUSTOM_DNS, PUB_LOGIN],
    );
}

fn private_zone_without_data_endpoint_record() {
    let lab = lab!("data-endpoint-dns-missing");
    let r = lab.check(&[REGISTRY, "--region", "eastus", "--expect", "private"]);
    r.expect("DataEndpointDNSMissing", &[DATA]);
}

fn nameserver_unreachable() {
    let lab = lab!("dns-server-unreachable");
    let r = lab.check(&[REGISTRY, "--timeout", "3s"]);
    r.expect("DNSServerUnreachable", &[REGISTRY, DNS]);
    r.expect_within(Duration::from_secs(3));
}

fn firewall_drops_login_server() {
    let lab = lab!("login-drop");
    let r = lab.check(&[REGISTRY, "--timeout", "3s"]);
    r.expect("ConnectionTimedOut", &[REGISTRY, PUB_LOGIN]);
    r.expect_within(Duration::from_secs(3));
}

fn firewall_drops_data_endpoint_only() {
    let lab = lab!("data-drop");
    let r = lab.check(&[REGISTRY, "--image", IMAGE, "--timeout", "3s"]);
    r.expect("DataEndpointBlocked", &[DATA, PUB_DATA]);
    assert_eq!(r.json["verdict"], "Degraded", "{}", r.pretty());
}

fn firewall_drops_data_endpoint_probed_directly() {
    let lab = lab!("data-drop");
    let r = lab.check(&[REGISTRY, "--region", "eastus", "--timeout", "3s"]);
    r.expect("DataEndpointBlocked", &[DATA, PUB_DATA]);
}

fn fqdn_firewall_resets_after_client_hello() {
    let lab = lab!("sni-reset");
    let r = lab.check(&[REGISTRY, "--timeout", "3s"]);
    r.expect("TLSResetAfterClientHello", &[REGISTRY, PUB_LOGIN]);
}

/// A router between client and server forwards toward the client with MTU 1280 and drops the
/// ICMP "fragmentation needed" it would send: the login server's certificate flight (a large
/// chain) never arrives, while the data endpoint's small one does. The handshake retried on a
/// connection announcing MSS 536 completes: a path-MTU black hole, not a firewall.
fn path_mtu_black_hole() {
    let lab = lab!("mtu-black-hole");
    let r = lab.check(&[REGISTRY, "--region", "eastus", "--timeout", "6s"]);
    r.expect(
        "PathMTUBlackHole",
        &[REGISTRY, PUB_LOGIN, "MSS 536", "fragmentation needed"],
    );
    let tls = &r.endpoint(REGISTRY)["tls"];
    assert_eq!(tls["outcome"], "Timeout", "{}", r.pretty());
    assert_eq!(tls["peer"], format!("{PUB_LOGIN}:443"), "{}", r.pretty());
    assert_eq!(tls["smallMssRetry"]["mss"], 536, "{}", r.pretty());
    assert_eq!(tls["smallMssRetry"]["completed"], true, "{}", r.pretty());
    assert_eq!(tls["smallMssRetry"]["tls"], "Verified", "{}", r.pretty());
    // Small packets pass the same router: the data endpoint's handshake (one small
    // certificate) completes at the normal MSS.
    assert_eq!(
        r.endpoint(DATA)["tls"]["outcome"],
        "Verified",
        "{}",
        r.pretty()
    );
    r.expect_within(Duration::from_secs(6));
}

/// The same server and chain, but a firewall silently drops the ClientHello naming the
/// registry: the small-MSS retry stalls too, and the reason stays the firewall's.
fn firewall_drop_of_the_handshake_is_not_an_mtu_problem() {
    let lab = lab!("sni-drop");
    let r = lab.check(&[REGISTRY, "--timeout", "6s"]);
    r.expect(
        "TLSHandshakeTimeout",
        &[REGISTRY, PUB_LOGIN, "MSS 536 stalled too"],
    );
    let retry = &r.endpoint(REGISTRY)["tls"]["smallMssRetry"];
    assert_eq!(retry["completed"], false, "{}", r.pretty());
    assert!(!r.reasons().contains(&"PathMTUBlackHole"), "{}", r.pretty());
    r.expect_within(Duration::from_secs(6));
}

/// Dual-stack lab: the registry has A and AAAA records, HTTPS over IPv6 is dropped, IPv4
/// works. A warning, and the evidence shows which family each phase used.
fn ipv6_path_broken_while_ipv4_works() {
    let lab = lab!("ipv6-path-broken");
    let r = lab.check(&[REGISTRY, "--ip-family", "dual", "--timeout", "4s"]);
    r.expect(
        "IPv6PathBroken",
        &[REGISTRY, &format!("[{PUB_LOGIN6}]:443"), PUB_LOGIN],
    );
    assert_eq!(r.json["verdict"], "Degraded", "{}", r.pretty());
    assert_eq!(r.json["ipFamily"], "Dual", "{}", r.pretty());
    let ep = r.endpoint(REGISTRY);
    let ips: Vec<&str> = ep["dns"]["system"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["ip"].as_str())
        .collect();
    assert!(
        ips.contains(&PUB_LOGIN) && ips.contains(&PUB_LOGIN6),
        "A and AAAA: {ips:?}\n{}",
        r.pretty()
    );
    let tcp = ep["tcp"].as_array().unwrap();
    let outcome = |addr: &str| {
        tcp.iter()
            .find(|t| t["address"] == addr)
            .map(|t| t["outcome"].clone())
    };
    assert_eq!(
        outcome(&format!("[{PUB_LOGIN6}]:443")),
        Some("Timeout".into()),
        "{}",
        r.pretty()
    );
    assert_eq!(
        outcome(&format!("{PUB_LOGIN}:443")),
        Some("Connected".into()),
        "{}",
        r.pretty()
    );
    assert_eq!(
        ep["tls"]["peer"],
        format!("{PUB_LOGIN}:443"),
        "{}",
        r.pretty()
    );
    assert_eq!(ep["tls"]["outcome"], "Verified", "{}", r.pretty());
}

/// An IPv6-only client (no IPv4 address; its resolver answers over IPv6) and a registry with
/// A records only.
fn ipv6_only_client_and_registry_without_aaaa() {
    let lab = lab!("ipv6-only-no-aaaa");
    let r = lab.check(&[REGISTRY, "--ip-family", "ipv6", "--timeout", "4s"]);
    r.expect(
        "RegistryLacksIPv6",
        &[REGISTRY, PUB_LOGIN, "no AAAA record"],
    );
    assert_eq!(r.json["verdict"], "Unreachable", "{}", r.pretty());
    let ep = r.endpoint(REGISTRY);
    assert_eq!(
        ep["dns"]["system"]["answeredBy"],
        format!("[{DNS6}]:53"),
        "{}",
        r.pretty()
    );
    assert!(
        ep.get("tcp").is_none(),
        "no IPv4 address dialled\n{}",
        r.pretty()
    );
}

/// The same IPv6-only client and a registry with AAAA records: the pull works over IPv6.
fn ipv6_only_client_pulls_over_ipv6() {
    let lab = lab!("ipv6-only");
    let r = lab.check(&[
        REGISTRY,
        "--ip-family",
        "ipv6",
        "--region",
        "eastus",
        "--image",
        IMAGE,
    ]);
    r.expect_healthy();
    assert_eq!(
        r.endpoint(REGISTRY)["tls"]["peer"],
        format!("[{PUB_LOGIN6}]:443"),
        "{}",
        r.pretty()
    );
    assert_eq!(
        r.endpoint(DATA)["tls"]["peer"],
        format!("[{PUB_DATA6}]:443"),
        "{}",
        r.pretty()
    );
}

fn tls_inspection_presents_another_ca() {
    let lab = lab!("tls-interception");
    let r = lab.check(&[REGISTRY]);
    r.expect("TLSInterception", &[REGISTRY, "Contoso Inspection CA"]);
}

/// nginx denies the client's own (private) address, as ACR does for a request that comes
/// through a VNet service endpoint: a virtual-network rule is missing, with or without the
/// expected egress addresses.
fn registry_network_rules_deny_client_ip() {
    let lab = lab!("registry-denied-ip");
    let r = lab.check(&[REGISTRY]);
    r.expect(
        "RegistryDeniedPrivateClientIP",
        &[
            REGISTRY,
            CLIENT_IP,
            "private address",
            "virtual-network rule",
        ],
    );
    let r = lab.check(&[REGISTRY, "--egress-ip", NAT_SEEN]);
    r.expect(
        "RegistryDeniedPrivateClientIP",
        &[CLIENT_IP, "expected egress: 198.51.100.77/32"],
    );
}

/// nginx denies the public address a NAT gateway gives the cluster: outside the expected
/// egress addresses it is the wrong path, inside them the IP rule is missing.
fn registry_network_rules_deny_nat_ip() {
    let lab = lab!("registry-denied-nat-ip");
    let r = lab.check(&[REGISTRY]);
    r.expect("RegistryDeniedClientIP", &[REGISTRY, NAT_SEEN]);
    let r = lab.check(&[REGISTRY, "--egress-ip", "198.51.100.0/28"]);
    r.expect(
        "EgressIPUnexpected",
        &[NAT_SEEN, "wrong NAT gateway", "198.51.100.0/28"],
    );
    let r = lab.check(&[REGISTRY, "--egress-ip", NAT_SEEN]);
    r.expect(
        "RegistryDeniedClientIP",
        &[NAT_SEEN, "one of the expected egress"],
    );
}

/// The data endpoint answers the blob with Azure Storage's XML 403 (a storage firewall or a
/// service endpoint policy): not the identity.
fn storage_account_denies_the_blob() {
    let lab = lab!("storage-denied");
    let r = lab.check(&[REGISTRY, "--image", IMAGE]);
    r.expect(
        "StorageAccessDenied",
        &[DATA, "AuthorizationFailure", "not the registry's identity"],
    );
    assert_eq!(
        r.json
            .pointer("/pull/manifest/outcome")
            .and_then(Value::as_str),
        Some("Ok"),
        "{}",
        r.pretty()
    );
}

/// The token endpoint answers 500 while /v2/ answers its challenge.
fn token_endpoint_fails_while_v2_answers() {
    let lab = lab!("token-endpoint-fails");
    let r = lab.pull_as(IMAGE, "labpass");
    r.expect(
        "TokenRequestFailed",
        &[
            REGISTRY,
            "/oauth2/token",
            "while the registry answers its /v2/ challenge",
        ],
    );
    assert_eq!(
        r.json.pointer("/findings/0/code").and_then(Value::as_str),
        Some("CONNECTIVITY_ACCESS_TOKEN_ERROR"),
        "{}",
        r.pretty()
    );
    assert_eq!(
        r.endpoint(REGISTRY)
            .pointer("/http/status")
            .and_then(Value::as_u64),
        Some(401),
        "{}",
        r.pretty()
    );
}

fn server_never_sends_headers() {
    let lab = lab!("headers-timeout");
    let r = lab.check(&[REGISTRY, "--timeout", "3s"]);
    r.expect("HeadersTimeout", &[REGISTRY]);
    r.expect_within(Duration::from_secs(3));
}

fn proxy_denies_connect() {
    let lab = lab!("proxy-denied");
    let r = lab.check_env(&[REGISTRY], &[("HTTPS_PROXY", SQUID)], None);
    r.expect("ProxyDenied", &[REGISTRY, "10.1.0.80:3128", "403"]);
}

fn proxy_closes_connection() {
    let lab = lab!("proxy-eof");
    let r = lab.check(&[REGISTRY, "--proxy", EOF_PROXY, "--timeout", "3s"]);
    r.expect("ProxyConnectEOF", &[REGISTRY, "10.1.0.81:3128"]);
}

fn proxy_requires_credentials() {
    let lab = lab!("proxy-auth");
    let r = lab.check_env(&[REGISTRY], &[("HTTPS_PROXY", SQUID)], None);
    r.expect("ProxyAuthRequired", &[REGISTRY, "10.1.0.80:3128", "407"]);
}

fn private_endpoint_not_exempted_from_proxy() {
    let lab = lab!("proxy-bypass-missing");
    // A CIDR entry in NO_PROXY does not exempt a host name (Go semantics).
    let env = [
        ("HTTPS_PROXY", SQUID),
        ("NO_PROXY", "localhost,127.0.0.1,10.2.0.0/16"),
    ];
    let r = lab.check_env(
        &[REGISTRY, "--expect", "private", "--timeout", "5s"],
        &env,
        None,
    );
    r.expect("ProxyBypassMissing", &[REGISTRY, PRIV_LOGIN]);
}

fn no_proxy_exempting_the_registry_is_healthy() {
    let lab = lab!("proxy-bypass-missing");
    let env = [
        ("HTTPS_PROXY", SQUID),
        ("NO_PROXY", "localhost,.azurecr.io"),
    ];
    let args = [REGISTRY, "--region", "eastus", "--expect", "private"];
    lab.check_env(&args, &env, None).expect_healthy();
}

fn private_endpoint_address_without_route() {
    let lab = lab!("host-unreachable");
    let r = lab.check(&[REGISTRY, "--expect", "private", "--timeout", "3s"]);
    r.expect("HostUnreachable", &[REGISTRY, STALE]);
}

fn registry_throttles() {
    let lab = lab!("throttled");
    let r = lab.check(&[REGISTRY]);
    r.expect("Throttled", &[REGISTRY, "429"]);
}

// Scenario 19 with an ACR-like Bearer flow (/v2/ challenge, /oauth2/token with Basic
// credentials, JWT checked by the registry), and again with the registry's own Basic auth.

fn wrong_credentials() {
    let lab = lab!("registry-token");
    let r = lab.pull_as(IMAGE, "not-the-password");
    r.expect("AuthenticationFailed", &[REGISTRY]);
}

fn image_missing() {
    let lab = lab!("registry-token");
    let r = lab.pull_as("lab/nope:1.0", "labpass");
    r.expect("ImageNotFound", &[REGISTRY, "lab/nope"]);
}

fn right_credentials_pull_works() {
    let lab = lab!("registry-token");
    lab.pull_as(IMAGE, "labpass").expect_healthy();
}

fn anonymous_pull_refused() {
    let lab = lab!("registry-token");
    let r = lab.check(&[REGISTRY, "--image", IMAGE]);
    r.expect("AuthenticationFailed", &[REGISTRY, "401"]);
}

fn wrong_credentials_basic_auth() {
    let lab = lab!("registry-auth");
    let r = lab.pull_as(IMAGE, "not-the-password");
    r.expect("AuthenticationFailed", &[REGISTRY]);
}

fn image_missing_basic_auth() {
    let lab = lab!("registry-auth");
    let r = lab.pull_as("lab/nope:1.0", "labpass");
    r.expect("ImageNotFound", &[REGISTRY, "lab/nope"]);
}

// Egress profiles: the real AKS profile's hosts, served inside the lab by its own DNS and nginx
// (there is no route out), some behind an FQDN firewall that resets their ClientHello.

/// The AKS hosts with region=eastus and the lab cluster's API server.
const AKS_HOSTS: [&str; 9] = [
    "labaks-dns-1a2b3c4d.hcp.eastus.azmk8s.io",
    "mcr.microsoft.com",
    "eastus.data.mcr.microsoft.com",
    "mcr-0001.mcr-msedge.net",
    "management.azure.com",
    "login.microsoftonline.com",
    "packages.microsoft.com",
    "acs-mirror.azureedge.net",
    "packages.aks.azure.com",
];

fn aks_args(lab: &Lab) -> Vec<String> {
    let api = format!("apiServer={}", lab.field("aksApiServer"));
    [
        REGISTRY,
        "--egress-profile",
        "AKS",
        "--egress-profile-param",
        "region=eastus",
        "--egress-profile-param",
        &api,
        "--timeout",
        "5s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The egress host entries of a report, by host.
fn egress_hosts(json: &Value) -> Vec<(String, Value)> {
    json.pointer("/egress/hosts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h["host"].as_str().unwrap_or_default().to_string(),
                        h.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that exactly `blocked` have an `EgressHostBlocked` finding (at TLS, reset after the
/// ClientHello) and every other AKS host answered HTTP.
fn expect_egress(json: &Value, blocked: &[&str], context: &str) {
    let findings = json["findings"].as_array().cloned().unwrap_or_default();
    let mut named: Vec<&str> = findings
        .iter()
        .filter(|f| f["reason"] == "EgressHostBlocked")
        .filter_map(|f| f["endpoint"].as_str())
        .collect();
    named.sort();
    let mut want = blocked.to_vec();
    want.sort();
    assert_eq!(named, want, "{context}");
    for f in findings
        .iter()
        .filter(|f| f["reason"] == "EgressHostBlocked")
    {
        let msg = f["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("egress host blocked at TLS (reset after the ClientHello")
                && msg.contains("AKS"),
            "{msg}\n{context}"
        );
        assert_eq!(f["role"], "Egress", "{context}");
        assert_eq!(f["severity"], "Error", "{context}");
    }
    let hosts = egress_hosts(json);
    let got: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut all = AKS_HOSTS.to_vec();
    all.sort();
    assert_eq!(got_sorted, all, "{context}");
    for (host, h) in &hosts {
        assert_eq!(h["rule"]["source"], "AKS", "{context}");
        if blocked.contains(&host.as_str()) {
            continue;
        }
        // Healthy hosts: no finding. Their evidence (left out of the compact form) answered.
        assert!(
            !findings.iter().any(|f| f["endpoint"] == host.as_str()),
            "{host}\n{context}"
        );
        if let Some(status) = h.pointer("/endpoint/http/status") {
            let want =
                if ["management.azure.com", "login.microsoftonline.com"].contains(&host.as_str()) {
                    400
                } else {
                    200
                };
            assert_eq!(status, want, "{host}\n{context}");
        }
    }
}

fn egress_profile_aks_behind_fqdn_firewall() {
    let lab = lab!("egress-fqdn-firewall");
    let args = aks_args(&lab);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = lab.check(&argv);
    let blocked = ["eastus.data.mcr.microsoft.com", "packages.aks.azure.com"];
    expect_egress(&r.json, &blocked, &r.pretty());
    // The registry itself works: Degraded, not Unreachable; exit 1.
    assert_eq!(r.json["verdict"], "Degraded", "{}", r.pretty());
    assert_eq!(r.code, 1, "{}", r.pretty());
    assert!(
        r.reasons().iter().all(|x| *x == "EgressHostBlocked"),
        "{}",
        r.pretty()
    );
    assert!(
        r.json
            .pointer("/egress/dataVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty()),
        "{}",
        r.pretty()
    );
    // The data endpoint's finding names the wildcard rule it was probed for.
    let data = r.json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["endpoint"] == "eastus.data.mcr.microsoft.com")
        .unwrap();
    assert!(
        data["message"]
            .as_str()
            .unwrap()
            .contains("AKS's rule *.data.mcr.microsoft.com"),
        "{}",
        r.pretty()
    );
    // Every healthy host answered HTTP on GET / (any status counts).
    for (host, h) in egress_hosts(&r.json) {
        if !blocked.contains(&host.as_str()) {
            assert!(
                h.pointer("/endpoint/http/status").is_some(),
                "{host}\n{}",
                r.pretty()
            );
        }
    }
    println!(
        "lab: EgressHostBlocked: {}",
        r.json["findings"][0]["message"]
            .as_str()
            .unwrap_or_default()
    );

    // The same through the operator's path: spec.egress parsed by ValidSpec, written into the
    // probe Job's arguments, run by `regcheck probe` in the lab; its compact report (the
    // termination message) says the same.
    let r = lab.probe_from_spec(serde_json::json!({
        "registry": REGISTRY,
        "timeoutSeconds": 5,
        "egress": {
            "profiles": ["AKS"],
            "parameters": {"region": "eastus", "apiServer": lab.field("aksApiServer")}
        }
    }));
    expect_egress(&r, &blocked, &serde_json::to_string_pretty(&r).unwrap());
}

fn egress_profile_aks_all_reachable() {
    let lab = lab!("healthy-public");
    let args = aks_args(&lab);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = lab.check(&argv);
    r.expect_healthy();
    expect_egress(&r.json, &[], &r.pretty());
    assert!(
        r.json.pointer("/egress/notProbed").is_none(),
        "every AKS rule has a host with these parameters\n{}",
        r.pretty()
    );
    // Without the parameters the cluster-specific rules are reported, not guessed.
    let r = lab.check(&[REGISTRY, "--egress-profile", "AKS", "--timeout", "5s"]);
    r.expect_healthy();
    let np: Vec<&str> = r
        .json
        .pointer("/egress/notProbed")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|n| n["rule"]["fqdn"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        np,
        vec!["*.hcp.<location>.azmk8s.io", "*.data.mcr.microsoft.com"],
        "{}",
        r.pretty()
    );
}

// ---------------------------------------------------------------------------------------------
// Harness

// ---------------------------------------------------------------------------------------------
// containerd's view (issue 14): what a node probe reads from the host, given to `regcheck check`
// with the same flags (--containerd-config-dir, --runtime-proxy-from, --host-resolv-conf).

/// A host's containerd configuration: `certs.d/<registry>/hosts.toml` and a drop-in directory.
struct HostFiles {
    dir: tempfile::TempDir,
}

impl HostFiles {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("certs.d")).unwrap();
        std::fs::create_dir_all(dir.path().join("containerd.service.d")).unwrap();
        Self { dir }
    }
    fn hosts_toml(&self, text: &str) -> &Self {
        let d = self.dir.path().join("certs.d").join(REGISTRY);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("hosts.toml"), text).unwrap();
        self
    }
    fn certs_d(&self) -> String {
        self.dir.path().join("certs.d").display().to_string()
    }
    fn dropin_dir(&self) -> String {
        self.dir
            .path()
            .join("containerd.service.d")
            .display()
            .to_string()
    }
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Run {
    fn verdict(&self) -> &str {
        self.json["verdict"].as_str().unwrap_or_default()
    }
    fn would_use(&self) -> Option<&str> {
        self.json
            .pointer("/containerd/wouldUse")
            .and_then(Value::as_str)
    }
}

const MIRROR_FIRST: &str = "server = \"https://labreg.azurecr.io\"\n\n[host.\"https://mirror.lab.example\"]\n  capabilities = [\"pull\", \"resolve\"]\n";

/// containerd tries the mirror first; it is down (nothing listens), the upstream works: pulls
/// still work through the silent fallback, so the mirror is a Warning and the verdict Degraded.
fn mirror_down_upstream_works() {
    let lab = lab!("mirror-down");
    let host = HostFiles::new();
    host.hosts_toml(MIRROR_FIRST);
    let r = lab.check(&[
        REGISTRY,
        "--containerd-config-dir",
        &host.certs_d(),
        "--timeout",
        "4s",
    ]);
    r.expect(
        "MirrorUnreachable",
        &[MIRROR, MIRROR_IP, "https://labreg.azurecr.io/v2"],
    );
    assert_eq!(r.verdict(), "Degraded", "{}", r.pretty());
    assert_eq!(
        r.would_use(),
        Some("https://labreg.azurecr.io/v2"),
        "{}",
        r.pretty()
    );
    assert!(
        r.reasons().iter().all(|x| *x == "MirrorUnreachable"),
        "{}",
        r.pretty()
    );
}

/// The mirror's certificate comes from its own CA: with hosts.toml's `ca` containerd (and the
/// probe) trust it and pull from the mirror; without it the mirror fails TLS and is skipped.
fn mirror_with_its_own_ca_from_hosts_toml() {
    let lab = lab!("mirror-own-ca");
    let host = HostFiles::new();
    host.hosts_toml(&format!(
        "{MIRROR_FIRST}  ca = \"{}\"\n",
        lab.field("mirrorCaFile")
    ));
    let r = lab.check(&[REGISTRY, "--containerd-config-dir", &host.certs_d()]);
    r.expect_healthy();
    assert_eq!(
        r.would_use(),
        Some("https://mirror.lab.example/v2"),
        "{}",
        r.pretty()
    );
    // The same mirror without the `ca` line: untrusted, containerd falls back.
    host.hosts_toml(MIRROR_FIRST);
    let r = lab.check(&[REGISTRY, "--containerd-config-dir", &host.certs_d()]);
    r.expect("MirrorUnreachable", &[MIRROR, "Lab Mirror CA"]);
    assert_eq!(r.verdict(), "Degraded", "{}", r.pretty());
    assert_eq!(
        r.would_use(),
        Some("https://labreg.azurecr.io/v2"),
        "{}",
        r.pretty()
    );
}

/// A `plain-http` mirror (`http://` in hosts.toml) that works: containerd pulls from it.
fn plain_http_mirror() {
    let lab = lab!("mirror-plain-http");
    let host = HostFiles::new();
    host.hosts_toml(
        "server = \"https://labreg.azurecr.io\"\n\n[host.\"http://mirror.lab.example:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
    );
    let r = lab.check(&[REGISTRY, "--containerd-config-dir", &host.certs_d()]);
    r.expect_healthy();
    assert_eq!(
        r.would_use(),
        Some("http://mirror.lab.example:5000/v2"),
        "{}",
        r.pretty()
    );
    assert_eq!(
        r.json.pointer("/containerd/hosts/0/plainHttp"),
        Some(&Value::Bool(true)),
        "{}",
        r.pretty()
    );
}

/// The node reaches the registry only through squid, which only containerd's drop-in names:
/// direct, the login server times out; with the drop-in directory the check is healthy and the
/// report names the drop-in as the proxy's source.
fn proxy_taken_from_containerd_dropin() {
    let lab = lab!("proxy-from-dropin");
    let host = HostFiles::new();
    let r = lab.check(&[REGISTRY, "--timeout", "3s"]);
    r.expect("ConnectionTimedOut", &[REGISTRY, PUB_LOGIN]);
    std::fs::write(
        std::path::Path::new(&host.dropin_dir()).join("http-proxy.conf"),
        format!(
            "[Service]\nEnvironment=\"HTTPS_PROXY={SQUID}\" \"NO_PROXY=localhost,127.0.0.1\"\n"
        ),
    )
    .unwrap();
    let r = lab.check(&[
        REGISTRY,
        "--image",
        IMAGE,
        "--runtime-proxy-from",
        &host.dropin_dir(),
    ]);
    r.expect_healthy();
    let source = r.json["proxySource"].as_str().unwrap_or_default();
    assert!(
        source.contains("http-proxy.conf") && source.contains("HTTPS_PROXY"),
        "{}",
        r.pretty()
    );
    assert_eq!(
        r.endpoint(REGISTRY)
            .pointer("/route/proxy")
            .and_then(Value::as_str),
        Some(SQUID),
        "{}",
        r.pretty()
    );
}

/// containerd resolves with the host's resolv.conf, the probe pod with the kubelet's: one of
/// them points at a resolver that refuses. Host broken: containerd cannot resolve the registry
/// (Unreachable) although the kubelet's resolver can; kubelet's broken: pulls work (Degraded).
fn host_and_kubelet_resolvers_differ() {
    let lab = lab!("resolver-split");
    let host = HostFiles::new();
    let broken = lab.field("brokenDnsServer").to_string();
    let bad = host.file(
        "bad-resolv.conf",
        &format!("nameserver {broken}\noptions timeout:1 attempts:1\n"),
    );
    let good = host.file(
        "good-resolv.conf",
        &format!("nameserver {DNS}\noptions timeout:1 attempts:1\n"),
    );
    let r = lab.check(&[
        REGISTRY,
        "--host-resolv-conf",
        &bad,
        "--resolv-conf",
        &good,
        "--timeout",
        "4s",
    ]);
    assert_eq!(r.verdict(), "Unreachable", "{}", r.pretty());
    assert!(r.reasons()[0].starts_with("DNS"), "{}", r.pretty());
    assert!(r.reasons().contains(&"DNSAnswersDiffer"), "{}", r.pretty());
    assert_eq!(
        r.json.pointer("/resolvers/differ"),
        Some(&Value::Bool(true))
    );
    let d = r.json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "DNSAnswersDiffer")
        .unwrap();
    let msg = d["message"].as_str().unwrap();
    for want in [broken.as_str(), DNS, PUB_LOGIN, "containerd's pulls fail"] {
        assert!(msg.contains(want), "{want}: {msg}");
    }
    // Swapped: the host's (containerd's) resolver works, the kubelet's does not.
    let r = lab.check(&[
        REGISTRY,
        "--host-resolv-conf",
        &good,
        "--resolv-conf",
        &bad,
        "--timeout",
        "4s",
    ]);
    r.expect("DNSAnswersDiffer", &[REGISTRY, &broken, DNS, "pulls work"]);
    assert_eq!(r.verdict(), "Degraded", "{}", r.pretty());
}

/// Why the lab cannot run here, if it cannot (decided once per test binary).
fn prerequisites() -> &'static Result<(), String> {
    static ONCE: OnceLock<Result<(), String>> = OnceLock::new();
    ONCE.get_or_init(|| {
        if !is_root() {
            return Err(
                "not running as root (the lab needs network namespaces and iptables)".into(),
            );
        }
        // Leftovers of an earlier run that was killed.
        let _ = Command::new("python3").args([LAB_PY, "gc"]).status();
        let install = Command::new("python3")
            .args([LAB_PY, "install"])
            .output()
            .map_err(|e| format!("cannot run python3 {LAB_PY}: {e}"))?;
        if !install.status.success() {
            return Err(format!(
                "cannot install the lab's Debian packages: {}",
                String::from_utf8_lossy(&install.stderr).trim()
            ));
        }
        let check = Command::new("python3")
            .args([LAB_PY, "check"])
            .output()
            .map_err(|e| format!("cannot run python3 {LAB_PY}: {e}"))?;
        if !check.status.success() {
            return Err(String::from_utf8_lossy(&check.stdout).trim().to_string());
        }
        Ok(())
    })
}

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

/// One running lab; `Drop` stops its servers and deletes its namespaces, also on failure.
struct Lab {
    id: String,
    info: Value,
}

impl Lab {
    /// Brings up `scenario`; panics when it cannot be built.
    fn up(scenario: &str) -> Lab {
        // Only reached as root (or with REGCHECK_LAB_REQUIRED=1): a lab that cannot be built
        // is a failure, never a silent pass.
        if let Err(why) = prerequisites() {
            panic!("lab scenario {scenario} cannot run: {why}");
        }
        // Unique per test and process: tests run in parallel, each in its own namespaces.
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let test = CURRENT_TEST.with(|c| c.borrow().replace("::", "-"));
        let test: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .take(40)
            .collect();
        let id = format!(
            "{test}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("python3")
            .args([
                LAB_PY,
                "up",
                scenario,
                "--id",
                &id,
                "--owner",
                &std::process::id().to_string(),
            ])
            .output()
            .expect("run lab.py up");
        // From here on the namespaces may exist: make sure they go away.
        let mut lab = Lab {
            id,
            info: Value::Null,
        };
        assert!(
            out.status.success(),
            "lab.py up {scenario} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab.info = serde_json::from_slice(&out.stdout).expect("lab.py up prints JSON");
        lab
    }

    fn field(&self, k: &str) -> &str {
        self.info[k]
            .as_str()
            .unwrap_or_else(|| panic!("lab info has no {k}: {}", self.info))
    }

    /// `regcheck check ARGS --ca-file <lab CA> --output json` in the client namespace.
    fn check(&self, args: &[&str]) -> Run {
        self.check_env(args, &[], None)
    }

    /// `--image IMAGE --username labuser --password-stdin`, the password on standard input.
    fn pull_as(&self, image: &str, password: &str) -> Run {
        let args = [
            REGISTRY,
            "--image",
            image,
            "--username",
            "labuser",
            "--password-stdin",
        ];
        self.check_env(&args, &[], Some(&format!("{password}\n")))
    }

    /// A check's spec as the operator handles it: parsed by `ValidSpec`, turned into the pod
    /// probe Job's arguments, and run with `regcheck probe` in the client namespace. Returns
    /// the termination message (the compact report).
    fn probe_from_spec(&self, spec: Value) -> Value {
        use regcheck::operator::{crd::RegistryConnectivityCheck, jobs, spec::ValidSpec};
        let check: RegistryConnectivityCheck = serde_json::from_value(serde_json::json!({
            "apiVersion": "regcheck.dev/v1alpha1",
            "kind": "RegistryConnectivityCheck",
            "metadata": {"name": "lab", "namespace": "default", "uid": "u1"},
            "spec": spec,
        }))
        .expect("a check");
        let valid = ValidSpec::parse(&check.spec).expect("a valid spec");
        let args = jobs::probe_args(&jobs::ProbeJob {
            check: &check,
            spec: &valid,
            run_id: "r1",
            context: regcheck::operator::crd::ProbeContext::Pod,
            target: None,
            image: "regcheck:lab",
            operator_namespace: "regcheck-system",
            node_addresses: &[],
        });
        let log = format!("{}/termination-log", self.field("stateDir"));
        let out = Command::new("ip")
            .args(["netns", "exec", self.field("clientNs"), REGCHECK])
            .args(&args)
            .args(["--ca-file", self.field("caFile"), "--termination-log", &log])
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .output()
            .expect("run regcheck probe");
        let text = std::fs::read_to_string(&log).unwrap_or_else(|e| {
            panic!(
                "regcheck probe {args:?} wrote no termination log ({e}): exit {:?}\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        serde_json::from_str(&text).expect("the termination message is JSON")
    }

    fn check_env(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.field("clientNs"), REGCHECK, "check"])
            .args(args)
            .args(["--ca-file", self.field("caFile"), "--output", "json"]);
        for k in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "NO_PROXY",
            "no_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(k);
        }
        cmd.envs(env.iter().copied());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let line = format!(
            "regcheck check {} (env {env:?}) in {}",
            args.join(" "),
            self.field("clientNs")
        );
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn ip netns exec regcheck");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().expect("wait for regcheck");
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "{line}: output is not JSON ({e}); exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                out.status.code()
            )
        });
        Run {
            line,
            code: out.status.code().unwrap_or(-1),
            json,
            stderr,
            elapsed,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("python3")
            .args([LAB_PY, "down", "--id", &self.id])
            .stdout(Stdio::null())
            .status();
    }
}

/// One run of the binary.
struct Run {
    line: String,
    code: i32,
    json: Value,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn pretty(&self) -> String {
        format!(
            "{}\nexit {} after {:?}\n{}\nstderr:\n{}",
            self.line,
            self.code,
            self.elapsed,
            serde_json::to_string_pretty(&self.json).unwrap_or_default(),
            self.stderr
        )
    }

    fn reasons(&self) -> Vec<&str> {
        self.json["findings"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["reason"].as_str()).collect())
            .unwrap_or_default()
    }

    fn endpoint(&self, host: &str) -> &Value {
        self.json["endpoints"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["host"] == host))
            .unwrap_or_else(|| panic!("no endpoint {host}\n{}", self.pretty()))
    }

    /// The primary finding is `reason`, its message names every `evidence` string, exit code 1.
    fn expect(&self, reason: &str, evidence: &[&str]) {
        let f = &self.json["findings"][0];
        assert_eq!(f["reason"], reason, "primary finding\n{}", self.pretty());
        let msg = f["message"].as_str().unwrap_or_default();
        for e in evidence {
            assert!(
                msg.contains(e),
                "message lacks {e:?}: {msg}\n{}",
                self.pretty()
            );
        }
        assert_eq!(
            self.code,
            1,
            "exit code for a diagnosed problem\n{}",
            self.pretty()
        );
        assert_ne!(self.json["verdict"], "Healthy", "{}", self.pretty());
        println!("lab: {reason}: {msg}");
    }

    fn expect_healthy(&self) {
        assert_eq!(self.reasons(), vec!["Healthy"], "{}", self.pretty());
        assert_eq!(self.json["verdict"], "Healthy", "{}", self.pretty());
        assert_eq!(self.code, 0, "{}", self.pretty());
    }

    /// Finished within the deadline given with `--timeout` (plus start-up slack).
    fn expect_within(&self, deadline: Duration) {
        let slack = Duration::from_millis(1500);
        assert!(
            self.elapsed <= deadline + slack,
            "took {:?}, deadline {deadline:?}\n{}",
            self.elapsed,
            self.pretty()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Test runner

thread_local! {
    /// Name of the test running on this thread (for namespace ids).
    static CURRENT_TEST: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let required = std::env::var_os("REGCHECK_LAB_REQUIRED").is_some_and(|v| v == "1");
    let skip = if is_root() || required {
        None
    } else {
        let why = "not running as root (the lab needs network namespaces and iptables)";
        let _ = writeln!(
            std::io::stderr(),
            "lab: SKIPPED, every lab test is ignored: {why}"
        );
        Some(why)
    };
    let tests: &[(&str, fn())] = &[
        ("healthy_public_registry", healthy_public_registry),
        ("healthy_private_endpoint", healthy_private_endpoint),
        ("healthy_through_proxy", healthy_through_proxy),
        (
            "healthy_lab_gives_no_false_alarm_in_20_runs",
            healthy_lab_gives_no_false_alarm_in_20_runs,
        ),
        ("name_does_not_exist", name_does_not_exist),
        (
            "custom_dns_without_forwarder_resolves_public",
            custom_dns_without_forwarder_resolves_public,
        ),
        (
            "private_zone_without_data_endpoint_record",
            private_zone_without_data_endpoint_record,
        ),
        ("nameserver_unreachable", nameserver_unreachable),
        ("firewall_drops_login_server", firewall_drops_login_server),
        (
            "firewall_drops_data_endpoint_only",
            firewall_drops_data_endpoint_only,
        ),
        (
            "firewall_drops_data_endpoint_probed_directly",
            firewall_drops_data_endpoint_probed_directly,
        ),
        (
            "fqdn_firewall_resets_after_client_hello",
            fqdn_firewall_resets_after_client_hello,
        ),
        ("path_mtu_black_hole", path_mtu_black_hole),
        (
            "firewall_drop_of_the_handshake_is_not_an_mtu_problem",
            firewall_drop_of_the_handshake_is_not_an_mtu_problem,
        ),
        (
            "ipv6_path_broken_while_ipv4_works",
            ipv6_path_broken_while_ipv4_works,
        ),
        (
            "ipv6_only_client_and_registry_without_aaaa",
            ipv6_only_client_and_registry_without_aaaa,
        ),
        (
            "ipv6_only_client_pulls_over_ipv6",
            ipv6_only_client_pulls_over_ipv6,
        ),
        (
            "tls_inspection_presents_another_ca",
            tls_inspection_presents_another_ca,
        ),
        (
            "registry_network_rules_deny_client_ip",
            registry_network_rules_deny_client_ip,
        ),
        (
            "registry_network_rules_deny_nat_ip",
            registry_network_rules_deny_nat_ip,
        ),
        (
            "storage_account_denies_the_blob",
            storage_account_denies_the_blob,
        ),
        (
            "token_endpoint_fails_while_v2_answers",
            token_endpoint_fails_while_v2_answers,
        ),
        ("server_never_sends_headers", server_never_sends_headers),
        ("proxy_denies_connect", proxy_denies_connect),
        ("proxy_closes_connection", proxy_closes_connection),
        ("proxy_requires_credentials", proxy_requires_credentials),
        (
            "private_endpoint_not_exempted_from_proxy",
            private_endpoint_not_exempted_from_proxy,
        ),
        (
            "no_proxy_exempting_the_registry_is_healthy",
            no_proxy_exempting_the_registry_is_healthy,
        ),
        (
            "private_endpoint_address_without_route",
            private_endpoint_address_without_route,
        ),
        ("registry_throttles", registry_throttles),
        ("wrong_credentials", wrong_credentials),
        ("image_missing", image_missing),
        ("right_credentials_pull_works", right_credentials_pull_works),
        ("anonymous_pull_refused", anonymous_pull_refused),
        ("wrong_credentials_basic_auth", wrong_credentials_basic_auth),
        ("image_missing_basic_auth", image_missing_basic_auth),
        ("mirror_down_upstream_works", mirror_down_upstream_works),
        (
            "mirror_with_its_own_ca_from_hosts_toml",
            mirror_with_its_own_ca_from_hosts_toml,
        ),
        ("plain_http_mirror", plain_http_mirror),
        (
            "proxy_taken_from_containerd_dropin",
            proxy_taken_from_containerd_dropin,
        ),
        (
            "host_and_kubelet_resolvers_differ",
            host_and_kubelet_resolvers_differ,
        ),
        (
            "egress_profile_aks_behind_fqdn_firewall",
            egress_profile_aks_behind_fqdn_firewall,
        ),
        (
            "egress_profile_aks_all_reachable",
            egress_profile_aks_all_reachable,
        ),
    ];
    let trials = tests
        .iter()
        .map(|&(name, test)| {
            libtest_mimic::Trial::test(name, move || {
                CURRENT_TEST.with(|c| *c.borrow_mut() = name.to_string());
                test();
                Ok(())
            })
            .with_ignored_flag(skip.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
