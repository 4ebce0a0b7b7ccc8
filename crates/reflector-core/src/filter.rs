//! The validated filter configuration that classification runs against.

use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;

use crate::access::{Access, ListsError, Source, Verdict};
use crate::limit::Rate;
use crate::protocol::stamp::settings::{
    DEFAULT_STAMP_PORT, MIN_LEN, MIN_REQUEST_LEN, SequenceMode, TimestampFormat,
};
use crate::signature::{Family, FamilySet, ITO_BY_SLOT};
use crate::wire::MacAddr;

/// Default UDP destination port of NetAlly / Fluke ITO test traffic.
pub const DEFAULT_PORT: u16 = 3842;
/// Default source OUI for the ITO family (NetAlly).
pub const DEFAULT_OUI: [u8; 3] = [0x00, 0xc0, 0x17];
/// How many user-defined signatures a filter holds.
pub const MAX_CUSTOM_SIGNATURES: usize = 8;
/// Longest user-defined signature, in bytes.
pub const MAX_SIGNATURE_LEN: usize = 32;
/// How many of the interface's own addresses of each IP version a filter holds.
pub const MAX_LOCAL_ADDRESSES: usize = 8;
/// Largest offset of a user-defined signature in the UDP payload (a 9000-byte jumbo frame's payload).
const MAX_SIGNATURE_OFFSET: u16 = 8972;

/// What a reflection swaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Ethernet source and destination only.
    Mac,
    /// Ethernet and IP addresses.
    MacIp,
    /// Ethernet and IP addresses and UDP ports.
    #[default]
    All,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Mac => "mac",
            Mode::MacIp => "mac-ip",
            Mode::All => "all",
        }
    }
}

/// How a reflector keeps two reflectors from answering each other without end
/// (`docs/PACKET-RULES.md`, "Loops").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoopGuard {
    /// The reflector's port, and wherever that is not enough, one hop off the TTL / hop limit of
    /// each answer (a test packet with none left is a loop).
    #[default]
    Ttl,
    /// The reflector's port alone: the TTL / hop limit is never touched, so two reflectors in
    /// a configuration the port rule does not cover can loop.
    PortOnly,
}

impl LoopGuard {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            LoopGuard::Ttl => "ttl",
            LoopGuard::PortOnly => "port-only",
        }
    }
}

impl FromStr for LoopGuard {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ttl" => Ok(LoopGuard::Ttl),
            "port-only" => Ok(LoopGuard::PortOnly),
            _ => Err(ConfigError::UnknownLoopGuard),
        }
    }
}

/// What is done with a STAMP / TWAMP-Light request whose payload is shorter than the 41-byte
/// reflector packet (14 to 40 bytes: a TWAMP-Light sender that does not pad).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StampShort {
    /// Answered with the 41-byte reflector packet (RFC 5357 §4.2.1): the answer is longer than
    /// the request, by up to 27 bytes.
    #[default]
    Answer,
    /// Refused as `stamp_length`: every answer as long as its request (RFC 8762 §4.6).
    Refuse,
}

impl StampShort {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            StampShort::Answer => "answer",
            StampShort::Refuse => "refuse",
        }
    }
}

impl FromStr for StampShort {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "answer" => Ok(StampShort::Answer),
            "refuse" => Ok(StampShort::Refuse),
            _ => Err(ConfigError::UnknownStampShort),
        }
    }
}

/// The first port of the range senders take their source ports from (Linux: 32768–60999;
/// IANA, macOS, Windows: 49152–65535). A STAMP answer to a request from below it takes a hop
/// (see [`Filter::stamp_takes_a_hop`]).
pub const FIRST_EPHEMERAL_PORT: u16 = 32768;

impl FromStr for Mode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mac" => Ok(Mode::Mac),
            "mac-ip" => Ok(Mode::MacIp),
            "all" => Ok(Mode::All),
            _ => Err(ConfigError::UnknownMode),
        }
    }
}

