//! Auditor reports: the approval chain of one model version (its
//! registration, attestations, approvals and rejections, stage changes,
//! denials and deployments), each item with its event and inclusion proof
//! against one signed checkpoint, so the report verifies offline with the
//! log's key alone.
//!
//! [`fetch_approval_chain`] builds a report from a server, verifying as it
//! goes; [`check_approval_chain`] verifies a saved one; [`to_csv`] flattens
//! one for a spreadsheet. Each item's `kind` and `detail` are a pure
//! function of its event ([`describe`]), so the checker recomputes them.

use crate::audit::vocab::Action;
use crate::audit::Event;
use crate::client::{Client, ClientError};
use crate::tree;
use crate::verify::{event_leaf, Failure, Policy};
use crate::wire::{self, unhex, ApprovalChain, ChainItem, Hex32, APPROVAL_CHAIN_FORMAT};

/// Most items in one report.
pub const MAX_ITEMS: usize = 10_000;
/// Largest report the checker reads.
pub const MAX_REPORT_BYTES: usize = 256 << 20;

/// What went wrong making a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Fetch(#[from] ClientError),
    #[error(transparent)]
    Verify(#[from] Failure),
}

/// An item's kind and a one-line description, from its event alone.
pub fn describe(ev: &Event) -> (&'static str, String) {
    let s = |k: &str| ev.meta_str(k).unwrap_or("").to_string();
    match &ev.action {
        Action::Register => ("registration", String::new()),
        Action::Attest => (
            "attestation",
            format!(
                "{} {}{}",
                s("kind"),
                match ev.meta_bool("passed") {
                    Some(true) => "passed",
                    Some(false) => "failed",
                    None => "?",
                },
                if ev.is_signed() {
                    ", signed"
                } else {
                    ", unsigned"
                }
            ),
        ),
        Action::Approve => ("approval", String::new()),
        Action::Reject => ("rejection", String::new()),
        Action::Promote | Action::Archive => ("promotion", format!("to {}", s("to_stage"))),
        Action::Rollback => ("promotion", "rollback to production".into()),
        Action::Retire => ("promotion", "retired".into()),
        Action::Deploy => (
            "deployment",
            format!("{} to {}", ev.subject, crate::registry::environment(ev)),
        ),
        Action::Deny => (
            "denial",
            format!(
                "{}: {}",
                s("attempted_action"),
                ev.meta("reasons")
                    .and_then(|r| r.as_array())
                    .map(|a| a
                        .iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("; "))
                    .unwrap_or_default()
            ),
        ),
        other => ("other", other.to_string()),
    }
}

fn item(index: u64, ev: &Event, bytes: &[u8], proof: Vec<Hex32>) -> Result<ChainItem, Failure> {
    let (kind, detail) = describe(ev);
    Ok(ChainItem {
        index,
        kind: kind.into(),
        actor: ev.actor.to_string(),
        timestamp: ev.timestamp.clone(),
        detail,
        leaf_hash: Hex32(tree::leaf_hash(bytes)),
        event: wire::raw_event(bytes).map_err(|e| Failure::Malformed(e.to_string()))?,
        inclusion_proof: proof,
    })
}

/// Build the approval chain of `name:version` from a server: the signed
/// checkpoint first (verified), then every event the version's state came
/// from with its inclusion proof in that tree. The result is checked with
/// [`check_approval_chain`] before it is returned.
pub async fn fetch_approval_chain(
    client: &Client,
    policy: &Policy,
    name: &str,
    version: &str,
) -> Result<ApprovalChain, ReportError> {
    let signed = client.get_bytes("/checkpoint").await?;
    let cp = policy.open_checkpoint(&signed)?;
    let size = cp.checkpoint.size;
    let seg = crate::encoding::url_segment;
    let mv: wire::ModelVersion = client
        .get_json(&format!(
            "/v1/models/{}/versions/{}",
            seg(name),
            seg(version)
        ))
        .await?;
    let mut items = Vec::new();
    for &i in mv
        .state
        .events
        .iter()
        .filter(|i| **i < size)
        .take(MAX_ITEMS)
    {
        let e: wire::Entry = client.get_json(&format!("/v1/entries/{i}")).await?;
        let bytes = e.event.get().as_bytes().to_vec();
        let ev = Event::from_canonical(&bytes)
            .map_err(|err| Failure::Malformed(format!("entry {i}: {err}")))?;
        let p: wire::InclusionProof = client
            .get_json(&format!("/v1/proof/inclusion?index={i}&tree_size={size}"))
            .await?;
        items.push(item(i, &ev, &bytes, p.proof)?);
    }
    let report = ApprovalChain {
        format: APPROVAL_CHAIN_FORMAT.into(),
        model_version: format!("{name}:{version}"),
        checkpoint: String::from_utf8_lossy(&signed).into_owned(),
        tree_size: size,
        items,
    };
    let bytes = serde_json::to_vec(&report).map_err(|e| Failure::Malformed(e.to_string()))?;
    check_approval_chain(policy, &bytes)?;
    Ok(report)
}

