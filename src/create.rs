//! `create`: mint a new credential and seal it into a new annotated SealedSecret — from a
//! rotation's stage steps: checks without side effects first (the same key-limit error),
//! the same busy rule (another run's claim, or a rotation of the credential in flight),
//! the claim taken the same way (`engine::take_claims`), the same mint-and-verify step
//! (`engine::mint_verified`), and the same undo when anything after the mint fails. What
//! differs is the end: a new file in the checkout instead of a commit.
//!
//! The file is written into the checkout (not committed); the claim is released once it
//! is written, so the key is then the user's to commit. When the repo has no reachable
//! main remote (a plain directory), the run goes on without a claim and says so.

use crate::annotations::{self, CREATE_DATE, KEY_MAPPINGS, SOURCE};
use crate::engine::{EngineError, Got, Minting, Phase, undo};
use crate::gitops::Fleet;
use crate::gitops::events::EventLog;
use crate::journal::table::{ClaimTable, Held};
use crate::journal::{Claim, RunId, TrailerAction, TrailerBlock, credential_id, trailers};
use crate::keys::identity_label;
use crate::manifest::Scope;
use crate::manifest::render::NewSealedSecret;
use crate::provider::{Provider, Target};
use crate::providers::Providers;
use crate::seal::{Plaintext, ops};
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What to create.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// Source (aws, azure, gcp or a plugin).
    pub source: String,
    /// Cluster whose sealing certificate to use.
    pub cluster: String,
    /// Namespace of the new secret.
    pub namespace: String,
    /// Name of the new secret.
    pub name: String,
    /// `keyMappings`, e.g. `[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]`;
    /// empty when every key is templated.
    pub key_mappings: String,
    /// Templated keys: Secret key → the name of a template in `.secret-manager.yaml`'s
    /// `templates:` (written as `secret-manager/template.<key>` annotations).
    pub templates: BTreeMap<String, String>,
    /// The Secret's `type` (default `Opaque`), e.g. `kubernetes.io/dockerconfigjson`.
    pub secret_type: Option<String>,
    /// Identity annotations (without prefix).
    pub params: BTreeMap<String, String>,
    /// Sealing scope.
    pub scope: Scope,
    /// Where to write (must not exist).
    pub write: PathBuf,
}

/// What `create` did.
#[derive(Debug)]
pub struct Created {
    /// The new key.
    pub key_id: String,
    /// The file written.
    pub file: PathBuf,
    /// Whether the mint ran under a claim on the main remote.
    pub claimed: bool,
}

/// Why `create` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The request is wrong (nothing was called).
    #[error("{0}")]
    Invalid(String),
    /// A phase failed; `undo` says what happened to a key minted before.
    #[error("{error}{}", undo.as_deref().map(|u| format!("; {u}")).unwrap_or_default())]
    Failed {
        /// The phase (it decides the exit code).
        phase: Phase,
        /// What failed.
        #[source]
        error: Box<EngineError>,
        /// The fate of a key minted before the failure.
        undo: Option<String>,
    },
}

fn failed(phase: Phase, error: impl Into<EngineError>) -> CreateError {
    CreateError::Failed {
        phase,
        error: Box::new(error.into()),
        undo: None,
    }
}

/// The claim side of `create`, when a main remote is reachable.
struct Claiming {
    refs: ClaimTable,
    events: EventLog,
    held: Held,
}

