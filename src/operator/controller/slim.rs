//! What the watch caches keep of probe Jobs and pods: only the fields reconciles read.
//!
//! Reconciles read, of a Job: its metadata (name, namespace, uid, labels, annotations,
//! creation time), its status, and of its pod template the probe container's image, command
//! and arguments and the node name ([`super::not_the_probe_pod`] compares them with the pod's);
//! of a pod: the same metadata plus owner references and deletion time, the same part of its
//! spec, and its status (phase, conditions, container states with the report). Everything
//! else (managed fields, environment, resources, security context, volumes, tolerations, the
//! template's metadata) is dropped before an object enters a store.
//!
//! Checks keep everything reconciles read (spec, status, annotations, finalizers) but their
//! managed fields and kubectl's last-applied copy of the object, which nothing reads.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

/// A container reduced to what identifies the probe.
fn slim_container(c: &Container) -> Container {
    Container {
        name: c.name.clone(),
        image: c.image.clone(),
        command: c.command.clone(),
        args: c.args.clone(),
        ..Default::default()
    }
}

/// A pod spec reduced to its containers' identity and its node.
fn slim_pod_spec(s: &PodSpec) -> PodSpec {
    PodSpec {
        containers: s.containers.iter().map(slim_container).collect(),
        node_name: s.node_name.clone(),
        ..Default::default()
    }
}

/// `kubectl apply`'s copy of the whole object, in an annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Strips a check for the controller's store.
pub fn check(c: &mut super::stored::StoredCheck) {
    c.metadata.managed_fields = None;
    if let Some(a) = c.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// Strips a probe Job for the cache.
pub fn job(j: &mut Job) {
    j.metadata.managed_fields = None;
    if let Some(spec) = j.spec.as_mut() {
        spec.template.metadata = None;
        if let Some(ps) = spec.template.spec.as_mut() {
            *ps = slim_pod_spec(ps);
        }
        spec.selector = None;
    }
}

/// Strips a probe pod for the cache.
pub fn pod(p: &mut Pod) {
    p.metadata.managed_fields = None;
    if let Some(ps) = p.spec.as_mut() {
        *ps = slim_pod_spec(ps);
    }
    if let Some(st) = p.status.as_mut() {
        st.pod_ips = None;
        st.host_ips = None;
        st.init_container_statuses = None;
        st.ephemeral_container_statuses = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::controller::stored::StoredCheck;
    use serde_json::json;

    /// A check as a watch delivers it, after `kubectl apply` and a status write: the store
    /// keeps its spec, status, finalizers and other annotations, not its managed fields or the
    /// last-applied copy.
    #[test]
    fn a_stored_check_keeps_what_reconciles_read() {
        let mut c: StoredCheck = serde_json::from_value(json!({
            "apiVersion": "regcheck.dev/v1alpha1", "kind": "RegistryConnectivityCheck",
            "metadata": {
                "name": "acr", "namespace": "team-a", "uid": "u1", "generation": 2,
                "finalizers": ["regcheck.dev/cleanup"],
                "annotations": {
                    "regcheck.dev/run-now": "1",
                    LAST_APPLIED: "{\"apiVersion\":\"regcheck.dev/v1alpha1\",\"spec\":{}}"
                },
                "managedFields": [{"manager": "regcheck", "operation": "Apply",
                    "apiVersion": "regcheck.dev/v1alpha1", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:conditions": {}}}, "subresource": "status"}]
            },
            "spec": {"registry": "r.azurecr.io"},
            "status": {"observedGeneration": 2}
        }))
        .unwrap();
        let before = c.clone();
        check(&mut c);
        assert!(c.metadata.managed_fields.is_none());
        let ann = c.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann.len(), 1);
        assert_eq!(ann["regcheck.dev/run-now"], "1");
        assert_eq!(
            (
                &c.spec,
                &c.status,
                &c.metadata.finalizers,
                &c.metadata.generation
            ),
            (
                &before.spec,
                &before.status,
                &before.metadata.finalizers,
                &before.metadata.generation
            )
        );
    }
}
