//! `regcheck controller`: flags (each also an environment variable), logging, the HTTP
//! endpoints, leader election and graceful shutdown around [`crate::operator::controller::run`].

use crate::cli::exit;
use crate::engine::inputs::InputError;
use crate::operator::controller::api_count::ApiCountLayer;
use crate::operator::controller::http::{self, Health};
use crate::operator::controller::leader::{
    Elector, HoldEnd, Leadership, LeaseTimings, identity, lease_client_config,
};
use crate::operator::controller::metrics::Metrics;
use crate::operator::controller::{Config, Context};
use crate::operator::policy::{self, PolicyConfig};
use clap::{ArgAction, ValueEnum};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info};

/// How long SIGTERM waits for reconciliations in flight (the Lease is renewed meanwhile);
/// below the Deployment's terminationGracePeriodSeconds (30).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    #[value(name = "Always")]
    Always,
    #[value(name = "Never")]
    Never,
}

impl PullPolicy {
    fn as_str(self) -> &'static str {
        match self {
            Self::IfNotPresent => "IfNotPresent",
            Self::Always => "Always",
            Self::Never => "Never",
        }
    }
}

pub use crate::cli::LogFormat;

/// Flags of `regcheck controller`.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Image of the probe Jobs (the controller's own image, which carries `regcheck probe`)
    #[arg(long, env = "REGCHECK_PROBE_IMAGE", value_name = "IMAGE")]
    pub probe_image: String,
    /// Platforms the probe image is built for (os/arch, comma separated): nodes of other
    /// architectures are skipped, with the reason in status.skippedNodes
    #[arg(
        long,
        env = "REGCHECK_PROBE_IMAGE_PLATFORMS",
        value_name = "OS/ARCH,...",
        default_value = crate::operator::platform::DEFAULT_PROBE_PLATFORMS
    )]
    pub probe_image_platforms: String,
    /// Pull policy of the probe image
    #[arg(
        long,
        env = "REGCHECK_PROBE_IMAGE_PULL_POLICY",
        value_enum,
        value_name = "POLICY",
        default_value = "IfNotPresent",
        ignore_case = true
    )]
    pub probe_image_pull_policy: PullPolicy,
    /// Namespace of node-context probe Jobs and of the Lease (default: $POD_NAMESPACE, else
    /// regcheck-system)
    #[arg(long, env = "REGCHECK_PROBE_NAMESPACE", value_name = "NS")]
    pub probe_namespace: Option<String>,
    /// Namespaces whose checks are watched, comma separated (default: all)
    #[arg(
        long,
        env = "REGCHECK_NAMESPACES",
        value_name = "NS,...",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Deprecated and ignored: every check has its own interval (the CRD defaults
    /// spec.interval to 5m). Accepted so that older manifests keep working.
    #[arg(long, hide = true, value_name = "DURATION")]
    pub default_interval: Option<String>,
    /// Most unfinished probe Jobs of one run at a time
    #[arg(long, env = "REGCHECK_MAX_CONCURRENT_JOBS", value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_jobs: u32,
    /// Most checks reconciled at a time (per watched namespace); more wait in the queue
    #[arg(long, env = "REGCHECK_MAX_CONCURRENT_RECONCILES", value_name = "N",
          default_value_t = crate::operator::controller::MAX_CONCURRENT_RECONCILES as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub max_concurrent_reconciles: u32,
    /// Address of /metrics, /healthz and /readyz
    #[arg(
        long,
        env = "REGCHECK_METRICS_ADDR",
        value_name = "ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_addr: SocketAddr,
    /// Run only while holding the Lease (true|false)
    #[arg(long, env = "REGCHECK_LEADER_ELECTION", value_name = "BOOL", default_value_t = true,
          action = ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease, in the probe namespace
    #[arg(
        long,
        env = "REGCHECK_LEASE_NAME",
        value_name = "NAME",
        default_value = "regcheck-controller"
    )]
    pub lease_name: String,
    /// How long a standby waits, on its own clock, after the Lease last changed before it
    /// takes over (whole seconds)
    #[arg(
        long,
        env = "REGCHECK_LEASE_DURATION",
        value_name = "DURATION",
        default_value = "15s"
    )]
    pub lease_duration: String,
    /// How long the leader keeps working without a successful renewal; shorter than
    /// --lease-duration
    #[arg(
        long,
        env = "REGCHECK_LEASE_RENEW_DEADLINE",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub lease_renew_deadline: String,
    /// How often the leader renews and a standby looks; shorter than --lease-renew-deadline
    #[arg(
        long,
        env = "REGCHECK_LEASE_RETRY_PERIOD",
        value_name = "DURATION",
        default_value = "2s"
    )]
    pub lease_retry_period: String,
    /// The proxy the nodes use, given to node-context probes of checks with proxy mode Inherit
    #[arg(long, env = "REGCHECK_NODE_PROXY", value_name = "URL")]
    pub node_proxy: Option<String>,
    /// NO_PROXY list of the nodes, with --node-proxy
    #[arg(
        long,
        env = "REGCHECK_NODE_NO_PROXY",
        value_name = "LIST",
        requires = "node_proxy"
    )]
    pub node_no_proxy: Option<String>,
    /// containerd's registry host config directory on the nodes (config_path), mounted
    /// read-only into node probes at /host<DIR> to probe its mirrors as containerd would;
    /// empty: not mounted
    #[arg(long, env = "REGCHECK_NODE_CONTAINERD_CONFIG_DIR", value_name = "DIR",
          default_value = crate::operator::jobs::DEFAULT_NODE_CONTAINERD_CONFIG_DIR)]
    pub node_containerd_config_dir: String,
    /// containerd's systemd drop-in directory on the nodes, mounted read-only into node probes
    /// of checks with proxy mode Inherit: the proxy it sets is the one containerd uses; empty:
    /// not mounted
    #[arg(long, env = "REGCHECK_NODE_CONTAINERD_DROPIN_DIR", value_name = "DIR",
          default_value = crate::operator::jobs::DEFAULT_NODE_CONTAINERD_DROPIN_DIR)]
    pub node_containerd_dropin_dir: String,
    /// The nodes' resolv.conf (containerd's resolver), mounted read-only into node probes at
    /// /host<FILE> and compared with the kubelet's; empty: not mounted
    #[arg(long, env = "REGCHECK_NODE_RESOLV_CONF", value_name = "FILE",
          default_value = crate::operator::jobs::DEFAULT_NODE_RESOLV_CONF)]
    pub node_resolv_conf: String,
    /// Namespaces whose checks may run node-network probes: '*' (all), a comma list of
    /// namespaces, or one namespace label key=value
    #[arg(long, env = policy::ENV_NODE_CONTEXT_NAMESPACES, value_name = "*|NS,...|KEY=VALUE",
          default_value = "*")]
    pub node_context_namespaces: String,
    /// Registry hosts checks may name: '*' (any) or a comma list of host patterns
    /// (myreg.azurecr.io, *.azurecr.io, IP addresses)
    #[arg(long, env = policy::ENV_ALLOWED_REGISTRIES, value_name = "*|PATTERN,...",
          default_value = "*")]
    pub allowed_registries: String,
    /// Ports checks may name, comma separated
    #[arg(long, env = policy::ENV_ALLOWED_PORTS, value_name = "PORT,...", default_value = "443")]
    pub allowed_ports: String,
    /// Hosts an Explicit spec.proxy.url may name: '*' (any), empty (none), or a comma list of
    /// host patterns
    #[arg(long, env = policy::ENV_ALLOWED_PROXIES, value_name = "*|PATTERN,...",
          default_value = "*")]
    pub allowed_proxies: String,
    /// Ports an Explicit spec.proxy.url may use, comma separated
    #[arg(long, env = policy::ENV_ALLOWED_PROXY_PORTS, value_name = "PORT,...",
          default_value = policy::DEFAULT_PROXY_PORTS)]
    pub allowed_proxy_ports: String,
    /// Node strategies checks may use (spec.contexts.node.strategy), comma separated:
    /// PerNodePool, AllNodes, Sample
    #[arg(long, env = policy::ENV_ALLOWED_NODE_STRATEGIES, value_name = "STRATEGY,...",
          default_value = policy::DEFAULT_NODE_STRATEGIES)]
    pub allowed_node_strategies: String,
    /// Most nodes a check with strategy Sample may ask for (spec.contexts.node.count); a check
    /// asking for more is refused
    #[arg(long, env = policy::ENV_MAX_SAMPLE_NODES, value_name = "N",
          default_value_t = crate::operator::spec::MAX_SAMPLE,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub max_sample_nodes: u32,
    /// Most nodes a run of strategy AllNodes may probe; a check whose plan has more is refused
    /// (0: no cap)
    #[arg(long, env = policy::ENV_MAX_NODES_PER_RUN, value_name = "N", default_value_t = 0)]
    pub max_nodes_per_run: u32,
    /// Shortest spec.interval a check may have; a check with a shorter one is refused
    #[arg(long, env = policy::ENV_MIN_INTERVAL, value_name = "DURATION", default_value = "30s")]
    pub min_interval: String,
    /// Most probe Jobs and pull canaries unfinished at once over all checks; more wait for a
    /// later reconcile (0: no cap)
    #[arg(long, env = "REGCHECK_MAX_PROBE_JOBS_IN_FLIGHT", value_name = "N",
          default_value_t = crate::operator::controller::MAX_PROBE_JOBS_IN_FLIGHT as u32)]
    pub max_probe_jobs_in_flight: u32,
    /// Watch the kubelet's image pull failures (Events with reason Failed, cluster-wide) and
    /// show them on the checks of their registries (true|false)
    #[arg(long, env = "REGCHECK_OBSERVE_PULL_FAILURES", value_name = "BOOL", default_value_t = true,
          action = ArgAction::Set)]
    pub observe_pull_failures: bool,
    /// Log format (level from RUST_LOG, default info)
    #[arg(long, env = "REGCHECK_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

