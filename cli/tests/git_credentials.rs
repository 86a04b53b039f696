//! The `github-deploy-key` source: Argo CD's git read credential, against a fake GitHub
//! deploy-keys API that follows the REST shapes (paths, JSON, 201/204/404/422, bearer
//! token). In-process (the provider, its trust checks) and through the binary (create,
//! then a whole rotation on the example fleet).

use crate::common::{GitFleet, cmd, decrypt_value, run_cmd};
use secret_manager::deploy_key_source::{DeployKeyProvider, PRIVATE_KEY, PUBLIC_KEY};
use secret_manager::forge::Auth;
use secret_manager::provider::{KeyId, Provider, Revoke, Revoked, SecretValue, Target};
use secret_manager_testkit::FakeDeployKeys;

const TOKEN: &str = "ghp_TESTONLYdeploykeys0000000000000000";
const REPO: &str = "acme/config";
const DEV1: &str = "aws.eu-central-1.dev1";
const REL: &str = "applications/service1/state/overlays/aws.eu-central-1.dev1/argocd-repo.yaml";

/// A public key's type and body (GitHub keeps no comment).
fn body(openssh: &str) -> String {
    openssh
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn target(repo: &str) -> Target {
    Target {
        source: "github-deploy-key".into(),
        params: [("repository", repo), ("id", "dev1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        current_key: None,
        referenced: Vec::new(),
    }
}

fn provider(fake: &FakeDeployKeys, allowed: &str) -> DeployKeyProvider {
    DeployKeyProvider::with(
        &fake.url,
        Auth::Token(SecretValue::new(TOKEN.to_owned())),
        allowed,
    )
}

/// The provider contract holds, the key GitHub holds is read-only and is the public half
/// of the private key handed out, and revoke deletes it (twice is fine).
#[test]
fn a_deploy_key_is_registered_read_only_and_its_private_half_matches() {
    let rt = runtime();
    rt.block_on(async {
        let fake = FakeDeployKeys::start(&[REPO], TOKEN).await;
        let p = provider(&fake, REPO);
        secret_manager::provider::testing::conformance(&p, &target(REPO)).await;
        assert!(
            fake.keys(REPO).is_empty(),
            "conformance revokes what it mints"
        );

        let m = p.mint(&target(REPO)).await.unwrap();
        p.verify(&m).await.unwrap();
        let held = fake.keys(REPO);
        assert_eq!(held.len(), 1);
        assert!(held[0].read_only, "registered read-only");
        assert_eq!(held[0].id.to_string(), m.key_id.0);
        let private =
            ssh_key::PrivateKey::from_openssh(m.fields[PRIVATE_KEY].expose()).expect("OpenSSH");
        assert_eq!(private.algorithm(), ssh_key::Algorithm::Ed25519);
        let public = body(&private.public_key().to_openssh().unwrap());
        assert_eq!(
            held[0].key, public,
            "GitHub holds the private key's public half"
        );
        assert!(m.fields[PUBLIC_KEY].expose().starts_with(&public));
        // `keys` lists it, with GitHub's last use.
        fake.used(held[0].id, "2026-12-02T08:00:00Z");
        let keys = p.keys(&target(REPO)).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys[0].last_used.map(|t| t.to_rfc3339()),
            Some("2026-12-02T08:00:00+00:00".to_owned())
        );
        assert_eq!(
            p.revoke(&target(REPO), &m.key_id, Revoke::Delete)
                .await
                .unwrap(),
            Revoked::Done
        );
        assert_eq!(
            p.revoke(&target(REPO), &m.key_id, Revoke::Delete)
                .await
                .unwrap(),
            Revoked::AlreadyGone
        );
        assert!(fake.keys(REPO).is_empty());
    });
}

/// A manifest naming a repository the operator did not list, or something that is not
/// `owner/name` (a URL, a path, a query, terminal escapes), sends nothing to GitHub; nor
/// does a key id that is not a number.
#[test]
fn a_repository_the_operator_did_not_list_gets_no_request() {
    let rt = runtime();
    rt.block_on(async {
        let fake = FakeDeployKeys::start(&[REPO, "acme/secrets"], TOKEN).await;
        let p = provider(&fake, REPO);
        for hostile in [
            "acme/secrets",
            "https://evil.example/acme/config",
            "acme/config/../../secrets",
            "acme/config?per_page=1",
            "acme/config\u{1b}]8;;https://evil.example\u{7}",
            "--upload-pack=touch /tmp/pwned",
        ] {
            let t = target(hostile);
            let e = p.preflight(&t).await.unwrap_err().to_string();
            assert!(
                e.contains("not in SECRET_MANAGER_DEPLOY_KEY_REPOS")
                    || e.contains("not owner/name"),
                "{hostile:?}: {e}"
            );
            assert!(!e.contains('\u{1b}'), "escaped: {e:?}");
            assert!(p.mint(&t).await.is_err(), "{hostile:?}");
            assert!(p.keys(&t).await.is_err(), "{hostile:?}");
        }
        let e = p
            .revoke(
                &target(REPO),
                &KeyId("1/../../secrets/keys/2".into()),
                Revoke::Delete,
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("is not a deploy key id"), "{e}");
        assert_eq!(fake.requests(), Vec::<String>::new(), "nothing was sent");
        assert!(fake.keys("acme/secrets").is_empty());
        // Bad credentials are a setup problem, said once.
        let wrong = DeployKeyProvider::with(
            &fake.url,
            Auth::Token(SecretValue::new("ghp_wrong".to_owned())),
            REPO,
        );
        let e = wrong.preflight(&target(REPO)).await.unwrap_err();
        assert!(
            matches!(
                e,
                secret_manager::provider::ProviderError::NoCredentials { .. }
            ),
            "{e}"
        );
        assert!(!e.to_string().contains("ghp_wrong"), "{e}");
    });
}

fn with_github(c: &mut std::process::Command, fake: &FakeDeployKeys) {
    c.env("SECRET_MANAGER_FORGE_API_URL", &fake.url)
        .env("GITHUB_TOKEN", TOKEN)
        .env("SECRET_MANAGER_DEPLOY_KEY_REPOS", REPO);
}

/// The sealed private key of `rev` on the dev remote, and the key id its manifest names.
fn sealed_key(f: &GitFleet, rev: &str) -> (ssh_key::PrivateKey, String) {
    let text = f.show("dev", rev, REL);
    let file = f.path("argocd-check.yaml");
    std::fs::write(&file, &text).unwrap();
    let pem = decrypt_value(&file, 0, DEV1, "argocd/config-repo", "sshPrivateKey").unwrap();
    let key = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret-manager/keyId: "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    (
        ssh_key::PrivateKey::from_openssh(String::from_utf8(pem).unwrap()).unwrap(),
        key,
    )
}

/// `create` registers a deploy key and seals its private half; `rotate` registers the
/// next one, publishes it and deletes the old one; a manifest changed to name another
/// repository is refused before any request. No token or private key is printed.
#[test]
fn argocds_deploy_key_is_created_rotated_and_never_moved_to_another_repository() {
    let rt = runtime();
    let fake = rt.block_on(FakeDeployKeys::start(&[REPO, "acme/secrets"], TOKEN));
    let f = GitFleet::new();
    let work = f.path("work");
    let mut c = cmd();
    with_github(&mut c, &fake);
    let r = run_cmd(c.args([
        "--repo",
        work.to_str().unwrap(),
        "create",
        "--source",
        "github-deploy-key",
        "--cluster",
        DEV1,
        "--namespace",
        "argocd",
        "--name",
        "config-repo",
        "--key-mappings",
        "[sshPrivateKey:PrivateKey]",
        "--param",
        &format!("repository={REPO}"),
        "--param",
        "id=dev1",
        "-w",
        work.join(REL).to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    f.commit_and_publish("Argo CD reads the config repo with a deploy key", &[DEV1]);
    let held = fake.keys(REPO);
    assert_eq!(held.len(), 1);
    assert!(held[0].read_only);
    let (first, first_id) = sealed_key(&f, "main");
    assert_eq!(first_id, held[0].id.to_string());
    assert_eq!(body(&first.public_key().to_openssh().unwrap()), held[0].key);

    let mut c = f
        .bot("2027-06-01T00:00:00Z")
        .args(["--yes", "rotate", "--revoke-after", "0s"])
        .args(["--source", "github-deploy-key", "--older-than", "0s"])
        .command();
    with_github(&mut c, &fake);
    let sent_before = fake.requests().len();
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // What one rotation costs GitHub (docs/benchmarks.md): preflight, the key list, the
    // new key, its read-back, the old key's deletion.
    let sent: Vec<String> = fake.requests()[sent_before..]
        .iter()
        .map(|r| {
            r.replace(&first_id, "{old}")
                .replace(&fake.keys(REPO)[0].id.to_string(), "{new}")
        })
        .collect();
    assert_eq!(
        sent,
        [
            "GET /repos/acme/config/keys?per_page=1",
            "GET /repos/acme/config/keys?page=1&per_page=100",
            "POST /repos/acme/config/keys",
            "GET /repos/acme/config/keys/{new}",
            "DELETE /repos/acme/config/keys/{old}",
        ]
    );
    assert!(
        r.stderr
            .contains("1 staged, 0 deleted, 1 published, 1 revoked"),
        "{}",
        r.stderr
    );
    let held = fake.keys(REPO);
    assert_eq!(held.len(), 1, "the old key is deleted: {held:?}");
    let (second, second_id) = sealed_key(&f, &format!("refs/heads/cluster/{DEV1}"));
    assert_ne!(second_id, first_id);
    assert_eq!(second_id, held[0].id.to_string());
    assert_eq!(
        body(&second.public_key().to_openssh().unwrap()),
        held[0].key
    );
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains(TOKEN), "{out}");
        assert!(!out.contains("PRIVATE KEY"), "{out}");
    }

    // Someone points the manifest at another repository the token administers.
    let path = work.join(REL);
    crate::common::git(&work, &["pull", "--quiet", "--ff-only", "origin", "main"]);
    let text = std::fs::read_to_string(&path).unwrap();
    let hostile = text.replace(
        &format!("secret-manager/repository: {REPO}"),
        "secret-manager/repository: acme/secrets",
    );
    assert_ne!(hostile, text, "the annotation is there to change");
    std::fs::write(&path, hostile).unwrap();
    f.commit_and_publish("Read another repository", &[DEV1]);
    let before = fake.requests().len();
    let mut c = f
        .bot("2027-09-01T00:00:00Z")
        .args(["--yes", "rotate", "--revoke-after", "0s"])
        .args(["--source", "github-deploy-key", "--older-than", "0s"])
        .command();
    with_github(&mut c, &fake);
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 10, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("not in SECRET_MANAGER_DEPLOY_KEY_REPOS"),
        "{}",
        r.stderr
    );
    assert_eq!(fake.requests().len(), before, "nothing was sent");
    assert!(fake.keys("acme/secrets").is_empty());
}

mod gitlab {
    //! `gitlab-deploy-token` against a fake GitLab deploy-tokens API.

    use super::runtime;
    use crate::common::{GitFleet, cmd, decrypt_value, run_cmd};
    use secret_manager::deploy_token_source::{
        DeployTokenProvider, TOKEN as TOKEN_FIELD, USERNAME,
    };
    use secret_manager::forge::Auth;
    use secret_manager::provider::{KeyId, Provider, Revoke, SecretValue, Target};
    use secret_manager_testkit::FakeDeployTokens;

    const TOKEN: &str = "glpat-TESTONLYdeploytokens000000";
    const PROJECT: &str = "acme/platform/config";
    const DEV1: &str = "aws.eu-central-1.dev1";
    const REL: &str =
        "applications/service1/state/overlays/aws.eu-central-1.dev1/argocd-gitlab-repo.yaml";

    fn target(project: &str, scopes: Option<&str>) -> Target {
        let mut params: std::collections::BTreeMap<String, String> =
            [("project".to_string(), project.to_string())].into();
        if let Some(s) = scopes {
            params.insert("scopes".into(), s.into());
        }
        Target {
            source: "gitlab-deploy-token".into(),
            params,
            current_key: None,
            referenced: Vec::new(),
        }
    }

    fn provider(fake: &FakeDeployTokens) -> DeployTokenProvider {
        DeployTokenProvider::with(
            &fake.url,
            Auth::Token(SecretValue::new(TOKEN.to_owned())),
            "acme/platform/*",
        )
    }

    /// The provider contract holds; the token GitLab holds has the read scopes asked for
    /// and the value handed out; revoke revokes it.
    #[test]
    fn a_deploy_token_is_created_read_only_verified_and_revoked() {
        let rt = runtime();
        rt.block_on(async {
            let fake = FakeDeployTokens::start(&[PROJECT], TOKEN).await;
            let p = provider(&fake);
            let t = target(PROJECT, Some("read_repository,read_registry"));
            secret_manager::provider::testing::conformance(&p, &t).await;
            assert!(
                fake.active(PROJECT).is_empty(),
                "conformance revokes what it mints"
            );
            let m = p.mint(&t).await.unwrap();
            p.verify(&m).await.unwrap();
            let held = fake.active(PROJECT);
            assert_eq!(held.len(), 1);
            assert_eq!(held[0].scopes, ["read_registry", "read_repository"]);
            assert_eq!(m.fields[TOKEN_FIELD].expose(), held[0].token);
            assert_eq!(m.fields[USERNAME].expose(), held[0].username);
            assert_eq!(p.keys(&t).await.unwrap().len(), 1);
            p.revoke(&t, &m.key_id, Revoke::Delete).await.unwrap();
            assert!(fake.active(PROJECT).is_empty());
            assert!(
                p.keys(&t).await.unwrap().is_empty(),
                "revoked tokens are not keys"
            );
        });
    }

    /// A project the operator did not list, a path that is not a project, or a write
    /// scope sends nothing to GitLab.
    #[test]
    fn an_unlisted_project_or_a_write_scope_gets_no_request() {
        let rt = runtime();
        rt.block_on(async {
            let fake = FakeDeployTokens::start(&[PROJECT, "acme/secrets"], TOKEN).await;
            let p = provider(&fake);
            for (project, scopes) in [
                ("acme/secrets", None),
                ("acme/platform/../secrets", None),
                ("https://evil.example/acme/platform/config", None),
                ("acme/platform/config?private_token=x", None),
                (PROJECT, Some("write_repository")),
                (PROJECT, Some("read_repository,write_registry")),
                (PROJECT, Some("api")),
            ] {
                let t = target(project, scopes);
                let e = p.preflight(&t).await.unwrap_err().to_string();
                assert!(
                    e.contains("SECRET_MANAGER_DEPLOY_TOKEN_PROJECTS")
                        || e.contains("not a GitLab project path")
                        || e.contains("may only read"),
                    "{project} {scopes:?}: {e}"
                );
                assert!(p.mint(&t).await.is_err(), "{project} {scopes:?}");
            }
            let e = p
                .revoke(
                    &target(PROJECT, None),
                    &KeyId("1?x=y".into()),
                    Revoke::Delete,
                )
                .await
                .unwrap_err();
            assert!(e.to_string().contains("is not a deploy token id"), "{e}");
            assert_eq!(fake.requests(), Vec::<String>::new(), "nothing was sent");
        });
    }

    /// `create` then a whole rotation: the cluster's Secret gets the new username and
    /// token, the old token is revoked, nothing secret is printed.
    #[test]
    fn a_deploy_token_is_created_and_rotated_through_git() {
        let rt = runtime();
        let fake = rt.block_on(FakeDeployTokens::start(&[PROJECT], TOKEN));
        let env = |c: &mut std::process::Command| {
            c.env("SECRET_MANAGER_FORGE_API_URL", &fake.url)
                .env("GITLAB_TOKEN", TOKEN)
                .env("SECRET_MANAGER_DEPLOY_TOKEN_PROJECTS", PROJECT);
        };
        let f = GitFleet::new();
        let work = f.path("work");
        let mut c = cmd();
        env(&mut c);
        let r = run_cmd(c.args([
            "--repo",
            work.to_str().unwrap(),
            "create",
            "--source",
            "gitlab-deploy-token",
            "--cluster",
            DEV1,
            "--namespace",
            "argocd",
            "--name",
            "gitlab-repo",
            "--key-mappings",
            "[username:Username,password:Token]",
            "--param",
            &format!("project={PROJECT}"),
            "-w",
            work.join(REL).to_str().unwrap(),
        ]));
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        f.commit_and_publish("Argo CD reads the GitLab repo with a deploy token", &[DEV1]);
        let first = fake.active(PROJECT);
        assert_eq!(first.len(), 1);
        let mut c = f
            .bot("2027-06-01T00:00:00Z")
            .args(["--yes", "rotate", "--revoke-after", "0s"])
            .args(["--source", "gitlab-deploy-token", "--older-than", "0s"])
            .command();
        env(&mut c);
        let sent_before = fake.requests().len();
        let r = run_cmd(&mut c);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr
                .contains("1 staged, 0 deleted, 1 published, 1 revoked"),
            "{}",
            r.stderr
        );
        let now = fake.active(PROJECT);
        // What one rotation costs GitLab (docs/benchmarks.md).
        let path = format!("/api/v4/projects/{PROJECT}/deploy_tokens");
        let sent: Vec<String> = fake.requests()[sent_before..]
            .iter()
            .map(|r| {
                r.replace(&path, "{tokens}")
                    .replace(&now[0].id.to_string(), "{new}")
                    .replace(&first[0].id.to_string(), "{old}")
            })
            .collect();
        assert_eq!(
            sent,
            [
                "GET {tokens}?active=true&per_page=1",
                "GET {tokens}?active=true&page=1&per_page=100",
                "POST {tokens}",
                "GET {tokens}/{new}",
                "DELETE {tokens}/{old}",
            ]
        );
        assert_eq!(now.len(), 1, "the old token is revoked");
        assert_ne!(now[0].id, first[0].id);
        let text = f.show("dev", &format!("refs/heads/cluster/{DEV1}"), REL);
        let file = f.path("gitlab-check.yaml");
        std::fs::write(&file, &text).unwrap();
        let token = decrypt_value(&file, 0, DEV1, "argocd/gitlab-repo", "password").unwrap();
        let user = decrypt_value(&file, 0, DEV1, "argocd/gitlab-repo", "username").unwrap();
        assert_eq!(String::from_utf8(token).unwrap(), now[0].token);
        assert_eq!(String::from_utf8(user).unwrap(), now[0].username);
        for out in [&r.stdout, &r.stderr] {
            assert!(!out.contains(TOKEN), "{out}");
            assert!(!out.contains(&now[0].token), "{out}");
            assert!(!out.contains(&first[0].token), "{out}");
        }
    }

    fn group_target(group: &str) -> Target {
        Target {
            source: "gitlab-deploy-token".into(),
            params: [
                ("group".to_string(), group.to_string()),
                ("scopes".to_string(), "read_registry".to_string()),
            ]
            .into(),
            current_key: None,
            referenced: Vec::new(),
        }
    }

    /// A group deploy token (one token for every project of a group, e.g. the registry
    /// of all a cluster's images) goes through the group API; a project list never grants
    /// one, and a group value that is not a group path, or a manifest naming both a
    /// project and a group, sends nothing.
    #[test]
    fn a_group_deploy_token_needs_the_operators_group_list() {
        let rt = runtime();
        rt.block_on(async {
            const GROUP: &str = "acme/platform";
            let fake = FakeDeployTokens::start(&[PROJECT], TOKEN).await;
            fake.own_groups(&[GROUP, "acme"]);
            // Projects `acme/platform/*` are listed; the group is not.
            let e = provider(&fake)
                .preflight(&group_target(GROUP))
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("SECRET_MANAGER_DEPLOY_TOKEN_GROUPS"), "{e}");
            let p = provider(&fake).with_groups(GROUP);
            for hostile in [
                "acme",
                "https://evil.example/acme",
                "acme/../secrets",
                "acme/platform?private_token=x",
                "acme/\u{1b}]52;c;x\u{7}",
                "--help",
            ] {
                let e = p
                    .mint(&group_target(hostile))
                    .await
                    .unwrap_err()
                    .to_string();
                assert!(
                    e.contains("SECRET_MANAGER_DEPLOY_TOKEN_GROUPS")
                        || e.contains("not a GitLab group path"),
                    "{hostile:?}: {e}"
                );
                assert!(!e.contains('\u{1b}'), "escaped: {e:?}");
            }
            let mut both = group_target(GROUP);
            both.params.insert("project".into(), PROJECT.into());
            let e = p.mint(&both).await.unwrap_err().to_string();
            assert!(
                e.contains("set exactly one") || e.contains("keep the one you mean"),
                "{e}"
            );
            assert_eq!(fake.requests(), Vec::<String>::new(), "nothing was sent");
            // The listed group: the contract holds through /groups/:id/deploy_tokens.
            let t = group_target(GROUP);
            secret_manager::provider::testing::conformance(&p, &t).await;
            let m = p.mint(&t).await.unwrap();
            p.verify(&m).await.unwrap();
            let held = fake.active_group(GROUP);
            assert_eq!(held.len(), 1);
            assert_eq!(held[0].scopes, ["read_registry"]);
            assert!(fake.active(GROUP).is_empty(), "not a project token");
            assert_eq!(m.fields[TOKEN_FIELD].expose(), held[0].token);
            p.revoke(&t, &m.key_id, Revoke::Delete).await.unwrap();
            assert!(fake.active_group(GROUP).is_empty());
            assert!(
                fake.requests()
                    .iter()
                    .all(|r| r.contains("/api/v4/groups/acme/platform/deploy_tokens")),
                "{:?}",
                fake.requests()
            );
        });
    }

    /// `create` and `lint` want a project or a group, not both: `create` refuses both
    /// before any request, `lint` says which to keep.
    #[test]
    fn create_and_lint_want_a_project_or_a_group_not_both() {
        let rt = runtime();
        let fake = rt.block_on(FakeDeployTokens::start(&[PROJECT], TOKEN));
        let f = GitFleet::new();
        let work = f.path("work");
        let create = |params: &[&str]| {
            let mut c = cmd();
            c.env("SECRET_MANAGER_FORGE_API_URL", &fake.url)
                .env("GITLAB_TOKEN", TOKEN)
                .env("SECRET_MANAGER_DEPLOY_TOKEN_PROJECTS", PROJECT)
                .args(["--repo", work.to_str().unwrap(), "create"])
                .args(["--source", "gitlab-deploy-token", "--cluster", DEV1])
                .args(["--namespace", "argocd", "--name", "gitlab-repo"])
                .args(["--key-mappings", "[username:Username,password:Token]"]);
            for p in params {
                c.args(["--param", p]);
            }
            c.args(["-w", work.join(REL).to_str().unwrap()]);
            run_cmd(&mut c)
        };
        let r = create(&[&format!("project={PROJECT}"), "group=acme"]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains("needs exactly one of project, group"),
            "{}",
            r.stderr
        );
        assert_eq!(fake.requests(), Vec::<String>::new(), "nothing was sent");
        assert!(!work.join(REL).exists());
        let r = create(&[&format!("project={PROJECT}")]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let lint = || {
            run_cmd(
                cmd()
                    .env("SECRET_MANAGER_NOW", "2027-06-01T00:00:00Z")
                    .args(["--repo", work.to_str().unwrap(), "lint"]),
            )
        };
        let l = lint();
        assert_eq!(l.code, 0, "{}\n{}", l.stdout, l.stderr);
        let text = std::fs::read_to_string(work.join(REL)).unwrap();
        let line = format!("secret-manager/project: {PROJECT}");
        assert!(text.contains(&line), "{text}");
        let indent: String = text
            .lines()
            .find(|l| l.contains(&line))
            .unwrap()
            .chars()
            .take_while(|c| *c == ' ')
            .collect();
        std::fs::write(
            work.join(REL),
            text.replace(
                &line,
                &format!("{line}\n{indent}secret-manager/group: acme"),
            ),
        )
        .unwrap();
        let l = lint();
        assert_eq!(l.code, 3, "{}\n{}", l.stdout, l.stderr);
        assert!(
            l.stdout.contains("project and group are all set"),
            "{}",
            l.stdout
        );
        std::fs::write(
            work.join(REL),
            text.replace(&line, "secret-manager/group: acme"),
        )
        .unwrap();
        let l = lint();
        assert_eq!(
            l.code, 0,
            "a group alone is an identity: {}\n{}",
            l.stdout, l.stderr
        );
    }
}
