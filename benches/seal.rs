//! Sealing throughput vs the floor: one RSA-OAEP-SHA256 public-key operation of AWS-LC,
//! the library `seal_value` uses, measured in the same process.
//!
//! `cargo bench --bench seal` — seals 10,000 values with a 4096-bit TEST-ONLY certificate
//! and, interleaved in blocks of 500, times 10,000 bare AWS-LC RSA-OAEP-SHA256 encryptions
//! of a 32-byte key (what every sealed value costs at minimum) and, for context, the same
//! operation in the pure-Rust `rsa` crate. Then seals 2,000 values with `seal_all` (every
//! core) against the same values one by one. `SEAL_BENCH_N` changes the count.

use rand::rngs::OsRng;
use rsa::{Oaep, RsaPublicKey};
use secret_manager::seal::{Plaintext, SealingCert, label, ops::seal_all, seal_value};
use sha2::Sha256;
use std::time::{Duration, Instant};

fn main() {
    let n: usize = std::env::var("SEAL_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/example-repo/tooling/sealing-certs/aws.eu-central-1.dev1.pem"
    ))
    .unwrap();
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
        .unwrap()
        .to_utc();
    let cert = SealingCert::parse(&pem, "bench", now).unwrap();
    let key = {
        use rsa::pkcs1::DecodeRsaPublicKey as _;
        use x509_cert::der::DecodePem as _;
        let c = x509_cert::Certificate::from_pem(&pem).unwrap();
        RsaPublicKey::from_pkcs1_der(
            c.tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes(),
        )
        .unwrap()
    };
    let key = &key;
    // The floor: AWS-LC's OAEP encryption of a session key, from the certificate's SPKI.
    let spki = {
        use x509_cert::der::{DecodePem, Encode};
        x509_cert::Certificate::from_pem(&pem)
            .unwrap()
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap()
    };
    let lc = aws_lc_rs::rsa::OaepPublicEncryptingKey::new(
        aws_lc_rs::rsa::PublicEncryptingKey::from_der(&spki).unwrap(),
    )
    .unwrap();
    let l = label(
        secret_manager::manifest::Scope::Strict,
        Some("external-dns"),
        Some("cloudprovider-dns-access"),
    )
    .unwrap();
    let value = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let mut rng = OsRng;
    let mut out = vec![0u8; lc.ciphertext_size()];
    let mut floor = || {
        std::hint::black_box(
            lc.encrypt(
                &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
                &[7u8; 32],
                &mut out,
                Some(l.as_bytes()),
            )
            .unwrap()
            .len(),
        );
    };
    // Warm up every path.
    for _ in 0..200 {
        floor();
        let _ = seal_value(&mut rng, &cert, &l, value).unwrap();
    }
    let (mut lc_t, mut seal_t, mut rsa_t) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let block = 500;
    let mut done = 0;
    // The rsa crate is timed on a tenth of the values: it is only context.
    let mut rsa_n = 0;
    while done < n {
        let k = block.min(n - done);
        let t = Instant::now();
        for _ in 0..k {
            floor();
        }
        lc_t += t.elapsed();
        let t = Instant::now();
        for _ in 0..k {
            std::hint::black_box(seal_value(&mut rng, &cert, &l, value).unwrap());
        }
        seal_t += t.elapsed();
        let t = Instant::now();
        for _ in 0..k / 10 {
            std::hint::black_box(
                key.encrypt(&mut rng, Oaep::new_with_label::<Sha256, _>(&l), &[7u8; 32])
                    .unwrap(),
            );
        }
        rsa_t += t.elapsed();
        rsa_n += k / 10;
        done += k;
    }
    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    println!("values: {n}, RSA-4096, 40-byte value, single thread, OsRng");
    println!(
        "AWS-LC RSA-OAEP-SHA256 encrypt (floor): {:8.1} us/op    {:8.0} ops/s",
        per(lc_t, n),
        n as f64 / lc_t.as_secs_f64()
    );
    println!(
        "seal_value (kubeseal format):           {:8.1} us/value {:8.0} values/s",
        per(seal_t, n),
        n as f64 / seal_t.as_secs_f64()
    );
    println!(
        "rsa crate RSA-OAEP-SHA256 (context):    {:8.1} us/op    {:8.0} ops/s",
        per(rsa_t, rsa_n),
        rsa_n as f64 / rsa_t.as_secs_f64()
    );
    println!(
        "rate seal/floor: {:.3}",
        lc_t.as_secs_f64() / seal_t.as_secs_f64()
    );
    // Bulk: seal_all on every core vs one value after another.
    let bulk: std::collections::BTreeMap<String, Plaintext> = (0..2000)
        .map(|i| (format!("k{i}"), Plaintext::new(value.to_vec())))
        .collect();
    let t = Instant::now();
    for v in bulk.values() {
        std::hint::black_box(seal_value(&mut rng, &cert, &l, &v.0).unwrap());
    }
    let one = t.elapsed();
    let t = Instant::now();
    let sealed = seal_all(
        &mut rng,
        &cert,
        secret_manager::manifest::Scope::Strict,
        Some("external-dns"),
        Some("cloudprovider-dns-access"),
        &bulk,
    )
    .unwrap();
    let all = t.elapsed();
    assert_eq!(sealed.len(), bulk.len());
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "bulk 2000 values: one by one {:.0} values/s, seal_all on {cores} cores {:.0} values/s, speed-up {:.2}x",
        2000.0 / one.as_secs_f64(),
        2000.0 / all.as_secs_f64(),
        one.as_secs_f64() / all.as_secs_f64()
    );
}
