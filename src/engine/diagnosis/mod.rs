//! Diagnosis: pure rules from [`Evidence`] to [`Finding`]s, a [`Verdict`] and the [`Report`].
//!
//! No I/O. Every endpoint is walked along the pull path DNS → proxy → TCP → TLS → HTTP; the
//! first layer that fails explains the rest, so an endpoint gets at most one finding per layer
//! and none below a layer that stopped it. The image pull (`--image`) comes last. Findings are
//! sorted so that the primary one comes first: Error before Warning before Info, login server
//! before data endpoints before extra hosts, then by layer.
//!
//! Choices worth knowing:
//! - A proxied endpoint's local DNS failure is only a Warning when the proxy was tried: the
//!   proxy resolves the name for proxied clients.
//! - `ProxyOutcome::Failed` (not a valid answer to CONNECT) maps to `ProxyDenied` when the proxy
//!   sent a 4xx status (`ProxyAuthRequired` for 407), otherwise to `ProxyConnectEOF`: the usual
//!   cause is the same as for an EOF (wrong scheme or port, a TLS proxy spoken to in plain text).
//! - `PrivateEndpointResolvesPublic` with `expect == Any` is a Warning while the endpoint still
//!   works (public access may be allowed on purpose) and an Error when a lower layer fails or a
//!   private address was expected.

use crate::engine::evidence::{
    AddrClass, Address, DnsAnswer, DnsOutcome, EndpointEvidence, Evidence, Expect, HttpEvidence,
    HttpOutcome, IpFamily, ProxyOutcome, PullEvidence, PullOutcome, PullStep, Role, TcpEvidence,
    TcpOutcome, TlsOutcome, ip_family_of,
};
use crate::engine::findings::{Finding, Reason, Report, SCHEMA_VERSION, Severity, Verdict};

/// Where on the pull path a finding sits (ordering only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Dns,
    Proxy,
    Tcp,
    Tls,
    Http,
    Pull,
    Deadline,
}

struct Item {
    layer: Layer,
    finding: Finding,
}

/// Facts about the whole run that rules on single endpoints need.
struct Ctx<'a> {
    ev: &'a Evidence,
    /// A login server resolves (system resolver) to a private address.
    login_private: Option<&'a EndpointEvidence>,
    /// A login server was reached over TCP (directly or through the proxy).
    login_connected: Option<&'a EndpointEvidence>,
}

impl<'a> Ctx<'a> {
    fn new(ev: &'a Evidence) -> Self {
        let logins = || ev.endpoints.iter().filter(|e| e.role == Role::LoginServer);
        Self {
            ev,
            login_private: logins().find(|e| {
                e.dns.system.outcome == DnsOutcome::Resolved && e.dns.system.has_private_address()
            }),
            login_connected: logins().find(|e| e.connected()),
        }
    }
}

/// All findings, primary first. Never empty: one `Healthy` finding when nothing is wrong.
pub fn diagnose(ev: &Evidence) -> Vec<Finding> {
    let ctx = Ctx::new(ev);
    let mut items: Vec<Item> = Vec::new();
    for ep in &ev.endpoints {
        items.extend(endpoint_items(&ctx, ep));
    }
    pull_items(&ctx, &mut items);
    containerd_items(&ctx, &mut items);
    through_working_mirror(&ctx, &mut items);
    resolver_items(&ctx, &mut items);
    egress_items(&ctx, &mut items);

    // Stable sort keeps evidence order within equal keys.
    items.sort_by_key(|i| (i.finding.severity, role_rank(i.finding.role), i.layer));
    let mut findings: Vec<Finding> = items.into_iter().map(|i| i.finding).collect();
    if findings.is_empty() {
        let n = ev.endpoints.len();
        let msg = if n == 0 {
            format!("{}: nothing failed (no endpoints were probed)", ev.registry)
        } else {
            format!(
                "{}: all {n} probed endpoint(s) resolve, connect, complete TLS and answer as expected{}",
                ev.registry,
                if ev.pull.is_some() {
                    "; the image pull works"
                } else {
                    ""
                }
            )
        };
        findings.push(Finding::catalogued(
            Reason::Healthy,
            ev.registry.clone(),
            Some(Role::LoginServer),
            msg,
        ));
    }
    findings
}

/// Healthy when no Error/Warning finding; Unreachable when the login server's registry API
/// could not be reached or answered with an error; Degraded otherwise.
pub fn verdict(ev: &Evidence, findings: &[Finding]) -> Verdict {
    if !findings.iter().any(|f| f.severity != Severity::Info) {
        return Verdict::Healthy;
    }
    let login_names: Vec<String> = ev
        .endpoints
        .iter()
        .filter(|e| e.role == Role::LoginServer)
        .map(endpoint_name)
        .collect();
    let on_login = |f: &Finding| match f.role {
        Some(r) => r == Role::LoginServer,
        None => login_names.contains(&f.endpoint) || f.endpoint == ev.registry,
    };
    if findings
        .iter()
        .any(|f| f.severity == Severity::Error && on_login(f) && f.reason.blocks_api())
    {
        Verdict::Unreachable
    } else {
        Verdict::Degraded
    }
}

/// The versioned report.
pub fn report(ev: Evidence) -> Report {
    let findings = diagnose(&ev);
    let verdict = verdict(&ev, &findings);
    Report {
        schema_version: SCHEMA_VERSION,
        verdict,
        findings,
        context: None,
        node: None,
        evidence: ev,
    }
}

/// Reasons that, on the login server, mean its registry API is not usable from here.
fn role_rank(r: Option<Role>) -> u8 {
    match r {
        Some(Role::LoginServer) => 0,
        Some(Role::DataEndpoint) => 1,
        Some(Role::Extra) => 2,
        Some(Role::Mirror) => 3,
        Some(Role::Egress) => 4,
        None => 5,
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers

/// `host`, or `host:port` when the port is not 443.
fn endpoint_name(ep: &EndpointEvidence) -> String {
    if ep.port == 443 || ep.port == 0 {
        ep.host.clone()
    } else {
        format!("{}:{}", ep.host, ep.port)
    }
}

fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() > 200 {
        let cut: String = flat.chars().take(200).collect();
        format!("{cut}…")
    } else {
        flat.to_string()
    }
}

/// ` (error text)` or nothing.
fn paren(e: &Option<String>) -> String {
    match e.as_deref().map(one_line) {
        Some(e) if !e.is_empty() => format!(" ({e})"),
        _ => String::new(),
    }
}

fn class_word(c: AddrClass) -> &'static str {
    match c {
        AddrClass::Private => "private",
        AddrClass::Public => "public",
        AddrClass::Loopback => "loopback",
        AddrClass::LinkLocal => "link-local",
        AddrClass::Special => "special",
    }
}

/// `public address 20.1.2.3`, `private addresses 10.0.0.5, 10.0.0.6`,
/// `addresses 10.0.0.5 (private), 20.1.2.3 (public)`.
fn addrs(a: &[Address]) -> String {
    if a.is_empty() {
        return "no address".into();
    }
    let plural = if a.len() > 1 { "addresses" } else { "address" };
    let first = a[0].class;
    if a.iter().all(|x| x.class == first) {
        let list: Vec<String> = a.iter().map(|x| x.ip.to_string()).collect();
        format!("{} {plural} {}", class_word(first), list.join(", "))
    } else {
        let list: Vec<String> = a
            .iter()
            .map(|x| format!("{} ({})", x.ip, class_word(x.class)))
            .collect();
        format!("{plural} {}", list.join(", "))
    }
}

fn chain(a: &DnsAnswer) -> String {
    if a.cnames.is_empty() {
        String::new()
    } else {
        format!(" via CNAME {}", a.cnames.join(" -> "))
    }
}

fn outcome_word(o: DnsOutcome) -> &'static str {
    match o {
        DnsOutcome::Resolved => "resolves",
        DnsOutcome::NameNotFound => "NXDOMAIN",
        DnsOutcome::NoAddresses => "no A/AAAA record",
        DnsOutcome::ServerFailure => "SERVFAIL",
        DnsOutcome::Refused => "REFUSED",
        DnsOutcome::Timeout => "timeout",
        DnsOutcome::Unreachable => "unreachable",
        DnsOutcome::CnameLoop => "CNAME loop",
        DnsOutcome::Error => "error",
    }
}

