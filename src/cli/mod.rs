//! Command line: argument parsing and output. Each subcommand is a thin shell over the library;
//! the binary maps errors to exit code 1 (clap uses 2 for usage errors).

/// `print!` to stdout that survives a closed pipe (`inspect | head`): see `common::write_stdout`.
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::common::write_stdout(format_args!($($t)*)) };
}

/// `println!`, likewise.
macro_rules! outln {
    () => { out!("\n") };
    ($($t:tt)*) => { out!("{}\n", format_args!($($t)*)) };
}

mod admin;
mod cluster;
mod common;
mod cosign;
mod init;
mod inspect;
mod inspect_cosign;
mod inspect_formats;
mod inspect_notation;
mod key;
mod key_generate;
mod key_lookup;
mod key_transfer;
mod notation;
mod reconcile;
mod revoke;
mod rotate;
mod sign;
mod trust_dir;

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

pub use common::CliError;

/// Keeps Docker Content Trust (Notary v1) signatures and trust metadata fresh.
#[derive(Parser, Debug)]
#[command(name = "trustkeeper", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes, each with an environment variable.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// CA certificates (PEM) for the registry and the notary server, added to the system roots.
    #[arg(long, env = "TRUSTKEEPER_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Docker config with registry (and notary) credentials [default: ~/.docker/config.json].
    #[arg(long, env = "TRUSTKEEPER_DOCKER_CONFIG", global = true)]
    pub docker_config: Option<PathBuf>,
    /// Notary server URL [default, as docker: DOCKER_CONTENT_TRUST_SERVER, then https://notary.docker.io for Docker Hub, else https://REGISTRY-HOST].
    #[arg(long, env = "TRUSTKEEPER_NOTARY_URL", global = true)]
    pub notary_url: Option<String>,
    /// Accept a plain-http token realm from this registry or notary server (HOST[:PORT] as in
    /// the image or --notary-url; repeatable): its credentials then travel in the clear.
    #[arg(
        long = "insecure-token-realm",
        value_name = "HOST",
        env = "TRUSTKEEPER_INSECURE_TOKEN_REALM",
        value_delimiter = ',',
        global = true
    )]
    pub insecure_token_realm: Vec<String>,
    /// Where trust on first use and the last versions seen are kept [default: ~/.trustkeeper].
    #[arg(long, env = "TRUSTKEEPER_TRUST_DIR", global = true)]
    pub trust_dir: Option<PathBuf>,
    /// The docker/notary trust directory where a key is found by ID when none is given
    /// [default: $DOCKER_CONFIG/trust, else ~/.docker/trust]; not --trust-dir, trustkeeper's own.
    #[arg(long, env = "TRUSTKEEPER_DOCKER_TRUST_DIR", global = true)]
    pub docker_trust_dir: Option<PathBuf>,
    /// Pin the repository's root key ID(s) instead of trusting on first use.
    #[arg(
        long = "root-key-id",
        env = "TRUSTKEEPER_ROOT_KEY_ID",
        value_delimiter = ',',
        global = true
    )]
    pub root_key_ids: Vec<String>,
    /// File holding the key's passphrase (or set TRUSTKEEPER_PASSPHRASE; prompted when interactive).
    #[arg(long, env = "TRUSTKEEPER_PASSPHRASE_FILE", global = true)]
    pub passphrase_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text", global = true)]
    pub output: Output,
    /// Timeout of each HTTP request, a Go duration.
    #[arg(
        long,
        env = "TRUSTKEEPER_TIMEOUT",
        default_value = "30s",
        value_parser = flag_duration,
        global = true
    )]
    pub timeout: std::time::Duration,
    /// The most trust metadata read for one repository, every file together, whatever the
    /// server announces (bytes, or with KiB/MiB/GiB). The operator runs --concurrency updates at
    /// once: keep their product within its memory limit.
    #[arg(
        long,
        env = "TRUSTKEEPER_MAX_METADATA_SIZE",
        default_value = "4MiB",
        value_parser = common::parse_size,
        global = true
    )]
    pub max_metadata_size: u64,
    /// Longest time one run (one reconcile in `reconcile` and the controller) may take, every
    /// request, retry and backoff included; a Go duration.
    #[arg(
        long,
        env = "TRUSTKEEPER_DEADLINE",
        default_value = "5m",
        value_parser = flag_duration,
        global = true
    )]
    pub deadline: std::time::Duration,
}

