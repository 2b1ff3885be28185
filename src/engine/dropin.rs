//! `Environment=` of systemd unit files and drop-ins (e.g.
//! `/etc/systemd/system/containerd.service.d/http-proxy.conf`), read the way systemd reads
//! them: the proxy containerd uses comes from there, not from `/etc/environment`.
//!
//! systemd's rules (conf-parser.c and `config_parse_environ` in load-fragment.c):
//! - lines are trimmed; `#` and `;` start comment lines; a line ending in `\` continues on the
//!   next one (the backslash becomes a space; comment lines inside are skipped);
//! - only the `[Service]` section counts; the key is what comes before the first `=`;
//! - the value is split into words with shell-like quoting (`"..."`, `'...'`, quotes may start
//!   mid-word) and C escapes (`\n`, `\t`, `\\`, `\"`, `\xHH`, ...); `%%` is a literal `%`;
//! - each word must be `NAME=value` with a valid name, otherwise it is ignored; a later
//!   assignment of a name replaces the earlier one; an empty `Environment=` clears the list;
//! - drop-ins are applied in the order of their file names (see [`sort_dropins`]).
//!
//! Pure: text in, assignments out.

use std::path::PathBuf;

/// The environment a unit gets from its `Environment=` lines, in assignment order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitEnv {
    pub vars: Vec<(String, String)>,
    /// What was ignored, as systemd would log it (`file:line: ...`).
    pub ignored: Vec<String>,
}

impl UnitEnv {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn set(&mut self, name: String, value: String) {
        match self.vars.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }
    /// Applies one file (`label` names it in `ignored`).
    pub fn apply(&mut self, label: &str, text: &str) {
        let mut section = String::new();
        let mut pending = String::new();
        let mut start_line = 0;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if pending.is_empty() {
                start_line = i + 1;
            }
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(cont) = line.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            let full = std::mem::take(&mut pending);
            self.line(label, start_line, &full, &mut section);
        }
        if !pending.is_empty() {
            self.line(label, start_line, &pending.clone(), &mut section);
        }
    }
    fn line(&mut self, label: &str, n: usize, line: &str, section: &mut String) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        if line.starts_with('[') && line.ends_with(']') {
            *section = line[1..line.len() - 1].to_string();
            return;
        }
        if section != "Service" {
            return;
        }
        let Some((key, value)) = line.split_once('=') else {
            self.ignored
                .push(format!("{label}:{n}: missing '=', ignoring line"));
            return;
        };
        if key.trim() != "Environment" {
            if key.trim() == "EnvironmentFile" {
                self.ignored.push(format!(
                    "{label}:{n}: EnvironmentFile={} is not read; give that file's variables another way",
                    value.trim()
                ));
            }
            return;
        }
        let value = value.trim();
        if value.is_empty() {
            self.vars.clear();
            return;
        }
        match split_words(value) {
            Err(e) => self.ignored.push(format!(
                "{label}:{n}: invalid syntax ({e}), ignoring the line"
            )),
            Ok(words) => {
                for w in words {
                    match w.split_once('=') {
                        Some((k, v)) if name_is_valid(k) => self.set(k.to_string(), v.to_string()),
                        _ => self.ignored.push(format!(
                            "{label}:{n}: invalid environment assignment '{}', ignoring",
                            crate::engine::inputs::shown_value(&w)
                        )),
                    }
                }
            }
        }
    }
}

