//! The Internet checksum (RFC 1071), for building frames and checking them.

/// Adds `data` as big-endian 16-bit words to `sum` (an odd last byte is padded with zero).
pub fn add(mut sum: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
        // Fold early so no input length can overflow the accumulator.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = words.remainder() {
        sum += (*last as u32) << 8;
    }
    sum
}

/// Folds `sum` to 16 bits and complements it.
pub fn finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// True when `header`, an IPv4 header (a multiple of 4 bytes long), carries a correct header
/// checksum: its one's-complement sum is 0xffff (RFC 1071 §1; RFC 791). Sums 4-byte words in a
/// 64-bit accumulator, which the sum of 15 words cannot overflow, then folds once; the byte
/// order of the words does not change whether the folded sum is all ones.
#[inline(always)]
pub fn ipv4_header_ok(header: &[u8]) -> bool {
    let word = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as u64;
    let (fixed, options) = header.split_at(header.len().min(20));
    // The fixed 20 bytes as five loads the compiler sees the bounds of; then any options.
    let mut sum = match <&[u8; 20]>::try_from(fixed) {
        Ok(f) => word(&f[0..4]) + word(&f[4..8]) + word(&f[8..12]) + word(&f[12..16]) + word(&f[16..20]),
        Err(_) => return false,
    };
    if !options.is_empty() {
        sum += options_sum(options);
    }
    fold_is_all_ones(sum)
}

/// The sum of IPv4 options as 4-byte words: rare, so out of line (inlined, the compiler's
/// vectorised loop cost its set-up on every header).
#[cold]
#[inline(never)]
fn options_sum(options: &[u8]) -> u64 {
    options.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as u64).sum()
}

/// Whether a sum of a header's words, taken as little-endian integers of any width up to 64 bits
/// (a carry out of 64 bits added back in), is that of a header with a right checksum: its
/// one's-complement sum is all ones, i.e. the sum is a non-zero multiple of 0xffff. Since
/// 2^16, 2^32 and 2^64 are all 1 modulo 0xffff, wider words and the end-around carry keep the
/// sum's residue, and reading bytes little-endian only multiplies it by 2^8, which does not
/// change whether it is zero (RFC 1071 §2 (B), byte order independence). A modulo by a constant
/// is a multiply and a shift, fewer steps than folding.
#[inline(always)]
pub(crate) fn fold_is_all_ones(sum: u64) -> bool {
    sum != 0 && sum.is_multiple_of(0xffff)
}

/// The header checksum of an IPv4 header whose TTL went down by one, from the checksum it had
/// (`hc`, as on the wire): RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), where the word m holding
/// the TTL became m' = m - 0x100, so ~m + m' is 0xfeff whatever m was. The form keeps a valid
/// checksum valid, including the edge cases RFC 1624 §3 names.
#[inline(always)]
pub fn ipv4_ttl_decremented(hc: u16) -> u16 {
    let sum = (!hc) as u32 + 0xfeff;
    !((sum & 0xffff) + (sum >> 16)) as u16
}

/// A header checksum (`hc`, as on the wire) after one of its 16-bit words changed from `old`
/// to `new`: RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m').
#[inline(always)]
pub fn updated(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!hc) as u32 + (!old) as u32 + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    finish(add(0, data))
}

/// The UDP checksum over the pseudo-header (RFC 768 / RFC 8200 §8.1) and `udp` (header with a
/// zero checksum field, and payload). Returns 0xffff where the sum is zero, as transmitted.
pub fn udp(src: &[u8], dst: &[u8], udp: &[u8]) -> u16 {
    let mut sum = add(0, src);
    sum = add(sum, dst);
    sum += super::wire::IPPROTO_UDP as u32;
    sum += udp.len() as u32;
    match finish(add(sum, udp)) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decremented_ttl_keeps_the_header_checksum_right() {
        // Every TTL from 1, with header words that give every kind of checksum, against the
        // checksum computed whole.
        for ttl in 1..=255u8 {
            for id in [0u16, 1, 0x00ff, 0x7fff, 0xfeff, 0xff00, 0xffff] {
                let mut h = [
                    0x45,
                    0,
                    0,
                    60,
                    (id >> 8) as u8,
                    id as u8,
                    0,
                    0,
                    ttl,
                    17,
                    0,
                    0,
                    192,
                    0,
                    2,
                    1,
                    192,
                    0,
                    2,
                    2,
                ];
                let hc = checksum(&h);
                h[10..12].copy_from_slice(&hc.to_be_bytes());
                assert!(ipv4_header_ok(&h));
                h[8] = ttl - 1;
                let updated = ipv4_ttl_decremented(hc);
                h[10..12].copy_from_slice(&updated.to_be_bytes());
                assert!(ipv4_header_ok(&h), "ttl {ttl} id {id:#x}: {hc:#x} -> {updated:#x}");
                h[10..12].copy_from_slice(&[0, 0]);
                assert_eq!(updated, checksum(&h), "ttl {ttl} id {id:#x}");
            }
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement: 220d).
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
        // A header carrying its own checksum sums to zero.
        let mut header = [0x45, 0, 0, 0x54, 0, 0, 0x40, 0, 0x40, 0x01, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let c = checksum(&header);
        header[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&header), 0);
        assert_eq!(checksum(&[0xab]), !0xab00);
        assert!(ipv4_header_ok(&header));
    }

    #[test]
    fn header_check_agrees_with_rfc1071() {
        // Headers of 20 to 60 bytes with random contents: the word-wise check says valid
        // exactly when the 16-bit checksum over the header is zero (for a non-zero header).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000 {
            let len = 20 + 4 * (i % 11);
            let mut header = [0u8; 60];
            for b in &mut header[..len] {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if i % 2 == 0 {
                // Half of them carry their correct checksum.
                header[10..12].fill(0);
                let c = checksum(&header[..len]);
                header[10..12].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(ipv4_header_ok(&header[..len]), checksum(&header[..len]) == 0, "{:?}", &header[..len]);
        }
    }
}
