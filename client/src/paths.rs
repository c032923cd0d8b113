//! Where the sidecar's sockets are, found the same way by clients (Rust and
//! C), `distlogd run` and every `distlogd` subcommand.
//!
//! 1. `DISTLOG_SOCKET`, if set and not empty;
//! 2. else `$XDG_RUNTIME_DIR/distlog/distlogd.sock`, if `XDG_RUNTIME_DIR` is set;
//! 3. else `/run/distlog/distlogd.sock`.
//!
//! The control socket sits beside it: `distlogd.sock` → `distlogd.ctl.sock`.

use std::path::{Path, PathBuf};

/// Environment variable naming the data socket.
pub const SOCKET_ENV: &str = "DISTLOG_SOCKET";
/// File name of the data socket in the default directories.
pub const SOCKET_NAME: &str = "distlogd.sock";

/// The data socket path, from the environment or the default.
pub fn default_socket() -> PathBuf {
    if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return Path::new(&d).join("distlog").join(SOCKET_NAME);
    }
    PathBuf::from("/run/distlog").join(SOCKET_NAME)
}

/// The control socket beside a data socket: `x.sock` → `x.ctl.sock`
/// (`x` → `x.ctl` when there is no `.sock` suffix).
pub fn ctl_socket_for(data: &Path) -> PathBuf {
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ctl = match name.strip_suffix(".sock") {
        Some(stem) => format!("{stem}.ctl.sock"),
        None => format!("{name}.ctl"),
    };
    data.with_file_name(ctl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_name() {
        assert_eq!(
            ctl_socket_for(Path::new("/a/distlogd.sock")),
            Path::new("/a/distlogd.ctl.sock")
        );
        assert_eq!(ctl_socket_for(Path::new("/a/s")), Path::new("/a/s.ctl"));
    }
}
