//! Bearer tokens against the real registry in `auth: token` mode: the registry answers 401
//! with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, haul gets a token from the
//! realm (a token service the test runs and whose JWTs the registry verifies), and keeps it
//! for every later request to that repository.

use std::time::{Duration, Instant};

use crate::harness::token::{Access, TOKEN_SERVICE, TokenRequest, TokenServer};
use crate::harness::*;

const USER: &str = "robot";
const PASSWORD: &str = "t0ken-s3cret";

fn export_with_password(haul: &Haul, references: &[&str], extra: &[&str], password: &str) -> Run {
    let mut args = vec!["export"];
    args.extend_from_slice(references);
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--username", USER, "--password-stdin"]);
    haul.run_stdin(&args, &format!("{password}\n"))
}

/// The token requests for `repository`, asserting each was for exactly its pull scope and
/// this registry's service, with the user's credentials.
#[track_caller]
fn pull_token_requests(tokens: &TokenServer, repository: &str) -> usize {
    let scope = format!("repository:{repository}:pull");
    let mine: Vec<TokenRequest> = tokens
        .requests()
        .into_iter()
        .filter(|r| {
            r.scopes
                .iter()
                .any(|s| Access::parse(s).is_some_and(|a| a.name == repository))
        })
        .collect();
    for request in &mine {
        assert_eq!(request.scopes, vec![scope.clone()], "{request:?}");
        assert_eq!(
            request.service.as_deref(),
            Some(TOKEN_SERVICE),
            "{request:?}"
        );
        assert_eq!(request.user.as_deref(), Some(USER), "{request:?}");
        assert_eq!(request.status, 200, "{request:?}");
    }
    mine.len()
}

#[test]
fn one_token_per_repository_for_a_whole_export() {
    let tokens = TokenServer::start(USER, PASSWORD);
    let registry = Registry::start_token_auth(&tokens);
    let alpha = unique("team/alpha");
    let beta = unique("team/beta");
    // busybox plus three layers, one of them 256 KiB: several blob requests under one token.
    let image_a = Image::runnable(
        "alpha",
        vec![
            Layer::text("etc/alpha", "a\n", Compression::Gzip),
            Layer::random("data/alpha.bin", 256 * 1024, 7),
            Layer::text("etc/alpha-2", "a2\n", Compression::Gzip),
        ],
        Compression::Gzip,
        false,
    );
    let image_b = Image::runnable(
        "beta",
        vec![Layer::text("etc/beta", "b\n", Compression::Gzip)],
        Compression::Gzip,
        true,
    );
    let pushed_a = registry.push(&alpha, "v1", &image_a);
    let pushed_b = registry.push(&beta, "v2", &image_b);
    // The harness pushed with tokens it minted: the service has seen no client yet.
    assert!(tokens.requests().is_empty(), "{:?}", tokens.requests());

    // The registry really is in token mode: anonymous pulls get the Bearer challenge.
    let anonymous = reqwest::blocking::get(format!(
        "http://{}/v2/{alpha}/manifests/v1",
        registry.host()
    ))
    .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&format!("realm=\"{}\"", tokens.realm()))
            && challenge.contains(&format!("scope=\"repository:{alpha}:pull\"")),
        "{challenge}"
    );

    let haul = Haul::new();
    export_with_password(
        &haul,
        &[&pushed_a.reference, &pushed_b.reference],
        &["-o", "out.tar", "-j", "4"],
        PASSWORD,
    )
    .success();

    let manifest = tar_json(&haul.workdir.path().join("out.tar"), "manifest.json");
    let entries = manifest.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{manifest}");
    for (pushed, layers) in [(&pushed_a, 4), (&pushed_b, 2)] {
        let entry = entries
            .iter()
            .find(|e| e["RepoTags"] == serde_json::json!([pushed.reference]))
            .unwrap_or_else(|| panic!("{} not in {manifest}", pushed.reference));
        assert_eq!(entry["Layers"].as_array().unwrap().len(), layers, "{entry}");
    }
    // One token per repository and scope, not one per request, though every blob came
    // with a token: unauthorized blob requests get 401 here, and each blob was served (200)
    // once. busybox is in both images; haul fetches it from either repository, once.
    assert_eq!(
        pull_token_requests(&tokens, &alpha),
        1,
        "{:?}",
        tokens.requests()
    );
    assert_eq!(
        pull_token_requests(&tokens, &beta),
        1,
        "{:?}",
        tokens.requests()
    );
    assert_eq!(tokens.requests().len(), 2, "{:?}", tokens.requests());
    let mut digests: Vec<&String> = [&pushed_a, &pushed_b]
        .iter()
        .flat_map(|p| p.layer_digests.iter().chain([&p.config_digest]))
        .collect();
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 7);
    for digest in digests {
        let served = registry.blob_gets(&alpha, digest) + registry.blob_gets(&beta, digest);
        assert_eq!(served, 1, "{digest}");
    }
}

