//! Controller work at scale, in-process (issue 7, item 4): planning, probe Job building and
//! aggregation for 1,000 checks over a 5,000-node inventory (50 node pools x 3 zones), and the
//! memory of the node inventory.
//!
//! A hand-rolled harness (no criterion: one less dependency to build on a shared 2-core box):
//! each measurement runs a fixed number of samples after one warm-up and prints
//! mean / median / stddev / min / max. Memory comes from a counting global allocator.
//!
//!     cargo bench --bench controller                 # full run
//!     cargo bench --bench controller -- --quick      # fewer samples
//!
//! It prints numbers; it asserts nothing about time.

use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use regcheck::engine::findings::Report;
use regcheck::operator::aggregate::{self, ProbeOutcome, ProbeRecord};
use regcheck::operator::crd::{
    ProbeContext, RegistryConnectivityCheck, RegistryConnectivityCheckSpec,
    RegistryConnectivityCheckStatus, RunInfo, Strategy,
};
use regcheck::operator::jobs::{self, ProbeJob};
use regcheck::operator::nodes::{self, NodeInfo, NodeInventory, Target};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Counting allocator: live bytes and the high-water mark (benches/common/counting.rs).

#[path = "common/counting.rs"]
mod counting;
use counting::live;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

/// Heap bytes that `make` leaves alive (the value is returned so that it stays alive).
fn heap_of<T>(make: impl FnOnce() -> T) -> (T, usize) {
    let before = live();
    let v = make();
    let after = live();
    (v, after.saturating_sub(before))
}

/// Peak extra heap while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = counting::reset_peak();
    let v = f();
    (v, counting::peak().saturating_sub(base))
}

// ---------------------------------------------------------------------------------------------
// Harness

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }
    fn print(&self, name: &str, per: Option<(&str, usize)>) {
        let mut v: Vec<f64> = self.samples.iter().map(|d| Self::ms(*d)).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        println!(
            "{name:<58} n={:<3} mean {mean:>9.3} ms  median {median:>9.3} ms  stddev {:>8.3} ms  min {:>9.3}  max {:>9.3}",
            v.len(),
            var.sqrt(),
            v[0],
            v[v.len() - 1]
        );
        if let Some((unit, count)) = per {
            println!(
                "{:<58}       = {:.2} µs per {unit} (median / {count})",
                "",
                median * 1e3 / count as f64
            );
        }
    }
}

fn bench<T>(samples: usize, mut f: impl FnMut() -> T) -> Stats {
    black_box(f()); // warm-up
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        black_box(f());
        out.push(t.elapsed());
    }
    Stats { samples: out }
}

// ---------------------------------------------------------------------------------------------
// Inventory

const POOLS: usize = 50;
const ZONES: usize = 3;
const NODES: usize = 5_000;
const CHECKS: usize = 1_000;

