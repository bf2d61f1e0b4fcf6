//! Recovery parts, made and used stripe by stripe: stripe `i` of every data part (the bytes
//! at `i × stripe`, zero past a part's end, padded to an even length) are the original shards
//! of one Reed–Solomon code over GF(2^16) (reed-solomon-simd, the Leopard-RS algorithm), and
//! stripe `i` of each recovery part is one of its recovery shards. Any `N` shards of a stripe
//! may be lost, so any `N` parts of the set. Memory is one stripe per part, whatever the part
//! size: the stripe shrinks as the parts grow in number.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use super::PartHasher;

/// What the record names the code.
pub const SCHEME: &str = "reed-solomon-gf2^16 (Leopard-RS, reed-solomon-simd 3)";

/// Bytes of all parts held for one stripe, at most.
const STRIPES_BUDGET: u64 = 32 << 20;

/// The stripe for `parts` parts (data and recovery): up to 1 MiB, less when they are many, so
/// that a stripe of every part fits the budget; even, and at least 4 KiB.
pub fn stripe_for(parts: usize) -> u64 {
    let stripe = (STRIPES_BUDGET / parts.max(1) as u64).clamp(4 << 10, 1 << 20);
    stripe & !1
}

/// The length of stripe `offset` of parts `part_size` long: `stripe`, or what is left at
/// the end, rounded up to even (the code's shards are of even length).
fn shard_len(offset: u64, part_size: u64, stripe: u64) -> usize {
    let len = stripe.min(part_size - offset);
    (len + (len & 1)) as usize
}

/// Reads stripe `offset` of a data part of `size` bytes into `buffer` (its length), zero past
/// the end.
fn read_stripe(file: &File, size: u64, offset: u64, buffer: &mut [u8]) -> io::Result<()> {
    buffer.fill(0);
    if offset < size {
        let len = (size - offset).min(buffer.len() as u64) as usize;
        crate::portable::read_exact_at(file, &mut buffer[..len], offset)?;
    }
    Ok(())
}

fn coding_error(error: reed_solomon_simd::Error) -> io::Error {
    io::Error::other(format!("Reed–Solomon coding failed: {error}"))
}

/// Writes `recovery.len()` recovery parts for the data parts `data` (open files and their
/// sizes; the first is the longest, `part_size`), each fed to its hasher as it is written.
/// The coding (reading the data parts back) and the writing and hashing of what it makes run
/// on two threads, a few stripes apart: they cost about the same.
pub fn encode(
    data: &[(File, u64)],
    part_size: u64,
    stripe: u64,
    recovery: &mut [(File, PartHasher)],
) -> io::Result<()> {
    let parity = recovery.len();
    std::thread::scope(|scope| {
        let (sender, stripes) = mpsc::sync_channel::<Vec<Vec<u8>>>(4);
        let writing = scope.spawn(move || -> io::Result<()> {
            for shards in stripes {
                for ((file, hasher), shard) in recovery.iter_mut().zip(&shards) {
                    file.write_all(shard)?;
                    hasher.update(shard);
                }
            }
            Ok(())
        });
        let coded = encode_stripes(data, part_size, stripe, parity, sender);
        let written = writing
            .join()
            .map_err(|_| io::Error::other("the thread writing the recovery parts panicked"))?;
        // The writer's error first: a coding that stopped because the writer did says less.
        written.and(coded)
    })
}

/// The coding of [`encode`]: each stripe's `parity` recovery shards, sent to be written.
fn encode_stripes(
    data: &[(File, u64)],
    part_size: u64,
    stripe: u64,
    parity: usize,
    write: mpsc::SyncSender<Vec<Vec<u8>>>,
) -> io::Result<()> {
    let mut encoder = ReedSolomonEncoder::new(data.len(), parity, 2).map_err(coding_error)?;
    let mut buffer = vec![0u8; stripe as usize + 1];
    let mut offset = 0;
    while offset < part_size {
        let len = shard_len(offset, part_size, stripe);
        encoder
            .reset(data.len(), parity, len)
            .map_err(coding_error)?;
        for (file, size) in data {
            read_stripe(file, *size, offset, &mut buffer[..len])?;
            encoder
                .add_original_shard(&buffer[..len])
                .map_err(coding_error)?;
        }
        let result = encoder.encode().map_err(coding_error)?;
        let shards = result.recovery_iter().map(<[u8]>::to_vec).collect();
        if write.send(shards).is_err() {
            // The writer stopped, with the error that stopped it.
            return Ok(());
        }
        offset += stripe;
    }
    Ok(())
}

