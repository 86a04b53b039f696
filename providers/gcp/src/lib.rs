#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The value of the `source` annotation this crate serves.
pub const NAME: &str = "gcp";

// Re-exported so users of this crate see the contract it implements.
pub use secret_manager_provider as api;
