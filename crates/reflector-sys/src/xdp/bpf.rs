//! The `bpf(2)` system call, for the few commands the XDP path needs. Each `union bpf_attr`
//! variant is a `#[repr(C)]` struct of exactly the fields used (the kernel treats bytes past
//! the size passed as zero).
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::insn::BpfInsn as Insn;

use crate::error::{SysError, SysResult};

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_int = 4;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_MAP_LOOKUP_BATCH: libc::c_int = 24;
const BPF_PROG_TEST_RUN: libc::c_int = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_LINK_UPDATE: libc::c_int = 29;
/// `BPF_MAP_TYPE_XSKMAP`.
pub const BPF_MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_MAP_TYPE_PERCPU_ARRAY`.
pub const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
/// `BPF_MAP_TYPE_ARRAY`.
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_LRU_HASH`.
pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
/// `BPF_MAP_TYPE_HASH`.
pub const BPF_MAP_TYPE_HASH: u32 = 1;
/// `BPF_MAP_TYPE_LPM_TRIE` (keys: a native-endian `u32` prefix length, then the data).
pub const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
/// `BPF_F_NO_PREALLOC`: what an LPM trie must be created with.
pub const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP` attach type.
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE`: generic XDP, in the stack (any driver).
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, in the driver.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Issues `bpf(cmd, attr, sizeof attr)`.
///
/// # Safety
/// `T` must be the `#[repr(C)]` layout of `cmd`'s `bpf_attr` variant, and every pointer in it
/// must be valid for what the kernel reads or writes through it during the call.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> libc::c_long {
    // SAFETY: `attr` is a live value of the size passed; the caller vouches for its layout and
    // the pointers inside it.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>() as u32) }
}

