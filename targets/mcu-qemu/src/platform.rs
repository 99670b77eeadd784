//! What the firmware provides itself: the heap (a linked-list allocator over a
//! static arena, counted by `ember_runtime::memory::Counting`), the panic and
//! hard-fault handlers, and the FPU check.
//!
//! This is the one audited module of the firmware where `unsafe` is allowed:
//! a `GlobalAlloc`, the arena's initialisation and the hard-fault handler
//! cannot be written without it.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m::peripheral::SCB;
use cortex_m::peripheral::scb::FpuAccessMode;
use cortex_m_rt::{ExceptionFrame, exception};
use cortex_m_semihosting::{debug, hprintln};
use embedded_alloc::LlffHeap;
use ember_runtime::memory::Counting;

/// Size of the heap arena: more than the learner's 64 KiB budget, so that the
/// budget, not the arena, is what limits it.
pub const ARENA_BYTES: usize = 128 * 1024;

static ARENA_HEAP: LlffHeap = LlffHeap::empty();
static INIT: AtomicBool = AtomicBool::new(false);

/// Forwards to the linked-list heap over the static arena.
pub struct Arena;

// SAFETY: every call forwards the caller's arguments unchanged to
// `ARENA_HEAP`, a `GlobalAlloc` that serialises access with a critical
// section; before `init_heap` it has no memory and returns null.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { ARENA_HEAP.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract (`ptr` came from `ARENA_HEAP`).
        unsafe { ARENA_HEAP.dealloc(ptr, layout) }
    }
}

/// The global allocator: the arena, counted and with an optional budget.
#[global_allocator]
pub static HEAP: Counting<Arena> = Counting::new(Arena);

/// Gives the heap its arena; only the first call has an effect.
pub fn init_heap() {
    static mut MEMORY: [MaybeUninit<u8>; ARENA_BYTES] = [MaybeUninit::uninit(); ARENA_BYTES];
    if INIT.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: runs once (guarded by INIT), before any allocation; the static
    // arena is used by nothing else, so the heap owns it for the program's
    // lifetime.
    unsafe { ARENA_HEAP.init(&raw mut MEMORY as usize, ARENA_BYTES) }
}

/// Whether the FPU is enabled (CPACR grants full access to CP10 and CP11).
/// cortex-m-rt's reset handler enables it for `thumbv7em-none-eabihf`
/// before `main`; hard-float code would fault otherwise.
pub fn fpu_enabled() -> bool {
    SCB::fpu_access_mode() == FpuAccessMode::Enabled
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("FAIL: panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("FAIL: hard fault: {:?}", frame);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}
