//! One reflector per interface, whatever its data path: a running reflector holds an abstract
//! UNIX socket named after the interface's index. Abstract names belong to the network
//! namespace (so interfaces of other namespaces do not collide), need no file system and no
//! privilege, and are released by the kernel when the process ends, even by SIGKILL. A second
//! reflector finds the name taken and learns the holder's pid from the socket (`SO_PEERCRED`).

use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

/// The interface is ours while this lives.
#[derive(Debug)]
pub struct Claim {
    _listener: UnixListener,
}

/// Why the interface could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another reflector serves it.
    #[error("another reflector (pid {pid}) already serves {iface}: stop it first (it is not replaced)")]
    Held {
        /// Its interface.
        iface: String,
        /// Its process id, as the kernel reports it (0 if unknown).
        pid: i32,
    },
    /// The socket could not be created.
    #[error("cannot claim {iface} (an abstract UNIX socket): {err}")]
    Io {
        /// The interface.
        iface: String,
        /// The error.
        err: std::io::Error,
    },
}

fn name(ifindex: u32) -> Vec<u8> {
    format!("reflector/ifindex/{ifindex}").into_bytes()
}

/// Claims interface `ifindex` (named `iface` in messages) in this network namespace.
pub fn claim(ifindex: u32, iface: &str) -> Result<Claim, ClaimError> {
    let io = |err| ClaimError::Io { iface: iface.into(), err };
    let addr = SocketAddr::from_abstract_name(name(ifindex)).map_err(io)?;
    match UnixListener::bind_addr(&addr) {
        Ok(listener) => Ok(Claim { _listener: listener }),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(ClaimError::Held { iface: iface.into(), pid: holder(&addr).unwrap_or(0) })
        }
        Err(e) => Err(io(e)),
    }
}

/// The pid of the process listening on `addr`: a connection's peer credentials are the
/// listener's, taken when it called `listen()`.
fn holder(addr: &SocketAddr) -> Option<i32> {
    let stream = UnixStream::connect_addr(addr).ok()?;
    let fd = OwnedFd::from(stream);
    reflector_sys::sock::getsockopt::<Ucred>(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_PEERCRED,
        "getsockopt(SO_PEERCRED)",
    )
    .ok()
    .map(|c| c.pid)
}

/// `struct ucred`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Ucred {
    pid: i32,
    uid: u32,
    gid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_with_the_holders_pid_and_the_name_is_freed_on_drop() {
        // An index no interface has, so a reflector running here is not disturbed.
        let index = 0xfff0_0000 + std::process::id() % 0x1000;
        let first = claim(index, "test0").expect("first claim");
        match claim(index, "test0") {
            Err(ClaimError::Held { pid, .. }) => assert_eq!(pid as u32, std::process::id()),
            other => panic!("second claim: {other:?}"),
        }
        drop(first);
        claim(index, "test0").expect("claim after the first was dropped");
    }
}