fn dns_label(field: &str, s: &str) -> Result<(), InputError> {
    if crate::operator::names::is_dns_label(s) {
        Ok(())
    } else {
        Err(InputError::new(field, s, "is not a valid namespace name"))
    }
}

/// The lease timings of the flags, validated (renew deadline < lease duration, retry period <
/// renew deadline).
pub fn lease_timings(args: &ControllerArgs) -> Result<LeaseTimings, InputError> {
    let max = Duration::from_secs(3600);
    let d = |field: &str, s: &str| crate::engine::inputs::parse_duration(field, s, max);
    LeaseTimings::new(
        d("--lease-duration", &args.lease_duration)?,
        d("--lease-renew-deadline", &args.lease_renew_deadline)?,
        d("--lease-retry-period", &args.lease_retry_period)?,
    )
}

/// Turns the flags into the controller's settings; `env` supplies `POD_NAMESPACE`.
pub fn config(
    args: &ControllerArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, InputError> {
    if args.probe_image.trim().is_empty() || args.probe_image.chars().any(char::is_whitespace) {
        return Err(InputError::new(
            "--probe-image",
            &args.probe_image,
            "is not an image reference",
        ));
    }
    let probe_namespace = args
        .probe_namespace
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| env("POD_NAMESPACE").filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "regcheck-system".into());
    dns_label("--probe-namespace", &probe_namespace)?;
    let mut namespaces = Vec::new();
    for ns in args
        .namespaces
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        dns_label("--namespaces", ns)?;
        if !namespaces.iter().any(|n| n == ns) {
            namespaces.push(ns.to_string());
        }
    }
    if let Some(p) = &args.node_proxy {
        crate::engine::proxy::ProxyUrl::parse("--node-proxy", p)?;
    }
    if let Some(np) = &args.node_no_proxy
        && (np.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(InputError::new(
            "--node-no-proxy",
            np,
            "must be a comma-separated list without spaces",
        ));
    }
    if args.lease_name.is_empty() || args.lease_name.len() > 253 {
        return Err(InputError::new(
            "--lease-name",
            &args.lease_name,
            "is not a valid name",
        ));
    }
    lease_timings(args)?;
    let probe_image_platforms = crate::operator::platform::Platforms::parse(
        "--probe-image-platforms",
        &args.probe_image_platforms,
    )?;
    use crate::operator::jobs::parse_host_path;
    let node_host_files = crate::operator::jobs::NodeHostFiles {
        containerd_config_dir: parse_host_path(
            "--node-containerd-config-dir",
            &args.node_containerd_config_dir,
        )?,
        containerd_dropin_dir: parse_host_path(
            "--node-containerd-dropin-dir",
            &args.node_containerd_dropin_dir,
        )?,
        resolv_conf: parse_host_path("--node-resolv-conf", &args.node_resolv_conf)?,
    };
    let policy = PolicyConfig::parse(
        &args.node_context_namespaces,
        &args.allowed_registries,
        &args.allowed_ports,
        &args.allowed_proxies,
    )?
    .with_proxy_ports(&args.allowed_proxy_ports)?
    .with_caps(policy::Caps::parse(
        &args.allowed_node_strategies,
        args.max_sample_nodes,
        args.max_nodes_per_run,
        &args.min_interval,
    )?);
    Ok(Config {
        probe_image: args.probe_image.clone(),
        probe_image_pull_policy: args.probe_image_pull_policy.as_str().into(),
        probe_namespace,
        namespaces,
        max_concurrent_jobs: args.max_concurrent_jobs as usize,
        node_proxy: args.node_proxy.clone(),
        node_no_proxy: args.node_no_proxy.clone(),
        policy,
        node_cache_ttl: crate::operator::controller::NODE_CACHE_TTL,
        probe_image_platforms,
        observe_pull_failures: args.observe_pull_failures,
        max_concurrent_reconciles: args.max_concurrent_reconciles as usize,
        max_probe_jobs_in_flight: args.max_probe_jobs_in_flight as usize,
        node_host_files,
    })
}

