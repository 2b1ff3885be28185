//! `regcheck explain`: the binary, run on real pull messages (sources in
//! src/engine/pullerror/tests.rs). Nothing here touches the network.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_regcheck");

/// containerd via kubelet, from kubernetes/kubernetes#91402 (quotes unescaped).
const NO_ROUTE: &str = r#"failed to pull and unpack image "registry.cn-hangzhou.aliyuncs.com/google_containers/pause:3.9": failed to resolve reference "registry.cn-hangzhou.aliyuncs.com/google_containers/pause:3.9": failed to do request: Head "https://registry.cn-hangzhou.aliyuncs.com/v2/google_containers/pause/manifests/3.9": dial tcp 120.55.105.209:443: connect: no route to host"#;

/// Docker daemon via kubelet, from Azure/acr#633.
const ACR_DENIED: &str = r#"Failed to pull image "<acrname>.azurecr.io/<imagae-name>:02b6d84d635c3d9ff4182ad1c50d16364695d3d5": rpc error: code Unknown desc Error response from daemon: Head "https://<acrname>.azurecr.io/v2/<image-name>/manifests/02b6d84d635c3d9ff4182ad1c50d16364695d3d5": denied: client with IP 'x.x.x.x' is not allowed access. Refer https://aka.ms/acr/firewall to grant access."#;

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("explain")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start regcheck");
    if let Some(text) = stdin {
        let mut input = child.stdin.take().unwrap();
        input.write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn message_as_argument_prints_the_table() {
    let o = run(&[NO_ROUTE], None);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("Diagnosis: HostUnreachable (Error)"), "{out}");
    assert!(
        out.contains("endpoint:    registry.cn-hangzhou.aliyuncs.com (login)"),
        "{out}"
    );
    assert!(out.contains("120.55.105.209:443"), "{out}");
    assert!(out.contains("remediation:"), "{out}");
}

#[test]
fn message_on_standard_input() {
    // A whole `kubectl describe pod` events block, as an admin would paste it.
    let describe = format!(
        "Events:\n  Type     Reason   Age  From     Message\n  ----     ------   ---- ----     -------\n  Normal   Pulling  1m   kubelet  Pulling image \"<acrname>.azurecr.io/x:1\"\n  Warning  Failed   1m   kubelet  {ACR_DENIED}\n  Warning  Failed   1m   kubelet  Error: ErrImagePull\n"
    );
    let o = run(&["--output", "json"], Some(&describe));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["findings"][0]["reason"], "RegistryDeniedClientIP");
}

#[test]
fn json_output_has_the_check_fields() {
    let o = run(&["-o", "json", NO_ROUTE], None);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["schemaVersion"], 1);
    let f = &j["findings"][0];
    assert_eq!(f["reason"], "HostUnreachable");
    assert_eq!(f["cause"], "VirtualNetworkConfiguration");
    assert_eq!(f["endpoint"], "registry.cn-hangzhou.aliyuncs.com");
    assert_eq!(f["role"], "LoginServer");
    assert!(f["message"].as_str().unwrap().contains("no route to host"));
    assert!(!f["remediation"].as_str().unwrap().is_empty());
    assert!(f["docs"][0].as_str().unwrap().starts_with("https://"));
    // `code` is present where the catalogue has one.
    let o = run(&["-o", "json", ACR_DENIED], None);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["findings"][0]["code"], "CONNECTIVITY_FORBIDDEN_ERROR");
}

#[test]
fn empty_input_is_bad_input() {
    for stdin in ["", "  \n\t\n"] {
        let o = run(&[], Some(stdin));
        assert_eq!(o.status.code(), Some(2));
        assert!(o.stdout.is_empty());
        assert!(String::from_utf8_lossy(&o.stderr).contains("MESSAGE is empty"));
    }
    let o = run(&[""], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn success_exits_zero() {
    // kubectl get events, from kubernetes/kubernetes#92326.
    let ok = r#"61s         Normal    Pulled              Pod          Successfully pulled image "nginx:1.14.2""#;
    let o = run(&[ok], None);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("Diagnosis: Healthy"));
    let o = run(&["-o", "json"], Some(ok));
    assert_eq!(o.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["verdict"], "Healthy");
}

#[test]
fn unrecognised_text_is_pull_failed_with_the_message_kept() {
    let o = run(&["-o", "json", "Error: ImagePullBackOff"], None);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["findings"][0]["reason"], "PullFailed");
    assert!(
        j["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Error: ImagePullBackOff")
    );
}
