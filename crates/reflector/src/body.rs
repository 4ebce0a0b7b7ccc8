//! A streamed HTTP response body (server-sent events, capture streams), below both the server
//! and the capture that feed it.

use bytes::Bytes;

/// What a metered body calls with the bytes of each piece the client takes.
type Meter = Box<dyn Fn(usize) + Send + Sync>;

/// A response body fed from a channel: the stream ends when the sender is dropped. A metered
/// one (a capture stream) hands back the bytes of each piece as the client takes it, and of
/// what is left when the client goes away.
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    meter: Option<Meter>,
}

impl ChannelBody {
    /// The body of what `rx` receives.
    pub fn new(rx: tokio::sync::mpsc::Receiver<Bytes>) -> ChannelBody {
        ChannelBody { rx, meter: None }
    }

    /// The same, with the bytes it takes given back to `meter`.
    pub fn metered(
        rx: tokio::sync::mpsc::Receiver<Bytes>,
        meter: impl Fn(usize) + Send + Sync + 'static,
    ) -> ChannelBody {
        ChannelBody { rx, meter: Some(Box::new(meter)) }
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let polled = self.rx.poll_recv(cx);
        if let (std::task::Poll::Ready(Some(b)), Some(meter)) = (&polled, &self.meter) {
            meter(b.len());
        }
        polled.map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

impl Drop for ChannelBody {
    fn drop(&mut self) {
        if let Some(meter) = &self.meter {
            // Nothing more comes in once closed; what waited is given back.
            self.rx.close();
            while let Ok(b) = self.rx.try_recv() {
                meter(b.len());
            }
        }
    }
}
