//! The command line, as clap types only. Help texts come from the doc comments.
//!
//! Over 600 lines because it is every command's arguments with their help and examples, in
//! one place (uv's `uv-cli` does the same); it holds no logic to split off.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::registry::endpoint::{Mirror, parse_mirror_flag};

/// `haul --help`: a few examples, and the exit codes (`EXIT_*` below; the test
/// `help_lists_the_exit_codes` checks that this text lists each of them).
const HAUL_AFTER_HELP: &str = "\
Examples:
  haul export nginx:1.27 -o nginx.tar              # download (what is new) and write a tar
  haul pull app:1 app:2                            # fill the cache only
  haul inspect nginx:1.27                          # what it is, and what an export would download
  haul push bundle.tar registry.site:5000          # a bundle's images into a registry, digests kept
  haul cache ls

Exit status:
  0    success; also when standard output is closed early (`haul inspect ... | head`)
  1    failure: the message on standard error says what failed and what to do. Among them:
       an image, tag or platform that is not there, `cache verify` finding damaged blobs
  2    bad usage: an unknown subcommand or option, a missing argument, a value an option
       does not take (e.g. --jobs 0)
  130  interrupted (Ctrl-C or SIGTERM); partial downloads are kept and resume, no
       temporary file is left; the last line says what the command left";

const EXPORT_EXAMPLES: &str = "\
Examples:
  haul export busybox                              # -> docker.io_library_busybox_latest_amd64.tar
  haul export nginx:1.27 -o nginx.tar --platform linux/arm64
  haul export app:v1 app:v2 -o bundle.tar          # several images in one tar
  haul export 127.0.0.1:5000/team/app:1 -o - | docker load
  haul export app:1 --offline -o app.tar           # from the cache alone
  haul export app:v1 -o v1.tar --receipt v1.receipt
  haul export app:v2 -o v2-delta.tar --since v1.receipt   # only what the site lacks
  haul export app:v2 -o v2-patch.tar --since v1.tar --patch   # changed layers as patches
  haul export -f release.txt -o r1.tar --split dvd --parity 2   # DVDs, any 2 may be lost
  haul export -f release.txt -o r1.tar --split dvd --dry-run    # how much, how many discs
  haul export app:2 --referrers --verify-key cosign.pub -o app.tar   # only if signed by the key
  haul export app:2 --referrers --trusted-root trusted_root.json -o app.tar \\
      --certificate-identity release@acme.example --certificate-oidc-issuer https://accounts.acme.example";

const PULL_EXAMPLES: &str = "\
Examples:
  haul pull busybox nginx:1.27                     # warm the cache (e.g. a CI cache step)
  haul pull -f images.txt --keep-going             # a list: what can be pulled, and the failures
  haul pull nginx:1.27 --platform linux/arm64
  haul export nginx:1.27 --offline -o nginx.tar    # later, without network";

const INSPECT_EXAMPLES: &str = "\
Examples:
  haul inspect nginx:1.27                          # platforms, layers, what is cached
  haul inspect nginx:1.27 --platform linux/arm64
  haul inspect app:1 app:2 --json | jq '.[].image.download_size'
  haul inspect app:1 --offline                     # what this cache holds for app:1
  haul inspect release.tar                         # what a bundle holds (a file: no network)";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  haul completions bash > ~/.local/share/bash-completion/completions/haul
  haul completions zsh > ~/.zfunc/_haul            # with fpath+=(~/.zfunc) before compinit
  haul completions fish > ~/.config/fish/completions/haul.fish
  haul completions powershell >> $PROFILE";

const CACHE_EXAMPLES: &str = "\
Examples:
  haul cache ls
  haul cache du
  haul cache verify
  haul cache prune --max-size 20G
  haul cache rm nginx:1.27";

const LS_EXAMPLES: &str = "\
Examples:
  haul cache ls
  haul --cache-dir .haul-cache cache ls";

const DU_EXAMPLES: &str = "\
Examples:
  haul cache du
  HAUL_CACHE_DIR=.haul-cache haul cache du";

const CACHE_VERIFY_EXAMPLES: &str = "\
Examples:
  haul cache verify                                # exit status 1 if any blob was damaged
  haul cache verify || haul pull app:1             # download the damaged blobs again";

const PRUNE_EXAMPLES: &str = "\
Examples:
  haul cache prune --max-size 20G                  # least recently used first
  haul cache prune --older-than 30d
  haul cache prune --max-size 10G --older-than 2w
  haul cache prune --all";

const RM_EXAMPLES: &str = "\
Examples:
  haul cache rm nginx:1.27
  haul cache rm 127.0.0.1:5000/team/app:1 127.0.0.1:5000/team/app:2";

