//! The worker's per-batch loop over the in-memory backend: lend a batch, classify and reflect
//! each frame in place, count it, queue the hits. Measures the runtime's own overhead on top
//! of the core (compare with `reflector-core`'s `classify_reflect` benchmark in the same run);
//! and the same behind the capture tap, with no capture and with every reflection captured
//! (to a file sink on /dev/null, so the writer thread's own cost is off the worker's core
//! only as far as the machine has another).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use reflector_core::Counters;
use reflector_io::backend::Backend;
use reflector_io::tap::{FileSink, Tap, Tapped, What};
use reflector_io::testing::{MemoryBackend, with_room};
use reflector_testkit::{Frame, default_filter};
use std::path::Path;

const BATCH: usize = 64;

/// One batch of `BATCH` probes through `backend` made by `make`, judged and counted.
fn bench_batches<B: Backend>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    make: impl Fn() -> B,
) {
    let filter = default_filter();
    reflector_core::testing::with_stamping(|stamping| {
        c.bench_function(name, |b| {
            b.iter_batched_ref(
                &make,
                |backend| {
                    let mut counters = Counters::default();
                    let batch = backend
                        .process(Duration::ZERO, |buf, len, _| {
                            let v = filter.process_in(buf, len, stamping);
                            counters.record(len, &v);
                            v
                        })
                        .unwrap();
                    assert_eq!(batch.received, BATCH);
                    black_box(counters)
                },
                BatchSize::SmallInput,
            )
        });
    });
}

fn worker_loop(c: &mut Criterion) {
    let frame = Frame::ito_v4().bytes();
    let memory = || MemoryBackend {
        // Each with its room reserved: lending it allocates nothing, as a ring's slot does not.
        rx: (0..BATCH).map(|_| with_room(&frame)).collect(),
        batch: BATCH,
        ..MemoryBackend::default()
    };
    let mut group = c.benchmark_group("worker_loop");
    group.throughput(Throughput::Elements(BATCH as u64));
    bench_batches(&mut group, "memory_backend_64_probes", memory);
    let (idle, idle_thread) = Tap::start("bench").unwrap();
    bench_batches(&mut group, "memory_backend_64_probes_tap_idle", || Tapped::new(memory(), idle.clone()));
    let (tap, thread) = Tap::start("bench").unwrap();
    tap.add(Box::new(FileSink::create(Path::new("/dev/null"), "bench", What::REFLECTED, None).unwrap()));
    bench_batches(&mut group, "memory_backend_64_probes_capturing", || Tapped::new(memory(), tap.clone()));
    group.finish();
    thread.stop();
    idle_thread.stop();
    eprintln!("capturing: {} frames captured, {} not (the writer was behind)", tap.captured(), tap.dropped());
}

criterion_group!(benches, worker_loop);
criterion_main!(benches);
