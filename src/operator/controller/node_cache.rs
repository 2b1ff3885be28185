//! The node inventory of the controller: listed in pages, each page decoded straight into the
//! small [`NodeInfo`] (no Node object is built), and refreshed by one request at a time.
//!
//! A cluster can have thousands of Nodes of ~12 KB each (labels, capacity, image lists): an
//! unpaginated LIST of them is tens of MB of JSON, and every reconcile that missed the cache
//! used to make its own. Here a refresh reads pages of [`PAGE_SIZE`], decodes of each node only
//! what planning needs ([`ListedNode`]; the image lists and the rest are skipped by the
//! decoder), shares label strings between nodes ([`Interner`]), and concurrent callers share
//! one refresh ([`NodeCache::get`]).

use crate::operator::nodes::{Interner, ListedNode, NodeInfo, NodeInventory};
use kube::Client;
use kube::api::ListParams;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nodes per page of the LIST: ~3.5 MB of JSON with AKS-size nodes (the body is held twice
/// while kube's client reads it); 500 peaked ~8 MiB higher in `cargo bench --bench node_list`.
pub const PAGE_SIZE: u32 = 250;

/// A page of `GET /api/v1/nodes`, decoded into only what planning reads.
#[derive(serde::Deserialize)]
struct NodePage {
    #[serde(default)]
    metadata: PageMeta,
    #[serde(default)]
    items: Vec<ListedNode>,
}

#[derive(Default, serde::Deserialize)]
struct PageMeta {
    #[serde(default, rename = "continue")]
    continue_: Option<String>,
}

/// One page of the node list.
async fn list_page(client: &Client, lp: &ListParams) -> Result<NodePage, kube::Error> {
    let req = kube::core::Request::new("/api/v1/nodes")
        .list(lp)
        .map_err(kube::Error::BuildRequest)?;
    client.request::<NodePage>(req).await
}

/// How often a paged list starts over when its continue token expired (410 Gone) before
/// the error is returned.
const EXPIRED_RESTARTS: usize = 2;

/// Every node, as [`NodeInfo`], read in pages of [`PAGE_SIZE`]: at most one page of JSON is
/// in memory at a time, and of it only the fields of [`ListedNode`] are decoded. A continue token that expired (410, the list took longer
/// than the server keeps its snapshot) starts the list over, at most [`EXPIRED_RESTARTS`]
/// times.
pub async fn list_node_infos(client: Client) -> Result<Vec<NodeInfo>, kube::Error> {
    list_node_infos_paged(client, PAGE_SIZE).await
}

/// [`list_node_infos`] with pages of `page_size` nodes.
pub async fn list_node_infos_paged(
    client: Client,
    page_size: u32,
) -> Result<Vec<NodeInfo>, kube::Error> {
    let mut restarts = 0;
    'list: loop {
        let mut out = Vec::new();
        let mut interner = Interner::default();
        let mut lp = ListParams::default().limit(page_size);
        loop {
            let page = match list_page(&client, &lp).await {
                Ok(p) => p,
                Err(kube::Error::Api(s))
                    if s.code == 410
                        && lp.continue_token.is_some()
                        && restarts < EXPIRED_RESTARTS =>
                {
                    restarts += 1;
                    continue 'list;
                }
                Err(e) => return Err(e),
            };
            out.extend(
                page.items
                    .into_iter()
                    .map(|n| NodeInfo::from_listed(n, &mut interner)),
            );
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp = lp.continue_token(&token),
                None => return Ok(out),
            }
        }
    }
}

/// The last inventory and its refresh number.
struct Latest {
    refresh: u64,
    at: Instant,
    inventory: Arc<NodeInventory>,
}

/// A node inventory reused for `ttl`, refreshed single-flight: while one caller lists, the
/// others wait for its result instead of listing too (even with a zero `ttl`, callers that
/// waited for a refresh take its result).
pub struct NodeCache {
    ttl: Duration,
    /// Platforms of the probe image: the inventory skips nodes of other architectures.
    platforms: crate::operator::platform::Platforms,
    latest: std::sync::Mutex<Option<Latest>>,
    /// Held for the duration of a refresh.
    refreshing: tokio::sync::Mutex<()>,
}