/// Resolves on SIGTERM or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Body of `regcheck controller`; returns the exit code.
pub fn main(args: ControllerArgs) -> i32 {
    let cfg = match config(&args, |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("regcheck: {e}");
            return exit::BAD_INPUT;
        }
    };
    crate::cli::init_tracing("info", args.log_format);
    let runtime = match crate::cli::runtime(None) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let timings = match lease_timings(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("regcheck: {e}");
            return exit::BAD_INPUT;
        }
    };
    runtime.block_on(run(args, cfg, timings))
}

async fn run(args: ControllerArgs, cfg: Config, timings: LeaseTimings) -> i32 {
    let metrics = Arc::new(Metrics::new());
    let kube_config = match kube::Config::infer().await {
        Ok(c) => c,
        Err(e) => {
            error!(error = %kube::Error::InferConfig(e), "no Kubernetes configuration (in-cluster or KUBECONFIG)");
            return exit::PROBLEM;
        }
    };
    // Every request to the API server is counted (regcheck_api_requests_total).
    let build = |c: kube::Config| {
        kube::client::ClientBuilder::try_from(c)
            .map(|b| b.with_layer(&ApiCountLayer::new(metrics.clone())).build())
    };
    // The Lease has its own client: no automatic retries, short timeouts.
    let clients = build(kube_config.clone())
        .and_then(|c| Ok((c, build(lease_client_config(kube_config, &timings))?)));
    let (client, lease_client) = match clients {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot build the Kubernetes client");
            return exit::PROBLEM;
        }
    };
    let health = Arc::new(Health::default());
    let listener = match http::bind(args.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(addr = %args.metrics_addr, error = %e, "cannot listen for /metrics");
            return exit::PROBLEM;
        }
    };
    let server = tokio::spawn(http::serve(listener, metrics.clone(), health.clone()));
    info!(
        probe_namespace = %cfg.probe_namespace,
        namespaces = ?cfg.namespaces,
        node_context_namespaces = %args.node_context_namespaces,
        allowed_registries = %args.allowed_registries,
        allowed_ports = %args.allowed_ports,
        allowed_proxies = %args.allowed_proxies,
        allowed_proxy_ports = %args.allowed_proxy_ports,
        allowed_node_strategies = %args.allowed_node_strategies,
        max_sample_nodes = args.max_sample_nodes,
        max_nodes_per_run = args.max_nodes_per_run,
        min_interval = %args.min_interval,
        max_probe_jobs_in_flight = args.max_probe_jobs_in_flight,
        addr = %args.metrics_addr,
        leader_election = args.leader_election,
        observe_pull_failures = args.observe_pull_failures,
        "starting"
    );

    let mut term = Box::pin(terminated());
    let elector = args.leader_election.then(|| {
        Arc::new(Elector::new(
            lease_client,
            &cfg.probe_namespace,
            &args.lease_name,
            &identity(|k| std::env::var(k).ok()),
            timings,
        ))
    });
    // The renewing task, and how to tell it that the work has stopped.
    let mut holding = None;
    let leadership = match &elector {
        None => Leadership::always(),
        Some(el) => {
            let (leading, leadership) = Leadership::channel();
            health
                .standing_by
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let since = tokio::select! {
                since = el.acquire() => since,
                _ = &mut term => {
                    info!("terminated while standing by");
                    server.abort();
                    return exit::OK;
                }
            };
            leading.send_replace(Some(since + timings.renew_deadline));
            health
                .standing_by
                .store(false, std::sync::atomic::Ordering::SeqCst);
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let el = el.clone();
            let task = tokio::spawn(async move {
                el.hold(since, &leading, async {
                    let _ = stop_rx.await;
                })
                .await
            });
            holding = Some((task, stop_tx));
            leadership
        }
    };

    let ctx = Arc::new(Context::new(client, cfg, metrics).with_leadership(leadership.clone()));
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    let watching = health.watching.clone();
    let mut controller = tokio::spawn(crate::operator::controller::run(
        ctx,
        watching,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let code = tokio::select! {
        _ = &mut term => {
            info!("terminating: finishing reconciliations in flight (the lease is renewed meanwhile)");
            let _ = stop_tx.send(());
            tokio::select! {
                res = tokio::time::timeout(DRAIN_TIMEOUT, &mut controller) => {
                    if res.is_err() {
                        info!(timeout = ?DRAIN_TIMEOUT, "reconciliations still in flight: abandoning them");
                        controller.abort();
                        let _ = (&mut controller).await;
                    }
                    // The work has stopped: only now stop renewing and give the Lease up.
                    if let (Some((task, stop)), Some(el)) = (holding.take(), &elector) {
                        let _ = stop.send(());
                        match task.await {
                            Ok(HoldEnd::Stopped) => el.release().await,
                            _ => info!("leadership was lost while stopping: nothing to release"),
                        }
                    }
                    exit::OK
                }
                _ = leadership.lost() => {
                    error!("lost leadership while finishing reconciliations: exiting");
                    controller.abort();
                    exit::PROBLEM
                }
            }
        }
        _ = leadership.lost() => {
            // Every write of the controller checks the signal and is abandoned when it turns.
            error!("lost leadership: exiting so that the Deployment restarts this replica");
            controller.abort();
            exit::PROBLEM
        }
        res = &mut controller => {
            error!(?res, "the controller stopped");
            exit::PROBLEM
        }
    };
    server.abort();
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ControllerArgs,
    }

    fn parse(args: &[&str]) -> Result<ControllerArgs, clap::Error> {
        let mut v = vec!["x"];
        v.extend_from_slice(args);
        T::try_parse_from(v).map(|t| t.a)
    }

    #[test]
    fn flags_and_defaults() {
        // The environment of the test process could set REGCHECK_* variables: only
        // flags given here are asserted on when they have an env twin set.
        let a = parse(&[
            "--probe-image",
            "ghcr.io/x/regcheck:1",
            "--namespaces",
            "team-a,team-b,team-a",
            "--leader-election",
            "false",
            "--probe-image-pull-policy",
            "Always",
            "--node-proxy",
            "http://10.0.0.9:3128",
            "--node-no-proxy",
            ".svc,10.0.0.0/8",
            "--max-concurrent-jobs",
            "7",
            "--max-concurrent-reconciles",
            "4",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert!(!a.leader_election);
        assert_eq!(a.log_format, LogFormat::Json);
        let c = config(&a, |k| (k == "POD_NAMESPACE").then(|| "ops".to_string())).unwrap();
        assert_eq!(c.namespaces, ["team-a", "team-b"]);
        assert_eq!(c.probe_image_pull_policy, "Always");
        assert_eq!(c.max_concurrent_jobs, 7);
        assert_eq!(c.max_concurrent_reconciles, 4);
        assert_eq!(c.node_no_proxy.as_deref(), Some(".svc,10.0.0.0/8"));
        if std::env::var_os("REGCHECK_PROBE_NAMESPACE").is_none() {
            assert_eq!(c.probe_namespace, "ops");
            assert_eq!(
                config(&a, |_| None).unwrap().probe_namespace,
                "regcheck-system"
            );
        }
        let policy_env = [
            policy::ENV_NODE_CONTEXT_NAMESPACES,
            policy::ENV_ALLOWED_REGISTRIES,
            policy::ENV_ALLOWED_PORTS,
            policy::ENV_ALLOWED_PROXIES,
        ];
        if policy_env.iter().all(|k| std::env::var_os(k).is_none()) {
            assert_eq!(c.policy, PolicyConfig::default());
        }
        let a = parse(&[
            "--probe-image",
            "i",
            "--node-context-namespaces",
            "regcheck.dev/node-probes=true",
            "--allowed-registries",
            "*.azurecr.io,mcr.microsoft.com",
            "--allowed-ports",
            "443,5000",
            "--allowed-proxies",
            "proxy.corp.example",
        ])
        .unwrap();
        assert_eq!(
            config(&a, |_| None).unwrap().policy,
            PolicyConfig::parse(
                "regcheck.dev/node-probes=true",
                "*.azurecr.io,mcr.microsoft.com",
                "443,5000",
                "proxy.corp.example"
            )
            .unwrap()
        );
    }

    #[test]
    fn bad_flags_are_named() {
        assert!(parse(&[]).is_err() || std::env::var_os("REGCHECK_PROBE_IMAGE").is_some());
        assert!(parse(&["--probe-image", "i", "--max-concurrent-jobs", "0"]).is_err());
        assert!(parse(&["--probe-image", "i", "--max-concurrent-reconciles", "0"]).is_err());
        assert!(parse(&["--probe-image", "i", "--leader-election", "maybe"]).is_err());
        assert!(
            parse(&["--probe-image", "i", "--node-no-proxy", "x"]).is_err()
                || std::env::var_os("REGCHECK_NODE_PROXY").is_some()
        );
        let cases: [(&[&str], &str); 13] = [
            (
                &["--probe-image", "i", "--lease-renew-deadline", "15s"],
                "--lease-renew-deadline: '15s'",
            ),
            (
                &["--probe-image", "i", "--lease-retry-period", "1m"],
                "--lease-retry-period: '1m'",
            ),
            (
                &["--probe-image", "i", "--node-context-namespaces", "Team_A"],
                "--node-context-namespaces: 'Team_A'",
            ),
            (
                &["--probe-image", "i", "--allowed-registries", "*.io"],
                "--allowed-registries: '*.io'",
            ),
            (
                &["--probe-image", "i", "--allowed-ports", "https"],
                "--allowed-ports: 'https'",
            ),
            (
                &["--probe-image", "i", "--allowed-proxies", "proxy.corp:3128"],
                "--allowed-proxies: 'proxy.corp:3128'",
            ),
            (&["--probe-image", "a b"], "--probe-image: 'a b'"),
            (
                &["--probe-image", "i", "--namespaces", "Team_A"],
                "--namespaces: 'Team_A'",
            ),
            (
                &["--probe-image", "i", "--probe-namespace=-x"],
                "--probe-namespace: '-x'",
            ),
            (
                &["--probe-image", "i", "--node-proxy", "socks5://p:1"],
                "--node-proxy",
            ),
            (
                &[
                    "--probe-image",
                    "i",
                    "--node-containerd-config-dir",
                    "etc/containerd",
                ],
                "--node-containerd-config-dir: 'etc/containerd'",
            ),
            (
                &[
                    "--probe-image",
                    "i",
                    "--node-containerd-dropin-dir",
                    "/etc/../root",
                ],
                "--node-containerd-dropin-dir: '/etc/../root'",
            ),
            (
                &["--probe-image", "i", "--node-resolv-conf", "/"],
                "--node-resolv-conf: '/'",
            ),
        ];
        for (args, want) in cases {
            let a = parse(args).unwrap();
            let e = config(&a, |_| None).unwrap_err().to_string();
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn node_host_file_flags() {
        use crate::operator::jobs::NodeHostFiles;
        let a = parse(&["--probe-image", "i"]).unwrap();
        let env_set = [
            "REGCHECK_NODE_CONTAINERD_CONFIG_DIR",
            "REGCHECK_NODE_CONTAINERD_DROPIN_DIR",
            "REGCHECK_NODE_RESOLV_CONF",
        ]
        .iter()
        .any(|k| std::env::var_os(k).is_some());
        if !env_set {
            assert_eq!(
                config(&a, |_| None).unwrap().node_host_files,
                NodeHostFiles::default()
            );
        }
        let a = parse(&[
            "--probe-image",
            "i",
            "--node-containerd-config-dir",
            "/var/lib/rancher/k3s/agent/etc/containerd/certs.d/",
            "--node-containerd-dropin-dir=",
            "--node-resolv-conf=",
        ])
        .unwrap();
        assert_eq!(
            config(&a, |_| None).unwrap().node_host_files,
            NodeHostFiles {
                containerd_config_dir: Some(
                    "/var/lib/rancher/k3s/agent/etc/containerd/certs.d".into()
                ),
                containerd_dropin_dir: None,
                resolv_conf: None,
            }
        );
    }

    #[test]
    fn probe_image_platforms_flag() {
        let a = parse(&["--probe-image", "i"]).unwrap();
        if std::env::var_os("REGCHECK_PROBE_IMAGE_PLATFORMS").is_none() {
            let c = config(&a, |_| None).unwrap();
            assert_eq!(
                c.probe_image_platforms.to_string(),
                "linux/amd64,linux/arm64"
            );
        }
        let a = parse(&[
            "--probe-image",
            "i",
            "--probe-image-platforms",
            "linux/amd64,linux/s390x",
        ])
        .unwrap();
        let c = config(&a, |_| None).unwrap();
        assert!(c.probe_image_platforms.supports("linux", "s390x"));
        let a = parse(&[
            "--probe-image",
            "i",
            "--probe-image-platforms",
            "linux/x86_64",
        ])
        .unwrap();
        let e = config(&a, |_| None).unwrap_err();
        assert_eq!(e.field, "--probe-image-platforms");
        assert!(e.to_string().contains("x86_64"), "{e}");
    }

    #[test]
    fn caps_flags_reach_the_config() {
        let a = parse(&[
            "--probe-image",
            "i",
            "--allowed-proxy-ports",
            "3128,8888",
            "--allowed-node-strategies",
            "PerNodePool,Sample",
            "--max-sample-nodes",
            "10",
            "--max-nodes-per-run",
            "50",
            "--min-interval",
            "5m",
            "--max-probe-jobs-in-flight",
            "100",
            "--node-context-namespaces",
            "regcheck-system,regcheck.dev/node-probes=true",
            "--allowed-proxies=",
        ])
        .unwrap();
        let c = config(&a, |_| None).unwrap();
        assert_eq!(c.policy.proxy_ports, vec![3128, 8888]);
        assert_eq!(
            c.policy.caps,
            policy::Caps::parse("PerNodePool,Sample", 10, 50, "5m").unwrap()
        );
        assert_eq!(c.max_probe_jobs_in_flight, 100);
        assert!(c.policy.proxy_hosts.is_empty(), "empty: no Explicit proxy");
        assert_eq!(
            c.policy.node_context_namespaces,
            policy::NamespaceRule::parse("regcheck-system,regcheck.dev/node-probes=true").unwrap()
        );
        let env = [
            policy::ENV_ALLOWED_PROXY_PORTS,
            policy::ENV_ALLOWED_NODE_STRATEGIES,
            policy::ENV_MAX_SAMPLE_NODES,
            policy::ENV_MAX_NODES_PER_RUN,
            policy::ENV_MIN_INTERVAL,
            "REGCHECK_MAX_PROBE_JOBS_IN_FLIGHT",
        ];
        if env.iter().all(|k| std::env::var_os(k).is_none()) {
            let c = config(&parse(&["--probe-image", "i"]).unwrap(), |_| None).unwrap();
            assert_eq!(c.policy.proxy_ports, vec![3128, 8080, 80, 443]);
            assert_eq!(c.policy.caps, policy::Caps::default());
            assert_eq!(c.max_probe_jobs_in_flight, 100);
        }
        assert!(parse(&["--probe-image", "i", "--max-sample-nodes", "1001"]).is_err());
        for (args, want) in [
            (
                &["--probe-image", "i", "--allowed-proxy-ports", "ssh"][..],
                "--allowed-proxy-ports: 'ssh'",
            ),
            (
                &["--probe-image", "i", "--allowed-node-strategies", "Every"][..],
                "--allowed-node-strategies: 'Every'",
            ),
            (
                &["--probe-image", "i", "--min-interval", "10s"][..],
                "--min-interval: '10s'",
            ),
        ] {
            let e = config(&parse(args).unwrap(), |_| None)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
    }
}
