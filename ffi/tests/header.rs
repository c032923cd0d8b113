//! `include/distlog.h` and the Rust exports cannot drift apart: this test
//! reads both as text and compares
//!
//! - every `#[no_mangle] pub [unsafe] extern "C" fn distlog_*` and
//!   `#[no_mangle] pub static distlog_*` in `ffi/src` with the function
//!   prototypes and `extern` variables of the header (names and parameter
//!   counts);
//! - every `#[repr(C)] pub enum distlog_*` with the header's `typedef enum`
//!   of that name (constant names and values), and the header's
//!   `distlog_level` / `distlog_outcome` with their Rust counterparts;
//! - the header's numeric `#define`s with the Rust constants.
//!
//! No tool is needed (no cbindgen): it runs wherever `cargo test` runs.

use std::collections::BTreeMap;
use std::path::Path;

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rust_sources() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Remove `/* */` and `//` comments.
fn strip_c_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
            out.push(' ');
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'"' {
            // Copy string literals whole (they may hold comment markers).
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str(&s[start..i.min(b.len())]);
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The header as a C compiler sees it (`__cplusplus` undefined): comments
/// and preprocessor lines removed, `#ifdef __cplusplus` branches dropped.
/// Returns (code, #define name → value text).
fn c_view(header: &str) -> (String, BTreeMap<String, String>) {
    let text = strip_c_comments(header).replace("\\\n", " ");
    let mut code = String::new();
    let mut defines = BTreeMap::new();
    // Stack of "is this branch live" for #if blocks.
    let mut live: Vec<bool> = Vec::new();
    let mut cpp: Vec<bool> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(d) = t.strip_prefix('#') {
            let d = d.trim();
            let word = d.split_whitespace().next().unwrap_or("");
            let rest = d[word.len()..].trim();
            match word {
                "if" | "ifdef" | "ifndef" => {
                    let is_cpp = rest == "__cplusplus";
                    cpp.push(is_cpp);
                    live.push(!(is_cpp && word == "ifdef"));
                }
                "else" => {
                    let c = *cpp.last().expect("#else without #if");
                    let l = live.last_mut().unwrap();
                    if c {
                        *l = !*l;
                    }
                }
                "endif" => {
                    live.pop().expect("#endif without #if");
                    cpp.pop();
                }
                "define" if live.iter().all(|l| *l) => {
                    let mut it = rest.splitn(2, char::is_whitespace);
                    let name = it.next().unwrap().to_owned();
                    defines.insert(name, it.next().unwrap_or("").trim().to_owned());
                }
                _ => {}
            }
            continue;
        }
        if live.iter().all(|l| *l) {
            code.push_str(line);
            code.push('\n');
        }
    }
    assert!(live.is_empty(), "unbalanced #if in the header");
    (code, defines)
}

/// Top-level declarations of C code: split at `;` outside braces; function
/// definitions (a `{...}` block not followed by `;`) are dropped.
fn declarations(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in code.chars() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let head = cur.trim_start();
                    if !head.starts_with("typedef")
                        && !head.starts_with("struct")
                        && !head.starts_with("union")
                        && !head.starts_with("enum")
                    {
                        // A function definition (static inline): skip it.
                        cur.clear();
                        continue;
                    }
                }
            }
            ';' if depth == 0 => {
                out.push(cur.split_whitespace().collect::<Vec<_>>().join(" "));
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    assert!(cur.trim().is_empty(), "trailing text in the header: {cur}");
    out
}

fn count_params(list: &str) -> usize {
    let l = list.trim();
    if l.is_empty() || l == "void" {
        0
    } else {
        l.split(',').count()
    }
}

/// The C API as the header declares it: functions (name → parameter
/// count), variables, enums (name → constants).
#[derive(Debug, Default, PartialEq)]
struct Api {
    functions: BTreeMap<String, usize>,
    variables: Vec<String>,
    enums: BTreeMap<String, BTreeMap<String, i64>>,
}

fn header_api(header: &str) -> (Api, BTreeMap<String, String>) {
    let (code, defines) = c_view(header);
    let mut api = Api::default();
    for d in declarations(&code) {
        if let Some(body) = d.strip_prefix("typedef enum ") {
            let name = body.split_whitespace().next().unwrap().to_owned();
            let inner = &body[body.find('{').unwrap() + 1..body.rfind('}').unwrap()];
            let mut consts = BTreeMap::new();
            let mut next = 0i64;
            for c in inner.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                let (k, v) = match c.split_once('=') {
                    Some((k, v)) => (k.trim(), v.trim().parse::<i64>().unwrap()),
                    None => (c, next),
                };
                consts.insert(k.to_owned(), v);
                next = v + 1;
            }
            api.enums.insert(name, consts);
        } else if d.starts_with("typedef") || d.is_empty() {
            continue;
        } else if let Some(open) = d.find('(') {
            let before = d[..open].trim_end();
            let name = before
                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap();
            assert!(d.ends_with(')'), "not a prototype: {d}");
            let params = &d[open + 1..d.len() - 1];
            if name.starts_with("distlog_") {
                api.functions.insert(name.to_owned(), count_params(params));
            }
        } else if d.starts_with("extern ") {
            let name = d
                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap();
            api.variables.push(name.to_owned());
        } else {
            panic!("unexpected declaration in the header: {d}");
        }
    }
    api.variables.sort();
    (api, defines)
}

