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
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement: 220d).
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
        // A header carrying its own checksum sums to zero.
        let mut header = [0x45, 0, 0, 0x54, 0, 0, 0x40, 0, 0x40, 0x01, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let c = checksum(&header);
        header[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&header), 0);
        assert_eq!(checksum(&[0xab]), !0xab00);
    }
}