fn validate(req: &CreateRequest, repo: &crate::Repo) -> Result<(), CreateError> {
    let mappings = if req.key_mappings.is_empty() && !req.templates.is_empty() {
        Vec::new()
    } else {
        annotations::parse_key_mappings(&req.key_mappings)
            .map_err(|e| CreateError::Invalid(format!("--key-mappings: {e}")))?
    };
    for (key, name) in &req.templates {
        let esc = |s: &str| crate::text::escape(s).into_owned();
        if !crate::names::is_valid_secret_key(key) {
            return Err(CreateError::Invalid(format!(
                "--template {}: not a valid Secret key",
                esc(key)
            )));
        }
        if mappings.iter().any(|m| &m.secret_key == key) {
            return Err(CreateError::Invalid(format!(
                "--template {}: the key is in --key-mappings too; give it one or the other",
                esc(key)
            )));
        }
        let Some(src) = repo.config.templates.get(name) else {
            return Err(CreateError::Invalid(format!(
                "--template {}={}: no template `{}` in .secret-manager.yaml's templates:",
                esc(key),
                esc(name),
                esc(name)
            )));
        };
        let reads = crate::template::check(name, src)
            .map_err(|e| CreateError::Invalid(format!("--template {}: {e}", esc(key))))?;
        if let Some(fields) = annotations::output_fields(&req.source)
            && let Some(unknown) = reads.iter().find(|v| !fields.contains(&v.as_str()))
        {
            return Err(CreateError::Invalid(format!(
                "--template {}={}: the template reads `{}`, which {} does not provide (one of: {})",
                esc(key),
                esc(name),
                esc(unknown),
                req.source,
                fields.join(", ")
            )));
        }
    }
    if let Some(t) = &req.secret_type
        && (t.is_empty()
            || t.len() > 253
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-' | b'_')))
    {
        return Err(CreateError::Invalid(format!(
            "--type {}: not a Secret type (e.g. kubernetes.io/dockerconfigjson)",
            crate::text::escape(t)
        )));
    }
    if let Some(fields) = annotations::output_fields(&req.source) {
        for m in &mappings {
            if !fields.contains(&m.field.as_str()) {
                return Err(CreateError::Invalid(format!(
                    "--key-mappings: `{}` is not an output field of {} (one of: {})",
                    m.field,
                    req.source,
                    fields.join(", ")
                )));
            }
        }
    }
    for required in annotations::identity_annotations(&req.source) {
        if !req.params.contains_key(*required) {
            return Err(CreateError::Invalid(format!(
                "--param {required}=... is required for source {}",
                req.source
            )));
        }
    }
    let alternatives = annotations::identity_alternatives(&req.source);
    if !alternatives.is_empty()
        && alternatives
            .iter()
            .filter(|a| req.params.contains_key(**a))
            .count()
            != 1
    {
        return Err(CreateError::Invalid(format!(
            "source {} needs exactly one of {}: --param {}=...",
            req.source,
            alternatives.join(", "),
            alternatives[0]
        )));
    }
    if req.write.exists() {
        return Err(CreateError::Invalid(format!(
            "{} exists; refusing to overwrite",
            req.write.display()
        )));
    }
    Ok(())
}

/// Takes a claim on the identity when the repo's main remote answers.
fn claim(
    repo: &crate::Repo,
    run: &RunId,
    req: &CreateRequest,
    identity: &str,
    keys_before: Vec<String>,
    now: DateTime<Utc>,
) -> Result<Option<Claiming>, CreateError> {
    let fleet = Fleet::new(repo);
    if fleet.git().run(&["rev-parse", "--git-dir"]).is_err() {
        tracing::info!("not a git checkout: minting without a claim");
        return Ok(None);
    }
    fleet
        .git()
        .check_signing()
        .map_err(|e| CreateError::Invalid(EngineError::Signing(e).to_string()))?;
    if let Err(e) = fleet.fetch_main() {
        tracing::warn!(error = %e, "no reachable main remote: minting without a claim (a crash now leaves the key for you to delete)");
        return Ok(None);
    }
    let refs = ClaimTable::new(&fleet, &repo.config.claim_ref_prefix);
    let id = credential_id(&req.source, identity);
    let listed = refs.list().map_err(|e| failed(Phase::Publish, e))?;
    // The same rule as a rotation's: nothing is minted for a credential another run holds
    // or whose rotation is still in flight (its revoke would race the new key).
    if let Some(who) = crate::journal::table::claimed_by(&listed, &id) {
        return Err(CreateError::Invalid(format!(
            "{identity} is claimed ({who}); wait for that run, or run `secret-manager rotate` to clean up after it if it died"
        )));
    }
    let records = crate::journal::store::in_flight(&fleet, &repo.root, true)
        .map_err(|e| CreateError::Invalid(e.to_string()))?
        .records;
    if let Some(why) = crate::engine::busy_reason(&req.source, identity, &records, &listed, run) {
        return Err(CreateError::Invalid(format!(
            "{identity}: {why}; create another secret for it once that rotation has ended"
        )));
    }
    let c = Claim::new(
        run,
        &req.source,
        identity,
        &req.params,
        Vec::new(),
        keys_before,
        now,
        repo.config.claim_lease,
    );
    match crate::engine::take_claims(&refs, vec![c]).pop() {
        Some(Got::Held(held)) => Ok(Some(Claiming {
            events: EventLog::new(&fleet),
            refs,
            held,
        })),
        Some(Got::Busy) => Err(CreateError::Invalid(format!(
            "{identity} was claimed by another run at the same moment; try again"
        ))),
        Some(Got::Failed(e)) => Err(failed(Phase::Publish, e)),
        None => unreachable!("one outcome per claim"),
    }
}

/// Seals the minted values into a new SealedSecret and writes it to `req.write`.
fn seal_and_write(
    req: &CreateRequest,
    repo: &crate::Repo,
    cert: &crate::seal::SealingCert,
    minted: &crate::provider::Minted,
) -> Result<(), EngineError> {
    let prefix = repo.config.annotation_prefix.as_str();
    let mappings = annotations::parse_key_mappings(&req.key_mappings).unwrap_or_default();
    let mut values = BTreeMap::new();
    for m in &mappings {
        let v = crate::engine::field(minted, &req.source, &m.field)?;
        values.insert(
            m.secret_key.clone(),
            Plaintext::new(v.expose().as_bytes().to_vec()),
        );
    }
    // Templated keys, rendered as a rotation renders them.
    let fields: BTreeMap<String, &str> = minted
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.expose()))
        .collect();
    for (key, name) in &req.templates {
        let template_err = |message: String| EngineError::Template {
            file: req.write.display().to_string(),
            key: key.clone(),
            message,
        };
        let src = repo.config.templates.get(name).ok_or_else(|| {
            template_err(format!(
                "no template `{name}` in .secret-manager.yaml's templates:"
            ))
        })?;
        let value =
            crate::template::render(name, src, &fields).map_err(|e| template_err(e.to_string()))?;
        crate::template::validate_for_type(req.secret_type.as_deref(), key, &value)
            .map_err(|e| template_err(e.to_string()))?;
        values.insert(key.clone(), Plaintext::new(value.as_bytes().to_vec()));
    }
    let mut template_annotations: BTreeMap<String, String> = req
        .params
        .iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
        .collect();
    template_annotations.insert(format!("{prefix}{SOURCE}"), req.source.clone());
    template_annotations.insert(
        format!("{prefix}{}", annotations::key_id_annotation(&req.source)),
        minted.key_id.0.clone(),
    );
    template_annotations.insert(
        format!("{prefix}{CREATE_DATE}"),
        minted.created.to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    if !req.key_mappings.is_empty() {
        template_annotations.insert(format!("{prefix}{KEY_MAPPINGS}"), req.key_mappings.clone());
    }
    for (key, name) in &req.templates {
        template_annotations.insert(
            format!("{prefix}{}{key}", annotations::TEMPLATE_ANNOTATION),
            name.clone(),
        );
    }
    let doc = NewSealedSecret {
        template_annotations,
        secret_type: Some(req.secret_type.clone().unwrap_or_else(|| "Opaque".into())),
        ..NewSealedSecret::default()
    };
    let edit_err = |message: String| EngineError::Edit {
        file: req.write.display().to_string(),
        message,
    };
    let doc = ops::seal_new(
        &mut rand::rngs::OsRng,
        cert,
        prefix,
        &req.name,
        Some(&req.namespace),
        req.scope,
        &values,
        doc,
    )
    .map_err(|e| edit_err(e.to_string()))?;
    if let Some(dir) = req.write.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| edit_err(e.to_string()))?;
    }
    crate::manifest::edit::write_atomic(&req.write, doc.to_yaml().as_bytes())
        .map_err(|e| edit_err(e.to_string()))
}

