//! The allocator of the binaries that run the pipeline (`jhe`, and the benchmarks that embed it): jemalloc, for
//! Rust's allocations and, as `malloc`, for the C libraries' (librdkafka, zstd) too.
//!
//! glibc's malloc spent about a quarter of an end-to-end run's CPU in its own bookkeeping (`_int_malloc`,
//! `unlink_chunk`, `malloc_consolidate`, `_int_free`): a request and a flush each make and free millions of small
//! allocations on several threads. Side by side on the 2-core machine (`bench-pipeline e2e --clients 8`, 500,000
//! observations), jemalloc took 0.7× the process's CPU and raised the end-to-end rate about 1.3×; the processor alone
//! went from about 150 k to about 180 k records per CPU-second.
//!
//! Memory: pages that stayed unused for a second go back to the operating system ([`MALLOC_CONF`]), so the resident
//! size follows what the process holds rather than its peak: the processor alone at full rate peaked at 421 MiB,
//! against 442–461 MiB with glibc capped at 2 arenas and trimmed after flushes (what this replaced). Without the
//! C libraries' allocations in jemalloc too, librdkafka's fetch buffers sat in glibc's arenas and the peak was
//! 480–493 MiB.

pub use tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once when it starts (its `malloc_conf` symbol): a background thread returns unused pages
/// to the operating system (no allocating thread pays for it), dirty pages after 1 s (default 10 s), and pages are
/// released outright rather than first kept as "muzzy". `MALLOC_CONF` in the environment overrides them.
pub const MALLOC_CONF: MallocConf = MallocConf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads at start-up; `Sync` because it points at immutable static data.
#[repr(transparent)]
#[derive(Debug)]
pub struct MallocConf(pub *const std::ffi::c_char);

// SAFETY: the pointer refers to a `'static` C string literal that is never written.
unsafe impl Sync for MallocConf {}

/// Makes jemalloc (with [`MALLOC_CONF`]) the allocator of the binary it is invoked in, once, at the crate root of
/// its main file. A macro rather than items of this library: the allocator and the options symbol must belong to the
/// binary, or the linker may leave the options out.
#[macro_export]
macro_rules! use_jemalloc {
    () => {
        #[global_allocator]
        static GLOBAL_ALLOCATOR: $crate::memory::Jemalloc = $crate::memory::Jemalloc;

        /// jemalloc's options (its `malloc_conf`: `tikv-jemalloc-sys` is built without a symbol prefix, so jemalloc
        /// is the process's `malloc` too).
        #[unsafe(export_name = "malloc_conf")]
        #[used]
        static JEMALLOC_CONF: $crate::memory::MallocConf = $crate::memory::MALLOC_CONF;
    };
}
