//! The `bpf` backend against a simulated device: set-up sequence, record walking, writes.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use reflector_bpf::cbpf::Insn;
use reflector_testkit::{Frame, corpus, default_filter};

use super::ioctl::{self, RecordLayout};
use super::*;
use reflector_core::testing::verdict;

/// A device that records what it is told and plays back read buffers.
#[derive(Debug, Default)]
struct SimDevice {
    calls: Vec<String>,
    /// Largest buffer BIOCSETIF can allocate.
    max_buffer: u32,
    buffer: u32,
    link_type: u32,
    reads: VecDeque<Vec<u8>>,
    written: Vec<Vec<u8>>,
    fail_writes: bool,
}

impl BpfDevice for SimDevice {
    fn ioctl_uint(&mut self, request: u64, value: u32) -> io::Result<u32> {
        self.calls.push(format!("{request:#x}={value}"));
        if request == ioctl::BIOCSBLEN {
            // Like the kernels: clamp to the system maximum and answer with what was taken.
            self.buffer = value.min(2 << 20);
            return Ok(self.buffer);
        }
        Ok(value)
    }
    fn get_uint(&mut self, request: u64) -> io::Result<u32> {
        self.calls.push(format!("{request:#x}?"));
        Ok(self.link_type)
    }
    fn set_interface(&mut self, name: &str) -> io::Result<()> {
        self.calls.push(format!("setif {name}"));
        if self.buffer > self.max_buffer {
            return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
        }
        if name == "nosuch0" {
            return Err(io::Error::from_raw_os_error(libc::ENXIO));
        }
        Ok(())
    }
    fn set_filter(&mut self, program: &[Insn]) -> io::Result<()> {
        self.calls.push(format!("setf {}", program.len()));
        Ok(())
    }
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.calls.push(format!("timeout {}ms", timeout.as_millis()));
        Ok(())
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(next) = self.reads.pop_front() else { return Ok(0) };
        buf[..next.len()].copy_from_slice(&next);
        Ok(next.len())
    }
    fn write(&mut self, frame: &[u8]) -> io::Result<usize> {
        if self.fail_writes {
            return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
        }
        self.written.push(frame.to_vec());
        Ok(frame.len())
    }
}

/// One record as the kernel lays it out: header (`hdrlen` bytes), data, padding to alignment.
fn record(layout: RecordLayout, data: &[u8], datalen: usize, hdrlen: usize) -> Vec<u8> {
    let mut r = vec![0u8; hdrlen];
    // Received at 1 796 083 200 s + (the data's length) µs.
    let w = layout.tstamp_field;
    r[..w].copy_from_slice(&1_796_083_200u64.to_ne_bytes()[..w]);
    r[w..2 * w].copy_from_slice(&(data.len() as u64).to_ne_bytes()[..w]);
    r[layout.caplen..layout.caplen + 4].copy_from_slice(&(data.len() as u32).to_ne_bytes());
    r[layout.datalen..layout.datalen + 4].copy_from_slice(&(datalen as u32).to_ne_bytes());
    r[layout.hdrlen..layout.hdrlen + 2].copy_from_slice(&(hdrlen as u16).to_ne_bytes());
    r.extend_from_slice(data);
    r.resize(layout.word_align(r.len()), 0);
    r
}

#[test]
fn setup_steps_down_the_buffer_until_the_interface_attaches() {
    let mut dev = SimDevice { max_buffer: 512 << 10, link_type: ioctl::DLT_EN10MB, ..SimDevice::default() };
    let program = reflector_bpf::cbpf::program(&default_filter()).unwrap();
    let buffer = configure(&mut dev, "en0", &program).unwrap();
    assert_eq!(buffer, 512 << 10);
    let blen = format!("{:#x}", ioctl::BIOCSBLEN);
    assert_eq!(
        dev.calls,
        vec![
            format!("{blen}={}", 4 << 20),
            "setif en0".into(),
            format!("{blen}={}", 2 << 20),
            "setif en0".into(),
            format!("{blen}={}", 1 << 20),
            "setif en0".into(),
            format!("{blen}={}", 512 << 10),
            "setif en0".into(),
            format!("{:#x}?", ioctl::BIOCGDLT),
            format!("{:#x}=1", ioctl::BIOCIMMEDIATE),
            format!("{:#x}=1", ioctl::BIOCSHDRCMPLT),
            format!("{:#x}=0", ioctl::BIOCSSEESENT),
            format!("setf {}", program.len()),
            "timeout 100ms".into(),
        ]
    );
}

