//! The frame corpus every data path is checked against.
//!
//! Each [`Case`] is a frame, the filter it is judged with, and the verdict the packet rules
//! give. The core's tests check the verdicts and the reflected bytes; the kernel-side filters
//! (classic BPF, the generated XDP program) are checked against the same cases, so every path
//! agrees with the core on exactly these frames.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reflector_core::build::{FrameSpec, IpAddrs};
use reflector_core::{
    CustomSignature, Family, FamilySet, Filter, FilterConfig, MacAddr, Mode, Reject, Signature,
};

/// The reflector's MAC in every case.
pub const LOCAL_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
/// A NetAlly tester's MAC (OUI 00:c0:17).
pub const TESTER_MAC: MacAddr = MacAddr([0x00, 0xc0, 0x17, 0x12, 0x34, 0x56]);
/// A MAC of another vendor.
pub const OTHER_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
/// Tester IPv4 address (TEST-NET-1).
pub const TESTER_V4: [u8; 4] = [192, 0, 2, 10];
/// Reflector IPv4 address.
pub const LOCAL_V4: [u8; 4] = [192, 0, 2, 1];
/// Tester IPv6 address (documentation prefix).
pub const TESTER_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a];
/// Reflector IPv6 address.
pub const LOCAL_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];
/// The reflector's own addresses, as every corpus filter knows them.
pub const LOCAL_IPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(LOCAL_V4[0], LOCAL_V4[1], LOCAL_V4[2], LOCAL_V4[3])),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 1)),
];
/// Tester's UDP source port.
pub const TESTER_PORT: u16 = 50000;
/// The custom signature used by custom-family cases.
pub const CUSTOM_SIG: &[u8] = b"ACME-TEST";
/// Its offset in the UDP payload.
pub const CUSTOM_OFFSET: u16 = 2;

/// The 60-byte ITO `PROBEOT` frame, written out byte by byte (checksums included): tester
/// 00:c0:17:12:34:56 / 192.0.2.10:50000 to reflector 02:00:00:00:00:01 / 192.0.2.1:3842.
pub const ITO_IPV4_GOLDEN: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0xc0, 0x17, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00, //
    0x00, 0x2e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb6, 0xb3, 0xc0, 0x00, 0x02, 0x0a, 0xc0, 0x00, //
    0x02, 0x01, 0xc3, 0x50, 0x0f, 0x02, 0x00, 0x1a, 0xbe, 0xf4, 0x00, 0x01, 0x02, 0x03, 0x04, 0x50, //
    0x52, 0x4f, 0x42, 0x45, 0x4f, 0x54, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a,
];

/// The payload of an ITO frame: a 5-byte header, the signature, a 6-byte sequence field.
pub fn ito_payload(sig: &[u8; 7]) -> Vec<u8> {
    let mut p = vec![0, 1, 2, 3, 4];
    p.extend_from_slice(sig);
    p.extend_from_slice(&[0, 0, 0, 0, 0, 42]);
    p
}

/// A payload with `sig` at offset 0, followed by `extra` bytes of pattern.
pub fn head_payload(sig: &[u8], extra: usize) -> Vec<u8> {
    let mut p = sig.to_vec();
    p.extend((0..extra).map(|i| i as u8));
    p
}

/// A payload carrying [`CUSTOM_SIG`] at [`CUSTOM_OFFSET`].
pub fn custom_payload() -> Vec<u8> {
    let mut p = vec![0xaa; CUSTOM_OFFSET as usize];
    p.extend_from_slice(CUSTOM_SIG);
    p.extend_from_slice(&[1, 2, 3, 4]);
    p
}

/// Owned description of a frame; `spec()` borrows it as a [`FrameSpec`].
#[derive(Debug, Clone)]
pub struct Frame {
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// VLAN tags (TPID, TCI), outermost first.
    pub vlans: Vec<(u16, u16)>,
    /// IP addresses.
    pub ip: IpAddrs,
    /// IPv4 options.
    pub ipv4_options: Vec<u8>,
    /// IPv6 extension header types.
    pub ipv6_ext: Vec<u8>,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// An ITO `PROBEOT` probe over IPv4 from the tester to the reflector.
    pub fn ito_v4() -> Frame {
        Frame {
            dst_mac: LOCAL_MAC,
            src_mac: TESTER_MAC,
            vlans: vec![],
            ip: IpAddrs::V4 { src: TESTER_V4, dst: LOCAL_V4 },
            ipv4_options: vec![],
            ipv6_ext: vec![],
            ttl: 64,
            src_port: TESTER_PORT,
            dst_port: reflector_core::DEFAULT_PORT,
            payload: ito_payload(b"PROBEOT"),
        }
    }

    /// The same probe over IPv6.
    pub fn ito_v6() -> Frame {
        Frame { ip: IpAddrs::V6 { src: TESTER_V6, dst: LOCAL_V6 }, ..Frame::ito_v4() }
    }

    /// A STAMP request over IPv4 with a `len`-byte payload ([`stamp_payload`]), to port 862.
    pub fn stamp_v4(len: usize) -> Frame {
        Frame {
            src_mac: OTHER_MAC,
            dst_port: reflector_core::stamp::DEFAULT_STAMP_PORT,
            payload: stamp_payload(len),
            ..Frame::ito_v4()
        }
    }

    /// The same request over IPv6.
    pub fn stamp_v6(len: usize) -> Frame {
        Frame { ip: IpAddrs::V6 { src: TESTER_V6, dst: LOCAL_V6 }, ..Frame::stamp_v4(len) }
    }

