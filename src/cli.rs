//! What the `modeltrail` command does, as library functions: the binary
//! parses arguments, calls one of these and prints the result. Each
//! returns a value to print, or an error that says what failed.
//!
//! Verification commands return [`AuditError`], whose exit code says
//! whether the input was malformed (2), failed verification (1) or could
//! not be fetched (3).

use crate::audit::event::parse_strict;
use crate::audit::signature;
use crate::auditor::{self, AuditError};
use crate::client::{Client, ClientError};
use crate::fsutil::{self, FileError};
use crate::note::{KeyName, SignerKey, VerifierKey};
use crate::state::{self, Reindexed, StateError};
use crate::store::{RocksOptions, RocksStore, StoreError};
use crate::trace::{self, TraceCheck};
use crate::verify::{self, Failure, Policy};
use crate::wire;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::io::Read;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{path}: {source} (is the server still running?)")]
    Store { path: String, source: StoreError },
    #[error(transparent)]
    State(#[from] StateError),
}

/// A file's bytes, or standard input for `-`.
pub fn read_input(file: &str) -> Result<Vec<u8>, CliError> {
    let read = |r: std::io::Result<Vec<u8>>| {
        r.map_err(|source| CliError::Read {
            path: file.to_string(),
            source,
        })
    };
    if file == "-" {
        let mut b = Vec::new();
        read(std::io::stdin().read_to_end(&mut b).map(|_| b))
    } else {
        read(std::fs::read(file))
    }
}

/// A key string, or a file holding one.
pub fn read_key(arg: &str) -> Result<VerifierKey, Failure> {
    let text = std::fs::read_to_string(arg).unwrap_or_else(|_| arg.to_string());
    VerifierKey::parse(text.trim()).map_err(|e| Failure::Malformed(format!("{arg}: {e}")))
}

/// A trust policy from key strings or files.
pub fn policy(
    vkey: &str,
    witnesses: &[String],
    min_witnesses: usize,
    max_cosignature_age: Option<u64>,
) -> Result<Policy, Failure> {
    let p = Policy {
        log_key: read_key(vkey)?,
        witnesses: witnesses
            .iter()
            .map(|w| read_key(w))
            .collect::<Result<_, _>>()?,
        min_witnesses,
        max_cosignature_age,
    };
    p.check()?;
    Ok(p)
}

fn file_bytes(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Malformed(format!("{}: {e}", path.display())))
}

/// `, cosigned by a, b` or nothing.
pub fn witnessed(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(", cosigned by {}", names.join(", "))
    }
}

/// `keygen`: a new signer key and its verifier key.
pub fn keygen(origin: &str, cosigner: bool) -> Result<(String, String), CliError> {
    let name = KeyName::new(origin).map_err(|e| CliError::Input(e.to_string()))?;
    let k = if cosigner {
        SignerKey::generate_cosigner(name)
    } else {
        SignerKey::generate(name)
    }
    .map_err(|e| CliError::Input(e.to_string()))?;
    Ok((k.encode_secret(), k.verifier().to_string()))
}

/// `sign keygen`: write a service's Ed25519 seed owner-only; returns the
/// public key (base64) to register.
pub fn sign_keygen(out: &Path) -> Result<String, CliError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| CliError::Input(e.to_string()))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    fsutil::write_secret(out, &format!("{}\n", B64.encode(seed)))?;
    Ok(B64.encode(key.verifying_key().as_bytes()))
}

/// `sign event`: the event with `integrity.signature` set.
pub fn sign_event(key: &Path, file: &str) -> Result<serde_json::Value, CliError> {
    let seed = fsutil::read_secret(key)?;
    let seed: [u8; 32] = B64
        .decode(seed.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            CliError::Input(format!("{}: not base64 of a 32-byte key", key.display()))
        })?;
    let value =
        parse_strict(&read_input(file)?).map_err(|e| CliError::Input(format!("{file}: {e}")))?;
    signature::sign(&value, &ed25519_dalek::SigningKey::from_bytes(&seed))
        .map_err(|e| CliError::Input(e.to_string()))
}

