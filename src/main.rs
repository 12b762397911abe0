//! The `wxlogin` binary: parse the command line and hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = wxlogin::cli::Cli::parse();
    std::process::exit(wxlogin::cli::run(cli).await);
}
