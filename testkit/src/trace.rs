//! Captures everything logged at TRACE level on the current thread, for leak tests.

use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("sink").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A TRACE-level subscriber for this thread that writes into memory.
///
/// Run the leak test alone in its own test binary (and on a `current_thread` runtime):
/// tracing caches callsite interest process-wide, and a capture installed while other
/// tests run in parallel threads can miss events.
pub struct TraceCapture {
    sink: Sink,
    _guard: tracing::subscriber::DefaultGuard,
}

impl TraceCapture {
    /// Starts capturing.
    pub fn start() -> TraceCapture {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        TraceCapture {
            sink,
            _guard: guard,
        }
    }

    /// Stops capturing and returns everything logged.
    pub fn finish(self) -> String {
        let bytes = self.sink.0.lock().expect("sink").clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
