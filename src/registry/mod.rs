//! The model registry's state, derived from the log: per model version, its
//! registration, stage, approvals, rejections, attestations and
//! deployments, each with the log indexes it came from.
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

/// Stages a model version can be promoted to.
pub const STAGES: &[&str] = &["staging", "production", "archived"];

/// What entering a stage needs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Approvals from distinct approvers, counted since the last rejection.
    #[serde(default)]
    pub min_approvals: usize,
    /// Attestation kinds whose latest attestation must have passed.
    #[serde(default)]
    pub attestations: Vec<String>,
    /// Whether the principal that registered the version may approve it.
    #[serde(default)]
    pub allow_self_approval: bool,
}

/// The promotion policy: a gate per stage.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub staging: Gate,
    #[serde(default = "default_production")]
    pub production: Gate,
}

fn default_production() -> Gate {
    Gate {
        min_approvals: 2,
        attestations: Vec::new(),
        allow_self_approval: false,
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            staging: Gate::default(),
            production: default_production(),
        }
    }
}

impl Policy {
    fn gate(&self, stage: &str) -> Option<&Gate> {
        match stage {
            "staging" => Some(&self.staging),
            "production" => Some(&self.production),
            _ => None,
        }
    }

    /// Does approving need to be checked against the registrant?
    fn self_approval_forbidden(&self) -> bool {
        !(self.staging.allow_self_approval && self.production.allow_self_approval)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mark {
    /// `type:id` of the actor.
    pub by: String,
    pub index: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attestation {
    pub kind: String,
    pub passed: bool,
    pub by: String,
    pub index: u64,
    /// Whether the event carried a signature the server verified.
    pub signed: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StageChange {
    pub stage: String,
    pub action: String,
    pub by: String,
    pub index: u64,
}

/// One model version, as the log says.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Version {
    pub id: String,
    pub registered: Option<Mark>,
    /// `none`, `staging`, `production` or `archived`.
    pub stage: String,
    pub stages: Vec<StageChange>,
    pub approvals: Vec<Mark>,
    pub rejections: Vec<Mark>,
    pub attestations: Vec<Attestation>,
    pub deployments: Vec<Mark>,
    pub denials: Vec<u64>,
    /// Every event this state was derived from, in log order.
    pub events: Vec<u64>,
}

impl Version {
    fn new(id: &str) -> Self {
        Version {
            id: id.to_string(),
            stage: "none".into(),
            ..Default::default()
        }
    }

    /// Distinct approvers since the last rejection.
    pub fn current_approvers(&self) -> Vec<String> {
        let last_rejection = self.rejections.iter().map(|r| r.index).max();
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

    fn latest_attestation(&self, kind: &str) -> Option<&Attestation> {
        self.attestations.iter().rev().find(|a| a.kind == kind)
    }

    fn was_in_production(&self) -> bool {
        self.stages.iter().any(|s| s.stage == "production")
    }
}

/// The whole registry state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub versions: BTreeMap<String, Version>,
    /// The version in production, if any.
    pub production: Option<String>,
}

/// Why an event cannot be appended.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed for the registry (400): nothing is written.
    Malformed(String),
    /// Refused by the rules (422): the refusal is logged as a `deny` event.
    Denied(Vec<String>),
}

impl State {
    pub fn version(&self, id: &str) -> Option<&Version> {
        self.versions.get(id)
    }

    /// May this event be appended now? Every unmet requirement is listed.
    pub fn check(&self, ev: &Event, policy: &Policy) -> Result<(), Refusal> {
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
            Action::Register if registered => {
                unmet.push(format!("model version {id} is already registered"));
            }
            Action::Register => {}
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
            Action::Reject | Action::Attest | Action::Retire => need_registered(&mut unmet),
            Action::Promote => {
                let to = match ev.meta_str("to_stage") {
                    Some(t) if STAGES.contains(&t) => t,
                    Some(t) => {
                        return Err(Refusal::Malformed(format!(
                            "unknown stage {t:?}: use staging, production or archived"
                        )))
                    }
                    None => {
                        return Err(Refusal::Malformed(
                            "a promote event needs metadata.to_stage".into(),
                        ))
                    }
                };
                need_registered(&mut unmet);
                if let Some(v) = v {
                    if v.stage == to {
                        unmet.push(format!("{id} is already in {to}"));
                    }
                    if let Some(gate) = policy.gate(to) {
                        let approvers = v.current_approvers();
                        if approvers.len() < gate.min_approvals {
                            unmet.push(format!(
                                "{to} needs {} approvals from distinct approvers since the last rejection; {id} has {}",
                                gate.min_approvals,
                                approvers.len()
                            ));
                        }
                        for kind in &gate.attestations {
                            match v.latest_attestation(kind) {
                                Some(a) if a.passed => {}
                                Some(a) => unmet.push(format!(
                                    "the latest {kind} attestation (entry {}) did not pass",
                                    a.index
                                )),
                                None => unmet.push(format!("no {kind} attestation for {id}")),
                            }
                        }
                    }
                }
            }
            Action::Rollback => {
                need_registered(&mut unmet);
                if let Some(v) = v {
                    if !v.was_in_production() {
                        unmet.push(format!("{id} was never in production"));
                    }
                    if v.stage == "production" {
                        unmet.push(format!("{id} is in production already"));
                    }
                }
            }
            Action::Deploy => {
                need_registered(&mut unmet);
                if let Some(v) = v {
                    if v.stage != "staging" && v.stage != "production" {
                        unmet.push(format!(
                            "{id} is in stage {}; only staging and production versions are deployed",
                            v.stage
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

    /// The events the server records after this one is applied: entering
    /// production archives the version that was there.
    pub fn follow_ups(&self, ev: &Event, cause_index: u64) -> Vec<Record> {
        let enters_production = match ev.action {
            Action::Promote => ev.meta_str("to_stage") == Some("production"),
            Action::Rollback => true,
            _ => false,
        };
        let Some(id) = ev.model_version() else {
            return Vec::new();
        };
        match (&self.production, enters_production) {
            (Some(old), true) if *old != id => {
                vec![
                    Record::new(Action::Archive, Ref::model_version(old.as_str()))
                        .related(Ref::model_version(id))
                        .meta("to_stage", "archived")
                        .meta("replaced_by", id)
                        .meta("cause_index", cause_index),
                ]
            }
            _ => Vec::new(),
        }
    }

    /// Fold one logged event (at `index`) into the state.
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
        let mut new_stage: Option<String> = None;
        match ev.action {
            Action::Register if v.registered.is_none() => v.registered = Some(mark),
            Action::Approve => v.approvals.push(mark),
            Action::Reject => v.rejections.push(mark),
            Action::Attest => v.attestations.push(Attestation {
                kind: ev.meta_str("kind").unwrap_or("").to_string(),
                passed: ev.meta_bool("passed").unwrap_or(false),
                by,
                index,
                signed: ev.is_signed(),
            }),
            Action::Deploy => v.deployments.push(mark),
            Action::Promote | Action::Archive => {
                if let Some(t) = ev.meta_str("to_stage") {
                    new_stage = Some(t.to_string());
                }
            }
            Action::Rollback => new_stage = Some("production".into()),
            Action::Retire => new_stage = Some("archived".into()),
            Action::Deny => v.denials.push(index),
            _ => {}
        }
        if let Some(stage) = new_stage {
            v.stage = stage.clone();
            v.stages.push(StageChange {
                stage: stage.clone(),
                action: ev.action.to_string(),
                by: ev.actor.to_string(),
                index,
            });
            if stage == "production" {
                // Only one version is in production: the one it replaces
                // leaves it now, whether or not the server's `archive`
                // event for it (appended right after) made it to the log.
                if let Some(old) = self.production.take().filter(|o| *o != id) {
                    if let Some(ov) = self.versions.get_mut(&old) {
                        ov.stage = "archived".into();
                    }
                }
                self.production = Some(id);
            } else if self.production.as_deref() == Some(id.as_str()) {
                self.production = None;
            }
        }
    }
}

#[cfg(test)]
mod tests;
