//! DPDK, through csrc/dpdk.c (the `dpdk` feature): the environment abstraction layer started
//! once per process ([`Eal`]), a port opened with its queues and buffer pool ([`Port`]), and
//! each queue's bursts of received buffers lent in place ([`Burst`]), answered or freed.
//!
//! DPDK keeps global state per process: [`Eal::init`] succeeds once; a second call is an error,
//! also after the first one's [`Eal`] is gone (DPDK cannot be started again in a process). What
//! depends on what is held, not borrowed, so a worker thread can own its queue's [`Burst`]: a
//! burst keeps its port open, a port keeps DPDK started; the port closes (and its pool goes)
//! when its last burst and handle are dropped, DPDK is cleaned up (`rte_eal_cleanup`, which
//! also gives back hugepages) when its last port and the [`Eal`] are.

use std::sync::Arc;

use std::ffi::{CStr, CString, c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};

/// A DPDK packet buffer (`struct rte_mbuf`), only ever behind a pointer.
#[repr(C)]
struct RteMbuf {
    _opaque: [u8; 0],
}

/// A DPDK buffer pool (`struct rte_mempool`), only ever behind a pointer.
#[repr(C)]
struct RteMempool {
    _opaque: [u8; 0],
}

unsafe extern "C" {
    fn rfl_errno() -> c_int;
    fn rfl_strerror(err: c_int) -> *const c_char;
    fn rfl_eal_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
    fn rfl_eal_cleanup() -> c_int;
    fn rfl_port_count() -> u16;
    fn rfl_port_by_name(name: *const c_char) -> c_int;
    fn rfl_port_nth(index: u16, name: *mut c_char, len: usize) -> c_int;
    fn rfl_port_info(
        port: u16,
        driver: *mut c_char,
        len: usize,
        max_rx_queues: *mut u16,
        mac: *mut u8,
        speed_mbps: *mut u32,
    ) -> c_int;
    fn rfl_pool_create(name: *const c_char, mbufs: u32, port: u16) -> *mut RteMempool;
    fn rfl_pool_free(pool: *mut RteMempool);
    fn rfl_port_start(port: u16, queues: u16, ring: u16, pool: *mut RteMempool, rss: c_int) -> c_int;
    fn rfl_port_stop(port: u16) -> c_int;
    fn rfl_port_stats(port: u16, out: *mut u64) -> c_int;
    fn rfl_rx_burst(port: u16, queue: u16, pkts: *mut *mut RteMbuf, n: u16) -> u16;
    fn rfl_tx_burst(port: u16, queue: u16, pkts: *mut *mut RteMbuf, n: u16) -> u16;
    fn rfl_mbuf_data(m: *mut RteMbuf, len: *mut u16, room: *mut u16, segments: *mut u16) -> *mut u8;
    fn rfl_mbuf_set_len(m: *mut RteMbuf, len: u16) -> c_int;
    fn rfl_mbuf_from(pool: *mut RteMempool, data: *const u8, len: u16) -> *mut RteMbuf;
    fn rfl_mbuf_free(pkts: *mut *mut RteMbuf, n: u32);
    fn rfl_vdev_add(name: *const c_char, args: *const c_char) -> c_int;
    fn rfl_flush();
    fn rfl_cycles() -> u64;
    fn rfl_cycles_hz() -> u64;
}

/// A DPDK call that failed: which, and DPDK's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call}: {reason}")]
pub struct DpdkError {
    /// The call, as a user would look it up ("rte_eal_init").
    pub call: &'static str,
    /// DPDK's words for the error.
    pub reason: String,
}

impl DpdkError {
    /// The error `err` (a positive errno value, or one of DPDK's own) of `call`.
    fn of(call: &'static str, err: c_int) -> DpdkError {
        // SAFETY: rte_strerror returns a pointer to a NUL-terminated string that stays valid
        // (a static table, or a per-thread buffer until the next call on this thread).
        let text = unsafe { CStr::from_ptr(rfl_strerror(err.abs())) };
        DpdkError { call, reason: text.to_string_lossy().into_owned() }
    }

    /// The error in `rte_errno` after `call` failed.
    fn last(call: &'static str) -> DpdkError {
        // SAFETY: reads this thread's rte_errno.
        DpdkError::of(call, unsafe { rfl_errno() })
    }

    /// `ret` as a result: negative values are errors (a negative errno).
    fn check(call: &'static str, ret: c_int) -> Result<c_int, DpdkError> {
        if ret < 0 { Err(DpdkError::of(call, ret)) } else { Ok(ret) }
    }
}

