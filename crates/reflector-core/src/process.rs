//! The per-frame entry point every data path calls: classify, then reflect in place.
//!
//! Reading order of the crate: see the crate's documentation.

use crate::classify::{ethernet, ipv4_fast, listed, ordered};
use crate::filter::{Filter, Mode};
use crate::limit::Limiter;
use crate::protocol::stamp::{Answer, ErrorEstimate, MIN_LEN, SequenceMode, SessionTable, Times, respond};
use crate::reflect::{reflect_accepted, reflect_ito_ipv4, stamp_src_port};
use crate::signature::Signature;
use crate::testers::Testers;
use crate::verdict::{Hit, Reject};
use crate::wire::UDP_HEADER_LEN;

/// What [`Filter::process`] needs from the data path besides the frame: the times and the
/// session table of STAMP answers, the buckets of the rate limits, the testers table. A worker
/// keeps one and sets [`PathState::received`] for each frame.
pub struct PathState<'a> {
    /// When the data path received the frame (ns since the Unix epoch, UTC), if it knows.
    pub received: Option<u64>,
    /// Reads the clock (ns since the Unix epoch, UTC): the transmit time, and the receive time
    /// when [`PathState::received`] is `None`. Called only for STAMP requests and, with rate
    /// limits or a testers table, for test packets.
    pub clock: &'a mut dyn FnMut() -> u64,
    /// The clock's error estimate.
    pub error: ErrorEstimate,
    /// The per-session sequence numbers (stateful mode).
    pub sessions: &'a mut dyn SessionTable,
    /// The buckets the filter's rate limits are kept in; `None` where they are applied before
    /// the frame gets here (by the XDP program of af-xdp), so the filter's limits are not.
    pub limiter: Option<&'a Limiter>,
    /// Where the sources of test packets are recorded (answered, or held back by a limit);
    /// `None` where they are recorded before the frame gets here (by the XDP program of
    /// af-xdp), or not at all.
    pub testers: Option<&'a mut Testers>,
}

impl core::fmt::Debug for PathState<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PathState")
            .field("received", &self.received)
            .field("error", &self.error)
            .field("limiter", &self.limiter.is_some())
            .field("testers", &self.testers.is_some())
            .finish()
    }
}

/// The frame's receive time: the data path's, or the clock's now (kept as the receive time).
#[inline(always)]
fn received(stamp: &mut PathState<'_>) -> u64 {
    match stamp.received {
        Some(t) => t,
        None => *stamp.received.insert((stamp.clock)()),
    }
}

/// The test packet `hit` was classified from, recorded in the testers table at its receive
/// time: answered, or held back by a rate limit. Out of line: a data path without a table pays
/// one branch.
#[inline(never)]
fn record_tester(frame: &[u8], hit: Hit, stamp: &mut PathState<'_>, answered: bool) {
    let now = received(stamp);
    if let Some(testers) = stamp.testers.as_deref_mut() {
        testers.record(frame, &hit, now, answered);
    }
}

impl Filter {
    /// Classifies `frame` and, when it is a test packet its source may send (the allow and deny
    /// lists, the rate limits with the buckets in `stamp`), reflects it in place: STAMP
    /// requests are answered with the times and sequence number from `stamp`. Without room
    /// after the frame, a STAMP request shorter than the reflector packet is refused
    /// (`stamp_length`); [`Filter::process_in`] has the room to answer it.
    ///
    /// A rejected frame is never modified.
    #[inline(always)]
    pub fn process(&self, frame: &mut [u8], stamp: &mut PathState<'_>) -> Result<Hit, Reject> {
        let len = frame.len();
        self.process_in(frame, len, stamp)
    }

    /// [`Filter::process`] for the frame of `len` bytes at the start of `buf`, whose rest is room
    /// the answer may grow into: a short STAMP request's answer is the 41-byte reflector packet
    /// ([`crate::protocol::stamp::grow_short`]); the answer's length is [`Hit::answer_len`].
    #[inline(always)]
    pub fn process_in(&self, buf: &mut [u8], len: usize, stamp: &mut PathState<'_>) -> Result<Hit, Reject> {
        if self.stamp_on() {
            return self.process_with_stamp(buf, len, stamp);
        }
        let frame = match buf.get_mut(..len) {
            Some(frame) => frame,
            None => return Err(Reject::ShortEthernet),
        };
        self.process_as::<false>(frame, stamp)
    }

    /// [`Filter::process_in`] when STAMP is on, out of line: a filter without STAMP runs the
    /// code it ran before STAMP existed, which has no look for the STAMP port and no branch on
    /// the kind of hit (either, inlined into a worker's loop, cost every frame instructions).
    #[inline(never)]
    fn process_with_stamp(
        &self,
        buf: &mut [u8],
        len: usize,
        stamp: &mut PathState<'_>,
    ) -> Result<Hit, Reject> {
        let Some(frame) = buf.get_mut(..len) else { return Err(Reject::ShortEthernet) };
        match self.process_as::<true>(frame, stamp) {
            Ok(hit) if hit.grown() => self.answer_short(buf, len, hit, stamp),
            other => other,
        }
    }

