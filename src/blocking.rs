//! Blocking work (file writes, fsync, sled, decompression, the tar writer) runs on tokio's
//! blocking threads, never on the async workers that drive the downloads; [`Reader`] makes a
//! std reader (a parts set read as one tar) an async one the same way; [`pipe`] hands a tar
//! written on one thread to a loader reading on another.

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

/// An async reader over a std one: each read (a MiB) runs on a blocking thread, and the next
/// one starts as soon as the last is handed out, so the reading (and whatever the std reader
/// does per byte, such as hashing a part) goes on while the caller works on what it got.
pub struct Reader<R> {
    /// The std reader, when no read is in flight.
    idle: Option<R>,
    reading: Option<tokio::task::JoinHandle<ReadDone<R>>>,
    /// Bytes read and not yet handed out: `buffer[start..end]`.
    ready: Option<(Vec<u8>, usize, usize)>,
    spare: Vec<Vec<u8>>,
    /// The std reader said end of input, or failed (the error is handed out after the bytes
    /// read before it).
    ended: Option<io::Result<()>>,
}

const READ_BYTES: usize = 1 << 20;

/// What one read on the blocking thread gives back: the reader, the buffer, and how it went.
type ReadDone<R> = (R, Vec<u8>, io::Result<usize>);

impl<R: Read + Send + 'static> Reader<R> {
    pub fn new(reader: R) -> Reader<R> {
        Reader {
            idle: Some(reader),
            reading: None,
            ready: None,
            spare: Vec::new(),
            ended: None,
        }
    }

    /// Starts the next read, when the reader is idle and the input has not ended.
    fn read_ahead(&mut self) {
        if self.ended.is_some() {
            return;
        }
        let Some(mut reader) = self.idle.take() else {
            return;
        };
        let mut buffer = self.spare.pop().unwrap_or_else(|| vec![0u8; READ_BYTES]);
        self.reading = Some(tokio::task::spawn_blocking(move || {
            let read = reader.read(&mut buffer);
            (reader, buffer, read)
        }));
    }
}

impl<R: Read + Send + Unpin + 'static> AsyncRead for Reader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some((buffer, start, end)) = &mut this.ready {
                let n = (*end - *start).min(out.remaining());
                out.put_slice(&buffer[*start..*start + n]);
                *start += n;
                if *start == *end {
                    let (buffer, ..) = this.ready.take().expect("ready");
                    this.spare.push(buffer);
                }
                this.read_ahead();
                return Poll::Ready(Ok(()));
            }
            if this.reading.is_none() {
                match this.ended.take() {
                    // End of input: no bytes, and no more reads.
                    Some(Ok(())) => {
                        this.ended = Some(Ok(()));
                        return Poll::Ready(Ok(()));
                    }
                    Some(Err(e)) => return Poll::Ready(Err(e)),
                    None => this.read_ahead(),
                }
            }
            let task = this.reading.as_mut().expect("a read is in flight");
            let (reader, buffer, read) = match Pin::new(task).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(done)) => done,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            };
            this.reading = None;
            this.idle = Some(reader);
            match read {
                Ok(0) => {
                    this.spare.push(buffer);
                    this.ended = Some(Ok(()));
                }
                Ok(end) => {
                    this.ready = Some((buffer, 0, end));
                    this.read_ahead();
                }
                Err(e) => {
                    this.spare.push(buffer);
                    this.ended = Some(Err(e));
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

        // An error comes after the bytes read before it, and then again.
        struct Failing(usize);
        impl std::io::Read for Failing {
            fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("part 2 is damaged"));
                }
                let n = self.0.min(buffer.len());
                buffer[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut reader = super::Reader::new(Failing(3 << 20));
        let mut out = Vec::new();
        let error = reader.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(out.len(), 3 << 20);
        assert!(error.to_string().contains("damaged"), "{error}");
    }
}

/// A pipe between two threads whose writer can fail it: the reader then gets the error, not
/// an early end (a loader must never take a cut tar for a whole one). At most a few chunks
/// are in flight, so memory stays bounded.
pub fn pipe() -> (PipeWriter, PipeReader) {
    let (sender, receiver) = std::sync::mpsc::sync_channel(4);
    (
        PipeWriter {
            sender,
            buffer: Vec::with_capacity(PIPE_CHUNK),
        },
        PipeReader {
            receiver,
            chunk: Vec::new(),
            at: 0,
        },
    )
}

const PIPE_CHUNK: usize = 1 << 20;

pub struct PipeWriter {
    sender: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
    buffer: Vec<u8>,
}

impl PipeWriter {
    /// Ends the stream with `error` (what was written before it is delivered first).
    pub fn fail(mut self, error: io::Error) {
        let _ = io::Write::flush(&mut self);
        let _ = self.sender.send(Err(error));
    }

    /// Ends the stream well.
    pub fn finish(mut self) -> io::Result<()> {
        io::Write::flush(&mut self)?;
        let _ = self.sender.send(Ok(Vec::new()));
        Ok(())
    }
}

impl io::Write for PipeWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let take = bytes.len().min(PIPE_CHUNK - self.buffer.len());
        self.buffer.extend_from_slice(&bytes[..take]);
        if self.buffer.len() == PIPE_CHUNK {
            self.flush()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(PIPE_CHUNK));
        self.sender
            .send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader has gone"))
    }
}

pub struct PipeReader {
    receiver: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.receiver.recv() {
                // An empty chunk is the writer's `finish`.
                Ok(Ok(chunk)) if chunk.is_empty() => return Ok(0),
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the tar's writer stopped before its end",
                    ));
                }
            }
        }
        let take = out.len().min(self.chunk.len() - self.at);
        out[..take].copy_from_slice(&self.chunk[self.at..self.at + take]);
        self.at += take;
        Ok(take)
    }
}

#[cfg(test)]
mod pipe_tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_failed_writer_is_an_error_at_the_reader_not_an_end() {
        let (mut writer, mut reader) = pipe();
        let thread = std::thread::spawn(move || {
            writer.write_all(&[7u8; 3 << 20]).unwrap();
            writer.fail(io::Error::other("disk gone"));
        });
        let mut got = Vec::new();
        let error = reader.read_to_end(&mut got).unwrap_err();
        thread.join().unwrap();
        assert_eq!(got.len(), 3 << 20);
        assert!(error.to_string().contains("disk gone"));

        // A writer dropped without finishing is not an end either.
        let (mut writer, mut reader) = pipe();
        writer.write_all(b"abc").unwrap();
        drop(writer);
        assert!(reader.read_to_end(&mut Vec::new()).is_err());

        let (mut writer, mut reader) = pipe();
        writer.write_all(b"abc").unwrap();
        writer.finish().unwrap();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"abc");
    }
}