/// A Go duration flag, checked at parse time so that a bad one is a usage error (exit 2) that
/// names the flag.
fn flag_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::api::parse_go_duration(text)
        .map(|d| d.0.unsigned_abs())
        .map_err(|e| e.to_string())
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sign the current digests of IMAGE:TAG... (manifest lists and OCI indexes included), renew
    /// roles that near expiry, publish once and verify.
    Sign(sign::SignArgs),
    /// Re-sign (renew) roles now, with their content unchanged.
    Witness(sign::WitnessArgs),
    /// Show signed tags, signers, key IDs, every role's expiry and when it would be renewed.
    Inspect(inspect::InspectArgs),
    /// Key files.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Run SignedImage resources from YAML files, without a cluster.
    Reconcile(reconcile::ReconcileArgs),
    /// Run the Kubernetes operator: keep every SignedImage in the cluster signed and fresh.
    Controller(crate::controller::ControllerArgs),
    /// Print the SignedImage CustomResourceDefinition (what `crds/` holds).
    Crd,
    /// Ask the operator to reconcile a SignedImage now (--force: re-sign every role the key
    /// holds), through the cluster's API server.
    Renew(cluster::RenewArgs),
    /// Show a SignedImage's status from the cluster: Ready, tags, roles with expiry, renew
    /// requests, failures.
    Status(cluster::StatusArgs),
    /// Delegations of a repository (`notary delegation list|add|remove`).
    #[command(subcommand)]
    Delegation(admin::DelegationCommand),
    /// Signers of a repository (`docker trust signer add|remove`).
    #[command(subcommand)]
    Signer(admin::SignerCommand),
    /// Create a trusted repository (what the first `docker trust sign` did): root and
    /// repository keys given or generated (written encrypted to the docker/notary trust
    /// directory), snapshot and timestamp keys on the server; an existing one is refused.
    Init(init::InitArgs),
    /// Remove a tag's signature from a role (`notary remove` + `notary publish`).
    Remove(admin::RemoveArgs),
    /// Remove the key's signatures of a tag, or of every tag (`docker trust revoke`).
    Revoke(revoke::RevokeArgs),
}

/// The global flags (by id) that `controller` accepts, as every subcommand does, but never reads:
/// its `--help` leaves them out. The ones it reads: `--ca-file`, `--timeout`, `--deadline`,
/// `--max-metadata-size`.
const IGNORED_BY_CONTROLLER: &[&str] = &[
    "docker_config",
    "notary_url",
    "insecure_token_realm",
    "trust_dir",
    "docker_trust_dir",
    "root_key_ids",
    "passphrase_file",
    "output",
];

/// The command line as the binary parses it: [`Cli`], with the global flags the controller
/// ignores hidden from `controller --help` (still accepted there, so that a shared environment
/// such as `TRUSTKEEPER_TRUST_DIR` never stops it).
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    // Global flags reach the subcommands when the command is built; only then can they be hidden.
    cmd.build();
    if let Some(c) = cmd.find_subcommand_mut("controller") {
        *c = std::mem::take(c).mut_args(|a| {
            if IGNORED_BY_CONTROLLER.contains(&a.get_id().as_str()) {
                a.hide(true)
            } else {
                a
            }
        });
    }
    // `renew` and `status` talk to the API server only.
    for name in ["renew", "status"] {
        if let Some(c) = cmd.find_subcommand_mut(name) {
            *c = std::mem::take(c).mut_args(|a| match a.get_id().as_str() {
                "output" => a,
                "timeout" => a.help(
                    "How long the whole command may take, `renew --wait` included, a Go duration",
                ),
                _ if a.is_global_set() => a.hide(true),
                _ => a,
            });
        }
    }
    cmd
}

/// Parses the command line; usage errors exit with 2 as clap's do, but an argument that looks
/// like key material (`--key "$(cat key.pem)"`) is never repeated in the message, and neither is
/// any other argument then.
pub fn parse() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let secret = args
        .iter()
        .skip(1)
        .any(|a| common::looks_like_key_material(&a.to_string_lossy()));
    match try_parse(&args) {
        // Key material never belongs on a command line, even where it parses (`--key=PEM`).
        Ok(_) if secret => redacted_usage_error("an argument is not a file name, image or flag"),
        Ok(cli) => cli,
        // Help is rendered again by `command()`, whose whole tree is built (to hide flags) only
        // here, never on a run.
        Err(e) if is_help(&e) => match named(command(), &args).try_get_matches_from(&args) {
            Err(help) if is_help(&help) => help.exit(),
            _ => e.exit(),
        },
        // --help and --version.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) if secret => redacted_usage_error(&e.kind().to_string()),
        Err(e) => e.exit(),
    }
}

/// What kubectl runs for `kubectl trustkeeper ...` (a symlink or copy of this binary).
pub const KUBECTL_PLUGIN: &str = "kubectl-trustkeeper";

