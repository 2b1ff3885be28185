//! Texts generated from the catalogue (pure): the diagnosis reference `docs/reasons.md` and the
//! Prometheus alert rules `deploy/prometheus/regcheck-rules.yaml`.
//!
//! Both files are committed; tests compare them with what these functions produce, so a reason
//! added to [`Reason::ALL`] or a changed remediation cannot leave the docs or the alert
//! annotations behind. Regenerate with `REGCHECK_BLESS=1 cargo test --lib generate`.

use crate::engine::findings::Reason;
use std::fmt::Write;

/// Path of the diagnosis reference in the repository.
pub const REASONS_DOC_PATH: &str = "docs/reasons.md";
/// Path of the Prometheus rule file in the repository.
pub const RULES_PATH: &str = "deploy/prometheus/regcheck-rules.yaml";

/// Minutes a check must stay not ready before `RegistryUnreachable` and
/// `PrivateEndpointDNSMisconfigured` fire (on top of the check's own `failureThreshold`).
pub const UNREACHABLE_FOR: &str = "10m";
/// Minutes before the lower-severity alerts (contexts, probes) fire.
pub const WARNING_FOR: &str = "15m";
/// `CheckStale` fires when the last completed run is older than this many of the check's own
/// intervals (`regcheck_check_interval_seconds`: runs start up to a tenth of the interval late,
/// by jitter) ...
pub const STALE_INTERVALS: u32 = 3;
/// ... plus this many seconds: room for the run itself (probe deadline up to 300 s) and a
/// controller restart.
pub const STALE_SLACK_SECONDS: u32 = 300;
/// Staleness of a check without the interval series (a controller from before it): three
/// default intervals (5m) plus slack.
pub const STALE_AFTER_SECONDS: u32 = 1800;

/// Where the documentation of this version lives; the alerts' `runbook_url` annotations link
/// to [`default_runbook_base`] (the chart value `prometheusRule.runbookBaseUrl` replaces it).
pub const PROJECT_URL: &str = "https://github.com/regcheck/regcheck";

