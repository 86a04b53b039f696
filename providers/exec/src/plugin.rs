//! The external plugin protocol (version 1), like git credential helpers.
//!
//! The engine runs `secret-manager-provider-<name>` (found on PATH) once per operation,
//! writes one JSON request to its stdin and reads one JSON response from its stdout.
//! Secrets travel only on stdin/stdout: never in argv or the environment. See
//! docs/providers/exec.md for the full protocol.
//!
//! Request: `{"protocolVersion": 1, "operation": "...", "target": {...}, ...}` with
//! operation one of `capabilities`, `preflight`, `keys`, `mint`, `verify`, `revoke`.
//! Response: `{"protocolVersion": 1, "ok": true, ...}` or
//! `{"protocolVersion": 1, "ok": false, "error": {"kind": "...", "message": "..."}}`.
//! A non-zero exit without a JSON error is a failure; exit 75 (EX_TEMPFAIL) is retryable.
//! How the process runs (environment, process group, bounds): [`crate::process`].

use crate::api::{
    Capabilities, KeyId, KeyInfo, KeyStatus, Minted, Provider, ProviderError, ProviderResult,
    Revoke, Revoked, SecretValue, Target,
};
use crate::process::{self, MAX_STDERR_KEPT, MAX_STDOUT, RunError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// Protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The default time one plugin call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How a plugin is run (`providers.exec.<name>` in `.secret-manager.yaml`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginSettings {
    /// Environment variables passed through besides the base allowlist.
    pub env: Vec<String>,
    /// Time limit of one call.
    pub timeout: Duration,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A provider implemented by an external program.
#[derive(Debug)]
pub struct ExecProvider {
    name: &'static str,
    program: PathBuf,
    settings: PluginSettings,
    capabilities: Capabilities,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireTarget<'a> {
    source: &'a str,
    params: &'a BTreeMap<String, String>,
    current_key: Option<&'a str>,
    referenced: Vec<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireError {
    kind: String,
    message: String,
    /// keyLimit: keys the identity holds.
    key_count: Option<usize>,
    /// keyLimit: the plugin's limit.
    max_keys: Option<u32>,
    /// transient: seconds to wait before retrying.
    retry_after_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireKey {
    key_id: String,
    created: Option<DateTime<Utc>>,
    #[serde(default)]
    status: Option<String>,
    last_used: Option<DateTime<Utc>>,
    #[serde(default)]
    expires: Option<DateTime<Utc>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    protocol_version: Option<u32>,
    ok: bool,
    error: Option<WireError>,
    #[serde(default)]
    keys: Vec<WireKey>,
    key_id: Option<String>,
    created: Option<DateTime<Utc>>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    operator: Option<String>,
    max_keys_per_identity: Option<u32>,
    can_disable: Option<bool>,
    needs_propagation: Option<bool>,
    reports_last_use: Option<bool>,
}

impl ExecProvider {
    /// A provider for source `name` run through `program`, with default settings and no
    /// known limits (see [`ExecProvider::connect`]).
    pub fn new(name: &str, program: PathBuf) -> Self {
        Self::with_settings(name, program, PluginSettings::default())
    }

    /// A provider for source `name` run through `program` with `settings`.
    pub fn with_settings(name: &str, program: PathBuf, settings: PluginSettings) -> Self {
        ExecProvider {
            // Provider names live for the whole run; leaking one short string per plugin
            // is what lets `name()` return `&'static str` as the trait requires.
            name: Box::leak(name.to_owned().into_boxed_str()),
            program,
            settings,
            capabilities: Capabilities {
                max_keys_per_identity: None,
                can_disable: false,
                needs_propagation: false,
                reports_last_use: false,
            },
        }
    }

    /// Finds `secret-manager-provider-<name>` on PATH.
    pub fn find(name: &str) -> Option<Self> {
        crate::find_plugin(name).map(|p| Self::new(name, p))
    }

    /// The plugin for `name` on PATH, run with `settings`, its limits asked once
    /// (`capabilities`) for the whole run. A plugin that does not implement
    /// `capabilities` (answers a permanent error) gets none; one that times out or fails
    /// transiently is an error.
    pub async fn connect(name: &str, settings: PluginSettings) -> ProviderResult<Option<Self>> {
        match crate::find_plugin(name) {
            None => Ok(None),
            Some(program) => Self::connect_program(name, program, settings)
                .await
                .map(Some),
        }
    }

    /// [`ExecProvider::connect`] with the program given.
    pub async fn connect_program(
        name: &str,
        program: PathBuf,
        settings: PluginSettings,
    ) -> ProviderResult<Self> {
        let mut p = Self::with_settings(name, program, settings);
        match p.query_capabilities().await {
            Ok(c) => p.capabilities = c,
            Err(e @ ProviderError::Permanent { .. }) => {
                tracing::warn!(plugin = name, error = %e, "the plugin does not answer `capabilities`; its key limit is unknown");
            }
            Err(e) => return Err(e),
        }
        Ok(p)
    }

    fn err(&self, operation: &'static str, kind: &str, message: String) -> ProviderError {
        let provider = self.name.to_owned();
        match kind {
            "transient" => ProviderError::Transient {
                provider,
                operation,
                message,
            },
            "accessDenied" => ProviderError::AccessDenied {
                provider,
                operation,
                message,
            },
            "notFound" => ProviderError::NotFound {
                provider,
                what: message,
            },
            _ => ProviderError::Permanent {
                provider,
                operation,
                message,
            },
        }
    }

    /// A plugin's JSON error as a [`ProviderError`], with its numbers where it gave them.
    fn wire_err(&self, operation: &'static str, t: Option<&Target>, e: WireError) -> ProviderError {
        let message = clean(&e.message);
        match e.kind.as_str() {
            "keyLimit" => {
                let limit = e.max_keys.or(self.capabilities.max_keys_per_identity);
                ProviderError::KeyLimit {
                    provider: self.name.to_owned(),
                    identity: t.map(describe).unwrap_or_else(|| "the identity".into()),
                    count: e.key_count.or(limit.map(|l| l as usize)).unwrap_or(0),
                    hint: match (e.key_count, limit) {
                        (_, Some(l)) => {
                            format!("the plugin allows {l} keys per identity: {message}")
                        }
                        (Some(_), None) | (None, None) => format!("the plugin reports: {message}"),
                    },
                }
            }
            "transient" if e.retry_after_seconds.is_some() => ProviderError::Throttled {
                provider: self.name.to_owned(),
                operation,
                message,
                retry_after: e.retry_after_seconds.map(Duration::from_secs),
            },
            kind => self.err(operation, kind, message),
        }
    }

    async fn call(
        &self,
        operation: &'static str,
        extra: serde_json::Value,
        t: Option<&Target>,
    ) -> ProviderResult<WireResponse> {
        let mut req =
            serde_json::json!({ "protocolVersion": PROTOCOL_VERSION, "operation": operation });
        if let Some(t) = t {
            req["target"] = serde_json::to_value(WireTarget {
                source: &t.source,
                params: &t.params,
                current_key: t.current_key.as_ref().map(|k| k.0.as_str()),
                referenced: t.referenced.iter().map(|k| k.0.as_str()).collect(),
            })
            .expect("serializable");
        }
        if let (Some(obj), serde_json::Value::Object(extra)) = (req.as_object_mut(), extra) {
            obj.extend(extra);
        }
        // The request may hold secrets (verify): keep it in zeroizing memory.
        let body = Zeroizing::new(serde_json::to_vec(&req).expect("serializable"));
        drop(req);
        let out = process::run(
            &self.program,
            operation,
            &self.settings.env,
            body,
            self.settings.timeout,
        )
        .await
        .map_err(|e| match e {
            RunError::Spawn(e) => self.err(
                operation,
                "permanent",
                format!("cannot run {}: {e}", self.program.display()),
            ),
            RunError::Wait(e) => self.err(
                operation,
                "transient",
                format!("waiting for the plugin: {e}"),
            ),
            RunError::Timeout => ProviderError::TimedOut {
                provider: self.name.to_owned(),
                operation,
                after: self.settings.timeout,
            },
        })?;
        // Operation and exit status only: stdout may hold secrets, stderr is free-form.
        tracing::debug!(plugin = %self.program.display(), operation, status = %out.status, stdout_bytes = out.stdout.len(), stderr_bytes = out.stderr_len, "plugin call");
        let stderr = stderr_excerpt(&out.stderr, out.stderr_len);
        if out.stdout_overflow {
            return Err(self.err(
                operation,
                "permanent",
                format!(
                    "the plugin wrote more than {} KiB to stdout and was stopped (a response is one small JSON object){stderr}",
                    MAX_STDOUT >> 10
                ),
            ));
        }
        let parsed = serde_json::from_slice::<WireResponse>(&out.stdout);
        match parsed {
            Ok(r) if r.protocol_version.is_some_and(|v| v != PROTOCOL_VERSION) => Err(self.err(
                operation,
                "permanent",
                format!(
                    "plugin speaks protocol {}, this build speaks {PROTOCOL_VERSION}",
                    r.protocol_version.unwrap_or(0)
                ),
            )),
            Ok(r) if r.ok && out.status.success() => Ok(r),
            Ok(WireResponse { error: Some(e), .. }) => Err(self.wire_err(operation, t, e)),
            Ok(_) => Err(self.err(
                operation,
                exit_kind(out.status),
                format!("plugin failed ({}) without an error object{stderr}", out.status),
            )),
            Err(_) if out.stdout.is_empty() => Err(self.err(
                operation,
                exit_kind(out.status),
                format!("plugin failed ({}) with no output{stderr}", out.status),
            )),
            Err(e) => Err(self.err(
                operation,
                exit_kind(out.status),
                // Never the output itself: it may hold secrets.
                format!(
                    "the plugin's output ({} bytes, {}) is not one JSON object: {} at byte {}{stderr}",
                    out.stdout.len(),
                    out.status,
                    e.classify_name(),
                    byte_offset(&out.stdout, e.line(), e.column())
                ),
            )),
        }
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected fields",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

/// The 0-based byte offset of serde_json's 1-based (line, column).
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in bytes.split(|b| *b == b'\n').enumerate() {
        if i + 1 == line {
            return offset + column.saturating_sub(1);
        }
        offset += l.len() + 1;
    }
    offset
}

fn exit_kind(status: std::process::ExitStatus) -> &'static str {
    if status.code() == Some(75) {
        "transient"
    } else {
        "permanent"
    }
}

/// Control characters escaped, length bounded: plugin text goes into errors and logs.
fn clean(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_STDERR_KEPT)
        .flat_map(|c| {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    let total = s.chars().count();
    if total > MAX_STDERR_KEPT {
        out.push_str(&format!(
            " … ({} more characters cut)",
            total - MAX_STDERR_KEPT
        ));
    }
    out
}

/// `: <stderr>` for messages: the kept head, cleaned, with how much was cut.
fn stderr_excerpt(head: &[u8], total: usize) -> String {
    let text = String::from_utf8_lossy(head);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let mut s = format!("; stderr: {}", clean(text));
    if total > head.len() {
        s.push_str(&format!(
            " … ({} more bytes of stderr cut)",
            total - head.len()
        ));
    }
    s
}

/// The identity of `t` for messages (annotation values only; they are not secret).
fn describe(t: &Target) -> String {
    let parts: Vec<String> = t
        .params
        .iter()
        .map(|(k, v)| format!("{k}={}", clean(v)))
        .collect();
    if parts.is_empty() {
        "the identity".into()
    } else {
        parts.join(" ")
    }
}

#[async_trait]
impl Provider for ExecProvider {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        // Asked once per run by `connect`.
        self.capabilities
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        self.call("preflight", serde_json::json!({}), Some(t))
            .await
            .map(drop)
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let r = self.call("keys", serde_json::json!({}), Some(t)).await?;
        Ok(r.keys
            .into_iter()
            .map(|k| KeyInfo {
                id: KeyId(k.key_id),
                created: k.created,
                status: match k.status.as_deref() {
                    Some("inactive") => KeyStatus::Inactive,
                    Some("expired") => KeyStatus::Expired,
                    _ => KeyStatus::Active,
                },
                last_used: k.last_used,
                expires: k.expires,
            })
            .collect())
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let r = self.call("mint", serde_json::json!({}), Some(t)).await?;
        let key_id = r
            .key_id
            .ok_or_else(|| self.err("mint", "permanent", "response has no keyId".into()))?;
        Ok(Minted {
            key_id: KeyId(key_id),
            created: r.created.unwrap_or_else(Utc::now),
            fields: r
                .fields
                .into_iter()
                .map(|(k, v)| (k, SecretValue::new(v)))
                .collect(),
            operator: r.operator,
        })
    }

    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        let fields: BTreeMap<&str, &str> = m
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        let extra = serde_json::json!({ "minted": { "keyId": m.key_id.0, "fields": fields } });
        self.call("verify", extra, None).await.map(drop)
    }

    async fn revoke(&self, t: &Target, key: &KeyId, how: Revoke) -> ProviderResult<Revoked> {
        let how = match how {
            Revoke::Delete => "delete",
            Revoke::Disable => "disable",
        };
        match self
            .call(
                "revoke",
                serde_json::json!({ "keyId": key.0, "revoke": how }),
                Some(t),
            )
            .await
        {
            Err(ProviderError::NotFound { .. }) => Ok(Revoked::AlreadyGone),
            other => other.map(|_| Revoked::Done),
        }
    }
}

impl ExecProvider {
    /// Asks the plugin for its limits (`capabilities` operation).
    pub async fn query_capabilities(&self) -> ProviderResult<Capabilities> {
        let r = self
            .call("capabilities", serde_json::json!({}), None)
            .await?;
        Ok(Capabilities {
            max_keys_per_identity: r.max_keys_per_identity,
            can_disable: r.can_disable.unwrap_or(false),
            needs_propagation: r.needs_propagation.unwrap_or(false),
            reports_last_use: r.reports_last_use.unwrap_or(false),
        })
    }
}
