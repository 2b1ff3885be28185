//! Tests of the diagnosis rules: one per reason, and a generated-evidence property test.
use super::*;
use crate::engine::evidence::{
    Challenge, DnsEvidence, MssRetry, ProxyEvidence, RegistryError, Route, TlsEvidence,
};
use crate::engine::findings::Cause;
use std::net::IpAddr;

const REG: &str = "myreg.azurecr.io";
const PL: &str = "myreg.privatelink.azurecr.io";
const DATA: &str = "myreg.westeurope.data.azurecr.io";
const MCR: &str = "mcr.microsoft.com";
const NS: &str = "10.0.0.4:53";
const PROXY: &str = "http://proxy.corp:3128";

// ---- builders -------------------------------------------------------------------------

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test ip")
}

fn answer(server: &str, outcome: DnsOutcome, cnames: &[&str], addrs: &[&str]) -> DnsAnswer {
    DnsAnswer {
        server: server.into(),
        outcome,
        cnames: cnames.iter().map(|c| c.to_string()).collect(),
        addresses: addrs.iter().map(|a| Address::new(ip(a))).collect(),
        answered_by: None,
        error: None,
        ms: 3,
    }
}

/// The system answer, given by nameserver `NS`.
fn sys(outcome: DnsOutcome, cnames: &[&str], addrs: &[&str]) -> DnsAnswer {
    DnsAnswer {
        answered_by: Some(NS.into()),
        ..answer("system", outcome, cnames, addrs)
    }
}

fn tcp(addr: &str, outcome: TcpOutcome) -> TcpEvidence {
    TcpEvidence {
        address: addr.parse().expect("test socket address"),
        outcome,
        error: None,
        ms: 10,
    }
}

fn tls(outcome: TlsOutcome) -> TlsEvidence {
    TlsEvidence {
        outcome,
        peer: None,
        small_mss_retry: None,
        subject: Some("CN=*.azurecr.io".into()),
        issuer: Some("CN=Microsoft Azure RSA TLS Issuing CA 03".into()),
        error: None,
        ms: 20,
    }
}

fn http(status: u16) -> HttpEvidence {
    HttpEvidence {
        outcome: HttpOutcome::Response,
        status: Some(status),
        challenge: None,
        challenge_malformed: false,
        distribution_api: true,
        registry_error: None,
        client_ip: None,
        content_type: None,
        error: None,
        ms: 30,
    }
}

fn http_ok() -> HttpEvidence {
    HttpEvidence {
        challenge: Some(Challenge {
            scheme: "Bearer".into(),
            realm: Some(format!("https://{REG}/oauth2/token")),
            service: Some(REG.into()),
        }),
        ..http(401)
    }
}

/// An endpoint where everything worked, resolving to `addr`.
fn healthy(host: &str, role: Role, addr: &str) -> EndpointEvidence {
    EndpointEvidence {
        host: host.into(),
        port: 443,
        role,
        dns: DnsEvidence {
            kubelet: None,
            system: sys(DnsOutcome::Resolved, &[], &[addr]),
            servers: vec![answer(NS, DnsOutcome::Resolved, &[], &[addr])],
        },
        route: Route::direct(),
        proxy: None,
        tcp: vec![tcp(
            &std::net::SocketAddr::new(ip(addr), 443).to_string(),
            TcpOutcome::Connected,
        )],
        tls: Some(tls(TlsOutcome::Verified)),
        http: (role != Role::DataEndpoint).then(http_ok),
        deadline_exceeded: false,
    }
}

fn login() -> EndpointEvidence {
    healthy(REG, Role::LoginServer, "20.1.2.3")
}
fn data() -> EndpointEvidence {
    healthy(DATA, Role::DataEndpoint, "20.1.2.9")
}
/// Login server resolving through the privatelink CNAME to its private endpoint.
fn private_login() -> EndpointEvidence {
    let mut e = healthy(REG, Role::LoginServer, "10.1.0.5");
    e.dns.system.cnames = vec![PL.into()];
    e
}

fn evidence(endpoints: Vec<EndpointEvidence>) -> Evidence {
    Evidence {
        registry: REG.into(),
        expect: Expect::Any,
        egress_ips: Vec::new(),
        ip_family: None,
        endpoints,
        pull: None,
        containerd: None,
        proxy_source: None,
        resolvers: None,
        egress: None,
        ms: 100,
    }
}

fn step(outcome: PullOutcome, host: &str) -> PullStep {
    PullStep {
        outcome,
        host: Some(host.into()),
        path: None,
        status: None,
        registry_error: None,
        error: None,
        ms: 5,
    }
}

fn pull(token: PullStep, manifest: PullStep, blob: PullStep) -> PullEvidence {
    PullEvidence {
        image: "app:v1".into(),
        credentials: true,
        token,
        manifest,
        blob,
        blob_digest: None,
        blob_size: None,
        redirects: Vec::new(),
        failed_host: None,
    }
}

fn primary(ev: &Evidence) -> Finding {
    diagnose(ev).into_iter().next().expect("never empty")
}

/// Checks reason, cause, severity and that the message names every needle.
fn check(f: &Finding, reason: Reason, severity: Severity, needles: &[&str]) {
    assert_eq!(f.reason, reason, "{f:?}");
    assert_eq!(f.cause, reason.cause(), "{f:?}");
    assert_eq!(f.severity, severity, "{f:?}");
    assert!(!f.message.contains('\n'), "one line: {}", f.message);
    assert!(!f.remediation.is_empty() && !f.docs.is_empty(), "{f:?}");
    for n in needles {
        assert!(
            f.message.contains(n),
            "{reason}: '{}' lacks '{n}'",
            f.message
        );
    }
}

// ---- healthy --------------------------------------------------------------------------

#[test]
fn healthy_evidence_gives_exactly_healthy() {
    let ev = evidence(vec![
        login(),
        data(),
        healthy(MCR, Role::Extra, "13.107.246.1"),
    ]);
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "{f:?}");
    check(&f[0], Reason::Healthy, Severity::Info, &[REG]);
    assert_eq!(f[0].cause, Cause::None);
    assert_eq!(f[0].endpoint, REG);
    assert_eq!(verdict(&ev, &f), Verdict::Healthy);

    // 200 with the distribution header is healthy too, and so is a private endpoint
    // resolved through privatelink when private is expected.
    let mut l = private_login();
    l.http = Some(http(200));
    let mut ev = evidence(vec![l, healthy(DATA, Role::DataEndpoint, "10.1.0.6")]);
    ev.expect = Expect::Private;
    assert_eq!(primary(&ev).reason, Reason::Healthy);
}

#[test]
fn rotating_public_addresses_are_not_a_finding() {
    let mut l = login();
    l.dns.servers = vec![
        answer("10.0.0.4:53", DnsOutcome::Resolved, &[], &["20.1.2.3"]),
        answer("10.0.0.5:53", DnsOutcome::Resolved, &[], &["20.1.2.4"]),
    ];
    assert_eq!(primary(&evidence(vec![l])).reason, Reason::Healthy);
}

// ---- DNS ------------------------------------------------------------------------------

#[test]
fn dns_name_not_found_stops_lower_layers() {
    let mut l = login();
    l.dns.system = sys(DnsOutcome::NameNotFound, &[], &[]);
    l.dns.servers = vec![answer(NS, DnsOutcome::NameNotFound, &[], &[])];
    l.tcp = vec![tcp("20.1.2.3:443", TcpOutcome::Timeout)];
    l.tls = None;
    l.http = None;
    let ev = evidence(vec![l]);
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "no TCP finding under a DNS failure: {f:?}");
    check(
        &f[0],
        Reason::DNSNameNotFound,
        Severity::Error,
        &[REG, NS, "NXDOMAIN"],
    );
    assert_eq!(f[0].code.as_deref(), Some("CONNECTIVITY_DNS_ERROR"));
    assert_eq!(f[0].role, Some(Role::LoginServer));
    assert_eq!(verdict(&ev, &f), Verdict::Unreachable);
}

#[test]
fn dns_no_addresses_is_name_not_found() {
    let mut l = login();
    l.dns.system = sys(DnsOutcome::NoAddresses, &["myreg.example.net"], &[]);
    l.tcp.clear();
    let f = primary(&evidence(vec![l]));
    check(
        &f,
        Reason::DNSNameNotFound,
        Severity::Error,
        &[REG, NS, "no A/AAAA", "myreg.example.net"],
    );
}

#[test]
fn dns_server_unreachable_names_the_nameservers() {
    for outcome in [DnsOutcome::Timeout, DnsOutcome::Unreachable] {
        let mut l = login();
        l.dns.system = answer("system", outcome, &[], &[]);
        l.dns.servers = vec![
            answer("10.0.0.4:53", outcome, &[], &[]),
            answer("10.0.0.5:53", outcome, &[], &[]),
        ];
        l.tcp.clear();
        let f = primary(&evidence(vec![l]));
        check(
            &f,
            Reason::DNSServerUnreachable,
            Severity::Error,
            &[REG, "10.0.0.4:53", "10.0.0.5:53"],
        );
    }
}

#[test]
fn dns_server_failures() {
    let cases = [
        (DnsOutcome::ServerFailure, "SERVFAIL"),
        (DnsOutcome::Refused, "REFUSED"),
        (DnsOutcome::CnameLoop, "CNAME loop"),
        (DnsOutcome::Error, "error"),
    ];
    for (outcome, word) in cases {
        let mut l = login();
        l.dns.system = sys(outcome, &[], &[]);
        let f = primary(&evidence(vec![l]));
        check(
            &f,
            Reason::DNSServerFailure,
            Severity::Error,
            &[REG, NS, word],
        );
    }
}

#[test]
fn dns_failure_mentions_a_server_that_resolves() {
    let mut l = login();
    l.dns.system = sys(DnsOutcome::NameNotFound, &[], &[]);
    l.dns.servers = vec![
        answer("10.0.0.4:53", DnsOutcome::NameNotFound, &[], &[]),
        answer("168.63.129.16:53", DnsOutcome::Resolved, &[], &["10.1.0.5"]),
    ];
    let f = diagnose(&evidence(vec![l]));
    assert_eq!(f.len(), 1, "one DNS finding per endpoint: {f:?}");
    check(
        &f[0],
        Reason::DNSNameNotFound,
        Severity::Error,
        &["168.63.129.16:53", "10.1.0.5"],
    );
}

#[test]
fn dns_answers_differ_resolve_vs_fail() {
    let mut l = login();
    l.dns.servers = vec![
        answer("10.0.0.4:53", DnsOutcome::Resolved, &[], &["20.1.2.3"]),
        answer("10.0.0.5:53", DnsOutcome::Timeout, &[], &[]),
    ];
    let ev = evidence(vec![l]);
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1);
    check(
        &f[0],
        Reason::DNSAnswersDiffer,
        Severity::Warning,
        &[REG, "10.0.0.4:53", "20.1.2.3", "10.0.0.5:53", "timeout"],
    );
    assert_eq!(verdict(&ev, &f), Verdict::Degraded);
}

