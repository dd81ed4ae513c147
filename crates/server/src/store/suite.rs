//! The behaviour every store must have, as one suite that each backend's tests run against a fresh store.

use std::sync::Arc;

use super::*;
use crate::model::{ClientCredential, GrantType, TokenDelivery};
use crate::oauth::scope::Scopes;

fn user(name: &str, roles: &[&str]) -> User {
    User {
        id: format!("u_{name}"),
        name: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        disabled: false,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        scopes: Scopes::default(),
        failures: 0,
        last_failure_at: 0,
        created_at: 100,
    }
}

fn client(id: &str) -> Client {
    Client {
        id: id.into(),
        credential: ClientCredential::Secret(SecretDigest::of("s3cret")),
        grants: vec![GrantType::ClientCredentials, GrantType::RefreshToken],
        scopes: Scopes::parse("read write").unwrap(),
        redirect_uris: vec!["https://app.example/cb".into()],
        audiences: vec!["api".into(), "https://api.example".into()],
        first_party: true,
        token_delivery: TokenDelivery::Cookie,
        dpop_bound: true,
        disabled: false,
        created_at: 100,
    }
}

pub async fn accounts_and_clients(store: Arc<dyn Store>) {
    store.add_role(&Role { name: "staff".into(), scopes: Scopes::parse("read write").unwrap() }, 1).await.unwrap();
    store.add_role(&Role { name: "ops".into(), scopes: Scopes::parse("admin read").unwrap() }, 1).await.unwrap();
    assert!(matches!(
        store.add_role(&Role { name: "ops".into(), scopes: Scopes::default() }, 1).await,
        Err(StoreError::Conflict(_))
    ));
    store.add_user(&user("alice", &["ops", "staff"])).await.unwrap();
    assert!(matches!(store.add_user(&user("alice", &[])).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.add_user(&user("bob", &["nope"])).await, Err(StoreError::NotFound(_))));
    assert!(store.find_user_by_name("bob").await.unwrap().is_none(), "a failed add leaves nothing behind");
    let alice = store.find_user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(alice.roles, vec!["ops", "staff"]);
    assert_eq!(alice.scopes.to_string(), "admin read write", "the union of the roles' scopes");
    assert_eq!(store.find_user(&alice.id).await.unwrap().unwrap().name, "alice");
    store.set_user_disabled("alice", true).await.unwrap();
    assert!(store.find_user("u_alice").await.unwrap().unwrap().disabled);
    assert!(matches!(store.set_user_disabled("nobody", true).await, Err(StoreError::NotFound(_))));
    let roles = store.list_roles("", 10).await.unwrap();
    assert_eq!(roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["ops", "staff"]);
    assert_eq!(store.list_roles("ops", 10).await.unwrap().len(), 1);
    let users = store.list_users("", 1).await.unwrap();
    assert_eq!((users.len(), users[0].roles.clone()), (1, vec!["ops".to_owned(), "staff".to_owned()]));
    assert!(store.list_users("alice", 1).await.unwrap().is_empty());
    store.remove_role("ops").await.unwrap();
    assert_eq!(store.find_user("u_alice").await.unwrap().unwrap().roles, vec!["staff"]);

    store.add_client(&client("app")).await.unwrap();
    assert!(matches!(store.add_client(&client("app")).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.find_client("app").await.unwrap().unwrap(), client("app"), "a client round-trips whole");
    let mut public = client("spa");
    public.credential = ClientCredential::None;
    store.add_client(&public).await.unwrap();
    assert_eq!(store.list_clients("", 10).await.unwrap().len(), 2);
    let first = store.list_clients("", 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let rest = store.list_clients(&first[0].id, 10).await.unwrap();
    assert_eq!(rest.len(), 1, "the page after the first starts past its last key");
    assert!(rest[0].id > first[0].id);
    store.set_client_disabled("spa", true).await.unwrap();
    assert!(store.find_client("spa").await.unwrap().unwrap().disabled);
    store.remove_client("spa").await.unwrap();
    assert!(store.find_client("spa").await.unwrap().is_none());
    assert!(store.use_assertion("app", "j1", 500).await.unwrap());
    assert!(!store.use_assertion("app", "j1", 500).await.unwrap(), "an assertion jti is single-use");
    assert!(store.use_assertion("other", "j1", 500).await.unwrap(), "per client");
}

pub async fn counters_are_atomic(store: Arc<dyn Store>) {
    store.add_user(&user("carol", &[])).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.record_login_failure("u_carol", 1000 + i).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=20).collect::<Vec<u32>>(), "every increment counted once");
    assert_eq!(store.find_user("u_carol").await.unwrap().unwrap().failures, 20);
    store.reset_login_failures("u_carol").await.unwrap();
    assert_eq!(store.find_user("u_carol").await.unwrap().unwrap().failures, 0);
}

