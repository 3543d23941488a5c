//! The JSON shapes of the HTTP API (design §2), one set for everybody: the
//! handlers serialise them, the client, the auditor, the CLI and the tests
//! deserialise them.
//!
//! - Hashes are lowercase hex ([`Hex32`]), sizes and indexes integers.
//! - Stored events are embedded as the raw JSON of their leaf bytes
//!   ([`RawEvent`]): the server never parses and re-serialises them, and a
//!   client reads exactly the bytes that were hashed.
//! - Answers tolerate unknown fields when read (a newer server may add
//!   some); requests refuse them.
//!
//! Pure: no I/O, no HTTP framework.

use crate::audit::vocab::{Principal, Ref, Role};
use crate::encoding::{hex32_bytes, hex32_str, parse_hex32, Hash32};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A 32-byte hash as 64 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hex32(pub Hash32);

impl Serialize for Hex32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(hex32_str(&self.0, &mut [0; 64]))
    }
}

impl<'de> Deserialize<'de> for Hex32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_hex32(&s)
            .map(Hex32)
            .ok_or_else(|| serde::de::Error::custom("a hash must be 64 lowercase hex digits"))
    }
}

/// In the API description: a string of 64 lowercase hex digits.
impl utoipa::PartialSchema for Hex32 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .description(Some("A SHA-256 hash, 64 lowercase hex digits"))
            .into()
    }
}

impl utoipa::ToSchema for Hex32 {}

/// Hashes as they travel.
pub fn hexes(hashes: &[Hash32]) -> Vec<Hex32> {
    hashes.iter().copied().map(Hex32).collect()
}

/// Hashes as they are used.
pub fn unhex(list: &[Hex32]) -> Vec<Hash32> {
    list.iter().map(|h| h.0).collect()
}

/// An event exactly as stored: its canonical JSON, embedded verbatim.
pub type RawEvent = Box<RawValue>;

/// Stored bytes that are not JSON text (a corrupt store).
#[derive(Debug, thiserror::Error)]
#[error("stored entry is not JSON text: {0}")]
pub struct NotJson(String);

/// Embed stored leaf bytes. They are this server's canonical JSON; the
/// check here only guards the JSON answer against a corrupt store.
pub fn raw_event(bytes: &[u8]) -> Result<RawEvent, NotJson> {
    let s = std::str::from_utf8(bytes).map_err(|e| NotJson(e.to_string()))?;
    RawValue::from_string(s.to_string()).map_err(|e| NotJson(e.to_string()))
}

/// The answer to an append, and `GET /v1/receipt`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hex32,
    pub event_id: String,
    #[schema(value_type = Object)]
    pub event: RawEvent,
    pub checkpoint: String,
    pub inclusion_proof: Vec<Hex32>,
    /// The same, as c2sp tlog-proof text (an offline receipt).
    pub tlog_proof: String,
    /// With `?wait=witnessed`: whether the checkpoint is cosigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witnessed: Option<bool>,
}

/// A receipt's parts, borrowed: the owned [`Receipt`] they make
/// ([`ReceiptParts::to_receipt`], its event checked to be JSON text), or
/// its JSON written straight from them ([`ReceiptParts::to_json`]), the
/// append path's answer. `to_json` splices the event's bytes in as they
/// are, so they must be JSON text already checked (the canonical form
/// `prepare` has just written from the parsed event), and writes, byte for byte,
/// what serde writes for the `Receipt`, without parsing the event again or
/// building the owned strings.
pub struct ReceiptParts<'a> {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: &'a Hash32,
    pub event_id: uuid::Uuid,
    pub event: &'a [u8],
    pub checkpoint: &'a str,
    pub inclusion_proof: &'a [Hash32],
    pub witnessed: Option<bool>,
}