#[test]
fn setup_errors() {
    let program = [Insn { code: 6, jt: 0, jf: 0, k: 0 }];
    let mut dev = SimDevice { max_buffer: 1 << 30, link_type: 127, ..SimDevice::default() };
    assert!(matches!(configure(&mut dev, "wlan0", &program), Err(SetupError::NotEthernet(_, 127))));
    let mut dev = SimDevice { max_buffer: 1 << 30, link_type: 1, ..SimDevice::default() };
    let err = configure(&mut dev, "nosuch0", &program).unwrap_err();
    assert!(err.to_string().starts_with("cannot attach /dev/bpf to nosuch0"), "{err}");
    let mut dev = SimDevice { max_buffer: 1024, link_type: 1, ..SimDevice::default() };
    assert!(matches!(configure(&mut dev, "en0", &program), Err(SetupError::Attach { .. })));
}

#[test]
fn records_are_walked_in_both_layouts() {
    for layout in [RecordLayout::MACOS, RecordLayout::FREEBSD_64] {
        let hdr = layout.word_align(layout.min_header);
        let frames: Vec<Vec<u8>> = vec![vec![1; 60], vec![2; 61], vec![3; 1514], vec![4; 63]];
        let mut buf = Vec::new();
        for f in &frames {
            buf.extend(record(layout, f, f.len(), hdr));
        }
        // A record the capture cut short, then one with a longer header (as on some kernels).
        buf.extend(record(layout, &[5; 40], 100, hdr));
        buf.extend(record(layout, &[6; 70], 70, hdr + 8));
        let mut seen = Vec::new();
        let mut times = Vec::new();
        let walk = walk_records(&mut buf, layout, |f, t| {
            seen.push(f.to_vec());
            times.push(t);
        });
        assert_eq!(walk, Walk { frames: 5, truncated: 1, corrupt: 0 }, "{layout:?}");
        // The header's receive time goes with each frame (seconds and microseconds).
        assert_eq!(times[0], 1_796_083_200_000_000_000 + 60_000, "{layout:?}");
        assert_eq!(times[2], 1_796_083_200_000_000_000 + 1_514_000, "{layout:?}");
        assert_eq!(&seen[..4], &frames[..]);
        assert_eq!(seen[4], vec![6; 70]);
    }
}

#[test]
fn corrupt_records_are_counted_and_never_read_out_of_bounds() {
    let layout = RecordLayout::MACOS;
    let good = record(layout, &[7; 60], 60, 20);
    // caplen beyond the buffer.
    let mut long = good.clone();
    long[8..12].copy_from_slice(&10_000u32.to_ne_bytes());
    // hdrlen below the header's own size.
    let mut short_hdr = good.clone();
    short_hdr[16..18].copy_from_slice(&4u16.to_ne_bytes());
    // hdrlen + caplen overflowing.
    let mut huge = good.clone();
    huge[8..12].copy_from_slice(&u32::MAX.to_ne_bytes());
    for (name, bad) in [("caplen", long), ("hdrlen", short_hdr), ("overflow", huge)] {
        let mut buf = good.clone();
        buf.extend(bad);
        buf.extend(good.clone()); // unreachable once the walk stops
        let mut n = 0;
        let walk = walk_records(&mut buf, layout, |_, _| n += 1);
        assert_eq!((walk.frames, walk.corrupt), (1, 1), "{name}");
    }
    // A buffer ending inside a header: the tail is corrupt, what came before is fine.
    let mut buf = good.clone();
    buf.extend(&good[..10]);
    assert_eq!(walk_records(&mut buf, layout, |_, _| {}), Walk { frames: 1, truncated: 0, corrupt: 1 });
    // Any prefix and any single corrupted byte: no panic, never more frames than records.
    let mut three = good.clone();
    three.extend(good.clone());
    three.extend(good.clone());
    for cut in 0..three.len() {
        let mut b = three[..cut].to_vec();
        assert!(walk_records(&mut b, layout, |_, _| {}).frames <= 3);
    }
    for at in 0..three.len() {
        for v in [0u8, 0x7f, 0xff] {
            let mut b = three.clone();
            b[at] = v;
            assert!(walk_records(&mut b, layout, |_, _| {}).frames <= 3);
        }
    }
}

