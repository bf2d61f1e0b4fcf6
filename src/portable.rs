//! What differs between the operating systems haul runs on (Linux, macOS, Windows), kept in
//! one place so that the rest of the code has one path: positioned reads, the signals that
//! stop a run, and the folders a user's cache and configuration live in.

use std::fs::File;
use std::io;
use std::path::PathBuf;

/// Reads into `buffer` from `offset` of `file`, as `pread` does; returns how many bytes were
/// read (0 at the end). On Windows the file's cursor moves (`seek_read`): callers never rely
/// on it.
pub fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buffer, offset)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(file, buffer, offset)
    }
}

/// Fills `buffer` from `offset` of `file`; an end of file before it is full is an error.
pub fn read_exact_at(file: &File, mut buffer: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buffer.is_empty() {
        match read_at(file, buffer, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ended before the bytes to read",
                ));
            }
            Ok(n) => {
                buffer = &mut buffer[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits for what asks a run to stop: Ctrl-C, and SIGTERM on Unix (a service manager, `kill`,
/// a CI runner's timeout); on Windows, the console window closing or the system shutting
/// down.
pub async fn stop_requested() {
    #[cfg(unix)]
    let other = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(windows)]
    let other = async {
        use tokio::signal::windows::{ctrl_close, ctrl_shutdown};
        match (ctrl_close(), ctrl_shutdown()) {
            (Ok(mut close), Ok(mut shutdown)) => {
                tokio::select! {
                    _ = close.recv() => {}
                    _ = shutdown.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = other => {}
    }
}

/// The variable `name` when it is set and not empty.
fn var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The folder haul's cache lives in: `$XDG_CACHE_HOME/haul`, else `~/.cache/haul`; on Windows
/// `%LOCALAPPDATA%\haul\cache` (machine-local, not roamed). `None` when no variable says.
pub fn cache_home() -> Option<PathBuf> {
    if cfg!(windows) {
        return var("LOCALAPPDATA").map(|d| d.join("haul").join("cache"));
    }
    var("XDG_CACHE_HOME")
        .map(|d| d.join("haul"))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("haul")))
}

/// The configuration file: `$XDG_CONFIG_HOME/haul/config.toml`, else
/// `~/.config/haul/config.toml`; on Windows `%APPDATA%\haul\config.toml`.
pub fn config_file() -> Option<PathBuf> {
    let base = if cfg!(windows) {
        var("APPDATA")
    } else {
        var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config")))
    }?;
    Some(base.join("haul").join("config.toml"))
}

/// What the variables that name the cache folder are called here, for the error that says
/// none was set.
pub const CACHE_HOME_VARIABLES: &str = if cfg!(windows) {
    "LOCALAPPDATA is not set"
} else {
    "neither XDG_CACHE_HOME nor HOME is set"
};
