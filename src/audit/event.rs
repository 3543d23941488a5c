//! Audit events (design §3): strict validation at the boundary, a server
//! assigned UUIDv7 when the client sent no `event_id`, and RFC 8785 (JCS)
//! canonical bytes, which are the leaf bytes.
//!
//! JSON is parsed strictly: duplicate object keys, integers outside the
//! range a double holds exactly (±(2^53 − 1)), and nesting deeper than
//! [`MAX_DEPTH`] are errors, so that every implementation computes the same
//! canonical bytes.

use super::vocab::{Action, Fold, Principal, Ref, MODEL_VERSION};
use crate::tree::{self, Hash};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use std::fmt;
use uuid::Uuid;

/// The largest leaf: entry bundles length-prefix entries with a uint16.
pub const MAX_ENTRY_BYTES: usize = 65_535;
/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 32;
const MAX_SAFE_INT: u64 = (1 << 53) - 1;
const MAX_RELATED: usize = 64;
const MAX_ID_LEN: usize = 512;

/// Top-level fields an event may have.
pub const FIELDS: &[&str] = &[
    "event_id",
    "action",
    "actor",
    "timestamp",
    "subject",
    "related",
    "metadata",
    "integrity",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("{field}: {msg}")]
    Field { field: String, msg: String },
    #[error("event is {0} bytes in canonical form; the limit is {MAX_ENTRY_BYTES}")]
    TooLarge(usize),
    /// Well-formed, but a digest it carries does not match its content.
    #[error("{0}")]
    Digest(String),
}

fn field(field: &str, msg: impl Into<String>) -> EventError {
    EventError::Field {
        field: field.to_string(),
        msg: msg.into(),
    }
}

/// A stored or validated event, typed: what the derived state, the access
/// checks and the trace read. It is a view only: leaf bytes always come
/// from the canonical JSON, never from serialising this struct.
#[derive(Clone, Debug, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Chosen by the submitter (a resubmission with the same id and the
    /// same content is answered with the stored receipt) or, when absent,
    /// by the server.
    #[schema(required = false)]
    pub event_id: Uuid,
    /// `register`, `approve`, `promote`, `deploy`, … (docs/REGISTRY.md).
    #[schema(value_type = String, pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub action: Action,
    pub actor: Principal,
    /// RFC 3339, as submitted.
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub subject: Ref,
    #[serde(default)]
    pub related: Vec<Ref>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub integrity: Option<Integrity>,
}

/// The `integrity` member.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Integrity {
    pub artifact_sha256: Option<String>,
    /// SHA-256 of the event's canonical form without `event_sha256` and
    /// `signature` (and without `integrity` if nothing else is left).
    pub event_sha256: Option<String>,
    pub signature: Option<String>,
}

impl Event {
    /// Read an entry's leaf bytes (canonical JSON written by this server).
    pub fn from_canonical(bytes: &[u8]) -> Result<Event, EventError> {
        serde_json::from_slice(bytes).map_err(|e| EventError::Json(e.to_string()))
    }

