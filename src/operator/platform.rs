//! The platforms the probe image is built for (`--probe-image-platforms`), and whether a node
//! can run it. Pure.

use crate::engine::inputs::InputError;

/// The controller flag's default: the image the project publishes.
pub const DEFAULT_PROBE_PLATFORMS: &str = "linux/amd64,linux/arm64";

/// Node label of the CPU architecture (Go's `GOARCH` names).
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
/// Still set by old kubelets.
pub const BETA_ARCH_LABEL: &str = "beta.kubernetes.io/arch";

/// One `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The probe image's platforms, in the order given, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platforms(pub Vec<Platform>);

impl Default for Platforms {
    fn default() -> Self {
        Self::parse("--probe-image-platforms", DEFAULT_PROBE_PLATFORMS)
            .expect("the default platforms parse")
    }
}

/// OS and architecture names a Kubernetes node reports (Go's GOOS/GOARCH).
const KNOWN_OS: &[&str] = &["linux", "windows"];
const KNOWN_ARCH: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64",
];

impl Platforms {
    /// `linux/amd64,linux/arm64` (as in `docker buildx --platform`). Errors name `field`, the
    /// whole value and the entry that is wrong.
    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        let mut out: Vec<Platform> = Vec::new();
        if s.trim().is_empty() {
            return Err(InputError::new(
                field,
                s,
                "is empty; give os/arch entries such as linux/amd64,linux/arm64",
            ));
        }
        for entry in s.split(',') {
            let e = entry.trim();
            let err = |p: String| Err(InputError::new(field, s, p));
            let parts: Vec<&str> = e.split('/').collect();
            if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
                return err(format!(
                    "has the entry '{}', which is not os/arch or os/arch/variant",
                    crate::engine::inputs::shown_value(e)
                ));
            }
            let (os, arch) = (parts[0].to_ascii_lowercase(), parts[1].to_ascii_lowercase());
            if !KNOWN_OS.contains(&os.as_str()) {
                return err(format!(
                    "has the OS '{}' in '{e}'; nodes report one of {}",
                    crate::engine::inputs::shown_value(&os),
                    KNOWN_OS.join(", ")
                ));
            }
            if !KNOWN_ARCH.contains(&arch.as_str()) {
                return err(format!(
                    "has the architecture '{}' in '{e}'; nodes report one of {}",
                    crate::engine::inputs::shown_value(&arch),
                    KNOWN_ARCH.join(", ")
                ));
            }
            let p = Platform {
                os,
                arch,
                variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(Self(out))
    }

    /// Whether a node of `os`/`arch` can run the image (variants are not known per node and
    /// are not compared).
    pub fn supports(&self, os: &str, arch: &str) -> bool {
        self.0.iter().any(|p| p.os == os && p.arch == arch)
    }

    /// The architectures given for `os`, in order, for a `kubernetes.io/arch In (...)` rule.
    pub fn archs(&self, os: &str) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for p in self.0.iter().filter(|p| p.os == os) {
            if !v.contains(&p.arch) {
                v.push(p.arch.clone());
            }
        }
        v
    }
}

impl std::fmt::Display for Platforms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v: Vec<String> = self.0.iter().map(|p| p.to_string()).collect();
        f.write_str(&v.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default_and_variants() {
        let p = Platforms::default();
        assert_eq!(p.to_string(), "linux/amd64,linux/arm64");
        assert!(p.supports("linux", "arm64"));
        assert!(!p.supports("linux", "s390x"));
        assert!(!p.supports("windows", "amd64"));
        let p = Platforms::parse("f", " linux/arm/v7 , Linux/AMD64,linux/amd64").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7,linux/amd64");
        assert_eq!(p.archs("linux"), ["arm", "amd64"]);
    }

    #[test]
    fn bad_values_name_the_flag_and_the_entry() {
        for (v, needle) in [
            ("", "is empty"),
            ("linux", "'linux'"),
            ("linux/amd64,", "''"),
            ("linux/amd64/v2/x", "'linux/amd64/v2/x'"),
            ("darwin/arm64", "'darwin'"),
            ("linux/x86_64", "'x86_64'"),
        ] {
            let e = Platforms::parse("--probe-image-platforms", v).unwrap_err();
            assert_eq!(e.field, "--probe-image-platforms");
            assert!(e.problem.contains(needle), "{v}: {e}");
        }
    }
}