/// `env_name_is_valid`: letters, digits and `_`, not starting with a digit.
fn name_is_valid(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE)` over the whole value, then `%%`.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut w = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => w.push(unescape(&mut chars)?),
                (_, '%') => match chars.next() {
                    Some('%') => w.push('%'),
                    Some(o) => {
                        // Other specifiers (%n, %H, ...) depend on the unit; kept as written.
                        w.push('%');
                        w.push(o);
                    }
                    None => w.push('%'),
                },
                (_, c) => w.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        words.push(w);
    }
    Ok(words)
}

fn unescape(chars: &mut std::iter::Peekable<std::str::Chars>) -> Result<char, String> {
    let c = chars.next().ok_or("trailing backslash")?;
    Ok(match c {
        'a' => '\x07',
        'b' => '\x08',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        's' => ' ',
        '\\' | '"' | '\'' => c,
        'x' => {
            let h: String = [chars.next(), chars.next()].into_iter().flatten().collect();
            let n = u8::from_str_radix(&h, 16).map_err(|_| format!("bad escape \\x{h}"))?;
            char::from(n)
        }
        o => return Err(format!("unknown escape \\{o}")),
    })
}

/// systemd applies drop-ins in the order of their file names, whatever their directory.
pub fn sort_dropins(files: &mut [PathBuf]) {
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str) -> UnitEnv {
        let mut e = UnitEnv::default();
        e.apply("http-proxy.conf", text);
        e
    }

    #[test]
    fn docker_and_containerd_docs_drop_in() {
        let e = env(
            "[Service]\nEnvironment=\"HTTP_PROXY=http://proxy.example.com:3128\"\nEnvironment=\"HTTPS_PROXY=https://proxy.example.com:3129\"\nEnvironment=\"NO_PROXY=localhost,127.0.0.1,.corp\"\n",
        );
        assert_eq!(e.get("HTTP_PROXY"), Some("http://proxy.example.com:3128"));
        assert_eq!(e.get("HTTPS_PROXY"), Some("https://proxy.example.com:3129"));
        assert_eq!(e.get("NO_PROXY"), Some("localhost,127.0.0.1,.corp"));
        assert!(e.ignored.is_empty());
    }

    #[test]
    fn several_assignments_quotes_and_escapes_on_one_line() {
        // systemd.exec(5): Environment="VAR1=word1 word2" VAR2=word3 "VAR3=$word 5 6"
        let e = env(
            "[Unit]\nEnvironment=IGNORED=1\n[Service]\nEnvironment=\"VAR1=word1 word2\" VAR2=word3 \"VAR3=$word 5 6\" A='x\\ty' B=\"q\\\"q\" P=100%%\n",
        );
        assert_eq!(e.get("IGNORED"), None);
        assert_eq!(e.get("VAR1"), Some("word1 word2"));
        assert_eq!(e.get("VAR2"), Some("word3"));
        assert_eq!(e.get("VAR3"), Some("$word 5 6"));
        assert_eq!(e.get("A"), Some("x\ty"));
        assert_eq!(e.get("B"), Some("q\"q"));
        assert_eq!(e.get("P"), Some("100%"));
        let e = env("[Service]\nEnvironment=HTTPS_PROXY=\"http://p:3128\"\n");
        assert_eq!(e.get("HTTPS_PROXY"), Some("http://p:3128"));
    }

    #[test]
    fn later_wins_empty_clears_invalid_is_ignored() {
        let mut e = env("[Service]\nEnvironment=HTTPS_PROXY=http://a:1\n");
        e.apply(
            "override.conf",
            "[Service]\n# comment\n; comment\nEnvironment=HTTPS_PROXY=http://b:2 1BAD=x NOEQUALS\n",
        );
        assert_eq!(e.get("HTTPS_PROXY"), Some("http://b:2"));
        assert_eq!(e.ignored.len(), 2, "{:?}", e.ignored);
        assert!(e.ignored[0].starts_with("override.conf:4:"));
        e.apply(
            "reset.conf",
            "[Service]\nEnvironment=\nEnvironment=NO_PROXY=x\n",
        );
        assert_eq!(e.vars, [("NO_PROXY".to_string(), "x".to_string())]);
        let e = env("[Service]\nEnvironment=\"HTTPS_PROXY=http://a:1\n");
        assert_eq!(e.get("HTTPS_PROXY"), None);
        assert!(e.ignored[0].contains("unterminated quote"));
    }

    #[test]
    fn continuation_lines() {
        let e =
            env("[Service]\nEnvironment=HTTPS_PROXY=http://p:3128 \\\n  NO_PROXY=.svc,.local\n");
        assert_eq!(e.get("HTTPS_PROXY"), Some("http://p:3128"));
        assert_eq!(e.get("NO_PROXY"), Some(".svc,.local"));
    }

    #[test]
    fn drop_ins_sort_by_file_name() {
        let mut f = vec![
            PathBuf::from("/run/systemd/system/containerd.service.d/20-b.conf"),
            PathBuf::from("/etc/systemd/system/containerd.service.d/10-a.conf"),
        ];
        sort_dropins(&mut f);
        assert!(f[0].ends_with("10-a.conf"));
    }
}
