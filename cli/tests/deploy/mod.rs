//! deploy/: what a platform engineer installs. The kustomizations render and validate
//! strictly, the pods meet Pod Security "restricted", the jobs select what they should,
//! the image's build context compiles, and the binary behaves in the pod's arrangement.

mod image;
mod manifests;
mod monitoring;
mod psa;
mod runtime;

use crate::common::root;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `kubectl kustomize <dir>` (kustomize is built into kubectl).
pub fn render(dir: &Path) -> String {
    secret_manager_testkit::tier::environment("kubectl");
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl is needed for the deploy tests (kustomize is built in)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A directory under deploy/.
pub fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

/// The rendered documents as JSON values.
pub fn documents(rendered: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(rendered)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Every document of `kind`.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one document of `kind`.
pub fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let all = of_kind(docs, kind);
    assert_eq!(all.len(), 1, "expected one {kind}, got {}", all.len());
    all[0]
}

/// A tool installed in the test venv by scripts/test (or named by `env`).
pub fn venv_tool(env: &str, name: &str) -> PathBuf {
    secret_manager_testkit::tier::environment(name);
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/venv/bin").join(name));
    assert!(
        path.exists(),
        "{name} not found at {}: run scripts/test",
        path.display()
    );
    path
}

/// Strict schema validation: built-in kinds against the Kubernetes schemas, SealedSecrets
/// against the sealed-secrets CRD, and an unknown kind is an error.
pub fn validate(rendered: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, rendered).unwrap();
    let python = venv_tool("DEPLOY_PYTHON", "python");
    let out = Command::new(python)
        .arg(root().join("scripts/validate-manifests.py"))
        .arg("--crd")
        .arg(crate::common::testdata(
            "crds/sealedsecrets.bitnami.com.yaml",
        ))
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(text)
    }
}

/// The pod template of a CronJob.
pub fn pod_spec(cronjob: &Value) -> &Value {
    &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
}

/// The container's args of a CronJob, as strings.
pub fn args(cronjob: &Value) -> Vec<String> {
    pod_spec(cronjob)["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// The value of env variable `name` in a CronJob's container.
pub fn env_var<'a>(cronjob: &'a Value, name: &str) -> Option<&'a str> {
    pod_spec(cronjob)["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}
