use super::*;
use crate::audit::vocab::Principal;

/// A planned record as the log would store it, at `index`.
fn logged(r: &Record, by: &Principal) -> Event {
    r.prepare(by, "2025-05-05T14:03:00Z").unwrap().event
}

fn admin() -> Caller {
    Caller::admin()
}

fn new_token(kind: PrincipalKind, id: &str, roles: &[&str]) -> NewToken {
    NewToken {
        principal: Principal::new(kind, id),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        expires_at: None,
    }
}

const ADMIN_TOKEN: &str = "admin-secret-for-tests";

#[test]
fn grants_role_changes_and_revocations_are_a_fold() {
    let admin_hash = admin_hash(ADMIN_TOKEN);
    let mut st = AccessState::default();
    let mut log: Vec<Event> = Vec::new();
    let mut append = |st: &mut AccessState, r: &Record| {
        let ev = logged(r, &Principal::user("admin"));
        st.apply(log.len() as u64, &ev);
        log.push(ev);
    };
    let (r, alice) = st
        .plan_grant(
            &admin(),
            &new_token(PrincipalKind::User, "alice", &["approver"]),
            [7; 32],
            "0190c0de-0000-7000-8000-000000000001",
        )
        .unwrap();
    // The secret is not in the event; its hash is.
    let ev = logged(&r, &Principal::user("admin"));
    assert_eq!(
        ev.meta_str("token_sha256"),
        Some(crate::encoding::hex32(&sha256(&alice)).as_str())
    );
    assert!(!serde_json::to_string(&ev.metadata)
        .unwrap()
        .contains(&alice));
    append(&mut st, &r);
    let caller = st.authenticate(&alice, &admin_hash).unwrap();
    assert_eq!(caller.principal, Principal::user("alice"));
    assert_eq!(caller.roles, vec![Role::Approver]);
    assert_eq!(
        st.authenticate(ADMIN_TOKEN, &admin_hash).unwrap(),
        Caller::admin()
    );
    assert!(matches!(
        st.authenticate("nope", &admin_hash),
        Err(Error::Unauthorized)
    ));

    // A role change, then a revocation.
    let r = st
        .plan_set_roles(
            &admin(),
            "0190c0de-0000-7000-8000-000000000001",
            &["submitter".into(), "approver".into()],
        )
        .unwrap();
    append(&mut st, &r);
    assert_eq!(
        st.authenticate(&alice, &admin_hash).unwrap().roles,
        vec![Role::Submitter, Role::Approver]
    );
    let r = st
        .plan_revoke(&admin(), "0190c0de-0000-7000-8000-000000000001")
        .unwrap();
    append(&mut st, &r);
    assert!(matches!(
        st.authenticate(&alice, &admin_hash),
        Err(Error::Unauthorized)
    ));
    let t = st.token("0190c0de-0000-7000-8000-000000000001").unwrap();
    assert_eq!(t.grant_index, 0);
    assert_eq!(t.revoke_index, Some(2));
    assert!(matches!(
        st.plan_revoke(&admin(), "0190c0de-0000-7000-8000-000000000001"),
        Err(Error::BadRequest {
            code: "already_revoked",
            ..
        })
    ));

    // The same entries folded again give the same state; so does a
    // snapshot of it, reloaded.
    let mut again = AccessState::default();
    for (i, e) in log.iter().enumerate() {
        again.apply(i as u64, e);
    }
    assert_eq!(again, st);
    let mut reloaded: AccessState =
        serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
    reloaded.reindex();
    assert_eq!(reloaded, st);
    assert!(reloaded.authenticate(&alice, &admin_hash).is_err());
}

#[test]
fn only_admins_grant_and_principals_are_checked() {
    let st = AccessState::default();
    let ops = Caller {
        principal: Principal::user("ops"),
        roles: vec![Role::Deployer],
        token_id: Some("x".into()),
    };
    let req = new_token(PrincipalKind::User, "bob", &["approver"]);
    assert!(matches!(
        st.plan_grant(&ops, &req, [1; 32], "id"),
        Err(Error::Forbidden(_))
    ));
    for (id, roles) in [
        ("admin", vec!["approver"]),
        ("modeltrail", vec!["approver"]),
        ("", vec!["approver"]),
        ("bob", vec![]),
        ("bob", vec!["root"]),
    ] {
        let req = new_token(PrincipalKind::User, id, &roles);
        assert!(
            matches!(
                st.plan_grant(&admin(), &req, [1; 32], "id"),
                Err(Error::BadRequest { .. })
            ),
            "{id:?} {roles:?}"
        );
    }
    let mut req = new_token(PrincipalKind::User, "bob", &["approver"]);
    req.expires_at = Some("2001-01-01T00:00:00Z".into());
    assert!(st.plan_grant(&admin(), &req, [1; 32], "id").is_err());
}

