//! The AF_XDP data path: the generated XDP program, loaded and attached with raw `bpf(2)`,
//! and AF_XDP sockets that receive what it redirects.

pub mod bpf;
