//! `--progress json`: one JSON object per line on stderr, for CI and other programs. The field
//! names are a stable interface (README, "Progress"); [`Record`] spells them out so that
//! renaming a field of [`Event`] cannot change them by accident.
//!
//! Over 600 lines with its tests, because each event's wire format is written out once here
//! and checked field by field below.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{Event, Progress};
use crate::digest::Digest;

/// At most this often a `downloaded` line per blob: chunks arrive thousands of times a second.
const REPORT_INTERVAL_MS: u64 = 250;

/// JSON lines on stderr.
pub struct Json {
    started: Instant,
    /// Bytes not yet reported, per blob being downloaded. Chunks only take the read lock.
    downloads: RwLock<HashMap<Digest, Arc<Throttle>>>,
    /// Bytes `haul load` has read and not reported yet.
    load: Throttle,
}

impl Default for Json {
    fn default() -> Self {
        Json {
            started: Instant::now(),
            downloads: RwLock::default(),
            load: Throttle::new(0),
        }
    }
}

impl Progress for Json {
    fn event(&self, event: Event) {
        let now_ms = self.started.elapsed().as_millis() as u64;
        match &event {
            Event::Downloaded { digest, bytes } | Event::Uploaded { digest, bytes } => {
                let due = self
                    .downloads
                    .read()
                    .ok()
                    .and_then(|downloads| downloads.get(digest)?.add(*bytes, now_ms));
                if let Some(bytes) = due {
                    write_line(&same_kind(&event, digest, bytes));
                }
                return;
            }
            Event::LoadProgress { bytes } => {
                if let Some(bytes) = self.load.add(*bytes, now_ms) {
                    write_line(&Event::LoadProgress { bytes });
                }
                return;
            }
            Event::LoadStep { .. } | Event::Loaded { .. } => {
                // What the last step read and has not reported yet, before the next line.
                let rest = self.load.take();
                if rest > 0 {
                    write_line(&Event::LoadProgress { bytes: rest });
                }
            }
            Event::DownloadStarted { digest, .. } | Event::UploadStarted { digest, .. } => {
                if let Ok(mut downloads) = self.downloads.write() {
                    // A retry keeps what the earlier attempts have not reported yet.
                    downloads
                        .entry(digest.clone())
                        .or_insert_with(|| Arc::new(Throttle::new(now_ms)));
                }
            }
            Event::DownloadFinished { digest, .. } | Event::UploadFinished { digest, .. } => {
                // The rest, so that a blob's `downloaded` bytes add up to its `fetched` (and
                // `uploaded` to its `sent`).
                let rest = self
                    .downloads
                    .write()
                    .ok()
                    .and_then(|mut downloads| downloads.remove(digest))
                    .map_or(0, |throttle| throttle.take());
                if rest > 0 {
                    let chunk = if matches!(event, Event::UploadFinished { .. }) {
                        Event::Uploaded {
                            digest: digest.clone(),
                            bytes: 0,
                        }
                    } else {
                        Event::Downloaded {
                            digest: digest.clone(),
                            bytes: 0,
                        }
                    };
                    write_line(&same_kind(&chunk, digest, rest));
                }
            }
            _ => {}
        }
        write_line(&event);
    }
}

/// A `downloaded` or `uploaded` event like `event`, for `bytes`.
fn same_kind(event: &Event, digest: &Digest, bytes: u64) -> Event {
    let digest = digest.clone();
    match event {
        Event::Uploaded { .. } => Event::Uploaded { digest, bytes },
        _ => Event::Downloaded { digest, bytes },
    }
}

fn write_line(event: &Event) {
    let line = encode(event, unix_ms());
    // One write per line, so lines from several tasks never interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One event as a JSON line (with its newline): the event's name first, its fields, then
/// `ts_ms` (milliseconds since the Unix epoch).
pub fn encode(event: &Event, ts_ms: u64) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        #[serde(flatten)]
        record: Record<'a>,
        ts_ms: u64,
    }
    let line = Line {
        record: Record::from(event),
        ts_ms,
    };
    // Serializing plain strings and numbers cannot fail.
    let mut text = serde_json::to_string(&line).unwrap_or_default();
    text.push('\n');
    text
}

