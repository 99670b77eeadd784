//! The message behind the last status a thread got, for `ember_last_error`.

use std::cell::RefCell;
use std::ffi::{CStr, CString};

use crate::status::Failure;

thread_local! {
    static LAST: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Stores `failure`'s message as this thread's last error.
pub fn set(failure: &Failure) {
    // A message with a NUL byte (from a path, say) would be cut short in C:
    // replace NULs rather than lose the message.
    let text = failure.message.replace('\0', "\\0");
    let message = CString::new(text).unwrap_or_default();
    LAST.with(|last| *last.borrow_mut() = Some(message));
}

/// Clears this thread's last error (after a successful call).
pub fn clear() {
    LAST.with(|last| *last.borrow_mut() = None);
}

/// This thread's last error message, `""` when the last call succeeded.
pub fn message() -> String {
    LAST.with(|last| {
        last.borrow()
            .as_ref()
            .map(|m| m.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

/// A pointer to this thread's last error message as a NUL-terminated string
/// (`""` when the last call succeeded). It stays valid until this thread's
/// next call into the library: the string lives in thread-local storage and
/// is replaced, not modified, by the next call.
pub fn as_ptr() -> *const std::ffi::c_char {
    const EMPTY: &CStr = c"";
    LAST.with(|last| {
        last.borrow()
            .as_ref()
            .map_or(EMPTY.as_ptr(), |m| m.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmberStatus;

    #[test]
    fn messages_are_per_thread_and_survive_nul_bytes() {
        set(&Failure::new(EmberStatus::Io, "a\0b"));
        assert_eq!(message(), "a\\0b");
        std::thread::spawn(|| assert_eq!(message(), ""))
            .join()
            .unwrap();
        clear();
        assert_eq!(message(), "");
    }
}
