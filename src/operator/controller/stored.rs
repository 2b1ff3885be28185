//! Checks as the API server stores them, read without trusting `spec` and `status`.
//!
//! The CRD schema bounds every field, but objects can bypass it: an older CRD version that
//! was installed when they were written, or a direct etcd edit. kube's watcher decodes a whole
//! LIST page at once, so one object whose spec does not fit [`RegistryConnectivityCheckSpec`]
//! (a proxy mode `"Sometimes"`, a negative threshold, a string where a number goes) would
//! fail every initial list, and the controller would reconcile no check at all, only logging
//! at debug level. The controller therefore watches [`StoredCheck`], whose `spec` and `status`
//! are plain JSON, and [`decode`]s each object in its own reconciliation: a spec that does not
//! decode gets `Ready=False`, reason `InvalidSpec`, naming the error; a status that does not
//! decode is logged and treated as absent (the next status write replaces it).

use crate::operator::crd::{RegistryConnectivityCheck, RegistryConnectivityCheckSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::NamespaceResourceScope;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// A `RegistryConnectivityCheck` with `spec` and `status` left undecoded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredCheck {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

impl Resource for StoredCheck {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        RegistryConnectivityCheck::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        RegistryConnectivityCheck::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        RegistryConnectivityCheck::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        RegistryConnectivityCheck::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<&RegistryConnectivityCheck> for StoredCheck {
    fn from(c: &RegistryConnectivityCheck) -> Self {
        Self {
            metadata: c.metadata.clone(),
            spec: serde_json::to_value(&c.spec).unwrap_or_default(),
            status: c.status.as_ref().and_then(|s| serde_json::to_value(s).ok()),
        }
    }
}

/// What [`decode`] makes of a stored check.
#[derive(Debug)]
pub struct Decoded {
    /// The typed check. When the spec did not decode, its spec is a stand-in that names only
    /// the registry (if that was a string) and must not be planned: see `spec_error`.
    pub check: RegistryConnectivityCheck,
    /// Why the spec did not decode (a message naming the field where serde could tell).
    pub spec_error: Option<String>,
    /// Why the stored status was dropped.
    pub status_error: Option<String>,
}

/// Most characters of a decoding error kept in a message.
const MAX_ERROR_CHARS: usize = 300;

/// Decodes `spec` and `status` separately; never fails.
pub fn decode(stored: &StoredCheck) -> Decoded {
    // serde would also read a struct from an array of its fields in order; a stored spec is
    // an object or it is broken.
    let decoded = if stored.spec.is_object() {
        serde_json::from_value::<RegistryConnectivityCheckSpec>(stored.spec.clone())
            .map_err(|e| spec_message(&stored.spec, &e))
    } else {
        Err(spec_message(
            &stored.spec,
            &serde::de::Error::custom("not an object"),
        ))
    };
    let (spec, spec_error) = match decoded {
        Ok(s) => (s, None),
        Err(msg) => {
            let registry = stored
                .spec
                .get("registry")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(260)
                .collect::<String>();
            let stand_in: RegistryConnectivityCheckSpec =
                serde_json::from_value(serde_json::json!({ "registry": registry }))
                    .expect("a spec with only a registry string decodes");
            (stand_in, Some(msg))
        }
    };
    let (status, status_error) = match &stored.status {
        None | Some(Value::Null) => (None, None),
        Some(v) => match serde_json::from_value(v.clone()) {
            Ok(s) => (Some(s), None),
            Err(e) => (
                None,
                Some(crate::engine::text::clip_line(
                    &e.to_string(),
                    MAX_ERROR_CHARS,
                )),
            ),
        },
    };
    let mut check =
        RegistryConnectivityCheck::new(&stored.metadata.name.clone().unwrap_or_default(), spec);
    check.metadata = stored.metadata.clone();
    check.status = status;
    Decoded {
        check,
        spec_error,
        status_error,
    }
}

/// `spec.<field>: <serde's message>` for the first top-level field that fails on its own, or
/// `spec: <message>` when the spec is not an object or the error is not in one field.
fn spec_message(spec: &Value, whole: &serde_json::Error) -> String {
    let shown = |field: &str, e: &dyn std::fmt::Display| {
        crate::engine::text::clip_line(
            &format!("{field}: cannot be read: {e} (the object bypassed the CRD schema)"),
            MAX_ERROR_CHARS,
        )
    };
    let Some(obj) = spec.as_object() else {
        return shown(
            "spec",
            &format!("expected an object, got {}", kind_of(spec)),
        );
    };
    // Each field alone on top of a minimal valid spec: the first that fails is the culprit.
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    for k in keys {
        let mut probe = serde_json::json!({ "registry": "x" });
        probe[k.as_str()] = obj[k.as_str()].clone();
        if let Err(e) = serde_json::from_value::<RegistryConnectivityCheckSpec>(probe) {
            return shown(&format!("spec.{k}"), &e);
        }
    }
    shown("spec", whole)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(spec: Value, status: Option<Value>) -> StoredCheck {
        serde_json::from_value(json!({
            "apiVersion": "regcheck.dev/v1alpha1", "kind": "RegistryConnectivityCheck",
            "metadata": {"name": "acr", "namespace": "team-a"},
            "spec": spec, "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn good_objects_decode_like_the_typed_check() {
        let typed: RegistryConnectivityCheck = serde_json::from_value(json!({
            "apiVersion": "regcheck.dev/v1alpha1", "kind": "RegistryConnectivityCheck",
            "metadata": {"name": "acr", "namespace": "team-a", "generation": 3},
            "spec": {"registry": "r.azurecr.io", "proxy": {"mode": "None"}},
            "status": {"observedGeneration": 2},
        }))
        .unwrap();
        let d = decode(&StoredCheck::from(&typed));
        assert!(d.spec_error.is_none() && d.status_error.is_none(), "{d:?}");
        assert_eq!(
            serde_json::to_value(&d.check).unwrap(),
            serde_json::to_value(&typed).unwrap()
        );
    }

    #[test]
    fn bad_specs_name_the_field_and_never_panic() {
        let cases = [
            (
                json!({"registry": "r.io", "proxy": {"mode": "Sometimes"}}),
                "spec.proxy: ",
            ),
            (
                json!({"registry": "r.io", "failureThreshold": -1}),
                "spec.failureThreshold: ",
            ),
            (
                json!({"registry": "r.io", "timeoutSeconds": "ten"}),
                "spec.timeoutSeconds: ",
            ),
            (json!({"registry": 42}), "spec.registry: "),
            (
                json!({"dataEndpoints": ["a.io"]}),
                "spec: cannot be read: missing field `registry`",
            ),
            (
                json!("just a string"),
                "spec: cannot be read: expected an object, got a string",
            ),
            (
                Value::Null,
                "spec: cannot be read: expected an object, got null",
            ),
            (
                json!({"registry": "r.io", "contexts": {"node": {"count": 1e300}}}),
                "spec.contexts: ",
            ),
        ];
        for (spec, want) in cases {
            let d = decode(&stored(spec.clone(), None));
            let e = d.spec_error.unwrap_or_else(|| panic!("{spec} decoded"));
            assert!(e.starts_with(want), "{spec}: {e}");
            assert!(e.chars().count() <= MAX_ERROR_CHARS + 1, "{e}");
            assert_eq!(d.check.metadata.name.as_deref(), Some("acr"));
        }
        let d = decode(&stored(json!({"registry": "kept.io", "interval": 5}), None));
        assert_eq!(d.check.spec.registry, "kept.io");
    }

    #[test]
    fn garbage_status_is_dropped_with_a_reason() {
        for status in [
            json!("garbage"),
            json!({"conditions": "not a list"}),
            json!({"consecutiveFailures": -5}),
            json!({"observedGeneration": "x"}),
        ] {
            let d = decode(&stored(json!({"registry": "r.io"}), Some(status.clone())));
            assert!(d.spec_error.is_none());
            assert!(d.check.status.is_none(), "{status}");
            assert!(d.status_error.is_some(), "{status}");
        }
        let d = decode(&stored(json!({"registry": "r.io"}), Some(Value::Null)));
        assert!(d.status_error.is_none() && d.check.status.is_none());
    }
}
