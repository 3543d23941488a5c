//! The log's side of witnessing: after the tree grows, ask every configured
//! witness to cosign the latest checkpoint (c2sp.org/tlog-witness), and once
//! at least `threshold` of them have, publish the checkpoint with their
//! cosignatures. That is what `/checkpoint` then serves and what receipts
//! asked for at the published size carry.
//!
//! Witnessing runs beside the sequencer, never in front of it: appends are
//! acknowledged as soon as they are durable and signed by the log, so a
//! witness that is down or slow delays only the cosigned checkpoint. The
//! published checkpoint only ever grows: a new one is published only for a
//! larger tree, and it is stored (RocksDB metadata, synced) before it is
//! served, so it survives a restart. At start the stored cosigned
//! checkpoint is served only if it covers the whole log; if the log grew
//! since (while witnessing was off, say, when `/checkpoint` served the
//! log's own head), the log's head is served, signed by the log alone,
//! until the witnesses cosign a checkpoint at least that large.
//!
//! The collector keeps, per witness, the size that witness last cosigned.
//! It starts unknown: the first request says `old 0`, and a witness that
//! has seen the log answers 409 with its size, after which the request is
//! repeated with a consistency proof from that size.

use super::{parse_size_body, AddCheckpoint, SIZE_CONTENT_TYPE};
use crate::log::{Head, Log};
use crate::note::{Checkpoint, Note, Signature, VerifierKey};
use crate::store::MetaKey;
use crate::tree::EdgeFolds;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Where the last published cosigned checkpoint is stored.
const META_KEY: MetaKey = MetaKey::WitnessedCheckpoint;
/// Largest witness answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// One witness: its submission prefix and its cosigner verifier key.
#[derive(Clone, Debug)]
pub struct WitnessSpec {
    pub url: String,
    pub key: VerifierKey,
}

#[derive(Clone, Debug)]
pub struct CollectorConfig {
    pub witnesses: Vec<WitnessSpec>,
    /// Cosignatures needed before a checkpoint is published.
    pub threshold: usize,
    /// Least time between two rounds of requests (rounds follow the tree).
    pub interval: Duration,
    /// Time limit for one witness request.
    pub timeout: Duration,
    /// PEM certificates that alone are trusted for `https://` witnesses;
    /// `None`: the system's roots.
    pub tls_roots: Option<Vec<u8>>,
}

