//! The `modeltrail` command: each subcommand is a few lines over the library.

use clap::{Args, Parser, Subcommand};
use modeltrail::auditor::{self, AuditError};
use modeltrail::client::Client;
use modeltrail::monitor::{Monitor, Outcome};
use modeltrail::note::{KeyName, SignerKey, VerifierKey};
use modeltrail::server::{self, Overrides, ServerConfig};
use modeltrail::verify::{self, Failure, Policy};
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
        /// The key name: the log's origin, or the witness's name.
        #[arg(long)]
        origin: String,
        /// Make a witness cosigner key (signature type 0x04) instead of a log key.
        #[arg(long)]
        cosigner: bool,
    },
    /// Append an event (a JSON file, or - for stdin) and print the receipt.
    Submit(SubmitArgs),
    /// Verify receipts, proofs or a whole log. Exit 0 valid, 1 fails
    /// verification, 2 malformed input, 3 could not reach the server.
    Verify {
        #[command(subcommand)]
        what: VerifyCmd,
    },
    /// Watch a log's checkpoint and raise the alarm if it ever forks,
    /// shrinks or stops being consistent.
    Monitor(MonitorArgs),
    /// Run a witness (c2sp tlog-witness): cosign checkpoints of the given
    /// logs only if they extend the last one it cosigned.
    Witness(WitnessArgs),
    /// Trace an id back along its lineage (prediction → deployment → model
    /// version → run → dataset…), verify every proof and print the chain.
    Trace {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Save the verified bundle here, for `verify trace` later.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// The start's type, e.g. prediction.
        kind: String,
        /// The start's id.
        id: String,
    },
    /// Rebuild the registry's state from the log alone (server stopped) and
    /// report whether it matches the stored one. Exit 0 identical, 1 not.
    Reindex {
        /// The server's data directory.
        #[arg(long, env = "MODELTRAIL_DATA_DIR", default_value = server::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Signed attestations: make a service's Ed25519 key, sign events.
    Sign {
        #[command(subcommand)]
        what: SignCmd,
    },
}

#[derive(Subcommand)]
enum SignCmd {
    /// Make an Ed25519 key pair: writes the private key (base64 seed) to
    /// FILE, owner-only, and prints the public key to register.
    Keygen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign an event (it must have its event_id) and print it with
    /// integrity.signature set.
    Event {
        /// The private key file made by `sign keygen`.
        #[arg(long)]
        key: PathBuf,
        /// The event JSON file, or - for standard input.
        file: String,
    },
}

#[derive(Args)]
struct WitnessArgs {
    /// Address to listen on.
    #[arg(long, env = "MODELTRAIL_WITNESS_LISTEN", default_value = modeltrail::witness::service::DEFAULT_LISTEN)]
    listen: String,
    /// Where the cosigner key and the per-log state live.
    #[arg(long, env = "MODELTRAIL_WITNESS_DATA_DIR", default_value = modeltrail::witness::service::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The witness's name (its key name), used when the key is made.
    #[arg(long)]
    name: Option<String>,
    /// A log to witness: its verifier key, or a file holding one; repeat.
    #[arg(long = "log", required = true)]
    logs: Vec<String>,
}

/// Whom to trust. Keys are given as verifier key strings or as files
/// holding one.
#[derive(Args, Clone)]
struct TrustArgs {
    /// The log's verifier key (its name is the origin).
    #[arg(long)]
    vkey: String,
    /// A witness cosigner verifier key; repeat for several.
    #[arg(long = "witness")]
    witnesses: Vec<String>,
    /// How many of the witnesses must have cosigned.
    #[arg(long, default_value_t = 0)]
    min_witnesses: usize,
}

#[derive(Subcommand)]
enum VerifyCmd {
    /// Verify an offline receipt (.tlog-proof) for an event, with no network.
    Receipt {
        #[command(flatten)]
        trust: TrustArgs,
        /// The event JSON the receipt is for.
        #[arg(long)]
        event: PathBuf,
        /// The receipt file.
        receipt: PathBuf,
    },
    /// Prove that an entry is in the log's current signed checkpoint.
    Inclusion {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// The entry's index.
        #[arg(long, conflicts_with = "event", required_unless_present = "event")]
        index: Option<u64>,
        /// Or the event JSON, found by its leaf hash.
        #[arg(long)]
        event: Option<PathBuf>,
    },
    /// Prove that the log's current checkpoint extends an older one.
    Consistency {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// A signed checkpoint saved earlier.
        #[arg(long)]
        old: PathBuf,
    },
    /// Verify a saved trace bundle offline: the checkpoint, every entry's
    /// inclusion proof, and the links between them.
    Trace {
        #[command(flatten)]
        trust: TrustArgs,
        /// The bundle file.
        bundle: PathBuf,
    },
    /// Check an event's integrity.signature against a service's public
    /// key (base64, or a file holding it), offline.
    Signature {
        /// The event JSON, as stored in the log.
        #[arg(long)]
        event: PathBuf,
        /// The service's registered Ed25519 public key.
        #[arg(long)]
        public_key: String,
    },
    /// Audit the whole log: download every tile and entry, recompute every
    /// hash and the root, and check them against the signed checkpoint.
    Log {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[command(flatten)]
        trust: TrustArgs,
    },
}

