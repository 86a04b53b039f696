//! Sealing throughput vs the physical floor (one RSA-OAEP public-key operation).
//!
//! `cargo bench --bench seal` — seals 10,000 values with a 4096-bit TEST-ONLY certificate
//! and, in the same run, times 10,000 bare RSA-OAEP-SHA256 encryptions of a 32-byte key
//! (what every sealed value costs at minimum). Prints both and their ratio.

use rand::rngs::OsRng;
use rsa::{Oaep, RsaPublicKey};
use secret_manager::seal::{SealingCert, label, seal_value};
use sha2::Sha256;
use std::time::Instant;

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
    let key: &RsaPublicKey = &cert.public_key;
    let l = label(
        secret_manager::manifest::Scope::Strict,
        Some("external-dns"),
        Some("cloudprovider-dns-access"),
    )
    .unwrap();
    let value = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let mut rng = OsRng;

    // Warm up both paths.
    for _ in 0..200 {
        let _ = key
            .encrypt(&mut rng, Oaep::new_with_label::<Sha256, _>(&l), &[7u8; 32])
            .unwrap();
        let _ = seal_value(&mut rng, &cert, &l, value).unwrap();
    }
    // Interleave in blocks so both see the same machine state.
    let (mut raw, mut seal) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let block = 500;
    let mut done = 0;
    while done < n {
        let k = block.min(n - done);
        let t = Instant::now();
        for _ in 0..k {
            std::hint::black_box(
                key.encrypt(&mut rng, Oaep::new_with_label::<Sha256, _>(&l), &[7u8; 32])
                    .unwrap(),
            );
        }
        raw += t.elapsed();
        let t = Instant::now();
        for _ in 0..k {
            std::hint::black_box(seal_value(&mut rng, &cert, &l, value).unwrap());
        }
        seal += t.elapsed();
        done += k;
    }
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("values: {n}, RSA-4096, 40-byte value, single thread, OsRng");
    println!(
        "raw RSA-OAEP-SHA256 encrypt (floor): {:8.1} us/op   {:8.0} ops/s",
        per(raw),
        n as f64 / raw.as_secs_f64()
    );
    println!(
        "seal_value (kubeseal format):        {:8.1} us/value {:8.0} values/s",
        per(seal),
        n as f64 / seal.as_secs_f64()
    );
    println!(
        "ratio seal/floor: {:.3}",
        seal.as_secs_f64() / raw.as_secs_f64()
    );
}
