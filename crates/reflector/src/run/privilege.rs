//! What a run keeps of its privileges once it is set up: the data path is open, the XDP
//! program attached, the test ports and the HTTP port bound. From then on a reload is the only
//! thing that may need one: on af-xdp and xdp-tx a changed filter is a new XDP program, loaded
//! and swapped in, which needs CAP_BPF and CAP_NET_ADMIN; af-packet's filter is a
//! socket's own and needs none. On DPDK's `net_af_xdp` device CAP_NET_ADMIN stays, to detach at
//! the end the XDP program that its driver leaves. Everything else is given up, root's too.

/// Gives up every capability the run does not need from here on (see the module), in the
/// calling thread, before it starts any other; `kernel_program` when the data path has an XDP
/// program a reload may replace, `detach_at_end` when its end detaches one (DPDK's
/// `net_af_xdp` driver's).
pub(super) fn drop_after_setup(kernel_program: bool, detach_at_end: bool) -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use reflector_io::host::privilege::{XDP_DETACH, XDP_PROGRAM, keep_only};
        let keep = match (kernel_program, detach_at_end) {
            (true, _) => XDP_PROGRAM,
            (false, true) => XDP_DETACH,
            (false, false) => &[],
        };
        keep_only(keep).map_err(|e| anyhow::anyhow!("cannot give up capabilities after set-up: {e}"))?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (kernel_program, detach_at_end);
    Ok(())
}