#[test]
fn dns_answers_differ_private_vs_public() {
    let mut l = private_login();
    l.dns.servers = vec![
        answer("10.0.0.4:53", DnsOutcome::Resolved, &[PL], &["10.1.0.5"]),
        answer("8.8.8.8:53", DnsOutcome::Resolved, &[PL], &["20.1.2.3"]),
    ];
    let f = primary(&evidence(vec![l]));
    check(
        &f,
        Reason::DNSAnswersDiffer,
        Severity::Warning,
        &[
            REG,
            "10.0.0.4:53",
            "private address 10.1.0.5",
            "8.8.8.8:53",
            "public address 20.1.2.3",
        ],
    );
}

#[test]
fn private_endpoint_resolves_public_via_privatelink_cname() {
    let mut l = login();
    l.dns.system = sys(DnsOutcome::Resolved, &[PL, "x.azcr.io"], &["20.1.2.3"]);
    let mut ev = evidence(vec![l]);
    ev.expect = Expect::Private;
    let f = primary(&ev);
    check(
        &f,
        Reason::PrivateEndpointResolvesPublic,
        Severity::Error,
        &[REG, NS, PL, "public address 20.1.2.3", "not visible"],
    );
    assert_eq!(
        f.message,
        "myreg.azurecr.io: nameserver 10.0.0.4:53 answers via CNAME myreg.privatelink.azurecr.io -> x.azcr.io with public address 20.1.2.3; the private DNS zone is not visible to it"
    );
    assert_eq!(f.cause, Cause::VirtualNetworkConfiguration);
    // The API answered: the registry is reachable, but not as intended.
    assert_eq!(verdict(&ev, &diagnose(&ev)), Verdict::Degraded);

    // expect Any: a warning while everything else works ...
    ev.expect = Expect::Any;
    let f = primary(&ev);
    check(
        &f,
        Reason::PrivateEndpointResolvesPublic,
        Severity::Warning,
        &[REG, NS],
    );
    // ... an error, and the primary finding, when a lower layer then fails.
    let mut http = http(403);
    http.client_ip = Some("52.10.20.30".into());
    ev.endpoints[0].http = Some(http);
    let all = diagnose(&ev);
    check(
        &all[0],
        Reason::PrivateEndpointResolvesPublic,
        Severity::Error,
        &[NS],
    );
    assert_eq!(all[1].reason, Reason::RegistryDeniedClientIP);
    assert_eq!(verdict(&ev, &all), Verdict::Unreachable);

    // expect Public: what the user asked for.
    ev.expect = Expect::Public;
    ev.endpoints[0].http = Some(http_ok());
    assert_eq!(primary(&ev).reason, Reason::Healthy);
}

#[test]
fn private_endpoint_resolves_public_on_some_nameservers() {
    let mut l = login();
    l.dns.system = answer("system", DnsOutcome::Resolved, &[], &["20.1.2.3"]);
    l.dns.servers = vec![
        answer("10.0.0.4:53", DnsOutcome::Resolved, &[], &["20.1.2.3"]),
        answer(
            "168.63.129.16:53",
            DnsOutcome::Resolved,
            &[PL],
            &["10.1.0.5"],
        ),
    ];
    let mut ev = evidence(vec![l]);
    ev.expect = Expect::Private;
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "{f:?}");
    check(
        &f[0],
        Reason::PrivateEndpointResolvesPublic,
        Severity::Error,
        &[
            REG,
            "10.0.0.4:53",
            "20.1.2.3",
            "168.63.129.16:53",
            "10.1.0.5",
        ],
    );
}

#[test]
fn private_endpoint_not_configured() {
    let mut ev = evidence(vec![login()]);
    ev.expect = Expect::Private;
    let f = primary(&ev);
    check(
        &f,
        Reason::PrivateEndpointNotConfigured,
        Severity::Error,
        &[REG, NS, "20.1.2.3", "no privatelink"],
    );
}

#[test]
fn data_endpoint_dns_missing() {
    // NXDOMAIN while the login server resolves privately.
    let mut d = healthy(DATA, Role::DataEndpoint, "10.1.0.6");
    d.dns.system = sys(DnsOutcome::NameNotFound, &[], &[]);
    d.tcp.clear();
    d.tls = None;
    let ev = evidence(vec![private_login(), d.clone()]);
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "{f:?}");
    check(
        &f[0],
        Reason::DataEndpointDNSMissing,
        Severity::Error,
        &[DATA, NS, "NXDOMAIN", REG, "10.1.0.5"],
    );
    assert_eq!(f[0].role, Some(Role::DataEndpoint));
    assert_eq!(verdict(&ev, &f), Verdict::Degraded);

    // NoAddresses under a privatelink chain, login server public.
    d.dns.system = sys(
        DnsOutcome::NoAddresses,
        &["myreg.westeurope.data.privatelink.azurecr.io"],
        &[],
    );
    let f = primary(&evidence(vec![login(), d.clone()]));
    check(
        &f,
        Reason::DataEndpointDNSMissing,
        Severity::Error,
        &[DATA, "privatelink"],
    );

    // Resolves publicly while the login server is private.
    let f = primary(&evidence(vec![private_login(), data()]));
    check(
        &f,
        Reason::DataEndpointDNSMissing,
        Severity::Error,
        &[DATA, NS, "public address 20.1.2.9", "10.1.0.5"],
    );

    // A public registry's data endpoint NXDOMAIN is a plain DNS failure.
    d.dns.system = sys(DnsOutcome::NameNotFound, &[], &[]);
    let f = primary(&evidence(vec![login(), d]));
    check(&f, Reason::DNSNameNotFound, Severity::Error, &[DATA]);
}

// ---- TCP ------------------------------------------------------------------------------

#[test]
fn tcp_failures_on_the_login_server() {
    let cases = [
        (TcpOutcome::Timeout, Reason::ConnectionTimedOut, "timed out"),
        (TcpOutcome::Refused, Reason::ConnectionRefused, "refused"),
        (
            TcpOutcome::Unreachable,
            Reason::HostUnreachable,
            "unreachable",
        ),
        (TcpOutcome::Blocked, Reason::TargetAddressBlocked, "blocked"),
    ];
    for (outcome, reason, word) in cases {
        let mut l = login();
        l.tcp = vec![tcp("20.1.2.3:443", outcome)];
        l.tls = None;
        l.http = None;
        let ev = evidence(vec![l]);
        let f = diagnose(&ev);
        assert_eq!(f.len(), 1, "{f:?}");
        check(&f[0], reason, Severity::Error, &[REG, "20.1.2.3:443", word]);
        assert_eq!(verdict(&ev, &f), Verdict::Unreachable);
    }
}

#[test]
fn tcp_to_private_endpoint_not_routed() {
    for (outcome, reason) in [
        (TcpOutcome::Unreachable, Reason::HostUnreachable),
        (TcpOutcome::Timeout, Reason::ConnectionTimedOut),
    ] {
        let mut l = private_login();
        l.tcp = vec![tcp("10.1.0.5:443", outcome)];
        l.tls = None;
        l.http = None;
        let f = primary(&evidence(vec![l]));
        check(
            &f,
            reason,
            Severity::Error,
            &[REG, "10.1.0.5:443", "private endpoint", "not routed"],
        );
    }
}

#[test]
fn tcp_partial_failure_is_a_warning() {
    let mut l = login();
    l.tcp = vec![
        tcp("20.1.2.4:443", TcpOutcome::Timeout),
        tcp("20.1.2.3:443", TcpOutcome::Connected),
    ];
    let ev = evidence(vec![l]);
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1);
    check(
        &f[0],
        Reason::ConnectionTimedOut,
        Severity::Warning,
        &["20.1.2.4:443", "20.1.2.3:443"],
    );
    assert_eq!(verdict(&ev, &f), Verdict::Degraded);
}

#[test]
fn data_endpoint_blocked_while_login_server_connects() {
    for outcome in [
        TcpOutcome::Timeout,
        TcpOutcome::Refused,
        TcpOutcome::Unreachable,
    ] {
        let mut d = data();
        d.tcp = vec![tcp("20.1.2.9:443", outcome)];
        d.tls = None;
        let ev = evidence(vec![login(), d]);
        let f = diagnose(&ev);
        assert_eq!(f.len(), 1, "{f:?}");
        check(
            &f[0],
            Reason::DataEndpointBlocked,
            Severity::Error,
            &[DATA, "20.1.2.9:443", REG, "allows the login server"],
        );
        assert_eq!(verdict(&ev, &f), Verdict::Degraded);
    }
}

// ---- proxy ----------------------------------------------------------------------------

fn proxied(outcome: ProxyOutcome, status: Option<u16>) -> EndpointEvidence {
    let mut l = login();
    l.route = Route {
        proxy: Some(PROXY.into()),
        no_proxy_match: None,
        cidr_not_applied: Vec::new(),
    };
    l.proxy = Some(ProxyEvidence {
        url: PROXY.into(),
        outcome,
        status,
        error: None,
        ms: 40,
    });
    l.tcp = vec![tcp("10.9.9.9:3128", TcpOutcome::Connected)];
    if outcome != ProxyOutcome::Connected {
        l.tls = None;
        l.http = None;
    }
    l
}

#[test]
fn proxy_failures() {
    let cases = [
        (ProxyOutcome::Denied, Some(403), Reason::ProxyDenied, "403"),
        (
            ProxyOutcome::AuthRequired,
            Some(407),
            Reason::ProxyAuthRequired,
            "407",
        ),
        (ProxyOutcome::Eof, None, Reason::ProxyConnectEOF, "EOF"),
        (
            ProxyOutcome::Unreachable,
            None,
            Reason::ProxyUnreachable,
            "cannot be reached",
        ),
        (
            ProxyOutcome::UpstreamFailed,
            Some(502),
            Reason::ProxyUpstreamFailed,
            "502",
        ),
        (
            ProxyOutcome::Timeout,
            None,
            Reason::ProxyUpstreamFailed,
            "40 ms",
        ),
        // Failed: a 4xx answer is a denial, anything else is treated like an EOF.
        (ProxyOutcome::Failed, Some(403), Reason::ProxyDenied, "403"),
        (
            ProxyOutcome::Failed,
            None,
            Reason::ProxyConnectEOF,
            "valid answer",
        ),
    ];
    for (outcome, status, reason, word) in cases {
        let ev = evidence(vec![proxied(outcome, status)]);
        let f = diagnose(&ev);
        assert_eq!(f.len(), 1, "{outcome:?}: {f:?}");
        check(&f[0], reason, Severity::Error, &[REG, PROXY, word]);
        assert_eq!(verdict(&ev, &f), Verdict::Unreachable);
    }
}