#[test]
fn grants_logged_without_a_hash_use_the_old_table() {
    // A grant as earlier versions logged it: no token_sha256.
    let secret = "c".repeat(64);
    let ev = logged(
        &Record::new(Action::GrantAccess, Ref::new("service", "ci"))
            .meta("token_id", "t-1")
            .meta("roles", vec!["submitter"]),
        &Principal::user("admin"),
    );
    let admin_hash = admin_hash(ADMIN_TOKEN);
    let mut plain = AccessState::default();
    plain.apply(0, &ev);
    assert!(matches!(
        plain.authenticate(&secret, &admin_hash),
        Err(Error::Unauthorized)
    ));
    let legacy = [("t-1".to_string(), crate::encoding::hex32(&sha256(&secret)))]
        .into_iter()
        .collect();
    let mut st = AccessState::default().with_legacy_hashes(legacy);
    st.apply(0, &ev);
    assert_eq!(
        st.authenticate(&secret, &admin_hash).unwrap().principal,
        Principal::service("ci")
    );
}

#[test]
fn actions_need_their_role_and_the_caller_as_actor() {
    let ev = |action: &str, actor: Principal| {
        crate::audit::event::prepare(
            serde_json::json!({
                "action": action,
                "actor": {"type": actor.kind.as_str(), "id": actor.id},
                "timestamp": "2025-05-05T14:03:00Z",
                "subject": {"type": "model_version", "id": "m:v1"},
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
        .event
    };
    let ci = Caller {
        principal: Principal::service("ci"),
        roles: vec![Role::Submitter],
        token_id: Some("t".into()),
    };
    assert!(AccessState::check_event(&ci, &ev("register", Principal::service("ci"))).is_ok());
    assert!(AccessState::check_event(&ci, &ev("predict", Principal::service("ci"))).is_ok());
    for (action, actor) in [
        ("approve", Principal::service("ci")),
        ("promote", Principal::service("ci")),
        ("register", Principal::service("other")),
        ("register", Principal::user("ci")),
        ("grant_access", Principal::service("ci")),
        ("deny", Principal::service("ci")),
    ] {
        assert!(
            matches!(
                AccessState::check_event(&ci, &ev(action, actor.clone())),
                Err(Error::Forbidden(_))
            ),
            "{action} by {actor}"
        );
    }
    // The admin holds every role, in its own name only.
    assert!(AccessState::check_event(&admin(), &ev("approve", Principal::user("admin"))).is_ok());
    assert!(AccessState::check_event(&admin(), &ev("approve", Principal::user("alice"))).is_err());
}

#[test]
fn services_register_keys_once_each() {
    let mut st = AccessState::default();
    let ci = Caller {
        principal: Principal::service("ci"),
        roles: vec![Role::Submitter],
        token_id: Some("t".into()),
    };
    let key = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        ed25519_dalek::SigningKey::from_bytes(&[3; 32])
            .verifying_key()
            .as_bytes(),
    );
    let r = st.plan_register_key(&ci, &key).unwrap();
    st.apply(4, &logged(&r, &ci.principal));
    assert_eq!(st.keys_of("ci").len(), 1);
    assert_eq!(st.keys_of("ci")[0].index, 4);
    assert!(matches!(
        st.plan_register_key(&ci, &key),
        Err(Error::BadRequest {
            code: "duplicate_key",
            ..
        })
    ));
    assert!(st.plan_register_key(&admin(), &key).is_err());
    assert!(st.plan_register_key(&ci, "AAAA").is_err());
    // A service without the submitter role may not register a key.
    let reader = Caller {
        principal: Principal::service("reader"),
        roles: vec![Role::Auditor],
        token_id: Some("r".into()),
    };
    assert!(matches!(
        st.plan_register_key(&reader, &key),
        Err(Error::Forbidden(_))
    ));
}
