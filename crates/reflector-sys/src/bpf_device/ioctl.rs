//! `/dev/bpf` ioctl requests and record layouts of macOS and FreeBSD, written down here so the
//! code builds (and is tested) on Linux too. Each value is computed from the headers' `_IOR` /
//! `_IOW` / `_IOWR` definitions and checked by a test against the number the headers produce.

/// `_IOC` direction bits (sys/ioccom.h, the same on macOS and FreeBSD).
const IOC_OUT: u32 = 0x4000_0000;
const IOC_IN: u32 = 0x8000_0000;
const IOC_INOUT: u32 = IOC_IN | IOC_OUT;
const IOCPARM_MASK: u32 = 0x1fff;

const fn ioc(dir: u32, group: u8, num: u8, len: usize) -> u64 {
    (dir | ((len as u32 & IOCPARM_MASK) << 16) | ((group as u32) << 8) | num as u32) as u64
}

/// `sizeof(u_int)`.
const UINT: usize = 4;
/// `sizeof(struct ifreq)`: 16-byte name + 16-byte union, on both systems.
pub const IFREQ_SIZE: usize = 32;
/// `sizeof(struct bpf_program)` on 64-bit: `u_int bf_len` padded to 8, then a pointer.
pub const BPF_PROGRAM_SIZE: usize = 16;
/// `sizeof(struct timeval)` on 64-bit (what BIOCSRTIMEOUT takes).
pub const TIMEVAL_SIZE: usize = 16;

/// Set the buffer length (before BIOCSETIF); the kernel answers with what it accepted.
pub const BIOCSBLEN: u64 = ioc(IOC_INOUT, b'B', 102, UINT);
/// Install a filter program.
pub const BIOCSETF: u64 = ioc(IOC_IN, b'B', 103, BPF_PROGRAM_SIZE);
/// Read the link type.
pub const BIOCGDLT: u64 = ioc(IOC_OUT, b'B', 106, UINT);
/// Attach to an interface.
pub const BIOCSETIF: u64 = ioc(IOC_IN, b'B', 108, IFREQ_SIZE);
/// Set the read timeout.
pub const BIOCSRTIMEOUT: u64 = ioc(IOC_IN, b'B', 109, TIMEVAL_SIZE);
/// Return reads as soon as a packet arrives.
pub const BIOCIMMEDIATE: u64 = ioc(IOC_IN, b'B', 112, UINT);
/// Written frames carry their own source MAC.
pub const BIOCSHDRCMPLT: u64 = ioc(IOC_IN, b'B', 117, UINT);
/// Whether to see frames this host sends (macOS; FreeBSD has BIOCSDIRECTION instead).
pub const BIOCSSEESENT: u64 = ioc(IOC_IN, b'B', 119, UINT);

/// `DLT_EN10MB`: Ethernet.
pub const DLT_EN10MB: u32 = 1;

/// Where a `struct bpf_hdr`'s fields are, and the record alignment, on one system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLayout {
    /// Offset of `bh_caplen`.
    pub caplen: usize,
    /// Offset of `bh_datalen`.
    pub datalen: usize,
    /// Offset of `bh_hdrlen`.
    pub hdrlen: usize,
    /// The smallest valid `bh_hdrlen` (the end of the `bh_hdrlen` field).
    pub min_header: usize,
    /// `BPF_ALIGNMENT`: records start on multiples of it (`BPF_WORDALIGN`).
    pub alignment: usize,
    /// The size of each of the timestamp's two fields at the record's start (seconds, then
    /// microseconds since the Unix epoch, native-endian).
    pub tstamp_field: usize,
}

impl RecordLayout {
    /// macOS: `struct BPF_TIMEVAL { int32 tv_sec, tv_usec }` then caplen, datalen, hdrlen;
    /// `BPF_ALIGNMENT` is `sizeof(int32_t)`.
    pub const MACOS: RecordLayout =
        RecordLayout { caplen: 8, datalen: 12, hdrlen: 16, min_header: 18, alignment: 4, tstamp_field: 4 };
    /// FreeBSD on 64-bit: `struct timeval` (16 bytes) then caplen, datalen, hdrlen;
    /// `BPF_ALIGNMENT` is `sizeof(long)`.
    pub const FREEBSD_64: RecordLayout =
        RecordLayout { caplen: 16, datalen: 20, hdrlen: 24, min_header: 26, alignment: 8, tstamp_field: 8 };