/// Whether the EAL was started in this process (it can be only once).
static STARTED: AtomicBool = AtomicBool::new(false);

/// DPDK started; cleaned up when the last holder drops it.
#[derive(Debug)]
struct Started;

impl Drop for Started {
    fn drop(&mut self) {
        // SAFETY: every port was closed (each holds this) and nothing DPDK made is used after.
        unsafe { rfl_eal_cleanup() };
    }
}

/// The started environment abstraction layer (a handle: clones share it).
#[derive(Debug, Clone)]
pub struct Eal {
    started: Arc<Started>,
}

impl Eal {
    /// Starts DPDK with these EAL arguments (as `dpdk-testpmd` takes them before `--`; the
    /// program name is added). Once per process.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if STARTED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError {
                call: "rte_eal_init",
                reason: "DPDK was already started in this process (it can be only once)".into(),
            });
        }
        let owned: Vec<CString> = std::iter::once("reflector")
            .chain(args.iter().map(String::as_str))
            .map(|a| {
                CString::new(a).map_err(|_| DpdkError {
                    call: "rte_eal_init",
                    reason: format!("an argument holds a NUL byte: {a:?}"),
                })
            })
            .collect::<Result<_, _>>()?;
        // rte_eal_init may reorder argv; it must stay alive and writable during the call.
        let mut argv: Vec<*mut c_char> = owned.iter().map(|a| a.as_ptr() as *mut c_char).collect();
        argv.push(std::ptr::null_mut());
        // The EAL pins the calling thread to its main lcore's CPU; the caller's threads are its
        // own business, so the thread's CPUs are put back after.
        let cpus = crate::process::allowed_cpus().ok();
        let (ret, said) = capturing_output(|| {
            // SAFETY: argv holds argc pointers to NUL-terminated strings (owned, alive across
            // the call) and a final NULL, as main's argv does.
            unsafe { rfl_eal_init(owned.len() as c_int, argv.as_mut_ptr()) }
        });
        // What the EAL printed is kept out of the run's output; on failure its first line of
        // substance (getopt's, or the EAL's own) says what was wrong.
        let failed = (ret < 0).then(|| {
            let mut e = DpdkError::last("rte_eal_init");
            if let Some(line) = said.lines().map(str::trim).find(|l| {
                !l.is_empty()
                    && !l.starts_with("Usage")
                    && !l.starts_with("EAL: Detected")
                    && !l.contains("Multi-process")
            }) {
                e.reason = format!("{} ({line})", e.reason);
            }
            e
        });
        if let Some(cpus) = cpus {
            let _ = crate::process::set_current_thread_cpus(&cpus);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(Eal { started: Arc::new(Started) })
    }

    /// The rate of [`cycles`], in Hz (`rte_get_tsc_hz`, measured when DPDK started).
    pub fn cycles_hz(&self) -> u64 {
        // SAFETY: the EAL is started (self exists); the call reads a value it set then.
        unsafe { rfl_cycles_hz() }
    }

    /// The ports DPDK found, in order: each one's id and name.
    pub fn ports(&self) -> Vec<(u16, String)> {
        // SAFETY: the EAL is started (self exists).
        let n = unsafe { rfl_port_count() };
        (0..n)
            .filter_map(|i| {
                let mut name = [0 as c_char; 64];
                // SAFETY: `name` has room for 64 bytes, the length given.
                let port = unsafe { rfl_port_nth(i, name.as_mut_ptr(), name.len()) };
                // SAFETY: rfl_port_nth wrote a NUL-terminated name into `name` when it
                // returned a port.
                (port >= 0)
                    .then(|| (port as u16, unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into()))
            })
            .collect()
    }

    /// The port called `name` (a virtual device's name, or a PCI address).
    pub fn port_by_name(&self, name: &str) -> Result<u16, DpdkError> {
        let c = CString::new(name).map_err(|_| DpdkError {
            call: "rte_eth_dev_get_port_by_name",
            reason: "a NUL byte in the name".into(),
        })?;
        // SAFETY: `c` is a NUL-terminated string alive across the call.
        let ret = unsafe { rfl_port_by_name(c.as_ptr()) };
        DpdkError::check("rte_eth_dev_get_port_by_name", ret).map(|p| p as u16)
    }
}

