//! Whether a string lies in read-only memory of a given loaded object (the
//! executable or a shared library): its text cannot change while that
//! object is loaded (C string literals and `const` arrays live there, and
//! writing to them is undefined behaviour), so a pointer seen once with a
//! text always has that text. Asked once per `DISTLOG_EVENT` key when its
//! call site registers (cold: it walks the program headers).

use std::os::raw::{c_int, c_void};

/// What the walk looks for, and what it found.
struct Query {
    /// An address inside the object (the call site's static).
    anchor: usize,
    /// The first and one-past-last byte of the string, NUL included.
    start: usize,
    end: usize,
    found: bool,
}

/// Whether `[start, end)` lies in one non-writable loaded segment of the
/// object that also holds `anchor` (a call site's static: while the call
/// site exists, so does that object and its read-only text).
pub(crate) fn read_only_beside(anchor: usize, start: usize, end: usize) -> bool {
    let mut q = Query {
        anchor,
        start,
        end,
        found: false,
    };
    // SAFETY: `visit` only reads the headers dl_iterate_phdr hands it
    // (valid during the callback) and writes `q` through the pointer we
    // pass, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut q).cast()) };
    q.found
}

/// # Safety
///
/// Called by `dl_iterate_phdr` with a valid `info` and our `Query`.
unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: both valid for the callback (see above).
    let (info, q) = unsafe { (&*info, &mut *data.cast::<Query>()) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let base = info.dlpi_addr as usize;
    let segments = phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD).map(|p| {
        let lo = base.wrapping_add(p.p_vaddr as usize);
        (
            lo,
            lo.saturating_add(p.p_memsz as usize),
            p.p_flags & libc::PF_W == 0,
        )
    });
    if !segments
        .clone()
        .any(|(lo, hi, _)| (lo..hi).contains(&q.anchor))
    {
        return 0; // another object: go on
    }
    q.found = segments
        .into_iter()
        .any(|(lo, hi, ro)| ro && lo <= q.start && q.end <= hi);
    1 // the anchor's object: stop
}

#[cfg(test)]
mod tests {
    use super::*;

    static ANCHOR: u8 = 0;
    static mut WRITABLE: [u8; 2] = *b"x\0";

    #[test]
    fn literals_are_read_only_heap_and_statics_are_not() {
        let anchor = &raw const ANCHOR as usize;
        let lit = c"a literal key";
        let p = lit.as_ptr() as usize;
        assert!(read_only_beside(
            anchor,
            p,
            p + lit.to_bytes_with_nul().len()
        ));
        let heap = std::ffi::CString::new("heap").unwrap();
        let h = heap.as_ptr() as usize;
        assert!(!read_only_beside(anchor, h, h + 5));
        let w = &raw const WRITABLE as usize;
        assert!(!read_only_beside(anchor, w, w + 2));
        // An anchor in no object (the heap): nothing is read-only beside it.
        assert!(!read_only_beside(h, p, p + 1));
    }
}
