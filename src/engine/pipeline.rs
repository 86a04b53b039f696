//! The stages a credential goes through in one run, as types: each step of the stage
//! pipeline ([`super::stage`]: preflight → claim → mint → seal → commit) takes the one
//! before and returns the next, so a credential cannot be minted without a claim or
//! sealed without a verified key. Minting ([`super::mint`]) and key slots
//! ([`super::slots`]) use them without depending on the pipeline that drives them.

use super::plan::Credential;
use super::report::{EngineError, Phase};
use crate::journal::table::Held;
use crate::provider::{Minted, Provider};
use std::sync::Arc;

/// A credential that passed every check without side effects.
pub(super) struct Ready<'a> {
    pub(super) cred: Credential<'a>,
    pub(super) provider: Arc<dyn Provider>,
}

/// A credential this run holds a claim on.
pub(super) struct Claimed<'a> {
    pub(super) cred: Credential<'a>,
    pub(super) provider: Arc<dyn Provider>,
    pub(super) held: Held,
}

/// A claimed credential with a new key for each of its groups, every one verified.
pub(super) struct MintOutcome<'a> {
    pub(super) claimed: Claimed<'a>,
    /// (group index, new key), verified.
    pub(super) minted: Vec<(usize, Minted)>,
}

/// Minting stopped part-way: the keys `done.minted` holds (some, none, or one that failed
/// its verification) must be undone, and `error` said in `phase`.
pub(super) struct MintFailure<'a> {
    pub(super) done: MintOutcome<'a>,
    pub(super) phase: Phase,
    pub(super) error: EngineError,
}
