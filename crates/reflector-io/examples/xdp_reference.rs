//! Reference XDP programs for `scripts/bench-lab.sh`, built with our assembler: what the
//! reflector's in-kernel backend is measured against.
//!
//! Usage (root, in the interface's namespace): `xdp_reference drop|swap|pass IFACE SECONDS`
//! - `drop`: every frame dropped at once (the cost of the sender and the veth alone);
//! - `swap`: every untagged IPv4 frame of at least 38 bytes turned around (MACs, addresses,
//!   UDP ports) and sent back with `XDP_TX`, without any of the packet rules;
//! - `pass`: every frame to the stack (on a veth, what lets it take frames its peer sends with
//!   `XDP_TX`).
//!
//! The program stays attached for SECONDS (through a bpf_link, so it goes with the process).

use reflector_bpf::ebpf::*;
use reflector_bpf::xdp::{XDP_PASS, XDP_TX};
use reflector_sys::xdp::bpf;

const XDP_DROP: i32 = 1;

fn program(kind: &str) -> Option<Vec<Insn>> {
    let mut a = Asm::default();
    match kind {
        "drop" => a.mov_imm(R0, XDP_DROP),
        "pass" => a.mov_imm(R0, XDP_PASS),
        "swap" => {
            let pass = a.label();
            a.load(Size::W, R7, R1, 0);
            a.load(Size::W, R8, R1, 4);
            a.mov(R2, R7);
            a.alu_imm(Alu::Add, R2, 38);
            a.jump_reg(Cond::Gt, R2, R8, pass);
            // MACs: 0..6 <-> 6..12.
            a.load(Size::W, R0, R7, 0);
            a.load(Size::H, R1, R7, 4);
            a.load(Size::W, R2, R7, 6);
            a.load(Size::H, R3, R7, 10);
            a.store(Size::W, R7, 0, R2);
            a.store(Size::H, R7, 4, R3);
            a.store(Size::W, R7, 6, R0);
            a.store(Size::H, R7, 10, R1);
            // IPv4 addresses: 26..30 <-> 30..34; UDP ports: 34..36 <-> 36..38.
            a.load(Size::W, R0, R7, 26);
            a.load(Size::W, R1, R7, 30);
            a.store(Size::W, R7, 26, R1);
            a.store(Size::W, R7, 30, R0);
            a.load(Size::H, R0, R7, 34);
            a.load(Size::H, R1, R7, 36);
            a.store(Size::H, R7, 34, R1);
            a.store(Size::H, R7, 36, R0);
            a.mov_imm(R0, XDP_TX);
            a.exit();
            a.place(pass);
            a.mov_imm(R0, XDP_PASS);
        }
        _ => return None,
    }
    a.exit();
    a.finish()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: xdp_reference drop|swap|pass IFACE SECONDS");
        std::process::exit(2)
    };
    let [_, kind, iface, secs] = args.as_slice() else { usage() };
    let Some(insns) = program(kind) else { usage() };
    let Ok(secs) = secs.parse::<f64>() else { usage() };
    let index = match reflector_sys::iface::iface_info(iface) {
        Ok(info) => info.index,
        Err(e) => {
            eprintln!("xdp_reference: {e}");
            std::process::exit(1)
        }
    };
    let attached =
        reflector_io::xdp::load_program(&insns, "reference").map_err(|e| e.to_string()).and_then(|prog| {
            bpf::link_create(&prog, index, bpf::XDP_FLAGS_DRV_MODE)
                .or_else(|_| bpf::link_create(&prog, index, bpf::XDP_FLAGS_SKB_MODE))
                .map_err(|e| e.to_string())
        });
    match attached {
        Ok(_link) => std::thread::sleep(std::time::Duration::from_secs_f64(secs)),
        Err(e) => {
            eprintln!("xdp_reference: {e}");
            std::process::exit(1)
        }
    }
}
