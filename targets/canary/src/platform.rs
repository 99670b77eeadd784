//! What a bare-metal binary must provide itself: the entry point, the panic
//! handler and the global allocator (a bump allocator over a static arena,
//! which never frees; the canary runs one step).
//!
//! This is the one audited module of the canary where `unsafe` is allowed: a
//! `GlobalAlloc` and an unmangled entry symbol cannot be written without it.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

const ARENA: usize = 256 * 1024;

struct Bump {
    arena: UnsafeCell<[u8; ARENA]>,
    next: AtomicUsize,
}

// SAFETY: allocation only hands out disjoint ranges, claimed atomically.
unsafe impl Sync for Bump {}

// SAFETY: every returned pointer is inside the arena, aligned as requested,
// and never handed out twice; null signals exhaustion.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.arena.get() as usize;
        let mut current = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + current).next_multiple_of(layout.align()) - base;
            let end = match start.checked_add(layout.size()) {
                Some(end) if end <= ARENA => end,
                _ => return core::ptr::null_mut(),
            };
            match self.next.compare_exchange_weak(
                current,
                end,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return (base + start) as *mut u8,
                Err(seen) => current = seen,
            }
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static HEAP: Bump = Bump {
    arena: UnsafeCell::new([0; ARENA]),
    next: AtomicUsize::new(0),
};

/// Entry point (the linker's default `_start`): one training step, kept alive
/// with `black_box` so that nothing is optimised or linked away.
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    core::hint::black_box(crate::train_step());
    loop {}
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