    /// As a borrowed [`FrameSpec`].
    pub fn spec(&self) -> FrameSpec<'_> {
        FrameSpec {
            dst_mac: self.dst_mac,
            src_mac: self.src_mac,
            vlans: &self.vlans,
            ip: self.ip,
            ipv4_options: &self.ipv4_options,
            ipv6_ext: &self.ipv6_ext,
            ttl: self.ttl,
            src_port: self.src_port,
            dst_port: self.dst_port,
            payload: &self.payload,
        }
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let spec = self.spec();
        let mut buf = vec![0; spec.len()];
        spec.write(&mut buf).expect("corpus frames are well-formed");
        buf
    }

    /// The frame a reflector on port 3842 should send back for this test packet (not a STAMP
    /// request) in `mode`.
    pub fn reflected(&self, mode: Mode) -> Frame {
        self.turned(mode, mode != Mode::All)
    }

    /// The frame a reflector with `filter` should send back for this test packet (not a STAMP
    /// request): as `filter`'s mode says, and one hop less except in mode `all` on port 3842
    /// (docs/PACKET-RULES.md, "Loops"; written out here apart from the core's code).
    pub fn reflected_by(&self, filter: &Filter) -> Frame {
        let mode = filter.mode();
        let ttl_guard = filter.loop_guard() == reflector_core::LoopGuard::Ttl;
        self.turned(mode, ttl_guard && !(mode == Mode::All && filter.port() == reflector_core::DEFAULT_PORT))
    }

    /// The headers a reflector with `filter` should send back for this STAMP request (the
    /// payload is the responder's): addresses and ports swapped whatever the mode, and one hop
    /// less with the TTL loop guard when the request comes from a port below 32768 or the
    /// reflector's own STAMP port is 32768 or above (docs/PACKET-RULES.md, "Loops"; written out
    /// here apart from the core's code).
    pub fn stamp_answered_by(&self, filter: &Filter) -> Frame {
        let own = filter.stamp_port().expect("a filter with STAMP on");
        let hop =
            filter.loop_guard() == reflector_core::LoopGuard::Ttl && (self.src_port < 32768 || own >= 32768);
        self.turned(Mode::All, hop)
    }

    fn turned(&self, mode: Mode, hop: bool) -> Frame {
        let mut r = self.clone();
        std::mem::swap(&mut r.dst_mac, &mut r.src_mac);
        if hop {
            r.ttl -= 1;
        }
        if mode != Mode::Mac {
            r.ip = match r.ip {
                IpAddrs::V4 { src, dst } => IpAddrs::V4 { src: dst, dst: src },
                IpAddrs::V6 { src, dst } => IpAddrs::V6 { src: dst, dst: src },
            };
        }
        if mode == Mode::All {
            std::mem::swap(&mut r.src_port, &mut r.dst_port);
        }
        r
    }
}

/// Ordinary traffic a host sees, none of it a test packet, as the core's benchmarks reject it:
/// a broadcast ARP request, a TCP segment to us and a UDP datagram to another port (both from
/// a source outside the testers' OUI).
pub fn ordinary_traffic() -> [(&'static str, Vec<u8>); 3] {
    let other = MacAddr([0x52, 0x54, 0x00, 0x11, 0x22, 0x33]);
    let mut arp = Frame::ito_v4().bytes();
    arp[0..6].copy_from_slice(&[0xff; 6]);
    arp[6..12].copy_from_slice(&other.0);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let mut tcp = Frame { src_mac: other, ..Frame::ito_v4() }.bytes();
    tcp[23] = 6;
    let udp = Frame { src_mac: other, dst_port: 53, ..Frame::ito_v4() }.bytes();
    [("arp_broadcast", arp), ("tcp_to_us", tcp), ("udp_other_port", udp)]
}

/// Allow- or deny-list entries from their text (for a filter that lives as long as the test:
/// the slice is leaked).
pub fn sources(list: &[&str]) -> &'static [reflector_core::access::Source] {
    let parsed: Vec<reflector_core::access::Source> =
        list.iter().map(|s| s.parse().expect("a valid list entry")).collect();
    Box::leak(parsed.into_boxed_slice())
}

/// The default filter with these allow and deny lists.
pub fn filter_with_lists(allow: &[&str], deny: &[&str]) -> Filter {
    let (allow, deny) = (sources(allow), sources(deny));
    filter_with(|c| {
        c.allow = allow;
        c.deny = deny;
    })
}

/// The default filter, adjusted by `f`.
pub fn filter_with(f: impl FnOnce(&mut FilterConfig<'static>)) -> Filter {
    static CUSTOM: std::sync::OnceLock<[CustomSignature; 1]> = std::sync::OnceLock::new();
    let custom = CUSTOM.get_or_init(|| [CustomSignature::new(CUSTOM_OFFSET, CUSTOM_SIG).unwrap()]);
    let mut config = FilterConfig { local_ips: &LOCAL_IPS, ..FilterConfig::new(LOCAL_MAC) };
    f(&mut config);
    if config.families.contains(Family::Custom) && config.custom.is_empty() {
        config.custom = custom;
    }
    Filter::new(&config).expect("corpus filters are valid")
}

/// The default filter (port 3842, ITO + RFC 2544 + Y.1564, OUI 00:c0:17 for ITO, mode all,
/// our addresses [`LOCAL_IPS`]).
pub fn default_filter() -> Filter {
    filter_with(|_| {})
}

/// The default filter with the STAMP family (port 862, stateless, NTP timestamps).
pub fn stamp_filter() -> Filter {
    filter_with(|c| c.families.insert(Family::Stamp))
}

/// A STAMP Session-Sender payload of `len` bytes (RFC 8762 §4.2.1): sequence number 0x01020304,
/// an NTP timestamp, error estimate 0x8105 (synchronised), SSID 0xbeef (RFC 8972), zeros to 44,
/// then bytes `0x40 + i` (TLVs or padding, returned as received). Shorter lengths cut it.
pub fn stamp_payload(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(44)];
    p[0..4].copy_from_slice(&[1, 2, 3, 4]);
    p[4..12].copy_from_slice(&[0xed, 0x0b, 0x5e, 0x80, 0x12, 0x34, 0x56, 0x78]);
    p[12..14].copy_from_slice(&0x8105u16.to_be_bytes());
    p[14..16].copy_from_slice(&0xbeefu16.to_be_bytes());
    for (i, b) in p.iter_mut().enumerate().skip(44) {
        *b = 0x40u8.wrapping_add(i as u8);
    }
    p.truncate(len);
    p
}

