//! What haul shows while it works: `--progress json` events (parsed line by line and checked
//! against the pushed image), `--progress plain` lines, `-q` silence, and the bars on a real
//! pseudo-terminal (util-linux `script`).

use std::collections::HashMap;
use std::process::Command;

use crate::harness::*;
use serde_json::Value;

/// An image of busybox, a small text layer and `random` bytes of incompressible data, pushed.
fn pushed_image(registry: &Registry, random: usize) -> (Image, Pushed) {
    let image = Image::runnable(
        "progress",
        vec![
            Layer::text("etc/progress", "shown\n", Compression::Gzip),
            Layer::random("data/random", random, 7),
        ],
        Compression::Gzip,
        false,
    );
    let pushed = registry.push(&unique("test/progress"), "v1", &image);
    (image, pushed)
}

/// Each stderr line as a JSON object; fails on any line that is not one.
#[track_caller]
fn json_events(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{stderr}"));
            assert!(event["event"].is_string(), "no event name: {line}");
            assert!(event["ts_ms"].is_u64(), "no timestamp: {line}");
            event
        })
        .collect()
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// The blobs of the image with their sizes: config first, then the layers.
fn blobs(image: &Image, pushed: &Pushed) -> Vec<(String, u64)> {
    let mut blobs = vec![(pushed.config_digest.clone(), image.config.len() as u64)];
    for layer in &image.layers {
        blobs.push((layer.digest.clone(), layer.compressed.len() as u64));
    }
    blobs
}

#[test]
fn json_events_describe_the_run_and_the_cached_rerun() {
    let registry = Registry::start();
    let (image, pushed) = pushed_image(&registry, 3 << 20);
    let blobs = blobs(&image, &pushed);
    let total: u64 = blobs.iter().map(|(_, size)| size).sum();
    let haul = Haul::new();

    // Slow enough (about 2 s: 4 MiB at 2 MiB/s) for hundreds of network chunks per blob.
    let run = haul
        .run(&[
            "export",
            &pushed.reference,
            "-o",
            "image.tar",
            "--progress",
            "json",
            "--limit-rate",
            "2M",
        ])
        .success();
    let events = json_events(&run.stderr);

    let resolved = named(&events, "resolved");
    assert_eq!(resolved.len(), 1, "{}", run.stderr);
    assert_eq!(resolved[0]["reference"], pushed.reference.as_str());
    assert_eq!(resolved[0]["digest"], pushed.manifest_digest.as_str());
    assert_eq!(resolved[0]["platform"], "linux/amd64");

    // The config is fetched before the plan (it is needed to check the image), so the plan
    // finds it cached already.
    let planned = named(&events, "planned");
    assert_eq!(planned.len(), 1, "{}", run.stderr);
    assert_eq!(planned[0]["blobs"], blobs.len());
    assert_eq!(planned[0]["bytes"], total);
    assert_eq!(planned[0]["missing"], blobs.len() - 1);
    assert_eq!(planned[0]["missing_bytes"], total - blobs[0].1);

    let finished = named(&events, "download_finished");
    assert_eq!(finished.len(), blobs.len(), "{}", run.stderr);
    let mut downloaded: HashMap<&str, (u64, usize)> = HashMap::new();
    for event in named(&events, "downloaded") {
        let entry = downloaded
            .entry(event["digest"].as_str().unwrap())
            .or_default();
        entry.0 += event["bytes"].as_u64().unwrap();
        entry.1 += 1;
    }
    for (digest, size) in &blobs {
        let event = finished
            .iter()
            .find(|e| e["digest"] == digest.as_str())
            .unwrap_or_else(|| panic!("no download_finished for {digest}:\n{}", run.stderr));
        assert_eq!(event["size"], *size);
        assert_eq!(event["fetched"], *size);
        // Chunks are added up, not lost.
        assert_eq!(downloaded[digest.as_str()].0, *size, "{digest}");
    }
    // The 3 MiB layer took a second or two: a few reports a second, not one per
    // network chunk (hundreds).
    let big = &blobs.last().unwrap().0;
    let started = named(&events, "download_started")
        .into_iter()
        .find(|e| e["digest"] == big.as_str())
        .unwrap()["ts_ms"]
        .as_u64()
        .unwrap();
    let ended = finished
        .iter()
        .find(|e| e["digest"] == big.as_str())
        .unwrap()["ts_ms"]
        .as_u64()
        .unwrap();
    let seconds = (ended - started) as f64 / 1000.0;
    let reports = downloaded[big.as_str()].1;
    assert!(seconds > 0.75, "the rate limit did not slow the download");
    assert!(
        reports >= 2 && reports as f64 <= seconds * 4.0 + 2.0,
        "{reports} downloaded events in {seconds} s"
    );
    assert!(named(&events, "cached").is_empty(), "{}", run.stderr);

    let exported = named(&events, "exported");
    assert_eq!(exported.len(), 1, "{}", run.stderr);
    let tar = haul.workdir.path().join("image.tar");
    assert_eq!(exported[0]["path"], "image.tar");
    assert_eq!(exported[0]["bytes"], std::fs::metadata(&tar).unwrap().len());
    assert_eq!(events.last().unwrap()["event"], "exported");

    // Again: everything is cached, nothing downloaded.
    let again = haul
        .run(&[
            "export",
            &pushed.reference,
            "-o",
            "again.tar",
            "--progress",
            "json",
        ])
        .success();
    let events = json_events(&again.stderr);
    let planned = named(&events, "planned");
    assert_eq!(planned[0]["missing"], 0);
    assert_eq!(planned[0]["missing_bytes"], 0);
    let cached = named(&events, "cached");
    assert_eq!(cached.len(), blobs.len(), "{}", again.stderr);
    for (digest, size) in &blobs {
        assert!(
            cached
                .iter()
                .any(|e| e["digest"] == digest.as_str() && e["size"] == *size),
            "{digest} not reported cached:\n{}",
            again.stderr
        );
    }
    for name in ["download_started", "downloaded", "download_finished"] {
        assert!(named(&events, name).is_empty(), "{}", again.stderr);
    }
    assert_eq!(named(&events, "exported")[0]["path"], "again.tar");
}

