//! One function per subcommand, and the settings they share. The only place (with `cli`)
//! that knows the terminal, `anyhow` and exit codes.

// The commands print: the library below them does not (clippy's print lints, Cargo.toml).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cache;
mod completions;
mod copy;
mod export;
mod inspect;
mod load;
mod lock;
mod pull;
mod push;
mod rebuild;
mod repair;
mod verify;
mod verify_blob;

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::cli::{
    Cli, Command, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_SUCCESS, EXIT_USAGE, ImageArgs, LoginArgs,
    ProgressMode,
};
use crate::config;
use crate::list::ImageList;
use crate::pipeline::{ImageRequest, Session, SessionOptions};
use crate::progress::{Bars, Json, Lines, Progress, Silent};
use crate::reference::Reference;
use crate::registry::auth::{CredentialStore, Credentials};
use crate::registry::endpoint::Routes;
use crate::registry::{RegistryOptions, UploadGate};
use crate::resolve::PlatformChoice;
use crate::signature::policy::KeylessOptions;

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let args: Vec<String> = std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let error = Cli::single_dash_long_option(&args)
                .filter(|_| error.use_stderr())
                .unwrap_or(error);
            // --help and --version come here too, printed to stdout: they succeed.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_SUCCESS
            });
        }
    };
    if let Err(error) = cli.check() {
        let _ = error.print();
        return ExitCode::from(EXIT_USAGE);
    }
    let (progress, logs) = progress_for(&cli);
    crate::progress::log::init(cli.verbose, cli.quiet, logs);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let interrupted = interrupted_note(&cli.command);
    let uploads = UploadGate::default();
    let outcome = runtime.block_on(async {
        let run = run(cli, progress.clone(), uploads.clone());
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => return Some(result),
            _ = crate::portable::stop_requested() => {}
        }
        // Uploads cut mid-request do not resume on distribution 2.x: those in flight end
        // whole first (a chunk at most), unless asked again.
        uploads.stop();
        let in_flight = uploads.in_flight();
        if in_flight > 0 {
            eprintln!(
                "stopping: {in_flight} upload request(s) in flight end first (a chunk of at most {}), so the next run resumes them; Ctrl-C again stops now",
                crate::progress::human_bytes(crate::registry::CHUNK_BYTES)
            );
            tokio::select! {
                _ = &mut run => {}
                () = uploads.idle() => {}
                () = crate::portable::stop_requested() => {}
            }
        }
        None
    });
    if outcome.is_none() {
        // Threads still writing (a tar copy, a split export's parts) hold temporary files the
        // runtime will not wait for: they go now.
        crate::fsx::remove_held();
    }
    // Do not wait for blocking tasks (a tar copy) still running: their output is discarded.
    runtime.shutdown_background();
    // The bars go before the last words.
    progress.finish();
    match outcome {
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(error)) => {
            if is_broken_pipe(&error) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", crate::error::describe(error.as_ref()));
            if is_disk_full(&error) {
                eprintln!(
                    "hint: the disk is full. Free space (e.g. `haul cache prune --max-size SIZE`) and run again: \
                     verified blobs are kept and partial downloads resume"
                );
            }
            ExitCode::from(EXIT_FAILURE)
        }
        None => {
            eprintln!("interrupted; {interrupted}");
            ExitCode::from(EXIT_INTERRUPTED)
        }
    }
}

