//! Who may write what, as a fold over the log.
//!
//! Every write carries a bearer token; a token stands for one principal (a
//! user or a service) and a set of roles. An event may only be appended by
//! a caller whose roles allow its action ([`Action::required_role`]), and
//! only in the caller's own name: the event's `actor` must be the caller,
//! so nobody can record an approval for someone else.
//!
//! The token table and the services' signing keys are [`AccessState`], a
//! pure fold over three kinds of entries the server records itself:
//!
//! - `grant_access`: `metadata.token_id`, `roles`, `expires_at` and
//!   `token_sha256`, the SHA-256 of the secret (publishing it is safe:
//!   secrets are 256 random bits, shown once and never stored). A grant
//!   that carries `previous_roles` changes a live token's roles.
//! - `revoke_access`: `metadata.token_id`.
//! - `register_key`: a service's `metadata.ed25519_public_key`.
//!
//! Because the state follows from the log alone, a change that is logged
//! always takes effect, across any crash. The bootstrap admin token
//! (`admin.token`, the principal `user:admin` with the `admin` role) is not
//! in the log: it is the operator's key to the admin API.
//!
//! This module decides and folds; it does not append. [`crate::ledger`]
//! appends the events this module plans, under the locks that order them.
//! Pure: no I/O.

use crate::audit::event::{self, Event, Prepared};
use crate::audit::signature;
use crate::audit::vocab::{Action, Principal, PrincipalKind, Ref, Role, ADMIN_PRINCIPAL};
use crate::audit::Record;
use crate::error::Error;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use subtle::ConstantTimeEq;

/// Most keys one service may register.
pub const MAX_KEYS_PER_SERVICE: usize = 16;
/// Most tokens (live and revoked) kept.
pub const MAX_TOKENS: usize = 10_000;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub roles: Vec<Role>,
    /// The token's id, `None` for the admin token.
    pub token_id: Option<String>,
}

impl Caller {
    /// The bootstrap admin.
    pub fn admin() -> Caller {
        Caller {
            principal: Principal::user(ADMIN_PRINCIPAL),
            roles: vec![Role::Admin],
            token_id: None,
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&Role::Admin) || self.roles.contains(&role)
    }

    pub fn require(&self, role: Role) -> Result<(), Error> {
        if self.has(role) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "{} does not have the {role} role",
                self.principal
            )))
        }
    }
}

/// A token as derived from the log: never the secret, only its hash.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub token_id: String,
    pub principal: Principal,
    pub roles: Vec<Role>,
    /// Lowercase hex SHA-256 of the secret; `None` for a grant logged
    /// without it whose hash is not known otherwise (it cannot be used).
    pub token_sha256: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Who made it (`type:id`) and the log index of the grant.
    pub granted_by: String,
    pub grant_index: u64,
    pub revoke_index: Option<u64>,
}

/// A service's public key for signed attestations, as registered.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegisteredKey {
    /// Standard base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
    pub registered_at: String,
    /// The log index of the `register_key` event.
    pub index: u64,
}

/// A request to make a token.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub principal: Principal,
    pub roles: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// Tokens and keys: the fold of the access events.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessState {
    /// By token id.
    tokens: BTreeMap<String, TokenRecord>,
    /// By service id, oldest first.
    keys: BTreeMap<String, Vec<RegisteredKey>>,
    /// Secret hash → token id (rebuilt, not stored).
    #[serde(skip)]
    by_hash: HashMap<[u8; 32], String>,
    /// Hashes of tokens granted by versions whose grants did not carry them,
    /// by token id (read once from the old token table, not stored here).
    #[serde(skip)]
    legacy: BTreeMap<String, String>,
}

impl PartialEq for AccessState {
    fn eq(&self, other: &Self) -> bool {
        self.tokens == other.tokens && self.keys == other.keys
    }
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    if s.len() > 64 {
        return None;
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn roles_of(v: Option<&serde_json::Value>) -> Vec<Role> {
    let mut out: Vec<Role> = v
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().and_then(Role::parse))
        .collect();
    out.sort();
    out.dedup();
    out
}

impl AccessState {
    /// A state that knows the hashes of tokens granted before grants
    /// carried them (token id → hex hash).
    pub fn with_legacy_hashes(mut self, legacy: BTreeMap<String, String>) -> Self {
        self.legacy = legacy;
        self.reindex();
        self
    }