// Parsed here, where its error lives.
impl FromStr for FamilySet {
    type Err = ConfigError;
    /// Parses a comma-separated list of `ito`, `rfc2544`, `y1564`, `custom`, `stamp` and `all`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = FamilySet::EMPTY;
        for name in s.split(',').map(str::trim) {
            match name {
                "all" => Family::ALL.iter().for_each(|f| set.insert(*f)),
                _ => set.insert(
                    Family::ALL.into_iter().find(|f| f.name() == name).ok_or(ConfigError::UnknownFamily)?,
                ),
            }
        }
        Ok(set)
    }
}

/// A user-defined signature: `bytes` at `offset` in the UDP payload.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CustomSignature {
    offset: u16,
    len: u8,
    bytes: [u8; MAX_SIGNATURE_LEN],
}

impl CustomSignature {
    /// A signature of 1 to [`MAX_SIGNATURE_LEN`] bytes at `offset` in the UDP payload.
    pub fn new(offset: u16, bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.is_empty() || bytes.len() > MAX_SIGNATURE_LEN {
            return Err(ConfigError::SignatureLength);
        }
        if offset > MAX_SIGNATURE_OFFSET {
            return Err(ConfigError::SignatureOffset);
        }
        let mut stored = [0u8; MAX_SIGNATURE_LEN];
        stored[..bytes.len()].copy_from_slice(bytes);
        Ok(CustomSignature { offset, len: bytes.len() as u8, bytes: stored })
    }

    /// Offset in the UDP payload.
    pub fn offset(&self) -> u16 {
        self.offset
    }

    /// The bytes that must be there.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    #[inline(always)]
    pub(crate) fn matches(&self, payload: &[u8]) -> bool {
        let start = self.offset as usize;
        payload.get(start..start + self.len as usize) == Some(self.bytes())
    }
}

