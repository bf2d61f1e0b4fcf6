//! Progress bars on a terminal: one bar per blob being downloaded and a total bar for the bytes
//! still to download. Finished steps print the plain lines above the bars, so the scrollback
//! reads like `--progress plain`; log lines go above the bars too ([`Bars::log_writer`]).

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Event, Progress, human_bytes, lines};
use crate::digest::Digest;

/// How often a bar redraws. Drawing happens on indicatif's ticker threads, so a chunk only
/// bumps its bar's counters: it never formats a line or waits for the terminal.
const TICK: Duration = Duration::from_millis(100);

/// Progress bars on stderr.
pub struct Bars {
    multi: MultiProgress,
    /// Blobs being downloaded or waited for. Chunks only take the read lock.
    layers: RwLock<HashMap<Digest, Layer>>,
    /// Layers being decompressed.
    decompressing: Mutex<HashMap<Digest, ProgressBar>>,
    /// Bytes to download, from the plan on; none before (configs) or when nothing is missing.
    total: OnceLock<ProgressBar>,
    /// Blobs the images need, from the plan.
    planned: OnceLock<usize>,
    cached: AtomicUsize,
    downloaded: AtomicUsize,
    fetched: AtomicU64,
    /// First download start and last download end, for the summary's rate.
    window: Mutex<Option<(Instant, Instant)>>,
    /// `haul load`'s step (checking, then loading) and its bytes.
    load: Mutex<Option<ProgressBar>>,
    finished: AtomicBool,
}

struct Layer {
    bar: ProgressBar,
    /// False while only waiting for another process's download.
    started: bool,
}

impl Bars {
    /// Bars if stderr is a terminal that can show them (not `TERM=dumb`).
    pub fn on_terminal() -> Option<Bars> {
        let target = ProgressDrawTarget::stderr();
        (!target.is_hidden()).then(|| Bars::with_target(target))
    }

    /// Bars whatever stderr is (`--progress bars`): a pipe gets the escape codes too.
    pub fn forced() -> Bars {
        Bars::with_target(ProgressDrawTarget::term_like_with_hz(
            Box::new(console::Term::buffered_stderr()),
            20,
        ))
    }

