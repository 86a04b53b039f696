//! The example fleet repo (`testdata/example-repo`): app of apps, cluster-values files, per-cluster overlays.
//!
//! Sealed values are real: each is sealed with the cluster's TEST-ONLY certificate
//! (`tooling/sealing-certs/<id>.pem`, private keys in `testdata/keys/`), using a seeded RNG
//! so regeneration is byte-for-byte reproducible.

use base64::Engine as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use secret_manager::manifest::Scope;
use secret_manager::seal::{SealingCert, label, seal_value};
use std::collections::BTreeMap;
use std::path::Path;

type Res = Result<(), String>;

struct Gen {
    rng: ChaCha20Rng,
    certs: BTreeMap<String, SealingCert>,
}

const DEV1: &str = "aws.eu-central-1.dev1";
const PROD1: &str = "aws.us-east-1.prod1";
const DEV2: &str = "gcp.europe-west1.dev2";
const PROD2: &str = "azure.westeurope.prod2";
const PR1: &str = "gcp.us-central1.pr1";

impl Gen {
    fn seal(&mut self, cluster: &str, scope: Scope, ns: &str, name: &str, value: &str) -> String {
        let cert = &self.certs[cluster];
        let l = label(scope, Some(ns), Some(name)).expect("example labels are complete");
        seal_value(&mut self.rng, cert, &l, value.as_bytes()).expect("sealing with a valid cert")
    }

    fn token(&mut self, n: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..n)
            .map(|_| CHARS[self.rng.gen_range(0..CHARS.len())] as char)
            .collect()
    }

    fn upper(&mut self, n: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        (0..n)
            .map(|_| CHARS[self.rng.gen_range(0..CHARS.len())] as char)
            .collect()
    }

    fn hexs(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| format!("{:x}", self.rng.gen_range(0..16u8)))
            .collect()
    }

    fn guid(&mut self) -> String {
        format!(
            "{}-{}-{}-{}-{}",
            self.hexs(8),
            self.hexs(4),
            self.hexs(4),
            self.hexs(4),
            self.hexs(12)
        )
    }

    /// An AWS-shaped access key id (built at runtime so no literal key id sits in source).
    fn akid(&mut self) -> String {
        format!("{}{}", ["AK", "IA"].concat(), self.upper(16))
    }
}

fn write(root: &Path, rel: &str, content: &str) -> Res {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).map_err(|e| format!("{}: {e}", p.display()))?;
    std::fs::write(&p, content).map_err(|e| format!("{}: {e}", p.display()))
}

fn aws_dns(g: &mut Gen, cluster: &str, account: &str, date: &str) -> String {
    let akid = g.akid();
    let secret = g.token(40);
    let name = cluster.rsplit('.').next().unwrap();
    let c1 = g.seal(
        cluster,
        Scope::Strict,
        "external-dns",
        "cloudprovider-dns-access",
        &akid,
    );
    let c2 = g.seal(
        cluster,
        Scope::Strict,
        "external-dns",
        "cloudprovider-dns-access",
        &secret,
    );
    format!(
        r#"kind: SealedSecret
apiVersion: bitnami.com/v1alpha1
metadata:
  name: cloudprovider-dns-access
  namespace: external-dns
spec:
  template:
    metadata:
      name: cloudprovider-dns-access
      namespace: external-dns
      annotations:
        secret-manager/source: "aws"
        secret-manager/accessKeyId: "{akid}"
        secret-manager/account: "{account}"
        secret-manager/createDate: "{date}"
        secret-manager/username: "external-dns-{name}"
        secret-manager/keyMappings: "[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]"
    type: opaque
  encryptedData:
    accessKeyId: {c1}
    secretAccessKey: {c2}
"#
    )
}

fn gcp_key_json(g: &mut Gen, project: &str, sa: &str, key_id: &str) -> String {
    let pk = g.token(64);
    format!(
        r#"{{"type":"service_account","project_id":"{project}","private_key_id":"{key_id}","private_key":"-----BEGIN TEST-ONLY KEY-----\n{pk}\n-----END TEST-ONLY KEY-----\n","client_email":"{sa}","client_id":"1{}","token_uri":"https://oauth2.googleapis.com/token"}}"#,
        g.hexs(8)
            .bytes()
            .map(|b| (b % 10 + b'0') as char)
            .collect::<String>()
    )
}

