//! The `regcheck` command line: what every subcommand shares (exit codes, the tokio runtime,
//! logging, the flags that name what to probe) and the subcommands' own pieces: `probe` (the
//! in-cluster probe a Job runs) and the controller's flags and start-up. `main.rs` only parses
//! and dispatches.

pub mod controller;
pub mod kubectl;
pub mod probe;

use std::path::PathBuf;

/// Exit codes of every subcommand.
pub mod exit {
    /// `check`, `probe`: the registry is healthy; `explain`: the text reports a successful
    /// pull; `controller`: stopped on SIGTERM / Ctrl-C.
    pub const OK: i32 = 0;
    /// `check`, `explain`: a problem was found; `controller`: lost the Kubernetes API or
    /// leadership (the Deployment restarts the process).
    pub const PROBLEM: i32 = 1;
    /// Bad input: a flag, a file or an empty message; nothing was probed.
    pub const BAD_INPUT: i32 = 2;
    /// An internal error (a panic, the runtime could not start, the termination log could not
    /// be written).
    pub const INTERNAL: i32 = 3;
}

/// The exit code of a report: [`exit::OK`] when healthy, else [`exit::PROBLEM`].
pub fn exit_code(report: &crate::engine::findings::Report) -> i32 {
    match report.verdict {
        crate::engine::findings::Verdict::Healthy => exit::OK,
        _ => exit::PROBLEM,
    }
}

/// The tokio runtime of a subcommand (`workers`: worker threads, all cores when `None`), or
/// the exit code after saying why it cannot start.
pub fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, i32> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if let Some(n) = workers {
        b.worker_threads(n);
    }
    b.build().map_err(|e| {
        eprintln!("regcheck: cannot start the runtime: {e}");
        exit::INTERNAL
    })
}

/// Log format of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging to stderr: `RUST_LOG` or `default_level`, text (coloured only on a terminal) or
/// JSON lines.
pub fn init_tracing(default_level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(log_colours())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The flags `regcheck check` and `regcheck probe` share: what to probe besides the login
/// server, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// A data endpoint that blobs are redirected to (repeatable)
    #[arg(long = "data-endpoint", value_name = "HOST")]
    pub data_endpoints: Vec<String>,
    /// Azure region of a replica: derives <name>.<region>.data.azurecr.io (repeatable)
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// Another registry host to probe too, e.g. mcr.microsoft.com (repeatable)
    #[arg(long = "also", value_name = "HOST")]
    pub also: Vec<String>,
    /// What the registry should resolve to: any, public or private (private endpoint)
    #[arg(long, value_name = "KIND", default_value = "any")]
    pub expect: String,
    /// An address or CIDR the cluster's traffic should leave through (repeatable, or a comma
    /// list): a registry denial naming another address points at the wrong NAT or firewall
    #[arg(long = "egress-ip", value_name = "IP|CIDR")]
    pub egress_ips: Vec<String>,
    /// The address families a client here can use: ipv4, ipv6 or dual. Only that family's
    /// addresses are dialled; an IPv6 or dual-stack client reports a registry without AAAA
    /// records (RegistryLacksIPv6) and a dual-stack one an IPv6 path that fails while IPv4
    /// works (IPv6PathBroken). Default: unknown (every address is dialled)
    #[arg(long = "ip-family", value_name = "FAMILY")]
    pub ip_family: Option<String>,
    /// Pull the smallest blob of this image: REPO:TAG or REPO@sha256:...
    #[arg(long, value_name = "REPO:TAG")]
    pub image: Option<String>,
    /// Proxy for HTTPS (default: HTTPS_PROXY / https_proxy, with NO_PROXY)
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    pub proxy: Option<String>,
    /// Ignore proxy settings and connect directly
    #[arg(long)]
    pub no_proxy: bool,
    /// Deadline of the whole check, e.g. 10s or 500ms
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub timeout: String,
    /// The resolver configuration a client here uses
    #[arg(long, value_name = "PATH", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// The hosts file consulted before DNS
    #[arg(long, value_name = "PATH", default_value = "/etc/hosts")]
    pub hosts_file: PathBuf,
    /// The host's resolv.conf, which containerd resolves with: it becomes the resolver the
    /// probe connects with, and --resolv-conf (the kubelet's resolvConf) is compared with it
    #[arg(long, value_name = "PATH")]
    pub host_resolv_conf: Option<PathBuf>,
    /// Extra trusted CA certificates, PEM (repeatable)
    #[arg(long = "ca-file", value_name = "PEM")]
    pub ca_files: Vec<PathBuf>,
    /// Also probe the hosts of an egress profile: AKS, AKS-AzureChinaCloud,
    /// AKS-AzureUSGovernment, EKS, GKE (repeatable); DNS, TCP, TLS and one GET /, no registry
    /// semantics
    #[arg(long = "egress-profile", value_name = "PROFILE")]
    pub egress_profiles: Vec<String>,
    /// A parameter of the egress profiles, NAME=VALUE: region=eastus, apiServer=<fqdn>,
    /// account=<id> (repeatable); rules needing one that is not given are reported, not guessed
    #[arg(long = "egress-profile-param", value_name = "NAME=VALUE")]
    pub egress_params: Vec<String>,
    /// Another host the cluster must reach, probed like a profile's hosts (repeatable)
    #[arg(long = "egress-host", value_name = "HOST[:PORT]")]
    pub egress_hosts: Vec<String>,
}

/// Whether text logs get ANSI colours: only on a terminal, and not with `NO_COLOR` set
/// (`kubectl logs`, files and pipes would show the escape codes as garbage).
pub fn log_colours() -> bool {
    use std::io::IsTerminal;
    colours_for(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// [`log_colours`] for stderr being a terminal (`tty`) and the value of `NO_COLOR`.
pub fn colours_for(tty: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    tty && no_color.is_none_or(|v| v.is_empty())
}

impl TargetArgs {
    /// The check these flags describe for `registry`; the subcommand fills in what is its own
    /// (nameservers, credentials, the target policy).
    pub fn check_input(&self, registry: String) -> crate::engine::check::CheckInput {
        crate::engine::check::CheckInput {
            registry,
            data_endpoints: self.data_endpoints.clone(),
            regions: self.regions.clone(),
            also: self.also.clone(),
            dns_servers: Vec::new(),
            resolv_conf: self.resolv_conf.clone(),
            hosts_file: self.hosts_file.clone(),
            expect: self.expect.clone(),
            egress_ips: self.egress_ips.clone(),
            ip_family: self.ip_family.clone(),
            proxy: self.proxy.clone(),
            no_proxy: self.no_proxy,
            ca_files: self.ca_files.clone(),
            image: self.image.clone(),
            username: None,
            password: None,
            docker_config: None,
            timeout: self.timeout.clone(),
            strict_targets: false,
            containerd_config_dir: None,
            runtime_proxy_from: Vec::new(),
            runtime_proxy_fallback: false,
            host_resolv_conf: self.host_resolv_conf.clone(),
            host_root: None,
            egress_profiles: self.egress_profiles.clone(),
            egress_params: self.egress_params.clone(),
            egress_hosts: self.egress_hosts.clone(),
        }
    }
}

#[cfg(test)]
mod log_tests {
    use super::colours_for;
    use std::ffi::OsStr;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours_for(true, None));
        assert!(colours_for(true, Some(OsStr::new(""))));
        assert!(!colours_for(true, Some(OsStr::new("1"))));
        assert!(!colours_for(false, None));
    }
}