/// The C API as the Rust source exports it.
fn rust_api(src: &str) -> Api {
    let mut api = Api::default();
    let mut rest = src;
    while let Some(at) = rest.find("#[no_mangle]") {
        rest = &rest[at + "#[no_mangle]".len()..];
        let item = rest.trim_start();
        let item = item
            .strip_prefix("pub ")
            .expect("a #[no_mangle] item is pub");
        if let Some(f) = item.strip_prefix("static ") {
            let name = f
                .split(|c: char| c == ':' || c.is_whitespace())
                .next()
                .unwrap();
            api.variables.push(name.to_owned());
            continue;
        }
        let f = item.strip_prefix("unsafe ").unwrap_or(item);
        let f = f
            .strip_prefix("extern \"C\" fn ")
            .unwrap_or_else(|| panic!("not an extern \"C\" fn: {f:.60}"));
        let name = &f[..f.find('(').unwrap()];
        // Parameters: up to the matching ')'.
        let mut depth = 0;
        let mut end = 0;
        for (i, c) in f.char_indices() {
            match c {
                '(' | '<' | '[' => depth += 1,
                ')' | '>' | ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let params = &f[name.len() + 1..end];
        let n = params.split(',').filter(|p| !p.trim().is_empty()).count();
        api.functions.insert(name.to_owned(), n);
    }
    // #[repr(C)] enums named distlog_*.
    let mut rest = src;
    while let Some(at) = rest.find("pub enum distlog_") {
        rest = &rest[at + "pub enum ".len()..];
        let name = rest
            .split(|c: char| c.is_whitespace() || c == '{')
            .next()
            .unwrap()
            .to_owned();
        let body = &rest[rest.find('{').unwrap() + 1..rest.find('}').unwrap()];
        let mut consts = BTreeMap::new();
        for line in body
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("//") && l.contains('='))
        {
            let (k, v) = line.trim_end_matches(',').split_once('=').unwrap();
            consts.insert(k.trim().to_owned(), v.trim().parse::<i64>().unwrap());
        }
        api.enums.insert(name, consts);
    }
    api.variables.sort();
    api
}

/// Differences between the two, as readable lines.
fn diff(h: &Api, r: &Api) -> Vec<String> {
    let mut out = Vec::new();
    for (name, n) in &r.functions {
        match h.functions.get(name) {
            None => out.push(format!("{name}: exported by Rust, missing in the header")),
            Some(m) if m != n => {
                out.push(format!("{name}: {n} parameters in Rust, {m} in the header"))
            }
            _ => {}
        }
    }
    for name in h.functions.keys().filter(|k| !r.functions.contains_key(*k)) {
        out.push(format!(
            "{name}: declared in the header, not exported by Rust"
        ));
    }
    if h.variables != r.variables {
        out.push(format!(
            "variables: header {:?}, Rust {:?}",
            h.variables, r.variables
        ));
    }
    for (name, consts) in &r.enums {
        match h.enums.get(name) {
            None => out.push(format!("enum {name}: in Rust, missing in the header")),
            Some(c) if c != consts => {
                out.push(format!("enum {name}: header {c:?}, Rust {consts:?}"))
            }
            _ => {}
        }
    }
    out
}

#[test]
fn header_declares_exactly_the_exports() {
    let (h, _) = header_api(&read("include/distlog.h"));
    let r = rust_api(&rust_sources());
    assert!(r.functions.len() >= 10, "parsed too few exports: {r:?}");
    assert!(
        r.enums.contains_key("distlog_result") && r.enums.contains_key("distlog_field_type"),
        "{r:?}"
    );
    assert_eq!(r.variables, ["distlog_max_level"]);
    let d = diff(&h, &r);
    assert!(
        d.is_empty(),
        "include/distlog.h and ffi/src disagree:\n{}",
        d.join("\n")
    );
}

#[test]
fn header_enums_and_constants_match_rust() {
    use distlog::wire::Level;
    let (h, defines) = header_api(&read("include/distlog.h"));
    // Levels: the client's numbers and names.
    let levels = &h.enums["distlog_level"];
    assert_eq!(levels.len(), 5);
    for n in 1..=5u8 {
        let l = Level::from_u8(n).unwrap();
        assert_eq!(
            levels[&format!("DISTLOG_LEVEL_{}", l.as_str())],
            i64::from(n)
        );
    }
    let outcomes = &h.enums["distlog_outcome"];
    assert_eq!(outcomes.len(), 2);
    assert_eq!(
        outcomes["DISTLOG_OUTCOME_OK"],
        i64::from(distlog_ffi::scope::DISTLOG_OUTCOME_OK)
    );
    assert_eq!(
        outcomes["DISTLOG_OUTCOME_ERROR"],
        i64::from(distlog_ffi::scope::DISTLOG_OUTCOME_ERROR)
    );
    // Every result code has its own explanation.
    let results = &h.enums["distlog_result"];
    let mut texts = std::collections::BTreeSet::new();
    for v in results.values() {
        // SAFETY: distlog_result_str returns a static NUL-terminated string.
        let s = unsafe { std::ffi::CStr::from_ptr(distlog_ffi::distlog_result_str(*v as i32)) };
        assert!(
            texts.insert(s.to_str().unwrap().to_owned()),
            "code {v} shares its text"
        );
    }
    let num = |k: &str| {
        defines
            .get(k)
            .unwrap_or_else(|| panic!("#define {k} missing"))
            .trim_end_matches('u')
            .parse::<usize>()
            .unwrap()
    };
    assert_eq!(num("DISTLOG_MAX_FIELDS"), distlog_ffi::MAX_FIELDS);
    const {
        assert!(
            distlog_ffi::MAX_FIELDS + 3 <= distlog::wire::MAX_FIELDS,
            "room for message and distlog.* fields"
        )
    };
    assert_eq!(
        num("DISTLOG_TRACEPARENT_LEN"),
        distlog_ffi::scope::TRACEPARENT_LEN
    );
    assert_eq!(
        num("DISTLOG_TRACEPARENT_LEN"),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".len() + 1
    );
    assert_eq!(
        num("DISTLOG_TRACESTATE_LEN"),
        distlog_ffi::scope::TRACESTATE_LEN
    );
    assert!(
        distlog::scope::format_tracestate(5).unwrap().len() < distlog_ffi::scope::TRACESTATE_LEN
    );
    assert_eq!(
        num("DISTLOG_CALLSITE_FORMATTED") as u32,
        distlog_ffi::log::DISTLOG_CALLSITE_FORMATTED
    );
    // The inline event writer: its window's version, and the compact
    // record it writes.
    use distlog::wire::compact;
    assert_eq!(
        num("DISTLOG_INTERNAL_WINDOW_ABI") as u32,
        distlog::raw::C_WINDOW_ABI
    );
    assert_eq!(num("DISTLOG_INTERNAL_KIND_EVENT") as u8, compact::KIND);
    assert_eq!(num("DISTLOG_INTERNAL_HEAD"), compact::head_bytes(false));
    assert_eq!(num("DISTLOG_INTERNAL_TAG_BOOL") as u8, compact::BOOL);
    assert_eq!(num("DISTLOG_INTERNAL_TAG_STR") as u8, compact::STR);
    assert_eq!(num("DISTLOG_INTERNAL_VALID") as u32, distlog::ring::VALID);
    assert_eq!(
        num("DISTLOG_INTERNAL_MIN_ROOM") as u64,
        distlog::raw::C_MIN_ROOM
    );
    // Longer strings go to the library, which cuts them there.
    assert_eq!(num("DISTLOG_INTERNAL_INLINE_STR"), distlog::raw::MAX_STR);
}

/// The check itself catches drift (a removed prototype, a changed count, a
/// changed enum value).
#[test]
fn drift_is_detected() {
    let header = read("include/distlog.h");
    let r = rust_api(&rust_sources());
    let cases = [
        header.replace("void distlog_shutdown(void);", ""),
        header.replace(
            "int distlog_enabled(distlog_level level, const char *target);",
            "int distlog_enabled(distlog_level level);",
        ),
        header.replace("DISTLOG_PANIC = 7", "DISTLOG_PANIC = 8"),
        header.replace(
            "const char *distlog_result_str(distlog_result r);",
            "const char *distlog_result_str(distlog_result r);\nint distlog_extra(void);",
        ),
        header.replace("extern const uint8_t *distlog_max_level;", ""),
    ];
    for (i, h) in cases.iter().enumerate() {
        assert_ne!(h, &header, "case {i} did not change the header");
        let (api, _) = header_api(h);
        assert!(!diff(&api, &r).is_empty(), "case {i}: drift not detected");
    }
}
