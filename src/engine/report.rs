//! Presentation of a [`Report`]: JSON (full and compact) and a terminal table.
//!
//! Everything printed to a terminal has its control characters escaped: evidence strings
//! come from the network (certificate subjects, error bodies) and must not drive the terminal.

use crate::engine::evidence::{
    DnsAnswer, DnsOutcome, EndpointEvidence, HttpOutcome, ProxyOutcome, PullOutcome, PullStep,
    Role, TcpOutcome, TlsOutcome, ip_family_of,
};
use crate::engine::findings::{Finding, Report, Severity, Verdict};
use crate::engine::text;

/// Longest finding message kept by [`compact`], in characters.
pub const COMPACT_MESSAGE_CHARS: usize = 200;
/// Longest evidence error string kept by [`compact`], in characters.
pub const COMPACT_ERROR_CHARS: usize = 120;
/// Longest DETAIL cell of the table, in characters.
const DETAIL_CHARS: usize = 100;
/// Longest ENDPOINT cell of the table, in characters.
const ENDPOINT_CHARS: usize = 64;

/// The report as JSON (`schemaVersion` 1).
pub fn to_json(report: &Report, pretty: bool) -> String {
    let res = if pretty {
        serde_json::to_string_pretty(report)
    } else {
        serde_json::to_string(report)
    };
    // The report types contain only string-keyed maps and plain values: serialisation cannot
    // fail, but if it ever did the output still says so in JSON rather than panicking.
    res.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}

fn compact_answer(a: &mut DnsAnswer) {
    text::clip_opt(&mut a.error, COMPACT_ERROR_CHARS);
}

fn compact_step(s: &mut PullStep) {
    text::clip_opt(&mut s.error, COMPACT_ERROR_CHARS);
    if let Some(r) = &mut s.registry_error {
        r.message = text::clip(&r.message, COMPACT_MESSAGE_CHARS);
    }
}

fn compact_endpoint(e: &mut EndpointEvidence) {
    compact_answer(&mut e.dns.system);
    e.dns.servers.iter_mut().for_each(compact_answer);
    if let Some(p) = &mut e.proxy {
        text::clip_opt(&mut p.error, COMPACT_ERROR_CHARS);
    }
    for t in &mut e.tcp {
        text::clip_opt(&mut t.error, COMPACT_ERROR_CHARS);
    }
    if let Some(t) = &mut e.tls {
        text::clip_opt(&mut t.error, COMPACT_ERROR_CHARS);
        if let Some(r) = &mut t.small_mss_retry {
            text::clip_opt(&mut r.error, COMPACT_ERROR_CHARS);
        }
    }
    if let Some(h) = &mut e.http {
        text::clip_opt(&mut h.error, COMPACT_ERROR_CHARS);
        if let Some(r) = &mut h.registry_error {
            r.message = text::clip(&r.message, COMPACT_MESSAGE_CHARS);
        }
    }
}

/// The report for a probe's termination message: findings lose `remediation` and `docs` (the
/// catalogue restores them from the reason) and messages are cut to 200 characters; evidence
/// error strings are cut to 120 characters and registry error messages to 200. The shape is unchanged, so it deserialises as a
/// normal [`Report`].
pub fn compact(report: &Report) -> Report {
    let mut r = report.clone();
    for f in &mut r.findings {
        f.remediation.clear();
        f.docs.clear();
        f.message = text::clip(&f.message, COMPACT_MESSAGE_CHARS);
    }
    r.evidence.endpoints.iter_mut().for_each(compact_endpoint);
    if let Some(p) = &mut r.evidence.pull {
        compact_step(&mut p.token);
        compact_step(&mut p.manifest);
        compact_step(&mut p.blob);
        if let Some(h) = &mut p.failed_host {
            compact_endpoint(h);
        }
    }
    if let Some(eg) = &mut r.evidence.egress {
        // Hosts no finding names keep their rule only; texts of the profile data are restored
        // from the data version when needed.
        let named: Vec<&str> = report
            .findings
            .iter()
            .filter(|f| f.role == Some(Role::Egress))
            .map(|f| f.endpoint.as_str())
            .collect();
        for h in &mut eg.hosts {
            h.rule.role.clear();
            h.rule.docs = None;
            h.rule.note = None;
            let name = if h.port == 443 {
                h.host.clone()
            } else {
                format!("{}:{}", h.host, h.port)
            };
            if named.contains(&name.as_str()) {
                if let Some(e) = &mut h.endpoint {
                    compact_endpoint(e);
                }
            } else {
                h.endpoint = None;
            }
        }
        for n in &mut eg.not_probed {
            n.rule.role.clear();
            n.rule.docs = None;
            n.rule.note = None;
            n.why = text::clip(&n.why, 80);
        }
    }
    r
}

/// [`compact`] as single-line JSON.
pub fn to_compact_json(report: &Report) -> String {
    to_json(&compact(report), false)
}

/// How a table cell is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Err,
    Neutral,
}

fn paint(s: &str, status: Status, color: bool) -> String {
    let code = match status {
        Status::Ok => "32",
        Status::Err => "31",
        Status::Warn => "33",
        Status::Neutral => return s.to_string(),
    };
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Escapes control characters (terminal escapes from the network stay inert).
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::LoginServer => "login",
        Role::DataEndpoint => "data",
        Role::Extra => "extra",
        Role::Mirror => "mirror",
        Role::Egress => "egress",
    }
}

struct Row {
    endpoint: String,
    role: String,
    phase: &'static str,
    result: String,
    ms: Option<u64>,
    detail: String,
    status: Status,
}

