//! Running the log server: configuration (defaults < TOML file < environment
//! < flags), the data directory (RocksDB, signing key and admin token, the
//! secrets owner-only), and serving with graceful shutdown.

use crate::api::{self, ApiLimits, AppState};
use crate::fsutil::{self, FileError};
use crate::ledger::{Ledger, SnapshotPolicy};
use crate::log::{Log, LogConfig};
use crate::metrics::Metrics;
use crate::note::VerifierKey;
use crate::note::{KeyName, SignerKey};
use crate::serve::ConnLimits;
use crate::store::{RocksOptions, RocksStore, Store, UpperLevels, DEFAULT_MIN_LEVEL};
use crate::witness::collector::{Collector, CollectorConfig, WitnessSpec};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "modeltrail-data";
pub const DEFAULT_ORIGIN: &str = "localhost/modeltrail";
pub const KEY_FILE: &str = "log.key";
pub const VKEY_FILE: &str = "log.vkey";
pub const TOKEN_FILE: &str = "admin.token";

/// The optional TOML file. Every field is optional; unknown fields are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub origin: Option<String>,
    #[serde(default)]
    pub limits: FileLimits,
    pub witnessing: Option<FileWitnessing>,
    /// `[registry.staging]`, `[registry.production]`: the promotion gates.
    pub registry: Option<crate::registry::Policy>,
    /// `[artifacts]`: the blob store and its reconciliation.
    #[serde(default)]
    pub artifacts: FileArtifacts,
    /// `[read]`: who may read.
    #[serde(default)]
    pub read: FileRead,
    /// `[privacy]`: fields no event may carry.
    #[serde(default)]
    pub privacy: FilePrivacy,
    /// `[integrations.mlflow]`: MLflow's registry webhooks.
    #[serde(default)]
    pub integrations: FileIntegrations,
}

/// `[integrations]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIntegrations {
    pub mlflow: Option<FileMlflow>,
}

/// `[integrations.mlflow]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMlflow {
    /// The webhook's secret (as given to MLflow's `create_webhook`), or
    /// better `secret_file`: an owner-only file holding it.
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// An owner-only file holding the bearer token the events are appended
    /// with (a service principal with the submitter and deployer roles).
    /// Read at each delivery.
    pub token_file: PathBuf,
    /// Deliveries signed longer ago (or further ahead) than this are
    /// refused (default 300).
    pub max_age_secs: Option<u64>,
    /// MLflow alias → stage a promotion goes to (`champion =
    /// "production"`); other aliases are logged as `alias_set`.
    #[serde(default)]
    pub aliases: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for FileMlflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMlflow")
            .field("secret_file", &self.secret_file)
            .field("token_file", &self.token_file)
            .field("aliases", &self.aliases)
            .finish_non_exhaustive()
    }
}

/// `[integrations.mlflow]`, checked.
pub use crate::mlflow::WebhookSettings as MlflowConfig;

fn mlflow_config(m: &FileMlflow) -> Result<MlflowConfig, ServerError> {
    let secret = match (&m.secret, &m.secret_file) {
        (Some(s), None) => s.clone(),
        (None, Some(p)) => crate::fsutil::read_secret(p)?,
        _ => {
            return Err(ServerError::Config(
                "integrations.mlflow: give exactly one of secret and secret_file".into(),
            ))
        }
    };
    if secret.is_empty() {
        return Err(ServerError::Config(
            "integrations.mlflow: the secret is empty".into(),
        ));
    }
    let mut aliases = std::collections::BTreeMap::new();
    for (alias, stage) in &m.aliases {
        let st = crate::registry::Stage::parse(stage).ok_or_else(|| {
            ServerError::Config(format!(
                "integrations.mlflow.aliases: {stage:?} (for {alias:?}) is not a stage"
            ))
        })?;
        aliases.insert(alias.clone(), st);
    }
    Ok(MlflowConfig {
        secret: secret.into_bytes(),
        token_file: m.token_file.clone(),
        max_age: Duration::from_secs(m.max_age_secs.unwrap_or(300).max(1)),
        aliases,
    })
}

