//! rtnetlink requests about an interface's XDP program: which one is attached
//! (`IFLA_XDP_PROG_ID`), detaching one that was attached through netlink (for `--replace`), and
//! attaching one the old way, as `ip link set ... xdp` does (how other tools' programs arrive;
//! the tests use it to play such a tool).
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{SysError, SysResult};

const NETLINK_ROUTE: libc::c_int = 0;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const IFLA_LINK: u16 = 5;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_XDP: u16 = 43;
const IFLA_TARGET_NETNSID: u16 = 46;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

fn socket() -> SysResult<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_ROUTE) };
    if fd < 0 {
        return Err(SysError::last("socket(AF_NETLINK)"));
    }
    // SAFETY: `fd` was just returned by socket().
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A request: header, `struct ifinfomsg` for `ifindex`, then `attrs`.
fn request(kind: u16, flags: u16, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 16 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend((len as u32).to_ne_bytes());
    m.extend(kind.to_ne_bytes());
    m.extend((NLM_F_REQUEST | flags).to_ne_bytes());
    m.extend(1u32.to_ne_bytes()); // sequence
    m.extend(0u32.to_ne_bytes()); // port id: the kernel
    m.extend([libc::AF_UNSPEC as u8, 0, 0, 0]); // family, pad, type
    m.extend((ifindex as i32).to_ne_bytes());
    m.extend(0u32.to_ne_bytes()); // flags
    m.extend(0u32.to_ne_bytes()); // change
    m.extend_from_slice(attrs);
    m
}

fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend(((4 + payload.len()) as u16).to_ne_bytes());
    a.extend(kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize(a.len().div_ceil(4) * 4, 0);
    a
}

fn exchange(msg: &[u8]) -> SysResult<Vec<u8>> {
    let fd = socket()?;
    // SAFETY: `msg` is a live buffer of the length passed.
    if unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } < 0 {
        return Err(SysError::last("send(netlink)"));
    }
    let mut buf = vec![0u8; 65536];
    // SAFETY: `buf` is a live, writable buffer of the length passed.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(SysError::last("recv(netlink)"));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Walks netlink attributes: (type without flags, payload).
fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > data.len() {
            return None;
        }
        let payload = &data[4..len];
        data = &data[(len.div_ceil(4) * 4).min(data.len())..];
        Some((kind, payload))
    })
}

fn error_code(reply: &[u8]) -> Option<i32> {
    (reply.len() >= 20 && u16::from_ne_bytes([reply[4], reply[5]]) == NLMSG_ERROR)
        .then(|| i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]))
}

/// The attributes of link `ifindex` (RTM_GETLINK), in the network namespace whose id is
/// `netnsid` (`IFLA_TARGET_NETNSID`) or in this one.
fn get_link(ifindex: u32, netnsid: Option<i32>) -> SysResult<Vec<u8>> {
    let target = netnsid.map(|id| attr(IFLA_TARGET_NETNSID, &id.to_ne_bytes())).unwrap_or_default();
    let reply = exchange(&request(RTM_GETLINK, 0, ifindex, &target))?;
    if let Some(code) = error_code(&reply).filter(|c| *c != 0) {
        return Err(SysError { call: "netlink RTM_GETLINK", err: std::io::Error::from_raw_os_error(-code) });
    }
    // Header (16) + ifinfomsg (16), then the attributes.
    Ok(reply.get(32..).map(<[u8]>::to_vec).unwrap_or_default())
}

/// The link `ifindex` is paired with (a veth's peer: `IFLA_LINK`), and the id of the network
/// namespace it lives in when that is another one (`IFLA_LINK_NETNSID`).
pub fn link_peer(ifindex: u32) -> SysResult<Option<(u32, Option<i32>)>> {
    let body = get_link(ifindex, None)?;
    let (mut peer, mut netnsid) = (None, None);
    for (kind, p) in attrs(&body) {
        match kind {
            IFLA_LINK if p.len() >= 4 => peer = Some(u32::from_ne_bytes([p[0], p[1], p[2], p[3]])),
            IFLA_LINK_NETNSID if p.len() >= 4 => netnsid = Some(i32::from_ne_bytes([p[0], p[1], p[2], p[3]])),
            _ => {}
        }
    }
    // A link that is not paired names itself; a peer in another namespace may have our index.
    Ok(peer.filter(|p| *p != 0 && (*p != ifindex || netnsid.is_some())).map(|p| (p, netnsid)))
}