impl fmt::Debug for CustomSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.offset)?;
        let bytes = self.bytes();
        if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            for b in bytes {
                write!(f, "{}", *b as char)?;
            }
        } else {
            f.write_str("0x")?;
            for b in bytes {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// What the user asked for, before validation.
#[derive(Debug, Clone)]
pub struct FilterConfig<'a> {
    /// The interface's own MAC: test frames must be addressed to it.
    pub local_mac: MacAddr,
    /// UDP destination port; 0 accepts any port.
    pub port: u16,
    /// Signature families to accept.
    pub families: FamilySet,
    /// Required source OUI, or `None` to accept any vendor.
    pub oui: Option<[u8; 3]>,
    /// The families the OUI requirement applies to.
    pub oui_families: FamilySet,
    /// User-defined signatures (used when [`Family::Custom`] is in `families`).
    pub custom: &'a [CustomSignature],
    /// What reflection swaps.
    pub mode: Mode,
    /// The interface's own IP addresses: a frame from one of them is not a tester's
    /// ([`crate::Reject::SrcIpOwn`]). At most [`MAX_LOCAL_ADDRESSES`] of each version.
    pub local_ips: &'a [IpAddr],
    /// The UDP destination port of STAMP / TWAMP-Light requests (used when [`Family::Stamp`]
    /// is in `families`).
    pub stamp_port: u16,
    /// How STAMP answers write their timestamps.
    pub stamp_timestamps: TimestampFormat,
    /// Where STAMP answers take their sequence numbers from.
    pub stamp_sequence: SequenceMode,
    /// Sources that are answered (see [`crate::access`]); empty: every source the deny list
    /// does not name.
    pub allow: &'a [Source],
    /// Sources that are not answered.
    pub deny: &'a [Source],
    /// The rate limit of each source address ([`crate::limit`]).
    pub source_limit: Option<Rate>,
    /// The rate limit of all answers together.
    pub total_limit: Option<Rate>,
    /// How loops between two reflectors are ended.
    pub loop_guard: LoopGuard,
    /// What is done with STAMP requests shorter than the reflector packet.
    pub stamp_short: StampShort,
}

impl<'a> FilterConfig<'a> {
    /// The defaults: port 3842, ITO / RFC 2544 / Y.1564, OUI 00:c0:17 for ITO, mode `all`.
    pub fn new(local_mac: MacAddr) -> Self {
        let mut families = FamilySet::EMPTY;
        families.insert(Family::Ito);
        families.insert(Family::Rfc2544);
        families.insert(Family::Y1564);
        FilterConfig {
            local_mac,
            port: DEFAULT_PORT,
            families,
            oui: Some(DEFAULT_OUI),
            oui_families: FamilySet::only(Family::Ito),
            custom: &[],
            mode: Mode::All,
            local_ips: &[],
            stamp_port: DEFAULT_STAMP_PORT,
            stamp_timestamps: TimestampFormat::Ntp,
            stamp_sequence: SequenceMode::Stateless,
            allow: &[],
            deny: &[],
            source_limit: None,
            total_limit: None,
            loop_guard: LoopGuard::Ttl,
            stamp_short: StampShort::Answer,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The local MAC is a group or all-zero address, so no frame could be addressed to it.
    LocalMac,
    /// No signature family is selected.
    NoFamily,
    /// The custom family is selected but no custom signature is defined.
    CustomFamilyWithoutSignatures,
    /// Custom signatures are defined but the custom family is not selected.
    CustomSignaturesNotSelected,
    /// More than [`MAX_CUSTOM_SIGNATURES`] custom signatures.
    TooManySignatures,
    /// A custom signature is empty or longer than [`MAX_SIGNATURE_LEN`].
    SignatureLength,
    /// A custom signature's offset is beyond any UDP payload.
    SignatureOffset,
    /// The OUI requirement names a family that is not selected.
    OuiFamilyNotSelected,
    /// A mode name other than `mac`, `mac-ip`, `all`.
    UnknownMode,
    /// A loop guard other than `ttl`, `port-only`.
    UnknownLoopGuard,
    /// A short-request choice other than `answer`, `refuse`.
    UnknownStampShort,
    /// A family name other than `ito`, `rfc2544`, `y1564`, `custom`, `all`.
    UnknownFamily,
    /// More than [`MAX_LOCAL_ADDRESSES`] own addresses of one IP version.
    TooManyAddresses,
    /// The STAMP port is 0, or the port of the other test packets.
    StampPort,
    /// A source is on both the allow and the deny list.
    AccessConflict,
    /// More than [`crate::access::MAX_ACCESS_ENTRIES`] entries on one list.
    TooManyAccessEntries,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigError::LocalMac => "the local MAC must be a unicast, non-zero address",
            ConfigError::NoFamily => {
                "no signature family selected (choose from ito, rfc2544, y1564, custom, stamp, all)"
            }
            ConfigError::CustomFamilyWithoutSignatures => {
                "signature family 'custom' selected but no custom signature defined"
            }
            ConfigError::CustomSignaturesNotSelected => {
                "custom signatures defined but family 'custom' is not selected"
            }
            ConfigError::TooManySignatures => "at most 8 custom signatures",
            ConfigError::SignatureLength => "a custom signature must be 1 to 32 bytes long",
            ConfigError::SignatureOffset => "a custom signature offset must be at most 8972",
            ConfigError::OuiFamilyNotSelected => {
                "the OUI filter names a signature family that is not selected"
            }
            ConfigError::UnknownMode => "unknown mode (expected mac, mac-ip or all)",
            ConfigError::UnknownLoopGuard => "unknown loop guard (expected ttl or port-only)",
            ConfigError::UnknownStampShort => {
                "unknown choice for short STAMP requests (expected answer or refuse)"
            }
            ConfigError::UnknownFamily => {
                "unknown signature family (expected ito, rfc2544, y1564, custom, stamp or all)"
            }
            ConfigError::TooManyAddresses => "the interface has more than 8 IPv4 or 8 IPv6 addresses",
            ConfigError::StampPort => {
                "the STAMP port must be 1 to 65535 and differ from the port of the other test packets"
            }
            ConfigError::AccessConflict => "a source is on both the allow and the deny list",
            ConfigError::TooManyAccessEntries => {
                "at most 4096 entries on the allow list and 4096 on the deny list"
            }
        })
    }
}