const LOAD_EXAMPLES: &str = "\
Examples:
  haul load v1.tar                                 # a whole bundle: checked, then loaded
  haul load v2-delta.tar                           # a delta: only if the engine has its base
  haul load v2-patch.tar                           # a patch delta: rebuilt from the engine's v1
  haul load v2-patch.tar --from v1.tar             # … or from the bundle that brought v1";

const PUSH_EXAMPLES: &str = "\
Examples:
  haul push bundle.tar registry.site:5000           # nginx:1.27 -> DEST/library/nginx:1.27
  haul push bundle.tar registry.site:5000/mirror    # -> DEST/library/nginx:1.27, DEST = .../mirror
  haul push app.tar registry.site:5000 --as team/app:1.2   # a one-image tar, under the name given
  haul push v2-delta.tar registry.site:5000         # a delta: only after its base was pushed there
  haul push v2-patch.tar registry.site:5000         # a patch delta: rebuilt from what is there
  haul push v2-patch.tar registry.site:5000 --from v1.tar   # … or from the earlier bundle
  ssh build-host haul export app:1 -o - | haul push - registry.site:5000

Manifests go up byte for byte, so every digest is kept; a tar without them (--format docker-v1,
docker save before Docker 25) gets a new manifest, printed. Tags are written last.";

const LOCK_EXAMPLES: &str = "\
Examples:
  haul lock -f images.txt -o images.lock           # each image pinned: name:tag@sha256:…
  haul export -f images.lock -o release.tar        # exactly what was locked
  haul lock -f images.lock -o images.lock          # move the pins to what the tags name now";

const COPY_EXAMPLES: &str = "\
Examples:
  haul copy nginx:1.27 registry.site:5000/library/nginx            # keeps the tag 1.27
  haul copy nginx:1.27 registry.site:5000/web/nginx:stable --all-platforms   # index digest kept
  haul copy app:1 registry.site:5000/team/app:1 --offline          # from the cache alone
  haul copy -f images.lock registry.site:5000/mirror               # a list: DEST/<repository>:<tag>";

const VERIFY_EXAMPLES: &str = "\
Examples:
  haul verify app.tar                              # ok: 1 image, 7 blobs, 201.3 MiB verified
  haul export app:1 -o - | tee app.tar | haul verify -
  haul verify --json bundle.tar > report.json
  haul verify app.tar --key cosign.pub             # every image signed by the key (export --referrers)
  haul verify app.tar --certificate-identity release@acme.example \\
      --certificate-oidc-issuer https://accounts.acme.example   # keyless, offline
  haul verify app.tar --trusted-root-digest sha256:… --certificate-identity release@acme.example \\
      --certificate-oidc-issuer https://accounts.acme.example   # against the root the tar carries

Exit status: 0 when the tar is whole, 1 when anything is missing or damaged (each problem is
listed, naming the file and what names it).";

const VERIFY_BLOB_EXAMPLES: &str = "\
Examples:
  haul verify-blob chart.tgz --bundle chart.tgz.sigstore.json \\
      --certificate-identity https://github.com/acme/charts/.github/workflows/release.yml@refs/tags/v1.2.0 \\
      --certificate-oidc-issuer https://token.actions.githubusercontent.com
  haul verify-blob tool --bundle tool.sigstore.json --trusted-root site/trusted_root.json \\
      --certificate-identity-regexp '^release@acme\\.example$' --certificate-oidc-issuer https://accounts.acme.example
  haul verify-blob sha256:4f3c…e1 --bundle sbom.sigstore.json --key cosign.pub

Without --trusted-root the bundle is checked against sigstore's public-good root that haul
ships. No request leaves the machine. Exit status: 0 when it passes, 1 (with the reason) when
not.";