    /// The model version the event is about: its subject if that is a
    /// model_version, else the first model_version among `related`.
    pub fn model_version(&self) -> Option<&str> {
        if self.subject.kind == MODEL_VERSION {
            return Some(&self.subject.id);
        }
        self.related
            .iter()
            .find(|r| r.kind == MODEL_VERSION)
            .map(|r| r.id.as_str())
    }

    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.metadata.as_ref()?.get(key)
    }

    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta(key)?.as_str()
    }

    pub fn meta_bool(&self, key: &str) -> Option<bool> {
        self.meta(key)?.as_bool()
    }

    pub fn meta_u64(&self, key: &str) -> Option<u64> {
        self.meta(key)?.as_u64()
    }

    /// The derived state that folds this event in: the action's (see
    /// [`Action::fold`]), except that `attest` and `deploy` count for the
    /// registry only when they name a model version.
    pub fn fold(&self) -> Fold {
        match (&self.action, self.action.fold()) {
            (Action::Attest | Action::Deploy, Fold::Registry) if self.model_version().is_none() => {
                Fold::None
            }
            (_, f) => f,
        }
    }

    /// True if the event carries `integrity.signature`.
    /// `integrity.artifact_sha256`, if the event carries one.
    pub fn artifact_sha256(&self) -> Option<&str> {
        self.integrity.as_ref()?.artifact_sha256.as_deref()
    }

    pub fn is_signed(&self) -> bool {
        self.integrity
            .as_ref()
            .is_some_and(|i| i.signature.is_some())
    }

    /// The `related` links, each once, in order.
    pub fn links(&self) -> Vec<Ref> {
        let mut out: Vec<Ref> = Vec::new();
        for r in &self.related {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        out
    }

    /// The links a lineage trace follows from this entry: its `related`
    /// links, except an `archive`'s (they name the successor, which comes
    /// later in time than anything the archived version did).
    pub fn lineage_links(&self) -> Vec<Ref> {
        if self.action == Action::Archive {
            return Vec::new();
        }
        self.links()
    }

    /// `(reference, is_subject)` of the subject and each distinct `related`
    /// link that is not the subject: the lineage index's keys.
    pub fn mentions(&self) -> Vec<(Ref, bool)> {
        let mut out = vec![(self.subject.clone(), true)];
        for r in &self.related {
            if !out.iter().any(|(m, _)| m == r) {
                out.push((r.clone(), false));
            }
        }
        out
    }
}

/// Index kinds for auditor queries, kept in the lineage index beside the
/// real `(type, id)` keys. They start with `@`, which no event type can,
/// so they never meet a lineage key.
pub const BY_ACTOR: &str = "@actor";
pub const BY_ACTION: &str = "@action";
pub const BY_MONTH: &str = "@month";
/// The years the month index has buckets for; timestamps outside fall in
/// the first or last bucket (queries filter on the exact time).
pub const MONTH_YEARS: (i32, i32) = (1970, 2199);

/// Parse an RFC 3339 time.
pub fn parse_time(ts: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()
}

/// The month bucket (`YYYY-MM`, UTC) of a time, clamped to [`MONTH_YEARS`].
pub fn month_bucket(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let (lo, hi) = MONTH_YEARS;
    let (y, m) = match t.year() {
        y if y < lo => (lo, 1),
        y if y > hi => (hi, 12),
        y => (y, u8::from(t.month())),
    };
    format!("{y:04}-{m:02}")
}

impl Event {
    /// Every key this entry has in the lineage index: its mentions, and
    /// the auditor's keys (actor, action, month of its timestamp), each
    /// with whether it is the subject.
    pub fn index_keys(&self) -> Vec<(Ref, bool)> {
        let mut out = self.mentions();
        out.push((Ref::new(BY_ACTOR, self.actor.to_string()), true));
        out.push((Ref::new(BY_ACTION, self.action.as_str()), true));
        if let Some(t) = parse_time(&self.timestamp) {
            out.push((Ref::new(BY_MONTH, month_bucket(t)), true));
        }
        out
    }
}

/// A validated event ready to append: its typed view, its canonical bytes
/// (the leaf) and their leaf hash.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub event: Event,
    /// True if the client chose the id (a resubmission may match a stored event).
    pub client_id: bool,
    pub canonical: Vec<u8>,
    pub leaf_hash: Hash,
}

impl Prepared {
    pub fn event_id(&self) -> Uuid {
        self.event.event_id
    }

    pub fn action(&self) -> &Action {
        &self.event.action
    }
}