impl Eal {
    /// Adds the virtual device `name` (`net_tap0`, …) with its arguments (`iface=rfl0,…`), as
    /// `--vdev=NAME,ARGS` would have at the start: its port id.
    pub fn add_vdev(&self, name: &str, args: &str) -> Result<u16, DpdkError> {
        let nul = |_| DpdkError { call: "rte_eal_hotplug_add", reason: "a NUL byte in the device".into() };
        let (n, a) = (CString::new(name).map_err(nul)?, CString::new(args).map_err(nul)?);
        let (ret, said) = capturing_output(|| {
            // SAFETY: both are NUL-terminated strings alive across the call; the EAL is started.
            unsafe { rfl_vdev_add(n.as_ptr(), a.as_ptr()) }
        });
        DpdkError::check("rte_eal_hotplug_add", ret).map(|p| p as u16).map_err(|mut e| {
            if let Some(line) = said.lines().map(str::trim).find(|l| !l.is_empty()) {
                e.reason = format!("{} ({line})", e.reason);
            }
            e
        })
    }
}

/// Runs `f` with file descriptors 1 and 2 writing into a memory file (what DPDK prints: its
/// messages on stderr, its usage text on stdout, through the C library's buffers, flushed before
/// they are put back), and gives what was written (empty when the redirection cannot be set up;
/// `f` runs either way). Only for the set-up, before the caller has other threads that write to
/// either.
fn capturing_output<T>(f: impl FnOnce() -> T) -> (T, String) {
    // SAFETY: memfd_create with a NUL-terminated name; dup and dup2 on descriptors this
    // function owns or on 1 and 2; every descriptor it opens is closed before it returns, and
    // 1 and 2 are put back before it does.
    unsafe {
        let file = libc::memfd_create(c"reflector-eal".as_ptr(), libc::MFD_CLOEXEC);
        let saved = if file >= 0 { [libc::dup(1), libc::dup(2)] } else { [-1, -1] };
        let redirected = file >= 0 && saved.iter().all(|fd| *fd >= 0) && {
            let one = libc::dup2(file, 1) >= 0;
            let two = one && libc::dup2(file, 2) >= 0;
            if !two {
                libc::dup2(saved[0], 1);
            }
            two
        };
        if !redirected {
            for fd in [file, saved[0], saved[1]] {
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            return (f(), String::new());
        }
        let out = f();
        rfl_flush();
        libc::dup2(saved[0], 1);
        libc::dup2(saved[1], 2);
        libc::close(saved[0]);
        libc::close(saved[1]);
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        let mut at = 0i64;
        loop {
            let n = libc::pread(file, buf.as_mut_ptr().cast(), buf.len(), at);
            if n <= 0 || text.len() > 1 << 20 {
                break;
            }
            text.extend_from_slice(&buf[..n as usize]);
            at += n as i64;
        }
        libc::close(file);
        (out, String::from_utf8_lossy(&text).into_owned())
    }
}

/// What a port is: its driver, queues, address and link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The poll-mode driver (`net_af_packet`, `net_virtio`, …).
    pub driver: String,
    /// The receive queues it can have.
    pub max_rx_queues: u16,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// Link speed in Mb/s (0: unknown or down).
    pub speed_mbps: u32,
}

/// What a port counted (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub ipackets: u64,
    /// Frames sent.
    pub opackets: u64,
    /// Frames the NIC dropped because no receive descriptor was free.
    pub imissed: u64,
    /// Frames received in error.
    pub ierrors: u64,
    /// Frames that failed to send.
    pub oerrors: u64,
    /// Frames dropped because the pool had no buffer.
    pub rx_nombuf: u64,
}

/// A started port with its queues and buffer pool (a handle: clones share it); stopped and
/// closed, its pool freed, when the last handle and the last of its bursts are dropped.
#[derive(Debug, Clone)]
pub struct Port {
    inner: Arc<PortInner>,
}

#[derive(Debug)]
struct PortInner {
    id: u16,
    queues: u16,
    pool: *mut RteMempool,
    /// Dropped after the port is closed (fields drop in order, after `drop`).
    _eal: Arc<Started>,
}

// SAFETY: DPDK allows a port's calls from any thread, each queue's bursts from one thread at a
// time (a queue's `Burst` is owned by one thread, `&mut` for each call); the pool is DPDK's
// default multi-producer, multi-consumer one, taken from and given back to from any thread.
unsafe impl Send for PortInner {}
// SAFETY: as above: what `&Port` offers (info, stats, a copy sent on a queue) is safe from
// several threads at once, except a queue's transmit, which `send_copy` documents.
unsafe impl Sync for PortInner {}

