//! The promotion policy: what entering staging and production needs, and
//! the stage vocabulary (MLflow's spelling, any case; one canonical form).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A model version's stage, in MLflow's vocabulary. Parsed in any case
/// (`Production`, `production`, `PRODUCTION`); kept and shown lowercase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::None,
        Stage::Staging,
        Stage::Production,
        Stage::Archived,
    ];

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "none",
            Stage::Staging => "staging",
            Stage::Production => "production",
            Stage::Archived => "archived",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What entering a stage needs. Unset fields take the stage's safe
/// default (see [`Policy::min_human_approvals`]).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Approvals from distinct human approvers (`user` principals),
    /// counted since the last rejection. `min_approvals` is read as the
    /// same setting. Default: 1 for staging, 2 for production.
    #[serde(
        default,
        alias = "min_approvals",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_human_approvals: Option<usize>,
    /// Attestation kinds whose latest counted attestation must have passed.
    #[serde(default)]
    pub attestations: Vec<String>,
    /// Per attestation kind, the service principals (`service:<id>`)
    /// whose attestations of that kind count; a kind not listed counts
    /// every attester. Attesting a listed kind as anyone else is refused.
    #[serde(default)]
    pub attesters: BTreeMap<String, Vec<String>>,
    /// Attestation kinds that count only when signed by a registered key.
    #[serde(default)]
    pub require_signed_attestations: Vec<String>,
    /// Whether the principal that registered a version may approve it.
    #[serde(default)]
    pub allow_self_approval: bool,
}

impl Gate {
    /// May `by` attest `kind` as far as this gate says?
    pub fn counts_attester(&self, kind: &str, by: &str) -> bool {
        self.attesters
            .get(kind)
            .is_none_or(|list| list.iter().any(|a| a == by))
    }
}

/// The promotion policy: a gate per stage. The defaults are the safe
/// ones: staging needs one human approval, production two from distinct
/// humans.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub staging: Gate,
    #[serde(default)]
    pub production: Gate,
    /// Actions that must carry `integrity.artifact_sha256` (`register`,
    /// `deploy`). When any is listed, artifacts are also checked on use:
    /// a promotion needs the version's registered blob in the artifact
    /// store, re-hashing to its digest.
    #[serde(default)]
    pub require_artifact_sha256: Vec<String>,
}

impl Policy {
    /// The gate for entering `stage` (staging and production have one).
    pub fn gate(&self, stage: Stage) -> Option<&Gate> {
        match stage {
            Stage::Staging => Some(&self.staging),
            Stage::Production => Some(&self.production),
            _ => None,
        }
    }

    /// Human approvals entering `stage` needs.
    pub fn min_human_approvals(&self, stage: Stage) -> usize {
        match stage {
            Stage::Staging => self.staging.min_human_approvals.unwrap_or(1),
            Stage::Production => self.production.min_human_approvals.unwrap_or(2),
            _ => 0,
        }
    }

    /// Does approving need to be checked against the registrant?
    pub fn self_approval_forbidden(&self) -> bool {
        !(self.staging.allow_self_approval && self.production.allow_self_approval)
    }

    /// Is some gate restricting who attests `kind`, and is `by` not among
    /// those it allows?
    pub fn refuses_attester(&self, kind: &str, by: &str) -> bool {
        let lists: Vec<&Vec<String>> = [&self.staging, &self.production]
            .into_iter()
            .filter_map(|g| g.attesters.get(kind))
            .collect();
        !lists.is_empty() && !lists.iter().any(|l| l.iter().any(|a| a == by))
    }

    /// Must `action` carry an artifact digest?
    pub fn requires_artifact(&self, action: &str) -> bool {
        self.require_artifact_sha256.iter().any(|a| a == action)
    }

    /// Are artifacts checked against the store on promotion?
    pub fn checks_artifacts(&self) -> bool {
        !self.require_artifact_sha256.is_empty()
    }

    /// A configuration error, if any: attesters must be services.
    pub fn validate(&self) -> Result<(), String> {
        for a in &self.require_artifact_sha256 {
            if a != "register" && a != "deploy" {
                return Err(format!(
                    "registry.require_artifact_sha256: {a:?} is not register or deploy"
                ));
            }
        }
        for (name, g) in [("staging", &self.staging), ("production", &self.production)] {
            for (kind, list) in &g.attesters {
                for a in list {
                    match a.split_once(':') {
                        Some(("service", id)) if !id.is_empty() => {}
                        _ => {
                            return Err(format!(
                                "registry.{name}.attesters.{kind}: {a:?} is not service:<id>"
                            ))
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