/// Appends the `create` event to the audit log. The key exists and the file is written
/// whatever happens here: a failure is a warning, not a reason to undo.
fn record_create(
    events: &EventLog,
    repo: &crate::Repo,
    req: &CreateRequest,
    identity: &str,
    run: &RunId,
    minted: &crate::provider::Minted,
) {
    let mut b = TrailerBlock::new(TrailerAction::Create);
    b.run = Some(run.0.clone());
    b.source = Some(req.source.clone());
    b.identity = Some(identity.to_owned());
    b.new_key = Some(minted.key_id.0.clone());
    b.operator = minted.operator.clone();
    b.clusters = vec![req.cluster.clone()];
    b.secrets = vec![crate::journal::trailers::SecretTrailer {
        cluster: req.cluster.clone(),
        namespace: req.namespace.clone(),
        name: req.name.clone(),
        file: repo_relative(repo, &req.write),
        document: 0,
    }];
    let msg = trailers::message(
        &format!("secret-manager: created {}/{}", req.namespace, req.name),
        &[b],
    );
    if let Err(e) = events.append(&msg) {
        tracing::warn!(error = %e, "could not record the create in the audit log {}", crate::gitops::events::EVENTS_REF);
        eprintln!(
            "warning: the key and the file exist, but the audit log {} could not record the create: {e}",
            crate::gitops::events::EVENTS_REF
        );
    }
}

/// `path` relative to the repo root when it lies inside it (as audit records name files).
fn repo_relative(repo: &crate::Repo, path: &std::path::Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let root = std::fs::canonicalize(&repo.root).unwrap_or_else(|_| repo.root.clone());
    abs.strip_prefix(&root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.display().to_string())
}

