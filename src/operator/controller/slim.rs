//! What the watch caches keep of probe Jobs and pods: only the fields reconciles read.
//!
//! Reconciles read, of a Job: its metadata (name, namespace, uid, labels, annotations,
//! creation time), its status, and of its pod template the probe container's image, command
//! and arguments and the node name ([`super::not_the_probe_pod`] compares them with the pod's);
//! of a pod: the same metadata plus owner references and deletion time, the same part of its
//! spec, and its status (phase, conditions, container states with the report). Everything
//! else (managed fields, environment, resources, security context, volumes, tolerations, the
//! template's metadata) is dropped before an object enters a store.

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