/// The wire format of each event.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Record<'a> {
    Resolved {
        reference: &'a str,
        digest: &'a Digest,
        platform: &'a str,
    },
    Planned {
        blobs: usize,
        bytes: u64,
        missing: usize,
        missing_bytes: u64,
    },
    Cached {
        digest: &'a Digest,
        size: u64,
    },
    WaitingForLock {
        digest: &'a Digest,
    },
    Waiting {
        what: &'a str,
    },
    DownloadStarted {
        digest: &'a Digest,
        size: u64,
        offset: u64,
    },
    Downloaded {
        digest: &'a Digest,
        bytes: u64,
    },
    Restarted {
        digest: &'a Digest,
    },
    Retrying {
        digest: &'a Digest,
        attempt: u32,
        error: &'a str,
    },
    DownloadFinished {
        digest: &'a Digest,
        size: u64,
        fetched: u64,
    },
    DecompressStarted {
        digest: &'a Digest,
        size: u64,
    },
    Decompressed {
        digest: &'a Digest,
        diff_id: &'a Digest,
        size: u64,
    },
    Exported {
        path: &'a str,
        bytes: u64,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        into_engine: bool,
        #[serde(skip_serializing_if = "is_zero")]
        left_out: usize,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        since: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        parts: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovery_parts: Option<usize>,
        #[serde(skip_serializing_if = "is_zero")]
        patched: usize,
        #[serde(skip_serializing_if = "is_zero")]
        by_content: usize,
    },
    BlobPresent {
        digest: &'a Digest,
        size: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        mounted_from: Option<&'a str>,
    },
    UploadStarted {
        digest: &'a Digest,
        size: u64,
    },
    Uploaded {
        digest: &'a Digest,
        bytes: u64,
    },
    UploadFinished {
        digest: &'a Digest,
        size: u64,
        sent: u64,
        resumed_at: u64,
    },
    Pushed {
        reference: &'a str,
        digest: &'a Digest,
    },
    LoadStep {
        step: &'a str,
        path: &'a str,
        bytes: u64,
    },
    LoadProgress {
        bytes: u64,
    },
    Loaded {
        path: &'a str,
        engine: &'a str,
        bytes: u64,
        images: &'a [String],
        seconds: f64,
    },
}

impl<'a> From<&'a Event> for Record<'a> {
    fn from(event: &'a Event) -> Self {
        match event {
            Event::Resolved {
                reference,
                digest,
                platform,
            } => Record::Resolved {
                reference,
                digest,
                platform,
            },
            Event::Planned {
                blobs,
                bytes,
                missing,
                missing_bytes,
            } => Record::Planned {
                blobs: *blobs,
                bytes: *bytes,
                missing: *missing,
                missing_bytes: *missing_bytes,
            },
            Event::Cached { digest, size } => Record::Cached {
                digest,
                size: *size,
            },
            Event::WaitingForLock { digest } => Record::WaitingForLock { digest },
            Event::Waiting { what } => Record::Waiting { what },
            Event::DownloadStarted {
                digest,
                size,
                offset,
            } => Record::DownloadStarted {
                digest,
                size: *size,
                offset: *offset,
            },
            Event::Downloaded { digest, bytes } => Record::Downloaded {
                digest,
                bytes: *bytes,
            },
            Event::Restarted { digest } => Record::Restarted { digest },
            Event::Retrying {
                digest,
                attempt,
                error,
            } => Record::Retrying {
                digest,
                attempt: *attempt,
                error,
            },
            Event::DownloadFinished {
                digest,
                size,
                fetched,
            } => Record::DownloadFinished {
                digest,
                size: *size,
                fetched: *fetched,
            },
            Event::DecompressStarted { digest, size } => Record::DecompressStarted {
                digest,
                size: *size,
            },
            Event::Decompressed {
                digest,
                diff_id,
                size,
            } => Record::Decompressed {
                digest,
                diff_id,
                size: *size,
            },
            Event::Exported {
                path,
                bytes,
                into_engine,
                left_out,
                since,
                parts,
                patched,
                by_content,
            } => Record::Exported {
                path,
                bytes: *bytes,
                into_engine: *into_engine,
                left_out: *left_out,
                since,
                parts: parts.map(|(data, _)| data),
                recovery_parts: parts.map(|(_, recovery)| recovery),
                patched: *patched,
                by_content: *by_content,
            },
            Event::BlobPresent {
                digest,
                size,
                mounted_from,
            } => Record::BlobPresent {
                digest,
                size: *size,
                mounted_from: mounted_from.as_deref(),
            },
            Event::UploadStarted { digest, size } => Record::UploadStarted {
                digest,
                size: *size,
            },
            Event::Uploaded { digest, bytes } => Record::Uploaded {
                digest,
                bytes: *bytes,
            },
            Event::UploadFinished {
                digest,
                size,
                sent,
                resumed_at,
            } => Record::UploadFinished {
                digest,
                size: *size,
                sent: *sent,
                resumed_at: *resumed_at,
            },
            Event::Pushed { reference, digest } => Record::Pushed { reference, digest },
            Event::LoadStep { step, path, bytes } => Record::LoadStep {
                step,
                path,
                bytes: *bytes,
            },
            Event::LoadProgress { bytes } => Record::LoadProgress { bytes: *bytes },
            Event::Loaded {
                path,
                engine,
                bytes,
                images,
                seconds,
            } => Record::Loaded {
                path,
                engine,
                bytes: *bytes,
                images,
                seconds: *seconds,
            },
        }
    }
}

