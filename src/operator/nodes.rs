//! Run planning (pure): which nodes a run probes.
//!
//! Nodes are grouped by (node pool, zone): nodes of one pool share subnet, route table, NSG and
//! DNS settings, so one probe per group is representative, and "only pool X fails" is a
//! common real incident. Only Linux nodes that are Ready, schedulable, match the node selector
//! and tolerate the node's taints are candidates.

use crate::operator::crd::{NodeContext, Strategy};
use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Node-pool labels, most specific first: AKS, older AKS, EKS, GKE.
pub const POOL_LABELS: [&str; 4] = [
    "kubernetes.azure.com/agentpool",
    "agentpool",
    "eks.amazonaws.com/nodegroup",
    "cloud.google.com/gke-nodepool",
];
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const OS_LABEL: &str = "kubernetes.io/os";
/// Still set by old kubelets.
const BETA_OS_LABEL: &str = "beta.kubernetes.io/os";

/// A node's labels: (key, value) pairs sorted by key, each string shared ([`Interner`]) with
/// the other nodes of an inventory that carry it.
///
/// A cluster's nodes repeat the same keys and mostly the same values (27 labels on an AKS
/// node, most of them identical across a pool): as owned strings in a map per node they were
/// most of the inventory's heap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Labels(Box<[(Arc<str>, Arc<str>)]>);

impl Labels {
    /// From pairs in any order; a repeated key keeps its last value (as a map would).
    fn from_pairs(mut pairs: Vec<(Arc<str>, Arc<str>)>) -> Self {
        // Stable: of equal keys the last one inserted comes last.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(pairs.len());
        for p in pairs {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        Self(out.into_boxed_slice())
    }

    /// From a label map, each string interned in `interner`.
    pub fn interned<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        interner: &mut Interner,
    ) -> Self {
        Self::from_pairs(
            pairs
                .into_iter()
                .map(|(k, v)| (interner.intern(k), interner.intern(v)))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_pairs(
            iter.into_iter()
                .map(|(k, v)| (Arc::from(k.as_ref()), Arc::from(v.as_ref())))
                .collect(),
        )
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(m: BTreeMap<String, String>) -> Self {
        m.into_iter().collect()
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(a: [(String, String); N]) -> Self {
        a.into_iter().collect()
    }
}

/// One shared copy of each distinct string (label keys and values) of an inventory.
#[derive(Debug, Default)]
pub struct Interner(std::collections::HashSet<Arc<str>>);

impl Interner {
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(a.clone());
        a
    }
}

/// A Node as listed (`GET /api/v1/nodes`), decoded into only the fields [`NodeInfo`] takes:
/// everything else (images, capacity, annotations, managed fields, addresses, ...) is skipped
/// by the decoder without being kept. Absent or null fields decode as empty.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ListedNode {
    metadata: ListedMeta,
    spec: Option<ListedSpec>,
    status: Option<ListedStatus>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ListedMeta {
    name: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ListedSpec {
    taints: Option<Vec<Taint>>,
    unschedulable: Option<bool>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ListedStatus {
    conditions: Option<Vec<ListedCondition>>,
    node_info: Option<ListedSystemInfo>,
    addresses: Option<Vec<ListedAddress>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ListedAddress {
    #[serde(rename = "type")]
    type_: Option<String>,
    address: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ListedCondition {
    #[serde(rename = "type")]
    type_: Option<String>,
    status: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ListedSystemInfo {
    architecture: Option<String>,
}

/// What planning needs to know about a node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    /// `status.nodeInfo.architecture`, used when the node has no `kubernetes.io/arch` label.
    pub status_arch: Option<String>,
    /// The node's own IP addresses (`status.addresses` of type InternalIP and ExternalIP, both
    /// families, at most [`MAX_NODE_ADDRESSES`]): probes never dial them.
    pub addresses: Vec<IpAddr>,
}

/// Most addresses kept per node (the probe takes at most 16 with the downward API's).
pub const MAX_NODE_ADDRESSES: usize = 8;

/// A node's InternalIP and ExternalIP addresses of both families, once each, in the order
/// the node gives them. Host names and unparsable entries are ignored.
pub fn node_addresses(node: &Node) -> Vec<IpAddr> {
    own_addresses(
        node.status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .map(|a| (a.type_.as_str(), a.address.as_str())),
    )
}

/// The InternalIP and ExternalIP addresses of `(type, address)` pairs, deduplicated, at most
/// [`MAX_NODE_ADDRESSES`].
fn own_addresses<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for (_, a) in pairs.filter(|(t, _)| *t == "InternalIP" || *t == "ExternalIP") {
        if let Ok(ip) = a.trim().parse::<IpAddr>()
            && !out.contains(&ip)
            && out.len() < MAX_NODE_ADDRESSES
        {
            out.push(ip);
        }
    }
    out
}

/// Label and taint that mark virtual-kubelet nodes (ACI virtual nodes, ...): no kubelet, no
/// containerd, no host network to probe from.
pub const VIRTUAL_KUBELET_TYPE: (&str, &str) = ("type", "virtual-kubelet");
pub const VIRTUAL_KUBELET_TAINT: &str = "virtual-kubelet.io/provider";

impl NodeInfo {
    /// From a Node object (a node without a Ready=True condition is not ready).
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node
                .metadata
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            ready,
            status_arch: node
                .status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.architecture.clone())
                .filter(|a| !a.is_empty()),
            addresses: node_addresses(node),
        }
    }

    /// From a listed node ([`ListedNode`]), its label strings interned in `interner`: the
    /// same [`NodeInfo`] as [`NodeInfo::from_node`] of the same JSON.
    pub fn from_listed(node: ListedNode, interner: &mut Interner) -> Self {
        let ListedNode {
            metadata,
            spec,
            status,
        } = node;
        let spec = spec.unwrap_or_default();
        let status = status.unwrap_or_default();
        let ready =
            status.conditions.iter().flatten().any(|c| {
                c.type_.as_deref() == Some("Ready") && c.status.as_deref() == Some("True")
            });
        Self {
            name: metadata.name.unwrap_or_default(),
            labels: Labels::interned(
                metadata
                    .labels
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
                interner,
            ),
            taints: spec.taints.unwrap_or_default(),
            unschedulable: spec.unschedulable.unwrap_or(false),
            ready,
            addresses: own_addresses(
                status
                    .addresses
                    .iter()
                    .flatten()
                    .filter_map(|a| Some((a.type_.as_deref()?, a.address.as_deref()?))),
            ),
            status_arch: status
                .node_info
                .and_then(|i| i.architecture)
                .filter(|a| !a.is_empty()),
        }
    }

    /// The OS label's value (`linux`, `windows`), if any.
    pub fn os(&self) -> Option<&str> {
        self.labels
            .get(OS_LABEL)
            .or_else(|| self.labels.get(BETA_OS_LABEL))
    }

    /// The CPU architecture: `kubernetes.io/arch`, else the beta label, else the status.
    pub fn arch(&self) -> Option<&str> {
        self.labels
            .get(crate::operator::platform::ARCH_LABEL)
            .or_else(|| self.labels.get(crate::operator::platform::BETA_ARCH_LABEL))
            .or(self.status_arch.as_deref())
    }

    /// A virtual-kubelet node (label `type=virtual-kubelet` or a `virtual-kubelet.io/provider`
    /// taint).
    pub fn is_virtual_kubelet(&self) -> bool {
        self.labels.get(VIRTUAL_KUBELET_TYPE.0) == Some(VIRTUAL_KUBELET_TYPE.1)
            || self.taints.iter().any(|t| t.key == VIRTUAL_KUBELET_TAINT)
    }

    /// The node pool, from the first pool label present.
    pub fn pool(&self) -> Option<&str> {
        POOL_LABELS.iter().find_map(|l| self.labels.get(l))
    }

    pub fn zone(&self) -> Option<&str> {
        self.labels.get(ZONE_LABEL)
    }

    pub fn is_linux(&self) -> bool {
        self.labels
            .get(OS_LABEL)
            .or_else(|| self.labels.get(BETA_OS_LABEL))
            .is_some_and(|os| os == "linux")
    }
}

/// Why a node is not a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A virtual-kubelet node: nothing runs there the way a kubelet and containerd pull.
    VirtualKubelet,
    /// Windows, or no OS label.
    NotLinux,
    NotReady,
    Unschedulable,
    SelectorMismatch,
    UntoleratedTaint,
    /// The node's architecture is not among the probe image's platforms.
    PlatformNotInProbeImage,
}

impl Skip {
    /// Stable name (for the status).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VirtualKubelet => "VirtualKubelet",
            Self::NotLinux => "NotLinux",
            Self::NotReady => "NotReady",
            Self::Unschedulable => "Unschedulable",
            Self::SelectorMismatch => "SelectorMismatch",
            Self::UntoleratedTaint => "UntoleratedTaint",
            Self::PlatformNotInProbeImage => "PlatformNotInProbeImage",
        }
    }
}

