//! The README's quick start as shell commands: the fenced `bash` blocks that follow a
//! `<!-- e2e:quickstart ... -->` marker in README.md, split into commands the way bash reads
//! them (line continuations, here-documents), and what the e2e test does with each one.

/// One command of a README block.
#[derive(Debug, Clone, PartialEq)]
pub struct Cmd {
    /// The command's first line, without its trailing comment: what the table matches.
    pub key: String,
    /// The full text bash runs (continuation lines and a here-document included).
    pub text: String,
}

/// What the test does with a README command.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Run the README text as it is.
    Run,
    /// Run this instead (the README itself names the change, or the cluster needs it).
    Instead(&'static str, &'static str),
    /// Cannot run here.
    Skip(&'static str),
}

/// Every command of the README quick start and what the test does with it. A README command
/// missing from this table, or an entry the README no longer has, fails the test.
/// The README's Helm path (2b) is the other install path: this test follows the kubectl one.
const HELM_PATH: &str = "Helm alternative (2b): run in the same order (namespace, label, install, \
     uninstall) by helm_chart_lifecycle_on_the_test_cluster (tests/e2e/helm.rs) through Helm's SDK";

pub const TABLE: &[(&str, Action)] = &[
    (
        "docker build -t mirror.example.com/tools/regcheck:0.1.0 . && docker push mirror.example.com/tools/regcheck:0.1.0",
        Action::Skip(
            "no docker or registry here: the tests load the binary cargo built as the image \
             localhost/regcheck:dev into the cluster's containerd; the Dockerfile is linted by \
             tests/packaging.rs",
        ),
    ),
    (
        "kubectl apply -k crds/",
        Action::Instead(
            "kubectl apply --validate=false -k crds/",
            "the README's own advice for kubectl older than 1.25 (the test cluster's is 1.20)",
        ),
    ),
    (
        "kubectl apply -k deploy/",
        Action::Instead(
            "kubectl apply -k tests/e2e/overlay",
            "the README says to set the image first: tests/e2e/overlay is deploy/ with the \
             image set (and the host network this cluster without kube-proxy needs)",
        ),
    ),
    (
        "kubectl create namespace regcheck-system",
        Action::Skip(HELM_PATH),
    ),
    (
        "kubectl label namespace regcheck-system pod-security.kubernetes.io/enforce=privileged",
        Action::Skip(HELM_PATH),
    ),
    (
        "helm install regcheck charts/regcheck -n regcheck-system --set image.repository=mirror.example.com/tools/regcheck --set image.tag=0.1.0 --set serviceMonitor.enabled=true --set prometheusRule.enabled=true",
        Action::Skip(
            "Helm alternative (2b), run by helm_chart_lifecycle_on_the_test_cluster (tests/e2e/helm.rs) \
             through Helm's SDK with --skip-crds -f tests/e2e/helm-values.yaml instead of these --set \
             values (no registry, no prometheus-operator CRDs here); tests/packaging.rs renders \
             these values",
        ),
    ),
    (
        "kubectl label namespace default regcheck.dev/node-probes=true",
        Action::Run,
    ),
    ("kubectl apply -f - <<'YAML'", Action::Run),
    ("kubectl get rcc -A", Action::Run),
    ("kubectl describe rcc -n default myregistry", Action::Run),
    ("kubectl delete rcc --all -A", Action::Run),
    (
        "kubectl label namespace default regcheck.dev/node-probes-",
        Action::Run,
    ),
    (
        "helm uninstall regcheck -n regcheck-system",
        Action::Instead(
            "kubectl delete -k tests/e2e/overlay",
            "the kubectl alternative the README gives on the same line (`kubectl delete -k \
             deploy/`), with the overlay the operator was installed from",
        ),
    ),
    ("kubectl delete -k crds/", Action::Run),
];

pub fn action(key: &str) -> Option<Action> {
    TABLE.iter().find(|(k, _)| *k == key).map(|(_, a)| *a)
}

/// The fenced block that follows each `<!-- e2e:NAME` marker: (NAME, block text).
pub fn marked_blocks(readme: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut lines = readme.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("<!-- e2e:") else {
            continue;
        };
        let name = rest
            .split(|c: char| c.is_whitespace() || c == ':')
            .next()
            .unwrap_or("")
            .to_string();
        // The rest of the comment, then the block.
        if !line.contains("-->") && !lines.by_ref().any(|(_, l)| l.contains("-->")) {
            return Err(format!("README.md:{}: marker {name} not closed", i + 1));
        }
        let open = lines
            .by_ref()
            .map(|(_, l)| l)
            .find(|l| !l.trim().is_empty())
            .ok_or_else(|| format!("README.md:{}: marker {name} without a block", i + 1))?;
        if !open.starts_with("```") {
            return Err(format!(
                "README.md:{}: marker {name} is not followed by a fenced block but by {open:?}",
                i + 1
            ));
        }
        let mut body = String::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.starts_with("```") {
                closed = true;
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        if !closed {
            return Err(format!("README.md:{}: block of {name} not closed", i + 1));
        }
        out.push((name, body));
    }
    Ok(out)
}

/// Strip a trailing `  # comment` (the quick start quotes nothing, so a ` #` starts one).
fn strip_comment(line: &str) -> &str {
    match line.find(" #") {
        Some(i) => line[..i].trim_end(),
        None => line.trim_end(),
    }
}

/// The commands of a bash block: comment lines and blank lines dropped, `\` continuations
/// joined, a here-document (`<<'WORD'` … `WORD`) kept with its command.
pub fn commands(block: &str) -> Result<Vec<Cmd>, String> {
    let mut out = Vec::new();
    let mut lines = block.lines();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut key = strip_comment(t).to_string();
        let mut text = line.to_string();
        while key.ends_with('\\') {
            key.pop();
            let next = lines
                .next()
                .ok_or_else(|| format!("continuation at the end of the block: {text}"))?;
            key = format!("{} {}", key.trim_end(), strip_comment(next.trim()));
            text.push('\n');
            text.push_str(next);
        }
        if let Some(i) = key.find("<<") {
            let word = key[i + 2..]
                .trim()
                .trim_start_matches('-')
                .trim_matches(|c| c == '\'' || c == '"')
                .to_string();
            if word.is_empty() {
                return Err(format!("here-document without a word: {key}"));
            }
            let mut ended = false;
            for l in lines.by_ref() {
                text.push('\n');
                text.push_str(l);
                if l.trim() == word {
                    ended = true;
                    break;
                }
            }
            if !ended {
                return Err(format!("here-document {word} not ended: {key}"));
            }
        }
        out.push(Cmd { key, text });
    }
    Ok(out)
}

/// The column headers of a `kubectl get` table (one word per header: `LAST RUN` gives two).
pub fn header_words(table_first_line: &str) -> Vec<String> {
    table_first_line
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The example output the README shows after a command: the `#   ` lines that follow it.
pub fn shown_output(block: &str, command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = false;
    for line in block.lines() {
        let t = line.trim();
        if after {
            match t.strip_prefix("#   ") {
                Some(shown) => out.push(shown.to_string()),
                None => break,
            }
        } else if strip_comment(t) == command {
            after = true;
        }
    }
    out
}
