//! Names that come from the config repo, parsed at the boundary.
//!
//! The repo is written by many people and the rotator holds every admin credential, so a
//! name read from a manifest or a cluster-values file is never handed to a child process
//! as it is written. Each kind of name is a type that can only be built valid:
//!
//! * [`KubeName`]: a Kubernetes object name (DNS-1123 subdomain, as the API server
//!   requires of a SealedSecret's name);
//! * [`Namespace`]: a namespace (DNS-1123 label);
//! * [`KubeContext`]: a kubeconfig context name (printable, no leading `-`);
//! * [`RemoteName`]: the *name* of a git remote configured in the checkout (never a URL
//!   or a path: those would send the git credential helper's token where the repo says).
//!
//! Child processes also get these operands after `--` / `--end-of-options`, so a value
//! that slipped through could still not be read as an option.

use std::fmt;

/// Whether `k` is a valid Kubernetes Secret data key (`[-._a-zA-Z0-9]+`, at most 253).
pub fn is_valid_secret_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `name` is a valid template name (letters, digits, `-`, `_`, `.`, at most 128).
pub fn is_valid_template_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A value that is not a valid name of its kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} `{shown}` is invalid: {why}")]
pub struct NameError {
    /// What kind of name (`Kubernetes name`, `namespace`, ...).
    pub kind: &'static str,
    /// The value, escaped for a terminal and cut to 80 characters.
    pub shown: String,
    /// What the rule is.
    pub why: &'static str,
}

fn error(kind: &'static str, value: &str, why: &'static str) -> NameError {
    NameError {
        kind,
        shown: crate::text::escape_cut(value, 80),
        why,
    }
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// DNS-1123 label: 1–63 of `[a-z0-9-]`, starting and ending alphanumeric.
fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && is_alnum_lower(b[0])
        && is_alnum_lower(b[b.len() - 1])
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
}

/// DNS-1123 subdomain: at most 253 characters, dot-separated labels.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

macro_rules! name_type {
    ($(#[$m:meta])* $ty:ident) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::ffi::OsStr> for $ty {
            fn as_ref(&self) -> &std::ffi::OsStr {
                self.0.as_ref()
            }
        }
    };
}

name_type!(
    /// A Kubernetes object name (DNS-1123 subdomain).
    KubeName
);
name_type!(
    /// A Kubernetes namespace (DNS-1123 label).
    Namespace
);
name_type!(
    /// A kubeconfig context name.
    KubeContext
);
name_type!(
    /// The name of a git remote (not a URL, not a path).
    RemoteName
);

impl KubeName {
    /// Parses an object name.
    pub fn parse(s: &str) -> Result<KubeName, NameError> {
        if is_dns1123_subdomain(s) {
            Ok(KubeName(s.to_owned()))
        } else {
            Err(error(
                "Kubernetes name",
                s,
                "must be lowercase letters, digits, `-` and `.`, start and end with a letter or digit, at most 253 characters",
            ))
        }
    }
}

impl Namespace {
    /// Parses a namespace.
    pub fn parse(s: &str) -> Result<Namespace, NameError> {
        if is_dns1123_label(s) {
            Ok(Namespace(s.to_owned()))
        } else {
            Err(error(
                "namespace",
                s,
                "must be lowercase letters, digits and `-`, start and end with a letter or digit, at most 63 characters",
            ))
        }
    }
}

impl KubeContext {
    /// Parses a context name: 1–253 printable ASCII characters without spaces, not
    /// starting with `-`.
    pub fn parse(s: &str) -> Result<KubeContext, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && !s.starts_with('-')
            && s.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(KubeContext(s.to_owned()))
        } else {
            Err(error(
                "kubeContext",
                s,
                "must be a kubeconfig context name: printable characters without spaces, not starting with `-`",
            ))
        }
    }
}

impl RemoteName {
    /// Parses a remote name: letters, digits, `.`, `_`, `-` and `/`, not starting with
    /// `-` or `/`, no `..`, no `:` (so never a URL or an scp-style address). Whether the
    /// checkout has such a remote is checked where git is driven.
    pub fn parse(s: &str) -> Result<RemoteName, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 100
            && !s.starts_with(['-', '/', '.'])
            && !s.ends_with('/')
            && !s.contains("..")
            && !s.contains("//")
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
        if ok {
            Ok(RemoteName(s.to_owned()))
        } else {
            Err(error(
                "remote",
                s,
                "must be the name of a git remote of the checkout (e.g. origin, prod), never a URL or a path",
            ))
        }
    }
}

/// Whether `s` is safe as (part of) a git ref name taken from the repo: letters, digits,
/// `.`, `_`, `-`, `/` and the `{id}`/`{name}` placeholders' braces, not starting with `-`,
/// `/` or `.`, no `..`, `//`, `@{`, and no `:` (so it can never turn a refspec into
/// another one).
pub fn is_safe_ref_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with(['-', '/', '.'])
        && !s.ends_with(['/', '.'])
        && !s.ends_with(".lock")
        && !s.contains("..")
        && !s.contains("//")
        && !s.contains("@{")
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'{' | b'}')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names() {
        let long = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61));
        assert_eq!(long.len(), 253);
        for ok in ["a", "route53-credentials", "a.b-c", &long] {
            assert!(KubeName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-n",
            "--kubeconfig=x",
            "A",
            "a b",
            "a/b",
            "a.",
            ".a",
            "a..b",
            &format!("{long}c"),
            &"a".repeat(64),
            "a\u{1b}[2J",
        ] {
            assert!(KubeName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn namespaces() {
        assert!(Namespace::parse("kube-system").is_ok());
        for bad in ["", "-n", "a.b", "A", &"a".repeat(64), "--all-namespaces"] {
            assert!(Namespace::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn contexts() {
        for ok in [
            "kind-dev1",
            "arn:aws:eks:eu-central-1:1:cluster/dev1",
            "gke_p_z_c",
        ] {
            assert!(KubeContext::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "--kubeconfig=/tmp/x", "-x", "a b", "a\nb"] {
            assert!(KubeContext::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn remotes_are_names_not_urls_or_options() {
        for ok in ["origin", "prod", "fleet-prod", "upstream_2", "team/prod"] {
            assert!(RemoteName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "--upload-pack=touch /tmp/x",
            "-u",
            "https://evil.example/repo.git",
            "git@evil.example:repo.git",
            "/tmp/repo.git",
            "../x",
            "ext::sh -c touch% /tmp/x",
            "a b",
            "./x",
        ] {
            assert!(RemoteName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ref_names() {
        for ok in ["main", "cluster/{id}", "tag/{name}", "release-1.2"] {
            assert!(is_safe_ref_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "main:refs/heads/other",
            "a..b",
            "a b",
            "x.lock",
            "/x",
            "+main",
        ] {
            assert!(!is_safe_ref_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn errors_escape_what_they_quote() {
        let e = KubeName::parse("x\u{1b}[31mred").unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
        assert!(e.contains("\\u{1b}"), "{e}");
    }
}