#[test]
fn proxy_unreachable_from_tcp_to_the_proxy() {
    let mut l = proxied(ProxyOutcome::Timeout, None);
    l.tcp = vec![tcp("10.9.9.9:3128", TcpOutcome::Refused)];
    let f = primary(&evidence(vec![l.clone()]));
    check(
        &f,
        Reason::ProxyUnreachable,
        Severity::Error,
        &[PROXY, "10.9.9.9:3128", "refused"],
    );
    // Without proxy evidence at all.
    l.proxy = None;
    let f = primary(&evidence(vec![l]));
    check(
        &f,
        Reason::ProxyUnreachable,
        Severity::Error,
        &[PROXY, "10.9.9.9:3128"],
    );
}

#[test]
fn proxy_bypass_missing_for_private_endpoint() {
    for outcome in [ProxyOutcome::UpstreamFailed, ProxyOutcome::Timeout] {
        let mut l = proxied(outcome, Some(503));
        l.dns = private_login().dns;
        l.route.cidr_not_applied = vec!["10.0.0.0/8".into()];
        let f = primary(&evidence(vec![l]));
        check(
            &f,
            Reason::ProxyBypassMissing,
            Severity::Error,
            &[
                REG,
                "10.1.0.5",
                PROXY,
                "NO_PROXY",
                "10.0.0.0/8",
                "IP literals",
            ],
        );
    }
}

#[test]
fn proxied_dns_failure_is_only_a_warning() {
    let mut l = proxied(ProxyOutcome::Connected, Some(200));
    l.dns.system = sys(DnsOutcome::NameNotFound, &[], &[]);
    let ev = evidence(vec![l]);
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "{f:?}");
    check(
        &f[0],
        Reason::DNSNameNotFound,
        Severity::Warning,
        &[REG, "proxy"],
    );
    assert_eq!(verdict(&ev, &f), Verdict::Degraded);
}

// ---- TLS ------------------------------------------------------------------------------

#[test]
fn tls_failures() {
    let cases = [
        (
            TlsOutcome::ResetAfterClientHello,
            Reason::TLSResetAfterClientHello,
            "ClientHello",
        ),
        (
            TlsOutcome::Timeout,
            Reason::TLSHandshakeTimeout,
            "TLS handshake timeout",
        ),
        (
            TlsOutcome::UntrustedIssuer,
            Reason::TLSInterception,
            "Contoso Inspection CA",
        ),
        (
            TlsOutcome::NameMismatch,
            Reason::TLSCertificateInvalid,
            "not valid for",
        ),
        (
            TlsOutcome::Expired,
            Reason::TLSCertificateInvalid,
            "expired",
        ),
        (TlsOutcome::Failed, Reason::TLSCertificateInvalid, "failed"),
    ];
    for (outcome, reason, word) in cases {
        let mut l = login();
        let mut t = tls(outcome);
        if outcome == TlsOutcome::UntrustedIssuer {
            t.issuer = Some("CN=Contoso Inspection CA".into());
        }
        l.tls = Some(t);
        l.http = None;
        let ev = evidence(vec![l]);
        let f = diagnose(&ev);
        assert_eq!(f.len(), 1, "{f:?}");
        check(&f[0], reason, Severity::Error, &[REG, "20.1.2.3:443", word]);
        assert_eq!(f[0].code.as_deref(), Some("CONNECTIVITY_SSL_ERROR"));
        assert_eq!(verdict(&ev, &f), Verdict::Unreachable);
    }
}

// ---- HTTP -----------------------------------------------------------------------------

#[test]
fn http_answers() {
    let mut no_challenge = http(401);
    no_challenge.content_type = Some("text/html".into());
    let mut malformed_challenge = http(401);
    malformed_challenge.challenge_malformed = true;
    let mut denied = http(403);
    denied.client_ip = Some("52.10.20.30".into());
    let mut denied_body_only = http(403);
    denied_body_only.registry_error = Some(RegistryError {
        code: "DENIED".into(),
        message: "client with IP '52.10.20.31' is not allowed access. Refer https://aka.ms/acr/firewall to grant access. CorrelationId: 1234".into(),
    });
    let mut html = http(200);
    html.distribution_api = false;
    html.content_type = Some("text/html; charset=utf-8".into());
    let mut not_found = http(404);
    not_found.distribution_api = false;
    not_found.content_type = Some("text/plain".into());
    let closed = HttpEvidence {
        outcome: HttpOutcome::Closed,
        status: None,
        ..http(0)
    };
    let cases: Vec<(HttpEvidence, Reason, Option<&str>, &str)> = vec![
        (
            HttpEvidence {
                outcome: HttpOutcome::HeadersTimeout,
                status: None,
                ..http(0)
            },
            Reason::HeadersTimeout,
            None,
            "awaiting headers",
        ),
        (closed, Reason::ConnectionClosed, None, "closed"),
        (
            HttpEvidence {
                outcome: HttpOutcome::Malformed,
                status: None,
                ..http(0)
            },
            Reason::NotARegistry,
            None,
            "not HTTP",
        ),
        (
            no_challenge,
            Reason::RegistryChallengeInvalid,
            Some("CONNECTIVITY_CHALLENGE_ERROR"),
            "without a WWW-Authenticate",
        ),
        (
            malformed_challenge,
            Reason::RegistryChallengeInvalid,
            Some("CONNECTIVITY_WWW_AUTHENTICATE_ERROR"),
            "cannot be parsed",
        ),
        (
            denied,
            Reason::RegistryDeniedClientIP,
            Some("CONNECTIVITY_FORBIDDEN_ERROR"),
            "52.10.20.30",
        ),
        (
            denied_body_only,
            Reason::RegistryDeniedClientIP,
            Some("CONNECTIVITY_FORBIDDEN_ERROR"),
            "52.10.20.31",
        ),
        (
            http(403),
            Reason::RegistryForbidden,
            Some("CONNECTIVITY_FORBIDDEN_ERROR"),
            "403",
        ),
        (
            http(429),
            Reason::Throttled,
            Some("CONNECTIVITY_TOOMANYREQUESTS_ERROR"),
            "429",
        ),
        (http(503), Reason::RegistryServerError, None, "503"),
        (not_found, Reason::NotARegistry, None, "text/plain"),
        (http(302), Reason::NotARegistry, None, "302"),
        (html, Reason::NotARegistry, None, "text/html"),
    ];
    for (h, reason, code, word) in cases {
        let mut l = login();
        l.http = Some(h);
        let ev = evidence(vec![l]);
        let f = diagnose(&ev);
        assert_eq!(f.len(), 1, "{reason}: {f:?}");
        check(&f[0], reason, Severity::Error, &[REG, word]);
        assert_eq!(f[0].code.as_deref(), code, "{reason}");
        assert_eq!(verdict(&ev, &f), Verdict::Unreachable, "{reason}");
    }
}

#[test]
fn denied_client_ip_suggests_egress_ip() {
    let mut l = login();
    let mut h = http(403);
    h.client_ip = Some("52.10.20.30".into());
    l.http = Some(h);
    let f = primary(&evidence(vec![l]));
    assert_eq!(f.cause, Cause::PublicNetworkAccessRules);
    assert!(f.message.contains("egress"), "{}", f.message);
}

#[test]
fn extra_host_and_custom_port() {
    let mut x = healthy(MCR, Role::Extra, "13.107.246.1");
    x.tls = Some(tls(TlsOutcome::ResetAfterClientHello));
    x.http = None;
    let ev = evidence(vec![login(), x]);
    let f = diagnose(&ev);
    check(
        &f[0],
        Reason::TLSResetAfterClientHello,
        Severity::Error,
        &[MCR],
    );
    assert_eq!(f[0].role, Some(Role::Extra));
    assert_eq!(verdict(&ev, &f), Verdict::Degraded);

    let mut l = healthy("registry.local", Role::LoginServer, "10.2.0.7");
    l.port = 5000;
    l.tcp = vec![tcp("10.2.0.7:5000", TcpOutcome::Refused)];
    l.tls = None;
    l.http = None;
    let ev = evidence(vec![l]);
    let f = primary(&ev);
    check(
        &f,
        Reason::ConnectionRefused,
        Severity::Error,
        &["registry.local:5000", "10.2.0.7:5000"],
    );
    assert_eq!(f.endpoint, "registry.local:5000");
    assert_eq!(verdict(&ev, &[f]), Verdict::Unreachable);
}

#[test]
fn deadline_exceeded_without_other_explanation() {
    let mut l = login();
    l.tls = None;
    l.http = None;
    l.deadline_exceeded = true;
    let ev = evidence(vec![l]);
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1);
    check(
        &f[0],
        Reason::ConnectionTimedOut,
        Severity::Error,
        &[REG, "deadline", "TCP connect"],
    );
    assert_eq!(verdict(&ev, &f), Verdict::Unreachable);

    // Every step completed: the flag alone is only a warning.
    let mut l = login();
    l.deadline_exceeded = true;
    let ev = evidence(vec![l]);
    let f = diagnose(&ev);
    check(
        &f[0],
        Reason::ConnectionTimedOut,
        Severity::Warning,
        &[REG, "deadline", "HTTP request"],
    );
    assert_eq!(verdict(&ev, &f), Verdict::Degraded);

    // Explained by a TLS timeout: no extra finding.
    let mut l = login();
    l.tls = Some(tls(TlsOutcome::Timeout));
    l.http = None;
    l.deadline_exceeded = true;
    let f = diagnose(&evidence(vec![l]));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason, Reason::TLSHandshakeTimeout);
}

// ---- pull -----------------------------------------------------------------------------

fn ok(host: &str) -> PullStep {
    step(PullOutcome::Ok, host)
}
fn skipped() -> PullStep {
    PullStep {
        host: None,
        ..step(PullOutcome::Skipped, REG)
    }
}

