//! The event vocabulary, typed: actions (with the role each needs, whether
//! only the server records it, and which derived state folds it), principal
//! kinds, roles, principals and `{type, id}` references.
//!
//! Every rule that depends on an action asks the [`Action`] here, so the
//! answer to "what does this action need?" lives in one table:
//!
//! | action | role | recorded by | folded by |
//! |---|---|---|---|
//! | `register`, `attest` | submitter | client | registry |
//! | `approve`, `reject` | approver | client | registry |
//! | `promote`, `deploy`, `rollback`, `retire` | deployer | client | registry |
//! | `archive`, `deny` | — | server only | registry |
//! | `grant_access`, `revoke_access`, `register_key` | — | server only | access |
//! | any other (`predict`, `train`, a team's own) | submitter | client | — |
//!
//! `attest` and `deploy` are folded by the registry only when they name a
//! model version (see [`crate::audit::Event::model_version`]).
//!
//! Pure: no I/O.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// What a principal is.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    Service,
}

impl PrincipalKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(PrincipalKind::User),
            "service" => Some(PrincipalKind::Service),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Service => "service",
        }
    }
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user or a service: the actor of an event, the holder of a token.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    #[serde(rename = "type")]
    pub kind: PrincipalKind,
    #[schema(min_length = 1, max_length = 512)]
    pub id: String,
}

impl Principal {
    pub fn new(kind: PrincipalKind, id: impl Into<String>) -> Self {
        Principal {
            kind,
            id: id.into(),
        }
    }

    pub fn user(id: impl Into<String>) -> Self {
        Principal::new(PrincipalKind::User, id)
    }

    pub fn service(id: impl Into<String>) -> Self {
        Principal::new(PrincipalKind::Service, id)
    }

    /// The principal the server acts as when it records events itself.
    pub fn server() -> Self {
        Principal::service(SERVER_PRINCIPAL)
    }
}

/// `type:id`, as the registry and the CLI print principals.
impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

/// The id of the service principal the server records its own events as.
pub const SERVER_PRINCIPAL: &str = "modeltrail";
/// The id of the user principal of the bootstrap admin token.
pub const ADMIN_PRINCIPAL: &str = "admin";

/// A `{type, id}` reference: an event's subject or one of its `related`
/// links, a node of the lineage graph.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Ref {
    #[serde(rename = "type")]
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub kind: String,
    #[schema(min_length = 1, max_length = 512)]
    pub id: String,
}

impl Ref {
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Ref {
            kind: kind.into(),
            id: id.into(),
        }
    }

    pub fn model_version(id: impl Into<String>) -> Self {
        Ref::new(MODEL_VERSION, id)
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

/// The reference type of model versions (`<name>:<version>`).
pub const MODEL_VERSION: &str = "model_version";

/// What a token may do.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// CI and services: register, attest, predict (and actions of their own).
    Submitter,
    /// approve, reject.
    Approver,
    /// promote, deploy, rollback, retire.
    Deployer,
    /// Reads what is not public (the token list).
    Auditor,
    /// Tokens, policy and access grants; holds every other role too.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Submitter,
        Role::Approver,
        Role::Deployer,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Approver => "approver",
            Role::Deployer => "deployer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which derived state folds an action in (see [`crate::state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// Not folded anywhere: the entry is history only.
    None,
    /// Tokens and signing keys ([`crate::access`]).
    Access,
    /// Model versions and their stages ([`crate::registry`]).
    Registry,
}

/// An event's action. Unknown actions (a team's own, `predict`, `train`)
/// are kept as [`Action::Other`]; they need the submitter role and change
/// no derived state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Register,
    Attest,
    Approve,
    Reject,
    Promote,
    Deploy,
    Rollback,
    Retire,
    /// The server archived a version replaced in production.
    Archive,
    /// The server refused a request under the registry's rules.
    Deny,
    GrantAccess,
    RevokeAccess,
    RegisterKey,
    /// The server served an artifact to a principal.
    Access,
    /// The server re-hashed the artifacts events reference.
    Reconcile,
    /// The server erased a private value (on request or for retention);
    /// the event names its commitment, never the value.
    Erase,
    Other(String),
}

impl Action {
    const NAMED: [Action; 16] = [
        Action::Register,
        Action::Attest,
        Action::Approve,
        Action::Reject,
        Action::Promote,
        Action::Deploy,
        Action::Rollback,
        Action::Retire,
        Action::Archive,
        Action::Deny,
        Action::GrantAccess,
        Action::RevokeAccess,
        Action::RegisterKey,
        Action::Access,
        Action::Reconcile,
        Action::Erase,
    ];

    /// Any action name; the caller has checked its syntax.
    pub fn parse(s: &str) -> Action {
        Action::NAMED
            .iter()
            .find(|a| a.as_str() == s)
            .cloned()
            .unwrap_or_else(|| Action::Other(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Action::Register => "register",
            Action::Attest => "attest",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Promote => "promote",
            Action::Deploy => "deploy",
            Action::Rollback => "rollback",
            Action::Retire => "retire",
            Action::Archive => "archive",
            Action::Deny => "deny",
            Action::GrantAccess => "grant_access",
            Action::RevokeAccess => "revoke_access",
            Action::RegisterKey => "register_key",
            Action::Access => "access",
            Action::Reconcile => "reconcile",
            Action::Erase => "erase",
            Action::Other(s) => s,
        }
    }

    /// The role a client needs to append it; `None` if only the server
    /// records it.
    pub fn required_role(&self) -> Option<Role> {
        match self {
            Action::Approve | Action::Reject => Some(Role::Approver),
            Action::Promote | Action::Deploy | Action::Rollback | Action::Retire => {
                Some(Role::Deployer)
            }
            Action::Archive
            | Action::Deny
            | Action::GrantAccess
            | Action::RevokeAccess
            | Action::RegisterKey
            | Action::Access
            | Action::Reconcile
            | Action::Erase => None,
            Action::Register | Action::Attest | Action::Other(_) => Some(Role::Submitter),
        }
    }

    /// Recorded by the server itself, never accepted from a client.
    pub fn server_only(&self) -> bool {
        self.required_role().is_none()
    }

    /// The derived state that folds this action in.
    pub fn fold(&self) -> Fold {
        match self {
            Action::GrantAccess | Action::RevokeAccess | Action::RegisterKey => Fold::Access,
            Action::Other(_) | Action::Access | Action::Reconcile | Action::Erase => Fold::None,
            _ => Fold::Registry,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Action::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_and_say_what_they_need() {
        for a in Action::NAMED {
            assert_eq!(Action::parse(a.as_str()), a);
        }
        assert_eq!(Action::parse("predict"), Action::Other("predict".into()));
        assert_eq!(
            Action::parse("predict").required_role(),
            Some(Role::Submitter)
        );
        assert!(Action::Deny.server_only());
        assert!(Action::GrantAccess.server_only());
        assert!(!Action::Approve.server_only());
        assert_eq!(Action::Approve.required_role(), Some(Role::Approver));
        assert_eq!(Action::Rollback.required_role(), Some(Role::Deployer));
        assert_eq!(Action::RegisterKey.fold(), Fold::Access);
        assert_eq!(Action::Archive.fold(), Fold::Registry);
        assert_eq!(Action::Other("train".into()).fold(), Fold::None);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Principal::user("alice").to_string(), "user:alice");
    }
}