pub async fn refresh_rotation(store: Arc<dyn Store>) {
    let rules = RefreshRules { absolute_ttl: 1000, idle_ttl: 500, reuse_grace: 10 };
    let family = RefreshFamily {
        id: "f1".into(),
        user_id: "u1".into(),
        client_id: "app".into(),
        scope: "read".into(),
        audience: "api".into(),
        created_at: 100,
        dpop_jkt: Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into()),
    };
    let t0 = SecretDigest::of("t0");
    store.start_family(&family, &t0).await.unwrap();
    // Concurrent rotations of one token: exactly one wins, the rest are duplicates inside the grace period.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store.rotate_refresh(&SecretDigest::of("t0"), &SecretDigest::of(&format!("t1-{i}")), &rules, 110).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap().unwrap() {
            RotateOutcome::Rotated(f) => {
                assert_eq!(f, family);
                winners.push(i);
            }
            RotateOutcome::Refused(Decision::RefuseDuplicate, _) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation: {winners:?}");
    let t1 = SecretDigest::of(&format!("t1-{}", winners[0]));
    let (_, state) = store.find_refresh(&t1).await.unwrap().unwrap();
    assert_eq!((state.issued_at, state.used_at), (110, None));
    // Reuse of t0 after the grace period burns the family; t1 dies with it.
    let outcome = store.rotate_refresh(&t0, &SecretDigest::of("t2"), &rules, 200).await.unwrap();
    assert!(matches!(outcome, RotateOutcome::Refused(Decision::RevokeFamily, _)), "{outcome:?}");
    let outcome = store.rotate_refresh(&t1, &SecretDigest::of("t3"), &rules, 201).await.unwrap();
    assert!(matches!(outcome, RotateOutcome::Refused(Decision::Revoked, _)), "{outcome:?}");
    assert_eq!(store.rotate_refresh(&SecretDigest::of("nope"), &t0, &rules, 1).await.unwrap(), RotateOutcome::Unknown);
    // A second family for the user is revoked with "everything for this user".
    let f2 = RefreshFamily { id: "f2".into(), dpop_jkt: None, ..family.clone() };
    store.start_family(&f2, &SecretDigest::of("u0")).await.unwrap();
    let (found, _) = store.find_refresh(&SecretDigest::of("u0")).await.unwrap().unwrap();
    assert_eq!(found, f2, "an unbound family reads back unbound");
    // Sessions: only live families, of the user asked for, past the cut-off, in id order.
    let f3 = RefreshFamily { id: "f3".into(), user_id: "u2".into(), ..f2.clone() };
    store.start_family(&f3, &SecretDigest::of("v0")).await.unwrap();
    let live = |user: &str, after: i64| SessionFilter { user_id: user.into(), created_after: after };
    let ids = |v: Vec<RefreshFamily>| v.into_iter().map(|f| f.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_sessions(&live("", 0), "", 10).await.unwrap()), ["f2", "f3"], "f1 was revoked");
    assert_eq!(ids(store.list_sessions(&live("", 0), "f2", 10).await.unwrap()), ["f3"]);
    assert_eq!(ids(store.list_sessions(&live("u1", 0), "", 10).await.unwrap()), ["f2"]);
    assert!(store.list_sessions(&live("", 100), "", 10).await.unwrap().is_empty(), "created at 100: too old");
    assert_eq!(store.find_session(&live("", 0), "f3").await.unwrap(), Some(f3));
    assert_eq!(store.find_session(&live("", 0), "f1").await.unwrap(), None);
    assert_eq!(store.find_session(&live("u1", 0), "f3").await.unwrap(), None);
    assert_eq!(store.revoke_user_families("u1", "test", 300).await.unwrap(), 1, "f1 was already revoked");
    assert!(!store.revoke_family("f2", "again", 301).await.unwrap());
}