/// Adds up one blob's chunks and lets a report through at most every
/// [`REPORT_INTERVAL_MS`]. Atomics only: a chunk never waits for another task.
struct Throttle {
    pending: AtomicU64,
    /// When the last report went out (or the download started), in ms since `Json::started`.
    last_ms: AtomicU64,
}

impl Throttle {
    fn new(now_ms: u64) -> Throttle {
        Throttle {
            pending: AtomicU64::new(0),
            last_ms: AtomicU64::new(now_ms),
        }
    }

    /// Counts `bytes`; returns the bytes to report when the interval has passed.
    fn add(&self, bytes: u64, now_ms: u64) -> Option<u64> {
        self.pending.fetch_add(bytes, Ordering::Relaxed);
        let last = self.last_ms.load(Ordering::Relaxed);
        if now_ms < last.saturating_add(REPORT_INTERVAL_MS) {
            return None;
        }
        // Only the caller that moves `last_ms` reports (one task per blob in practice).
        self.last_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(self.take()).filter(|&bytes| bytes > 0)
    }

    /// Everything not reported yet.
    fn take(&self) -> u64 {
        self.pending.swap(0, Ordering::Relaxed)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn parsed(event: Event) -> Value {
        let line = encode(&event, 1_700_000_000_123);
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn download_finished_is_one_flat_object() {
        let line = encode(
            &Event::DownloadFinished {
                digest: digest('a'),
                size: 123,
                fetched: 100,
            },
            42,
        );
        let a = "a".repeat(64);
        assert_eq!(
            line,
            format!(
                "{{\"event\":\"download_finished\",\"digest\":\"sha256:{a}\",\"size\":123,\"fetched\":100,\"ts_ms\":42}}\n"
            )
        );
    }

    #[test]
    fn every_event_has_its_name_and_fields() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let cases = [
            (
                Event::Resolved {
                    reference: "127.0.0.1:5000/app:1".into(),
                    digest: digest('a'),
                    platform: "linux/amd64".into(),
                },
                json!({"event": "resolved", "reference": "127.0.0.1:5000/app:1", "digest": a, "platform": "linux/amd64"}),
            ),
            (
                Event::Planned {
                    blobs: 3,
                    bytes: 300,
                    missing: 1,
                    missing_bytes: 100,
                },
                json!({"event": "planned", "blobs": 3, "bytes": 300, "missing": 1, "missing_bytes": 100}),
            ),
            (
                Event::Cached {
                    digest: digest('a'),
                    size: 5,
                },
                json!({"event": "cached", "digest": a, "size": 5}),
            ),
            (
                Event::WaitingForLock {
                    digest: digest('a'),
                },
                json!({"event": "waiting_for_lock", "digest": a}),
            ),
            (
                Event::Waiting {
                    what: "a prune".into(),
                },
                json!({"event": "waiting", "what": "a prune"}),
            ),
            (
                Event::DownloadStarted {
                    digest: digest('a'),
                    size: 10,
                    offset: 4,
                },
                json!({"event": "download_started", "digest": a, "size": 10, "offset": 4}),
            ),
            (
                Event::Downloaded {
                    digest: digest('a'),
                    bytes: 6,
                },
                json!({"event": "downloaded", "digest": a, "bytes": 6}),
            ),
            (
                Event::Restarted {
                    digest: digest('a'),
                },
                json!({"event": "restarted", "digest": a}),
            ),
            (
                Event::Retrying {
                    digest: digest('a'),
                    attempt: 2,
                    error: "cut \"here\"".into(),
                },
                json!({"event": "retrying", "digest": a, "attempt": 2, "error": "cut \"here\""}),
            ),
            (
                Event::DecompressStarted {
                    digest: digest('a'),
                    size: 7,
                },
                json!({"event": "decompress_started", "digest": a, "size": 7}),
            ),
            (
                Event::Decompressed {
                    digest: digest('a'),
                    diff_id: digest('b'),
                    size: 9,
                },
                json!({"event": "decompressed", "digest": a, "diff_id": b, "size": 9}),
            ),
            (
                Event::Exported {
                    path: "out.tar".into(),
                    bytes: 2048,
                    into_engine: false,
                    left_out: 0,
                    since: Vec::new(),
                    parts: None,
                    patched: 0,
                    by_content: 0,
                },
                json!({"event": "exported", "path": "out.tar", "bytes": 2048}),
            ),
            (
                Event::Exported {
                    path: "v1.tar.parts".into(),
                    bytes: 2048,
                    into_engine: false,
                    left_out: 0,
                    since: Vec::new(),
                    parts: Some((3, 1)),
                    patched: 2,
                    by_content: 1,
                },
                json!({"event": "exported", "path": "v1.tar.parts", "bytes": 2048, "parts": 3, "recovery_parts": 1, "patched": 2, "by_content": 1}),
            ),
            (
                Event::LoadStep {
                    step: "loading",
                    path: "v1.tar".into(),
                    bytes: 4096,
                },
                json!({"event": "load_step", "step": "loading", "path": "v1.tar", "bytes": 4096}),
            ),
            (
                Event::LoadProgress { bytes: 1024 },
                json!({"event": "load_progress", "bytes": 1024}),
            ),
            (
                Event::Loaded {
                    path: "v1.tar".into(),
                    engine: "`docker load`".into(),
                    bytes: 4096,
                    images: vec!["app:v1".into()],
                    seconds: 1.5,
                },
                json!({"event": "loaded", "path": "v1.tar", "engine": "`docker load`", "bytes": 4096, "images": ["app:v1"], "seconds": 1.5}),
            ),
        ];
        for (event, mut expected) in cases {
            expected["ts_ms"] = json!(1_700_000_000_123u64);
            assert_eq!(parsed(event), expected);
        }
    }

    #[test]
    fn throttle_reports_at_most_every_interval_and_loses_nothing() {
        let throttle = Throttle::new(1000);
        // Within the first interval: counted, not reported.
        assert_eq!(throttle.add(10, 1000), None);
        assert_eq!(throttle.add(10, 1000 + REPORT_INTERVAL_MS - 1), None);
        // The interval has passed: everything so far in one report.
        assert_eq!(throttle.add(5, 1000 + REPORT_INTERVAL_MS), Some(25));
        // The next interval starts at that report.
        assert_eq!(throttle.add(7, 1000 + REPORT_INTERVAL_MS + 10), None);
        assert_eq!(throttle.add(0, 1000 + 2 * REPORT_INTERVAL_MS), Some(7));
        // Nothing new: no empty report.
        assert_eq!(throttle.add(0, 1000 + 4 * REPORT_INTERVAL_MS), None);
        throttle.add(3, 1000 + 4 * REPORT_INTERVAL_MS);
        assert_eq!(throttle.take(), 3);
        assert_eq!(throttle.take(), 0);
    }

    #[test]
    fn many_chunks_make_few_lines_whose_bytes_add_up() {
        // 10,000 chunks of 16 KiB over 2 s: at most 2000 / 250 reports.
        let throttle = Throttle::new(0);
        let mut reported = 0;
        let mut reports = 0;
        for i in 0..10_000u64 {
            if let Some(bytes) = throttle.add(16 * 1024, i / 5) {
                reported += bytes;
                reports += 1;
            }
        }
        reported += throttle.take();
        assert!(reports <= 2000 / REPORT_INTERVAL_MS, "{reports} reports");
        assert_eq!(reported, 10_000 * 16 * 1024);
    }
}
