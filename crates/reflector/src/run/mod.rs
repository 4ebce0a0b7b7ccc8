//! `reflector run IFACE`: reflect test packets on a live interface until stopped.
//!
//! `args` turns the command line and the configuration file into the settings of the run;
//! the data path is opened by `reflector_io::datapath` (which says what it opened); `serve`
//! runs the workers and the control loop over what `running` holds; `reload` applies a SIGHUP; `link` watches the
//! interface; `signals` holds the signal flags from the first instruction; `notify` tells a
//! service manager (systemd) how the run goes; `privilege` gives up the capabilities set-up
//! needed and a reload does not.

mod args;
mod link;
mod notify;
mod privilege;
mod reload;
mod running;
mod serve;
mod signals;

use std::sync::Arc;

pub use args::{RunArgs, check_config_file};
pub use signals::defer_sighup;

use crate::input::UsageError;
use running::Run;

/// Starts a run with `args` (as parsed from `matches`) and serves until it ends.
pub fn run(args: &RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let signals = signals::Signals::install()?;
    let reload = || args::with_config(args, matches).map(|(a, _)| a);
    let (args, iface_name) = args::with_config(args, matches)?;
    let settings = reflector_io::datapath::Settings {
        workers: args.workers,
        umem_mib: args.umem_size,
        busy_poll: args.busy_poll,
        replace: args.replace,
        capture_kernel_limit: args.may_capture().then_some(args.capture_kernel_limit),
        dpdk_eal: args.dpdk_eal.as_ref().map(|a| a.split_whitespace().map(String::from).collect()),
        dpdk_port: args.dpdk_port.clone(),
        dpdk_tap: args.dpdk_tap.clone(),
    };
    // With --dpdk-tap the interface is DPDK's to make.
    reflector_io::datapath::prepare(args.backend.named(), &settings)?;
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
    let on = reflector_io::datapath::Iface { name: &iface_name, info: &iface };
    let opened = reflector_io::datapath::open(args.backend.named(), &settings, on, &filter)?;
    let run = Run {
        args: &args,
        iface_name: &iface_name,
        iface: &iface,
        info: opened.info,
        kernel: opened.kernel,
        reload: &reload,
        signals: &signals,
    };
    opened.workers.run(Serve { run, filter })
}

/// Serves a run on whichever workers its data path opened.
struct Serve<'a> {
    run: Run<'a>,
    filter: Arc<reflector_core::Filter>,
}

impl reflector_io::datapath::RunWorkers for Serve<'_> {
    type Output = anyhow::Result<()>;
    fn run<B: reflector_io::backend::Backend>(self, backends: Vec<B>) -> anyhow::Result<()> {
        serve::serve(self.run, self.filter, backends)
    }
}