fn fd_result(ret: libc::c_long, call: &'static str) -> SysResult<OwnedFd> {
    if ret < 0 {
        return Err(SysError::last(call));
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// Creates a map of `map_type` with 4-byte keys and `value_size`-byte values.
pub fn map_create(map_type: u32, value_size: u32, max_entries: u32, name: &str) -> SysResult<OwnedFd> {
    map_create_keyed(map_type, 4, value_size, max_entries, name)
}

/// A map that knows its key and value sizes, so that its elements are written through slices
/// checked against them.
#[derive(Debug)]
pub struct SizedMap {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

/// An entry of a per-CPU map: its key, and its value on each possible CPU.
pub type PerCpuEntry = (Vec<u8>, Vec<Vec<u8>>);

impl SizedMap {
    /// Creates a map of `map_type` with `key_size`-byte keys and `value_size`-byte values.
    pub fn create(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        name: &str,
    ) -> SysResult<Self> {
        Self::create_with_flags(map_type, key_size, value_size, max_entries, 0, name)
    }

    /// [`SizedMap::create`] with map flags (such as [`BPF_F_NO_PREALLOC`]).
    pub fn create_with_flags(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        flags: u32,
        name: &str,
    ) -> SysResult<Self> {
        let fd = map_create_flagged(map_type, key_size, value_size, max_entries, flags, name)?;
        Ok(SizedMap { fd, key_size: key_size as usize, value_size: value_size as usize })
    }

    /// Removes `map[key]` (ENOENT when there is none; EINVAL when the key is not of the
    /// map's size).
    pub fn delete(&self, key: &[u8]) -> SysResult<()> {
        if key.len() != self.key_size {
            return Err(wrong_size("bpf(BPF_MAP_DELETE_ELEM)"));
        }
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value: 0,
            flags: 0,
        };
        // SAFETY: `attr` is a live BPF_MAP_DELETE_ELEM attribute; the kernel reads a key of the
        // map's key size from the slice, which is that size (checked above) and outlives the call.
        if unsafe { bpf(BPF_MAP_DELETE_ELEM, &mut attr) } < 0 {
            return Err(SysError::last("bpf(BPF_MAP_DELETE_ELEM)"));
        }
        Ok(())
    }

    /// Every key in the map, in the kernel's order (a map changed meanwhile may be walked
    /// partly again or partly skipped, as `BPF_MAP_GET_NEXT_KEY` goes).
    pub fn keys(&self) -> SysResult<Vec<Vec<u8>>> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut next = vec![0u8; self.key_size];
            let mut attr = MapElemAttr {
                map_fd: self.fd.as_raw_fd() as u32,
                _pad: 0,
                // No key: the first one.
                key: keys.last().map_or(0, |k| k.as_ptr() as u64),
                value: next.as_mut_ptr() as u64,
                flags: 0,
            };
            // SAFETY: `attr` is a live BPF_MAP_GET_NEXT_KEY attribute: the kernel reads a key of
            // the map's key size from the previous key (a buffer of that size, or null for the
            // first) and writes one of that size into `next`; both outlive the call.
            if unsafe { bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) } < 0 {
                let err = SysError::last("bpf(BPF_MAP_GET_NEXT_KEY)");
                return if err.errno() == Some(libc::ENOENT) { Ok(keys) } else { Err(err) };
            }
            keys.push(next);
        }
    }

    /// Every key and value of a hash map (not per-CPU), [`BATCH_ROWS`] at a time by
    /// `BPF_MAP_LOOKUP_BATCH` (Linux 5.6): a system call per batch, not two per entry as
    /// [`SizedMap::keys`] and [`SizedMap::lookup`] take. A map changed meanwhile may be read
    /// partly as it was and partly as it is (the kernel walks it bucket by bucket).
    pub fn entries(&self) -> SysResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.entries_by(BATCH_ROWS, self.value_size)
    }

    /// Every entry of a per-CPU map, as
    /// [`SizedMap::entries`] reads them.
    pub fn percpu_entries(&self) -> SysResult<Vec<PerCpuEntry>> {
        // The kernel hands a per-CPU value out as one slot per possible CPU, each rounded up
        // to 8 bytes.
        let stride = self.value_size.next_multiple_of(8);
        let entries = self.entries_by(BATCH_ROWS, stride * possible_cpus())?;
        Ok(entries
            .into_iter()
            .map(|(key, all)| (key, all.chunks(stride).map(|v| v[..self.value_size].to_vec()).collect()))
            .collect())
    }

    /// [`SizedMap::entries`], asking for `rows` entries a call (more when one of the map's
    /// buckets holds more: the kernel hands out whole buckets), each value `vs` bytes.
    fn entries_by(&self, mut rows: usize, vs: usize) -> SysResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let ks = self.key_size;
        let mut entries = Vec::new();
        // Where the next call starts (a hash map's bucket number; room for a key, as other map
        // types use): none at first, then what the call before gave back.
        let mut start: Option<Vec<u64>> = None;
        let mut next = vec![0u64; ks.div_ceil(8).max(1)];
        loop {
            let (mut keys, mut values) = (vec![0u8; rows * ks], vec![0u8; rows * vs]);
            let mut attr = BatchAttr {
                in_batch: start.as_ref().map_or(0, |s| s.as_ptr() as u64),
                out_batch: next.as_mut_ptr() as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: rows as u32,
                map_fd: self.fd.as_raw_fd() as u32,
                elem_flags: 0,
                flags: 0,
            };
            // SAFETY: `attr` is a live BPF_MAP_LOOKUP_BATCH attribute: the kernel reads the start
            // position from `start` (at least 8 bytes and a key's size, or null for the first
            // call), writes the next one into `next` (the same size), and up to `count` keys and
            // values of the map's sizes (a per-CPU value: `vs`, every possible CPU's) into `keys`
            // and `values` (`count` of each); all outlive the call.
            let failed = unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) } < 0;
            let err = failed.then(|| SysError::last("bpf(BPF_MAP_LOOKUP_BATCH)"));
            let n = (attr.count as usize).min(rows);
            entries.extend((0..n).map(|i| (keys[i * ks..][..ks].to_vec(), values[i * vs..][..vs].to_vec())));
            match err {
                None => start = Some(next.clone()),
                // The end (the last entries may have come with it).
                Some(e) if e.errno() == Some(libc::ENOENT) => return Ok(entries),
                // A bucket larger than the batch: ask again for more at once.
                Some(e) if e.errno() == Some(libc::ENOSPC) && n == 0 => rows *= 2,
                Some(e) => return Err(e),
            }
        }
    }

    /// The value at `key`, if there is one.
    pub fn lookup(&self, key: &[u8]) -> SysResult<Option<Vec<u8>>> {
        if key.len() != self.key_size {
            return Err(wrong_size("bpf(BPF_MAP_LOOKUP_ELEM)"));
        }
        let mut value = vec![0u8; self.value_size];
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            flags: 0,
        };
        // SAFETY: `attr` is a live BPF_MAP_LOOKUP_ELEM attribute: the kernel reads a key of the
        // map's key size and writes a value of its value size (not per-CPU), the sizes of the
        // two buffers, which outlive the call.
        if unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) } < 0 {
            let err = SysError::last("bpf(BPF_MAP_LOOKUP_ELEM)");
            return if err.errno() == Some(libc::ENOENT) { Ok(None) } else { Err(err) };
        }
        Ok(Some(value))
    }

    /// The map's file descriptor (for a program to refer to).
    pub fn as_raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Sets `map[key] = value`; EINVAL when either is not of the map's size.
    pub fn update(&self, key: &[u8], value: &[u8]) -> SysResult<()> {
        if key.len() != self.key_size || value.len() != self.value_size {
            return Err(wrong_size("bpf(BPF_MAP_UPDATE_ELEM)"));
        }
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: `attr` is a live BPF_MAP_UPDATE_ELEM attribute; the kernel reads the map's key
        // and value sizes from the two slices, which are exactly those sizes (checked above) and
        // outlive the call.
        if unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) } < 0 {
            return Err(SysError::last("bpf(BPF_MAP_UPDATE_ELEM)"));
        }
        Ok(())
    }
}