    /// Rebuild the hash index (after loading a snapshot).
    pub fn reindex(&mut self) {
        self.by_hash.clear();
        let legacy = std::mem::take(&mut self.legacy);
        for t in self.tokens.values_mut() {
            if t.token_sha256.is_none() {
                t.token_sha256 = legacy.get(&t.token_id).cloned();
            }
            if let Some(h) = t
                .token_sha256
                .as_deref()
                .and_then(crate::encoding::parse_hex32)
            {
                self.by_hash.insert(h, t.token_id.clone());
            }
        }
        self.legacy = legacy;
    }

    /// Fold one logged event (at `index`) into the state. Events other
    /// than the three access actions change nothing.
    pub fn apply(&mut self, index: u64, ev: &Event) {
        match ev.action {
            Action::GrantAccess => self.apply_grant(index, ev),
            Action::RevokeAccess => {
                let Some(id) = ev.meta_str("token_id") else {
                    return;
                };
                if let Some(t) = self.tokens.get_mut(id) {
                    if t.revoked_at.is_none() {
                        t.revoked_at = Some(ev.timestamp.clone());
                        t.revoke_index = Some(index);
                    }
                }
            }
            Action::RegisterKey => {
                if ev.actor.kind != PrincipalKind::Service {
                    return;
                }
                let Some(key) = ev.meta_str("ed25519_public_key") else {
                    return;
                };
                self.keys
                    .entry(ev.actor.id.clone())
                    .or_default()
                    .push(RegisteredKey {
                        public_key: key.to_string(),
                        registered_at: ev.timestamp.clone(),
                        index,
                    });
            }
            _ => {}
        }
    }

    fn apply_grant(&mut self, index: u64, ev: &Event) {
        let Some(id) = ev.meta_str("token_id") else {
            return;
        };
        let roles = roles_of(ev.meta("roles"));
        if ev.meta("previous_roles").is_some() {
            // A role change of a live token.
            if let Some(t) = self.tokens.get_mut(id) {
                if t.revoked_at.is_none() && !roles.is_empty() {
                    t.roles = roles;
                }
            }
            return;
        }
        if self.tokens.contains_key(id) {
            return; // the first grant of an id wins
        }
        let Some(kind) = PrincipalKind::parse(&ev.subject.kind) else {
            return;
        };
        let hash = ev
            .meta_str("token_sha256")
            .map(str::to_string)
            .or_else(|| self.legacy.get(id).cloned());
        if let Some(h) = hash.as_deref().and_then(crate::encoding::parse_hex32) {
            self.by_hash.insert(h, id.to_string());
        }
        self.tokens.insert(
            id.to_string(),
            TokenRecord {
                token_id: id.to_string(),
                principal: Principal::new(kind, ev.subject.id.clone()),
                roles,
                token_sha256: hash,
                created_at: ev.timestamp.clone(),
                expires_at: ev.meta_str("expires_at").map(str::to_string),
                revoked_at: None,
                granted_by: ev.actor.to_string(),
                grant_index: index,
                revoke_index: None,
            },
        );
    }

    /// The caller a presented bearer token stands for, given the hash of
    /// the admin token. Unknown, revoked and expired tokens are all 401,
    /// with no hint which.
    pub fn authenticate(&self, presented: &str, admin_hash: &[u8; 32]) -> Result<Caller, Error> {
        let h = sha256(presented.trim());
        if bool::from(h.ct_eq(admin_hash)) {
            return Ok(Caller::admin());
        }
        // Looked up by the secret's hash, which says nothing about the secret.
        let t = self
            .by_hash
            .get(&h)
            .and_then(|id| self.tokens.get(id))
            .ok_or(Error::Unauthorized)?;
        if t.revoked_at.is_some() {
            return Err(Error::Unauthorized);
        }
        if let Some(exp) = t.expires_at.as_deref().and_then(parse_time) {
            if exp <= time::OffsetDateTime::now_utc() {
                return Err(Error::Unauthorized);
            }
        }
        Ok(Caller {
            principal: t.principal.clone(),
            roles: t.roles.clone(),
            token_id: Some(t.token_id.clone()),
        })
    }

