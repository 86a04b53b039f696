//! Prometheus metrics: `list -o prometheus`, and `rotate`/`delete` with `--metrics-file`
//! (node_exporter's textfile collector) or `--pushgateway`.
//!
//! Built with the Prometheus project's `prometheus-client` crate. Labels name the secret
//! (`cluster`, `namespace`, `name`, `source`) and never a key id or a value.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use secret_manager::engine::{Action, RotateReport};
use secret_manager::list::{ListRow, State};
use std::sync::atomic::AtomicU64;

/// The labels of one credential's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Credential {
    cluster: String,
    namespace: String,
    name: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseOutcome {
    phase: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitingOnLabel {
    on: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every series of one command run.
pub struct Metrics {
    registry: Registry,
    created: Family<Credential, FloatGauge>,
    due: Family<Credential, Gauge>,
    cert_current: Family<Credential, Gauge>,
    scan_files: Gauge,
    diagnostics: Family<Kind, Gauge>,
}

impl Metrics {
    /// The credential and scan series.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let created = Family::<Credential, FloatGauge>::default();
        let due = Family::<Credential, Gauge>::default();
        let cert_current = Family::<Credential, Gauge>::default();
        let scan_files = Gauge::default();
        let diagnostics = Family::<Kind, Gauge>::default();
        // A timestamp, not an age: an age pushed once freezes in the Pushgateway and the
        // textfile collector; `time() - created` is right whenever it is evaluated.
        registry.register(
            "secret_manager_credential_created_timestamp_seconds",
            "When the credential was created (its createDate, Unix time); the age is time() minus this",
            created.clone(),
        );
        registry.register(
            "secret_manager_credential_due",
            "1 when the credential is older than policy.maxAge (or of unknown age)",
            due.clone(),
        );
        registry.register(
            "secret_manager_credential_cert_current",
            "1 when sealed with the cluster's current certificate, 0 when not (absent when unknown)",
            cert_current.clone(),
        );
        registry.register(
            "secret_manager_scan_files",
            "Files with SealedSecret text the scan looked at",
            scan_files.clone(),
        );
        registry.register(
            "secret_manager_scan_diagnostics",
            "Files the scan could not use, by kind (error, skipped)",
            diagnostics.clone(),
        );
        let build = Family::<Version, Gauge>::default();
        build
            .get_or_create(&Version {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "secret_manager_build_info",
            "Always 1; the version label says which build wrote the series",
            build,
        );
        Metrics {
            registry,
            created,
            due,
            cert_current,
            scan_files,
            diagnostics,
        }
    }

    /// One series set per managed credential row.
    pub fn credentials(&self, rows: &[ListRow], now: chrono::DateTime<chrono::Utc>) {
        for r in rows.iter().filter(|r| r.state != State::Unmanaged) {
            let l = Credential {
                cluster: r.cluster.clone(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                source: r.source.clone(),
            };
            if let Some(d) = r
                .create_date
                .as_deref()
                .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
            {
                let _ = now;
                let secs = d.with_timezone(&chrono::Utc).timestamp_millis() as f64 / 1e3;
                self.created.get_or_create(&l).set(secs);
            }
            self.due.get_or_create(&l).set(i64::from(
                r.state == State::Due || r.state == State::Invalid,
            ));
            if let Some(c) = r.cert_current {
                self.cert_current.get_or_create(&l).set(i64::from(c));
            }
        }
    }

    /// The scan's size and its diagnostics by kind.
    pub fn scan(&self, report: &secret_manager::scan::ScanReport) {
        self.scan_files.set(report.files_seen as i64);
        for kind in ["error", "skipped"] {
            let n = report
                .diagnostics
                .iter()
                .filter(|d| {
                    matches!(
                        (kind, d.kind),
                        ("error", secret_manager::scan::DiagnosticKind::Error)
                            | ("skipped", secret_manager::scan::DiagnosticKind::Skipped)
                    )
                })
                .count();
            self.diagnostics
                .get_or_create(&Kind { kind: kind.into() })
                .set(n as i64);
        }
    }

    /// The run's own series: when it ran, whether it succeeded, how long it took, its
    /// steps by phase and outcome, and when a run last succeeded — this one, or
    /// `last_success` (what the previous runs recorded) when this one failed.
    ///
    /// Every series describes the last run (gauges): a batch job's counter would restart
    /// at each push, and `rate()` over it would mean nothing.
    pub fn run(
        &mut self,
        report: &RotateReport,
        started: chrono::DateTime<chrono::Utc>,
        duration: std::time::Duration,
        success: bool,
        last_success: Option<f64>,
    ) {
        let ts = FloatGauge::default();
        ts.set(started.timestamp_millis() as f64 / 1e3);
        self.registry.register(
            "secret_manager_run_timestamp_seconds",
            "When the last run started (Unix time)",
            ts,
        );
        let ok = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        ok.set(i64::from(success));
        self.registry.register(
            "secret_manager_run_success",
            "1 when the last run succeeded (exit code 0), else 0",
            ok,
        );
        let d = FloatGauge::default();
        d.set(duration.as_secs_f64());
        self.registry.register(
            "secret_manager_run_duration_seconds",
            "How long the last run took",
            d,
        );
        let finished = (started.timestamp_millis() as f64 / 1e3) + duration.as_secs_f64();
        if let Some(t) = if success {
            Some(finished)
        } else {
            last_success
        } {
            let g = FloatGauge::default();
            g.set(t);
            self.registry.register(
                "secret_manager_last_success_timestamp_seconds",
                "When a run last finished with exit code 0 (Unix time)",
                g,
            );
        }
        let steps_family = Family::<PhaseOutcome, Gauge>::default();
        let count = |phase: &str, outcome: &str, n: usize| {
            steps_family
                .get_or_create(&PhaseOutcome {
                    phase: phase.into(),
                    outcome: outcome.into(),
                })
                .inc_by(n as i64);
        };
        let done = |a: Action| report.count(a);
        let steps = |a: Action| report.steps.iter().filter(|s| s.action == a).count();
        count(
            "stage",
            "staged",
            done(Action::Stage) + done(Action::Propose),
        );
        count("publish", "published", done(Action::Publish));
        count("revoke", "revoked", done(Action::Revoke));
        count("revoke", "waiting", steps(Action::Wait));
        count("stage", "busy", steps(Action::Busy));
        for f in &report.failures {
            count(&format!("{:?}", f.phase).to_lowercase(), "failed", 1);
        }
        self.registry.register(
            "secret_manager_last_run_steps",
            "Steps of the last run by phase and outcome (staged, published, revoked, waiting, busy, failed)",
            steps_family,
        );
        // What the waiting rotations wait on: a gate that never opens shows here.
        let waiting = Family::<WaitingOnLabel, Gauge>::default();
        for s in report.steps.iter().filter(|s| s.action == Action::Wait) {
            if let Some(on) = s.waiting_on {
                waiting
                    .get_or_create(&WaitingOnLabel {
                        on: on.name().into(),
                    })
                    .inc();
            }
        }
        self.registry.register(
            "secret_manager_last_run_waiting",
            "Rotations of the last run waiting to revoke, by what they wait on (grace, synced, argocd, consumers, command, unused, pointers, hotfix, claim)",
            waiting,
        );
    }

    /// The Prometheus text exposition format 0.0.4, which node_exporter's textfile
    /// collector and the Pushgateway parse.
    ///
    /// The client writes OpenMetrics text: a counter family `x` with samples `x_total`, and
    /// a final `# EOF`. Text 0.0.4 names the family by its samples (`# TYPE x_total
    /// counter`), or the Pushgateway stores the counter as untyped; so counter families
    /// are renamed to their sample name and `# EOF` is dropped. Series are sorted within
    /// each family (the client keeps them in a hash map) so that the same state always
    /// prints the same text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        // The client keeps a family's series in a hash map; sort them within each family
        // so that the same state always prints the same text.
        let counters: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
            .collect();
        let family_line = |line: &str| -> String {
            for tag in ["# TYPE ", "# HELP "] {
                if let Some(rest) = line.strip_prefix(tag) {
                    let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                    if counters.contains(name) {
                        return format!("{tag}{name}_total {tail}");
                    }
                }
            }
            line.to_owned()
        };
        let mut out = String::with_capacity(text.len());
        let mut samples: Vec<&str> = Vec::new();
        let flush = |out: &mut String, samples: &mut Vec<&str>| {
            samples.sort_unstable();
            for l in samples.drain(..) {
                out.push_str(l);
                out.push('\n');
            }
        };
        for line in text.lines() {
            if line == "# EOF" {
                continue;
            }
            if line.starts_with('#') {
                flush(&mut out, &mut samples);
                out.push_str(&family_line(line));
                out.push('\n');
            } else {
                samples.push(line);
            }
        }
        flush(&mut out, &mut samples);
        out
    }
}

/// Writes `text` to `path` atomically (temp file in the same directory, then rename), as
/// node_exporter's textfile collector needs: it never reads half a file.
pub fn write_textfile(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".secret-manager-metrics-")
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "--metrics-file {}: cannot write in {}",
                path.display(),
                dir.display()
            )
        })?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    // Readable by the collector, whatever umask the temp file got.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path)
        .with_context(|| format!("--metrics-file {}", path.display()))?;
    Ok(())
}

