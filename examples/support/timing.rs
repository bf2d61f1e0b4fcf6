//! Wall time and peak memory of a command, as the benchmarks measure them: under
//! `/usr/bin/time -v`, the median of a few runs.

use std::process::Command;
use std::time::Duration;

#[derive(Clone, Copy)]
pub struct Sample {
    pub wall: Duration,
    pub rss_kib: u64,
}

/// Runs `command` under `/usr/bin/time -v`; it must succeed.
pub fn timed<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(command: &[S]) -> Sample {
    let output = Command::new("/usr/bin/time")
        .arg("-v")
        .args(command)
        .output()
        .expect("/usr/bin/time is missing: apt-get install time");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{command:?} failed:\n{stderr}");
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in time's output"))
    };
    let seconds: f64 = field("Elapsed (wall clock) time (h:mm:ss or m:ss):")
        .split(':')
        .map(|p| p.parse::<f64>().unwrap())
        .fold(0.0, |acc, p| acc * 60.0 + p);
    Sample {
        wall: Duration::from_secs_f64(seconds),
        rss_kib: field("Maximum resident set size (kbytes):")
            .parse()
            .unwrap(),
    }
}

/// The sample of median wall time.
pub fn median(mut samples: Vec<Sample>) -> Sample {
    samples.sort_by_key(|s| s.wall);
    samples[samples.len() / 2]
}
