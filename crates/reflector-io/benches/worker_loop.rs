//! The worker's per-batch loop over the in-memory backend: lend a batch, classify and reflect
//! each frame in place, count it, queue the hits. Measures the runtime's own overhead on top
//! of the core (compare with `reflector-core`'s `classify_reflect` benchmark in the same run).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use reflector_core::Counters;
use reflector_io::backend::Backend;
use reflector_io::testing::MemoryBackend;
use reflector_testkit::{Frame, default_filter};

fn worker_loop(c: &mut Criterion) {
    const BATCH: usize = 64;
    let filter = default_filter();
    let frame = Frame::ito_v4().bytes();
    let mut group = c.benchmark_group("worker_loop");
    group.throughput(Throughput::Elements(BATCH as u64));
    reflector_core::testing::with_stamping(|stamping| {
        group.bench_function("memory_backend_64_probes", |b| {
            b.iter_batched_ref(
                || MemoryBackend {
                    rx: (0..BATCH).map(|_| frame.clone()).collect(),
                    batch: BATCH,
                    ..MemoryBackend::default()
                },
                |backend| {
                    let mut counters = Counters::default();
                    let batch = backend
                        .process(Duration::ZERO, |f, _| {
                            let v = filter.process(f, stamping);
                            counters.record(f.len(), &v);
                            v.is_ok()
                        })
                        .unwrap();
                    assert_eq!(batch.received, BATCH);
                    black_box(counters)
                },
                BatchSize::SmallInput,
            )
        });
    });
    group.finish();
}

criterion_group!(benches, worker_loop);
criterion_main!(benches);