    /// A STAMP request shorter than the reflector packet, which [`Filter::answer_stamp`] left
    /// as it came: the frame grown in `buf` to hold the 41-byte packet, then answered; refused
    /// as `stamp_length`, unchanged, when `buf` has no room for it.
    #[cold]
    #[inline(never)]
    fn answer_short(
        &self,
        buf: &mut [u8],
        len: usize,
        hit: Hit,
        stamp: &mut PathState<'_>,
    ) -> Result<Hit, Reject> {
        let Some(grown) = crate::protocol::stamp::grow_short(buf, len, &hit) else {
            return Err(Reject::StampLength);
        };
        self.answer_stamp(&mut buf[..grown], hit, stamp)?;
        Ok(hit)
    }

    /// The fast path, else the ordered checks; then the answer: a STAMP one when `STAMP` and
    /// the hit is a STAMP request, else the reflection in the filter's mode.
    #[inline(always)]
    fn process_as<const STAMP: bool>(
        &self,
        frame: &mut [u8],
        stamp: &mut PathState<'_>,
    ) -> Result<Hit, Reject> {
        if let Some(verdict) = ipv4_fast::<STAMP>(frame, self) {
            let hit = verdict?;
            self.admit(frame, hit, stamp)?;
            if STAMP && hit.is_stamp() {
                // The same hit, written as the constant it is: the answer is compiled with its
                // offsets known.
                return self.answer_stamp(frame, Hit::fast(Signature::Stamp as u8), stamp);
            }
            reflect_ito_ipv4(frame, self);
            return Ok(hit);
        }
        let eth = ethernet(frame, self)?;
        let hit = ordered::<STAMP>(frame, self, &eth)?;
        self.admit(frame, hit, stamp)?;
        if STAMP && hit.is_stamp() {
            return self.answer_ordered_stamp(frame, hit, stamp);
        }
        reflect_accepted(frame, &hit, self, self.mode, self.takes_a_hop());
        Ok(hit)
    }

    /// A test packet's source meets the lists and limits (when the filter has any) and is
    /// recorded as answered (when the data path keeps testers): two branches for a filter and a
    /// path without either.
    #[inline(always)]
    fn admit(&self, frame: &[u8], hit: Hit, stamp: &mut PathState<'_>) -> Result<(), Reject> {
        if self.gate {
            self.gate(frame, hit, stamp)?;
        }
        if stamp.testers.is_some() {
            record_tester(frame, hit, stamp, true);
        }
        Ok(())
    }

    /// The allow and deny lists, then the rate limits, for the test packet `hit` was classified
    /// from; out of line, so that a filter without them pays one branch. The time a limit is
    /// taken at is the frame's receive time (read from the clock when the data path has none,
    /// and kept as the receive time).
    #[inline(never)]
    fn gate(&self, frame: &[u8], hit: Hit, stamp: &mut PathState<'_>) -> Result<(), Reject> {
        if self.access.is_on() {
            listed(frame, &hit, self)?;
        }
        let Some(limiter) = stamp.limiter else { return Ok(()) };
        if self.source_limit.is_none() && self.total_limit.is_none() {
            return Ok(());
        }
        let now = received(stamp);
        let source = crate::testers::source_of(frame, &hit);
        if limiter.admit(source, now, self.source_limit.as_ref(), self.total_limit.as_ref()) {
            Ok(())
        } else {
            if stamp.testers.is_some() {
                record_tester(frame, hit, stamp, false);
            }
            Err(Reject::RateLimited)
        }
    }

    /// [`Filter::answer_stamp`] for a request the ordered checks found, out of line: inlined
    /// next to the fast path's, the two were merged into one that kept the offsets in registers
    /// (the fast path's are constants).
    #[inline(never)]
    fn answer_ordered_stamp(
        &self,
        frame: &mut [u8],
        hit: Hit,
        stamp: &mut PathState<'_>,
    ) -> Result<Hit, Reject> {
        self.answer_stamp(frame, hit, stamp)
    }

    /// A STAMP request becomes its answer: the fields, then the addresses and ports swapped
    /// whatever the mode (the answer goes to the sender's port, RFC 8762 §4.3). The transmit
    /// time is read last, and never before the receive time.
    #[inline(always)]
    pub(crate) fn answer_stamp(
        &self,
        frame: &mut [u8],
        hit: Hit,
        stamp: &mut PathState<'_>,
    ) -> Result<Hit, Reject> {
        // Shorter than the reflector packet: left as it came, for the caller with room to grow it
        // (`answer_short`).
        let udp_len = frame.get(hit.l4_offset() + 4..).and_then(|l| l.first_chunk::<2>());
        if udp_len.is_some_and(|l| (u16::from_be_bytes(*l) as usize) < UDP_HEADER_LEN + MIN_LEN) {
            core::hint::cold_path();
            return Ok(hit.grown_answer());
        }
        let received = match stamp.received {
            Some(t) => t,
            None => (stamp.clock)(),
        };
        let sequence = match self.stamp_sequence {
            SequenceMode::Stateless => None,
            // A copy: the table gets its address, and the hit itself stays in registers (its
            // offsets constants on the fast path) rather than being read back after the call.
            SequenceMode::Stateful => stamp.sessions.next(frame, &{ hit }, received),
        };
        let answer = Answer { format: self.stamp_timestamps, error: stamp.error, sequence };
        let sent = (stamp.clock)().max(received);
        let hop = self.stamp_takes_a_hop(stamp_src_port(frame, &hit));
        respond(frame, &hit, &answer, Times { received, sent });
        reflect_accepted(frame, &hit, self, Mode::All, hop);
        Ok(hit)
    }
}
