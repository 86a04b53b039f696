//! `lint`: checks that every managed SealedSecret can be rotated (for PR pipelines).

use crate::annotations::{self, Managed};
use crate::scan::{Attribution, DiagnosticKind, Found, ScanReport};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One problem found by `lint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Repo-relative file.
    pub file: String,
    /// 1-based line (document start, or the error line).
    pub line: usize,
    /// Stable rule id, e.g. `missing-annotation`.
    pub rule: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // File names and messages quote the repo: escaped, so a terminal escape is shown,
        // not acted on, and a newline in a file name cannot forge another finding.
        write!(
            f,
            "{}:{}: {}: {}",
            crate::text::escape(&self.file),
            self.line,
            self.rule,
            crate::text::escape(&self.message)
        )
    }
}

/// Lint settings.
pub struct LintOptions<'a> {
    /// Annotation prefix, for messages.
    pub prefix: &'a str,
    /// Reference time for `max_age`.
    pub now: DateTime<Utc>,
    /// Flag secrets older than this.
    pub max_age: Option<chrono::Duration>,
    /// Whether a non-builtin source has a provider (plugin on PATH).
    pub plugin_exists: &'a dyn Fn(&str) -> bool,
    /// With `--require-current-cert`: each cluster's current certificate; a SealedSecret
    /// sealed with another one is a finding.
    pub certs: Option<&'a crate::reseal::CurrentCerts>,
    /// `.secret-manager.yaml`'s `templates:` (already checked when the file loaded).
    pub templates: &'a std::collections::BTreeMap<String, String>,
}

/// An identity annotation's value that is not of its kind (the value shown escaped).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not {expected}")]
struct Malformed {
    value: String,
    expected: String,
}

fn well_formed(source: &str, name: &str, value: &str) -> Result<(), Malformed> {
    let is_guid = |v: &str| {
        let parts: Vec<&str> = v.split('-').collect();
        parts.len() == 5
            && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
            && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    };
    if name == annotations::key_id_annotation(source) {
        return if crate::provider::is_valid_key_id(source, value) {
            Ok(())
        } else {
            Err(Malformed {
                value: crate::provider::escape_for_display(value),
                expected: crate::provider::key_id_format(source).to_string(),
            })
        };
    }
    let ok = match (source, name) {
        ("aws", "account") => value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()),
        ("aws", "username") => {
            !value.is_empty()
                && value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        }
        ("azure", "tenantId" | "applicationObjectId" | "clientId") => is_guid(value),
        ("gcp", "project") => {
            (6..=30).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }
        ("gcp", "serviceAccount") => value.contains('@') && value.ends_with(".gserviceaccount.com"),
        _ => !value.trim().is_empty(),
    };
    if ok {
        Ok(())
    } else {
        let hint = match (source, name) {
            ("aws", "account") => "a 12-digit AWS account id",
            ("aws", "username") => "an IAM user name",
            ("azure", _) => "a GUID like 00000000-0000-0000-0000-000000000000",
            ("gcp", "project") => "a GCP project id (6-30 lowercase letters, digits, `-`)",
            ("gcp", "serviceAccount") => {
                "a service account email (...@<project>.iam.gserviceaccount.com)"
            }
            _ => "a non-empty value",
        };
        Err(Malformed {
            value: crate::provider::escape_for_display(value),
            expected: hint.to_owned(),
        })
    }
}

fn lint_managed(f: &Found, m: &Managed, o: &LintOptions<'_>, out: &mut Vec<Finding>) {
    let mut push = |rule, message: String| {
        out.push(Finding {
            file: f.file.to_string_lossy().into_owned(),
            line: f.doc.line,
            rule,
            message,
        })
    };
    let p = o.prefix;
    let builtin = annotations::BUILTIN_SOURCES.contains(&m.source.as_str());
    if !builtin && !(o.plugin_exists)(&m.source) {
        push(
            "unknown-source",
            format!(
                "{p}source `{}` is not built in ({}) and no plugin `secret-manager-provider-{}` is on PATH",
                m.source,
                annotations::BUILTIN_SOURCES.join(", "),
                m.source
            ),
        );
    }
    let key_id_name = annotations::key_id_annotation(&m.source);
    let templated = m.templates();
    let mut required: Vec<&str> = vec![annotations::CREATE_DATE, key_id_name];
    // A secret whose every key is templated needs no keyMappings.
    if templated.is_empty() {
        required.push(annotations::KEY_MAPPINGS);
    }
    required.extend(annotations::identity_annotations(&m.source));
    let alternatives = annotations::identity_alternatives(&m.source);
    match alternatives
        .iter()
        .filter(|a| m.all.contains_key(**a))
        .count()
    {
        0 if !alternatives.is_empty() => push(
            "missing-annotation",
            format!(
                "{p}{} is missing (source {}: one of {})",
                alternatives[0],
                m.source,
                alternatives.join(", ")
            ),
        ),
        n if n > 1 => push(
            "malformed-annotation",
            format!(
                "{p}{} are all set (source {}): set exactly one",
                alternatives.join(" and "),
                m.source
            ),
        ),
        _ => {}
    }
    for name in required {
        match m.all.get(name) {
            None => push(
                "missing-annotation",
                format!("{p}{name} is missing (source {})", m.source),
            ),
            Some(v) if name != annotations::CREATE_DATE && name != annotations::KEY_MAPPINGS => {
                if let Err(e) = well_formed(&m.source, name, v.trim()) {
                    push("malformed-annotation", format!("{p}{name}: {e}"));
                }
            }
            Some(_) => {}
        }
    }
    if m.source == "azure"
        && let Some(v) = m.all.get("secretLifetime")
        && let Err(e) = humantime::parse_duration(v.trim())
    {
        push(
            "malformed-annotation",
            format!(
                "{p}secretLifetime: `{}` is not a duration ({e}); write e.g. 180d",
                crate::provider::escape_for_display(v)
            ),
        );
    }
    if let Some(e) = source_parameters(&m.source, &m.all) {
        push("malformed-annotation", format!("{p}{e}"));
    }
    match m.create_date() {
        Some(Err(e)) => push("malformed-annotation", format!("{p}createDate: {e}")),
        Some(Ok(d)) => {
            if d > o.now + chrono::Duration::minutes(5) {
                push(
                    "malformed-annotation",
                    format!("{p}createDate {} is in the future", d.to_rfc3339()),
                );
            } else if let Some(max) = o.max_age {
                let age = o.now - d;
                if age > max {
                    push(
                        "max-age",
                        format!(
                            "credential is {} days old (policy: rotate after {} days); rotate it with `{}`",
                            age.num_days(),
                            max.num_days(),
                            rotate_command(f, m)
                        ),
                    );
                }
            }
        }
        None => {}
    }
    lint_templates(f, m, o, &mut push);
    if let Some(r) = m.key_mappings() {
        match r {
            Err(e) => push("malformed-annotation", format!("{p}keyMappings: {e}")),
            Ok(maps) => {
                for km in &maps {
                    if !f.doc.encrypted_keys.contains(&km.secret_key) {
                        push(
                            "key-mapping-missing-data",
                            format!(
                                "{p}keyMappings maps `{}` but spec.encryptedData has no key `{}`",
                                km.secret_key, km.secret_key
                            ),
                        );
                    }
                    if let Some(fields) = annotations::output_fields(&m.source)
                        && !fields.contains(&km.field.as_str())
                    {
                        push(
                            "unknown-field",
                            format!(
                                "{p}keyMappings: `{}` is not an output field of {} (one of: {})",
                                km.field,
                                m.source,
                                fields.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn lint_templates(
    f: &Found,
    m: &Managed,
    o: &LintOptions<'_>,
    push: &mut dyn FnMut(&'static str, String),
) {
    let p = o.prefix;
    let mapped: Vec<String> = m
        .key_mappings()
        .and_then(Result::ok)
        .unwrap_or_default()
        .into_iter()
        .map(|k| k.secret_key)
        .collect();
    for t in m.templates() {
        let (key, name) = match t {
            Ok(t) => t,
            Err(e) => {
                push("malformed-annotation", format!("{p}{e}"));
                continue;
            }
        };
        if mapped.contains(&key) {
            push(
                "malformed-annotation",
                format!(
                    "{p}template.{key}: `{key}` is also in keyMappings; give it one or the other"
                ),
            );
        }
        if !f.doc.encrypted_keys.contains(&key) {
            push(
                "key-mapping-missing-data",
                format!(
                    "{p}template.{key} renders `{key}` but spec.encryptedData has no key `{key}`"
                ),
            );
        }
        let Some(src) = o.templates.get(&name) else {
            push(
                "unknown-template",
                format!(
                    "{p}template.{key}: no template `{name}` in .secret-manager.yaml's templates: ({})",
                    if o.templates.is_empty() {
                        "there are none".to_owned()
                    } else {
                        o.templates.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            );
            continue;
        };
        if let (Ok(vars), Some(fields)) = (
            crate::template::check(&name, src),
            annotations::output_fields(&m.source),
        ) {
            for v in vars.iter().filter(|v| !fields.contains(&v.as_str())) {
                push(
                    "unknown-field",
                    format!(
                        "{p}template.{key}: template `{name}` uses `{v}`, which is not an output field of {} (one of: {})",
                        m.source,
                        fields.join(", ")
                    ),
                );
            }
        }
    }
}

/// The `rotate` command that selects exactly `f`'s credential (never every secret of every
/// cloud): its source, cluster, namespace and name.
/// What the built-in sources that need no connection to check their parameters say about
/// them (the database sources' logins, strategy and password policy; `random`'s policy):
/// the same check their preflight makes, so lint finds it before a run does.
fn source_parameters(
    source: &str,
    all: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    let t = crate::provider::Target {
        source: source.to_owned(),
        params: all.clone(),
        current_key: None,
        referenced: Vec::new(),
    };
    let checked = match source {
        crate::postgres_source::NAME => crate::postgres_source::check(&t),
        crate::mysql_source::NAME => crate::mysql_source::check(&t),
        crate::random_source::NAME => crate::random_source::policy(&t).map(drop),
        _ => Ok(()),
    };
    match checked {
        Ok(()) | Err(crate::provider::ProviderError::MissingParameter { .. }) => None,
        Err(crate::provider::ProviderError::Permanent { message, .. }) => Some(message),
        Err(e) => Some(e.to_string()),
    }
}

fn rotate_command(f: &Found, m: &Managed) -> String {
    let mut cmd = format!("secret-manager rotate --source {}", m.source);
    match &f.attribution {
        Attribution::Cluster(c) => cmd.push_str(&format!(" --cluster {c}")),
        Attribution::Shared => cmd.push_str(" --shared only"),
        Attribution::Ambiguous(_) => {}
    }
    if let Some(ns) = &f.namespace {
        cmd.push_str(&format!(" --namespace {ns}"));
    }
    if let Some(n) = &f.doc.name {
        cmd.push_str(&format!(" --name {n}"));
    }
    cmd
}

/// Lints every SealedSecret in `report`; findings sorted by file and line.
pub fn lint(report: &ScanReport, o: &LintOptions<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in &report.diagnostics {
        if d.kind == DiagnosticKind::Error {
            out.push(Finding {
                file: d.file.to_string_lossy().into_owned(),
                line: d.line,
                rule: "unreadable-file",
                message: d.message.clone(),
            });
        }
    }
    for f in &report.secrets {
        let Some(m) = &f.managed else { continue };
        let mut push = |rule, message: String| {
            out.push(Finding {
                file: f.file.to_string_lossy().into_owned(),
                line: f.doc.line,
                rule,
                message,
            })
        };
        if f.doc.name.is_none() {
            push("missing-name", "metadata.name is missing".into());
        }
        if f.doc.scope.needs_namespace() && f.namespace.is_none() {
            push(
                "unresolved-namespace",
                format!(
                    "{} scope needs a namespace: set metadata.namespace or `namespace:` in the enclosing kustomization.yaml",
                    f.doc.scope
                ),
            );
        }
        if let Attribution::Ambiguous(ids) = &f.attribution {
            push(
                "ambiguous-cluster",
                format!(
                    "path names several clusters ({}); move the file under one cluster",
                    ids.join(", ")
                ),
            );
        }
        lint_managed(f, m, o, &mut out);
    }
    if let Some(certs) = o.certs {
        for f in &report.secrets {
            if certs.is_current(f, o.prefix) != Some(false) {
                continue;
            }
            let recorded =
                crate::reseal::CurrentCerts::sealed_with(f, o.prefix).unwrap_or_default();
            let current = f
                .attribution
                .cluster()
                .and_then(|c| certs.current(c))
                .unwrap_or_default();
            out.push(Finding {
                file: f.file.to_string_lossy().into_owned(),
                line: f.doc.line,
                rule: "outdated-cert",
                message: format!(
                    "sealed with certificate {}…, not the cluster's current {}…; {}",
                    &recorded[..12.min(recorded.len())],
                    &current[..12.min(current.len())],
                    if f.managed.is_some() {
                        "`secret-manager rotate --reseal` re-seals it"
                    } else {
                        "re-seal its values (secret-manager seal --merge-into)"
                    }
                ),
            });
        }
    }
    out.sort_by(|a, b| (&a.file, a.line, a.rule).cmp(&(&b.file, b.line, b.rule)));
    out
}