/// STAMP requests the STAMP filter ([`stamp_filter`]) answers: IPv4, IPv6, a VLAN tag, and
/// 41-, 44- and 1400-byte payloads.
pub fn stamp_golden() -> Vec<Case> {
    let s = stamp_filter;
    let ok = Ok(Signature::Stamp);
    vec![
        case("stamp_v4_44", Frame::stamp_v4(44), s(), ok),
        case("stamp_v4_41", Frame::stamp_v4(41), s(), ok),
        case("stamp_v4_1400", Frame::stamp_v4(1400), s(), ok),
        case("stamp_v6_44", Frame::stamp_v6(44), s(), ok),
        case("stamp_v6_1400", Frame::stamp_v6(1400), s(), ok),
        case("stamp_v4_vlan", Frame { vlans: vec![(0x8100, 100)], ..Frame::stamp_v4(44) }, s(), ok),
        case("stamp_v6_vlan_43", Frame { vlans: vec![(0x8100, 100)], ..Frame::stamp_v6(43) }, s(), ok),
        // From a port below 32768 (another reflector's, or a TWAMP-Light sender's such as
        // twampy's 20000): answered a hop less.
        case("stamp_v4_from_port_863", Frame { src_port: 863, ..Frame::stamp_v4(44) }, s(), ok),
        case(
            "stamp_v4_from_port_863_port_only",
            Frame { src_port: 863, ..Frame::stamp_v4(44) },
            filter_with(|c| {
                c.families.insert(Family::Stamp);
                c.loop_guard = reflector_core::LoopGuard::PortOnly;
            }),
            ok,
        ),
        case(
            "stamp_v6_options_from_port_20000",
            Frame { src_port: 20000, ipv6_ext: vec![60], ..Frame::stamp_v6(48) },
            s(),
            ok,
        ),
        case(
            "stamp_v4_options_from_port_20000",
            Frame { src_port: 20000, ipv4_options: vec![1, 1, 1, 0], ..Frame::stamp_v4(44) },
            s(),
            ok,
        ),
    ]
}

/// One frame, the filter it is judged with, and the verdict the rules give.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique name.
    pub name: String,
    /// The frame's bytes.
    pub bytes: Vec<u8>,
    /// The frame's description, when it was built (raw-byte cases have none).
    pub frame: Option<Frame>,
    /// The filter.
    pub filter: Filter,
    /// What the rules say.
    pub expect: Result<Signature, Reject>,
}

fn case(name: &str, frame: Frame, filter: Filter, expect: Result<Signature, Reject>) -> Case {
    Case { name: name.into(), bytes: frame.bytes(), frame: Some(frame), filter, expect }
}

fn raw(name: &str, bytes: Vec<u8>, expect: Reject) -> Case {
    Case { name: name.into(), bytes, frame: None, filter: default_filter(), expect: Err(expect) }
}