impl ReceiptParts<'_> {
    /// The owned receipt, the event checked to be JSON text (it may come
    /// from the store).
    pub fn to_receipt(&self) -> Result<Receipt, NotJson> {
        Ok(Receipt {
            index: self.index,
            tree_size: self.tree_size,
            leaf_hash: Hex32(*self.leaf_hash),
            event_id: self.event_id.to_string(),
            event: raw_event(self.event)?,
            checkpoint: self.checkpoint.to_owned(),
            inclusion_proof: hexes(self.inclusion_proof),
            tlog_proof: self.tlog_proof(),
            witnessed: self.witnessed,
        })
    }

    /// The c2sp.org/tlog-proof text of the index, the proof and the
    /// checkpoint: the same lines `to_json` writes, unescaped.
    pub fn tlog_proof(&self) -> String {
        let mut text =
            crate::note::TlogProof::lines_before_checkpoint(self.index, self.inclusion_proof, "\n");
        text.push_str(self.checkpoint);
        text
    }

    /// The receipt's JSON. Fails only if serde fails to write a string
    /// into memory.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        use std::io::Write;
        let mut out = Vec::with_capacity(
            256 + self.event.len() + 2 * self.checkpoint.len() + 115 * self.inclusion_proof.len(),
        );
        let mut hex = [0u8; 64];
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        write!(
            out,
            "{{\"index\":{},\"tree_size\":{},\"leaf_hash\":\"{}\",\"event_id\":\"{}\",\"event\":",
            self.index,
            self.tree_size,
            hex32_str(self.leaf_hash, &mut hex),
            self.event_id.hyphenated().encode_lower(&mut id),
        )
        .map_err(serde_json::Error::io)?;
        out.extend_from_slice(self.event);
        out.extend_from_slice(b",\"checkpoint\":");
        let checkpoint_at = out.len();
        serde_json::to_writer(&mut out, self.checkpoint)?;
        let checkpoint_end = out.len();
        out.extend_from_slice(b",\"inclusion_proof\":");
        push_hashes(&mut out, self.inclusion_proof);
        // The tlog-proof text as a JSON string: its lines before the
        // checkpoint need no escaping but their line ends, and the
        // checkpoint's escaped form, with the closing quote, is the one
        // written just above after the quote at `checkpoint_at`.
        out.extend_from_slice(b",\"tlog_proof\":\"");
        out.extend_from_slice(
            crate::note::TlogProof::lines_before_checkpoint(
                self.index,
                self.inclusion_proof,
                "\\n",
            )
            .as_bytes(),
        );
        out.extend_from_within(checkpoint_at + 1..checkpoint_end);
        match self.witnessed {
            Some(true) => out.extend_from_slice(b",\"witnessed\":true"),
            Some(false) => out.extend_from_slice(b",\"witnessed\":false"),
            None => {}
        }
        out.push(b'}');
        Ok(out)
    }
}

/// `GET /v1/entries/{index}` and `GET /v1/events/{event_id}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    pub index: u64,
    pub leaf_hash: Hex32,
    #[schema(value_type = Object)]
    pub event: RawEvent,
}

/// `GET /v1/entries?start=&limit=`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntryPage {
    pub start: u64,
    pub tree_size: u64,
    pub entries: Vec<Entry>,
}

/// `GET /v1/proof/inclusion`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hex32,
    pub proof: Vec<Hex32>,
}

/// `GET /v1/proof/consistency`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub proof: Vec<Hex32>,
}

/// The JSON serde writes for an [`InclusionProof`], written straight from
/// the hashes: the proof endpoints' answer. Hex needs no escaping, so
/// serde's escape scan of every string, and the check that hex is UTF-8,
/// were most of a proof's JSON (docs/PERFORMANCE.md).
pub fn inclusion_proof_json(
    index: u64,
    tree_size: u64,
    leaf: &Hash32,
    proof: &[Hash32],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + 67 * proof.len());
    out.extend_from_slice(b"{\"index\":");
    push_u64(&mut out, index);
    out.extend_from_slice(b",\"tree_size\":");
    push_u64(&mut out, tree_size);
    out.extend_from_slice(b",\"leaf_hash\":\"");
    out.extend_from_slice(&hex32_bytes(leaf));
    out.extend_from_slice(b"\",\"proof\":");
    push_hashes(&mut out, proof);
    out.push(b'}');
    out
}

