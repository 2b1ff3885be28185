//! Memory of the controller's node inventory (issue 13, scale: peak RSS <= 150 MiB with 5,000
//! AKS-size Nodes), in-process, without a cluster.
//!
//! The parent process generates 5,000 Node objects as bench/scale_nodes.py creates them
//! (~13.9 KB of JSON each: 27 labels, capacity, conditions, addresses, nodeInfo, 50 images) and
//! serves them on 127.0.0.1 as the API server does (`GET /api/v1/nodes?limit=&continue=`).
//! Each variant then runs in a child process of its own (RSS is per process): it makes a kube
//! client to that server and refreshes the inventory four times the way `NodeCache` does (the
//! previous inventory stays alive while the next is listed), and reports the heap it holds
//! (counting allocator: live bytes and the high-water mark) and its VmRSS / VmHWM.
//!
//!     cargo bench --locked --bench node_list                     # every variant
//!     cargo bench --locked --bench node_list -- --nodes 2000     # fewer nodes
//!
//! Variants: `full-500` lists as the controller did before (k8s-openapi `Node` pages of 500,
//! then `NodeInfo::from_node`, whose labels are not interned); `lib-<N>` is what the library
//! does now (`node_cache::list_node_infos_paged` with pages of N: `ListedNode`, interned
//! labels). It prints numbers; it asserts nothing.

use k8s_openapi::api::core::v1::Node;
use regcheck::operator::controller::node_cache;
use regcheck::operator::nodes::{NodeInfo, NodeInventory};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Counting allocator: live bytes and the high-water mark (benches/common/counting.rs).

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

const MIB: f64 = 1024.0 * 1024.0;

fn mib(b: usize) -> f64 {
    b as f64 / MIB
}

/// VmRSS and VmHWM of this process, in bytes.
fn rss() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

// ---------------------------------------------------------------------------------------------
// Nodes as bench/scale_nodes.py makes them.

const POOLS: usize = 50;
const ZONES: usize = 3;
const REGION: &str = "westeurope";
const LABEL: &str = "regcheck-scale";

fn node_name(i: usize) -> (String, String, String) {
    let (pool, zone) = (i % POOLS, (i / POOLS) % ZONES + 1);
    (
        format!("scale-pool-{pool:02}-z{zone}-{i:05}"),
        format!("pool-{pool:02}"),
        format!("{REGION}-{zone}"),
    )
}