#[derive(Args)]
struct MonitorArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    #[command(flatten)]
    trust: TrustArgs,
    /// Where the last verified checkpoint is kept.
    #[arg(long)]
    state: PathBuf,
    /// Seconds between checks.
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// Check once and exit: 0 consistent, 1 alarm, 2 bad input, 3 unreachable.
    #[arg(long)]
    once: bool,
    /// POST each alarm as JSON to this URL.
    #[arg(long)]
    webhook: Option<String>,
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
    /// A witness to ask for cosignatures, as URL,VKEY (the key string or a
    /// file holding it); repeat for several.
    #[arg(long = "witness")]
    witnesses: Vec<String>,
    /// Cosignatures needed before a checkpoint is published (default 1).
    #[arg(long)]
    witness_threshold: Option<usize>,
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
    /// Also write the event as the log stored it (with its event_id, in
    /// canonical form) to this file: what `verify receipt --event` needs.
    #[arg(long)]
    event_out: Option<PathBuf>,
    /// Wait (bounded by the server) for a checkpoint cosigned by the log's
    /// witnesses, so that the receipt carries their cosignatures.
    #[arg(long)]
    witnessed: bool,
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
        Cmd::Keygen { origin, cosigner } => keygen(&origin, cosigner),
        Cmd::Submit(a) => rt.block_on(submit(a)),
        Cmd::Verify { what } => return rt.block_on(verify(what)),
        Cmd::Monitor(a) => return rt.block_on(monitor(a)),
        Cmd::Witness(a) => rt.block_on(witness(a)),
        Cmd::Sign { what } => sign(what),
        Cmd::Reindex { data_dir } => return reindex(&data_dir),
        Cmd::Trace {
            server,
            trust,
            bundle,
            kind,
            id,
        } => return rt.block_on(trace(server, trust, bundle, kind, id)),
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
        witnesses: a.witnesses,
        witness_threshold: a.witness_threshold,
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

