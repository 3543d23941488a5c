//! Who may write what. Every write carries a bearer token; a token stands
//! for one principal (a user or a service) and a set of roles. An event may
//! only be appended by a caller whose roles allow its action, and only in
//! the caller's own name: the event's `actor` must be the caller's
//! principal, so nobody can record an approval for someone else.
//!
//! Tokens are stored hashed (SHA-256; the secret is shown once, when it is
//! made). Making and revoking a token are themselves appended to the log
//! (`grant_access`, `revoke_access`) before they take effect. The admin
//! token made on first start (`admin.token`) is the principal `user:admin`
//! with the `admin` role, which holds every role.

use crate::audit::event::{self, Prepared};
use crate::audit::signature;
use crate::error::Error;
use crate::log::{Log, Receipt};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// Where the token records live in the store's metadata.
pub const META_KEY: &str = "access_tokens";
/// Where the services' registered public keys live.
pub const KEYS_META_KEY: &str = "access_keys";
/// Most keys one service may register.
pub const MAX_KEYS_PER_SERVICE: usize = 16;
/// Most tokens (live and revoked) kept.
pub const MAX_TOKENS: usize = 10_000;
/// The principal of the admin token made on first start.
pub const ADMIN_PRINCIPAL: &str = "admin";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
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
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "submitter" => Role::Submitter,
            "approver" => Role::Approver,
            "deployer" => Role::Deployer,
            "auditor" => Role::Auditor,
            "admin" => Role::Admin,
            _ => return None,
        })
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

/// What appending an event with this action needs: a role, or nothing
/// because only the server records it.
pub fn role_for_action(action: &str) -> Option<Role> {
    match action {
        "approve" | "reject" => Some(Role::Approver),
        "promote" | "deploy" | "rollback" | "retire" => Some(Role::Deployer),
        // Recorded by the server itself, as the result of an admin call or
        // of a refused request: never accepted from a client.
        "grant_access" | "revoke_access" | "register_key" | "deny" | "archive" => None,
        // register, attest, predict, and any action of the team's own.
        _ => Some(Role::Submitter),
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// `user` or `service`.
    pub kind: String,
    pub id: String,
    pub roles: Vec<Role>,
    /// The token's id, `None` for the admin token.
    pub token_id: Option<String>,
}

impl Caller {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&Role::Admin) || self.roles.contains(&role)
    }

    fn require(&self, role: Role) -> Result<(), Error> {
        if self.has(role) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "{}:{} does not have the {} role",
                self.kind,
                self.id,
                role.as_str()
            )))
        }
    }

    fn actor_json(&self) -> serde_json::Value {
        serde_json::json!({"type": self.kind, "id": self.id})
    }
}

/// A token as stored: never the secret, only its hash.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub token_id: String,
    pub principal: Principal,
    pub roles: Vec<Role>,
    /// Lowercase hex SHA-256 of the secret.
    pub token_sha256: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Who made it (`type:id`) and the log index of the grant.
    pub granted_by: String,
    pub grant_index: u64,
    pub revoke_index: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// The body of `POST /v1/admin/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub principal: Principal,
    pub roles: Vec<String>,
    pub expires_at: Option<String>,
}

/// A token just made: the secret (shown once), its record and the receipt
/// of the `grant_access` event.
pub struct Granted {
    pub secret: String,
    pub record: TokenRecord,
    pub receipt: Receipt,
    pub event_id: String,
}

pub struct Revoked {
    pub record: TokenRecord,
    pub receipt: Receipt,
    pub event_id: String,
}

struct Tokens {
    list: Vec<TokenRecord>,
    by_hash: HashMap<[u8; 32], usize>,
}

impl Tokens {
    fn new(list: Vec<TokenRecord>) -> Result<Self, String> {
        let mut by_hash = HashMap::new();
        for (i, t) in list.iter().enumerate() {
            let h: [u8; 32] = hex::decode(&t.token_sha256)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| format!("token {} has a malformed hash", t.token_id))?;
            by_hash.insert(h, i);
        }
        Ok(Tokens { list, by_hash })
    }
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

