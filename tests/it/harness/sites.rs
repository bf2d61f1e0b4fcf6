//! The machines a site runs, and `make dist`'s binary for each, run there:
//! - [`Machine::Bullseye`]: the x86_64 binary in a Debian 11 minbase root (glibc 2.31, no
//!   ca-certificates), by chroot;
//! - [`Machine::Arm64`]: the aarch64 binary in a Debian 11 arm64 root, by chroot and Debian's
//!   qemu-aarch64-static;
//! - [`Machine::Windows`]: the Windows binary under Debian's wine64.
//!
//! scripts/install-site-roots.sh makes the roots and the wine prefix; `make dist` the binaries.
//! A site's work folder is a fresh folder inside its root (or anywhere, for wine), which the
//! host reads and writes too: the test checks what haul wrote there with the host's tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{COMMAND_TIMEOUT, Run, output_within};

/// Where scripts/install-site-roots.sh keeps the roots and the wine prefix.
pub const SITE_STATE: &str = "/var/lib/haul-test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    Bullseye,
    Arm64,
    Windows,
}

impl Machine {
    /// `make dist`'s binary for this machine.
    pub fn binary(self) -> PathBuf {
        let name = match self {
            Machine::Bullseye => "haul-x86_64-linux",
            Machine::Arm64 => "haul-aarch64-linux",
            Machine::Windows => "haul-x86_64-windows.exe",
        };
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("dist")
            .join(name);
        assert!(
            path.is_file(),
            "{} is missing: run `make test` (or `make dist`), which builds it",
            path.display()
        );
        path
    }

    /// The root its programs run in (None: the host's, for wine).
    pub fn root(self) -> Option<PathBuf> {
        let name = match self {
            Machine::Bullseye => "bullseye-amd64",
            Machine::Arm64 => "bullseye-arm64",
            Machine::Windows => return None,
        };
        let root = Path::new(SITE_STATE).join("roots").join(name);
        assert!(
            root.join(".haul-root").exists(),
            "{} is missing: run `make test` (or scripts/install-site-roots.sh), which makes it",
            root.display()
        );
        Some(root)
    }
}

/// One test's haul on one machine: its own copy of the binary and work folder (and cache).
pub struct Site {
    pub machine: Machine,
    /// The work folder, as the host sees it.
    pub dir: tempfile::TempDir,
    /// The work folder, as the machine sees it.
    inside: String,
}

impl Site {
    #[track_caller]
    pub fn new(machine: Machine) -> Site {
        let dir = match machine.root() {
            Some(root) => tempfile::Builder::new()
                .prefix("haul-site-")
                .tempdir_in(root.join("tmp"))
                .unwrap(),
            None => tempfile::Builder::new()
                .prefix("haul-site-")
                .tempdir()
                .unwrap(),
        };
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let inside = match machine {
            Machine::Bullseye | Machine::Arm64 => format!("/tmp/{name}"),
            // wine maps the host's / to drive Z:.
            Machine::Windows => format!("Z:{}", dir.path().display()).replace('/', "\\"),
        };
        let binary = dir.path().join(match machine {
            Machine::Windows => "haul.exe",
            _ => "haul",
        });
        std::fs::copy(machine.binary(), &binary).unwrap();
        Site {
            machine,
            dir,
            inside,
        }
    }

    /// `name` in the work folder as the machine names it (`/tmp/haul-site-…/name`,
    /// `Z:\tmp\haul-site-…\name`).
    pub fn at(&self, name: &str) -> String {
        match self.machine {
            Machine::Windows => format!("{}\\{}", self.inside, name.replace('/', "\\")),
            _ => format!("{}/{name}", self.inside),
        }
    }

    /// `name` in the work folder as the host sees it.
    pub fn host_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// haul `args…` on the machine, with no configuration or credentials of the host's; on
    /// Linux with the work folder's cache, on Windows with the default one (in wine's prefix).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = match self.machine {
            Machine::Bullseye => {
                let mut c = Command::new("chroot");
                c.arg(self.machine.root().unwrap()).arg(self.at("haul"));
                c
            }
            Machine::Arm64 => {
                let mut c = Command::new("chroot");
                c.arg(self.machine.root().unwrap())
                    .arg("/usr/bin/qemu-aarch64-static")
                    .arg(self.at("haul"));
                c
            }
            Machine::Windows => {
                let mut c = Command::new("/usr/lib/wine/wine64");
                c.arg(self.host_path("haul.exe"));
                c
            }
        };
        command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        match self.machine {
            Machine::Windows => {
                command
                    .env("WINEPREFIX", Path::new(SITE_STATE).join("wine"))
                    .env("WINEDEBUG", "-all")
                    .current_dir(self.dir.path());
            }
            _ => {
                command
                    .env("HOME", self.at("home"))
                    .arg("--cache-dir")
                    .arg(self.at("cache"));
            }
        }
        command.args(args);
        command
    }

    /// Where haul keeps its cache on Windows when not told (`%LOCALAPPDATA%\\haul\\cache`): wine
    /// sets LOCALAPPDATA to its prefix's user profile, whatever the environment says.
    pub fn windows_default_cache() -> PathBuf {
        Path::new(SITE_STATE).join("wine/drive_c/users/root/AppData/Local/haul/cache")
    }

    /// Runs haul `args…` there.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(output_within(
            &mut self.command(args),
            None,
            COMMAND_TIMEOUT,
        ))
    }
}