/// EINVAL from `call`: a key or value not of the map's size, refused before the kernel sees it.
fn wrong_size(call: &'static str) -> SysError {
    SysError { call, err: std::io::Error::from_raw_os_error(libc::EINVAL) }
}

/// Creates a map with no element size checks of ours (also a ring buffer: no keys, no values).
pub(crate) fn map_create_keyed(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> SysResult<OwnedFd> {
    map_create_flagged(map_type, key_size, value_size, max_entries, 0, name)
}

fn map_create_flagged(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: &str,
) -> SysResult<OwnedFd> {
    #[repr(C)]
    struct Attr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        inner_map_fd: u32,
        numa_node: u32,
        map_name: [u8; 16],
    }
    let mut attr = Attr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: name16(name),
    };
    // SAFETY: `attr` is a live BPF_MAP_CREATE attribute.
    fd_result(unsafe { bpf(BPF_MAP_CREATE, &mut attr) }, "bpf(BPF_MAP_CREATE)")
}

/// Entries [`SizedMap::entries`] asks for a call.
pub const BATCH_ROWS: usize = 1024;

/// The `bpf_attr` of the map batch commands.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The `bpf_attr` of the map element commands (lookup, update).
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Sets `map[key] = value` (4-byte key and value).
pub fn map_update(map: &OwnedFd, key: u32, value: u32) -> SysResult<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0,
    };
    // SAFETY: `attr` is a live BPF_MAP_UPDATE_ELEM attribute; key and value outlive the call.
    if unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) } < 0 {
        return Err(SysError::last("bpf(BPF_MAP_UPDATE_ELEM)"));
    }
    Ok(())
}

/// The number of possible CPUs (the length of a per-CPU map value), from sysfs.
pub fn possible_cpus() -> usize {
    // Fixed at boot: read once (every per-CPU lookup sizes its buffer by it).
    static POSSIBLE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *POSSIBLE.get_or_init(|| {
        // "0-1" or "0,2-5": the highest CPU number plus one.
        std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| s.trim().rsplit([',', '-']).next().and_then(|n| n.parse::<usize>().ok()))
            .map_or(1, |n| n + 1)
    })
}