/// One part of a set being repaired: its file when it is whole, or where its rebuilt bytes go.
pub enum Shard<'a> {
    Whole(&'a File),
    Rebuild(&'a mut (File, PartHasher)),
}

/// Rebuilds the parts marked [`Shard::Rebuild`] from the whole ones: `data` are the data
/// parts with their sizes, `recovery` the recovery parts (each `recovery_size` long).
pub fn rebuild(
    data: &mut [(Shard<'_>, u64)],
    recovery: &mut [Shard<'_>],
    part_size: u64,
    recovery_size: u64,
    stripe: u64,
) -> io::Result<()> {
    let (originals, recoveries) = (data.len(), recovery.len());
    let data_lost = data.iter().any(|(s, _)| matches!(s, Shard::Rebuild(_)));
    let recovery_lost = recovery.iter().any(|s| matches!(s, Shard::Rebuild(_)));
    let mut decoder = ReedSolomonDecoder::new(originals, recoveries, 2).map_err(coding_error)?;
    let mut encoder = ReedSolomonEncoder::new(originals, recoveries, 2).map_err(coding_error)?;
    let mut buffers: Vec<Vec<u8>> = vec![vec![0u8; stripe as usize + 1]; originals];
    let mut spare = vec![0u8; stripe as usize + 1];
    let mut offset = 0;
    while offset < part_size {
        let len = shard_len(offset, part_size, stripe);
        for ((shard, size), buffer) in data.iter().zip(&mut buffers) {
            if let Shard::Whole(file) = shard {
                read_stripe(file, *size, offset, &mut buffer[..len])?;
            }
        }
        if data_lost {
            decoder
                .reset(originals, recoveries, len)
                .map_err(coding_error)?;
            for (index, ((shard, _), buffer)) in data.iter().zip(&buffers).enumerate() {
                if matches!(shard, Shard::Whole(_)) {
                    decoder
                        .add_original_shard(index, &buffer[..len])
                        .map_err(coding_error)?;
                }
            }
            for (index, shard) in recovery.iter().enumerate() {
                if let Shard::Whole(file) = shard {
                    read_stripe(file, recovery_size, offset, &mut spare[..len])?;
                    decoder
                        .add_recovery_shard(index, &spare[..len])
                        .map_err(coding_error)?;
                }
            }
            let result = decoder.decode().map_err(coding_error)?;
            for (index, restored) in result.restored_original_iter() {
                buffers[index][..len].copy_from_slice(restored);
            }
        }
        for ((shard, size), buffer) in data.iter_mut().zip(&buffers) {
            if let Shard::Rebuild((file, hasher)) = shard
                && offset < *size
            {
                let real = (*size - offset).min(len as u64) as usize;
                file.write_all(&buffer[..real])?;
                hasher.update(&buffer[..real]);
            }
        }
        if recovery_lost {
            encoder
                .reset(originals, recoveries, len)
                .map_err(coding_error)?;
            for buffer in &buffers {
                encoder
                    .add_original_shard(&buffer[..len])
                    .map_err(coding_error)?;
            }
            let result = encoder.encode().map_err(coding_error)?;
            for (shard, bytes) in recovery.iter_mut().zip(result.recovery_iter()) {
                if let Shard::Rebuild((file, hasher)) = shard {
                    file.write_all(bytes)?;
                    hasher.update(bytes);
                }
            }
        }
        offset += stripe;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn file_with(dir: &std::path::Path, name: &str, bytes: &[u8]) -> File {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        File::options().read(true).write(true).open(path).unwrap()
    }

    fn contents(file: &mut File) -> Vec<u8> {
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(0)).unwrap();
        let mut out = Vec::new();
        file.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn any_two_lost_parts_come_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        // Three data parts of 10,001 bytes (odd) and a short last one; a stripe of 4 KiB.
        let bytes: Vec<u8> = (0..25_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sizes = [10_001u64, 10_001, 4_998];
        let mut data = Vec::new();
        let mut start = 0usize;
        for (i, size) in sizes.iter().enumerate() {
            let part = &bytes[start..start + *size as usize];
            data.push((file_with(dir.path(), &format!("d{i}"), part), *size));
            start += *size as usize;
        }
        let stripe = 4096;
        let mut recovery: Vec<(File, PartHasher)> = (0..2)
            .map(|i| {
                (
                    file_with(dir.path(), &format!("r{i}"), b""),
                    PartHasher::default(),
                )
            })
            .collect();
        encode(&data, sizes[0], stripe, &mut recovery).unwrap();
        let recovery_bytes: Vec<Vec<u8>> = recovery.iter_mut().map(|(f, _)| contents(f)).collect();
        let recovery_size = recovery_bytes[0].len() as u64;
        assert_eq!(
            recovery_size, 10_002,
            "the odd last stripe is padded to even"
        );

        // Lose data part 1 and recovery part 0.
        let mut rebuilt_data = (file_with(dir.path(), "d1-new", b""), PartHasher::default());
        let mut rebuilt_recovery = (file_with(dir.path(), "r0-new", b""), PartHasher::default());
        let r1 = file_with(dir.path(), "r1-copy", &recovery_bytes[1]);
        {
            let mut shards_data = vec![
                (Shard::Whole(&data[0].0), sizes[0]),
                (Shard::Rebuild(&mut rebuilt_data), sizes[1]),
                (Shard::Whole(&data[2].0), sizes[2]),
            ];
            let mut shards_recovery =
                vec![Shard::Rebuild(&mut rebuilt_recovery), Shard::Whole(&r1)];
            rebuild(
                &mut shards_data,
                &mut shards_recovery,
                sizes[0],
                recovery_size,
                stripe,
            )
            .unwrap();
        }
        assert_eq!(contents(&mut rebuilt_data.0), &bytes[10_001..20_002]);
        assert_eq!(contents(&mut rebuilt_recovery.0), recovery_bytes[0]);
    }

    #[test]
    fn stripes_shrink_as_parts_grow_in_number() {
        assert_eq!(stripe_for(8), 1 << 20);
        assert_eq!(stripe_for(320), 104_856);
        assert_eq!(stripe_for(100_000), 4 << 10);
    }
}
