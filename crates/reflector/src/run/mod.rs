//! `reflector run IFACE`: reflect test packets on a live interface until stopped.
//!
//! `args` turns the command line and the configuration file into the settings of the run;
//! `open` chooses and opens the data path and says what it opened (`BackendInfo`); `serve`
//! runs the workers and the control loop over what `running` holds; `reload` applies a SIGHUP; `link` watches the
//! interface; `signals` holds the signal flags from the first instruction; `notify` tells a
//! service manager (systemd) how the run goes; `privilege` gives up the capabilities set-up
//! needed and a reload does not.

mod args;
mod link;
mod notify;
mod open;
mod privilege;
mod reload;
mod running;
mod serve;
mod signals;

use std::sync::Arc;

pub use args::{RunArgs, check_config_file};
pub use signals::defer_sighup;

use crate::input::UsageError;
use open::Workers;
use running::Run;

/// Starts a run with `args` (as parsed from `matches`) and serves until it ends.
pub fn run(args: &RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let signals = signals::Signals::install()?;
    let reload = || args::with_config(args, matches).map(|(a, _)| a);
    let (args, iface_name) = args::with_config(args, matches)?;
    let iface = crate::interface::usable_interface(&iface_name)?;
    // One reflector per interface, whatever the data paths: held until this returns.
    #[cfg(target_os = "linux")]
    let _claim = reflector_io::claim::claim(iface.index, &iface_name)?;
    let local_ips = crate::interface::interface_addresses(&iface_name)?;
    let filter = Arc::new(
        args.filter
            .filter(iface.mac, &local_ips)
            .map_err(|e| UsageError(format!("{e} (interface {} has MAC {})", iface_name, iface.mac)))?,
    );
    let opened = open::open(&args, &iface_name, &iface, &filter)?;
    let run = Run {
        args: &args,
        iface_name: &iface_name,
        iface: &iface,
        info: opened.info,
        kernel: opened.kernel,
        reload: &reload,
        signals: &signals,
    };
    match opened.workers {
        #[cfg(target_os = "linux")]
        Workers::AfXdp(sockets) => serve::serve(run, filter, sockets),
        #[cfg(target_os = "linux")]
        Workers::AfPacket(sockets) => serve::serve(run, filter, sockets),
        Workers::Bpf(devices) => serve::serve(run, filter, devices),
        Workers::InKernel => serve::serve(run, filter, Vec::<reflector_io::backend::InKernel>::new()),
    }
}
