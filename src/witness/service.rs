//! The witness: cosigns a log's checkpoints only if they extend the last one
//! it cosigned for that log (c2sp.org/tlog-witness `add-checkpoint`).
//!
//! State is one file per log, `logs/<sha256(origin) hex>.checkpoint`, that
//! holds the last checkpoint it cosigned, as the log signed it. The check of
//! the old size and the update of that file happen under one lock per log,
//! and the file is replaced atomically (write, fsync, rename, fsync the
//! directory) before the cosignature leaves, so a witness never cosigns two
//! checkpoints that do not extend each other, even across a crash.
//!
//! A request that carries the log's valid signature over a checkpoint of
//! the cosigned size with another root is proof of a fork: both notes are
//! kept under `evidence/`, one file per fork, at most a bounded number.
//! A proof that does not verify is refused but kept nowhere: anyone holding
//! public checkpoints can make one.

use super::{AddCheckpoint, MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE};
use crate::fsutil::{self, write_atomic, FileError};
use crate::note::{Checkpoint, KeyKind, Note, SignerKey, VerifierKey};
use crate::tree::{self, Hash};
use crate::wire::{ErrorBody, ErrorDetail, WitnessHealth, WitnessedLog};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Most evidence files one witness process writes.
const MAX_EVIDENCE_FILES: usize = 1000;

/// Why an `add-checkpoint` request was not cosigned; each maps to the
/// status code the spec requires.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    #[error("no signature verifies against a trusted key for this log")]
    Forbidden,
    #[error("old size {old} is greater than the checkpoint size {size}")]
    OldTooLarge { old: u64, size: u64 },
    /// The witness has cosigned a different size; the body tells which.
    #[error("the last cosigned size is {0}")]
    SizeMismatch(u64),
    #[error("the checkpoint has the size of the last cosigned one but another root")]
    RootMismatch,
    #[error("the consistency proof does not verify: {0}")]
    BadProof(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl AddError {
    pub fn status(&self) -> StatusCode {
        match self {
            AddError::Malformed(_) | AddError::OldTooLarge { .. } => StatusCode::BAD_REQUEST,
            AddError::UnknownOrigin(_) => StatusCode::NOT_FOUND,
            AddError::Forbidden => StatusCode::FORBIDDEN,
            AddError::SizeMismatch(_) | AddError::RootMismatch => StatusCode::CONFLICT,
            AddError::BadProof(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AddError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AddError::Malformed(_) => "malformed",
            AddError::UnknownOrigin(_) => "unknown_origin",
            AddError::Forbidden => "bad_signature",
            AddError::OldTooLarge { .. } => "old_size_too_large",
            AddError::SizeMismatch(_) => "size_mismatch",
            AddError::RootMismatch => "root_mismatch",
            AddError::BadProof(_) => "bad_proof",
            AddError::Storage(_) => "internal",
        }
    }
}

impl IntoResponse for AddError {
    fn into_response(self) -> Response {
        if let AddError::SizeMismatch(size) = self {
            return (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)],
                format!("{size}\n"),
            )
                .into_response();
        }
        (
            self.status(),
            Json(error_body(self.code(), self.to_string())),
        )
            .into_response()
    }
}

fn error_body(code: &str, message: String) -> ErrorBody {
    ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message,
            reasons: Vec::new(),
        },
        deny_receipt: None,
    }
}

/// The last checkpoint cosigned for one log.
#[derive(Clone, Debug)]
struct Latest {
    size: u64,
    root: Hash,
}

struct LogState {
    keys: Vec<VerifierKey>,
    path: PathBuf,
    latest: Mutex<Option<Latest>>,
}

/// A witness: its cosigner key and the logs it follows.
pub struct Witness {
    key: SignerKey,
    logs: HashMap<String, LogState>,
    evidence_dir: PathBuf,
    evidence_written: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the witness key must be a cosigner (type 0x04) key")]
    NotCosigner,
    #[error("log key {0} is not an Ed25519 (type 0x01) key")]
    NotLogKey(String),
    #[error("no logs configured: give at least one log verifier key")]
    NoLogs,
    #[error("{path}: {message}")]
    State { path: PathBuf, message: String },
}