/// Parse, validate and canonicalize a submitted event body.
pub fn prepare(body: &[u8]) -> Result<Prepared, EventError> {
    let mut value = parse_strict(body)?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| EventError::Json("an event must be a JSON object".into()))?;
    let client_id = match obj.get("event_id") {
        None => {
            obj.insert("event_id".into(), Value::String(Uuid::now_v7().to_string()));
            false
        }
        Some(v) => {
            parse_event_id(v)?;
            true
        }
    };
    validate(obj)?;
    let canonical = super::jcs::to_vec(&value);
    if canonical.len() > MAX_ENTRY_BYTES {
        return Err(EventError::TooLarge(canonical.len()));
    }
    check_event_sha256(&value, client_id)?;
    // The typed view comes from the stored form, not the submitted one, so
    // the state folded at append time is the state a rebuild from the log
    // folds (`1200.0` is stored, and read back, as `1200`).
    as_stored(&mut value);
    let event: Event =
        serde_json::from_value(value).map_err(|e| EventError::Json(e.to_string()))?;
    Ok(Prepared {
        event,
        client_id,
        leaf_hash: tree::leaf_hash(&canonical),
        canonical,
    })
}

/// Turn `value` into what parsing its canonical bytes gives: RFC 8785
/// writes every number as a double, and an integral double below 1e21 as a
/// plain integer, which a parser reads back as an integer (`1200.0` is
/// stored as `1200`, `-0.0` as `0`).
///
/// What is stored must read back as the same event under the same strict
/// rules, or every verifier would report the honest entry as tampered.
/// Numbers are the only part that can change on the way: names and strings
/// are written as they are, with escapes that read back to the same text,
/// and [`parse_strict`] has already refused the integral doubles past
/// ±(2^53 − 1) whose integer form it would refuse. The tests and the
/// `event` fuzz target hold `prepare` to the full round trip (parse the
/// canonical bytes strictly, canonicalize again, compare), which this
/// replaces on the append path.
fn as_stored(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x.fract() == 0.0 && x.abs() <= MAX_SAFE_INT as f64 {
                // Exact: an integral double within ±(2^53 − 1).
                *n = if x < 0.0 {
                    Number::from(x as i64)
                } else {
                    Number::from(x as u64)
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(as_stored),
        Value::Object(members) => members.values_mut().for_each(as_stored),
        _ => {}
    }
}

/// The digest `integrity.event_sha256` must hold: SHA-256 of the event's
/// RFC 8785 form without `integrity.event_sha256` and
/// `integrity.signature` (and without `integrity` if nothing else is
/// left), lowercase hex. A signer computes it first, then signs.
pub fn event_sha256(event: &Value) -> Result<String, EventError> {
    use sha2::{Digest, Sha256};
    let mut v = event.clone();
    if let Some(obj) = v.as_object_mut() {
        let empty = match obj.get_mut("integrity").and_then(Value::as_object_mut) {
            Some(i) => {
                i.remove("event_sha256");
                i.remove("signature");
                i.is_empty()
            }
            None => false,
        };
        if empty {
            obj.remove("integrity");
        }
    }
    let bytes = canonicalize(&v);
    Ok(crate::encoding::hex(&Sha256::digest(&bytes)))
}

/// A present `integrity.event_sha256` must match the event.
fn check_event_sha256(value: &Value, client_id: bool) -> Result<(), EventError> {
    let Some(claimed) = value
        .get("integrity")
        .and_then(|i| i.get("event_sha256"))
        .and_then(Value::as_str)
    else {
        return Ok(());
    };
    if !client_id {
        return Err(EventError::Digest(
            "integrity.event_sha256 covers event_id, so the event must carry its own".into(),
        ));
    }
    let actual = event_sha256(value)?;
    if actual != claimed {
        return Err(EventError::Digest(format!(
            "integrity.event_sha256 is {claimed} but the event hashes to {actual}"
        )));
    }
    Ok(())
}

/// Canonical form of stored leaf bytes, for resubmission comparisons and
/// offline recomputation.
pub fn canonicalize(value: &Value) -> Vec<u8> {
    super::jcs::to_vec(value)
}

fn parse_event_id(v: &Value) -> Result<Uuid, EventError> {
    let s = v
        .as_str()
        .ok_or_else(|| field("event_id", "must be a string"))?;
    let id = Uuid::try_parse(s).map_err(|_| field("event_id", "is not a UUID"))?;
    if id.hyphenated().to_string() != s {
        return Err(field(
            "event_id",
            "must be a lowercase hyphenated UUID (8-4-4-4-12)",
        ));
    }
    if id.is_nil() || id.is_max() {
        return Err(field("event_id", "must not be the nil or max UUID"));
    }
    Ok(id)
}

fn validate(obj: &Map<String, Value>) -> Result<(), EventError> {
    for k in obj.keys() {
        if !FIELDS.contains(&k.as_str()) {
            return Err(field(k, "unknown field"));
        }
    }
    let action = required_str(obj, "action")?;
    check_ident("action", action)?;

    let actor = required(obj, "actor")?
        .as_object()
        .ok_or_else(|| field("actor", "must be an object"))?;
    only_keys("actor", actor, &["type", "id"])?;
    let actor_type =
        required_str(actor, "type").map_err(|_| field("actor.type", "required string"))?;
    if actor_type != "user" && actor_type != "service" {
        return Err(field("actor.type", "must be \"user\" or \"service\""));
    }
    check_id("actor.id", actor.get("id"))?;

    let ts = required_str(obj, "timestamp")?;
    if ts.len() > 64
        || time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_err()
    {
        return Err(field("timestamp", "must be an RFC 3339 date-time"));
    }

    check_ref("subject", required(obj, "subject")?)?;
    if let Some(related) = obj.get("related") {
        let list = related
            .as_array()
            .ok_or_else(|| field("related", "must be an array"))?;
        if list.len() > MAX_RELATED {
            return Err(field("related", format!("at most {MAX_RELATED} links")));
        }
        for (i, r) in list.iter().enumerate() {
            check_ref(format_args!("related[{i}]"), r)?;
        }
    }
    if let Some(m) = obj.get("metadata") {
        if !m.is_object() {
            return Err(field("metadata", "must be an object"));
        }
    }
    if let Some(i) = obj.get("integrity") {
        let i = i
            .as_object()
            .ok_or_else(|| field("integrity", "must be an object"))?;
        only_keys(
            "integrity",
            i,
            &["artifact_sha256", "event_sha256", "signature"],
        )?;
        for name in ["artifact_sha256", "event_sha256"] {
            if let Some(a) = i.get(name) {
                let ok = a.as_str().is_some_and(|s| {
                    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                });
                if !ok {
                    return Err(field(
                        &format!("integrity.{name}"),
                        "must be 64 lowercase hex digits",
                    ));
                }
            }
        }
        if let Some(s) = i.get("signature") {
            if !s.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 1024) {
                return Err(field(
                    "integrity.signature",
                    "must be a string of 1..=1024 bytes",
                ));
            }
        }
    }
    Ok(())
}

