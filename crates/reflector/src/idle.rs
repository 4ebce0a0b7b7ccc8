//! A connection's idle timeout: it ends when neither a read nor a write has moved a byte for
//! a while, whichever is waiting. A read that waits while the answer streams out (a capture,
//! the events) is not idleness; a client that stops reading is, once the socket's buffers are
//! full and writes stop moving.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner`, ended with `TimedOut` once no byte has gone either way for `timeout`.
pub struct Idle<S> {
    inner: S,
    timeout: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<S> Idle<S> {
    /// Wraps `inner`; the clock starts now.
    pub fn new(inner: S, timeout: Duration) -> Self {
        let now = Instant::now();
        Idle { inner, timeout, last: now, timer: Box::pin(tokio::time::sleep_until(now + timeout)) }
    }

    fn moved(&mut self) {
        self.last = Instant::now();
    }

    /// For an operation that is waiting: an error once the connection has been idle too long,
    /// else pending with the timer set to wake the task when it would be.
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let deadline = self.last + self.timeout;
        if Instant::now() >= deadline {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle")));
        }
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        ready!(self.timer.as_mut().poll(cx));
        // The timer fired: idle for the whole timeout.
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle")))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.waiting(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(r) => {
                if r.as_ref().is_ok_and(|n| *n > 0) {
                    self.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.waiting(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => self.waiting(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap()
    }

    #[test]
    fn a_silent_connection_times_out() {
        runtime().block_on(async {
            let (a, _b) = tokio::io::duplex(64);
            let mut idle = Idle::new(a, Duration::from_secs(30));
            let started = Instant::now();
            let e = idle.read(&mut [0; 8]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert_eq!(started.elapsed().as_secs(), 30);
        });
    }

    #[test]
    fn writes_that_move_keep_a_waiting_read_alive() {
        runtime().block_on(async {
            let (a, mut b) = tokio::io::duplex(64);
            let idle = Idle::new(a, Duration::from_secs(30));
            let (mut r, mut w) = tokio::io::split(idle);
            let reader = tokio::spawn(async move { r.read(&mut [0; 8]).await });
            // A write every 10 s for 100 s, read by the peer: the waiting read lives on.
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(10)).await;
                w.write_all(b"x").await.unwrap();
                b.read_exact(&mut [0; 1]).await.unwrap();
            }
            assert!(!reader.is_finished());
            // Then nothing for 30 s: it ends.
            tokio::time::sleep(Duration::from_secs(31)).await;
            assert_eq!(reader.await.unwrap().unwrap_err().kind(), io::ErrorKind::TimedOut);
        });
    }

    #[test]
    fn a_peer_that_stops_reading_times_the_writer_out() {
        runtime().block_on(async {
            let (a, _b) = tokio::io::duplex(64);
            let mut idle = Idle::new(a, Duration::from_secs(30));
            let e = idle.write_all(&[0; 1024]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        });
    }
}