#[test]
fn pull_step_failures() {
    let denied = RegistryError {
        code: "DENIED".into(),
        message: "client with IP '52.10.20.30' is not allowed access".into(),
    };
    let scope = RegistryError {
        code: "DENIED".into(),
        message: "requested access to the resource is denied".into(),
    };
    let with_err = |o: PullOutcome, e: Option<RegistryError>| PullStep {
        registry_error: e,
        ..step(o, REG)
    };
    let cases: Vec<(PullEvidence, Reason, &str, Verdict)> = vec![
        (
            pull(step(PullOutcome::Unauthorized, REG), skipped(), skipped()),
            Reason::AuthenticationFailed,
            "401",
            Verdict::Degraded,
        ),
        (
            pull(
                ok(REG),
                with_err(PullOutcome::Forbidden, Some(scope)),
                skipped(),
            ),
            Reason::AuthorizationFailed,
            "403",
            Verdict::Degraded,
        ),
        (
            pull(
                with_err(PullOutcome::Forbidden, Some(denied)),
                skipped(),
                skipped(),
            ),
            Reason::RegistryDeniedClientIP,
            "52.10.20.30",
            Verdict::Unreachable,
        ),
        (
            pull(ok(REG), step(PullOutcome::NotFound, REG), skipped()),
            Reason::ImageNotFound,
            "app:v1",
            Verdict::Degraded,
        ),
        (
            pull(ok(REG), step(PullOutcome::Throttled, REG), skipped()),
            Reason::Throttled,
            "429",
            Verdict::Unreachable,
        ),
        (
            pull(ok(REG), step(PullOutcome::ServerError, REG), skipped()),
            Reason::RegistryServerError,
            "server error",
            Verdict::Unreachable,
        ),
        (
            pull(ok(REG), ok(REG), step(PullOutcome::TooManyRedirects, REG)),
            Reason::TooManyRedirects,
            "redirected",
            Verdict::Degraded,
        ),
        (
            pull(ok(REG), step(PullOutcome::Invalid, REG), skipped()),
            Reason::PullFailed,
            "unexpected",
            Verdict::Degraded,
        ),
    ];
    for (p, reason, word, v) in cases {
        let mut ev = evidence(vec![login()]);
        ev.pull = Some(p);
        let f = diagnose(&ev);
        assert_eq!(f.len(), 1, "{reason}: {f:?}");
        check(&f[0], reason, Severity::Error, &[REG, word]);
        assert_eq!(verdict(&ev, &f), v, "{reason}");
    }
}

#[test]
fn pull_blob_redirect_target_unreachable() {
    // The 307 target does not resolve.
    let mut fh = healthy(DATA, Role::DataEndpoint, "10.1.0.6");
    fh.dns.system = sys(DnsOutcome::NameNotFound, &[], &[]);
    fh.tcp.clear();
    fh.tls = None;
    let mut p = pull(ok(REG), ok(REG), step(PullOutcome::Unreachable, DATA));
    p.redirects = vec![DATA.into()];
    p.failed_host = Some(Box::new(fh));
    let mut ev = evidence(vec![private_login()]);
    ev.pull = Some(p.clone());
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "{f:?}");
    check(
        &f[0],
        Reason::DataEndpointDNSMissing,
        Severity::Error,
        &[DATA, NS, "NXDOMAIN", "10.1.0.5"],
    );
    assert_eq!(f[0].role, Some(Role::DataEndpoint));
    assert_eq!(verdict(&ev, &f), Verdict::Degraded);

    // The 307 target resolves but TCP times out.
    let mut fh = data();
    fh.tcp = vec![tcp("20.1.2.9:443", TcpOutcome::Timeout)];
    fh.tls = None;
    p.failed_host = Some(Box::new(fh));
    let mut ev = evidence(vec![login()]);
    ev.pull = Some(p.clone());
    let f = primary(&ev);
    check(
        &f,
        Reason::DataEndpointBlocked,
        Severity::Error,
        &[DATA, "20.1.2.9:443", REG],
    );

    // Already explained by the probed data endpoint: no duplicate.
    let mut d = data();
    d.tcp = vec![tcp("20.1.2.9:443", TcpOutcome::Timeout)];
    d.tls = None;
    let mut ev = evidence(vec![login(), d]);
    ev.pull = Some(p);
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].reason, Reason::DataEndpointBlocked);
}

#[test]
fn pull_unreachable_explained_by_login_server_adds_nothing() {
    let mut l = login();
    l.tcp = vec![tcp("20.1.2.3:443", TcpOutcome::Timeout)];
    l.tls = None;
    l.http = None;
    let mut ev = evidence(vec![l]);
    ev.pull = Some(pull(
        step(PullOutcome::Unreachable, REG),
        skipped(),
        skipped(),
    ));
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].reason, Reason::ConnectionTimedOut);
}

#[test]
fn healthy_pull_keeps_healthy() {
    let mut ev = evidence(vec![login(), data()]);
    ev.pull = Some(pull(ok(REG), ok(REG), ok(DATA)));
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1);
    check(&f[0], Reason::Healthy, Severity::Info, &["pull works"]);
}

// ---- ordering, verdict, report, robustness --------------------------------------------

#[test]
fn primary_ordering() {
    // Extra error, data endpoint error, login server warning + login server TLS error.
    let mut x = healthy(MCR, Role::Extra, "13.107.246.1");
    x.tcp = vec![tcp("13.107.246.1:443", TcpOutcome::Timeout)];
    let mut d = data();
    d.dns.system = sys(DnsOutcome::ServerFailure, &[], &[]);
    let mut l = login();
    l.dns
        .servers
        .push(answer("10.0.0.5:53", DnsOutcome::Timeout, &[], &[]));
    l.tls = Some(tls(TlsOutcome::UntrustedIssuer));
    let ev = evidence(vec![x, d, l]);
    let f = diagnose(&ev);
    let got: Vec<(Reason, Severity, &str)> = f
        .iter()
        .map(|f| (f.reason, f.severity, f.endpoint.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Reason::TLSInterception, Severity::Error, REG),
            (Reason::DNSServerFailure, Severity::Error, DATA),
            (Reason::ConnectionTimedOut, Severity::Error, MCR),
            (Reason::DNSAnswersDiffer, Severity::Warning, REG),
        ]
    );
    assert_eq!(verdict(&ev, &f), Verdict::Unreachable);
}

#[test]
fn verdicts() {
    let ok = evidence(vec![login(), data()]);
    assert_eq!(verdict(&ok, &diagnose(&ok)), Verdict::Healthy);

    let mut d = data();
    d.tls = Some(tls(TlsOutcome::ResetAfterClientHello));
    let degraded = evidence(vec![login(), d]);
    assert_eq!(verdict(&degraded, &diagnose(&degraded)), Verdict::Degraded);

    let mut l = login();
    l.http = Some(http(503));
    let down = evidence(vec![l, data()]);
    assert_eq!(verdict(&down, &diagnose(&down)), Verdict::Unreachable);

    // Findings without a role are matched to the login server by name.
    let mut f = Finding::catalogued(Reason::ConnectionRefused, REG, None, "x");
    assert_eq!(verdict(&ok, std::slice::from_ref(&f)), Verdict::Unreachable);
    f.endpoint = MCR.into();
    assert_eq!(verdict(&ok, &[f]), Verdict::Degraded);
}

#[test]
fn report_wraps_findings_and_verdict() {
    let mut l = login();
    l.http = Some(http(429));
    let r = report(evidence(vec![l]));
    assert_eq!(r.schema_version, SCHEMA_VERSION);
    assert_eq!(r.verdict, Verdict::Unreachable);
    assert_eq!(r.findings[0].reason, Reason::Throttled);
    assert_eq!(r.evidence.registry, REG);
    // The compact form drops remediation and docs; the catalogue restores them.
    let mut compact = r.findings[0].clone();
    compact.remediation.clear();
    compact.docs.clear();
    crate::engine::catalogue::restore(&mut compact);
    assert_eq!(compact, r.findings[0]);
}

#[test]
fn odd_evidence_does_not_panic() {
    let bare = EndpointEvidence {
        host: String::new(),
        port: 0,
        role: Role::LoginServer,
        dns: DnsEvidence {
            kubelet: None,
            system: answer("", DnsOutcome::Resolved, &[], &[]),
            servers: Vec::new(),
        },
        route: Route {
            proxy: Some(String::new()),
            no_proxy_match: None,
            cidr_not_applied: Vec::new(),
        },
        proxy: None,
        tcp: Vec::new(),
        tls: None,
        http: Some(HttpEvidence {
            status: None,
            ..http(0)
        }),
        deadline_exceeded: true,
    };
    let mut ev = evidence(vec![bare.clone()]);
    ev.registry = String::new();
    let _ = report(ev.clone());
    // Empty everything.
    let empty = evidence(Vec::new());
    let f = diagnose(&empty);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason, Reason::Healthy);
    // A pull with no hosts and no failed host evidence.
    let mut p = pull(
        PullStep {
            host: None,
            ..step(PullOutcome::Unreachable, REG)
        },
        skipped(),
        skipped(),
    );
    ev.pull = Some(p.clone());
    let _ = report(ev.clone());
    p.token = ok(REG);
    p.blob = PullStep {
        host: None,
        error: Some("x\ny".into()),
        ..step(PullOutcome::Unreachable, REG)
    };
    p.failed_host = Some(Box::new(bare));
    ev.pull = Some(p);
    for f in diagnose(&ev) {
        assert!(!f.message.contains('\n'), "{}", f.message);
    }
    // Long, multi-byte error text is cut on a character boundary.
    let mut l = login();
    let mut t = tls(TlsOutcome::Failed);
    t.error = Some("é".repeat(500));
    l.tls = Some(t);
    let f = primary(&evidence(vec![l]));
    assert!(f.message.chars().count() < 400);
    // Client IP parsing copes with odd bodies.
    assert_eq!(
        client_ip_in("client with IP '1.2.3.4' is not"),
        Some("1.2.3.4".into())
    );
    assert_eq!(
        client_ip_in("Client With IP \"2001:db8::1\" x"),
        Some("2001:db8::1".into())
    );
    assert_eq!(client_ip_in("client with ip"), None);
    assert_eq!(client_ip_in("é client with IP"), None);
}

// ---- generated evidence -----------------------------------------------------------------

