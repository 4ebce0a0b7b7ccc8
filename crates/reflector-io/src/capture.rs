//! Reading pcap / pcapng captures and writing pcap, strictly: a malformed file is an error
//! naming the byte offset, never a panic or a silently shortened result.

use std::io::{self, Read, Write};

/// Ethernet link type (LINKTYPE_ETHERNET).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest record accepted (the largest snap length tcpdump and Wireshark use).
pub const MAX_RECORD_LEN: u32 = 262_144;

const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
/// Largest pcapng block accepted (a record plus generous room for options).
const MAX_BLOCK_LEN: u32 = MAX_RECORD_LEN + 65_536;

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The underlying read failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with a pcap or pcapng magic number.
    #[error("not a pcap or pcapng capture (unknown magic number {0:#010x})")]
    NotACapture(u32),
    /// The file ends in the middle of a header or record.
    #[error("capture truncated at byte {0}")]
    Truncated(u64),
    /// A header or record is inconsistent.
    #[error("corrupt capture at byte {offset}: {what}")]
    Corrupt {
        /// Where the bad header or record starts.
        offset: u64,
        /// What is wrong with it.
        what: &'static str,
    },
    /// The capture's link type is not Ethernet.
    #[error("unsupported link type {0} (only Ethernet, link type 1, can be replayed)")]
    LinkType(u32),
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Capture time in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Length of the frame on the wire (may exceed `data.len()` when the capture cut it).
    pub orig_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

enum Format {
    Pcap { big_endian: bool, nanos: bool },
    PcapNg { big_endian: bool, interfaces: Vec<Interface> },
}

#[derive(Clone, Copy)]
struct Interface {
    /// Timestamp units per second.
    units_per_sec: u64,
}

/// Reads Ethernet frames from a pcap or pcapng stream.
pub struct CaptureReader<R> {
    input: R,
    offset: u64,
    format: Format,
}

impl<R> std::fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader").field("offset", &self.offset).finish_non_exhaustive()
    }
}

