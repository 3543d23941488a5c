//! The model registry's state, derived from the log: per model version, its
//! registration, stage, approvals, rejections, attestations and
//! deployments, each with the log indexes it came from; per model, its
//! versions and the one in production (a slot per model, as in MLflow).
//!
//! [`State::apply`] folds one logged event into the state; the same fold
//! over the same entries gives the same state, which is how the state is
//! rebuilt from the log alone (`modeltrail reindex`). [`State::check`]
//! decides whether an event may be appended under the promotion gates: it
//! returns every unmet requirement, which the server logs as a `deny`
//! event; [`State::follow_ups`] names the events the server records after
//! an accepted one (archiving a replaced version).
//!
//! This module decides and folds; it does not append ([`crate::ledger`]
//! does, one registry event at a time). Pure: no I/O.

use crate::audit::vocab::{Action, Fold, Ref};
use crate::audit::{Event, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod policy;

pub use policy::{Gate, Policy, Stage};

/// The model name of a model version id `name:version` (everything before
/// the last `:`; an id without one is its own model).
pub fn model_of(id: &str) -> &str {
    id.rsplit_once(':').map_or(id, |(m, _)| m)
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Mark {
    /// `type:id` of the actor.
    pub by: String,
    pub index: u64,
}

impl Mark {
    fn human(&self) -> bool {
        self.by.starts_with("user:")
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Attestation {
    pub kind: String,
    pub passed: bool,
    pub by: String,
    pub index: u64,
    /// Whether the event carried a signature the server verified.
    pub signed: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct StageChange {
    pub stage: String,
    pub action: String,
    pub by: String,
    pub index: u64,
}

/// A deployment of the version, with the environment it went to.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Deployment {
    pub by: String,
    pub index: u64,
    pub environment: String,
    /// The artifact digest the deployment names, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_sha256: Option<String>,
}

/// What the artifact store says about a version's registered blob, for
/// the promotion check (the ledger asks the store; this module decides).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArtifactCheck {
    /// The blob re-hashes to the registered digest.
    Verified,
    Missing,
    Mismatch {
        actual: String,
    },
}

/// SageMaker's approval vocabulary, derived from the log and the gate of
/// the version's next stage.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub enum ApprovalStatus {
    PendingManualApproval,
    Approved,
    Rejected,
}

/// One model version, as the log says.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Version {
    pub id: String,
    pub registered: Option<Mark>,
    /// The artifact digest registered with the version, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_sha256: Option<String>,
    /// `none`, `staging`, `production` or `archived`.
    pub stage: String,
    pub stages: Vec<StageChange>,
    pub approvals: Vec<Mark>,
    pub rejections: Vec<Mark>,
    pub attestations: Vec<Attestation>,
    pub deployments: Vec<Deployment>,
    pub denials: Vec<u64>,
    /// Every event this state was derived from, in log order.
    pub events: Vec<u64>,
}

impl Version {
    fn new(id: &str) -> Self {
        Version {
            id: id.to_string(),
            stage: Stage::None.as_str().into(),
            ..Default::default()
        }
    }

    pub fn stage(&self) -> Stage {
        Stage::parse(&self.stage).unwrap_or(Stage::None)
    }

    fn last_rejection(&self) -> Option<u64> {
        self.rejections.iter().map(|r| r.index).max()
    }

    /// Distinct approvers since the last rejection.
    pub fn current_approvers(&self) -> Vec<String> {
        let last_rejection = self.last_rejection();
        let mut out: Vec<String> = Vec::new();
        for a in &self.approvals {
            if last_rejection.is_some_and(|r| a.index < r) {
                continue;
            }
            if !out.contains(&a.by) {
                out.push(a.by.clone());
            }
        }
        out
    }

    /// Distinct human approvers since the last rejection.
    pub fn human_approvers(&self) -> Vec<String> {
        let last_rejection = self.last_rejection();
        let mut out: Vec<String> = Vec::new();
        for a in &self.approvals {
            if a.human() && last_rejection.is_none_or(|r| a.index >= r) && !out.contains(&a.by) {
                out.push(a.by.clone());
            }
        }
        out
    }

    /// The latest attestation of `kind` that `gate` counts.
    fn counted_attestation(&self, gate: &Gate, kind: &str) -> Option<&Attestation> {
        self.attestations
            .iter()
            .rev()
            .find(|a| a.kind == kind && gate.counts_attester(kind, &a.by))
    }

    fn was_in_production(&self) -> bool {
        self.stages
            .iter()
            .any(|s| s.stage == Stage::Production.as_str())
    }

    /// Where the version last left production, if it did.
    fn left_production_at(&self) -> Option<u64> {
        let mut left = None;
        let mut inside = false;
        for s in &self.stages {
            let prod = s.stage == Stage::Production.as_str();
            if inside && !prod {
                left = Some(s.index);
            }
            inside = prod;
        }
        left
    }

    /// Every requirement of `stage`'s gate this version does not meet.
    pub fn unmet(&self, stage: Stage, policy: &Policy) -> Vec<String> {
        let mut unmet = Vec::new();
        let Some(gate) = policy.gate(stage) else {
            return unmet;
        };
        let id = &self.id;
        let need = policy.min_human_approvals(stage);
        let humans = self.human_approvers();
        if humans.len() < need {
            unmet.push(format!(
                "{stage} needs {need} approvals from distinct human approvers since the last rejection; {id} has {}",
                humans.len()
            ));
        }
        for kind in &gate.attestations {
            let signed_only = gate.require_signed_attestations.contains(kind);
            match self.counted_attestation(gate, kind) {
                Some(a) if !a.passed => unmet.push(format!(
                    "the latest {kind} attestation (entry {}) did not pass",
                    a.index
                )),
                Some(a) if signed_only && !a.signed => unmet.push(format!(
                    "the latest {kind} attestation (entry {}) is not signed",
                    a.index
                )),
                Some(_) => {}
                None => unmet.push(format!("no {kind} attestation for {id}")),
            }
        }
        unmet
    }

    /// The approval status toward the version's next stage (staging, then
    /// production; production and archived versions are judged by the
    /// production gate).
    pub fn approval_status(&self, policy: &Policy) -> ApprovalStatus {
        let last_approval = self.approvals.iter().map(|a| a.index).max();
        if let Some(r) = self.last_rejection() {
            if last_approval.is_none_or(|a| a < r) {
                return ApprovalStatus::Rejected;
            }
        }
        let next = match self.stage() {
            Stage::None => Stage::Staging,
            _ => Stage::Production,
        };
        if self.unmet(next, policy).is_empty() {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::PendingManualApproval
        }
    }
}

/// One registered model: its versions and the one in production.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Model {
    pub production: Option<String>,
    /// Registered version ids, in the order registered.
    pub versions: Vec<String>,
}

