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
    HttpOutcome, ProxyOutcome, PullEvidence, PullOutcome, PullStep, Role, TcpEvidence, TcpOutcome,
    TlsOutcome,
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
        None => 4,
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
        TlsOutcome::Timeout => (
            Reason::TLSHandshakeTimeout,
            format!(
                "{host}: TLS handshake with {at} did not complete within {} ms (net/http: TLS handshake timeout){err}",
                t.ms
            ),
        ),
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
mod tests {
    use super::*;
    use crate::engine::evidence::{
        Challenge, DnsEvidence, ProxyEvidence, RegistryError, Route, TlsEvidence,
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
                system: sys(DnsOutcome::Resolved, &[], &[addr]),
                servers: vec![answer(NS, DnsOutcome::Resolved, &[], &[addr])],
            },
            route: Route::direct(),
            proxy: None,
            tcp: vec![tcp(&format!("{addr}:443"), TcpOutcome::Connected)],
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
            endpoints,
            pull: None,
            containerd: None,
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
                    &format!("{}:443", g.pick(&["20.1.2.3", "10.1.0.5"])),
                    g.pick(TCP),
                )
            })
            .collect();
        e.tls = (!g.chance(5)).then(|| tls(g.pick(TLS)));
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
        if g.chance(2) {
            let st = |g: &mut Gen, host: &str| {
                let mut s = step(g.pick(PULL), host);
                if s.outcome == PullOutcome::Forbidden && g.chance(2) {
                    s.registry_error = Some(match g.next() % 3 {
                        0 => RegistryError {
                            code: "AuthorizationFailure".into(),
                            message: "This request is not authorized to perform this operation."
                                .into(),
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
}
