//! `regcheck controller`: flags (each also an environment variable), logging, the HTTP
//! endpoints, leader election and graceful shutdown around [`super::run`].

use super::api_count::ApiCountLayer;
use super::http::{self, Health};
use super::leader::{Elector, identity};
use super::metrics::Metrics;
use super::{Config, Context};
use crate::policy::{self, PolicyConfig};
use crate::target::InputError;
use clap::{ArgAction, ValueEnum};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info};

/// Exit codes of `regcheck controller`.
pub mod exit {
    /// Stopped on SIGTERM / Ctrl-C.
    pub const OK: i32 = 0;
    /// Lost the Kubernetes API or leadership: the Deployment restarts the process.
    pub const FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const INTERNAL: i32 = 3;
}

/// Default lease duration; the holder renews every third of it.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of `regcheck controller`.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Image of the probe Jobs (the controller's own image, which carries `regcheck probe`)
    #[arg(long, env = "REGCHECK_PROBE_IMAGE", value_name = "IMAGE")]
    pub probe_image: String,
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
    /// Interval of checks whose own interval cannot be used
    #[arg(
        long,
        env = "REGCHECK_DEFAULT_INTERVAL",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub default_interval: String,
    /// Most unfinished probe Jobs of one run at a time
    #[arg(long, env = "REGCHECK_MAX_CONCURRENT_JOBS", value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_jobs: u32,
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
    /// Hosts an Explicit spec.proxy.url may name: '*' (any) or a comma list of host patterns
    #[arg(long, env = policy::ENV_ALLOWED_PROXIES, value_name = "*|PATTERN,...",
          default_value = "*")]
    pub allowed_proxies: String,
    /// Log format (level from RUST_LOG, default info)
    #[arg(long, env = "REGCHECK_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

fn dns_label(field: &str, s: &str) -> Result<(), InputError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(InputError::new(field, s, "is not a valid namespace name"))
    }
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
    let default_interval = crate::target::parse_duration(
        "--default-interval",
        &args.default_interval,
        super::decide::MAX_INTERVAL,
    )?;
    if default_interval < super::decide::MIN_INTERVAL {
        return Err(InputError::new(
            "--default-interval",
            &args.default_interval,
            "is shorter than the minimum of 30s",
        ));
    }
    if let Some(p) = &args.node_proxy {
        crate::proxy::ProxyUrl::parse("--node-proxy", p)?;
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
    let policy = PolicyConfig::parse(
        &args.node_context_namespaces,
        &args.allowed_registries,
        &args.allowed_ports,
        &args.allowed_proxies,
    )?;
    Ok(Config {
        probe_image: args.probe_image.clone(),
        probe_image_pull_policy: args.probe_image_pull_policy.as_str().into(),
        probe_namespace,
        namespaces,
        default_interval,
        max_concurrent_jobs: args.max_concurrent_jobs as usize,
        node_proxy: args.node_proxy.clone(),
        node_no_proxy: args.node_no_proxy.clone(),
        policy,
        node_cache_ttl: super::NODE_CACHE_TTL,
    })
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(crate::log_colours())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
    init_tracing(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("regcheck: cannot start the runtime: {e}");
            return exit::INTERNAL;
        }
    };
    runtime.block_on(run(args, cfg))
}

async fn run(args: ControllerArgs, cfg: Config) -> i32 {
    let metrics = Arc::new(Metrics::new());
    // Every request to the API server is counted (regcheck_api_requests_total).
    let client = match kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)
        .and_then(|c| {
            kube::client::ClientBuilder::try_from(c)
                .map(|b| b.with_layer(&ApiCountLayer::new(metrics.clone())).build())
        }) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "no Kubernetes configuration (in-cluster or KUBECONFIG)");
            return exit::FAILED;
        }
    };
    let health = Arc::new(Health::default());
    let listener = match http::bind(args.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(addr = %args.metrics_addr, error = %e, "cannot listen for /metrics");
            return exit::FAILED;
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
        addr = %args.metrics_addr,
        leader_election = args.leader_election,
        "starting"
    );

    let mut term = Box::pin(terminated());
    let elector = args.leader_election.then(|| {
        Elector::new(
            client.clone(),
            &cfg.probe_namespace,
            &args.lease_name,
            &identity(|k| std::env::var(k).ok()),
            LEASE_DURATION,
        )
    });
    if let Some(el) = &elector {
        health
            .standing_by
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::select! {
            _ = el.acquire() => {}
            _ = &mut term => {
                info!("terminated while standing by");
                server.abort();
                return exit::OK;
            }
        }
        health
            .standing_by
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    let ctx = Arc::new(Context::new(client, cfg, metrics));
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    let watching = health.watching.clone();
    let mut controller = tokio::spawn(super::run(ctx, watching, async move {
        let _ = stop_rx.await;
    }));
    let lost = async {
        match &elector {
            Some(el) => el.hold().await,
            None => std::future::pending().await,
        }
    };
    let code = tokio::select! {
        _ = &mut term => {
            info!("terminating: finishing reconciliations in flight");
            let _ = stop_tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(20), &mut controller).await;
            if let Some(el) = &elector {
                el.release().await;
            }
            exit::OK
        }
        _ = lost => {
            error!("lost leadership: exiting so that the Deployment restarts this replica");
            exit::FAILED
        }
        res = &mut controller => {
            error!(?res, "the controller stopped");
            exit::FAILED
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
        assert_eq!(c.node_no_proxy.as_deref(), Some(".svc,10.0.0.0/8"));
        if std::env::var_os("REGCHECK_PROBE_NAMESPACE").is_none() {
            assert_eq!(c.probe_namespace, "ops");
            assert_eq!(
                config(&a, |_| None).unwrap().probe_namespace,
                "regcheck-system"
            );
        }
        if std::env::var_os("REGCHECK_DEFAULT_INTERVAL").is_none() {
            assert_eq!(c.default_interval, Duration::from_secs(300));
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
        assert!(parse(&["--probe-image", "i", "--leader-election", "maybe"]).is_err());
        assert!(
            parse(&["--probe-image", "i", "--node-no-proxy", "x"]).is_err()
                || std::env::var_os("REGCHECK_NODE_PROXY").is_some()
        );
        let cases: [(&[&str], &str); 9] = [
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
                &["--probe-image", "i", "--default-interval", "5s"],
                "--default-interval: '5s'",
            ),
            (
                &["--probe-image", "i", "--node-proxy", "socks5://p:1"],
                "--node-proxy",
            ),
        ];
        for (args, want) in cases {
            let a = parse(args).unwrap();
            let e = config(&a, |_| None).unwrap_err().to_string();
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
    }
}
