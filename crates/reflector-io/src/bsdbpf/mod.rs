//! The `bpf` backend: macOS and FreeBSD reflect through a `/dev/bpf` device.
//!
//! Everything but the device itself is portable and tested on Linux against a simulated
//! device: the set-up sequence, the walk over a read buffer's `bpf_hdr` records (lengths
//! validated, a corrupt record counted and the rest of that buffer dropped, never read out of
//! bounds), and the write path (one `write()` per reflected frame). The device (`device.rs`)
//! is a thin layer of `open`, `ioctl`, `read` and `write` on the request numbers of
//! `ioctl.rs`. The filter is the same classic BPF program the AF_PACKET backend attaches.

pub use reflector_sys::bpf_device::{self as device, ioctl};

use std::io;
use std::time::Duration;

use reflector_bpf::cbpf::Insn;

use crate::backend::{Backend, BackendError, Batch, RxTime, Verdict};
use ioctl::RecordLayout;

/// What the set-up and the backend need from a `/dev/bpf` device.
pub trait BpfDevice: Send + 'static {
    /// An ioctl that takes a `u_int` and (for BIOCSBLEN) answers with one.
    fn ioctl_uint(&mut self, request: u64, value: u32) -> io::Result<u32>;
    /// An ioctl that reads a `u_int` (BIOCGDLT).
    fn get_uint(&mut self, request: u64) -> io::Result<u32>;
    /// BIOCSETIF.
    fn set_interface(&mut self, name: &str) -> io::Result<()>;
    /// BIOCSETF.
    fn set_filter(&mut self, program: &[Insn]) -> io::Result<()>;
    /// BIOCSRTIMEOUT.
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// One `read()`: a buffer of records, 0 at the read timeout.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// One `write()`: one frame.
    fn write(&mut self, frame: &[u8]) -> io::Result<usize>;
}

impl BpfDevice for device::Device {
    fn ioctl_uint(&mut self, request: u64, value: u32) -> io::Result<u32> {
        device::Device::ioctl_uint(self, request, value)
    }
    fn get_uint(&mut self, request: u64) -> io::Result<u32> {
        device::Device::get_uint(self, request)
    }
    fn set_interface(&mut self, name: &str) -> io::Result<()> {
        device::Device::set_interface(self, name)
    }
    fn set_filter(&mut self, program: &[Insn]) -> io::Result<()> {
        device::Device::set_filter(self, &crate::host::sock_filters(program))
    }
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        device::Device::set_read_timeout(self, timeout)
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        device::Device::read(self, buf)
    }
    fn write(&mut self, frame: &[u8]) -> io::Result<usize> {
        device::Device::write(self, frame)
    }
}

/// Buffer sizes tried, largest first.
pub const BUFFER_SIZES: [u32; 8] =
    [4 << 20, 2 << 20, 1 << 20, 512 << 10, 256 << 10, 128 << 10, 64 << 10, 32 << 10];
/// How long a read waits before the worker looks at its stop flag.
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// Why a device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No buffer size was accepted together with the interface.
    #[error("cannot attach /dev/bpf to {iface}: {source}")]
    Attach {
        /// The interface.
        iface: String,
        /// The last error.
        #[source]
        source: io::Error,
    },
    /// The interface is not Ethernet.
    #[error("{0} is not an Ethernet interface (link type {1}); the reflector needs Ethernet")]
    NotEthernet(String, u32),
    /// A set-up step failed.
    #[error("{0}: {1}")]
    Step(&'static str, #[source] io::Error),
}

