//! The `covenant` binary: everything lives in the library; this only hands over the command line.

fn main() -> std::process::ExitCode {
    keep_large_blocks_out_of_the_heap();
    covenant::cli::main()
}

/// glibc serves a large block from its heaps instead of a mapping of its own once a block of
/// that size has been freed (its mmap threshold rises up to 32 MiB), and keeps freed heap
/// memory. Each password hash takes 19 MiB (argon2id's memory cost) on whichever blocking
/// thread runs it, and so on whichever of up to 16 arenas that thread uses: measured with
/// `bench/run`, sixteen concurrent sign-ins left the server at 624 MB of resident memory where
/// it had been at 156 MB. A fixed threshold of 1 MiB keeps every larger block in a mapping of
/// its own, returned to the system when it is freed; smaller ones are unaffected.
fn keep_large_blocks_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning; it is called before any other
    // thread exists. A refusal (return 0) leaves glibc's defaults, which still work.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}
