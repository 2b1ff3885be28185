//! Parsers for what registries answer (`WWW-Authenticate`, error bodies) and for Docker
//! credentials. Pure functions: they accept any bytes without panicking.

use crate::engine::evidence::{Challenge, RegistryError};
use crate::engine::inputs::InputError;
use std::net::IpAddr;

/// Largest error body parsed; anything larger is not a registry error document.
pub const MAX_ERROR_BODY: usize = 64 * 1024;
/// Longest registry error message kept, in characters.
pub const MAX_ERROR_MESSAGE: usize = 300;

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses the first challenge of a `WWW-Authenticate` header (RFC 9110 §11.6.1):
/// `Bearer realm="https://r.azurecr.io/oauth2/token",service="r.azurecr.io",scope="..."` or
/// `Basic realm="Registry"`. Scheme and parameter names are case-insensitive; values are
/// quoted strings (with `\` escapes, commas allowed) or tokens. A missing scheme, an
/// unterminated quote, a parameter without a value, or a Bearer challenge without a realm is
/// an error.
#[allow(clippy::result_unit_err)] // the caller only records "malformed"; there is nothing more to say
pub fn parse_www_authenticate(v: &str) -> Result<Challenge, ()> {
    let chars: Vec<char> = v.chars().collect();
    let n = chars.len();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < n && (chars[*i] == ' ' || chars[*i] == '\t') {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    let start = i;
    while i < n && is_tchar(chars[i]) {
        i += 1;
    }
    if i == start {
        return Err(());
    }
    let scheme: String = chars[start..i].iter().collect();
    let mut realm: Option<String> = None;
    let mut service: Option<String> = None;
    if i < n && chars[i] != ' ' && chars[i] != '\t' {
        return Err(());
    }
    loop {
        // Separators between parameters: whitespace and commas.
        while i < n && (chars[i] == ' ' || chars[i] == '\t' || chars[i] == ',') {
            i += 1;
        }
        if i >= n {
            break;
        }
        let name_start = i;
        while i < n && is_tchar(chars[i]) {
            i += 1;
        }
        if i == name_start {
            return Err(());
        }
        let name: String = chars[name_start..i].iter().collect();
        skip_ws(&mut i);
        if i >= n || chars[i] != '=' {
            // A token68 (`Basic dXNlcg`) or the scheme of the next challenge
            // (`..., Basic realm=...`): only the first challenge is kept.
            break;
        }
        i += 1; // '='
        // token68 padding (`abc==`): '=' runs followed by the end or a comma.
        let mut j = i;
        while j < n && chars[j] == '=' {
            j += 1;
        }
        if j > i && (j >= n || chars[j] == ',') {
            i = j;
            continue;
        }
        skip_ws(&mut i);
        let value = if i < n && chars[i] == '"' {
            i += 1;
            let mut val = String::new();
            loop {
                if i >= n {
                    return Err(()); // unterminated quoted string
                }
                match chars[i] {
                    '"' => {
                        i += 1;
                        break;
                    }
                    '\\' => {
                        if i + 1 >= n {
                            return Err(());
                        }
                        val.push(chars[i + 1]);
                        i += 2;
                    }
                    c => {
                        val.push(c);
                        i += 1;
                    }
                }
            }
            val
        } else {
            let vstart = i;
            // Tokens, plus the characters registries put in unquoted URLs.
            while i < n && (is_tchar(chars[i]) || "/:=@?".contains(chars[i])) {
                i += 1;
            }
            if i == vstart {
                return Err(());
            }
            chars[vstart..i].iter().collect()
        };
        skip_ws(&mut i);
        if i < n && chars[i] != ',' {
            return Err(());
        }
        match name.to_ascii_lowercase().as_str() {
            "realm" if realm.is_none() => realm = Some(value),
            "service" if service.is_none() => service = Some(value),
            _ => {}
        }
    }
    if scheme.eq_ignore_ascii_case("bearer") && realm.as_deref().is_none_or(str::is_empty) {
        return Err(());
    }
    Ok(Challenge {
        scheme,
        realm,
        service,
    })
}

/// Parses a registry error body `{"errors":[{"code":"DENIED","message":"..."}]}` and returns
/// its first entry (message truncated to 300 characters). `None` for bodies over 64 KiB, bodies
/// that are not JSON, or JSON without an `errors` entry.
pub fn parse_registry_error(body: &[u8]) -> Option<RegistryError> {
    if body.len() > MAX_ERROR_BODY {
        return None;
    }
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    let first = doc.get("errors")?.as_array()?.first()?;
    let code = first.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let message = first.get("message").and_then(|m| m.as_str()).unwrap_or("");
    if code.is_empty() && message.is_empty() {
        return None;
    }
    Some(RegistryError {
        code: crate::engine::text::prefix(code, 64).to_string(),
        message: crate::engine::text::prefix(message, MAX_ERROR_MESSAGE).to_string(),
    })
}

/// The `<Code>` and `<Message>` of an Azure Storage error document
/// (`<?xml ...?><Error><Code>AuthorizationFailure</Code><Message>This request is not authorized
/// to perform this operation. RequestId:...</Message></Error>`), as a [`RegistryError`].
/// `None` unless the body is such a document.
pub fn parse_storage_error(body: &[u8]) -> Option<RegistryError> {
    if body.len() > MAX_ERROR_BODY {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let text = text.trim_start_matches('\u{feff}').trim_start();
    let rest = match text.strip_prefix("<?xml") {
        Some(r) => &r[r.find("?>")? + 2..],
        None => text,
    };
    let inner = rest.trim_start().strip_prefix("<Error>")?;
    let element = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = inner.find(&open)? + open.len();
        let len = inner[start..].find(&format!("</{name}>"))?;
        Some(inner[start..start + len].trim().to_string())
    };
    let code = element("Code")?;
    if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let message = element("Message").unwrap_or_default();
    Some(RegistryError {
        code,
        message: crate::engine::text::prefix(
            &message.replace(['\r', '\n'], " "),
            MAX_ERROR_MESSAGE,
        )
        .to_string(),
    })
}

/// Extracts the client address from Azure's network-rule denial:
/// `client with IP '203.0.113.7' is not allowed access. Refer https://aka.ms/acr/firewall ...`
/// (also with ` CorrelationId: <guid>` after it). `None` unless the text is there and the
/// quoted value is a valid IP address.
pub fn denied_client_ip(message: &str) -> Option<IpAddr> {
    const PREFIX: &str = "client with ip '";
    const SUFFIX: &str = "' is not allowed access";
    // ASCII lowercasing keeps byte offsets.
    let lower = message.to_ascii_lowercase();
    let start = lower.find(PREFIX)? + PREFIX.len();
    let len = lower[start..].find('\'')?;
    if !lower[start + len..].starts_with(SUFFIX) {
        return None;
    }
    message[start..start + len].trim().parse().ok()
}

/// Registry credentials. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// User name ACR expects with an identity (refresh) token.
pub const ACR_TOKEN_USERNAME: &str = "00000000-0000-0000-0000-000000000000";

const DOCKER_CONFIG_FIELD: &str = "--docker-config";

/// `host` and port (443 when absent) of a key of `auths`: `host`, `host:port`,
/// `https://host`, `https://host/v1/`.
fn auths_key_host(key: &str) -> Option<(String, u16)> {
    let k = key.trim();
    let k = match k.find("://") {
        Some(i) => &k[i + 3..],
        None => k,
    };
    let authority = k.split('/').next().unwrap_or("");
    crate::engine::inputs::parse_host_port(DOCKER_CONFIG_FIELD, authority, 443).ok()
}

fn entry_credentials(
    key: &str,
    entry: &serde_json::Value,
    creds_store: Option<&str>,
) -> Result<Credentials, InputError> {
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    let err = |p: String| InputError::new(DOCKER_CONFIG_FIELD, key, p);
    if !entry.is_object() {
        return Err(err("has an auths entry that is not an object".into()));
    }
    if let Some(token) = field("identitytoken") {
        return Ok(Credentials {
            username: ACR_TOKEN_USERNAME.to_string(),
            password: token.to_string(),
        });
    }
    if let Some(auth) = field("auth") {
        use base64::Engine as _;
        let cleaned: String = auth.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&cleaned)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&cleaned))
            .map_err(|_| err("has an 'auth' value that is not valid base64".into()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| err("has an 'auth' value that is not UTF-8 once decoded".into()))?;
        let Some((user, pass)) = text.split_once(':') else {
            return Err(err(
                "has an 'auth' value that does not decode to username:password".into(),
            ));
        };
        if user.is_empty() {
            return Err(err("has an 'auth' value with an empty username".into()));
        }
        return Ok(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        });
    }
    match (field("username"), field("password")) {
        (Some(u), Some(p)) => Ok(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }),
        (Some(_), None) => Err(err("has a username but no password".into())),
        _ => match creds_store {
            Some(store) => Err(err(format!(
                "has its credentials in the credential store '{}', which regcheck does not read; put them in the file (e.g. docker --config DIR login)",
                crate::engine::inputs::shown_value(store)
            ))),
            None => Err(err(
                "has no credentials (auth, username and password, or identitytoken)".into(),
            )),
        },
    }
}

