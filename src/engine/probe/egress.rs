//! Probes the egress hosts of a check: DNS, route, TCP, TLS, then one harmless `GET /` whose
//! body is read only up to a few bytes. Any HTTP answer means the host is reachable: these
//! hosts are not registries and nothing about their answer is interpreted.

use super::{Budget, Connected, ProbeConfig, connect, host_header, net};
use crate::engine::egress::{EgressPlan, EgressTarget, profiles};
use crate::engine::evidence::{EgressEvidence, EgressHost, Role};
use futures::future::join_all;
use std::time::Instant;

/// Most body bytes read from an egress host's answer.
const BODY_BYTES: usize = 512;

async fn probe_host(t: &EgressTarget, config: &ProbeConfig, budget: &Budget) -> EgressHost {
    let Connected {
        mut evidence,
        stream,
    } = connect(&t.host, t.port, Role::Egress, config, budget, true).await;
    if let Some(stream) = stream {
        let started = Instant::now();
        let result = net::http_get(
            stream,
            &host_header(&t.host, t.port),
            "/",
            &[],
            budget.phase(0.3),
            BODY_BYTES,
        )
        .await;
        evidence.http = Some(net::v2_evidence(
            result,
            started.elapsed().as_millis() as u64,
        ));
    }
    evidence.deadline_exceeded = Instant::now() >= budget.deadline;
    EgressHost {
        host: t.host.clone(),
        port: t.port,
        rule: t.rule.clone(),
        endpoint: Some(evidence),
    }
}

/// Probes every host of the plan concurrently, within the check's timeout.
pub async fn run(plan: &EgressPlan, config: &ProbeConfig) -> EgressEvidence {
    let budget = Budget::new(config.timeout);
    let hosts = join_all(plan.targets.iter().map(|t| probe_host(t, config, &budget))).await;
    EgressEvidence {
        data_version: profiles::DATA_VERSION.to_string(),
        profiles: plan.input.profiles.clone(),
        hosts,
        not_probed: plan.not_probed.clone(),
    }
}