/// `docs/reasons.md` of this version (its git tag): the base of the alerts' `runbook_url`,
/// followed by `#<anchor>`.
pub fn default_runbook_base() -> String {
    format!(
        "{PROJECT_URL}/blob/v{}/{REASONS_DOC_PATH}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Anchor of the `CheckStale` section of `docs/reasons.md` (GitHub's anchor of its heading).
pub const CHECK_STALE_ANCHOR: &str = "alert-checkstale";
/// Range of `increase()` in `WorkloadImagePullsFailing`.
pub const PULL_FAILURE_WINDOW: &str = "10m";
/// How long workloads' pulls must keep failing before `WorkloadImagePullsFailing` fires.
pub const PULL_FAILURE_FOR: &str = "15m";

/// The reasons of a private endpoint whose DNS is wrong.
pub const PRIVATE_DNS_REASONS: &[Reason] = &[
    Reason::PrivateEndpointResolvesPublic,
    Reason::DataEndpointDNSMissing,
    Reason::PrivateEndpointNotConfigured,
];

/// GitHub's anchor for a heading that is a single word.
pub fn anchor(r: Reason) -> String {
    r.as_str().to_ascii_lowercase()
}

/// The text of `docs/reasons.md`.
pub fn reasons_markdown() -> String {
    let mut s = String::new();
    s.push_str(
        "<!-- Generated from src/engine/catalogue.rs and src/generate.rs: do not edit. \
         Regenerate with `REGCHECK_BLESS=1 cargo test --lib generate`. -->\n\n",
    );
    s.push_str("# Diagnosis reference\n\n");
    s.push_str(
        "Every `reason` that `regcheck check`, the probes and the operator report (in the JSON \
         report's `findings[].reason`, in a check's `status.diagnosis.reason` and conditions, in \
         Events, and in the `reason` label of the `regcheck_check_info` metric): what it means, \
         what it looks like in the field, what to do, and the official pages to read.\n\n\
         `cause` is the root-cause family of Microsoft's *Troubleshoot network issues with \
         registry* guide; `code` is the matching `az acr check-health` error code where one \
         fits. Reasons of the phase *Operator* come from comparing probes or from a probe that \
         did not report: they say nothing about one endpoint.\n\n",
    );
    s.push_str("| reason | phase | cause | `az acr check-health` code | default severity |\n");
    s.push_str("|---|---|---|---|---|\n");
    for &r in Reason::ALL {
        let _ = writeln!(
            s,
            "| [`{}`](#{}) | {} | {} | {} | {} |",
            r.as_str(),
            anchor(r),
            r.phase().title(),
            r.cause().as_str(),
            r.code()
                .map(|c| format!("`{c}`"))
                .unwrap_or_else(|| "—".into()),
            r.default_severity().as_str(),
        );
    }
    s.push_str(&health_codes_markdown());
    let mut last_phase = "";
    for &r in Reason::ALL {
        if r.phase().title() != last_phase {
            last_phase = r.phase().title();
            let _ = write!(s, "\n## {last_phase}\n");
        }
        let _ = write!(s, "\n### {}\n\n", r.as_str());
        let _ = writeln!(s, "{}\n", r.summary());
        let _ = writeln!(s, "- **Seen in the field:** {}", r.field_symptom());
        let _ = write!(s, "- **Cause:** {}", r.cause().as_str());
        if let Some(code) = r.code() {
            let _ = write!(s, " · **check-health code:** `{code}`");
        }
        let _ = writeln!(
            s,
            " · **default severity:** {}",
            r.default_severity().as_str()
        );
        let _ = writeln!(s, "- **What to do:** {}", r.remediation());
        let docs: Vec<String> = r.docs().iter().map(|d| format!("<{d}>")).collect();
        let _ = writeln!(s, "- **Docs:** {}", docs.join(", "));
    }
    let _ = write!(
        s,
        "\n## Alerts\n\n\
         The `runbook_url` annotation of each alert of `{RULES_PATH}` links to this document: \
         `RegistryUnreachable`, `PrivateEndpointDNSMisconfigured` and `ProbesFailing` to the \
         section of the check's current reason, `ContextsDisagree` to \
         [ContextsDisagree](#{contexts}), `CheckStale` to the section below.\n\n\
         ### Alert: CheckStale\n\n\
         The check has not completed a run for {STALE_INTERVALS} of its intervals \
         (`spec.interval`, exported as `regcheck_check_interval_seconds`) plus \
         {STALE_SLACK_SECONDS} seconds (without that series: {STALE_AFTER_SECONDS} seconds), for \
         5 minutes. Nothing is known about the registry since then.\n\n\
         - **What to do:** look at the controller's logs and the \
         `regcheck_reconcile_errors_total` metric (the controller may be stuck, not the leader, \
         or unable to create Jobs); check `spec.suspend` (a suspended check does not run) and \
         the check's probe Jobs (`kubectl get jobs -A -l regcheck.dev/check=<name>`). \
         `kubectl regcheck run <name> --wait` asks for a run and waits for its result.\n",
        contexts = anchor(Reason::ContextsDisagree),
    );
    s
}

/// The review of every `az acr check-health` code against the catalogue: which reasons carry
/// it, or why none does.
fn health_codes_markdown() -> String {
    use crate::engine::catalogue::{HEALTH_CODES, reasons_with_code};
    let mut s = String::from(
        "\n## `az acr check-health` codes\n\n\
         Every code of the [health check error reference](https://learn.microsoft.com/azure/container-registry/container-registry-health-error-reference), \
         and the reasons that carry it (in `findings[].code`). A token-step finding carries \
         `CONNECTIVITY_REFRESH_TOKEN_ERROR` when its request went to `/oauth2/exchange`, \
         `CONNECTIVITY_ACCESS_TOKEN_ERROR` otherwise. The probes ask the token endpoint that the \
         challenge's realm names (for ACR `/oauth2/token`) and never exchange a Microsoft Entra \
         token themselves, so the refresh-token code appears only when a realm names \
         `/oauth2/exchange`.\n\n\
         | code | check-health means | reasons | no counterpart because |\n|---|---|---|---|\n",
    );
    for h in HEALTH_CODES {
        let reasons: Vec<String> = reasons_with_code(h.code)
            .iter()
            .map(|r| format!("[`{}`](#{})", r.as_str(), anchor(*r)))
            .collect();
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} |",
            h.code,
            h.meaning,
            if reasons.is_empty() {
                "—".to_string()
            } else {
                reasons.join(", ")
            },
            h.no_counterpart.unwrap_or("—"),
        );
    }
    s
}

