//! The conformance suite every provider runs against its (fake or real) endpoint.
//!
//! preflight → keys → mint → verify → keys → revoke → revoke again (idempotent) → keys.
//! It panics with a message naming the step that broke the contract.
//!
//! [`conformance`] is the contract of every source: a mint adds a key and touches no other.
//! [`conformance_replacing`] is the weaker one of an identity that holds a single key by
//! design (a database login rotated with `strategy: single-user`): a mint replaces the
//! key, so the keys before it are gone afterwards.

use crate::{KeyStatus, Provider, Revoke, Revoked, Target};

/// Runs the suite for `target`: a mint adds a key and leaves every other as it was.
pub async fn conformance(p: &dyn Provider, target: &Target) {
    run(p, target, false).await;
}

/// Runs the suite for a `target` whose identity holds one key: a mint replaces it (the
/// keys listed before are gone after), everything else as in [`conformance`].
pub async fn conformance_replacing(p: &dyn Provider, target: &Target) {
    run(p, target, true).await;
}

async fn run(p: &dyn Provider, target: &Target, replaces: bool) {
    let name = p.name();
    p.preflight(target)
        .await
        .unwrap_or_else(|e| panic!("{name}: preflight failed: {e}"));
    let before = p
        .keys(target)
        .await
        .unwrap_or_else(|e| panic!("{name}: keys failed: {e}"));
    let minted = p
        .mint(target)
        .await
        .unwrap_or_else(|e| panic!("{name}: mint failed: {e}"));
    assert!(
        !before.iter().any(|k| k.id == minted.key_id),
        "{name}: mint returned an existing key id {}",
        minted.key_id
    );
    assert!(
        !minted.fields.is_empty(),
        "{name}: mint returned no output fields"
    );
    let debug = format!("{minted:?}");
    // Key ids are not secret (they are annotations); every other field value is.
    for (field, v) in &minted.fields {
        if v.expose() == minted.key_id.0 || v.len() < 8 {
            continue;
        }
        assert!(
            !debug.contains(v.expose()),
            "{name}: Debug of Minted shows the value of {field}"
        );
    }
    p.verify(&minted)
        .await
        .unwrap_or_else(|e| panic!("{name}: verify failed: {e}"));
    let during = p
        .keys(target)
        .await
        .unwrap_or_else(|e| panic!("{name}: keys failed: {e}"));
    let k = during
        .iter()
        .find(|k| k.id == minted.key_id)
        .unwrap_or_else(|| panic!("{name}: minted key {} not listed by keys", minted.key_id));
    assert_eq!(
        k.status,
        KeyStatus::Active,
        "{name}: minted key is not active"
    );
    if replaces {
        assert_eq!(during.len(), 1, "{name}: a replacing mint leaves one key");
    } else {
        assert_eq!(
            during.len(),
            before.len() + 1,
            "{name}: mint changed other keys"
        );
    }
    let first = p
        .revoke(target, &minted.key_id, Revoke::Delete)
        .await
        .unwrap_or_else(|e| panic!("{name}: revoke failed: {e}"));
    assert_eq!(
        first,
        Revoked::Done,
        "{name}: the first revoke deleted the key"
    );
    let again = p
        .revoke(target, &minted.key_id, Revoke::Delete)
        .await
        .unwrap_or_else(|e| panic!("{name}: revoke is not idempotent: {e}"));
    assert_eq!(
        again,
        Revoked::AlreadyGone,
        "{name}: a second revoke finds the key gone"
    );
    let after = p
        .keys(target)
        .await
        .unwrap_or_else(|e| panic!("{name}: keys failed: {e}"));
    assert!(
        !after.iter().any(|k| k.id == minted.key_id),
        "{name}: revoked key {} still listed",
        minted.key_id
    );
    if replaces {
        assert!(
            after.is_empty(),
            "{name}: keys left after revoking the only one: {after:?}"
        );
    } else {
        assert_eq!(
            after.iter().map(|k| &k.id).collect::<Vec<_>>(),
            before.iter().map(|k| &k.id).collect::<Vec<_>>(),
            "{name}: keys after revoke differ from before mint"
        );
    }
}