/// `[privacy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePrivacy {
    /// Metadata fields refused outright, as dotted paths
    /// (`metadata.customer_email`): an event carrying one is a 400
    /// (`pii_field`) and nothing is written.
    #[serde(default)]
    pub refuse: Vec<String>,
    /// Fields whose values are replaced in the leaf by salted commitments,
    /// each with the kind of data subject its values name:
    /// `"actor.id" = "user"` (user actors), `"metadata.customer_email" =
    /// "email"`. The values and salts are kept in the private store.
    #[serde(default)]
    pub commit: std::collections::BTreeMap<String, String>,
    /// Private values not used for this many days are erased (each
    /// erasure logged). None: kept until erased on request.
    #[serde(default)]
    pub retention_days: Option<u64>,
}

/// `[read]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRead {
    /// Reads need a token of any role, except `/checkpoint`, tiles and
    /// `/healthz` (default false: a public log).
    #[serde(default)]
    pub require_token: bool,
}

/// `[artifacts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileArtifacts {
    /// Largest blob accepted, in MiB (default 65536: 64 GiB).
    pub max_blob_mb: Option<u64>,
    /// Seconds between two reconciliations by the server (none if unset).
    pub reconcile_interval_secs: Option<u64>,
    /// A URL posted the reconciliation report (JSON) when it finds a
    /// missing or mismatched blob.
    pub webhook: Option<String>,
    /// `[artifacts.s3]`: keep blobs in this S3-compatible bucket instead
    /// of the data directory.
    pub s3: Option<crate::artifacts::BucketConfig>,
}

/// The artifact store's settings.
#[derive(Debug, Clone)]
pub struct ArtifactConfig {
    pub max_blob_bytes: u64,
    pub reconcile_interval: Option<Duration>,
    pub webhook: Option<String>,
    /// A bucket instead of `<data-dir>/artifacts`.
    pub bucket: Option<crate::artifacts::BucketConfig>,
}

/// `[witnessing]`: the witnesses asked to cosign each new checkpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWitnessing {
    /// Cosignatures needed before a checkpoint is published (default 1).
    pub threshold: Option<usize>,
    /// Least milliseconds between two rounds (default 1000).
    pub interval_ms: Option<u64>,
    /// Time limit of one witness request in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
    /// Longest an append with `?wait=witnessed` waits, ms (default 10000).
    pub wait_ms: Option<u64>,
    /// A PEM file of certificates: `https://` witnesses are then trusted
    /// only if their certificate chains to one of these (a private CA, or a
    /// witness's self-signed certificate). Without it, the system's roots.
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub witness: Vec<FileWitness>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWitness {
    /// The witness's submission prefix (`<url>/add-checkpoint` is posted to).
    pub url: String,
    /// Its cosigner verifier key.
    pub vkey: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub queue_depth: Option<usize>,
    pub max_batch: Option<usize>,
    pub max_page: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub block_cache_mb: Option<usize>,
    /// Leaf hashes gathered in memory before they go into the leaf-hash
    /// index in key order (default 16384).
    pub leaf_index_batch: Option<usize>,
    /// Least seconds between two snapshots of the derived state (default 10).
    pub snapshot_interval_secs: Option<u64>,
    /// Most MiB of entries queued for the sequencer (default 32).
    pub queue_mb: Option<usize>,
    /// Most appends being read, checked or committed at once (default 256).
    pub max_appends: Option<usize>,
    /// Most expensive reads (entry bundles, entry pages, search, traces,
    /// proofs of a version) at once (default 2).
    pub max_heavy_reads: Option<usize>,
    /// Most open connections (default 1024).
    pub max_connections: Option<usize>,
    /// Seconds a request's headers may take to arrive (default 10).
    pub header_timeout_secs: Option<u64>,
    /// Seconds a connection may stay silent (default 60).
    pub idle_timeout_secs: Option<u64>,
    /// Seconds requests in flight get to finish at shutdown (default 10).
    pub shutdown_grace_secs: Option<u64>,
}