fn join_details(parts: Vec<String>) -> String {
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn dns_detail(a: &DnsAnswer) -> String {
    let addrs = a
        .addresses
        .iter()
        .map(|ad| {
            let record = if ip_family_of(ad.ip) == "IPv6" {
                "AAAA"
            } else {
                "A"
            };
            format!(
                "{} ({record}, {})",
                ad.ip,
                format!("{:?}", ad.class).to_lowercase()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let chain = if a.cnames.is_empty() {
        String::new()
    } else {
        format!("cname {}", a.cnames.join(" -> "))
    };
    let by = a
        .answered_by
        .as_ref()
        .map(|s| format!("from {s}"))
        .unwrap_or_default();
    join_details(vec![addrs, chain, by, a.error.clone().unwrap_or_default()])
}

fn endpoint_rows(e: &EndpointEvidence, rows: &mut Vec<Row>) {
    let name = match (e.port, e.host.contains(':')) {
        (443, _) => e.host.clone(),
        (port, true) => format!("[{}]:{port}", e.host),
        (port, false) => format!("{}:{port}", e.host),
    };
    let row = |phase, result: String, ms, detail: String, status| Row {
        endpoint: name.clone(),
        role: role_name(e.role).to_string(),
        phase,
        result,
        ms,
        detail,
        status,
    };
    let sys = &e.dns.system;
    let dns_status = |a: &DnsAnswer| {
        if a.outcome == DnsOutcome::Resolved {
            Status::Ok
        } else {
            Status::Err
        }
    };
    rows.push(row(
        "dns",
        format!("{:?}", sys.outcome),
        Some(sys.ms),
        dns_detail(sys),
        dns_status(sys),
    ));
    for a in &e.dns.servers {
        rows.push(row(
            "dns",
            format!("{:?}", a.outcome),
            Some(a.ms),
            join_details(vec![format!("@{}", a.server), dns_detail(a)]),
            dns_status(a),
        ));
    }
    if let Some(url) = &e.route.proxy {
        let not_applied = if e.route.cidr_not_applied.is_empty() {
            String::new()
        } else {
            format!(
                "NO_PROXY {} not applied to a name",
                e.route.cidr_not_applied.join(",")
            )
        };
        match &e.proxy {
            Some(p) => rows.push(row(
                "proxy",
                format!("{:?}", p.outcome),
                Some(p.ms),
                join_details(vec![
                    format!("via {url}"),
                    p.status.map(|s| format!("HTTP {s}")).unwrap_or_default(),
                    p.error.clone().unwrap_or_default(),
                    not_applied,
                ]),
                if p.outcome == ProxyOutcome::Connected {
                    Status::Ok
                } else {
                    Status::Err
                },
            )),
            None => rows.push(row(
                "proxy",
                "NotTried".into(),
                None,
                join_details(vec![format!("via {url}"), not_applied]),
                Status::Neutral,
            )),
        }
    } else if let Some(entry) = &e.route.no_proxy_match {
        rows.push(row(
            "proxy",
            "Bypassed".into(),
            None,
            format!("direct: NO_PROXY entry '{entry}'"),
            Status::Neutral,
        ));
    }
    for t in &e.tcp {
        rows.push(row(
            "tcp",
            format!("{:?}", t.outcome),
            Some(t.ms),
            join_details(vec![
                format!("{} {}", ip_family_of(t.address.ip()), t.address),
                t.error.clone().unwrap_or_default(),
            ]),
            match t.outcome {
                TcpOutcome::Connected => Status::Ok,
                _ => Status::Err,
            },
        ));
    }
    if let Some(t) = &e.tls {
        rows.push(row(
            "tls",
            format!("{:?}", t.outcome),
            Some(t.ms),
            join_details(vec![
                t.peer
                    .map(|p| format!("over {} {p}", ip_family_of(p.ip())))
                    .unwrap_or_default(),
                t.issuer
                    .as_ref()
                    .map(|i| format!("issuer {i}"))
                    .unwrap_or_default(),
                t.error.clone().unwrap_or_default(),
            ]),
            if t.outcome == TlsOutcome::Verified {
                Status::Ok
            } else {
                Status::Err
            },
        ));
        if let Some(r) = &t.small_mss_retry {
            rows.push(row(
                "tls",
                if r.completed {
                    "SmallMSSCompleted".into()
                } else {
                    "SmallMSSStalled".into()
                },
                Some(r.ms),
                join_details(vec![
                    format!("retry on a new connection announcing MSS {}", r.mss),
                    r.tls.map(|o| format!("{o:?}")).unwrap_or_default(),
                    r.error.clone().unwrap_or_default(),
                ]),
                if r.completed {
                    Status::Warn
                } else {
                    Status::Err
                },
            ));
        }
    }
    if let Some(h) = &e.http {
        let (result, status) = match (h.outcome, h.status) {
            // Egress hosts are not registries: any answer means reachable.
            (HttpOutcome::Response, Some(code)) if e.role == Role::Egress => {
                (format!("HTTP {code}"), Status::Ok)
            }
            (HttpOutcome::Response, Some(code)) => (
                format!("HTTP {code}"),
                match code {
                    200..=299 | 401 => Status::Ok,
                    300..=399 => Status::Warn,
                    _ => Status::Err,
                },
            ),
            (outcome, _) => (format!("{outcome:?}"), Status::Err),
        };
        let challenge = match &h.challenge {
            Some(c) => match &c.realm {
                Some(r) => format!("{} realm {r}", c.scheme),
                None => c.scheme.clone(),
            },
            None if h.challenge_malformed => "malformed WWW-Authenticate".into(),
            None => String::new(),
        };
        rows.push(row(
            "http",
            result,
            Some(h.ms),
            join_details(vec![
                h.client_ip
                    .as_ref()
                    .map(|ip| format!("client IP {ip}"))
                    .unwrap_or_default(),
                h.registry_error
                    .as_ref()
                    .map(|r| format!("{}: {}", r.code, r.message))
                    .unwrap_or_default(),
                challenge,
                h.content_type
                    .as_ref()
                    .map(|c| format!("content-type {c}"))
                    .unwrap_or_default(),
                h.error.clone().unwrap_or_default(),
            ]),
            status,
        ));
    }
    if e.deadline_exceeded {
        rows.push(row(
            "-",
            "Deadline".into(),
            None,
            "overall deadline passed before this endpoint finished".into(),
            Status::Err,
        ));
    }
}

fn pull_rows(report: &Report, rows: &mut Vec<Row>) {
    let Some(p) = &report.evidence.pull else {
        return;
    };
    let blob_extra = join_details(vec![
        p.blob_digest.clone().unwrap_or_default(),
        p.blob_size
            .map(|s| format!("{s} bytes"))
            .unwrap_or_default(),
        if p.redirects.is_empty() {
            String::new()
        } else {
            format!("redirected to {}", p.redirects.join(" -> "))
        },
    ]);
    for (name, step, extra) in [
        ("token", &p.token, format!("image {}", p.image)),
        ("manifest", &p.manifest, String::new()),
        ("blob", &p.blob, blob_extra),
    ] {
        let status = match step.outcome {
            PullOutcome::Ok => Status::Ok,
            PullOutcome::Skipped => Status::Neutral,
            PullOutcome::Throttled => Status::Warn,
            _ => Status::Err,
        };
        rows.push(Row {
            endpoint: step
                .host
                .clone()
                .unwrap_or_else(|| report.evidence.registry.clone()),
            role: "-".into(),
            phase: "pull",
            result: format!("{:?}", step.outcome),
            ms: Some(step.ms),
            detail: join_details(vec![
                name.to_string(),
                step.status.map(|s| format!("HTTP {s}")).unwrap_or_default(),
                step.registry_error
                    .as_ref()
                    .map(|r| format!("{}: {}", r.code, r.message))
                    .unwrap_or_default(),
                step.error.clone().unwrap_or_default(),
                extra,
            ]),
            status,
        });
    }
    if let Some(h) = &p.failed_host {
        endpoint_rows(h, rows);
    }
}

/// Most lines one DETAIL cell takes.
const DETAIL_LINES: usize = 3;

/// Splits a detail into lines of at most [`DETAIL_CHARS`] characters at `; ` boundaries, at
/// most [`DETAIL_LINES`] lines; what does not fit is cut and marked with `…`.
fn wrap_detail(s: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for part in s.split("; ").filter(|p| !p.is_empty()) {
        let part = text::clip(part, DETAIL_CHARS);
        if cur.is_empty() {
            cur = part;
        } else if cur.chars().count() + 2 + part.chars().count() <= DETAIL_CHARS {
            cur.push_str("; ");
            cur.push_str(&part);
        } else {
            lines.push(std::mem::replace(&mut cur, part));
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    if lines.len() > DETAIL_LINES {
        lines.truncate(DETAIL_LINES);
        if let Some(last) = lines.last_mut() {
            *last = text::clip(&format!("{last} …"), DETAIL_CHARS);
            if !last.ends_with('…') {
                last.push_str(" …");
            }
        }
    }
    lines
}

fn severity_status(s: Severity) -> Status {
    match s {
        Severity::Error => Status::Err,
        Severity::Warning => Status::Warn,
        Severity::Info => Status::Neutral,
    }
}

fn render_primary(f: &Finding, color: bool, out: &mut String) {
    let title = format!("{} ({:?})", f.reason.as_str(), f.severity);
    out.push_str(&format!(
        "Diagnosis: {}\n",
        paint(&title, severity_status(f.severity), color)
    ));
    let role = f
        .role
        .map(|r| format!(" ({})", role_name(r)))
        .unwrap_or_default();
    let mut line = |label: &str, value: &str| {
        if !value.is_empty() {
            out.push_str(&format!("  {label:<12} {}\n", clean(value)));
        }
    };
    line("endpoint:", &format!("{}{role}", f.endpoint));
    line("cause:", f.cause.as_str());
    line("code:", f.code.as_deref().unwrap_or(""));
    line("message:", &f.message);
    line("remediation:", &f.remediation);
    for d in &f.docs {
        line("docs:", d);
    }
}

/// A terminal table: a header with registry and verdict, one row per endpoint and phase, then
/// the diagnosis (primary finding in full, others one line each). ANSI colours only when
/// `color` is true.
pub fn render_table(report: &Report, color: bool) -> String {
    let ev = &report.evidence;
    let mut out = String::new();
    let verdict_status = match report.verdict {
        Verdict::Healthy => Status::Ok,
        Verdict::Degraded => Status::Warn,
        Verdict::Unreachable => Status::Err,
    };
    out.push_str(&format!(
        "Registry {}: {}  ({} endpoints, {} ms, expect {:?})\n\n",
        clean(&ev.registry),
        paint(report.verdict.as_str(), verdict_status, color),
        ev.endpoints.len(),
        ev.ms,
        ev.expect
    ));

    let mut rows = Vec::new();
    for e in &ev.endpoints {
        endpoint_rows(e, &mut rows);
    }
    if let Some(c) = &ev.containerd {
        for e in c.hosts.iter().filter_map(|h| h.endpoint.as_ref()) {
            endpoint_rows(e, &mut rows);
        }
    }
    if let Some(eg) = &ev.egress {
        for e in eg.hosts.iter().filter_map(|h| h.endpoint.as_ref()) {
            endpoint_rows(e, &mut rows);
        }
    }
    pull_rows(report, &mut rows);

    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                text::clip(&clean(&r.endpoint), ENDPOINT_CHARS),
                r.role.clone(),
                r.phase.to_string(),
                clean(&r.result),
                r.ms.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                clean(&r.detail),
            ]
        })
        .collect();
    let header = ["ENDPOINT", "ROLE", "PHASE", "RESULT", "TIME ms", "DETAIL"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for c in &cells {
        for (w, cell) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let pad = |s: &str, w: usize, right: bool| {
        let fill = " ".repeat(w.saturating_sub(s.chars().count()));
        if right {
            format!("{fill}{s}")
        } else {
            format!("{s}{fill}")
        }
    };
    let mut header_line = String::new();
    for (i, h) in header.iter().enumerate() {
        if i == 5 {
            header_line.push_str(h);
        } else {
            header_line.push_str(&pad(h, widths[i], i == 4));
            header_line.push_str("  ");
        }
    }
    out.push_str(header_line.trim_end());
    out.push('\n');
    let mut last_endpoint: Option<&str> = None;
    for (c, r) in cells.iter().zip(rows.iter()) {
        // Show host and role once per group of rows about the same endpoint.
        let same = last_endpoint == Some(c[0].as_str());
        last_endpoint = Some(c[0].as_str());
        let mut line = String::new();
        line.push_str(&pad(if same { "" } else { &c[0] }, widths[0], false));
        line.push_str("  ");
        line.push_str(&pad(if same { "" } else { &c[1] }, widths[1], false));
        line.push_str("  ");
        line.push_str(&pad(&c[2], widths[2], false));
        line.push_str("  ");
        line.push_str(&paint(&pad(&c[3], widths[3], false), r.status, color));
        line.push_str("  ");
        line.push_str(&pad(&c[4], widths[4], true));
        line.push_str("  ");
        let mut details = wrap_detail(&c[5]).into_iter();
        line.push_str(&details.next().unwrap_or_default());
        out.push_str(line.trim_end());
        out.push('\n');
        let indent: usize = widths[..5].iter().map(|w| w + 2).sum();
        for more in details {
            out.push_str(&" ".repeat(indent));
            out.push_str(&more);
            out.push('\n');
        }
    }
    out.push('\n');
    if let Some(c) = &ev.containerd {
        containerd_lines(c, color, &mut out);
    }
    if let Some(r) = &ev.resolvers {
        resolver_lines(r, &mut out);
    }
    if let Some(p) = &ev.proxy_source {
        out.push_str(&format!("Proxy settings from: {}\n\n", clean(p)));
    }
    if let Some(eg) = &ev.egress {
        egress_lines(eg, &report.findings, color, &mut out);
    }

    match report.findings.split_first() {
        None => out.push_str("Diagnosis: no findings\n"),
        Some((primary, rest)) => {
            render_primary(primary, color, &mut out);
            if !rest.is_empty() {
                out.push_str("Also found:\n");
                for f in rest {
                    let tag = paint(
                        &format!("{:?}", f.severity),
                        severity_status(f.severity),
                        color,
                    );
                    out.push_str(&format!(
                        "  - {tag} {} on {}: {}\n",
                        f.reason.as_str(),
                        clean(&f.endpoint),
                        text::clip(&clean(&f.message), 160)
                    ));
                }
            }
        }
    }
    out
}

/// The outcome of one egress host: `reachable (HTTP 200)`, or `blocked at <step>` from its
/// finding.
fn egress_outcome(
    h: &crate::engine::evidence::EgressHost,
    findings: &[Finding],
) -> (String, Status) {
    let name = if h.port == 443 {
        h.host.clone()
    } else {
        format!("{}:{}", h.host, h.port)
    };
    if let Some(f) = findings.iter().find(|f| {
        f.role == Some(Role::Egress)
            && f.endpoint == name
            && f.reason == crate::engine::findings::Reason::EgressHostBlocked
    }) {
        let step = f
            .message
            .split_once(" blocked at ")
            .map(|(_, rest)| rest.split(',').next().unwrap_or(""))
            .unwrap_or("");
        let status = if f.severity == Severity::Error {
            Status::Err
        } else {
            Status::Warn
        };
        return (format!("blocked at {step}"), status);
    }
    match h.endpoint.as_ref().and_then(|e| e.http.as_ref()) {
        Some(http) if http.outcome == HttpOutcome::Response => (
            format!(
                "reachable (HTTP {})",
                http.status.map(|s| s.to_string()).unwrap_or_default()
            ),
            Status::Ok,
        ),
        _ => ("reachable".into(), Status::Ok),
    }
}

/// The egress hosts: rule, role, source and outcome of each, then the rules not probed.
fn egress_lines(
    eg: &crate::engine::evidence::EgressEvidence,
    findings: &[Finding],
    color: bool,
    out: &mut String,
) {
    let profiles = if eg.profiles.is_empty() {
        String::new()
    } else {
        format!("profiles {}, ", eg.profiles.join(", "))
    };
    out.push_str(&format!(
        "Egress hosts ({profiles}profile data {}):\n",
        clean(&eg.data_version)
    ));
    for h in &eg.hosts {
        let (outcome, status) = egress_outcome(h, findings);
        let name = if h.port == 443 {
            h.host.clone()
        } else {
            format!("{}:{}", h.host, h.port)
        };
        let rule = if h.rule.fqdn == h.host {
            String::new()
        } else {
            format!(" for {}", h.rule.fqdn)
        };
        let need = if h.rule.required {
            "required"
        } else {
            "optional"
        };
        out.push_str(&format!(
            "  {}  {}  [{}{rule}, {need}]{}\n",
            clean(&name),
            paint(&outcome, status, color),
            clean(&h.rule.source),
            if h.rule.role.is_empty() {
                String::new()
            } else {
                format!(" {}", text::clip(&clean(&h.rule.role), 90))
            }
        ));
    }
    for n in &eg.not_probed {
        out.push_str(&format!(
            "  {}  {}  [{}]: {}\n",
            clean(&n.rule.fqdn),
            paint("not probed", Status::Warn, color),
            clean(&n.rule.source),
            clean(&n.why)
        ));
    }
    out.push('\n');
}

/// What containerd would do (`--containerd-config-dir`): its hosts in order, the one it would
/// use, and what the probe itself took.
fn containerd_lines(c: &crate::engine::mirrors::ContainerdEvidence, color: bool, out: &mut String) {
    out.push_str(&format!(
        "containerd ({}):\n",
        clean(
            c.config
                .as_deref()
                .unwrap_or("no hosts.toml for this registry")
        )
    ));
    if let Some(why) = &c.invalid {
        out.push_str(&format!(
            "  hosts.toml ignored by containerd: {}\n",
            clean(why)
        ));
    }
    for (i, h) in c.hosts.iter().enumerate() {
        let (word, status) = if h.works {
            ("works", Status::Ok)
        } else {
            ("fails", Status::Err)
        };
        out.push_str(&format!(
            "  {}. {}{} [{}] {}\n",
            i + 1,
            clean(&h.url),
            if h.upstream { " (upstream)" } else { "" },
            h.capabilities.join(","),
            paint(word, status, color)
        ));
        for n in &h.notes {
            out.push_str(&format!("       {}\n", clean(n)));
        }
    }
    match (&c.broken, &c.would_use) {
        (Some(why), _) => out.push_str(&format!(
            "  containerd would fail every pull: {}\n",
            clean(why)
        )),
        (None, Some(u)) => out.push_str(&format!("  containerd would pull from {}\n", clean(u))),
        (None, None) => out.push_str("  containerd would find no working host\n"),
    }
    out.push_str(&format!("  the probe took {}\n\n", clean(&c.probe_took)));
}

/// The host's resolver (containerd's) and the kubelet's (`--host-resolv-conf`).
fn resolver_lines(r: &crate::engine::evidence::ResolverEvidence, out: &mut String) {
    let one = |s: &crate::engine::evidence::ResolvSource| {
        let mut t = format!("{}: nameserver {}", s.file, s.nameservers.join(", "));
        if !s.search.is_empty() {
            t.push_str(&format!("; search {}", s.search.join(" ")));
        }
        clean(&t)
    };
    out.push_str("Resolvers:\n");
    out.push_str(&format!("  host (containerd): {}\n", one(&r.host)));
    out.push_str(&format!(
        "  kubelet (pods with dnsPolicy Default): {}\n",
        one(&r.kubelet)
    ));
    out.push_str(&format!(
        "  {}; containerd uses {}\n\n",
        if r.differ {
            "they differ"
        } else {
            "they are the same"
        },
        clean(&r.containerd_uses)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::evidence::*;
    use crate::engine::findings::{Cause, Reason, SCHEMA_VERSION};

    fn answer(server: &str, cnames: &[&str], ips: &[&str], ms: u64) -> DnsAnswer {
        DnsAnswer {
            server: server.into(),
            outcome: DnsOutcome::Resolved,
            cnames: cnames.iter().map(|s| s.to_string()).collect(),
            addresses: ips
                .iter()
                .map(|s| Address::new(s.parse().unwrap()))
                .collect(),
            answered_by: None,
            error: None,
            ms,
        }
    }

    fn tcp(addr: &str, outcome: TcpOutcome, ms: u64) -> TcpEvidence {
        TcpEvidence {
            address: addr.parse().unwrap(),
            outcome,
            error: match outcome {
                TcpOutcome::Connected => None,
                _ => Some(format!("dial tcp {addr}: i/o timeout")),
            },
            ms,
        }
    }

    fn step(outcome: PullOutcome, status: Option<u16>) -> PullStep {
        PullStep {
            outcome,
            host: None,
            path: None,
            status,
            registry_error: None,
            error: None,
            ms: 40,
        }
    }

    fn finding(reason: Reason, severity: Severity, endpoint: &str, message: &str) -> Finding {
        Finding {
            reason,
            cause: Cause::PublicNetworkAccessRules,
            severity,
            code: Some("CONNECTIVITY_FORBIDDEN_ERROR".into()),
            endpoint: endpoint.into(),
            role: Some(Role::LoginServer),
            message: message.into(),
            remediation: "Add the client's egress IP to the registry's firewall rules, or reach the registry through its private endpoint. ".repeat(3),
            docs: vec![
                "https://learn.microsoft.com/azure/container-registry/container-registry-access-selected-networks".into(),
                "https://learn.microsoft.com/azure/container-registry/container-registry-health-error-reference".into(),
            ],
        }
    }

    /// A realistic report: login server denied by network rules (2 addresses, 2 CNAMEs),
    /// one data endpoint fine and one timing out, the pull stopped at the token.
    fn realistic() -> Report {
        let login = EndpointEvidence {
            host: "contosoregistry.azurecr.io".into(),
            port: 443,
            role: Role::LoginServer,
            dns: DnsEvidence {
                kubelet: None,
                system: DnsAnswer {
                    answered_by: Some("10.0.0.10:53".into()),
                    ..answer(
                        "system",
                        &[
                            "contosoregistry.privatelink.azurecr.io",
                            "westeurope.fe.azcr.io",
                        ],
                        &["20.61.99.200", "20.61.99.201"],
                        12,
                    )
                },
                servers: vec![answer(
                    "168.63.129.16:53",
                    &["contosoregistry.privatelink.azurecr.io"],
                    &["10.1.0.5"],
                    8,
                )],
            },
            route: Route::direct(),
            proxy: None,
            tcp: vec![tcp("20.61.99.200:443", TcpOutcome::Connected, 21)],
            tls: Some(TlsEvidence {
                peer: None,
                small_mss_retry: None,
                outcome: TlsOutcome::Verified,
                subject: Some("CN=*.azurecr.io".into()),
                issuer: Some("CN=Microsoft Azure RSA TLS Issuing CA 03, O=Microsoft Corporation".into()),
                error: None,
                ms: 35,
            }),
            http: Some(HttpEvidence {
                outcome: HttpOutcome::Response,
                status: Some(403),
                challenge: None,
                challenge_malformed: false,
                distribution_api: true,
                registry_error: Some(RegistryError {
                    code: "DENIED".into(),
                    message: "client with IP '203.0.113.7' is not allowed access. Refer https://aka.ms/acr/firewall to grant access. CorrelationId: 0f3c6b7e-1234-4abc-9def-1234567890ab".into(),
                }),
                client_ip: Some("203.0.113.7".into()),
                content_type: None,
                error: None,
                ms: 48,
            }),
            deadline_exceeded: false,
        };
        let data = |region: &str, ok: bool| EndpointEvidence {
            host: format!("contosoregistry.{region}.data.azurecr.io"),
            port: 443,
            role: Role::DataEndpoint,
            dns: DnsEvidence {
                kubelet: None,
                system: answer(
                    "system",
                    &[&format!(
                        "contosoregistry.{region}.data.privatelink.azurecr.io"
                    )],
                    &["10.1.0.6"],
                    9,
                ),
                servers: vec![],
            },
            route: Route::direct(),
            proxy: None,
            tcp: vec![tcp(
                "10.1.0.6:443",
                if ok {
                    TcpOutcome::Connected
                } else {
                    TcpOutcome::Timeout
                },
                if ok { 3 } else { 5000 },
            )],
            tls: ok.then(|| TlsEvidence {
                peer: None,
                small_mss_retry: None,
                outcome: TlsOutcome::Verified,
                subject: Some("CN=*.westeurope.data.azurecr.io".into()),
                issuer: Some("CN=Microsoft Azure RSA TLS Issuing CA 07".into()),
                error: None,
                ms: 30,
            }),
            http: None,
            deadline_exceeded: false,
        };
        let mut token = step(PullOutcome::Forbidden, Some(403));
        token.registry_error = Some(RegistryError {
            code: "DENIED".into(),
            message: "client with IP '203.0.113.7' is not allowed access.".into(),
        });
        Report {
            schema_version: SCHEMA_VERSION,
            verdict: Verdict::Unreachable,
            findings: vec![
                finding(
                    Reason::RegistryDeniedClientIP,
                    Severity::Error,
                    "contosoregistry.azurecr.io",
                    &format!(
                        "contosoregistry.azurecr.io answered 403 DENIED: client IP 203.0.113.7 is not allowed by the registry's network rules. {}",
                        "x".repeat(300)
                    ),
                ),
                finding(
                    Reason::PrivateEndpointResolvesPublic,
                    Severity::Error,
                    "contosoregistry.azurecr.io",
                    "contosoregistry.azurecr.io resolves through contosoregistry.privatelink.azurecr.io to public 20.61.99.200 on the system resolver, but 168.63.129.16 answers 10.1.0.5",
                ),
                finding(
                    Reason::DataEndpointBlocked,
                    Severity::Warning,
                    "contosoregistry.eastus.data.azurecr.io",
                    "TCP to 10.1.0.6:443 timed out after 5000 ms",
                ),
            ],
            context: None,
            node: None,
            evidence: Evidence {
                ip_family: None,
                registry: "contosoregistry.azurecr.io".into(),
                expect: Expect::Private,
                egress_ips: Vec::new(),
                endpoints: vec![login, data("westeurope", true), data("eastus", false)],
                pull: Some(PullEvidence {
                    image: "team/app:v1.2.3".into(),
                    credentials: true,
                    token,
                    manifest: step(PullOutcome::Skipped, None),
                    blob: step(PullOutcome::Skipped, None),
                    blob_digest: None,
                    blob_size: None,
                    redirects: vec![],
                    failed_host: None,
                }),
                containerd: None,
                proxy_source: None,
                resolvers: None,
                egress: None,
                ms: 5120,
            },
        }
    }

    #[test]
    fn compact_report_fits_termination_message_and_round_trips() {
        let report = realistic();
        let json = to_compact_json(&report);
        assert!(json.len() < 4096, "compact report is {} bytes", json.len());
        assert!(to_json(&report, false).len() > json.len());
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, compact(&report));
        for f in &back.findings {
            assert!(f.remediation.is_empty() && f.docs.is_empty());
            assert!(f.message.chars().count() <= COMPACT_MESSAGE_CHARS);
        }
        assert!(back.findings[0].message.ends_with('…'));
        // Untouched parts survive as they were.
        assert_eq!(back.evidence.endpoints, report.evidence.endpoints);
        assert_eq!(back.findings[1].message, report.findings[1].message);
    }

    #[test]
    fn full_json_round_trips() {
        let report = realistic();
        for pretty in [false, true] {
            let back: Report = serde_json::from_str(&to_json(&report, pretty)).unwrap();
            assert_eq!(back, report);
        }
        assert!(to_json(&report, true).contains("\n  \"schemaVersion\": 1"));
    }

    #[test]
    fn details_wrap_and_cut() {
        assert_eq!(wrap_detail(""), Vec::<String>::new());
        assert_eq!(wrap_detail("a; b"), vec!["a; b"]);
        let long = vec!["x".repeat(60); 8].join("; ");
        let lines = wrap_detail(&long);
        assert_eq!(lines.len(), DETAIL_LINES);
        assert!(lines.iter().all(|l| l.chars().count() <= DETAIL_CHARS));
        assert!(lines[2].ends_with('…'));
        let one = wrap_detail(&"y".repeat(500));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].chars().count(), DETAIL_CHARS);
    }

    #[test]
    fn compact_cuts_long_evidence_errors() {
        let mut report = realistic();
        report.evidence.endpoints[2].tcp[0].error = Some("e".repeat(1000));
        let c = compact(&report);
        let err = c.evidence.endpoints[2].tcp[0].error.as_ref().unwrap();
        assert_eq!(err.chars().count(), COMPACT_ERROR_CHARS);
    }

    #[test]
    fn table_shows_families_and_the_small_mss_retry() {
        let mut report = realistic();
        let e = &mut report.evidence.endpoints[0];
        e.dns.system.addresses = vec![crate::engine::evidence::Address::new(
            "2001:db8::5".parse().unwrap(),
        )];
        e.tcp = vec![tcp("[2001:db8::5]:443", TcpOutcome::Connected, 3)];
        let t = e.tls.as_mut().unwrap();
        t.outcome = TlsOutcome::Timeout;
        t.peer = Some("[2001:db8::5]:443".parse().unwrap());
        t.small_mss_retry = Some(crate::engine::evidence::MssRetry {
            mss: 536,
            completed: true,
            tls: Some(TlsOutcome::Verified),
            error: None,
            ms: 14,
        });
        let table = render_table(&report, false);
        for needle in [
            "2001:db8::5 (AAAA, public)",
            "IPv6 [2001:db8::5]:443",
            "over IPv6 [2001:db8::5]:443",
            "SmallMSSCompleted",
            "retry on a new connection announcing MSS 536; Verified",
        ] {
            assert!(table.contains(needle), "{needle} missing:\n{table}");
        }
        // The retry survives the JSON round trip.
        let back: Report = serde_json::from_str(&to_json(&report, false)).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn egress_hosts_in_table_and_compact_report() {
        use crate::engine::evidence::{
            EgressEvidence, EgressHost, EgressNotProbed, EgressRule, HttpEvidence,
        };
        let mut ev = realistic().evidence;
        let base = ev.endpoints[0].clone();
        let rule = |fqdn: &str| EgressRule {
            source: "AKS".into(),
            fqdn: fqdn.into(),
            role: "Azure Resource Manager".into(),
            required: true,
            docs: Some(
                "https://learn.microsoft.com/azure/aks/outbound-rules-control-egress".into(),
            ),
            note: None,
        };
        let mut ok = base.clone();
        ok.host = "management.azure.com".into();
        ok.role = Role::Egress;
        ok.proxy = None;
        ok.route = crate::engine::evidence::Route::direct();
        ok.tcp = vec![tcp("20.1.2.40:443", TcpOutcome::Connected, 3)];
        ok.tls = Some(crate::engine::evidence::TlsEvidence {
            outcome: TlsOutcome::Verified,
            subject: None,
            issuer: None,
            error: None,
            ms: 4,
            peer: None,
            small_mss_retry: None,
        });
        ok.dns.servers.clear();
        ok.dns.system.cnames.clear();
        ok.http = Some(HttpEvidence {
            outcome: HttpOutcome::Response,
            status: Some(400),
            challenge: None,
            challenge_malformed: false,
            distribution_api: false,
            registry_error: None,
            client_ip: None,
            content_type: Some("application/json; charset=utf-8".into()),
            error: None,
            ms: 5,
        });
        let mut reset = ok.clone();
        reset.host = "packages.aks.azure.com".into();
        reset.tls.as_mut().unwrap().outcome = TlsOutcome::ResetAfterClientHello;
        reset.http = None;
        ev.egress = Some(EgressEvidence {
            data_version: "2026-12-04.1".into(),
            profiles: vec!["AKS".into()],
            hosts: vec![
                EgressHost {
                    host: ok.host.clone(),
                    port: 443,
                    rule: rule("management.azure.com"),
                    endpoint: Some(ok),
                },
                EgressHost {
                    host: reset.host.clone(),
                    port: 443,
                    rule: rule("packages.aks.azure.com"),
                    endpoint: Some(reset),
                },
            ],
            not_probed: vec![EgressNotProbed {
                rule: rule("*.hcp.<location>.azmk8s.io"),
                port: 443,
                why: "needs apiServer=<the cluster's API server FQDN>".into(),
            }],
        });
        let report = crate::engine::diagnosis::report(ev);
        let t = render_table(&report, false);
        for needle in [
            "Egress hosts (profiles AKS, profile data 2026-12-04.1):",
            "management.azure.com  reachable (HTTP 400)  [AKS, required] Azure Resource Manager",
            "packages.aks.azure.com  blocked at TLS (reset after the ClientHello: an FQDN/SNI firewall)  [AKS, required]",
            "*.hcp.<location>.azmk8s.io  not probed  [AKS]: needs apiServer=",
        ] {
            assert!(t.contains(needle), "{needle} missing:\n{t}");
        }
        // The egress host's HTTP 400 is fine in the timing table too.
        assert!(t.contains("egress"), "{t}");
        // Compact: the healthy host loses its evidence, the blocked one keeps it; the rule's
        // texts go (the finding carries them); it still round-trips.
        let c = compact(&report);
        let eg = c.evidence.egress.as_ref().unwrap();
        assert!(eg.hosts[0].endpoint.is_none());
        assert!(eg.hosts[1].endpoint.is_some());
        assert!(
            eg.hosts
                .iter()
                .all(|h| h.rule.docs.is_none() && h.rule.role.is_empty())
        );
        let json = to_compact_json(&report);
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        // Beside this already large report it needs the probe's shrinking stages to fit a
        // termination message; they keep the blocked host (cli::probe's tests).
        let fitted = crate::cli::probe::fit_termination_message(&report);
        assert!(fitted.len() <= 4096);
        let fitted: Report = serde_json::from_str(&fitted).unwrap();
        assert!(
            fitted.findings.iter().any(|f| f.reason
                == crate::engine::findings::Reason::EgressHostBlocked
                && f.endpoint == "packages.aks.azure.com"),
            "{fitted:?}"
        );
    }

    #[test]
    fn table_plain() {
        let report = realistic();
        let t = render_table(&report, false);
        assert!(!t.contains('\x1b'), "{t}");
        for e in &report.evidence.endpoints {
            assert!(t.contains(&e.host), "{} missing:\n{t}", e.host);
        }
        assert!(t.starts_with("Registry contosoregistry.azurecr.io: Unreachable"));
        let header = t.lines().find(|l| l.starts_with("ENDPOINT")).unwrap();
        for col in ["ROLE", "PHASE", "RESULT", "TIME ms", "DETAIL"] {
            assert!(header.contains(col), "{header}");
        }
        // Details: addresses, CNAME chain, issuer, status, client IP.
        for needle in [
            "20.61.99.200 (A, public), 20.61.99.201 (A, public)",
            "IPv4 20.61.99.200:443",
            "cname contosoregistry.privatelink.azurecr.io -> westeurope.fe.azcr.io",
            "issuer CN=Microsoft Azure RSA TLS Issuing CA 07",
            "HTTP 403",
            "client IP 203.0.113.7",
            "@168.63.129.16:53",
            "Timeout",
        ] {
            assert!(t.contains(needle), "{needle} missing:\n{t}");
        }
        // Columns line up: RESULT starts at the same offset in every table row.
        let col = header.find("RESULT").unwrap();
        let table: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.starts_with("ENDPOINT"))
            .take_while(|l| !l.is_empty())
            .collect();
        assert!(table.len() > 10);
        for l in &table[1..] {
            let prefix: String = l.chars().take(col).collect();
            assert!(prefix.ends_with("  "), "misaligned: {l}");
        }
        // Long details are wrapped onto continuation lines and cut.
        assert!(table.iter().all(|l| l.chars().count() < 200));
        let cont = table
            .iter()
            .find(|l| {
                l.trim_start()
                    .starts_with("cname contosoregistry.privatelink.azurecr.io -> westeurope")
            })
            .expect("CNAME chain on a continuation line");
        assert_eq!(cont.find('c'), header.find("DETAIL"));
        // Diagnosis: primary in full, others one line each.
        let diag = &t[t.find("Diagnosis: RegistryDeniedClientIP (Error)").unwrap()..];
        assert!(diag.contains("cause:       PublicNetworkAccessRules"));
        assert!(diag.contains("code:        CONNECTIVITY_FORBIDDEN_ERROR"));
        assert!(diag.contains("remediation: Add the client's egress IP"));
        assert!(diag.contains("docs:        https://learn.microsoft.com/azure/container-registry/container-registry-access-selected-networks"));
        assert!(diag.contains(
            "Also found:\n  - Error PrivateEndpointResolvesPublic on contosoregistry.azurecr.io"
        ));
        assert!(
            diag.contains(
                "  - Warning DataEndpointBlocked on contosoregistry.eastus.data.azurecr.io"
            )
        );
    }

    #[test]
    fn table_colours_only_when_asked() {
        let report = realistic();
        let t = render_table(&report, true);
        assert!(t.contains("\x1b[31mUnreachable\x1b[0m"));
        assert!(t.contains("\x1b[32mVerified"));
        assert!(t.contains("\x1b[31mTimeout"));
        assert!(t.contains("\x1b[33mWarning\x1b[0m"));
        // Colour codes do not shift the columns: stripped, it equals the plain table.
        let stripped = t
            .replace("\x1b[31m", "")
            .replace("\x1b[32m", "")
            .replace("\x1b[33m", "")
            .replace("\x1b[0m", "");
        assert_eq!(stripped, render_table(&report, false));
    }

    #[test]
    fn table_escapes_network_strings_and_handles_empty() {
        let mut report = realistic();
        report.evidence.endpoints[0].tls.as_mut().unwrap().issuer = Some("CN=evil\x1b[2J".into());
        report.findings[0].message = "bad\x1b]0;title\x07".into();
        let t = render_table(&report, false);
        assert!(!t.contains('\x1b') && !t.contains('\x07'), "{t:?}");
        assert!(t.contains("CN=evil\\u{1b}[2J"));

        report.findings.clear();
        report.evidence.pull = None;
        report.evidence.endpoints.truncate(1);
        report.evidence.endpoints[0].port = 5000;
        let t = render_table(&report, false);
        assert!(t.contains("contosoregistry.azurecr.io:5000"));
        assert!(t.ends_with("Diagnosis: no findings\n"));
    }

    #[test]
    fn table_shows_proxy_and_pull_paths() {
        let mut report = realistic();
        let e = &mut report.evidence.endpoints[0];
        e.route = Route {
            proxy: Some("http://***@proxy.corp:3128".into()),
            no_proxy_match: None,
            cidr_not_applied: vec!["10.0.0.0/8".into()],
        };
        e.proxy = Some(ProxyEvidence {
            url: "http://***@proxy.corp:3128".into(),
            outcome: ProxyOutcome::Denied,
            status: Some(403),
            error: None,
            ms: 7,
        });
        report.evidence.endpoints[1].route = Route {
            no_proxy_match: Some(".azurecr.io".into()),
            ..Route::direct()
        };
        let p = report.evidence.pull.as_mut().unwrap();
        p.token = step(PullOutcome::Ok, Some(200));
        p.manifest = step(PullOutcome::Ok, Some(200));
        p.blob = PullStep {
            host: Some("contosoregistry.eastus.data.azurecr.io".into()),
            ..step(PullOutcome::Unreachable, None)
        };
        p.redirects = vec!["contosoregistry.eastus.data.azurecr.io".into()];
        let t = render_table(&report, false);
        for needle in [
            "Denied",
            "via http://***@proxy.corp:3128; HTTP 403; NO_PROXY 10.0.0.0/8 not applied to a name",
            "Bypassed",
            "direct: NO_PROXY entry '.azurecr.io'",
            "token; HTTP 200; image team/app:v1.2.3",
            "Unreachable",
            "redirected to contosoregistry.eastus.data.azurecr.io",
        ] {
            assert!(t.contains(needle), "{needle} missing:\n{t}");
        }
    }

    proptest::proptest! {
        #[test]
        fn network_strings_never_break_output(text in "\\PC{0,300}|[\\x00-\\x1f\\x7f-\\u{9f}a-z ;]{0,300}") {
            let mut report = realistic();
            report.evidence.endpoints[0].tls.as_mut().unwrap().issuer = Some(text.clone());
            report.evidence.endpoints[2].tcp[0].error = Some(text.clone());
            report.findings[2].message = text.clone();
            report.findings[0].endpoint = text.clone();
            let t = render_table(&report, false);
            proptest::prop_assert!(!t.chars().any(|c| c.is_control() && c != '\n'));
            let json = to_compact_json(&report);
            let back: Report = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(back, compact(&report));
        }
    }
}