impl NodeCache {
    pub fn new(ttl: Duration, platforms: crate::operator::platform::Platforms) -> Self {
        Self {
            ttl,
            platforms,
            latest: std::sync::Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The refresh number and the inventory when it is younger than the TTL.
    fn peek(&self) -> (u64, Option<Arc<NodeInventory>>) {
        let Ok(l) = self.latest.lock() else {
            return (0, None);
        };
        match l.as_ref() {
            None => (0, None),
            Some(l) => {
                let fresh = !self.ttl.is_zero() && l.at.elapsed() < self.ttl;
                (l.refresh, fresh.then(|| l.inventory.clone()))
            }
        }
    }

    /// The inventory: the cached one while fresh; else the result of the refresh in flight
    /// (if one finished while this caller waited), else a new refresh with `list`.
    pub async fn get<F, Fut, E>(&self, list: F) -> Result<Arc<NodeInventory>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<NodeInfo>, E>>,
    {
        let (seen, fresh) = self.peek();
        if let Some(inv) = fresh {
            return Ok(inv);
        }
        let _turn = self.refreshing.lock().await;
        if let Ok(l) = self.latest.lock()
            && let Some(l) = l.as_ref()
            && l.refresh > seen
        {
            // Another caller refreshed while this one waited: its result serves both.
            return Ok(l.inventory.clone());
        }
        let inventory = Arc::new(NodeInventory::with_platforms(
            list().await?,
            self.platforms.clone(),
        ));
        if let Ok(mut l) = self.latest.lock() {
            let refresh = l.as_ref().map_or(0, |l| l.refresh) + 1;
            *l = Some(Latest {
                refresh,
                at: Instant::now(),
                inventory: inventory.clone(),
            });
        }
        Ok(inventory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn infos(n: usize) -> Vec<NodeInfo> {
        (0..n)
            .map(|i| NodeInfo {
                name: format!("n{i}"),
                ..Default::default()
            })
            .collect()
    }

    /// Concurrent callers that miss the cache share one refresh, also with a zero TTL.
    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        for ttl in [Duration::ZERO, Duration::from_secs(60)] {
            let cache = Arc::new(NodeCache::new(ttl, Default::default()));
            let lists = Arc::new(AtomicUsize::new(0));
            let gate = Arc::new(tokio::sync::Notify::new());
            let mut tasks = Vec::new();
            for _ in 0..20 {
                let (cache, lists, gate) = (cache.clone(), lists.clone(), gate.clone());
                tasks.push(tokio::spawn(async move {
                    cache
                        .get(|| async move {
                            lists.fetch_add(1, Ordering::SeqCst);
                            // Slow list: every other caller arrives meanwhile.
                            gate.notified().await;
                            Ok::<_, ()>(infos(3))
                        })
                        .await
                }));
            }
            // Let every task reach the cache, then finish the one list.
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            gate.notify_one();
            for t in tasks {
                let inv = t.await.unwrap().unwrap();
                assert_eq!(inv.len(), 3);
            }
            assert_eq!(lists.load(Ordering::SeqCst), 1, "ttl {ttl:?}");
        }
    }

    const AKS_NODE: &str = include_str!("testdata/aks-node.json");

    /// A page of listed nodes gives exactly the [`NodeInfo`] that the full k8s-openapi `Node`
    /// gives, for a realistic AKS node (bench/scale_nodes.py: 25 labels, 50 images, capacity,
    /// managed fields, a taint with `timeAdded`) and for the fields planning reads changed,
    /// null or absent.
    #[test]
    fn a_listed_node_is_the_node_info_of_the_full_node() {
        use k8s_openapi::api::core::v1::Node;
        use serde_json::{Value, json};
        let base: Value = serde_json::from_str(AKS_NODE).unwrap();
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut v = base.clone();
            f(&mut v);
            v
        };
        let cases: Vec<(&str, Value)> = vec![
            ("aks", base.clone()),
            (
                "cordoned",
                edit(&|v| v["spec"]["unschedulable"] = json!(true)),
            ),
            (
                "not ready",
                edit(&|v| v["status"]["conditions"][3]["status"] = "False".into()),
            ),
            (
                "ready unknown",
                edit(&|v| v["status"]["conditions"][3]["status"] = "Unknown".into()),
            ),
            (
                "no conditions",
                edit(&|v| v["status"]["conditions"] = Value::Null),
            ),
            (
                "labels null",
                edit(&|v| v["metadata"]["labels"] = Value::Null),
            ),
            (
                "no labels",
                edit(&|v| {
                    v["metadata"].as_object_mut().unwrap().remove("labels");
                }),
            ),
            (
                "no arch label, status arch",
                edit(&|v| {
                    let l = v["metadata"]["labels"].as_object_mut().unwrap();
                    l.remove("kubernetes.io/arch");
                    l.remove("beta.kubernetes.io/arch");
                    v["status"]["nodeInfo"]["architecture"] = "arm64".into();
                }),
            ),
            (
                "empty status arch",
                edit(&|v| v["status"]["nodeInfo"]["architecture"] = "".into()),
            ),
            (
                "windows",
                edit(&|v| v["metadata"]["labels"]["kubernetes.io/os"] = "windows".into()),
            ),
            ("no taints", edit(&|v| v["spec"]["taints"] = Value::Null)),
            (
                "no spec",
                edit(&|v| {
                    v.as_object_mut().unwrap().remove("spec");
                }),
            ),
            (
                "no status",
                edit(&|v| {
                    v.as_object_mut().unwrap().remove("status");
                }),
            ),
        ];
        for (name, v) in &cases {
            let full: Node = serde_json::from_value(v.clone()).unwrap();
            let listed: ListedNode = serde_json::from_value(v.clone()).unwrap();
            let want = NodeInfo::from_node(&full);
            let got = NodeInfo::from_listed(listed, &mut Interner::default());
            assert_eq!(got, want, "{name}");
        }
        // And what that is for the AKS node.
        let got = NodeInfo::from_listed(
            serde_json::from_value(base.clone()).unwrap(),
            &mut Interner::default(),
        );
        assert_eq!(got.name, "scale-pool-07-z1-00007");
        assert_eq!(got.labels.len(), 25);
        assert_eq!(got.pool(), Some("pool-07"));
        assert_eq!(got.zone(), Some("westeurope-1"));
        assert_eq!(got.arch(), Some("amd64"));
        assert!(got.ready && !got.unschedulable && got.is_linux());
        let taints: Vec<(&str, &str)> = got
            .taints
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            taints,
            [
                ("regcheck-scale", "NoSchedule"),
                ("node.kubernetes.io/unreachable", "NoExecute")
            ]
        );
        assert!(got.taints[1].time_added.is_some());
    }

    /// A page as the API server sends it: the continue token, and every item.
    #[test]
    fn a_node_page_decodes_its_continue_token_and_items() {
        let page = format!(
            r#"{{"kind":"NodeList","apiVersion":"v1","metadata":{{"resourceVersion":"9","continue":"tok"}},"items":[{AKS_NODE},{AKS_NODE}]}}"#
        );
        let p: NodePage = serde_json::from_str(&page).unwrap();
        assert_eq!(p.metadata.continue_.as_deref(), Some("tok"));
        assert_eq!(p.items.len(), 2);
        let last: NodePage =
            serde_json::from_str(r#"{"kind":"NodeList","metadata":{},"items":[]}"#).unwrap();
        assert_eq!((last.metadata.continue_, last.items.len()), (None, 0));
    }

    #[tokio::test]
    async fn zero_ttl_lists_again_for_a_later_caller_and_errors_are_not_cached() {
        let cache = NodeCache::new(Duration::ZERO, Default::default());
        let a = cache.get(|| async { Ok::<_, ()>(infos(1)) }).await.unwrap();
        let b = cache.get(|| async { Ok::<_, ()>(infos(2)) }).await.unwrap();
        assert_eq!((a.len(), b.len()), (1, 2));
        assert!(
            cache
                .get(|| async { Err::<Vec<NodeInfo>, _>("down") })
                .await
                .is_err()
        );
        let c = cache.get(|| async { Ok::<_, ()>(infos(4)) }).await.unwrap();
        assert_eq!(c.len(), 4);

        let cache = NodeCache::new(Duration::from_secs(60), Default::default());
        cache.get(|| async { Ok::<_, ()>(infos(1)) }).await.unwrap();
        let again = cache.get(|| async { Ok::<_, ()>(infos(5)) }).await.unwrap();
        assert_eq!(again.len(), 1, "fresh within the TTL");
    }
}