/// A small deterministic generator (no external randomness: failures are reproducible).
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() as usize) % xs.len()]
    }
    fn chance(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

const DNS: &[DnsOutcome] = &[
    DnsOutcome::Resolved,
    DnsOutcome::Resolved,
    DnsOutcome::Resolved,
    DnsOutcome::NameNotFound,
    DnsOutcome::NoAddresses,
    DnsOutcome::ServerFailure,
    DnsOutcome::Refused,
    DnsOutcome::Timeout,
    DnsOutcome::Unreachable,
    DnsOutcome::CnameLoop,
    DnsOutcome::Error,
];
const TCP: &[TcpOutcome] = &[
    TcpOutcome::Connected,
    TcpOutcome::Connected,
    TcpOutcome::Timeout,
    TcpOutcome::Refused,
    TcpOutcome::Unreachable,
    TcpOutcome::Blocked,
    TcpOutcome::Error,
];
const TLS: &[TlsOutcome] = &[
    TlsOutcome::Verified,
    TlsOutcome::Verified,
    TlsOutcome::ResetAfterClientHello,
    TlsOutcome::Timeout,
    TlsOutcome::UntrustedIssuer,
    TlsOutcome::NameMismatch,
    TlsOutcome::Expired,
    TlsOutcome::Failed,
];
const PROXY_OUT: &[ProxyOutcome] = &[
    ProxyOutcome::Connected,
    ProxyOutcome::Connected,
    ProxyOutcome::Denied,
    ProxyOutcome::AuthRequired,
    ProxyOutcome::Eof,
    ProxyOutcome::Unreachable,
    ProxyOutcome::Timeout,
    ProxyOutcome::UpstreamFailed,
    ProxyOutcome::Failed,
];
const PULL: &[PullOutcome] = &[
    PullOutcome::Ok,
    PullOutcome::Ok,
    PullOutcome::Ok,
    PullOutcome::Unauthorized,
    PullOutcome::Forbidden,
    PullOutcome::NotFound,
    PullOutcome::Throttled,
    PullOutcome::ServerError,
    PullOutcome::Unreachable,
    PullOutcome::TooManyRedirects,
    PullOutcome::Invalid,
    PullOutcome::Skipped,
];
const ADDRS: &[&str] = &[
    "20.1.2.3",
    "10.1.0.5",
    "127.0.0.1",
    "2001:db8::7",
    "fd00::5",
];

fn gen_answer(g: &mut Gen, server: &str) -> DnsAnswer {
    let outcome = g.pick(DNS);
    let cnames: &[&str] = if g.chance(2) { &[PL] } else { &[] };
    let addrs: Vec<&str> = if outcome == DnsOutcome::Resolved && !g.chance(10) {
        (0..1 + g.next() % 2).map(|_| g.pick(ADDRS)).collect()
    } else {
        Vec::new()
    };
    let mut a = answer(server, outcome, cnames, &addrs);
    if g.chance(2) {
        a.answered_by = Some(g.pick(&["10.0.0.4:53", "10.0.0.5:53"]).into());
    }
    a
}

fn gen_endpoint(g: &mut Gen, host: &str, role: Role) -> EndpointEvidence {
    let mut e = healthy(host, role, "20.1.2.3");
    e.port = g.pick(&[443, 443, 5000]);
    e.dns.system = gen_answer(g, "system");
    e.dns.servers = (0..g.next() % 3)
        .map(|i| {
            gen_answer(
                g,
                ["10.0.0.4:53", "10.0.0.5:53", "168.63.129.16:53"][i as usize],
            )
        })
        .collect();
    if g.chance(3) {
        e.route = Route {
            proxy: Some(PROXY.into()),
            no_proxy_match: None,
            cidr_not_applied: if g.chance(2) {
                vec!["10.0.0.0/8".into()]
            } else {
                Vec::new()
            },
        };
        e.proxy = (!g.chance(5)).then(|| ProxyEvidence {
            url: PROXY.into(),
            outcome: g.pick(PROXY_OUT),
            status: g.pick(&[None, Some(403), Some(407), Some(502)]),
            error: None,
            ms: 1,
        });
    }
    e.tcp = (0..g.next() % 3)
        .map(|_| {
            tcp(
                g.pick(&["20.1.2.3:443", "10.1.0.5:443", "[2001:db8::7]:443"]),
                g.pick(TCP),
            )
        })
        .collect();
    e.tls = (!g.chance(5)).then(|| {
        let mut t = tls(g.pick(TLS));
        if t.outcome == TlsOutcome::Timeout && g.chance(2) {
            t.small_mss_retry = Some(mss_retry(g.chance(2)));
        }
        t
    });
    e.http = if g.chance(5) {
        None
    } else {
        let mut h = http(g.pick(&[200, 200, 401, 401, 401, 403, 404, 302, 429, 500, 503]));
        h.outcome = g.pick(&[
            HttpOutcome::Response,
            HttpOutcome::Response,
            HttpOutcome::Response,
            HttpOutcome::HeadersTimeout,
            HttpOutcome::Closed,
            HttpOutcome::Malformed,
        ]);
        if g.chance(2) {
            h.challenge = http_ok().challenge;
        }
        h.challenge_malformed = g.chance(6);
        h.distribution_api = g.chance(2);
        if g.chance(3) {
            h.client_ip = Some(g.pick(&["52.10.20.30", "10.240.0.4"]).into());
        }
        if g.chance(3) {
            h.content_type = Some("text/html".into());
        }
        Some(h)
    };
    e.deadline_exceeded = g.chance(6);
    e
}

fn gen_evidence(g: &mut Gen) -> Evidence {
    let mut eps = Vec::new();
    if !g.chance(8) {
        eps.push(gen_endpoint(g, REG, Role::LoginServer));
    }
    for host in [DATA, "myreg.eastus.data.azurecr.io"]
        .into_iter()
        .take((g.next() % 3) as usize)
    {
        eps.push(gen_endpoint(g, host, Role::DataEndpoint));
    }
    if g.chance(3) {
        eps.push(gen_endpoint(g, MCR, Role::Extra));
    }
    let mut ev = evidence(eps);
    ev.expect = g.pick(&[Expect::Any, Expect::Public, Expect::Private]);
    if g.chance(2) {
        ev.egress_ips = vec!["20.1.2.0/24".into()];
    }
    ev.ip_family = g.pick(&[
        None,
        None,
        Some(IpFamily::Ipv4),
        Some(IpFamily::Ipv6),
        Some(IpFamily::Dual),
    ]);
    if g.chance(2) {
        let st = |g: &mut Gen, host: &str| {
            let mut s = step(g.pick(PULL), host);
            if s.outcome == PullOutcome::Forbidden && g.chance(2) {
                s.registry_error = Some(match g.next() % 3 {
                    0 => RegistryError {
                        code: "AuthorizationFailure".into(),
                        message: "This request is not authorized to perform this operation.".into(),
                    },
                    n => RegistryError {
                        code: "DENIED".into(),
                        message: format!(
                            "client with IP '{}' is not allowed access",
                            ["52.10.20.30", "10.240.0.4"][n as usize - 1]
                        ),
                    },
                });
            }
            if g.chance(2) {
                s.path = Some(
                    g.pick(&["/v2/", "/oauth2/token", "/oauth2/exchange"])
                        .into(),
                );
            }
            if g.chance(6) {
                s.host = None;
            }
            s
        };
        let mut p = pull(st(g, REG), st(g, REG), st(g, DATA));
        if g.chance(2) {
            p.failed_host = Some(Box::new(gen_endpoint(g, DATA, Role::DataEndpoint)));
        }
        ev.pull = Some(p);
    }
    if g.chance(4) {
        let host = gen_endpoint(g, "management.azure.com", Role::Egress);
        ev.egress = Some(egress_of(vec![egress_host(host, g.chance(2))]));
    }
    if g.chance(4) {
        let mirror = gen_endpoint(g, "mirror.example", Role::Mirror);
        let works = crate::engine::mirrors::endpoint_works(&mirror);
        ev.containerd = Some(crate::engine::mirrors::ContainerdEvidence {
            config: Some("/etc/containerd/certs.d/myreg.azurecr.io/hosts.toml".into()),
            broken: None,
            invalid: g
                .chance(3)
                .then(|| "hosts.toml: skip_verify = \"yes\": must be true or false".into()),
            hosts: vec![
                mirror_host("https://mirror.example/v2", false, Some(mirror), works),
                mirror_host("https://myreg.azurecr.io/v2", true, None, true),
            ],
            would_use: None,
            probe_took: "https://myreg.azurecr.io/v2/ directly".into(),
        });
    }
    ev
}

fn mirror_host(
    url: &str,
    upstream: bool,
    endpoint: Option<EndpointEvidence>,
    works: bool,
) -> crate::engine::mirrors::HostEvidence {
    crate::engine::mirrors::HostEvidence {
        url: url.into(),
        capabilities: vec!["pull".into(), "resolve".into()],
        upstream,
        ca: vec![],
        skip_verify: false,
        plain_http: false,
        notes: vec![],
        endpoint,
        works,
    }
}

#[test]
fn failing_mirror_is_a_warning_and_the_upstream_stays_primary() {
    let mut dead = healthy("mirror.example", Role::Mirror, "10.9.0.5");
    dead.tcp[0].outcome = TcpOutcome::Refused;
    dead.tls = None;
    dead.http = None;
    let c = |login_ok: bool| {
        let mut login = healthy(REG, Role::LoginServer, "20.1.2.3");
        if !login_ok {
            login.tcp[0].outcome = TcpOutcome::Timeout;
            login.tls = None;
            login.http = None;
        }
        let mut ev = evidence(vec![login]);
        ev.containerd = Some(crate::engine::mirrors::ContainerdEvidence {
            config: None,
            invalid: None,
            broken: None,
            hosts: vec![
                mirror_host(
                    "https://mirror.example/v2",
                    false,
                    Some(dead.clone()),
                    false,
                ),
                mirror_host(&format!("https://{REG}/v2"), true, None, login_ok),
            ],
            would_use: None,
            probe_took: String::new(),
        });
        report(ev)
    };
    let r = c(true);
    assert_eq!(r.verdict, Verdict::Degraded);
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(f.reason, Reason::MirrorUnreachable);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.role, Some(Role::Mirror));
    assert!(f.message.contains("ConnectionRefused"), "{}", f.message);
    assert!(
        f.message.contains(&format!("https://{REG}/v2")),
        "{}",
        f.message
    );
    let r = c(false);
    assert_eq!(r.verdict, Verdict::Unreachable);
    assert_eq!(r.findings[0].reason, Reason::ConnectionTimedOut);
    assert_eq!(r.findings[1].reason, Reason::MirrorUnreachable);

    let mut ev = evidence(vec![healthy(REG, Role::LoginServer, "20.1.2.3")]);
    ev.containerd = Some(crate::engine::mirrors::ContainerdEvidence {
        config: None,
        broken: None,
        invalid: Some("/c/hosts.toml: ca = 5: must be a file name".into()),
        hosts: vec![mirror_host(&format!("https://{REG}/v2"), true, None, true)],
        would_use: None,
        probe_took: String::new(),
    });
    let r = report(ev);
    assert_eq!(r.findings[0].reason, Reason::HostsConfigInvalid);
    assert!(r.findings[0].message.contains("ca = 5"));
    assert_eq!(r.verdict, Verdict::Degraded);
}