/// The whole registry state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub versions: BTreeMap<String, Version>,
    /// Per model name, its registered versions and its production slot.
    pub models: BTreeMap<String, Model>,
}

/// Why an event cannot be appended.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed for the registry (400): nothing is written.
    Malformed(String),
    /// Refused by the rules (422): the refusal is logged as a `deny` event.
    Denied(Vec<String>),
}

/// The target stage of a `promote` (or `archive`) event.
fn to_stage(ev: &Event) -> Result<Stage, Refusal> {
    match ev.meta_str("to_stage") {
        Some(t) => Stage::parse(t).ok_or_else(|| {
            Refusal::Malformed(format!(
                "unknown stage {t:?}: use None, Staging, Production or Archived (any case)"
            ))
        }),
        None => Err(Refusal::Malformed(format!(
            "a {} event needs metadata.to_stage",
            ev.action
        ))),
    }
}

/// What a promotion's artifact check leaves unmet.
fn artifact_unmet(v: &Version, policy: &Policy, artifact: Option<&ArtifactCheck>) -> Vec<String> {
    if !policy.checks_artifacts() {
        return Vec::new();
    }
    let Some(digest) = &v.artifact_sha256 else {
        return vec![format!(
            "{} was registered without an artifact digest",
            v.id
        )];
    };
    match artifact {
        Some(ArtifactCheck::Verified) => Vec::new(),
        Some(ArtifactCheck::Missing) => {
            vec![format!(
                "artifact {digest} of {} is not in the artifact store",
                v.id
            )]
        }
        Some(ArtifactCheck::Mismatch { actual }) => vec![format!(
            "artifact {digest} of {} does not re-hash: the stored blob hashes to {actual}",
            v.id
        )],
        None => vec![format!("artifact {digest} of {} was not checked", v.id)],
    }
}

/// The environment of a `deploy` event (`production` when not given).
pub fn environment(ev: &Event) -> String {
    ev.meta_str("environment")
        .unwrap_or("production")
        .to_ascii_lowercase()
}

impl State {
    pub fn version(&self, id: &str) -> Option<&Version> {
        self.versions.get(id)
    }

    /// The version of `model` in production, if any.
    pub fn production_of(&self, model: &str) -> Option<&str> {
        self.models.get(model)?.production.as_deref()
    }

