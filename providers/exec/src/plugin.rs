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

use crate::api::{
    Capabilities, KeyId, KeyInfo, KeyStatus, Minted, Provider, ProviderError, ProviderResult,
    Revoke, SecretValue, Target,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use zeroize::Zeroizing;

/// Protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// A provider implemented by an external program.
#[derive(Debug)]
pub struct ExecProvider {
    name: &'static str,
    program: PathBuf,
    timeout: Duration,
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
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireKey {
    key_id: String,
    created: Option<DateTime<Utc>>,
    #[serde(default)]
    status: Option<String>,
    last_used: Option<DateTime<Utc>>,
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
}

impl ExecProvider {
    /// A provider for source `name` run through `program`.
    pub fn new(name: &str, program: PathBuf) -> Self {
        ExecProvider {
            // Provider names live for the whole run; leaking one short string per plugin
            // is what lets `name()` return `&'static str` as the trait requires.
            name: Box::leak(name.to_owned().into_boxed_str()),
            program,
            timeout: Duration::from_secs(120),
        }
    }

    /// Finds `secret-manager-provider-<name>` on PATH.
    pub fn find(name: &str) -> Option<Self> {
        crate::find_plugin(name).map(|p| Self::new(name, p))
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
            "keyLimit" => ProviderError::KeyLimit {
                provider,
                identity: "identity".into(),
                count: 0,
                hint: message,
            },
            _ => ProviderError::Permanent {
                provider,
                operation,
                message,
            },
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
        let mut child = tokio::process::Command::new(&self.program)
            .arg(operation)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                self.err(
                    operation,
                    "permanent",
                    format!("cannot run {}: {e}", self.program.display()),
                )
            })?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(&body)
            .await
            .map_err(|e| self.err(operation, "permanent", format!("writing the request: {e}")))?;
        drop(stdin);
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                self.err(
                    operation,
                    "transient",
                    format!("plugin timed out after {:?}", self.timeout),
                )
            })?
            .map_err(|e| self.err(operation, "permanent", e.to_string()))?;
        // Operation and exit status only: stdout may hold secrets, stderr is free-form.
        tracing::debug!(plugin = %self.program.display(), operation, status = %out.status, stdout_bytes = out.stdout.len(), "plugin call");
        let stdout = Zeroizing::new(out.stdout);
        let resp: Option<WireResponse> = serde_json::from_slice(&stdout).ok();
        match resp {
            Some(r) if r.protocol_version.is_some_and(|v| v != PROTOCOL_VERSION) => Err(self.err(
                operation,
                "permanent",
                format!(
                    "plugin speaks protocol {}, this build speaks {PROTOCOL_VERSION}",
                    r.protocol_version.unwrap_or(0)
                ),
            )),
            Some(r) if r.ok && out.status.success() => Ok(r),
            Some(WireResponse { error: Some(e), .. }) => {
                Err(self.err(operation, &e.kind, e.message))
            }
            _ => {
                // Only the first stderr line, and never stdout: stdout may hold secrets.
                let stderr = String::from_utf8_lossy(&out.stderr);
                let first = stderr.lines().next().unwrap_or("no message").to_owned();
                let kind = if out.status.code() == Some(75) {
                    "transient"
                } else {
                    "permanent"
                };
                Err(self.err(
                    operation,
                    kind,
                    format!("plugin failed ({}): {first}", out.status),
                ))
            }
        }
    }
}

#[async_trait]
impl Provider for ExecProvider {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        // Static answer; plugins declare limits through `keys`/`mint` errors (keyLimit).
        Capabilities {
            max_keys_per_identity: None,
            can_disable: false,
            needs_propagation: false,
        }
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

    async fn revoke(&self, t: &Target, key: &KeyId, how: Revoke) -> ProviderResult<()> {
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
            Err(ProviderError::NotFound { .. }) => Ok(()),
            other => other.map(drop),
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
        })
    }
}