/// `submit`: append an event; returns the receipt (and writes the offline
/// receipt and the stored event where asked).
pub async fn submit(
    client: &Client,
    body: Vec<u8>,
    witnessed: bool,
    proof_out: Option<&Path>,
    event_out: Option<&Path>,
) -> Result<wire::Receipt, CliError> {
    let (_, receipt) = client.submit_with(body, witnessed).await?;
    if let Some(path) = proof_out {
        fsutil::write_atomic(path, receipt.tlog_proof.as_bytes())?;
    }
    if let Some(path) = event_out {
        fsutil::write_atomic(path, receipt.event.get().as_bytes())?;
    }
    Ok(receipt)
}

/// `reindex`: rebuild the derived state from the entries (server stopped).
pub fn reindex(data_dir: &Path) -> Result<Reindexed, CliError> {
    Ok(state::reindex(&open_store(data_dir)?)?)
}

/// A stopped server's store. A directory that holds no log is an error,
/// not a new empty log (a mistyped path must not report an empty log as
/// rebuilt or compacted).
fn open_store(data_dir: &Path) -> Result<RocksStore, CliError> {
    let db = data_dir.join("db");
    if !db.join("CURRENT").is_file() {
        return Err(CliError::Input(format!(
            "{}: no log here (no database in {})",
            data_dir.display(),
            db.display()
        )));
    }
    RocksStore::open(&db, &RocksOptions::default()).map_err(|e| store_error(data_dir, e))
}

/// A store's failure, with the data directory it was in.
fn store_error(data_dir: &Path, source: StoreError) -> CliError {
    CliError::Store {
        path: data_dir.display().to_string(),
        source,
    }
}

/// `compact`: rewrite the store's tables in the current format, with the
/// tile values an earlier version did not write (server stopped); the
/// live table bytes before and after.
pub fn compact(data_dir: &Path) -> Result<(u64, u64), CliError> {
    open_store(data_dir)?
        .compact()
        .map_err(|e| store_error(data_dir, e))
}

/// `verify receipt`: an offline receipt for an event, no network.
pub fn verify_receipt(policy: &Policy, event: &Path, receipt: &Path) -> Result<String, AuditError> {
    let r = verify::receipt(policy, &file_bytes(event)?, &file_bytes(receipt)?)?;
    Ok(format!(
        "event is entry {} of {} (tree size {}, leaf {}){}",
        r.index,
        policy.origin(),
        r.checkpoint.checkpoint.size,
        crate::encoding::hex32(&r.leaf_hash),
        witnessed(&r.checkpoint.witnesses)
    ))
}

/// `verify inclusion`: an entry (by index, or an event file by its leaf
/// hash) is in the current signed checkpoint.
pub async fn verify_inclusion(
    client: &Client,
    policy: &Policy,
    index: Option<u64>,
    event: Option<&Path>,
) -> Result<String, AuditError> {
    let leaf = match event {
        Some(f) => Some(verify::event_leaf(&file_bytes(f)?)?.1),
        None => None,
    };
    let (cp, index, leaf) = auditor::inclusion(client, policy, index, leaf).await?;
    Ok(format!(
        "entry {index} (leaf {}) is in the signed tree of size {}{}",
        crate::encoding::hex32(&leaf),
        cp.checkpoint.size,
        witnessed(&cp.witnesses)
    ))
}

/// `verify consistency`: the current checkpoint extends a saved one.
pub async fn verify_consistency(
    client: &Client,
    policy: &Policy,
    old: &Path,
) -> Result<String, AuditError> {
    let old = policy.open_checkpoint(&file_bytes(old)?)?;
    let new = auditor::checkpoint(client, policy).await?;
    auditor::prove_consistency(client, &old.checkpoint, &new.checkpoint).await?;
    Ok(format!(
        "the tree of size {} extends the one of size {}",
        new.checkpoint.size, old.checkpoint.size
    ))
}

