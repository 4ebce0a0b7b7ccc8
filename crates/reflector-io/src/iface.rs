//! Facts about a network interface, looked up the way each system offers them.

/// Facts about a network interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfaceInfo {
    /// Interface index.
    pub index: u32,
    /// Hardware address.
    pub mac: reflector_core::MacAddr,
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
    Sys(#[from] crate::error::SysError),
}

/// The IPv4 and IPv6 addresses configured on `name` (on Linux, in the calling thread's network
/// namespace), in the order `getifaddrs` lists them. The packet rules refuse test packets from
/// them.
#[allow(unsafe_code)]
pub fn iface_addresses(name: &str) -> Result<Vec<std::net::IpAddr>, crate::error::SysError> {
    use std::ffi::CStr;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(crate::error::SysError::last("getifaddrs"));
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

/// Looks up `name` (on Linux, in the calling thread's network namespace).
#[cfg(target_os = "linux")]
pub fn iface_info(name: &str) -> Result<IfaceInfo, IfaceError> {
    crate::sys::iface_info(name)
}

/// Looks up `name` with `getifaddrs`: the link-layer entry gives the MAC and MTU, an IPv4
/// entry the address. (Built only on macOS and FreeBSD; see docs/MACOS.md for what has been
/// verified there.)
#[cfg(any(target_os = "macos", target_os = "freebsd"))]
#[allow(unsafe_code)]
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
        return Err(crate::error::SysError::last("getifaddrs").into());
    }
    let mut info = IfaceInfo {
        index,
        mac: reflector_core::MacAddr::ZERO,
        up: false,
        running: false,
        mtu: 0,
        ipv4: None,
    };
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
                    info.mac = reflector_core::MacAddr(mac);
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