impl core::error::Error for ConfigError {}

/// A validated filter: what [`crate::classify`] and [`Filter::process`] run against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub(crate) local_mac: MacAddr,
    /// `local_mac` as the integer the classifier compares with.
    pub(crate) local_mac_bits: u64,
    /// The required OUI as an integer (meaningful only when `oui_families` is not empty).
    pub(crate) oui_bits: u32,
    pub(crate) port: u16,
    pub(crate) families: FamilySet,
    pub(crate) oui: Option<[u8; 3]>,
    pub(crate) oui_families: FamilySet,
    pub(crate) custom: [CustomSignature; MAX_CUSTOM_SIGNATURES],
    pub(crate) custom_len: usize,
    pub(crate) mode: Mode,
    /// Our own addresses, IPv4 ones as little-endian words; `local_v4_len` and `local_v6_len`
    /// of them are used.
    pub(crate) local_v4: [u32; MAX_LOCAL_ADDRESSES],
    pub(crate) local_v4_len: usize,
    pub(crate) local_v6: [[u8; 16]; MAX_LOCAL_ADDRESSES],
    pub(crate) local_v6_len: usize,
    /// The STAMP port, or a value no 16-bit port equals when the family is off.
    pub(crate) stamp_port: u32,
    pub(crate) stamp_timestamps: TimestampFormat,
    pub(crate) stamp_sequence: SequenceMode,
    pub(crate) loop_guard: LoopGuard,
    /// A STAMP answer takes a hop off when the request's UDP source port is below this (see
    /// [`Filter::stamp_takes_a_hop`]).
    pub(crate) stamp_hops_below: u32,
    /// The shortest STAMP payload answered (14 when short ones are answered, else 41).
    pub(crate) stamp_min_payload: usize,
    /// The allow and deny lists.
    pub(crate) access: Access,
    pub(crate) source_limit: Option<Rate>,
    pub(crate) total_limit: Option<Rate>,
    /// Lists or limits are configured: a test packet meets them before it is answered.
    pub(crate) gate: bool,
    /// The configuration as the fast path for ITO over IPv4 compares it.
    pub(crate) fast: FastMasks,
}

/// Words [`crate::classify`]'s fast path XORs and masks with (see `ipv4_fast`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FastMasks {
    /// The destination port as its two bytes read little-endian.
    pub(crate) port: u64,
    /// 0xffff, or 0 when any port is accepted.
    pub(crate) port_mask: u64,
    /// The STAMP port as its two bytes read little-endian, `u64::MAX` with the family off.
    pub(crate) stamp_port: u64,
    /// 0xff_ffff (the OUI's bytes of the source MAC word) when the OUI applies to ITO, else 0.
    pub(crate) oui_mask: u64,
    /// What `ipv4_fast` compares the frame's first 16 bytes with, as two little-endian words:
    /// our MAC and the first two bytes of the trusted OUI (see [`trusted_oui`]); then the OUI's
    /// last byte, the IPv4 EtherType, version 4 and IHL 5. `ipv4_mask` selects the EtherType,
    /// version and IHL in the second. In the filter rather than the code, so that each is an
    /// operand in memory, not a 64-bit constant taking a register.
    pub(crate) head: u64,
    pub(crate) head8: u64,
    pub(crate) ipv4_mask: u64,
    /// The ITO signatures by the slot their first byte selects (see `ITO_BY_SLOT` in
    /// `classify`), all `u64::MAX` (never a 7-byte value) when the ITO family is off.
    pub(crate) ito: [u64; 8],
    /// The same for a source with the trusted OUI, also all `u64::MAX` when the OUI filter
    /// applies to ITO and names another OUI.
    pub(crate) trusted_ito: [u64; 8],
    /// The reflection mode as rotations of the address pair (32, or 0 for `mac`) and of the
    /// port pair (16 for `all`, else 0).
    pub(crate) rotate_addresses: u32,
    pub(crate) rotate_ports: u32,
    /// The least TTL a test packet is answered with: 1 where answers take one off it (see
    /// [`Filter::takes_a_hop`]), else 0.
    pub(crate) min_ttl: u8,
    /// Non-zero at the last octets of our IPv4 addresses: the fast path compares a source with
    /// them only where this says it can match.
    pub(crate) own_v4_last_octet: [u8; 256],
}