/// The name the binary was run as decides the program name in help and usage, and nothing
/// else: as [`KUBECTL_PLUGIN`] it is `kubectl trustkeeper`.
fn named(cmd: clap::Command, args: &[std::ffi::OsString]) -> clap::Command {
    let plugin = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == KUBECTL_PLUGIN);
    if plugin {
        cmd.bin_name("kubectl trustkeeper")
    } else {
        cmd
    }
}

/// `Cli::try_parse_from`, with the program name of [`named`].
fn try_parse(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let mut cmd = named(Cli::command(), args);
    let mut matches = cmd.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut cmd))
}

fn is_help(e: &clap::Error) -> bool {
    use clap::error::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    )
}

/// Exits with 2 and the usage error without the arguments: one of them looks like key material.
fn redacted_usage_error(what: &str) -> ! {
    eprintln!(
        "error: {what} (arguments not shown: one looks like key material); never pass a key as \
         an argument, it shows in `ps` and in logs: give the PEM in TRUSTKEEPER_KEY or on \
         standard input (--key -), or a file (--key PATH)\n\nFor more information, try \
         '--help'."
    );
    std::process::exit(2);
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let command = match cli.command {
        Command::Crd => {
            out!("{}", crate::api::crd_yaml());
            return Ok(());
        }
        Command::Controller(args) => {
            let engine = common::engine(&cli.global)?;
            return crate::controller::main(args, engine).map_err(|e| CliError::new(e.to_string()));
        }
        other => other,
    };
    // The controller sets up its JSON logs itself; every other command logs plain lines.
    init_logging();
    // One thread: a command is one reconcile, whose requests are I/O-bound; the key
    // derivation runs on a blocking thread beside them. Worker threads cost more to start and
    // stop than they save.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    let result = rt.block_on(async move {
        match command {
            Command::Sign(a) => sign::sign(&cli.global, a).await,
            Command::Witness(a) => sign::witness(&cli.global, a).await,
            Command::Inspect(a) => inspect::inspect(&cli.global, a).await,
            Command::Key(key::KeyCommand::Rotate(a)) => init::rotate(&cli.global, a).await,
            Command::Key(k) => key::run(&cli.global, k),
            Command::Init(a) => init::init(&cli.global, a).await,
            Command::Reconcile(a) => reconcile::reconcile(&cli.global, a).await,
            Command::Renew(a) => cluster::renew(&cli.global, a).await,
            Command::Status(a) => cluster::status(&cli.global, a).await,
            Command::Delegation(c) => admin::delegation(&cli.global, c).await,
            Command::Signer(c) => admin::signer(&cli.global, c).await,
            Command::Remove(a) => admin::remove(&cli.global, a).await,
            Command::Revoke(a) => revoke::revoke(&cli.global, a).await,
            Command::Crd | Command::Controller(_) => unreachable!("handled above"),
        }
    });
    // The process ends next: shutting the runtime down (joining its idle threads) would only
    // delay the exit. Every secret was dropped inside `block_on`.
    std::mem::forget(rt);
    result
}

/// Logs to stderr, filtered by `TRUSTKEEPER_LOG` or else `RUST_LOG` (`info`, `trustkeeper=debug`,
/// …). The default shows warnings, except the engine's "reconcile failed" line and the system
/// roots' verdict on a certificate, which the command line's one-line error already carries.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = ["TRUSTKEEPER_LOG", "RUST_LOG"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| {
            EnvFilter::new("warn,trustkeeper_engine::outcome=error,rustls_platform_verifier=off")
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};
    use crate::engine::report::Surface;
    use crate::engine::report::examples::{every_problem, quoted};

    /// Every `trustkeeper ...` command a status or error message proposes is one this parser
    /// takes, and a `witness` it proposes names real roles.
    #[test]
    fn remedy_commands_parse() {
        let gun = "example.com/app";
        let is_role = |r: &str| {
            r == "targets"
                || r.strip_prefix("targets/")
                    .is_some_and(|r| !r.is_empty() && r.split('/').all(|p| !p.is_empty()))
        };
        let mut parsed = 0;
        for p in every_problem() {
            for surface in [Surface::Cli, Surface::Resource] {
                let m = p.message_for(gun, surface);
                for c in quoted(&m).into_iter().filter(|c| c[0] == "trustkeeper") {
                    let args = c.iter().map(|a| {
                        if a.starts_with('<') {
                            "key.pem"
                        } else {
                            a.as_str()
                        }
                    });
                    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{c:?}: {e}"));
                    if let Command::Witness(w) = cli.command {
                        assert!(w.roles.iter().all(|r| is_role(r)), "{c:?}");
                    }
                    parsed += 1;
                }
            }
        }
        assert!(
            parsed > 0,
            "no message proposes a trustkeeper command any more"
        );
    }
}
