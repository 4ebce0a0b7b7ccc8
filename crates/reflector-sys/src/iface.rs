//! Facts about a network interface, looked up the way each system offers them.

use crate::error::SysError;

/// Facts about a network interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfaceInfo {
    /// Interface index.
    pub index: u32,
    /// Hardware address.
    pub mac: [u8; 6],
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Has carrier (IFF_RUNNING).
    pub running: bool,
    /// MTU in bytes.
    pub mtu: u32,
    /// The primary IPv4 address, if one is configured.
    pub ipv4: Option<std::net::Ipv4Addr>,
}

/// Why an interface cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    /// No interface of that name (in this network namespace).
    #[error("no interface named '{0}' (see 'ip link')")]
    NotFound(String),
    /// The name cannot be an interface name.
    #[error("'{0}' is not a valid interface name")]
    BadName(String),
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// The IPv4 and IPv6 addresses configured on `name` (on Linux, in the calling thread's network
/// namespace), in the order `getifaddrs` lists them. The packet rules refuse test packets from
/// them.
pub fn iface_addresses(name: &str) -> Result<Vec<std::net::IpAddr>, SysError> {
    use std::ffi::CStr;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(SysError::last("getifaddrs"));
    }
    let mut out = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*entry };
        entry = ifa.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        if ifa.ifa_name.is_null() || unsafe { CStr::from_ptr(ifa.ifa_name) }.to_bytes() != name.as_bytes() {
            continue;
        }
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says which kind it is.
        match unsafe { (*ifa.ifa_addr).sa_family } as libc::c_int {
            libc::AF_INET => {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

// linux/sockios.h
#[cfg(target_os = "linux")]
const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
#[cfg(target_os = "linux")]
const SIOCGIFMTU: libc::c_ulong = 0x8921;
#[cfg(target_os = "linux")]
const SIOCGIFHWADDR: libc::c_ulong = 0x8927;
#[cfg(target_os = "linux")]
const SIOCGIFINDEX: libc::c_ulong = 0x8933;
#[cfg(target_os = "linux")]
const SIOCGIFADDR: libc::c_ulong = 0x8915;

#[cfg(target_os = "linux")]
fn ifreq_for(name: &str) -> Result<libc::ifreq, IfaceError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(IfaceError::BadName(name.into()));
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

#[cfg(target_os = "linux")]
fn ioctl_ifreq(
    fd: &std::os::fd::OwnedFd,
    request: libc::c_ulong,
    req: &mut libc::ifreq,
    call: &'static str,
) -> crate::error::SysResult<()> {
    // SAFETY: `req` is a live ifreq, which is what these SIOCGIF* requests read and write.
    crate::sock::check(
        unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(fd), request as _, req as *mut libc::ifreq) },
        call,
    )
    .map(|_| ())
}

/// Looks up `name` in the calling thread's network namespace.
#[cfg(target_os = "linux")]
pub fn iface_info(name: &str) -> Result<IfaceInfo, IfaceError> {
    let mut req = ifreq_for(name)?;
    let fd = crate::sock::socket(libc::AF_INET, libc::SOCK_DGRAM, 0, "socket(AF_INET)")?;
    if let Err(e) = ioctl_ifreq(&fd, SIOCGIFINDEX, &mut req, "ioctl(SIOCGIFINDEX)") {
        return Err(if e.errno() == Some(libc::ENODEV) {
            IfaceError::NotFound(name.into())
        } else {
            e.into()
        });
    }
    // SAFETY: SIOCGIFINDEX filled the ifru_ifindex member of the union.
    let index = unsafe { req.ifr_ifru.ifru_ifindex } as u32;
    ioctl_ifreq(&fd, SIOCGIFHWADDR, &mut req, "ioctl(SIOCGIFHWADDR)")?;
    // SAFETY: SIOCGIFHWADDR filled the ifru_hwaddr member.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *dst = *src as u8;
    }
    ioctl_ifreq(&fd, SIOCGIFFLAGS, &mut req, "ioctl(SIOCGIFFLAGS)")?;
    // SAFETY: SIOCGIFFLAGS filled the ifru_flags member.
    let flags = unsafe { req.ifr_ifru.ifru_flags } as libc::c_int;
    ioctl_ifreq(&fd, SIOCGIFMTU, &mut req, "ioctl(SIOCGIFMTU)")?;
    // SAFETY: SIOCGIFMTU filled the ifru_mtu member.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu } as u32;
    // No address is not an error: the interface may carry only IPv6, or nothing.
    let ipv4 = ioctl_ifreq(&fd, SIOCGIFADDR, &mut req, "ioctl(SIOCGIFADDR)").ok().map(|()| {
        // SAFETY: SIOCGIFADDR filled the ifru_addr member with a sockaddr_in.
        let addr = unsafe { req.ifr_ifru.ifru_addr };
        std::net::Ipv4Addr::new(
            addr.sa_data[2] as u8,
            addr.sa_data[3] as u8,
            addr.sa_data[4] as u8,
            addr.sa_data[5] as u8,
        )
    });
    Ok(IfaceInfo {
        index,
        ipv4,
        mac,
        up: flags & libc::IFF_UP != 0,
        running: flags & libc::IFF_RUNNING != 0,
        mtu,
    })
}

