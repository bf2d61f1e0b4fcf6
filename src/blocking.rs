//! Blocking work (file writes, fsync, sled, decompression, the tar writer) runs on tokio's
//! blocking threads, never on the async workers that drive the downloads; [`Reader`] makes a
//! std reader (a parts set read as one tar) an async one the same way.

use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

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

/// An async reader over a std one: each read runs on a blocking thread, a MiB at a time.
pub struct Reader<R> {
    state: State<R>,
}

enum State<R> {
    Idle(Option<(R, Vec<u8>)>),
    Reading(tokio::task::JoinHandle<(R, Vec<u8>, io::Result<usize>)>),
    /// Bytes read and not yet handed out: `buffer[start..end]`.
    Ready {
        reader: R,
        buffer: Vec<u8>,
        start: usize,
        end: usize,
    },
}

impl<R: Read + Send + 'static> Reader<R> {
    pub fn new(reader: R) -> Reader<R> {
        Reader {
            state: State::Idle(Some((reader, vec![0u8; 1 << 20]))),
        }
    }
}

impl<R: Read + Send + Unpin + 'static> AsyncRead for Reader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Ready {
                    buffer, start, end, ..
                } => {
                    let n = (*end - *start).min(out.remaining());
                    out.put_slice(&buffer[*start..*start + n]);
                    *start += n;
                    if *start == *end
                        && let State::Ready { reader, buffer, .. } =
                            std::mem::replace(&mut self.state, State::Idle(None))
                    {
                        self.state = State::Idle(Some((reader, buffer)));
                    }
                    return Poll::Ready(Ok(()));
                }
                State::Idle(idle) => {
                    let (mut reader, mut buffer) = idle.take().expect("the reader is idle");
                    self.state = State::Reading(tokio::task::spawn_blocking(move || {
                        let read = reader.read(&mut buffer);
                        (reader, buffer, read)
                    }));
                }
                State::Reading(task) => {
                    let (reader, buffer, read) = match Pin::new(task).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(done)) => done,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                    };
                    match read {
                        Ok(0) => {
                            self.state = State::Idle(Some((reader, buffer)));
                            return Poll::Ready(Ok(()));
                        }
                        Ok(end) => {
                            self.state = State::Ready {
                                reader,
                                buffer,
                                start: 0,
                                end,
                            }
                        }
                        Err(e) => {
                            self.state = State::Idle(Some((reader, buffer)));
                            return Poll::Ready(Err(e));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_std_reader_reads_as_an_async_one() {
        use tokio::io::AsyncReadExt;
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let mut reader = super::Reader::new(std::io::Cursor::new(bytes.clone()));
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, bytes);
    }
}