/// Pull container images from any OCI / Docker registry, without a Docker daemon, into
/// tarballs that `docker load` accepts. Every blob is verified and cached, so the next
/// export downloads only what is new.
#[derive(Debug, Parser)]
#[command(name = "haul", version = env!("HAUL_VERSION"), after_help = HAUL_AFTER_HELP)]
pub struct Cli {
    /// Cache folder (also HAUL_CACHE_DIR) [default: $XDG_CACHE_HOME/haul or ~/.cache/haul; on
    /// Windows %LOCALAPPDATA%\haul\cache]
    // The variable is read by the command, not clap: clap would show an option set from the
    // environment in every usage error, as if it were required.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "DIR"
    )]
    pub cache_dir: Option<PathBuf>,

    /// Accept this registry's TLS certificate unverified, or plain HTTP if it has no TLS
    /// (host or host:port); repeatable. Loopback registries (localhost, 127.0.0.0/8, [::1])
    /// may use plain HTTP without it
    #[arg(
        long = "insecure-registry",
        global = true,
        help_heading = "Global options",
        value_name = "HOST"
    )]
    pub insecure_registries: Vec<String>,

    /// Fetch REGISTRY's images from MIRROR first ([http://|https://]HOST[:PORT][/PREFIX]),
    /// falling back to the registry; repeatable, tried in order. Replaces the configuration
    /// file's mirrors for that registry
    #[arg(long = "mirror", global = true, help_heading = "Global options", value_name = "REGISTRY=MIRROR", value_parser = parse_mirror_flag)]
    pub mirrors: Vec<(String, Mirror)>,

    /// Also trust the certificate authorities in this PEM file; repeatable
    #[arg(
        long = "ca-cert",
        global = true,
        help_heading = "Global options",
        value_name = "FILE"
    )]
    pub ca_certs: Vec<PathBuf>,

    /// Configuration file (also HAUL_CONFIG) [default: $XDG_CONFIG_HOME/haul/config.toml or
    /// ~/.config/haul/config.toml; on Windows %APPDATA%\haul\config.toml]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Print only errors (no progress, no warnings)
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global options",
        conflicts_with = "progress"
    )]
    pub quiet: bool,

    /// How to show progress on standard error
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = ProgressMode::Auto, value_name = "MODE")]
    pub progress: ProgressMode,

    /// Log more (-v: debug, -vv: trace); RUST_LOG works too
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Further attempts after a connection error, a 5xx, 408, 429 (honouring Retry-After) or a
    /// download or upload cut mid-way (resumed where it stopped)
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        default_value_t = 3,
        value_name = "N"
    )]
    pub retries: u32,

    /// One bandwidth cap shared by all downloads and uploads, in bytes per second: 500K, 5M, 1.5G
    #[arg(long, global = true, help_heading = "Global options", value_name = "RATE", value_parser = crate::units::parse_size)]
    pub limit_rate: Option<u64>,

    /// Seconds to wait for a connection to a registry
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub connect_timeout: u64,

    /// Seconds a transfer may go without receiving a byte before it counts as failed
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        default_value_t = 60,
        value_name = "SECS"
    )]
    pub stall_timeout: u64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download images and write them as one tar that docker load accepts
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Download images into the cache without writing a tar (e.g. to warm a CI cache)
    #[command(after_help = PULL_EXAMPLES)]
    Pull(PullArgs),
    /// Show what images are without downloading their layers: platforms, config, layers
    /// (digest, compression, size), and which blobs are already cached; or, given a FILE.tar,
    /// what that bundle holds
    #[command(after_help = INSPECT_EXAMPLES)]
    Inspect(InspectArgs),
    /// Look at and tidy the cache
    #[command(subcommand, after_help = CACHE_EXAMPLES)]
    Cache(CacheCommand),
    /// Print a shell completion script to standard output
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Check that an image tar is whole, before carrying it where it cannot be fetched again
    ///
    /// Every file manifest.json and index.json name must be in the tar (at the size they say),
    /// every blob must hash to its name, each image must have as many layers as its config has
    /// diff_ids, and an uncompressed layer must hash to its diff_id. The tar is read once, as a
    /// stream: a FILE, or standard input for -. Works offline; uses no cache.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),

    /// Check a file's sigstore bundle offline, as `cosign verify-blob` does: the signature (or
    /// DSSE attestation) is of this file, by this identity or key, logged in a transparency
    /// log of the trusted root
    #[command(after_help = VERIFY_BLOB_EXAMPLES)]
    VerifyBlob(VerifyBlobArgs),

    /// Load a bundle into the local Docker engine (`docker load`, honouring DOCKER_HOST),
    /// checking first that it is whole and, for a delta, that the engine holds every layer it
    /// left out; otherwise nothing is loaded
    #[command(after_help = LOAD_EXAMPLES)]
    Load(LoadArgs),

    /// Rebuild a patch delta (export --since PREV --patch) into a whole bundle, from the
    /// earlier bundles it was made against; every rebuilt layer is checked against its
    /// diff_id before anything is written
    #[command(after_help = REBUILD_EXAMPLES)]
    Rebuild(RebuildArgs),

    /// Rebuild the missing and damaged parts of a parts set (export --split --parity) in place
    /// from the others; each rebuilt part is checked against the set before it takes its name
    #[command(after_help = REPAIR_EXAMPLES)]
    Repair(RepairArgs),

    /// Push the images of a tar (any layout haul writes, or `docker save` output) into a
    /// registry, every digest kept: blobs the registry lacks (resumable, in chunks), then
    /// manifests, then tags
    #[command(after_help = PUSH_EXAMPLES)]
    Push(PushArgs),

    /// Copy an image from one registry to another through the cache, every digest kept (a
    /// later copy or --offline export downloads nothing)
    #[command(
        after_help = COPY_EXAMPLES,
        override_usage = "haul copy [OPTIONS] SOURCE DEST\n       haul copy [OPTIONS] SOURCE... DEST\n       haul copy [OPTIONS] -f LIST DEST"
    )]
    Copy(CopyArgs),

    /// Pin images by digest: write each reference as name:tag@sha256:… (a list's comments and
    /// order kept), for `haul export -f` to export exactly that later
    #[command(after_help = LOCK_EXAMPLES)]
    Lock(LockArgs),
}

