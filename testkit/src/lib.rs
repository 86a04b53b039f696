//! Test-only fakes for secret-manager's cloud providers.
//!
//! [`FakeProvider`] is an in-memory source for in-process engine tests.
//!
//! Each fake is a real HTTPS server on a loopback port, with its own throwaway CA, that
//! follows the REST shapes of the service it stands in for (paths, JSON bodies, status
//! codes, error envelopes, limits). The provider crates reach them through their real
//! client and auth crates by endpoint override; nothing here is linked into the product.
//!
//! [`FakeAws`] is the exception: a fast plain-HTTP stand-in for IAM and STS with a fixed,
//! async latency, for the concurrency benchmark (`fake-aws`, `scripts/bench-rotate
//! --endpoint fake`); moto remains the AWS fake of the correctness tests.
#![forbid(unsafe_code)]

pub mod aws;
pub mod clock;
pub mod deploy_keys;
pub mod forge;
pub mod graph;
pub mod iam;
pub mod moto;
pub mod provider;
pub mod server;
pub mod tier;
pub mod trace;

pub use aws::FakeAws;
pub use clock::VirtualClock;
pub use deploy_keys::{FakeDeployKeys, FakeDeployTokens};
pub use forge::{FakeForge, MergeStyle};
pub use moto::{MotoServer, Pushgateway};
pub use provider::{Fail, FakeKey, FakeProvider, Op};
pub use server::{Reply, Request, TestServer};
pub use trace::TraceCapture;
