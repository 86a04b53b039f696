//! A synthetic fleet repo for the `list` benchmark (the example repo's layout, large).
//!
//! Ciphertexts are random base64 of the length a 4096-bit kubeseal value has: `list` never
//! decrypts, so real sealing would only slow the generator down.

use base64::Engine as _;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Generator knobs.
pub struct FleetOptions {
    /// SealedSecret documents (one per file).
    pub secrets: usize,
    /// Total YAML files, including the sealed ones.
    pub files: usize,
    /// Clusters in the inventory.
    pub clusters: usize,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            secrets: 10_000,
            files: 50_000,
            clusters: 50,
        }
    }
}

fn put(root: &Path, rel: &str, s: &str) -> Result<(), String> {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(&p, s).map_err(|e| format!("{}: {e}", p.display()))
}

fn fake_ct(rng: &mut ChaCha8Rng) -> String {
    let mut b = vec![0u8; 2 + 512 + 56];
    rng.fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn generate(root: &Path, o: &FleetOptions) -> Result<(), String> {
    if o.secrets > o.files {
        return Err("--secrets must not exceed --files".into());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let clouds = [
        ("aws", "eu-central-1"),
        ("gcp", "europe-west1"),
        ("azure", "westeurope"),
    ];
    let clusters: Vec<String> = (0..o.clusters)
        .map(|i| {
            let (c, r) = clouds[i % 3];
            format!("{c}.{r}.c{i:03}")
        })
        .collect();
    for (i, id) in clusters.iter().enumerate() {
        let ptr = if i % 4 == 0 { "tag" } else { "branch" };
        let remote = if i % 2 == 0 { "origin" } else { "prod" };
        put(
            root,
            &format!("cluster-values/{id}.yaml"),
            &format!(
                "cloud: {}\nsecretManager:\n  pointer: {ptr}\n  remote: {remote}\n  sealingCert: tooling/certs/{id}.pem\n",
                &id[..id.find('.').unwrap()]
            ),
        )?;
    }
    let apps = (o.files / 100).max(1);
    let mut written = clusters.len();
    for s in 0..o.secrets {
        let app = format!("app{:04}", s % apps);
        let id = &clusters[s % clusters.len()];
        let cloud = &id[..id.find('.').unwrap()];
        let (ann, keys) = match cloud {
            "aws" => (
                format!(
                    "        secret-manager/accessKeyId: \"AKIA{:016}\"\n        secret-manager/account: \"{:012}\"\n        secret-manager/username: \"{app}-bot\"\n        secret-manager/keyMappings: \"[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]\"\n",
                    s, s
                ),
                vec!["accessKeyId", "secretAccessKey"],
            ),
            "gcp" => (
                format!(
                    "        secret-manager/project: \"proj-{app}\"\n        secret-manager/serviceAccount: \"{app}@proj-{app}.iam.gserviceaccount.com\"\n        secret-manager/keyId: \"{:040x}\"\n        secret-manager/keyMappings: \"[key.json:KeyFileJson]\"\n",
                    s
                ),
                vec!["key.json"],
            ),
            _ => (
                format!(
                    "        secret-manager/tenantId: \"00000000-0000-0000-0000-{:012}\"\n        secret-manager/applicationObjectId: \"00000000-0000-0000-0001-{:012}\"\n        secret-manager/clientId: \"00000000-0000-0000-0002-{:012}\"\n        secret-manager/keyId: \"00000000-0000-0000-0003-{:012}\"\n        secret-manager/keyMappings: \"[clientSecret:ClientSecret]\"\n",
                    s, s, s, s
                ),
                vec!["clientSecret"],
            ),
        };
        let day = 1 + rng.gen_range(0..300);
        let date = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::days(day);
        let mut data = String::new();
        for k in keys {
            data.push_str(&format!("    {k}: {}\n", fake_ct(&mut rng)));
        }
        let doc = format!(
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: secret-{s}\n  namespace: {app}\nspec:\n  template:\n    metadata:\n      name: secret-{s}\n      namespace: {app}\n      annotations:\n        secret-manager/source: \"{cloud}\"\n        secret-manager/createDate: \"{}\"\n{ann}    type: Opaque\n  encryptedData:\n{data}",
            date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        put(
            root,
            &format!("applications/{app}/state/overlays/{id}/sealed-secret-{s}.yaml"),
            &doc,
        )?;
        written += 1;
    }
    // Everything else a fleet repo holds: values, chart templates, kustomizations, configmaps.
    let mut n = 0usize;
    while written < o.files {
        let app = format!("app{:04}", n % apps);
        let id = &clusters[n % clusters.len()];
        let (rel, body) = match n % 4 {
            0 => (
                format!("applications/{app}/values/{n}/{id}.yaml"),
                format!(
                    "replicas: {}\nimage: registry.example.com/{app}:1.{}.0\nresources:\n  requests: {{cpu: 100m, memory: 128Mi}}\n",
                    n % 5 + 1,
                    n % 30
                ),
            ),
            1 => (
                format!("applications/{app}/chart/templates/t{n}.yaml"),
                format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{{{ .Release.Name }}}}-{n}\nspec:\n  replicas: {{{{ .Values.replicas }}}}\n  template:\n    spec:\n      containers:\n        - name: main\n          image: {{{{ .Values.image }}}}\n"
                ),
            ),
            2 => (
                format!("applications/{app}/state/overlays/{id}/kustomization-{n}.yaml"),
                format!(
                    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {app}\nresources:\n  - cm-{n}.yaml\n"
                ),
            ),
            _ => (
                format!("applications/{app}/state/overlays/{id}/cm-{n}.yaml"),
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{n}\ndata:\n  key: \"{}\"\n  description: |\n    Configuration for {app} on {id}, generated for the benchmark.\n",
                    rng.next_u64()
                ),
            ),
        };
        put(root, &rel, &body)?;
        written += 1;
        n += 1;
    }
    eprintln!(
        "wrote {written} files ({} SealedSecrets, {} clusters) under {}",
        o.secrets,
        clusters.len(),
        root.display()
    );
    Ok(())
}
