//! The signature protocols: ITO (`PROBEOT`, `DATA:OT`, `LATENCY`), RFC 2544, Y.1564 and the
//! user's custom signatures, recognised by bytes in a datagram to the test port. Their answer is
//! the plain reflection (`crate::reflect`).

use super::udp::UdpMatch;
use crate::checks::{hops_left, late_checks};
use crate::filter::Filter;
use crate::signature::{Family, ITO_SIGNATURE_OFFSET, Signature};
use crate::verdict::{Hit, L3Kind, Reject};
use crate::wire::{UDP_HEADER_LEN, sig_bits, sig_const};

/// What a pre-filter must let through for the selected signatures: each one's bytes at its
/// offset in the payload (ITO, RFC 2544, Y.1564 in counter order, then the custom ones).
pub(crate) fn udp_matches(filter: &Filter) -> impl Iterator<Item = UdpMatch<'_>> {
    let fixed = Signature::ALL
        .iter()
        .filter(|sig| filter.families().contains(sig.family()))
        .filter_map(|sig| Some(UdpMatch::Payload { offset: sig.offset()?, bytes: sig.bytes()?.as_slice() }));
    let custom =
        filter.families().contains(Family::Custom).then(|| filter.custom_signatures()).into_iter().flatten();
    fixed.chain(custom.map(|c| UdpMatch::Payload { offset: c.offset() as usize, bytes: c.bytes() }))
}

/// The ordered checks' rest for a UDP datagram at `l4` (the IP packet ending at `end`) to
/// `dst_port`, from the source MAC `src` (as a little-endian word): the test port, a selected
/// signature, the OUI, a hop left, then the late checks.
#[inline(always)]
pub(crate) fn recognise(
    frame: &[u8],
    filter: &Filter,
    src: u64,
    kind: L3Kind,
    (l3, l4, end): (usize, usize, usize),
    vlan_tags: u8,
    dst_port: u16,
) -> Result<Hit, Reject> {
    if filter.port != 0 && dst_port != filter.port {
        return Err(Reject::DstPort);
    }
    let payload = &frame[l4 + UDP_HEADER_LEN..end];
    let signature = match_signature(payload, filter).ok_or(Reject::NoSignature)?;
    if filter.oui_families.contains(signature.family()) && (src & 0xff_ffff) as u32 != filter.oui_bits {
        return Err(Reject::Oui);
    }
    if filter.takes_a_hop() && hops_left(frame, kind, l3) == 0 {
        return Err(Reject::Loop);
    }
    late_checks(frame, kind, l3, l4, filter)?;
    Ok(Hit::found(signature, kind, l3, l4, vlan_tags))
}

/// The first selected signature found in `payload`: ITO, then RFC 2544, Y.1564, custom.
#[inline(always)]
fn match_signature(payload: &[u8], filter: &Filter) -> Option<Signature> {
    const PROBEOT: u64 = sig_const(b"PROBEOT");
    const DATA_OT: u64 = sig_const(b"DATA:OT");
    const LATENCY: u64 = sig_const(b"LATENCY");
    const RFC2544: u64 = sig_const(b"RFC2544");
    const Y1564: u64 = sig_const(b"Y.1564 ");
    let families = filter.families;
    if families.contains(Family::Ito) {
        match sig_bits(payload, ITO_SIGNATURE_OFFSET) {
            Some(PROBEOT) => return Some(Signature::ProbeOt),
            Some(DATA_OT) => return Some(Signature::DataOt),
            Some(LATENCY) => return Some(Signature::Latency),
            _ => {}
        }
    }
    match sig_bits(payload, 0) {
        Some(RFC2544) if families.contains(Family::Rfc2544) => return Some(Signature::Rfc2544),
        Some(Y1564) if families.contains(Family::Y1564) => return Some(Signature::Y1564),
        _ => {}
    }
    if families.contains(Family::Custom) && filter.custom_signatures().iter().any(|s| s.matches(payload)) {
        return Some(Signature::Custom);
    }
    None
}