fn gcp_dns(g: &mut Gen, cluster: &str, project: &str, date: &str) -> String {
    let key_id = g.hexs(40);
    let sa = format!("external-dns@{project}.iam.gserviceaccount.com");
    let json = gcp_key_json(g, project, &sa, &key_id);
    let c = g.seal(
        cluster,
        Scope::Strict,
        "external-dns",
        "cloudprovider-dns-access",
        &json,
    );
    format!(
        r#"# external-dns on GCP: Cloud DNS admin service account.
kind: SealedSecret
apiVersion: bitnami.com/v1alpha1
metadata:
  name: cloudprovider-dns-access
  namespace: external-dns
spec:
  template:
    metadata:
      name: cloudprovider-dns-access
      namespace: external-dns
      annotations:
        secret-manager/source: "gcp"
        secret-manager/project: "{project}"
        secret-manager/serviceAccount: "{sa}"
        secret-manager/keyId: "{key_id}"
        secret-manager/createDate: "{date}"
        secret-manager/keyMappings: "[credentials.json:KeyFileJson]"
    type: opaque
  encryptedData:
    credentials.json: {c}
"#
    )
}

fn azure_dns(g: &mut Gen, cluster: &str, date: &str) -> String {
    let (tenant, obj, client, key_id) = (g.guid(), g.guid(), g.guid(), g.guid());
    let secret = g.token(40);
    let n = "cloudprovider-dns-access";
    let c1 = g.seal(cluster, Scope::Strict, "external-dns", n, &client);
    let c2 = g.seal(cluster, Scope::Strict, "external-dns", n, &secret);
    let c3 = g.seal(cluster, Scope::Strict, "external-dns", n, &tenant);
    format!(
        r#"kind: SealedSecret
apiVersion: bitnami.com/v1alpha1
metadata:
  name: cloudprovider-dns-access
  namespace: external-dns
spec:
  template:
    metadata:
      name: cloudprovider-dns-access
      namespace: external-dns
      annotations:
        secret-manager/source: "azure"
        secret-manager/tenantId: "{tenant}"
        secret-manager/applicationObjectId: "{obj}"
        secret-manager/clientId: "{client}"
        secret-manager/keyId: "{key_id}"
        secret-manager/createDate: "{date}"
        secret-manager/keyMappings: "[clientId:ClientId,clientSecret:ClientSecret,tenantId:TenantId]"
    type: opaque
  encryptedData:
    clientId: {c1}
    clientSecret: {c2}
    tenantId: {c3}
"#
    )
}

fn kustomization(ns: Option<&str>, resources: &[&str]) -> String {
    let mut s = String::from("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n");
    if let Some(ns) = ns {
        s.push_str(&format!("namespace: {ns}\n"));
    }
    s.push_str("resources:\n");
    for r in resources {
        s.push_str(&format!("  - {r}\n"));
    }
    s
}

fn unmanaged_repo_secret(g: &mut Gen, cluster: &str) -> String {
    let url = "https://git.example.com/platform/gitops-config.git";
    let token = g.token(32);
    let n = "gitops-config-repo";
    let c1 = g.seal(cluster, Scope::Strict, "argocd", n, url);
    let c2 = g.seal(cluster, Scope::Strict, "argocd", n, "argocd-reader");
    let c3 = g.seal(cluster, Scope::Strict, "argocd", n, &token);
    format!(
        r#"# Argo CD read access to the config repo ("git_server_read_secret").
# Not managed by secret-manager: no source annotation.
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata:
  name: {n}
  namespace: argocd
spec:
  encryptedData:
    url: {c1}
    username: {c2}
    password: {c3}
  template:
    metadata:
      labels:
        argocd.argoproj.io/secret-type: repository
      name: {n}
      namespace: argocd
"#
    )
}