/// Looks up `name` with `getifaddrs`: the link-layer entry gives the MAC and MTU, an IPv4
/// entry the address. (Built only on macOS and FreeBSD; see docs/MACOS.md for what has been
/// verified there.)
#[cfg(any(target_os = "macos", target_os = "freebsd"))]
pub fn iface_info(name: &str) -> Result<IfaceInfo, IfaceError> {
    use std::ffi::{CStr, CString};
    let c_name = CString::new(name).map_err(|_| IfaceError::BadName(name.into()))?;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(IfaceError::BadName(name.into()));
    }
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(IfaceError::NotFound(name.into()));
    }
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(SysError::last("getifaddrs").into());
    }
    let mut info = IfaceInfo { index, mac: [0; 6], up: false, running: false, mtu: 0, ipv4: None };
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*entry };
        entry = ifa.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        if ifa.ifa_name.is_null() || unsafe { CStr::from_ptr(ifa.ifa_name) }.to_bytes() != name.as_bytes() {
            continue;
        }
        info.up = ifa.ifa_flags as libc::c_int & libc::IFF_UP != 0;
        info.running = ifa.ifa_flags as libc::c_int & libc::IFF_RUNNING != 0;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says which kind it is.
        match unsafe { (*ifa.ifa_addr).sa_family } as libc::c_int {
            libc::AF_LINK => {
                // SAFETY: an AF_LINK address is a sockaddr_dl; the address follows the name in
                // sdl_data (LLADDR), within sdl_len.
                let dl = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_dl) };
                if dl.sdl_alen == 6 {
                    // SAFETY: the address starts sdl_nlen bytes into sdl_data (LLADDR).
                    let base = unsafe { (dl.sdl_data.as_ptr() as *const u8).add(dl.sdl_nlen as usize) };
                    let mut mac = [0u8; 6];
                    for (i, b) in mac.iter_mut().enumerate() {
                        // SAFETY: i < sdl_alen, inside the address.
                        *b = unsafe { *base.add(i) };
                    }
                    info.mac = mac;
                }
                if !ifa.ifa_data.is_null() {
                    // SAFETY: for AF_LINK entries ifa_data points to the interface's if_data.
                    info.mtu = unsafe { (*(ifa.ifa_data as *const libc::if_data)).ifi_mtu } as u32;
                }
            }
            libc::AF_INET if info.ipv4.is_none() => {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                info.ipv4 = Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            _ => {}
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(info)
}

/// An interface's driver and its statistics as `ethtool -S` lists them.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverStats {
    /// The driver's name (`veth`, `mlx5_core`, …).
    pub driver: String,
    /// Each statistic's name and value, in the driver's order.
    pub stats: Vec<(String, u64)>,
}