impl FastMasks {
    fn new(config: &FilterConfig<'_>) -> FastMasks {
        let (rotate_addresses, rotate_ports) = Self::rotations(config.mode);
        let trusted = trusted_oui(config);
        let stamp = config.families.contains(Family::Stamp);
        let ito = config.families.contains(Family::Ito);
        let oui_on_ito = config.oui.is_some() && config.oui_families.contains(Family::Ito);
        let table = |on: bool| if on { ITO_BY_SLOT } else { [u64::MAX; 8] };
        FastMasks {
            port: config.port.swap_bytes() as u64,
            port_mask: if config.port == 0 { 0 } else { 0xffff },
            stamp_port: if stamp { config.stamp_port.swap_bytes() as u64 } else { u64::MAX },
            oui_mask: if oui_on_ito { 0xff_ffff } else { 0 },
            head: config.local_mac.bits() | (trusted[0] as u64) << 48 | (trusted[1] as u64) << 56,
            head8: trusted[2] as u64 | 0x45_0008 << 32,
            ipv4_mask: 0xff_ffff << 32,
            ito: table(ito),
            trusted_ito: table(ito && !(oui_on_ito && config.oui != Some(trusted))),
            rotate_addresses,
            rotate_ports,
            min_ttl: Self::min_ttl(config.mode, config.port, config.loop_guard),
            own_v4_last_octet: {
                let mut t = [0u8; 256];
                for ip in config.local_ips {
                    if let IpAddr::V4(v4) = ip {
                        t[v4.octets()[3] as usize] = 1;
                    }
                }
                t
            },
        }
    }

    fn min_ttl(mode: Mode, port: u16, guard: LoopGuard) -> u8 {
        u8::from(guard == LoopGuard::Ttl && (mode != Mode::All || port != DEFAULT_PORT))
    }

    fn rotations(mode: Mode) -> (u32, u32) {
        match mode {
            Mode::Mac => (0, 0),
            Mode::MacIp => (32, 0),
            Mode::All => (32, 16),
        }
    }
}

/// An OUI that makes a source MAC pass the source checks by itself: not a group address (the
/// I/G bit is in the OUI), not zero, not our own. The configured one (default 00:c0:17) when it
/// can; when it cannot, the first of the default and two locally administered OUIs that can.
fn trusted_oui(config: &FilterConfig<'_>) -> [u8; 3] {
    let usable = |oui: &[u8; 3]| oui[0] & 1 == 0 && *oui != [0; 3] && *oui != config.local_mac.oui();
    // Of three different usable candidates at most one is our own.
    [config.oui.unwrap_or(DEFAULT_OUI), DEFAULT_OUI, [0x02, 0, 0], [0x06, 0, 0]]
        .into_iter()
        .find(usable)
        .expect("three different candidates, at most one is ours")
}

