fn main() -> std::process::ExitCode {
    trustkeeper::tls::install_crypto_provider();
    // Exits with 2 on usage errors, never repeating an argument that looks like key material.
    let cli = trustkeeper::cli::parse();
    match trustkeeper::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(e.code)
        }
    }
}