pub fn generate(root: &Path) -> Res {
    let seed = [42u8; 32];
    let mut certs = BTreeMap::new();
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
        .unwrap()
        .to_utc();
    for id in [DEV1, PROD1, DEV2, PROD2] {
        let p = root.join(format!("tooling/sealing-certs/{id}.pem"));
        let bytes = std::fs::read(&p).map_err(|e| {
            format!(
                "{}: {e} (generate the TEST-ONLY keys first, see testdata/keys/README.md)",
                p.display()
            )
        })?;
        certs.insert(
            id.to_owned(),
            SealingCert::parse(&bytes, &p.display().to_string(), now).map_err(|e| e.to_string())?,
        );
    }
    let g = &mut Gen {
        rng: ChaCha20Rng::from_seed(seed),
        certs,
    };

    write(
        root,
        "README.md",
        "# Example GitOps config repo (TEST-ONLY)\n\nA small fleet in the layout of the GitOps article the product grew from (app of apps, cluster-values, per-cluster overlays), used by secret-manager's\nREADME, tests and docs. Every SealedSecret here is sealed with a TEST-ONLY key from\n`testdata/keys/` — anyone can decrypt it. Regenerate with `cargo xtask gen-example`.\n\n```sh\ncargo run --release -- --repo testdata/example-repo list --older-than 90d\n```\n",
    )?;
    write(
        root,
        ".secret-manager.yaml",
        "# secret-manager settings for this repo (all optional).\nannotationPrefix: secret-manager/\npolicy:\n  maxAge: 90d        # `list` marks older credentials as due\n  revokeAfter: 1h    # grace period between publish and revoke\n  revokeMode: delete\npointers:\n  branch: \"cluster/{id}\"\n  tag: \"tag/{name}\"\nmainBranch: main\nmainRemote: origin\nproviders:\n  exec:\n    # The example plugin (testdata/plugins) gets only the base environment plus these.\n    demo:\n      env: [DEMO_PROVIDER_STATE, DEMO_PROVIDER_FAIL, DEMO_PROVIDER_CRASH]\n      timeout: 30s\n",
    )?;
    write(
        root,
        ".gitignore",
        "# Local scratch space; never scanned.\nscratch/\n*.local.yaml\n",
    )?;

    // Inventory (seed: cluster-values/<cloud.region.name>.yaml).
    let inv = [
        (
            DEV1,
            "aws",
            "eu-central-1",
            "dev",
            Some(("branch", "origin")),
        ),
        (PROD1, "aws", "us-east-1", "prod", Some(("branch", "prod"))),
        (DEV2, "gcp", "europe-west1", "dev", Some(("tag", "origin"))),
        (
            PROD2,
            "azure",
            "westeurope",
            "prod",
            Some(("branch", "prod")),
        ),
        (PR1, "gcp", "us-central1", "pr", None),
    ];
    for (id, cloud, region, stage, block) in inv {
        let name = id.rsplit('.').next().unwrap();
        let mut s = format!(
            "# Cluster values for {id}.\ncloud: {cloud}\nregion: {region}\nclusterName: {name}\nstage: {stage}\ndomain: {name}.{region}.example.com\n"
        );
        if let Some((pointer, remote)) = block {
            s.push_str(&format!(
                "secretManager:\n  pointer: {pointer}\n  remote: {remote}\n  sealingCert: tooling/sealing-certs/{id}.pem\n  kubeContext: {name}\n  argocdApp: cluster-list\n"
            ));
        } else {
            s.push_str(
                "# No secretManager block: listed with defaults (branch pointer on origin).\n",
            );
        }
        write(root, &format!("cluster-values/{id}.yaml"), &s)?;
    }

    // Root apps: argocd.
    write(
        root,
        "applications/root/argocd/README.md",
        "# argocd\n\nUpstream in `source/`, shared config in `base/`, per-cluster overlays.\n",
    )?;
    write(
        root,
        "applications/root/argocd/base/kustomization.yaml",
        &kustomization(
            Some("argocd"),
            &["argocd-cm.yaml", "sealed-secrets-app.yaml"],
        ),
    )?;
    write(
        root,
        "applications/root/argocd/base/argocd-cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n  resource.exclusions: |\n    - kinds: [Event]\n",
    )?;
    write(
        root,
        "applications/root/argocd/base/sealed-secrets-app.yaml",
        "# An Argo CD Application that mentions SealedSecret but is not one.\napiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: sealed-secrets\n  namespace: argocd\nspec:\n  project: root\n  source:\n    repoURL: https://git.example.com/platform/gitops-config.git\n    path: applications/root/sealed-secrets/source\n  destination:\n    namespace: kube-system\n    server: https://kubernetes.default.svc\n  ignoreDifferences:\n    - group: bitnami.com\n      kind: SealedSecret\n      jsonPointers: [/status]\n  syncPolicy:\n    automated:\n      selfHeal: false\n      prune: false\n",
    )?;
    for id in [DEV1, PROD1, DEV2, PROD2] {
        write(
            root,
            &format!("applications/root/argocd/overlays/{id}/kustomization.yaml"),
            &kustomization(Some("argocd"), &["../../base", "repo-secret.yaml"]),
        )?;
        let s = unmanaged_repo_secret(g, id);
        write(
            root,
            &format!("applications/root/argocd/overlays/{id}/repo-secret.yaml"),
            &s,
        )?;
    }

    // Root apps: cluster-list (Helm chart of Application CRs).
    write(
        root,
        "applications/root/cluster-list/README.md",
        "# cluster-list\n\nApp of apps: one Application per app in the cluster.\n",
    )?;
    write(
        root,
        "applications/root/cluster-list/chart/Chart.yaml",
        "apiVersion: v2\nname: cluster-list\nversion: 0.1.0\n",
    )?;
    for app in [
        "argocd",
        "external-dns",
        "cert-manager",
        "service1",
        "service2",
    ] {
        write(
            root,
            &format!("applications/root/cluster-list/chart/templates/{app}.yaml"),
            &format!(
                "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {app}\n  namespace: argocd\nspec:\n  project: root\n  source:\n    repoURL: {{{{ .Values.repoURL }}}}\n    targetRevision: {{{{ .Values.targetRevision }}}}\n    path: applications/root/{app}\n  destination:\n    server: https://kubernetes.default.svc\n"
            ),
        )?;
    }

    // Root apps: sealed-secrets (upstream CRD).
    write(
        root,
        "applications/root/sealed-secrets/source/crd.yaml",
        "# Upstream CRD: mentions SealedSecret but is not one.\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: sealedsecrets.bitnami.com\n  annotations:\n    argocd.argoproj.io/sync-options: Prune=false\nspec:\n  group: bitnami.com\n  names:\n    kind: SealedSecret\n    listKind: SealedSecretList\n    plural: sealedsecrets\n    singular: sealedsecret\n  scope: Namespaced\n  versions:\n    - name: v1alpha1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          x-kubernetes-preserve-unknown-fields: true\n",
    )?;

    // Root apps: external-dns, with the article's own SealedSecret per cluster (its spelling).
    write(
        root,
        "applications/root/external-dns/README.md",
        "# external-dns\n\nCredentials: `state/overlays/<cluster>/sealedSeacret-cloud-dns.yaml`, rotated by secret-manager.\n",
    )?;
    write(
        root,
        "applications/root/external-dns/chart/Chart.yaml",
        "apiVersion: v2\nname: external-dns\nversion: 1.15.0\n",
    )?;
    write(
        root,
        "applications/root/external-dns/chart/values.yaml",
        "provider: aws\nenv:\n  - name: AWS_SHARED_CREDENTIALS_FILE\n    value: /etc/dns/credentials\n",
    )?;
    write(
        root,
        "applications/root/external-dns/state/base/kustomization.yaml",
        &kustomization(Some("external-dns"), &[]),
    )?;
    let dns = [
        (
            DEV1,
            aws_dns(g, DEV1, "111111111111", "2026-08-01T10:00:00Z"),
        ),
        (
            PROD1,
            aws_dns(g, PROD1, "222222222222", "2026-10-15T08:30:00Z"),
        ),
        (
            DEV2,
            gcp_dns(g, DEV2, "example-dev2", "2026-02-10T09:00:00Z"),
        ),
        (PROD2, azure_dns(g, PROD2, "2026-06-01T12:00:00Z")),
    ];
    for (id, content) in dns {
        write(
            root,
            &format!("applications/root/external-dns/values/{id}.yaml"),
            &format!("domainFilters: [{}]\n", id.rsplit('.').next().unwrap()),
        )?;
        write(
            root,
            &format!("applications/root/external-dns/state/overlays/{id}/kustomization.yaml"),
            &kustomization(Some("external-dns"), &["sealedSeacret-cloud-dns.yaml"]),
        )?;
        write(
            root,
            &format!(
                "applications/root/external-dns/state/overlays/{id}/sealedSeacret-cloud-dns.yaml"
            ),
            &content,
        )?;
    }

    // Root apps: cert-manager. No metadata.namespace: resolved through kustomization.yaml.
    // dev1's file uses CRLF line endings, prod2's starts with a UTF-8 BOM.
    {
        let n = "route53-credentials";
        let akid = g.akid();
        let secret = g.token(40);
        let c1 = g.seal(DEV1, Scope::Strict, "cert-manager", n, &akid);
        let c2 = g.seal(DEV1, Scope::Strict, "cert-manager", n, &secret);
        let s = format!("apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: {n}   # namespace comes from kustomization.yaml\nspec:\n  template:\n    metadata:\n      name: {n}\n      annotations:\n        secret-manager/source: aws\n        secret-manager/accessKeyId: {akid}\n        secret-manager/account: '111111111111'\n        secret-manager/username: cert-manager-dev1\n        secret-manager/createDate: '2026-11-01T07:00:00Z'\n        secret-manager/keyMappings: '[access-key-id:AccessKeyId,secret-access-key:SecretAccessKey]'\n    type: Opaque\n  encryptedData:\n    access-key-id: {c1}\n    secret-access-key: {c2}\n").replace('\n', "\r\n");
        write(
            root,
            &format!("applications/root/cert-manager/state/overlays/{DEV1}/kustomization.yaml"),
            &kustomization(Some("cert-manager"), &["dns-credentials.yaml"]),
        )?;
        write(
            root,
            &format!("applications/root/cert-manager/state/overlays/{DEV1}/dns-credentials.yaml"),
            &s,
        )?;

        let n = "azuredns-credentials";
        let (tenant, obj, client, key_id) = (g.guid(), g.guid(), g.guid(), g.guid());
        let secret = g.token(40);
        let c1 = g.seal(PROD2, Scope::Strict, "cert-manager", n, &secret);
        let s = format!(
            "\u{feff}apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: {n}\nspec:\n  template:\n    metadata:\n      name: {n}\n      annotations:\n        secret-manager/source: azure\n        secret-manager/tenantId: {tenant}\n        secret-manager/applicationObjectId: {obj}\n        secret-manager/clientId: {client}\n        secret-manager/keyId: {key_id}\n        secret-manager/createDate: 2026-09-20T16:45:00Z\n        secret-manager/keyMappings: '[client-secret:ClientSecret]'\n  encryptedData:\n    client-secret: {c1}\n"
        );
        write(
            root,
            &format!("applications/root/cert-manager/state/overlays/{PROD2}/kustomization.yaml"),
            &kustomization(Some("cert-manager"), &["dns-credentials.yaml"]),
        )?;
        write(
            root,
            &format!("applications/root/cert-manager/state/overlays/{PROD2}/dns-credentials.yaml"),
            &s,
        )?;
    }

    // service1: Helm chart (with a templated SealedSecret distractor) and a multi-document
    // state file with two managed SealedSecrets between a ConfigMap and a Service.
    write(
        root,
        "applications/service1/chart/Chart.yaml",
        "apiVersion: v2\nname: service1\nversion: 2.3.1\n",
    )?;
    write(
        root,
        "applications/service1/chart/values.yaml",
        "replicas: 2\nimage: registry.example.com/service1:2.3.1\n",
    )?;
    write(
        root,
        "applications/service1/chart/templates/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: service1\nspec:\n  replicas: {{ .Values.replicas }}\n",
    )?;
    write(
        root,
        "applications/service1/chart/templates/sealedsecret.yaml",
        "# Helm-templated SealedSecret: reported as skipped, never edited.\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: {{ .Release.Name }}-registry\n  namespace: {{ .Release.Namespace }}\nspec:\n  encryptedData:\n    .dockerconfigjson: {{ .Values.registrySecret | quote }}\n",
    )?;
    for id in [DEV1, PROD1] {
        write(
            root,
            &format!("applications/service1/values/{id}.yaml"),
            "replicas: 1\n",
        )?;
    }
    {
        let ns = "service1";
        let (a1, s1) = (g.akid(), g.token(40));
        let (a2, s2) = (g.akid(), g.token(40));
        let u1 = g.seal(DEV1, Scope::Strict, ns, "s3-uploader", &a1);
        let u2 = g.seal(DEV1, Scope::Strict, ns, "s3-uploader", &s1);
        let q1 = g.seal(DEV1, Scope::Strict, ns, "sqs-consumer", &a2);
        let q2 = g.seal(DEV1, Scope::Strict, ns, "sqs-consumer", &s2);
        let s = format!(
            r#"---
apiVersion: v1
kind: ConfigMap
metadata:
  name: service1-config
  namespace: service1
data:
  bucket: service1-uploads-dev1
---
# Upload credentials for the S3 bucket.
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata:
  name: s3-uploader
  namespace: service1
spec:
  encryptedData:
    AWS_ACCESS_KEY_ID: {u1}
    AWS_SECRET_ACCESS_KEY: {u2}
  template:
    metadata:
      annotations:
        secret-manager/source: "aws"
        secret-manager/account: "111111111111"
        secret-manager/username: "service1-uploader"
        secret-manager/accessKeyId: "{a1}"
        secret-manager/createDate: "2026-05-05T14:00:00Z"
        secret-manager/keyMappings: "[AWS_ACCESS_KEY_ID:AccessKeyId,AWS_SECRET_ACCESS_KEY:SecretAccessKey]"
---
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata:
  name: sqs-consumer
  namespace: service1
spec:
  encryptedData:
    AWS_ACCESS_KEY_ID: {q1}
    AWS_SECRET_ACCESS_KEY: {q2}
  template:
    metadata:
      annotations:
        secret-manager/source: "aws"
        secret-manager/account: "111111111111"
        secret-manager/username: "service1-consumer"
        secret-manager/accessKeyId: "{a2}"
        secret-manager/createDate: "2026-08-20T11:20:00Z"
        secret-manager/keyMappings: "[AWS_ACCESS_KEY_ID:AccessKeyId,AWS_SECRET_ACCESS_KEY:SecretAccessKey]"
---
apiVersion: v1
kind: Service
metadata:
  name: service1
  namespace: service1
spec:
  ports: [{{port: 80}}]
"#
        );
        write(
            root,
            &format!("applications/service1/state/overlays/{DEV1}/kustomization.yaml"),
            &kustomization(None, &["secrets.yaml"]),
        )?;
        write(
            root,
            &format!("applications/service1/state/overlays/{DEV1}/secrets.yaml"),
            &s,
        )?;
    }

    // service2: kubeseal JSON output (namespace-wide), an ExternalSecret and a plain Secret
    // (distractors), and a cluster-wide azure secret.
    {
        let project = "example-dev2";
        let sa = format!("service2-db@{project}.iam.gserviceaccount.com");
        let key_id = g.hexs(40);
        let json = gcp_key_json(g, project, &sa, &key_id);
        let c = g.seal(
            DEV2,
            Scope::NamespaceWide,
            "service2",
            "db-credentials",
            &json,
        );
        let e = g.seal(
            DEV2,
            Scope::NamespaceWide,
            "service2",
            "db-credentials",
            &sa,
        );
        let s = format!(
            r#"{{
  "kind": "SealedSecret",
  "apiVersion": "bitnami.com/v1alpha1",
  "metadata": {{
    "name": "db-credentials",
    "namespace": "service2",
    "creationTimestamp": null,
    "annotations": {{
      "sealedsecrets.bitnami.com/namespace-wide": "true"
    }}
  }},
  "spec": {{
    "template": {{
      "metadata": {{
        "name": "db-credentials",
        "namespace": "service2",
        "creationTimestamp": null,
        "annotations": {{
          "sealedsecrets.bitnami.com/namespace-wide": "true",
          "secret-manager/source": "gcp",
          "secret-manager/project": "{project}",
          "secret-manager/serviceAccount": "{sa}",
          "secret-manager/keyId": "{key_id}",
          "secret-manager/createDate": "2026-07-07T07:07:07Z",
          "secret-manager/keyMappings": "[key.json:KeyFileJson,email:ClientEmail]"
        }}
      }},
      "type": "Opaque"
    }},
    "encryptedData": {{
      "email": "{e}",
      "key.json": "{c}"
    }}
  }}
}}
"#
        );
        write(
            root,
            &format!("applications/service2/state/overlays/{DEV2}/kustomization.yaml"),
            &kustomization(
                None,
                &[
                    "sealed-db.json",
                    "external-secret.yaml",
                    "sealed-webhook.yaml",
                ],
            ),
        )?;
        write(
            root,
            &format!("applications/service2/state/overlays/{DEV2}/sealed-db.json"),
            &s,
        )?;
        write(
            root,
            &format!("applications/service2/state/overlays/{DEV2}/external-secret.yaml"),
            "# Not a SealedSecret: an ExternalSecret pulling from a vault.\napiVersion: external-secrets.io/v1beta1\nkind: ExternalSecret\nmetadata:\n  name: service2-api\n  namespace: service2\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {name: vault, kind: ClusterSecretStore}\n  target: {name: service2-api}\n  data:\n    - secretKey: token\n      remoteRef: {key: service2/api, property: token}\n",
        )?;

        let n = "storage-account";
        let (tenant, obj, client, key_id) = (g.guid(), g.guid(), g.guid(), g.guid());
        let secret = g.token(40);
        let c1 = g.seal(PROD2, Scope::ClusterWide, "service2", n, &client);
        let c2 = g.seal(PROD2, Scope::ClusterWide, "service2", n, &secret);
        let s = format!(
            r#"apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata:
  name: storage-account
  namespace: service2
  annotations:
    sealedsecrets.bitnami.com/cluster-wide: "true"
spec:
  template:
    metadata:
      annotations:
        sealedsecrets.bitnami.com/cluster-wide: "true"
        secret-manager/source: azure
        secret-manager/tenantId: "{tenant}"
        secret-manager/applicationObjectId: "{obj}"
        secret-manager/clientId: "{client}"
        secret-manager/keyId: "{key_id}"
        secret-manager/createDate: "2026-10-30T09:15:00Z"
        secret-manager/keyMappings: "[AZURE_CLIENT_ID:ClientId, AZURE_CLIENT_SECRET:ClientSecret]"
  encryptedData:
    AZURE_CLIENT_ID: {c1}
    AZURE_CLIENT_SECRET: {c2}   # rotated by secret-manager
"#
        );
        write(
            root,
            &format!("applications/service2/state/overlays/{PROD2}/kustomization.yaml"),
            &kustomization(None, &["sealed-storage.yaml", "plain-secret.yaml"]),
        )?;
        write(
            root,
            &format!("applications/service2/state/overlays/{PROD2}/sealed-storage.yaml"),
            &s,
        )?;
        let b64 = base64::engine::general_purpose::STANDARD.encode("not-a-real-value");
        write(
            root,
            &format!("applications/service2/state/overlays/{PROD2}/plain-secret.yaml"),
            &format!(
                "# A plain Secret (distractor). Values are fake.\napiVersion: v1\nkind: Secret\nmetadata:\n  name: feature-flags\n  namespace: service2\ndata:\n  flags: {b64}\n"
            ),
        )?;
    }

    // service2 on dev2: a generated secret (source random), in the form `create` writes —
    // a rotation that needs no cloud at all. Drawn last, so the values above stay the same.
    {
        let value = g.hexs(64);
        let key_id = format!("rnd-{}", g.hexs(20));
        let c = g.seal(DEV2, Scope::Strict, "service2", "webhook-secret", &value);
        let fingerprint = g.certs[DEV2].fingerprint.clone();
        write(
            root,
            &format!("applications/service2/state/overlays/{DEV2}/sealed-webhook.yaml"),
            &format!(
                r#"---
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata:
  name: webhook-secret
  namespace: service2
  annotations:
    secret-manager/sealedWith: "{fingerprint}"
spec:
  encryptedData:
    WEBHOOK_HMAC_KEY: {c}
  template:
    metadata:
      name: webhook-secret
      namespace: service2
      annotations:
        secret-manager/alphabet: hex
        secret-manager/createDate: "2026-08-14T09:30:00Z"
        secret-manager/id: service2/webhook
        secret-manager/keyId: {key_id}
        secret-manager/keyMappings: "[WEBHOOK_HMAC_KEY:Value]"
        secret-manager/length: "64"
        secret-manager/source: random
    type: Opaque
"#
            ),
        )?;
    }

    // PR validation cluster: only an unmanaged secret, no sealing cert in its inventory.
    write(
        root,
        &format!("applications/root/argocd/overlays/{PR1}/kustomization.yaml"),
        &kustomization(Some("argocd"), &["../../base"]),
    )?;
    write(
        root,
        "tooling/README.md",
        "# tooling\n\nSealing certificates of the example clusters (TEST-ONLY, see testdata/keys/README.md).\n",
    )?;
    Ok(())
}