/// Values given on the command line or in the environment (`None` = unset).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub origin: Option<String>,
    pub queue_depth: Option<usize>,
    pub max_batch: Option<usize>,
    pub max_page: Option<u64>,
    /// Witnesses as `URL,VKEY`; replace the file's list when given.
    pub witnesses: Vec<String>,
    pub witness_threshold: Option<usize>,
}

/// The largest `limits.leaf_index_batch`: about 48 MiB of leaf hashes and
/// indexes in memory, up to five times that while the writer catches up.
const MAX_LEAF_INDEX_BATCH: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub origin: String,
    pub queue_depth: usize,
    pub queue_bytes: usize,
    pub max_batch: usize,
    pub max_page: u64,
    pub max_appends: usize,
    pub max_heavy_reads: usize,
    pub request_timeout: Duration,
    pub block_cache_bytes: usize,
    pub leaf_index_batch: usize,
    /// Witnessing, if any witnesses are configured.
    pub witnessing: Option<CollectorConfig>,
    pub witness_wait: Duration,
    pub registry: crate::registry::Policy,
    pub snapshots: SnapshotPolicy,
    pub connections: ConnLimits,
    pub artifacts: ArtifactConfig,
    /// Reads (but the checkpoint, tiles and health) need a token.
    pub private_reads: bool,
    /// `[privacy]`: refused fields, committed fields and retention.
    pub privacy: PrivacyConfig,
    /// `[integrations.mlflow]`, if set.
    pub mlflow: Option<MlflowConfig>,
}