/// Frames the default rules (or the filter named with them) reflect.
pub fn golden() -> Vec<Case> {
    use Signature::*;
    let d = default_filter;
    let all = || {
        filter_with(|c| {
            c.families =
                FamilySet::from_iter_families(&[Family::Ito, Family::Rfc2544, Family::Y1564, Family::Custom])
        })
    };
    let v4 = Frame::ito_v4;
    let v6 = Frame::ito_v6;
    let other = |p: Vec<u8>| Frame { src_mac: OTHER_MAC, payload: p, ..v4() };
    vec![
        case("ito_v4_probeot", v4(), d(), Ok(ProbeOt)),
        case("ito_v4_data_ot", Frame { payload: ito_payload(b"DATA:OT"), ..v4() }, d(), Ok(DataOt)),
        case("ito_v4_latency", Frame { payload: ito_payload(b"LATENCY"), ..v4() }, d(), Ok(Latency)),
        case("ito_v4_options", Frame { ipv4_options: vec![1, 1, 1, 0], ..v4() }, d(), Ok(ProbeOt)),
        case("ito_v4_max_options", Frame { ipv4_options: vec![1; 40], ..v4() }, d(), Ok(ProbeOt)),
        case("ito_v6", v6(), d(), Ok(ProbeOt)),
        case("ito_v6_hop_by_hop", Frame { ipv6_ext: vec![0], ..v6() }, d(), Ok(ProbeOt)),
        case("ito_v6_three_ext", Frame { ipv6_ext: vec![0, 60, 43], ..v6() }, d(), Ok(ProbeOt)),
        case("ito_v4_vlan", Frame { vlans: vec![(0x8100, 100)], ..v4() }, d(), Ok(ProbeOt)),
        case("ito_v4_qinq", Frame { vlans: vec![(0x88a8, 200), (0x8100, 100)], ..v4() }, d(), Ok(ProbeOt)),
        case("ito_v4_9100", Frame { vlans: vec![(0x9100, 7)], ..v4() }, d(), Ok(ProbeOt)),
        case("ito_v6_qinq", Frame { vlans: vec![(0x88a8, 200), (0x8100, 100)], ..v6() }, d(), Ok(ProbeOt)),
        // One hop left: answered in every mode (modes `mac` and `mac-ip` leave none).
        case("ito_v4_last_hop", Frame { ttl: 1, ..v4() }, d(), Ok(ProbeOt)),
        // `--loop-guard port-only`: the TTL untouched in every mode, none left answered too.
        case(
            "ito_v4_mac_port_only_no_hops_left",
            Frame { ttl: 0, ..v4() },
            filter_with(|c| {
                c.mode = Mode::Mac;
                c.loop_guard = reflector_core::LoopGuard::PortOnly;
            }),
            Ok(ProbeOt),
        ),
        case(
            "rfc2544_v6_mac_ip_port_7000_port_only",
            Frame { dst_port: 7000, ..Frame { ip: v6().ip, ..other(head_payload(b"RFC2544", 20)) } },
            filter_with(|c| {
                c.mode = Mode::MacIp;
                c.port = 7000;
                c.loop_guard = reflector_core::LoopGuard::PortOnly;
            }),
            Ok(Rfc2544),
        ),
        case("ito_v6_last_hop", Frame { ttl: 1, ipv6_ext: vec![0], ..v6() }, d(), Ok(ProbeOt)),
        case(
            "rfc2544_v4_vlan_options_last_hop",
            Frame {
                ttl: 1,
                vlans: vec![(0x8100, 9)],
                ipv4_options: vec![1, 1, 1, 0],
                ..other(head_payload(b"RFC2544", 8))
            },
            d(),
            Ok(Rfc2544),
        ),
        case("rfc2544_v4", other(head_payload(b"RFC2544", 20)), d(), Ok(Rfc2544)),
        case("rfc2544_v4_minimal", other(head_payload(b"RFC2544", 0)), d(), Ok(Rfc2544)),
        case("y1564_v4", other(head_payload(b"Y.1564 ", 20)), d(), Ok(Y1564)),
        case(
            "y1564_v6",
            Frame { src_mac: OTHER_MAC, payload: head_payload(b"Y.1564 ", 30), ..v6() },
            d(),
            Ok(Y1564),
        ),
        case("custom_v4", other(custom_payload()), all(), Ok(Custom)),
        case("ito_any_port", Frame { dst_port: 7, ..v4() }, filter_with(|c| c.port = 0), Ok(ProbeOt)),
        case(
            "ito_no_oui_filter",
            Frame { src_mac: OTHER_MAC, ..v4() },
            filter_with(|c| c.oui = None),
            Ok(ProbeOt),
        ),
        case(
            "rfc2544_oui_scoped",
            Frame { payload: head_payload(b"RFC2544", 4), ..v4() },
            filter_with(|c| c.oui_families = FamilySet::from_iter_families(&[Family::Ito, Family::Rfc2544])),
            Ok(Rfc2544),
        ),
        case(
            "jumbo_v4",
            Frame {
                payload: {
                    let mut p = ito_payload(b"PROBEOT");
                    p.resize(8972, 0x5a);
                    p
                },
                ..v4()
            },
            d(),
            Ok(ProbeOt),
        ),
    ]
}

/// Builds a [`FamilySet`] from a list (a helper for case tables).
pub trait FromFamilies {
    /// The set holding `families`.
    fn from_iter_families(families: &[Family]) -> FamilySet;
}

impl FromFamilies for FamilySet {
    fn from_iter_families(families: &[Family]) -> FamilySet {
        let mut set = FamilySet::EMPTY;
        families.iter().for_each(|f| set.insert(*f));
        set
    }
}

fn set_byte(mut bytes: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
    bytes[at] = value;
    bytes
}

