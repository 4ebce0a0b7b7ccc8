//! The generated programs, byte for byte: every configuration below is generated and its
//! instructions hashed; the hashes must be those in `tests/data/programs.txt`. A change to a
//! generator that changes a program fails here, so it is made on purpose and explained in its
//! commit: regenerate the file with `REFLECTOR_BLESS=1 cargo test -p reflector-bpf --test
//! program_bytes` and say in the commit which programs changed and why.

use std::fmt::Write as _;
use std::net::IpAddr;

use reflector_bpf::{cbpf, xdp};
use reflector_core::access::Source;
use reflector_core::limit::Rate;
use reflector_core::stamp::{SequenceMode, TimestampFormat};
use reflector_core::{CustomSignature, Family, Filter, FilterConfig, LoopGuard, MacAddr, Mode, StampShort};

fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn ebpf_hash(insns: &[reflector_bpf::ebpf::Insn]) -> String {
    let bytes = insns.iter().flat_map(|i| {
        let mut b = vec![i.code, i.regs];
        b.extend(i.off.to_le_bytes());
        b.extend(i.imm.to_le_bytes());
        b
    });
    format!("{} {:016x}", insns.len(), fnv(bytes.collect::<Vec<_>>()))
}

fn cbpf_hash(insns: &[cbpf::Insn]) -> String {
    let bytes = insns.iter().flat_map(|i| {
        let mut b = i.code.to_le_bytes().to_vec();
        b.extend([i.jt, i.jf]);
        b.extend(i.k.to_le_bytes());
        b
    });
    format!("{} {:016x}", insns.len(), fnv(bytes.collect::<Vec<_>>()))
}

/// The filters the programs are generated for, by name.
fn filters() -> Vec<(&'static str, Filter)> {
    let mac = MacAddr([0x02, 0, 0, 0, 0, 1]);
    let locals: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
    let custom = [CustomSignature::new(4, b"ACME").unwrap()];
    let allow: Vec<Source> = vec!["192.0.2.0/24".parse().unwrap()];
    let deny: Vec<Source> = vec!["192.0.2.66".parse().unwrap()];
    let mut out = Vec::new();
    macro_rules! add {
        ($name:expr, |$c:ident| $edit:expr) => {{
            #[allow(unused_mut)]
            let mut $c = FilterConfig::new(mac);
            $edit;
            out.push(($name, Filter::new(&$c).unwrap_or_else(|e| panic!("{}: {e}", $name))));
        }};
    }
    add!("default", |c| {});
    add!("stamp", |c| {
        c.families.insert(Family::Stamp);
    });
    add!("stamp-only", |c| {
        c.families = reflector_core::FamilySet::EMPTY;
        c.families.insert(Family::Stamp);
        c.oui_families = reflector_core::FamilySet::EMPTY;
    });
    add!("stamp-ptp-stateful", |c| {
        c.families.insert(Family::Stamp);
        c.stamp_timestamps = TimestampFormat::Ptp;
        c.stamp_sequence = SequenceMode::Stateful;
    });
    add!("stamp-refuse-short", |c| {
        c.families.insert(Family::Stamp);
        c.stamp_short = StampShort::Refuse;
    });
    add!("mode-mac", |c| c.mode = Mode::Mac);
    add!("mode-mac-ip", |c| c.mode = Mode::MacIp);
    add!("port-any", |c| c.port = 0);
    add!("oui", |c| c.oui = Some([0x00, 0xc0, 0x17]));
    add!("custom", |c| {
        c.families.insert(Family::Custom);
        c.custom = &custom;
    });
    add!("locals", |c| c.local_ips = &locals);
    add!("lists-limits", |c| {
        c.allow = &allow;
        c.deny = &deny;
        c.source_limit = Rate::new(1000, 10);
        c.total_limit = Rate::new(100_000, 100);
    });
    add!("loop-guard-port-only", |c| {
        c.families.insert(Family::Stamp);
        c.loop_guard = LoopGuard::PortOnly;
    });
    out
}

fn table() -> String {
    let stamp = xdp::StampMaps { clock_fd: 11, sessions_fd: 12 };
    let gate = xdp::GateMaps {
        config_fd: 21,
        v4_fd: 22,
        v6_fd: 23,
        macs_fd: 24,
        total_fd: 25,
        testers_fd: 26,
        testers_cpu_fd: 27,
    };
    let capture = xdp::CaptureMaps { control_fd: 31, ring_fd: 32 };
    let endings: [(&str, xdp::OnHit); 5] = [
        ("redirect", xdp::OnHit::Redirect { xsk_map_fd: 5, receive_time: false }),
        ("redirect-time", xdp::OnHit::Redirect { xsk_map_fd: 5, receive_time: true }),
        ("return-tx", xdp::OnHit::ReturnTx),
        ("reflect", xdp::OnHit::Reflect { stamp: Some(stamp) }),
        ("reflect-nostamp", xdp::OnHit::Reflect { stamp: None }),
    ];
    let mut out = String::new();
    for (name, filter) in filters() {
        let pre = cbpf::program(&filter).map_or("none".into(), |p| cbpf_hash(&p));
        writeln!(out, "{name} cbpf {pre}").unwrap();
        for (ending, on_hit) in endings {
            for counters in [None, Some(7)] {
                for with_gate in [false, true] {
                    for with_capture in [false, true] {
                        let program = xdp::program(
                            &filter,
                            on_hit,
                            counters,
                            with_gate.then_some(gate),
                            with_capture.then_some(capture),
                        );
                        let hash = program.map_or("none".into(), |p| ebpf_hash(&p));
                        writeln!(
                            out,
                            "{name} {ending} counters={} gate={with_gate} capture={with_capture} {hash}",
                            counters.is_some()
                        )
                        .unwrap();
                    }
                }
            }
        }
    }
    let marked = xdp::mark_stack_written(
        xdp::program(&filters()[0].1, endings[0].1, Some(7), None, None).expect("the default program"),
    );
    writeln!(out, "default redirect marked {}", ebpf_hash(&marked)).unwrap();
    out
}

#[test]
fn the_generated_programs_are_the_recorded_ones() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/programs.txt");
    let now = table();
    if std::env::var_os("REFLECTOR_BLESS").is_some() {
        std::fs::write(path, &now).unwrap();
    }
    let recorded = std::fs::read_to_string(path).expect("tests/data/programs.txt");
    let changed: Vec<(&str, &str)> =
        recorded.lines().zip(now.lines()).filter(|(a, b)| a != b).take(10).collect();
    assert!(
        changed.is_empty() && recorded.lines().count() == now.lines().count(),
        "programs changed (recorded / now): {changed:#?}; regenerate with REFLECTOR_BLESS=1 and explain the change in the commit"
    );
}