/// What `[privacy]` says, checked.
#[derive(Clone, Debug, Default)]
pub struct PrivacyConfig {
    pub refuse: Vec<crate::privacy::FieldPath>,
    pub commit: Vec<(crate::privacy::FieldPath, String)>,
    pub retention: Option<Duration>,
    /// How often retention runs (hourly; tests shorten it).
    pub sweep_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("config: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Secret(String),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Open(#[from] crate::log::OpenError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("derived state: {0}")]
    State(#[from] crate::state::StateError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ServerConfig {
    /// Merge defaults, the TOML file (if any) and overrides.
    pub fn resolve(o: Overrides) -> Result<Self, ServerError> {
        let file = match &o.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(io_err(p))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| ServerError::Config(format!("{}: {e}", p.display())))?
            }
            None => FileConfig::default(),
        };
        let listen = o
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen.parse().map_err(|_| {
            ServerError::Config(format!("listen address {listen:?} is not IP:PORT"))
        })?;
        let origin = o
            .origin
            .or(file.origin)
            .unwrap_or_else(|| DEFAULT_ORIGIN.to_string());
        KeyName::new(&origin).map_err(|_| {
            ServerError::Config(format!(
                "origin {origin:?} must be non-empty with no spaces or '+'"
            ))
        })?;
        let l = file.limits;
        let fw = file.witnessing.unwrap_or_default();
        let witnesses: Vec<WitnessSpec> = if o.witnesses.is_empty() {
            fw.witness
                .iter()
                .map(|w| witness_spec(&w.url, &w.vkey))
                .collect::<Result<_, _>>()?
        } else {
            o.witnesses
                .iter()
                .map(|arg| {
                    let (url, vkey) = arg.split_once(',').ok_or_else(|| {
                        ServerError::Config(format!("--witness {arg:?} must be URL,VKEY"))
                    })?;
                    witness_spec(url, vkey)
                })
                .collect::<Result<_, _>>()?
        };
        let threshold = o.witness_threshold.or(fw.threshold).unwrap_or(1);
        let witnessing = if witnesses.is_empty() {
            None
        } else {
            if threshold == 0 || threshold > witnesses.len() {
                return Err(ServerError::Config(format!(
                    "the witness threshold {threshold} must be 1..={} (the witnesses configured)",
                    witnesses.len()
                )));
            }
            let tls_roots = match &fw.ca_file {
                None => None,
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        ServerError::Config(format!("witness ca_file {}: {e}", path.display()))
                    })?;
                    crate::witness::collector::parse_roots(&pem).map_err(|e| {
                        ServerError::Config(format!("witness ca_file {}: {e}", path.display()))
                    })?;
                    Some(pem)
                }
            };
            Some(CollectorConfig {
                witnesses,
                threshold,
                interval: Duration::from_millis(fw.interval_ms.unwrap_or(1000).max(1)),
                timeout: Duration::from_millis(fw.timeout_ms.unwrap_or(5000).max(1)),
                tls_roots,
            })
        };
        let cfg = ServerConfig {
            listen,
            data_dir: o
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            origin,
            queue_depth: o.queue_depth.or(l.queue_depth).unwrap_or(16_384),
            queue_bytes: l.queue_mb.unwrap_or(32) << 20,
            max_appends: l.max_appends.unwrap_or(256),
            max_heavy_reads: l.max_heavy_reads.unwrap_or(2),
            max_batch: o.max_batch.or(l.max_batch).unwrap_or(4096),
            max_page: o.max_page.or(l.max_page).unwrap_or(1000),
            request_timeout: Duration::from_secs(l.request_timeout_secs.unwrap_or(30)),
            block_cache_bytes: l.block_cache_mb.unwrap_or(128) << 20,
            leaf_index_batch: l
                .leaf_index_batch
                .unwrap_or(crate::store::DEFAULT_LEAF_INDEX_BATCH),
            witnessing,
            witness_wait: Duration::from_millis(fw.wait_ms.unwrap_or(10_000)),
            registry: file.registry.unwrap_or_default(),
            private_reads: file.read.require_token,
            privacy: privacy_config(&file.privacy)?,
            mlflow: file
                .integrations
                .mlflow
                .as_ref()
                .map(mlflow_config)
                .transpose()?,
            artifacts: ArtifactConfig {
                max_blob_bytes: file
                    .artifacts
                    .max_blob_mb
                    .map(|m| m.saturating_mul(1 << 20))
                    .unwrap_or(crate::artifacts::DEFAULT_MAX_BLOB),
                reconcile_interval: file
                    .artifacts
                    .reconcile_interval_secs
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs),
                webhook: file.artifacts.webhook.clone(),
                bucket: file.artifacts.s3.clone(),
            },
            snapshots: SnapshotPolicy {
                interval: Duration::from_secs(l.snapshot_interval_secs.unwrap_or(10).max(1)),
            },
            connections: {
                let d = ConnLimits::default();
                let secs =
                    |v: Option<u64>, dflt: Duration| v.map(Duration::from_secs).unwrap_or(dflt);
                ConnLimits {
                    max_connections: l.max_connections.unwrap_or(d.max_connections),
                    header_timeout: secs(l.header_timeout_secs, d.header_timeout),
                    idle_timeout: secs(l.idle_timeout_secs, d.idle_timeout),
                    shutdown_grace: secs(l.shutdown_grace_secs, d.shutdown_grace),
                }
            },
        };
        cfg.registry.validate().map_err(ServerError::Config)?;
        if let Some(w) = &cfg.artifacts.webhook {
            match reqwest::Url::parse(w) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(ServerError::Config(format!(
                        "artifacts.webhook: {w:?} is not an http(s) URL"
                    )))
                }
            }
        }
        let c = &cfg.connections;
        if c.max_connections == 0 || c.header_timeout.is_zero() || c.idle_timeout.is_zero() {
            return Err(ServerError::Config(
                "max_connections, header_timeout_secs and idle_timeout_secs must be at least 1"
                    .into(),
            ));
        }
        if cfg.queue_depth == 0
            || cfg.max_batch == 0
            || cfg.max_page == 0
            || cfg.max_appends == 0
            || cfg.max_heavy_reads == 0
            || cfg.queue_bytes == 0
            || cfg.leaf_index_batch == 0
        {
            return Err(ServerError::Config("limits must be at least 1".into()));
        }
        if cfg.leaf_index_batch > MAX_LEAF_INDEX_BATCH {
            return Err(ServerError::Config(format!(
                "leaf_index_batch must be at most {MAX_LEAF_INDEX_BATCH}"
            )));
        }
        Ok(cfg)
    }
}