/// The `u64`s at keys `0..count` of a per-CPU array of `u64`, each as one value per possible CPU,
/// read in one `BPF_MAP_LOOKUP_BATCH` call (Linux 5.6) rather than one call per key.
pub fn percpu_array(map: &OwnedFd, count: u32) -> SysResult<Vec<Vec<u64>>> {
    let cpus = possible_cpus();
    let rows = count as usize;
    let mut keys = vec![0u32; rows];
    let mut values = vec![0u64; rows * cpus];
    let mut next = 0u64;
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: &mut next as *mut u64 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count,
        map_fd: map.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: `attr` is a live BPF_MAP_LOOKUP_BATCH attribute from the array's start (no
    // `in_batch`): the kernel writes the next position (a u32 key) into `next` (8 bytes), and up
    // to `count` keys (u32) and values (one u64 per possible CPU each, the per-CPU array's value
    // size) into `keys` and `values`, which have room for `count` of each and outlive the call.
    if unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) } < 0 {
        let err = SysError::last("bpf(BPF_MAP_LOOKUP_BATCH)");
        // The end of the array, reached with the last of the keys asked for.
        if err.errno() != Some(libc::ENOENT) {
            return Err(err);
        }
    }
    if attr.count != count {
        return Err(SysError {
            call: "bpf(BPF_MAP_LOOKUP_BATCH)",
            err: std::io::Error::other(format!("{} of {count} entries read", attr.count)),
        });
    }
    Ok(values.chunks(cpus).map(<[u64]>::to_vec).collect())
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// Why a program did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The verifier said no; its log says why. One line: the log's line that names the
    /// failure, and where the whole log was written.
    #[error("the kernel's verifier rejected the XDP program ({source}): {reason}; full verifier log: {}", match saved_to { Some(p) => p.display().to_string(), None => "not saved".into() })]
    Verifier {
        /// The error the load returned.
        #[source]
        source: std::io::Error,
        /// The line of the log that names what failed.
        reason: String,
        /// The verifier's log (its last lines when it is long).
        log: String,
        /// The file the whole log was written to.
        saved_to: Option<std::path::PathBuf>,
    },
    /// Not allowed: what is missing, and how to grant it.
    #[error("{0}")]
    Permission(String),
}

/// Loads an XDP program; on a verifier rejection the error holds the verifier's log.
pub fn prog_load(insns: &[Insn], name: &str) -> Result<OwnedFd, LoadError> {
    #[repr(C)]
    struct Attr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    let license = c"Dual MIT/GPL";
    let attempt = |log: &mut Vec<u8>, level: u32| -> (libc::c_long, std::io::Error) {
        let mut attr = Attr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: level,
            log_size: if level > 0 { log.len() as u32 } else { 0 },
            log_buf: if level > 0 { log.as_mut_ptr() as u64 } else { 0 },
            kern_version: 0,
            prog_flags: 0,
            prog_name: name16(name),
            prog_ifindex: 0,
            expected_attach_type: BPF_XDP,
        };
        // The verifier gives up with EAGAIN when a signal arrives while it works (a SIGHUP
        // storm at start-up met a long verification): signals wait until it is done.
        let _blocked = SignalsBlocked::new();
        // SAFETY: `attr` is a live BPF_PROG_LOAD attribute; the instructions, license and log
        // buffer outlive the call.
        let ret = unsafe { bpf(BPF_PROG_LOAD, &mut attr) };
        (ret, std::io::Error::last_os_error())
    };
    let mut log = Vec::new();
    // EAGAIN and EINTR are passing (a signal, or memory the kernel could not get at once):
    // try again a few times before calling it a failure.
    let mut tries = 0;
    let (ret, err) = loop {
        let (ret, err) = attempt(&mut log, 0);
        tries += 1;
        if ret >= 0 || !matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) || tries == 8 {
            break (ret, err);
        }
        std::thread::sleep(std::time::Duration::from_millis(tries));
    };
    if ret >= 0 {
        // SAFETY: the kernel returned a new program fd.
        return Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) });
    }
    // EPERM is missing privileges; the verifier says no with EACCES or EINVAL.
    let refused = || {
        LoadError::Permission(crate::privilege::refused(
            "loading the XDP program",
            crate::privilege::XDP_PROGRAM,
        ))
    };
    if err.raw_os_error() == Some(libc::EPERM) {
        return Err(refused());
    }
    // Load again with the log on, to say why.
    log.resize(1 << 20, 0);
    let (_, err2) = attempt(&mut log, 1);
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    // The last lines say what failed; the whole log can be megabytes, so it goes to a file.
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    // The verifier's own words: its last "invalid ..." line, else its last line before the
    // summary ("processed N insns ...").
    let said =
        |l: &&&str| !l.is_empty() && !l.starts_with("processed ") && !l.starts_with("verification time");
    let reason = tail
        .iter()
        .take(5)
        .find(|l| l.starts_with("invalid "))
        .or_else(|| tail.iter().find(said))
        .map_or("no reason in the log".to_string(), |l| l.trim().to_string());
    let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    let saved_to = std::env::temp_dir().join(format!("reflector-verifier-{}.log", std::process::id()));
    let saved_to = std::fs::write(&saved_to, text.as_bytes()).ok().map(|()| saved_to);
    Err(LoadError::Verifier {
        source: if err2.raw_os_error().is_some() { err2 } else { err },
        reason,
        log,
        saved_to,
    })
}

