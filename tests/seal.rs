//! kubeseal compatibility: everything sealed decrypts with the TEST-ONLY private keys,
//! the label binds the scope, and bad certificates are refused.

use crate::support::{encrypted_data, testdata, unseal};
use rand::SeedableRng;
use secret_manager::Repo;
use secret_manager::manifest::Scope;
use secret_manager::seal::{SealError, SealingCert, label, seal_value};

fn now() -> chrono::DateTime<chrono::Utc> {
    secret_manager::annotations::parse_create_date(crate::support::NOW).unwrap()
}

fn cert(cluster: &str) -> SealingCert {
    let p = testdata(&format!("example-repo/tooling/sealing-certs/{cluster}.pem"));
    SealingCert::parse(&std::fs::read(&p).unwrap(), cluster, now()).unwrap()
}

#[test]
fn every_example_value_decrypts_and_matches_its_annotations() {
    let root = testdata("example-repo");
    let repo = Repo::open(&root).unwrap();
    let report = repo.scan();
    let mut checked = 0;
    for f in &report.secrets {
        let cluster = f.attribution.cluster().unwrap();
        let key = unseal::key(cluster);
        let l = label(f.doc.scope, f.namespace.as_deref(), f.doc.name.as_deref()).unwrap();
        let values = encrypted_data(&root.join(&f.file), f.doc.doc_index);
        let mut plain = std::collections::BTreeMap::new();
        for (k, v) in &values {
            let p = unseal::decrypt(&key, &l, v)
                .unwrap_or_else(|e| panic!("{}:{k}: {e}", f.file.display()));
            plain.insert(k.clone(), String::from_utf8(p).unwrap());
            checked += 1;
        }
        let Some(m) = &f.managed else { continue };
        // The key id annotation and the sealed key id agree.
        for km in m.key_mappings().unwrap().unwrap() {
            let v = &plain[&km.secret_key];
            match km.field.as_str() {
                "AccessKeyId" => assert_eq!(Some(v), m.key_id.as_ref()),
                "ClientId" => assert_eq!(Some(v), m.all.get("clientId")),
                "TenantId" => assert_eq!(Some(v), m.all.get("tenantId")),
                "ClientEmail" => assert_eq!(Some(v), m.all.get("serviceAccount")),
                "KeyFileJson" => {
                    let j: serde_json::Value = serde_json::from_str(v).unwrap();
                    assert_eq!(j["private_key_id"].as_str(), m.key_id.as_deref());
                    assert_eq!(
                        j["client_email"].as_str(),
                        m.all.get("serviceAccount").map(String::as_str)
                    );
                }
                "Value" => {
                    // A generated secret holds what its policy says.
                    let len: usize = m.all["length"].parse().unwrap();
                    assert_eq!(v.len(), len, "{}", f.file.display());
                    assert_eq!(m.all.get("alphabet").map(String::as_str), Some("hex"));
                    assert!(v.bytes().all(|b| b.is_ascii_hexdigit()), "{v:?}");
                }
                _ => assert!(!v.is_empty()),
            }
        }
    }
    assert!(checked >= 25, "only {checked} values checked");
}

#[test]
fn round_trip_all_scopes_and_wrong_labels_fail() {
    let c = cert("aws.eu-central-1.dev1");
    let key = unseal::key("aws.eu-central-1.dev1");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let secret = b"s3cr3t value with \xe2\x9c\x93 unicode";
    for (scope, ns, name) in [
        (Scope::Strict, Some("ns1"), Some("name1")),
        (Scope::NamespaceWide, Some("ns1"), Some("name1")),
        (Scope::ClusterWide, None, None),
    ] {
        let l = label(scope, ns, name).unwrap();
        let sealed = seal_value(&mut rng, &c, &l, secret).unwrap();
        assert_eq!(
            unseal::decrypt(&key, &l, &sealed).unwrap(),
            secret,
            "{scope}"
        );
        if scope != Scope::ClusterWide {
            for wrong in ["ns2/name1", "ns1/name2", "ns2", ""] {
                if wrong != l {
                    assert!(
                        unseal::decrypt(&key, wrong, &sealed).is_err(),
                        "{scope} decrypted with label {wrong:?}"
                    );
                }
            }
        } else {
            assert!(unseal::decrypt(&key, "ns1", &sealed).is_err());
        }
        // Another cluster's key cannot open it.
        assert!(unseal::decrypt(&unseal::key("aws.us-east-1.prod1"), &l, &sealed).is_err());
    }
}