/// One line on why `node` is skipped, naming what is missing.
pub fn skip_message(
    node: &NodeInfo,
    skip: Skip,
    platforms: &crate::operator::platform::Platforms,
) -> String {
    let arch = node.arch().unwrap_or("unknown");
    match skip {
        Skip::VirtualKubelet => format!(
            "{}: a virtual-kubelet node (no kubelet or containerd to probe from)",
            node.name
        ),
        Skip::NotLinux => format!(
            "{}: OS {} (probes run on Linux nodes only)",
            node.name,
            node.os().unwrap_or("unknown (no kubernetes.io/os label)")
        ),
        Skip::NotReady => format!("{}: not Ready", node.name),
        Skip::Unschedulable => format!("{}: cordoned (unschedulable)", node.name),
        Skip::SelectorMismatch => format!("{}: does not match the nodeSelector", node.name),
        Skip::UntoleratedTaint => format!("{}: has a taint the check does not tolerate", node.name),
        Skip::PlatformNotInProbeImage => format!(
            "{}: the probe image has no linux/{arch} (it has {platforms}; set --probe-image-platforms after publishing linux/{arch})",
            node.name
        ),
    }
}

/// Whether the probe image runs on the node's platform. A node that reports no architecture
/// is not refused (the scheduler's `kubernetes.io/arch` rule on the Job still applies).
pub fn platform_eligibility(
    node: &NodeInfo,
    platforms: &crate::operator::platform::Platforms,
) -> Result<(), Skip> {
    match node.arch() {
        Some(arch) if !platforms.supports("linux", arch) => Err(Skip::PlatformNotInProbeImage),
        _ => Ok(()),
    }
}

/// One node to probe in this run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub node: String,
    pub node_pool: Option<String>,
    pub zone: Option<String>,
}