fn u32_at(b: &[u8], at: usize, big_endian: bool) -> u32 {
    let bytes = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big_endian { u32::from_be_bytes(bytes) } else { u32::from_le_bytes(bytes) }
}

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> u16 {
    let bytes = [b[at], b[at + 1]];
    if big_endian { u16::from_be_bytes(bytes) } else { u16::from_le_bytes(bytes) }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header and checks the link type.
    pub fn new(mut input: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 4];
        read_full(&mut input, &mut magic, 0)?;
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        let mut reader =
            CaptureReader { input, offset: 4, format: Format::Pcap { big_endian: false, nanos: false } };
        // The section header's type reads the same in both byte orders.
        if le == PCAPNG_SHB {
            let mut length = [0u8; 4];
            reader.read(&mut length)?;
            reader.section_header(0, length)?;
            return Ok(reader);
        }
        let (big_endian, nanos) = match (le, be) {
            (PCAP_MAGIC_MICROS, _) => (false, false),
            (PCAP_MAGIC_NANOS, _) => (false, true),
            (_, PCAP_MAGIC_MICROS) => (true, false),
            (_, PCAP_MAGIC_NANOS) => (true, true),
            _ => return Err(CaptureError::NotACapture(be)),
        };
        let mut header = [0u8; 20];
        reader.read(&mut header)?;
        // FCS flags live in the top bits of the link-type field (pcap spec §4); a capture with
        // the FCS appended would reflect the FCS as payload, so only a clean link type is taken.
        let link_type = u32_at(&header, 16, big_endian);
        if link_type != LINKTYPE_ETHERNET {
            return Err(CaptureError::LinkType(link_type));
        }
        reader.format = Format::Pcap { big_endian, nanos };
        Ok(reader)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), CaptureError> {
        read_full(&mut self.input, buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Reads a section header block whose type and length fields (`length`, in the byte
    /// order still to be learnt from the magic that follows) were just read.
    fn section_header(&mut self, start: u64, length: [u8; 4]) -> Result<(), CaptureError> {
        let mut magic = [0u8; 4];
        self.read(&mut magic)?;
        let big_endian = match u32::from_le_bytes(magic) {
            PCAPNG_BYTE_ORDER_MAGIC => false,
            m if m.swap_bytes() == PCAPNG_BYTE_ORDER_MAGIC => true,
            _ => {
                return Err(CaptureError::Corrupt { offset: start, what: "bad byte-order magic" });
            }
        };
        let total = u32_at(&length, 0, big_endian);
        if !(28..=MAX_BLOCK_LEN).contains(&total) || !total.is_multiple_of(4) {
            return Err(CaptureError::Corrupt { offset: start, what: "bad section header length" });
        }
        let mut rest = vec![0u8; total as usize - 12];
        self.read(&mut rest)?;
        check_trailer(&rest, total, big_endian, start)?;
        // A new section starts a new list of interfaces.
        self.format = Format::PcapNg { big_endian, interfaces: Vec::new() };
        Ok(())
    }

    /// The next record, `None` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        match self.format {
            Format::Pcap { big_endian, nanos } => self.next_pcap(big_endian, nanos),
            Format::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn at_eof(&mut self, first: &mut [u8]) -> Result<bool, CaptureError> {
        // Distinguishes a clean end (no byte) from a cut record (some bytes).
        let mut got = 0;
        while got < first.len() {
            match self.input.read(&mut first[got..]) {
                Ok(0) if got == 0 => return Ok(true),
                Ok(0) => return Err(CaptureError::Truncated(self.offset + got as u64)),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += got as u64;
        Ok(false)
    }

    fn next_pcap(&mut self, big_endian: bool, nanos: bool) -> Result<Option<Record>, CaptureError> {
        let start = self.offset;
        let mut header = [0u8; 16];
        if self.at_eof(&mut header)? {
            return Ok(None);
        }
        let secs = u32_at(&header, 0, big_endian) as u64;
        let frac = u32_at(&header, 4, big_endian) as u64;
        let incl = u32_at(&header, 8, big_endian);
        let orig = u32_at(&header, 12, big_endian);
        if incl > MAX_RECORD_LEN {
            return Err(CaptureError::Corrupt { offset: start, what: "record longer than 262144 bytes" });
        }
        if (nanos && frac >= 1_000_000_000) || (!nanos && frac >= 1_000_000) {
            return Err(CaptureError::Corrupt { offset: start, what: "sub-second timestamp out of range" });
        }
        let mut data = vec![0u8; incl as usize];
        self.read(&mut data)?;
        let timestamp_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Ok(Some(Record { timestamp_ns, orig_len: orig.max(incl), data }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Record>, CaptureError> {
        loop {
            let start = self.offset;
            let mut head = [0u8; 8];
            if self.at_eof(&mut head)? {
                return Ok(None);
            }
            let Format::PcapNg { big_endian, .. } = self.format else { unreachable!() };
            let block_type = u32_at(&head, 0, big_endian);
            if block_type == PCAPNG_SHB {
                self.section_header(start, [head[4], head[5], head[6], head[7]])?;
                continue;
            }
            let total = u32_at(&head, 4, big_endian);
            if !(12..=MAX_BLOCK_LEN).contains(&total) || !total.is_multiple_of(4) {
                return Err(CaptureError::Corrupt { offset: start, what: "bad block length" });
            }
            let mut body = vec![0u8; total as usize - 8];
            self.read(&mut body)?;
            check_trailer(&body, total, big_endian, start)?;
            let body = &body[..body.len() - 4];
            let Format::PcapNg { interfaces, .. } = &mut self.format else { unreachable!() };
            match block_type {
                PCAPNG_IDB => {
                    if body.len() < 8 {
                        return Err(CaptureError::Corrupt { offset: start, what: "short interface block" });
                    }
                    let link_type = u16_at(body, 0, big_endian) as u32;
                    if link_type != LINKTYPE_ETHERNET {
                        return Err(CaptureError::LinkType(link_type));
                    }
                    let units_per_sec = if_tsresol(&body[8..], big_endian)
                        .ok_or(CaptureError::Corrupt { offset: start, what: "bad if_tsresol option" })?;
                    interfaces.push(Interface { units_per_sec });
                }
                PCAPNG_EPB => {
                    if body.len() < 20 {
                        return Err(CaptureError::Corrupt { offset: start, what: "short packet block" });
                    }
                    let iface = interfaces.get(u32_at(body, 0, big_endian) as usize).copied().ok_or(
                        CaptureError::Corrupt { offset: start, what: "packet of an undeclared interface" },
                    )?;
                    let ts =
                        ((u32_at(body, 4, big_endian) as u64) << 32) | u32_at(body, 8, big_endian) as u64;
                    let caplen = u32_at(body, 12, big_endian) as usize;
                    let orig = u32_at(body, 16, big_endian);
                    let data = body.get(20..20 + caplen).ok_or(CaptureError::Corrupt {
                        offset: start,
                        what: "packet data beyond its block",
                    })?;
                    let timestamp_ns = (ts as u128 * 1_000_000_000 / iface.units_per_sec as u128) as u64;
                    return Ok(Some(Record {
                        timestamp_ns,
                        orig_len: orig.max(caplen as u32),
                        data: data.to_vec(),
                    }));
                }
                PCAPNG_SPB => {
                    if body.len() < 4 || interfaces.is_empty() {
                        return Err(CaptureError::Corrupt { offset: start, what: "bad simple packet block" });
                    }
                    let orig = u32_at(body, 0, big_endian);
                    let caplen = (orig as usize).min(body.len() - 4);
                    // A simple packet block has no timestamp.
                    return Ok(Some(Record {
                        timestamp_ns: 0,
                        orig_len: orig,
                        data: body[4..4 + caplen].to_vec(),
                    }));
                }
                _ => {} // statistics, name resolution, custom blocks: nothing to replay
            }
        }
    }
}

/// The trailing copy of the block length must equal the leading one.
fn check_trailer(rest: &[u8], total: u32, big_endian: bool, start: u64) -> Result<(), CaptureError> {
    if rest.len() < 4 || u32_at(rest, rest.len() - 4, big_endian) != total {
        return Err(CaptureError::Corrupt { offset: start, what: "block lengths disagree" });
    }
    Ok(())
}

/// Timestamp units per second from an interface block's options (default 10^6).
fn if_tsresol(mut options: &[u8], big_endian: bool) -> Option<u64> {
    while options.len() >= 4 {
        let code = u16_at(options, 0, big_endian);
        let len = u16_at(options, 2, big_endian) as usize;
        let padded = len.div_ceil(4) * 4;
        let value = options.get(4..4 + len)?;
        match code {
            0 => break,
            9 => {
                let v = *value.first()?;
                let exp = (v & 0x7f) as u32;
                return if v & 0x80 != 0 { 2u64.checked_pow(exp) } else { 10u64.checked_pow(exp) };
            }
            _ => {}
        }
        options = options.get(4 + padded..)?;
    }
    Some(1_000_000)
}

fn read_full(input: &mut impl Read, buf: &mut [u8], offset: u64) -> Result<(), CaptureError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => CaptureError::Truncated(offset),
        _ => CaptureError::Io(e),
    })
}

/// Writes Ethernet frames as a nanosecond-resolution pcap (so pcapng timestamps survive).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    output: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut output: W) -> io::Result<Self> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&PCAP_MAGIC_NANOS.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&MAX_RECORD_LEN.to_le_bytes());
        header.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        output.write_all(&header)?;
        Ok(PcapWriter { output })
    }

    /// Writes one frame.
    pub fn write(&mut self, timestamp_ns: u64, frame: &[u8]) -> io::Result<()> {
        let len = frame.len() as u32;
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&((timestamp_ns / 1_000_000_000) as u32).to_le_bytes());
        header[4..8].copy_from_slice(&((timestamp_ns % 1_000_000_000) as u32).to_le_bytes());
        header[8..12].copy_from_slice(&len.to_le_bytes());
        header[12..16].copy_from_slice(&len.to_le_bytes());
        self.output.write_all(&header)?;
        self.output.write_all(frame)
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.output.flush()?;
        Ok(self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(big_endian: bool, nanos: bool, link: u32, records: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
        let w32 = |v: u32| {
            if big_endian { v.to_be_bytes() } else { v.to_le_bytes() }
        };
        let w16 = |v: u16| {
            if big_endian { v.to_be_bytes() } else { v.to_le_bytes() }
        };
        let mut f = Vec::new();
        f.extend(w32(if nanos { PCAP_MAGIC_NANOS } else { PCAP_MAGIC_MICROS }));
        f.extend(w16(2));
        f.extend(w16(4));
        f.extend(w32(0));
        f.extend(w32(0));
        f.extend(w32(65535));
        f.extend(w32(link));
        for (secs, frac, data, orig) in records {
            f.extend(w32(*secs));
            f.extend(w32(*frac));
            f.extend(w32(data.len() as u32));
            f.extend(w32(*orig));
            f.extend_from_slice(data);
        }
        f
    }

    fn block(big_endian: bool, block_type: u32, body: &[u8]) -> Vec<u8> {
        let w32 = |v: u32| {
            if big_endian { v.to_be_bytes() } else { v.to_le_bytes() }
        };
        let padded = body.len().div_ceil(4) * 4;
        let total = (12 + padded) as u32;
        let mut b = Vec::new();
        b.extend(w32(block_type));
        b.extend(w32(total));
        b.extend_from_slice(body);
        b.resize(8 + padded, 0);
        b.extend(w32(total));
        b
    }

    fn shb(big_endian: bool) -> Vec<u8> {
        let w32 = |v: u32| {
            if big_endian { v.to_be_bytes() } else { v.to_le_bytes() }
        };
        let mut body = w32(PCAPNG_BYTE_ORDER_MAGIC).to_vec();
        body.extend(if big_endian { [0, 1, 0, 0] } else { [1, 0, 0, 0] }); // version 1.0
        body.extend([0xff; 8]); // section length unknown
        block(big_endian, PCAPNG_SHB, &body)
    }

    fn idb(big_endian: bool, link: u16, tsresol: Option<u8>) -> Vec<u8> {
        let w16 = |v: u16| {
            if big_endian { v.to_be_bytes() } else { v.to_le_bytes() }
        };
        let mut body = w16(link).to_vec();
        body.extend([0, 0]);
        body.extend(if big_endian { 0u32.to_be_bytes() } else { 0u32.to_le_bytes() });
        if let Some(r) = tsresol {
            body.extend(w16(9));
            body.extend(w16(1));
            body.extend([r, 0, 0, 0]);
            body.extend([0, 0, 0, 0]); // opt_endofopt
        }
        block(big_endian, PCAPNG_IDB, &body)
    }

    fn epb(big_endian: bool, iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let w32 = |v: u32| {
            if big_endian { v.to_be_bytes() } else { v.to_le_bytes() }
        };
        let mut body = Vec::new();
        body.extend(w32(iface));
        body.extend(w32((ts >> 32) as u32));
        body.extend(w32(ts as u32));
        body.extend(w32(data.len() as u32));
        body.extend(w32(data.len() as u32));
        body.extend_from_slice(data);
        block(big_endian, PCAPNG_EPB, &body)
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, CaptureError> {
        let mut reader = CaptureReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(r) = reader.next_record()? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn pcap_in_both_byte_orders_and_resolutions() {
        for big_endian in [false, true] {
            let micros = pcap(big_endian, false, 1, &[(10, 250_000, b"abc", 3), (11, 0, b"de", 100)]);
            let records = read_all(&micros).unwrap();
            assert_eq!(
                records[0],
                Record { timestamp_ns: 10_250_000_000, orig_len: 3, data: b"abc".to_vec() }
            );
            assert_eq!(records[1].orig_len, 100);
            let nanos = pcap(big_endian, true, 1, &[(1, 999_999_999, b"x", 1)]);
            assert_eq!(read_all(&nanos).unwrap()[0].timestamp_ns, 1_999_999_999);
        }
    }

    #[test]
    fn pcapng_sections_interfaces_and_resolutions() {
        for big_endian in [false, true] {
            let mut f = shb(big_endian);
            f.extend(idb(big_endian, 1, None)); // microseconds
            f.extend(idb(big_endian, 1, Some(9))); // nanoseconds
            f.extend(epb(big_endian, 0, 1_500_000, b"first"));
            f.extend(block(big_endian, 5, &[1, 2, 3, 4])); // statistics block: skipped
            f.extend(epb(big_endian, 1, 1_500_000, b"second"));
            // A second section in the other byte order, with a binary resolution.
            f.extend(shb(!big_endian));
            f.extend(idb(!big_endian, 1, Some(0x80 | 10)));
            f.extend(epb(!big_endian, 0, 2048, b"third"));
            let records = read_all(&f).unwrap();
            assert_eq!(records.len(), 3);
            assert_eq!((records[0].timestamp_ns, &records[0].data[..]), (1_500_000_000, &b"first"[..]));
            assert_eq!((records[1].timestamp_ns, &records[1].data[..]), (1_500_000, &b"second"[..]));
            assert_eq!((records[2].timestamp_ns, &records[2].data[..]), (2_000_000_000, &b"third"[..]));
        }
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        assert!(matches!(read_all(b""), Err(CaptureError::Truncated(0))));
        assert!(matches!(read_all(b"hello world, not a capture"), Err(CaptureError::NotACapture(_))));
        assert!(matches!(read_all(&pcap(false, false, 105, &[])), Err(CaptureError::LinkType(105))));
        let good = pcap(false, false, 1, &[(1, 0, b"abcdef", 6)]);
        assert!(matches!(read_all(&good[..good.len() - 1]), Err(CaptureError::Truncated(_))));
        assert!(matches!(read_all(&good[..30]), Err(CaptureError::Truncated(_))));
        let mut huge = good.clone();
        huge[32..36].copy_from_slice(&(MAX_RECORD_LEN + 1).to_le_bytes());
        assert!(matches!(read_all(&huge), Err(CaptureError::Corrupt { offset: 24, .. })));
        let mut bad_usec = good.clone();
        bad_usec[28..32].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(matches!(read_all(&bad_usec), Err(CaptureError::Corrupt { .. })));

        let mut ng = shb(false);
        ng.extend(idb(false, 113, None));
        assert!(matches!(read_all(&ng), Err(CaptureError::LinkType(113))));
        let mut ng = shb(false);
        ng.extend(epb(false, 0, 0, b"no interface"));
        assert!(matches!(read_all(&ng), Err(CaptureError::Corrupt { .. })));
        let mut ng = shb(false);
        ng.extend(idb(false, 1, None));
        let mut packet = epb(false, 0, 0, b"abcd");
        let n = packet.len();
        packet[n - 4] ^= 0xff; // trailing length disagrees
        ng.extend(packet);
        assert!(matches!(read_all(&ng), Err(CaptureError::Corrupt { what: "block lengths disagree", .. })));

        // Every prefix and every single-byte corruption of a valid pcapng: error or records, no panic.
        let mut ng = shb(false);
        ng.extend(idb(false, 1, Some(6)));
        ng.extend(epb(false, 0, 7, b"payload bytes"));
        for cut in 0..ng.len() {
            let _ = read_all(&ng[..cut]);
        }
        for at in 0..ng.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut m = ng.clone();
                m[at] = v;
                let _ = read_all(&m);
            }
        }
    }

    #[test]
    fn writer_output_reads_back() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_234_567_890_123, b"frame-one").unwrap();
        w.write(5, b"two").unwrap();
        let bytes = w.finish().unwrap();
        let records = read_all(&bytes).unwrap();
        assert_eq!(
            records[0],
            Record { timestamp_ns: 1_234_567_890_123, orig_len: 9, data: b"frame-one".to_vec() }
        );
        assert_eq!(records[1], Record { timestamp_ns: 5, orig_len: 3, data: b"two".to_vec() });
    }
}