/// The driver and the statistics of `name` (`SIOCETHTOOL`: `ETHTOOL_GDRVINFO`, then
/// `ETHTOOL_GSTRINGS` and `ETHTOOL_GSTATS` of the statistics string set).
#[cfg(target_os = "linux")]
pub fn driver_stats(name: &str) -> Result<DriverStats, IfaceError> {
    const ETHTOOL_GDRVINFO: u32 = 0x03;
    const ETHTOOL_GSTRINGS: u32 = 0x1b;
    const ETHTOOL_GSTATS: u32 = 0x1d;
    const ETH_SS_STATS: u32 = 1;
    const ETH_GSTRING_LEN: usize = 32;
    /// `struct ethtool_drvinfo`: the driver's name at 4, the number of statistics at 180.
    const DRVINFO_LEN: usize = 196;
    // One SIOCETHTOOL request over `buf` (u64 words, so every struct is aligned); the callers
    // size it from the counts the kernel gave.
    let request = |buf: &mut [u64], call: &'static str| -> Result<(), IfaceError> {
        // SAFETY: `buf` is as large as the command written at its start says, and lives across
        // the call.
        unsafe { ethtool(name, buf.as_mut_ptr().cast(), call) }
    };
    // Requests are laid out in bytes and carried in u64 words (so every struct is aligned).
    let bytes = |words: &[u64]| -> Vec<u8> { words.iter().flat_map(|w| w.to_ne_bytes()).collect() };
    let words = |b: &[u8]| -> Vec<u64> {
        b.chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_ne_bytes(w)
            })
            .collect()
    };
    let header = |fields: &[u32], total: usize| -> Vec<u64> {
        let mut b: Vec<u8> = fields.iter().flat_map(|f| f.to_ne_bytes()).collect();
        b.resize(total.max(b.len()), 0);
        words(&b)
    };
    let mut info = header(&[ETHTOOL_GDRVINFO], DRVINFO_LEN);
    request(&mut info, "ioctl(SIOCETHTOOL, ETHTOOL_GDRVINFO)")?;
    let raw = bytes(&info);
    let text =
        |b: &[u8]| String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or_default()).into_owned();
    let driver = text(&raw[4..36]);
    let n = u32::from_ne_bytes([raw[180], raw[181], raw[182], raw[183]]) as usize;
    // struct ethtool_gstrings { cmd, string_set, len, data[len * 32] }
    let mut strings = header(&[ETHTOOL_GSTRINGS, ETH_SS_STATS, n as u32], 12 + n * ETH_GSTRING_LEN);
    request(&mut strings, "ioctl(SIOCETHTOOL, ETHTOOL_GSTRINGS)")?;
    let raw = bytes(&strings);
    // struct ethtool_stats { cmd, n_stats, data[n_stats] }
    let mut values = header(&[ETHTOOL_GSTATS, n as u32], 8 + 8 * n);
    request(&mut values, "ioctl(SIOCETHTOOL, ETHTOOL_GSTATS)")?;
    let stats = (0..n)
        .map(|i| (text(&raw[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN]), values[1 + i]))
        .collect();
    Ok(DriverStats { driver, stats })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn interface_lookup() {
        let lo = iface_info("lo").expect("loopback exists");
        assert!(lo.index >= 1 && lo.up && lo.mtu >= 1500);
        assert_eq!(lo.mac, [0; 6]);
        assert_eq!(lo.ipv4, Some(std::net::Ipv4Addr::LOCALHOST));
        assert!(matches!(iface_info("no-such-if0"), Err(IfaceError::NotFound(_))));
        assert!(matches!(iface_info("this-name-is-far-too-long"), Err(IfaceError::BadName(_))));
        assert!(matches!(iface_info(""), Err(IfaceError::BadName(_))));
    }

    #[test]
    fn driver_statistics_of_a_missing_interface_are_an_error() {
        assert!(matches!(driver_stats("no-such-if0"), Err(IfaceError::NotFound(_))));
    }

    #[test]
    fn loopback_stamps_in_software_and_has_no_hardware_clock() {
        let lo = timestamping("lo").expect("loopback answers ETHTOOL_GET_TS_INFO");
        assert!(lo.software() && !lo.hardware(), "{lo:?}");
        assert_eq!((lo.phc_index, lo.tx_types, lo.rx_filters), (None, 0, 0));
        assert!(matches!(timestamping("no-such-if0"), Err(IfaceError::NotFound(_))));
        assert!(matches!(timestamping("this-name-is-far-too-long"), Err(IfaceError::BadName(_))));
    }
}

