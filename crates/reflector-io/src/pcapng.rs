//! Writing pcapng (the format Wireshark's tools read natively): a section with one Ethernet
//! interface, then Enhanced Packet Blocks with a comment and a direction each. Little-endian,
//! nanosecond timestamps.

use crate::capture::{LINKTYPE_ETHERNET, MAX_RECORD_LEN};

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const EPB: u32 = 6;
const ISB: u32 = 5;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;
const ISB_IFDROP: u16 = 5;

/// Which way a captured frame went, as pcapng's `epb_flags` say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received (a rejected frame, as it came in).
    Inbound,
    /// Sent (a reflection, as it went out).
    Outbound,
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Appends a block of `block_type` whose body `body` writes (padded to 4 bytes, with the
/// total length before and after it).
fn block(out: &mut Vec<u8>, block_type: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    body(out);
    out.resize(out.len().next_multiple_of(4), 0);
    let total = (out.len() - start + 4) as u32;
    out[start + 4..start + 8].copy_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
}

/// The start of a pcapng file: a section header naming the writer, and interface 0, Ethernet,
/// named `interface`, with nanosecond timestamps.
pub fn header(interface: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    block(&mut out, SHB, |b| {
        b.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&u64::MAX.to_le_bytes()); // section length not known
        option(b, SHB_USERAPPL, concat!("reflector ", env!("CARGO_PKG_VERSION")).as_bytes());
        option(b, OPT_END, &[]);
    });
    block(&mut out, IDB, |b| {
        b.extend_from_slice(&(LINKTYPE_ETHERNET as u16).to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&MAX_RECORD_LEN.to_le_bytes());
        option(b, IF_NAME, interface.as_bytes());
        option(b, IF_TSRESOL, &[9]);
        option(b, OPT_END, &[]);
    });
    out
}

/// Appends one frame of interface 0 taken at `time_ns` (Unix epoch, UTC), with a comment (the
/// verdict: the concatenation of `comment`'s parts) and its direction.
pub fn packet(out: &mut Vec<u8>, time_ns: u64, frame: &[u8], comment: &[&str], direction: Direction) {
    packet_cut(out, time_ns, frame, frame.len(), comment, direction);
}

/// [`packet`] for a frame of `len` bytes of which `frame` holds the first.
pub fn packet_cut(
    out: &mut Vec<u8>,
    time_ns: u64,
    frame: &[u8],
    len: usize,
    comment: &[&str],
    direction: Direction,
) {
    block(out, EPB, |b| {
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&((time_ns >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(time_ns as u32).to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(&(len.max(frame.len()) as u32).to_le_bytes());
        b.extend_from_slice(frame);
        b.resize(b.len().next_multiple_of(4), 0);
        let len: usize = comment.iter().map(|c| c.len()).sum();
        b.extend_from_slice(&OPT_COMMENT.to_le_bytes());
        b.extend_from_slice(&(len as u16).to_le_bytes());
        comment.iter().for_each(|c| b.extend_from_slice(c.as_bytes()));
        b.resize(b.len().next_multiple_of(4), 0);
        let flags: u32 = match direction {
            Direction::Inbound => 1,
            Direction::Outbound => 2,
        };
        option(b, EPB_FLAGS, &flags.to_le_bytes());
        option(b, OPT_END, &[]);
    });
}

/// Appends interface 0's statistics at `time_ns`: the frames the capture could not keep (its
/// writer fell behind), so a reader sees that the file is not everything.
pub fn statistics(out: &mut Vec<u8>, time_ns: u64, dropped: u64) {
    block(out, ISB, |b| {
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&((time_ns >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(time_ns as u32).to_le_bytes());
        option(b, ISB_IFDROP, &dropped.to_le_bytes());
        option(b, OPT_END, &[]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureReader, Record};

    #[test]
    fn what_is_written_reads_back() {
        let mut file = header("eth0");
        packet(
            &mut file,
            1_700_000_000_123_456_789,
            b"reflected frame",
            &["reflected: ", "ito"],
            Direction::Outbound,
        );
        statistics(&mut file, 1_700_000_000_200_000_000, 3);
        packet(&mut file, 5, b"odd", &["rejected: not_udp"], Direction::Inbound);
        assert_eq!(file.len() % 4, 0);
        let mut reader = CaptureReader::new(&file[..]).unwrap();
        assert_eq!(
            reader.next_record().unwrap(),
            Some(Record {
                timestamp_ns: 1_700_000_000_123_456_789,
                orig_len: 15,
                data: b"reflected frame".to_vec()
            })
        );
        assert_eq!(
            reader.next_record().unwrap(),
            Some(Record { timestamp_ns: 5, orig_len: 3, data: b"odd".to_vec() })
        );
        assert_eq!(reader.next_record().unwrap(), None);
    }
}
