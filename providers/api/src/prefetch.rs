//! One read handed on once: a provider whose preflight must read exactly what `keys` reads
//! next (GCP lists the keys, Azure reads the application) keeps that answer here for the
//! following `keys` of the same identity, instead of asking the service twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How old a kept answer may be when taken: the engine lists the keys right after the
/// preflight of the same batch; anything later reads the service again.
pub const PREFETCH_TTL: Duration = Duration::from_secs(30);

/// Answers of a preflight, by identity, each taken at most once.
///
/// A write to the identity (`mint`, `revoke`) must [`forget`](Prefetched::forget) it, so a
/// later `keys` never sees a listing older than the provider's own change.
#[derive(Debug)]
pub struct Prefetched<V>(Mutex<HashMap<String, (Instant, V)>>);

impl<V> Default for Prefetched<V> {
    fn default() -> Self {
        Prefetched(Mutex::new(HashMap::new()))
    }
}

impl<V> Prefetched<V> {
    /// Keeps `v` for the next [`take`](Prefetched::take) of `identity`.
    pub fn put(&self, identity: &str, v: V) {
        self.lock().insert(identity.to_owned(), (Instant::now(), v));
    }

    /// The kept answer for `identity`, removed: a second call asks the service again, and
    /// so does one more than [`PREFETCH_TTL`] after the preflight.
    pub fn take(&self, identity: &str) -> Option<V> {
        self.lock()
            .remove(identity)
            .filter(|(at, _)| at.elapsed() <= PREFETCH_TTL)
            .map(|(_, v)| v)
    }

    /// Drops what is kept for `identity` (after a write to it).
    pub fn forget(&self, identity: &str) {
        self.lock().remove(identity);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, V)>> {
        // A panic while holding the map cannot leave it half-written: every operation is
        // one insert or remove.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_once_and_forgotten_on_write() {
        let p = Prefetched::default();
        p.put("a", 1);
        p.put("b", 2);
        assert_eq!(p.take("a"), Some(1));
        assert_eq!(p.take("a"), None, "a second keys() asks the service");
        p.forget("b");
        assert_eq!(p.take("b"), None);
    }
}