/// `verify signature`: an event's signature against a service's key.
pub fn verify_signature(event: &Path, public_key: &str) -> Result<String, AuditError> {
    use signature::SignatureError;
    let text = std::fs::read_to_string(public_key).unwrap_or_else(|_| public_key.to_string());
    let key =
        signature::parse_public_key(text.trim()).map_err(|e| Failure::Malformed(e.to_string()))?;
    let value =
        parse_strict(&file_bytes(event)?).map_err(|e| Failure::Malformed(format!("event: {e}")))?;
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

/// The one-line result of a verified trace.
pub fn trace_summary(t: &TraceCheck) -> String {
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

/// `verify trace`: a saved bundle, offline.
pub fn verify_trace(policy: &Policy, bundle: &Path) -> Result<TraceCheck, AuditError> {
    Ok(trace::check(policy, &file_bytes(bundle)?)?)
}

pub use crate::encoding::url_segment;

/// `trace`: fetch a bundle, verify it, and save it if asked.
pub async fn fetch_trace(
    client: &Client,
    policy: &Policy,
    kind: &str,
    id: &str,
    save: Option<&Path>,
) -> Result<TraceCheck, AuditError> {
    let path = format!("/v1/trace/{}/{}", url_segment(kind), url_segment(id));
    let bytes = client.get_bytes(&path).await.map_err(|e| {
        if e.is_client_error() {
            AuditError::from(Failure::Malformed(e.to_string()))
        } else {
            AuditError::Fetch(e)
        }
    })?;
    let t = trace::check(policy, &bytes)?;
    if let Some(f) = save {
        fsutil::write_atomic(f, &bytes).map_err(|e| Failure::Malformed(e.to_string()))?;
    }
    Ok(t)
}

/// `verify log`: download and recompute the whole log.
pub async fn verify_log(
    client: &Client,
    policy: &Policy,
    progress: &dyn Fn(u64, u64),
) -> Result<String, AuditError> {
    let a = auditor::audit_log(client, policy, progress).await?;
    Ok(format!(
        "all {} entries and {} tiles hash to the signed root of {}{}",
        a.entries,
        a.tiles,
        policy.origin(),
        witnessed(&a.checkpoint.witnesses)
    ))
}

/// `report approval-chain`: fetch, verify and format the approval chain
/// of a model version (`name:version`); answers the report's text.
pub async fn report_approval_chain(
    client: &Client,
    policy: &Policy,
    model_version: &str,
    csv: bool,
) -> Result<String, AuditError> {
    let (name, version) = model_version
        .rsplit_once(':')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| Failure::Malformed(format!("{model_version:?} is not name:version")))?;
    let r = crate::report::fetch_approval_chain(client, policy, name, version)
        .await
        .map_err(|e| match e {
            crate::report::ReportError::Fetch(f) if f.is_client_error() => {
                AuditError::from(Failure::Malformed(f.to_string()))
            }
            crate::report::ReportError::Fetch(f) => AuditError::Fetch(f),
            crate::report::ReportError::Verify(f) => AuditError::Failed(f),
        })?;
    if csv {
        return Ok(crate::report::to_csv(&r));
    }
    let mut text =
        serde_json::to_string_pretty(&r).map_err(|e| Failure::Malformed(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// `verify report`: a saved approval chain, offline.
pub fn verify_report(policy: &Policy, report: &Path) -> Result<String, AuditError> {
    let r = crate::report::check_approval_chain(policy, &file_bytes(report)?)?;
    Ok(format!(
        "approval chain of {}: {} events, each in the signed tree of size {}",
        r.model_version,
        r.items.len(),
        r.tree_size
    ))
}

/// A digest given as `sha256:<hex>` or `<hex>`, checked.
pub fn digest_arg(s: &str) -> Result<String, Failure> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    crate::artifacts::parse_digest(hex)
        .map(|_| hex.to_string())
        .ok_or_else(|| {
            Failure::Malformed(format!("{s:?} is not a sha256 digest (64 lowercase hex)"))
        })
}

/// SHA-256 of a file, read in chunks; `progress(done, total)`.
pub fn sha256_file(path: &Path, progress: &dyn Fn(u64, u64)) -> Result<(String, u64), Failure> {
    let bad = |e: std::io::Error| Failure::Malformed(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(bad)?;
    let total = f.metadata().map_err(bad)?.len();
    crate::artifacts::hash_reader(&mut f, &|done| progress(done, total)).map_err(bad)
}

fn fetch_error(e: ClientError) -> AuditError {
    if e.is_client_error() {
        AuditError::from(Failure::Malformed(e.to_string()))
    } else {
        AuditError::Fetch(e)
    }
}

/// Told `(phase, done, total)` as a transfer goes.
pub type Progress = std::sync::Arc<dyn Fn(&str, u64, u64) + Send + Sync>;

/// `artifact put`: hash the file, then upload it under its digest.
pub async fn artifact_put(
    client: &Client,
    path: &Path,
    progress: Progress,
) -> Result<wire::ArtifactStored, AuditError> {
    let p = progress.clone();
    let path2 = path.to_path_buf();
    let (digest, size) = tokio::task::spawn_blocking(move || {
        sha256_file(&path2, &|done, total| p("hashing", done, total))
    })
    .await
    .map_err(|e| Failure::Malformed(e.to_string()))??;
    let p = progress.clone();
    let (_, stored) = client
        .put_artifact(&digest, path, move |sent| p("uploading", sent, size))
        .await
        .map_err(fetch_error)?;
    if stored.digest != format!("sha256:{digest}") || stored.size != size {
        return Err(Failure::Invalid(format!(
            "the server stored {} ({} bytes), not sha256:{digest} ({size} bytes)",
            stored.digest, stored.size
        ))
        .into());
    }
    Ok(stored)
}

/// `artifact get`: download into a temporary file beside `out`, hashing as
/// it comes; only bytes that hash to `digest` become `out`.
pub async fn artifact_get(
    client: &Client,
    digest: &str,
    out: &Path,
    progress: &(dyn Fn(u64, Option<u64>) + Send + Sync),
) -> Result<u64, AuditError> {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.part-{}",
        out.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifact"),
        uuid::Uuid::now_v7()
    ));
    let bad = |e: std::io::Error| Failure::Malformed(format!("{}: {e}", tmp.display()));
    let mut f = std::fs::File::create(&tmp).map_err(bad)?;
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    let total = std::cell::Cell::new(None);
    let got = client
        .get_artifact(
            digest,
            |n| total.set(n),
            |chunk| {
                hasher.update(chunk);
                done += chunk.len() as u64;
                progress(done, total.get());
                f.write_all(chunk)
            },
        )
        .await;
    let finish = || -> Result<(), AuditError> {
        let n = got.map_err(fetch_error)?;
        let actual = hex::encode(hasher.clone().finalize());
        if actual != digest {
            return Err(Failure::Invalid(format!(
                "the server sent {n} bytes hashing to sha256:{actual}, not sha256:{digest}"
            ))
            .into());
        }
        f.sync_all().map_err(bad)?;
        std::fs::rename(&tmp, out).map_err(bad)?;
        fsutil::sync_dir_of(out).map_err(|e| Failure::Malformed(e.to_string()))?;
        Ok(())
    };
    let r = finish();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map(|_| done)
}

/// `reconcile`: ask the server to re-hash every artifact its registry
/// names; the report, and whether it found a problem.
pub async fn reconcile(client: &Client) -> Result<(wire::ReconcileReport, bool), AuditError> {
    let r = client.reconcile().await.map_err(fetch_error)?;
    let clean = r.missing.is_empty() && r.mismatched.is_empty();
    Ok((r, clean))
}

/// `verify reveal`: a saved reveal checked offline (see
/// [`verify::reveal`]).
pub fn verify_reveal(policy: &Policy, file: &Path) -> Result<String, AuditError> {
    let r: wire::Reveal = serde_json::from_slice(&file_bytes(file)?)
        .map_err(|e| Failure::Malformed(format!("{}: {e}", file.display())))?;
    let check = verify::reveal(
        policy,
        &verify::RevealParts {
            event_json: r.receipt.event.get().as_bytes(),
            tlog_proof: r.receipt.tlog_proof.as_bytes(),
            field: &r.field,
            commitment: &r.commitment,
            value: &r.value,
            salt_hex: &r.salt,
        },
    )?;
    Ok(format!(
        "{} of entry {} (tree size {}) opens to the revealed value{}",
        r.field,
        check.index,
        check.checkpoint.checkpoint.size,
        witnessed(&check.checkpoint.witnesses)
    ))
}

/// `reveal`: ask the server for a private value (logged as an access).
pub async fn reveal(client: &Client, index: u64, field: &str) -> Result<wire::Reveal, AuditError> {
    client.reveal(index, field).await.map_err(fetch_error)
}

/// `erase`: erase a data subject's private value.
pub async fn erase(client: &Client, subject: &str) -> Result<wire::Erased, AuditError> {
    client.erase(subject).await.map_err(fetch_error)
}

/// `reconcile mlflow`: what MLflow's registry and the log's state say,
/// compared.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct MlflowReconcile {
    pub tracking_uri: String,
    /// The log's state covered this many entries.
    pub tree_size: u64,
    pub models: u64,
    pub versions: u64,
    pub differences: Vec<crate::mlflow::Difference>,
    /// With `--append`: the index of the logged `reconcile` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_index: Option<u64>,
}

/// Most models and versions read from MLflow (pages of 100 and 1000).
const MLFLOW_MAX: usize = 100_000;

async fn mlflow_get(
    http: &reqwest::Client,
    url: reqwest::Url,
) -> Result<serde_json::Value, AuditError> {
    let r = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| AuditError::Fetch(ClientError::Http(e)))?;
    let status = r.status();
    let body = r
        .bytes()
        .await
        .map_err(|e| AuditError::Fetch(ClientError::Http(e)))?;
    if !status.is_success() {
        return Err(AuditError::Fetch(ClientError::Status {
            status: status.as_u16(),
            code: None,
            message: format!("MLflow {}: {}", url.path(), String::from_utf8_lossy(&body)),
        }));
    }
    serde_json::from_slice(&body)
        .map_err(|e| Failure::Malformed(format!("MLflow {}: {e}", url.path())).into())
}