async fn witness(a: WitnessArgs) -> Result<(), String> {
    let logs = a
        .logs
        .iter()
        .map(|k| read_key(k).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let listen = a
        .listen
        .parse()
        .map_err(|_| format!("listen address {:?} is not IP:PORT", a.listen))?;
    let opts = modeltrail::witness::service::WitnessOptions {
        listen,
        data_dir: a.data_dir.clone(),
        name: a.name,
        logs,
    };
    let running = modeltrail::witness::service::start(&opts).await?;
    if running.created_key {
        eprintln!(
            "created a new cosigner key in {}",
            a.data_dir
                .join(modeltrail::witness::service::KEY_FILE)
                .display()
        );
    }
    println!("witness key: {}", running.witness.verifier());
    for o in running.witness.origins() {
        println!("witnessing: {o}");
    }
    println!("listening on http://{}", running.addr);
    tracing::info!(addr = %running.addr, "witnessing");
    server::shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await.map_err(|e| e.to_string())
}

async fn trace(
    server: String,
    trust: TrustArgs,
    bundle: Option<PathBuf>,
    kind: String,
    id: String,
) -> ExitCode {
    let run = async {
        let p = policy(&trust)?;
        let client = Client::new(&server, None).map_err(AuditError::Fetch)?;
        let path = format!("/v1/trace/{}/{}", url_segment(&kind), url_segment(&id));
        let bytes = client.get_bytes(&path).await.map_err(|e| {
            if e.is_client_error() {
                AuditError::from(Failure::Malformed(e.to_string()))
            } else {
                AuditError::Fetch(e)
            }
        })?;
        let t = modeltrail::trace::verify(&p, &bytes)?;
        print!("{}", modeltrail::trace::render(&t.bundle));
        if let Some(f) = &bundle {
            std::fs::write(f, &bytes)
                .map_err(|e| Failure::Malformed(format!("{}: {e}", f.display())))?;
        }
        Ok::<String, AuditError>(trace_summary(&t))
    };
    finish(run.await)
}

/// The one-line result of a verified trace.
fn trace_summary(t: &modeltrail::trace::TraceCheck) -> String {
    format!(
        "{} entries on {} nodes, each in the signed tree of size {}{}{}",
        t.bundle.entries.len(),
        t.bundle.nodes.len(),
        t.tree_size,
        witnessed(&t.witnesses),
        if t.bundle.truncated {
            " (truncated)"
        } else {
            ""
        }
    )
}

/// Percent-encode a path segment (ids may hold any printable character).
fn url_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn reindex(data_dir: &std::path::Path) -> ExitCode {
    use modeltrail::registry::service;
    use modeltrail::store::{RocksOptions, RocksStore};
    let run = || -> Result<bool, String> {
        let store = RocksStore::open(&data_dir.join("db"), &RocksOptions::default())
            .map_err(|e| format!("{}: {e} (is the server still running?)", data_dir.display()))?;
        let missing = service::repair_lineage(&store)?;
        println!(
            "lineage index: {}",
            if missing == 0 {
                "complete".to_string()
            } else {
                format!("{missing} keys were missing and have been written")
            }
        );
        let old = service::stored(&store)?;
        let new = service::rebuild(&store)?;
        // The stored snapshot may cover fewer entries (those after the last
        // registry event change nothing): compare the states.
        let same = old.as_ref().is_some_and(|o| o.state == new.state);
        service::save(&store, &new)?;
        println!(
            "{}: {} model versions from {} entries",
            if same {
                "identical"
            } else if old.is_none() {
                "built"
            } else {
                "differed, replaced"
            },
            new.state.versions.len(),
            new.indexed
        );
        Ok((same || old.is_none()) && missing == 0)
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn sign(what: SignCmd) -> Result<(), String> {
    use base64::Engine;
    use modeltrail::audit::signature;
    let b64 = base64::engine::general_purpose::STANDARD;
    match what {
        SignCmd::Keygen { out } => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            server::write_secret(&out, &format!("{}\n", b64.encode(seed)))
                .map_err(|e| e.to_string())?;
            println!("{}", b64.encode(key.verifying_key().as_bytes()));
            Ok(())
        }
        SignCmd::Event { key, file } => {
            let seed = server::read_secret(&key).map_err(|e| e.to_string())?;
            let seed: [u8; 32] = b64
                .decode(seed.trim())
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| format!("{}: not base64 of a 32-byte key", key.display()))?;
            let body = if file == "-" {
                let mut b = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut b)
                    .map_err(|e| e.to_string())?;
                b
            } else {
                std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?
            };
            let value = modeltrail::audit::event::parse_strict(&body)
                .map_err(|e| format!("{file}: {e}"))?;
            let signed = signature::sign(&value, &ed25519_dalek::SigningKey::from_bytes(&seed))
                .map_err(|e| e.to_string())?;
            println!("{signed}");
            Ok(())
        }
    }
}