/// The JSON serde writes for a [`ConsistencyProof`], written straight from
/// the hashes (see [`inclusion_proof_json`]).
pub fn consistency_proof_json(old_size: u64, new_size: u64, proof: &[Hash32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + 67 * proof.len());
    out.extend_from_slice(b"{\"old_size\":");
    push_u64(&mut out, old_size);
    out.extend_from_slice(b",\"new_size\":");
    push_u64(&mut out, new_size);
    out.extend_from_slice(b",\"proof\":");
    push_hashes(&mut out, proof);
    out.push(b'}');
    out
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON array of hashes as quoted lowercase hex.
fn push_hashes(out: &mut Vec<u8>, hashes: &[Hash32]) {
    out.push(b'[');
    for (i, h) in hashes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(&hex32_bytes(h));
        out.push(b'"');
    }
    out.push(b']');
}

/// `GET /v1/log`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogInfo {
    pub origin: String,
    pub verifier_key: String,
    pub tree_size: u64,
    pub root_hash: Hex32,
    pub checkpoint: String,
    /// With witnesses: the latest checkpoint they cosigned (what
    /// `/checkpoint` serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witnessed: Option<WitnessedHead>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WitnessedHead {
    pub tree_size: u64,
    pub checkpoint: String,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or why not.
    pub status: String,
    pub tree_size: u64,
}

/// Every error answer: `{"error": {"code", "message"}}`; a refusal by the
/// registry's rules also lists its reasons and carries the receipt of the
/// logged `deny` event.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_receipt: Option<Receipt>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// A token's record (never its secret, except once in the answer that
/// made it), with the receipt of the event that changed it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Token {
    pub token_id: String,
    pub principal: Principal,
    pub roles: Vec<Role>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub granted_by: String,
    pub grant_index: u64,
    pub revoke_index: Option<u64>,
    /// The secret: only in the answer to `POST /v1/admin/tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

/// `GET /v1/admin/tokens`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// `PATCH /v1/admin/tokens/{token_id}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRoles {
    pub roles: Vec<String>,
}

/// `POST /v1/keys`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub public_key: String,
}

/// A registered key.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Key {
    pub public_key: String,
    pub registered_at: String,
    pub index: u64,
}

/// The answer to `POST /v1/keys`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRegistered {
    pub service: String,
    pub public_key: String,
    pub registered_at: String,
    pub index: u64,
    pub receipt: Receipt,
}

/// `GET /v1/keys/{service}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyList {
    pub service: String,
    pub keys: Vec<Key>,
}

/// One entry found by `GET /v1/search`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub index: u64,
    /// With `type` and `id` in the query: `subject` or `related`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub leaf_hash: Hex32,
    #[schema(value_type = Object)]
    pub event: RawEvent,
}

/// `GET /v1/search`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchPage {
    pub tree_size: u64,
    /// Where the next page starts, if there is one.
    pub next_start: Option<u64>,
    pub entries: Vec<SearchHit>,
}

/// `GET /v1/models`: registered models by name, paged.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelPage {
    pub tree_size: u64,
    pub models: Vec<ModelSummary>,
    /// The `start` of the next page, if there is one.
    pub next_start: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelSummary {
    pub name: String,
    /// The version id in production, if any.
    pub production: Option<String>,
    pub version_count: u64,
}