impl Port {
    /// Configures port `id` with `queues` receive and transmit queues of `ring` descriptors
    /// (RSS over them when `rss`), a pool of `mbufs_per_queue` buffers per queue (what its
    /// driver keeps for receiving, a burst in hand, and what is in flight on the transmit
    /// side), promiscuous mode, and starts it.
    pub fn start(
        eal: &Eal,
        id: u16,
        queues: u16,
        ring: u16,
        rss: bool,
        mbufs_per_queue: u32,
    ) -> Result<Port, DpdkError> {
        let name = CString::new(format!("reflector{id}")).expect("no NUL in a formatted name");
        let mbufs = mbufs_per_queue.saturating_mul(u32::from(queues.max(1))).saturating_sub(1);
        // SAFETY: `name` is NUL-terminated and alive across the call; the EAL is started.
        let pool = unsafe { rfl_pool_create(name.as_ptr(), mbufs, id) };
        if pool.is_null() {
            return Err(DpdkError::last("rte_pktmbuf_pool_create"));
        }
        // What the drivers print while they set up (libbpf's notes on net_af_xdp's program,
        // …) is kept out of the run's output unless the start fails.
        let (ret, said) = capturing_output(|| {
            // SAFETY: `pool` is the pool just made; the port id is checked by DPDK.
            unsafe { rfl_port_start(id, queues, ring, pool, c_int::from(rss)) }
        });
        if ret < 0 {
            // SAFETY: the port is closed first (its queues give their buffers back), then the
            // pool is freed; neither is used again.
            unsafe {
                rfl_port_stop(id);
                rfl_pool_free(pool);
            }
            let mut e = DpdkError::of("rte_eth_dev_configure / queue set-up / start", ret);
            if let Some(line) = said.lines().map(str::trim).rfind(|l| !l.is_empty()) {
                e.reason = format!("{} ({line})", e.reason);
            }
            return Err(e);
        }
        Ok(Port { inner: Arc::new(PortInner { id, queues, pool, _eal: eal.started.clone() }) })
    }

    /// Its id.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// Its queues.
    pub fn queues(&self) -> u16 {
        self.inner.queues
    }

    /// What it is.
    pub fn info(&self) -> Result<PortInfo, DpdkError> {
        let mut driver = [0 as c_char; 64];
        let (mut max_rx_queues, mut mac, mut speed_mbps) = (0u16, [0u8; 6], 0u32);
        // SAFETY: every out-pointer points to a live variable of its type; `driver` has room
        // for the length given.
        let ret = unsafe {
            rfl_port_info(
                self.inner.id,
                driver.as_mut_ptr(),
                driver.len(),
                &mut max_rx_queues,
                mac.as_mut_ptr(),
                &mut speed_mbps,
            )
        };
        DpdkError::check("rte_eth_dev_info_get", ret)?;
        // SAFETY: rfl_port_info wrote a NUL-terminated name (snprintf).
        let driver = unsafe { CStr::from_ptr(driver.as_ptr()) }.to_string_lossy().into_owned();
        Ok(PortInfo { driver, max_rx_queues, mac, speed_mbps })
    }

    /// What it counted.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut out = [0u64; 6];
        // SAFETY: `out` has the 6 words rfl_port_stats writes.
        DpdkError::check("rte_eth_stats_get", unsafe { rfl_port_stats(self.inner.id, out.as_mut_ptr()) })?;
        let [ipackets, opackets, imissed, ierrors, oerrors, rx_nombuf] = out;
        Ok(PortStats { ipackets, opackets, imissed, ierrors, oerrors, rx_nombuf })
    }

    /// Queue `queue`'s bursts: at most `capacity` frames each (DPDK's usual: 32 or 64). One
    /// burst per queue, used by one thread.
    pub fn burst(&self, queue: u16, capacity: u16) -> Result<Burst, DpdkError> {
        if queue >= self.inner.queues {
            return Err(DpdkError {
                call: "rte_eth_rx_burst",
                reason: format!("no queue {queue} (the port has {})", self.inner.queues),
            });
        }
        Ok(Burst {
            port: self.inner.clone(),
            queue,
            mbufs: vec![std::ptr::null_mut(); usize::from(capacity.max(1))],
            len: 0,
            spare: Vec::with_capacity(usize::from(capacity.max(1))),
        })
    }

    /// Sends a copy of `frame` from `queue` (a buffer from the port's pool); false when the pool
    /// is empty, the frame does not fit a buffer, or the queue is full. The queue's burst must
    /// not be sending at the same time (DPDK's transmit is one thread per queue).
    pub fn send_copy(&self, queue: u16, frame: &[u8]) -> bool {
        let Ok(len) = u16::try_from(frame.len()) else { return false };
        if queue >= self.inner.queues {
            return false;
        }
        // SAFETY: `frame` is `len` readable bytes; the pool is this port's, alive.
        let mut m = unsafe { rfl_mbuf_from(self.inner.pool, frame.as_ptr(), len) };
        if m.is_null() {
            return false;
        }
        // SAFETY: `m` is a buffer just made; one pointer; the queue exists.
        if unsafe { rfl_tx_burst(self.inner.id, queue, &mut m, 1) } == 1 {
            return true;
        }
        // SAFETY: not sent, so still ours.
        unsafe { rfl_mbuf_free(&mut m, 1) };
        false
    }
}

