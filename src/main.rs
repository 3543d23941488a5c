//! The `modeltrail` command: arguments in, one call into the library
//! ([`modeltrail::cli`], [`modeltrail::server`]), its result printed.

use clap::{Args, Parser, Subcommand};
use modeltrail::auditor::AuditError;
use modeltrail::cli;
use modeltrail::client::Client;
use modeltrail::monitor::{Monitor, Outcome};
use modeltrail::server::{self, Overrides, ServerConfig};
use modeltrail::verify::Policy;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

// The server allocates many small buffers per request; mimalloc handles
// that pattern with far less time in the allocator than the system malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` that never panics: a closed stdout (a reader that went away,
/// `| head`) loses the output, not the command's work or its exit code.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that never panics (see [`out`]).
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

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
    /// Publish the log's checkpoint, hash tiles and entry bundles to an
    /// S3-compatible bucket (credentials from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY), verified first; the checkpoint is written
    /// last. Exit 0 in sync, 1 verification failed, 2 bad input, 3 the log
    /// or the bucket could not be reached.
    Mirror(MirrorArgs),
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
    /// Rewrite the store's tables in the current on-disk format (server
    /// stopped), e.g. after an upgrade that changed it, with the one-value
    /// tiles that proofs read, which a log written by an earlier version
    /// lacks. Exit 0 done.
    Compact {
        /// The server's data directory.
        #[arg(long, env = "MODELTRAIL_DATA_DIR", default_value = server::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Signed attestations: make a service's Ed25519 key, sign events.
    Sign {
        #[command(subcommand)]
        what: SignCmd,
    },
    /// Content-addressed artifacts: upload a file under its SHA-256, or
    /// download one and check it. Exit 0 done, 1 the bytes do not match
    /// the digest, 2 bad input, 3 could not reach the server.
    Artifact {
        #[command(subcommand)]
        what: ArtifactCmd,
    },
    /// Ask the server to re-hash every artifact its registry names, log a
    /// `reconcile` event and print the report (JSON). Exit 0 clean, 1
    /// missing or mismatched blobs, 2 refused, 3 unreachable.
    Reconcile {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        what: Option<ReconcileCmd>,
    },
    /// Reveal the private value an entry commits to (auditor or admin
    /// token; the reveal is logged), as JSON that `verify reveal` checks
    /// offline. Exit 0 written, 2 refused or nothing to reveal (an erased
    /// value is a 404), 3 could not reach the server.
    Reveal {
        #[command(flatten)]
        conn: ConnArgs,
        /// The entry's index.
        #[arg(long)]
        index: u64,
        /// Where in the event: actor.id or metadata.<path>.
        #[arg(long)]
        field: String,
        /// Write the reveal here (default: standard output).
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Erase a data subject's private value (admin token): the value and
    /// its salt are deleted, the erasure is logged, every proof stays
    /// valid. Exit 0 erased, 2 refused or unknown subject, 3 unreachable.
    Erase {
        #[command(flatten)]
        conn: ConnArgs,
        /// kind:value, for example user:alice or email:bob@example.com.
        #[arg(long)]
        subject: String,
    },
    /// Auditor reports, each verified before it is written. Exit 0
    /// written, 1 fails verification, 2 bad input or unknown version, 3
    /// could not reach the server.
    Report {
        #[command(subcommand)]
        what: ReportCmd,
    },
}

#[derive(Subcommand)]
enum ReconcileCmd {
    /// Compare an MLflow tracking server's registered models, versions,
    /// aliases and stages (its REST API) with the log's state and print
    /// every difference (JSON). Exit 0 they agree, 1 differences, 2 bad
    /// input or refused, 3 unreachable.
    Mlflow {
        #[command(flatten)]
        conn: ConnArgs,
        /// The MLflow tracking server.
        #[arg(long)]
        tracking_uri: String,
        /// An alias and the stage it stands for (champion=production);
        /// repeat. As in the server's `[integrations.mlflow.aliases]`.
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Log a `reconcile` event with the counts and the tree size
        /// compared (admin or auditor token).
        #[arg(long)]
        append: bool,
    },
}

#[derive(Subcommand)]
enum ArtifactCmd {
    /// Upload FILE (submitter role); prints its digest.
    Put {
        #[command(flatten)]
        conn: ConnArgs,
        file: PathBuf,
    },
    /// Download DIGEST (sha256:<hex> or <hex>) into FILE, keeping it only
    /// if it hashes to DIGEST.
    Get {
        #[command(flatten)]
        conn: ConnArgs,
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        digest: String,
    },
}

/// Where the server is and the token to use.
#[derive(Args, Clone)]
struct ConnArgs {
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
}

impl ConnArgs {
    fn client(&self) -> Result<Client, AuditError> {
        let token = match &self.token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(&self.token_file)
                .map(|t| t.trim().to_string())
                .map_err(|e| {
                    modeltrail::verify::Failure::Malformed(format!(
                        "no --token given and {}: {e}",
                        self.token_file.display()
                    ))
                })?,
        };
        Ok(Client::new(&self.server, Some(token))?)
    }
}