pub async fn keys_revocations_and_audit(store: Arc<dyn Store>) {
    let key = |kid: &str, state: KeyState| StoredKey {
        record: KeyRecord {
            kid: kid.into(),
            state,
            created_at: 10,
            activate_at: Some(20),
            activated_at: None,
            retired_at: None,
        },
        alg: "ES256".into(),
        public_jwk: "{}".into(),
        sealed_private: vec![1, 2, 3],
    };
    store.insert_key(&key("k1", KeyState::Pending)).await.unwrap();
    assert!(matches!(store.insert_key(&key("k1", KeyState::Pending)).await, Err(StoreError::Conflict(_))));
    assert!(store.set_key_state("k1", KeyState::Pending, KeyState::Active, 30).await.unwrap());
    assert!(!store.set_key_state("k1", KeyState::Pending, KeyState::Active, 31).await.unwrap(), "compare-and-set");
    let listed = store.list_keys().await.unwrap();
    assert_eq!(listed[0].record.state, KeyState::Active);
    assert_eq!(listed[0].record.activated_at, Some(30));
    assert_eq!(listed[0].sealed_private, vec![1, 2, 3]);
    store.delete_key("k1").await.unwrap();
    assert!(store.list_keys().await.unwrap().is_empty());

    let rev = |value: &str, expires_at: i64| Revocation {
        seq: 0,
        kind: RevocationKind::Token,
        value: value.into(),
        issued_before: 0,
        expires_at,
        created_at: 1,
        reason: "test".into(),
    };
    let a = store.add_revocation(&rev("a", 100)).await.unwrap();
    let b = store.add_revocation(&rev("b", 1000)).await.unwrap();
    assert!(b > a, "sequence numbers increase");
    let live = store.revocations_since(0, 500, 10).await.unwrap();
    assert_eq!(live.iter().map(|r| r.value.as_str()).collect::<Vec<_>>(), vec!["b"], "expired ones are gone");
    assert!(store.revocations_since(b, 0, 10).await.unwrap().is_empty());

    let mut event = crate::audit::event(5, "token_issued");
    event.jti = Some("j".into());
    store.append_audit(&[event.clone(), event]).await.unwrap();
    let events = store.audit_since(0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[1].seq > events[0].seq);
    assert!(store.purge_expired(600, &RefreshRules::default()).await.unwrap() >= 1, "the expired revocation");
    store.ping().await.unwrap();
}

pub async fn leases(store: Arc<dyn Store>) {
    assert!(store.acquire_lease("job", "a", 100, 130).await.unwrap());
    assert!(!store.acquire_lease("job", "b", 110, 140).await.unwrap(), "held by a until 130");
    assert!(store.acquire_lease("job", "a", 120, 150).await.unwrap(), "its holder renews it");
    assert!(store.acquire_lease("job", "b", 150, 180).await.unwrap(), "lapsed at 150");
    store.release_lease("job", "a").await.unwrap();
    assert!(!store.acquire_lease("job", "a", 151, 181).await.unwrap(), "only the holder can release");
    store.release_lease("job", "b").await.unwrap();
    assert!(store.acquire_lease("job", "a", 152, 182).await.unwrap());
    // Many contenders at once: exactly one wins.
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.acquire_lease("race", &format!("h{i}"), 200, 230).await.unwrap() })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert!(store.purge_expired(10_000, &RefreshRules::default()).await.unwrap() >= 2, "lapsed leases go");
    assert!(store.acquire_lease("race", "late", 10_001, 10_031).await.unwrap());
}