/// containerd pulls through a working mirror and never asks the upstream: the upstream's
/// failure (here its name does not resolve) is a Warning saying so, the verdict Degraded, not
/// Unreachable (the kubelet's pull works). A mirror that only resolves, or no working mirror,
/// leaves the upstream's Error as it is.
#[test]
fn upstream_failure_behind_a_working_mirror_is_a_warning() {
    let mirror = healthy("10.88.0.1:5443", Role::Mirror, "10.88.0.1");
    let run = |caps: &[&str], mirror_works: bool| {
        let mut login = healthy(REG, Role::LoginServer, "20.1.2.3");
        login.dns.system = answer("system", DnsOutcome::NameNotFound, &[], &[]);
        login.tcp.clear();
        login.tls = None;
        login.http = None;
        let mut ev = evidence(vec![login]);
        let mut m = mirror_host(
            "https://10.88.0.1:5443/v2",
            false,
            Some(mirror.clone()),
            mirror_works,
        );
        m.capabilities = caps.iter().map(|c| c.to_string()).collect();
        ev.containerd = Some(crate::engine::mirrors::ContainerdEvidence {
            config: Some("/etc/containerd/certs.d/myreg.azurecr.io/hosts.toml".into()),
            invalid: None,
            broken: None,
            hosts: vec![
                m,
                mirror_host(&format!("https://{REG}/v2"), true, None, false),
            ],
            would_use: mirror_works.then(|| "https://10.88.0.1:5443/v2".to_string()),
            probe_took: format!("https://{REG}/v2/ directly"),
        });
        report(ev)
    };
    let r = run(&["pull", "resolve"], true);
    assert_eq!(r.verdict, Verdict::Degraded, "{:?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(f.reason, Reason::DNSNameNotFound);
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.message
            .contains("containerd pulls through its mirror https://10.88.0.1:5443/v2"),
        "{}",
        f.message
    );
    assert!(r.findings.iter().all(|f| f.severity != Severity::Error));
    // A mirror for resolving only: blobs still come from the upstream.
    let r = run(&["resolve"], true);
    assert_eq!(r.verdict, Verdict::Unreachable);
    assert_eq!(r.findings[0].severity, Severity::Error);
    // The mirror does not work either: the upstream's Error stays primary.
    let r = run(&["pull", "resolve"], false);
    assert_eq!(r.verdict, Verdict::Unreachable);
    assert_eq!(r.findings[0].reason, Reason::DNSNameNotFound);
    assert_eq!(r.findings[0].severity, Severity::Error);
}

#[test]
fn generated_evidence_keeps_the_invariants_and_reaches_every_reason() {
    use std::collections::HashSet;
    let mut g = Gen(0x5eed);
    let mut seen: HashSet<Reason> = HashSet::new();
    for n in 0..30_000 {
        let ev = gen_evidence(&mut g);
        let r = report(ev.clone());
        let f = &r.findings;
        assert!(!f.is_empty(), "#{n}");
        let healthy = f.iter().filter(|x| x.reason == Reason::Healthy).count();
        assert!(healthy == 0 || f.len() == 1, "#{n}: Healthy alone: {f:?}");
        let all_info = f.iter().all(|x| x.severity == Severity::Info);
        assert_eq!(r.verdict == Verdict::Healthy, all_info, "#{n}: {f:?}");
        assert!(
            f.windows(2).all(|w| w[0].severity <= w[1].severity),
            "#{n}: order {f:?}"
        );
        for x in f {
            seen.insert(x.reason);
            assert!(!x.message.contains('\n'), "#{n}: {}", x.message);
            assert!(x.message.starts_with(&x.endpoint), "#{n}: {x:?}");
            assert_eq!(x.cause, x.reason.cause());
        }
        // A host whose name failed to resolve gets no TCP/TLS findings.
        for x in f.iter().filter(|x| {
            x.severity == Severity::Error
                && matches!(
                    x.reason,
                    Reason::DNSNameNotFound
                        | Reason::DNSServerUnreachable
                        | Reason::DNSServerFailure
                        | Reason::RegistryLacksIPv6
                )
        }) {
            let lower = f.iter().any(|y| {
                y.endpoint == x.endpoint
                    && matches!(
                        y.reason,
                        Reason::ConnectionTimedOut
                            | Reason::ConnectionRefused
                            | Reason::HostUnreachable
                            | Reason::TLSResetAfterClientHello
                            | Reason::TLSHandshakeTimeout
                            | Reason::PathMTUBlackHole
                            | Reason::IPv6PathBroken
                            | Reason::TLSInterception
                            | Reason::TLSCertificateInvalid
                    )
            });
            assert!(!lower, "#{n}: {f:?}");
        }
    }
    let missing: Vec<&Reason> = Reason::ALL
        .iter()
        .filter(|r| {
            !seen.contains(r)
                && !r.is_operator()
                && !crate::engine::pullerror::ONLY_FROM_RUNTIME_MESSAGES.contains(r)
        })
        .collect();
    assert!(missing.is_empty(), "never produced: {missing:?}");
}

// ---- the kinds of 403 and the token endpoint (issue 15) ------------------------------

fn denied_v2(ip: &str) -> EndpointEvidence {
    let mut l = login();
    let mut h = http(403);
    h.client_ip = Some(ip.into());
    h.registry_error = Some(RegistryError {
        code: "DENIED".into(),
        message: format!(
            "client with IP '{ip}' is not allowed access. Refer https://aka.ms/acr/firewall to grant access."
        ),
    });
    l.http = Some(h);
    l
}

#[test]
fn denial_of_a_private_client_address_is_a_vnet_path() {
    for egress in [vec![], vec!["20.1.2.0/24".to_string()]] {
        let mut ev = evidence(vec![denied_v2("10.240.0.4")]);
        ev.egress_ips = egress.clone();
        let f = primary(&ev);
        check(
            &f,
            Reason::RegistryDeniedPrivateClientIP,
            Severity::Error,
            &[REG, "10.240.0.4", "private address", "virtual-network rule"],
        );
        assert_eq!(f.code.as_deref(), Some("CONNECTIVITY_FORBIDDEN_ERROR"));
        assert_eq!(
            f.message.contains("20.1.2.0/24"),
            !egress.is_empty(),
            "{egress:?}"
        );
        assert_eq!(verdict(&ev, &diagnose(&ev)), Verdict::Unreachable);
    }
}

#[test]
fn denial_outside_the_expected_egress_is_the_wrong_path() {
    let mut ev = evidence(vec![denied_v2("52.10.20.30")]);
    ev.egress_ips = vec!["20.1.2.0/24".into(), "40.1.1.1/32".into()];
    let f = primary(&ev);
    check(
        &f,
        Reason::EgressIPUnexpected,
        Severity::Error,
        &[
            "52.10.20.30",
            "not one of the expected egress",
            "wrong NAT gateway",
            "40.1.1.1/32",
        ],
    );
    assert_eq!(f.cause, Cause::VirtualNetworkConfiguration);
}

#[test]
fn denial_inside_the_expected_egress_needs_the_ip_rule() {
    let mut ev = evidence(vec![denied_v2("20.1.2.7")]);
    ev.egress_ips = vec!["20.1.2.0/24".into()];
    check(
        &primary(&ev),
        Reason::RegistryDeniedClientIP,
        Severity::Error,
        &[
            "20.1.2.7",
            "one of the expected egress",
            "--ip-address 20.1.2.7",
        ],
    );
    // Without egress addresses the general question stays.
    let ev = evidence(vec![denied_v2("20.1.2.7")]);
    check(
        &primary(&ev),
        Reason::RegistryDeniedClientIP,
        Severity::Error,
        &["is 20.1.2.7 the egress/NAT IP you expect"],
    );
}

#[test]
fn pull_denials_follow_the_same_rules() {
    let denied = |ip: &str| PullStep {
        registry_error: Some(RegistryError {
            code: "DENIED".into(),
            message: format!("client with IP '{ip}' is not allowed access"),
        }),
        path: Some("/oauth2/token".into()),
        ..step(PullOutcome::Forbidden, REG)
    };
    let cases = [
        ("10.240.0.4", vec![], Reason::RegistryDeniedPrivateClientIP),
        (
            "52.1.1.1",
            vec!["20.1.2.0/24".to_string()],
            Reason::EgressIPUnexpected,
        ),
        (
            "20.1.2.9",
            vec!["20.1.2.0/24".to_string()],
            Reason::RegistryDeniedClientIP,
        ),
    ];
    for (addr, egress, reason) in cases {
        let mut ev = evidence(vec![login()]);
        ev.egress_ips = egress;
        ev.pull = Some(pull(denied(addr), skipped(), skipped()));
        check(
            &primary(&ev),
            reason,
            Severity::Error,
            &[REG, "token request to /oauth2/token for app:v1", addr],
        );
    }
}

fn storage_403() -> PullStep {
    PullStep {
        status: Some(403),
        registry_error: Some(RegistryError {
            code: "AuthorizationFailure".into(),
            message: "This request is not authorized to perform this operation.".into(),
        }),
        ..step(PullOutcome::Forbidden, DATA)
    }
}

#[test]
fn storage_403_behind_a_data_endpoint_is_storage_access_denied() {
    let mut p = pull(ok(REG), ok(REG), storage_403());
    p.redirects = vec![DATA.into()];
    let mut ev = evidence(vec![login()]);
    ev.pull = Some(p);
    let f = primary(&ev);
    check(
        &f,
        Reason::StorageAccessDenied,
        Severity::Error,
        &[
            DATA,
            "redirected here (via",
            "AuthorizationFailure",
            "not the registry's identity",
        ],
    );
    assert_eq!(f.role, Some(Role::DataEndpoint));
    // The registry API works: the data path is degraded, not the registry unreachable.
    assert_eq!(verdict(&ev, &diagnose(&ev)), Verdict::Degraded);

    // A storage account that is not a probed data endpoint, without the XML: still the
    // storage (the redirect URL carries its own signature, no identity is involved).
    let blob = PullStep {
        registry_error: None,
        ..step(PullOutcome::Forbidden, "acct.blob.core.windows.net")
    };
    let mut p = pull(ok(REG), ok(REG), blob);
    p.redirects = vec!["acct.blob.core.windows.net".into()];
    let mut ev = evidence(vec![login()]);
    ev.pull = Some(p);
    assert_eq!(primary(&ev).reason, Reason::StorageAccessDenied);

    // A 403 on the blob from the login server itself is still about the identity.
    let mut ev = evidence(vec![login()]);
    ev.pull = Some(pull(ok(REG), ok(REG), step(PullOutcome::Forbidden, REG)));
    assert_eq!(primary(&ev).reason, Reason::AuthorizationFailed);
}