fn bar(template: &str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(0);
    b.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b
}

/// Run an artifact command, print its result, and give the exit code.
fn artifact(rt: &tokio::runtime::Runtime, what: ArtifactCmd) -> ExitCode {
    let r: Result<String, AuditError> = match what {
        ArtifactCmd::Put { conn, file } => rt.block_on(async {
            let client = conn.client()?;
            let b = bar("{msg:10} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}");
            let b2 = b.clone();
            let progress = std::sync::Arc::new(move |what: &str, done: u64, total: u64| {
                b2.set_message(what.to_string());
                b2.set_length(total);
                b2.set_position(done);
            });
            let r = cli::artifact_put(&client, &file, progress).await;
            b.finish_and_clear();
            let stored = r?;
            Ok(format!(
                "{} ({} bytes, {})",
                stored.digest,
                stored.size,
                if stored.created {
                    "stored"
                } else {
                    "already stored"
                }
            ))
        }),
        ArtifactCmd::Get { conn, out, digest } => rt.block_on(async {
            let digest = cli::digest_arg(&digest)?;
            let client = conn.client()?;
            let b = bar("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}");
            let progress = |done: u64, total: Option<u64>| {
                if let Some(t) = total {
                    b.set_length(t);
                }
                b.set_position(done);
            };
            let r = cli::artifact_get(&client, &digest, &out, &progress).await;
            b.finish_and_clear();
            Ok(format!(
                "sha256:{digest}: {} bytes, verified, in {}",
                r?,
                out.display()
            ))
        }),
    };
    match r {
        Ok(line) => {
            out!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAIL: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

#[derive(Subcommand)]
enum ReportCmd {
    /// The approval chain of a model version: registration, attestations,
    /// approvals, rejections, stage changes, denials and deployments, each
    /// with its inclusion proof against one signed checkpoint.
    ApprovalChain {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// json (verifiable offline with `verify report`) or csv.
        #[arg(long, default_value = "json", value_parser = ["json", "csv"])]
        format: String,
        /// Write the report here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The model version, name:version (e.g. fraud:v3).
        model_version: String,
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
    /// Cosignatures older than this many seconds do not count.
    #[arg(long)]
    max_cosignature_age: Option<u64>,
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
    /// Verify a saved reveal offline: the entry's receipt, the commitment
    /// in the event, and that the value and salt open it.
    Reveal {
        #[command(flatten)]
        trust: TrustArgs,
        /// The reveal file (`modeltrail reveal -o`).
        reveal: PathBuf,
    },
    /// Verify a saved approval-chain report (JSON) offline: the
    /// checkpoint, every event's inclusion proof, and every summary.
    Report {
        #[command(flatten)]
        trust: TrustArgs,
        /// The report file.
        report: PathBuf,
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
struct MirrorArgs {
    /// The log to mirror.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    #[command(flatten)]
    trust: TrustArgs,
    /// The bucket's name.
    #[arg(long)]
    bucket: String,
    /// Keys start with this (`mylog/`).
    #[arg(long, default_value = "")]
    prefix: String,
    /// An S3-compatible endpoint (http://127.0.0.1:9000); AWS if absent.
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long)]
    region: Option<String>,
    /// Allow a plain-HTTP endpoint.
    #[arg(long)]
    allow_http: bool,
    /// Sync once and exit.
    #[arg(long)]
    once: bool,
    /// Seconds between syncs.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Print every object written or deleted.
    #[arg(long)]
    verbose: bool,
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
    #[command(flatten)]
    conn: ConnArgs,
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

type Failed = Box<dyn std::error::Error>;

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
    let result: Result<(), Failed> = match cli.cmd {
        Cmd::Serve(a) => rt.block_on(serve(a)),
        Cmd::Keygen { origin, cosigner } => cli::keygen(&origin, cosigner)
            .map(|(secret, vkey)| out!("{secret}\n{vkey}"))
            .map_err(Into::into),
        Cmd::Submit(a) => rt.block_on(submit(a)),
        Cmd::Verify { what } => return finish(rt.block_on(verify(what))),
        Cmd::Monitor(a) => return rt.block_on(monitor(a)),
        Cmd::Mirror(a) => return rt.block_on(mirror(a)),
        Cmd::Witness(a) => rt.block_on(witness(a)),
        Cmd::Sign { what } => sign(what),
        Cmd::Reindex { data_dir } => return reindex(&data_dir),
        Cmd::Compact { data_dir } => return compact(&data_dir),
        Cmd::Artifact { what } => return artifact(&rt, what),
        Cmd::Reconcile {
            what:
                Some(ReconcileCmd::Mlflow {
                    conn,
                    tracking_uri,
                    aliases,
                    append,
                }),
            ..
        } => {
            let r = rt.block_on(async {
                let mut map = std::collections::BTreeMap::new();
                for a in &aliases {
                    let stage = a
                        .split_once('=')
                        .and_then(|(alias, st)| {
                            Some((alias, modeltrail::registry::Stage::parse(st)?))
                        })
                        .ok_or_else(|| {
                            AuditError::from(modeltrail::verify::Failure::Malformed(format!(
                                "--alias {a:?}: use ALIAS=STAGE (champion=production)"
                            )))
                        })?;
                    map.insert(stage.0.to_string(), stage.1);
                }
                cli::reconcile_mlflow(&conn.client()?, &tracking_uri, &map, append).await
            });
            return print_report(r);
        }
        Cmd::Reconcile { conn, what: None } => {
            let r = rt.block_on(async { cli::reconcile(&conn.client()?).await });
            return print_report(r);
        }
        Cmd::Reveal {
            conn,
            index,
            field,
            out,
        } => {
            let r = rt.block_on(async { cli::reveal(&conn.client()?, index, &field).await });
            return match r.and_then(|r| {
                let text = serde_json::to_string_pretty(&r).map_err(|e| {
                    AuditError::from(modeltrail::verify::Failure::Malformed(e.to_string()))
                })?;
                match &out {
                    // A revealed value is personal data: owner-only.
                    Some(path) => modeltrail::fsutil::write_secret(path, &format!("{text}\n"))
                        .map_err(|e| {
                            AuditError::from(modeltrail::verify::Failure::Malformed(e.to_string()))
                        })?,
                    None => out!("{text}"),
                }
                Ok(())
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("FAIL: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            };
        }
        Cmd::Erase { conn, subject } => {
            let r = rt.block_on(async { cli::erase(&conn.client()?, &subject).await });
            return match r {
                Ok(e) => {
                    out!(
                        "erased the {} value committed to as {}; logged at entry {}",
                        e.kind,
                        e.commitment,
                        e.erase_index
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("FAIL: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            };
        }
        Cmd::Report {
            what:
                ReportCmd::ApprovalChain {
                    server,
                    trust,
                    format,
                    out,
                    model_version,
                },
        } => {
            let run = async {
                let p = policy(&trust)?;
                let client = Client::new(&server, None)?;
                cli::report_approval_chain(&client, &p, &model_version, format == "csv").await
            };
            return match rt.block_on(run) {
                Ok(text) => {
                    let written = match &out {
                        Some(f) => modeltrail::fsutil::write_atomic(f, text.as_bytes())
                            .map_err(|e| e.to_string()),
                        None => {
                            out_raw!("{text}");
                            Ok(())
                        }
                    };
                    match written {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(e) => {
                            eprintln!("error: {e}");
                            ExitCode::from(2)
                        }
                    }
                }
                Err(e) => {
                    eprintln!("FAIL: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            };
        }
        Cmd::Trace {
            server,
            trust,
            bundle,
            kind,
            id,
        } => {
            let run = async {
                let p = policy(&trust)?;
                let client = Client::new(&server, None)?;
                let t = cli::fetch_trace(&client, &p, &kind, &id, bundle.as_deref()).await?;
                out_raw!("{}", modeltrail::trace::render(&t.bundle));
                Ok(cli::trace_summary(&t))
            };
            return finish(rt.block_on(run));
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(a: ServeArgs) -> Result<(), Failed> {
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
    })?;
    let data = server::prepare_data_dir(&cfg)?;
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
    let running = server::start(&cfg, &data).await?;
    // Printed on stdout so that scripts can read the address and key.
    out!("origin: {}", cfg.origin);
    out!("verifier key: {}", data.signer.verifier());
    out!("listening on http://{}", running.addr);
    tracing::info!(addr = %running.addr, origin = %cfg.origin, "serving");
    server::shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(running.stop().await?)
}

async fn witness(a: WitnessArgs) -> Result<(), Failed> {
    let logs = a
        .logs
        .iter()
        .map(|k| cli::read_key(k))
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
    out!("witness key: {}", running.witness.verifier());
    for o in running.witness.origins() {
        out!("witnessing: {o}");
    }
    out!("listening on http://{}", running.addr);
    tracing::info!(addr = %running.addr, "witnessing");
    server::shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(running.stop().await?)
}

fn compact(data_dir: &std::path::Path) -> ExitCode {
    let started = std::time::Instant::now();
    match cli::compact(data_dir) {
        Ok((before, after)) => {
            out!(
                "compacted: {} of tables before, {} after, in {:.1} s",
                indicatif::HumanBytes(before),
                indicatif::HumanBytes(after),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn reindex(data_dir: &std::path::Path) -> ExitCode {
    match cli::reindex(data_dir) {
        Ok(r) => {
            out!(
                "lineage index: {}",
                if r.lineage_repaired == 0 {
                    "complete".to_string()
                } else {
                    format!(
                        "{} keys were missing and have been written",
                        r.lineage_repaired
                    )
                }
            );
            out!(
                "{}: {} model versions and {} tokens from {} entries",
                match r.identical {
                    Some(true) => "identical",
                    Some(false) => "differed, replaced",
                    None => "built",
                },
                r.rebuilt.registry.versions.len(),
                r.rebuilt.access.tokens().len(),
                r.rebuilt.indexed
            );
            if r.identical != Some(false) && r.lineage_repaired == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn sign(what: SignCmd) -> Result<(), Failed> {
    match what {
        SignCmd::Keygen { out } => out!("{}", cli::sign_keygen(&out)?),
        SignCmd::Event { key, file } => out!("{}", cli::sign_event(&key, &file)?),
    }
    Ok(())
}

async fn submit(a: SubmitArgs) -> Result<(), Failed> {
    let body = cli::read_input(&a.file)?;
    let client = a.conn.client().map_err(|e| e.to_string())?;
    let receipt = cli::submit(
        &client,
        body,
        a.witnessed,
        a.proof_out.as_deref(),
        a.event_out.as_deref(),
    )
    .await?;
    if a.witnessed && receipt.witnessed != Some(true) {
        eprintln!("warning: no cosigned checkpoint covered the event in time; the receipt is signed by the log only");
    }
    out!("{}", serde_json::to_string_pretty(&receipt)?);
    Ok(())
}

fn policy(t: &TrustArgs) -> Result<Policy, AuditError> {
    Ok(cli::policy(
        &t.vkey,
        &t.witnesses,
        t.min_witnesses,
        t.max_cosignature_age,
    )?)
}

/// Print a reconciliation report as JSON: exit 0 clean, 1 differences,
/// else the error's code.
fn print_report(r: Result<(impl serde::Serialize, bool), AuditError>) -> ExitCode {
    match r {
        Ok((report, clean)) => {
            match serde_json::to_string_pretty(&report) {
                Ok(t) => out!("{t}"),
                Err(e) => eprintln!("error: {e}"),
            }
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("FAIL: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Print the outcome on one line and turn it into the exit code.
fn finish(r: Result<String, AuditError>) -> ExitCode {
    match r {
        Ok(msg) => {
            out!("OK: {msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            out!("FAIL: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

async fn verify(what: VerifyCmd) -> Result<String, AuditError> {
    let client = |server: &str| Client::new(server, None).map_err(AuditError::Fetch);
    match what {
        VerifyCmd::Receipt {
            trust,
            event,
            receipt,
        } => cli::verify_receipt(&policy(&trust)?, &event, &receipt),
        VerifyCmd::Inclusion {
            server,
            trust,
            index,
            event,
        } => {
            cli::verify_inclusion(&client(&server)?, &policy(&trust)?, index, event.as_deref())
                .await
        }
        VerifyCmd::Consistency { server, trust, old } => {
            cli::verify_consistency(&client(&server)?, &policy(&trust)?, &old).await
        }
        VerifyCmd::Trace { trust, bundle } => {
            let t = cli::verify_trace(&policy(&trust)?, &bundle)?;
            out_raw!("{}", modeltrail::trace::render(&t.bundle));
            Ok(cli::trace_summary(&t))
        }
        VerifyCmd::Report { trust, report } => cli::verify_report(&policy(&trust)?, &report),
        VerifyCmd::Reveal { trust, reveal } => cli::verify_reveal(&policy(&trust)?, &reveal),
        VerifyCmd::Signature { event, public_key } => cli::verify_signature(&event, &public_key),
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
            let r = cli::verify_log(&client(&server)?, &p, &progress).await;
            bar.finish_and_clear();
            r
        }
    }
}

async fn mirror(a: MirrorArgs) -> ExitCode {
    let cfg = modeltrail::artifacts::BucketConfig {
        bucket: a.bucket.clone(),
        endpoint: a.endpoint.clone(),
        region: a.region.clone(),
        prefix: a.prefix.clone(),
        allow_http: a.allow_http,
    };
    let m = match (policy(&a.trust), Client::new(&a.server, None)) {
        (Ok(policy), Ok(client)) => match modeltrail::mirror::Mirror::new(client, policy, &cfg) {
            Ok(m) => m,
            Err(e) => {
                out!("FAIL: {e}");
                return ExitCode::from(e.exit_code() as u8);
            }
        },
        (Err(f), _) => return finish(Err(f)),
        (_, Err(e)) => return finish(Err(e.into())),
    };
    let verbose = a.verbose;
    let report = move |name: &str| {
        if verbose {
            out!("{name}");
        }
    };
    loop {
        match m.sync(&report).await {
            Ok(s) if s.new_size == s.old_size => out!("OK: the bucket holds tree size {}", s.new_size),
            Ok(s) => out!(
                "OK: tree size {} published (from {}): {} objects written, {} partial tiles deleted",
                s.new_size,
                s.old_size,
                s.uploaded,
                s.deleted
            ),
            Err(e) => {
                out!("FAIL: {e}");
                if a.once {
                    return ExitCode::from(e.exit_code() as u8);
                }
            }
        }
        if a.once {
            return ExitCode::SUCCESS;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(a.interval.max(1))) => {}
            _ = server::shutdown_signal() => return ExitCode::SUCCESS,
        }
    }
}

async fn monitor(a: MonitorArgs) -> ExitCode {
    let m = match (policy(&a.trust), Client::new(&a.server, None)) {
        (Ok(policy), Ok(client)) => Monitor {
            client,
            policy,
            state: a.state.clone(),
        },
        (Err(f), _) => return finish(Err(f)),
        (_, Err(e)) => return finish(Err(e.into())),
    };
    loop {
        let outcome = match m.check().await {
            Ok(o) => o,
            Err(f) => return finish(Err(f.into())),
        };
        let code = match &outcome {
            Outcome::Started { size } => {
                out!(
                    "OK: first checkpoint, tree size {size}, stored in {}",
                    a.state.display()
                );
                0
            }
            Outcome::Consistent { old_size, new_size } => {
                out!("OK: tree size {new_size} is consistent with {old_size}");
                0
            }
            Outcome::Alarm { reason, evidence } => {
                out!("ALARM: {reason}; evidence in {}", evidence.display());
                if let Some(w) = &a.webhook {
                    modeltrail::monitor::notify(w, &a.server, reason, evidence).await;
                }
                1
            }
            Outcome::Unreachable { error } => {
                out!("UNREACHABLE: {error}");
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
