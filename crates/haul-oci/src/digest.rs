//! Content digests (`sha256:<hex>`) and the hasher every downloaded byte goes through.
//!
//! A digest that arrives from the network becomes a file name in the cache and in the tar, so
//! it is validated on parse: a known algorithm and exactly the right number of lowercase hex
//! digits. Nothing else (no `..`, no `/`, no upper case) can ever reach a path.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A validated content digest. Only `sha256` is accepted: every registry and every loader
/// uses it, and the cache layout (`blobs/sha256/<hex>`) is keyed by it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// 64 lowercase hex digits.
    hex: String,
}

/// Why a string is not a digest haul can use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected `sha256:` followed by 64 lowercase hex digits")]
    Malformed(String),
    #[error("unsupported digest algorithm {algorithm:?} in {digest:?}: only sha256 is supported")]
    UnsupportedAlgorithm { algorithm: String, digest: String },
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hash(sha2::Sha256::digest(bytes).into())
    }

    fn from_hash(hash: [u8; 32]) -> Digest {
        Digest {
            hex: hex::encode(hash),
        }
    }

    /// The 64 hex digits, without the algorithm: the file name in `blobs/sha256/`.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The algorithm name; always `sha256` today.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// A short form for messages and progress lines (`sha256:0123456789ab`).
    pub fn short(&self) -> String {
        format!("sha256:{}", &self.hex[..12])
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed(s.to_string()));
        };
        match algorithm {
            "sha256" => {}
            "sha384" | "sha512" | "blake3" => {
                return Err(DigestError::UnsupportedAlgorithm {
                    algorithm: algorithm.to_string(),
                    digest: s.to_string(),
                });
            }
            _ => return Err(DigestError::Malformed(s.to_string())),
        }
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(DigestError::Malformed(s.to_string()));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes a stream as it passes and counts its bytes, so a blob is checked against its digest
/// and size without a second read.
#[derive(Clone, Default)]
pub struct Verifier {
    hasher: sha2::Sha256,
    len: u64,
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything seen.
    pub fn finish(self) -> Digest {
        Digest::from_hash(self.hasher.finalize().into())
    }
}

/// A writer that passes everything to `inner` and hashes it on a thread of its own, so the
/// hashing runs beside whatever makes the bytes (a decompression, a rebuild) on another core.
/// At most a few MiB wait for the hasher.
pub struct HashingWriter<W> {
    inner: W,
    pending: Vec<u8>,
    sender: std::sync::mpsc::SyncSender<Vec<u8>>,
    hasher: std::thread::JoinHandle<Verifier>,
}

const HASH_CHUNK: usize = 1 << 20;

impl<W: std::io::Write> HashingWriter<W> {
    pub fn new(inner: W) -> HashingWriter<W> {
        let (sender, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let hasher = std::thread::spawn(move || {
            let mut verifier = Verifier::new();
            for chunk in chunks {
                verifier.update(&chunk);
            }
            verifier
        });
        HashingWriter {
            inner,
            pending: Vec::with_capacity(HASH_CHUNK),
            sender,
            hasher,
        }
    }

    /// The inner writer, flushed, and the digest and length of all that went through.
    pub fn finish(mut self) -> std::io::Result<(Digest, u64, W)> {
        std::io::Write::flush(&mut self.inner)?;
        if !self.pending.is_empty() {
            let _ = self.sender.send(std::mem::take(&mut self.pending));
        }
        drop(self.sender);
        let verifier = match self.hasher.join() {
            Ok(verifier) => verifier,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let len = verifier.len();
        Ok((verifier.finish(), len, self.inner))
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.pending.extend_from_slice(&bytes[..written]);
        if self.pending.len() >= HASH_CHUNK {
            let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(HASH_CHUNK));
            // The hasher ends only when this writer does.
            let _ = self.sender.send(chunk);
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashing_writer_hashes_what_it_passes_on() {
        use std::io::Write;
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut writer = HashingWriter::new(Vec::new());
        for chunk in data.chunks(70_000) {
            writer.write_all(chunk).unwrap();
        }
        let (digest, len, out) = writer.finish().unwrap();
        assert_eq!((digest, len), (Digest::of(&data), data.len() as u64));
        assert_eq!(out, data);
    }

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d, Digest::of(b""));
    }

    #[test]
    fn verifier_matches_one_shot() {
        let mut v = Verifier::new();
        v.update(b"hello ");
        v.update(b"world");
        assert_eq!(v.len(), 11);
        assert_eq!(v.finish(), Digest::of(b"hello world"));
    }

    #[test]
    fn rejects_what_must_not_become_a_path() {
        for bad in [
            "sha256:../../x",
            "sha256:",
            "sha256",
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
        assert!(matches!(
            format!("sha512:{}", "a".repeat(128)).parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
    }
}
