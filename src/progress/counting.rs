//! A reader that tells how many bytes went through it: the progress of a step that reads a
//! whole file (`haul load` checking a bundle, then sending it into the engine).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Wraps a reader (std or tokio) and calls `on_read` with the size of every read.
pub struct Counting<R, F> {
    inner: R,
    on_read: F,
}

impl<R, F: FnMut(u64)> Counting<R, F> {
    pub fn new(inner: R, on_read: F) -> Counting<R, F> {
        Counting { inner, on_read }
    }
}

impl<R: std::io::Read, F: FnMut(u64)> std::io::Read for Counting<R, F> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        (self.on_read)(read as u64);
        Ok(read)
    }
}

impl<R: AsyncRead + Unpin, F: FnMut(u64) + Unpin> AsyncRead for Counting<R, F> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buffer.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buffer);
        if let Poll::Ready(Ok(())) = polled {
            (this.on_read)((buffer.filled().len() - before) as u64);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::Counting;

    #[tokio::test]
    async fn counts_what_both_kinds_of_read_read() {
        let mut counted = 0;
        let mut reader = Counting::new(&b"0123456789"[..], |n| counted += n);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
        assert_eq!((out.len(), counted), (10, 10));

        let mut counted = 0;
        let mut reader = Counting::new(&b"01234"[..], |n| counted += n);
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut out)
            .await
            .unwrap();
        assert_eq!((out.len(), counted), (5, 5));
    }
}
