//! The `modeltrail` command: each subcommand is a few lines over the library.

use clap::{Args, Parser, Subcommand};
use modeltrail::client::Client;
use modeltrail::note::{KeyName, SignerKey};
use modeltrail::server::{self, Overrides, ServerConfig};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

// The server allocates many small buffers per request; mimalloc handles
// that pattern with far less time in the allocator than the system malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "modeltrail",
    version,
    about = "A tamper-evident audit log for ML model registries"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the log server (defaults: ./modeltrail-data, 127.0.0.1:8080).
    Serve(ServeArgs),
    /// Print a new signer key and its verifier key.
    Keygen {
        /// The key name, which is the log's origin.
        #[arg(long)]
        origin: String,
    },
    /// Append an event (a JSON file, or - for stdin) and print the receipt.
    Submit(SubmitArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MODELTRAIL_LISTEN")]
    listen: Option<String>,
    /// Where the database, signing key and admin token live.
    #[arg(long, env = "MODELTRAIL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The log's origin (checkpoint first line and key name), fixed at creation.
    #[arg(long, env = "MODELTRAIL_ORIGIN")]
    origin: Option<String>,
    /// Optional TOML configuration file.
    #[arg(long, env = "MODELTRAIL_CONFIG")]
    config: Option<PathBuf>,
    /// Submissions that may wait for the sequencer before appends get 503.
    #[arg(long, env = "MODELTRAIL_QUEUE_DEPTH")]
    queue_depth: Option<usize>,
    /// Most submissions in one group commit.
    #[arg(long, env = "MODELTRAIL_MAX_BATCH")]
    max_batch: Option<usize>,
    /// Most entries in one /v1/entries page.
    #[arg(long, env = "MODELTRAIL_MAX_PAGE")]
    max_page: Option<u64>,
}

#[derive(Args)]
struct SubmitArgs {
    /// Server base URL.
    #[arg(
        long,
        env = "MODELTRAIL_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Bearer token (default: read from --token-file).
    #[arg(long, env = "MODELTRAIL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, default_value = "modeltrail-data/admin.token")]
    token_file: PathBuf,
    /// Also write the c2sp tlog-proof receipt to this file.
    #[arg(long)]
    proof_out: Option<PathBuf>,
    /// The event JSON file, or - for standard input.
    file: String,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.cmd {
        Cmd::Serve(a) => rt.block_on(serve(a)),
        Cmd::Keygen { origin } => keygen(&origin),
        Cmd::Submit(a) => rt.block_on(submit(a)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(a: ServeArgs) -> Result<(), String> {
    let cfg = ServerConfig::resolve(Overrides {
        config: a.config,
        listen: a.listen,
        data_dir: a.data_dir,
        origin: a.origin,
        queue_depth: a.queue_depth,
        max_batch: a.max_batch,
        max_page: a.max_page,
    })
    .map_err(|e| e.to_string())?;
    let data = server::prepare_data_dir(&cfg).map_err(|e| e.to_string())?;
    if data.created_key {
        eprintln!(
            "created a new signing key in {}",
            cfg.data_dir.join(server::KEY_FILE).display()
        );
    }
    if data.created_token {
        eprintln!(
            "created the admin token in {} (owner-only)",
            data.token_path.display()
        );
    } else {
        eprintln!("admin token: {}", data.token_path.display());
    }
    let running = server::start(&cfg, &data)
        .await
        .map_err(|e| e.to_string())?;
    // Printed on stdout so that scripts can read the address and key.
    println!("origin: {}", cfg.origin);
    println!("verifier key: {}", data.signer.verifier());
    println!("listening on http://{}", running.addr);
    tracing::info!(addr = %running.addr, origin = %cfg.origin, "serving");
    server::shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await.map_err(|e| e.to_string())
}

fn keygen(origin: &str) -> Result<(), String> {
    let name = KeyName::new(origin).map_err(|e| e.to_string())?;
    let k = SignerKey::generate(name).map_err(|e| e.to_string())?;
    println!("{}", k.encode_secret());
    println!("{}", k.verifier());
    Ok(())
}

async fn submit(a: SubmitArgs) -> Result<(), String> {
    let body = if a.file == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| e.to_string())?;
        b
    } else {
        std::fs::read(&a.file).map_err(|e| format!("{}: {e}", a.file))?
    };
    let token = match a.token {
        Some(t) => t,
        None => std::fs::read_to_string(&a.token_file)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("no --token given and {}: {e}", a.token_file.display()))?,
    };
    let client = Client::new(&a.server, Some(token)).map_err(|e| e.to_string())?;
    let (_, receipt) = client.submit(body).await.map_err(|e| e.to_string())?;
    if let Some(path) = a.proof_out {
        let proof = receipt["tlog_proof"]
            .as_str()
            .ok_or("receipt has no tlog_proof")?;
        std::fs::write(&path, proof).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&receipt).map_err(|e| e.to_string())?
    );
    Ok(())
}
