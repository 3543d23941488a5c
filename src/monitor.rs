//! A compliance monitor: poll the log's checkpoint, verify it, prove that it
//! extends the last verified one, and keep that one durably. Any failure
//! (bad signature, inconsistent tree, smaller tree, same size with another
//! root) is an alarm: the evidence (both signed checkpoints and the proof,
//! if any) is written beside the state file and the monitor says so. A
//! server that is down or slow is not an alarm: fetches are retried with
//! backoff and the check is simply skipped.

use crate::auditor::{self, AuditError};
use crate::client::Client;
use crate::fsutil::write_atomic;
use crate::note::Checkpoint;
use crate::tree::Hash;
use crate::verify::{Failure, Policy, Verified};
use std::path::{Path, PathBuf};

/// What one check found.
#[derive(Debug)]
pub enum Outcome {
    /// First checkpoint seen: trusted from now on (nothing to compare yet).
    Started { size: u64 },
    /// The log grew (or stayed) consistently.
    Consistent { old_size: u64, new_size: u64 },
    /// Misbehaviour, with the evidence file.
    Alarm { reason: String, evidence: PathBuf },
    /// The server could not be reached or answered garbage; nothing judged.
    Unreachable { error: String },
}

pub struct Monitor {
    pub client: Client,
    pub policy: Policy,
    pub state: PathBuf,
}

/// Everything an outsider needs to check an alarm.
#[derive(serde::Serialize)]
struct Evidence<'a> {
    reason: &'a str,
    detected_at_unix: u64,
    server: &'a str,
    verifier_key: String,
    /// The last checkpoint this monitor verified and stored.
    old_checkpoint: Option<&'a str>,
    /// What the server served now, verbatim.
    new_checkpoint: Option<&'a str>,
    /// The consistency proof the server gave, if any (hex).
    consistency_proof: Vec<String>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Monitor {
    /// The last verified checkpoint, re-verified (a tampered state file is
    /// an error, not a silent reset).
    pub fn load_state(&self) -> Result<Option<Verified>, Failure> {
        match std::fs::read(&self.state) {
            Ok(bytes) => self.policy.open_checkpoint(&bytes).map(Some).map_err(|e| {
                Failure::Malformed(format!("state file {}: {e}", self.state.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Failure::Malformed(format!(
                "state file {}: {e}",
                self.state.display()
            ))),
        }
    }

    fn evidence_path(&self) -> PathBuf {
        let name = self
            .state
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "monitor".into());
        self.state.with_file_name(format!(
            "{name}.evidence-{}-{}.json",
            now_unix(),
            std::process::id()
        ))
    }

    fn alarm(
        &self,
        reason: String,
        old: Option<&Verified>,
        new: Option<&str>,
        proof: &[Hash],
    ) -> Outcome {
        let evidence = Evidence {
            reason: &reason,
            detected_at_unix: now_unix(),
            server: self.client.base(),
            verifier_key: self.policy.log_key.to_string(),
            old_checkpoint: old.map(|v| v.signed.as_str()),
            new_checkpoint: new,
            consistency_proof: proof.iter().map(hex::encode).collect(),
        };
        let path = self.evidence_path();
        let body = serde_json::to_vec_pretty(&evidence).unwrap_or_default();
        if let Err(e) = write_atomic(&path, &body) {
            tracing::error!(error = %e, path = %path.display(), "could not write the evidence");
        }
        Outcome::Alarm {
            reason,
            evidence: path,
        }
    }

    /// One check.
    pub async fn check(&self) -> Result<Outcome, Failure> {
        let old = self.load_state()?;
        let signed = match self.client.get_bytes_retrying("/checkpoint", 5).await {
            Ok(b) => b,
            Err(e) => {
                return Ok(Outcome::Unreachable {
                    error: e.to_string(),
                })
            }
        };
        let new = match self.policy.open_checkpoint(&signed) {
            Ok(v) => v,
            Err(f) => {
                let text = String::from_utf8_lossy(&signed).into_owned();
                return Ok(self.alarm(
                    format!("the served checkpoint does not verify: {f}"),
                    old.as_ref(),
                    Some(&text),
                    &[],
                ));
            }
        };
        let Some(old) = old else {
            self.save(&new)?;
            return Ok(Outcome::Started {
                size: new.checkpoint.size,
            });
        };
        let (o, n): (&Checkpoint, &Checkpoint) = (&old.checkpoint, &new.checkpoint);
        match auditor::prove_consistency(&self.client, o, n).await {
            Ok(_) => {
                if n.size > o.size {
                    self.save(&new)?;
                }
                Ok(Outcome::Consistent {
                    old_size: o.size,
                    new_size: n.size,
                })
            }
            Err(AuditError::Failed(f)) => {
                // Fetch the proof again for the evidence (best effort).
                let proof = self.raw_proof(o.size, n.size).await;
                Ok(self.alarm(f.to_string(), Some(&old), Some(&new.signed), &proof))
            }
            Err(AuditError::Fetch(e)) => Ok(Outcome::Unreachable {
                error: e.to_string(),
            }),
        }
    }

    async fn raw_proof(&self, old: u64, new: u64) -> Vec<Hash> {
        if old == 0 || old >= new {
            return Vec::new();
        }
        auditor::fetch_consistency(&self.client, old, new)
            .await
            .unwrap_or_default()
    }

    fn save(&self, v: &Verified) -> Result<(), Failure> {
        write_atomic(&self.state, v.signed.as_bytes())
            .map_err(|e| Failure::Malformed(format!("cannot write {}: {e}", self.state.display())))
    }
}

/// POST an alarm to a webhook as JSON (best effort, bounded by a timeout).
pub async fn notify(webhook: &str, server: &str, reason: &str, evidence: &Path) {
    let body = serde_json::json!({
        "alarm": reason,
        "server": server,
        "evidence": evidence.display().to_string(),
    });
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build();
    if let Ok(c) = client {
        if let Err(e) = c.post(webhook).json(&body).send().await {
            tracing::warn!(error = %e, "webhook failed");
        }
    }
}
