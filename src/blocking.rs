//! Blocking work (file writes, fsync, sled, decompression, the tar writer) runs on tokio's
//! blocking threads, never on the async workers that drive the downloads.

/// Runs `work` on a blocking thread and returns its result. A panic there is a bug: it is
/// carried on into the caller, as if the work had run inline.
pub async fn run<T, F>(work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Only a runtime shutting down cancels blocking tasks; the process is ending.
        Err(error) => panic!("a blocking task was cancelled: {error}"),
    }
}