fn required<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a Value, EventError> {
    obj.get(name).ok_or_else(|| field(name, "required"))
}

fn required_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, EventError> {
    required(obj, name)?
        .as_str()
        .ok_or_else(|| field(name, "must be a string"))
}

fn only_keys(
    name: impl std::fmt::Display,
    obj: &Map<String, Value>,
    allowed: &[&str],
) -> Result<(), EventError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(field(&format!("{name}.{k}"), "unknown field")),
        None => Ok(()),
    }
}

/// Lowercase identifiers: actions and reference types.
/// An action name as events spell it.
pub fn check_action(s: &str) -> Result<(), EventError> {
    check_ident("action", s)
}

const IDENT_RULE: &str = "must match [a-z][a-z0-9_]{0,63}";

fn ident_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn check_ident(name: &str, s: &str) -> Result<(), EventError> {
    if ident_ok(s) {
        Ok(())
    } else {
        Err(field(name, IDENT_RULE))
    }
}

fn check_id(name: &str, v: Option<&Value>) -> Result<(), EventError> {
    id_rule(v).map_err(|m| field(name, m))
}

/// What is wrong with an id, if anything.
fn id_rule(v: Option<&Value>) -> Result<(), String> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| "required string".to_string())?;
    if s.is_empty() || s.len() > MAX_ID_LEN || has_invisible(s) {
        return Err(format!(
            "must be 1..={MAX_ID_LEN} bytes without control, format (bidi, zero-width), separator or private-use characters"
        ));
    }
    Ok(())
}

