//! The tar writer: copying a cached 64 MiB blob into an output file (copy_file_range on
//! Linux), and the same into memory (the user-space path, for comparison).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use haul::export::tar::TarWriter;

fn tar_writer(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob");
    let size: u64 = 64 << 20;
    std::fs::write(&blob, vec![7u8; size as usize]).unwrap();
    let mut group = c.benchmark_group("tar_writer");
    group.throughput(Throughput::Bytes(size));
    group.sample_size(10);
    group.bench_function("64MiB blob into a file", |b| {
        b.iter(|| {
            let out = std::fs::File::create(dir.path().join("out.tar")).unwrap();
            let mut writer = TarWriter::new(out);
            writer.append_file("blobs/sha256/x", &blob, size).unwrap();
            black_box(writer.finish().unwrap());
        });
    });
    group.bench_function("64MiB blob into memory", |b| {
        b.iter(|| {
            let mut writer = TarWriter::new(Vec::with_capacity(size as usize + 4096));
            writer.append_file("blobs/sha256/x", &blob, size).unwrap();
            black_box(writer.finish().unwrap());
        });
    });
    group.finish();
}

criterion_group!(benches, tar_writer);
criterion_main!(benches);
