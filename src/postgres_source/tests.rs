use super::*;

#[test]
fn key_ids_marks_and_pairs() {
    assert_eq!(parse_key("app_a.3"), Some(("app_a", 3)));
    assert_eq!(parse_key("app.a.3"), None);
    assert_eq!(parse_key("App_a.3"), None);
    assert_eq!(parse_key("app_a.x"), None);
    assert_eq!(parse_key("app_a."), None);
    assert_eq!(
        parse_mark(Some(
            "secret-manager: generation 4 set 2026-12-03T10:00:00Z"
        )),
        Mark::Active {
            generation: 4,
            at: "2026-12-03T10:00:00Z".parse().unwrap()
        }
    );
    assert_eq!(
        parse_mark(Some(
            "secret-manager: revoked generation 4 at 2026-12-03T10:00:00Z"
        )),
        Mark::Revoked { generation: 4 }
    );
    assert_eq!(parse_mark(Some("the app's role")), Mark::None);
    assert_eq!(parse_mark(None), Mark::None);
    let t = |users: &str, instance: &str| Target {
        source: NAME.into(),
        params: [("users", users), ("instance", instance)]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        current_key: None,
        referenced: Vec::new(),
    };
    assert!(Logins::of(KIND, &t("app_a,app_b", "main")).is_ok());
    for (users, instance) in [
        ("app_a", "main"),
        ("app_a,app_a", "main"),
        ("app_a,\"x\"; DROP ROLE y", "main"),
        ("app_a,app_b", "--host=evil"),
        ("app_a,app_b", "a/b"),
    ] {
        assert!(
            Logins::of(KIND, &t(users, instance)).is_err(),
            "{users} {instance}"
        );
    }
    assert_eq!(
        url_env("orders-db"),
        "SECRET_MANAGER_POSTGRES_ORDERS_DB_URL"
    );
}