/// What an interruption of `command` leaves, said after "interrupted; ".
fn interrupted_note(command: &Command) -> &'static str {
    match command {
        Command::Export(args) if args.output.as_deref() == Some("-") => {
            "the tar on standard output is cut short (a loader reading it loads nothing); \
             partial downloads are kept and resume on the next run"
        }
        Command::Export(args) if args.load || args.to.is_some() => {
            "the engine was sent part of a tar and loads nothing of it; partial downloads are \
             kept and resume on the next run"
        }
        Command::Export(_) => {
            "no tar was written (nor any part); partial downloads are kept and resume on the next run"
        }
        Command::Pull(_) | Command::Inspect(_) | Command::Lock(_) => {
            "partial downloads are kept and resume on the next run"
        }
        Command::Push(_) => {
            "the next run sends only what the registry lacks, resuming each upload from the \
             last chunk it took"
        }
        Command::Copy(_) => {
            "partial downloads are kept; the next run resumes them and each upload from the \
             last chunk the registry took"
        }
        Command::Load(_) => "run haul load again: the engine takes the whole bundle again",
        Command::Rebuild(_) => "nothing was written",
        Command::Repair(_) => "run haul repair again: it rebuilds what is still missing",
        Command::Verify(_) | Command::VerifyBlob(_) => "nothing was checked to the end",
        Command::Cache(_) => "the cache is consistent; run the command again",
        Command::Completions { .. } => "nothing was printed in full",
    }
}

async fn run(cli: Cli, progress: Arc<dyn Progress>, uploads: UploadGate) -> anyhow::Result<()> {
    // Completions need no settings: they work whatever the configuration file holds.
    if let Command::Completions { shell } = cli.command {
        return completions::run(shell);
    }
    // verify reads only the tar: no cache folder or configuration file to find (the machine
    // it runs on may have neither).
    if let Command::Verify(args) = &cli.command {
        return verify::run(args, cli.quiet).await;
    }
    // verify-blob reads only the file and its bundle.
    if let Command::VerifyBlob(args) = &cli.command {
        return verify_blob::run(args, cli.quiet);
    }
    // load needs only the tar and the engine.
    if let Command::Load(args) = &cli.command {
        return load::run(args, progress).await;
    }
    // repair needs only the set.
    if let Command::Repair(args) = &cli.command {
        return repair::run(args).await;
    }
    // rebuild needs only the bundles.
    if let Command::Rebuild(args) = &cli.command {
        return rebuild::run(args, cli.quiet).await;
    }
    let global = Global::new(&cli, progress, uploads)?;
    match cli.command {
        Command::Export(args) => export::run(&global, args).await,
        Command::Pull(args) => pull::run(&global, args).await,
        Command::Inspect(args) => inspect::run(&global, args).await,
        Command::Cache(command) => cache::run(&global, command).await,
        Command::Push(args) => push::run(&global, args).await,
        Command::Copy(args) => copy::run(&global, args).await,
        Command::Lock(args) => lock::run(&global, args).await,
        Command::Completions { .. } => unreachable!("handled above"),
        Command::Verify(_)
        | Command::VerifyBlob(_)
        | Command::Load(_)
        | Command::Repair(_)
        | Command::Rebuild(_) => {
            unreachable!("handled above")
        }
    }
}

/// Settings every subcommand uses.
pub struct Global {
    pub cache_dir: PathBuf,
    /// Mirrors and insecure registries, from the command line and the configuration file.
    routes: Routes,
    ca_certs: Vec<PathBuf>,
    pub progress: Arc<dyn Progress>,
    /// `-q`: nothing but errors on standard error.
    pub quiet: bool,
    pub retries: u32,
    limit_rate: Option<u64>,
    connect_timeout: Duration,
    stall_timeout: Duration,
    /// Stops uploads between requests on Ctrl-C.
    uploads: UploadGate,
}

impl Global {
    fn new(cli: &Cli, progress: Arc<dyn Progress>, uploads: UploadGate) -> anyhow::Result<Global> {
        let from_env = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let cache_dir = match cli.cache_dir.clone().or_else(|| from_env("HAUL_CACHE_DIR")) {
            Some(dir) => dir,
            None => default_cache_dir()?,
        };
        let config_file = cli.config.clone().or_else(|| from_env("HAUL_CONFIG"));
        let (routes, ca_certs) = config::load(config_file.as_deref())?.with_command_line(
            &cli.mirrors,
            &cli.insecure_registries,
            &cli.ca_certs,
        );
        Ok(Global {
            cache_dir,
            routes,
            ca_certs,
            progress,
            quiet: cli.quiet,
            retries: cli.retries,
            limit_rate: cli.limit_rate,
            connect_timeout: Duration::from_secs(cli.connect_timeout.max(1)),
            stall_timeout: Duration::from_secs(cli.stall_timeout.max(1)),
            uploads,
        })
    }