fn keygen(origin: &str, cosigner: bool) -> Result<(), String> {
    let name = KeyName::new(origin).map_err(|e| e.to_string())?;
    let k = if cosigner {
        SignerKey::generate_cosigner(name)
    } else {
        SignerKey::generate(name)
    }
    .map_err(|e| e.to_string())?;
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
    let (_, receipt) = client
        .submit_with(body, a.witnessed)
        .await
        .map_err(|e| e.to_string())?;
    if a.witnessed && receipt["witnessed"] != serde_json::Value::Bool(true) {
        eprintln!("warning: no cosigned checkpoint covered the event in time; the receipt is signed by the log only");
    }
    if let Some(path) = a.proof_out {
        let proof = receipt["tlog_proof"]
            .as_str()
            .ok_or("receipt has no tlog_proof")?;
        std::fs::write(&path, proof).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = a.event_out {
        let event = serde_json::to_string(&receipt["event"]).map_err(|e| e.to_string())?;
        std::fs::write(&path, event).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&receipt).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// A key string, or a file holding one.
fn read_key(arg: &str) -> Result<VerifierKey, Failure> {
    let text = match std::fs::read_to_string(arg) {
        Ok(t) => t,
        Err(_) => arg.to_string(),
    };
    VerifierKey::parse(text.trim()).map_err(|e| Failure::Malformed(format!("{arg}: {e}")))
}

fn policy(t: &TrustArgs) -> Result<Policy, Failure> {
    let p = Policy {
        log_key: read_key(&t.vkey)?,
        witnesses: t
            .witnesses
            .iter()
            .map(|w| read_key(w))
            .collect::<Result<_, _>>()?,
        min_witnesses: t.min_witnesses,
    };
    p.check()?;
    Ok(p)
}

fn read_input(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Malformed(format!("{}: {e}", path.display())))
}

/// Print the outcome on one line and turn it into the exit code.
fn finish(r: Result<String, AuditError>) -> ExitCode {
    match r {
        Ok(msg) => {
            println!("OK: {msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAIL: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

async fn verify(what: VerifyCmd) -> ExitCode {
    finish(run_verify(what).await)
}

async fn run_verify(what: VerifyCmd) -> Result<String, AuditError> {
    let client = |server: &str| Client::new(server, None).map_err(AuditError::Fetch);
    match what {
        VerifyCmd::Receipt {
            trust,
            event,
            receipt,
        } => {
            let p = policy(&trust)?;
            let r = verify::receipt(&p, &read_input(&event)?, &read_input(&receipt)?)?;
            Ok(format!(
                "event is entry {} of {} (tree size {}, leaf {}){}",
                r.index,
                p.origin(),
                r.checkpoint.checkpoint.size,
                hex::encode(r.leaf_hash),
                witnessed(&r.checkpoint.witnesses)
            ))
        }
        VerifyCmd::Inclusion {
            server,
            trust,
            index,
            event,
        } => {
            let p = policy(&trust)?;
            let leaf = match event {
                Some(f) => Some(verify::event_leaf(&read_input(&f)?)?.1),
                None => None,
            };
            let (cp, index, leaf) = auditor::inclusion(&client(&server)?, &p, index, leaf).await?;
            Ok(format!(
                "entry {index} (leaf {}) is in the signed tree of size {}{}",
                hex::encode(leaf),
                cp.checkpoint.size,
                witnessed(&cp.witnesses)
            ))
        }
        VerifyCmd::Consistency { server, trust, old } => {
            let p = policy(&trust)?;
            let old = p.open_checkpoint(&read_input(&old)?)?;
            let c = client(&server)?;
            let new = auditor::checkpoint(&c, &p).await?;
            auditor::prove_consistency(&c, &old.checkpoint, &new.checkpoint).await?;
            Ok(format!(
                "the tree of size {} extends the one of size {}",
                new.checkpoint.size, old.checkpoint.size
            ))
        }
        VerifyCmd::Trace { trust, bundle } => {
            let p = policy(&trust)?;
            let t = modeltrail::trace::verify(&p, &read_input(&bundle)?)?;
            print!("{}", modeltrail::trace::render(&t.bundle));
            Ok(trace_summary(&t))
        }
        VerifyCmd::Signature { event, public_key } => {
            use modeltrail::audit::signature::{self, SignatureError};
            let text = std::fs::read_to_string(&public_key).unwrap_or(public_key.clone());
            let key = signature::parse_public_key(text.trim())
                .map_err(|e| Failure::Malformed(e.to_string()))?;
            let value = modeltrail::audit::event::parse_strict(&read_input(&event)?)
                .map_err(|e| Failure::Malformed(format!("event: {e}")))?;
            match signature::verify(&value, &key) {
                Ok(()) => Ok(format!(
                    "the event {} is signed by this key",
                    value["event_id"].as_str().unwrap_or("?")
                )),
                Err(SignatureError::Invalid) => {
                    Err(Failure::Invalid(SignatureError::Invalid.to_string()).into())
                }
                Err(e) => Err(Failure::Malformed(e.to_string()).into()),
            }
        }
        VerifyCmd::Log { server, trust } => {
            let p = policy(&trust)?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} entries {per_sec} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let progress = |done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
            };
            let a = auditor::audit_log(&client(&server)?, &p, &progress).await;
            bar.finish_and_clear();
            let a = a?;
            Ok(format!(
                "all {} entries and {} tiles hash to the signed root of {}{}",
                a.entries,
                a.tiles,
                p.origin(),
                witnessed(&a.checkpoint.witnesses)
            ))
        }
    }
}

fn witnessed(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(", cosigned by {}", names.join(", "))
    }
}

async fn monitor(a: MonitorArgs) -> ExitCode {
    let m = match (policy(&a.trust), Client::new(&a.server, None)) {
        (Ok(policy), Ok(client)) => Monitor {
            client,
            policy,
            state: a.state.clone(),
        },
        (Err(f), _) => return finish(Err(f.into())),
        (_, Err(e)) => return finish(Err(e.into())),
    };
    loop {
        let outcome = match m.check().await {
            Ok(o) => o,
            Err(f) => return finish(Err(f.into())),
        };
        let code = match &outcome {
            Outcome::Started { size } => {
                println!(
                    "OK: first checkpoint, tree size {size}, stored in {}",
                    a.state.display()
                );
                0
            }
            Outcome::Consistent { old_size, new_size } => {
                println!("OK: tree size {new_size} is consistent with {old_size}");
                0
            }
            Outcome::Alarm { reason, evidence } => {
                println!("ALARM: {reason}; evidence in {}", evidence.display());
                if let Some(w) = &a.webhook {
                    modeltrail::monitor::notify(w, &a.server, reason, evidence).await;
                }
                1
            }
            Outcome::Unreachable { error } => {
                println!("UNREACHABLE: {error}");
                3
            }
        };
        if a.once {
            return ExitCode::from(code);
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(a.interval.max(1))) => {}
            _ = server::shutdown_signal() => return ExitCode::SUCCESS,
        }
    }
}