/// Every registered model of an MLflow tracking server, with its versions
/// and aliases, through MLflow's REST API (paged, bounded).
pub async fn mlflow_models(
    tracking_uri: &str,
) -> Result<Vec<crate::mlflow::MlflowModel>, AuditError> {
    use serde_json::Value;
    let base = reqwest::Url::parse(tracking_uri.trim_end_matches('/'))
        .map_err(|e| Failure::Malformed(format!("--tracking-uri: {e}")))?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| AuditError::Fetch(ClientError::Http(e)))?;
    let endpoint = |path: &str| {
        let mut u = base.clone();
        u.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
        u
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut models = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut u = endpoint("/api/2.0/mlflow/registered-models/search");
        u.query_pairs_mut().append_pair("max_results", "100");
        if let Some(t) = &token {
            u.query_pairs_mut().append_pair("page_token", t);
        }
        let page = mlflow_get(&http, u).await?;
        for m in page["registered_models"].as_array().into_iter().flatten() {
            let aliases = m["aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (text(a, "alias"), text(a, "version")))
                .collect();
            models.push(crate::mlflow::MlflowModel {
                name: text(m, "name"),
                versions: Vec::new(),
                aliases,
            });
        }
        token = page["next_page_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() || models.len() > MLFLOW_MAX {
            break;
        }
    }
    let mut total = 0usize;
    for m in &mut models {
        let mut token: Option<String> = None;
        loop {
            let mut u = endpoint("/api/2.0/mlflow/model-versions/search");
            let filter = format!("name='{}'", m.name.replace('\'', "\\'"));
            u.query_pairs_mut()
                .append_pair("filter", &filter)
                .append_pair("max_results", "1000");
            if let Some(t) = &token {
                u.query_pairs_mut().append_pair("page_token", t);
            }
            let page = mlflow_get(&http, u).await?;
            for v in page["model_versions"].as_array().into_iter().flatten() {
                m.versions
                    .push((text(v, "version"), text(v, "current_stage")));
                total += 1;
            }
            token = page["next_page_token"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() || total > MLFLOW_MAX {
                break;
            }
        }
        if total > MLFLOW_MAX {
            return Err(Failure::Malformed(format!(
                "MLflow holds more than {MLFLOW_MAX} model versions; reconcile fewer at a time"
            ))
            .into());
        }
    }
    Ok(models)
}

/// The log's models and versions, as its state says (paged).
async fn logged_models(
    client: &Client,
) -> Result<(Vec<crate::mlflow::LoggedModel>, u64), AuditError> {
    let mut out = Vec::new();
    let mut start = 0u64;
    let mut tree_size = 0u64;
    loop {
        let page: wire::ModelPage = client
            .get_json(&format!("/v1/models?start={start}&limit=1000"))
            .await
            .map_err(fetch_error)?;
        tree_size = tree_size.max(page.tree_size);
        for m in page.models {
            let d: wire::ModelDetail = client
                .get_json(&format!("/v1/models/{}", urlencode(&m.name)))
                .await
                .map_err(fetch_error)?;
            tree_size = tree_size.max(d.tree_size);
            out.push(crate::mlflow::LoggedModel {
                name: d.name,
                versions: d
                    .versions
                    .into_iter()
                    .map(|v| (v.version, v.stage))
                    .collect(),
            });
        }
        match page.next_start {
            Some(n) if n > start => start = n,
            _ => break,
        }
    }
    Ok((out, tree_size))
}

fn urlencode(s: &str) -> String {
    let mut u = reqwest::Url::parse("http://localhost/").expect("a constant URL");
    u.path_segments_mut().expect("a base URL").push(s);
    u.path().trim_start_matches('/').to_string()
}

/// `reconcile mlflow`: compare MLflow's registry with the log's state; with
/// `append`, log a `reconcile` event with the counts and the tree size the
/// state covered. The report, and whether they agree.
pub async fn reconcile_mlflow(
    client: &Client,
    tracking_uri: &str,
    aliases: &std::collections::BTreeMap<String, crate::registry::Stage>,
    append: bool,
) -> Result<(MlflowReconcile, bool), AuditError> {
    let theirs = mlflow_models(tracking_uri).await?;
    let (ours, tree_size) = logged_models(client).await?;
    let differences = crate::mlflow::compare(&theirs, &ours, aliases);
    let mut report = MlflowReconcile {
        tracking_uri: tracking_uri.to_string(),
        tree_size,
        models: theirs.len() as u64,
        versions: theirs.iter().map(|m| m.versions.len() as u64).sum(),
        differences,
        reconcile_index: None,
    };
    if append {
        let r = client
            .record_reconciliation(&wire::Reconciled {
                source: "mlflow".into(),
                target: tracking_uri.to_string(),
                checked: report.versions,
                differences: report.differences.len() as u64,
                tree_size,
            })
            .await
            .map_err(fetch_error)?;
        report.reconcile_index = Some(r.index);
    }
    let clean = report.differences.is_empty();
    Ok((report, clean))
}