impl Cli {
    /// What clap cannot say of the arguments alone: a usage error, as clap's are.
    pub fn check(&self) -> Result<(), clap::Error> {
        use clap::CommandFactory;
        if let Command::Export(args) = &self.command
            && args.split.is_some()
            && args.output.as_deref() == Some("-")
        {
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--split writes parts beside FILE: it cannot write to standard output (-o -); \
                 give -o FILE",
            ));
        }
        if let Command::Push(args) = &self.command
            && args.tar == "-"
            && args.login.password_stdin
        {
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--password-stdin reads standard input, which carries the tar here (push -): \
                 give the password with --username NAME --password-file FILE, or log in once \
                 with `docker login` (haul reads docker's config.json)",
            ));
        }
        Ok(())
    }

    /// A clap error for `-since` and the like, a long option written with one dash (clap
    /// would read it as short options and suggest `-- -s`); `None` for anything else.
    pub fn single_dash_long_option(args: &[String]) -> Option<clap::Error> {
        use clap::CommandFactory;
        let command = Cli::command();
        // The global options, and those of the subcommand named (of every one, if none is).
        let mut longs: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_long().map(str::to_string))
            .collect();
        match args.iter().skip(1).find_map(|a| command.find_subcommand(a)) {
            Some(subcommand) => collect_longs(subcommand, &mut longs),
            None => collect_longs(&command, &mut longs),
        }
        args.iter()
            .skip(1)
            .take_while(|arg| *arg != "--")
            .find_map(|arg| {
                let name = arg.strip_prefix('-')?.split('=').next()?;
                let long =
                    name.len() > 1 && !name.starts_with('-') && longs.iter().any(|l| l == name);
                long.then(|| {
                    Cli::command().error(
                        clap::error::ErrorKind::UnknownArgument,
                        format!("{arg}: a long option takes two dashes: --{}", &arg[1..]),
                    )
                })
            })
    }
}

/// Every long option name of `command` and its subcommands.
fn collect_longs(command: &clap::Command, longs: &mut Vec<String>) {
    for arg in command.get_arguments() {
        longs.extend(arg.get_long().map(str::to_string));
    }
    for subcommand in command.get_subcommands() {
        collect_longs(subcommand, longs);
    }
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub images: ImageArgs,

    /// Write the lock file here (replaced whole, when complete) [default: standard output]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The patch delta (a tar or a parts set)
    #[arg(value_name = "DELTA")]
    pub delta: std::path::PathBuf,

    /// An earlier bundle the delta was made against (a tar or a parts set); repeatable
    #[arg(long = "from", value_name = "PREV", required = true)]
    pub from: Vec<std::path::PathBuf>,

    /// The whole bundle to write
    #[arg(short, long, value_name = "FILE")]
    pub output: std::path::PathBuf,
}

const REBUILD_EXAMPLES: &str = "Examples:
  haul rebuild v2-delta.tar --from v1.tar -o v2.tar     # then: docker load -i v2.tar
  haul rebuild v2-delta.tar.parts --from v1.tar.parts -o v2.tar

Rebuilt layers go in with their diff_ids checked. A layer whose blob the export could make
again byte for byte (\"exact\") keeps every digest; otherwise (\"content\") it goes in
uncompressed under a rewritten manifest: the image ID is kept, the manifest digest is new.
`haul verify DELTA` says which layers are which. Scratch files go to TMPDIR.";

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The set: its record (FILE.parts) or its first part (FILE.001)
    #[arg(value_name = "SET")]
    pub set: std::path::PathBuf,
}