/// A witness from its URL and verifier key (a key string or a file).
fn witness_spec(url: &str, vkey: &str) -> Result<WitnessSpec, ServerError> {
    let url = url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ServerError::Config(format!(
            "witness URL {url:?} must start with https:// or http://"
        )));
    }
    let text = std::fs::read_to_string(vkey).unwrap_or_else(|_| vkey.to_string());
    let key = VerifierKey::parse(text.trim())
        .map_err(|e| ServerError::Config(format!("witness key {vkey:?}: {e}")))?;
    if key.kind() != crate::note::KeyKind::CosignatureV1 {
        return Err(ServerError::Config(format!(
            "witness key {vkey:?} must be a cosigner (type 0x04) key"
        )));
    }
    Ok(WitnessSpec {
        url: url.to_string(),
        key,
    })
}

/// What `prepare_data_dir` found or made, for the start-up message.
pub struct DataDir {
    pub signer: SignerKey,
    pub admin_token: String,
    pub created_key: bool,
    pub created_token: bool,
    pub token_path: PathBuf,
}

/// Create the data directory, signing key and admin token on first start;
/// load them afterwards.
pub fn prepare_data_dir(cfg: &ServerConfig) -> Result<DataDir, ServerError> {
    let dir = &cfg.data_dir;
    fsutil::private_dir(dir)?;

    let key_path = dir.join(KEY_FILE);
    let created_key = !key_path.exists();
    let signer = if created_key {
        let name = KeyName::new(&cfg.origin).map_err(|e| ServerError::Config(e.to_string()))?;
        let k = SignerKey::generate(name).map_err(|e| ServerError::Secret(e.to_string()))?;
        fsutil::write_secret(&key_path, &format!("{}\n", k.encode_secret()))?;
        k
    } else {
        SignerKey::parse(&fsutil::read_secret(&key_path)?)
            .map_err(|e| ServerError::Secret(format!("{}: {e}", key_path.display())))?
    };
    fsutil::write_atomic(
        &dir.join(VKEY_FILE),
        format!("{}\n", signer.verifier()).as_bytes(),
    )?;

    let token_path = dir.join(TOKEN_FILE);
    let created_token = !token_path.exists();
    let admin_token = if created_token {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| ServerError::Secret(e.to_string()))?;
        let t = hex::encode(raw);
        fsutil::write_secret(&token_path, &format!("{t}\n"))?;
        t
    } else {
        fsutil::read_secret(&token_path)?
    };
    if admin_token.len() < 16 {
        return Err(ServerError::Secret(format!(
            "{} holds a token shorter than 16 characters",
            token_path.display()
        )));
    }
    Ok(DataDir {
        signer,
        admin_token,
        created_key,
        created_token,
        token_path,
    })
}

/// A running server: its address and a way to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    pub ledger: Arc<Ledger>,
    collector: Option<Collector>,
    snapshots: SnapshotPolicy,
    snapshotter: tokio::task::JoinHandle<()>,
    reconciler: Option<tokio::task::JoinHandle<()>>,
    retention: Option<tokio::task::JoinHandle<()>>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stop accepting connections, finish in-flight requests, drain the
    /// sequencer and close the store.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        let r = self.task.await.unwrap_or(Ok(()));
        if let Some(c) = self.collector {
            c.stop().await;
        }
        self.snapshotter.abort();
        let _ = self.snapshotter.await;
        for t in [self.reconciler, self.retention].into_iter().flatten() {
            t.abort();
            let _ = t.await;
        }
        // A last snapshot, so the next start folds nothing.
        if let Err(e) = self.ledger.snapshot(self.snapshots, true).await {
            tracing::warn!(error = %e, "could not store the derived state at shutdown");
        }
        drop(self.ledger);
        self.log.shutdown().await;
        // Connections that were open at shutdown and blocking reads still
        // hold the log and the store for a moment; wait (bounded) until
        // this is the last handle, so that the database is closed when
        // `stop` returns and the same process may open it again.
        for _ in 0..500 {
            if Arc::strong_count(&self.log) == 1 && Arc::strong_count(self.log.store()) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        r
    }
}

