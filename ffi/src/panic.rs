//! No unwinding across the C ABI.
//!
//! Every exported function runs its body inside [`ffi_panic_boundary!`],
//! which catches a panic and returns the function's "on panic" value
//! instead ([`OnPanic`]): `DISTLOG_PANIC` for a `distlog_result`, NULL for a
//! pointer, 0 for an `int`, nothing for `void`. Modelled on rustls-ffi's
//! `panic.rs`.

use std::os::raw::c_int;

use crate::result::distlog_result;

/// What an export returns when its body panicked.
pub(crate) trait OnPanic {
    /// The value.
    fn on_panic() -> Self;
}

impl OnPanic for distlog_result {
    fn on_panic() -> Self {
        distlog_result::DISTLOG_PANIC
    }
}

impl OnPanic for () {
    fn on_panic() -> Self {}
}

impl OnPanic for c_int {
    fn on_panic() -> Self {
        0
    }
}

impl<T> OnPanic for *mut T {
    fn on_panic() -> Self {
        std::ptr::null_mut()
    }
}

impl<T> OnPanic for *const T {
    fn on_panic() -> Self {
        std::ptr::null()
    }
}

/// Run the body of an `extern "C"` function, turning a panic into the
/// return type's [`OnPanic`] value. `return` inside the body returns from
/// the body.
macro_rules! ffi_panic_boundary {
    ($($body:tt)*) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(v) => v,
            Err(_) => $crate::panic::OnPanic::on_panic(),
        }
    };
}
pub(crate) use ffi_panic_boundary;

#[cfg(test)]
mod tests {
    use super::*;

    fn boom() -> bool {
        panic!("boom")
    }

    fn guarded_result() -> distlog_result {
        ffi_panic_boundary! {
            if boom() { distlog_result::DISTLOG_OK } else { distlog_result::DISTLOG_INVALID_ARGUMENT }
        }
    }

    fn guarded_ptr() -> *mut u8 {
        ffi_panic_boundary! {
            if boom() { 8 as *mut u8 } else { 16 as *mut u8 }
        }
    }

    fn guarded_early_return(x: i32) -> c_int {
        ffi_panic_boundary! {
            if x > 0 {
                return 7;
            }
            c_int::from(boom())
        }
    }

    #[test]
    fn panics_become_values() {
        assert_eq!(guarded_result(), distlog_result::DISTLOG_PANIC);
        assert!(guarded_ptr().is_null());
        assert_eq!(guarded_early_return(1), 7);
        assert_eq!(guarded_early_return(0), 0);
    }
}
