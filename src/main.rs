use clap::Parser;

fn main() -> std::process::ExitCode {
    trustkeeper::tls::install_crypto_provider();
    // clap exits with 2 on usage errors by itself.
    let cli = trustkeeper::cli::Cli::parse();
    match trustkeeper::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