/// The certificates of a PEM bundle (at least one).
pub fn parse_roots(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, String> {
    let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// A running collector.
pub struct Collector {
    published: watch::Receiver<Arc<Head>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("the witness threshold {threshold} must be 1..={count} (the witnesses configured)")]
    Threshold { threshold: usize, count: usize },
    #[error("witness key {0} is not a cosigner (type 0x04) key")]
    NotCosigner(String),
    #[error("stored witnessed checkpoint: {0}")]
    Stored(String),
    #[error("http client: {0}")]
    Http(String),
}

impl Collector {
    /// Start collecting for `log`. The published checkpoint starts as the
    /// stored cosigned one or, on a log that has none yet, the log's head.
    pub fn start(log: Arc<Log>, cfg: CollectorConfig) -> Result<Collector, CollectorError> {
        let count = cfg.witnesses.len();
        if cfg.threshold == 0 || cfg.threshold > count {
            return Err(CollectorError::Threshold {
                threshold: cfg.threshold,
                count,
            });
        }
        if let Some(w) = cfg
            .witnesses
            .iter()
            .find(|w| w.key.kind() != crate::note::KeyKind::CosignatureV1)
        {
            return Err(CollectorError::NotCosigner(w.key.to_string()));
        }
        let stored = match log
            .store()
            .get_meta(META_KEY)
            .map_err(|e| CollectorError::Stored(e.to_string()))?
        {
            Some(bytes) => {
                let (cp, _) = Checkpoint::open(&bytes, log.origin(), log.verifier())
                    .map_err(|e| CollectorError::Stored(e.to_string()))?;
                if cp.size > log.head().size {
                    return Err(CollectorError::Stored(format!(
                        "size {} is beyond the log's size {}",
                        cp.size,
                        log.head().size
                    )));
                }
                let checkpoint = String::from_utf8(bytes)
                    .map_err(|_| CollectorError::Stored("not UTF-8".into()))?;
                Some(Arc::new(Head {
                    size: cp.size,
                    root: cp.root,
                    checkpoint,
                    edge: EdgeFolds::none(),
                }))
            }
            None => None,
        };
        let witnessed = stored.as_ref().map(|h| h.size);
        // What `/checkpoint` served before this start may be the log's own
        // head (witnessing was off, or it was behind): never serve anything
        // smaller. The stored cosigned checkpoint is served only if it is
        // the head; otherwise the log's head is, until the witnesses cosign
        // it or a later one.
        let head = log.head();
        let initial = match stored {
            Some(cosigned) if cosigned.size >= head.size => cosigned,
            _ => head,
        };
        log.metrics().witnessed_size.set(initial.size as i64);
        let (tx, rx) = watch::channel(initial);
        let (stop, stop_rx) = watch::channel(false);
        let mut http = reqwest::Client::builder()
            .connect_timeout(cfg.timeout)
            .timeout(cfg.timeout)
            .pool_max_idle_per_host(2);
        if let Some(pem) = &cfg.tls_roots {
            http = http.tls_certs_only(parse_roots(pem).map_err(CollectorError::Http)?);
        }
        let http = http
            .build()
            .map_err(|e| CollectorError::Http(e.to_string()))?;
        let task = tokio::spawn(run(log, cfg, http, tx, witnessed, stop_rx));
        Ok(Collector {
            published: rx,
            stop,
            task,
        })
    }

    /// The published checkpoint, cosigned by at least the threshold of
    /// witnesses (or the log's head at start if none has been yet).
    pub fn published(&self) -> watch::Receiver<Arc<Head>> {
        self.published.clone()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    log: Arc<Log>,
    cfg: CollectorConfig,
    http: reqwest::Client,
    tx: watch::Sender<Arc<Head>>,
    mut witnessed: Option<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut heads = log.subscribe();
    let mut known: Vec<Option<u64>> = vec![None; cfg.witnesses.len()];
    let mut failures: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let head = log.head();
        if witnessed.is_some_and(|w| w >= head.size) {
            // Nothing new to witness: wait for the tree to grow.
            tokio::select! {
                r = heads.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
            continue;
        }
        match round(&log, &cfg, &http, &head, &mut known).await {
            Ok(signed) => {
                let bytes = signed.clone().into_bytes();
                let store = log.store().clone();
                let saved =
                    tokio::task::spawn_blocking(move || store.put_meta(META_KEY, &bytes)).await;
                match saved {
                    Ok(Ok(())) => {
                        witnessed = Some(head.size);
                        failures = 0;
                        log.metrics().witnessed_size.set(head.size as i64);
                        let _ = tx.send(Arc::new(Head {
                            size: head.size,
                            root: head.root,
                            checkpoint: signed,
                            edge: head.edge.clone(),
                        }));
                    }
                    Ok(Err(e)) => {
                        failures += 1;
                        tracing::error!(error = %e, "cannot store the cosigned checkpoint");
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::error!(error = %e, "cannot store the cosigned checkpoint");
                    }
                }
            }
            Err(got) => {
                failures += 1;
                tracing::warn!(
                    size = head.size,
                    cosignatures = got,
                    threshold = cfg.threshold,
                    "too few witnesses cosigned; the published checkpoint stays as it is"
                );
            }
        }
        // Pace the rounds, and back off while witnesses fail.
        let backoff = cfg.interval * 2u32.pow(failures.min(6));
        let delay = if failures == 0 {
            cfg.interval
        } else {
            backoff.min(Duration::from_secs(60).max(cfg.interval))
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Ask every witness at once; return the checkpoint with the cosignatures
/// if at least the threshold answered, or how many did.
async fn round(
    log: &Arc<Log>,
    cfg: &CollectorConfig,
    http: &reqwest::Client,
    head: &Arc<Head>,
    known: &mut [Option<u64>],
) -> Result<String, usize> {
    let mut set = JoinSet::new();
    for (i, w) in cfg.witnesses.iter().enumerate() {
        let (log, http, w, head, k) =
            (log.clone(), http.clone(), w.clone(), head.clone(), known[i]);
        set.spawn(async move {
            let (k, r) = ask(&log, &http, &w, &head, k).await;
            (i, k, r)
        });
    }
    let mut sigs: Vec<Signature> = Vec::new();
    let mut cosigned = 0;
    while let Some(joined) = set.join_next().await {
        let Ok((i, k, r)) = joined else { continue };
        known[i] = k;
        let w = &cfg.witnesses[i];
        match r {
            Ok(mut s) => {
                cosigned += 1;
                sigs.append(&mut s);
            }
            Err(e) => {
                log.metrics().witness_failures.inc();
                tracing::warn!(witness = %w.key.name(), url = %w.url, error = %e, "witness did not cosign");
            }
        }
    }
    if cosigned < cfg.threshold {
        return Err(cosigned);
    }
    let mut note = Note::parse(head.checkpoint.as_bytes()).map_err(|_| 0usize)?;
    for s in sigs {
        note.add_signature(s);
    }
    Ok(note.encode())
}

/// One `add-checkpoint` exchange (two if the witness tells us its size).
/// Returns what we now know of the witness's size, and its cosignatures.
async fn ask(
    log: &Arc<Log>,
    http: &reqwest::Client,
    w: &WitnessSpec,
    head: &Arc<Head>,
    known: Option<u64>,
) -> (Option<u64>, Result<Vec<Signature>, String>) {
    let mut old = known.unwrap_or(0);
    let mut k = known;
    for _ in 0..2 {
        if old > head.size {
            return (
                k,
                Err(format!(
                    "the witness has cosigned size {old}, beyond this log's {}: it was shown another history",
                    head.size
                )),
            );
        }
        let proof = if old == 0 || old == head.size {
            Vec::new()
        } else {
            let (log, new) = (log.clone(), head.size);
            match tokio::task::spawn_blocking(move || log.consistency_proof(old, new)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return (k, Err(format!("consistency proof: {e}"))),
                Err(e) => return (k, Err(format!("consistency proof: {e}"))),
            }
        };
        let body = AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: head.checkpoint.as_bytes().to_vec(),
        }
        .encode();
        let url = format!("{}/add-checkpoint", w.url.trim_end_matches('/'));
        let resp = match http.post(&url).body(body).send().await {
            Ok(r) => r,
            Err(e) => return (k, Err(format!("request failed: {e}"))),
        };
        let status = resp.status().as_u16();
        let size_answer = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == SIZE_CONTENT_TYPE);
        let body = match read_bounded(resp).await {
            Ok(b) => b,
            Err(e) => return (k, Err(e)),
        };
        match status {
            200 => {
                return match cosignatures(head, &w.key, &body) {
                    Ok(s) => (Some(head.size), Ok(s)),
                    Err(e) => (k, Err(e)),
                }
            }
            409 if size_answer => match parse_size_body(&body) {
                Some(size) if Some(size) != k || size != old => {
                    k = Some(size);
                    old = size;
                }
                Some(size) => {
                    return (
                        k,
                        Err(format!(
                            "the witness keeps answering that its size is {size}"
                        )),
                    )
                }
                None => return (k, Err("409 with a malformed size".into())),
            },
            _ => {
                let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                return (k, Err(format!("answered {status}: {}", text.trim())));
            }
        }
    }
    (
        k,
        Err("the witness's size changed twice in one round".into()),
    )
}

async fn read_bounded(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > MAX_ANSWER {
            return Err("answer too large".into());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Check a 200 answer: signature lines, of which those by the witness's key
/// must be valid cosignatures of exactly this checkpoint; at least one.
fn cosignatures(head: &Head, key: &VerifierKey, body: &[u8]) -> Result<Vec<Signature>, String> {
    let mut joined = head.checkpoint.as_bytes().to_vec();
    joined.extend_from_slice(body);
    let note = Note::parse(&joined).map_err(|e| format!("malformed cosignature lines: {e}"))?;
    note.verify(std::slice::from_ref(key))
        .map_err(|e| format!("cosignature: {e}"))?;
    Ok(note
        .signatures()
        .iter()
        .filter(|s| s.name == key.name().as_str() && s.key_id == key.key_id())
        .take(1)
        .cloned()
        .collect())
}