impl Filter {
    /// Validates `config`.
    pub fn new(config: &FilterConfig<'_>) -> Result<Filter, ConfigError> {
        if config.local_mac.is_group() || config.local_mac.is_zero() {
            return Err(ConfigError::LocalMac);
        }
        if config.families.is_empty() {
            return Err(ConfigError::NoFamily);
        }
        let wants_custom = config.families.contains(Family::Custom);
        if wants_custom && config.custom.is_empty() {
            return Err(ConfigError::CustomFamilyWithoutSignatures);
        }
        if !wants_custom && !config.custom.is_empty() {
            return Err(ConfigError::CustomSignaturesNotSelected);
        }
        if config.custom.len() > MAX_CUSTOM_SIGNATURES {
            return Err(ConfigError::TooManySignatures);
        }
        if config.oui.is_some() && config.oui_families.iter().any(|f| !config.families.contains(f)) {
            return Err(ConfigError::OuiFamilyNotSelected);
        }
        let stamp = config.families.contains(Family::Stamp);
        if stamp && (config.stamp_port == 0 || config.stamp_port == config.port) {
            return Err(ConfigError::StampPort);
        }
        let (mut local_v4, mut local_v4_len) = ([0u32; MAX_LOCAL_ADDRESSES], 0);
        let (mut local_v6, mut local_v6_len) = ([[0u8; 16]; MAX_LOCAL_ADDRESSES], 0);
        for ip in config.local_ips {
            match ip {
                IpAddr::V4(v4) if local_v4_len < MAX_LOCAL_ADDRESSES => {
                    local_v4[local_v4_len] = u32::from_le_bytes(v4.octets());
                    local_v4_len += 1;
                }
                IpAddr::V6(v6) if local_v6_len < MAX_LOCAL_ADDRESSES => {
                    local_v6[local_v6_len] = v6.octets();
                    local_v6_len += 1;
                }
                _ => return Err(ConfigError::TooManyAddresses),
            }
        }
        let placeholder = CustomSignature { offset: 0, len: 0, bytes: [0; MAX_SIGNATURE_LEN] };
        let mut custom = [placeholder; MAX_CUSTOM_SIGNATURES];
        custom[..config.custom.len()].copy_from_slice(config.custom);
        let oui = config.oui.unwrap_or_default();
        let access = Access::new(config.allow, config.deny).map_err(|e| match e {
            ListsError::Conflict => ConfigError::AccessConflict,
            ListsError::TooMany => ConfigError::TooManyAccessEntries,
        })?;
        let gate = access.is_on() || config.source_limit.is_some() || config.total_limit.is_some();
        Ok(Filter {
            local_mac: config.local_mac,
            local_mac_bits: config.local_mac.bits(),
            oui_bits: u32::from_le_bytes([oui[0], oui[1], oui[2], 0]),
            port: config.port,
            families: config.families,
            oui: config.oui,
            oui_families: if config.oui.is_some() { config.oui_families } else { FamilySet::EMPTY },
            custom,
            custom_len: config.custom.len(),
            mode: config.mode,
            local_v4,
            local_v4_len,
            local_v6,
            local_v6_len,
            stamp_port: if stamp { config.stamp_port as u32 } else { u32::MAX },
            stamp_timestamps: config.stamp_timestamps,
            stamp_sequence: config.stamp_sequence,
            loop_guard: config.loop_guard,
            stamp_hops_below: match config.loop_guard {
                LoopGuard::PortOnly => 0,
                // A reflector whose own STAMP port is an ephemeral one answers from a port that
                // another reflector takes for a sender's: every answer takes a hop.
                LoopGuard::Ttl if config.stamp_port >= FIRST_EPHEMERAL_PORT => u16::MAX as u32 + 1,
                LoopGuard::Ttl => FIRST_EPHEMERAL_PORT as u32,
            },
            stamp_min_payload: match config.stamp_short {
                StampShort::Answer => MIN_REQUEST_LEN,
                StampShort::Refuse => MIN_LEN,
            },
            access,
            source_limit: config.source_limit,
            total_limit: config.total_limit,
            gate,
            fast: FastMasks::new(config),
        })
    }

