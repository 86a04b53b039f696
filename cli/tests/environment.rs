//! The environment tier: tests that need what `scripts/test` installs — kubectl and the
//! Kubernetes schemas for the deploy/ manifests, hadolint, tini and user namespaces for
//! the image, promtool for the alert rules, real PostgreSQL and MariaDB servers, moto.
//! Each is `#[ignore = "environment: needs <tool> (scripts/test runs it)"]`: a plain
//! `cargo test` lists them with the tool they need; `scripts/test` runs them after the
//! hermetic tier (`--ignored`).

mod common;

mod deploy;
mod mysql;
mod postgres;