const REPAIR_EXAMPLES: &str = "Examples:
  haul repair v1.tar.parts        # rebuild what is lost, from the recovery parts
  sha256sum -c v1.tar.sha256      # then check every part without haul";

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The bundle (a tar haul or `docker save` wrote, or a parts set), or - to read it from
    /// standard input
    #[arg(value_name = "FILE")]
    pub tar: String,

    /// The engine to load into, as docker's -H takes it (unix:///path, tcp://host:port,
    /// ssh://host) [default: DOCKER_HOST, else the local engine]
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    pub host: Option<String>,

    /// For a patch delta: rebuild its layers from this earlier bundle (a tar or parts set);
    /// repeatable [default: from the engine, `docker save` of the images the delta names]
    #[arg(long = "from", value_name = "PREV")]
    pub from: Vec<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The tar (or a parts set), or - to read it from standard input
    #[arg(value_name = "FILE")]
    pub tar: String,

    /// Where the images go: REGISTRY[/PREFIX]. Each image goes to DEST/<repository>:<tag>,
    /// <repository> being its name in the tar without the registry
    /// (docker.io/library/nginx:1.27 -> DEST/library/nginx:1.27)
    #[arg(value_name = "DEST")]
    pub dest: String,

    /// Push the tar's only image as DEST/REPOSITORY:TAG instead (TAG defaults to latest)
    #[arg(long = "as", value_name = "REPOSITORY[:TAG]")]
    pub as_name: Option<String>,

    /// For a multi-platform image: push only this platform's manifest, tagged (the index
    /// is not kept). Needed when the tar holds only some of the index's platforms, as
    /// `docker save` from the containerd image store writes an image pulled for one
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<crate::platform::Platform>,

    /// For a patch delta: rebuild its layers from this earlier bundle (a tar or parts set)
    /// before pushing, and take from it the layers the delta left out, so that the
    /// destination need not hold them; repeatable [default: from the layers the destination
    /// holds, where the earlier bundle was pushed]
    #[arg(long = "from", value_name = "PREV")]
    pub from: Vec<std::path::PathBuf>,

    /// For a patch delta whose layers rebuild by content only: push them uncompressed, under
    /// new manifest digests (the image IDs are kept; signatures of the old digests no longer
    /// match)
    #[arg(long)]
    pub new_digests: bool,

    #[command(flatten)]
    pub transfers: TransferArgs,

    #[command(flatten)]
    pub login: LoginArgs,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// SOURCE DEST: one image (NAME[:TAG][@DIGEST]) to REGISTRY/REPOSITORY[:TAG] (without a
    /// tag: the source's; by digest only when the source names a digest alone). SOURCE...
    /// DEST, or -f LIST DEST: each image to DEST/<repository>:<tag>, DEST being
    /// REGISTRY[/PREFIX]
    #[arg(value_name = "SOURCE... DEST", required = true, num_args = 1..)]
    pub paths: Vec<String>,

    /// Read sources from LIST too, one per line (as for export); - for standard input
    #[arg(short = 'f', long = "file", value_name = "LIST")]
    pub file: Vec<String>,

    /// Platform to take from a multi-platform image: OS/ARCH[/VARIANT] [default: this
    /// machine's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

    /// Copy every platform and the index itself (its digest is kept)
    #[arg(long, conflicts_with = "platform")]
    pub all_platforms: bool,

    /// Use only the cache for the source: no download. Tags resolve to what they last
    /// resolved to here
    #[arg(long)]
    pub offline: bool,

    #[command(flatten)]
    pub signatures: SignatureArgs,

    #[command(flatten)]
    pub transfers: TransferArgs,

    #[command(flatten)]
    pub login: LoginArgs,
}

/// Signatures every image must carry, and what travels with the images, for export, pull
/// and copy.
#[derive(Debug, Args)]
pub struct SignatureArgs {
    /// Also take what refers to each image (cosign signatures, attestations, SBOMs, OCI 1.1
    /// referrers), and what refers to those, wherever the images go: the cache, a tar (in
    /// the docker formats in blobs/ only, so docker load sees the same images), a registry
    #[arg(long)]
    pub referrers: bool,

    /// Refuse images without a cosign signature by this public key (PEM: ECDSA P-256,
    /// Ed25519 or RSA, as cosign.pub); repeatable, any one suffices (or a keyless signature
    /// that passes --certificate-identity)
    #[arg(long = "verify-key", value_name = "FILE")]
    pub verify_key: Vec<std::path::PathBuf>,

    #[command(flatten)]
    pub keyless: KeylessArgs,
}

