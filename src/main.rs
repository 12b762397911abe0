//! The `wxlogin` binary: parse the command line and hand over to the library.

use clap::Parser;

// mimalloc rather than the system allocator: a request allocates and frees many small
// buffers, and glibc malloc took about a seventh of the CPU of a token check (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = wxlogin::cli::Cli::parse();
    std::process::exit(wxlogin::cli::run(cli).await);
}