impl Drop for PortInner {
    fn drop(&mut self) {
        // SAFETY: the last handle and burst are gone (each holds this), so no buffer of the
        // pool is in our hands; the queues stop before the pool goes.
        unsafe {
            rfl_port_stop(self.id);
            rfl_pool_free(self.pool);
        }
    }
}

/// The data of buffer `m`'s first segment: pointer, length, room after it, segments.
fn mbuf_view(m: *mut RteMbuf) -> (*mut u8, u16, u16, u16) {
    let (mut len, mut room, mut segments) = (0u16, 0u16, 0u16);
    // SAFETY: `m` is a live buffer of ours; the out-pointers point to live variables.
    let data = unsafe { rfl_mbuf_data(m, &mut len, &mut room, &mut segments) };
    (data, len, room, segments)
}

/// What [`Burst::send`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Marked frames sent.
    pub sent: usize,
    /// Marked frames the queue would not take (freed).
    pub failed: usize,
    /// Their bytes.
    pub failed_bytes: u64,
    /// The other frames sent out of the other queue.
    pub passed: usize,
    /// The other frames that queue would not take (freed).
    pub pass_failed: usize,
}

/// Sends `mbufs` from `queue` of `port` (in order): how many went (the first ones); the rest
/// are still the caller's.
///
/// # Safety
/// Every pointer is a buffer the caller holds (received or made, not sent or freed since), and
/// no other thread uses the queue meanwhile.
unsafe fn transmit(port: &PortInner, queue: u16, mbufs: &mut [*mut RteMbuf]) -> usize {
    if mbufs.is_empty() {
        return 0;
    }
    // At most a burst's capacity: a u16 (a burst's capacity is one).
    let n = mbufs.len().min(usize::from(u16::MAX)) as u16;
    // SAFETY: as the caller promises; the port is started (the caller holds it) and the queue
    // exists (checked when its burst was made).
    usize::from(unsafe { rfl_tx_burst(port.id, queue, mbufs.as_mut_ptr(), n) })
}

/// One queue's frames, received a burst at a time and lent in place until the next receive,
/// send or drop.
#[derive(Debug)]
pub struct Burst {
    port: Arc<PortInner>,
    queue: u16,
    mbufs: Vec<*mut RteMbuf>,
    len: usize,
    /// The buffers a send frees, gathered (as long as `mbufs`, allocated once).
    spare: Vec<*mut RteMbuf>,
}

// SAFETY: the buffers a burst holds belong to it alone until they are sent or freed, which
// DPDK allows from any thread; its queue is used only through it (`&mut self`).
unsafe impl Send for Burst {}

impl Burst {
    /// Receives up to its capacity of frames (the ones it held freed first): how many came.
    pub fn receive(&mut self) -> usize {
        self.free_all();
        // SAFETY: `mbufs` has room for its length in pointers (at most u16::MAX: a capacity is
        // a u16); the port is started (the burst holds it) and the queue exists (checked when
        // the burst was made).
        let n = unsafe {
            rfl_rx_burst(self.port.id, self.queue, self.mbufs.as_mut_ptr(), self.mbufs.len() as u16)
        };
        self.len = usize::from(n);
        self.len
    }

