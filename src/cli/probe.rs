//! `regcheck probe`: the in-cluster probe that probe Jobs run (arguments from
//! [`crate::operator::jobs::probe_args`]).
//!
//! It is the engine of `regcheck check` with three differences: the strict in-cluster target
//! policy (no loopback, link-local/metadata, Azure platform address except DNS, nor the node's
//! own addresses from `--node-ip` / `REGCHECK_NODE_IPS`), the report records the context and
//! node, and the result is the compact JSON report shrunk to fit a container termination
//! message ([`fit_termination_message`]), written to `--termination-log` and to stdout.
//!
//! Credentials come only from a mounted docker config file (`--docker-config`); the probe has no
//! Kubernetes API access at all.

use crate::cli::{TargetArgs, exit};
use crate::engine::check::{self, CheckInput, PreparedCheck};
use crate::engine::evidence::{DnsAnswer, EndpointEvidence, PullStep, Role, TcpOutcome};
use crate::engine::findings::Report;
use crate::engine::inputs::InputError;
use crate::engine::probe::TargetPolicy;
use crate::engine::report;
use crate::engine::text;
use crate::operator::aggregate::MAX_TERMINATION_MESSAGE;
use crate::operator::crd::ProbeContext;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use crate::operator::jobs::NODE_IPS_ENV;

/// Where kubelet reads the termination message from by default.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";
/// Longest node name (a DNS subdomain).
const MAX_NODE_NAME: usize = 253;
/// Most node addresses accepted (flags and environment together).
const MAX_NODE_IPS: usize = 16;

/// Arguments of `regcheck probe`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "probe",
    about = "Probe a registry from inside the cluster and write the compact report to the termination log"
)]
pub struct ProbeArgs {
    /// Login server, e.g. myregistry.azurecr.io or registry.example.com:5000
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: String,
    /// Network context this probe runs in: node (host network) or pod
    #[arg(long, value_name = "node|pod", value_parser = parse_context)]
    pub context: ProbeContext,
    /// Name of the node the probe runs on (recorded in the report)
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Mounted docker config.json with credentials for --image
    #[arg(long, value_name = "PATH")]
    pub docker_config: Option<PathBuf>,
    /// NO_PROXY list (comma-separated) for the proxy; with --proxy it is the only bypass list
    #[arg(long, value_name = "LIST", conflicts_with = "no_proxy")]
    pub proxy_bypass: Option<String>,
    /// File the compact report is written to (kubelet's terminationMessagePath)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_TERMINATION_LOG)]
    pub termination_log: PathBuf,
    /// One of the node's own addresses, never dialled (repeatable; also env REGCHECK_NODE_IPS,
    /// a comma list)
    #[arg(long = "node-ip", value_name = "IP")]
    pub node_ips: Vec<String>,
    /// containerd's registry config_path as mounted from the host (read-only): probe every
    /// mirror of its hosts.toml in containerd's order; a missing or empty directory means no
    /// hosts.toml (containerd's defaults)
    #[arg(long, value_name = "DIR")]
    pub containerd_config_dir: Option<PathBuf>,
    /// containerd's systemd drop-in directory (or unit file) as mounted from the host: the
    /// proxy its Environment= lines set, when they set one, wins over --proxy and the
    /// environment (repeatable; a missing path is no drop-in)
    #[arg(long, value_name = "DIR|FILE")]
    pub runtime_proxy_from: Vec<PathBuf>,
    /// Where the host's files are mounted (e.g. /host): absolute paths in hosts.toml are
    /// read under it
    #[arg(long, value_name = "DIR")]
    pub host_root: Option<PathBuf>,
}

fn parse_context(s: &str) -> Result<ProbeContext, String> {
    match s {
        "node" => Ok(ProbeContext::Node),
        "pod" => Ok(ProbeContext::Pod),
        _ => Err(format!("'{s}' is not one of node, pod")),
    }
}

/// A validated probe, ready to run.
pub struct PreparedProbe {
    pub check: PreparedCheck,
    pub context: ProbeContext,
    pub node: Option<String>,
}

/// A Kubernetes node name: a DNS subdomain (lowercase alphanumerics, `-` and `.`).
fn validate_node(node: &str) -> Result<(), InputError> {
    let ok = node.len() <= MAX_NODE_NAME && crate::operator::names::is_dns_subdomain(node);
    if ok {
        Ok(())
    } else {
        Err(InputError::new(
            "--node",
            node,
            "is not a node name (lowercase letters, digits, '-' and '.', at most 253 characters)",
        ))
    }
}

/// A node probe's address family without `--ip-family`, from the node's own addresses (the
/// controller passes the Node's InternalIP/ExternalIP of both families): an IPv6-only or
/// dual-stack node declares it, so that a registry without AAAA or a broken IPv6 path is
/// named. A node listing IPv4 addresses only stays undeclared (every address is dialled, as
/// before): its address list does not prove the host has no IPv6.
fn node_family(ips: &[IpAddr]) -> Option<crate::engine::evidence::IpFamily> {
    use crate::engine::evidence::IpFamily;
    IpFamily::of_addresses(ips).filter(|f| *f != IpFamily::Ipv4)
}

/// The node's own addresses: every `--node-ip` and every entry of `REGCHECK_NODE_IPS`.
fn node_ips(
    args: &ProbeArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<IpAddr>, InputError> {
    let from_env = env(NODE_IPS_ENV).unwrap_or_default();
    let given = args.node_ips.iter().map(|v| ("--node-ip", v.trim())).chain(
        from_env
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| (NODE_IPS_ENV, v)),
    );
    let mut ips = Vec::new();
    for (field, v) in given {
        let ip: IpAddr = v
            .parse()
            .map_err(|_| InputError::new(field, v, "is not an IP address"))?;
        if !ips.contains(&ip) {
            ips.push(ip);
        }
        if ips.len() > MAX_NODE_IPS {
            return Err(InputError::new(
                field,
                v,
                format!("more than {MAX_NODE_IPS} node addresses"),
            ));
        }
    }
    Ok(ips)
}