/// `GET /v1/models/{name}`: one model's versions as the log says.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelDetail {
    pub name: String,
    pub production: Option<String>,
    pub tree_size: u64,
    pub versions: Vec<VersionSummary>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionSummary {
    /// `name:version`.
    pub id: String,
    pub version: String,
    pub stage: String,
    pub approval_status: crate::registry::ApprovalStatus,
    /// Distinct human approvers since the last rejection.
    pub human_approvers: Vec<String>,
    /// Where the version was registered.
    pub registered_index: Option<u64>,
    /// The log indexes of its deployments.
    pub deployments: Vec<u64>,
}

/// `PUT /v1/artifacts/sha256/{digest}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactStored {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    /// False when the same bytes were already stored.
    pub created: bool,
}

/// `POST /v1/admin/reconcile` and `modeltrail reconcile`: every blob the
/// registry's events name, re-hashed.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReconcileReport {
    /// The log size whose events were read.
    pub tree_size: u64,
    pub checked: u64,
    pub missing: Vec<BlobProblem>,
    pub mismatched: Vec<BlobProblem>,
    /// The index of the logged `reconcile` event.
    pub reconcile_index: u64,
}

/// `GET /v1/reveal?index=&field=` and `modeltrail reveal`: a private
/// value, its salt, and a receipt for the entry that commits to it; with
/// the log's key, checked offline by `modeltrail verify reveal`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reveal {
    /// Where in the event: `actor.id` or `metadata.<path>`.
    pub field: String,
    /// What the leaf holds there: `commit:<hex>`.
    pub commitment: String,
    pub value: String,
    /// 32 bytes, hex: commitment = SHA-256(salt ‖ UTF-8(value)).
    pub salt: String,
    /// `kind:value`, the data subject the value names.
    pub subject: String,
    pub receipt: Receipt,
    /// The index of the `access` event that logged this reveal.
    pub access_index: u64,
}

/// The answer to an MLflow webhook delivery: the receipts of what it
/// appended, or the MLflow event type it ignored.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MlflowDelivery {
    pub delivery_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    #[serde(default)]
    pub receipts: Vec<Receipt>,
}

/// `POST /v1/admin/reconciled`: a reconciliation against another system,
/// done by an auditor's tool, to be logged as a `reconcile` event.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reconciled {
    /// What was compared with the log: `mlflow`.
    pub source: String,
    /// Where it is (a tracking URI).
    pub target: String,
    pub checked: u64,
    pub differences: u64,
    /// The tree size of the log state it was compared with.
    pub tree_size: u64,
}

/// `POST /v1/admin/erase`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// `kind:value`, for example `user:alice`.
    pub subject: String,
}

/// The answer to an erasure: what the log keeps of it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Erased {
    pub commitment: String,
    pub kind: String,
    /// The index of the logged `erase` event.
    pub erase_index: u64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobProblem {
    /// `sha256:<hex>`.
    pub digest: String,
    /// What the stored blob hashes to, when it is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// The log indexes of the events that name it.
    pub events: Vec<u64>,
}

/// The approval chain report's format name.
pub const APPROVAL_CHAIN_FORMAT: &str = "modeltrail-approval-chain/v1";

/// `modeltrail report approval-chain`: every event of one model version,
/// each with its inclusion proof against one signed checkpoint.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalChain {
    pub format: String,
    /// `name:version`.
    pub model_version: String,
    pub checkpoint: String,
    pub tree_size: u64,
    pub items: Vec<ChainItem>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainItem {
    pub index: u64,
    /// registration, attestation, approval, rejection, promotion, denial,
    /// deployment or other.
    pub kind: String,
    pub actor: String,
    pub timestamp: String,
    pub detail: String,
    pub leaf_hash: Hex32,
    #[schema(value_type = Object)]
    pub event: RawEvent,
    pub inclusion_proof: Vec<Hex32>,
}

/// An entry's inclusion proof in a named tree.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntryProof {
    pub index: u64,
    pub leaf_hash: Hex32,
    pub inclusion_proof: Vec<Hex32>,
}

