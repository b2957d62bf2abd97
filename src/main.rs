use clap::Parser;

fn main() -> std::process::ExitCode {
    trustkeeper::tls::install_crypto_provider();
    init_logging();
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

/// Logs to stderr, filtered by `TRUSTKEEPER_LOG` or else `RUST_LOG` (`info`, `trustkeeper=debug`,
/// …). The default shows warnings, except the engine's "reconcile failed" line, which the
/// command line already prints as its one-line error.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = ["TRUSTKEEPER_LOG", "RUST_LOG"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new("warn,trustkeeper::engine::run=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
