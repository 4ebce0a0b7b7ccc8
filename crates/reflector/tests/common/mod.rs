//! Shared pieces of the live tests: namespace pairs joined by veth, the reflector under
//! `timeout`, and a tester socket inside the other namespace.
#![allow(dead_code)] // each test binary uses its own subset

pub mod deb;
pub mod vm;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use reflector_sys::packet_socket::PacketSocket;
use reflector_testkit::{LOCAL_MAC, TESTER_MAC};

/// Why live tests cannot run here, or `None` when they can.
pub fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root: network namespace tests need root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the 'ip' command (iproute2) is missing".into());
    }
    None
}

/// Opens a live test: such tests are marked `#[ignore = "needs root and network namespaces"]`,
/// so a plain `cargo test` reports them as ignored, and the test command runs them as root
/// (`--include-ignored`). Run without what they need, they fail with the reason (never pass
/// unrun). Holds the live-test lock until the test ends.
#[macro_export]
macro_rules! require_live {
    () => {
        if let Some(why) = common::skip_reason() {
            panic!("cannot run this live test: {why} (run as root, as scripts/test.sh does)");
        }
        let _serial = common::serial();
    };
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Live tests measure traffic through the kernel on a 2-core machine; run in parallel they
/// starve each other's reflectors. One at a time per test binary (a failed test's poisoned
/// lock is taken over).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Two namespaces joined by a veth pair: `va` (the reflector's, MAC 02:00:00:00:00:01,
/// 192.0.2.1, 2001:db8::1) and `vb` (the tester's, MAC 00:c0:17:12:34:56, 192.0.2.10,
/// 2001:db8::a). Both are deleted on drop, also when the test fails.
pub struct NetnsPair {
    pub reflector_ns: String,
    pub tester_ns: String,
}

impl NetnsPair {
    /// A pair with jumbo-sized MTU (9000), so the 9000-byte golden frame fits.
    pub fn new() -> NetnsPair {
        NetnsPair::with_mtu(9000)
    }

    /// The MTU each backend's tests use: af-xdp takes frames of at most one 4 KiB UMEM frame,
    /// and native XDP on a veth (af-xdp, xdp-tx) refuses an MTU much above that.
    pub fn for_backend(backend: &str) -> NetnsPair {
        NetnsPair::with_mtu(if backend == "af-xdp" || backend == "xdp-tx" { 1500 } else { 9000 })
    }

    /// A pair whose veth ends have this MTU.
    pub fn with_mtu(mtu: u32) -> NetnsPair {
        NetnsPair::with_queues(mtu, 1)
    }

    /// A pair whose veth ends have this MTU and this many transmit and receive queues.
    pub fn with_queues(mtu: u32, queues: u32) -> NetnsPair {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("rfl-{}-{n}", std::process::id());
        let pair = NetnsPair { reflector_ns: format!("{base}-r"), tester_ns: format!("{base}-t") };
        ip(&["netns", "add", &pair.reflector_ns]);
        ip(&["netns", "add", &pair.tester_ns]);
        let q = queues.to_string();
        let (local, tester) = (LOCAL_MAC.to_string(), TESTER_MAC.to_string());
        let (r, t) = (&pair.reflector_ns, &pair.tester_ns);
        let queues_args = ["numtxqueues", &q, "numrxqueues", &q];
        let mut args = vec!["link", "add", "va", "netns", r, "address", &local];
        args.extend_from_slice(&queues_args);
        args.extend_from_slice(&["type", "veth", "peer", "name", "vb", "netns", t, "address", &tester]);
        args.extend_from_slice(&queues_args);
        ip(&args);
        for (ns, dev, v4, v6) in [
            (&pair.reflector_ns, "va", "192.0.2.1/24", "2001:db8::1/64"),
            (&pair.tester_ns, "vb", "192.0.2.10/24", "2001:db8::a/64"),
        ] {
            ip(&["-n", ns, "addr", "add", v4, "dev", dev]);
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "mtu", &mtu.to_string(), "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// Runs `f` in a thread that has entered namespace `ns` (sockets it opens stay there).
    pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                reflector_sys::process::enter_netns(&format!("/run/netns/{ns}")).expect("setns");
                f()
            })
            .join()
            .expect("namespace thread")
        })
    }

    /// An XDP program that passes everything on the tester's veth, for as long as the fd
    /// lives: a veth takes frames its peer sends with `XDP_TX` (the xdp-tx backend) only when
    /// it runs an XDP program itself.
    pub fn peer_xdp_pass(&self) -> std::os::fd::OwnedFd {
        NetnsPair::in_ns(&self.tester_ns, || {
            let vb = reflector_sys::iface::iface_info("vb").expect("vb exists").index;
            reflector_io::xdp::attach_pass(vb).expect("an XDP program on vb")
        })
    }

    /// Whether an XDP program is attached to `va`.
    pub fn xdp_attached(&self) -> bool {
        let out = Command::new("ip").args(["-n", &self.reflector_ns, "link", "show", "va"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    }

    /// Kills `reflector` with SIGKILL and requires that its XDP program goes with it (the
    /// bpf_link dies with the process) and that the host still answers ping.
    pub fn kill_9_leaves_no_program(&self, reflector: Reflector) {
        let pid = child_of(reflector.pid());
        assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
        let (status, _) = reflector.wait();
        assert!(!status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.xdp_attached() {
            assert!(Instant::now() < deadline, "the XDP program outlived the reflector");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(self.tester_cmd(&["ping", "-c", "2", "-W", "2", "192.0.2.1"]), "ping failed after kill -9");
    }

    /// A tester socket on `vb`.
    pub fn tester(&self) -> PacketSocket {
        NetnsPair::in_ns(&self.tester_ns, || {
            let index = reflector_sys::iface::iface_info("vb").expect("vb exists").index;
            let socket = PacketSocket::open(index).expect("tester socket");
            socket.set_recv_buffer(64 << 20).expect("receive buffer");
            socket
        })
    }

    /// Runs a command in the tester namespace (under timeout); true on success.
    pub fn tester_cmd(&self, args: &[&str]) -> bool {
        let mut full = vec!["20", "ip", "netns", "exec", &self.tester_ns];
        full.extend_from_slice(args);
        Command::new("timeout")
            .args(&full)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("runs")
            .success()
    }

    /// Starts `reflector run va ARGS` (default backend) and waits for its start line.
    pub fn start_reflector(&self, args: &[&str]) -> Reflector {
        self.start_reflector_on(None, args)
    }

    /// Starts `reflector run va [--backend BACKEND] ARGS` in the reflector namespace and waits
    /// for its start line, which must name that backend.
    pub fn start_reflector_on(&self, backend: Option<&str>, args: &[&str]) -> Reflector {
        start_reflector_in(&self.reflector_ns, "va", backend, args)
    }

    /// Starts a second reflector, on the tester's side (`vb`), facing the first one.
    pub fn start_facing_reflector(&self, backend: Option<&str>, args: &[&str]) -> Reflector {
        start_reflector_in(&self.tester_ns, "vb", backend, args)
    }
}

/// Starts `reflector run DEV [--backend BACKEND] ARGS` in namespace `ns` (under `timeout 60`)
/// and waits for its start line, which must name that backend and interface.
fn start_reflector_in(ns: &str, dev: &str, backend: Option<&str>, args: &[&str]) -> Reflector {
    start_reflector_under(ns, dev, &[], backend, args)
}

impl NetnsPair {
    /// Starts `reflector run DEV [--backend BACKEND] ARGS` in the reflector's namespace, on an
    /// interface other than `va` (one the run makes: DPDK's `--dpdk-tap`).
    pub fn start_reflector_named(&self, dev: &str, backend: Option<&str>, args: &[&str]) -> Reflector {
        start_reflector_in(&self.reflector_ns, dev, backend, args)
    }

    /// Starts `PREFIX... reflector run va [--backend BACKEND] ARGS` (e.g. under `prlimit`).
    pub fn start_reflector_under(&self, prefix: &[&str], backend: Option<&str>, args: &[&str]) -> Reflector {
        start_reflector_under(&self.reflector_ns, "va", prefix, backend, args)
    }
}

fn start_reflector_under(
    ns: &str,
    dev: &str,
    prefix: &[&str],
    backend: Option<&str>,
    args: &[&str],
) -> Reflector {
    let bin = env!("CARGO_BIN_EXE_reflector");
    let mut full = vec!["60", "ip", "netns", "exec", ns];
    full.extend_from_slice(prefix);
    full.extend_from_slice(&[bin, "run", dev]);
    if let Some(b) = backend {
        full.extend_from_slice(&["--backend", b]);
    }
    full.extend_from_slice(args);
    let mut child = Command::new("timeout")
        .args(&full)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("reflector starts");
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let start = stderr.recv_timeout(Duration::from_secs(20)).expect("a start line on stderr");
    let on = format!(" on {dev} ");
    let named = backend.is_none_or(|b| start.starts_with(&format!("reflector: {b}{on}")));
    assert!(named && start.contains(&on), "unexpected start line: {start}");
    Reflector { child, stdout, stderr, start_line: start }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.reflector_ns, &self.tester_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn lines(reader: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running `reflector run` (under `timeout 60`).
pub struct Reflector {
    child: Child,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
    pub start_line: String,
}

impl Reflector {
    /// The pid of the `timeout` process that runs it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process we started (timeout passes it on) and collects the
    /// exit status and the rest of stdout.
    pub fn signal_and_wait(self, signal: &str) -> (ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
        self.wait()
    }

    /// Waits for the process to end by itself.
    pub fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().expect("wait");
        let lines: Vec<String> = self.stdout.iter().collect();
        (status, lines)
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        // Only reached when a test failed before stopping it: end the process we started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `frame` from the tester, again after a moment while the interface's queue is full
/// (ENOBUFS: a veth whose peer runs XDP holds 256 frames until its NAPI poll takes them; a tight
/// burst from a busy machine can fill it before the reflector's CPU gets to run).
pub fn send_backing_off(socket: &PacketSocket, frame: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match socket.send(frame) {
            Ok(()) => return,
            Err(e) if e.errno() == Some(libc::ENOBUFS) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Receives reflections (unicast UDP from the reflector's MAC) until `want` have arrived or
/// `quiet` passes without one. The host's own multicast is not counted.
pub fn receive_reflections(socket: &PacketSocket, want: usize, quiet: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16384];
    let mut deadline = Instant::now() + quiet;
    while got.len() < want {
        match socket.recv(&mut buf, deadline).expect("recv") {
            None => break,
            Some(n) => {
                if buf[0] & 1 == 0 && buf[6..12] == LOCAL_MAC.0 && is_udp(&buf[..n]) {
                    got.push(buf[..n].to_vec());
                    deadline = Instant::now() + quiet;
                }
            }
        }
    }
    got
}

/// True for frames carrying UDP (after up to two tags): the reflections, not ARP or ICMP.
fn is_udp(frame: &[u8]) -> bool {
    let mut at = 12;
    while at + 2 <= frame.len()
        && matches!(u16::from_be_bytes([frame[at], frame[at + 1]]), 0x8100 | 0x88a8 | 0x9100)
    {
        at += 4;
    }
    match frame.get(at..at + 2) {
        Some([0x08, 0x00]) => frame.get(at + 11) == Some(&17),
        // UDP, or an extension header in front of it (the golden IPv6 cases have some).
        Some([0x86, 0xdd]) => matches!(frame.get(at + 8), Some(17 | 0 | 43 | 60)),
        _ => false,
    }
}

/// The live backends of this system, each test of the matrix runs against.
pub const BACKENDS: [&str; 2] = ["af-packet", "af-xdp"];

/// Parses the JSON summary line of a run.
pub fn summary(lines: &[String]) -> serde_json::Value {
    let last = lines.iter().rev().find(|l| l.contains("\"summary\"")).expect("a JSON summary line");
    serde_json::from_str(last).expect("summary is JSON")
}

/// The frame as filters on a Linux packet socket see it: an outer 802.1Q / 802.1ad tag is
/// moved into metadata first.
pub fn kernel_view(frame: &[u8]) -> Vec<u8> {
    match frame.get(12..14) {
        Some([0x81, 0x00]) | Some([0x88, 0xa8]) if frame.len() >= 18 => [&frame[..12], &frame[16..]].concat(),
        _ => frame.to_vec(),
    }
}

impl NetnsPair {
    /// Runs `[PREFIX...] reflector ARGS` in the reflector namespace under `timeout`.
    pub fn run_reflector_cmd(&self, prefix: &[&str], args: &[&str]) -> std::process::Output {
        let mut full: Vec<&str> = vec!["20", "ip", "netns", "exec", &self.reflector_ns];
        full.extend_from_slice(prefix);
        full.push(env!("CARGO_BIN_EXE_reflector"));
        full.extend_from_slice(args);
        Command::new("timeout").args(&full).output().expect("runs")
    }
}

/// The pid of the process `timeout` (pid `pid`) runs: the reflector (`ip netns exec` execs it).
pub fn child_of(pid: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = children.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return child;
        }
        assert!(Instant::now() < deadline, "no child process");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An ITO probe from IPv4 address `src` (the tester's MAC) to the reflector's address.
pub fn probe_from(src: [u8; 4]) -> Vec<u8> {
    use reflector_core::build::IpAddrs;
    reflector_testkit::Frame {
        ip: IpAddrs::V4 { src, dst: reflector_testkit::LOCAL_V4 },
        ..reflector_testkit::Frame::ito_v4()
    }
    .bytes()
}

/// What an offer sent and got back, per source address.
pub struct Offered {
    pub sent: HashMap<[u8; 4], usize>,
    pub received: HashMap<[u8; 4], usize>,
}

/// Sets its flag when dropped: a thread of a test's scope that loops until the flag is set
/// then ends also when the test panics (the scope waits for its threads before it unwinds).
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Sends from the tester's side, for `secs` seconds, each source's probe at its rate (paced
/// every millisecond), while counting the reflections that come back by the address they go
/// to; `during` runs once half the time has passed.
pub fn offer(pair: &NetnsPair, sources: &[([u8; 4], u32)], secs: f64, during: impl FnOnce()) -> Offered {
    let (sender, receiver) = (pair.tester(), pair.tester());
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let counting = s.spawn(|| count_reflections(&receiver, &done));
        // The counting ends also when sending or `during` panics.
        let done = StopOnDrop(&done);
        let start = Instant::now();
        let mut sent: HashMap<[u8; 4], usize> = HashMap::new();
        let frames: Vec<Vec<u8>> = sources.iter().map(|(src, _)| probe_from(*src)).collect();
        let mut during = Some(during);
        loop {
            let elapsed = start.elapsed().as_secs_f64();
            if elapsed >= secs {
                break;
            }
            if elapsed >= secs / 2.0
                && let Some(f) = during.take()
            {
                f();
            }
            for ((src, pps), frame) in sources.iter().zip(&frames) {
                let due = (elapsed * *pps as f64) as usize;
                let n = sent.entry(*src).or_default();
                while *n < due {
                    sender.send(frame).unwrap();
                    *n += 1;
                }
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        std::thread::sleep(Duration::from_millis(500));
        drop(done);
        let received = counting.join().unwrap();
        Offered { sent, received }
    })
}

/// Reflections (from the reflector's MAC) by their IPv4 destination, until `done`.
fn count_reflections(socket: &PacketSocket, done: &AtomicBool) -> HashMap<[u8; 4], usize> {
    let mut got: HashMap<[u8; 4], usize> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    while !done.load(Ordering::Relaxed) {
        if let Some(n) = socket.recv(&mut buf, Instant::now() + Duration::from_millis(50)).unwrap()
            && n >= 42
            && buf[6..12] == LOCAL_MAC.0
            && buf[12..14] == [0x08, 0x00]
            && buf[23] == 17
        {
            *got.entry(buf[30..34].try_into().unwrap()).or_default() += 1;
        }
    }
    got
}

/// `GET path` from the HTTP server at `addr` in the reflector's namespace: the status and the
/// body.
pub fn http_get(pair: &NetnsPair, addr: &str, path: &str) -> (u16, String) {
    NetnsPair::in_ns(&pair.reflector_ns, || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        (status, body)
    })
}

/// The dashboard page as headless Chromium renders it, after its script has run.
pub fn render_page(pair: &NetnsPair, url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let mut args = vec![
        "30",
        "ip",
        "netns",
        "exec",
        &pair.reflector_ns,
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        &profile_arg,
        "--virtual-time-budget=3000",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = Command::new("timeout").args(&args).output().expect("chromium runs");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