/// Whether `toleration` tolerates `taint` (Kubernetes' matching rules).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" => {
            !key.is_empty()
                && key == taint.key
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Whether the node can take a probe, or why not.
pub fn eligibility(node: &NodeInfo, ctx: &NodeContext) -> Result<(), Skip> {
    if node.is_virtual_kubelet() {
        return Err(Skip::VirtualKubelet);
    }
    if !node.is_linux() {
        return Err(Skip::NotLinux);
    }
    if !node.ready {
        return Err(Skip::NotReady);
    }
    if node.unschedulable {
        return Err(Skip::Unschedulable);
    }
    if !ctx
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v.as_str()))
    {
        return Err(Skip::SelectorMismatch);
    }
    let blocking = node
        .taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute");
    for taint in blocking {
        if !ctx.tolerations.iter().any(|tol| tolerates(tol, taint)) {
            return Err(Skip::UntoleratedTaint);
        }
    }
    Ok(())
}

/// Candidates grouped by (pool, zone); groups and the nodes in them sorted by name, so that
/// the plan depends only on the inventory, not on the order the API listed it in.
pub fn groups<'a>(
    nodes: &'a [NodeInfo],
    ctx: &NodeContext,
) -> BTreeMap<(Option<&'a str>, Option<&'a str>), Vec<&'a NodeInfo>> {
    let mut g: BTreeMap<_, Vec<&NodeInfo>> = BTreeMap::new();
    for n in nodes.iter().filter(|n| eligibility(n, ctx).is_ok()) {
        g.entry((n.pool(), n.zone())).or_default().push(n);
    }
    for members in g.values_mut() {
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members.dedup_by(|a, b| a.name == b.name);
    }
    g
}

fn pick<'a>(members: &[&'a NodeInfo], k: u64) -> &'a NodeInfo {
    members[(k % members.len() as u64) as usize]
}

fn target(n: &NodeInfo) -> Target {
    Target {
        node: n.name.clone(),
        node_pool: n.pool().map(str::to_string),
        zone: n.zone().map(str::to_string),
    }
}

/// The node list prepared once for planning many checks.
///
/// Planning a check depends on the inventory and on the check's [`NodeContext`]; of the
/// context, only `nodeSelector` and `tolerations` decide which nodes are candidates, and a
/// cluster's checks have few distinct pairs of them. The inventory computes each node's pool,
/// zone and fixed eligibility once, orders the nodes by (pool, zone, name) once, and keeps the
/// candidate groups of every distinct selector/tolerations pair it has been asked for, so that
/// planning one more check with a known pair only picks targets from the cached groups.
///
/// Results are those of [`plan_targets`] (which is this, for one check).
#[derive(Debug)]
pub struct NodeInventory {
    nodes: Vec<Prepared>,
    /// Indices into `nodes`, ordered by (pool, zone), then name, then input order.
    order: Vec<usize>,
    cache: std::sync::Mutex<std::collections::HashMap<String, Arc<Groups>>>,
    platforms: crate::operator::platform::Platforms,
    /// Index into `nodes` by node name.
    by_name: std::collections::HashMap<String, usize>,
}

/// Candidate groups: indices into [`NodeInventory::nodes`], one `Vec` per (pool, zone) in key
/// order, members sorted by name.
type Groups = Vec<Vec<usize>>;

use std::sync::Arc;

#[derive(Debug)]
struct Prepared {
    info: NodeInfo,
    pool: Option<String>,
    zone: Option<String>,
    /// Linux, Ready and schedulable: what does not depend on the check.
    base_ok: bool,
}

/// Most distinct selector/tolerations pairs kept; beyond that, groups are computed and not
/// kept (a bound against checks that each invent their own).
const MAX_CACHED_CONTEXTS: usize = 256;

impl NodeInventory {
    /// Prepares `nodes` (any order; the plan does not depend on it) for the default probe
    /// image platforms.
    pub fn new(nodes: Vec<NodeInfo>) -> Self {
        Self::with_platforms(nodes, crate::operator::platform::Platforms::default())
    }