/// Finds the credentials for `registry_host` (`host` or `host:port`) in a Docker
/// `config.json` or the `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` Secret. Also
/// accepts the legacy `.dockercfg` form (entries at the top level). `Ok(None)` when no entry
/// matches. Errors name `--docker-config` and never contain a secret.
pub fn parse_docker_config(
    json: &[u8],
    registry_host: &str,
) -> Result<Option<Credentials>, InputError> {
    let doc: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
        InputError::new(
            DOCKER_CONFIG_FIELD,
            "(file contents)",
            format!(
                "is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let Some(top) = doc.as_object() else {
        return Err(InputError::new(
            DOCKER_CONFIG_FIELD,
            "(file contents)",
            "is not a JSON object",
        ));
    };
    let wanted = crate::engine::inputs::parse_host_port("--registry", registry_host, 443)?;
    let creds_store = top.get("credsStore").and_then(|v| v.as_str());
    let empty = serde_json::Map::new();
    let auths = match top.get("auths") {
        Some(a) => a
            .as_object()
            .ok_or_else(|| InputError::new(DOCKER_CONFIG_FIELD, "auths", "is not a JSON object"))?,
        // Legacy `.dockercfg`: the entries are the top-level object.
        None if !top.contains_key("credHelpers") && creds_store.is_none() => top,
        None => &empty,
    };
    // An exact key first, then any key naming the same host and port (in key order).
    let found = auths.get_key_value(registry_host).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| auths_key_host(k).as_ref() == Some(&wanted))
    });
    if let Some((key, entry)) = found {
        return entry_credentials(key, entry, creds_store).map(Some);
    }
    if let Some(helper) = top
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| auths_key_host(k).as_ref() == Some(&wanted))
        })
        .and_then(|(_, v)| v.as_str())
    {
        return Err(InputError::new(
            DOCKER_CONFIG_FIELD,
            registry_host,
            format!(
                "is served by the credential helper 'docker-credential-{}', which regcheck does not run; put the credentials in the file",
                crate::engine::inputs::shown_value(helper)
            ),
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {

    #[test]
    fn storage_error_documents() {
        let body = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthorizationFailure</Code><Message>This request is not authorized to perform this operation.\nRequestId:1f2e\nTime:2026-12-04T10:00:00Z</Message></Error>";
        let e = parse_storage_error(body.as_bytes()).unwrap();
        assert_eq!(e.code, "AuthorizationFailure");
        assert!(e.message.starts_with("This request is not authorized"));
        assert!(!e.message.contains('\n'));
        let bare = b"<Error><Code>AuthorizationSourceIPMismatch</Code></Error>";
        assert_eq!(parse_storage_error(bare).unwrap().message, "");
        for bad in [
            &b""[..],
            b"{\"errors\":[]}",
            b"<html><body>403</body></html>",
            b"<Error><Code></Code></Error>",
            b"<Error><Code>a b</Code></Error>",
            b"<?xml version=\"1.0\"<Error>",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_storage_error(bad), None, "{bad:?}");
        }
    }

    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    fn ch(scheme: &str, realm: Option<&str>, service: Option<&str>) -> Challenge {
        Challenge {
            scheme: scheme.into(),
            realm: realm.map(Into::into),
            service: service.map(Into::into),
        }
    }

    #[test]
    fn www_authenticate_valid() {
        assert_eq!(
            parse_www_authenticate(
                r#"Bearer realm="https://myreg.azurecr.io/oauth2/token",service="myreg.azurecr.io",scope="repository:app:pull,push""#
            ),
            Ok(ch(
                "Bearer",
                Some("https://myreg.azurecr.io/oauth2/token"),
                Some("myreg.azurecr.io")
            ))
        );
        assert_eq!(
            parse_www_authenticate(r#"Basic realm="Registry Realm""#),
            Ok(ch("Basic", Some("Registry Realm"), None))
        );
        assert_eq!(
            parse_www_authenticate(r#"bearer REALM = "https://a/t" , Service=a.io"#),
            Ok(ch("bearer", Some("https://a/t"), Some("a.io")))
        );
        assert_eq!(
            parse_www_authenticate(r#"Bearer realm="x\"y\\z",service="s""#),
            Ok(ch("Bearer", Some("x\"y\\z"), Some("s")))
        );
        assert_eq!(
            parse_www_authenticate(
                "Bearer realm=https://auth.docker.io/token,service=registry.docker.io"
            ),
            Ok(ch(
                "Bearer",
                Some("https://auth.docker.io/token"),
                Some("registry.docker.io")
            ))
        );
        // Only the first challenge is kept.
        assert_eq!(
            parse_www_authenticate(r#"Bearer realm="https://a/t", Basic realm="b""#),
            Ok(ch("Bearer", Some("https://a/t"), None))
        );
        assert_eq!(parse_www_authenticate("Basic"), Ok(ch("Basic", None, None)));
        assert_eq!(
            parse_www_authenticate("Basic dXNlcjpwYXNz=="),
            Ok(ch("Basic", None, None))
        );
    }

    #[test]
    fn www_authenticate_malformed() {
        for bad in [
            "",
            "   ",
            r#"="x""#,
            r#""Bearer" realm=x"#,
            r#"Bearer realm="unterminated"#,
            r#"Bearer service="a.io""#,
            "Bearer",
            r#"Bearer realm="""#,
            r#"Bearer realm="a" junk"#,
            "Bearer realm=,service=x",
            r#"Bearer realm="a\"#,
            r#"Bearer, realm="a""#,
            "Be(arer realm=x",
        ] {
            assert_eq!(parse_www_authenticate(bad), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn registry_errors() {
        let body = br#"{"errors":[{"code":"DENIED","message":"client with IP '203.0.113.7' is not allowed access. Refer https://aka.ms/acr/firewall to grant access."}]}"#;
        let e = parse_registry_error(body).unwrap();
        assert_eq!(e.code, "DENIED");
        assert!(e.message.starts_with("client with IP '203.0.113.7'"));
        assert_eq!(
            denied_client_ip(&e.message),
            Some("203.0.113.7".parse().unwrap())
        );

        let long = format!(
            r#"{{"errors":[{{"code":"X","message":"{}"}}]}}"#,
            "é".repeat(500)
        );
        let e = parse_registry_error(long.as_bytes()).unwrap();
        assert_eq!(e.message.chars().count(), 300);

        assert_eq!(parse_registry_error(b"<html>403 Forbidden</html>"), None);
        assert_eq!(parse_registry_error(br#"{"errors":[]}"#), None);
        assert_eq!(parse_registry_error(br#"{"errors":"DENIED"}"#), None);
        assert_eq!(parse_registry_error(br#"{"details":1}"#), None);
        assert_eq!(parse_registry_error(b"\xff\xfe\x00"), None);
        let mut huge = br#"{"errors":[{"code":"DENIED","message":""#.to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_ERROR_BODY));
        huge.extend(br#""}]}"#);
        assert_eq!(parse_registry_error(&huge), None);
        let only_code = parse_registry_error(br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).unwrap();
        assert_eq!(only_code.message, "");
    }

    #[test]
    fn denied_ips() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(
            denied_client_ip(
                "client with IP '20.1.2.3' is not allowed access. Refer https://aka.ms/acr/firewall to grant access. CorrelationId: 0f3c6b7e-1234-4abc-9def-1234567890ab"
            ),
            ip("20.1.2.3")
        );
        assert_eq!(
            denied_client_ip("Client with IP '2001:db8::7' is not allowed access."),
            ip("2001:db8::7")
        );
        assert_eq!(
            denied_client_ip("client with IP 'not-an-ip' is not allowed access"),
            None
        );
        assert_eq!(denied_client_ip("client with IP '1.2.3.4'"), None);
        assert_eq!(
            denied_client_ip("client with IP '999.1.1.1' is not allowed access"),
            None
        );
        assert_eq!(denied_client_ip("access denied"), None);
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn docker_config_forms() {
        let reg = "myreg.azurecr.io";
        let cfg = format!(
            r#"{{"auths":{{"myreg.azurecr.io":{{"auth":"{}"}}}}}}"#,
            b64("bob:s3cr:et")
        );
        let c = parse_docker_config(cfg.as_bytes(), reg).unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("bob", "s3cr:et")
        );
        assert!(!format!("{c:?}").contains("s3cr"));

        for key in [
            "https://myreg.azurecr.io",
            "https://myreg.azurecr.io/v1/",
            "myreg.azurecr.io:443",
            "MyReg.azurecr.io",
        ] {
            let cfg = format!(r#"{{"auths":{{"{key}":{{"username":"u","password":"p"}}}}}}"#);
            let c = parse_docker_config(cfg.as_bytes(), reg).unwrap();
            assert_eq!(
                c,
                Some(Credentials {
                    username: "u".into(),
                    password: "p".into()
                }),
                "{key}"
            );
        }
        let cfg = br#"{"auths":{"localhost:5000":{"username":"u","password":"p"}}}"#;
        assert!(
            parse_docker_config(cfg, "localhost:5000")
                .unwrap()
                .is_some()
        );
        assert!(parse_docker_config(cfg, "localhost").unwrap().is_none());

        let cfg = format!(
            r#"{{"auths":{{"myreg.azurecr.io":{{"auth":"{}","identitytoken":"eyJ.tok"}}}}}}"#,
            b64("00000000-0000-0000-0000-000000000000:")
        );
        let c = parse_docker_config(cfg.as_bytes(), reg).unwrap().unwrap();
        assert_eq!(c.username, ACR_TOKEN_USERNAME);
        assert_eq!(c.password, "eyJ.tok");

        // Exact key wins over an equivalent one.
        let cfg = br#"{"auths":{"https://myreg.azurecr.io":{"username":"a","password":"1"},"myreg.azurecr.io":{"username":"b","password":"2"}}}"#;
        assert_eq!(
            parse_docker_config(cfg, reg).unwrap().unwrap().username,
            "b"
        );

        // Other registries only, and the legacy top-level form.
        let cfg = br#"{"auths":{"other.azurecr.io":{"username":"u","password":"p"}}}"#;
        assert_eq!(parse_docker_config(cfg, reg).unwrap(), None);
        let legacy = format!(
            r#"{{"https://myreg.azurecr.io":{{"auth":"{}"}}}}"#,
            b64("x:y")
        );
        assert_eq!(
            parse_docker_config(legacy.as_bytes(), reg)
                .unwrap()
                .unwrap()
                .username,
            "x"
        );
    }

    #[test]
    fn docker_config_errors_hide_secrets() {
        let reg = "myreg.azurecr.io";
        let err = |json: &[u8]| parse_docker_config(json, reg).unwrap_err();
        let e = err(br#"{"auths":{"myreg.azurecr.io":{"auth":"%%%topsecret%%%"}}}"#);
        assert_eq!(e.field, "--docker-config");
        assert!(e.problem.contains("base64"), "{e}");
        assert!(!e.to_string().contains("topsecret"));
        let no_colon = format!(
            r#"{{"auths":{{"myreg.azurecr.io":{{"auth":"{}"}}}}}}"#,
            b64("topsecret")
        );
        let e = err(no_colon.as_bytes());
        assert!(e.problem.contains("username:password"), "{e}");
        assert!(!e.to_string().contains("topsecret"));
        let e = err(br#"{"auths":{"myreg.azurecr.io":{"password":"topsecret", "auth": 5}}}"#);
        assert!(e.problem.contains("no credentials"), "{e}");
        assert!(!e.to_string().contains("topsecret"));
        let e = err(br#"{"auths":{"myreg.azurecr.io":{"username":"u"}}}"#);
        assert!(e.problem.contains("no password"), "{e}");
        let e = err(br#"{"auths":{"myreg.azurecr.io":{}},"credsStore":"desktop"}"#);
        assert!(e.problem.contains("credential store 'desktop'"), "{e}");
        let e = err(br#"{"credHelpers":{"myreg.azurecr.io":"acr-env"}}"#);
        assert!(e.problem.contains("docker-credential-acr-env"), "{e}");
        let e = err(br#"{"auths":{"myreg.azurecr.io":{"auth":"topsecret"#);
        assert!(e.problem.contains("not valid JSON"), "{e}");
        assert!(!e.to_string().contains("topsecret"));
        let e = err(br#"{"auths":{"myreg.azurecr.io":"topsecret"}}"#);
        assert!(e.problem.contains("not an object"), "{e}");
        assert!(!e.to_string().contains("topsecret"));
        assert!(err(b"[]").problem.contains("not a JSON object"));
        assert_eq!(err(br#"{"auths":[]}"#).value, "auths");
        assert_eq!(
            parse_docker_config(b"{}", "bad host").unwrap_err().field,
            "--registry"
        );
    }

    proptest! {
        #[test]
        fn www_authenticate_never_panics(s in "\\PC{0,120}|[A-Za-z =,\"\\\\/:.]{0,80}") {
            if let Ok(c) = parse_www_authenticate(&s) {
                prop_assert!(!c.scheme.is_empty());
                if c.scheme.eq_ignore_ascii_case("bearer") {
                    prop_assert!(c.realm.is_some());
                }
            }
        }

        #[test]
        fn registry_error_never_panics(body in proptest::collection::vec(any::<u8>(), 0..400), msg in "\\PC{0,600}") {
            let _ = parse_registry_error(&body);
            let doc = serde_json::json!({"errors": [{"code": "DENIED", "message": msg}]});
            let e = parse_registry_error(doc.to_string().as_bytes()).unwrap();
            prop_assert!(e.message.chars().count() <= MAX_ERROR_MESSAGE);
            prop_assert!(msg.starts_with(&e.message));
            let _ = denied_client_ip(&msg);
        }

        #[test]
        fn docker_config_never_panics_or_leaks(bytes in proptest::collection::vec(any::<u8>(), 0..300), secret in "[A-Za-z0-9]{12,20}") {
            let _ = parse_docker_config(&bytes, "myreg.azurecr.io");
            for entry in [
                format!(r#"{{"auth":"{secret}"}}"#),
                format!(r#"{{"password":"{secret}"}}"#),
                format!(r#"{{"username":"u","auth":"{secret}!"}}"#),
            ] {
                let cfg = format!(r#"{{"auths":{{"myreg.azurecr.io":{entry}}}}}"#);
                if let Err(e) = parse_docker_config(cfg.as_bytes(), "myreg.azurecr.io") {
                    prop_assert!(!e.to_string().contains(&secret));
                }
            }
        }
    }
}
