//! A stop asked for while blob bytes go up. distribution 2.x keeps the bytes of a request cut
//! mid-way but then refuses the session (its location records the offset before the cut), so
//! an upload resumes only from a request that ended whole. On a stop, then, each request in
//! flight finishes (a chunk, at most [`super::upload::CHUNK_BYTES`]) and no new one starts: the
//! next run resumes every upload where it stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Shared by the uploads of a run and whoever asks them to stop; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct UploadGate {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    stopping: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// A request carrying blob bytes, counted while it lives.
pub(crate) struct InFlight {
    gate: UploadGate,
}

impl UploadGate {
    /// From now on no request carrying blob bytes starts; those in flight finish.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    pub fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// How many requests carrying blob bytes are in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Returns once no request carrying blob bytes is in flight.
    pub async fn idle(&self) {
        loop {
            // Made before the check, so a request ending between the two still wakes it.
            let ended = self.inner.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            ended.await;
        }
    }

    /// A request about to carry blob bytes; `None` once a stop was asked for.
    pub(crate) fn enter(&self) -> Option<InFlight> {
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let entered = InFlight { gate: self.clone() };
        // Checked after counting: a stop between the two sees this request, or this sees it.
        (!self.stopping()).then_some(entered)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.gate.inner.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.gate.inner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::UploadGate;

    #[tokio::test]
    async fn a_stop_lets_requests_in_flight_end_and_starts_none() {
        let gate = UploadGate::default();
        let first = gate.enter().expect("not stopping yet");
        gate.stop();
        assert!(gate.enter().is_none(), "no request starts after a stop");
        assert_eq!(gate.in_flight(), 1);
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a request is still in flight");
        drop(first);
        waiting.await.unwrap();
        assert_eq!(gate.in_flight(), 0);
    }
}
