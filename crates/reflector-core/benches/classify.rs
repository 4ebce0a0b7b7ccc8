//! classify + reflect per frame (the core's share of the per-packet cost).
//!
//! Frames sit in 2 KiB slots of one buffer, as in an AF_XDP UMEM, and each iteration is one
//! batch: every slot gets the request again ([`refill`]), then every frame is processed once,
//! through the default filter (mode `all`, port 3842). So every pass is a genuine classify +
//! reflect of a request, as a receive path's, and the figure includes the copy (benchmark
//! `refill`, to subtract). (An answer cannot be sent back through another reflector's filter:
//! the loop rules refuse it, which is their point. Processing one frame over and over instead
//! reads the bytes the previous pass just wrote, and measures store-forwarding stalls that a
//! receive path never has. A fresh copy of the whole buffer per iteration, made untimed,
//! measures the memory: criterion prepares many iterations' inputs at once, out of cache.)

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reflector_core::testing::with_stamping;
use reflector_core::{Filter, FilterConfig};
use reflector_testkit::{Frame, default_filter, ordinary_traffic};

const BATCH: usize = 64;
const SLOT: usize = 2048;

/// Puts `request` into every slot of the batch again (the answers overwrote it): 64 copies of
/// constant size, all made before the first is answered, as frames a ring hands over were
/// written well before the worker reads them. (A copy made just before its frame is processed
/// has the processing read bytes still in the store buffer, stalls a receive path never has.)
#[inline(never)]
fn refill<const N: usize>(umem: &mut [u8], request: &[u8; N]) {
    for slot in black_box(umem).chunks_mut(SLOT) {
        if let Some(frame) = slot.first_chunk_mut::<N>() {
            *frame = *request;
        }
    }
}

/// Times [`refill`] and `process` of every frame of the batch, with `filter` and `state`
/// (`before_each` runs before each frame); every frame must be a hit.
fn bench_batches<const N: usize>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    request: &[u8; N],
    filter: &Filter,
    state: &mut reflector_core::PathState<'_>,
    mut before_each: impl FnMut(&mut reflector_core::PathState<'_>),
) {
    let mut umem = vec![0u8; BATCH * SLOT];
    group.bench_function(name, |b| {
        b.iter(|| {
            refill(&mut umem, request);
            let mut hits = 0;
            // The batch is opaque to the compiler (as frames a ring hands over are); the frames
            // in it are not each passed through `black_box`, which would spill every slice to
            // the stack and reload it, as a worker's loop does not. The signature is used, as a
            // worker's counters use it.
            for slot in black_box(&mut umem).chunks_mut(SLOT) {
                before_each(state);
                hits += filter.process(&mut slot[..N], state).map_or(0, |h| 1 + h.signature() as usize);
            }
            assert_eq!(hits, BATCH);
        })
    });
}

/// `frame` as an array of its length.
fn request<const N: usize>(frame: &Frame) -> [u8; N] {
    frame.bytes().try_into().unwrap_or_else(|b: Vec<u8>| panic!("{} bytes, not {N}", b.len()))
}

fn bench_hits(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify_reflect");
    group.throughput(Throughput::Elements(BATCH as u64));
    let filter = default_filter();
    let v4: [u8; 60] = request(&Frame::ito_v4());
    let v6: [u8; 80] = request(&Frame::ito_v6());
    let vlan: [u8; 64] = request(&Frame { vlans: vec![(0x8100, 100)], ..Frame::ito_v4() });
    with_stamping(|state| {
        bench_batches(&mut group, "ito_ipv4_60B", &v4, &filter, state, |_| ());
        bench_batches(&mut group, "ito_ipv6", &v6, &filter, state, |_| ());
        bench_batches(&mut group, "ito_ipv4_vlan", &vlan, &filter, state, |_| ());
    });
    // The copy alone, to subtract from the figures above.
    let mut umem = vec![0u8; BATCH * SLOT];
    group.bench_function("refill_60B", |b| b.iter(|| refill(&mut umem, &v4)));
    group.finish();
}

fn bench_rejects(c: &mut Criterion) {
    let mut group = c.benchmark_group("reject");
    group.throughput(Throughput::Elements(1));
    let filter = default_filter();
    for (name, mut frame) in ordinary_traffic() {
        let original = frame.clone();
        // The reason is the result (criterion keeps it from the optimizer), as a worker's
        // counters use it.
        with_stamping(|stamping| {
            group.bench_function(name, |b| b.iter(|| filter.process(black_box(&mut frame), stamping).err()))
        });
        assert_eq!(frame, original);
    }
    group.finish();
}