/// The id of the XDP program attached to `ifindex`, if any.
pub fn attached_prog_id(ifindex: u32) -> SysResult<Option<u32>> {
    attached_prog_id_in(ifindex, None)
}

/// [`attached_prog_id`] for an interface of the network namespace whose id is `netnsid` (as this
/// one knows it), or of this one.
pub fn attached_prog_id_in(ifindex: u32, netnsid: Option<i32>) -> SysResult<Option<u32>> {
    let body = get_link(ifindex, netnsid)?;
    for (kind, payload) in attrs(&body) {
        if kind == IFLA_XDP {
            for (k, p) in attrs(payload) {
                if k == IFLA_XDP_PROG_ID && p.len() >= 4 {
                    let id = u32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
                    return Ok((id != 0).then_some(id));
                }
            }
        }
    }
    Ok(None)
}

/// Detaches the XDP program that was attached to `ifindex` through netlink, in native or in
/// generic mode (a request without a mode flag addresses only the driver's mode, so a generic
/// program would stay). Detaching a mode with no program is not an error.
pub fn detach(ifindex: u32) -> SysResult<()> {
    use super::bpf::{XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
    let native = set_xdp(ifindex, -1, XDP_FLAGS_DRV_MODE, "netlink RTM_SETLINK (detach native XDP)");
    // A driver without native XDP refuses the native request: only generic can be there.
    if let Err(e) = &native
        && e.errno() != Some(libc::EOPNOTSUPP)
    {
        return native;
    }
    set_xdp(ifindex, -1, XDP_FLAGS_SKB_MODE, "netlink RTM_SETLINK (detach generic XDP)")
}

/// Attaches `prog` to `ifindex` through netlink with `flags` (`XDP_FLAGS_*`). Unlike a
/// bpf_link, such a program stays attached after its loader exits.
pub fn attach(ifindex: u32, prog: &OwnedFd, flags: u32) -> SysResult<()> {
    set_xdp(ifindex, prog.as_raw_fd(), flags, "netlink RTM_SETLINK (attach XDP)")
}

fn set_xdp(ifindex: u32, fd: i32, flags: u32, call: &'static str) -> SysResult<()> {
    let mut nested = attr(IFLA_XDP_FD, &fd.to_ne_bytes());
    if flags != 0 {
        nested.extend(attr(IFLA_XDP_FLAGS, &flags.to_ne_bytes()));
    }
    let xdp = attr(IFLA_XDP | 0x8000, &nested);
    let reply = exchange(&request(RTM_SETLINK, NLM_F_ACK, ifindex, &xdp))?;
    match error_code(&reply) {
        Some(0) => Ok(()),
        Some(code) => Err(SysError { call, err: std::io::Error::from_raw_os_error(-code) }),
        None => Err(SysError { call, err: std::io::Error::from_raw_os_error(libc::EPROTO) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_walk_is_bounded() {
        let mut data = attr(3, &[1, 2, 3]);
        data.extend(attr(4, &9u32.to_ne_bytes()));
        let all: Vec<(u16, Vec<u8>)> = attrs(&data).map(|(k, p)| (k, p.to_vec())).collect();
        assert_eq!(all, vec![(3, vec![1, 2, 3]), (4, 9u32.to_ne_bytes().to_vec())]);
        // A length past the end stops the walk instead of reading beyond it.
        let mut bad = data.clone();
        bad[0] = 200;
        assert_eq!(attrs(&bad).count(), 0);
        assert_eq!(attrs(&data[..3]).count(), 0);
    }

    #[test]
    fn loopback_has_no_xdp_program() {
        let lo = crate::iface::iface_info("lo").unwrap().index;
        assert_eq!(attached_prog_id(lo).unwrap(), None);
    }
}
