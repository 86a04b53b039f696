//! The on-disk contract: everything another run, another pod, or `audit export` reads.
//!
//! # Architecture
//!
//! A CronJob pod has no disk that outlives it, so every piece of state that must survive a
//! crash lives in git, on the remote that holds main:
//!
//! * **Claims** ([`claim`]): one file per claimed credential, `<credential-id>.yaml`, in
//!   the tree of the claims table `refs/secret-manager/claims/table` (the layout is in
//!   [`table`]). Taken *before* a run mints for a credential, only if the
//!   credential has no file yet; every change is one table commit pushed with a lease
//!   (atomic on the server). A claim past its lease with no record on main means the run
//!   died: the next run takes it over and deletes only the keys that claim can have minted.
//! * **Records** ([`record`]): `.secret-manager/rotations/<id>.yaml` on main, committed in
//!   the same commit as the new ciphertexts. A record is parsed once into its state
//!   ([`lifecycle`]: `Proposed` → `Staged` → `Published` → optionally `Disabled`, then
//!   `Ended`); a transition consumes the state it starts from and returns the next, and
//!   only the [`store::Store`] writes record files; the commit that ends a rotation
//!   deletes its file.
//! * **Trailers** ([`trailers`]): every commit the tool makes carries one
//!   `Secret-Manager-*` block per rotation it touches; `audit export` rebuilds the history
//!   from them.
//!
//! Lifecycle of one credential on the remote:
//!
//! ```text
//! (nothing) ─claim ref─▶ Claimed ─stage commit (record added)─▶ Staged ─pointers─▶ Published
//!     ▲          │  run died, lease over: next run cleans up                        │ gates
//!     │          └──────────────────────────────▶ (abandon commit) ──▶ (nothing)    ▼
//!     └────────────────────────── revoke commit (record deleted) ◀── Disabled ◀── revoke
//! ```
//!
//! The claim ref is deleted as soon as the stage commit has landed: from then on the
//! record on main is what makes the credential busy for other runs.

pub mod claim;
pub mod lifecycle;
pub mod record;
pub mod store;
pub mod table;
pub mod trailers;

pub use claim::{CLAIMS_REF_PREFIX, Claim, RunId, credential_id};
pub use lifecycle::{Disabled, Ended, Lifecycle, Proposed, Published, Staged};
pub use record::{RecordKind, RecordManifest, RotationRecord, RotationState};
pub use store::{Change, Store, load_records, load_records_at};
pub use trailers::{TrailerAction, TrailerBlock};