#[test]
fn wrong_or_missing_credentials_are_refused() {
    let tokens = TokenServer::start(USER, PASSWORD);
    let registry = Registry::start_token_auth(&tokens);
    let repository = unique("team/private");
    let image = Image::new(
        vec![Layer::text("etc/p", "p\n", Compression::Gzip)],
        false,
        "amd64",
        None,
        "private",
    );
    let pushed = registry.push(&repository, "v1", &image);

    // A wrong password: the token service says 401, and haul says so.
    let haul = Haul::new();
    let run = export_with_password(&haul, &[&pushed.reference], &["-o", "bad.tar"], "nope")
        .failure(&["unauthorized", &repository]);
    assert!(
        run.stderr.contains("rejected the credentials"),
        "{}",
        run.stderr
    );
    let requests = tokens.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        (requests[0].user.as_deref(), requests[0].status),
        (Some(USER), 401)
    );
    assert!(
        haul.workdir_files().is_empty(),
        "{:?}",
        haul.workdir_files()
    );

    // No credentials: the service hands out a token that grants nothing, the registry
    // refuses it, and haul gives up instead of asking again and again.
    tokens.clear();
    let haul = Haul::new();
    haul.run(&["export", &pushed.reference, "-o", "anon.tar"])
        .failure(&["unauthorized", &repository]);
    let requests = tokens.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(!requests[0].had_credentials(), "{requests:?}");
    assert_eq!(
        requests[0].scopes,
        vec![format!("repository:{repository}:pull")]
    );
    assert!(
        haul.workdir_files().is_empty(),
        "{:?}",
        haul.workdir_files()
    );
}

#[test]
fn an_expired_token_is_renewed_mid_export() {
    let tokens = TokenServer::start(USER, PASSWORD);
    let registry = Registry::start_token_auth(&tokens);
    let repository = unique("team/slow");
    let layers = (0..3)
        .map(|i| Layer::random(&format!("data/{i}.bin"), 400 * 1024, i))
        .collect();
    let image = Image::new(layers, false, "amd64", None, "slow");
    let pushed = registry.push(&repository, "v1", &image);

    // Tokens the registry accepts for one to two seconds (`exp` is whole seconds, so a
    // one-second token could be stale the instant it is issued), and one download at a time
    // at 128 KB/s: each 400 KiB layer takes over 3 s, longer than the token it started with
    // lives, so the next request carries an expired token and haul must get a new one.
    tokens.set_lifetime(Duration::from_secs(2));
    let haul = Haul::new();
    let started = Instant::now();
    export_with_password(
        &haul,
        &[&pushed.reference],
        &["-o", "slow.tar", "-j", "1", "--limit-rate", "128K"],
        PASSWORD,
    )
    .success();
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "too fast for the token to expire: {:?}",
        started.elapsed()
    );
    let manifest = tar_json(&haul.workdir.path().join("slow.tar"), "manifest.json");
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 3);
    // The registry refused an expired token on a blob request, and haul got a new one.
    let refusals = |path: &str| {
        let request = format!("\"GET /v2/{repository}/{path}");
        registry
            .log()
            .lines()
            .filter(|line| line.contains(&request) && line.contains("\" 401 "))
            .count()
    };
    assert!(refusals("blobs/") >= 1, "no blob request was refused");
    let tokens_asked = pull_token_requests(&tokens, &repository);
    assert!(
        tokens_asked >= 2,
        "the token was never renewed: {:?}",
        tokens.requests()
    );
    // One token per refusal (the first one: the manifest request that came without a
    // token), not one per request.
    assert_eq!(tokens_asked, refusals(""), "{:?}", tokens.requests());
}
