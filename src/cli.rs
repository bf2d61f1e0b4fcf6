//! The command line, as clap types only. Help texts come from the doc comments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  haul export busybox                              # -> docker.io_library_busybox_latest_amd64.tar
  haul export nginx:1.27 -o nginx.tar --platform linux/arm64
  haul export app:v1 app:v2 -o bundle.tar          # several images in one tar
  haul export 127.0.0.1:5000/team/app:1 -o - | docker load";

/// Pull container images from any OCI / Docker registry, without a Docker daemon, into
/// tarballs that `docker load` accepts. Every blob is verified and cached, so the next
/// export downloads only what is new.
#[derive(Debug, Parser)]
#[command(name = "haul", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Cache folder [default: $XDG_CACHE_HOME/haul or ~/.cache/haul]
    #[arg(long, global = true, env = "HAUL_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Talk plain HTTP to this registry (host or host:port); repeatable. Loopback
    /// registries (localhost, 127.0.0.0/8, [::1]) need no flag.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub insecure_registries: Vec<String>,

    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Log more (-v: debug, -vv: trace); RUST_LOG works too
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download images and write them as one tar that docker load accepts
    #[command(after_help = EXAMPLES)]
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Image references: NAME[:TAG][@DIGEST], e.g. busybox, ghcr.io/org/app:1.2,
    /// host:5000/app@sha256:…
    #[arg(required = true, value_name = "REF")]
    pub references: Vec<String>,

    /// Output file, or - for standard output [default for one image:
    /// <registry>_<repository>_<tag>_<arch>.tar in the current folder]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<String>,

    /// Platform to take from multi-platform images: OS/ARCH[/VARIANT] [default: this machine's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

    /// Downloads at once
    #[arg(short, long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    #[command(flatten)]
    pub login: LoginArgs,
}

/// Credentials given on the command line (else docker's config.json is used).
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name for the registries of this run
    #[arg(short, long, requires = "password_stdin")]
    pub username: Option<String>,

    /// Read the password (or token) from standard input
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}