/// Validates the arguments and reads the pod's configuration files; sends nothing.
///
/// `env` is the process environment (`HTTPS_PROXY`, `NO_PROXY`, `REGCHECK_NODE_IPS`). With
/// `--proxy`, the bypass list is `--proxy-bypass` alone (the environment's `NO_PROXY` does not
/// apply to an explicit proxy); without it, `--proxy-bypass` replaces the environment's
/// `NO_PROXY`.
pub fn prepare(
    args: &ProbeArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PreparedProbe, InputError> {
    if let Some(node) = &args.node {
        validate_node(node)?;
    }
    let node_ips = node_ips(args, &env)?;
    let containerd_config_dir = match &args.containerd_config_dir {
        // The host has no such directory (the mount is then an empty directory, or absent):
        // containerd uses its defaults, which is what no --containerd-config-dir probes.
        Some(d) if d.is_dir() => Some(d.clone()),
        Some(d) if !d.exists() => None,
        Some(d) => {
            return Err(InputError::new(
                "--containerd-config-dir",
                &d.display().to_string(),
                "is not a directory",
            ));
        }
        None => None,
    };
    if let Some(root) = &args.host_root
        && !root.is_absolute()
    {
        return Err(InputError::new(
            "--host-root",
            &root.display().to_string(),
            "must be an absolute path",
        ));
    }
    let input = CheckInput {
        docker_config: args.docker_config.clone(),
        strict_targets: true,
        containerd_config_dir,
        runtime_proxy_from: args.runtime_proxy_from.clone(),
        runtime_proxy_fallback: true,
        host_root: args.host_root.clone(),
        ..args.target.check_input(args.registry.clone())
    };
    let replace_no_proxy = args.target.proxy.is_some() || args.proxy_bypass.is_some();
    let bypass = args.proxy_bypass.clone();
    let proxy_env = |k: &str| match k {
        "NO_PROXY" if replace_no_proxy => bypass.clone(),
        "no_proxy" if replace_no_proxy => None,
        _ => env(k),
    };
    // NO_PROXY is parsed like Go does (malformed entries ignored), so it never fails here.
    let mut check = check::prepare(&input, proxy_env)?;
    if check.config.ip_family.is_none() && args.context == ProbeContext::Node {
        check.config.ip_family = node_family(&node_ips);
    }
    check.config.policy = TargetPolicy::in_cluster(node_ips);
    Ok(PreparedProbe {
        check,
        context: args.context,
        node: args.node.clone(),
    })
}

/// Runs a prepared probe; the report records context and node.
pub async fn run(probe: &PreparedProbe) -> Report {
    let mut report = check::run(&probe.check).await;
    report.context = Some(probe.context);
    report.node = probe.node.clone();
    report
}

// ---------------------------------------------------------------------------------------------
// Fitting the report into a termination message
// ---------------------------------------------------------------------------------------------

/// CNAMEs kept per answer once the report has to shrink.
const FIT_CNAMES: usize = 3;
/// Addresses kept per answer once the report has to shrink.
const FIT_ADDRESSES: usize = 4;
/// Secondary findings kept once the report has to shrink.
const FIT_SECONDARY: usize = 4;
/// Length of free-text evidence (registry error messages, certificate names) once shrinking.
const FIT_TEXT_CHARS: usize = 80;
/// Length of every string in the last-resort form.
const LAST_RESORT_CHARS: usize = 64;

fn every_endpoint(r: &mut Report, f: &mut impl FnMut(&mut EndpointEvidence)) {
    r.evidence.endpoints.iter_mut().for_each(&mut *f);
    if let Some(h) = r
        .evidence
        .pull
        .as_mut()
        .and_then(|p| p.failed_host.as_deref_mut())
    {
        f(h);
    }
    if let Some(eg) = r.evidence.egress.as_mut() {
        eg.hosts
            .iter_mut()
            .filter_map(|h| h.endpoint.as_mut())
            .for_each(&mut *f);
    }
}

fn every_answer(r: &mut Report, f: &mut impl FnMut(&mut DnsAnswer)) {
    every_endpoint(r, &mut |e| {
        f(&mut e.dns.system);
        e.dns.servers.iter_mut().for_each(&mut *f);
        if let Some(k) = &mut e.dns.kubelet {
            f(k);
        }
    });
}

/// Stage 1: per-server DNS answers (the system resolver's answer stays).
fn drop_server_answers(r: &mut Report) {
    every_endpoint(r, &mut |e| e.dns.servers.clear());
}

/// Stage 2: long CNAME chains, address lists and redirect lists.
fn trim_lists(r: &mut Report) {
    every_answer(r, &mut |a| {
        a.cnames.truncate(FIT_CNAMES);
        a.addresses.truncate(FIT_ADDRESSES);
    });
    every_endpoint(r, &mut |e| e.route.cidr_not_applied.truncate(FIT_CNAMES));
    if let Some(p) = &mut r.evidence.pull {
        p.redirects.truncate(FIT_CNAMES);
    }
}

/// Stage 3: TCP attempts beyond the first that connected and the first that failed (the
/// first attempt is always one of them, so the phase timing stays).
fn trim_tcp(r: &mut Report) {
    every_endpoint(r, &mut |e| {
        let ok = e
            .tcp
            .iter()
            .position(|t| t.outcome == TcpOutcome::Connected);
        let bad = e
            .tcp
            .iter()
            .position(|t| t.outcome != TcpOutcome::Connected);
        let mut i = 0;
        e.tcp.retain(|_| {
            let keep = Some(i) == ok || Some(i) == bad;
            i += 1;
            keep
        });
    });
}

fn strip_step(s: &mut PullStep) {
    s.error = None;
    if let Some(e) = &mut s.registry_error {
        text::clip_in_place(&mut e.message, FIT_TEXT_CHARS);
    }
    text::clip_opt(&mut s.host, MAX_NODE_NAME);
}

/// Stage 4: error strings; other free text from the network is cut short.
fn drop_errors(r: &mut Report) {
    every_answer(r, &mut |a| a.error = None);
    every_endpoint(r, &mut |e| {
        if let Some(p) = &mut e.proxy {
            p.error = None;
            text::clip_in_place(&mut p.url, FIT_TEXT_CHARS);
        }
        text::clip_opt(&mut e.route.proxy, FIT_TEXT_CHARS);
        text::clip_opt(&mut e.route.no_proxy_match, FIT_TEXT_CHARS);
        e.tcp.iter_mut().for_each(|t| t.error = None);
        if let Some(t) = &mut e.tls {
            t.error = None;
            text::clip_opt(&mut t.subject, FIT_TEXT_CHARS);
            text::clip_opt(&mut t.issuer, FIT_TEXT_CHARS);
        }
        if let Some(h) = &mut e.http {
            h.error = None;
            if let Some(re) = &mut h.registry_error {
                text::clip_in_place(&mut re.code, FIT_TEXT_CHARS);
                text::clip_in_place(&mut re.message, FIT_TEXT_CHARS);
            }
            if let Some(c) = &mut h.challenge {
                text::clip_in_place(&mut c.scheme, FIT_TEXT_CHARS);
                text::clip_opt(&mut c.realm, FIT_TEXT_CHARS);
                text::clip_opt(&mut c.service, FIT_TEXT_CHARS);
            }
            text::clip_opt(&mut h.client_ip, FIT_TEXT_CHARS);
            text::clip_opt(&mut h.content_type, FIT_TEXT_CHARS);
        }
    });
    if let Some(p) = &mut r.evidence.pull {
        strip_step(&mut p.token);
        strip_step(&mut p.manifest);
        strip_step(&mut p.blob);
        text::clip_in_place(&mut p.image, FIT_TEXT_CHARS);
        text::clip_opt(&mut p.blob_digest, FIT_TEXT_CHARS);
    }
}

/// Stage 5: secondary findings beyond a few, with shorter messages.
fn trim_findings(r: &mut Report) {
    r.findings.truncate(1 + FIT_SECONDARY);
    for f in r.findings.iter_mut().skip(1) {
        text::clip_in_place(&mut f.message, FIT_TEXT_CHARS);
    }
}

/// Whether an endpoint's evidence is kept when only `hosts` matter: the login server always
/// (its timings feed the status), the others when a kept finding names them.
fn keep_endpoint(e: &EndpointEvidence, hosts: &[String]) -> bool {
    e.role == Role::LoginServer || hosts.contains(&e.host)
}

/// Stage 6: evidence of endpoints no kept finding is about.
fn drop_unreferenced_endpoints(r: &mut Report) {
    let hosts: Vec<String> = r.findings.iter().map(|f| f.endpoint.clone()).collect();
    r.evidence.endpoints.retain(|e| keep_endpoint(e, &hosts));
    if let Some(p) = &mut r.evidence.pull
        && p.failed_host
            .as_ref()
            .is_some_and(|h| !hosts.contains(&h.host))
    {
        p.failed_host = None;
    }
    // Egress hosts: those a kept finding names (the others worked, or their finding was cut).
    if let Some(eg) = &mut r.evidence.egress {
        eg.hosts.retain(|h| {
            // As the diagnosis names endpoints: `host`, or `host:port` off 443.
            let name = if h.port == 443 {
                h.host.clone()
            } else {
                format!("{}:{}", h.host, h.port)
            };
            hosts.contains(&name)
        });
        eg.not_probed.clear();
    }
}

/// Stage 7: only the primary finding, the login server's and the primary endpoint's evidence.
fn primary_only(r: &mut Report) {
    r.findings.truncate(1);
    drop_unreferenced_endpoints(r);
    if let Some(p) = &mut r.evidence.pull {
        p.failed_host = None;
        p.redirects.clear();
        p.blob_digest = None;
    }
}

/// Stage 8: no evidence at all; the primary finding carries the diagnosis.
fn drop_evidence(r: &mut Report) {
    r.evidence.endpoints.clear();
    r.evidence.pull = None;
    r.evidence.egress_ips.clear();
    r.evidence.containerd = None;
    r.evidence.resolvers = None;
    r.evidence.egress = None;
}

/// Stage 9 (cannot fail): every string of what is left cut to a few dozen characters.
fn last_resort(r: &mut Report) {
    r.findings.truncate(1);
    drop_evidence(r);
    for f in &mut r.findings {
        text::clip_in_place(&mut f.message, LAST_RESORT_CHARS);
        text::clip_in_place(&mut f.endpoint, LAST_RESORT_CHARS);
        text::clip_opt(&mut f.code, LAST_RESORT_CHARS);
        f.remediation.clear();
        f.docs.clear();
    }
    text::clip_in_place(&mut r.evidence.registry, LAST_RESORT_CHARS);
    text::clip_opt(&mut r.evidence.proxy_source, LAST_RESORT_CHARS);
    text::clip_opt(&mut r.node, LAST_RESORT_CHARS);
}

/// The shrinking stages, mildest first; each applies on top of the ones before.
const STAGES: &[fn(&mut Report)] = &[
    drop_server_answers,
    trim_lists,
    trim_tcp,
    drop_errors,
    trim_findings,
    drop_unreferenced_endpoints,
    primary_only,
    drop_evidence,
    last_resort,
];

/// The compact JSON report ([`report::to_compact_json`]) if it fits into a termination message
/// ([`MAX_TERMINATION_MESSAGE`] bytes); otherwise detail is dropped stage by stage until it
/// does: per-server DNS answers, long CNAME/address lists, TCP attempts beyond the first
/// success and first failure, error strings, secondary findings beyond a few, evidence of
/// endpoints no finding names, then all evidence. `schemaVersion`, the verdict and the primary
/// finding (reason, cause, endpoint, message, cut) are always kept, and the result always
/// parses with [`crate::operator::aggregate::parse_termination_message`] (reports without findings aside,
/// which the diagnosis never produces).
pub fn fit_termination_message(report: &Report) -> String {
    let json = fit_message(report, MAX_TERMINATION_MESSAGE);
    // After `last_resort` only one finding and a handful of strings of at most 64 characters
    // (6 bytes each once escaped) are left, far below the limit.
    debug_assert!(json.len() <= MAX_TERMINATION_MESSAGE, "{json}");
    json
}

/// The compact JSON report, detail dropped stage by stage until it has at most `max` bytes
/// (or every stage ran).
pub fn fit_message(report: &Report, max: usize) -> String {
    let mut r = report::compact(report);
    let mut json = report::to_json(&r, false);
    for stage in STAGES {
        if json.len() <= max {
            break;
        }
        stage(&mut r);
        json = report::to_json(&r, false);
    }
    json
}

/// What kubelet keeps of a failed container's logs as its termination message with
/// `FallbackToLogsOnError` (the last 2048 bytes, or 80 lines if fewer).
pub const MAX_LOG_FALLBACK: usize = 2048;

/// Writes the termination message (replacing what the file held).
pub fn write_termination_log(path: &Path, message: &str) -> std::io::Result<()> {
    std::fs::write(path, message)
}

/// The whole `regcheck probe` command for the binary: prepare (bad input → exit 2), run, write
/// the message to the termination log and to stdout. Exit 0 once the report is in the
/// termination log; 3 when it is not (or the runtime failed): an unwritable termination log is
/// reported on stderr and the report printed last on stdout, fitted to what kubelet keeps of
/// the logs ([`MAX_LOG_FALLBACK`]); the non-zero exit makes kubelet take it from there
/// (`FallbackToLogsOnError` applies to failed containers only).
pub fn execute(args: &ProbeArgs) -> i32 {
    let prepared = match prepare(args, |k| std::env::var(k).ok()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("regcheck probe: {e}");
            return exit::BAD_INPUT;
        }
    };
    let runtime = match crate::cli::runtime(Some(2)) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let report = runtime.block_on(run(&prepared));
    let message = fit_termination_message(&report);
    let logged = match write_termination_log(&args.termination_log, &message) {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "regcheck probe: cannot write the termination log {}: {e}",
                args.termination_log.display()
            );
            false
        }
    };
    let message = if logged {
        message
    } else {
        fit_message(&report, MAX_LOG_FALLBACK)
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{message}").and_then(|_| out.flush());
    }
    if logged { exit::OK } else { exit::INTERNAL }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::evidence::*;
    use crate::engine::findings::{Cause, Finding, Reason, SCHEMA_VERSION, Severity, Verdict};
    use crate::operator::aggregate::parse_termination_message;
    use crate::operator::crd::{
        ProxyMode, RegistryConnectivityCheck, RegistryConnectivityCheckSpec,
    };
    use crate::operator::jobs::{DOCKER_CONFIG_DIR, ProbeJob, probe_args};
    use crate::operator::nodes::Target;
    use clap::Parser;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn check(spec: serde_json::Value) -> RegistryConnectivityCheck {
        let spec: RegistryConnectivityCheckSpec = serde_json::from_value(spec).unwrap();
        let mut c = RegistryConnectivityCheck::new("acr", spec);
        c.metadata.namespace = Some("team-a".into());
        c.metadata.uid = Some("3f0c1d2e-0000-4000-8000-000000000001".into());
        c
    }

    fn full_spec() -> serde_json::Value {
        json!({
            "registry": "myreg.azurecr.io",
            "dataEndpoints": ["myreg.westeurope.data.azurecr.io"],
            "regions": ["northeurope"],
            "extraHosts": ["mcr.microsoft.com"],
            "expect": {"networkAccess": "Private"},
            "image": "library/app:v1",
            "credentialsSecretRef": {"name": "pull"},
            "contexts": {"node": {"tolerations": [{"operator": "Exists"}]}},
            "timeoutSeconds": 15
        })
    }

    fn target() -> Target {
        Target {
            node: "aks-sys-1".into(),
            node_pool: Some("sys".into()),
            zone: Some("z1".into()),
        }
    }

    /// The files the probe reads in a pod, in a temp dir: resolv.conf (a loopback nameserver
    /// that is never asked: nothing here runs), no hosts file, a docker config for `myreg`.
    struct PodFiles {
        dir: tempfile::TempDir,
    }

    impl PodFiles {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
            let auth =
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "puller:pa55");
            std::fs::write(
                dir.path().join("config.json"),
                json!({"auths": {"myreg.azurecr.io": {"auth": auth}}}).to_string(),
            )
            .unwrap();
            Self { dir }
        }
        /// Points the pod paths of `a` into the temp dir.
        fn apply(&self, a: &mut ProbeArgs) {
            a.target.resolv_conf = self.dir.path().join("resolv.conf");
            a.target.hosts_file = self.dir.path().join("no-hosts");
            if let Some(p) = &a.docker_config {
                assert_eq!(
                    p,
                    &PathBuf::from(format!("{DOCKER_CONFIG_DIR}/config.json"))
                );
                a.docker_config = Some(self.dir.path().join("config.json"));
            }
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn parse(argv: &[&str]) -> ProbeArgs {
        ProbeArgs::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    /// A node probe declares its family from the node's own addresses (both families: dual;
    /// IPv6 only: ipv6); IPv4 only, a pod probe, or an explicit --ip-family leave it as given.
    #[test]
    fn node_probe_family_comes_from_the_node_addresses() {
        use crate::engine::evidence::IpFamily;
        let files = PodFiles::new();
        let family = |context: &str, extra: &[&str]| {
            let mut v = vec![
                "probe",
                "--registry",
                "myreg.azurecr.io",
                "--context",
                context,
            ];
            v.extend_from_slice(extra);
            let mut a = parse(&v);
            files.apply(&mut a);
            prepare(&a, env_of(&[])).unwrap().check.config.ip_family
        };
        let dual = ["--node-ip", "10.224.0.4", "--node-ip", "fd00:10:224::4"];
        assert_eq!(family("node", &dual), Some(IpFamily::Dual));
        assert_eq!(
            family("node", &["--node-ip", "fd00:10:224::4"]),
            Some(IpFamily::Ipv6)
        );
        assert_eq!(family("node", &["--node-ip", "10.224.0.4"]), None);
        assert_eq!(family("node", &[]), None);
        assert_eq!(family("pod", &dual), None);
        let mut explicit = dual.to_vec();
        explicit.extend(["--ip-family", "ipv4"]);
        assert_eq!(family("node", &explicit), Some(IpFamily::Ipv4));
    }

    /// The host files a node probe Job mounts (`jobs::host_files`): a host without containerd's
    /// directories (missing, or the empty directory a runtime creates for a missing hostPath)
    /// is "no configuration"; drop-ins that set a proxy win over --proxy (the controller's
    /// --node-proxy), drop-ins that set none leave it; the host's resolv.conf is the system
    /// resolver and the pod's is compared with it.
    #[test]
    fn node_host_files_as_the_job_mounts_them() {
        let files = PodFiles::new();
        let host = tempfile::tempdir().unwrap();
        let root = host.path();
        let certs = root.join("etc/containerd/certs.d");
        let dropins = root.join("etc/systemd/system/containerd.service.d");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/resolv.conf"),
            "nameserver 127.0.0.53\nsearch corp.example\n",
        )
        .unwrap();
        let argv = |extra: &[&str]| {
            let mut v = vec![
                "probe".to_string(),
                "--registry".into(),
                "myreg.azurecr.io".into(),
                "--context".into(),
                "node".into(),
                "--containerd-config-dir".into(),
                certs.display().to_string(),
                "--host-root".into(),
                root.display().to_string(),
                "--runtime-proxy-from".into(),
                dropins.display().to_string(),
                "--host-resolv-conf".into(),
                root.join("etc/resolv.conf").display().to_string(),
            ];
            v.extend(extra.iter().map(|s| s.to_string()));
            let mut a = ProbeArgs::try_parse_from(&v).unwrap();
            files.apply(&mut a);
            a
        };
        // Nothing on the host: no containerd config, the proxy from --proxy.
        let p = prepare(&argv(&["--proxy", "http://10.0.0.9:3128"]), env_of(&[])).unwrap();
        assert!(p.check.containerd.is_none());
        assert_eq!(p.check.proxy_source, "--proxy");
        let r = p.check.resolvers.as_ref().unwrap();
        assert!(r.differ);
        assert_eq!(r.host.nameservers, ["127.0.0.53:53"]);
        assert_eq!(r.kubelet.nameservers, ["127.0.0.1:53"]);
        assert_eq!(
            p.check.config.resolv.nameservers[0].to_string(),
            "127.0.0.53:53"
        );
        assert_eq!(
            p.check.config.kubelet_resolv.as_ref().unwrap().nameservers[0].to_string(),
            "127.0.0.1:53"
        );
        // Empty directories (what a runtime makes of a missing hostPath): the same.
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::create_dir_all(&dropins).unwrap();
        let p = prepare(&argv(&[]), env_of(&[])).unwrap();
        let res = p.check.containerd.as_ref().unwrap();
        assert!(res.dir.is_none() && res.hosts.len() == 1 && res.hosts[0].upstream);
        assert!(
            p.check.proxy_source.starts_with("environment"),
            "{}",
            p.check.proxy_source
        );
        // A drop-in without proxy variables leaves --proxy in place.
        std::fs::write(dropins.join("10-exec.conf"), "[Service]\nExecStart=\n").unwrap();
        let p = prepare(&argv(&["--proxy", "http://10.0.0.9:3128"]), env_of(&[])).unwrap();
        assert_eq!(p.check.proxy_source, "--proxy");
        // AKS's http-proxy.conf: its proxy wins, and the report says where it came from.
        std::fs::write(
            dropins.join("http-proxy.conf"),
            "[Service]\nEnvironment=\"HTTPS_PROXY=http://10.0.0.7:3128\" \"NO_PROXY=.svc,10.0.0.0/8\"\n",
        )
        .unwrap();
        // Not a drop-in: systemd reads *.conf only.
        std::fs::write(
            dropins.join("notes.txt"),
            "Environment=HTTPS_PROXY=http://bad:1\n",
        )
        .unwrap();
        let p = prepare(&argv(&["--proxy", "http://10.0.0.9:3128"]), env_of(&[])).unwrap();
        let proxy = p.check.config.proxy.as_ref().unwrap();
        assert_eq!(proxy.https.as_ref().unwrap().host, "10.0.0.7");
        assert!(
            p.check.proxy_source.contains("http-proxy.conf"),
            "{}",
            p.check.proxy_source
        );
        assert!(
            p.check.proxy_source.contains("HTTPS_PROXY"),
            "{}",
            p.check.proxy_source
        );
        assert!(!p.check.proxy_source.contains("notes.txt"));
        // hosts.toml's absolute CA path is the host's: read under --host-root.
        let reg = certs.join("myreg.azurecr.io");
        std::fs::create_dir_all(&reg).unwrap();
        std::fs::write(
            reg.join("hosts.toml"),
            "[host.\"https://mirror.example\"]\ncapabilities = [\"pull\", \"resolve\"]\nca = [\"/etc/containerd/certs.d/myreg.azurecr.io/ca.crt\", \"/etc/pki/corp.pem\", \"rel.pem\"]\n",
        )
        .unwrap();
        let p = prepare(&argv(&[]), env_of(&[])).unwrap();
        let res = p.check.containerd.as_ref().unwrap();
        assert_eq!(
            res.hosts[0].ca,
            [
                reg.join("ca.crt"),
                root.join("etc/pki/corp.pem"),
                reg.join("rel.pem")
            ]
        );
        assert_eq!(res.unreadable, [root.join("etc/pki/corp.pem")]);
        // A file where the directory should be is refused, naming the flag.
        let e = prepare(
            &{
                let mut a = argv(&[]);
                a.containerd_config_dir = Some(root.join("etc/resolv.conf"));
                a
            },
            env_of(&[]),
        )
        .err()
        .unwrap();
        assert_eq!(e.field, "--containerd-config-dir");
        let e = prepare(
            &{
                let mut a = argv(&[]);
                a.host_root = Some("host".into());
                a
            },
            env_of(&[]),
        )
        .err()
        .unwrap();
        assert_eq!(e.field, "--host-root");
    }

    #[test]
    fn every_argument_jobs_produce_parses_and_maps() {
        let files = PodFiles::new();
        let t = target();
        let mut explicit = full_spec();
        explicit["proxy"] = json!({"mode": "Explicit", "url": "http://proxy.corp:3128",
            "noProxy": [".svc", "10.0.0.0/8", "myreg.westeurope.data.azurecr.io"]});
        // (Explicit with noProxy but no url never reaches a Job: the spec parse refuses it.)
        let mut none = full_spec();
        none["proxy"] = json!({"mode": "None"});
        let minimal = json!({"registry": "registry.example.com:5000"});
        let env = env_of(&[
            (NODE_IPS_ENV, "10.224.0.4"),
            ("HTTPS_PROXY", "http://env-proxy:8080"),
            ("NO_PROXY", "mcr.microsoft.com"),
        ]);

        let mut seen_flags = std::collections::BTreeSet::new();
        for spec in [full_spec(), explicit, none, minimal] {
            let c = check(spec);
            let valid = crate::operator::spec::ValidSpec::parse(&c.spec).unwrap();
            for ctx in [ProbeContext::Node, ProbeContext::Pod] {
                for tgt in [Some(&t), None] {
                    let pj = ProbeJob {
                        check: &c,
                        spec: &valid,
                        run_id: "r1",
                        context: ctx,
                        target: tgt,
                        image: "img",
                        operator_namespace: "regcheck-system",
                        node_addresses: &[],
                    };
                    let argv = probe_args(&pj);
                    seen_flags.extend(argv.iter().filter(|a| a.starts_with("--")).cloned());
                    let mut a = ProbeArgs::try_parse_from(&argv)
                        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
                    let s = &c.spec;
                    assert_eq!(a.registry, s.registry);
                    assert_eq!(a.context, ctx);
                    assert_eq!(a.node.as_deref(), tgt.map(|t| t.node.as_str()));
                    assert_eq!(a.target.data_endpoints, s.data_endpoints);
                    assert_eq!(a.target.regions, s.regions);
                    assert_eq!(a.target.also, s.extra_hosts);
                    assert_eq!(a.target.image, s.image);
                    assert_eq!(a.target.timeout, format!("{}s", s.timeout_seconds));
                    assert_eq!(
                        a.docker_config.is_some(),
                        ctx == ProbeContext::Pod && s.credentials_secret_ref.is_some()
                    );
                    assert_eq!(a.termination_log, PathBuf::from(DEFAULT_TERMINATION_LOG));
                    assert_eq!(a.target.no_proxy, s.proxy.mode == ProxyMode::None);
                    assert_eq!(a.target.proxy, s.proxy.url);
                    assert_eq!(
                        a.proxy_bypass,
                        (!s.proxy.no_proxy.is_empty()).then(|| s.proxy.no_proxy.join(","))
                    );

                    files.apply(&mut a);
                    let p = prepare(&a, &env).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
                    assert_eq!(p.context, ctx);
                    let cfg = &p.check.config;
                    assert!(!cfg.policy.allow_loopback);
                    assert_eq!(
                        cfg.policy.forbidden,
                        vec!["10.224.0.4".parse::<IpAddr>().unwrap()]
                    );
                    assert_eq!(cfg.timeout.as_secs(), u64::from(s.timeout_seconds));
                    assert_eq!(cfg.credentials.is_some(), a.docker_config.is_some());
                    assert_eq!(cfg.image.is_some(), s.image.is_some());
                    let expected_endpoints =
                        1 + s.data_endpoints.len() + s.regions.len() + s.extra_hosts.len();
                    assert_eq!(p.check.endpoints.len(), expected_endpoints, "{argv:?}");
                    let proxy = cfg.proxy.as_ref();
                    let via = |host: &str| {
                        proxy
                            .and_then(|pc| pc.https_proxy_for(host, 443))
                            .map(|u| u.redacted())
                    };
                    match s.proxy.mode {
                        ProxyMode::None => assert!(proxy.is_none()),
                        ProxyMode::Inherit => {
                            // The environment's proxy and NO_PROXY.
                            assert!(
                                via("myreg.azurecr.io").is_some_and(|u| u.contains("env-proxy"))
                            );
                            assert_eq!(via("mcr.microsoft.com"), None);
                        }
                        ProxyMode::Explicit => {
                            let u = via("myreg.azurecr.io").unwrap();
                            assert!(u.contains("proxy.corp:3128"), "{u}");
                            // --proxy-bypass is the whole NO_PROXY: the env's entry is gone.
                            assert!(via("mcr.microsoft.com").is_some());
                            assert_eq!(via("myreg.westeurope.data.azurecr.io"), None);
                        }
                    }
                }
            }
        }
        for flag in [
            "--registry",
            "--context",
            "--node",
            "--data-endpoint",
            "--region",
            "--also",
            "--expect",
            "--image",
            "--docker-config",
            "--proxy",
            "--proxy-bypass",
            "--no-proxy",
            "--timeout",
        ] {
            assert!(
                seen_flags.contains(flag),
                "{flag} never produced: {seen_flags:?}"
            );
        }
    }

    #[test]
    fn contract_flags_parse() {
        let a = parse(&[
            "probe",
            "--registry",
            "r.example:5000",
            "--context",
            "pod",
            "--termination-log",
            "/tmp/x",
            "--node-ip",
            "10.0.0.4",
            "--node-ip",
            "fd00::4",
            "--expect",
            "public",
        ]);
        assert_eq!(a.termination_log, PathBuf::from("/tmp/x"));
        assert_eq!(a.node_ips, ["10.0.0.4", "fd00::4"]);
        assert_eq!(a.context, ProbeContext::Pod);
        assert_eq!(a.target.resolv_conf, PathBuf::from("/etc/resolv.conf"));
        assert_eq!(a.target.hosts_file, PathBuf::from("/etc/hosts"));
        for bad in [
            vec!["probe", "--context", "node"],
            vec!["probe", "--registry", "r", "--context", "host"],
            vec!["probe", "--registry", "r"],
            vec![
                "probe",
                "--registry",
                "r",
                "--context",
                "pod",
                "--proxy",
                "http://p:1",
                "--no-proxy",
            ],
            vec![
                "probe",
                "--registry",
                "r",
                "--context",
                "pod",
                "--proxy-bypass",
                "a",
                "--no-proxy",
            ],
            vec![
                "probe",
                "--registry",
                "r",
                "--context",
                "pod",
                "--password-stdin",
            ],
        ] {
            let e = ProbeArgs::try_parse_from(&bad).unwrap_err();
            assert!(e.use_stderr(), "{bad:?}");
        }
    }

    #[test]
    fn node_addresses_from_flags_and_environment() {
        let files = PodFiles::new();
        let mut a = parse(&[
            "probe",
            "--registry",
            "r.example",
            "--context",
            "node",
            "--node-ip",
            "10.0.0.4",
            "--node-ip",
            " fd00::4 ",
        ]);
        files.apply(&mut a);
        let p = prepare(&a, env_of(&[(NODE_IPS_ENV, "10.0.0.4, 10.0.0.5,,")])).unwrap();
        let want: Vec<IpAddr> = ["10.0.0.4", "fd00::4", "10.0.0.5"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(p.check.config.policy, TargetPolicy::in_cluster(want));
        // Without any, loopback and metadata are still refused.
        let p = prepare(
            &{
                let mut b = a.clone();
                b.node_ips.clear();
                b
            },
            env_of(&[]),
        )
        .unwrap();
        assert!(p.check.config.policy.forbidden.is_empty());
        assert!(
            p.check
                .config
                .policy
                .check("127.0.0.1".parse().unwrap())
                .is_err()
        );
        assert!(
            p.check
                .config
                .policy
                .check("169.254.169.254".parse().unwrap())
                .is_err()
        );
        assert!(
            p.check
                .config
                .policy
                .check("10.0.0.4".parse().unwrap())
                .is_ok()
        );

        let e = prepare(&a, env_of(&[(NODE_IPS_ENV, "10.0.0.4,node-1")]))
            .err()
            .unwrap();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            (NODE_IPS_ENV, "node-1")
        );
        a.node_ips = vec!["10.0.0.300".into()];
        let e = prepare(&a, env_of(&[])).err().unwrap();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("--node-ip", "10.0.0.300")
        );
        a.node_ips = (0..20).map(|i| format!("10.0.1.{i}")).collect();
        let e = prepare(&a, env_of(&[])).err().unwrap();
        assert!(e.problem.contains("more than 16"), "{e}");
    }

    type Change = Box<dyn Fn(&mut ProbeArgs)>;

    #[test]
    fn bad_input_names_the_field() {
        let files = PodFiles::new();
        let base = || {
            let mut a = parse(&["probe", "--registry", "r.example", "--context", "node"]);
            files.apply(&mut a);
            a
        };
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|a| a.node = Some("Node_1\n".into())), "--node"),
            (Box::new(|a| a.node = Some(String::new())), "--node"),
            (Box::new(|a| a.node = Some("n".repeat(254))), "--node"),
            (
                Box::new(|a| a.target.timeout = "forever".into()),
                "--timeout",
            ),
            (
                Box::new(|a| a.target.expect = "intranet".into()),
                "--expect",
            ),
            (Box::new(|a| a.registry = "bad host!".into()), "--registry"),
            (
                Box::new(|a| a.target.resolv_conf = "/nonexistent/resolv.conf".into()),
                "--resolv-conf",
            ),
            (
                Box::new(|a| a.target.proxy = Some("ftp://p".into())),
                "--proxy",
            ),
            (
                Box::new(|a| a.docker_config = Some("/nonexistent/config.json".into())),
                "--docker-config",
            ),
        ];
        for (change, field) in cases {
            let mut a = base();
            change(&mut a);
            let e = prepare(&a, env_of(&[]))
                .err()
                .unwrap_or_else(|| panic!("{a:?}"));
            assert_eq!(e.field, field, "{e}");
        }
        let mut a = base();
        a.node = Some("aks-nodepool1-12345678-vmss000000".into());
        assert!(prepare(&a, env_of(&[])).is_ok());
    }

    // -----------------------------------------------------------------------------------------
    // Termination message size
    // -----------------------------------------------------------------------------------------

    fn answer(server: &str, n_cnames: usize, n_addrs: usize, text: &str) -> DnsAnswer {
        DnsAnswer {
            server: server.into(),
            outcome: DnsOutcome::Resolved,
            cnames: (0..n_cnames)
                .map(|i| format!("hop{i}.{}.privatelink.azurecr.io", "c".repeat(40)))
                .collect(),
            addresses: (0..n_addrs)
                .map(|i| Address::new(IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8])))
                .collect(),
            answered_by: Some("10.0.0.10:53".into()),
            error: Some(text.into()),
            ms: 3,
        }
    }

    fn endpoint(i: usize, text: &str) -> EndpointEvidence {
        EndpointEvidence {
            host: format!("{}{i}.westeurope.data.azurecr.io", "e".repeat(40)),
            port: 443,
            role: if i == 0 {
                Role::LoginServer
            } else {
                Role::DataEndpoint
            },
            dns: DnsEvidence {
                kubelet: None,
                system: answer("system", 12, 60, text),
                servers: (0..4)
                    .map(|s| answer(&format!("10.0.0.{s}:53"), 12, 60, text))
                    .collect(),
            },
            route: Route {
                proxy: Some(format!("http://{}:3128", "p".repeat(300))),
                no_proxy_match: None,
                cidr_not_applied: (0..10).map(|c| format!("10.{c}.0.0/16")).collect(),
            },
            proxy: Some(ProxyEvidence {
                url: format!("http://{}:3128", "p".repeat(300)),
                outcome: ProxyOutcome::Denied,
                status: Some(403),
                error: Some(text.into()),
                ms: 4,
            }),
            tcp: (0..16)
                .map(|t| TcpEvidence {
                    address: format!("10.1.0.{t}:443").parse().unwrap(),
                    outcome: if t % 3 == 0 {
                        TcpOutcome::Connected
                    } else {
                        TcpOutcome::Timeout
                    },
                    error: Some(text.into()),
                    ms: 5000,
                })
                .collect(),
            tls: Some(TlsEvidence {
                peer: None,
                small_mss_retry: None,
                outcome: TlsOutcome::UntrustedIssuer,
                subject: Some(format!("CN={}", "s".repeat(1000))),
                issuer: Some(format!("CN={}", "i".repeat(1000))),
                error: Some(text.into()),
                ms: 7,
            }),
            http: Some(HttpEvidence {
                outcome: HttpOutcome::Response,
                status: Some(403),
                challenge: Some(Challenge {
                    scheme: "Bearer".into(),
                    realm: Some("r".repeat(1000)),
                    service: Some("s".repeat(1000)),
                }),
                challenge_malformed: false,
                distribution_api: true,
                registry_error: Some(RegistryError {
                    code: "DENIED".into(),
                    message: text.into(),
                }),
                client_ip: Some("203.0.113.7".into()),
                content_type: Some("t".repeat(500)),
                error: Some(text.into()),
                ms: 9,
            }),
            deadline_exceeded: true,
        }
    }

    fn step(text: &str) -> PullStep {
        PullStep {
            outcome: PullOutcome::Forbidden,
            host: Some("myreg.azurecr.io".into()),
            path: None,
            status: Some(403),
            registry_error: Some(RegistryError {
                code: "DENIED".into(),
                message: text.into(),
            }),
            error: Some(text.into()),
            ms: 11,
        }
    }

    /// 32 endpoints with everything at its worst: long messages (multi-byte and control
    /// characters included), many addresses, CNAMEs, TCP attempts, per-server answers.
    fn pathological(n_endpoints: usize, n_findings: usize, text: &str) -> Report {
        let endpoints: Vec<EndpointEvidence> =
            (0..n_endpoints).map(|i| endpoint(i, text)).collect();
        let findings = (0..n_findings)
            .map(|i| Finding {
                reason: if i == 0 {
                    Reason::TLSInterception
                } else {
                    Reason::DataEndpointBlocked
                },
                cause: Cause::ClientFirewallOrProxy,
                severity: if i == 0 {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                code: Some("CONNECTIVITY_SSL_ERROR".into()),
                endpoint: endpoints
                    .get(i % n_endpoints.max(1))
                    .map(|e| e.host.clone())
                    .unwrap_or_else(|| "myreg.azurecr.io".into()),
                role: Some(Role::DataEndpoint),
                message: format!("finding {i}: {text}"),
                remediation: "r".repeat(2000),
                docs: vec!["https://learn.microsoft.com/x".into(); 5],
            })
            .collect();
        Report {
            schema_version: SCHEMA_VERSION,
            verdict: Verdict::Unreachable,
            findings,
            context: Some(ProbeContext::Node),
            node: Some("aks-nodepool1-12345678-vmss000000".into()),
            evidence: Evidence {
                ip_family: None,
                registry: "myreg.azurecr.io".into(),
                expect: Expect::Private,
                egress_ips: Vec::new(),
                endpoints: endpoints.clone(),
                pull: Some(PullEvidence {
                    image: format!("library/{}:v1", "a".repeat(300)),
                    credentials: true,
                    token: step(text),
                    manifest: step(text),
                    blob: step(text),
                    blob_digest: Some(format!("sha256:{}", "0".repeat(64))),
                    blob_size: Some(1),
                    redirects: (0..20)
                        .map(|i| format!("r{i}.{}.example", "x".repeat(60)))
                        .collect(),
                    failed_host: endpoints.get(1).cloned().map(Box::new),
                }),
                containerd: None,
                proxy_source: None,
                resolvers: None,
                egress: None,
                ms: 30_000,
            },
        }
    }

    fn long_text() -> String {
        format!(
            "{}\u{1b}[31m{}\n{}",
            "é".repeat(500),
            "\u{1}".repeat(200),
            "ü漢".repeat(800)
        )
    }

    #[track_caller]
    fn assert_fits(original: &Report, msg: &str) -> Report {
        assert!(msg.len() <= MAX_TERMINATION_MESSAGE, "{} bytes", msg.len());
        let parsed = parse_termination_message(msg).unwrap_or_else(|e| panic!("{e}: {msg}"));
        assert_eq!(parsed.schema_version, SCHEMA_VERSION);
        assert_eq!(parsed.verdict, original.verdict);
        let (p, o) = (&parsed.findings[0], &original.findings[0]);
        assert_eq!(
            (p.reason, p.cause, p.severity),
            (o.reason, o.cause, o.severity)
        );
        assert_eq!(p.endpoint, o.endpoint);
        assert!(!p.message.is_empty());
        let kept: String = p.message.chars().take_while(|c| *c != '…').collect();
        let original_flat = text::clip(&o.message, usize::MAX);
        assert!(original_flat.starts_with(&kept), "{kept:?}");
        // The catalogue restores what the compact form dropped.
        assert!(!p.remediation.is_empty());
        assert_eq!(parsed.context, original.context);
        parsed
    }

    #[test]
    fn pathological_report_fits_and_parses() {
        let r = pathological(32, 32, &long_text());
        assert!(report::to_compact_json(&r).len() > 10 * MAX_TERMINATION_MESSAGE);
        let msg = fit_termination_message(&r);
        let parsed = assert_fits(&r, &msg);
        assert_eq!(parsed.node, r.node);
        assert!(parsed.findings[0].message.starts_with("finding 0: éé"));
    }

    #[test]
    fn small_reports_are_the_plain_compact_json() {
        let mut r = pathological(1, 1, "TCP to 10.1.0.6:443 timed out");
        let e = &mut r.evidence.endpoints[0];
        e.dns.servers.clear();
        e.dns.system.cnames.truncate(1);
        e.dns.system.addresses.truncate(1);
        e.tcp.truncate(1);
        e.tls = None;
        e.http = None;
        e.proxy = None;
        e.route = Route::direct();
        r.evidence.pull = None;
        let msg = fit_termination_message(&r);
        assert_eq!(msg, report::to_compact_json(&r));
        assert_fits(&r, &msg);
    }

    #[test]
    fn shrinking_keeps_the_login_server_timings_while_it_can() {
        // Too big for the plain compact form, small enough to keep endpoint evidence.
        let r = pathological(6, 3, "connection timed out");
        assert!(report::to_compact_json(&r).len() > MAX_TERMINATION_MESSAGE);
        let msg = fit_termination_message(&r);
        let parsed = assert_fits(&r, &msg);
        let login = parsed
            .evidence
            .endpoints
            .iter()
            .find(|e| e.role == Role::LoginServer)
            .expect("login server evidence kept");
        assert!(login.dns.servers.is_empty(), "per-server answers go first");
        assert_eq!(login.tcp.len(), 2, "first connected and first failed");
        assert_eq!(login.tcp[0].ms, r.evidence.endpoints[0].tcp[0].ms);
        assert_eq!(
            crate::operator::aggregate::timings(&parsed),
            crate::operator::aggregate::timings(&r)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_report_fits(
            n_endpoints in 0usize..=32,
            n_findings in 1usize..=40,
            text in "[a-zé漢\\x00-\\x1f\"\\\\]{0,600}",
            node in proptest::option::of("[a-z0-9.-]{1,253}"),
        ) {
            let mut r = pathological(n_endpoints, n_findings, &text);
            r.node = node;
            let msg = fit_termination_message(&r);
            prop_assert!(msg.len() <= MAX_TERMINATION_MESSAGE);
            let parsed = parse_termination_message(&msg);
            prop_assert!(parsed.is_ok(), "{:?}", parsed.err());
            let parsed = parsed.unwrap();
            prop_assert_eq!(parsed.findings[0].reason, r.findings[0].reason);
            prop_assert_eq!(parsed.verdict, r.verdict);
        }
    }
}