    /// May this event be appended now? Every unmet requirement is listed.
    /// (Promotions with artifacts checked on use go through
    /// [`State::check_with`] and what the store said.)
    pub fn check(&self, ev: &Event, policy: &Policy) -> Result<(), Refusal> {
        self.check_with(ev, policy, None)
    }

    /// The registered artifact digest of the version an event is about,
    /// when a promotion of it must have its blob checked first.
    pub fn artifact_to_check(&self, ev: &Event, policy: &Policy) -> Option<String> {
        if !policy.checks_artifacts() || !matches!(ev.action, Action::Promote | Action::Rollback) {
            return None;
        }
        self.versions
            .get(ev.model_version()?)?
            .artifact_sha256
            .clone()
    }

    /// [`State::check`], with what the artifact store said about the
    /// version's blob (`None`: not looked at).
    pub fn check_with(
        &self,
        ev: &Event,
        policy: &Policy,
        artifact: Option<&ArtifactCheck>,
    ) -> Result<(), Refusal> {
        if ev.fold() != Fold::Registry {
            return Ok(());
        }
        let action = &ev.action;
        let Some(id) = ev.model_version() else {
            return Err(Refusal::Malformed(format!(
                "a {action} event needs a model_version subject"
            )));
        };
        let v = self.versions.get(id);
        let registered = v.is_some_and(|v| v.registered.is_some());
        let by = ev.actor.to_string();
        let mut unmet = Vec::new();
        let need_registered = |unmet: &mut Vec<String>| {
            if !registered {
                unmet.push(format!("model version {id} is not registered"));
            }
        };
        match action {
            Action::Register => {
                match id.rsplit_once(':') {
                    Some((m, ver)) if !m.is_empty() && !ver.is_empty() => {}
                    _ => {
                        return Err(Refusal::Malformed(format!(
                            "a model version id is name:version; {id:?} is not"
                        )))
                    }
                }
                if registered {
                    unmet.push(format!("model version {id} is already registered"));
                }
                if policy.requires_artifact("register") && ev.artifact_sha256().is_none() {
                    unmet.push(format!("registering {id} needs integrity.artifact_sha256"));
                }
            }
            Action::Approve => {
                need_registered(&mut unmet);
                if let Some(v) = v {
                    if v.current_approvers().contains(&by) {
                        unmet.push(format!("{by} has already approved {id}"));
                    }
                    if policy.self_approval_forbidden()
                        && v.registered.as_ref().is_some_and(|r| r.by == by)
                    {
                        unmet.push(format!("{by} registered {id} and may not approve it"));
                    }
                }
            }
            Action::Attest => {
                let Some(kind) = ev.meta_str("kind").filter(|k| !k.is_empty()) else {
                    return Err(Refusal::Malformed(
                        "an attest event needs metadata.kind".into(),
                    ));
                };
                if ev.meta_bool("passed").is_none() {
                    return Err(Refusal::Malformed(
                        "an attest event needs metadata.passed (true or false)".into(),
                    ));
                }
                need_registered(&mut unmet);
                if policy.refuses_attester(kind, &by) {
                    unmet.push(format!("{by} is not an attester of {kind}"));
                }
            }
            Action::Reject | Action::Retire => need_registered(&mut unmet),
            Action::Promote => {
                let to = to_stage(ev)?;
                need_registered(&mut unmet);
                if let Some(v) = v {
                    if v.stage() == to {
                        unmet.push(format!("{id} is already in {to}"));
                    }
                    unmet.extend(v.unmet(to, policy));
                    unmet.extend(artifact_unmet(v, policy, artifact));
                }
            }
            Action::Rollback => {
                need_registered(&mut unmet);
                if let Some(v) = v {
                    if !v.was_in_production() {
                        unmet.push(format!("{id} was never in production"));
                    }
                    if v.stage() == Stage::Production {
                        unmet.push(format!("{id} is in production already"));
                    }
                    if let Some(left) = v.left_production_at() {
                        if let Some(r) = v.rejections.iter().find(|r| r.index > left) {
                            unmet.push(format!(
                                "{id} was rejected (entry {}) after it left production",
                                r.index
                            ));
                        }
                    }
                    unmet.extend(artifact_unmet(v, policy, artifact));
                    let gate = &policy.production;
                    for kind in &gate.attestations {
                        if let Some(a) = v.counted_attestation(gate, kind) {
                            if !a.passed {
                                unmet.push(format!(
                                    "the latest {kind} attestation (entry {}) did not pass",
                                    a.index
                                ));
                            }
                        }
                    }
                }
            }
            Action::Deploy => {
                need_registered(&mut unmet);
                if policy.requires_artifact("deploy") && ev.artifact_sha256().is_none() {
                    unmet.push(format!("deploying {id} needs integrity.artifact_sha256"));
                }
                if let Some(v) = v {
                    if let (Some(named), Some(registered)) =
                        (ev.artifact_sha256(), v.artifact_sha256.as_deref())
                    {
                        if named != registered {
                            unmet.push(format!(
                                "the deployment names artifact {named} but {id} was registered with {registered}"
                            ));
                        }
                    }
                    let env = environment(ev);
                    let stage = v.stage();
                    if env == "production" {
                        if stage != Stage::Production {
                            unmet.push(format!(
                                "{id} is in stage {stage}; only a production version is deployed to production"
                            ));
                        }
                    } else if stage != Stage::Staging && stage != Stage::Production {
                        unmet.push(format!(
                            "{id} is in stage {stage}; only staging and production versions are deployed"
                        ));
                    }
                }
            }
            // Recorded by the server only (checked by roles).
            _ => {}
        }
        if unmet.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Denied(unmet))
        }
    }

    /// The events the server records after this one is applied: a version
    /// entering production archives the version of the same model that was
    /// there (other models keep theirs).
    pub fn follow_ups(&self, ev: &Event, cause_index: u64) -> Vec<Record> {
        let enters_production = match ev.action {
            Action::Promote => to_stage(ev) == Ok(Stage::Production),
            Action::Rollback => true,
            _ => false,
        };
        let Some(id) = ev.model_version() else {
            return Vec::new();
        };
        match (self.production_of(model_of(id)), enters_production) {
            (Some(old), true) if old != id => {
                vec![Record::new(Action::Archive, Ref::model_version(old))
                    .related(Ref::model_version(id))
                    .meta("to_stage", Stage::Archived.as_str())
                    .meta("replaced_by", id)
                    .meta("cause_index", cause_index)]
            }
            _ => Vec::new(),
        }
    }

    /// Fold one logged event (at `index`) into the state. A logged event
    /// is what happened: an `archive` written under an earlier rule (one
    /// production slot for the whole registry) still archives its version.
    pub fn apply(&mut self, index: u64, ev: &Event) {
        if ev.fold() != Fold::Registry {
            return;
        }
        let Some(id) = ev.model_version() else { return };
        let id = id.to_string();
        let by = ev.actor.to_string();
        let v = self
            .versions
            .entry(id.clone())
            .or_insert_with(|| Version::new(&id));
        v.events.push(index);
        let mark = Mark {
            by: by.clone(),
            index,
        };
        let mut new_stage: Option<Stage> = None;
        match ev.action {
            Action::Register if v.registered.is_none() => {
                v.registered = Some(mark);
                v.artifact_sha256 = ev.artifact_sha256().map(str::to_string);
                let model = self.models.entry(model_of(&id).to_string()).or_default();
                model.versions.push(id.clone());
            }
            Action::Approve => v.approvals.push(mark),
            Action::Reject => v.rejections.push(mark),
            Action::Attest => v.attestations.push(Attestation {
                kind: ev.meta_str("kind").unwrap_or("").to_string(),
                passed: ev.meta_bool("passed").unwrap_or(false),
                by,
                index,
                signed: ev.is_signed(),
            }),
            Action::Deploy => v.deployments.push(Deployment {
                by,
                index,
                environment: environment(ev),
                artifact_sha256: ev.artifact_sha256().map(str::to_string),
            }),
            Action::Promote | Action::Archive => new_stage = to_stage(ev).ok(),
            Action::Rollback => new_stage = Some(Stage::Production),
            Action::Retire => new_stage = Some(Stage::Archived),
            Action::Deny => v.denials.push(index),
            _ => {}
        }
        let Some(stage) = new_stage else { return };
        v.stage = stage.as_str().into();
        v.stages.push(StageChange {
            stage: stage.as_str().into(),
            action: ev.action.to_string(),
            by: ev.actor.to_string(),
            index,
        });
        let model = self.models.entry(model_of(&id).to_string()).or_default();
        if stage == Stage::Production {
            // One version per model is in production: the one it replaces
            // leaves now, whether or not the server's `archive` event for
            // it (appended right after) made it to the log.
            if let Some(old) = model.production.replace(id.clone()) {
                if old != id {
                    if let Some(ov) = self.versions.get_mut(&old) {
                        ov.stage = Stage::Archived.as_str().into();
                    }
                }
            }
        } else if model.production.as_deref() == Some(id.as_str()) {
            model.production = None;
        }
    }
}

#[cfg(test)]
mod tests;