/// Go-template lines (for a YAML literal block at `indent`) that look up the check's current
/// reason in `regcheck_check_info` and print the catalogue's remediation for it; `reasons`
/// limits the branches (all reasons when empty).
fn remediation_template(indent: &str, reasons: &[Reason]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{indent}{{{{- $reason := \"\" -}}}}");
    s.push_str(&remediation_lookup(indent));
    s.push_str(&remediation_branches(
        indent,
        reasons,
        "Run `kubectl describe rcc -n {{ $labels.namespace }} {{ $labels.name }}`: status.diagnosis holds the finding and its remediation.",
    ));
    s
}

/// The lines of [`remediation_template`] that set `$reason` from `regcheck_check_info`.
fn remediation_lookup(indent: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{indent}{{{{- with printf `regcheck_check_info{{namespace=\"%s\",name=\"%s\"}}` $labels.namespace $labels.name | query -}}}}"
    );
    let _ = writeln!(
        s,
        "{indent}{{{{- $reason = . | first | label \"reason\" -}}}}"
    );
    let _ = writeln!(s, "{indent}{{{{- end -}}}}");
    s
}

/// One `if eq $reason ...` branch per reason (all but Healthy when `reasons` is empty) with
/// the catalogue's remediation, and `fallback` otherwise.
fn remediation_branches(indent: &str, reasons: &[Reason], fallback: &str) -> String {
    let mut s = String::new();
    let list: Vec<Reason> = if reasons.is_empty() {
        Reason::ALL
            .iter()
            .copied()
            .filter(|r| *r != Reason::Healthy)
            .collect()
    } else {
        reasons.to_vec()
    };
    for (i, r) in list.iter().enumerate() {
        let kw = if i == 0 { "if" } else { "else if" };
        let _ = writeln!(s, "{indent}{{{{- {kw} eq $reason \"{}\" -}}}}", r.as_str());
        let _ = writeln!(s, "{indent}{}", r.remediation());
    }
    let _ = writeln!(s, "{indent}{{{{- else -}}}}");
    let _ = writeln!(s, "{indent}{fallback}");
    let _ = writeln!(s, "{indent}{{{{- end -}}}}");
    s
}

/// The reasons a runtime's pull message can carry (not the probes' own failures, nor the
/// controller's findings about a check).
pub fn workload_reasons() -> Vec<Reason> {
    Reason::ALL
        .iter()
        .copied()
        .filter(|r| {
            *r != Reason::Healthy
                && !r.is_probe_failure()
                && !matches!(
                    r,
                    Reason::ContextsDisagree | Reason::TargetNotAllowed | Reason::InvalidSpec
                )
        })
        .collect()
}

/// The `remediation` of `WorkloadImagePullsFailing`: from the alert's own `reason` label.
fn workload_remediation(indent: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{indent}{{{{- $reason := $labels.reason -}}}}");
    s.push_str(&remediation_branches(
        indent,
        &workload_reasons(),
        "Run `kubectl describe pod` on a failing pod, and `regcheck explain` on its pull error message.",
    ));
    s
}

/// Go-template prefix that sets `$reason`, `$registry` and `$verdict` from `regcheck_check_info`.
fn info_lookup() -> &'static str {
    "{{- $reason := \"unknown\" -}}{{- $registry := \"\" -}}\
     {{- with printf `regcheck_check_info{namespace=\"%s\",name=\"%s\"}` $labels.namespace $labels.name | query -}}\
     {{- $reason = . | first | label \"reason\" -}}{{- $registry = . | first | label \"registry\" -}}\
     {{- end -}}"
}

/// The text of `deploy/prometheus/regcheck-rules.yaml` (a plain Prometheus rule file; the
/// chart's PrometheusRule carries the same groups).
pub fn prometheus_rules() -> String {
    let pe = PRIVATE_DNS_REASONS
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join("|");
    let ind = "            ";
    let lookup = info_lookup();
    let probe_failures: Vec<Reason> = Reason::ALL
        .iter()
        .copied()
        .filter(|r| r.is_probe_failure())
        .collect();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"# Generated from src/generate.rs and src/engine/catalogue.rs: do not edit.
# Regenerate with `REGCHECK_BLESS=1 cargo test --lib generate`.
#
# Alerts on the regcheck controller's metrics. Every expression aggregates by the check
# (namespace, name), so a restarted or rescheduled controller pod does not restart the `for:`
# timers. Scrape the controller with honor_labels (the ServiceMonitor of the chart does): its
# `namespace` label is the check's namespace, not the controller's.
#
# Flapping: regcheck_check_ready already follows the check's failureThreshold and
# successThreshold (consecutive runs); the `for:` durations add wall-clock hysteresis on top.
groups:
  - name: regcheck
    rules:
      # Ready=False: the registry cannot be used from (part of) the cluster.
      - alert: RegistryUnreachable
        expr: max by (namespace, name) (regcheck_check_ready) == 0
        for: {unreachable_for}
        labels:
          severity: critical
        annotations:
          summary: >-
            {lookup}Registry {{{{ $registry }}}} is not usable from the cluster ({{{{ $reason }}}}), check {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}}
          description: >-
            {lookup}The regcheck check {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}} has reported
            Ready=False for at least {unreachable_for}: its probes cannot pull from {{{{ $registry }}}}
            (reason {{{{ $reason }}}}). See `kubectl describe rcc -n {{{{ $labels.namespace }}}} {{{{ $labels.name }}}}`
            and the runbook.
          runbook_url: >-
            {lookup}{runbook}#{{{{ $reason | toLower }}}}
          remediation: |-
{chain_all}
      # The private endpoint's DNS is wrong: a more specific alert for the most common case.
      - alert: PrivateEndpointDNSMisconfigured
        expr: |-
          max by (namespace, name, registry) (regcheck_check_info{{reason=~"{pe}"}})
            and on (namespace, name)
          (max by (namespace, name) (regcheck_check_ready) == 0)
        for: {unreachable_for}
        labels:
          severity: critical
        annotations:
          summary: >-
            {lookup}Private endpoint DNS of {{{{ $labels.registry }}}} is wrong ({{{{ $reason }}}}), check {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}}
          description: >-
            {lookup}The regcheck check {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}} finds that
            {{{{ $labels.registry }}}} does not resolve to its private endpoint as expected
            (reason {{{{ $reason }}}}). See the runbook.
          runbook_url: >-
            {lookup}{runbook}#{{{{ $reason | toLower }}}}
          remediation: |-
{chain_pe}
      # Node network and pod network reach different results on the same node.
      - alert: ContextsDisagree
        expr: max by (namespace, name) (regcheck_check_contexts_consistent) == 0
        for: {warning_for}
        labels:
          severity: warning
        annotations:
          summary: >-
            Node and pod networks reach registry {{{{ with printf `regcheck_check_info{{namespace="%s",name="%s"}}` $labels.namespace $labels.name | query }}}}{{{{ . | first | label "registry" }}}}{{{{ end }}}} differently, check {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}}
          description: >-
            The node network (what kubelet and containerd use) and the pod network on the same
            nodes disagree about the registry for at least {warning_for}. See the ContextsConsistent
            condition of `kubectl describe rcc -n {{{{ $labels.namespace }}}} {{{{ $labels.name }}}}`.
          runbook_url: {runbook}#{contexts_anchor}
          remediation: |-
            {contexts_remediation}
      # The probes themselves fail: nothing is known about the registry (lower severity).
      - alert: ProbesFailing
        expr: max by (namespace, name) (regcheck_check_probes_healthy) == 0
        for: {warning_for}
        labels:
          severity: warning
        annotations:
          summary: >-
            regcheck probes of {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}} fail (not a registry finding)
          description: >-
            The probe Jobs of the check {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}} have not
            reported for at least {warning_for} (unschedulable, image not pulled, crashed or timed out),
            so the check says nothing about the registry. See the ProbesHealthy condition of
            `kubectl describe rcc -n {{{{ $labels.namespace }}}} {{{{ $labels.name }}}}` and
            `kubectl get pods -A -l regcheck.dev/check={{{{ $labels.name }}}}`.
          runbook_url: >-
            {lookup}{runbook}#{{{{ $reason | toLower }}}}
          remediation: |-
{chain_probe}
      # No completed run for {stale_n} of the check's own intervals plus {slack}s: the controller is
      # stuck, or the check is suspended. Without the interval series: {stale}s.
      - alert: CheckStale
        expr: |-
          (time() - max by (namespace, name) (regcheck_check_last_run_timestamp_seconds))
            > on (namespace, name)
          (
            {stale_n} * max by (namespace, name) (regcheck_check_interval_seconds) + {slack}
              or on (namespace, name)
            0 * max by (namespace, name) (regcheck_check_last_run_timestamp_seconds) + {stale}
          )
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: >-
            regcheck check {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}} has not completed a run for {{{{ $value | humanizeDuration }}}}
          description: >-
            The last completed run of {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}} is older than
            {stale_n} of its intervals (spec.interval) plus {slack} seconds. The controller may be stuck
            or unable to create Jobs, or the check is suspended (spec.suspend).
          runbook_url: {runbook}#{stale_anchor}
          remediation: |-
            Check the controller's logs and the regcheck_reconcile_errors_total metric, the check's spec.suspend and spec.interval, and `kubectl get jobs -A -l regcheck.dev/check={{{{ $labels.name }}}}`.
      # Workloads' image pulls keep failing (the kubelet's Events, observed by the controller
      # with --observe-pull-failures). One failure does not fire: the kubelet retries a
      # failing pull at least every 5 minutes, so only failures that go on for `for:` do.
      - alert: WorkloadImagePullsFailing
        expr: sum by (registry, reason) (increase(regcheck_workload_pull_failures_total[{pull_window}])) > 0
        for: {pull_for}
        labels:
          severity: warning
        annotations:
          summary: >-
            Image pulls of workloads from {{{{ $labels.registry }}}} keep failing ({{{{ $labels.reason }}}})
          description: >-
            The kubelet has reported failed image pulls from {{{{ $labels.registry }}}}
            (reason {{{{ $labels.reason }}}}) in every {pull_window} for at least {pull_for}
            (registry `other`: a host no check names). See status.workloadPullFailures of the
            checks of that registry (`kubectl get rcc -A -o wide`); `regcheck explain` classifies a
            pasted pull error the same way.
          remediation: |-
{chain_workload}
          runbook_url: {runbook}#{{{{ $labels.reason | toLower }}}}
