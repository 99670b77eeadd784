//! Keeping small work off the thread pool.
//!
//! Burn's CPU backend splits a matmul or a large element-wise op over a
//! rayon pool of all cores. For work whose kernels are too small to gain
//! from that, the hand-offs can cost more than they save. [`serial_below`]
//! runs a piece of work on a one-thread pool when it is small, so every
//! kernel inside it runs on that thread. Measure before using it: it pays
//! only where the kernels are too small to split (BENCHMARKS.md).
//!
//! ```
//! let sum = ember_ops::threads::serial_below(10, 64, || (0..10).sum::<i32>());
//! assert_eq!(sum, 45);
//! ```

/// Runs `f` with Burn's CPU kernels confined to one thread when `work` (any
/// measure of size the caller picks, e.g. tokens in a batch) is below
/// `threshold`; otherwise runs it as is, on every core. Without the
/// `parallel` feature the kernels are single-threaded anyway and `f` just
/// runs.
pub fn serial_below<R: Send>(work: usize, threshold: usize, f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "parallel")]
    if work < threshold {
        use std::sync::OnceLock;
        static SERIAL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
        let pool = SERIAL.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(|_| "ember-serial".into())
                .build()
                .ok()
        });
        if let Some(pool) = pool {
            return pool.install(f);
        }
    }
    let _ = (work, threshold);
    f()
}