#[test]
fn token_endpoint_failures_carry_the_token_codes() {
    let at = |o: PullOutcome, path: &str, status: Option<u16>| PullStep {
        path: Some(path.into()),
        status,
        ..step(o, REG)
    };
    let cases = [
        (
            at(PullOutcome::Unauthorized, "/oauth2/token", Some(401)),
            Reason::AuthenticationFailed,
            "CONNECTIVITY_ACCESS_TOKEN_ERROR",
            "token request to /oauth2/token for app:v1 answered 401",
        ),
        (
            at(PullOutcome::Unauthorized, "/oauth2/exchange", Some(401)),
            Reason::AuthenticationFailed,
            "CONNECTIVITY_REFRESH_TOKEN_ERROR",
            "/oauth2/exchange",
        ),
        (
            at(PullOutcome::Forbidden, "/oauth2/token", Some(403)),
            Reason::AuthorizationFailed,
            "CONNECTIVITY_ACCESS_TOKEN_ERROR",
            "no token for this identity",
        ),
        (
            at(PullOutcome::ServerError, "/oauth2/token", Some(500)),
            Reason::TokenRequestFailed,
            "CONNECTIVITY_ACCESS_TOKEN_ERROR",
            "(status 500)",
        ),
        (
            at(PullOutcome::Invalid, "/oauth2/exchange", Some(200)),
            Reason::TokenRequestFailed,
            "CONNECTIVITY_REFRESH_TOKEN_ERROR",
            "while the registry answers its /v2/ challenge",
        ),
        (
            at(PullOutcome::Unreachable, "/oauth2/token", None),
            Reason::TokenRequestFailed,
            "CONNECTIVITY_ACCESS_TOKEN_ERROR",
            "could not reach the token endpoint",
        ),
        (
            at(PullOutcome::Throttled, "/oauth2/token", Some(429)),
            Reason::Throttled,
            "CONNECTIVITY_TOOMANYREQUESTS_ERROR",
            "429",
        ),
    ];
    for (token, reason, code, needle) in cases {
        let mut ev = evidence(vec![login()]);
        ev.pull = Some(pull(token, skipped(), skipped()));
        let f = primary(&ev);
        check(&f, reason, Severity::Error, &[REG, needle]);
        assert_eq!(f.code.as_deref(), Some(code), "{reason}");
    }
}

#[test]
fn manifest_401_is_told_apart_from_the_token_endpoint() {
    let mut ev = evidence(vec![login()]);
    ev.pull = Some(pull(
        ok(REG),
        PullStep {
            status: Some(401),
            ..step(PullOutcome::Unauthorized, REG)
        },
        skipped(),
    ));
    let f = primary(&ev);
    check(
        &f,
        Reason::AuthenticationFailed,
        Severity::Error,
        &["manifest request for app:v1 answered 401"],
    );
    assert!(!f.message.contains("token request"), "{}", f.message);
    // A failure of the challenge itself (path /v2/) is not a token endpoint failure.
    let mut ev = evidence(vec![login()]);
    ev.pull = Some(pull(
        PullStep {
            path: Some("/v2/".into()),
            ..step(PullOutcome::ServerError, REG)
        },
        skipped(),
        skipped(),
    ));
    assert_eq!(primary(&ev).reason, Reason::RegistryServerError);
}

// ---- the host's resolver (containerd's) against the kubelet's ----------------------------

fn resolvers() -> crate::engine::evidence::ResolverEvidence {
    use crate::engine::evidence::{ResolvSource, ResolverEvidence};
    ResolverEvidence {
        host: ResolvSource {
            file: "/host/etc/resolv.conf".into(),
            nameservers: vec!["127.0.0.53:53".into()],
            search: vec![],
        },
        kubelet: ResolvSource {
            file: "/etc/resolv.conf".into(),
            nameservers: vec![NS.into()],
            search: vec![],
        },
        differ: true,
        containerd_uses: "the host's /host/etc/resolv.conf".into(),
    }
}

#[test]
fn host_resolver_fails_while_the_kubelets_works() {
    let mut l = login();
    l.dns.system = answer("system", DnsOutcome::Timeout, &[], &[]);
    l.dns.kubelet = Some(answer("system", DnsOutcome::Resolved, &[], &["20.1.2.3"]));
    l.tcp.clear();
    l.tls = None;
    l.http = None;
    let mut ev = evidence(vec![l]);
    ev.resolvers = Some(resolvers());
    let f = diagnose(&ev);
    // The host's failure (what containerd sees) is the primary, an Error that blocks pulls.
    assert_eq!(f[0].reason, Reason::DNSServerUnreachable, "{f:?}");
    assert_eq!(verdict(&ev, &f), Verdict::Unreachable);
    let d = f
        .iter()
        .find(|x| x.reason == Reason::DNSAnswersDiffer)
        .expect("the comparison");
    check(
        d,
        Reason::DNSAnswersDiffer,
        Severity::Warning,
        &[
            REG,
            "containerd resolves with the host's resolv.conf",
            "127.0.0.53:53",
            "kubelet's resolv.conf",
            NS,
            "20.1.2.3",
            "containerd's pulls fail",
        ],
    );
}

#[test]
fn kubelet_resolver_fails_while_the_hosts_works() {
    let mut l = login();
    l.dns.kubelet = Some(answer("system", DnsOutcome::ServerFailure, &[], &[]));
    let mut ev = evidence(vec![l]);
    ev.resolvers = Some(resolvers());
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "{f:?}");
    check(
        &f[0],
        Reason::DNSAnswersDiffer,
        Severity::Warning,
        &[
            REG,
            "kubelet's resolv.conf",
            "which containerd uses",
            "pulls work",
        ],
    );
    assert_eq!(verdict(&ev, &f), Verdict::Degraded);
}

#[test]
fn resolvers_that_agree_or_are_not_compared_give_nothing() {
    let mut l = login();
    let addr = l.dns.system.addresses.clone();
    let mut same = answer("system", DnsOutcome::Resolved, &[], &[]);
    same.addresses = addr;
    l.dns.kubelet = Some(same);
    let mut ev = evidence(vec![l.clone()]);
    ev.resolvers = Some(resolvers());
    assert_eq!(primary(&ev).reason, Reason::Healthy);
    // Without the resolver evidence (no --host-resolv-conf) the rule is silent.
    l.dns.kubelet = Some(answer("system", DnsOutcome::Timeout, &[], &[]));
    assert_eq!(primary(&evidence(vec![l])).reason, Reason::Healthy);
}

// ---- path-MTU black holes and address families (issue 15, items 4 and 5) -------------

fn mss_retry(completed: bool) -> MssRetry {
    MssRetry {
        mss: crate::engine::evidence::SMALL_MSS,
        completed,
        tls: Some(if completed {
            TlsOutcome::Verified
        } else {
            TlsOutcome::Timeout
        }),
        error: (!completed).then(|| "no handshake within 1500 ms (0 bytes from the server)".into()),
        ms: 12,
    }
}

fn stalled_login(retry: Option<MssRetry>) -> EndpointEvidence {
    let mut l = login();
    let mut t = tls(TlsOutcome::Timeout);
    t.peer = Some("20.1.2.3:443".parse().unwrap());
    t.error = Some("no handshake within 3000 ms (0 bytes from the server)".into());
    t.small_mss_retry = retry;
    l.tls = Some(t);
    l.http = None;
    l
}

#[test]
fn stalled_handshake_that_completes_with_a_small_mss_is_a_path_mtu_black_hole() {
    let ev = evidence(vec![stalled_login(Some(mss_retry(true)))]);
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "{f:?}");
    check(
        &f[0],
        Reason::PathMTUBlackHole,
        Severity::Error,
        &[REG, "20.1.2.3:443", "MSS 536", "fragmentation needed"],
    );
    assert_eq!(verdict(&ev, &f), Verdict::Unreachable);
    let e = Reason::PathMTUBlackHole.entry();
    assert!(e.remediation.contains("MSS"), "{}", e.remediation);
    assert!(e.remediation.contains("type 3 code 4"), "{}", e.remediation);
    assert!(e.remediation.contains("MTU"), "{}", e.remediation);

    // The retry got the certificate but refused it: the flight still arrived.
    let mut r = mss_retry(true);
    r.tls = Some(TlsOutcome::UntrustedIssuer);
    let f = primary(&evidence(vec![stalled_login(Some(r))]));
    check(
        &f,
        Reason::PathMTUBlackHole,
        Severity::Error,
        &["UntrustedIssuer"],
    );
}

#[test]
fn stalled_handshake_that_stalls_again_keeps_the_firewall_reading() {
    let f = primary(&evidence(vec![stalled_login(Some(mss_retry(false)))]));
    check(
        &f,
        Reason::TLSHandshakeTimeout,
        Severity::Error,
        &[
            "TLS handshake timeout",
            "MSS 536 stalled too",
            "held on the path",
        ],
    );
    // No retry recorded (through a proxy, or older evidence): the plain timeout.
    let f = primary(&evidence(vec![stalled_login(None)]));
    check(&f, Reason::TLSHandshakeTimeout, Severity::Error, &[REG]);
    assert!(!f.message.contains("MSS"), "{}", f.message);
    // The retry is only read for a timeout: a reset stays a reset.
    let mut l = stalled_login(Some(mss_retry(true)));
    l.tls.as_mut().unwrap().outcome = TlsOutcome::ResetAfterClientHello;
    assert_eq!(
        primary(&evidence(vec![l])).reason,
        Reason::TLSResetAfterClientHello
    );
}

fn dual_login(v6_outcome: TcpOutcome) -> EndpointEvidence {
    let mut l = login();
    l.dns.system = sys(DnsOutcome::Resolved, &[], &["2001:db8::7", "20.1.2.3"]);
    l.dns.servers.clear();
    l.tcp = vec![
        tcp("[2001:db8::7]:443", v6_outcome),
        tcp("20.1.2.3:443", TcpOutcome::Connected),
    ];
    l
}

#[test]
fn ipv6_failing_while_ipv4_connects_is_ipv6_path_broken() {
    for (family, outcome) in [
        (None, TcpOutcome::Timeout),
        (Some(IpFamily::Dual), TcpOutcome::Timeout),
        (Some(IpFamily::Dual), TcpOutcome::Refused),
        (Some(IpFamily::Dual), TcpOutcome::Unreachable),
    ] {
        let mut ev = evidence(vec![dual_login(outcome)]);
        ev.ip_family = family;
        let f = diagnose(&ev);
        assert_eq!(f.len(), 1, "{family:?} {outcome:?}: {f:?}");
        check(
            &f[0],
            Reason::IPv6PathBroken,
            Severity::Warning,
            &[
                REG,
                "[2001:db8::7]:443",
                "20.1.2.3:443",
                "IPv6 path is broken",
            ],
        );
        assert_eq!(verdict(&ev, &f), Verdict::Degraded);
    }
    // An IPv4-only node (no IPv6 route: unreachable) with the family unknown: the old warning.
    let ev = evidence(vec![dual_login(TcpOutcome::Unreachable)]);
    let f = primary(&ev);
    assert_eq!(f.reason, Reason::HostUnreachable, "{f:?}");
    assert_eq!(f.severity, Severity::Warning);
    // IPv4 failing while IPv6 connects is not an IPv6 problem.
    let mut l = dual_login(TcpOutcome::Connected);
    l.tcp[1].outcome = TcpOutcome::Timeout;
    assert_eq!(
        primary(&evidence(vec![l])).reason,
        Reason::ConnectionTimedOut
    );
}

