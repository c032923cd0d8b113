//! C and C++ programs compiled against `include/distlog.h` and the built
//! library (shared and static), run without a sidecar: they compile with
//! `-Wall -Werror`, misuse is survived, the struct layouts agree, and one
//! program runs under AddressSanitizer.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use distlog_ffi::{
    distlog_callsite, distlog_event_callsite, distlog_field, distlog_kv, distlog_value,
};

const LIMIT: Duration = Duration::from_secs(60);

fn run_misuse(exe: &std::path::Path, dir: &std::path::Path) -> String {
    let mut cmd = c_command(exe);
    cmd.env("DISTLOG_SOCKET", no_sidecar(dir))
        .env_remove("DISTLOG_LOG")
        .env_remove("RUST_LOG");
    let out = success(&run(cmd, LIMIT));
    assert!(out.contains("MISUSE OK"), "{out}");
    out
}

#[test]
fn misuse_is_survived_shared() {
    let dir = out_dir("misuse-shared");
    let exe = dir.join("misuse");
    compile(
        "cc",
        &["-Wall", "-Wextra", "-Werror", "-std=c11"],
        &c_dir().join("misuse.c"),
        &exe,
        Link::Shared,
    );
    run_misuse(&exe, &dir);
}

#[test]
fn misuse_is_survived_static() {
    let dir = out_dir("misuse-static");
    let exe = dir.join("misuse");
    compile(
        "cc",
        &["-Wall", "-Wextra", "-Werror", "-std=c11"],
        &c_dir().join("misuse.c"),
        &exe,
        Link::Static,
    );
    run_misuse(&exe, &dir);
}

#[test]
fn demo_compiles_pedantic_shared_and_static() {
    let dir = out_dir("demo-build");
    for link in [Link::Shared, Link::Static] {
        let exe = dir.join(format!("demo-{link:?}"));
        compile("cc", STRICT_C11, &c_dir().join("demo.c"), &exe, link);
        // Without a sidecar it still runs to the end.
        let mut cmd = c_command(&exe);
        cmd.env("DISTLOG_SOCKET", no_sidecar(&dir));
        let out = success(&run(cmd, LIMIT));
        assert!(out.contains("DONE"), "{out}");
    }
}

#[test]
fn cpp_includes_the_header() {
    let dir = out_dir("cpp");
    // -O2 too: the header's inline event writer is compiled with the
    // optimiser's constants only there. clang++ too (see `has_clang`).
    let mut compilers = vec!["c++"];
    if has_clang() {
        compilers.push("clang++");
    }
    for (cxx, opt) in compilers
        .iter()
        .flat_map(|c| ["-O0", "-O2"].map(|o| (*c, o)))
    {
        let exe = dir.join(format!("smoke-{cxx}{opt}"));
        compile(
            cxx,
            &["-Wall", "-Wextra", "-Werror", "-std=c++17", opt],
            &c_dir().join("smoke.cpp"),
            &exe,
            Link::Shared,
        );
        let mut cmd = c_command(&exe);
        cmd.env("DISTLOG_SOCKET", no_sidecar(&dir));
        let out = success(&run(cmd, LIMIT));
        assert!(out.starts_with("CPP OK 00-"), "{out}");
    }
}

#[test]
fn struct_layouts_match() {
    use std::mem::{align_of, offset_of, size_of};
    let dir = out_dir("layout");
    let exe = dir.join("layout");
    compile(
        "cc",
        &["-Wall", "-Werror", "-std=c11"],
        &c_dir().join("layout.c"),
        &exe,
        Link::Shared,
    );
    let out = success(&run(c_command(&exe), LIMIT));
    let want = format!(
        "field {} {} {} {} {}\nvalue {} {}\ncallsite {} {} 0 4 {} {} {} {} {} {}\nevent_callsite {} {} 0 {}\nkv {} {} {} {} {} {}\nenums 4 4 4 4\n",
        size_of::<distlog_field>(),
        align_of::<distlog_field>(),
        offset_of!(distlog_field, key),
        offset_of!(distlog_field, r#type),
        offset_of!(distlog_field, value),
        size_of::<distlog_value>(),
        align_of::<distlog_value>(),
        size_of::<distlog_callsite>(),
        align_of::<distlog_callsite>(),
        offset_of!(distlog_callsite, level),
        offset_of!(distlog_callsite, flags),
        offset_of!(distlog_callsite, line),
        offset_of!(distlog_callsite, target),
        offset_of!(distlog_callsite, message),
        offset_of!(distlog_callsite, file),
        size_of::<distlog_event_callsite>(),
        align_of::<distlog_event_callsite>(),
        size_of::<distlog_callsite>(),
        size_of::<distlog_kv>(),
        align_of::<distlog_kv>(),
        offset_of!(distlog_kv, key),
        offset_of!(distlog_kv, r#type),
        offset_of!(distlog_kv, len),
        offset_of!(distlog_kv, value),
    );
    let list = |name: &str, v: &[usize]| {
        let v: Vec<String> = v.iter().map(usize::to_string).collect();
        format!("{name} {}\n", v.join(" "))
    };
    let inline = list("window", &distlog::raw::C_WINDOW_LAYOUT)
        + &list("top", &distlog::raw::C_TOP_LAYOUT)
        + &list(
            "cursor",
            &[
                size_of::<distlog::ring::Cursor>(),
                align_of::<distlog::ring::Cursor>(),
                offset_of!(distlog::ring::Cursor, pos),
                offset_of!(distlog::ring::Cursor, limit),
            ],
        );
    let want = want.replace("enums ", &format!("{inline}enums "));
    assert_eq!(out, want);
}

/// Whether `cc` can build and run a program with `-fsanitize=address`.
fn asan_works(dir: &std::path::Path) -> Result<(), String> {
    let src = dir.join("probe.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let exe = dir.join("probe");
    let o = Command::new("cc")
        .args(["-fsanitize=address", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let r = c_command(&exe).output().map_err(|e| e.to_string())?;
    if !r.status.success() {
        return Err(format!(
            "an ASan program does not run here: {}",
            String::from_utf8_lossy(&r.stderr)
        ));
    }
    Ok(())
}

#[test]
fn misuse_under_address_sanitizer() {
    let dir = out_dir("asan");
    if let Err(why) = asan_works(&dir) {
        eprintln!("SKIPPED misuse_under_address_sanitizer: cc -fsanitize=address unusable: {why}");
        return;
    }
    for (name, link) in [
        ("misuse-asan-shared", Link::Shared),
        ("misuse-asan-static", Link::Static),
    ] {
        let exe = dir.join(name);
        compile(
            "cc",
            &[
                "-Wall",
                "-Wextra",
                "-Werror",
                "-std=c11",
                "-g",
                "-fsanitize=address",
                "-fno-omit-frame-pointer",
            ],
            &c_dir().join("misuse.c"),
            &exe,
            link,
        );
        let mut cmd = c_command(&exe);
        cmd.env("DISTLOG_SOCKET", no_sidecar(&dir))
            .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0");
        let out = success(&run(cmd, LIMIT));
        assert!(out.contains("MISUSE OK"), "{out}");
    }
}

#[test]
fn examples_compile_pedantic() {
    // What a newcomer reads and `scripts/demo` builds: no warning either.
    let dir = out_dir("examples-build");
    for name in ["hello", "bank"] {
        compile(
            "cc",
            &["-Wall", "-Wextra", "-Werror", "-pedantic", "-std=c11"],
            &workspace().join(format!("examples/c/{name}.c")),
            &dir.join(name),
            Link::Shared,
        );
    }
}