    fn with_target(target: ProgressDrawTarget) -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(target),
            layers: RwLock::default(),
            decompressing: Mutex::default(),
            total: OnceLock::new(),
            planned: OnceLock::new(),
            cached: AtomicUsize::new(0),
            downloaded: AtomicUsize::new(0),
            fetched: AtomicU64::new(0),
            window: Mutex::new(None),
            load: Mutex::new(None),
            finished: AtomicBool::new(false),
        }
    }

    /// A `tracing` writer that prints each log line above the bars rather than through them.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter {
            multi: self.multi.clone(),
        }
    }

    fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    /// A new bar, above the total so that the total stays at the bottom.
    fn add_bar(&self, bar: ProgressBar) -> ProgressBar {
        match self.total.get() {
            Some(total) => self.multi.insert_before(total, bar),
            None => self.multi.add(bar),
        }
    }

    fn planned(&self, blobs: usize, missing_bytes: u64) {
        let _ = self.planned.set(blobs);
        if missing_bytes == 0 {
            return;
        }
        let total = self
            .multi
            .add(ProgressBar::new(missing_bytes).with_style(style(BAR)));
        total.enable_steady_tick(TICK);
        let _ = self.total.set(total);
        self.count_blobs();
    }

    fn waiting_for_lock(&self, digest: &Digest) {
        let Ok(mut layers) = self.layers.write() else {
            return;
        };
        layers.entry(digest.clone()).or_insert_with(|| {
            let bar = ProgressBar::new(0)
                .with_style(style(WAITING))
                .with_prefix(digest.short())
                .with_message("waiting for another haul process downloading it");
            Layer {
                bar: self.add_bar(bar),
                started: false,
            }
        });
    }

    /// A spinner while a layer decompresses: seconds of work with no bytes to count.
    fn decompressing(&self, digest: &Digest) {
        let bar = ProgressBar::new_spinner()
            .with_style(style(SPINNING))
            .with_prefix(digest.short())
            .with_message("decompressing");
        let bar = self.add_bar(bar);
        bar.enable_steady_tick(TICK);
        if let Ok(mut decompressing) = self.decompressing.lock() {
            decompressing.insert(digest.clone(), bar);
        }
    }

    fn decompressed(&self, digest: &Digest) {
        let bar = self
            .decompressing
            .lock()
            .ok()
            .and_then(|mut decompressing| decompressing.remove(digest));
        if let Some(bar) = bar {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    fn download_started(&self, digest: &Digest, size: u64, offset: u64) {
        if let Ok(mut window) = self.window.lock() {
            window.get_or_insert_with(|| (Instant::now(), Instant::now()));
        }
        let Ok(mut layers) = self.layers.write() else {
            return;
        };
        let layer = layers.entry(digest.clone()).or_insert_with(|| {
            let bar = ProgressBar::new(size)
                .with_style(style(BAR))
                .with_prefix(digest.short());
            Layer {
                bar: self.add_bar(bar),
                started: false,
            }
        });
        if layer.started {
            // A retry. It resumes where the cut left it, unless the registry ignored Range:
            // then what it had comes again.
            let lost = layer.bar.position().saturating_sub(offset);
            if let Some(total) = self.total.get() {
                total.inc_length(lost);
            }
            layer.bar.set_position(offset);
            return;
        }
        layer.started = true;
        // What an earlier run left is not to be downloaded.
        if let Some(total) = self.total.get() {
            total.dec_length(offset);
        }
        let bar = &layer.bar;
        bar.set_style(style(BAR));
        bar.set_length(size);
        bar.set_position(offset);
        // Record the offset, then forget it: a resumed blob's speed is what arrives now.
        bar.tick();
        bar.reset_eta();
        bar.enable_steady_tick(TICK);
    }

    /// A blob is there: its bar (if any) goes, its line stays.
    fn blob_done(&self, digest: &Digest, size: u64, downloaded: bool) {
        let layer = self
            .layers
            .write()
            .ok()
            .and_then(|mut layers| layers.remove(digest));
        let started = layer.as_ref().map(|layer| layer.started);
        if let Some(layer) = layer {
            layer.bar.finish_and_clear();
            self.multi.remove(&layer.bar);
        }
        // The plan counted it as missing, yet none of it came through this process: another
        // process downloaded it while this one waited, or a complete partial file was only
        // verified.
        let counted_not_fetched = match started {
            Some(started) => !started,
            None => downloaded,
        };
        if counted_not_fetched && let Some(total) = self.total.get() {
            total.dec_length(size);
        }
        let counter = if downloaded {
            &self.downloaded
        } else {
            &self.cached
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.count_blobs();
    }

    /// The bar of `haul load`'s step goes; `next` (if any) takes its place.
    fn end_load_step(&self, next: Option<ProgressBar>) {
        let Ok(mut load) = self.load.lock() else {
            return;
        };
        if let Some(bar) = std::mem::replace(&mut *load, next) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    /// `total 2/5 blobs` at the left of the total bar (the prefix, so that the bars line up).
    fn count_blobs(&self) {
        if let (Some(total), Some(planned)) = (self.total.get(), self.planned.get()) {
            let done =
                self.cached.load(Ordering::Relaxed) + self.downloaded.load(Ordering::Relaxed);
            total.set_prefix(format!("total {}/{planned} blobs", done.min(*planned)));
        }
    }

    /// `5 blobs: 3 downloaded (10.2 MiB in 1.3 s, 7.8 MiB/s), 2 cached`, once every planned
    /// blob is there.
    fn summary(&self) -> Option<String> {
        let planned = *self.planned.get()?;
        let cached = self.cached.load(Ordering::Relaxed);
        let downloaded = self.downloaded.load(Ordering::Relaxed);
        if cached + downloaded < planned {
            return None;
        }
        if downloaded == 0 {
            return Some(format!("{}, all cached", blobs(planned)));
        }
        let fetched = self.fetched.load(Ordering::Relaxed);
        let seconds = self
            .window
            .lock()
            .ok()
            .and_then(|window| *window)
            .map_or(0.0, |(start, end)| (end - start).as_secs_f64());
        Some(summary(planned, downloaded, cached, fetched, seconds))
    }
}

fn summary(planned: usize, downloaded: usize, cached: usize, fetched: u64, seconds: f64) -> String {
    let rate = if seconds > 0.0 {
        format!(", {}/s", human_bytes((fetched as f64 / seconds) as u64))
    } else {
        String::new()
    };
    format!(
        "{}: {downloaded} downloaded ({} in {seconds:.1} s{rate}), {cached} cached",
        blobs(planned),
        human_bytes(fetched)
    )
}

fn blobs(count: usize) -> String {
    match count {
        1 => "1 blob".to_string(),
        _ => format!("{count} blobs"),
    }
}

impl Progress for Bars {
    fn event(&self, event: Event) {
        if let Event::Downloaded { digest, bytes } | Event::Uploaded { digest, bytes } = &event {
            if let Ok(layers) = self.layers.read()
                && let Some(layer) = layers.get(digest)
            {
                layer.bar.inc(*bytes);
            }
            if let Some(total) = self.total.get() {
                total.inc(*bytes);
            }
            return;
        }
        if let Event::LoadProgress { bytes } = &event {
            if let Ok(load) = self.load.lock()
                && let Some(bar) = load.as_ref()
            {
                bar.inc(*bytes);
            }
            return;
        }
        if self.finished.load(Ordering::Relaxed) {
            return;
        }
        match &event {
            Event::Planned {
                blobs,
                missing_bytes,
                ..
            } => self.planned(*blobs, *missing_bytes),
            Event::WaitingForLock { digest } => {
                self.waiting_for_lock(digest);
                return; // its bar says it
            }
            Event::DownloadStarted {
                digest,
                size,
                offset,
            } => self.download_started(digest, *size, *offset),
            Event::Cached { digest, size } => self.blob_done(digest, *size, false),
            // Uploads show as downloads do, one bar per blob; the push prints its own summary.
            Event::UploadStarted { digest, size } => self.download_started(digest, *size, 0),
            Event::UploadFinished { digest, .. } => {
                if let Ok(mut layers) = self.layers.write()
                    && let Some(layer) = layers.remove(digest)
                {
                    layer.bar.finish_and_clear();
                    self.multi.remove(&layer.bar);
                }
            }
            Event::DecompressStarted { digest, .. } => {
                self.decompressing(digest);
                return; // its spinner says it
            }
            Event::Decompressed { digest, .. } => self.decompressed(digest),
            Event::LoadStep { step, bytes, .. } => {
                let bar = ProgressBar::new(*bytes)
                    .with_style(style(BAR))
                    .with_prefix(step.to_string());
                bar.enable_steady_tick(TICK);
                self.end_load_step(Some(self.multi.add(bar)));
            }
            Event::Loaded { .. } => self.end_load_step(None),
            Event::DownloadFinished {
                digest,
                size,
                fetched,
            } => {
                self.fetched.fetch_add(*fetched, Ordering::Relaxed);
                if let Ok(mut window) = self.window.lock()
                    && let Some((_, end)) = window.as_mut()
                {
                    *end = Instant::now();
                }
                self.blob_done(digest, *size, true);
            }
            _ => {}
        }
        if let Some(line) = lines::line(&event) {
            self.println(&line);
        }
    }

    fn finish(&self) {
        if self.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Ok(mut layers) = self.layers.write() {
            for (_, layer) in layers.drain() {
                layer.bar.finish_and_clear();
                self.multi.remove(&layer.bar);
            }
        }
        if let Ok(mut decompressing) = self.decompressing.lock() {
            for (_, bar) in decompressing.drain() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        self.end_load_step(None);
        if let Some(total) = self.total.get() {
            total.finish_and_clear();
            self.multi.remove(total);
        }
        if let Some(summary) = self.summary() {
            self.println(&summary);
        }
    }
}

/// A blob (prefix: its short digest) or the total (prefix: blobs done); 19 columns for the
/// prefix line the bars up.
const BAR: &str = "{prefix:<19} [{wide_bar}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta:<3}";
const WAITING: &str = "{prefix:<19} {msg}";
const SPINNING: &str = "{prefix:<19} {spinner} {msg}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).map_or_else(
        |_| ProgressStyle::default_bar(),
        |style| style.progress_chars("=> "),
    )
}

/// Makes a [`LogLine`] per log event.
#[derive(Clone)]
pub struct LogWriter {
    multi: MultiProgress,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            multi: self.multi.clone(),
            text: Vec::new(),
        }
    }
}