/// The value of `secret_manager_last_success_timestamp_seconds` in the text a previous run
/// wrote (a failed run carries it over instead of losing it).
pub fn last_success_in(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("secret_manager_last_success_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
}

/// Pushes `text` to a Prometheus Pushgateway under job `secret-manager` and the grouping
/// label `shard=<shard>` (POST: the series of each metric it pushes are replaced, a metric
/// it does not push — the last success time after a failed run — is kept). Retried on a connection error or a
/// 5xx, at most 3 attempts within ~10 s.
pub async fn push(url: &str, shard: &str, text: &str) -> anyhow::Result<()> {
    let instance = shard;
    let base = url.trim_end_matches('/');
    // The Pushgateway URL is the operator's (a flag). Plain http to an in-cluster service
    // is usual and carries no secret; a URL with credentials in it must be https.
    let has_userinfo = base.split_once("://").is_some_and(|(_, rest)| {
        rest.split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .contains('@')
    });
    if has_userinfo && !secret_manager::config::secure_or_loopback(base) {
        anyhow::bail!(
            "--pushgateway: a URL with credentials must be https (plain http only to a loopback address)"
        );
    }
    let target = format!(
        "{base}/metrics/job/secret-manager/shard/{}",
        instance
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            })
            .collect::<String>()
    );
    let body = text.to_owned();
    // Messages name the target without any credentials in its URL.
    let shown = match target.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((auth, path)) => format!(
                "{scheme}://{}/{path}",
                auth.rsplit('@').next().unwrap_or_default()
            ),
            None => target.clone(),
        },
        None => target.clone(),
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let mut last = String::new();
    for attempt in 1..=crate::http::ATTEMPTS {
        match client
            .post(&target)
            .header("Content-Type", "text/plain; version=0.0.4")
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_server_error() => {
                last = format!("HTTP {}", r.status());
            }
            Ok(r) => {
                let status = r.status();
                let msg: String = r
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(3000)
                    .collect();
                anyhow::bail!("pushgateway {shown}: HTTP {status}: {}", msg.trim());
            }
            Err(e) => last = crate::http::failure_kind(&e),
        }
        crate::http::backoff(attempt).await;
    }
    anyhow::bail!(
        "pushgateway {shown}: {last} (after {} attempts)",
        crate::http::ATTEMPTS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed run keeps the last good run's time; a good run writes its own end time.
    #[test]
    fn the_last_success_survives_a_failed_run() {
        let started = chrono::DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut good = Metrics::new();
        good.run(
            &RotateReport::default(),
            started,
            std::time::Duration::from_secs(30),
            true,
            None,
        );
        let text = good.encode();
        let t = last_success_in(&text).unwrap();
        assert_eq!(t, started.timestamp() as f64 + 30.0, "{text}");
        let mut failed = Metrics::new();
        failed.run(
            &RotateReport::default(),
            started + chrono::Duration::hours(1),
            std::time::Duration::from_secs(5),
            false,
            last_success_in(&text),
        );
        let after = failed.encode();
        assert_eq!(last_success_in(&after), Some(t), "{after}");
        assert!(after.contains("secret_manager_run_success 0"), "{after}");
        // Nothing to carry: no series rather than a made-up time.
        let mut first = Metrics::new();
        first.run(
            &RotateReport::default(),
            started,
            std::time::Duration::from_secs(5),
            false,
            None,
        );
        assert_eq!(last_success_in(&first.encode()), None);
    }
}