/// Configures `dev` for reflecting on `iface` with `program`; returns the buffer size in use.
///
/// Order matters: the buffer size must be set before BIOCSETIF, which allocates the buffers,
/// so a size the kernel cannot allocate shows up there (ENOBUFS) and the next smaller size is
/// tried.
pub fn configure(dev: &mut impl BpfDevice, iface: &str, program: &[Insn]) -> Result<u32, SetupError> {
    let mut last = io::Error::from_raw_os_error(libc::ENOBUFS);
    let mut buffer = None;
    for size in BUFFER_SIZES {
        let accepted = match dev.ioctl_uint(ioctl::BIOCSBLEN, size) {
            Ok(a) => a,
            Err(e) => {
                last = e;
                continue;
            }
        };
        match dev.set_interface(iface) {
            Ok(()) => {
                buffer = Some(accepted);
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => last = e,
            Err(e) => return Err(SetupError::Attach { iface: iface.into(), source: e }),
        }
    }
    let buffer = buffer.ok_or(SetupError::Attach { iface: iface.into(), source: last })?;
    let dlt = dev.get_uint(ioctl::BIOCGDLT).map_err(|e| SetupError::Step("BIOCGDLT", e))?;
    if dlt != ioctl::DLT_EN10MB {
        return Err(SetupError::NotEthernet(iface.into(), dlt));
    }
    // Reads return as soon as a frame is there: no buffering delay on the latency path.
    dev.ioctl_uint(ioctl::BIOCIMMEDIATE, 1).map_err(|e| SetupError::Step("BIOCIMMEDIATE", e))?;
    // Written frames keep the source MAC we put in them (the reflection's).
    dev.ioctl_uint(ioctl::BIOCSHDRCMPLT, 1).map_err(|e| SetupError::Step("BIOCSHDRCMPLT", e))?;
    // Our own reflections must not be read back.
    dev.ioctl_uint(ioctl::BIOCSSEESENT, 0).map_err(|e| SetupError::Step("BIOCSSEESENT", e))?;
    dev.set_filter(program).map_err(|e| SetupError::Step("BIOCSETF", e))?;
    dev.set_read_timeout(READ_TIMEOUT).map_err(|e| SetupError::Step("BIOCSRTIMEOUT", e))?;
    Ok(buffer)
}

/// What one walk over a read buffer found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walk {
    /// Whole records handed on.
    pub frames: usize,
    /// Records the capture cut short (`caplen < datalen`): not reflected.
    pub truncated: usize,
    /// A record whose lengths do not fit the buffer: counted, and the rest of the buffer
    /// (which can no longer be found reliably) dropped.
    pub corrupt: usize,
}

/// Walks the `bpf_hdr` records in `buf` (as filled by one `read()`), calling `each` on every
/// whole frame, in place, with its receive time from the record's header (ns since the Unix
/// epoch).
pub fn walk_records(buf: &mut [u8], layout: RecordLayout, mut each: impl FnMut(&mut [u8], u64)) -> Walk {
    let mut walk = Walk::default();
    let mut at = 0;
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < layout.min_header {
            walk.corrupt += 1;
            break;
        }
        let caplen = u32_at(rest, layout.caplen);
        let datalen = u32_at(rest, layout.datalen);
        let hdrlen = u16::from_ne_bytes([rest[layout.hdrlen], rest[layout.hdrlen + 1]]) as usize;
        let end = hdrlen.checked_add(caplen);
        if hdrlen < layout.min_header || end.is_none_or(|e| e > rest.len()) {
            walk.corrupt += 1;
            break;
        }
        let end = end.unwrap_or(0);
        if caplen < datalen {
            walk.truncated += 1;
        } else {
            walk.frames += 1;
            let received = layout.timestamp_ns(&buf[at..at + layout.min_header]);
            each(&mut buf[at + hdrlen..at + end], received);
        }
        at += layout.word_align(end);
    }
    walk
}

/// The backend over one device: reads a buffer, reflects each frame in place, writes it back.
/// A short frame (one a short STAMP request's answer may outgrow) is judged in a copy with room
/// after it, since the records lie back to back in the read buffer.
#[derive(Debug)]
pub struct BpfBackend<D> {
    dev: D,
    buf: Vec<u8>,
    layout: RecordLayout,
    short: [u8; SHORT_ROOM],
}

/// Frames up to this long are judged in a copy with room (the longest short STAMP request's
/// answer: two VLAN tags, IPv6 with extension headers, UDP and the 41-byte packet, is shorter).
const SHORT_FRAME: usize = 256;
/// The copy's size: the frame and room for the answer.
const SHORT_ROOM: usize = SHORT_FRAME + 64;

impl<D: BpfDevice> BpfBackend<D> {
    /// A backend on a configured device with a read buffer of `buffer` bytes.
    pub fn new(dev: D, buffer: u32, layout: RecordLayout) -> Self {
        BpfBackend { dev, buf: vec![0; buffer as usize], layout, short: [0; SHORT_ROOM] }
    }
}

impl<D: BpfDevice> Backend for BpfBackend<D> {
    /// BIOCSETF replaces the device's filter.
    fn update_filter(&mut self, filter: &reflector_core::Filter) -> Result<(), BackendError> {
        let fail = |err| BackendError(reflector_sys::error::SysError { call: "BIOCSETF", err });
        let program = reflector_bpf::cbpf::program(filter)
            .ok_or_else(|| fail(io::Error::from_raw_os_error(libc::E2BIG)))?;
        self.dev.set_filter(&program).map_err(fail)
    }