/// Frames the rules reject, at least one per [`Reject`] reason.
pub fn rejects() -> Vec<Case> {
    use Reject::*;
    let d = default_filter;
    let v4 = Frame::ito_v4;
    let v6 = Frame::ito_v6;
    let g = ITO_IPV4_GOLDEN.to_vec();
    let v6b = v6().bytes();
    let mut cases = vec![
        raw("empty", vec![], ShortEthernet),
        raw("eth_13_bytes", g[..13].to_vec(), ShortEthernet),
        case("dst_mac_other", Frame { dst_mac: OTHER_MAC, ..v4() }, d(), Err(DstMac)),
        case("dst_mac_broadcast", Frame { dst_mac: MacAddr::BROADCAST, ..v4() }, d(), Err(DstMac)),
        case(
            "src_mac_multicast",
            Frame { src_mac: MacAddr([0x01, 0, 0x5e, 0, 0, 1]), ..v4() },
            d(),
            Err(SrcMacGroup),
        ),
        case("src_mac_broadcast", Frame { src_mac: MacAddr::BROADCAST, ..v4() }, d(), Err(SrcMacGroup)),
        case("src_mac_zero", Frame { src_mac: MacAddr::ZERO, ..v4() }, d(), Err(SrcMacZero)),
        case("src_mac_own", Frame { src_mac: LOCAL_MAC, ..v4() }, d(), Err(SrcMacOwn)),
        case(
            "three_vlan_tags",
            Frame { vlans: vec![(0x88a8, 1), (0x8100, 2), (0x8100, 3)], ..v4() },
            d(),
            Err(VlanDepth),
        ),
        case("arp", Frame { ..v4() }, d(), Err(NotIp)),
        case("ipv4_version_5", v4(), d(), Err(Ipv4Header)),
        case("ipv4_ihl_4", v4(), d(), Err(Ipv4Header)),
        case("ipv4_ihl_beyond_frame", v4(), d(), Err(ShortIpv4)),
        case("ipv4_total_len_long", v4(), d(), Err(Ipv4Length)),
        case("ipv4_total_len_short", v4(), d(), Err(Ipv4Length)),
        case("ipv4_first_fragment", v4(), d(), Err(Ipv4Fragment)),
        case("ipv4_later_fragment", v4(), d(), Err(Ipv4Fragment)),
        case("ipv4_tcp", v4(), d(), Err(NotUdp)),
        case("ipv6_version_4", v6(), d(), Err(Ipv6Header)),
        case("ipv6_payload_len_long", v6(), d(), Err(Ipv6Length)),
        case("ipv6_jumbogram", v6(), d(), Err(Ipv6Length)),
        case("ipv6_fragment_header", Frame { ipv6_ext: vec![44], ..v6() }, d(), Err(Ipv6Fragment)),
        case("ipv6_ext_after_hbh_fragment", Frame { ipv6_ext: vec![0, 44], ..v6() }, d(), Err(Ipv6Fragment)),
        case("ipv6_five_ext", Frame { ipv6_ext: vec![0, 60, 43, 60, 60], ..v6() }, d(), Err(Ipv6ExtDepth)),
        case("ipv6_hop_by_hop_not_first", Frame { ipv6_ext: vec![60, 0], ..v6() }, d(), Err(Ipv6Ext)),
        case("ipv6_ext_len_beyond", Frame { ipv6_ext: vec![60], ..v6() }, d(), Err(Ipv6Ext)),
        case("ipv6_tcp", v6(), d(), Err(NotUdp)),
        case(
            "ipv4_src_zero",
            Frame { ip: IpAddrs::V4 { src: [0; 4], dst: LOCAL_V4 }, ..v4() },
            d(),
            Err(SrcIp),
        ),
        case(
            "ipv4_src_multicast",
            Frame { ip: IpAddrs::V4 { src: [239, 1, 1, 1], dst: LOCAL_V4 }, ..v4() },
            d(),
            Err(SrcIp),
        ),
        case(
            "ipv4_src_broadcast",
            Frame { ip: IpAddrs::V4 { src: [255; 4], dst: LOCAL_V4 }, ..v4() },
            d(),
            Err(SrcIp),
        ),
        case(
            "ipv4_dst_broadcast",
            Frame { ip: IpAddrs::V4 { src: TESTER_V4, dst: [255; 4] }, ..v4() },
            d(),
            Err(DstIp),
        ),
        case(
            "ipv4_dst_multicast",
            Frame { ip: IpAddrs::V4 { src: TESTER_V4, dst: [224, 0, 0, 251] }, ..v4() },
            d(),
            Err(DstIp),
        ),
        case(
            "ipv4_dst_zero",
            Frame { ip: IpAddrs::V4 { src: TESTER_V4, dst: [0; 4] }, ..v4() },
            d(),
            Err(DstIp),
        ),
        case(
            "ipv6_src_unspecified",
            Frame { ip: IpAddrs::V6 { src: [0; 16], dst: LOCAL_V6 }, ..v6() },
            d(),
            Err(SrcIp),
        ),
        case(
            "ipv6_src_multicast",
            Frame { ip: IpAddrs::V6 { src: mcast6(), dst: LOCAL_V6 }, ..v6() },
            d(),
            Err(SrcIp),
        ),
        case(
            "ipv6_dst_multicast",
            Frame { ip: IpAddrs::V6 { src: TESTER_V6, dst: mcast6() }, ..v6() },
            d(),
            Err(DstIp),
        ),
        case("udp_len_long", v4(), d(), Err(UdpLength)),
        case("udp_len_short", v4(), d(), Err(UdpLength)),
        case("wrong_port", Frame { dst_port: 3843, ..v4() }, d(), Err(DstPort)),
        case("stamp_family_off", Frame::stamp_v4(44), d(), Err(DstPort)),
        // Under the 14 bytes of a TWAMP-Light sender's packet; under the 41 of the reflector
        // packet when short requests are refused.
        case("stamp_13_bytes", Frame::stamp_v4(13), stamp_filter(), Err(StampLength)),
        case(
            "stamp_40_bytes_refused",
            Frame::stamp_v4(40),
            filter_with(|c| {
                c.families.insert(Family::Stamp);
                c.stamp_short = reflector_core::StampShort::Refuse;
            }),
            Err(StampLength),
        ),
        case(
            "stamp_from_stamp_port",
            Frame { src_port: 862, ..Frame::stamp_v4(44) },
            stamp_filter(),
            Err(Loop),
        ),
        // From a port below 32768 its answer would take a hop: with none left, a loop (two
        // STAMP reflectors on 862 and 863 stop so).
        case(
            "stamp_from_port_863_no_hops_left",
            Frame { src_port: 863, ttl: 0, ..Frame::stamp_v4(44) },
            stamp_filter(),
            Err(Loop),
        ),
        case(
            "stamp_v6_from_port_862_no_hops_left",
            Frame { src_port: 862, dst_port: 863, ttl: 0, ..Frame::stamp_v6(44) },
            filter_with(|c| {
                c.families.insert(Family::Stamp);
                c.stamp_port = 863;
            }),
            Err(Loop),
        ),
        case(
            "stamp_to_ephemeral_port_no_hops_left",
            Frame { ttl: 0, dst_port: 40000, ..Frame::stamp_v4(44) },
            filter_with(|c| {
                c.families.insert(Family::Stamp);
                c.stamp_port = 40000;
            }),
            Err(Loop),
        ),
        // IPv6 without a UDP checksum (RFC 8200 §8.1): the checksum zeroed below.
        case("ito_v6_udp_checksum_zero", v6(), d(), Err(UdpChecksum)),
        case("stamp_v6_udp_checksum_zero", Frame::stamp_v6(44), stamp_filter(), Err(UdpChecksum)),
        case(
            "stamp_from_own_address",
            Frame { ip: IpAddrs::V4 { src: LOCAL_V4, dst: LOCAL_V4 }, ..Frame::stamp_v4(44) },
            stamp_filter(),
            Err(SrcIpOwn),
        ),
        case(
            "stamp_to_broadcast",
            Frame { ip: IpAddrs::V4 { src: TESTER_V4, dst: [255; 4] }, ..Frame::stamp_v4(44) },
            stamp_filter(),
            Err(DstIp),
        ),
        case("no_signature", Frame { payload: ito_payload(b"PROBEOX"), ..v4() }, d(), Err(NoSignature)),
        case(
            "probeot_at_offset_0",
            Frame { payload: head_payload(b"PROBEOT", 12), ..v4() },
            d(),
            Err(NoSignature),
        ),
        case(
            "rfc2544_at_offset_5",
            Frame { payload: ito_payload(b"RFC2544"), ..v4() },
            d(),
            Err(NoSignature),
        ),
        case(
            "ito_payload_11_bytes",
            Frame { payload: ito_payload(b"PROBEOT")[..11].to_vec(), ..v4() },
            d(),
            Err(NoSignature),
        ),
        case(
            "family_not_selected",
            Frame { src_mac: OTHER_MAC, payload: head_payload(b"RFC2544", 4), ..v4() },
            filter_with(|c| c.families = FamilySet::only(Family::Ito)),
            Err(NoSignature),
        ),
        case("custom_not_selected", Frame { payload: custom_payload(), ..v4() }, d(), Err(NoSignature)),
        case("ito_wrong_oui", Frame { src_mac: OTHER_MAC, ..v4() }, d(), Err(Oui)),
        case("ito_wrong_oui_v6", Frame { src_mac: OTHER_MAC, ..v6() }, d(), Err(Oui)),
        case(
            "ipv4_src_this_network",
            Frame { ip: IpAddrs::V4 { src: [0, 1, 2, 3], dst: LOCAL_V4 }, ..v4() },
            d(),
            Err(SrcIp),
        ),
        case(
            "ipv4_src_loopback",
            Frame { ip: IpAddrs::V4 { src: [127, 0, 0, 1], dst: LOCAL_V4 }, ..v4() },
            d(),
            Err(SrcIp),
        ),
        case(
            "ipv4_dst_loopback",
            Frame { ip: IpAddrs::V4 { src: TESTER_V4, dst: [127, 3, 2, 1] }, ..v4() },
            d(),
            Err(DstIp),
        ),
        case(
            "ipv6_src_loopback",
            Frame { ip: IpAddrs::V6 { src: v6_loopback(), dst: LOCAL_V6 }, ..v6() },
            d(),
            Err(SrcIp),
        ),
        case(
            "ipv6_src_v4_mapped",
            Frame { ip: IpAddrs::V6 { src: v4_mapped(TESTER_V4), dst: LOCAL_V6 }, ..v6() },
            d(),
            Err(SrcIp),
        ),
        case(
            "ipv6_dst_v4_mapped",
            Frame { ip: IpAddrs::V6 { src: TESTER_V6, dst: v4_mapped(LOCAL_V4) }, ..v6() },
            d(),
            Err(DstIp),
        ),
        // Another reflector's answer: from the test port, or from the port it was sent to.
        case("ito_from_test_port", Frame { src_port: 3842, ..v4() }, d(), Err(Loop)),
        case("ito_from_test_port_v6", Frame { src_port: 3842, ..v6() }, d(), Err(Loop)),
        case(
            "rfc2544_same_ports",
            Frame { src_port: 7000, dst_port: 7000, ..other_v4(head_payload(b"RFC2544", 20)) },
            filter_with(|c| c.port = 0),
            Err(Loop),
        ),
        case(
            "rfc2544_from_3842_any_port",
            Frame { src_port: 3842, dst_port: 5000, ..other_v4(head_payload(b"RFC2544", 20)) },
            filter_with(|c| c.port = 0),
            Err(Loop),
        ),
        case(
            "ito_v4_vlan_loop",
            Frame { src_port: 3842, vlans: vec![(0x8100, 100)], ..v4() },
            d(),
            Err(Loop),
        ),
        // Answers take a hop off but in mode `all` on 3842: one with none left is a loop.
        case("ito_no_hops_left_any_port", Frame { ttl: 0, ..v4() }, filter_with(|c| c.port = 0), Err(Loop)),
        case(
            "rfc2544_no_hops_left_port_7000_v6",
            Frame {
                ttl: 0,
                dst_port: 7000,
                ..Frame { ip: v6().ip, ..other_v4(head_payload(b"RFC2544", 20)) }
            },
            filter_with(|c| c.port = 7000),
            Err(Loop),
        ),
        case(
            "ito_no_hops_left_mac",
            Frame { ttl: 0, ..v4() },
            filter_with(|c| c.mode = Mode::Mac),
            Err(Loop),
        ),
        case(
            "ito_no_hops_left_mac_ip_v6",
            Frame { ttl: 0, ..v6() },
            filter_with(|c| c.mode = Mode::MacIp),
            Err(Loop),
        ),
        case(
            "rfc2544_no_hops_left_vlan_options",
            Frame {
                ttl: 0,
                vlans: vec![(0x8100, 7)],
                ipv4_options: vec![1, 1, 1, 0],
                ..other_v4(head_payload(b"RFC2544", 20))
            },
            filter_with(|c| c.mode = Mode::MacIp),
            Err(Loop),
        ),
        case(
            "ito_from_own_ip",
            Frame { ip: IpAddrs::V4 { src: LOCAL_V4, dst: TESTER_V4 }, ..v4() },
            d(),
            Err(SrcIpOwn),
        ),
        case(
            "ito_from_own_ip_v6",
            Frame { ip: IpAddrs::V6 { src: LOCAL_V6, dst: TESTER_V6 }, ..v6() },
            d(),
            Err(SrcIpOwn),
        ),
        case(
            "rfc2544_from_own_ip_options",
            Frame {
                ip: IpAddrs::V4 { src: LOCAL_V4, dst: TESTER_V4 },
                ipv4_options: vec![1, 1, 1, 0],
                ..other_v4(head_payload(b"RFC2544", 20))
            },
            d(),
            Err(SrcIpOwn),
        ),
        case("ipv4_bad_checksum", v4(), d(), Err(Ipv4Checksum)),
        case(
            "ipv4_bad_checksum_options",
            Frame { ipv4_options: vec![1, 1, 1, 0], ..v4() },
            d(),
            Err(Ipv4Checksum),
        ),
        case("ipv4_bad_checksum_vlan", Frame { vlans: vec![(0x8100, 100)], ..v4() }, d(), Err(Ipv4Checksum)),
        case("rfc2544_bad_checksum", other_v4(head_payload(b"RFC2544", 20)), d(), Err(Ipv4Checksum)),
        // Who may test: the tester's address or MAC denied, or not on the allow list.
        case("src_denied_ip", v4(), filter_with_lists(&[], &["192.0.2.10"]), Err(SrcDenied)),
        case("src_denied_mac", v6(), filter_with_lists(&[], &["00:c0:17:12:34:56"]), Err(SrcDenied)),
        case(
            "src_denied_in_an_allowed_prefix",
            v4(),
            filter_with_lists(&["192.0.2.0/24"], &["192.0.2.8/29"]),
            Err(SrcDenied),
        ),
        case("src_not_allowed_v6", v6(), filter_with_lists(&["192.0.2.0/24"], &[]), Err(SrcNotAllowed)),
        case(
            "src_not_allowed_v4",
            v4(),
            filter_with_lists(&["2001:db8::/32", "198.51.100.0/24"], &[]),
            Err(SrcNotAllowed),
        ),
    ];
    // Byte-level mutations that a builder cannot express.
    let l3 = 14;
    let mutate = |cases: &mut Vec<Case>, name: &str, bytes: Vec<u8>| {
        let c = cases.iter_mut().find(|c| c.name == name).expect("named case exists");
        c.bytes = bytes;
        c.frame = None;
    };
    mutate(&mut cases, "arp", set_byte(g.clone(), 13, 0x06));
    mutate(&mut cases, "ipv4_version_5", set_byte(g.clone(), l3, 0x55));
    mutate(&mut cases, "ipv4_ihl_4", set_byte(g.clone(), l3, 0x44));
    mutate(&mut cases, "ipv4_ihl_beyond_frame", set_byte(g.clone(), l3, 0x4f));
    mutate(&mut cases, "ipv4_total_len_long", set_byte(g.clone(), l3 + 3, 0x2f));
    mutate(&mut cases, "ipv4_total_len_short", set_byte(g.clone(), l3 + 3, 19));
    mutate(&mut cases, "ipv4_first_fragment", set_byte(g.clone(), l3 + 6, 0x20)); // MF
    mutate(&mut cases, "ipv4_later_fragment", set_byte(g.clone(), l3 + 7, 0x10)); // offset 16
    mutate(&mut cases, "ipv4_tcp", set_byte(g.clone(), l3 + 9, 6));
    mutate(&mut cases, "ipv6_version_4", set_byte(v6b.clone(), l3, 0x40));
    mutate(&mut cases, "ipv6_payload_len_long", set_byte(v6b.clone(), l3 + 5, v6b[l3 + 5] + 1));
    mutate(&mut cases, "ipv6_jumbogram", set_byte(set_byte(v6b.clone(), l3 + 4, 0), l3 + 5, 0));
    mutate(&mut cases, "ipv6_tcp", set_byte(v6b.clone(), l3 + 6, 6));
    let mut ext = Frame { ipv6_ext: vec![60], ..v6() }.bytes();
    ext[l3 + 40 + 1] = 200; // extension header longer than the payload
    mutate(&mut cases, "ipv6_ext_len_beyond", ext);
    // A wrong IPv4 header checksum: its low byte off by one (the header starts after the tags).
    for (name, l3) in [
        ("ipv4_bad_checksum", 14),
        ("ipv4_bad_checksum_options", 14),
        ("ipv4_bad_checksum_vlan", 18),
        ("rfc2544_bad_checksum", 14),
    ] {
        let mut bytes = cases.iter().find(|c| c.name == name).expect("named case exists").bytes.clone();
        bytes[l3 + 11] ^= 1;
        mutate(&mut cases, name, bytes);
    }
    for (name, l4) in [("ito_v6_udp_checksum_zero", 54), ("stamp_v6_udp_checksum_zero", 54)] {
        let mut bytes = cases.iter().find(|c| c.name == name).expect("named case exists").bytes.clone();
        bytes[l4 + 6..l4 + 8].fill(0);
        mutate(&mut cases, name, bytes);
    }
    mutate(&mut cases, "udp_len_long", set_byte(g.clone(), 34 + 5, 27));
    mutate(&mut cases, "udp_len_short", set_byte(g.clone(), 34 + 5, 25));

    // One byte short at every header boundary (the frame cut just before it ends).
    let tagged = Frame { vlans: vec![(0x88a8, 1), (0x8100, 2)], ..v4() }.bytes();
    let hbh = Frame { ipv6_ext: vec![0], ..v6() }.bytes();
    for (name, bytes, len, reason) in [
        ("cut_ethernet", &g, 13, ShortEthernet),
        ("cut_first_vlan", &tagged, 17, ShortVlan),
        ("cut_second_vlan", &tagged, 21, ShortVlan),
        ("cut_ipv4_header", &g, 33, ShortIpv4),
        ("cut_ipv4_header_tagged", &tagged, 41, ShortIpv4),
        ("cut_ipv4_payload", &g, 59, Ipv4Length),
        ("cut_ipv6_header", &v6b, 53, ShortIpv6),
        ("cut_ipv6_payload", &v6b, v6b.len() - 1, Ipv6Length),
        ("cut_ipv6_ext", &hbh, hbh.len() - 1, Ipv6Length),
    ] {
        cases.push(raw(name, bytes[..len].to_vec(), reason));
    }
    // UDP header cut short: IP lengths agree with a 7-byte UDP "header".
    let mut short_udp = g[..41].to_vec();
    short_udp[l3 + 3] = 27; // total length 20 + 7
    cases.push(raw("cut_udp_header", short_udp, ShortUdp));
    let mut short_udp6 = v6b[..61].to_vec();
    short_udp6[l3 + 4] = 0;
    short_udp6[l3 + 5] = 7;
    cases.push(raw("cut_udp_header_v6", short_udp6, ShortUdp));
    cases
}