/// Keyless signatures (a Fulcio certificate and a Rekor entry), checked offline, with the
/// names cosign gives these options.
#[derive(Debug, Args, Default)]
pub struct KeylessArgs {
    /// Require a keyless signature by this identity (the certificate's e-mail or URI,
    /// exactly): every image must carry one; needs --certificate-oidc-issuer
    #[arg(
        long,
        value_name = "IDENTITY",
        conflicts_with = "certificate_identity_regexp"
    )]
    pub certificate_identity: Option<String>,

    /// As --certificate-identity, a regular expression found anywhere in the identity (as
    /// cosign's); anchor it (^…$) to match it whole
    #[arg(long, value_name = "REGEX")]
    pub certificate_identity_regexp: Option<String>,

    /// The OIDC issuer that vouched for the identity, exactly (e.g.
    /// https://token.actions.githubusercontent.com)
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "certificate_oidc_issuer_regexp"
    )]
    pub certificate_oidc_issuer: Option<String>,

    /// As --certificate-oidc-issuer, a regular expression found anywhere in it
    #[arg(long, value_name = "REGEX")]
    pub certificate_oidc_issuer_regexp: Option<String>,

    /// sigstore's trusted_root.json to check keyless signatures against (Fulcio CAs, Rekor,
    /// CT and timestamp keys) [default: the tar's own, else sigstore's public-good root that
    /// haul ships]. An export with --referrers carries it in the tar
    #[arg(long, value_name = "FILE")]
    pub trusted_root: Option<std::path::PathBuf>,

    /// Demand an attestation of this predicate type (e.g. https://slsa.dev/provenance/v1),
    /// signed as the key or identity options say, instead of a signature
    #[arg(long, value_name = "URI")]
    pub predicate_type: Option<String>,
}

/// How many transfers run at once, for push and copy.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Transfers (downloads and uploads) at once
    #[arg(short, long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the cached images (reference, platform, manifest) and blobs, with sizes and last use
    #[command(after_help = LS_EXAMPLES)]
    Ls,
    /// Show how much space the cache takes
    #[command(after_help = DU_EXAMPLES)]
    Du,
    /// Re-hash every blob; move damaged ones aside (to quarantine/) and report them
    #[command(after_help = CACHE_VERIFY_EXAMPLES)]
    Verify,
    /// Remove blobs: least recently used first down to --max-size, and/or those unused for
    /// --older-than. Waits for running exports, whose blobs are never removed
    #[command(after_help = PRUNE_EXAMPLES)]
    Prune(PruneArgs),
    /// Forget an image and remove the blobs no other cached image uses
    #[command(after_help = RM_EXAMPLES)]
    Rm {
        /// Image references as given to export or pull
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct PruneArgs {
    /// Remove least recently used blobs until the cache is at most this big: 500M, 20G
    #[arg(long, value_name = "SIZE", value_parser = crate::units::parse_size)]
    pub max_size: Option<u64>,

    /// Remove blobs (and partial downloads) not used for this long: 45m, 12h, 30d, 2w
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<std::time::Duration>,

    /// Remove everything
    #[arg(long)]
    pub all: bool,
}

/// What selects images, shared by export, pull and inspect.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Image references: NAME[:TAG][@DIGEST], e.g. busybox, ghcr.io/org/app:1.2,
    /// host:5000/app@sha256:…
    #[arg(required_unless_present = "file", value_name = "REF")]
    pub references: Vec<String>,

    /// Read references from LIST too, one per line (# comments, blank lines ignored; a lock
    /// file from `haul lock` is one); - for standard input; repeatable. The same image twice
    /// is taken once
    #[arg(short = 'f', long = "file", value_name = "LIST")]
    pub file: Vec<String>,

    /// Platform to take from multi-platform images: OS/ARCH[/VARIANT]; repeatable, or
    /// comma-separated [default: this machine's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_delimiter = ',')]
    pub platform: Vec<String>,

    /// Take every platform of multi-platform images (the whole index)
    #[arg(long, conflicts_with = "platform")]
    pub all_platforms: bool,

    /// Use only the cache: no network. Tags resolve to what they last resolved to here
    #[arg(long)]
    pub offline: bool,

    #[command(flatten)]
    pub login: LoginArgs,
}

