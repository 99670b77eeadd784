//! Memory accounting: a global allocator wrapper that counts live bytes, the
//! peak and the number of allocations, and can enforce a fixed heap budget.
//!
//! Install it as the global allocator of a binary (or a test binary) around
//! the system allocator, or around any other [`GlobalAlloc`] on bare metal:
//!
//! ```
//! use ember_runtime::memory::Counting;
//! use std::alloc::System;
//!
//! #[global_allocator]
//! static HEAP: Counting<System> = Counting::new(System);
//!
//! fn main() {
//!     let (sum, stats) = HEAP.measure(|| vec![1u8; 1 << 20].iter().map(|&b| b as usize).sum::<usize>());
//!     assert_eq!(sum, 1 << 20);
//!     assert!(stats.peak_bytes >= 1 << 20);
//! }
//! ```
//!
//! With a budget ([`Counting::with_budget`] or [`Counting::set_budget`]) an
//! allocation that would take the live bytes past it returns null, which is
//! how a `GlobalAlloc` reports exhaustion; code that must fail with an error
//! instead of an allocation failure checks [`Counting::headroom`] first.
//!
//! This is the one audited module of `ember-runtime` where `unsafe` is
//! allowed: implementing [`GlobalAlloc`] cannot be done without it. Every
//! unsafe operation forwards the caller's own contract to the inner
//! allocator unchanged.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

/// What a [`Counting`] allocator has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// Bytes allocated and not yet freed.
    pub current_bytes: usize,
    /// The most bytes live at once since the last [`Counting::reset_peak`].
    pub peak_bytes: usize,
    /// Successful allocations (reallocations included) since the last reset.
    pub allocations: usize,
    /// Bytes requested by those allocations.
    pub allocated_bytes: usize,
    /// Allocations refused because of the budget.
    pub refused: usize,
}

/// A [`GlobalAlloc`] that counts what goes through it and optionally enforces
/// a budget on the live bytes. See the [module documentation](self).
#[derive(Debug)]
pub struct Counting<A> {
    inner: A,
    current: AtomicUsize,
    peak: AtomicUsize,
    allocations: AtomicUsize,
    allocated: AtomicUsize,
    refused: AtomicUsize,
    budget: AtomicUsize,
}

impl<A> Counting<A> {
    /// Counts the allocations of `inner`, without a budget.
    pub const fn new(inner: A) -> Self {
        Self::with_budget(inner, usize::MAX)
    }

    /// Counts the allocations of `inner` and refuses those that would take
    /// the live bytes past `budget`.
    pub const fn with_budget(inner: A, budget: usize) -> Self {
        Self {
            inner,
            current: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            allocations: AtomicUsize::new(0),
            allocated: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            budget: AtomicUsize::new(budget),
        }
    }

    /// Sets the budget (`usize::MAX` for none).
    pub fn set_budget(&self, budget: usize) {
        self.budget.store(budget, Ordering::Relaxed);
    }