    /// The MAC test frames must be addressed to.
    pub fn local_mac(&self) -> MacAddr {
        self.local_mac
    }
    /// UDP destination port (0 = any).
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Whether answers (other than STAMP ones) take one off the IPv4 TTL / IPv6 hop limit, and
    /// a test packet with none left is a loop: with the TTL guard, everywhere but in mode `all`
    /// on port 3842, whose answers come from 3842, which the loop rule refuses by itself
    /// (`docs/PACKET-RULES.md`, "Loops"); never with `--loop-guard port-only`.
    pub fn takes_a_hop(&self) -> bool {
        self.fast.min_ttl != 0
    }
    /// How loops between two reflectors are ended.
    pub fn loop_guard(&self) -> LoopGuard {
        self.loop_guard
    }
    /// Whether the STAMP answer to a request from UDP source port `src_port` takes one off the
    /// TTL / hop limit (and a request with none left is a loop): with the TTL guard, when that
    /// port is not an ephemeral one (below [`FIRST_EPHEMERAL_PORT`]), where another reflector's
    /// answer comes from (its STAMP port: 862, 863, a TWAMP-Light port), and always when our
    /// own STAMP port is an ephemeral one. A sender on an ephemeral port gets its TTL back
    /// untouched; two reflectors facing each other stop within the TTL, since at least one
    /// of them answers requests from a port below 32768 or from its own ephemeral one
    /// (`docs/PACKET-RULES.md`, "Loops").
    #[inline(always)]
    pub fn stamp_takes_a_hop(&self, src_port: u16) -> bool {
        (src_port as u32) < self.stamp_hops_below
    }
    /// A STAMP answer takes a hop off when the request's source port is below this: 0 (never),
    /// 32768, or 65536 (always). What the XDP programs are generated from.
    pub fn stamp_hops_below(&self) -> u32 {
        self.stamp_hops_below
    }
    /// The shortest STAMP payload answered: 14 bytes when shorter requests than the 41-byte
    /// reflector packet are answered with it ([`StampShort::Answer`]), else 41.
    pub fn stamp_min_payload(&self) -> usize {
        self.stamp_min_payload
    }
    /// Selected signature families.
    pub fn families(&self) -> FamilySet {
        self.families
    }
    /// Required source OUI, if any.
    pub fn oui(&self) -> Option<[u8; 3]> {
        self.oui
    }
    /// Families the OUI requirement applies to (empty when there is no OUI filter).
    pub fn oui_families(&self) -> FamilySet {
        self.oui_families
    }
    /// User-defined signatures.
    pub fn custom_signatures(&self) -> &[CustomSignature] {
        &self.custom[..self.custom_len]
    }
    /// Reflection mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// Our own IPv4 addresses (frames from them are rejected).
    pub fn local_v4(&self) -> impl Iterator<Item = [u8; 4]> + '_ {
        self.local_v4[..self.local_v4_len].iter().map(|a| a.to_le_bytes())
    }
    /// True when STAMP requests are answered.
    #[inline(always)]
    pub(crate) fn stamp_on(&self) -> bool {
        self.stamp_port <= u16::MAX as u32
    }
    /// The STAMP port, when the family is on.
    pub fn stamp_port(&self) -> Option<u16> {
        u16::try_from(self.stamp_port).ok()
    }
    /// How STAMP answers write their timestamps.
    pub fn stamp_timestamps(&self) -> TimestampFormat {
        self.stamp_timestamps
    }
    /// Where STAMP answers take their sequence numbers from.
    pub fn stamp_sequence(&self) -> SequenceMode {
        self.stamp_sequence
    }
    /// Our own IPv6 addresses (frames from them are rejected).
    pub fn local_v6(&self) -> &[[u8; 16]] {
        &self.local_v6[..self.local_v6_len]
    }

    /// The allow and deny lists' entries, each with its list, as configured.
    pub fn access_entries(&self) -> &[(Source, Verdict)] {
        self.access.entries()
    }
    /// True when the allow list has an entry (a source it does not name is not answered).
    pub fn has_allow_list(&self) -> bool {
        self.access.has_allow()
    }
    /// The rate limit of each source address.
    pub fn source_limit(&self) -> Option<Rate> {
        self.source_limit
    }
    /// The rate limit of all answers together.
    pub fn total_limit(&self) -> Option<Rate> {
        self.total_limit
    }
    /// The same filter without its lists and limits: what the XDP programs are generated from
    /// (they read lists and limits from maps, so a change of those alone keeps the program).
    pub fn without_gate(&self) -> Filter {
        Filter {
            access: Access::default(),
            source_limit: None,
            total_limit: None,
            gate: false,
            ..self.clone()
        }
    }

    /// The same filter with another reflection mode (a mode never makes a filter invalid).
    pub fn with_mode(mut self, mode: Mode) -> Filter {
        self.mode = mode;
        (self.fast.rotate_addresses, self.fast.rotate_ports) = FastMasks::rotations(mode);
        self.fast.min_ttl = FastMasks::min_ttl(mode, self.port, self.loop_guard);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);

    #[test]
    fn defaults_validate() {
        let f = Filter::new(&FilterConfig::new(MAC)).unwrap();
        assert_eq!(f.port(), 3842);
        assert_eq!(f.mode(), Mode::All);
        assert_eq!(f.oui(), Some(DEFAULT_OUI));
        assert_eq!(f.families().to_string(), "ito,rfc2544,y1564");
        assert_eq!(f.oui_families().to_string(), "ito");
    }

    #[test]
    fn invalid_configs_are_refused() {
        let sig = [CustomSignature::new(0, b"X").unwrap()];
        let cases: [(FilterConfig<'_>, ConfigError); 6] = [
            (FilterConfig { local_mac: MacAddr::BROADCAST, ..FilterConfig::new(MAC) }, ConfigError::LocalMac),
            (FilterConfig { local_mac: MacAddr::ZERO, ..FilterConfig::new(MAC) }, ConfigError::LocalMac),
            (FilterConfig { families: FamilySet::EMPTY, ..FilterConfig::new(MAC) }, ConfigError::NoFamily),
            (
                FilterConfig { families: "all".parse().unwrap(), ..FilterConfig::new(MAC) },
                ConfigError::CustomFamilyWithoutSignatures,
            ),
            (
                FilterConfig { custom: &sig, ..FilterConfig::new(MAC) },
                ConfigError::CustomSignaturesNotSelected,
            ),
            (
                FilterConfig { families: "rfc2544".parse().unwrap(), ..FilterConfig::new(MAC) },
                ConfigError::OuiFamilyNotSelected,
            ),
        ];
        for (config, want) in cases {
            assert_eq!(Filter::new(&config), Err(want));
        }
        let nine = [sig[0]; 9];
        let config =
            FilterConfig { families: "all".parse().unwrap(), custom: &nine, ..FilterConfig::new(MAC) };
        assert_eq!(Filter::new(&config), Err(ConfigError::TooManySignatures));
        // Without an OUI there is nothing to scope, so any family selection is fine.
        let config =
            FilterConfig { families: "rfc2544".parse().unwrap(), oui: None, ..FilterConfig::new(MAC) };
        assert!(Filter::new(&config).is_ok());
    }

    #[test]
    fn custom_signature_limits() {
        assert_eq!(CustomSignature::new(0, b""), Err(ConfigError::SignatureLength));
        assert_eq!(CustomSignature::new(0, &[1; 33]), Err(ConfigError::SignatureLength));
        assert_eq!(CustomSignature::new(8973, b"a"), Err(ConfigError::SignatureOffset));
        let s = CustomSignature::new(3, b"HELLO").unwrap();
        assert!(s.matches(b"abcHELLOxyz"));
        assert!(!s.matches(b"abcHELL"));
        assert!(!s.matches(b"HELLO"));
    }

    #[test]
    fn family_set_parses_lists() {
        assert_eq!("ito, y1564".parse::<FamilySet>().unwrap().to_string(), "ito,y1564");
        assert_eq!("all".parse::<FamilySet>().unwrap().to_string(), "ito,rfc2544,y1564,custom,stamp");
        assert_eq!("ito,bogus".parse::<FamilySet>(), Err(ConfigError::UnknownFamily));
        assert_eq!("".parse::<FamilySet>(), Err(ConfigError::UnknownFamily));
        assert_eq!("mac-ip".parse::<Mode>(), Ok(Mode::MacIp));
        assert_eq!("swap".parse::<Mode>(), Err(ConfigError::UnknownMode));
    }
}