fn resolved(a: &DnsAnswer) -> bool {
    a.outcome == DnsOutcome::Resolved && !a.addresses.is_empty()
}

/// Who gave the system answer: `nameserver 10.0.0.4:53`, `the hosts file`, ...
fn resolver(ep: &EndpointEvidence) -> String {
    let s = &ep.dns.system;
    if let Some(b) = s.answered_by.as_deref().filter(|b| !b.is_empty()) {
        return format!("nameserver {b}");
    }
    match s.server.as_str() {
        "hosts" => return "the hosts file".into(),
        "system" | "" => {}
        other => return format!("nameserver {other}"),
    }
    nameservers(ep).unwrap_or_else(|| "the system resolver".into())
}

/// `nameserver a` / `nameservers a, b` from the individually asked servers.
fn nameservers(ep: &EndpointEvidence) -> Option<String> {
    let names: Vec<&str> = ep
        .dns
        .servers
        .iter()
        .map(|a| a.server.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    match names.len() {
        0 => None,
        1 => Some(format!("nameserver {}", names[0])),
        _ => Some(format!("nameservers {}", names.join(", "))),
    }
}

fn server_list(answers: &[&DnsAnswer]) -> String {
    answers
        .iter()
        .map(|a| a.server.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn tcp_word(o: TcpOutcome) -> &'static str {
    match o {
        TcpOutcome::Connected => "connected",
        TcpOutcome::Timeout => "timed out",
        TcpOutcome::Refused => "refused",
        TcpOutcome::Unreachable => "unreachable",
        TcpOutcome::Blocked => "blocked by the target policy (not dialled)",
        TcpOutcome::Error => "failed",
    }
}

fn tcp_list(t: &[&TcpEvidence]) -> String {
    t.iter()
        .map(|t| {
            let after = if t.outcome == TcpOutcome::Blocked {
                String::new()
            } else {
                format!(" after {} ms", t.ms)
            };
            format!(
                "{} {}{after}{}",
                t.address,
                tcp_word(t.outcome),
                paren(&t.error)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the TLS/HTTP exchange ran over: the connected address, or the proxy tunnel.
fn peer(ep: &EndpointEvidence) -> String {
    if let Some(p) = &ep.route.proxy {
        return format!("the tunnel through proxy {p}");
    }
    match ep.tcp.iter().find(|t| t.outcome == TcpOutcome::Connected) {
        Some(t) => t.address.to_string(),
        None => match ep.dns.system.addresses.first() {
            Some(a) => format!("{}:{}", a.ip, ep.port),
            None => "an unknown address".into(),
        },
    }
}

/// The client IP in an Azure network-rule denial: `client with IP '1.2.3.4' is not allowed`.
fn client_ip_in(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("client with ip")?;
    let rest = &message[at + "client with ip".len()..];
    let ip: String = rest
        .trim_start()
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '.' || *c == ':')
        .collect();
    (!ip.is_empty()).then_some(ip)
}

// ---------------------------------------------------------------------------------------------
// Endpoint rules

struct Emit<'a> {
    ep: &'a EndpointEvidence,
    name: String,
    items: Vec<Item>,
}

impl Emit<'_> {
    fn push(&mut self, layer: Layer, reason: Reason, message: String) -> &mut Finding {
        let f = Finding::catalogued(reason, self.name.clone(), Some(self.ep.role), message);
        self.items.push(Item { layer, finding: f });
        let last = self.items.len() - 1;
        &mut self.items[last].finding
    }
    fn has_error(&self) -> bool {
        self.items
            .iter()
            .any(|i| i.finding.severity == Severity::Error)
    }
}

fn endpoint_items(ctx: &Ctx, ep: &EndpointEvidence) -> Vec<Item> {
    let mut e = Emit {
        ep,
        name: endpoint_name(ep),
        items: Vec::new(),
    };
    let go = dns_layer(ctx, &mut e)
        && if ep.route.is_proxied() {
            proxy_layer(&mut e)
        } else {
            tcp_layer(ctx, &mut e)
        }
        && tls_layer(&mut e);
    if go && matches!(ep.role, Role::LoginServer | Role::Extra) {
        http_layer(ctx, &mut e);
    }
    if ep.deadline_exceeded && !e.has_error() {
        let step = last_step(ep);
        let msg = format!(
            "{}: the overall deadline passed before the probe finished (last step that completed: {step}); something on the path stalls",
            e.name
        );
        // Every step is there and fine: the flag contradicts the evidence, so only warn.
        let complete = match ep.role {
            Role::DataEndpoint => ep
                .tls
                .as_ref()
                .is_some_and(|t| t.outcome == TlsOutcome::Verified),
            Role::Egress => ep
                .http
                .as_ref()
                .is_some_and(|h| h.outcome == HttpOutcome::Response),
            _ => ep.http.as_ref().is_some_and(http_is_healthy),
        };
        let f = e.push(Layer::Deadline, Reason::ConnectionTimedOut, msg);
        if complete {
            f.severity = Severity::Warning;
        }
    }
    // A private endpoint resolving publicly explains failures further down.
    let lower_error = e
        .items
        .iter()
        .any(|i| i.layer > Layer::Dns && i.finding.severity == Severity::Error);
    if lower_error {
        for i in &mut e.items {
            if i.finding.reason == Reason::PrivateEndpointResolvesPublic {
                i.finding.severity = Severity::Error;
            }
        }
    }
    e.items
}

/// containerd's hosts (`--containerd-config-dir`): a `hosts.toml` containerd ignores, and each
/// mirror that fails. A failing mirror is a Warning (containerd falls back to the next host);
/// when the upstream fails too, the upstream's own finding (an Error) stays primary.
fn containerd_items(ctx: &Ctx, items: &mut Vec<Item>) {
    let Some(c) = &ctx.ev.containerd else {
        return;
    };
    if let Some(why) = &c.invalid {
        let upstream = c
            .hosts
            .iter()
            .find(|h| h.upstream)
            .map(|h| h.url.as_str())
            .unwrap_or(ctx.ev.registry.as_str());
        items.push(Item {
            layer: Layer::Dns,
            finding: Finding::catalogued(
                Reason::HostsConfigInvalid,
                ctx.ev.registry.clone(),
                None,
                format!(
                    "{}: containerd ignores its hosts.toml ({why}); it pulls from {upstream} only, without the mirrors configured there",
                    ctx.ev.registry
                ),
            ),
        });
    }
    if let Some(why) = &c.broken {
        let mut f = Finding::catalogued(
            Reason::HostsConfigInvalid,
            ctx.ev.registry.clone(),
            None,
            format!(
                "{}: containerd cannot load a TLS file its hosts.toml names ({why}): every pull from this registry fails before any host is tried",
                ctx.ev.registry
            ),
        );
        f.severity = Severity::Error;
        items.push(Item {
            layer: Layer::Dns,
            finding: f,
        });
    }
    let next = |i: usize| {
        c.hosts[i + 1..]
            .iter()
            .map(|h| h.url.clone())
            .next()
            .unwrap_or_else(|| "nothing (the pull fails)".into())
    };
    for (i, h) in c.hosts.iter().enumerate() {
        let Some(ep) = &h.endpoint else { continue };
        if h.works || h.upstream {
            if h.upstream && !h.works {
                items.extend(endpoint_items(ctx, ep));
            }
            continue;
        }
        let below = endpoint_items(ctx, ep);
        let what = below
            .iter()
            .find(|i| i.finding.severity == Severity::Error)
            .or(below.first())
            .map(|i| format!("{}: {}", i.finding.reason.as_str(), i.finding.message))
            .unwrap_or_else(|| "no registry API answered on its /v2/".into());
        let name = endpoint_name(ep);
        items.push(Item {
            layer: Layer::Http,
            finding: Finding::catalogued(
                Reason::MirrorUnreachable,
                name.clone(),
                Some(Role::Mirror),
                format!(
                    "{name}: containerd's mirror {} does not work ({what}); containerd silently tries {} next",
                    h.url,
                    next(i)
                ),
            ),
        });
    }
}

/// containerd pulls through a mirror of its `hosts.toml` that works (it resolves and pulls
/// there and never asks the upstream): what fails on the registry's own login server or on the
/// probe's pull from it does not fail containerd's pulls. Those Errors become Warnings that
/// say so (pulls depend on that mirror alone), so that the verdict agrees with what the
/// kubelet's pull gets.
fn through_working_mirror(ctx: &Ctx, items: &mut [Item]) {
    let Some(c) = &ctx.ev.containerd else {
        return;
    };
    if c.broken.is_some() || c.invalid.is_some() {
        return;
    }
    let Some(mirror) = c.hosts.iter().find(|h| {
        h.works
            && !h.upstream
            && Some(&h.url) == c.would_use.as_ref()
            && ["pull", "resolve"]
                .iter()
                .all(|cap| h.capabilities.iter().any(|c| c == cap))
    }) else {
        return;
    };
    let registry = &ctx.ev.registry;
    for i in items.iter_mut() {
        let f = &mut i.finding;
        let upstream = i.layer == Layer::Pull
            || f.role == Some(Role::LoginServer)
            || (f.role.is_none() && &f.endpoint == registry);
        if f.severity == Severity::Error && upstream && f.reason != Reason::HostsConfigInvalid {
            f.severity = Severity::Warning;
            f.message.push_str(&format!(
                "; containerd pulls through its mirror {} (hosts.toml), which answers, and does not ask the upstream: pulls work as long as that mirror does",
                mirror.url
            ));
        }
    }
}

/// The host's resolver (containerd's, the system answer with `--host-resolv-conf`) against
/// the kubelet's (the pod's resolv.conf): one that fails while the other resolves, or a
/// private/public split between them. The failing host resolver's own DNS finding (an Error,
/// from the endpoint rules) stays primary; this one says that the other resolver works.
fn resolver_items(ctx: &Ctx, items: &mut Vec<Item>) {
    let Some(r) = &ctx.ev.resolvers else {
        return;
    };
    let list = |s: &crate::engine::evidence::ResolvSource| {
        if s.nameservers.is_empty() {
            format!("{}: no nameserver", s.file)
        } else {
            format!("{}: nameserver {}", s.file, s.nameservers.join(", "))
        }
    };
    let (host_rc, kubelet_rc) = (list(&r.host), list(&r.kubelet));
    for ep in &ctx.ev.endpoints {
        let Some(k) = &ep.dns.kubelet else { continue };
        let h = &ep.dns.system;
        let name = endpoint_name(ep);
        let msg = match (resolved(h), resolved(k)) {
            (false, true) => format!(
                "{name}: containerd resolves with the host's resolv.conf ({host_rc}), which fails: {}{}, while the kubelet's resolv.conf ({kubelet_rc}) resolves it to {}: pods with dnsPolicy Default resolve the registry, but containerd's pulls fail",
                outcome_word(h.outcome),
                paren(&h.error),
                addrs(&k.addresses)
            ),
            (true, false) => format!(
                "{name}: the kubelet's resolv.conf ({kubelet_rc}) fails: {}{}, while the host's resolv.conf ({host_rc}), which containerd uses, resolves it to {}: pulls work, but hostNetwork pods with dnsPolicy Default (and CoreDNS, which forwards to the node's resolver) cannot resolve the registry",
                outcome_word(k.outcome),
                paren(&k.error),
                addrs(&h.addresses)
            ),
            (true, true) if h.has_private_address() != k.has_private_address() => format!(
                "{name}: the host's resolv.conf ({host_rc}), which containerd uses, answers {}, but the kubelet's resolv.conf ({kubelet_rc}) answers {}: containerd and pods with dnsPolicy Default reach different addresses",
                addrs(&h.addresses),
                addrs(&k.addresses)
            ),
            _ => continue,
        };
        items.push(Item {
            layer: Layer::Dns,
            finding: Finding::catalogued(Reason::DNSAnswersDiffer, name, Some(ep.role), msg),
        });
    }
}

/// The egress hosts: each host whose DNS, proxy, TCP or TLS step fails (the endpoint rules
/// say how) or that gives no HTTP answer is one `EgressHostBlocked`, naming the step, the rule
/// that requires the host and the underlying reason; an Error for a required rule, a Warning
/// otherwise. Partial failures an endpoint rule only warns about (one of several addresses,
/// nameservers that disagree) are not egress findings: the host is reachable.
fn egress_items(ctx: &Ctx, items: &mut Vec<Item>) {
    let Some(eg) = &ctx.ev.egress else {
        return;
    };
    for h in &eg.hosts {
        let Some(ep) = &h.endpoint else { continue };
        if let Some((layer, finding)) = egress_finding(ctx, h, ep) {
            items.push(Item { layer, finding });
        }
    }
}

/// The step an egress host failed at, in words.
fn layer_word(l: Layer) -> &'static str {
    match l {
        Layer::Dns => "DNS",
        Layer::Proxy => "the proxy",
        Layer::Tcp => "TCP",
        Layer::Tls => "TLS",
        Layer::Http => "HTTP",
        Layer::Pull | Layer::Deadline => "the deadline",
    }
}

fn egress_finding(
    ctx: &Ctx,
    h: &crate::engine::evidence::EgressHost,
    ep: &EndpointEvidence,
) -> Option<(Layer, Finding)> {
    let below = endpoint_items(ctx, ep);
    let failed = below
        .iter()
        .find(|i| i.finding.severity == Severity::Error)
        .map(|i| (i.layer, i.finding.reason, i.finding.message.clone()));
    let failed = failed.or_else(|| {
        let http = ep.http.as_ref()?;
        if http.outcome == HttpOutcome::Response {
            return None;
        }
        let what = match http.outcome {
            HttpOutcome::HeadersTimeout => format!(
                "TLS completed but GET / got no response headers within {} ms",
                http.ms
            ),
            HttpOutcome::Closed => {
                "TLS completed but the connection was closed after GET / without a response"
                    .to_string()
            }
            HttpOutcome::Malformed | HttpOutcome::Response => {
                "TLS completed but the answer to GET / is not HTTP/1.x".to_string()
            }
        };
        let reason = match http.outcome {
            HttpOutcome::HeadersTimeout => Reason::HeadersTimeout,
            HttpOutcome::Closed => Reason::ConnectionClosed,
            _ => Reason::NotARegistry,
        };
        Some((
            Layer::Http,
            reason,
            format!("{}: {what}{}", endpoint_name(ep), paren(&http.error)),
        ))
    })?;
    let (layer, underlying, message) = failed;
    let name = endpoint_name(ep);
    let r = &h.rule;
    let why = if r.fqdn == ep.host || r.fqdn.is_empty() {
        format!("required by {}", r.source)
    } else {
        format!("probed for {}'s rule {}", r.source, r.fqdn)
    };
    let role = if r.role.is_empty() {
        String::new()
    } else {
        format!(" ({})", r.role)
    };
    let tls = ep.tls.as_ref().map(|t| t.outcome);
    let step = match (layer, tls) {
        (Layer::Tls, Some(TlsOutcome::ResetAfterClientHello)) => {
            "TLS (reset after the ClientHello: an FQDN/SNI firewall)"
        }
        (Layer::Tls, Some(TlsOutcome::UntrustedIssuer)) => {
            "TLS (untrusted certificate: TLS inspection)"
        }
        (l, _) => layer_word(l),
    };
    // Step and rule first: the compact report (a termination message) keeps 200 characters.
    let msg =
        format!("{name}: egress host blocked at {step}, {why}{role}; {underlying}: {message}");
    let fix = match (layer, tls) {
        (Layer::Dns, _) => format!(
            "Make {} resolvable from here: a custom DNS server must forward it (in Azure to 168.63.129.16) and no DNS filter may sinkhole it.",
            ep.host
        ),
        (Layer::Proxy, _) => format!(
            "Allow CONNECT {}:{} in the proxy's policy, or exempt the host in NO_PROXY when it is reachable directly.",
            ep.host, ep.port
        ),
        (Layer::Tcp, _) => format!(
            "Allow TCP {} to {} in the NSG, route table (UDR) and firewall network rules.",
            ep.port, ep.host
        ),
        (Layer::Tls, Some(TlsOutcome::UntrustedIssuer)) => format!(
            "Exempt {} from TLS inspection in the firewall, or make the nodes trust the inspecting CA (AKS custom CA trust).",
            ep.host
        ),
        (Layer::Tls, Some(TlsOutcome::NameMismatch | TlsOutcome::Expired | TlsOutcome::Failed)) => {
            format!(
                "Something else answers for {}: check DNS and any transparent proxy that redirects this name.",
                ep.host
            )
        }
        _ => format!(
            "Allow the FQDN {} on port {} in the firewall's application (FQDN/SNI) rules, e.g. an Azure Firewall application rule or the AzureKubernetesService FQDN tag.",
            if r.fqdn.contains('*') || r.fqdn.starts_with('.') {
                r.fqdn.as_str()
            } else {
                ep.host.as_str()
            },
            ep.port
        ),
    };
    let mut f = Finding::catalogued(Reason::EgressHostBlocked, name, Some(Role::Egress), msg);
    f.remediation = match &r.docs {
        Some(d) => format!("{fix} The rule: {} ({d}).", r.fqdn),
        None => fix,
    };
    if let Some(d) = &r.docs
        && !f.docs.contains(d)
    {
        f.docs.insert(0, d.clone());
    }
    if !r.required {
        f.severity = Severity::Warning;
    }
    Some((layer, f))
}

fn last_step(ep: &EndpointEvidence) -> &'static str {
    if ep.http.is_some() {
        "HTTP request"
    } else if ep.tls.is_some() {
        "TLS handshake"
    } else if ep.connected() {
        "TCP connect"
    } else if ep.proxy.is_some() {
        "proxy CONNECT"
    } else if !ep.tcp.is_empty() {
        "TCP connect attempt"
    } else if resolved(&ep.dns.system) {
        "DNS lookup"
    } else {
        "none"
    }
}

/// Returns whether lower layers are worth looking at.
fn dns_layer(ctx: &Ctx, e: &mut Emit) -> bool {
    let ep = e.ep;
    let s = &ep.dns.system;
    let host = e.name.clone();
    let who = resolver(ep);
    let proxy_tried = ep.route.is_proxied() && ep.proxy.is_some();

    if !resolved(s) {
        // Another nameserver (not the one that gave the system answer) that resolves the name.
        let others: Vec<&DnsAnswer> = ep
            .dns
            .servers
            .iter()
            .filter(|a| resolved(a) && s.answered_by.as_deref() != Some(a.server.as_str()))
            .collect();
        let hint = match others.first() {
            Some(a) => format!(
                "; nameserver {} does resolve it ({})",
                a.server,
                addrs(&a.addresses)
            ),
            None => String::new(),
        };
        let private_context =
            ep.role == Role::DataEndpoint && (ctx.login_private.is_some() || s.has_privatelink());
        let no_record = matches!(
            s.outcome,
            DnsOutcome::NameNotFound | DnsOutcome::NoAddresses | DnsOutcome::Resolved
        );
        let what = match s.outcome {
            DnsOutcome::NameNotFound => "NXDOMAIN (no such host)".to_string(),
            DnsOutcome::NoAddresses | DnsOutcome::Resolved => {
                "NOERROR with no A/AAAA record".to_string()
            }
            o => outcome_word(o).to_string(),
        };
        let (reason, msg) = if private_context && no_record {
            let login = match ctx.login_private {
                Some(l) => format!(
                    "the login server {} resolves to {}",
                    endpoint_name(l),
                    addrs(&l.dns.system.addresses)
                ),
                None => "its CNAME chain points into a privatelink zone".to_string(),
            };
            (
                Reason::DataEndpointDNSMissing,
                format!(
                    "{host}: {who} answers {what}{}, while {login}: the private DNS zone has no record for this data endpoint{hint}",
                    chain(s)
                ),
            )
        } else {
            match s.outcome {
                DnsOutcome::NameNotFound => (
                    Reason::DNSNameNotFound,
                    format!("{host}: {who} answers {what}{}{hint}", chain(s)),
                ),
                DnsOutcome::NoAddresses | DnsOutcome::Resolved => (
                    Reason::DNSNameNotFound,
                    format!("{host}: {who} answers {what}{}{hint}", chain(s)),
                ),
                DnsOutcome::Timeout | DnsOutcome::Unreachable => {
                    let servers = nameservers(ep).unwrap_or_else(|| who.clone());
                    (
                        Reason::DNSServerUnreachable,
                        format!(
                            "{host}: no answer from {servers} ({what} after {} ms){}{hint}",
                            s.ms,
                            paren(&s.error)
                        ),
                    )
                }
                DnsOutcome::ServerFailure | DnsOutcome::Refused => (
                    Reason::DNSServerFailure,
                    format!("{host}: {who} answers {what}{}{hint}", paren(&s.error)),
                ),
                DnsOutcome::CnameLoop | DnsOutcome::Error => (
                    Reason::DNSServerFailure,
                    format!(
                        "{host}: {who} gives {what}{}{}{hint}",
                        chain(s),
                        paren(&s.error)
                    ),
                ),
            }
        };
        let f = e.push(Layer::Dns, reason, msg);
        if proxy_tried {
            f.severity = Severity::Warning;
            f.message
                .push_str("; the proxy resolves it for proxied clients, direct clients fail");
            return true;
        }
        return false;
    }

    if !family_layer(ctx, e) {
        return false;
    }
    // An egress host is not the registry: what the registry should resolve to (`expect`,
    // private endpoints) says nothing about it.
    if ep.role == Role::Egress {
        return true;
    }
    let expect = ctx.ev.expect;
    let servers = &ep.dns.servers;
    if ep.role == Role::DataEndpoint && !s.has_private_address() && ctx.login_private.is_some() {
        let login = ctx.login_private.map(|l| {
            format!(
                "{} resolves to {}",
                endpoint_name(l),
                addrs(&l.dns.system.addresses)
            )
        });
        let msg = format!(
            "{host}: {who} answers{} with {} while the login server {}: the private DNS zone has no record for this data endpoint, so blobs go to the public endpoint",
            chain(s),
            addrs(&s.addresses),
            login.unwrap_or_default()
        );
        e.push(Layer::Dns, Reason::DataEndpointDNSMissing, msg);
        return true;
    }
    if s.has_privatelink()
        && !s.has_private_address()
        && s.has_public_address()
        && expect != Expect::Public
    {
        let msg = format!(
            "{host}: {who} answers{} with {}; the private DNS zone is not visible to it",
            chain(s),
            addrs(&s.addresses)
        );
        let f = e.push(Layer::Dns, Reason::PrivateEndpointResolvesPublic, msg);
        if expect == Expect::Any {
            f.severity = Severity::Warning;
        }
        return true;
    }
    if expect == Expect::Private && !s.has_private_address() {
        let private: Vec<&DnsAnswer> = servers
            .iter()
            .filter(|a| resolved(a) && a.has_private_address())
            .collect();
        if let Some(p) = private.first() {
            let public: Vec<&DnsAnswer> = servers
                .iter()
                .filter(|a| resolved(a) && !a.has_private_address())
                .collect();
            let public_who = if public.is_empty() {
                who.clone()
            } else {
                format!("nameserver(s) {}", server_list(&public))
            };
            let msg = format!(
                "{host}: {public_who} answer{} with {}, while nameserver {} answers {}; the private DNS zone is not visible to {public_who}",
                chain(s),
                addrs(&s.addresses),
                p.server,
                addrs(&p.addresses)
            );
            e.push(Layer::Dns, Reason::PrivateEndpointResolvesPublic, msg);
            return true;
        }
        if !s.has_privatelink() {
            let msg = format!(
                "{host}: a private address was expected, but {who} answers{} with {} and no privatelink CNAME",
                chain(s),
                addrs(&s.addresses)
            );
            e.push(Layer::Dns, Reason::PrivateEndpointNotConfigured, msg);
            return true;
        }
    }
    // Nameservers that disagree in a way that matters.
    let ok: Vec<&DnsAnswer> = servers.iter().filter(|a| resolved(a)).collect();
    let bad: Vec<&DnsAnswer> = servers.iter().filter(|a| !resolved(a)).collect();
    if let (Some(good), false) = (ok.first(), bad.is_empty()) {
        let failing: Vec<String> = bad
            .iter()
            .map(|a| format!("{} ({})", a.server, outcome_word(a.outcome)))
            .collect();
        let msg = format!(
            "{host}: nameserver {} resolves it to {}, but nameserver(s) {} fail; clients that ask those servers cannot resolve the registry",
            good.server,
            addrs(&good.addresses),
            failing.join(", ")
        );
        e.push(Layer::Dns, Reason::DNSAnswersDiffer, msg);
        return true;
    }
    let private: Vec<&DnsAnswer> = ok
        .iter()
        .copied()
        .filter(|a| a.has_private_address())
        .collect();
    let public: Vec<&DnsAnswer> = ok
        .iter()
        .copied()
        .filter(|a| !a.has_private_address() && a.has_public_address())
        .collect();
    if let (Some(p), Some(q)) = (private.first(), public.first()) {
        let msg = format!(
            "{host}: nameserver {} answers {} but nameserver {} answers {}; clients that ask {} bypass the private endpoint (private/public split: this breaks pulls when public access is disabled)",
            p.server,
            addrs(&p.addresses),
            q.server,
            addrs(&q.addresses),
            server_list(&public)
        );
        e.push(Layer::Dns, Reason::DNSAnswersDiffer, msg);
    }
    true
}

/// The resolved addresses against the client's address families (`--ip-family`): an IPv6-only
/// or dual-stack client and a host without AAAA records (`RegistryLacksIPv6`: an Error for an
/// IPv6-only client, which dials nothing; Info for a dual-stack one, which uses IPv4), or an
/// IPv4-only client and a host with only AAAA records. A proxied endpoint is the proxy's to
/// resolve and reach. Returns whether lower layers are worth looking at.
fn family_layer(ctx: &Ctx, e: &mut Emit) -> bool {
    let ep = e.ep;
    let Some(family) = ctx.ev.ip_family else {
        return true;
    };
    if ep.route.is_proxied() {
        return true;
    }
    let s = &ep.dns.system;
    let host = e.name.clone();
    let who = resolver(ep);
    let has = |f: &str| s.addresses.iter().any(|a| ip_family_of(a.ip) == f);
    match family {
        IpFamily::Ipv6 | IpFamily::Dual if !has("IPv6") => {
            let (tail, severity) = if family == IpFamily::Ipv6 {
                (
                    "this IPv6-only client has no address to connect to (no DNS64/NAT64 synthesised one either)",
                    Severity::Error,
                )
            } else {
                (
                    "this dual-stack client reaches it over IPv4 only; an IPv6-only node pool could not pull from it",
                    Severity::Info,
                )
            };
            let msg = format!(
                "{host}: {who} answers{} with {} and no AAAA record: {tail}",
                chain(s),
                addrs(&s.addresses)
            );
            e.push(Layer::Dns, Reason::RegistryLacksIPv6, msg).severity = severity;
            severity != Severity::Error
        }
        IpFamily::Ipv4 if !has("IPv4") => {
            let msg = format!(
                "{host}: {who} answers{} with {} only (AAAA, no A record), and this client is IPv4-only (--ip-family ipv4): it has no address to connect to",
                chain(s),
                addrs(&s.addresses)
            );
            e.push(Layer::Tcp, Reason::HostUnreachable, msg);
            false
        }
        _ => true,
    }
}

fn proxy_layer(e: &mut Emit) -> bool {
    let ep = e.ep;
    let host = e.name.clone();
    let url = ep.route.proxy.clone().unwrap_or_default();
    let failed_tcp: Vec<&TcpEvidence> = ep
        .tcp
        .iter()
        .filter(|t| t.outcome != TcpOutcome::Connected)
        .collect();
    let proxy_tcp_down =
        !ep.tcp.is_empty() && !ep.tcp.iter().any(|t| t.outcome == TcpOutcome::Connected);
    let unreachable_msg = || {
        let how = if failed_tcp.is_empty() {
            String::new()
        } else {
            format!(": {}", tcp_list(&failed_tcp))
        };
        format!("{host}: proxy {url} cannot be reached{how}")
    };
    // The probe refused to use the proxy (the proxy's or the target's address is forbidden).
    let blocked: Vec<&TcpEvidence> = failed_tcp
        .iter()
        .copied()
        .filter(|t| t.outcome == TcpOutcome::Blocked)
        .collect();
    if !blocked.is_empty() {
        let msg = format!(
            "{host}: not requested through proxy {url}: {}",
            tcp_list(&blocked)
        );
        e.push(Layer::Proxy, Reason::TargetAddressBlocked, msg);
        return false;
    }
    let Some(p) = &ep.proxy else {
        if proxy_tcp_down {
            let msg = unreachable_msg();
            e.push(Layer::Proxy, Reason::ProxyUnreachable, msg);
            return false;
        }
        return true;
    };
    let status = p
        .status
        .map(|s| format!("(status {s})"))
        .unwrap_or_default();
    let private = e.ep.dns.system.has_private_address();
    let bypass_msg = |what: String| {
        let cidr = if ep.route.cidr_not_applied.is_empty() {
            String::new()
        } else {
            format!(
                "; NO_PROXY CIDR entries {} contain the address but only match hosts written as IP literals (Go clients)",
                ep.route.cidr_not_applied.join(", ")
            )
        };
        format!(
            "{host}: resolves to {} but is sent through proxy {url}, which {what}: NO_PROXY does not exempt the host{cidr}; add {} or .azurecr.io to NO_PROXY",
            addrs(&ep.dns.system.addresses),
            ep.host
        )
    };
    let (reason, msg) = match p.outcome {
        ProxyOutcome::Connected => return true,
        ProxyOutcome::Denied => (
            Reason::ProxyDenied,
            format!(
                "{host}: proxy {url} refuses CONNECT {}:{}{}",
                ep.host,
                ep.port,
                if p.error.is_some() {
                    paren(&p.error)
                } else {
                    format!(" {status}")
                }
            ),
        ),
        ProxyOutcome::AuthRequired => (
            Reason::ProxyAuthRequired,
            format!(
                "{host}: proxy {url} answers CONNECT {}:{} with 407 Proxy Authentication Required{}",
                ep.host,
                ep.port,
                paren(&p.error)
            ),
        ),
        ProxyOutcome::Eof => (
            Reason::ProxyConnectEOF,
            format!(
                "{host}: proxy {url} closed the connection without answering CONNECT {}:{} (proxyconnect tcp: EOF){}",
                ep.host,
                ep.port,
                paren(&p.error)
            ),
        ),
        ProxyOutcome::Unreachable => (
            Reason::ProxyUnreachable,
            format!("{}{}", unreachable_msg(), paren(&p.error)),
        ),
        ProxyOutcome::Timeout if proxy_tcp_down => (
            Reason::ProxyUnreachable,
            format!("{}{}", unreachable_msg(), paren(&p.error)),
        ),
        ProxyOutcome::Timeout if private => (
            Reason::ProxyBypassMissing,
            bypass_msg(format!("did not answer CONNECT within {} ms", p.ms)),
        ),
        ProxyOutcome::Timeout => (
            Reason::ProxyUpstreamFailed,
            format!(
                "{host}: proxy {url} did not answer CONNECT {}:{} within {} ms: it cannot reach the destination{}",
                ep.host,
                ep.port,
                p.ms,
                paren(&p.error)
            ),
        ),
        ProxyOutcome::UpstreamFailed if private => (
            Reason::ProxyBypassMissing,
            bypass_msg(format!("cannot reach it {status}").trim_end().to_string()),
        ),
        ProxyOutcome::UpstreamFailed => (
            Reason::ProxyUpstreamFailed,
            format!(
                "{host}: proxy {url} cannot reach {}:{} {status}{}",
                ep.host,
                ep.port,
                paren(&p.error)
            ),
        ),
        ProxyOutcome::Failed => match p.status {
            Some(407) => (
                Reason::ProxyAuthRequired,
                format!(
                    "{host}: proxy {url} answers CONNECT with 407{}",
                    paren(&p.error)
                ),
            ),
            Some(s) if (400..500).contains(&s) => (
                Reason::ProxyDenied,
                format!(
                    "{host}: proxy {url} refuses CONNECT {}:{} (status {s}){}",
                    ep.host,
                    ep.port,
                    paren(&p.error)
                ),
            ),
            _ => (
                Reason::ProxyConnectEOF,
                format!(
                    "{host}: proxy {url} did not give a valid answer to CONNECT {}:{} (wrong proxy scheme or port?){}",
                    ep.host,
                    ep.port,
                    paren(&p.error)
                ),
            ),
        },
    };
    e.push(Layer::Proxy, reason, msg);
    false
}

fn tcp_layer(ctx: &Ctx, e: &mut Emit) -> bool {
    let ep = e.ep;
    let host = e.name.clone();
    let failed: Vec<&TcpEvidence> = ep
        .tcp
        .iter()
        .filter(|t| t.outcome != TcpOutcome::Connected)
        .collect();
    let Some(first) = failed.first() else {
        return true;
    };
    let connected: Vec<&TcpEvidence> = ep
        .tcp
        .iter()
        .filter(|t| t.outcome == TcpOutcome::Connected)
        .collect();
    let any_private = failed
        .iter()
        .any(|t| AddrClass::of(t.address.ip()) == AddrClass::Private);
    let reason = match first.outcome {
        TcpOutcome::Timeout => Reason::ConnectionTimedOut,
        TcpOutcome::Refused => Reason::ConnectionRefused,
        TcpOutcome::Unreachable | TcpOutcome::Error | TcpOutcome::Connected => {
            Reason::HostUnreachable
        }
        TcpOutcome::Blocked => Reason::TargetAddressBlocked,
    };
    if let Some(ok) = connected.first()
        && ipv6_path_broken(ctx, &connected, &failed)
    {
        let msg = format!(
            "{host}: connected over IPv4 to {}, but over IPv6 {}: the IPv6 path is broken. Clients that fall back (Go's dialer, containerd's happy eyeballs) only lose time on each connection; clients that prefer IPv6 and do not fall back fail",
            ok.address,
            tcp_list(&failed)
        );
        e.push(Layer::Tcp, Reason::IPv6PathBroken, msg);
        return true;
    }
    if let Some(ok) = connected.first() {
        let msg = format!(
            "{host}: connected to {}, but {}; clients that try those addresses first stall or fail",
            ok.address,
            tcp_list(&failed)
        );
        e.push(Layer::Tcp, reason, msg).severity = Severity::Warning;
        return true;
    }
    let login_ok = ctx
        .login_connected
        .filter(|_| ep.role == Role::DataEndpoint)
        .filter(|_| {
            matches!(
                first.outcome,
                TcpOutcome::Timeout | TcpOutcome::Refused | TcpOutcome::Unreachable
            )
        });
    if let Some(login) = login_ok {
        let msg = format!(
            "{host}: TCP {}, while the login server {} connects: the firewall allows the login server but not the data endpoint",
            tcp_list(&failed),
            endpoint_name(login)
        );
        e.push(Layer::Tcp, Reason::DataEndpointBlocked, msg);
        return false;
    }
    let hint = match reason {
        Reason::ConnectionTimedOut if any_private => {
            "; the private endpoint address is not routed from here or dropped (peering, UDR, hub firewall)"
        }
        Reason::ConnectionTimedOut => "; packets are dropped (NSG, route table, firewall)",
        Reason::HostUnreachable if any_private => {
            "; the private endpoint address is not routed from here (host is not reachable)"
        }
        Reason::TargetAddressBlocked => "; check the hosts file and DNS filtering for this name",
        _ => "",
    };
    let msg = format!("{host}: TCP {}{hint}", tcp_list(&failed));
    e.push(Layer::Tcp, reason, msg);
    false
}

/// Every IPv6 attempt failed while IPv4 connected, on a client that has IPv6: a timeout or a
/// reset says the node has an IPv6 route; "unreachable" (no route) counts only when the client
/// is declared dual-stack (otherwise it is just an IPv4-only node).
fn ipv6_path_broken(ctx: &Ctx, connected: &[&TcpEvidence], failed: &[&TcpEvidence]) -> bool {
    let declared = ctx.ev.ip_family;
    if declared == Some(IpFamily::Ipv4) {
        return false;
    }
    let v6 = |t: &&TcpEvidence| ip_family_of(t.address.ip()) == "IPv6";
    connected.iter().any(|t| !v6(t))
        && !connected.iter().any(v6)
        && !failed.is_empty()
        && failed.iter().all(v6)
        && failed.iter().all(|t| match t.outcome {
            TcpOutcome::Timeout | TcpOutcome::Refused => true,
            TcpOutcome::Unreachable => declared == Some(IpFamily::Dual),
            _ => false,
        })
}

fn tls_layer(e: &mut Emit) -> bool {
    let ep = e.ep;
    let Some(t) = &ep.tls else {
        return true;
    };
    let host = e.name.clone();
    let at = peer(ep);
    let err = paren(&t.error);
    let subject = t.subject.as_deref().unwrap_or("unknown subject");
    let (reason, msg) = match t.outcome {
        TlsOutcome::Verified => return true,
        TlsOutcome::ResetAfterClientHello => (
            Reason::TLSResetAfterClientHello,
            format!(
                "{host}: connection to {at} was reset right after the TLS ClientHello (SNI {}): a firewall filtering by SNI/FQDN does not allow this host{err}",
                ep.host
            ),
        ),
        TlsOutcome::Timeout => match &t.small_mss_retry {
            Some(r) if r.completed => (
                Reason::PathMTUBlackHole,
                format!(
                    "{host}: TLS handshake with {at} did not complete within {} ms{err}, but a new connection announcing MSS {} completed it in {} ms{}: the server's full-size packets (its certificate flight) are lost on the way while small ones pass, a path-MTU black hole (a tunnel, VPN or appliance with a smaller MTU, and ICMP \"fragmentation needed\" dropped)",
                    t.ms,
                    r.mss,
                    r.ms,
                    match r.tls {
                        Some(TlsOutcome::Verified) | None => String::new(),
                        Some(o) => format!(" (then refused the certificate: {o:?})"),
                    }
                ),
            ),
            retry => (
                Reason::TLSHandshakeTimeout,
                format!(
                    "{host}: TLS handshake with {at} did not complete within {} ms (net/http: TLS handshake timeout){err}{}",
                    t.ms,
                    match retry {
                        Some(r) => format!(
                            "; a new connection announcing MSS {} stalled too{}, so the handshake is held on the path rather than its large packets lost",
                            r.mss,
                            paren(&r.error)
                        ),
                        None => String::new(),
                    }
                ),
            ),
        },
        TlsOutcome::UntrustedIssuer => (
            Reason::TLSInterception,
            format!(
                "{host}: the certificate presented by {at} ('{subject}') is issued by '{}', which is not trusted (x509: certificate signed by unknown authority): TLS inspection on the path{err}",
                t.issuer.as_deref().unwrap_or("an unknown issuer")
            ),
        ),
        TlsOutcome::NameMismatch => (
            Reason::TLSCertificateInvalid,
            format!(
                "{host}: the certificate presented by {at} ('{subject}', issuer '{}') is not valid for {}{err}",
                t.issuer.as_deref().unwrap_or("unknown"),
                ep.host
            ),
        ),
        TlsOutcome::Expired => (
            Reason::TLSCertificateInvalid,
            format!(
                "{host}: the certificate presented by {at} ('{subject}') is expired or not yet valid (check the node clock){err}"
            ),
        ),
        TlsOutcome::Failed => (
            Reason::TLSCertificateInvalid,
            format!("{host}: TLS handshake with {at} failed{err}"),
        ),
    };
    e.push(Layer::Tls, reason, msg);
    false
}

pub(crate) fn http_is_healthy(h: &HttpEvidence) -> bool {
    h.outcome == HttpOutcome::Response
        && match h.status {
            Some(401) => h.challenge.is_some() && !h.challenge_malformed,
            Some(200) => h.distribution_api || h.content_type.is_none(),
            _ => false,
        }
}

fn http_layer(ctx: &Ctx, e: &mut Emit) {
    let ep = e.ep;
    let Some(h) = &ep.http else {
        return;
    };
    if http_is_healthy(h) {
        return;
    }
    let host = e.name.clone();
    let at = peer(ep);
    let err = paren(&h.error);
    let regerr = match &h.registry_error {
        Some(r) => format!(" [{}: {}]", r.code, one_line(&r.message)),
        None => String::new(),
    };
    let what = match &h.content_type {
        Some(ct) => format!("content type {ct}"),
        None => "no registry headers".into(),
    };
    let mut code = None;
    let (reason, msg) = match h.outcome {
        HttpOutcome::HeadersTimeout => (
            Reason::HeadersTimeout,
            format!(
                "{host}: GET /v2/ sent over {at}, but no response headers within {} ms (Client.Timeout exceeded while awaiting headers)",
                h.ms
            ),
        ),
        HttpOutcome::Closed => (
            Reason::ConnectionClosed,
            format!("{host}: {at} closed the connection after GET /v2/ without a response{err}"),
        ),
        HttpOutcome::Malformed => (
            Reason::NotARegistry,
            format!("{host}: {at} answered GET /v2/ with something that is not HTTP/1.x{err}"),
        ),
        HttpOutcome::Response => match h.status {
            Some(401) if h.challenge_malformed => {
                code = Some("CONNECTIVITY_WWW_AUTHENTICATE_ERROR");
                (
                    Reason::RegistryChallengeInvalid,
                    format!(
                        "{host}: GET /v2/ via {at} answered 401 with a WWW-Authenticate header that cannot be parsed{err}"
                    ),
                )
            }
            Some(401) => (
                Reason::RegistryChallengeInvalid,
                format!(
                    "{host}: GET /v2/ via {at} answered 401 without a WWW-Authenticate challenge ({what}){regerr}"
                ),
            ),
            Some(403) => {
                let ip = h.client_ip.clone().or_else(|| {
                    h.registry_error
                        .as_ref()
                        .and_then(|r| client_ip_in(&r.message))
                });
                let explained = ip.as_deref().and_then(|ip| {
                    crate::engine::denial::explain(&host, "GET /v2/", ip, &ctx.ev.egress_ips)
                });
                match (explained, ip) {
                    (Some(found), _) => found,
                    (None, Some(ip)) => (
                        Reason::RegistryDeniedClientIP,
                        format!(
                            "{host}: the registry denies client IP {ip} (403 DENIED by network rules); is {ip} the egress/NAT IP you expect, and is it allowed in the registry's network rules?"
                        ),
                    ),
                    (None, None) => (
                        Reason::RegistryForbidden,
                        format!(
                            "{host}: GET /v2/ via {at} answered 403 Forbidden{regerr}: public network access disabled or restricted"
                        ),
                    ),
                }
            }
            Some(429) => (
                Reason::Throttled,
                format!("{host}: GET /v2/ via {at} answered 429 Too Many Requests{regerr}"),
            ),
            Some(s) if (500..600).contains(&s) => (
                Reason::RegistryServerError,
                format!("{host}: GET /v2/ via {at} answered {s}{regerr}{err}"),
            ),
            Some(s) => (
                Reason::NotARegistry,
                format!(
                    "{host}: GET /v2/ via {at} answered {s} with {what}{}, not a registry API answer{regerr}",
                    if h.distribution_api {
                        ""
                    } else {
                        " and no Docker-Distribution-API-Version header"
                    }
                ),
            ),
            None => (
                Reason::NotARegistry,
                format!("{host}: GET /v2/ via {at} answered without a status{err}"),
            ),
        },
    };
    let f = e.push(Layer::Http, reason, msg);
    if code.is_some() {
        f.code = code.map(str::to_string);
    }
}

// ---------------------------------------------------------------------------------------------
// Pull rules

fn pull_items(ctx: &Ctx, items: &mut Vec<Item>) {
    let Some(p) = &ctx.ev.pull else {
        return;
    };
    let steps: [(&str, &PullStep); 3] = [
        ("token", &p.token),
        ("manifest", &p.manifest),
        ("blob", &p.blob),
    ];
    let Some((step, s)) = steps
        .into_iter()
        .find(|(_, s)| !matches!(s.outcome, PullOutcome::Ok | PullOutcome::Skipped))
    else {
        return;
    };
    let is_blob = step == "blob";
    let host = s
        .host
        .clone()
        .or_else(|| {
            is_blob
                .then(|| p.redirects.last().cloned())
                .flatten()
                .or_else(|| p.failed_host.as_ref().map(|f| endpoint_name(f)))
        })
        .unwrap_or_else(|| ctx.ev.registry.clone());
    let probed = ctx
        .ev
        .endpoints
        .iter()
        .find(|e| e.host.eq_ignore_ascii_case(&host) || endpoint_name(e) == host);
    let role = match probed {
        Some(e) => e.role,
        None if is_blob => Role::DataEndpoint,
        None => Role::LoginServer,
    };
    let already_failing = items.iter().any(|i| {
        i.finding.severity == Severity::Error && i.finding.endpoint.eq_ignore_ascii_case(&host)
    });
    let status = s.status.map(|c| format!(" {c}")).unwrap_or_default();
    let status_paren = s
        .status
        .map(|c| format!(" (status {c})"))
        .unwrap_or_default();
    let regerr = match &s.registry_error {
        Some(r) => format!(" [{}: {}]", r.code, one_line(&r.message)),
        None => String::new(),
    };
    let err = paren(&s.error);
    let image = &p.image;
    let mk = |reason: Reason, msg: String| Item {
        layer: Layer::Pull,
        finding: Finding::catalogued(reason, host.clone(), Some(role), msg),
    };
    // The token step's request went to the token endpoint the challenge named (not `/v2/`).
    let token_path = s
        .path
        .as_deref()
        .filter(|_| step == "token")
        .filter(|p| crate::engine::denial::is_token_endpoint(Some(p)));
    let what = match token_path {
        Some(path) => format!("token request to {path} for {image}"),
        None => format!("{step} request for {image}"),
    };
    let storage_code = s
        .registry_error
        .as_ref()
        .filter(|r| crate::engine::denial::is_storage_denial(&r.code));
    let mut new: Vec<Item> = match s.outcome {
        PullOutcome::Ok | PullOutcome::Skipped => Vec::new(),
        PullOutcome::Unauthorized if token_path.is_some() => vec![mk(
            Reason::AuthenticationFailed,
            format!(
                "{host}: {what} answered 401 Unauthorized {} while the registry answers its /v2/ challenge: no token for these credentials{regerr}",
                if p.credentials {
                    "with the credentials given"
                } else {
                    "without credentials (anonymous pull is not allowed)"
                }
            ),
        )],
        PullOutcome::Unauthorized => vec![mk(
            Reason::AuthenticationFailed,
            format!(
                "{host}: {step} request for {image} answered 401 Unauthorized {}{regerr}",
                if p.credentials {
                    "with the credentials given"
                } else {
                    "without credentials (anonymous pull is not allowed)"
                }
            ),
        )],
        PullOutcome::Forbidden => {
            let ip = s
                .registry_error
                .as_ref()
                .filter(|r| r.code.eq_ignore_ascii_case("DENIED"))
                .and_then(|r| client_ip_in(&r.message));
            let explained = ip.as_deref().and_then(|ip| {
                crate::engine::denial::explain(&host, &what, ip, &ctx.ev.egress_ips)
            });
            match (explained, ip) {
                (Some((reason, msg)), _) => vec![mk(reason, msg)],
                (None, Some(ip)) => vec![mk(
                    Reason::RegistryDeniedClientIP,
                    format!(
                        "{host}: {step} request for {image} denied for client IP {ip} (403 DENIED by network rules); is {ip} the egress/NAT IP you expect?"
                    ),
                )],
                (None, None)
                    if is_blob && (role == Role::DataEndpoint || storage_code.is_some()) =>
                {
                    let said = match storage_code {
                        Some(r) => format!(
                            " with Azure Storage's {} ({})",
                            r.code,
                            one_line(&r.message)
                        ),
                        None => regerr.clone(),
                    };
                    vec![mk(
                        Reason::StorageAccessDenied,
                        format!(
                            "{host}: the blob download of {image} was redirected here{} and answered 403 Forbidden{said}: the storage behind the data endpoint refuses this client (storage firewall or a service endpoint policy), not the registry's identity check",
                            if p.redirects.is_empty() {
                                String::new()
                            } else {
                                format!(" (via {})", p.redirects.join(" -> "))
                            }
                        ),
                    )]
                }
                (None, None) if token_path.is_some() => vec![mk(
                    Reason::AuthorizationFailed,
                    format!(
                        "{host}: {what} answered 403 Forbidden{regerr} while the registry answers its /v2/ challenge: no token for this identity and repository"
                    ),
                )],
                (None, None) => vec![mk(
                    Reason::AuthorizationFailed,
                    format!(
                        "{host}: {step} request for {image} answered 403 Forbidden{regerr}: the identity may not pull this repository"
                    ),
                )],
            }
        }
        PullOutcome::NotFound | PullOutcome::ServerError | PullOutcome::Invalid
            if token_path.is_some() =>
        {
            vec![mk(
                Reason::TokenRequestFailed,
                format!(
                    "{host}: {what} failed{status_paren}{regerr}{err}, while the registry answers its /v2/ challenge"
                ),
            )]
        }
        PullOutcome::NotFound if step == "manifest" => vec![mk(
            Reason::ImageNotFound,
            format!("{host}: manifest of {image} not found{status_paren}{regerr}"),
        )],
        PullOutcome::NotFound => vec![mk(
            Reason::PullFailed,
            format!("{host}: {step} request for {image} answered not found{status_paren}{regerr}"),
        )],
        PullOutcome::Throttled => vec![mk(
            Reason::Throttled,
            format!("{host}: {step} request for {image} answered 429 Too Many Requests{regerr}"),
        )],
        PullOutcome::ServerError => vec![mk(
            Reason::RegistryServerError,
            format!(
                "{host}: {step} request for {image} answered server error{status}{regerr}{err}"
            ),
        )],
        PullOutcome::TooManyRedirects => vec![mk(
            Reason::TooManyRedirects,
            format!(
                "{host}: {step} request for {image} was redirected too often ({}){err}",
                if p.redirects.is_empty() {
                    "no redirect hosts recorded".to_string()
                } else {
                    p.redirects.join(" -> ")
                }
            ),
        )],
        PullOutcome::Invalid => vec![mk(
            Reason::PullFailed,
            format!(
                "{host}: {step} request for {image} got an unexpected answer{status}{regerr}{err}"
            ),
        )],
        PullOutcome::Unreachable if already_failing => Vec::new(),
        PullOutcome::Unreachable if is_blob => vec![blob_unreachable(ctx, p, &host, role, s)],
        PullOutcome::Unreachable => {
            let from_host: Vec<Item> = match p.failed_host.as_deref() {
                Some(fh) => endpoint_items(ctx, fh)
                    .into_iter()
                    .filter(|i| i.finding.severity == Severity::Error)
                    // A probed endpoint of that name already explains itself (also when its
                    // own probe found only a partial failure: repeating its DNS error here as
                    // an Error would contradict that endpoint's own findings).
                    .filter(|i| {
                        !items
                            .iter()
                            .any(|j| j.finding.endpoint == i.finding.endpoint)
                    })
                    .map(|mut i| {
                        i.finding.message = format!(
                            "{} (during the {step} request of the pull)",
                            i.finding.message
                        );
                        i
                    })
                    .collect(),
                None => Vec::new(),
            };
            if from_host.is_empty() && token_path.is_some() {
                vec![mk(
                    Reason::TokenRequestFailed,
                    format!(
                        "{host}: {what} could not reach the token endpoint{err}, while the registry answers its /v2/ challenge"
                    ),
                )]
            } else if from_host.is_empty() {
                vec![mk(
                    Reason::PullFailed,
                    format!("{host}: {step} request for {image} could not reach the host{err}"),
                )]
            } else {
                from_host
            }
        }
    };
    if let Some(path) = token_path {
        let code = crate::engine::denial::token_code(path);
        for i in &mut new {
            if matches!(
                i.finding.reason,
                Reason::AuthenticationFailed
                    | Reason::AuthorizationFailed
                    | Reason::TokenRequestFailed
            ) {
                i.finding.code = Some(code.to_string());
            }
        }
    }
    for item in new {
        let dup = items.iter().any(|i| {
            i.finding.reason == item.finding.reason && i.finding.endpoint == item.finding.endpoint
        });
        if !dup {
            items.push(item);
        }
    }
}

/// The blob request's redirect target could not be reached.
fn blob_unreachable(ctx: &Ctx, p: &PullEvidence, host: &str, role: Role, s: &PullStep) -> Item {
    let fh = p.failed_host.as_deref();
    let via = if p.redirects.is_empty() || p.redirects.iter().all(|r| r == host) {
        String::new()
    } else {
        format!(" (redirected via {})", p.redirects.join(" -> "))
    };
    let dns_missing = fh.is_some_and(|f| {
        matches!(
            f.dns.system.outcome,
            DnsOutcome::NameNotFound | DnsOutcome::NoAddresses
        )
    });
    let (reason, msg) = if let (true, Some(f)) = (dns_missing, fh) {
        let who = resolver(f);
        let login = match ctx.login_private {
            Some(l) => format!(
                ", while the login server {} resolves to {}",
                endpoint_name(l),
                addrs(&l.dns.system.addresses)
            ),
            None => String::new(),
        };
        (
            Reason::DataEndpointDNSMissing,
            format!(
                "{host}: the blob download of {} was redirected here{via}, but {who} answers {}{login}: no DNS record for this data endpoint",
                p.image,
                outcome_word(f.dns.system.outcome)
            ),
        )
    } else {
        let address = fh
            .and_then(|f| {
                let failed: Vec<&TcpEvidence> = f
                    .tcp
                    .iter()
                    .filter(|t| t.outcome != TcpOutcome::Connected)
                    .collect();
                if !failed.is_empty() {
                    Some(format!("TCP {}", tcp_list(&failed)))
                } else if let Some(t) = f.tls.as_ref().filter(|t| t.outcome != TlsOutcome::Verified)
                {
                    Some(format!("TLS {:?}", t.outcome))
                } else if !f.dns.system.addresses.is_empty() {
                    Some(format!("it resolves to {}", addrs(&f.dns.system.addresses)))
                } else {
                    None
                }
            })
            .or_else(|| s.error.clone())
            .unwrap_or_else(|| "address unknown".into());
        let login = match ctx.login_connected {
            Some(l) => format!(
                ", while the login server {} is reachable: the firewall allows the login server but not the data endpoint",
                endpoint_name(l)
            ),
            None => String::new(),
        };
        (
            Reason::DataEndpointBlocked,
            format!(
                "{host}: the blob download of {} was redirected here{via} but the host cannot be reached ({address}){login}",
                p.image
            ),
        )
    };
    Item {
        layer: Layer::Pull,
        finding: Finding::catalogued(reason, host.to_string(), Some(role), msg),
    }
}

#[cfg(test)]
mod tests;