/// A reader that follows revocations by `seq` (an instance syncing, the `/events` feed) while others append
/// concurrently must see every one: sequence order has to be commit order.
pub async fn revocations_are_read_in_commit_order(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..EACH {
                    let r = Revocation {
                        seq: 0,
                        kind: RevocationKind::Token,
                        value: format!("w{w}-{i}"),
                        issued_before: 0,
                        expires_at: 10_000,
                        created_at: 1,
                        reason: "test".into(),
                    };
                    store.add_revocation(&r).await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut last = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen.len() < WRITERS * EACH {
        assert!(std::time::Instant::now() < deadline, "the reader saw {} of {}", seen.len(), WRITERS * EACH);
        for r in store.revocations_since(last, 0, 7).await.unwrap() {
            assert!(r.seq > last);
            last = r.seq;
            seen.insert(r.value);
        }
        if writers.iter().all(|w| w.is_finished()) && store.revocations_since(last, 0, 1).await.unwrap().is_empty() {
            break;
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(seen.len(), WRITERS * EACH, "a reader following seq skipped a revocation that committed late");
}

/// Audit events from concurrent writers form one sequence: 1, 2, 3... with no gap and no duplicate, and a reader
/// following it while they write sees every event, in that order.
pub async fn audit_sequence_has_no_gaps(store: Arc<dyn Store>) {
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..10 {
                    let mut e = crate::audit::event(i, "token_issued");
                    e.jti = Some(format!("w{w}-{i}"));
                    store.append_audit(&[e.clone(), e]).await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    while seen.len() < 120 {
        // Finished first, then read: an empty read after every writer finished means there is no more.
        let finished = writers.iter().all(|w| w.is_finished());
        let after = seen.last().copied().unwrap_or(0);
        let batch = store.audit_since(after, 7).await.unwrap();
        if batch.is_empty() && finished {
            break;
        }
        seen.extend(batch.iter().map(|e| e.seq));
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(seen, (1..=120).collect::<Vec<i64>>(), "the reader saw every event, numbered 1, 2, 3...");
    let events = store.audit_since(0, 1000).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=120).collect::<Vec<i64>>());
}

/// Export from `from`, import into the empty `to`: the target then holds exactly the same rows, refuses a
/// second import, and numbers new revocations and audit events after the imported ones.
pub async fn authorization_code_flow(store: Arc<dyn Store>) {
    store.add_user(&user("erin", &[])).await.unwrap();
    store.add_client(&client("app")).await.unwrap();
    let code = AuthorizationCode {
        client_id: "app".into(),
        user_id: "u_erin".into(),
        redirect_uri: "https://app.example/cb".into(),
        redirect_uri_given: true,
        scope: "openid read".into(),
        audience: "api".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        auth_time: 100,
        session_id: "s1".into(),
        dpop_jkt: None,
        created_at: 100,
        expires_at: 160,
    };
    let digest = SecretDigest::of("the-code");
    store.insert_code(&digest, &code).await.unwrap();
    assert!(matches!(store.insert_code(&digest, &code).await, Err(StoreError::Conflict(_))));
    // Concurrent presentations of one code: exactly one is fresh, the others see a reuse.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.redeem_code(&SecretDigest::of("the-code"), 110).await.unwrap() })
        })
        .collect();
    let mut fresh = 0;
    for t in tasks {
        match t.await.unwrap() {
            Redeemed::Fresh(c) => {
                assert_eq!(c, code);
                fresh += 1;
            }
            Redeemed::Reused(c) => assert_eq!(c.session_id, "s1"),
            Redeemed::Unknown => panic!("the code exists"),
        }
    }
    assert_eq!(fresh, 1, "a code is spent exactly once");
    assert_eq!(store.redeem_code(&SecretDigest::of("other"), 110).await.unwrap(), Redeemed::Unknown);
    let bound = AuthorizationCode { dpop_jkt: Some("jkt".into()), nonce: None, redirect_uri_given: false, ..code };
    store.insert_code(&SecretDigest::of("bound"), &bound).await.unwrap();
    assert_eq!(store.redeem_code(&SecretDigest::of("bound"), 111).await.unwrap(), Redeemed::Fresh(bound));

    // Browser sessions: found until they expire, ended one by one or all for a user.
    let session = BrowserSession { user_id: "u_erin".into(), auth_time: 100, expires_at: 200 };
    for id in ["b1", "b2"] {
        store.insert_browser_session(&SecretDigest::of(id), &session).await.unwrap();
    }
    assert_eq!(store.find_browser_session(&SecretDigest::of("b1"), 199).await.unwrap(), Some(session.clone()));
    assert_eq!(store.find_browser_session(&SecretDigest::of("b1"), 200).await.unwrap(), None, "expired");
    store.end_browser_session(&SecretDigest::of("b1")).await.unwrap();
    assert_eq!(store.find_browser_session(&SecretDigest::of("b1"), 150).await.unwrap(), None);
    assert_eq!(store.end_user_browser_sessions("u_erin").await.unwrap(), 1);
    assert_eq!(store.find_browser_session(&SecretDigest::of("b2"), 150).await.unwrap(), None);

    // Consents: one per user and client, replaced by the latest.
    assert_eq!(store.consent("u_erin", "app").await.unwrap(), None);
    store.grant_consent("u_erin", "app", "read", 100).await.unwrap();
    store.grant_consent("u_erin", "app", "openid read", 101).await.unwrap();
    assert_eq!(store.consent("u_erin", "app").await.unwrap().as_deref(), Some("openid read"));

    // Purging keeps a used code for an hour after it expired, so a late replay is still a replay.
    let rules = RefreshRules::default();
    store.purge_expired(160 + 3599, &rules).await.unwrap();
    assert!(matches!(store.redeem_code(&SecretDigest::of("the-code"), 3760).await.unwrap(), Redeemed::Reused(_)));
    store.purge_expired(160 + 3600, &rules).await.unwrap();
    assert_eq!(store.redeem_code(&SecretDigest::of("the-code"), 3761).await.unwrap(), Redeemed::Unknown);
}

pub async fn snapshot_round_trip(from: Arc<dyn Store>, to: Arc<dyn Store>) {
    from.add_role(&Role { name: "staff".into(), scopes: Scopes::parse("read write").unwrap() }, 1).await.unwrap();
    from.add_user(&user("dana", &["staff"])).await.unwrap();
    from.record_login_failure("u_dana", 50).await.unwrap();
    from.add_client(&client("app")).await.unwrap();
    let mut spa = client("spa");
    spa.credential = ClientCredential::Jwks(r#"{"keys":[]}"#.into());
    from.add_client(&spa).await.unwrap();
    from.grant_consent("u_dana", "spa", "read", 60).await.unwrap();
    let key = StoredKey {
        record: KeyRecord {
            kid: "k1".into(),
            state: KeyState::Active,
            created_at: 10,
            activate_at: None,
            activated_at: Some(10),
            retired_at: None,
        },
        alg: "ES256".into(),
        public_jwk: r#"{"kty":"EC"}"#.into(),
        sealed_private: vec![0, 1, 2, 255],
    };
    from.insert_key(&key).await.unwrap();
    let family = RefreshFamily {
        id: "f1".into(),
        user_id: "u_dana".into(),
        client_id: "app".into(),
        scope: "read".into(),
        audience: "api".into(),
        created_at: 100,
        dpop_jkt: Some("thumbprint".into()),
    };
    let rules = RefreshRules { absolute_ttl: 1000, idle_ttl: 500, reuse_grace: 10 };
    from.start_family(&family, &SecretDigest::of("r0")).await.unwrap();
    from.rotate_refresh(&SecretDigest::of("r0"), &SecretDigest::of("r1"), &rules, 110).await.unwrap();
    let rev = Revocation {
        seq: 0,
        kind: RevocationKind::Subject,
        value: "u_dana".into(),
        issued_before: 90,
        expires_at: 5000,
        created_at: 90,
        reason: "test".into(),
    };
    from.add_revocation(&rev).await.unwrap();
    let last_rev = from.add_revocation(&rev).await.unwrap();
    from.append_audit(&[crate::audit::event(7, "token_issued")]).await.unwrap();

    let snapshot = from.export().await.unwrap();
    let counts: std::collections::HashMap<String, usize> = snapshot.counts().into_iter().collect();
    assert_eq!((counts["users"], counts["clients"], counts["refresh_tokens"], counts["revocations"]), (1, 2, 2, 2));
    to.import(&snapshot).await.unwrap();
    assert_eq!(to.export().await.unwrap(), snapshot, "the target holds exactly what the source held");
    assert!(matches!(to.import(&snapshot).await, Err(StoreError::Conflict(_))), "a store with data is refused");
    // The moved refresh token rotates on the target; the used one is recognised as used.
    let outcome = to.rotate_refresh(&SecretDigest::of("r1"), &SecretDigest::of("r2"), &rules, 120).await.unwrap();
    assert!(matches!(outcome, RotateOutcome::Rotated(_)), "{outcome:?}");
    assert!(to.add_revocation(&rev).await.unwrap() > last_rev, "new revocations come after the moved ones");
    to.append_audit(&[crate::audit::event(8, "token_issued")]).await.unwrap();
    assert_eq!(to.audit_since(0, 10).await.unwrap().last().unwrap().seq, 2);
    assert_eq!(to.find_user_by_name("dana").await.unwrap().unwrap().failures, 1);
    assert_eq!(to.consent("u_dana", "spa").await.unwrap().as_deref(), Some("read"), "consents move too");
}

/// The audit ledger grows once per event however many instances grow it at once, and its stored nodes give the
/// root and proofs the events imply; heads are kept once per size, in order.
pub async fn ledger_grows_once_under_concurrency(store: Arc<dyn Store>) {
    use crate::ledger::{self, merkle};
    for round in 0..3 {
        let events: Vec<_> = (0..40)
            .map(|i| {
                let mut e = crate::audit::event(round * 100 + i, "token_issued");
                e.detail = format!(r#"{{"round":{round},"i":{i}}}"#);
                e
            })
            .collect();
        store.append_audit(&events).await.unwrap();
        let growers: Vec<_> = (0..4)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { ledger::extend(store.as_ref()).await.unwrap() })
            })
            .collect();
        for g in growers {
            assert_eq!(g.await.unwrap(), 40 * (round as u64 + 1), "every grower ends at the full size");
        }
    }
    assert_eq!(store.ledger_size().await.unwrap(), 120);
    let logged = store.audit_since(0, 1000).await.unwrap();
    let leaves: Vec<merkle::Hash> = logged.iter().map(|e| merkle::leaf_hash(&ledger::leaf_data(e))).collect();
    assert_eq!(ledger::root_at(store.as_ref(), 120).await.unwrap(), merkle::root(&leaves));
    assert_eq!(ledger::root_at(store.as_ref(), 77).await.unwrap(), merkle::root(&leaves[..77]));
    let (leaf, proof) = ledger::inclusion(store.as_ref(), 50, 120).await.unwrap();
    assert_eq!(leaf, leaves[49]);
    assert!(merkle::verify_inclusion(49, 120, &leaf, &proof, &merkle::root(&leaves)));
    let proof = ledger::consistency(store.as_ref(), 40, 120).await.unwrap();
    assert!(merkle::verify_consistency(40, 120, &proof, &merkle::root(&leaves[..40]), &merkle::root(&leaves)));
    assert!(ledger::consistency(store.as_ref(), 40, 121).await.is_err(), "beyond the tree");
    assert!(
        !store.ledger_extend(100, 130, &LedgerGrowth::default()).await.unwrap(),
        "growth from a stale size is refused"
    );

    let head =
        |size: u64| TreeHead { tree_size: size, root_hash: [size as u8; 32], issued_at: 5, jws: format!("h{size}") };
    assert_eq!(store.latest_head().await.unwrap(), None);
    for size in [40, 120, 80] {
        store.add_head(&head(size)).await.unwrap();
    }
    store.add_head(&TreeHead { jws: "again".into(), ..head(80) }).await.unwrap();
    assert_eq!(store.latest_head().await.unwrap(), Some(head(120)));
    let sizes: Vec<u64> = store.heads(40, 10).await.unwrap().iter().map(|h| h.tree_size).collect();
    assert_eq!(sizes, [80, 120]);
    assert_eq!(store.heads(0, 10).await.unwrap()[1], head(80), "the first head of a size stays");
}