/// A 44-byte STAMP request answered: classify, the Session-Reflector fields with both
/// timestamps, the checksum update, the swap. The time is passed in (a fixed clock), as the core
/// takes it; a worker's clock readings come on top. Each slot gets the request again before the
/// batch is answered ([`refill`], included in the figure).
fn bench_stamp(c: &mut Criterion) {
    use reflector_core::stamp::{ErrorEstimate, Sessions};
    let mut group = c.benchmark_group("stamp");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, stateful) in [("stamp_ipv4_44B", false), ("stamp_ipv4_44B_stateful", true)] {
        let filter = reflector_testkit::filter_with(|c| {
            c.families.insert(reflector_core::Family::Stamp);
            if stateful {
                c.stamp_sequence = reflector_core::stamp::SequenceMode::Stateful;
            }
        });
        let request: [u8; 86] = Frame::stamp_v4(44).bytes().try_into().expect("86 bytes");
        let mut umem = vec![0u8; BATCH * SLOT];
        let len = request.len();
        let mut sessions: Box<Sessions> = Box::default();
        let mut clock = || 1_796_126_400_250_000_000u64;
        let mut stamping = reflector_core::PathState {
            received: Some(1_796_126_400_249_000_000),
            clock: &mut clock,
            error: ErrorEstimate::new(true, 1_000),
            sessions: &mut *sessions,
            limiter: None,
            testers: None,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                refill(&mut umem, &request);
                let mut hits = 0;
                for slot in black_box(&mut umem).chunks_mut(SLOT) {
                    hits += filter.process(&mut slot[..len], &mut stamping).is_ok() as usize;
                }
                assert_eq!(hits, BATCH);
            })
        });
    }
    // The rewrite alone, as `stamp::respond` takes it: the request already classified, the
    // times passed in; then the addresses and ports swapped.
    let filter = reflector_testkit::filter_with(|c| {
        c.families.insert(reflector_core::Family::Stamp);
    });
    let request: [u8; 86] = Frame::stamp_v4(44).bytes().try_into().expect("86 bytes");
    let hit = reflector_core::classify(&request, &filter).expect("a STAMP request");
    let answer = reflector_core::stamp::Answer {
        format: reflector_core::stamp::TimestampFormat::Ntp,
        error: ErrorEstimate::new(true, 1_000),
        sequence: None,
    };
    let times =
        reflector_core::stamp::Times { received: 1_796_126_400_249_000_000, sent: 1_796_126_400_250_000_000 };
    let mut umem = vec![0u8; BATCH * SLOT];
    group.bench_function("stamp_rewrite_ipv4_44B", |b| {
        b.iter(|| {
            refill(&mut umem, &request);
            for slot in black_box(&mut umem).chunks_mut(SLOT) {
                let Some(frame) = slot.first_chunk_mut::<86>() else { continue };
                reflector_core::stamp::respond(frame, black_box(&hit), &answer, black_box(times));
                reflector_core::reflect(frame, &hit, &filter);
            }
        })
    });
    group.finish();
}

/// ITO over IPv4 as `classify_reflect/ito_ipv4_60B`, with allow and deny lists (a /24 holding
/// both ends, with a deny entry: 2 entries; or among 100 allow and 50 deny prefixes), rate
/// limits per source and in all (high enough that every frame passes: each frame is received
/// 1 µs after the one before, the time passed in as a data path with receive times passes it),
/// or both, on the default filter otherwise: the difference to `ito_ipv4_60B` is what they
/// cost a frame.
fn bench_gate(c: &mut Criterion) {
    use reflector_core::access::Source;
    use reflector_core::limit::{Limiter, Rate};
    use reflector_core::stamp::{ErrorEstimate, Sessions};
    let mut group = c.benchmark_group("gate");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut allow: Vec<Source> = vec!["192.0.2.0/24".parse().unwrap()];
    allow.extend((0..99u32).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256).parse::<Source>().unwrap()));
    let deny: Vec<Source> = (0..50u32).map(|i| format!("172.16.{i}.0/24").parse().unwrap()).collect();
    let (allow_2, deny_2): (Vec<Source>, Vec<Source>) =
        (vec!["192.0.2.0/24".parse().unwrap()], vec!["192.0.2.66".parse().unwrap()]);
    let limit = Rate::new(10_000_000, 1000);
    let frame: [u8; 60] = request(&Frame::ito_v4());
    for (name, lists, limits) in [
        ("ito_ipv4_60B_lists_2", Some((&allow_2, &deny_2)), false),
        ("ito_ipv4_60B_lists_150", Some((&allow, &deny)), false),
        ("ito_ipv4_60B_limits", None, true),
        ("ito_ipv4_60B_lists_2_limits", Some((&allow_2, &deny_2)), true),
    ] {
        let gated = |config: FilterConfig<'_>| {
            let config = FilterConfig {
                allow: lists.map_or(&[][..], |l| l.0),
                deny: lists.map_or(&[][..], |l| l.1),
                source_limit: if limits { limit } else { None },
                total_limit: if limits { Rate::new(u32::MAX, 1000) } else { None },
                ..config
            };
            Filter::new(&config).unwrap()
        };
        let filter = gated(FilterConfig {
            local_ips: &reflector_testkit::LOCAL_IPS,
            ..FilterConfig::new(reflector_testkit::LOCAL_MAC)
        });
        let limiter = Limiter::default();
        let mut sessions: Box<Sessions> = Box::default();
        let mut clock = || reflector_core::testing::FIXED_TIME;
        let mut now = reflector_core::testing::FIXED_TIME;
        let mut state = reflector_core::PathState {
            received: None,
            clock: &mut clock,
            error: ErrorEstimate::new(true, 1_000),
            sessions: &mut *sessions,
            limiter: Some(&limiter),
            testers: None,
        };
        // Each frame received 1 µs after the one before.
        let tick = |state: &mut reflector_core::PathState<'_>| {
            now += 1000;
            state.received = Some(now);
        };
        bench_batches(&mut group, name, &frame, &filter, &mut state, tick);
    }
    group.finish();
}

criterion_group!(benches, bench_hits, bench_rejects, bench_stamp, bench_gate);
criterion_main!(benches);
