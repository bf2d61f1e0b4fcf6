//! SHA-256 throughput of the verifier every downloaded byte goes through. sha2 picks the
//! CPU's SHA extensions at run time; on a machine with `sha_ni` this runs at about 1.5 GB/s.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use haul::digest::Verifier;

fn verifier(c: &mut Criterion) {
    let data = vec![0x5au8; 64 << 20];
    let mut group = c.benchmark_group("verifier");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    // Chunks the size a network read delivers, and large ones.
    for chunk in [16 << 10, 1 << 20] {
        group.bench_function(format!("sha256 64MiB in {}KiB chunks", chunk >> 10), |b| {
            b.iter(|| {
                let mut verifier = Verifier::new();
                for part in data.chunks(chunk) {
                    verifier.update(black_box(part));
                }
                black_box(verifier.finish())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, verifier);
criterion_main!(benches);
