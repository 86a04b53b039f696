//! The consumers fixture: the dev1 DNS overlay with the workloads that read its Secret,
//! a shared base, and resources that must not be followed. Used by the library's
//! consumers tests and the binary's.

use super::engine::{DEV1, Env};

pub const OVERLAY: &str = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1";
pub const BASE: &str = "applications/root/external-dns/state/base";

pub const DEPLOYMENT: &str = "# the DNS controller (comments and order stay)\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: external-dns\nspec:\n  selector:\n    matchLabels: {app: external-dns}\n  template:\n    metadata:\n      labels:\n        app: external-dns\n    spec:\n      containers:\n        - name: external-dns\n          image: registry.k8s.io/external-dns/external-dns:v0.15.0\n          envFrom:\n            - secretRef:\n                name: cloudprovider-dns-access\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: unrelated\nspec:\n  template:\n    metadata:\n      labels: {app: unrelated}\n    spec:\n      containers:\n        - name: x\n          image: x\n          envFrom:\n            - secretRef:\n                name: another-secret\n";

pub const CRONJOB: &str = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: dns-audit\nspec:\n  schedule: \"0 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          labels:\n            app: dns-audit\n        spec:\n          restartPolicy: Never\n          containers:\n            - name: audit\n              image: busybox\n              env:\n                - name: AWS_ACCESS_KEY_ID\n                  valueFrom:\n                    secretKeyRef:\n                      name: cloudprovider-dns-access\n                      key: accessKeyId\n";

pub const RELOADED: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: reloaded\n  annotations:\n    reloader.stakater.com/auto: \"true\"\nspec:\n  template:\n    metadata:\n      labels: {app: reloaded}\n    spec:\n      volumes:\n        - name: creds\n          secret:\n            secretName: cloudprovider-dns-access\n      containers:\n        - name: x\n          image: x\n";

pub const SHARED: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shared\nspec:\n  template:\n    metadata:\n      labels: {app: shared}\n    spec:\n      volumes:\n        - name: creds\n          projected:\n            sources:\n              - secret:\n                  name: cloudprovider-dns-access\n      containers:\n        - name: x\n          image: x\n";

/// The dev1 overlay with its workloads, a shared base, and resources that must not be
/// followed (a URL, a path out of the repo, a symlink out of it).
pub fn layout(env: &Env, restart: bool) {
    layout_with(env, restart, true)
}

/// [`layout`], with or without the hostile resources (`kubectl kustomize` refuses those).
pub fn layout_with(env: &Env, restart: bool, hostile: bool) {
    let work = env.f.path("work");
    let w = |rel: &str, text: &str| {
        let p = work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(&format!("{OVERLAY}/deployment.yaml"), DEPLOYMENT);
    w(&format!("{OVERLAY}/cronjob.yaml"), CRONJOB);
    w(&format!("{OVERLAY}/reloaded.yaml"), RELOADED);
    w(&format!("{BASE}/shared.yaml"), SHARED);
    w(
        &format!("{BASE}/kustomization.yaml"),
        "resources:\n  - shared.yaml\n",
    );
    // Outside the repo: a build whose Deployment reads the Secret too. Neither the symlink
    // to it nor a path climbing out of the repo is followed.
    let outsider = env.f.path("outsider");
    let hostile_resources = if hostile {
        "  - ../../../../../../../outsider\n  - outside\n  - outside.yaml\n  - outside/d.yaml\n  - https://github.com/evil/base?ref=main\n"
    } else {
        ""
    };
    std::fs::create_dir_all(&outsider).unwrap();
    std::fs::write(
        outsider.join("kustomization.yaml"),
        "resources:\n  - d.yaml\n",
    )
    .unwrap();
    std::fs::write(
        outsider.join("d.yaml"),
        SHARED.replace("name: shared", "name: outsider"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outsider, work.join(format!("{OVERLAY}/outside"))).unwrap();
    std::os::unix::fs::symlink(&outsider, work.join(format!("{OVERLAY}/outside.yaml"))).unwrap();
    w(
        &format!("{OVERLAY}/kustomization.yaml"),
        &format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: external-dns\nresources:\n  - sealedSeacret-cloud-dns.yaml\n  - deployment.yaml\n  - cronjob.yaml\n  - reloaded.yaml\n  - ../../base\n{hostile_resources}"
        ),
    );
    if restart {
        let cfg = work.join(".secret-manager.yaml");
        let mut c = std::fs::read_to_string(&cfg).unwrap();
        c.push_str("consumers:\n  restart: true\n");
        std::fs::write(cfg, c).unwrap();
    }
    env.f
        .commit_and_publish("external-dns and its consumers", &[DEV1]);
}

/// A file on main (`show` drops the final newline; every file here has one).
pub fn main_file(env: &Env, rel: &str) -> String {
    format!("{}\n", env.f.show("dev", "main", rel))
}
