//! Command line: argument parsing and output. Each subcommand is a thin shell over the library.

use clap::{Parser, Subcommand};

/// Keeps Docker Content Trust (Notary v1) signatures and trust metadata fresh.
#[derive(Parser, Debug)]
#[command(name = "trustkeeper", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the SignedImage CustomResourceDefinition (what `crds/` holds).
    Crd,
}

/// Runs a parsed command line; the binary maps the error to exit code 1.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crd => {
            print!("{}", crate::api::crd_yaml());
            Ok(())
        }
    }
}