/// Whether the driver takes VLAN tags off received frames (`ETHTOOL_GFLAGS`, `ETH_FLAG_RXVLAN`):
/// then a tag is in the packet's metadata rather than in the frame. `None` when the driver does
/// not say.
#[cfg(target_os = "linux")]
pub fn rx_vlan_offload(name: &str) -> Result<Option<bool>, IfaceError> {
    const ETHTOOL_GFLAGS: u32 = 0x25;
    const ETH_FLAG_RXVLAN: u32 = 1 << 8;
    // `struct ethtool_value`: the command, then the value.
    let mut value = [ETHTOOL_GFLAGS, 0u32];
    // SAFETY: `value` is a `struct ethtool_value` and lives across the call.
    match unsafe { ethtool(name, value.as_mut_ptr().cast(), "ioctl(SIOCETHTOOL, ETHTOOL_GFLAGS)") } {
        Err(IfaceError::Sys(e)) if e.errno() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(e),
        Ok(()) => Ok(Some(value[1] & ETH_FLAG_RXVLAN != 0)),
    }
}

/// What an interface can timestamp, as `ethtool -T` shows it (`ETHTOOL_GET_TS_INFO`).
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamping {
    /// The `SOF_TIMESTAMPING_*` flags the driver supports.
    pub so_timestamping: u32,
    /// The index of its PTP hardware clock (`/dev/ptpN`), if it has one.
    pub phc_index: Option<u32>,
    /// The `HWTSTAMP_TX_*` modes it supports, one bit each.
    pub tx_types: u32,
    /// The `HWTSTAMP_FILTER_*` receive filters it supports, one bit each.
    pub rx_filters: u32,
}

#[cfg(target_os = "linux")]
impl Timestamping {
    /// `SOF_TIMESTAMPING_TX_HARDWARE`, `RX_HARDWARE` and `RAW_HARDWARE`: stamps from the NIC's
    /// clock both ways.
    pub fn hardware(&self) -> bool {
        const HW: u32 = (1 << 0) | (1 << 2) | (1 << 6);
        self.so_timestamping & HW == HW
    }

    /// `SOF_TIMESTAMPING_TX_SOFTWARE`, `RX_SOFTWARE` and `SOFTWARE`: stamps from the system
    /// clock in the driver (transmit) and the stack (receive).
    pub fn software(&self) -> bool {
        const SW: u32 = (1 << 1) | (1 << 3) | (1 << 4);
        self.so_timestamping & SW == SW
    }
}

/// What `name` can timestamp (`SIOCETHTOOL`: `ETHTOOL_GET_TS_INFO`).
#[cfg(target_os = "linux")]
pub fn timestamping(name: &str) -> Result<Timestamping, IfaceError> {
    const ETHTOOL_GET_TS_INFO: u32 = 0x41;
    // `struct ethtool_ts_info`: cmd, so_timestamping, phc_index, tx_types, 3 reserved,
    // rx_filters, 3 reserved.
    let mut info = [0u32; 11];
    info[0] = ETHTOOL_GET_TS_INFO;
    // SAFETY: `info` is a `struct ethtool_ts_info` and lives across the call.
    unsafe { ethtool(name, info.as_mut_ptr().cast(), "ioctl(SIOCETHTOOL, ETHTOOL_GET_TS_INFO)") }?;
    Ok(Timestamping {
        so_timestamping: info[1],
        phc_index: u32::try_from(info[2] as i32).ok(),
        tx_types: info[3],
        rx_filters: info[7],
    })
}

/// One `SIOCETHTOOL` request for `name` over `data`.
///
/// # Safety
/// `data` points to the request's structure, as large as the command at its start makes the
/// kernel read and write, alive across the call.
#[cfg(target_os = "linux")]
unsafe fn ethtool(name: &str, data: *mut libc::c_char, call: &'static str) -> Result<(), IfaceError> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let fd = crate::sock::socket(libc::AF_INET, libc::SOCK_DGRAM, 0, "socket(AF_INET)")?;
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_data = data;
    // SAFETY: `req` names the interface and points to `data`, which the caller vouches for.
    let ret = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), SIOCETHTOOL as _, &mut req) };
    if ret >= 0 {
        return Ok(());
    }
    let e = SysError::last(call);
    Err(if e.errno() == Some(libc::ENODEV) { IfaceError::NotFound(name.into()) } else { e.into() })
}
