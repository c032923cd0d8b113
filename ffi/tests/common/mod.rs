//! Helpers of the C tests: where the built library is, compiling C/C++
//! with the system compiler, running with a watchdog.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `target/<profile>` (the test binary lives in its `deps/`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The newest of `target/<profile>/<name>` and `target/<profile>/deps/<name>`:
/// `cargo test` rebuilds the cdylib and staticlib in `deps/` without
/// copying them up, `cargo build` copies them up.
fn newest(name: &str) -> PathBuf {
    let cands = [
        profile_dir().join(name),
        profile_dir().join("deps").join(name),
    ];
    cands
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!(
                "{name} not built in {} (nor deps/)",
                profile_dir().display()
            )
        })
}

/// A directory holding the current `libdistlog_ffi.so` and `.a` (hard
/// links where possible), one per test binary.
pub fn lib_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let stem = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("ffi-tests")
            .join(format!("lib-{stem}"));
        std::fs::create_dir_all(&d).unwrap();
        for name in ["libdistlog_ffi.so", "libdistlog_ffi.a"] {
            let (from, to) = (newest(name), d.join(name));
            let _ = std::fs::remove_file(&to);
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).unwrap();
            }
        }
        d
    })
    .clone()
}

pub fn include_dir() -> PathBuf {
    workspace().join("include")
}

pub fn c_dir() -> PathBuf {
    workspace().join("ffi/tests/c")
}

/// A fresh directory for this test's outputs.
pub fn out_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("ffi-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The extra system libraries the static library needs (from
/// `cargo rustc -p distlog-ffi --crate-type staticlib -- --print
/// native-static-libs`, documented in the header).
pub const STATIC_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// How to link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// `-ldistlog_ffi` against the `.so`, with an rpath.
    Shared,
    /// `libdistlog_ffi.a` and [`STATIC_LIBS`].
    Static,
}

/// Compile `src` (C or C++ by `compiler`) with `flags` into `out`,
/// panicking with the compiler's output on failure.
/// The strict C11 flags the tests' C programs are built with.
pub const STRICT_C11: &[&str] = &[
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-std=c11",
    "-pthread",
];

pub fn compile(compiler: &str, flags: &[&str], src: &Path, out: &Path, link: Link) {
    let lib = lib_dir();
    let mut cmd = Command::new(compiler);
    cmd.args(flags)
        .arg("-I")
        .arg(include_dir())
        .arg(src)
        .arg("-o")
        .arg(out);
    match link {
        Link::Shared => {
            cmd.arg(format!("-L{}", lib.display()))
                .arg("-ldistlog_ffi")
                .arg(format!("-Wl,-rpath,{}", lib.display()))
                .arg("-lpthread");
        }
        Link::Static => {
            cmd.arg(lib.join("libdistlog_ffi.a")).args(STATIC_LIBS);
        }
    }
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A command running the compiled C program `exe` against the library of
/// [`lib_dir`]. `cargo test` puts `target/<profile>` (with a possibly older
/// `libdistlog_ffi.so`) on `LD_LIBRARY_PATH`, which would win over the
/// program's rpath: point it at our copy.
pub fn c_command(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env("LD_LIBRARY_PATH", lib_dir());
    cmd
}

/// Run `cmd` to its end, killing it after `limit` (a watchdog, not a
/// timing assertion).
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not finish within {limit:?}:\n{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Assert a run succeeded, showing its output otherwise; returns stdout.
pub fn success(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{out}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A socket path no sidecar listens on.
pub fn no_sidecar(dir: &Path) -> PathBuf {
    dir.join("nobody.sock")
}

/// Whether clang runs here. Without it the clang builds are not tested
/// (said on stderr), unless `DISTLOG_REQUIRE_CLANG` is set
/// (`scripts/test`, after `scripts/install-deps` installed clang): then
/// its absence fails the test.
pub fn has_clang() -> bool {
    let ok = Command::new("clang")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("DISTLOG_REQUIRE_CLANG").is_none(),
            "DISTLOG_REQUIRE_CLANG is set and clang does not run"
        );
        eprintln!("clang not found: the clang builds of the header are not tested");
    }
    ok
}