    /// May `caller` append this event? Its action needs a role the caller
    /// has, and its actor must be the caller.
    pub fn check_event(caller: &Caller, ev: &Event) -> Result<(), Error> {
        match ev.action.required_role() {
            None => {
                return Err(Error::Forbidden(format!(
                    "{} events are recorded by the server only",
                    ev.action
                )))
            }
            Some(role) => caller.require(role)?,
        }
        if ev.actor != caller.principal {
            return Err(Error::Forbidden(format!(
                "the event's actor {} is not the caller {}",
                ev.actor, caller.principal
            )));
        }
        Ok(())
    }

    /// A signed event must verify with a key its actor, a service, has
    /// registered; an unsigned event needs nothing.
    pub fn check_signature(&self, p: &Prepared) -> Result<(), Error> {
        if !p.event.is_signed() {
            return Ok(());
        }
        if !p.client_id {
            return Err(Error::bad(
                "invalid_event",
                "a signed event must carry its own event_id (the signature covers it)",
            ));
        }
        let refuse = |m: String| Error::Refused {
            code: "bad_signature",
            message: m,
        };
        if p.event.actor.kind != PrincipalKind::Service {
            return Err(refuse("only service principals sign events".into()));
        }
        let keys = self.keys_of(&p.event.actor.id);
        if keys.is_empty() {
            return Err(refuse(format!(
                "service {} has registered no public key",
                p.event.actor.id
            )));
        }
        let event: serde_json::Value =
            serde_json::from_slice(&p.canonical).map_err(|e| Error::Internal(e.to_string()))?;
        let mut last = None;
        for k in keys {
            let key = signature::parse_public_key(&k.public_key)
                .map_err(|e| Error::Internal(e.to_string()))?;
            match signature::verify(&event, &key) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(refuse(format!(
            "integrity.signature: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// The keys a service has registered, oldest first.
    pub fn keys_of(&self, service: &str) -> &[RegisteredKey] {
        self.keys.get(service).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every token record, in the order they were granted.
    pub fn tokens(&self) -> Vec<TokenRecord> {
        let mut list: Vec<TokenRecord> = self.tokens.values().cloned().collect();
        list.sort_by_key(|t| t.grant_index);
        list
    }

    /// Every service that has registered a key.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Put back a token record read from a snapshot (the hash index is
    /// rebuilt by [`AccessState::reindex`]).
    pub fn restore_token(&mut self, record: TokenRecord) {
        self.tokens.insert(record.token_id.clone(), record);
    }

    /// Put back a service's keys read from a snapshot.
    pub fn restore_keys(&mut self, service: &str, keys: Vec<RegisteredKey>) {
        self.keys.insert(service.to_string(), keys);
    }

    pub fn token(&self, token_id: &str) -> Result<&TokenRecord, Error> {
        self.tokens
            .get(token_id)
            .ok_or_else(|| Error::NotFound(format!("no token {token_id}")))
    }

    /// Who may list the tokens.
    pub fn check_list(caller: &Caller) -> Result<(), Error> {
        if caller.has(Role::Auditor) {
            Ok(())
        } else {
            caller.require(Role::Admin)
        }
    }

    /// Plan a new token: validate, and return the `grant_access` event to
    /// append and the secret (shown once). `secret` is 32 random bytes.
    pub fn plan_grant(
        &self,
        caller: &Caller,
        req: &NewToken,
        secret: [u8; 32],
        token_id: &str,
    ) -> Result<(Record, String), Error> {
        caller.require(Role::Admin)?;
        let p = &req.principal;
        event::check_id_text("principal.id", &p.id)
            .map_err(|e| Error::bad("bad_principal", e.to_string()))?;
        if p.id == ADMIN_PRINCIPAL || p.id == crate::audit::vocab::SERVER_PRINCIPAL {
            return Err(Error::bad(
                "bad_principal",
                format!("the principal {:?} is reserved", p.id),
            ));
        }
        let roles = parse_roles(&req.roles)?;
        if let Some(e) = &req.expires_at {
            let t = parse_time(e).ok_or_else(|| {
                Error::bad("bad_time", "expires_at must be an RFC 3339 date-time")
            })?;
            if t <= time::OffsetDateTime::now_utc() {
                return Err(Error::bad("bad_time", "expires_at is in the past"));
            }
        }
        if self.tokens.len() >= MAX_TOKENS {
            return Err(Error::bad(
                "too_many_tokens",
                format!("at most {MAX_TOKENS} tokens are kept"),
            ));
        }
        let secret = crate::encoding::hex(&secret);
        let mut r = Record::new(Action::GrantAccess, Ref::new(p.kind.as_str(), &p.id))
            .meta("token_id", token_id)
            .meta("roles", role_names(&roles))
            .meta("token_sha256", crate::encoding::hex32(&sha256(&secret)));
        if let Some(e) = &req.expires_at {
            r = r.meta("expires_at", e.as_str());
        }
        Ok((r, secret))
    }

    /// Plan a role change of a live token: a `grant_access` event with the
    /// new roles and the previous ones.
    pub fn plan_set_roles(
        &self,
        caller: &Caller,
        token_id: &str,
        roles: &[String],
    ) -> Result<Record, Error> {
        caller.require(Role::Admin)?;
        let roles = parse_roles(roles)?;
        let t = self.token(token_id)?;
        if t.revoked_at.is_some() {
            return Err(Error::bad(
                "already_revoked",
                format!("token {token_id} is revoked"),
            ));
        }
        if t.roles == roles {
            return Err(Error::bad("no_change", "the token already has these roles"));
        }
        Ok(Record::new(
            Action::GrantAccess,
            Ref::new(t.principal.kind.as_str(), &t.principal.id),
        )
        .meta("token_id", token_id)
        .meta("roles", role_names(&roles))
        .meta("previous_roles", role_names(&t.roles)))
    }

    /// Plan a revocation: a `revoke_access` event.
    pub fn plan_revoke(&self, caller: &Caller, token_id: &str) -> Result<Record, Error> {
        caller.require(Role::Admin)?;
        let t = self.token(token_id)?;
        if t.revoked_at.is_some() {
            return Err(Error::bad(
                "already_revoked",
                format!("token {token_id} is already revoked"),
            ));
        }
        Ok(Record::new(
            Action::RevokeAccess,
            Ref::new(t.principal.kind.as_str(), &t.principal.id),
        )
        .meta("token_id", token_id))
    }

    /// Plan a key registration: a `register_key` event by the service.
    pub fn plan_register_key(&self, caller: &Caller, public_key: &str) -> Result<Record, Error> {
        // A key signs the service's submissions: registering one is a
        // submitter's act.
        caller.require(Role::Submitter)?;
        if caller.principal.kind != PrincipalKind::Service {
            return Err(Error::Forbidden(
                "only service principals register signing keys".into(),
            ));
        }
        let public_key = public_key.trim();
        signature::parse_public_key(public_key)
            .map_err(|e| Error::bad("bad_key", e.to_string()))?;
        let existing = self.keys_of(&caller.principal.id);
        if existing.iter().any(|k| k.public_key == public_key) {
            return Err(Error::bad(
                "duplicate_key",
                "this key is already registered",
            ));
        }
        if existing.len() >= MAX_KEYS_PER_SERVICE {
            return Err(Error::bad(
                "too_many_keys",
                format!("at most {MAX_KEYS_PER_SERVICE} keys per service"),
            ));
        }
        Ok(Record::new(
            Action::RegisterKey,
            Ref::new(PrincipalKind::Service.as_str(), &caller.principal.id),
        )
        .meta("ed25519_public_key", public_key))
    }
}

fn role_names(roles: &[Role]) -> Vec<&'static str> {
    roles.iter().map(|r| r.as_str()).collect()
}

/// Known roles, each once, sorted; at least one.
fn parse_roles(names: &[String]) -> Result<Vec<Role>, Error> {
    let mut roles = Vec::new();
    for r in names {
        let role = Role::parse(r).ok_or_else(|| {
            Error::bad(
                "bad_role",
                format!("unknown role {r:?}: use submitter, approver, deployer, auditor or admin"),
            )
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err(Error::bad("bad_role", "give at least one role"));
    }
    roles.sort();
    Ok(roles)
}

/// The hash of the admin token, as the ledger keeps it.
pub fn admin_hash(admin_token: &str) -> [u8; 32] {
    sha256(admin_token.trim())
}

#[cfg(test)]
mod tests;