#[test]
fn registry_without_aaaa_for_ipv6_and_dual_stack_clients() {
    // IPv6-only client: nothing to dial, an error, nothing below.
    let mut l = login();
    l.tcp.clear();
    l.tls = None;
    l.http = None;
    let mut ev = evidence(vec![l]);
    ev.ip_family = Some(IpFamily::Ipv6);
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "{f:?}");
    check(
        &f[0],
        Reason::RegistryLacksIPv6,
        Severity::Error,
        &[REG, "20.1.2.3", "no AAAA record", "IPv6-only"],
    );
    assert_eq!(verdict(&ev, &f), Verdict::Unreachable);
    // A NAT64 answer (64:ff9b::/96, synthesised by DNS64) is an IPv6 address: no finding.
    let mut l = healthy(REG, Role::LoginServer, "64:ff9b::1401:203");
    l.dns.servers.clear();
    let mut ev = evidence(vec![l]);
    ev.ip_family = Some(IpFamily::Ipv6);
    assert_eq!(primary(&ev).reason, Reason::Healthy);

    // Dual-stack: works over IPv4; an Info finding, the verdict stays healthy.
    let mut ev = evidence(vec![login()]);
    ev.ip_family = Some(IpFamily::Dual);
    let f = diagnose(&ev);
    assert_eq!(f.len(), 1, "{f:?}");
    check(
        &f[0],
        Reason::RegistryLacksIPv6,
        Severity::Info,
        &["dual-stack", "IPv4 only"],
    );
    assert_eq!(verdict(&ev, &f), Verdict::Healthy);
    // IPv4 client: no finding about AAAA; unknown family: none either.
    for family in [Some(IpFamily::Ipv4), None] {
        let mut ev = evidence(vec![login()]);
        ev.ip_family = family;
        assert_eq!(primary(&ev).reason, Reason::Healthy);
    }
    // An IPv4-only client and a host with AAAA records only.
    let mut l = healthy(REG, Role::LoginServer, "2001:db8::7");
    l.tcp.clear();
    l.tls = None;
    l.http = None;
    let mut ev = evidence(vec![l]);
    ev.ip_family = Some(IpFamily::Ipv4);
    check(
        &primary(&ev),
        Reason::HostUnreachable,
        Severity::Error,
        &["IPv4-only", "2001:db8::7"],
    );
    // Through a proxy the proxy resolves and connects: no family finding.
    let mut l = login();
    l.route.proxy = Some(PROXY.into());
    l.proxy = Some(ProxyEvidence {
        url: PROXY.into(),
        outcome: ProxyOutcome::Connected,
        status: Some(200),
        error: None,
        ms: 1,
    });
    let mut ev = evidence(vec![l]);
    ev.ip_family = Some(IpFamily::Ipv6);
    assert_eq!(primary(&ev).reason, Reason::Healthy);
}

#[test]
fn ip_family_parsing_and_dialling() {
    use std::str::FromStr;
    assert_eq!(IpFamily::from_str("IPv6"), Ok(IpFamily::Ipv6));
    assert_eq!(IpFamily::from_str("dual"), Ok(IpFamily::Dual));
    assert!(IpFamily::from_str("both").is_err());
    assert!(IpFamily::Ipv4.dials(ip("::ffff:10.0.0.1")));
    assert!(!IpFamily::Ipv4.dials(ip("2001:db8::1")));
    assert!(IpFamily::Ipv6.dials(ip("64:ff9b::a00:1")));
    assert!(!IpFamily::Ipv6.dials(ip("10.0.0.1")));
    assert!(IpFamily::Dual.dials(ip("10.0.0.1")));
    assert_eq!(
        IpFamily::of_addresses(&[ip("10.0.0.4"), ip("fd00::4")]),
        Some(IpFamily::Dual)
    );
    assert_eq!(
        IpFamily::of_addresses(&[ip("fd00::4")]),
        Some(IpFamily::Ipv6)
    );
    assert_eq!(IpFamily::of_addresses(&[]), None);
}

// ---- egress hosts ---------------------------------------------------------------------

fn egress_host(ep: EndpointEvidence, required: bool) -> crate::engine::evidence::EgressHost {
    crate::engine::evidence::EgressHost {
        host: ep.host.clone(),
        port: ep.port,
        rule: crate::engine::evidence::EgressRule {
            source: "AKS".into(),
            fqdn: if ep.host.ends_with(".data.mcr.microsoft.com") {
                "*.data.mcr.microsoft.com".into()
            } else {
                ep.host.clone()
            },
            role: "Azure Resource Manager".into(),
            required,
            docs: Some("https://learn.microsoft.com/azure/aks/outbound-rules-control-egress#azure-global-required-fqdn--application-rules".into()),
            note: None,
        },
        endpoint: Some(ep),
    }
}

fn egress_of(
    hosts: Vec<crate::engine::evidence::EgressHost>,
) -> crate::engine::evidence::EgressEvidence {
    crate::engine::evidence::EgressEvidence {
        data_version: "test".into(),
        profiles: vec!["AKS".into()],
        hosts,
        not_probed: vec![],
    }
}

/// An egress host that answered: any HTTP status counts, nothing about it is a registry.
fn egress_ok(host: &str, status: u16) -> EndpointEvidence {
    let mut e = healthy(host, Role::Egress, "20.1.2.40");
    e.http = Some(HttpEvidence {
        distribution_api: false,
        content_type: Some("text/html".into()),
        ..http(status)
    });
    e
}

#[test]
fn egress_hosts_that_answer_anything_are_healthy() {
    let mut ev = evidence(vec![login()]);
    ev.egress = Some(egress_of(vec![
        egress_host(egress_ok("management.azure.com", 400), true),
        egress_host(egress_ok("login.microsoftonline.com", 404), true),
        egress_host(egress_ok("mcr.microsoft.com", 200), true),
    ]));
    let r = report(ev);
    assert_eq!(r.verdict, Verdict::Healthy, "{:?}", r.findings);
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].reason, Reason::Healthy);
}

#[test]
fn egress_host_blocked_names_host_step_and_rule() {
    // An FQDN firewall resets packages.aks.azure.com after the ClientHello; management.azure.com
    // answers; westeurope.data.mcr.microsoft.com does not resolve.
    let mut reset = egress_ok("packages.aks.azure.com", 200);
    reset.tls = Some(tls(TlsOutcome::ResetAfterClientHello));
    reset.http = None;
    let mut nx = egress_ok("westeurope.data.mcr.microsoft.com", 200);
    nx.dns.system = sys(DnsOutcome::NameNotFound, &[], &[]);
    nx.dns.servers = vec![answer(NS, DnsOutcome::NameNotFound, &[], &[])];
    nx.tcp.clear();
    nx.tls = None;
    nx.http = None;
    let mut ev = evidence(vec![login()]);
    ev.egress = Some(egress_of(vec![
        egress_host(egress_ok("management.azure.com", 400), true),
        egress_host(reset, true),
        egress_host(nx, false),
    ]));
    let r = report(ev);
    assert_eq!(r.verdict, Verdict::Degraded, "the registry itself works");
    assert_eq!(r.findings.len(), 2, "{:?}", r.findings);
    let f = &r.findings[0];
    check(
        f,
        Reason::EgressHostBlocked,
        Severity::Error,
        &[
            "packages.aks.azure.com: egress host blocked at TLS (reset after the ClientHello: an FQDN/SNI firewall), required by AKS",
            "TLSResetAfterClientHello",
        ],
    );
    assert_eq!(f.role, Some(Role::Egress));
    assert!(
        f.remediation
            .contains("Allow the FQDN packages.aks.azure.com on port 443"),
        "{}",
        f.remediation
    );
    assert!(
        f.docs[0].contains("outbound-rules-control-egress"),
        "{:?}",
        f.docs
    );
    // Not required: a Warning; the rule's wildcard is named, and DNS is the step.
    let w = &r.findings[1];
    check(
        w,
        Reason::EgressHostBlocked,
        Severity::Warning,
        &[
            "westeurope.data.mcr.microsoft.com: egress host blocked at DNS, probed for AKS's rule *.data.mcr.microsoft.com",
            "DNSNameNotFound",
        ],
    );
    assert!(w.remediation.contains("resolvable"), "{}", w.remediation);
}

#[test]
fn the_registry_expectation_does_not_apply_to_egress_hosts() {
    // A private endpoint is expected for the registry; management.azure.com resolves publicly,
    // as it should.
    let mut ev = evidence(vec![private_login()]);
    ev.expect = Expect::Private;
    ev.egress = Some(egress_of(vec![egress_host(
        egress_ok("management.azure.com", 400),
        true,
    )]));
    let r = report(ev);
    assert_eq!(r.verdict, Verdict::Healthy, "{:?}", r.findings);
}

#[test]
fn egress_failures_keep_their_own_step() {
    type Mutate = Box<dyn Fn(&mut EndpointEvidence)>;
    let cases: Vec<(&str, Mutate, &str)> = vec![
        (
            "TCP",
            Box::new(|e| {
                e.tcp = vec![tcp("20.1.2.40:443", TcpOutcome::Timeout)];
                e.tls = None;
                e.http = None;
            }),
            "blocked at TCP, required by AKS (Azure Resource Manager); ConnectionTimedOut",
        ),
        (
            "inspection",
            Box::new(|e| {
                e.tls = Some(tls(TlsOutcome::UntrustedIssuer));
                e.http = None;
            }),
            "blocked at TLS (untrusted certificate: TLS inspection), required by AKS (Azure Resource Manager); TLSInterception",
        ),
        (
            "proxy",
            Box::new(|e| {
                e.route.proxy = Some(PROXY.into());
                e.tcp = vec![tcp("10.0.0.9:3128", TcpOutcome::Connected)];
                e.proxy = Some(ProxyEvidence {
                    url: PROXY.into(),
                    outcome: ProxyOutcome::Denied,
                    status: Some(403),
                    error: None,
                    ms: 5,
                });
                e.tls = None;
                e.http = None;
            }),
            "blocked at the proxy, required by AKS (Azure Resource Manager); ProxyDenied",
        ),
        (
            "http",
            Box::new(|e| {
                e.http = Some(HttpEvidence {
                    outcome: HttpOutcome::Closed,
                    status: None,
                    ..http(200)
                });
            }),
            "blocked at HTTP, required by AKS (Azure Resource Manager); ConnectionClosed",
        ),
    ];
    for (name, mutate, needle) in cases {
        let mut e = egress_ok("management.azure.com", 200);
        mutate(&mut e);
        let mut ev = evidence(vec![login()]);
        ev.egress = Some(egress_of(vec![egress_host(e, true)]));
        let f = primary(&ev);
        check(&f, Reason::EgressHostBlocked, Severity::Error, &[needle]);
        assert_eq!(
            f.reason.entry().condition,
            Some(crate::engine::catalogue::StatusCondition::EgressReachable),
            "{name}"
        );
    }
}