    fn process<F: FnMut(&mut [u8], usize, RxTime) -> Verdict>(
        &mut self,
        _wait: Duration,
        mut handle: F,
    ) -> Result<Batch, BackendError> {
        // The device's own read timeout bounds the wait.
        let n = match self.dev.read(&mut self.buf) {
            Ok(n) => n,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN)) => 0,
            Err(e) => {
                return Err(BackendError(reflector_sys::error::SysError { call: "read(/dev/bpf)", err: e }));
            }
        };
        let mut batch = Batch::default();
        let n = n.min(self.buf.len());
        let (dev, buf, short) = (&mut self.dev, &mut self.buf[..n], &mut self.short);
        let walk = walk_records(buf, self.layout, |frame, received| {
            let len = frame.len();
            let room: &mut [u8] = if len <= SHORT_FRAME {
                short[..len].copy_from_slice(frame);
                short
            } else {
                frame
            };
            if let Ok(hit) = handle(room, len, RxTime::Utc(received)) {
                let answer = &room[..hit.answer_len(len)];
                if dev.write(answer).map_or(true, |w| w != answer.len()) {
                    batch.tx_error_packets += 1;
                    batch.tx_error_bytes += answer.len() as u64;
                }
            }
        });
        batch.received = walk.frames;
        batch.rx_invalid = (walk.truncated + walk.corrupt) as u64;
        Ok(batch)
    }
}

/// The bpf data path: the first free `/dev/bpf` device (one worker), behind the classic BPF
/// pre-filter of `filter`.
pub fn open(
    settings: &crate::datapath::contract::Settings,
    iface: crate::datapath::contract::Iface<'_>,
    filter: &reflector_core::Filter,
) -> anyhow::Result<crate::datapath::contract::Opening<Vec<BpfBackend<device::Device>>>> {
    use anyhow::Context as _;

    use crate::datapath::contract::{Backend, BackendInfo, Choice, Opening, Unusable};
    let program =
        reflector_bpf::cbpf::program(filter).context("the kernel filter does not fit in classic BPF")?;
    if settings.workers.is_some_and(|w| w > 1) {
        return Err(Unusable("the bpf backend runs one worker (drop --workers)".into()).into());
    }
    let mut dev = device::Device::open_first()?;
    let buffer = configure(&mut dev, iface.name, &program)?;
    let mut info = BackendInfo::new(Backend::Bpf, Choice::Asked);
    info.kernel_filter_instructions = Some(program.len());
    info.device = Some(dev.path.clone());
    info.buffer_bytes = Some(buffer);
    Ok(Opening { workers: vec![BpfBackend::new(dev, buffer, ioctl::NATIVE)], kernel: None, info })
}

/// Whether bpf runs here: a device opened and set up on the interface (and closed).
pub fn probe(iface: crate::datapath::contract::Iface<'_>) -> crate::datapath::contract::Verdict {
    use crate::datapath::contract::Verdict;
    if cfg!(target_os = "linux") {
        return Verdict { runs: false, why: "the bpf backend is for macOS and FreeBSD".into() };
    }
    let program = reflector_core::Filter::new(&reflector_core::FilterConfig::new(iface.info.mac))
        .ok()
        .and_then(|f| reflector_bpf::cbpf::program(&f))
        .unwrap_or_default();
    let tried = device::Device::open_first().map_err(|e| e.to_string()).and_then(|mut dev| {
        configure(&mut dev, iface.name, &program).map(|b| (dev.path, b)).map_err(|e| e.to_string())
    });
    match tried {
        Ok((path, buffer)) => {
            Verdict { runs: true, why: format!("{path} opens and attaches (buffer {} KiB)", buffer / 1024) }
        }
        Err(why) => Verdict { runs: false, why },
    }
}

/// Whether a `/dev/bpf` device opens here (and closes): what the bpf data path needs before an
/// interface is named.
#[cfg(not(target_os = "linux"))]
pub fn probe_device() -> crate::datapath::contract::Verdict {
    use crate::datapath::contract::Verdict;
    match device::Device::open_first() {
        Ok(dev) => Verdict { runs: true, why: format!("{} opens (give an interface to try it)", dev.path) },
        Err(e) => Verdict { runs: false, why: e.to_string() },
    }
}

#[cfg(test)]
mod tests;
