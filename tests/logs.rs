//! The binary's text logs off a terminal (`kubectl logs`, files, pipes) carry no ANSI colour
//! codes. No network: the controller stops at once for want of a Kubernetes configuration.

use std::process::{Command, Stdio};

#[test]
fn controller_text_logs_have_no_colour_codes_when_piped() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_regcheck"))
        .args(["controller", "--probe-image", "example.test/regcheck:1"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("NO_COLOR")
        .env("KUBECONFIG", home.path().join("no-kubeconfig"))
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no Kubernetes configuration"),
        "the controller logged its error: {stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "ANSI codes in piped logs: {stderr:?}"
    );
}