/// Every signal blocked in this thread while it lives (they stay pending, and are delivered
/// when it goes).
struct SignalsBlocked {
    old: libc::sigset_t,
}

impl SignalsBlocked {
    fn new() -> SignalsBlocked {
        // SAFETY: sigset_t is plain data; sigfillset and pthread_sigmask write only into the
        // sets we own; blocking signals in this thread has no other effect on memory.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
            SignalsBlocked { old }
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask `new` saved, a set we own.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

/// What one `BPF_PROG_TEST_RUN` of a program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The action it returned (`XDP_PASS`, `XDP_TX`, …).
    pub action: u32,
    /// The frame as it left the program.
    pub frame: Vec<u8>,
}

/// Runs `prog` once over `frame` (`BPF_PROG_TEST_RUN`): its action and the frame it left.
pub fn prog_test_run(prog: &OwnedFd, frame: &[u8]) -> SysResult<TestRun> {
    prog_test_run_repeat(prog, frame, 1).map(|(run, _)| run)
}

/// Runs `prog` over `frame` `repeat` times in the kernel (`BPF_PROG_TEST_RUN`): the last run's
/// action and frame, and the kernel's mean time per run in nanoseconds. (For XDP the frame is
/// not copied again between runs: a program that changes it meets its own change.)
pub fn prog_test_run_repeat(prog: &OwnedFd, frame: &[u8], repeat: u32) -> SysResult<(TestRun, u32)> {
    #[repr(C)]
    struct Attr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
    }
    let mut out = vec![0u8; frame.len() + 512];
    let mut attr = Attr {
        prog_fd: prog.as_raw_fd() as u32,
        retval: 0,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        duration: 0,
    };
    // SAFETY: `attr` is a live BPF_PROG_TEST_RUN attribute; the buffers outlive the call, and
    // the kernel writes at most `data_size_out` bytes to `out`.
    if unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) } < 0 {
        return Err(SysError::last("bpf(BPF_PROG_TEST_RUN)"));
    }
    out.truncate((attr.data_size_out as usize).min(out.len()));
    Ok((TestRun { action: attr.retval, frame: out }, attr.duration))
}

/// Attaches `prog` to interface `ifindex` through a bpf_link (`BPF_LINK_CREATE`), which the
/// kernel removes when the last reference (this fd) goes, so the program cannot outlive the
/// process, even after SIGKILL.
pub fn link_create(prog: &OwnedFd, ifindex: u32, flags: u32) -> SysResult<OwnedFd> {
    #[repr(C)]
    struct Attr {
        prog_fd: u32,
        target_ifindex: u32,
        attach_type: u32,
        flags: u32,
    }
    let mut attr =
        Attr { prog_fd: prog.as_raw_fd() as u32, target_ifindex: ifindex, attach_type: BPF_XDP, flags };
    // SAFETY: `attr` is a live BPF_LINK_CREATE attribute.
    fd_result(unsafe { bpf(BPF_LINK_CREATE, &mut attr) }, "bpf(BPF_LINK_CREATE)")
}