"#,
        unreachable_for = UNREACHABLE_FOR,
        warning_for = WARNING_FOR,
        stale = STALE_AFTER_SECONDS,
        stale_n = STALE_INTERVALS,
        slack = STALE_SLACK_SECONDS,
        stale_anchor = CHECK_STALE_ANCHOR,
        contexts_anchor = anchor(Reason::ContextsDisagree),
        runbook = default_runbook_base(),
        lookup = lookup,
        pe = pe,
        chain_all = remediation_template(ind, &[]).trim_end(),
        chain_pe = remediation_template(ind, PRIVATE_DNS_REASONS).trim_end(),
        chain_probe = remediation_template(ind, &probe_failures).trim_end(),
        contexts_remediation = Reason::ContextsDisagree.remediation(),
        pull_window = PULL_FAILURE_WINDOW,
        pull_for = PULL_FAILURE_FOR,
        chain_workload = workload_remediation(ind).trim_end(),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Compares a committed file with its generated text; `REGCHECK_BLESS=1` rewrites it.
    fn check_generated(rel: &str, text: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        if std::env::var_os("REGCHECK_BLESS").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            return;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{rel} differs from what src/generate.rs generates: run \
             `REGCHECK_BLESS=1 cargo test --lib generate` and commit it"
        );
    }

    #[test]
    fn reasons_doc_is_up_to_date() {
        check_generated(REASONS_DOC_PATH, &reasons_markdown());
    }

    #[test]
    fn rules_file_is_up_to_date() {
        check_generated(RULES_PATH, &prometheus_rules());
    }

    #[test]
    fn every_reason_is_documented_with_symptom_and_links() {
        let doc = reasons_markdown();
        for &r in Reason::ALL {
            let heading = format!("\n### {}\n", r.as_str());
            assert_eq!(doc.matches(&heading).count(), 1, "{r}");
            assert!(
                doc.contains(&format!("(#{})", anchor(r))),
                "{r}: index link"
            );
            assert!(doc.contains(r.remediation()), "{r}: remediation");
            assert!(doc.contains(r.field_symptom()), "{r}: symptom");
            for d in r.docs() {
                assert!(doc.contains(&format!("<{d}>")), "{r}: {d}");
            }
            assert!(
                !r.field_symptom().contains('\n'),
                "{r}: symptom is one line"
            );
        }
        // The field guide's error strings appear under the reason they belong to.
        for (reason, text) in [
            (Reason::DNSNameNotFound, "no such host"),
            (
                Reason::TLSInterception,
                "x509: certificate signed by unknown authority",
            ),
            (Reason::ProxyConnectEOF, "proxyconnect tcp: EOF"),
            (Reason::RegistryDeniedClientIP, "is not allowed access"),
            (Reason::Throttled, "429 Too Many Requests"),
            (Reason::HostUnreachable, "host is not reachable"),
        ] {
            assert!(reason.field_symptom().contains(text), "{reason}");
        }
    }

    #[test]
    fn doc_sections_follow_the_declaration_order() {
        let doc = reasons_markdown();
        let positions: Vec<usize> = Reason::ALL
            .iter()
            .map(|r| doc.find(&format!("\n### {}\n", r.as_str())).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        // Each phase heading appears once: reasons of one phase are contiguous in ALL.
        let mut seen = std::collections::HashSet::new();
        let mut last = "";
        for &r in Reason::ALL {
            if r.phase().title() != last {
                assert!(
                    seen.insert(r.phase().title()),
                    "{r}: phase {} split",
                    r.phase().title()
                );
                last = r.phase().title();
            }
        }
    }

    #[test]
    fn rules_carry_every_remediation_once_per_chain() {
        let rules = prometheus_rules();
        for &r in Reason::ALL.iter().filter(|r| **r != Reason::Healthy) {
            let branch = format!("eq $reason \"{}\" -}}}}", r.as_str());
            let expected = 1
                + usize::from(PRIVATE_DNS_REASONS.contains(&r))
                + usize::from(r.is_probe_failure())
                + usize::from(workload_reasons().contains(&r));
            assert_eq!(rules.matches(&branch).count(), expected, "{r}");
            assert!(rules.contains(r.remediation()), "{r}");
        }
        for name in [
            "RegistryUnreachable",
            "PrivateEndpointDNSMisconfigured",
            "ContextsDisagree",
            "ProbesFailing",
            "CheckStale",
            "WorkloadImagePullsFailing",
        ] {
            assert!(rules.contains(&format!("- alert: {name}\n")), "{name}");
        }
        // A literal block breaks if a remediation has a line break or template braces.
        for &r in Reason::ALL {
            assert!(!r.remediation().contains('\n') && !r.remediation().contains("{{"));
        }
    }

    #[test]
    fn runbook_urls_lead_to_sections_of_the_reasons_document() {
        let rules = prometheus_rules();
        let doc = reasons_markdown();
        let base = default_runbook_base();
        assert!(
            base.ends_with(&format!(
                "/blob/v{}/docs/reasons.md",
                env!("CARGO_PKG_VERSION")
            )),
            "{base}"
        );
        // The chart replaces the base by its value: it must be the chart's version.
        let chart = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/regcheck/Chart.yaml"),
        )
        .unwrap();
        assert!(
            chart.contains(&format!("\nversion: {}\n", env!("CARGO_PKG_VERSION"))),
            "charts/regcheck/Chart.yaml version is the crate's"
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&rules).unwrap();
        for rule in v["groups"][0]["rules"].as_sequence().unwrap() {
            let url = rule["annotations"]["runbook_url"].as_str().unwrap();
            let (_, fixed) = url.rsplit_once("{{- end -}}").unwrap_or(("", url));
            let (b, anchor) = fixed.split_once('#').unwrap();
            assert_eq!(b, base, "{url}");
            // A fixed anchor names a heading of the document; a templated one the reason.
            if anchor.contains("{{") {
                assert!(
                    anchor == "{{ $reason | toLower }}"
                        || anchor == "{{ $labels.reason | toLower }}",
                    "{url}"
                );
            } else {
                let heading = if anchor == CHECK_STALE_ANCHOR {
                    "\n### Alert: CheckStale\n".to_string()
                } else {
                    let r = Reason::ALL
                        .iter()
                        .find(|r| self::anchor(**r) == anchor)
                        .unwrap();
                    format!("\n### {}\n", r.as_str())
                };
                assert!(doc.contains(&heading), "{heading}");
            }
        }
        // Every link to the document is a full URL, no bare path.
        assert_eq!(
            rules.matches("docs/reasons.md#").count(),
            rules.matches(&format!("{base}#")).count()
        );
    }

    #[test]
    fn rules_parse_as_yaml_with_for_on_every_alert() {
        let v: serde_yaml::Value = serde_yaml::from_str(&prometheus_rules()).unwrap();
        let rules = v["groups"][0]["rules"].as_sequence().unwrap();
        assert_eq!(rules.len(), 6);
        for rule in rules {
            let name = rule["alert"].as_str().unwrap();
            assert!(rule["for"].as_str().is_some(), "{name}: for");
            assert!(rule["labels"]["severity"].as_str().is_some(), "{name}");
            for key in ["summary", "description", "remediation", "runbook_url"] {
                assert!(
                    rule["annotations"][key]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "{name}: {key}"
                );
            }
        }
    }
}