    /// The receive time of the record whose header starts `header` (at least `min_header`
    /// bytes), in nanoseconds since the Unix epoch (the kernel's default, microsecond wall
    /// clock time).
    pub fn timestamp_ns(&self, header: &[u8]) -> u64 {
        let field = |at: usize| -> u64 {
            let b = &header[at..at + self.tstamp_field];
            match self.tstamp_field {
                4 => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as u64,
                _ => u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])),
            }
        };
        field(0).saturating_mul(1_000_000_000).saturating_add(field(self.tstamp_field).saturating_mul(1_000))
    }

    /// `BPF_WORDALIGN(x)`.
    pub fn word_align(&self, x: usize) -> usize {
        (x + self.alignment - 1) & !(self.alignment - 1)
    }
}

/// The layout of the system this is built for (macOS's elsewhere, for tests).
#[cfg(target_os = "freebsd")]
pub const NATIVE: RecordLayout = RecordLayout::FREEBSD_64;
/// The layout of the system this is built for (macOS's elsewhere, for tests).
#[cfg(not(target_os = "freebsd"))]
pub const NATIVE: RecordLayout = RecordLayout::MACOS;

// Built for macOS or FreeBSD (scripts/check-targets.sh type-checks both), the numbers and the
// record layout must equal the system's own, as the libc crate has them from its headers: the
// build stops here otherwise.
#[cfg(any(target_os = "macos", target_os = "freebsd"))]
const _: () = {
    use std::mem::offset_of;
    assert!(libc::BIOCSBLEN == BIOCSBLEN as libc::c_ulong);
    assert!(libc::BIOCSETF == BIOCSETF as libc::c_ulong);
    assert!(libc::BIOCGDLT == BIOCGDLT as libc::c_ulong);
    assert!(libc::BIOCSETIF == BIOCSETIF as libc::c_ulong);
    assert!(libc::BIOCSRTIMEOUT == BIOCSRTIMEOUT as libc::c_ulong);
    assert!(libc::BIOCIMMEDIATE == BIOCIMMEDIATE as libc::c_ulong);
    assert!(libc::BIOCSHDRCMPLT == BIOCSHDRCMPLT as libc::c_ulong);
    #[cfg(target_os = "freebsd")]
    assert!(libc::BIOCSSEESENT == BIOCSSEESENT as libc::c_ulong);
    assert!(NATIVE.caplen == offset_of!(libc::bpf_hdr, bh_caplen));
    assert!(NATIVE.datalen == offset_of!(libc::bpf_hdr, bh_datalen));
    assert!(NATIVE.hdrlen == offset_of!(libc::bpf_hdr, bh_hdrlen));
    assert!(NATIVE.min_header == offset_of!(libc::bpf_hdr, bh_hdrlen) + 2);
    assert!(NATIVE.tstamp_field * 2 == offset_of!(libc::bpf_hdr, bh_caplen));
    #[cfg(target_os = "freebsd")]
    assert!(NATIVE.alignment == libc::BPF_ALIGNMENT);
    assert!(IFREQ_SIZE == std::mem::size_of::<libc::ifreq>());
    assert!(TIMEVAL_SIZE == std::mem::size_of::<libc::timeval>());
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Values as the macOS SDK's <net/bpf.h> expands them on arm64 / x86_64 (FreeBSD amd64
    /// agrees for the requests both have).
    #[test]
    fn ioctl_numbers_match_the_headers() {
        assert_eq!(BIOCSBLEN, 0xc004_4266);
        assert_eq!(BIOCSETF, 0x8010_4267);
        assert_eq!(BIOCGDLT, 0x4004_426a);
        assert_eq!(BIOCSETIF, 0x8020_426c);
        assert_eq!(BIOCSRTIMEOUT, 0x8010_426d);
        assert_eq!(BIOCIMMEDIATE, 0x8004_4270);
        assert_eq!(BIOCSHDRCMPLT, 0x8004_4275);
        assert_eq!(BIOCSSEESENT, 0x8004_4277);
    }

    #[test]
    fn record_layouts() {
        let m = RecordLayout::MACOS;
        assert_eq!((m.word_align(0), m.word_align(1), m.word_align(18), m.word_align(20)), (0, 4, 20, 20));
        let f = RecordLayout::FREEBSD_64;
        assert_eq!((f.word_align(26), f.word_align(32), f.word_align(33)), (32, 32, 40));
        // The filter instruction is `struct bpf_insn` { u16 code; u8 jt, jf; u32 k }.
        assert_eq!(std::mem::size_of::<crate::insn::SockFilter>(), 8);
    }
}