    /// Sends the frames that `keep` marks (in order) and the others out of `rest`'s queue when
    /// there is one (another port's: the exception path), else frees them; frees what a queue
    /// would not take; and is empty after.
    pub fn send(&mut self, keep: &[bool], rest: Option<&Burst>) -> Sent {
        // The marked buffers move to the front (in order), the others to `spare`: no allocation
        // per burst (`spare` holds a burst's capacity).
        self.spare.clear();
        let mut kept = 0;
        for i in 0..self.len {
            let m = self.mbufs[i];
            if keep.get(i).copied().unwrap_or(false) {
                self.mbufs[kept] = m;
                kept += 1;
            } else {
                self.spare.push(m);
            }
        }
        self.len = 0;
        // SAFETY: the first `kept` pointers are buffers received on this queue and not freed
        // or sent since.
        let sent = unsafe { transmit(&self.port, self.queue, &mut self.mbufs[..kept]) };
        let unsent = &self.mbufs[sent..kept];
        let mut out = Sent {
            sent,
            failed: kept - sent,
            failed_bytes: unsent.iter().map(|m| u64::from(mbuf_view(*m).1)).sum(),
            ..Sent::default()
        };
        let passed = match rest {
            // SAFETY: the buffers in `spare` are ours (received, not sent or freed); `to`'s
            // queue is used by this thread only (a burst is not Sync, and it is borrowed here).
            Some(to) => unsafe { transmit(&to.port, to.queue, &mut self.spare) },
            None => 0,
        };
        out.passed = passed;
        out.pass_failed = if rest.is_some() { self.spare.len() - passed } else { 0 };
        self.spare.drain(..passed);
        self.spare.extend_from_slice(&self.mbufs[sent..kept]);
        if !self.spare.is_empty() {
            // SAFETY: these buffers are ours (received, not sent) and not used after this.
            unsafe { rfl_mbuf_free(self.spare.as_mut_ptr(), self.spare.len() as u32) };
        }
        out
    }

    /// Sends every frame it holds, unchanged, out of `to`'s queue (another port's: what the
    /// host sends on the exception path goes out of the port); frees what that queue would
    /// not take, and is empty after. How many were sent, and how many not.
    pub fn forward(&mut self, to: &Burst) -> (usize, usize) {
        let n = self.len;
        self.len = 0;
        // SAFETY: the first `n` pointers are buffers this burst received and holds; `to`'s queue
        // is used by this thread only (a burst is not Sync, and it is borrowed here).
        let sent = unsafe { transmit(&to.port, to.queue, &mut self.mbufs[..n]) };
        if sent < n {
            // SAFETY: not sent, so still ours; not used after this.
            unsafe { rfl_mbuf_free(self.mbufs[sent..n].as_mut_ptr(), (n - sent) as u32) };
        }
        (sent, n - sent)
    }

    /// Frames it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// It holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frame `i`: its one segment as a buffer whose first `len` bytes are the frame and the
    /// rest the room after it (`None` for a frame of several segments, which the caller
    /// cannot answer in place).
    pub fn frame(&mut self, i: usize) -> Option<(&mut [u8], usize)> {
        let m = *self.mbufs[..self.len].get(i)?;
        let (data, len, room, segments) = mbuf_view(m);
        if segments != 1 || data.is_null() {
            return None;
        }
        let total = usize::from(len) + usize::from(room);
        // SAFETY: a one-segment buffer's data is `len` bytes followed by `room` writable
        // bytes of the same buffer, which this burst holds alone until it sends or frees it;
        // the borrow of self keeps it so.
        Some((unsafe { std::slice::from_raw_parts_mut(data, total) }, usize::from(len)))
    }

    /// Sets frame `i`'s length to `len` (an answer longer or shorter than the frame, within
    /// the buffer); false when it does not fit.
    pub fn set_len(&mut self, i: usize, len: usize) -> bool {
        let Some(m) = self.mbufs[..self.len].get(i).copied() else { return false };
        // SAFETY: `m` is a live buffer this burst holds.
        u16::try_from(len).is_ok_and(|len| unsafe { rfl_mbuf_set_len(m, len) } == 0)
    }

    fn free_all(&mut self) {
        if self.len > 0 {
            // SAFETY: the buffers this burst holds, not sent; not used after this.
            unsafe { rfl_mbuf_free(self.mbufs.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.free_all();
    }
}

/// DPDK's cycle counter (`rte_rdtsc`: the TSC on x86), as `dpdk-testpmd --record-core-cycles`
/// reads it; its rate is [`Eal::cycles_hz`].
pub fn cycles() -> u64 {
    // SAFETY: reads the processor's counter; no memory is touched and no DPDK state is needed.
    unsafe { rfl_cycles() }
}