    /// Registry settings, with credentials from the command line or docker's config.json.
    fn registry_options(&self, login: &LoginArgs) -> anyhow::Result<RegistryOptions> {
        let explicit = match (&login.username, &login.password_file) {
            (Some(username), _) if login.password_stdin => Some(Credentials {
                username: username.clone(),
                password: read_password_stdin()?,
            }),
            (Some(username), Some(file)) => Some(Credentials {
                username: username.clone(),
                password: read_password_file(file)?,
            }),
            _ => None,
        };
        Ok(RegistryOptions {
            routes: self.routes.clone(),
            ca_certs: self.ca_certs.clone(),
            credentials: CredentialStore::load(explicit)?,
            connect_timeout: Some(self.connect_timeout),
            read_timeout: Some(self.stall_timeout),
            retries: self.retries,
            limit_rate: self.limit_rate,
            // The session fills these in from its cache.
            remembered_transports: HashMap::new(),
            uploads: self.uploads.clone(),
        })
    }

    /// A session for the images `images` names, with `jobs` downloads at once.
    async fn session(&self, images: &ImageArgs, jobs: usize) -> anyhow::Result<Session> {
        self.session_with(&images.login, jobs, images.offline).await
    }

    /// A session logged in as `login` says, with `jobs` transfers at once.
    async fn session_with(
        &self,
        login: &LoginArgs,
        jobs: usize,
        offline: bool,
    ) -> anyhow::Result<Session> {
        Ok(Session::open(SessionOptions {
            cache_dir: self.cache_dir.clone(),
            registry: self.registry_options(login)?,
            progress: self.progress.clone(),
            jobs,
            offline,
        })
        .await?)
    }
}

/// What a push or copy wrote: each image's name and digest on standard output (for
/// scripts), and what went up on standard error.
fn print_pushed(global: &Global, summary: &crate::push::PushSummary) {
    for name in summary.names() {
        println!("{name}");
    }
    if !global.quiet {
        eprintln!("{}", summary.counts());
    }
}

/// What `--verify-key` and the keyless options ask of every image (a bad key, root or
/// pattern fails before anything is fetched).
fn verify_keys(args: &crate::cli::SignatureArgs) -> anyhow::Result<crate::signature::Trust> {
    let keys = args
        .verify_key
        .iter()
        .map(|path| crate::signature::PublicKey::read(path))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::signature::policy::trust(
        keys,
        &keyless_options(&args.keyless),
        None,
        args.referrers,
    )?)
}

/// The keyless options as the signature policy takes them.
pub fn keyless_options(args: &crate::cli::KeylessArgs) -> KeylessOptions {
    KeylessOptions {
        identity: args.certificate_identity.clone(),
        identity_regexp: args.certificate_identity_regexp.clone(),
        issuer: args.certificate_oidc_issuer.clone(),
        issuer_regexp: args.certificate_oidc_issuer_regexp.clone(),
        trusted_root: args.trusted_root.clone(),
        predicate_type: args.predicate_type.clone(),
    }
}

/// The references and platforms `args` name: the lists `-f` names, then the arguments,
/// each image once.
fn image_request(args: &ImageArgs) -> anyhow::Result<ImageRequest> {
    let lists = read_lists(&args.file, args.login.password_stdin)?;
    image_request_from(args, &lists)
}