    /// [`NodeInventory::new`] for a probe image built for `platforms`: nodes of other
    /// architectures are skipped.
    pub fn with_platforms(
        nodes: Vec<NodeInfo>,
        platforms: crate::operator::platform::Platforms,
    ) -> Self {
        let nodes: Vec<Prepared> = nodes
            .into_iter()
            .map(|info| Prepared {
                pool: info.pool().map(str::to_string),
                zone: info.zone().map(str::to_string),
                base_ok: info.is_linux()
                    && info.ready
                    && !info.unschedulable
                    && !info.is_virtual_kubelet()
                    && platform_eligibility(&info, &platforms).is_ok(),
                info,
            })
            .collect();
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        // Stable: nodes with equal keys keep their input order, as in [`groups`].
        order.sort_by(|&a, &b| {
            let (x, y) = (&nodes[a], &nodes[b]);
            (&x.pool, &x.zone, &x.info.name).cmp(&(&y.pool, &y.zone, &y.info.name))
        });
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.info.name.clone(), i))
            .collect();
        Self {
            nodes,
            order,
            cache: Default::default(),
            platforms,
            by_name,
        }
    }

    /// The own addresses of node `name` (none for a node the inventory does not know).
    pub fn addresses_of(&self, name: &str) -> &[IpAddr] {
        self.by_name
            .get(name)
            .map(|&i| self.nodes[i].info.addresses.as_slice())
            .unwrap_or_default()
    }

    /// The own addresses of every node, eligible or not.
    pub fn all_addresses(&self) -> Vec<IpAddr> {
        self.nodes
            .iter()
            .flat_map(|n| n.info.addresses.iter().copied())
            .collect()
    }

    /// The probe image's platforms this inventory plans for.
    pub fn platforms(&self) -> &crate::operator::platform::Platforms {
        &self.platforms
    }

    /// `status.skippedNodes` (bounded) and `status.skippedNodeCount` for `ctx`: the messages
    /// of only the first [`crate::operator::crd::MAX_SKIPPED_NODES`] by name are made (a
    /// large cluster can skip thousands of nodes on every run of every check).
    pub fn skipped_status(
        &self,
        ctx: &NodeContext,
    ) -> (Vec<crate::operator::crd::SkippedNode>, u32) {
        let all = self.skipped_nodes(ctx);
        let count = u32::try_from(all.len()).unwrap_or(u32::MAX);
        let list = all
            .into_iter()
            .take(crate::operator::crd::MAX_SKIPPED_NODES)
            .map(|(info, skip)| crate::operator::crd::SkippedNode {
                node: info.name.clone(),
                reason: skip.as_str().into(),
                message: crate::engine::inputs::shown_value_max(
                    &skip_message(info, skip, &self.platforms),
                    512,
                ),
            })
            .collect();
        (list, count)
    }

    /// Every node that `ctx` cannot probe and why, sorted by node name (stable).
    fn skipped_nodes(&self, ctx: &NodeContext) -> Vec<(&NodeInfo, Skip)> {
        let mut out: Vec<(&NodeInfo, Skip)> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let skip = eligibility(&n.info, ctx)
                    .and_then(|()| platform_eligibility(&n.info, &self.platforms))
                    .err()?;
                Some((&n.info, skip))
            })
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }

    /// Every node that `ctx` cannot probe, with the reason and a message naming what is
    /// missing, sorted by node name.
    pub fn skipped(&self, ctx: &NodeContext) -> Vec<(String, Skip, String)> {
        self.skipped_nodes(ctx)
            .into_iter()
            .map(|(info, skip)| {
                (
                    info.name.clone(),
                    skip,
                    skip_message(info, skip, &self.platforms),
                )
            })
            .collect()
    }

    /// Number of nodes in the inventory.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Distinct selector/tolerations pairs whose groups are cached.
    pub fn cached_contexts(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    /// The candidate groups for `ctx`'s node selector and tolerations (cached).
    fn groups_for(&self, ctx: &NodeContext) -> Arc<Groups> {
        // Both are plain data; their JSON is a faithful key.
        let key =
            serde_json::to_string(&(&ctx.node_selector, &ctx.tolerations)).unwrap_or_default();
        if let Ok(cache) = self.cache.lock()
            && let Some(g) = cache.get(&key)
        {
            return g.clone();
        }
        let groups = Arc::new(self.compute_groups(ctx));
        if let Ok(mut cache) = self.cache.lock()
            && cache.len() < MAX_CACHED_CONTEXTS
        {
            cache.insert(key, groups.clone());
        }
        groups
    }

    fn compute_groups(&self, ctx: &NodeContext) -> Groups {
        let mut out: Groups = Vec::new();
        let mut last: Option<usize> = None;
        for &i in &self.order {
            let n = &self.nodes[i];
            if !n.base_ok || eligibility(&n.info, ctx).is_err() {
                continue;
            }
            match last.map(|l| &self.nodes[l]) {
                Some(p) if p.pool == n.pool && p.zone == n.zone => {
                    // Same group; a repeated name keeps its first entry (as in [`groups`]).
                    if p.info.name != n.info.name
                        && let Some(g) = out.last_mut()
                    {
                        g.push(i);
                    }
                }
                _ => out.push(vec![i]),
            }
            last = Some(i);
        }
        out
    }

    /// The nodes to probe in run number `run` of a check with node context `ctx`; see
    /// [`plan_targets`].
    pub fn plan(&self, ctx: &NodeContext, run: u64) -> Vec<Target> {
        let groups = self.groups_for(ctx);
        let groups: Vec<Vec<&NodeInfo>> = groups
            .iter()
            .map(|g| g.iter().map(|&i| &self.nodes[i].info).collect())
            .collect();
        plan_groups(&groups, ctx, run)
    }
}

/// The nodes to probe in run number `run` (a counter kept by the controller).
///
/// - `PerNodePool`: one node per (pool, zone), the `run`-th of the group modulo its size, so
///   every node is covered over as many runs as the group has nodes.
/// - `AllNodes`: every candidate.
/// - `Sample`: `count` nodes, taken round-robin over the groups (one from each group before a
///   second from any), starting at a group and node that move with `run`.
///
/// Targets are sorted by node name. For many checks over the same nodes, build a
/// [`NodeInventory`] once and call [`NodeInventory::plan`].
pub fn plan_targets(nodes: &[NodeInfo], ctx: &NodeContext, run: u64) -> Vec<Target> {
    NodeInventory::new(nodes.to_vec()).plan(ctx, run)
}