/// How blobs are downloaded, shared by export and pull.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Downloads at once
    #[arg(short, long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub images: ImageArgs,

    #[command(flatten)]
    pub downloads: DownloadArgs,

    /// Pull every image that can be, then list those that could not (exit status 1)
    #[arg(long)]
    pub keep_going: bool,

    #[command(flatten)]
    pub signatures: SignatureArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub images: ImageArgs,

    #[command(flatten)]
    pub downloads: DownloadArgs,

    /// Output file, - for standard output, or an existing folder to write the default name
    /// into [default for one image: <registry>_<repository>_<tag>_<arch>.tar in the current
    /// folder]. Several platforms in one tar (repeated --platform, --all-platforms) need
    /// --format oci
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<String>,

    /// Stream the tar into the local Docker engine (`docker load`, honouring DOCKER_HOST)
    /// instead of writing a file
    #[arg(long, conflicts_with = "output")]
    pub load: bool,

    /// Stream the tar into `docker load` on another host through the system's ssh:
    /// ssh://[USER@]HOST[:PORT] (HAUL_SSH_COMMAND replaces `ssh`, e.g. to add -i KEY); not on
    /// Windows
    #[arg(long, value_name = "ssh://[USER@]HOST[:PORT]", conflicts_with_all = ["output", "load"])]
    pub to: Option<String>,

    /// Layout of the tar
    #[arg(long, value_enum, default_value_t = Format::Docker)]
    pub format: Format,

    /// Store layers uncompressed, as `docker save` does (each checked against the config's
    /// diff_id and kept in the cache): for loaders that cannot read zstd (Docker before 23)
    #[arg(long)]
    pub decompress: bool,

    /// A bundle delivered before (a tar, or its receipt); repeatable. The tar becomes a
    /// delta: it leaves out the layers the destination holds from those bundles, and keeps
    /// every image's full layer list, manifests and configs
    #[arg(long, value_name = "PREV")]
    pub since: Vec<std::path::PathBuf>,

    /// With --since: a layer the destination lacks may travel as a patch against the layer
    /// at its place in the earlier image (its files compared, then its bytes), whichever is
    /// smaller; `haul load DELTA` and `haul rebuild DELTA --from PREV` rebuild it. With --load
    /// or --to, it is rebuilt where the engine is (over ssh, by `haul load -` there)
    #[arg(long, requires = "since")]
    pub patch: bool,

    /// With --load or --to: send every layer, without asking the engine what it holds
    #[arg(long)]
    pub full: bool,

    /// Also write the bundle's receipt (a small JSON file) to FILE: what a later
    /// `--since FILE` needs, in place of the tar
    #[arg(long, value_name = "FILE")]
    pub receipt: Option<std::path::PathBuf>,

    /// Write the bundle as parts of at most SIZE bytes (FILE.001, FILE.002, …, joined in
    /// order they are the tar), with FILE.sha256 (for `sha256sum -c`) and FILE.parts beside
    /// them. SIZE: a number with K, M or G, or a medium: cd, dvd, dvd-dl, bd25, fat32
    #[arg(long, value_name = "SIZE", value_parser = crate::parts::parse_split_size,
          conflicts_with_all = ["load", "to"])]
    pub split: Option<u64>,

    /// With --split: also write N recovery parts (FILE.r01, …); any N parts, data or
    /// recovery, may then be lost or damaged and `haul repair` rebuilds them
    #[arg(long, value_name = "N", requires = "split", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub parity: Option<u16>,

    /// Write nothing: say what the export would write (bytes per image, new and left out),
    /// and with --split in how many parts
    #[arg(long, conflicts_with_all = ["load", "to", "receipt"])]
    pub dry_run: bool,

    #[command(flatten)]
    pub signatures: SignatureArgs,
}

/// The tar layouts `export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// What `docker save` writes since Docker 25: blobs/, manifest.json and index.json; every
    /// Docker, podman, containerd and skopeo reads it
    Docker,
    /// The classic layout of `docker save` before Docker 25: <id>/layer.tar (uncompressed),
    /// <id>/json, <id>/VERSION, <config>.json, manifest.json, repositories
    #[value(name = "docker-v1")]
    DockerV1,
    /// An OCI image layout only: blobs/, index.json, oci-layout
    Oci,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub images: ImageArgs,

    /// Print one JSON document (an array, one object per reference) instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The tar to check, or - to read it from standard input
    #[arg(value_name = "FILE")]
    pub tar: String,

    /// Print the report as JSON on standard output (also when the tar is not whole)
    #[arg(long)]
    pub json: bool,

    /// Write the tar's receipt (for `haul export --since`) to FILE, when the tar is whole
    #[arg(long, value_name = "FILE")]
    pub receipt: Option<std::path::PathBuf>,

    /// Also require every image to carry a cosign signature by this public key, among what
    /// the tar carries (`export --referrers`); repeatable, any one suffices. Offline
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<std::path::PathBuf>,

    #[command(flatten)]
    pub keyless: KeylessArgs,

    /// Check keyless signatures against the trusted root the tar carries, if its SHA-256 is
    /// this (printed when it was exported): a root carried beside what it vouches for proves
    /// nothing unless it is pinned
    #[arg(long, value_name = "sha256:HEX")]
    pub trusted_root_digest: Option<crate::digest::Digest>,
}

