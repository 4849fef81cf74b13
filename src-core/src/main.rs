//! The `attune` command line: a thin layer over the library.

mod cli;

// Training allocates large fresh buffers every step; mimalloc reuses them far better than
// the system allocator (page zeroing was 13-20% of the CPU time without it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