/// [`plan_targets`] over candidate groups in (pool, zone) order, members sorted by name.
fn plan_groups(groups: &[Vec<&NodeInfo>], ctx: &NodeContext, run: u64) -> Vec<Target> {
    let mut out: Vec<Target> = match ctx.strategy {
        Strategy::PerNodePool => groups.iter().map(|m| target(pick(m, run))).collect(),
        Strategy::AllNodes => groups.iter().flatten().map(|n| target(n)).collect(),
        Strategy::Sample => {
            // An endless round-robin over the groups, each run taking the next `count`
            // positions of it: position p visits group p % g for the (p / g)-th time, and
            // consecutive visits of a group walk through its nodes.
            let total: usize = groups.iter().map(Vec::len).sum();
            let want = (ctx.count.unwrap_or(1) as usize).min(total);
            let g = groups.len() as u64;
            let longest = groups.iter().map(Vec::len).max().unwrap_or(0) as u64;
            let mut picked: Vec<Target> = Vec::with_capacity(want);
            let mut taken = std::collections::BTreeSet::new();
            let mut p = run.wrapping_mul(want as u64);
            // Within g * longest consecutive positions every node comes up.
            for _ in 0..g.saturating_mul(longest) {
                if picked.len() == want {
                    break;
                }
                let m = &groups[(p % g) as usize];
                let n = pick(m, p / g);
                if taken.insert(n.name.as_str()) {
                    picked.push(target(n));
                }
                p = p.wrapping_add(1);
            }
            picked
        }
    };
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn node(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
        let mut l: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.entry(OS_LABEL.into()).or_insert_with(|| "linux".into());
        NodeInfo {
            name: name.into(),
            labels: l.into(),
            taints: vec![],
            unschedulable: false,
            ready: true,
            status_arch: None,
            addresses: Vec::new(),
        }
    }

    fn pooled(name: &str, pool: &str, zone: &str) -> NodeInfo {
        node(
            name,
            &[("kubernetes.azure.com/agentpool", pool), (ZONE_LABEL, zone)],
        )
    }

    fn ctx(strategy: Strategy, count: Option<u32>) -> NodeContext {
        NodeContext {
            strategy,
            count,
            ..NodeContext::default()
        }
    }

    fn names(t: &[Target]) -> Vec<&str> {
        t.iter().map(|t| t.node.as_str()).collect()
    }

    /// Labels look up like the map they come from; a repeated key keeps its last value; an
    /// interner gives equal strings one allocation, across nodes.
    #[test]
    fn labels_look_up_and_share_interned_strings() {
        let map: BTreeMap<String, String> = [("b", "2"), ("a", "1"), ("c", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let l = Labels::from(map.clone());
        for (k, v) in &map {
            assert_eq!(l.get(k), Some(v.as_str()));
        }
        assert_eq!(l.get("d"), None);
        assert_eq!(l.get(""), None);
        assert_eq!(
            l.iter().collect::<Vec<_>>(),
            [("a", "1"), ("b", "2"), ("c", "3")]
        );
        let dup: Labels = [("k", "first"), ("j", "x"), ("k", "last")]
            .into_iter()
            .collect();
        assert_eq!(dup.iter().collect::<Vec<_>>(), [("j", "x"), ("k", "last")]);
        assert!(Labels::default().is_empty());

        let mut interner = Interner::default();
        let a = Labels::interned([("pool", "p1"), ("zone", "z")], &mut interner);
        let b = Labels::interned([("zone", "z"), ("pool", "p2")], &mut interner);
        assert_eq!(a.get("pool"), Some("p1"));
        assert_eq!(b.get("pool"), Some("p2"));
        assert!(Arc::ptr_eq(&a.0[0].0, &b.0[0].0), "key shared");
        assert!(Arc::ptr_eq(&a.0[1].1, &b.0[1].1), "value shared");
        assert!(!Arc::ptr_eq(&a.0[0].1, &b.0[0].1));
    }

    #[test]
    fn pool_label_precedence() {
        type Labels<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Labels, Option<&str>)] = &[
            (&[("kubernetes.azure.com/agentpool", "sys")], Some("sys")),
            (&[("agentpool", "old")], Some("old")),
            (
                &[
                    ("agentpool", "old"),
                    ("kubernetes.azure.com/agentpool", "new"),
                ],
                Some("new"),
            ),
            (&[("eks.amazonaws.com/nodegroup", "ng-1")], Some("ng-1")),
            (
                &[("cloud.google.com/gke-nodepool", "default-pool")],
                Some("default-pool"),
            ),
            (&[("other", "x")], None),
        ];
        for (labels, want) in cases {
            assert_eq!(node("n", labels).pool(), *want, "{labels:?}");
        }
        assert_eq!(
            pooled("n", "p", "westeurope-1").zone(),
            Some("westeurope-1")
        );
    }

    fn k8s_node(name: &str, labels: &[(&str, &str)], taints: &[&str], status_arch: &str) -> Node {
        use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo};
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|k| Taint {
                            key: k.to_string(),
                            effect: "NoSchedule".into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                node_info: Some(NodeSystemInfo {
                    architecture: status_arch.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn os_architecture_and_virtual_kubelet_nodes_are_skipped_with_a_reason() {
        fn linux(arch: &str) -> [(&str, &str); 2] {
            [(OS_LABEL, "linux"), ("kubernetes.io/arch", arch)]
        }
        let nodes: Vec<NodeInfo> = [
            k8s_node("amd", &linux("amd64"), &[], "amd64"),
            k8s_node("arm", &linux("arm64"), &[], "arm64"),
            k8s_node("s390", &linux("s390x"), &[], "s390x"),
            k8s_node("ppc-status-only", &[(OS_LABEL, "linux")], &[], "ppc64le"),
            k8s_node(
                "win",
                &[(OS_LABEL, "windows"), ("kubernetes.io/arch", "amd64")],
                &[],
                "amd64",
            ),
            k8s_node(
                "vk-label",
                &[(OS_LABEL, "linux"), ("type", "virtual-kubelet")],
                &[],
                "amd64",
            ),
            k8s_node(
                "vk-taint",
                &linux("amd64"),
                &[VIRTUAL_KUBELET_TAINT],
                "amd64",
            ),
        ]
        .iter()
        .map(NodeInfo::from_node)
        .collect();
        assert_eq!(nodes[3].arch(), Some("ppc64le"));
        let ctx = NodeContext {
            strategy: Strategy::AllNodes,
            // Tolerating everything: the virtual-kubelet taint alone must not let it in.
            tolerations: vec![Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            }],
            ..NodeContext::default()
        };
        let inv = NodeInventory::new(nodes.clone());
        let planned: Vec<String> = inv.plan(&ctx, 0).into_iter().map(|t| t.node).collect();
        assert_eq!(planned, ["amd", "arm"]);
        let skipped = inv.skipped(&ctx);
        let got: Vec<(&str, Skip)> = skipped.iter().map(|(n, s, _)| (n.as_str(), *s)).collect();
        assert_eq!(
            got,
            [
                ("ppc-status-only", Skip::PlatformNotInProbeImage),
                ("s390", Skip::PlatformNotInProbeImage),
                ("vk-label", Skip::VirtualKubelet),
                ("vk-taint", Skip::VirtualKubelet),
                ("win", Skip::NotLinux),
            ]
        );
        let msg = |n: &str| skipped.iter().find(|s| s.0 == n).unwrap().2.clone();
        assert!(msg("s390").contains("linux/s390x"), "{}", msg("s390"));
        assert!(msg("s390").contains("linux/amd64,linux/arm64"));
        assert!(msg("win").contains("OS windows"), "{}", msg("win"));
        assert!(msg("vk-taint").contains("virtual-kubelet"));

        // An image published for s390x too takes that node.
        let p =
            crate::operator::platform::Platforms::parse("f", "linux/amd64,linux/s390x").unwrap();
        let inv = NodeInventory::with_platforms(nodes, p);
        let planned: Vec<String> = inv.plan(&ctx, 0).into_iter().map(|t| t.node).collect();
        assert_eq!(planned, ["amd", "s390"]);
    }

    #[test]
    fn eligibility_rules() {
        let c = NodeContext {
            node_selector: [("role".to_string(), "worker".to_string())].into(),
            tolerations: vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Equal".into()),
                value: Some("gpu".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
            ..NodeContext::default()
        };
        let base = node("n", &[("role", "worker")]);
        let taint = |k: &str, v: &str, e: &str| Taint {
            key: k.into(),
            value: Some(v.into()),
            effect: e.into(),
            ..Default::default()
        };
        let cases: Vec<(&str, NodeInfo, Result<(), Skip>)> = vec![
            ("plain", base.clone(), Ok(())),
            (
                "windows",
                NodeInfo {
                    labels: [
                        (OS_LABEL.to_string(), "windows".to_string()),
                        ("role".into(), "worker".into()),
                    ]
                    .into(),
                    ..base.clone()
                },
                Err(Skip::NotLinux),
            ),
            (
                "beta os label",
                NodeInfo {
                    labels: [
                        (BETA_OS_LABEL.to_string(), "linux".to_string()),
                        ("role".into(), "worker".into()),
                    ]
                    .into(),
                    ..base.clone()
                },
                Ok(()),
            ),
            (
                "no os label",
                NodeInfo {
                    labels: [("role".to_string(), "worker".to_string())].into(),
                    ..base.clone()
                },
                Err(Skip::NotLinux),
            ),
            (
                "not ready",
                NodeInfo {
                    ready: false,
                    ..base.clone()
                },
                Err(Skip::NotReady),
            ),
            (
                "cordoned",
                NodeInfo {
                    unschedulable: true,
                    ..base.clone()
                },
                Err(Skip::Unschedulable),
            ),
            (
                "selector",
                node("n", &[("role", "infra")]),
                Err(Skip::SelectorMismatch),
            ),
            (
                "tolerated taint",
                NodeInfo {
                    taints: vec![taint("dedicated", "gpu", "NoSchedule")],
                    ..base.clone()
                },
                Ok(()),
            ),
            (
                "other value",
                NodeInfo {
                    taints: vec![taint("dedicated", "db", "NoSchedule")],
                    ..base.clone()
                },
                Err(Skip::UntoleratedTaint),
            ),
            (
                "NoExecute not tolerated",
                NodeInfo {
                    taints: vec![taint("dedicated", "gpu", "NoExecute")],
                    ..base.clone()
                },
                Err(Skip::UntoleratedTaint),
            ),
            (
                "PreferNoSchedule ignored",
                NodeInfo {
                    taints: vec![taint("x", "y", "PreferNoSchedule")],
                    ..base.clone()
                },
                Ok(()),
            ),
        ];
        for (name, n, want) in cases {
            assert_eq!(eligibility(&n, &c), want, "{name}");
        }
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tol =
            |k: Option<&str>, op: Option<&str>, v: Option<&str>, e: Option<&str>| Toleration {
                key: k.map(Into::into),
                operator: op.map(Into::into),
                value: v.map(Into::into),
                effect: e.map(Into::into),
                ..Default::default()
            };
        let cases = [
            (tol(None, Some("Exists"), None, None), true),
            (tol(Some("k"), Some("Exists"), None, None), true),
            (tol(Some("k"), None, Some("v"), None), true),
            (tol(Some("k"), Some("Equal"), Some("w"), None), false),
            (
                tol(Some("k"), Some("Exists"), None, Some("NoExecute")),
                false,
            ),
            (
                tol(Some("k"), Some("Exists"), None, Some("NoSchedule")),
                true,
            ),
            (tol(Some("j"), Some("Exists"), None, None), false),
            (tol(None, Some("Equal"), Some("v"), None), false),
            (tol(Some("k"), Some("Bogus"), Some("v"), None), false),
        ];
        for (i, (t, want)) in cases.iter().enumerate() {
            assert_eq!(tolerates(t, &taint), *want, "case {i}: {t:?}");
        }
    }

    #[test]
    fn from_node_reads_status_and_spec() {
        use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};
        let mut n = Node::default();
        n.metadata.name = Some("aks-sys-1".into());
        n.metadata.labels = Some([(OS_LABEL.to_string(), "linux".to_string())].into());
        n.spec = Some(NodeSpec {
            unschedulable: Some(true),
            ..Default::default()
        });
        n.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let info = NodeInfo::from_node(&n);
        assert_eq!(info.name, "aks-sys-1");
        assert!(info.ready && info.unschedulable && info.is_linux());
        assert!(!NodeInfo::from_node(&Node::default()).ready);
    }

    /// A dual-stack node's own addresses: InternalIP and ExternalIP of both families, once
    /// each; host names and garbage ignored; a node without `status.addresses` has none.
    #[test]
    fn node_addresses_of_both_families() {
        use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
        let mut n = k8s_node("aks-sys-1", &[(OS_LABEL, "linux")], &[], "amd64");
        let addr = |t: &str, a: &str| NodeAddress {
            type_: t.into(),
            address: a.into(),
        };
        n.status = Some(NodeStatus {
            addresses: Some(vec![
                addr("Hostname", "aks-sys-1"),
                addr("InternalIP", "10.224.0.4"),
                addr("InternalIP", "fd00:10:224::4"),
                addr("ExternalIP", "20.1.2.3"),
                addr("InternalIP", "10.224.0.4"),
                addr("InternalDNS", "aks-sys-1.internal"),
                addr("InternalIP", "not-an-ip"),
            ]),
            ..n.status.unwrap()
        });
        let info = NodeInfo::from_node(&n);
        let want: Vec<IpAddr> = ["10.224.0.4", "fd00:10:224::4", "20.1.2.3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(info.addresses, want);
        assert!(NodeInfo::from_node(&Node::default()).addresses.is_empty());
        let inv = NodeInventory::new(vec![
            info,
            NodeInfo::from_node(&k8s_node("b", &[], &[], "")),
        ]);
        assert_eq!(inv.addresses_of("aks-sys-1"), want.as_slice());
        assert!(inv.addresses_of("b").is_empty() && inv.addresses_of("nope").is_empty());
        assert_eq!(inv.all_addresses(), want);
    }

    fn cluster() -> Vec<NodeInfo> {
        vec![
            pooled("sys-1a", "sys", "z1"),
            pooled("sys-2a", "sys", "z1"),
            pooled("sys-3b", "sys", "z2"),
            pooled("usr-1a", "usr", "z1"),
            pooled("usr-2a", "usr", "z1"),
            pooled("usr-3a", "usr", "z1"),
            node("bare", &[]),
        ]
    }

    #[test]
    fn strategies_table() {
        let nodes = cluster();
        let cases: &[(Strategy, Option<u32>, u64, &[&str])] = &[
            (
                Strategy::PerNodePool,
                None,
                0,
                &["bare", "sys-1a", "sys-3b", "usr-1a"],
            ),
            (
                Strategy::PerNodePool,
                None,
                1,
                &["bare", "sys-2a", "sys-3b", "usr-2a"],
            ),
            (
                Strategy::PerNodePool,
                None,
                2,
                &["bare", "sys-1a", "sys-3b", "usr-3a"],
            ),
            (
                Strategy::AllNodes,
                None,
                7,
                &[
                    "bare", "sys-1a", "sys-2a", "sys-3b", "usr-1a", "usr-2a", "usr-3a",
                ],
            ),
            (
                Strategy::Sample,
                Some(100),
                0,
                &[
                    "bare", "sys-1a", "sys-2a", "sys-3b", "usr-1a", "usr-2a", "usr-3a",
                ],
            ),
        ];
        for (strategy, count, run, want) in cases {
            let got = plan_targets(&nodes, &ctx(*strategy, *count), *run);
            assert_eq!(names(&got), *want, "{strategy:?} {count:?} run {run}");
        }
    }

    #[test]
    fn targets_carry_pool_and_zone() {
        let t = plan_targets(
            &[pooled("n1", "p", "z")],
            &ctx(Strategy::PerNodePool, None),
            0,
        );
        assert_eq!(
            t,
            vec![Target {
                node: "n1".into(),
                node_pool: Some("p".into()),
                zone: Some("z".into())
            }]
        );
    }

    #[test]
    fn rotation_covers_every_node_of_a_group() {
        let nodes = cluster();
        let c = ctx(Strategy::PerNodePool, None);
        let mut seen = BTreeSet::new();
        for run in 0..3 {
            for t in plan_targets(&nodes, &c, run) {
                seen.insert(t.node);
            }
        }
        assert_eq!(seen.len(), nodes.len());
        // Input order does not matter.
        let mut rev = nodes.clone();
        rev.reverse();
        for run in 0..5 {
            assert_eq!(plan_targets(&nodes, &c, run), plan_targets(&rev, &c, run));
        }
    }

    #[test]
    fn sample_spreads_over_groups_and_rotates() {
        let nodes = cluster();
        // 4 groups: (None,None) bare, (sys,z1), (sys,z2), (usr,z1).
        for run in 0..12 {
            let t = plan_targets(&nodes, &ctx(Strategy::Sample, Some(4)), run);
            let groups: BTreeSet<_> = t
                .iter()
                .map(|t| (t.node_pool.clone(), t.zone.clone()))
                .collect();
            assert_eq!(groups.len(), 4, "run {run}: one per group first: {t:?}");
        }
        let mut seen = BTreeSet::new();
        for run in 0..12 {
            let t = plan_targets(&nodes, &ctx(Strategy::Sample, Some(2)), run);
            assert_eq!(t.len(), 2);
            let groups: BTreeSet<_> = t
                .iter()
                .map(|t| (t.node_pool.clone(), t.zone.clone()))
                .collect();
            assert_eq!(groups.len(), 2, "run {run}: {t:?}");
            seen.extend(t.into_iter().map(|t| t.node));
        }
        assert_eq!(
            seen.len(),
            nodes.len(),
            "every node sampled sooner or later"
        );
        assert!(plan_targets(&[], &ctx(Strategy::Sample, Some(3)), 0).is_empty());
    }

    #[test]
    fn large_cluster_one_target_per_group() {
        // 5,000 nodes in 150 (pool, zone) groups, listed in a scrambled order.
        let mut nodes = Vec::with_capacity(5000);
        for i in 0..5000u32 {
            let g = (i * 7919) % 150;
            nodes.push(pooled(
                &format!("aks-pool{}-{i:05}", g / 3),
                &format!("pool{}", g / 3),
                &format!("zone-{}", g % 3),
            ));
        }
        let c = ctx(Strategy::PerNodePool, None);
        let t0 = plan_targets(&nodes, &c, 0);
        assert_eq!(t0.len(), 150);
        let groups: BTreeSet<_> = t0
            .iter()
            .map(|t| (t.node_pool.clone(), t.zone.clone()))
            .collect();
        assert_eq!(groups.len(), 150);
        let t1 = plan_targets(&nodes, &c, 1);
        assert_eq!(t1.len(), 150);
        assert!(
            t0.iter().zip(&t1).all(|(a, b)| a.node != b.node),
            "rotation moves every group"
        );
        assert_eq!(
            plan_targets(&nodes, &ctx(Strategy::AllNodes, None), 0).len(),
            5000
        );
        assert_eq!(
            plan_targets(&nodes, &ctx(Strategy::Sample, Some(300)), 0).len(),
            300
        );
    }

    /// The inventory's groups are those of [`groups`] (the plain definition), for contexts
    /// with and without selectors and tolerations, with duplicate names, ineligible nodes and
    /// nodes without pool or zone, in any input order; the cache is keyed by selector and
    /// tolerations only.
    #[test]
    fn inventory_matches_the_plain_grouping_and_caches_per_context() {
        let mut nodes = cluster();
        nodes.push(NodeInfo {
            ready: false,
            ..pooled("usr-0-notready", "usr", "z1")
        });
        nodes.push(NodeInfo {
            taints: vec![Taint {
                key: "gpu".into(),
                value: Some("yes".into()),
                effect: "NoSchedule".into(),
                ..Default::default()
            }],
            ..pooled("gpu-1a", "gpu", "z1")
        });
        nodes.push(pooled("sys-1a", "sys", "z1")); // a duplicate name
        nodes.push(pooled("sys-1a", "usr", "z2")); // the same name in another group
        nodes.push(node("zoneless", &[("agentpool", "old")]));
        let tol = Toleration {
            key: Some("gpu".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        let contexts = [
            NodeContext::default(),
            NodeContext {
                node_selector: [(ZONE_LABEL.to_string(), "z1".to_string())].into(),
                ..NodeContext::default()
            },
            NodeContext {
                tolerations: vec![tol.clone()],
                ..NodeContext::default()
            },
            NodeContext {
                node_selector: [(
                    "kubernetes.azure.com/agentpool".to_string(),
                    "gpu".to_string(),
                )]
                .into(),
                tolerations: vec![tol],
                ..NodeContext::default()
            },
        ];
        let mut rev = nodes.clone();
        rev.reverse();
        for input in [&nodes, &rev] {
            let inv = NodeInventory::new(input.clone());
            assert_eq!(inv.len(), input.len());
            for c in &contexts {
                let plain: Vec<Vec<&str>> = groups(input, c)
                    .into_values()
                    .map(|m| m.iter().map(|n| n.name.as_str()).collect())
                    .collect();
                let cached: Vec<Vec<&str>> = inv
                    .groups_for(c)
                    .iter()
                    .map(|m| m.iter().map(|&i| inv.nodes[i].info.name.as_str()).collect())
                    .collect();
                assert_eq!(cached, plain, "{c:?}");
                for strategy in [Strategy::PerNodePool, Strategy::AllNodes, Strategy::Sample] {
                    for run in 0..4 {
                        let c = NodeContext {
                            strategy,
                            count: (strategy == Strategy::Sample).then_some(3),
                            ..c.clone()
                        };
                        let direct = plan_groups(
                            &groups(input, &c).into_values().collect::<Vec<_>>(),
                            &c,
                            run,
                        );
                        assert_eq!(inv.plan(&c, run), direct, "{c:?} run {run}");
                    }
                }
            }
            // Strategy and count do not make a new cache entry; selector and tolerations do.
            assert_eq!(inv.cached_contexts(), contexts.len());
        }
        assert!(
            NodeInventory::new(vec![])
                .plan(&ctx(Strategy::Sample, Some(2)), 0)
                .is_empty()
        );
    }
}