fn state_file(dir: &Path, origin: &str) -> PathBuf {
    dir.join("logs").join(format!(
        "{}.checkpoint",
        hex::encode(Sha256::digest(origin))
    ))
}

impl Witness {
    /// Open the witness state in `dir` for the logs whose verifier keys are
    /// given (the key name is the log's origin; several keys may share an
    /// origin). Each stored checkpoint is verified again.
    pub fn open(dir: &Path, key: SignerKey, log_keys: Vec<VerifierKey>) -> Result<Self, OpenError> {
        if key.kind() != KeyKind::CosignatureV1 {
            return Err(OpenError::NotCosigner);
        }
        if log_keys.is_empty() {
            return Err(OpenError::NoLogs);
        }
        let state_err = |path: &Path, message: String| OpenError::State {
            path: path.to_path_buf(),
            message,
        };
        let logs_dir = dir.join("logs");
        std::fs::create_dir_all(&logs_dir).map_err(|e| state_err(&logs_dir, e.to_string()))?;
        let mut by_origin: HashMap<String, Vec<VerifierKey>> = HashMap::new();
        for k in log_keys {
            if k.kind() != KeyKind::Ed25519 {
                return Err(OpenError::NotLogKey(k.to_string()));
            }
            by_origin
                .entry(k.name().as_str().to_string())
                .or_default()
                .push(k);
        }
        let mut logs = HashMap::new();
        for (origin, keys) in by_origin {
            let path = state_file(dir, &origin);
            let latest = match std::fs::read(&path) {
                Ok(bytes) => {
                    let note = Note::parse(&bytes).map_err(|e| state_err(&path, e.to_string()))?;
                    note.verify(&keys)
                        .map_err(|e| state_err(&path, e.to_string()))?;
                    let cp = Checkpoint::parse_text(note.text())
                        .map_err(|e| state_err(&path, e.to_string()))?;
                    if cp.origin != origin {
                        return Err(state_err(&path, "holds another log's checkpoint".into()));
                    }
                    Some(Latest {
                        size: cp.size,
                        root: cp.root,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(state_err(&path, e.to_string())),
            };
            logs.insert(
                origin,
                LogState {
                    keys,
                    path,
                    latest: Mutex::new(latest),
                },
            );
        }
        Ok(Witness {
            key,
            logs,
            evidence_dir: dir.join("evidence"),
            evidence_written: AtomicUsize::new(0),
        })
    }

    pub fn verifier(&self) -> VerifierKey {
        self.key.verifier()
    }

    /// The origins this witness follows, sorted.
    pub fn origins(&self) -> Vec<String> {
        let mut o: Vec<String> = self.logs.keys().cloned().collect();
        o.sort();
        o
    }

    /// The size of the last checkpoint cosigned for `origin`.
    pub fn cosigned_size(&self, origin: &str) -> Option<u64> {
        let log = self.logs.get(origin)?;
        let latest = log.latest.lock().ok()?;
        latest.as_ref().map(|l| l.size)
    }

    /// Handle one request: verify, check against the stored state, persist,
    /// and return the cosignature lines. Blocking (it fsyncs).
    pub fn add_checkpoint(&self, req: &AddCheckpoint, now: u64) -> Result<String, AddError> {
        let note = Note::parse(&req.checkpoint).map_err(|e| AddError::Malformed(e.to_string()))?;
        let cp =
            Checkpoint::parse_text(note.text()).map_err(|e| AddError::Malformed(e.to_string()))?;
        let log = self
            .logs
            .get(&cp.origin)
            .ok_or_else(|| AddError::UnknownOrigin(cp.origin.clone()))?;
        note.verify(&log.keys).map_err(|_| AddError::Forbidden)?;
        if req.old_size > cp.size {
            return Err(AddError::OldTooLarge {
                old: req.old_size,
                size: cp.size,
            });
        }
        // From here to the reply, one request per log at a time.
        let mut latest = log
            .latest
            .lock()
            .map_err(|_| AddError::Storage("state lock poisoned".into()))?;
        let stored = latest.clone();
        let stored_size = stored.as_ref().map_or(0, |l| l.size);
        if req.old_size != stored_size {
            return Err(AddError::SizeMismatch(stored_size));
        }
        match &stored {
            Some(s) if s.size == cp.size => {
                if s.root != cp.root {
                    // Two checkpoints of one size with different roots, both
                    // signed by the log: proof of a fork.
                    self.keep_evidence(&cp.origin, &log.path, req, &cp);
                    return Err(AddError::RootMismatch);
                }
                if !req.proof.is_empty() {
                    return Err(AddError::BadProof(
                        "the proof between equal sizes must be empty".into(),
                    ));
                }
            }
            Some(s) if s.size > 0 => {
                if let Err(e) =
                    tree::verify_consistency(s.size, cp.size, &req.proof, &s.root, &cp.root)
                {
                    // Not evidence of anything: anyone holding two public
                    // checkpoints can send a proof that does not verify.
                    return Err(AddError::BadProof(e.to_string()));
                }
            }
            // Never cosigned, or only the empty tree: nothing to prove from.
            _ => {
                if !req.proof.is_empty() {
                    return Err(AddError::BadProof(
                        "the proof from old size 0 must be empty".into(),
                    ));
                }
            }
        }
        let sig = self
            .key
            .cosign(note.text(), now)
            .map_err(|e| AddError::Storage(e.to_string()))?;
        write_atomic(&log.path, &req.checkpoint).map_err(|e| AddError::Storage(e.to_string()))?;
        *latest = Some(Latest {
            size: cp.size,
            root: cp.root,
        });
        Ok(sig.line())
    }

    /// Keep a fork: the cosigned checkpoint and the log-signed one of the
    /// same size with another root, in one file named after the pair, so the
    /// same fork sent again is one file. Only the log's key can make forks,
    /// so nobody else can fill this directory.
    fn keep_evidence(&self, origin: &str, stored: &Path, req: &AddCheckpoint, cp: &Checkpoint) {
        let name = format!(
            "{}-{}-{}.fork",
            &hex::encode(Sha256::digest(origin))[..16],
            cp.size,
            &hex::encode(cp.root)[..16]
        );
        let path = self.evidence_dir.join(name);
        if path.exists() {
            return;
        }
        if self.evidence_written.fetch_add(1, Ordering::Relaxed) >= MAX_EVIDENCE_FILES {
            return;
        }
        let mut body = b"cosigned:\n".to_vec();
        body.extend_from_slice(&std::fs::read(stored).unwrap_or_default());
        body.extend_from_slice(b"\nconflicting:\n");
        body.extend_from_slice(&req.checkpoint);
        let saved = std::fs::create_dir_all(&self.evidence_dir)
            .map_err(|e| e.to_string())
            .and_then(|_| write_atomic(&path, &body).map_err(|e| e.to_string()));
        match saved {
            Ok(()) => tracing::warn!(
                origin,
                evidence = %path.display(),
                "the log signed two different checkpoints of the same size"
            ),
            Err(e) => tracing::error!(origin, error = %e, "cannot keep evidence"),
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The witness's HTTP API: `POST /add-checkpoint` and `GET /healthz`.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/healthz", get(healthz))
        .fallback(|| async {
            let body = error_body("not_found", "no such endpoint".into());
            (StatusCode::NOT_FOUND, Json(body))
        })
        .method_not_allowed_fallback(|| async {
            let body = error_body(
                "method_not_allowed",
                "this method is not allowed on this path".into(),
            );
            (StatusCode::METHOD_NOT_ALLOWED, Json(body))
        })
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            std::time::Duration::from_secs(30),
        ))
        .with_state(witness)
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Body) -> Response {
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let body = error_body(
                "too_large",
                format!("the body is larger than {MAX_REQUEST_BYTES} bytes"),
            );
            return (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
        }
    };
    let req = match AddCheckpoint::parse(&bytes) {
        Ok(r) => r,
        Err(m) => return AddError::Malformed(m.into()).into_response(),
    };
    let result = tokio::task::spawn_blocking(move || w.add_checkpoint(&req, now_unix())).await;
    match result {
        Ok(Ok(lines)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            lines,
        )
            .into_response(),
        Ok(Err(e)) => {
            if e.status().is_server_error() {
                tracing::error!(error = %e, "add-checkpoint failed");
            }
            e.into_response()
        }
        Err(e) => AddError::Storage(format!("task failed: {e}")).into_response(),
    }
}

async fn healthz(State(w): State<Arc<Witness>>) -> Response {
    let logs = w
        .origins()
        .into_iter()
        .map(|o| WitnessedLog {
            cosigned_size: w.cosigned_size(&o),
            origin: o,
        })
        .collect();
    Json(WitnessHealth {
        status: "ok".into(),
        verifier_key: w.verifier().to_string(),
        logs,
    })
    .into_response()
}

pub const KEY_FILE: &str = "witness.key";
pub const VKEY_FILE: &str = "witness.vkey";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_DATA_DIR: &str = "modeltrail-witness";
pub const DEFAULT_NAME: &str = "localhost/modeltrail-witness";

/// How to run a witness.
#[derive(Clone, Debug)]
pub struct WitnessOptions {
    pub listen: std::net::SocketAddr,
    pub data_dir: PathBuf,
    /// The witness's key name, used when the key is made (first start).
    pub name: Option<String>,
    /// Verifier keys of the logs to witness.
    pub logs: Vec<VerifierKey>,
}

/// Why a witness could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("{addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Load the cosigner key from the data directory, or make it on first
/// start (owner-only file). Returns the key and whether it was made.
pub fn load_or_create_key(dir: &Path, name: Option<&str>) -> Result<(SignerKey, bool), StartError> {
    use crate::note::KeyName;
    fsutil::private_dir(dir)?;
    let key_path = dir.join(KEY_FILE);
    let key_err = |message: String| StartError::Key {
        path: key_path.clone(),
        message,
    };
    let (key, created) = if key_path.exists() {
        let k = SignerKey::parse(&fsutil::read_secret(&key_path)?)
            .map_err(|e| key_err(e.to_string()))?;
        if let Some(n) = name.filter(|n| *n != k.name().as_str()) {
            return Err(key_err(format!(
                "holds the key of witness {}, not {n}",
                k.name()
            )));
        }
        (k, false)
    } else {
        let name =
            KeyName::new(name.unwrap_or(DEFAULT_NAME)).map_err(|e| key_err(e.to_string()))?;
        let k = SignerKey::generate_cosigner(name).map_err(|e| key_err(e.to_string()))?;
        fsutil::write_secret(&key_path, &format!("{}\n", k.encode_secret()))?;
        (k, true)
    };
    if key.kind() != KeyKind::CosignatureV1 {
        return Err(key_err("is not a cosigner key".into()));
    }
    fsutil::write_atomic(
        &dir.join(VKEY_FILE),
        format!("{}\n", key.verifier()).as_bytes(),
    )?;
    Ok((key, created))
}

/// A running witness server.
pub struct RunningWitness {
    pub addr: std::net::SocketAddr,
    pub witness: Arc<Witness>,
    pub created_key: bool,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningWitness {
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.unwrap_or(Ok(()))
    }
}

/// Open the witness state and start serving.
pub async fn start(opts: &WitnessOptions) -> Result<RunningWitness, StartError> {
    let (key, created_key) = load_or_create_key(&opts.data_dir, opts.name.as_deref())?;
    let witness = Arc::new(Witness::open(&opts.data_dir, key, opts.logs.clone())?);
    let listen_err = |source| StartError::Listen {
        addr: opts.listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(listen_err)?;
    let addr = listener.local_addr().map_err(listen_err)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(witness.clone());
    let task = tokio::spawn(async move {
        crate::serve::serve(listener, app, crate::serve::ConnLimits::default(), async {
            let _ = rx.await;
        })
        .await
    });
    Ok(RunningWitness {
        addr,
        witness,
        created_key,
        shutdown: tx,
        task,
    })
}