/// One log event, collected and printed whole when dropped, with the bars out of the way.
pub struct LogLine {
    multi: MultiProgress,
    text: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.text.is_empty() {
            self.multi
                .suspend(|| std::io::stderr().lock().write_all(&self.text).ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn the_total_counts_what_this_run_downloads() {
        let bars = Bars::with_target(ProgressDrawTarget::hidden());
        let (config, resumed, cut, waited) = (digest('0'), digest('a'), digest('b'), digest('c'));
        // The config arrives before the plan: no total yet.
        bars.event(Event::DownloadStarted {
            digest: config.clone(),
            size: 10,
            offset: 0,
        });
        bars.event(Event::Downloaded {
            digest: config.clone(),
            bytes: 10,
        });
        bars.event(Event::DownloadFinished {
            digest: config,
            size: 10,
            fetched: 10,
        });
        bars.event(Event::Planned {
            blobs: 4,
            bytes: 610,
            missing: 3,
            missing_bytes: 600,
        });
        let total = bars.total.get().unwrap().clone();
        assert_eq!(total.length(), Some(600));

        // Half of it was left by an earlier run.
        bars.event(Event::DownloadStarted {
            digest: resumed.clone(),
            size: 100,
            offset: 50,
        });
        assert_eq!(total.length(), Some(550));
        bars.event(Event::Downloaded {
            digest: resumed.clone(),
            bytes: 50,
        });
        bars.event(Event::DownloadFinished {
            digest: resumed,
            size: 100,
            fetched: 50,
        });

        // Cut at 120; the retry's registry ignores Range: those 120 bytes come again.
        bars.event(Event::DownloadStarted {
            digest: cut.clone(),
            size: 200,
            offset: 0,
        });
        bars.event(Event::Downloaded {
            digest: cut.clone(),
            bytes: 120,
        });
        bars.event(Event::DownloadStarted {
            digest: cut.clone(),
            size: 200,
            offset: 0,
        });
        assert_eq!(total.length(), Some(670));
        bars.event(Event::Downloaded {
            digest: cut.clone(),
            bytes: 200,
        });
        bars.event(Event::DownloadFinished {
            digest: cut,
            size: 200,
            fetched: 320,
        });

        // Another process downloads this one; this run only waits.
        bars.event(Event::WaitingForLock {
            digest: waited.clone(),
        });
        bars.event(Event::Cached {
            digest: waited,
            size: 300,
        });
        assert_eq!(total.length(), Some(370));
        assert_eq!(total.position(), 370);
        assert_eq!(total.prefix(), "total 4/4 blobs");
        assert!(bars.layers.read().unwrap().is_empty());
        assert!(
            bars.summary()
                .unwrap()
                .starts_with("4 blobs: 3 downloaded (380 B in ")
        );

        // Nothing after the end.
        bars.finish();
        bars.event(Event::DownloadStarted {
            digest: digest('d'),
            size: 1,
            offset: 0,
        });
        assert!(bars.layers.read().unwrap().is_empty());
    }

    #[test]
    fn summaries() {
        assert_eq!(
            summary(5, 3, 2, 10 * 1024 * 1024, 2.0),
            "5 blobs: 3 downloaded (10.0 MiB in 2.0 s, 5.0 MiB/s), 2 cached"
        );
        assert_eq!(
            summary(1, 1, 0, 100, 0.0),
            "1 blob: 1 downloaded (100 B in 0.0 s), 0 cached"
        );
    }
}