fn v6_loopback() -> [u8; 16] {
    let mut a = [0u8; 16];
    a[15] = 1;
    a
}

fn v4_mapped(v4: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[10..12].copy_from_slice(&[0xff, 0xff]);
    a[12..].copy_from_slice(&v4);
    a
}

fn other_v4(payload: Vec<u8>) -> Frame {
    Frame { src_mac: OTHER_MAC, payload, ..Frame::ito_v4() }
}

fn mcast6() -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xff;
    a[1] = 0x02;
    a[15] = 1;
    a
}

/// STAMP / TWAMP-Light requests shorter than the 41-byte reflector packet, which the STAMP
/// filter answers with it (a longer frame): twampy's default 14 bytes and its mixed 22, over
/// IPv4 and IPv6, behind a VLAN tag, with IPv4 options, with IPv6 extension headers, from a
/// port below 32768 (the answer a hop less), and 40 bytes (one short).
pub fn stamp_short() -> Vec<Case> {
    let s = stamp_filter;
    let ok = Ok(Signature::Stamp);
    vec![
        case("stamp_short_v4_14", Frame::stamp_v4(14), s(), ok),
        case("stamp_short_v4_22", Frame::stamp_v4(22), s(), ok),
        case("stamp_short_v4_40", Frame::stamp_v4(40), s(), ok),
        case("stamp_short_v6_14", Frame::stamp_v6(14), s(), ok),
        case("stamp_short_v6_22_ext", Frame { ipv6_ext: vec![60], ..Frame::stamp_v6(22) }, s(), ok),
        case("stamp_short_v4_vlan_22", Frame { vlans: vec![(0x8100, 100)], ..Frame::stamp_v4(22) }, s(), ok),
        case(
            "stamp_short_v4_options_14",
            Frame { ipv4_options: vec![1, 1, 1, 0], ..Frame::stamp_v4(14) },
            s(),
            ok,
        ),
        case("stamp_short_v4_from_port_20000", Frame { src_port: 20000, ..Frame::stamp_v4(14) }, s(), ok),
    ]
}

/// Every case: golden, STAMP (short ones too) and reject.
pub fn corpus() -> Vec<Case> {
    let mut all = golden();
    all.extend(stamp_golden());
    all.extend(stamp_short());
    all.extend(rejects());
    all
}

/// A small deterministic generator (xorshift64*), so random tests replay exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is mapped to a fixed non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A corpus frame with a few random bytes changed, or cut, or extended: near-misses that
/// exercise every check. Deterministic in `rng`.
pub fn mutated(rng: &mut Rng, corpus: &[Case]) -> Vec<u8> {
    let mut bytes = corpus[rng.below(corpus.len())].bytes.clone();
    match rng.below(4) {
        0 if !bytes.is_empty() => bytes.truncate(rng.below(bytes.len())),
        1 => bytes.extend((0..rng.below(8)).map(|_| rng.next_u64() as u8)),
        _ => {
            for _ in 0..=rng.below(3) {
                if !bytes.is_empty() {
                    // Mostly the header bytes, where the decisions are.
                    let at = rng.below(bytes.len().min(80));
                    bytes[at] = rng.next_u64() as u8;
                }
            }
        }
    }
    bytes
}
