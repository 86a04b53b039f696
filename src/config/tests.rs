use super::*;

fn parse(src: &str) -> ConfigResult<Config> {
    from_yaml::<Option<RawConfig>>(Path::new(CONFIG_FILE), src)?
        .unwrap_or_default()
        .validate(Path::new(CONFIG_FILE))
}

#[test]
fn defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.annotation_prefix, "secret-manager/");
    assert_eq!(c.max_age, chrono::Duration::days(90));
    assert_eq!(c.revoke_after, chrono::Duration::hours(1));
    assert_eq!(c.branch_pattern, "cluster/{id}");
}

#[test]
fn unknown_keys_are_errors_with_a_line() {
    let e = parse("policy:\n  maxAge: 30d\n  maxAgee: 1d\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(".secret-manager.yaml:3:"), "{e}");
    assert!(e.contains("maxAgee"), "{e}");
}

#[test]
fn claims_and_aws_accounts_are_validated() {
    let c = parse("claims:\n  lease: 5m\nproviders:\n  aws:\n    accounts:\n      \"111111111111\": {roleArn: \"arn:aws:iam::111111111111:role/sm\", externalId: x}\n").unwrap();
    assert_eq!(c.claim_lease, chrono::Duration::minutes(5));
    assert_eq!(c.claim_ref_prefix, "refs/secret-manager/claims/");
    assert_eq!(
        c.providers.aws.accounts["111111111111"]
            .external_id
            .as_deref(),
        Some("x")
    );
    let e = parse("claims:\n  lease: 5s\n").unwrap_err().to_string();
    assert!(e.contains("claims.lease"), "{e}");
    let e = parse(
        "providers:\n  aws:\n    accounts:\n      \"1111\": {roleArn: arn:aws:iam::1:role/x}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("12 digits"), "{e}");
    let e = parse("providers:\n  aws:\n    acounts: {}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("acounts"), "{e}");
    let e = parse("claims:\n  refPrefix: secret-manager/\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("claims.refPrefix"), "{e}");
}

#[test]
fn provider_windows_lifetimes_and_plugins_are_validated() {
    let c = parse("providers:\n  aws: {propagationWindow: 45s}\n  azure: {propagationWindow: 2m, secretLifetime: 180d}\n  gcp: {propagationWindow: 3m}\n  exec:\n    vault: {env: [VAULT_ADDR], timeout: 30s}\n").unwrap();
    let p = &c.providers;
    assert_eq!(p.aws_window(), Some(std::time::Duration::from_secs(45)));
    assert_eq!(p.azure_window(), Some(std::time::Duration::from_secs(120)));
    assert_eq!(
        p.azure_secret_lifetime(),
        Some(std::time::Duration::from_secs(180 * 86400))
    );
    assert_eq!(p.gcp_window(), Some(std::time::Duration::from_secs(180)));
    assert_eq!(
        p.exec_timeout("vault"),
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(p.exec["vault"].env, ["VAULT_ADDR"]);
    for (src, field) in [
        (
            "providers:\n  aws: {propagationWindow: 1h}\n",
            "providers.aws.propagationWindow",
        ),
        (
            "providers:\n  gcp: {propagationWindow: soon}\n",
            "providers.gcp.propagationWindow",
        ),
        (
            "providers:\n  azure: {secretLifetime: 5m}\n",
            "providers.azure.secretLifetime",
        ),
        (
            "providers:\n  exec:\n    v: {timeout: 2h}\n",
            "providers.exec.v.timeout",
        ),
        (
            "providers:\n  exec:\n    v: {env: [\"A=B\"]}\n",
            "providers.exec.v.env",
        ),
        (
            "providers:\n  exec:\n    \"../x\": {}\n",
            "providers.exec.../x",
        ),
        ("providers:\n  exec:\n    v: {envs: []}\n", "envs"),
    ] {
        let e = parse(src).unwrap_err().to_string();
        assert!(e.contains(field), "{src}: {e}");
    }
}

#[test]
fn a_plugin_never_gets_the_rotators_credentials() {
    for var in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GITHUB_TOKEN",
        "GITHUB_APP_PRIVATE_KEY_FILE",
        "GITLAB_TOKEN",
        "SSH_AUTH_SOCK",
        "KUBECONFIG",
        "SECRET_MANAGER_FORGE_API_URL",
        "aws_secret_access_key",
    ] {
        let e = parse(&format!(
            "providers:\n  exec:\n    vault: {{env: [VAULT_ADDR, {var}]}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("providers.exec.vault.env") && e.contains("rotator's own credentials"),
            "{var}: {e}"
        );
    }
    assert!(
        parse(
            "providers:\n  exec:\n    vault: {env: [VAULT_ADDR, VAULT_TOKEN_FILE, AWS_REGION]}\n"
        )
        .is_ok()
    );
}

#[test]
fn remotes_branches_and_patterns_are_names() {
    for (src, field) in [
        ("mainRemote: \"--upload-pack=touch /tmp/x\"\n", "mainRemote"),
        ("mainRemote: https://evil.example/r.git\n", "mainRemote"),
        ("mainBranch: \"main:refs/heads/x\"\n", "mainBranch"),
        ("pointers: {branch: \"-c/{id}\"}\n", "pointers.branch"),
    ] {
        let e = parse(src).unwrap_err().to_string();
        assert!(e.contains(field), "{src}: {e}");
    }
}

#[test]
fn pull_request_mode_needs_a_valid_forge() {
    let c = parse("mainVia: pull-request\nforge:\n  kind: github\n  repository: org/fleet\n  labels: [rotation]\n  maxOpenAge: 7d\n").unwrap();
    assert_eq!(c.main_via, MainVia::PullRequest);
    let f = c.forge.unwrap();
    assert_eq!(f.api_url, None);
    assert_eq!(f.branch_prefix, "secret-manager/");
    assert_eq!(f.max_open_age, Some(chrono::Duration::days(7)));
    let e = parse("mainVia: pull-request\n").unwrap_err().to_string();
    assert!(e.contains("needs a forge block"), "{e}");
    let e = parse("mainVia: pull-request\nforge: {kind: gitlab, repository: g/p, apiUrl: http://gitlab.example.com/api/v4}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("forge.apiUrl") && e.contains("https"), "{e}");
    assert!(
        parse("forge: {kind: gitlab, repository: g/p, apiUrl: http://127.0.0.1:8080/api/v4}\n")
            .is_ok()
    );
    let e = parse("forge: {kind: github, repository: fleet}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("forge.repository"), "{e}");
    let e = parse("forge: {kind: bitbucket, repository: a/b}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bitbucket"), "{e}");
    let e = parse("mainVia: pr\n").unwrap_err().to_string();
    assert!(e.contains("pr"), "{e}");
    let e = parse("git: {sign: true, key: x}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("key"), "{e}");
    assert!(parse("git: {sign: true}\n").unwrap().git_sign);
}

#[test]
fn loopback_http_is_allowed_and_nothing_else() {
    assert!(secure_or_loopback("https://api.github.com"));
    assert!(secure_or_loopback("http://127.0.0.1:8080/api"));
    assert!(secure_or_loopback("http://localhost/api"));
    assert!(!secure_or_loopback("http://127.0.0.1.example.com/api"));
    assert!(secure_or_loopback("http://[::1]:8080/x"));
    assert!(!secure_or_loopback("http://localhost.evil.example/x"));
    assert!(!secure_or_loopback("http://github.example.com"));
    assert!(!secure_or_loopback("ftp://x"));
}

#[test]
fn bad_duration_names_the_field() {
    let e = parse("policy:\n  maxAge: soon\n").unwrap_err().to_string();
    assert!(e.contains("policy.maxAge"), "{e}");
    assert!(e.contains("e.g. 90d"), "{e}");
}