#[test]
fn the_backend_reflects_in_place_and_writes_each_frame() {
    let layout = RecordLayout::MACOS;
    let cases: Vec<_> = corpus().into_iter().filter(|c| c.filter == default_filter()).collect();
    let mut buf = Vec::new();
    for c in &cases {
        buf.extend(record(layout, &c.bytes, c.bytes.len(), 20));
    }
    buf.extend(record(layout, &Frame::ito_v4().bytes()[..30], 60, 20)); // cut short
    let dev = SimDevice { reads: VecDeque::from([buf]), ..SimDevice::default() };
    let mut backend = BpfBackend::new(dev, 1 << 20, layout);
    let filter = default_filter();
    let mut counters = reflector_core::Counters::default();
    let batch = backend
        .process(Duration::ZERO, |b, len, _| {
            let v = reflector_core::testing::process(&filter, &mut b[..len]);
            counters.record(len, &v);
            v
        })
        .unwrap();
    let hits: Vec<_> = cases.iter().filter(|c| c.expect.is_ok()).collect();
    assert_eq!(batch.received, cases.len());
    assert_eq!(batch.rx_invalid, 1);
    assert_eq!(counters.reflected_packets as usize, hits.len());
    let want: Vec<Vec<u8>> =
        hits.iter().map(|c| c.frame.as_ref().unwrap().reflected(reflector_core::Mode::All).bytes()).collect();
    assert_eq!(backend.dev.written, want);
    // A read timeout returns an empty batch.
    assert_eq!(backend.process(Duration::ZERO, |_, _, _| verdict(true)).unwrap(), Batch::default());
    // Failed writes are TX errors.
    let frame = Frame::ito_v4().bytes();
    backend.dev.reads.push_back(record(layout, &frame, frame.len(), 20));
    backend.dev.fail_writes = true;
    let batch = backend
        .process(Duration::ZERO, |b, len, _| reflector_core::testing::process(&filter, &mut b[..len]))
        .unwrap();
    assert_eq!((batch.tx_error_packets, batch.tx_error_bytes), (1, frame.len() as u64));
}

#[test]
fn the_real_device_open_reports_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    assert!(matches!(device::Device::open_first_in(path), Err(device::OpenError::NoDevice)));
    // A plain file stands in for a device node: it opens, and an ioctl on it fails cleanly.
    std::fs::write(dir.path().join("bpf0"), b"").unwrap();
    let mut dev = device::Device::open_first_in(path).unwrap();
    assert!(dev.path.ends_with("/bpf0"));
    assert!(dev.get_uint(ioctl::BIOCGDLT).is_err());
    assert!(dev.set_interface("this-is-far-too-long").is_err());
    #[cfg(target_os = "linux")]
    assert!(matches!(device::Device::open_first(), Err(device::OpenError::NoDevice)));
}

/// A short TWAMP-Light request's answer is longer than the request: the backend answers it in a
/// copy with room (the records lie back to back in the read buffer) and writes the 41-byte
/// reflector packet, as the core answers it with room.
#[test]
fn a_short_stamp_request_is_answered_longer_from_a_copy_with_room() {
    let layout = RecordLayout::MACOS;
    let request = Frame::stamp_v4(14).bytes();
    let ito = Frame::ito_v4().bytes();
    let mut buf = record(layout, &request, request.len(), 20);
    buf.extend(record(layout, &ito, ito.len(), 20));
    let dev = SimDevice { reads: VecDeque::from([buf]), ..SimDevice::default() };
    let mut backend = BpfBackend::new(dev, 1 << 20, layout);
    let filter = reflector_testkit::stamp_filter();
    let batch = backend
        .process(Duration::ZERO, |b, len, _| {
            reflector_core::testing::with_stamping(|state| filter.process_in(b, len, state))
        })
        .unwrap();
    assert_eq!((batch.received, batch.tx_error_packets), (2, 0));
    let written = &backend.dev.written;
    assert_eq!(written.len(), 2);
    assert_eq!(written[0].len(), 14 + 20 + 8 + 41, "the 41-byte reflector packet");
    assert_eq!(written[0][42 + 24..42 + 38], request[42..56], "the sender's fields");
    // The frame after it, in place as before.
    assert_eq!(written[1], Frame::ito_v4().reflected(reflector_core::Mode::All).bytes());
}