    /// The budget (`usize::MAX` when there is none).
    pub fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }

    /// Bytes that can still be allocated within the budget.
    pub fn headroom(&self) -> usize {
        self.budget()
            .saturating_sub(self.current.load(Ordering::Relaxed))
    }

    /// The counters now.
    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            current_bytes: self.current.load(Ordering::Relaxed),
            peak_bytes: self.peak.load(Ordering::Relaxed),
            allocations: self.allocations.load(Ordering::Relaxed),
            allocated_bytes: self.allocated.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// Starts a new measurement: the peak becomes the current live bytes and
    /// the allocation counters go to zero.
    pub fn reset_peak(&self) {
        self.peak
            .store(self.current.load(Ordering::Relaxed), Ordering::Relaxed);
        self.allocations.store(0, Ordering::Relaxed);
        self.allocated.store(0, Ordering::Relaxed);
        self.refused.store(0, Ordering::Relaxed);
    }

    /// Runs `f` and returns its result with the counters of the run: the peak
    /// is the most bytes live at once *above* what was live at the start.
    pub fn measure<R>(&self, f: impl FnOnce() -> R) -> (R, MemoryStats) {
        self.reset_peak();
        let base = self.current.load(Ordering::Relaxed);
        let out = f();
        let mut stats = self.stats();
        stats.peak_bytes = stats.peak_bytes.saturating_sub(base);
        (out, stats)
    }

    /// Claims `size` more live bytes, or refuses when past the budget.
    fn claim(&self, size: usize) -> bool {
        let budget = self.budget.load(Ordering::Relaxed);
        let mut current = self.current.load(Ordering::Relaxed);
        loop {
            let Some(next) = current.checked_add(size).filter(|&n| n <= budget) else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            };
            match self.current.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    return true;
                }
                Err(seen) => current = seen,
            }
        }
    }

    fn release(&self, size: usize) {
        self.current.fetch_sub(size, Ordering::Relaxed);
    }

    fn count(&self, size: usize) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        self.allocated.fetch_add(size, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments
// unchanged (same pointer, same layout, same new size), so `inner`'s
// guarantees hold; the counters are plain atomics and a refused allocation
// returns null without touching `inner`.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.claim(layout.size()) {
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded contract (non-zero-size layout from the caller).
        let ptr = unsafe { self.inner.alloc(layout) };
        if ptr.is_null() {
            self.release(layout.size())
        } else {
            self.count(layout.size())
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.claim(layout.size()) {
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if ptr.is_null() {
            self.release(layout.size())
        } else {
            self.count(layout.size())
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract (`ptr` came from this allocator with `layout`).
        unsafe { self.inner.dealloc(ptr, layout) };
        self.release(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !self.claim(new_size - old) {
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if new.is_null() {
            if new_size > old {
                self.release(new_size - old);
            }
        } else {
            if new_size < old {
                self.release(old - new_size);
            }
            self.count(new_size);
        }
        new
    }
}

/// Asks the C library's allocator to keep freed memory for reuse instead of
/// handing it back to the operating system, for processes that allocate
/// and free tensors of the same sizes step after step (training loops,
/// repeated inference). Returns whether the allocator took the settings.
///
/// glibc's `malloc` serves blocks above its *mmap threshold* (128 KiB, rising
/// to at most 32 MiB as such blocks are freed) with fresh `mmap`s and unmaps
/// them on `free`, and returns free memory at the top of its heap to the
/// system past a *trim threshold*; every step of a training loop then pays
/// for zero-filled pages again. This raises both thresholds (blocks up to
/// 1 GiB — or 32 MiB where glibc refuses more — come from the heap, and the
/// heap is not trimmed below 2 GiB of free space), so freed tensors'
/// memory is reused without page faults, at the price of resident memory
/// staying near its peak (BENCHMARKS.md has its effect on a MiniLM LoRA
/// training step). It changes the whole process: call it from a binary's
/// `main`, not from a library. Elsewhere than glibc (musl, bare metal,
/// macOS, Windows) it does nothing and returns `false`.
///
/// ```
/// // In a binary's `main`, before the work starts:
/// let applied = ember_runtime::memory::reuse_freed_memory();
/// # let _ = applied;
/// ```
pub fn reuse_freed_memory() -> bool {
    #[cfg(all(feature = "std", target_os = "linux", target_env = "gnu"))]
    {
        // glibc's <malloc.h>.
        const M_TRIM_THRESHOLD: core::ffi::c_int = -1;
        const M_MMAP_THRESHOLD: core::ffi::c_int = -3;
        unsafe extern "C" {
            fn mallopt(param: core::ffi::c_int, value: core::ffi::c_int) -> core::ffi::c_int;
        }
        // SAFETY: mallopt only reads its two integer arguments; glibc
        // rejects values it does not accept by returning 0.
        let mmap = unsafe {
            mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1 || mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
        };
        // SAFETY: as above.
        let trim = unsafe { mallopt(M_TRIM_THRESHOLD, core::ffi::c_int::MAX) == 1 };
        mmap && trim
    }
    #[cfg(not(all(feature = "std", target_os = "linux", target_env = "gnu")))]
    false
}

/// This process's peak resident memory (`VmHWM`) in MiB, read from
/// `/proc/self/status`; `None` where that file does not exist (other than
/// Linux) or cannot be read.
#[cfg(feature = "std")]
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake inner allocator that hands out a fixed non-null address and
    /// never touches memory, so the counting logic can be tested alone.
    struct Fake;
    // SAFETY: the pointers are never dereferenced by these tests.
    unsafe impl GlobalAlloc for Fake {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            layout.align() as *mut u8
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
        unsafe fn realloc(&self, ptr: *mut u8, _: Layout, _: usize) -> *mut u8 {
            ptr
        }
    }

    #[test]
    fn counts_peak_and_enforces_the_budget() {
        let heap = Counting::with_budget(Fake, 100);
        let l60 = Layout::from_size_align(60, 4).unwrap();
        let l50 = Layout::from_size_align(50, 4).unwrap();
        // SAFETY: Fake never dereferences.
        unsafe {
            let a = heap.alloc(l60);
            assert!(!a.is_null());
            assert!(heap.alloc(l50).is_null(), "60 + 50 > 100 must be refused");
            assert_eq!(heap.headroom(), 40);
            heap.dealloc(a, l60);
            let b = heap.alloc(l50);
            assert!(!b.is_null());
            let c = heap.realloc(b, l50, 90);
            assert!(!c.is_null());
            assert!(
                heap.realloc(c, Layout::from_size_align(90, 4).unwrap(), 120)
                    .is_null()
            );
            heap.dealloc(c, Layout::from_size_align(90, 4).unwrap());
        }
        let s = heap.stats();
        assert_eq!(s.current_bytes, 0);
        assert_eq!(s.peak_bytes, 90);
        assert_eq!(s.refused, 2);
        assert_eq!(s.allocations, 3);
    }
}