#[test]
fn format_is_kubeseal_hybrid() {
    use base64::Engine as _;
    let c = cert("gcp.europe-west1.dev2");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
    let sealed = seal_value(&mut rng, &c, "a/b", b"xyz").unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&sealed)
        .unwrap();
    let n = u16::from_be_bytes([raw[0], raw[1]]) as usize;
    assert_eq!(n, 512, "RSA-4096 ciphertext length prefix");
    assert_eq!(
        raw.len(),
        2 + 512 + 3 + 16,
        "u16 ‖ rsa ‖ aes-gcm(ciphertext ‖ tag)"
    );
    // The injected RNG decides the session key; the OAEP seed comes from AWS-LC, so the
    // same seed gives the same session key in a different ciphertext, and both open.
    let mut rng2 = rand_chacha::ChaCha20Rng::seed_from_u64(2);
    let again = seal_value(&mut rng2, &c, "a/b", b"xyz").unwrap();
    assert_ne!(again, sealed, "OAEP is randomised");
    let key = unseal::key("gcp.europe-west1.dev2");
    assert_eq!(
        unseal::session_key(&key, "a/b", &again).unwrap(),
        unseal::session_key(&key, "a/b", &sealed).unwrap()
    );
    for s in [&sealed, &again] {
        assert_eq!(unseal::decrypt(&key, "a/b", s).unwrap(), b"xyz");
        assert!(
            unseal::decrypt(&key, "a/c", s).is_err(),
            "the label binds it"
        );
    }
}

#[test]
fn many_values_are_sealed_on_every_core_and_each_opens() {
    use secret_manager::seal::{Plaintext, ops::seal_all};
    let c = cert("aws.eu-central-1.dev1");
    let values: std::collections::BTreeMap<String, Plaintext> = (0..200)
        .map(|i| {
            (
                format!("k{i:03}"),
                Plaintext::new(format!("value-{i}").into_bytes()),
            )
        })
        .collect();
    let mut rng = rand::rngs::OsRng;
    let sealed = seal_all(
        &mut rng,
        &c,
        secret_manager::manifest::Scope::Strict,
        Some("ns"),
        Some("n"),
        &values,
    )
    .unwrap();
    assert_eq!(sealed.len(), 200);
    let key = unseal::key("aws.eu-central-1.dev1");
    for (i, (k, ct)) in sealed.iter().enumerate() {
        assert_eq!(k, &format!("k{i:03}"));
        assert_eq!(
            unseal::decrypt(&key, "ns/n", ct).unwrap(),
            format!("value-{i}").as_bytes()
        );
    }
}

#[test]
fn bad_certificates_are_refused_with_their_origin() {
    let read = |n: &str| std::fs::read(testdata(&format!("keys/bad/{n}"))).unwrap();
    let e = SealingCert::parse(
        &read("expired.pem"),
        "cluster x (keys/bad/expired.pem)",
        now(),
    )
    .unwrap_err();
    assert!(matches!(e, SealError::Expired { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("cluster x (keys/bad/expired.pem): certificate is not valid"),
        "{e}"
    );
    let e = SealingCert::parse(&read("rsa1024.pem"), "weak", now()).unwrap_err();
    assert!(matches!(e, SealError::WeakKey { bits: 1024, .. }), "{e}");
    let e = SealingCert::parse(&read("ec-p256.pem"), "ec", now()).unwrap_err();
    assert!(matches!(e, SealError::NotRsa { .. }), "{e}");
    let e = SealingCert::parse(&read("garbage.pem"), "garbage", now()).unwrap_err();
    assert!(matches!(e, SealError::BadCertificate { .. }), "{e}");
}

#[test]
fn fingerprint_is_sha256_of_der() {
    let c = cert("aws.eu-central-1.dev1");
    assert_eq!(c.fingerprint.len(), 64);
    assert!(c.fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(c.fingerprint, cert("aws.us-east-1.prod1").fingerprint);
}