/// The name of the loaded program whose id is `id` (`BPF_PROG_GET_FD_BY_ID`, which needs
/// CAP_SYS_ADMIN, then `BPF_OBJ_GET_INFO_BY_FD`).
pub fn prog_name(id: u32) -> SysResult<String> {
    #[repr(C)]
    struct GetFd {
        prog_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut get = GetFd { prog_id: id, next_id: 0, open_flags: 0 };
    // SAFETY: `get` is a live BPF_PROG_GET_FD_BY_ID attribute.
    let prog = fd_result(unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut get) }, "bpf(BPF_PROG_GET_FD_BY_ID)")?;
    let info = prog_info(&prog)?;
    let bytes: Vec<u8> = info[8..10].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// The sizes of a loaded program as the kernel keeps it: its instructions after the verifier's
/// rewriting (xlated) and its machine code (jited), in bytes (`BPF_OBJ_GET_INFO_BY_FD`).
pub fn prog_sizes(prog: &OwnedFd) -> SysResult<ProgSizes> {
    let info = prog_info(prog)?;
    // `jited_prog_len` and `xlated_prog_len`: the u32s at offsets 16 and 20.
    let [j0, j1, j2, j3, x0, x1, x2, x3] = info[2].to_ne_bytes();
    Ok(ProgSizes {
        jited: u32::from_ne_bytes([j0, j1, j2, j3]),
        xlated: u32::from_ne_bytes([x0, x1, x2, x3]),
    })
}

/// What [`prog_sizes`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgSizes {
    /// Bytes of machine code (0 when the program is not JIT-compiled).
    pub jited: u32,
    /// Bytes of instructions as the verifier left them.
    pub xlated: u32,
}

/// `struct bpf_prog_info` up to and including its 16-byte name, at offset 64, in native-endian
/// u64 words.
fn prog_info(prog: &OwnedFd) -> SysResult<[u64; 10]> {
    #[repr(C)]
    struct GetInfo {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut info = [0u64; 10];
    let mut attr = GetInfo { bpf_fd: prog.as_raw_fd() as u32, info_len: 80, info: info.as_mut_ptr() as u64 };
    // SAFETY: `attr` is a live BPF_OBJ_GET_INFO_BY_FD attribute whose `info` points to `info`,
    // 80 writable bytes (`info_len`), alive across the call.
    if unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) } < 0 {
        return Err(SysError::last("bpf(BPF_OBJ_GET_INFO_BY_FD)"));
    }
    Ok(info)
}

/// Replaces the program of `link` with `prog` atomically (`BPF_LINK_UPDATE`).
pub fn link_update(link: &OwnedFd, prog: &OwnedFd) -> SysResult<()> {
    #[repr(C)]
    struct Attr {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    let mut attr = Attr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog.as_raw_fd() as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    // SAFETY: `attr` is a live BPF_LINK_UPDATE attribute.
    if unsafe { bpf(BPF_LINK_UPDATE, &mut attr) } < 0 {
        return Err(SysError::last("bpf(BPF_LINK_UPDATE)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs root (CAP_BPF)"]
    fn a_batch_read_gives_every_entry_once() {
        // Keys and values of the testers table's sizes, more entries than a batch, in a map
        // whose buckets hold several.
        for map_type in [BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH] {
            let map = SizedMap::create(map_type, 20, 56, 4096, "reflector_test").unwrap();
            let entry = |i: u32| {
                let mut key = [0u8; 20];
                key[..4].copy_from_slice(&i.to_ne_bytes());
                let mut value = [0u8; 56];
                value[50..54].copy_from_slice(&(i * 7).to_ne_bytes());
                (key.to_vec(), value.to_vec())
            };
            let mut wanted: Vec<_> = (0..3000).map(entry).collect();
            for (k, v) in &wanted {
                map.update(k, v).unwrap();
            }
            wanted.sort();
            for rows in [BATCH_ROWS, 7, 1] {
                let mut got = map.entries_by(rows, map.value_size).unwrap();
                got.sort();
                assert_eq!(got.len(), wanted.len(), "type {map_type}, {rows} rows a call");
                assert!(got == wanted, "type {map_type}, {rows} rows a call");
            }
            let empty = SizedMap::create(map_type, 20, 56, 16, "reflector_test").unwrap();
            assert!(empty.entries().unwrap().is_empty());
        }
    }
}