#[derive(Debug, Args)]
pub struct VerifyBlobArgs {
    /// The file the bundle signs, or sha256:<hex>, the digest of a file not at hand
    #[arg(value_name = "FILE")]
    pub file: String,

    /// Its sigstore bundle (FILE.sigstore.json), as `cosign sign-blob --bundle` and GitHub's
    /// attest actions write it
    #[arg(long, value_name = "BUNDLE")]
    pub bundle: std::path::PathBuf,

    /// A public key the bundle is signed with (PEM), instead of a keyless identity
    #[arg(long, value_name = "FILE", conflicts_with_all = ["certificate_identity", "certificate_identity_regexp"])]
    pub key: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub keyless: KeylessArgs,
}

/// How progress is shown on standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars when standard error is a terminal, plain lines otherwise
    Auto,
    /// Progress bars, even when standard error does not look like a terminal
    Bars,
    /// One line per finished step (resolved, downloaded, cached, written)
    Plain,
    /// One JSON object per line, for CI and other programs
    Json,
    /// Nothing (errors and warnings still show)
    None,
}

/// Credentials given on the command line (else docker's config.json is used).
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name for the registries of this run (with --password-stdin or --password-file)
    #[arg(short, long, requires = "password")]
    pub username: Option<String>,

    /// Read the password (or token) from standard input
    #[arg(long, requires = "username", group = "password")]
    pub password_stdin: bool,

    /// Read the password (or token) from FILE (its first line), e.g. when standard input
    /// carries the tar
    #[arg(long, requires = "username", group = "password", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{text:?} is not a duration: use a number and s, m, h, d or w, e.g. 30d")]
    NotADuration { text: String },
    #[error("{text:?} is out of range")]
    OutOfRange { text: String },
}

/// `90s`, `45m`, `12h`, `30d`, `2w`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, DurationError> {
    let trimmed = text.trim();
    let bad = || DurationError::NotADuration {
        text: text.to_string(),
    };
    let (number, unit) = trimmed.split_at(trimmed.len().saturating_sub(1));
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    number
        .checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| DurationError::OutOfRange {
            text: text.to_string(),
        })
}

/// Exit codes, as `haul --help` and the README list them. A failure of any kind is 1 (a
/// damaged cache found by `cache verify`, an image or platform that is not there, …): the
/// message says which.
pub const EXIT_SUCCESS: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("90s"),
            Ok(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("30d"),
            Ok(std::time::Duration::from_secs(30 * 86_400))
        );
        for bad in ["30", "d", "-1d"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::NotADuration { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_duration("99999999999999999w"),
            Err(DurationError::OutOfRange { .. })
        ));
    }

    /// `--help` of `haul` and of every subcommand ends with examples of it.
    #[test]
    fn every_help_has_examples() {
        use clap::CommandFactory;
        fn check(command: &clap::Command, path: &str) {
            let after_help = command
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                after_help.contains("Examples:\n"),
                "`{path} --help` has no examples"
            );
            if path != command.get_name() {
                assert!(
                    after_help
                        .lines()
                        .any(|line| line.trim_start().starts_with(path)),
                    "`{path} --help` has no example of itself:\n{after_help}"
                );
            }
            for subcommand in command.get_subcommands() {
                check(subcommand, &format!("{path} {}", subcommand.get_name()));
            }
        }
        check(&Cli::command(), "haul");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// `haul --help` lists every exit code this module returns, and clap's usage code is ours.
    #[test]
    fn help_lists_the_exit_codes() {
        use clap::CommandFactory;
        let help = Cli::command()
            .get_after_help()
            .map(ToString::to_string)
            .unwrap_or_default();
        let section = &help[help.find("Exit status:").expect("an exit status section")..];
        for code in [EXIT_SUCCESS, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED] {
            assert!(
                section
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{code} "))),
                "exit code {code} is not in `haul --help`:\n{section}"
            );
        }
        use clap::Parser;
        let usage_error = Cli::try_parse_from(["haul", "--no-such-option"]).unwrap_err();
        assert_eq!(usage_error.exit_code(), i32::from(EXIT_USAGE));
        let help_request = Cli::try_parse_from(["haul", "--help"]).unwrap_err();
        assert_eq!(help_request.exit_code(), i32::from(EXIT_SUCCESS));
    }
}
