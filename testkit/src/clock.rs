//! Virtual time for propagation windows: a provider's sleeps advance it at once, and the
//! fakes read it to decide when a new key starts working — a 60-second window costs no
//! wall time, and the test still sees every attempt the provider makes.

use secret_manager_provider::Clock;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

/// A clock that only moves when someone sleeps on it (or calls [`VirtualClock::advance`]).
#[derive(Debug, Default)]
pub struct VirtualClock {
    now: Mutex<Duration>,
}

impl VirtualClock {
    /// Time since the epoch.
    pub fn now(&self) -> Duration {
        *self.now.lock().expect("clock")
    }

    /// Moves time forward.
    pub fn advance(&self, d: Duration) {
        *self.now.lock().expect("clock") += d;
    }
}

impl Clock for VirtualClock {
    fn elapsed(&self) -> Duration {
        self.now()
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.advance(d);
        Box::pin(tokio::task::yield_now())
    }
}