#[test]
fn plain_lines_without_a_terminal_and_silence_with_q() {
    let registry = Registry::start();
    let (image, pushed) = pushed_image(&registry, 64 << 10);
    let blobs = blobs(&image, &pushed);

    // Standard error is a pipe here: auto means plain lines.
    for (mode, name) in [(None, "auto.tar"), (Some("plain"), "plain.tar")] {
        let haul = Haul::new();
        let mut args = vec!["export", &pushed.reference, "-o", name];
        args.extend(mode.map(|mode| ["--progress", mode]).into_iter().flatten());
        let run = haul.run(&args).success();
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert!(
            lines.contains(
                &format!(
                    "{}: {} (linux/amd64)",
                    pushed.reference, pushed.manifest_digest
                )
                .as_str()
            ),
            "{}",
            run.stderr
        );
        for (digest, _) in &blobs {
            let short = &digest[..19];
            assert_eq!(
                lines
                    .iter()
                    .filter(|l| l.starts_with(&format!("{short}: downloaded ")))
                    .count(),
                1,
                "{short}:\n{}",
                run.stderr
            );
        }
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with(&format!("wrote {name} (")),
            "{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains('\x1b'),
            "escape codes: {:?}",
            run.stderr
        );
        assert_eq!(lines.len(), blobs.len() + 2, "{}", run.stderr);

        let again = haul.run(&["export", &pushed.reference, "-o", "again.tar"]);
        let again = again.success();
        assert_eq!(
            again.stderr.matches(": cached (").count(),
            blobs.len(),
            "{}",
            again.stderr
        );
    }

    // -q: nothing at all on success, cold or warm.
    let haul = Haul::new();
    for name in ["q1.tar", "q2.tar"] {
        let run = haul
            .run(&["export", &pushed.reference, "-o", name, "-q"])
            .success();
        assert_eq!(run.stderr, "");
        assert!(run.stdout.is_empty());
    }
    // --progress none too; -q with --progress is a contradiction.
    let run = haul
        .run(&[
            "export",
            &pushed.reference,
            "-o",
            "none.tar",
            "--progress",
            "none",
        ])
        .success();
    assert_eq!(run.stderr, "");
    let usage = haul.run(&["export", &pushed.reference, "-q", "--progress", "json"]);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.stderr);
}

/// Single quotes for `sh -c`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[test]
fn bars_on_a_terminal() {
    require_on_path("script");
    let registry = Registry::start();
    let (image, pushed) = pushed_image(&registry, 2 << 20);
    let blobs = blobs(&image, &pushed);
    let haul = Haul::new();

    // haul as the harness runs it, inside a pseudo-terminal: `script` runs the command line
    // with the terminal as its stdin, stdout and stderr, and copies what it shows to its own
    // stdout. Slow enough (about a second) for the bars to be drawn.
    let mut inner = haul.command();
    inner.args([
        "export",
        &pushed.reference,
        "-o",
        "image.tar",
        "--limit-rate",
        "2M",
    ]);
    let line = std::iter::once(inner.get_program())
        .chain(inner.get_args())
        .map(|word| shell_quote(&word.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script.args([
        "--quiet",
        "--return",
        "--flush",
        "--command",
        &line,
        "/dev/null",
    ]);
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    script.env("TERM", "xterm").current_dir(haul.workdir.path());
    let output = output_within(&mut script, None, COMMAND_TIMEOUT);
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");

    // A bar for the big layer and the total, drawn with escape codes to redraw them.
    let (big, big_size) = blobs.last().unwrap();
    let big = &big[..19];
    // Its size as the bars write it (the compressed size: about 2 MiB, as gzip left it).
    let big_size = format!(" MiB/{:.2} MiB ", *big_size as f64 / f64::from(1u32 << 20));
    assert!(
        shown.contains(&format!("{big} [=")) && shown.contains(&big_size),
        "no bar for {big} ({big_size}):\n{shown}"
    );
    assert!(
        shown.contains("total ") && shown.contains(&format!("/{} blobs  ", blobs.len())),
        "no total bar:\n{shown}"
    );
    assert!(shown.contains('\x1b'), "no escape codes:\n{shown}");
    // The finished steps stay as lines, the summary last.
    for (digest, _) in &blobs {
        assert!(
            shown.contains(&format!("{}: downloaded ", &digest[..19])),
            "{shown}"
        );
    }
    assert!(shown.contains("wrote image.tar ("), "{shown}");
    assert!(
        shown.contains(&format!(
            "{} blobs: {} downloaded (",
            blobs.len(),
            blobs.len()
        )) && shown.contains("), 0 cached"),
        "no summary:\n{shown}"
    );
    assert!(haul.workdir.path().join("image.tar").exists());
}
