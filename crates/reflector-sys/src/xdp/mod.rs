//! AF_XDP and the eBPF side: `bpf(2)` (maps, program load, links), netlink XDP attachment, the
//! AF_XDP sockets with their rings and UMEM.

pub mod bpf;
pub mod netlink;
pub mod ring;
pub mod ringbuf;
pub mod xsk;
