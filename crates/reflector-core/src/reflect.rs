//! Turning a test packet around in place.
//!
//! Swapping two fields of the same header never changes a one's-complement checksum over
//! it (RFC 1071: the sum does not depend on the order of its 16-bit words, and every field
//! swapped here is 16-bit aligned), so the IPv4 header checksum and the UDP checksum stay valid
//! and nothing is recomputed. VLAN tags are left as they are. The TTL / hop limit is too in mode
//! `all` on port 3842; everywhere else ([`Filter::takes_a_hop`]) an answer takes one off it (the
//! IPv4 header checksum updated as RFC 1624 says), which is what ends a loop between two
//! reflectors there (`docs/PACKET-RULES.md`, "Loops"; classify refuses a test packet that
//! arrives with none left). STAMP answers do only for requests from a port that is not an
//! ephemeral one ([`Filter::stamp_takes_a_hop`]).

use crate::filter::{Filter, Mode};
use crate::verdict::{Hit, L3Kind};
use crate::wire::le64;

/// Swaps the `N` bytes at `at` with the `N` bytes that follow them. Out of range is a no-op,
/// so a `Hit` applied to the wrong frame cannot panic. The size is a constant, so the swap
/// compiles to a few register moves.
#[inline(always)]
fn swap_adjacent<const N: usize>(frame: &mut [u8], at: usize) {
    if let Some(both) = frame.get_mut(at..at + 2 * N) {
        let (a, b) = both.split_at_mut(N);
        if let (Ok(a), Ok(b)) = (<&mut [u8; N]>::try_from(a), <&mut [u8; N]>::try_from(b)) {
            core::mem::swap(a, b);
        }
    }
}

/// One hop less for the IP header at `l3` of `kind`: the IPv4 TTL (and its header checksum) or
/// the IPv6 hop limit. Out of range is a no-op.
#[inline(always)]
fn take_a_hop(frame: &mut [u8], kind: L3Kind, l3: usize) {
    match kind {
        L3Kind::V4 => {
            if let Some(h) = frame.get_mut(l3 + 8..l3 + 12) {
                h[0] = h[0].wrapping_sub(1);
                let hc = crate::checksum::ipv4_ttl_decremented(u16::from_be_bytes([h[2], h[3]]));
                h[2..4].copy_from_slice(&hc.to_be_bytes());
            }
        }
        L3Kind::V6 => {
            if let Some(hops) = frame.get_mut(l3 + 7) {
                *hops = hops.wrapping_sub(1);
            }
        }
    }
}

/// Turns the headers of the frame `filter` accepted as `hit` around, in place, as `filter`
/// answers it (for a STAMP request: the headers of the answer, in mode `all`; the payload is
/// `stamp::respond`'s). The swaps by plain moves: the reference the data path's faster code
/// is tested against.
#[inline]
pub fn reflect(frame: &mut [u8], hit: &Hit, filter: &Filter) {
    let (mode, hop) = if hit.is_stamp() {
        (Mode::All, filter.stamp_takes_a_hop(stamp_src_port(frame, hit)))
    } else {
        (filter.mode, filter.takes_a_hop())
    };
    swap_adjacent::<6>(frame, 0);
    if hop {
        take_a_hop(frame, hit.l3(), hit.l3_offset());
    }
    if mode == Mode::Mac {
        return;
    }
    match hit.l3() {
        L3Kind::V4 => swap_adjacent::<4>(frame, hit.l3_offset() + 12),
        L3Kind::V6 => swap_adjacent::<16>(frame, hit.l3_offset() + 8),
    }
    if mode == Mode::All {
        swap_adjacent::<2>(frame, hit.l4_offset());
    }
}

/// The UDP source port of the STAMP request `hit` was classified from (0 out of range).
#[inline(always)]
pub(crate) fn stamp_src_port(frame: &[u8], hit: &Hit) -> u16 {
    frame.get(hit.l4_offset()..).and_then(|p| p.first_chunk::<2>()).map_or(0, |p| u16::from_be_bytes(*p))
}

/// Swaps the two 4-byte halves of the 8 bytes at `at` (one load, a rotation, one store). Out
/// of range is a no-op.
#[inline(always)]
fn swap_halves_8(frame: &mut [u8], at: usize) {
    if let Some(word) = frame.get_mut(at..).and_then(|w| w.first_chunk_mut::<8>()) {
        *word = le64(word).rotate_left(32).to_le_bytes();
    }
}

/// Destination := source, source := ours: the swap, for a frame whose destination classify
/// found to be our MAC. One load and two stores.
#[inline(always)]
fn turn_macs(macs: &mut [u8; 12], filter: &Filter) {
    let src = le64(macs.last_chunk::<8>().expect("12 > 8")) >> 16;
    let (low, high) = macs.split_first_chunk_mut::<8>().expect("12 > 8");
    *low = (src | filter.local_mac_bits << 48).to_le_bytes();
    high.copy_from_slice(&((filter.local_mac_bits >> 16) as u32).to_le_bytes());
}

/// What [`Filter::process`] does to a frame [`crate::classify`] accepted for `filter`, in
/// `mode`, taking a hop off or not: the same bytes as [`reflect`], in fewer instructions: the
/// MACs by [`turn_macs`], the IP addresses and ports as word rotations.
#[inline(always)]
pub(crate) fn reflect_accepted(frame: &mut [u8], hit: &Hit, filter: &Filter, mode: Mode, hop: bool) {
    if let Some(macs) = frame.first_chunk_mut::<12>() {
        turn_macs(macs, filter);
    }
    if hop {
        take_a_hop(frame, hit.l3(), hit.l3_offset());
    }
    if mode == Mode::Mac {
        return;
    }
    match hit.l3() {
        L3Kind::V4 => swap_halves_8(frame, hit.l3_offset() + 12),
        L3Kind::V6 => swap_adjacent::<16>(frame, hit.l3_offset() + 8),
    }
    if mode == Mode::All {
        let port_pair: Option<&mut [u8; 4]> =
            frame.get_mut(hit.l4_offset()..).and_then(|p| p.first_chunk_mut());
        if let Some(p) = port_pair {
            *p = u32::from_le_bytes(*p).rotate_left(16).to_le_bytes();
        }
    }
}

/// [`reflect_accepted`] for a frame the fast path accepted (ITO over untagged IPv4 without
/// options, at least 54 bytes): the offsets are constants, and the mode is two rotation
/// amounts (32 or 0 for the addresses, 16 or 0 for the ports) and one branch for the TTL.
#[inline(always)]
pub(crate) fn reflect_ito_ipv4(frame: &mut [u8], filter: &Filter) {
    if filter.takes_a_hop() {
        take_a_hop(frame, L3Kind::V4, 14);
    }
    let Some(b) = frame.first_chunk_mut::<38>() else { return };
    let (macs, rest) = b.split_first_chunk_mut::<12>().expect("38 > 12");
    turn_macs(macs, filter);
    // `rest` starts at byte 12: the addresses are at 26..34, the ports at 34..38.
    let (addresses, ports) = rest[14..].split_first_chunk_mut::<8>().expect("26 > 8");
    *addresses = le64(addresses).rotate_left(filter.fast.rotate_addresses).to_le_bytes();
    let ports: &mut [u8; 4] = ports.try_into().expect("4 bytes");
    *ports = u32::from_le_bytes(*ports).rotate_left(filter.fast.rotate_ports).to_le_bytes();
}