pub struct Access {
    admin_hash: [u8; 32],
    tokens: RwLock<Tokens>,
    keys: RwLock<HashMap<String, Vec<RegisteredKey>>>,
    store: Arc<dyn Store>,
    /// One grant or revocation at a time (append, then store).
    writer: tokio::sync::Mutex<()>,
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

impl Access {
    /// Load the stored tokens; `admin_token` is the bootstrap secret.
    pub fn open(store: Arc<dyn Store>, admin_token: &str) -> Result<Self, String> {
        let list: Vec<TokenRecord> = match store.get_meta(META_KEY).map_err(|e| e.to_string())? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("stored tokens are unreadable: {e}"))?,
            None => Vec::new(),
        };
        let keys: HashMap<String, Vec<RegisteredKey>> =
            match store.get_meta(KEYS_META_KEY).map_err(|e| e.to_string())? {
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| format!("stored keys are unreadable: {e}"))?,
                None => HashMap::new(),
            };
        Ok(Access {
            admin_hash: sha256(admin_token.trim()),
            tokens: RwLock::new(Tokens::new(list)?),
            keys: RwLock::new(keys),
            store,
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// The caller a presented bearer token stands for. Unknown, revoked and
    /// expired tokens are all 401, with no hint which.
    pub fn authenticate(&self, presented: &str) -> Result<Caller, Error> {
        let h = sha256(presented.trim());
        if bool::from(h.ct_eq(&self.admin_hash)) {
            return Ok(Caller {
                kind: "user".into(),
                id: ADMIN_PRINCIPAL.into(),
                roles: vec![Role::Admin],
                token_id: None,
            });
        }
        let tokens = self
            .tokens
            .read()
            .map_err(|_| Error::Internal("token lock poisoned".into()))?;
        // Looked up by the secret's hash, which says nothing about the secret.
        let t = tokens
            .by_hash
            .get(&h)
            .and_then(|&i| tokens.list.get(i))
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
            kind: t.principal.kind.clone(),
            id: t.principal.id.clone(),
            roles: t.roles.clone(),
            token_id: Some(t.token_id.clone()),
        })
    }

    /// May `caller` append this event? Its action needs a role the caller
    /// has, and its actor must be the caller.
    pub fn check_event(&self, caller: &Caller, p: &Prepared) -> Result<(), Error> {
        match role_for_action(&p.action) {
            None => {
                return Err(Error::Forbidden(format!(
                    "{} events are recorded by the server only",
                    p.action
                )))
            }
            Some(role) => caller.require(role)?,
        }
        if p.actor_type != caller.kind || p.actor_id != caller.id {
            return Err(Error::Forbidden(format!(
                "the event's actor {}:{} is not the caller {}:{}",
                p.actor_type, p.actor_id, caller.kind, caller.id
            )));
        }
        Ok(())
    }

    /// A signed event must verify with a key its actor, a service, has
    /// registered; an unsigned event needs nothing.
    pub fn check_signature(&self, p: &Prepared) -> Result<(), Error> {
        if !p.signed {
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
        if p.actor_type != "service" {
            return Err(refuse("only service principals sign events".into()));
        }
        let keys = self.keys_of(&p.actor_id)?;
        if keys.is_empty() {
            return Err(refuse(format!(
                "service {} has registered no public key",
                p.actor_id
            )));
        }
        let event: serde_json::Value =
            serde_json::from_slice(&p.canonical).map_err(|e| Error::Internal(e.to_string()))?;
        let mut last = None;
        for k in &keys {
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
    pub fn keys_of(&self, service: &str) -> Result<Vec<RegisteredKey>, Error> {
        Ok(self
            .keys
            .read()
            .map_err(|_| Error::Internal("key lock poisoned".into()))?
            .get(service)
            .cloned()
            .unwrap_or_default())
    }

    /// A service registers a public key for its signed attestations: the
    /// `register_key` event is appended, then the key is live.
    pub async fn register_key(
        &self,
        log: &Log,
        caller: &Caller,
        public_key: &str,
    ) -> Result<(RegisteredKey, Receipt, String), Error> {
        if caller.kind != "service" {
            return Err(Error::Forbidden(
                "only service principals register signing keys".into(),
            ));
        }
        let public_key = public_key.trim().to_string();
        signature::parse_public_key(&public_key)
            .map_err(|e| Error::bad("bad_key", e.to_string()))?;
        let _w = self.writer.lock().await;
        let existing = self.keys_of(&caller.id)?;
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
        let registered_at = event::now_rfc3339();
        let ev = serde_json::json!({
            "action": "register_key",
            "actor": caller.actor_json(),
            "timestamp": registered_at,
            "subject": {"type": "service", "id": caller.id},
            "metadata": {"ed25519_public_key": public_key},
        });
        let (receipt, event_id) = append(log, &ev).await?;
        let key = RegisteredKey {
            public_key,
            registered_at,
            index: receipt.index,
        };
        let mut all = self
            .keys
            .read()
            .map_err(|_| Error::Internal("key lock poisoned".into()))?
            .clone();
        all.entry(caller.id.clone()).or_default().push(key.clone());
        let bytes = serde_json::to_vec(&all).map_err(|e| Error::Internal(e.to_string()))?;
        self.store.put_meta(KEYS_META_KEY, &bytes)?;
        *self
            .keys
            .write()
            .map_err(|_| Error::Internal("key lock poisoned".into()))? = all;
        Ok((key, receipt, event_id))
    }

    /// Every token record (no secrets), for admins and auditors.
    pub fn list(&self, caller: &Caller) -> Result<Vec<TokenRecord>, Error> {
        if !caller.has(Role::Auditor) {
            caller.require(Role::Admin)?;
        }
        let tokens = self
            .tokens
            .read()
            .map_err(|_| Error::Internal("token lock poisoned".into()))?;
        Ok(tokens.list.clone())
    }

    /// Make a token: validate, append the `grant_access` event, then store
    /// the token's hash. The secret is returned once.
    pub async fn grant(&self, log: &Log, caller: &Caller, req: NewToken) -> Result<Granted, Error> {
        caller.require(Role::Admin)?;
        let p = &req.principal;
        if p.kind != "user" && p.kind != "service" {
            return Err(Error::bad(
                "bad_principal",
                "principal.type must be \"user\" or \"service\"",
            ));
        }
        if p.id == ADMIN_PRINCIPAL || p.id == crate::registry::SERVER_PRINCIPAL {
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
        let _w = self.writer.lock().await;
        if self.count()? >= MAX_TOKENS {
            return Err(Error::bad(
                "too_many_tokens",
                format!("at most {MAX_TOKENS} tokens are kept"),
            ));
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| Error::Internal(e.to_string()))?;
        let secret = hex::encode(raw);
        let token_id = uuid::Uuid::now_v7().to_string();
        let role_names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let created_at = event::now_rfc3339();
        let mut metadata = serde_json::json!({
            "token_id": token_id,
            "roles": role_names,
        });
        if let Some(e) = &req.expires_at {
            metadata["expires_at"] = serde_json::Value::String(e.clone());
        }
        let ev = serde_json::json!({
            "action": "grant_access",
            "actor": caller.actor_json(),
            "timestamp": created_at,
            "subject": {"type": p.kind, "id": p.id},
            "metadata": metadata,
        });
        let (receipt, event_id) = append(log, &ev).await?;
        let record = TokenRecord {
            token_id,
            principal: p.clone(),
            roles,
            token_sha256: hex::encode(sha256(&secret)),
            created_at,
            expires_at: req.expires_at,
            revoked_at: None,
            granted_by: format!("{}:{}", caller.kind, caller.id),
            grant_index: receipt.index,
            revoke_index: None,
        };
        self.update(|list| list.push(record.clone()))?;
        Ok(Granted {
            secret,
            record,
            receipt,
            event_id,
        })
    }

    /// Change a live token's roles: append a `grant_access` event with the
    /// new roles (and the previous ones), then apply it.
    pub async fn set_roles(
        &self,
        log: &Log,
        caller: &Caller,
        token_id: &str,
        roles: &[String],
    ) -> Result<(TokenRecord, Receipt, String), Error> {
        caller.require(Role::Admin)?;
        let roles = parse_roles(roles)?;
        let _w = self.writer.lock().await;
        let record = self.find(token_id)?;
        if record.revoked_at.is_some() {
            return Err(Error::bad(
                "already_revoked",
                format!("token {token_id} is revoked"),
            ));
        }
        if record.roles == roles {
            return Err(Error::bad("no_change", "the token already has these roles"));
        }
        let ev = serde_json::json!({
            "action": "grant_access",
            "actor": caller.actor_json(),
            "timestamp": event::now_rfc3339(),
            "subject": {"type": record.principal.kind, "id": record.principal.id},
            "metadata": {
                "token_id": token_id,
                "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "previous_roles": record.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            },
        });
        let (receipt, event_id) = append(log, &ev).await?;
        let mut out = record;
        out.roles = roles;
        let updated = out.clone();
        self.update(move |list| {
            if let Some(t) = list.iter_mut().find(|t| t.token_id == updated.token_id) {
                *t = updated;
            }
        })?;
        Ok((out, receipt, event_id))
    }

    fn find(&self, token_id: &str) -> Result<TokenRecord, Error> {
        let tokens = self
            .tokens
            .read()
            .map_err(|_| Error::Internal("token lock poisoned".into()))?;
        tokens
            .list
            .iter()
            .find(|t| t.token_id == token_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no token {token_id}")))
    }

    /// Revoke a token: append the `revoke_access` event, then mark it.
    pub async fn revoke(
        &self,
        log: &Log,
        caller: &Caller,
        token_id: &str,
    ) -> Result<Revoked, Error> {
        caller.require(Role::Admin)?;
        let _w = self.writer.lock().await;
        let record = self.find(token_id)?;
        if record.revoked_at.is_some() {
            return Err(Error::bad(
                "already_revoked",
                format!("token {token_id} is already revoked"),
            ));
        }
        let revoked_at = event::now_rfc3339();
        let ev = serde_json::json!({
            "action": "revoke_access",
            "actor": caller.actor_json(),
            "timestamp": revoked_at,
            "subject": {"type": record.principal.kind, "id": record.principal.id},
            "metadata": {"token_id": token_id},
        });
        let (receipt, event_id) = append(log, &ev).await?;
        let mut out = record;
        out.revoked_at = Some(revoked_at);
        out.revoke_index = Some(receipt.index);
        let updated = out.clone();
        self.update(move |list| {
            if let Some(t) = list.iter_mut().find(|t| t.token_id == updated.token_id) {
                *t = updated;
            }
        })?;
        Ok(Revoked {
            record: out,
            receipt,
            event_id,
        })
    }

    fn count(&self) -> Result<usize, Error> {
        Ok(self
            .tokens
            .read()
            .map_err(|_| Error::Internal("token lock poisoned".into()))?
            .list
            .len())
    }

    /// Change the list, store it (synced), then make it live.
    fn update(&self, f: impl FnOnce(&mut Vec<TokenRecord>)) -> Result<(), Error> {
        let mut list = self
            .tokens
            .read()
            .map_err(|_| Error::Internal("token lock poisoned".into()))?
            .list
            .clone();
        f(&mut list);
        let bytes = serde_json::to_vec(&list).map_err(|e| Error::Internal(e.to_string()))?;
        self.store.put_meta(META_KEY, &bytes)?;
        let next = Tokens::new(list).map_err(Error::Internal)?;
        *self
            .tokens
            .write()
            .map_err(|_| Error::Internal("token lock poisoned".into()))? = next;
        Ok(())
    }
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

async fn append(log: &Log, ev: &serde_json::Value) -> Result<(Receipt, String), Error> {
    let prepared = event::prepare(ev.to_string().as_bytes())
        .map_err(|e| Error::bad("invalid_principal", format!("access event: {e}")))?;
    let id = prepared.event_id.to_string();
    Ok((log.append(prepared).await?, id))
}