/// As [`image_request`], with the lists already read.
fn image_request_from(args: &ImageArgs, lists: &[ImageList]) -> anyhow::Result<ImageRequest> {
    let mut references: Vec<Reference> = lists
        .iter()
        .flat_map(|list| list.references().cloned().collect::<Vec<_>>())
        .collect();
    for text in &args.references {
        references.push(text.parse::<Reference>()?);
    }
    let references = crate::list::distinct(references);
    anyhow::ensure!(
        !references.is_empty(),
        "no image given: the lists named with -f hold no reference"
    );
    Ok(ImageRequest {
        references,
        platforms: PlatformChoice::asked(args.all_platforms, &args.platform)?,
    })
}

/// Reads and parses the lists `-f` names (`-` is standard input, once).
fn read_lists(files: &[String], password_stdin: bool) -> anyhow::Result<Vec<ImageList>> {
    let stdin_uses = files.iter().filter(|f| *f == "-").count() + usize::from(password_stdin);
    anyhow::ensure!(
        stdin_uses <= 1,
        "standard input can be read once: give the list (-f -) or the password \
         (--password-stdin) on it, and the other from a file"
    );
    let mut lists = Vec::new();
    for file in files {
        let (name, text) = if file == "-" {
            anyhow::ensure!(
                !std::io::stdin().is_terminal(),
                "-f - reads the list from standard input; pipe it in or give a FILE"
            );
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the list from standard input")?;
            ("standard input".to_string(), text)
        } else {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the list {file}"))?;
            (file.clone(), text)
        };
        lists.push(ImageList::parse(&name, &text)?);
    }
    Ok(lists)
}

/// The cache folder when none is given (see [`crate::portable::cache_home`]).
fn default_cache_dir() -> anyhow::Result<PathBuf> {
    crate::portable::cache_home().with_context(|| {
        format!(
            "cannot find a cache folder: {}; pass --cache-dir DIR",
            crate::portable::CACHE_HOME_VARIABLES
        )
    })
}

fn read_password_stdin() -> anyhow::Result<String> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        anyhow::bail!(
            "--password-stdin reads the password from standard input; pipe it in, e.g. `echo \"$PASSWORD\" | haul …`"
        );
    }
    let mut password = String::new();
    stdin
        .read_to_string(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(
        !password.is_empty(),
        "--password-stdin: standard input was empty"
    );
    Ok(password)
}

/// The first line of `file`: a password or token.
fn read_password_file(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("--password-file: cannot read {}", file.display()))?;
    let password = text.lines().next().unwrap_or_default().to_string();
    anyhow::ensure!(
        !password.is_empty(),
        "--password-file: the first line of {} is empty",
        file.display()
    );
    Ok(password)
}

/// The progress display `--progress` and `-q` ask for, and where log lines must go so that
/// they do not break it.
fn progress_for(cli: &Cli) -> (Arc<dyn Progress>, BoxMakeWriter) {
    let bars = |bars: Bars| {
        let logs = BoxMakeWriter::new(bars.log_writer());
        (Arc::new(bars) as Arc<dyn Progress>, logs)
    };
    let stderr = || BoxMakeWriter::new(std::io::stderr);
    if cli.quiet {
        return (Arc::new(Silent), stderr());
    }
    match cli.progress {
        ProgressMode::Auto => match Bars::on_terminal() {
            Some(on_terminal) => bars(on_terminal),
            None => (Arc::new(Lines), stderr()),
        },
        ProgressMode::Bars => bars(Bars::forced()),
        ProgressMode::Plain => (Arc::new(Lines), stderr()),
        ProgressMode::Json => (Arc::new(Json::default()), stderr()),
        ProgressMode::None => (Arc::new(Silent), stderr()),
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    has_io_error(error, std::io::ErrorKind::BrokenPipe)
}

/// ENOSPC (or a quota), wherever in the chain.
fn is_disk_full(error: &anyhow::Error) -> bool {
    has_io_error(error, std::io::ErrorKind::StorageFull)
        || has_io_error(error, std::io::ErrorKind::QuotaExceeded)
}

fn has_io_error(error: &anyhow::Error, kind: std::io::ErrorKind) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == kind)
    })
}