/// Open the store (RocksDB in the data directory) and the log, and start
/// serving on `cfg.listen`.
pub async fn start(cfg: &ServerConfig, data: &DataDir) -> Result<Running, ServerError> {
    start_on(cfg, data, open_store(cfg)?).await
}

/// The data directory's RocksDB store.
pub fn open_store(cfg: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    let rocks: Arc<dyn Store> = Arc::new(RocksStore::open(
        &cfg.data_dir.join("db"),
        &RocksOptions {
            block_cache_bytes: cfg.block_cache_bytes,
            leaf_index_batch: cfg.leaf_index_batch,
            ..RocksOptions::default()
        },
    )?);
    Ok(Arc::new(UpperLevels::open(rocks, DEFAULT_MIN_LEVEL)?))
}

/// Start serving on a store opened by the caller (a test may wrap it).
pub async fn start_on(
    cfg: &ServerConfig,
    data: &DataDir,
    store: Arc<dyn Store>,
) -> Result<Running, ServerError> {
    let log_cfg = LogConfig {
        origin: cfg.origin.clone(),
        queue_depth: cfg.queue_depth,
        max_batch: cfg.max_batch,
        queue_bytes: cfg.queue_bytes,
    };
    let log = Arc::new(Log::open(
        store,
        data.signer.clone(),
        log_cfg,
        Arc::new(Metrics::default()),
    )?);
    let ledger = {
        let (log, token, policy) = (log.clone(), data.admin_token.clone(), cfg.registry.clone());
        tokio::task::spawn_blocking(move || {
            let rebuilt = crate::state::ensure_lineage(log.store().as_ref())?;
            if rebuilt > 0 {
                tracing::info!(
                    keys = rebuilt,
                    "rebuilt the lineage index in its new layout"
                );
            }
            Ledger::open(log, &token, policy)
        })
        .await
        .map_err(|e| ServerError::Config(format!("loading the derived state: {e}")))??
    };
    let blobs = Arc::new(
        match &cfg.artifacts.bucket {
            Some(b) => crate::artifacts::Blobs::bucket(b, cfg.artifacts.max_blob_bytes),
            None => crate::artifacts::Blobs::open(
                &cfg.data_dir.join("artifacts"),
                cfg.artifacts.max_blob_bytes,
            ),
        }
        .map_err(|e| ServerError::Config(format!("the artifact store: {e}")))?,
    );
    let privacy = crate::privacy::Privacy {
        refuse: cfg.privacy.refuse.clone(),
        commit: cfg.privacy.commit.clone(),
        store: Some(
            crate::privacy::PrivateStore::open(&cfg.data_dir.join("private"))
                .map_err(|e| ServerError::Config(format!("the private store: {e}")))?,
        ),
    };
    let ledger = Arc::new(
        ledger
            .with_blobs(blobs.clone())
            .with_privacy(Arc::new(privacy)),
    );
    // Erasures a crash interrupted are logged before anything else.
    let finished = ledger
        .finish_erasures()
        .await
        .map_err(|e| ServerError::Config(format!("finishing erasures: {e}")))?;
    if finished > 0 {
        tracing::info!(erasures = finished, "logged erasures a restart interrupted");
    }
    let mut state = AppState::new(
        ledger.clone(),
        ApiLimits {
            max_page: cfg.max_page,
            max_appends: cfg.max_appends,
            max_heavy_reads: cfg.max_heavy_reads,
            request_timeout: cfg.request_timeout,
            witness_wait: cfg.witness_wait,
        },
    );
    state = state
        .with_blobs(blobs, cfg.artifacts.webhook.clone())
        .with_private_reads(cfg.private_reads);
    if let Some(m) = &cfg.mlflow {
        state = state.with_mlflow(api::MlflowHook::new(m.clone()));
    }
    let collector = match &cfg.witnessing {
        Some(w) => {
            let c = Collector::start(log.clone(), w.clone())
                .map_err(|e| ServerError::Config(e.to_string()))?;
            state = state.with_witnessed(c.published());
            Some(c)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServerError::Io {
            path: PathBuf::from(cfg.listen.to_string()),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Io {
        path: PathBuf::from(cfg.listen.to_string()),
        source,
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = api::router(state);
    let limits = cfg.connections;
    let task = tokio::spawn(async move {
        crate::serve::serve(listener, app, limits, async {
            let _ = rx.await;
        })
        .await
    });
    let snapshots = cfg.snapshots;
    let snapshotter = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(snapshots.interval).await;
                if let Err(e) = ledger.snapshot(snapshots, false).await {
                    tracing::warn!(error = %e, "could not store the derived state");
                }
            }
        })
    };
    let reconciler = cfg.artifacts.reconcile_interval.map(|every| {
        let (ledger, webhook) = (ledger.clone(), cfg.artifacts.webhook.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match api::run_reconcile(&ledger, webhook.as_deref()).await {
                    Ok(r) if r.missing.is_empty() && r.mismatched.is_empty() => {}
                    Ok(r) => tracing::warn!(
                        missing = r.missing.len(),
                        mismatched = r.mismatched.len(),
                        "reconciliation found artifacts that are missing or do not re-hash"
                    ),
                    Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
                }
            }
        })
    });
    let retention = cfg.privacy.retention.map(|max_age| {
        let (ledger, every) = (ledger.clone(), cfg.privacy.sweep_every);
        tokio::spawn(async move {
            loop {
                match ledger.retain(max_age).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(erased = n, "erased private values past retention"),
                    Err(e) => tracing::warn!(error = %e, "retention failed"),
                }
                tokio::time::sleep(every).await;
            }
        })
    });
    Ok(Running {
        addr,
        log,
        ledger,
        collector,
        snapshots,
        snapshotter,
        reconciler,
        retention,
        shutdown: tx,
        task,
    })
}