/// `GET /v1/models/{name}/versions/{version}`: the version's state as the
/// registry derives it, with the tree size it covers and, on request, each
/// event's inclusion proof against one signed checkpoint.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelVersion {
    #[serde(flatten)]
    pub state: crate::registry::Version,
    /// The approvals that count now (`type:id`).
    pub approvers: Vec<String>,
    /// Toward the version's next stage, under the server's policy.
    pub approval_status: crate::registry::ApprovalStatus,
    pub tree_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_tree_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proofs: Option<Vec<EntryProof>>,
    /// With more events than one answer proves: the `start` of the next
    /// page of proofs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proofs_next: Option<u64>,
}

/// A witness's `GET /healthz`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WitnessHealth {
    pub status: String,
    pub verifier_key: String,
    pub logs: Vec<WitnessedLog>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WitnessedLog {
    pub origin: String,
    /// The size of the last checkpoint it cosigned for this log.
    pub cosigned_size: Option<u64>,
}

/// The trace bundle format's name. v2: every node but the start holds only
/// entries logged before the entry that linked to it (a deployment only
/// its latest `deploy` before it), `archive` links are not followed, and
/// `served_by` names the model version behind a prediction.
pub const TRACE_FORMAT: &str = "modeltrail-trace/v2";
/// The earlier format, still verified (links followed forward in time).
pub const TRACE_FORMAT_V1: &str = "modeltrail-trace/v1";

/// The model version that served the start of a trace, as the log says:
/// the latest `deploy` of the deployment the start entry names, before it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServedBy {
    pub model_version: String,
    pub deployment: String,
    /// The `deploy` entry.
    pub deploy_index: u64,
    /// The start's entry that names the deployment.
    pub entry_index: u64,
}

/// `GET /v1/trace/{type}/{id}`: a lineage trace bundle, verified offline by
/// [`crate::trace::check`]. A file format as much as an answer, so it is
/// read strictly.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceBundle {
    pub format: String,
    pub start: Ref,
    /// The signed checkpoint every proof is against.
    pub checkpoint: String,
    pub tree_size: u64,
    /// In the order visited; the first is `start`.
    pub nodes: Vec<TraceNode>,
    pub entries: Vec<TraceEntry>,
    pub truncated: bool,
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<ServedBy>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceNode {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// Entries whose subject is this node.
    pub entries: Vec<u64>,
    /// The `related` links of those entries: where the walk went next.
    pub links: Vec<Ref>,
    /// True if this node had more entries than were included.
    pub truncated: bool,
}