/// Deletes the key `create` minted because a later step failed with `error`; records the
/// undo in the audit log; releases the claim unless the key could not be deleted (then a
/// later `rotate` cleans it up).
#[allow(clippy::too_many_arguments)]
async fn undo_create(
    provider: &dyn Provider,
    target: &Target,
    identity: &str,
    run: &RunId,
    req: &CreateRequest,
    minted: &crate::provider::Minted,
    claiming: &Option<Claiming>,
    error: EngineError,
) -> CreateError {
    let why = format!("create failed: {error}");
    let (step, block, undo_err) =
        undo(provider, target, identity, &run.0, &minted.key_id.0, &why).await;
    if let (Some(c), Some(b)) = (claiming, block) {
        let msg = trailers::message(
            "secret-manager: deleted a new key that could not be used",
            &[b],
        );
        if let Err(e) = c.events.append(&msg) {
            tracing::warn!(error = %e, "could not record the undo in the audit log");
        }
    }
    let undo_text = match &undo_err {
        None => {
            if let Some(c) = claiming {
                let _ = c.refs.release(std::slice::from_ref(&c.held));
            }
            format!(
                "rolled back: deleted the new key {} at {}",
                minted.key_id, req.source
            )
        }
        Some(_) => step.detail.clone(),
    };
    CreateError::Failed {
        phase: Phase::Mint,
        error: Box::new(error),
        undo: Some(undo_text),
    }
}

/// Creates the credential and writes the SealedSecret to `req.write`.
pub async fn create(
    repo: &crate::Repo,
    providers: &Providers,
    req: &CreateRequest,
    now: DateTime<Utc>,
    run: &RunId,
) -> Result<Created, CreateError> {
    validate(req, repo)?;
    let identity = identity_label(&req.source, &req.params);
    // Everything that can fail without side effects comes first.
    let cert = repo
        .sealing_cert_to_seal_with(&req.cluster, now)
        .await
        .map_err(|e| CreateError::Invalid(e.to_string()))?;
    let provider = providers
        .get(&req.source)
        .await
        .map_err(|e| failed(Phase::Preflight, e))?;
    let target = Target {
        source: req.source.clone(),
        params: req.params.clone(),
        current_key: None,
        referenced: Vec::new(),
    };
    provider
        .preflight(&target)
        .await
        .map_err(|e| failed(Phase::Preflight, e))?;
    let keys = provider
        .keys(&target)
        .await
        .map_err(|e| failed(Phase::Preflight, e))?;
    if let Some(limit) = provider.capabilities().max_keys_per_identity
        && keys.len() >= limit as usize
    {
        // The same error as a rotation's: each key, and the manifests that hold it.
        let found = repo.scan().secrets;
        let holders = |id: &str| {
            let h: Vec<String> = found
                .iter()
                .filter(|f| {
                    f.managed
                        .as_ref()
                        .is_some_and(|m| m.source == req.source && m.key_id.as_deref() == Some(id))
                })
                .map(|f| format!("{}:{}", f.file.display(), f.doc.line))
                .collect();
            (!h.is_empty()).then_some(h)
        };
        return Err(failed(
            Phase::Mint,
            crate::engine::key_limit_error(&identity, &keys, limit, holders),
        ));
    }
    let claiming = claim(
        repo,
        run,
        req,
        &identity,
        keys.iter().map(|k| k.id.0.clone()).collect(),
        now,
    )?;
    let release = |c: &Option<Claiming>| {
        if let Some(c) = c {
            let _ = c.refs.release(std::slice::from_ref(&c.held));
        }
    };
    let undo = |minted, error| {
        undo_create(
            provider.as_ref(),
            &target,
            &identity,
            run,
            req,
            minted,
            &claiming,
            error,
        )
    };
    // The rotation's mint step: mint, then verify; from here on a key exists, and if
    // anything fails it is deleted again.
    let minted = match crate::engine::mint_verified(provider.as_ref(), &target).await {
        Ok(m) => m,
        Err(Minting::Failed(e)) => {
            release(&claiming);
            return Err(failed(Phase::Mint, e));
        }
        Err(Minting::Unverified(m, e)) => return Err(undo(&m, e).await),
    };
    let result = seal_and_write(req, repo, &cert, &minted);
    match result {
        Ok(()) => {
            if let Some(c) = &claiming {
                record_create(&c.events, repo, req, &identity, run, &minted);
            }
            release(&claiming);
            Ok(Created {
                key_id: minted.key_id.0,
                file: req.write.clone(),
                claimed: claiming.is_some(),
            })
        }
        Err(error) => Err(undo(&minted, error).await),
    }
}