fn privacy_config(p: &FilePrivacy) -> Result<PrivacyConfig, ServerError> {
    use crate::privacy::FieldPath;
    let mut cfg = PrivacyConfig {
        sweep_every: Duration::from_secs(3600),
        ..Default::default()
    };
    for f in &p.refuse {
        match FieldPath::parse(f) {
            Some(path @ FieldPath::Metadata(_)) => cfg.refuse.push(path),
            _ => {
                return Err(ServerError::Config(format!(
                    "privacy.refuse: {f:?} is not a metadata path (metadata.<field>[.<field>…])"
                )))
            }
        }
    }
    for (f, kind) in &p.commit {
        let path = FieldPath::parse(f).ok_or_else(|| {
            ServerError::Config(format!(
                "privacy.commit: {f:?} is neither actor.id nor a metadata path (metadata.<field>[.<field>…])"
            ))
        })?;
        let ident = !kind.is_empty()
            && kind.len() <= 64
            && kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ident {
            return Err(ServerError::Config(format!(
                "privacy.commit: the subject kind of {f:?} must be a lowercase identifier, not {kind:?}"
            )));
        }
        if path == FieldPath::ActorId && kind != "user" {
            return Err(ServerError::Config(
                "privacy.commit: actor.id names users; its kind must be \"user\"".into(),
            ));
        }
        if cfg.refuse.contains(&path) {
            return Err(ServerError::Config(format!(
                "privacy: {f:?} is both refused and committed to"
            )));
        }
        cfg.commit.push((path, kind.clone()));
    }
    cfg.retention = match p.retention_days {
        Some(0) => {
            return Err(ServerError::Config(
                "privacy.retention_days must be at least 1".into(),
            ))
        }
        Some(d) => Some(Duration::from_secs(d.saturating_mul(86_400))),
        None => None,
    };
    Ok(cfg)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