/// Verify a saved approval chain offline: the checkpoint under the policy,
/// every item's leaf hash and inclusion proof, that every event is about
/// the report's model version, that items are in log order, and that
/// each item's summary is what its event says.
pub fn check_approval_chain(policy: &Policy, bytes: &[u8]) -> Result<ApprovalChain, Failure> {
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(Failure::Malformed("report too large".into()));
    }
    let r: ApprovalChain =
        serde_json::from_slice(bytes).map_err(|e| Failure::Malformed(format!("report: {e}")))?;
    if r.format != APPROVAL_CHAIN_FORMAT {
        return Err(Failure::Malformed(format!("unknown format {:?}", r.format)));
    }
    let cp = policy.open_checkpoint(r.checkpoint.as_bytes())?;
    if cp.checkpoint.size != r.tree_size {
        return Err(Failure::Invalid(format!(
            "the report says tree size {} but its checkpoint is for {}",
            r.tree_size, cp.checkpoint.size
        )));
    }
    let mut last: Option<u64> = None;
    for it in &r.items {
        let bad = |m: String| Failure::Invalid(format!("item {}: {m}", it.index));
        if last.is_some_and(|l| it.index <= l) {
            return Err(bad("items are not in log order".into()));
        }
        last = Some(it.index);
        let (canonical, leaf) = event_leaf(it.event.get().as_bytes())?;
        if leaf != it.leaf_hash.0 {
            return Err(bad("the leaf hash is not the event's".into()));
        }
        tree::verify_inclusion(
            it.index,
            r.tree_size,
            &leaf,
            &unhex(&it.inclusion_proof),
            &cp.checkpoint.root,
        )
        .map_err(|e| bad(e.to_string()))?;
        let ev = Event::from_canonical(&canonical)
            .map_err(|e| Failure::Malformed(format!("item {}: {e}", it.index)))?;
        if ev.model_version() != Some(r.model_version.as_str()) {
            return Err(bad(format!("the event is not about {}", r.model_version)));
        }
        let (kind, detail) = describe(&ev);
        if it.kind != kind
            || it.detail != detail
            || it.actor != ev.actor.to_string()
            || it.timestamp != ev.timestamp
        {
            return Err(bad("the summary is not what the event says".into()));
        }
    }
    Ok(r)
}

/// One CSV row per item (RFC 4180 quoting): the summary, the leaf hash and
/// the inclusion proof (hashes joined by `;`). The signed checkpoint is
/// not in the CSV: keep the JSON report for `modeltrail verify report`.
pub fn to_csv(r: &ApprovalChain) -> String {
    fn q(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    let mut out = String::from(
        "model_version,tree_size,index,kind,actor,timestamp,detail,leaf_hash,inclusion_proof\n",
    );
    for it in &r.items {
        let proof: Vec<String> = it
            .inclusion_proof
            .iter()
            .map(|h| crate::encoding::hex(&h.0))
            .collect();
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            q(&r.model_version),
            r.tree_size,
            it.index,
            it.kind,
            q(&it.actor),
            q(&it.timestamp),
            q(&it.detail),
            crate::encoding::hex(&it.leaf_hash.0),
            proof.join(";")
        ));
    }
    out
}
