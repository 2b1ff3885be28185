//! Integration tests of `regcheck check` against real servers started in-process on loopback.

mod support;

use support::*;

/// Self-tests of the fixtures, so that a failing check test points at the engine, not the lab.
mod fixtures {
    use super::*;
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.metadata.recursion_desired = true;
        m.to_vec().unwrap()
    }

    async fn udp(addr: std::net::SocketAddr, q: &[u8]) -> Message {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(q, addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    #[test]
    fn dns_server_answers() {
        let lab = Lab::new();
        let many: Vec<Ipv4Addr> = (1..=250).map(|i| Ipv4Addr::new(127, 0, 1, i)).collect();
        let dns = lab.dns(&[
            ("registry.test", Dns::A(vec![LOOPBACK])),
            ("alias.test", Dns::Cname("registry.test".into())),
            ("loop1.test", Dns::Cname("loop2.test".into())),
            ("loop2.test", Dns::Cname("loop1.test".into())),
            ("fail.test", Dns::ServFail),
            ("many.test", Dns::A(many)),
        ]);
        lab.block_on(async {
            let m = udp(dns.addr, &query("registry.test.", RecordType::A)).await;
            assert_eq!(m.answers.len(), 1);
            let m = udp(dns.addr, &query("alias.test.", RecordType::A)).await;
            assert_eq!(m.answers.len(), 2);
            let m = udp(dns.addr, &query("loop1.test.", RecordType::A)).await;
            assert_eq!(m.answers.len(), 2);
            let m = udp(dns.addr, &query("nope.test.", RecordType::A)).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
            let m = udp(dns.addr, &query("fail.test.", RecordType::A)).await;
            assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
            let m = udp(dns.addr, &query("many.test.", RecordType::A)).await;
            assert!(m.metadata.truncation);
            // TCP has the whole answer.
            let mut s = tokio::net::TcpStream::connect(dns.addr).await.unwrap();
            let q = query("many.test.", RecordType::A);
            s.write_u16(q.len() as u16).await.unwrap();
            s.write_all(&q).await.unwrap();
            let len = s.read_u16().await.unwrap();
            let mut buf = vec![0u8; len as usize];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(Message::from_vec(&buf).unwrap().answers.len(), 250);
        });
        assert_eq!(dns.query_count(), 7);
    }

    #[test]
    fn https_and_proxy_serve_the_registry() {
        let lab = Lab::new();
        let pki = Pki::new(&lab);
        let l = lab.listener();
        let port = l.port();
        let reg = lab.https(
            l,
            &pki.leaf(&["registry.test"]),
            TlsMode::Serve(registry_router("registry.test", port, "data.test", 1, None)),
        );
        let proxy = lab.proxy(ProxyMode::Allow, &[("registry.test", LOOPBACK)]);
        let pem = std::fs::read(&pki.ca_file).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let text = lab.block_on(async {
            let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
            tcp.write_all(
                format!(
                    "CONNECT registry.test:{port} HTTP/1.1\r\nHost: registry.test:{port}\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let mut head = [0u8; 39];
            tcp.read_exact(&mut head).await.unwrap();
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            let name = rustls::pki_types::ServerName::try_from("registry.test").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .unwrap();
            tls.write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            let _ = tls.read_to_end(&mut out).await;
            String::from_utf8_lossy(&out).into_owned()
        });
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
        assert!(
            text.contains(&format!("realm=\"https://registry.test:{port}/token\"")),
            "{text}"
        );
        assert_eq!(reg.paths(), vec!["/v2/".to_string()]);
        assert_eq!(proxy.connects.lock().unwrap().len(), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const REGISTRY: &str = "registry.test";
const DATA: &str = "data.test";

/// `regcheck check TARGET` against the lab: its resolv.conf, no hosts file, the test CA,
/// JSON output; `--no-proxy` unless `extra` names `--proxy`, `--timeout 5s` unless `extra`
/// names `--timeout`.
fn check_args(resolv: &Path, ca: &Path, target: &str, extra: &[&str]) -> Vec<String> {
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
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--proxy") {
        a.push("--no-proxy".into());
    }
    if !extra.contains(&"--timeout") {
        a.extend(["--timeout".into(), "5s".into()]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// String at a JSON pointer, or `<missing>`.
fn s(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "<missing>".into(),
    }
}

/// Asserts exit code, primary reason and that the primary message names every needle; returns
/// the report.
#[track_caller]
fn expect_primary(run: &Run, code: i32, reason: &str, needles: &[&str]) -> Value {
    let j = run.json();
    assert_eq!(
        s(&j, "/findings/0/reason"),
        reason,
        "primary finding\n{}",
        run.dump()
    );
    assert_eq!(run.code, code, "exit code\n{}", run.dump());
    let msg = s(&j, "/findings/0/message");
    for n in needles {
        assert!(
            msg.contains(n),
            "primary message {msg:?} does not name {n:?}\n{}",
            run.dump()
        );
    }
    assert_eq!(s(&j, "/schemaVersion"), "1");
    j
}

#[track_caller]
fn assert_field(j: &Value, ptr: &str, want: &str, run: &Run) {
    assert_eq!(s(j, ptr), want, "{ptr}\n{}", run.dump());
}

#[track_caller]
fn assert_within(run: &Run, limit: Duration) {
    assert!(
        run.elapsed < limit,
        "took {:?}, more than {limit:?}\n{}",
        run.elapsed,
        run.dump()
    );
}

/// A lab with the test PKI and a DNS server answering `table`.
struct Base {
    lab: Lab,
    pki: Pki,
    dns: DnsServer,
    resolv: PathBuf,
}

fn base(table: &[(&str, Dns)]) -> Base {
    let lab = Lab::new();
    let pki = Pki::new(&lab);
    let dns = lab.dns(table);
    let resolv = lab.resolv_conf(&dns);
    Base {
        lab,
        pki,
        dns,
        resolv,
    }
}

impl Base {
    fn run(&self, target: &str, extra: &[&str]) -> Run {
        regcheck(
            &check_args(&self.resolv, &self.pki.ca_file, target, extra),
            None,
        )
    }
}

fn loopback_names() -> Vec<(&'static str, Dns)> {
    vec![
        (REGISTRY, Dns::A(vec![LOOPBACK])),
        (DATA, Dns::A(vec![LOOPBACK])),
    ]
}

/// A healthy registry (`registry.test`) and data endpoint (`data.test`) on loopback;
/// `routes(router, registry_port, data_port)` may change the registry's routes.
struct World {
    b: Base,
    reg: HttpsServer,
    data: HttpsServer,
}

fn world_with(
    table: &[(&str, Dns)],
    creds: Option<(&str, &str)>,
    routes: impl FnOnce(Router, u16, u16) -> Router,
    data_routes: impl FnOnce(Router, u16) -> Router,
) -> World {
    let b = base(table);
    let dl = b.lab.listener();
    let dport = dl.port();
    let data = b.lab.https(
        dl,
        &b.pki.leaf(&[DATA]),
        TlsMode::Serve(data_routes(data_router(), dport)),
    );
    let l = b.lab.listener();
    let port = l.port();
    let router = routes(
        registry_router(REGISTRY, port, DATA, dport, creds),
        port,
        dport,
    );
    let reg = b
        .lab
        .https(l, &b.pki.leaf(&[REGISTRY]), TlsMode::Serve(router));
    World { b, reg, data }
}

fn world(routes: impl FnOnce(Router, u16, u16) -> Router) -> World {
    world_with(&loopback_names(), None, routes, |r, _| r)
}

impl World {
    fn target(&self) -> String {
        format!("{REGISTRY}:{}", self.reg.port())
    }
    fn run(&self, extra: &[&str]) -> Run {
        self.b.run(&self.target(), extra)
    }
}

fn image() -> String {
    format!("{REPO}:{TAG}")
}

// ---------------------------------------------------------------------------------------------
// Healthy paths
// ---------------------------------------------------------------------------------------------

#[test]
fn healthy_registry() {
    let w = world(|r, _, _| r);
    let run = w.run(&[]);
    let j = expect_primary(&run, 0, "Healthy", &[REGISTRY]);
    assert_field(&j, "/verdict", "Healthy", &run);
    assert_eq!(j["findings"].as_array().unwrap().len(), 1, "{}", run.dump());
    let ep = &j["endpoints"][0];
    assert_eq!(ep["host"], REGISTRY);
    assert_eq!(ep["port"], w.reg.port());
    assert_eq!(ep["role"], "LoginServer");
    assert_eq!(ep["dns"]["system"]["outcome"], "Resolved");
    assert_eq!(ep["dns"]["system"]["addresses"][0]["ip"], "127.0.0.1");
    assert_eq!(ep["dns"]["system"]["answeredBy"], w.b.dns.addr.to_string());
    assert_eq!(ep["tcp"][0]["outcome"], "Connected");
    assert_eq!(ep["tls"]["outcome"], "Verified");
    assert!(
        s(ep, "/tls/issuer").contains(TRUSTED_CA_CN),
        "{}",
        run.dump()
    );
    assert_eq!(ep["http"]["outcome"], "Response");
    assert_eq!(ep["http"]["status"], 401);
    assert_eq!(
        ep["http"]["challenge"]["realm"],
        format!("https://{REGISTRY}:{}/token", w.reg.port())
    );
    assert!(j.get("pull").is_none(), "{}", run.dump());
    assert_eq!(w.reg.paths(), vec!["/v2/".to_string()]);
}

#[test]
fn healthy_pull_follows_redirect_to_data_endpoint() {
    let w = world(|r, _, _| r);
    let img = image();
    let data_ep = format!("{DATA}:{}", w.data.port());
    let run = w.run(&["--image", &img, "--data-endpoint", &data_ep]);
    let j = expect_primary(&run, 0, "Healthy", &[REGISTRY]);
    assert_field(&j, "/verdict", "Healthy", &run);
    assert_eq!(j["findings"].as_array().unwrap().len(), 1, "{}", run.dump());
    let p = &j["pull"];
    assert_eq!(p["image"], img.as_str());
    assert_eq!(p["token"]["outcome"], "Ok", "{}", run.dump());
    assert_eq!(p["manifest"]["outcome"], "Ok", "{}", run.dump());
    assert_eq!(p["blob"]["outcome"], "Ok", "{}", run.dump());
    assert_eq!(p["blob"]["host"], DATA, "{}", run.dump());
    let redirects: Vec<String> = p["redirects"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        redirects.contains(&data_ep),
        "{redirects:?}\n{}",
        run.dump()
    );
    // The smallest blob is the config; its digest was verified.
    let img_data = Image::new();
    assert_eq!(p["blobDigest"], digest(&img_data.config), "{}", run.dump());
    assert_eq!(p["blobSize"], img_data.config.len());
    // Both endpoints were probed and the data endpoint served the blob.
    let roles: Vec<String> = j["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| s(e, "/role"))
        .collect();
    assert!(
        roles.contains(&"DataEndpoint".to_string()),
        "{}",
        run.dump()
    );
    assert!(
        w.data
            .paths()
            .iter()
            .any(|p| p.starts_with(&format!("/blobs/{}", digest(&img_data.config)))),
        "{:?}",
        w.data.paths()
    );
    let reg_paths = w.reg.paths();
    assert!(
        reg_paths.iter().any(|p| p.starts_with("/token")),
        "{reg_paths:?}"
    );
    assert!(
        reg_paths.contains(&format!("/v2/{REPO}/manifests/{TAG}")),
        "{reg_paths:?}"
    );
}

#[test]
fn healthy_through_allowing_proxy() {
    let w = world(|r, _, _| r);
    let proxy =
        w.b.lab
            .proxy(ProxyMode::Allow, &[(REGISTRY, LOOPBACK), (DATA, LOOPBACK)]);
    let url = proxy.url();
    let img = image();
    let run = w.run(&["--proxy", &url, "--image", &img]);
    let j = expect_primary(&run, 0, "Healthy", &[REGISTRY]);
    let ep = &j["endpoints"][0];
    assert_eq!(ep["proxy"]["outcome"], "Connected", "{}", run.dump());
    assert!(
        s(ep, "/route/proxy").contains(&proxy.addr.to_string()),
        "{}",
        run.dump()
    );
    assert_eq!(ep["tls"]["outcome"], "Verified");
    assert_eq!(j["pull"]["blob"]["outcome"], "Ok", "{}", run.dump());
    let connects = proxy.connects.lock().unwrap().clone();
    assert!(connects.contains(&w.target()), "{connects:?}");
    assert!(
        connects.contains(&format!("{DATA}:{}", w.data.port())),
        "{connects:?}"
    );
}

#[test]
fn hundreds_of_a_records_still_work() {
    // 300 loopback addresses, all serving the registry on the same port: the answer needs TCP
    // after a truncated UDP reply, and every address a client may pick works.
    let mut ips = vec![LOOPBACK];
    ips.extend(
        (1..300u32).map(|i| Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, (i % 250) as u8 + 1)),
    );
    let b = base(&[
        (REGISTRY, Dns::A(ips.clone())),
        (DATA, Dns::A(vec![LOOPBACK])),
    ]);
    let l = b.lab.listener();
    let port = l.port();
    let leaf = b.pki.leaf(&[REGISTRY]);
    let router = registry_router(REGISTRY, port, DATA, 1, None);
    let mut servers = vec![b.lab.https(l, &leaf, TlsMode::Serve(router.clone()))];
    for ip in &ips[1..] {
        let l = b
            .lab
            .listener_at(*ip, port)
            .unwrap_or_else(|| panic!("{ip}:{port} is taken"));
        servers.push(b.lab.https(l, &leaf, TlsMode::Serve(router.clone())));
    }
    let run = b.run(&format!("{REGISTRY}:{port}"), &[]);
    assert_within(&run, Duration::from_secs(20));
    let j = expect_primary(&run, 0, "Healthy", &[REGISTRY]);
    let ep = &j["endpoints"][0];
    assert_eq!(ep["dns"]["system"]["outcome"], "Resolved", "{}", run.dump());
    assert!(
        ep["dns"]["system"]["addresses"]
            .as_array()
            .map_or(0, |a| a.len())
            >= 8,
        "{}",
        run.dump()
    );
    assert_eq!(ep["tls"]["outcome"], "Verified", "{}", run.dump());
    assert_eq!(ep["http"]["status"], 401, "{}", run.dump());
    // The full answer came over TCP (more than the UDP answer could hold).
    assert!(
        b.dns.query_count() >= 2,
        "{:?}",
        b.dns.queries.lock().unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------------------------

#[test]
fn dns_name_not_found() {
    let b = base(&[(DATA, Dns::A(vec![LOOPBACK]))]);
    let run = b.run("registry.test:443", &[]);
    let j = expect_primary(&run, 1, "DNSNameNotFound", &[REGISTRY, "NXDOMAIN"]);
    assert_field(&j, "/verdict", "Unreachable", &run);
    assert_field(&j, "/endpoints/0/dns/system/outcome", "NameNotFound", &run);
    assert!(j["endpoints"][0].get("tcp").is_none(), "{}", run.dump());
    assert!(b.dns.query_count() > 0);
}

#[test]
fn dns_server_failure() {
    let b = base(&[(REGISTRY, Dns::ServFail)]);
    let run = b.run("registry.test:443", &[]);
    let j = expect_primary(&run, 1, "DNSServerFailure", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/dns/system/outcome", "ServerFailure", &run);
    assert_field(&j, "/verdict", "Unreachable", &run);
}

#[test]
fn dns_refused_is_a_server_failure() {
    let b = base(&[(REGISTRY, Dns::Refused)]);
    let run = b.run("registry.test:443", &[]);
    let j = expect_primary(&run, 1, "DNSServerFailure", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/dns/system/outcome", "Refused", &run);
}

#[test]
fn dns_server_unreachable_respects_the_deadline() {
    let b = base(&[(REGISTRY, Dns::Drop)]);
    let run = b.run("registry.test:443", &["--timeout", "2s"]);
    assert_within(&run, Duration::from_millis(3500));
    let dns = b.dns.addr.to_string();
    let j = expect_primary(&run, 1, "DNSServerUnreachable", &[REGISTRY, &dns]);
    let outcome = s(&j, "/endpoints/0/dns/system/outcome");
    assert!(
        outcome == "Timeout" || outcome == "Unreachable",
        "{outcome}\n{}",
        run.dump()
    );
}

#[test]
fn cname_loop() {
    let b = base(&[
        ("loop1.test", Dns::Cname("loop2.test".into())),
        ("loop2.test", Dns::Cname("loop1.test".into())),
    ]);
    let run = b.run("loop1.test:443", &[]);
    let j = expect_primary(&run, 1, "DNSServerFailure", &["loop1.test"]);
    assert_field(&j, "/endpoints/0/dns/system/outcome", "CnameLoop", &run);
}

// ---------------------------------------------------------------------------------------------
// TCP and TLS
// ---------------------------------------------------------------------------------------------

#[test]
fn connection_refused() {
    let b = base(&loopback_names());
    let port = b.lab.closed_port();
    let run = b.run(&format!("{REGISTRY}:{port}"), &[]);
    let addr = format!("127.0.0.1:{port}");
    let j = expect_primary(&run, 1, "ConnectionRefused", &[REGISTRY, &addr]);
    assert_field(&j, "/endpoints/0/tcp/0/outcome", "Refused", &run);
    assert_field(&j, "/endpoints/0/tcp/0/address", &addr, &run);
}

#[test]
fn tls_reset_after_client_hello() {
    let b = base(&loopback_names());
    let srv = b.lab.reset_after_client_hello();
    let run = b.run(&format!("{REGISTRY}:{}", srv.port()), &[]);
    let j = expect_primary(&run, 1, "TLSResetAfterClientHello", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/tcp/0/outcome", "Connected", &run);
    assert_field(
        &j,
        "/endpoints/0/tls/outcome",
        "ResetAfterClientHello",
        &run,
    );
    assert!(srv.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[test]
fn tls_handshake_timeout() {
    let b = base(&loopback_names());
    let srv = b.lab.silent();
    let run = b.run(&format!("{REGISTRY}:{}", srv.port()), &["--timeout", "2s"]);
    assert_within(&run, Duration::from_millis(3500));
    let j = expect_primary(&run, 1, "TLSHandshakeTimeout", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/tcp/0/outcome", "Connected", &run);
    assert_field(&j, "/endpoints/0/tls/outcome", "Timeout", &run);
}

#[test]
fn tls_interception_names_the_issuer() {
    let b = base(&loopback_names());
    let l = b.lab.listener();
    let port = l.port();
    let _srv = b.lab.https(
        l,
        &b.pki.corp_leaf(&[REGISTRY]),
        TlsMode::Serve(registry_router(REGISTRY, port, DATA, 1, None)),
    );
    let run = b.run(&format!("{REGISTRY}:{port}"), &[]);
    let j = expect_primary(&run, 1, "TLSInterception", &[REGISTRY, CORP_CA_CN]);
    assert_field(&j, "/endpoints/0/tls/outcome", "UntrustedIssuer", &run);
    assert!(
        s(&j, "/endpoints/0/tls/issuer").contains(CORP_CA_CN),
        "{}",
        run.dump()
    );
}

#[test]
fn tls_certificate_for_another_name() {
    let b = base(&loopback_names());
    let l = b.lab.listener();
    let port = l.port();
    let _srv = b.lab.https(
        l,
        &b.pki.leaf(&["other.test"]),
        TlsMode::Serve(registry_router(REGISTRY, port, DATA, 1, None)),
    );
    let run = b.run(&format!("{REGISTRY}:{port}"), &[]);
    let j = expect_primary(&run, 1, "TLSCertificateInvalid", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/tls/outcome", "NameMismatch", &run);
    assert!(
        s(&j, "/endpoints/0/tls/subject").contains("other.test"),
        "{}",
        run.dump()
    );
}

#[test]
fn tls_certificate_expired() {
    let b = base(&loopback_names());
    let l = b.lab.listener();
    let port = l.port();
    let _srv = b.lab.https(
        l,
        &b.pki.expired_leaf(&[REGISTRY]),
        TlsMode::Serve(registry_router(REGISTRY, port, DATA, 1, None)),
    );
    let run = b.run(&format!("{REGISTRY}:{port}"), &[]);
    let j = expect_primary(&run, 1, "TLSCertificateInvalid", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/tls/outcome", "Expired", &run);
}

#[test]
fn connection_closed_right_after_tls() {
    let b = base(&loopback_names());
    let l = b.lab.listener();
    let port = l.port();
    let _srv = b
        .lab
        .https(l, &b.pki.leaf(&[REGISTRY]), TlsMode::CloseAfterHandshake);
    let run = b.run(&format!("{REGISTRY}:{port}"), &[]);
    let j = expect_primary(&run, 1, "ConnectionClosed", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/tls/outcome", "Verified", &run);
    assert_field(&j, "/endpoints/0/http/outcome", "Closed", &run);
}

// ---------------------------------------------------------------------------------------------
// Registry API answers
// ---------------------------------------------------------------------------------------------

#[test]
fn headers_timeout() {
    let w = world(|r, _, _| r.route("/v2/", Route::Hang));
    let run = w.run(&["--timeout", "2s"]);
    assert_within(&run, Duration::from_millis(3500));
    let j = expect_primary(&run, 1, "HeadersTimeout", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/tls/outcome", "Verified", &run);
    assert_field(&j, "/endpoints/0/http/outcome", "HeadersTimeout", &run);
}

const ACR_FIREWALL: &str = "client with IP '127.0.0.1' is not allowed access. Refer https://aka.ms/acr/firewall to grant access.";

#[test]
fn registry_denies_client_ip() {
    let w = world(|r, _, _| r.reply("/v2/", Reply::registry_error(403, "DENIED", ACR_FIREWALL)));
    let run = w.run(&[]);
    let j = expect_primary(&run, 1, "RegistryDeniedClientIP", &[REGISTRY, "127.0.0.1"]);
    assert_field(&j, "/endpoints/0/http/status", "403", &run);
    assert_field(&j, "/endpoints/0/http/clientIp", "127.0.0.1", &run);
    assert_field(&j, "/endpoints/0/http/registryError/code", "DENIED", &run);
}

#[test]
fn throttled() {
    let w = world(|r, _, _| {
        r.reply(
            "/v2/",
            Reply::registry_error(429, "TOOMANYREQUESTS", "rate limit exceeded")
                .header("Retry-After", "30"),
        )
    });
    let run = w.run(&[]);
    let j = expect_primary(&run, 1, "Throttled", &[REGISTRY, "429"]);
    assert_field(&j, "/endpoints/0/http/status", "429", &run);
}

#[test]
fn registry_server_error() {
    let w = world(|r, _, _| {
        r.reply(
            "/v2/",
            Reply::registry_error(500, "UNKNOWN", "internal error"),
        )
    });
    let run = w.run(&[]);
    let j = expect_primary(&run, 1, "RegistryServerError", &[REGISTRY, "500"]);
    assert_field(&j, "/endpoints/0/http/status", "500", &run);
}

#[test]
fn not_a_registry_html_page() {
    let w = world(|r, _, _| {
        r.reply(
            "/v2/",
            Reply::new(200)
                .header("Content-Type", "text/html; charset=utf-8")
                .body("<!doctype html><html><body><h1>Welcome to the captive portal</h1></body></html>"),
        )
    });
    let run = w.run(&[]);
    let j = expect_primary(&run, 1, "NotARegistry", &[REGISTRY, "200"]);
    assert_field(&j, "/endpoints/0/http/status", "200", &run);
    assert!(
        s(&j, "/endpoints/0/http/contentType").contains("text/html"),
        "{}",
        run.dump()
    );
}

#[test]
fn not_a_registry_404() {
    let w = world(|r, _, _| {
        r.reply(
            "/v2/",
            Reply::new(404)
                .header("Content-Type", "text/plain")
                .body("404 page not found\n"),
        )
    });
    let run = w.run(&[]);
    let j = expect_primary(&run, 1, "NotARegistry", &[REGISTRY, "404"]);
    assert_field(&j, "/endpoints/0/http/status", "404", &run);
}

#[test]
fn huge_v2_body_is_bounded() {
    let huge = "<html>".to_string() + &"x".repeat(3 << 20) + "</html>";
    let w = world(move |r, _, _| {
        r.reply(
            "/v2/",
            Reply::new(200)
                .header("Content-Type", "text/html")
                .body(huge),
        )
    });
    let run = w.run(&["--timeout", "4s"]);
    assert_within(&run, Duration::from_millis(5500));
    let j = expect_primary(&run, 1, "NotARegistry", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/http/status", "200", &run);
    assert!(
        run.stdout.len() < 64 * 1024,
        "report of {} bytes",
        run.stdout.len()
    );
}

#[test]
fn binary_v2_body_is_a_finding() {
    let junk: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let w = world(move |r, _, _| {
        r.reply(
            "/v2/",
            Reply::new(403)
                .header("Content-Type", "application/json")
                .body(junk),
        )
    });
    let run = w.run(&[]);
    let j = run.json();
    assert_eq!(run.code, 1, "{}", run.dump());
    assert_ne!(s(&j, "/findings/0/reason"), "Healthy", "{}", run.dump());
    assert!(
        s(&j, "/findings/0/message").contains(REGISTRY),
        "{}",
        run.dump()
    );
    assert_field(&j, "/endpoints/0/http/status", "403", &run);
}

#[test]
fn endless_v2_body_is_bounded() {
    let w = world(|r, _, _| r.route("/v2/", Route::Drip(200)));
    let run = w.run(&["--timeout", "2s"]);
    assert_within(&run, Duration::from_millis(3500));
    let j = run.json();
    assert_eq!(run.code, 1, "{}", run.dump());
    assert_ne!(s(&j, "/findings/0/reason"), "Healthy", "{}", run.dump());
}

#[test]
fn huge_response_headers_are_a_finding() {
    let w = world(|r, _, _| r.route("/v2/", Route::HugeHeaders));
    let run = w.run(&[]);
    assert_within(&run, Duration::from_millis(6500));
    let j = expect_primary(&run, 1, "NotARegistry", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/http/outcome", "Malformed", &run);
}

// ---------------------------------------------------------------------------------------------
// Proxy
// ---------------------------------------------------------------------------------------------

fn proxy_case(mode: ProxyMode) -> (World, ProxyServer, Run) {
    let w = world(|r, _, _| r);
    let proxy =
        w.b.lab
            .proxy(mode, &[(REGISTRY, LOOPBACK), (DATA, LOOPBACK)]);
    let url = proxy.url();
    let run = w.run(&["--proxy", &url]);
    (w, proxy, run)
}

#[test]
fn proxy_denied() {
    let (w, proxy, run) = proxy_case(ProxyMode::Deny);
    let j = expect_primary(&run, 1, "ProxyDenied", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/proxy/outcome", "Denied", &run);
    assert_field(&j, "/endpoints/0/proxy/status", "403", &run);
    assert_eq!(proxy.connects.lock().unwrap()[0], w.target());
    assert_eq!(w.reg.accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn proxy_auth_required() {
    let (_w, _proxy, run) = proxy_case(ProxyMode::Auth {
        user: "alice".into(),
        pass: "proxy-secret".into(),
    });
    let j = expect_primary(&run, 1, "ProxyAuthRequired", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/proxy/outcome", "AuthRequired", &run);
    assert_field(&j, "/endpoints/0/proxy/status", "407", &run);
}

#[test]
fn proxy_with_credentials_in_url_gets_through() {
    let w = world(|r, _, _| r);
    let proxy = w.b.lab.proxy(
        ProxyMode::Auth {
            user: "alice".into(),
            pass: "proxy-secret".into(),
        },
        &[(REGISTRY, LOOPBACK)],
    );
    let url = format!("http://alice:proxy-secret@{}", proxy.addr);
    let run = w.run(&["--proxy", &url]);
    let j = expect_primary(&run, 0, "Healthy", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/proxy/outcome", "Connected", &run);
    assert!(!run.stdout.contains("proxy-secret"), "{}", run.dump());
    assert!(!run.stderr.contains("proxy-secret"), "{}", run.dump());
}

#[test]
fn proxy_connect_eof() {
    let (_w, _proxy, run) = proxy_case(ProxyMode::Eof);
    let j = expect_primary(&run, 1, "ProxyConnectEOF", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/proxy/outcome", "Eof", &run);
}

#[test]
fn proxy_bad_gateway() {
    let (_w, _proxy, run) = proxy_case(ProxyMode::BadGateway);
    let j = expect_primary(&run, 1, "ProxyUpstreamFailed", &[REGISTRY]);
    assert_field(&j, "/endpoints/0/proxy/outcome", "UpstreamFailed", &run);
    assert_field(&j, "/endpoints/0/proxy/status", "502", &run);
}

// ---------------------------------------------------------------------------------------------
// Pull (--image)
// ---------------------------------------------------------------------------------------------

#[test]
fn image_not_found() {
    let w = world(|r, _, _| r);
    let img = format!("{REPO}:does-not-exist");
    let run = w.run(&["--image", &img]);
    let j = expect_primary(&run, 1, "ImageNotFound", &[REGISTRY, &img]);
    assert_field(&j, "/pull/token/outcome", "Ok", &run);
    assert_field(&j, "/pull/manifest/outcome", "NotFound", &run);
    assert_field(&j, "/pull/manifest/status", "404", &run);
}

#[test]
fn authentication_failed_does_not_leak_the_password() {
    const PASSWORD: &str = "Wr0ng-Pa55w0rd-zq8x";
    let w = world_with(
        &loopback_names(),
        Some(("alice", "right-password")),
        |r, _, _| r,
        |r, _| r,
    );
    let img = image();
    let args = check_args(
        &w.b.resolv,
        &w.b.pki.ca_file,
        &w.target(),
        &["--image", &img, "--username", "alice", "--password-stdin"],
    );
    let run = regcheck(&args, Some(&format!("{PASSWORD}\n")));
    let j = expect_primary(&run, 1, "AuthenticationFailed", &[REGISTRY]);
    assert_field(&j, "/pull/credentials", "true", &run);
    assert_field(&j, "/pull/token/outcome", "Unauthorized", &run);
    assert!(
        !run.stdout.contains(PASSWORD),
        "password in stdout\n{}",
        run.dump()
    );
    assert!(
        !run.stderr.contains(PASSWORD),
        "password in stderr\n{}",
        run.dump()
    );
    // The credentials were actually sent to the token endpoint.
    let sent =
        w.reg.requests.lock().unwrap().iter().any(|r| {
            r.path() == "/token" && r.basic_auth() == Some(("alice".into(), PASSWORD.into()))
        });
    assert!(sent, "{:?}", w.reg.paths());
}

#[test]
fn right_password_pulls() {
    let w = world_with(
        &loopback_names(),
        Some(("alice", "right-password")),
        |r, _, _| r,
        |r, _| r,
    );
    let img = image();
    let args = check_args(
        &w.b.resolv,
        &w.b.pki.ca_file,
        &w.target(),
        &["--image", &img, "--username", "alice", "--password-stdin"],
    );
    let run = regcheck(&args, Some("right-password\n"));
    let j = expect_primary(&run, 0, "Healthy", &[REGISTRY]);
    assert_field(&j, "/pull/blob/outcome", "Ok", &run);
    assert!(!run.stdout.contains("right-password"), "{}", run.dump());
}

#[test]
fn too_many_redirects() {
    // The data endpoint redirects the blob to itself forever.
    let w = world_with(
        &loopback_names(),
        None,
        |r, _, _| r,
        |_, dport| {
            // A fresh router: the default exact blob routes would win over the prefix.
            Router::new().route(
                "/blobs/*",
                Route::dynamic(move |req| {
                    let n: u32 = req
                        .target
                        .rsplit("hop=")
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    Reply::new(307).header(
                        "Location",
                        format!("https://{DATA}:{dport}/blobs/again?hop={}", n + 1),
                    )
                }),
            )
        },
    );
    let img = image();
    let run = w.run(&["--image", &img]);
    let j = expect_primary(&run, 1, "TooManyRedirects", &[&img]);
    assert_field(&j, "/pull/blob/outcome", "TooManyRedirects", &run);
    // Bounded: the data endpoint saw a bounded number of requests.
    let hops = w.data.paths().len();
    assert!((2..=50).contains(&hops), "{hops} requests");
}

#[test]
fn data_endpoint_refused_is_blocked() {
    let b = base(&loopback_names());
    let closed = b.lab.closed_port();
    let l = b.lab.listener();
    let port = l.port();
    let reg = b.lab.https(
        l,
        &b.pki.leaf(&[REGISTRY]),
        TlsMode::Serve(registry_router(REGISTRY, port, DATA, closed, None)),
    );
    let img = image();
    let run = b.run(&format!("{REGISTRY}:{port}"), &["--image", &img]);
    let j = expect_primary(&run, 1, "DataEndpointBlocked", &[DATA]);
    assert_field(&j, "/findings/0/endpoint", DATA, &run);
    assert_field(&j, "/pull/blob/outcome", "Unreachable", &run);
    assert_field(&j, "/pull/manifest/outcome", "Ok", &run);
    assert_field(&j, "/verdict", "Degraded", &run);
    assert!(
        s(&j, "/findings/0/message").contains(&format!("127.0.0.1:{closed}")),
        "{}",
        run.dump()
    );
    assert!(reg.paths().iter().any(|p| p.contains("/blobs/")));
}

/// `--egress-host`: a host that answers anything (here 404 on `GET /`) is reachable, with no
/// registry semantics; a refused one is `EgressHostBlocked` at TCP; the registry stays healthy.
#[test]
fn egress_hosts_answering_anything_are_reachable_and_a_refused_one_is_blocked() {
    let mut names = loopback_names();
    names.push(("egress.test", Dns::A(vec![LOOPBACK])));
    names.push(("closed.test", Dns::A(vec![LOOPBACK])));
    let b = base(&names);
    let l = b.lab.listener();
    let port = l.port();
    let reg = b.lab.https(
        l,
        &b.pki.leaf(&[REGISTRY]),
        TlsMode::Serve(registry_router(REGISTRY, port, DATA, port, None)),
    );
    let el = b.lab.listener();
    let eport = el.port();
    let egress = b.lab.https(
        el,
        &b.pki.leaf(&["egress.test"]),
        TlsMode::Serve(Router::new()),
    );
    let closed = b.lab.closed_port();
    let ok_host = format!("egress.test:{eport}");
    let closed_host = format!("closed.test:{closed}");
    let run = b.run(
        &format!("{REGISTRY}:{port}"),
        &["--egress-host", &ok_host, "--egress-host", &closed_host],
    );
    let j = expect_primary(
        &run,
        1,
        "EgressHostBlocked",
        &[
            &closed_host,
            "blocked at TCP",
            "--egress-host",
            "ConnectionRefused",
        ],
    );
    assert_field(&j, "/verdict", "Degraded", &run);
    assert_eq!(j["findings"].as_array().unwrap().len(), 1, "{}", run.dump());
    assert_field(&j, "/findings/0/role", "Egress", &run);
    let hosts = j["egress"]["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{}", run.dump());
    assert_eq!(hosts[0]["host"], "egress.test");
    assert_eq!(hosts[0]["rule"]["source"], "--egress-host");
    assert_eq!(
        hosts[0]["endpoint"]["http"]["status"],
        404,
        "{}",
        run.dump()
    );
    assert_eq!(hosts[0]["endpoint"]["role"], "Egress");
    // One harmless request, and never the registry API.
    assert_eq!(egress.paths(), vec!["/".to_string()]);
    assert_eq!(reg.paths(), vec!["/v2/".to_string()]);
    assert!(
        j["egress"]["dataVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
}

#[test]
fn bad_input_egress_profile() {
    assert_bad_input(
        None,
        &["--egress-profile", "FOO"],
        "--egress-profile",
        "FOO",
    );
    assert_bad_input(
        None,
        &["--egress-profile", "EKS"],
        "--egress-profile-param",
        "EKS needs region=",
    );
    assert_bad_input(
        None,
        &[
            "--egress-profile",
            "AKS",
            "--egress-profile-param",
            "region",
        ],
        "--egress-profile-param",
        "region",
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit 2, the field and value named, nothing probed
// ---------------------------------------------------------------------------------------------

/// Runs `regcheck check` with `target` and `extra` against a live lab and asserts exit 2, a
/// message naming `field` and `value`, no report on stdout, and nothing sent to the lab's
/// DNS server or registry.
#[track_caller]
fn assert_bad_input(target: Option<&str>, extra: &[&str], field: &str, value: &str) {
    let w = world(|r, _, _| r);
    let target = target.map(str::to_string).unwrap_or_else(|| w.target());
    let run = regcheck(
        &check_args(&w.b.resolv, &w.b.pki.ca_file, &target, extra),
        None,
    );
    assert_eq!(run.code, 2, "{}", run.dump());
    assert!(
        run.stderr
            .to_ascii_lowercase()
            .contains(&field.to_ascii_lowercase()),
        "stderr does not name the field {field:?}\n{}",
        run.dump()
    );
    assert!(
        run.stderr.contains(value),
        "stderr does not name the value {value:?}\n{}",
        run.dump()
    );
    assert!(run.stdout.trim().is_empty(), "{}", run.dump());
    assert_eq!(w.b.dns.query_count(), 0, "DNS queried on bad input");
    assert_eq!(
        w.reg.accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "registry contacted on bad input"
    );
}

#[test]
fn bad_input_registry_name() {
    // The registry is positional; the engine calls the field `--registry`.
    assert_bad_input(Some("bad host!"), &[], "registry", "bad host!");
}

#[test]
fn bad_input_timeout() {
    assert_bad_input(None, &["--timeout", "10x"], "--timeout", "10x");
}

#[test]
fn bad_input_dns_server_port() {
    assert_bad_input(
        None,
        &["--dns-server", "1.2.3.4:99999"],
        "--dns-server",
        "1.2.3.4:99999",
    );
}

#[test]
fn bad_input_region_on_non_azure_registry() {
    assert_bad_input(None, &["--region", "eastus"], "--region", "eastus");
}

#[test]
fn bad_input_image_reference() {
    assert_bad_input(None, &["--image", "UPPER:tag"], "--image", "UPPER:tag");
}

#[test]
fn bad_input_missing_ca_file() {
    assert_bad_input(
        None,
        &["--ca-file", "/nonexistent"],
        "--ca-file",
        "/nonexistent",
    );
}

// ---------------------------------------------------------------------------------------------
// More resolver and pull paths
// ---------------------------------------------------------------------------------------------

#[test]
fn dead_first_nameserver_does_not_hide_a_working_second() {
    let w = world(|r, _, _| r);
    let dead = w.b.lab.dns(&[(REGISTRY, Dns::Drop)]);
    let resolv = w.b.lab.write_file(
        "two-nameservers.conf",
        format!("nameserver {}\nnameserver {}\n", dead.addr, w.b.dns.addr),
    );
    let run = regcheck(
        &check_args(&resolv, &w.b.pki.ca_file, &w.target(), &["--timeout", "4s"]),
        None,
    );
    assert_within(&run, Duration::from_millis(5500));
    let j = run.json();
    // The name resolves through the second nameserver and the registry works...
    assert_field(
        &j,
        "/endpoints/0/dns/system/answeredBy",
        &w.b.dns.addr.to_string(),
        &run,
    );
    assert_field(&j, "/endpoints/0/dns/system/outcome", "Resolved", &run);
    assert_field(&j, "/endpoints/0/tls/outcome", "Verified", &run);
    assert_field(&j, "/endpoints/0/http/status", "401", &run);
    // ...but clients that ask the dead first nameserver wait for it: a warning naming it.
    assert_eq!(run.code, 1, "{}", run.dump());
    assert_field(&j, "/verdict", "Degraded", &run);
    assert_field(&j, "/findings/0/severity", "Warning", &run);
    assert!(
        s(&j, "/findings/0/message").contains(&dead.addr.to_string()),
        "{}",
        run.dump()
    );
    assert!(
        j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["severity"] != "Error"),
        "{}",
        run.dump()
    );
}

#[test]
fn nameservers_that_disagree() {
    let w = world(|r, _, _| r);
    let other = w.b.lab.dns(&[]); // NXDOMAIN for everything
    let other_addr = other.addr.to_string();
    let run = w.run(&["--dns-server", &other_addr]);
    let j = run.json();
    assert_eq!(run.code, 1, "{}", run.dump());
    let differ = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "DNSAnswersDiffer")
        .unwrap_or_else(|| panic!("no DNSAnswersDiffer\n{}", run.dump()));
    assert!(
        s(differ, "/message").contains(&other_addr),
        "{}",
        run.dump()
    );
    assert!(other.query_count() > 0);
    let servers = j["endpoints"][0]["dns"]["servers"].as_array().unwrap();
    assert!(
        servers
            .iter()
            .any(|a| a["server"] == other_addr.as_str() && a["outcome"] == "NameNotFound"),
        "{}",
        run.dump()
    );
}

#[test]
fn extra_host_that_does_not_resolve_degrades() {
    let w = world(|r, _, _| r);
    let run = w.run(&["--also", "missing.test"]);
    let j = run.json();
    assert_eq!(run.code, 1, "{}", run.dump());
    assert_field(&j, "/verdict", "Degraded", &run);
    let f = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "DNSNameNotFound")
        .unwrap_or_else(|| panic!("no DNSNameNotFound\n{}", run.dump()));
    assert!(
        s(f, "/endpoint").starts_with("missing.test"),
        "{}",
        run.dump()
    );
    assert!(s(f, "/message").contains("missing.test"), "{}", run.dump());
    assert_eq!(
        j["findings"][0]["reason"],
        "DNSNameNotFound",
        "{}",
        run.dump()
    );
}

#[test]
fn token_endpoint_throttled() {
    let w = world(|r, _, _| {
        r.reply(
            "/token",
            Reply::registry_error(429, "TOOMANYREQUESTS", "too many requests"),
        )
    });
    let img = image();
    let run = w.run(&["--image", &img]);
    let j = expect_primary(&run, 1, "Throttled", &[REGISTRY, &img]);
    assert_field(&j, "/pull/token/outcome", "Throttled", &run);
    assert_field(&j, "/pull/manifest/outcome", "Skipped", &run);
}

#[test]
fn token_endpoint_denies_client_ip() {
    let w = world(|r, _, _| r.reply("/token", Reply::registry_error(403, "DENIED", ACR_FIREWALL)));
    let img = image();
    let run = w.run(&["--image", &img]);
    let j = expect_primary(&run, 1, "RegistryDeniedClientIP", &[REGISTRY, "127.0.0.1"]);
    assert_field(&j, "/pull/token/outcome", "Forbidden", &run);
}

#[test]
fn docker_config_keyed_by_host_and_port_with_wrong_credentials() {
    // docker login stores a registry on a non-default port under "host:port".
    const PASSWORD: &str = "d0cker-Wr0ng-9mq";
    let w = world_with(
        &loopback_names(),
        Some(("alice", "right-password")),
        |r, _, _| r,
        |r, _| r,
    );
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"))
    };
    let cfg = w.b.lab.write_file(
        "config.json",
        serde_json::json!({"auths": {(w.target()): {"auth": auth}}}).to_string(),
    );
    let img = image();
    let run = w.run(&[
        "--image",
        &img,
        "--docker-config",
        &cfg.display().to_string(),
    ]);
    let j = expect_primary(&run, 1, "AuthenticationFailed", &[REGISTRY]);
    assert_field(&j, "/pull/credentials", "true", &run);
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "{}",
        run.dump()
    );
    assert!(
        !run.stdout.contains(&auth) && !run.stderr.contains(&auth),
        "{}",
        run.dump()
    );
}

// ---------------------------------------------------------------------------------------------
// The kinds of 403 and the token endpoint (issue 15)
// ---------------------------------------------------------------------------------------------

fn acr_denial(ip: &str) -> Reply {
    Reply::registry_error(
        403,
        "DENIED",
        &format!(
            "client with IP '{ip}' is not allowed access. Refer https://aka.ms/acr/firewall to grant access. CorrelationId: 7d3c0d6e-0000-4000-8000-000000000001"
        ),
    )
}

#[test]
fn registry_denies_a_private_client_ip_without_egress_ips() {
    let w = world(|r, _, _| r.reply("/v2/", acr_denial("10.240.0.4")));
    let run = w.run(&[]);
    let j = expect_primary(
        &run,
        1,
        "RegistryDeniedPrivateClientIP",
        &[
            REGISTRY,
            "10.240.0.4",
            "private address",
            "virtual-network rule",
        ],
    );
    assert_field(&j, "/findings/0/code", "CONNECTIVITY_FORBIDDEN_ERROR", &run);
    assert_field(&j, "/findings/0/cause", "VirtualNetworkConfiguration", &run);
    assert_field(&j, "/verdict", "Unreachable", &run);
    assert_field(&j, "/endpoints/0/http/clientIp", "10.240.0.4", &run);
    assert!(j.pointer("/egressIps").is_none(), "{}", run.dump());
}

#[test]
fn registry_denies_a_private_client_ip_with_egress_ips() {
    let w = world(|r, _, _| r.reply("/v2/", acr_denial("10.240.0.4")));
    let run = w.run(&["--egress-ip", "20.1.2.0/24,52.10.20.30"]);
    let j = expect_primary(
        &run,
        1,
        "RegistryDeniedPrivateClientIP",
        &["10.240.0.4", "expected egress: 20.1.2.0/24, 52.10.20.30/32"],
    );
    assert_field(&j, "/egressIps/0", "20.1.2.0/24", &run);
    assert_field(&j, "/egressIps/1", "52.10.20.30/32", &run);
}

#[test]
fn denial_of_a_public_ip_outside_and_inside_the_egress_ips() {
    let w = world(|r, _, _| r.reply("/v2/", acr_denial("52.10.20.30")));
    let run = w.run(&["--egress-ip", "20.1.2.0/24"]);
    expect_primary(
        &run,
        1,
        "EgressIPUnexpected",
        &["52.10.20.30", "wrong NAT gateway", "20.1.2.0/24"],
    );
    let run = w.run(&["--egress-ip", "20.1.2.0/24", "--egress-ip", "52.10.20.30"]);
    expect_primary(
        &run,
        1,
        "RegistryDeniedClientIP",
        &[
            "52.10.20.30",
            "one of the expected egress",
            "--ip-address 52.10.20.30",
        ],
    );
}

#[test]
fn storage_xml_403_on_the_data_endpoint_is_storage_access_denied() {
    const XML: &str = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthorizationFailure</Code><Message>This request is not authorized to perform this operation.\nRequestId:5a4e0f2b-001e-0000-0000-000000000000\nTime:2026-12-04T10:00:00.0000000Z</Message></Error>";
    let w = world_with(
        &loopback_names(),
        None,
        |r, _, _| r,
        |_, _| {
            Router::new().route(
                "/blobs/*",
                Route::Reply(
                    Reply::new(403)
                        .header("Content-Type", "application/xml")
                        .body(XML),
                ),
            )
        },
    );
    let img = image();
    let run = w.run(&["--image", &img]);
    let j = expect_primary(
        &run,
        1,
        "StorageAccessDenied",
        &[DATA, "AuthorizationFailure", "not the registry's identity"],
    );
    assert_field(&j, "/findings/0/endpoint", DATA, &run);
    assert_field(&j, "/findings/0/role", "DataEndpoint", &run);
    assert_field(&j, "/verdict", "Degraded", &run);
    assert_field(&j, "/pull/manifest/outcome", "Ok", &run);
    assert_field(&j, "/pull/blob/outcome", "Forbidden", &run);
    assert_field(
        &j,
        "/pull/blob/registryError/code",
        "AuthorizationFailure",
        &run,
    );
    assert!(
        !run.stdout.contains("may not pull this repository"),
        "{}",
        run.dump()
    );
}

#[test]
fn token_endpoint_failing_while_v2_answers() {
    let w = world(|r, _, _| {
        r.reply(
            "/token",
            Reply::registry_error(500, "UNKNOWN", "token service down"),
        )
    });
    let img = image();
    let run = w.run(&["--image", &img]);
    let j = expect_primary(
        &run,
        1,
        "TokenRequestFailed",
        &[
            REGISTRY,
            "token request to /token",
            "(status 500)",
            "while the registry answers its /v2/ challenge",
        ],
    );
    assert_field(
        &j,
        "/findings/0/code",
        "CONNECTIVITY_ACCESS_TOKEN_ERROR",
        &run,
    );
    // The endpoint probe's GET /v2/ got its challenge: the registry API is there.
    assert_field(&j, "/endpoints/0/http/status", "401", &run);
    assert_field(&j, "/pull/token/path", "/token", &run);
    assert_field(&j, "/pull/manifest/outcome", "Skipped", &run);
    assert_field(&j, "/verdict", "Degraded", &run);
}

#[test]
fn refresh_token_exchange_rejected_is_a_refresh_token_error() {
    // A registry whose challenge names ACR's exchange endpoint, which refuses the credentials.
    let w = world_with(
        &loopback_names(),
        Some(("alice", "right-password")),
        |r, port, _| {
            r.reply(
                "/v2/",
                Reply::registry_error(401, "UNAUTHORIZED", "authentication required").header(
                    "WWW-Authenticate",
                    format!("Bearer realm=\"https://{REGISTRY}:{port}/oauth2/exchange\",service=\"{REGISTRY}\""),
                ),
            )
            .reply(
                "/oauth2/exchange",
                Reply::registry_error(401, "UNAUTHORIZED", "refresh token expired"),
            )
        },
        |r, _| r,
    );
    let img = image();
    let args = check_args(
        &w.b.resolv,
        &w.b.pki.ca_file,
        &w.target(),
        &["--image", &img, "--username", "alice", "--password-stdin"],
    );
    let run = regcheck(&args, Some("stale\n"));
    let j = expect_primary(
        &run,
        1,
        "AuthenticationFailed",
        &["token request to /oauth2/exchange", "401"],
    );
    assert_field(
        &j,
        "/findings/0/code",
        "CONNECTIVITY_REFRESH_TOKEN_ERROR",
        &run,
    );
    assert_field(&j, "/pull/token/path", "/oauth2/exchange", &run);
}

#[test]
fn bad_input_egress_ip() {
    assert_bad_input(
        None,
        &["--egress-ip", "20.1.2.3/24"],
        "--egress-ip",
        "20.1.2.3/24",
    );
    assert_bad_input(
        None,
        &["--egress-ip", "127.0.0.1"],
        "--egress-ip",
        "127.0.0.1",
    );
}

#[test]
fn bad_input_ip_family() {
    assert_bad_input(None, &["--ip-family", "both"], "--ip-family", "both");
}

/// The loopback registry has an A record only: an IPv6-only client has nothing to dial, a
/// dual-stack one works over IPv4 (an Info finding), an IPv4 one sees nothing to report; the
/// TLS evidence names the address (and so the family) the handshake used.
#[test]
fn ip_family_against_a_registry_with_an_a_record_only() {
    let w = world(|r, _, _| r);
    let run = w.run(&["--ip-family", "ipv6"]);
    let j = expect_primary(
        &run,
        1,
        "RegistryLacksIPv6",
        &[REGISTRY, "127.0.0.1", "no AAAA record"],
    );
    assert_field(&j, "/ipFamily", "IPv6", &run);
    assert!(j["endpoints"][0].get("tcp").is_none(), "{}", run.dump());
    let run = w.run(&["--ip-family", "dual"]);
    let j = expect_primary(&run, 0, "RegistryLacksIPv6", &["dual-stack"]);
    assert_field(&j, "/verdict", "Healthy", &run);
    let peer = format!("127.0.0.1:{}", w.reg.port());
    assert_field(&j, "/endpoints/0/tls/peer", &peer, &run);
    let run = w.run(&["--ip-family", "ipv4"]);
    expect_primary(&run, 0, "Healthy", &[REGISTRY]);
}