/// Node `i`, as JSON (bench/scale_nodes.py `node`).
fn node(i: usize) -> Value {
    let (name, pool, zone) = node_name(i);
    let now = "2026-12-04T19:43:34Z";
    let digest = |k: usize| {
        format!(
            "{:016x}",
            ((i as u128 * 7919 + k as u128 * 104729) % (1u128 << 64)) as u64
        )
        .repeat(4)
    };
    let images: Vec<Value> = (0..50)
        .map(|k| {
            json!({"names": [
                format!("mcr.microsoft.com/aks/component-{k:02}@sha256:{}", digest(k)),
                format!("mcr.microsoft.com/aks/component-{k:02}:v1.{k}.{}-hotfix.2024", i % 7)],
                "sizeBytes": 10_000_000 + k * 1_234_567})
        })
        .collect();
    let labels = json!({
        LABEL: "true",
        "kubernetes.io/os": "linux", "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "beta.kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.azure.com/agentpool": pool, "agentpool": pool,
        "kubernetes.azure.com/cluster": "MC_rg-scale_aks-scale_westeurope",
        "kubernetes.azure.com/kubelet-identity-client-id": "00000000-0000-4000-8000-000000000000",
        "kubernetes.azure.com/mode": "user",
        "kubernetes.azure.com/node-image-version": "AKSUbuntu-2204gen2containerd-202410.09.0",
        "kubernetes.azure.com/os-sku": "Ubuntu", "kubernetes.azure.com/role": "agent",
        "kubernetes.azure.com/storageprofile": "managed",
        "kubernetes.azure.com/storagetier": "Premium_LRS",
        "node.kubernetes.io/instance-type": "Standard_D8ds_v5",
        "beta.kubernetes.io/instance-type": "Standard_D8ds_v5",
        "topology.kubernetes.io/region": REGION, "topology.kubernetes.io/zone": zone,
        "failure-domain.beta.kubernetes.io/region": REGION,
        "failure-domain.beta.kubernetes.io/zone": zone,
        "topology.disk.csi.azure.com/zone": zone,
        "storageprofile": "managed", "storagetier": "Premium_LRS",
    });
    let cond = |t: &str, s: &str, r: &str, m: &str| {
        json!({"type": t, "status": s, "reason": r, "message": m,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let cap = json!({"cpu": "8", "memory": "32863332Ki", "pods": "110",
        "ephemeral-storage": "129886128Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
        "attachable-volumes-azure-disk": "16"});
    let mut alloc = cap.clone();
    alloc["cpu"] = "7820m".into();
    alloc["memory"] = "28292964Ki".into();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            "csi.volume.kubernetes.io/nodeid":
                json!({"disk.csi.azure.com": name, "file.csi.azure.com": name}).to_string()}},
        "spec": {
            "providerID": format!("azure:///subscriptions/0000/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-{pool}-vmss/virtualMachines/{i}"),
            "podCIDR": format!("10.{}.{}.0/24", 200 + i / 65536, (i / 256) % 256),
            "taints": [{"key": LABEL, "value": "true", "effect": "NoSchedule"}]},
        "status": {
            "capacity": cap, "allocatable": alloc,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                     "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure",
                     "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID",
                     "kubelet has sufficient PID available"),
                cond("Ready", if i.is_multiple_of(3) { "True" } else { "False" }, "KubeletReady",
                     "kubelet is posting ready status. AppArmor enabled"),
            ],
            "addresses": [{"type": "InternalIP", "address": format!("10.224.{}.{}", i / 250, i % 250 + 4)},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": format!("{i:032x}"),
                "systemUUID": format!("{i:08x}-0000-4000-8000-000000000000"),
                "bootID": format!("{i:08x}-1111-4000-8000-000000000000"),
                "kernelVersion": "5.15.0-1073-azure", "osImage": "Ubuntu 22.04.5 LTS",
                "containerRuntimeVersion": "containerd://1.7.22-1", "kubeletVersion": "v1.30.5",
                "kubeProxyVersion": "v1.30.5", "operatingSystem": "linux",
                "architecture": "amd64"},
            "images": images,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// The API server: pages of the pre-serialized nodes.

fn query(uri: &hyper::Uri, key: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn serve(listener: tokio::net::TcpListener, items: Arc<Vec<String>>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let items = items.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                move |req: hyper::Request<hyper::body::Incoming>| {
                    let items = items.clone();
                    async move {
                        let uri = req.uri();
                        if uri.path() != "/api/v1/nodes" {
                            let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
                            return Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            );
                        }
                        let limit = query(uri, "limit")
                            .and_then(|l| l.parse().ok())
                            .unwrap_or(items.len());
                        let start: usize = query(uri, "continue")
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0);
                        let end = (start + limit).min(items.len());
                        let cont = if end < items.len() {
                            end.to_string()
                        } else {
                            String::new()
                        };
                        let mut body = format!(
                            r#"{{"kind":"NodeList","apiVersion":"v1","metadata":{{"resourceVersion":"1","continue":"{cont}"}},"items":["#
                        );
                        for (k, it) in items[start..end].iter().enumerate() {
                            if k > 0 {
                                body.push(',');
                            }
                            body.push_str(it);
                        }
                        body.push_str("]}");
                        Ok(hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap())
                    }
                },
            );
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Variants (run in a child process each).

