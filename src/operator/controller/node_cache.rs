//! The node inventory of the controller: listed in pages, converted page by page into the
//! small [`NodeInfo`] (no Node object is kept), and refreshed by one request at a time.
//!
//! A cluster can have thousands of Nodes of ~12 KB each (labels, capacity, image lists): an
//! unpaginated LIST of them is tens of MB of JSON, and every reconcile that missed the cache
//! used to make its own. Here a refresh reads pages of [`PAGE_SIZE`] and keeps only what
//! planning needs, and concurrent callers share one refresh ([`NodeCache::get`]).

use crate::operator::nodes::{NodeInfo, NodeInventory};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nodes per page of the LIST.
pub const PAGE_SIZE: u32 = 500;

/// How often a paged list starts over when its continue token expired (410 Gone) before
/// the error is returned.
const EXPIRED_RESTARTS: usize = 2;

/// Every node, as [`NodeInfo`], read in pages of [`PAGE_SIZE`]: at most one page of Node
/// objects is in memory at a time. A continue token that expired (410, the list took longer
/// than the server keeps its snapshot) starts the list over, at most [`EXPIRED_RESTARTS`]
/// times.
pub async fn list_node_infos(client: Client) -> Result<Vec<NodeInfo>, kube::Error> {
    let api: Api<Node> = Api::all(client);
    let mut restarts = 0;
    'list: loop {
        let mut out = Vec::new();
        let mut lp = ListParams::default().limit(PAGE_SIZE);
        loop {
            let page = match api.list(&lp).await {
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
            out.extend(page.items.iter().map(NodeInfo::from_node));
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