impl TraceNode {
    pub fn reference(&self) -> Ref {
        Ref::new(&self.kind, &self.id)
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceEntry {
    pub index: u64,
    #[schema(value_type = Object)]
    pub event: RawEvent,
    /// The inclusion proof in the checkpoint's tree.
    pub inclusion_proof: Vec<Hex32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The proof endpoints' JSON, written by hand, is byte for byte
        /// what serde writes for the wire types, and reads back as them.
        #[test]
        fn proofs_written_by_hand_are_what_serde_writes(
            a in proptest::prelude::any::<u64>(),
            b in proptest::prop_oneof![proptest::prelude::Just(0u64), proptest::prelude::Just(u64::MAX), 0u64..1000, proptest::prelude::any::<u64>()],
            leaf in proptest::prelude::any::<[u8; 32]>(),
            proof in proptest::collection::vec(proptest::prelude::any::<[u8; 32]>(), 0..70),
        ) {
            let inclusion = InclusionProof {
                index: a,
                tree_size: b,
                leaf_hash: Hex32(leaf),
                proof: hexes(&proof),
            };
            let direct = inclusion_proof_json(a, b, &leaf, &proof);
            proptest::prop_assert_eq!(&direct, &serde_json::to_vec(&inclusion).unwrap());
            let back: InclusionProof = serde_json::from_slice(&direct).unwrap();
            proptest::prop_assert_eq!(unhex(&back.proof), proof.clone());
            let consistency = ConsistencyProof {
                old_size: b,
                new_size: a,
                proof: hexes(&proof),
            };
            let direct = consistency_proof_json(b, a, &proof);
            proptest::prop_assert_eq!(&direct, &serde_json::to_vec(&consistency).unwrap());
        }
    }

    #[test]
    fn hashes_and_raw_events_travel_as_they_are() {
        let r = Receipt {
            index: 3,
            tree_size: 4,
            leaf_hash: Hex32([0xab; 32]),
            event_id: "e".into(),
            event: raw_event(br#"{"action":"x","n":1e+21}"#).unwrap(),
            checkpoint: "c".into(),
            inclusion_proof: vec![Hex32([1; 32])],
            tlog_proof: "t".into(),
            witnessed: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            text.contains(r#""event":{"action":"x","n":1e+21}"#),
            "{text}"
        );
        assert!(!text.contains("witnessed"));
        let back: Receipt = serde_json::from_str(&text).unwrap();
        assert_eq!(back.event.get(), r#"{"action":"x","n":1e+21}"#);
        assert_eq!(back.leaf_hash, r.leaf_hash);
        let bad = text.replace(&"ab".repeat(32), &"AB".repeat(32));
        assert!(serde_json::from_str::<Receipt>(&bad).is_err());
        assert!(raw_event(b"{").is_err());
    }

    #[test]
    fn a_receipt_written_from_its_parts_is_what_serde_writes() {
        // A canonical event with escapes and characters beyond ASCII, a
        // checkpoint of several lines with a signature line, proofs of
        // every length from none, and each value of `witnessed`.
        let event = crate::audit::event::prepare(
            "{\"action\":\"register\",\"actor\":{\"type\":\"user\",\"id\":\"zoë\"},\
             \"timestamp\":\"2025-05-05T14:03:00Z\",\"subject\":{\"type\":\"model_version\",\"id\":\"m:1\"},\
             \"metadata\":{\"n\":1e21,\"s\":\"\\u2028 \u{1F600} \\\"q\\\" \\\\ \\u0001 \\u007f\"}}"
                .as_bytes(),
        )
        .unwrap();
        let checkpoint = "log.example/x\n12\nq83+Q==\n\n\u{2014} log.example/x AbCd+/==\n";
        for n in [0usize, 1, 2, 31] {
            let proof: Vec<Hash32> = (0..n).map(|i| [i as u8 ^ 0x5a; 32]).collect();
            for witnessed in [None, Some(true), Some(false)] {
                let parts = ReceiptParts {
                    index: 7 + n as u64,
                    tree_size: u64::MAX,
                    leaf_hash: &event.leaf_hash,
                    event_id: event.event_id(),
                    event: &event.canonical,
                    checkpoint,
                    inclusion_proof: &proof,
                    witnessed,
                };
                let by_serde = serde_json::to_vec(&Receipt {
                    index: parts.index,
                    tree_size: parts.tree_size,
                    leaf_hash: Hex32(event.leaf_hash),
                    event_id: event.event_id().to_string(),
                    event: raw_event(&event.canonical).unwrap(),
                    checkpoint: checkpoint.into(),
                    inclusion_proof: hexes(&proof),
                    tlog_proof: crate::note::TlogProof {
                        extra: None,
                        index: parts.index,
                        proof: proof.clone(),
                        checkpoint: checkpoint.into(),
                    }
                    .encode(),
                    witnessed,
                })
                .unwrap();
                let direct = parts.to_json().unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&direct),
                    String::from_utf8_lossy(&by_serde),
                    "{n} hashes, witnessed {witnessed:?}"
                );
                let back: Receipt = serde_json::from_slice(&direct).unwrap();
                assert_eq!(back.event.get().as_bytes(), &event.canonical[..]);
                assert_eq!(back.inclusion_proof.len(), n);
            }
        }
    }
}