/// The controller before this bench: pages of k8s-openapi `Node` objects, then `from_node`.
async fn list_full(client: kube::Client, page: u32) -> Vec<NodeInfo> {
    let api: kube::Api<Node> = kube::Api::all(client);
    let mut out = Vec::new();
    let mut lp = kube::api::ListParams::default().limit(page);
    loop {
        let p = api.list(&lp).await.expect("list");
        out.extend(p.items.iter().map(NodeInfo::from_node));
        match p.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(t) => lp = lp.continue_token(&t),
            None => return out,
        }
    }
}

async fn child(url: &str, variant: &str, refreshes: usize) {
    let client = kube::Client::try_from(kube::Config::new(url.parse().expect("url"))).unwrap();
    let (kind, page) = variant.split_once('-').expect("variant kind-page");
    let page: u32 = page.parse().expect("page size");
    let (rss_before, _) = rss();
    let live_before = counting::reset_peak();
    let mut current: Option<Arc<NodeInventory>> = None;
    let mut nodes = 0;
    let started = Instant::now();
    for _ in 0..refreshes {
        let infos = match kind {
            "full" => list_full(client.clone(), page).await,
            "lib" => node_cache::list_node_infos_paged(client.clone(), page)
                .await
                .expect("list"),
            other => panic!("unknown variant {other}"),
        };
        nodes = infos.len();
        // As NodeCache: the new inventory replaces the old one, which callers may still hold.
        let next = Arc::new(NodeInventory::new(infos));
        let _previous = current.replace(next);
    }
    let secs = started.elapsed().as_secs_f64() / refreshes as f64;
    let live_after = counting::live() - live_before;
    let peak = counting::peak() - live_before;
    let (rss_after, hwm) = rss();
    let inv_heap = {
        // The heap one inventory holds: drop it and see what goes.
        let before = counting::live();
        drop(current.take());
        before - counting::live()
    };
    println!(
        "{}",
        json!({"variant": variant, "nodes": nodes, "refreshes": refreshes,
               "inventory_heap": inv_heap, "live_after": live_after, "peak_live": peak,
               "rss_before": rss_before, "rss_after": rss_after, "hwm": hwm,
               "s_per_refresh": secs})
    );
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let (Some(url), Some(variant)) = (arg("--url"), arg("--variant")) {
        let refreshes = arg("--refreshes").and_then(|r| r.parse().ok()).unwrap_or(4);
        rt.block_on(child(&url, &variant, refreshes));
        return;
    }
    let n: usize = arg("--nodes").and_then(|n| n.parse().ok()).unwrap_or(5000);
    let items: Vec<String> = (0..n).map(|i| node(i).to_string()).collect();
    let bytes: usize = items.iter().map(String::len).sum();
    println!(
        "node_list bench: {n} nodes, {} bytes of JSON each on average ({:.1} MiB unpaginated); 4 refreshes per variant, each in its own process",
        bytes / n.max(1),
        mib(bytes)
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(serve(listener, Arc::new(items)));
    let variants: Vec<String> = match arg("--variant") {
        Some(v) => vec![v],
        None => ["full-500", "lib-500", "lib-250", "lib-100"]
            .map(String::from)
            .to_vec(),
    };
    println!(
        "{:<10} {:>14} {:>14} {:>14} {:>12} {:>12} {:>10}",
        "variant",
        "inventory MiB",
        "peak live MiB",
        "live after MiB",
        "RSS after",
        "VmHWM",
        "s/refresh"
    );
    for v in variants {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--url", &url, "--variant", &v])
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("child");
        let line = String::from_utf8_lossy(&out.stdout);
        let Ok(r) = serde_json::from_str::<Value>(line.trim()) else {
            println!("{v}: child failed: {line}");
            continue;
        };
        let m = |k: &str| mib(r[k].as_u64().unwrap_or(0) as usize);
        println!(
            "{:<10} {:>14.2} {:>14.2} {:>14.2} {:>12.2} {:>12.2} {:>10.3}",
            v,
            m("inventory_heap"),
            m("peak_live"),
            m("live_after"),
            m("rss_after"),
            m("hwm"),
            r["s_per_refresh"].as_f64().unwrap_or(0.0)
        );
    }
}