/// Labels of an AKS node (what `kubectl get node -o yaml` shows on a current cluster).
fn aks_labels(name: &str, pool: &str, zone: &str) -> BTreeMap<String, String> {
    let pairs: [(&str, String); 22] = [
        ("agentpool", pool.into()),
        ("beta.kubernetes.io/arch", "amd64".into()),
        (
            "beta.kubernetes.io/instance-type",
            "Standard_D4ds_v5".into(),
        ),
        ("beta.kubernetes.io/os", "linux".into()),
        (
            "failure-domain.beta.kubernetes.io/region",
            "westeurope".into(),
        ),
        ("failure-domain.beta.kubernetes.io/zone", zone.into()),
        ("kubernetes.azure.com/agentpool", pool.into()),
        (
            "kubernetes.azure.com/cluster",
            "MC_rg-prod_aks-prod_westeurope".into(),
        ),
        (
            "kubernetes.azure.com/consolidated-additional-properties",
            "4f1e2d3c-5b6a-7980-a1b2-c3d4e5f60718".into(),
        ),
        (
            "kubernetes.azure.com/kubelet-identity-client-id",
            "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into(),
        ),
        ("kubernetes.azure.com/mode", "user".into()),
        (
            "kubernetes.azure.com/node-image-version",
            "AKSUbuntu-2204gen2containerd-202501.12.0".into(),
        ),
        (
            "kubernetes.azure.com/nodepool-type",
            "VirtualMachineScaleSets".into(),
        ),
        ("kubernetes.azure.com/os-sku", "Ubuntu".into()),
        ("kubernetes.azure.com/role", "agent".into()),
        ("kubernetes.io/arch", "amd64".into()),
        ("kubernetes.io/hostname", name.into()),
        ("kubernetes.io/os", "linux".into()),
        (
            "node.kubernetes.io/instance-type",
            "Standard_D4ds_v5".into(),
        ),
        ("storageprofile", "managed".into()),
        ("topology.kubernetes.io/region", "westeurope".into()),
        (nodes::ZONE_LABEL, zone.into()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn node_name(i: usize) -> (String, String, String) {
    let pool = format!("pool{:02}", i % POOLS);
    let zone = format!("westeurope-{}", (i / POOLS) % ZONES + 1);
    let name = format!("aks-{pool}-12345678-vmss{:06x}", i);
    (name, pool, zone)
}

/// The k8s Node objects an unfiltered watch would cache (no `status.images`, which real nodes
/// also carry and which would make them several times larger).
fn nodes_full() -> Vec<Node> {
    let q = |s: &str| Quantity(s.into());
    (0..NODES)
        .map(|i| {
            let (name, pool, zone) = node_name(i);
            let resources: BTreeMap<String, Quantity> = [
                ("cpu", "4"),
                ("ephemeral-storage", "129886128Ki"),
                ("hugepages-1Gi", "0"),
                ("hugepages-2Mi", "0"),
                ("memory", "16373320Ki"),
                ("pods", "110"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), q(v)))
            .collect();
            let cond = |t: &str, s: &str, reason: &str| NodeCondition {
                type_: t.into(),
                status: s.into(),
                reason: Some(reason.into()),
                message: Some(format!("kubelet reports {t} {s}")),
                last_heartbeat_time: None,
                last_transition_time: None,
            };
            // Every 20th node of a pool carries a taint; every 100th is cordoned.
            let taints = (i % 20 == 7).then(|| {
                vec![Taint {
                    key: "sku".into(),
                    value: Some("gpu".into()),
                    effect: "NoSchedule".into(),
                    time_added: None,
                }]
            });
            Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    uid: Some(format!("6a1d2c3b-0000-4000-8000-{i:012}")),
                    resource_version: Some(format!("{}", 1_000_000 + i)),
                    labels: Some(aks_labels(&name, &pool, &zone)),
                    annotations: Some(
                        [
                            ("node.alpha.kubernetes.io/ttl", "0"),
                            ("volumes.kubernetes.io/controller-managed-attach-detach", "true"),
                        ]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ),
                    ..Default::default()
                },
                spec: Some(NodeSpec {
                    pod_cidr: Some(format!("10.244.{}.0/24", i % 250)),
                    provider_id: Some(format!("azure:///subscriptions/0000/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-{pool}-12345678-vmss/virtualMachines/{i}")),
                    taints,
                    unschedulable: (i % 100 == 42).then_some(true),
                    ..Default::default()
                }),
                status: Some(NodeStatus {
                    addresses: Some(vec![
                        NodeAddress {
                            type_: "InternalIP".into(),
                            address: format!("10.224.{}.{}", i / 250, i % 250 + 4),
                        },
                        NodeAddress {
                            type_: "Hostname".into(),
                            address: name.clone(),
                        },
                    ]),
                    allocatable: Some(resources.clone()),
                    capacity: Some(resources),
                    conditions: Some(vec![
                        cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                        cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                        cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                        cond("Ready", if i % 250 == 99 { "False" } else { "True" }, "KubeletReady"),
                    ]),
                    node_info: Some(NodeSystemInfo {
                        architecture: "amd64".into(),
                        boot_id: format!("b00t-{i}"),
                        container_runtime_version: "containerd://1.7.25-1".into(),
                        kernel_version: "5.15.0-1079-azure".into(),
                        kube_proxy_version: "v1.31.5".into(),
                        kubelet_version: "v1.31.5".into(),
                        machine_id: format!("{i:032x}"),
                        operating_system: "linux".into(),
                        os_image: "Ubuntu 22.04.5 LTS".into(),
                        system_uuid: format!("{i:032x}"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Checks and reports

fn checks() -> Vec<RegistryConnectivityCheck> {
    (0..CHECKS)
        .map(|i| {
            // Most checks use the defaults; every 10th tolerates the gpu taint, every 25th has
            // a node selector on a pool, every 50th samples 10 nodes.
            let mut node = serde_json::json!({});
            if i % 10 == 3 {
                node["tolerations"] = serde_json::json!([{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
            }
            if i % 25 == 5 {
                node["nodeSelector"] =
                    serde_json::json!({"kubernetes.azure.com/agentpool": format!("pool{:02}", i % POOLS)});
            }
            if i % 50 == 17 {
                node["strategy"] = "Sample".into();
                node["count"] = 10.into();
            }
            let spec: RegistryConnectivityCheckSpec = serde_json::from_value(serde_json::json!({
                "registry": format!("team{i:04}.azurecr.io"),
                "regions": ["westeurope"],
                "image": "library/app:v1",
                "contexts": {"node": node},
            }))
            .expect("bench spec parses");
            let mut c = RegistryConnectivityCheck::new(&format!("check-{i:04}"), spec);
            c.metadata.namespace = Some(format!("team-{:03}", i % 200));
            c.metadata.uid = Some(format!("3f0c1d2e-0000-4000-8000-{i:012}"));
            c.metadata.generation = Some(1);
            c
        })
        .collect()
}

/// A real healthy report (`regcheck check --output json` in the lab, see
/// benches/data/README.md), as its compact termination message.
fn healthy_message() -> String {
    let full = include_str!("data/healthy-report.json");
    let report: Report = serde_json::from_str(full).expect("fixture is a report");
    regcheck::engine::report::to_compact_json(&report)
}

fn failing_message() -> String {
    let full = include_str!("data/data-drop-report.json");
    let report: Report = serde_json::from_str(full).expect("fixture is a report");
    regcheck::engine::report::to_compact_json(&report)
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_750_000_000).expect("valid time"))
}

fn main() {
    // `cargo bench` passes `--bench`; ignore everything but --quick.
    let quick = std::env::args().any(|a| a == "--quick");
    let (plan_samples, job_samples, agg_samples) = if quick { (3, 2, 3) } else { (20, 5, 20) };

    println!(
        "controller bench: {CHECKS} checks, {NODES} nodes = {POOLS} pools x {ZONES} zones; {} cores; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if quick { "quick" } else { "full" }
    );

    // ---- inventory memory
    let (full, full_bytes) = heap_of(nodes_full);
    let (infos, info_bytes) = heap_of(|| full.iter().map(NodeInfo::from_node).collect::<Vec<_>>());
    println!();
    println!("memory (heap bytes live, counting allocator):");
    println!(
        "  Vec<Node> ({NODES} full Node objects, no status.images)    {:>12} B = {:>7.2} MiB ({:.0} B/node)",
        full_bytes,
        full_bytes as f64 / 1048576.0,
        full_bytes as f64 / NODES as f64
    );
    println!(
        "  Vec<NodeInfo> (planning inventory)                    {:>12} B = {:>7.2} MiB ({:.0} B/node)",
        info_bytes,
        info_bytes as f64 / 1048576.0,
        info_bytes as f64 / NODES as f64
    );
    let s = bench(plan_samples, || {
        full.iter().map(NodeInfo::from_node).collect::<Vec<_>>()
    });
    s.print("NodeInfo::from_node for 5,000 nodes", Some(("node", NODES)));
    drop(full);

    let checks = checks();
    let ctx_of = |c: &RegistryConnectivityCheck| c.spec.contexts.node.clone();

    // ---- planning
    println!();
    let mut plans: Vec<Vec<Target>> = Vec::new();
    // What the controller does: one inventory per node LIST (reused for NODE_CACHE_TTL),
    // groups cached per distinct node selector/tolerations, each check picking from them.
    let s = bench(plan_samples, || {
        let inv = NodeInventory::new(infos.clone());
        checks
            .iter()
            .map(|c| inv.plan(&ctx_of(c), 7))
            .collect::<Vec<_>>()
    });
    s.print(
        "NodeInventory::new + plan: one pass over 1,000 checks",
        Some(("check", CHECKS)),
    );
    let inv = NodeInventory::new(infos.clone());
    let s = bench(plan_samples, || NodeInventory::new(infos.clone()));
    s.print(
        "  of which NodeInventory::new (5,000 nodes, incl. clone)",
        None,
    );
    let s = bench(plan_samples, || {
        checks
            .iter()
            .map(|c| inv.plan(&ctx_of(c), 7))
            .collect::<Vec<_>>()
    });
    s.print(
        "  of which plan over a warm inventory, 1,000 checks",
        Some(("check", CHECKS)),
    );
    println!(
        "  distinct node selector/tolerations pairs cached: {}",
        inv.cached_contexts()
    );
    let ((), plan_peak) = peak_during(|| {
        let inv = NodeInventory::new(infos.clone());
        plans = checks.iter().map(|c| inv.plan(&ctx_of(c), 7)).collect();
    });
    assert!(
        checks
            .iter()
            .zip(&plans)
            .step_by(97)
            .all(|(c, p)| *p == nodes::plan_targets(&infos, &ctx_of(c), 7)),
        "the inventory plans what plan_targets plans"
    );
    let per_node_pool = plans
        .iter()
        .zip(&checks)
        .filter(|(_, c)| {
            c.spec.contexts.node.strategy == Strategy::PerNodePool
                && c.spec.contexts.node.node_selector.is_empty()
        })
        .map(|(p, _)| p.len())
        .collect::<Vec<_>>();
    let total_targets: usize = plans.iter().map(Vec::len).sum();
    let contexts = 2; // node and pod context both enabled (the default)
    println!(
        "  peak extra heap while planning all checks: {:.2} MiB",
        plan_peak as f64 / 1048576.0
    );
    println!(
        "  PerNodePool targets per check (no selector): min {} max {} (pools x zones = {}; + tainted/cordoned/not-ready nodes skipped)",
        per_node_pool.iter().min().unwrap_or(&0),
        per_node_pool.iter().max().unwrap_or(&0),
        POOLS * ZONES
    );
    println!(
        "  probe pods per run, default check (PerNodePool, node + pod context): {} = {} groups x {contexts} contexts (not {} nodes x {contexts})",
        per_node_pool.first().unwrap_or(&0) * contexts,
        per_node_pool.first().unwrap_or(&0),
        NODES
    );
    println!(
        "  all 1,000 checks, one run each: {total_targets} node targets -> {} probe Jobs",
        total_targets * contexts
    );

    // ---- job building
    println!();
    let image = "regcheck.example/regcheck:0.1.0";
    let valid: Vec<regcheck::operator::spec::ValidSpec> = checks
        .iter()
        .map(|c| regcheck::operator::spec::ValidSpec::parse(&c.spec).expect("a valid bench spec"))
        .collect();
    let build_all = |limit: usize| {
        let mut n = 0usize;
        for ((c, spec), targets) in checks.iter().zip(&valid).zip(&plans).take(limit) {
            for t in targets {
                for context in [ProbeContext::Node, ProbeContext::Pod] {
                    black_box(jobs::build_job(&ProbeJob {
                        check: c,
                        spec,
                        run_id: "r7x2k9",
                        context,
                        target: Some(t),
                        image,
                        operator_namespace: "regcheck-system",
                        node_addresses: &[],
                    }));
                    n += 1;
                }
            }
        }
        n
    };
    let jobs_one = build_all(1);
    let s = bench(agg_samples, || build_all(1));
    s.print(
        &format!("build_job: one check's run ({jobs_one} Jobs)"),
        Some(("Job", jobs_one)),
    );
    let jobs_all = build_all(CHECKS);
    let s = bench(job_samples, || build_all(CHECKS));
    s.print(
        &format!("build_job: all 1,000 checks' runs ({jobs_all} Jobs)"),
        Some(("Job", jobs_all)),
    );
    let one_job = jobs::build_job(&ProbeJob {
        check: &checks[0],
        spec: &valid[0],
        run_id: "r7x2k9",
        context: ProbeContext::Node,
        target: plans[0].first(),
        image,
        operator_namespace: "regcheck-system",
        node_addresses: &[],
    });
    println!(
        "  one node-context Job as JSON (what is POSTed): {} bytes",
        serde_json::to_vec(&one_job).map_or(0, |v| v.len())
    );

    // ---- aggregation
    println!();
    let healthy = healthy_message();
    let failing = failing_message();
    println!(
        "termination messages (compact JSON): healthy {} B, failing {} B",
        healthy.len(),
        failing.len()
    );
    let records_for = |targets: &[Target], failing_node: Option<usize>| -> Vec<ProbeRecord> {
        let mut out = Vec::with_capacity(targets.len() * 2);
        for (i, t) in targets.iter().enumerate() {
            for context in [ProbeContext::Node, ProbeContext::Pod] {
                let msg = if Some(i) == failing_node && context == ProbeContext::Pod {
                    &failing
                } else {
                    &healthy
                };
                let report = aggregate::parse_termination_message(msg).expect("fixture parses");
                out.push(ProbeRecord {
                    context,
                    target: Some(t.clone()),
                    outcome: ProbeOutcome::Report(Box::new(report)),
                });
            }
        }
        out
    };
    let first = &plans[0];
    let s = bench(agg_samples, || {
        for _ in 0..first.len() * 2 {
            black_box(aggregate::parse_termination_message(&healthy).expect("parses"));
        }
    });
    s.print(
        &format!(
            "parse_termination_message x {} (one check's run)",
            first.len() * 2
        ),
        Some(("message", first.len() * 2)),
    );
    let records_ok = records_for(first, None);
    let records_bad = records_for(first, Some(17));
    let spec = &checks[0].spec;
    let prev = RegistryConnectivityCheckStatus::default();
    let run = RunInfo {
        id: "r7x2k9".into(),
        start_time: Some(now()),
        completion_time: Some(now()),
        duration_ms: Some(4200),
    };
    let t = now();
    for (label, records) in [("healthy", &records_ok), ("1 pod failing", &records_bad)] {
        let s = bench(agg_samples, || {
            let summary = aggregate::aggregate(records);
            aggregate::next_status(&prev, spec, Some(1), &summary, run.clone(), &t)
        });
        s.print(
            &format!(
                "aggregate + next_status: one run, {} records, {label}",
                records.len()
            ),
            Some(("record", records.len())),
        );
    }
    let all_records: Vec<Vec<ProbeRecord>> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| records_for(p, (i % 10 == 0).then_some(3)))
        .collect();
    let n_records: usize = all_records.iter().map(Vec::len).sum();
    let s = bench(job_samples, || {
        for (c, records) in checks.iter().zip(&all_records) {
            let summary = aggregate::aggregate(records);
            black_box(aggregate::next_status(
                &prev,
                &c.spec,
                Some(1),
                &summary,
                run.clone(),
                &t,
            ));
        }
    });
    s.print(
        &format!("aggregate + next_status: all 1,000 checks ({n_records} records)"),
        Some(("check", CHECKS)),
    );
    let status = {
        let summary = aggregate::aggregate(&records_bad);
        aggregate::next_status(&prev, spec, Some(1), &summary, run, &t)
    };
    println!(
        "  status written for one check (JSON merge patch body): {} bytes",
        serde_json::to_vec(&serde_json::json!({"status": status})).map_or(0, |v| v.len())
    );
    black_box(&infos);
}