/// Whether `s` holds a character an id may not. Printable ASCII (space
/// to tilde) holds none, so most ids need no table lookup.
fn has_invisible(s: &str) -> bool {
    !s.bytes().all(|b| (b' '..=b'~').contains(&b)) && s.chars().any(invisible)
}

/// Characters an id may not hold: they are invisible or reorder text, so
/// two ids that look alike could name different principals or models.
fn invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        G::Control
            | G::Format
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::PrivateUse
            | G::Surrogate
    )
}

/// `{"type": ident, "id": string}`: a subject or a lineage link. The
/// field's name is spelled out only for an error.
fn check_ref(name: impl std::fmt::Display + Copy, v: &Value) -> Result<(), EventError> {
    let obj = v
        .as_object()
        .ok_or_else(|| field(&name.to_string(), "must be an object with type and id"))?;
    only_keys(name, obj, &["type", "id"])?;
    let t = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| field(&format!("{name}.type"), "required string"))?;
    if !ident_ok(t) {
        return Err(field(&format!("{name}.type"), IDENT_RULE));
    }
    id_rule(obj.get("id")).map_err(|m| field(&format!("{name}.id"), m))
}

/// Parse JSON rejecting duplicate keys, unsafe integers and deep nesting.
pub fn parse_strict(body: &[u8]) -> Result<Value, EventError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = StrictSeed { depth: 0 }
        .deserialize_any_value(&mut de)
        .map_err(|e| EventError::Json(e.to_string()))?;
    de.end().map_err(|e| EventError::Json(e.to_string()))?;
    Ok(v)
}

struct StrictSeed {
    depth: usize,
}

impl StrictSeed {
    fn deserialize_any_value<'de, D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor { depth: self.depth })
    }
}

impl<'de> de::DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize_any_value(d)
    }
}

struct StrictVisitor {
    depth: usize,
}

impl StrictVisitor {
    fn nested<E: de::Error>(&self) -> Result<StrictSeed, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("nesting deeper than {MAX_DEPTH}")));
        }
        Ok(StrictSeed {
            depth: self.depth + 1,
        })
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        if v.unsigned_abs() > MAX_SAFE_INT {
            return Err(E::custom("integer outside ±(2^53 - 1)"));
        }
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if v > MAX_SAFE_INT {
            return Err(E::custom("integer outside ±(2^53 - 1)"));
        }
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // RFC 8785 writes a double as ECMAScript does: an integral value
        // below 1e21 as a plain integer. Past ±(2^53 − 1) that integer is
        // one this parser (and JSON parsers that read integers exactly)
        // refuses, so the canonical form would not parse back.
        if v.fract() == 0.0 && v.abs() > MAX_SAFE_INT as f64 && v.abs() < 1e21 {
            return Err(E::custom(
                "an integral number beyond ±(2^53 - 1) (its canonical form is such an integer)",
            ));
        }
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.nested()?)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            let v = map.next_value_seed(self.nested()?)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests;

/// Check an id given outside an event (a principal in a token request)
/// with the rules of ids in events.
pub fn check_id_text(name: &str, id: &str) -> Result<(), EventError> {
    check_id(name, Some(&Value::String(id.to_string())))
}

/// Check a lineage reference given outside an event (a search or trace
/// request) with the same rules as in an event: an identifier type and a
/// bounded id without control characters.
pub fn check_lineage_ref(kind: &str, id: &str) -> Result<(), EventError> {
    check_ident("type", kind)?;
    check_id("id", Some(&Value::String(id.to_string())))
}

/// The current time as RFC 3339 UTC, whole seconds: the timestamp of the
/// events the server records itself.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}