/// The audit writer's in-memory growth ([`crate::ledger::Follower`], where the backend numbers events as it stores
/// them) and the background growth build one tree, whichever adds which events, with events from elsewhere (the
/// CLI) in between. The follower reads back what it did not see itself, so it keeps the tree up to date without
/// the background growth, even after thousands of events written elsewhere.
pub async fn ledger_follows_the_writer(store: Arc<dyn Store>) {
    use crate::ledger::{self, merkle, Follower};
    let mut follower = Follower::default();
    let mut followed = false;
    for round in 0..6i64 {
        let events: Vec<_> = (0..37).map(|i| crate::audit::event(round * 1000 + i, "token_issued")).collect();
        if let Some(seqs) = store.append_audit_numbered(&events).await.unwrap() {
            assert_eq!(seqs.len(), events.len());
            if round == 4 {
                // The background growth gets to the batch before the follower does.
                ledger::extend(store.as_ref()).await.unwrap();
            }
            follower.add(store.as_ref(), &events, &seqs).await.unwrap();
            if round % 2 == 1 {
                follower.flush(store.as_ref()).await.unwrap();
            }
            followed = true;
        }
        if round == 2 {
            store.append_audit(&[crate::audit::event(7, "user_added")]).await.unwrap();
        }
    }
    follower.flush(store.as_ref()).await.unwrap();
    let mut expected = 6 * 37 + 1;
    if followed {
        assert_eq!(store.ledger_size().await.unwrap(), expected, "the follower kept the tree up to date");
        // A long stretch written elsewhere, then a fresh follower (a restart): it reads the stretch back, in
        // several stored batches.
        let elsewhere: Vec<_> = (0..5000).map(|i| crate::audit::event(9000 + i, "user_added")).collect();
        store.append_audit(&elsewhere).await.unwrap();
        let events: Vec<_> = (0..3).map(|i| crate::audit::event(20_000 + i, "token_issued")).collect();
        let seqs = store.append_audit_numbered(&events).await.unwrap().unwrap();
        let mut follower = Follower::default();
        follower.add(store.as_ref(), &events, &seqs).await.unwrap();
        follower.flush(store.as_ref()).await.unwrap();
        expected += 5003;
        assert_eq!(store.ledger_size().await.unwrap(), expected, "the follower read the stretch back");
    }
    let size = ledger::extend(store.as_ref()).await.unwrap();
    assert_eq!(size, expected);
    let logged = store.audit_since(0, 10_000).await.unwrap();
    let leaves: Vec<merkle::Hash> = logged.iter().map(|e| merkle::leaf_hash(&ledger::leaf_data(e))).collect();
    assert_eq!(ledger::root_at(store.as_ref(), size).await.unwrap(), merkle::root(&leaves));
    let (leaf, proof) = ledger::inclusion(store.as_ref(), 100, size).await.unwrap();
    assert!(merkle::verify_inclusion(99, size, &leaf, &proof, &merkle::root(&leaves)));
}

/// Risk profiles round-trip, the latest write wins, and a batch is stored whole.
pub async fn risk_profiles(store: Arc<dyn Store>) {
    assert_eq!(store.risk_profile("alice").await.unwrap(), None);
    store.save_risk_profiles(&[], 1).await.unwrap();
    let batch = vec![("alice".to_owned(), vec![1u8, 2, 3]), ("bob".to_owned(), vec![9u8; 700])];
    store.save_risk_profiles(&batch, 10).await.unwrap();
    assert_eq!(store.risk_profile("alice").await.unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(store.risk_profile("bob").await.unwrap(), Some(vec![9; 700]));
    store.save_risk_profiles(&[("alice".to_owned(), vec![4u8])], 11).await.unwrap();
    assert_eq!(store.risk_profile("alice").await.unwrap(), Some(vec![4]));
    // Subjects are compared exactly (no case folding, no patterns).
    assert_eq!(store.risk_profile("ALICE").await.unwrap(), None);
    assert_eq!(store.risk_profile("%").await.unwrap(), None);
}
