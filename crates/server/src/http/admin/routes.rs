//! The admin API's handlers: each checks its input, calls [`Admin`] or the [`Authority`](crate::authority)
//! and maps the answer. The `#[utoipa::path]` attribute on each is its entry in the OpenAPI document.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use super::views::*;
use super::{bounds, paged, problem, short, Body, Caller, Params, PathOf};
use crate::admin::{Admin, ClientKind, NewClient};
use crate::http::AppState;
use crate::ledger::{self, merkle};
use crate::model::{GrantType, TokenDelivery};
use crate::store::{RevocationKind, SessionFilter};

type Answer = Result<Response, Problem>;

pub(super) fn all(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router
        .routes(routes!(list_users, add_user))
        .routes(routes!(get_user, remove_user))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(revoke_user))
        .routes(routes!(set_password))
        .routes(routes!(list_roles, add_role))
        .routes(routes!(remove_role))
        .routes(routes!(list_clients, add_client))
        .routes(routes!(get_client, remove_client))
        .routes(routes!(disable_client))
        .routes(routes!(enable_client))
        .routes(routes!(list_keys))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_key))
        .routes(routes!(list_sessions))
        .routes(routes!(get_session, end_session))
        .routes(routes!(list_revocations, add_revocation))
        .routes(routes!(list_audit_events))
        .routes(routes!(list_heads, sign_head))
        .routes(routes!(inclusion_proof))
        .routes(routes!(consistency_proof))
}

fn admin(state: &AppState, caller: &Caller) -> Admin {
    let authority = &state.authority;
    Admin::new(Arc::clone(&authority.store), Arc::clone(&authority.clock)).acting_as(caller.0.clone())
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_string(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn not_found(what: &str, name: &str) -> Problem {
    problem(StatusCode::NOT_FOUND, format!("{what} {:?} not found", short(name)))
}

/// Applies revocations the store now holds (made through [`Admin`], which writes to the store only) to this
/// instance at once; other instances pick them up as they always do.
async fn sync_revocations(state: &AppState) -> Result<(), Problem> {
    let authority = &state.authority;
    authority.revocations.sync(authority.store.as_ref(), authority.now().as_secs()).await?;
    Ok(())
}

// Users.

/// List users, by name.
#[utoipa::path(get, path = "/admin/v1/users", tag = "users", params(PageQuery),
    responses((status = 200, description = "A page of users", body = UserPage)))]
async fn list_users(State(state): State<AppState>, Params(q): Params<PageQuery>) -> Answer {
    let (limit, after) = bounds(q.limit, q.after.as_deref())?;
    let rows = state.authority.store.list_users(&after, limit + 1).await?;
    let (items, next) = paged(rows, limit, |u| u.name.clone());
    Ok(json(StatusCode::OK, &UserPage { items, next }))
}

/// Add a user.
#[utoipa::path(post, path = "/admin/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, description = "The user", body = UserView),
        (status = 409, description = "A user of that name exists", body = Problem, content_type = "application/problem+json")))]
async fn add_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(new): Body<NewUser>,
) -> Answer {
    let password = Zeroizing::new(new.password);
    let user = admin(&state, &caller).add_user(&new.name, password, &new.roles).await?;
    Ok(json(StatusCode::CREATED, &UserView::from(&user)))
}

/// Show a user.
#[utoipa::path(get, path = "/admin/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    responses((status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json")))]
async fn get_user(State(state): State<AppState>, PathOf(name): PathOf<String>) -> Answer {
    match state.authority.store.find_user_by_name(&name).await? {
        Some(user) => Ok(json(StatusCode::OK, &UserView::from(&user))),
        None => Err(not_found("user", &name)),
    }
}

/// Remove a user, revoking every token and session of theirs.
#[utoipa::path(delete, path = "/admin/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    responses((status = 204, description = "Removed"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json")))]
async fn remove_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathOf(name): PathOf<String>,
) -> Answer {
    admin(&state, &caller).remove_user(&name).await?;
    sync_revocations(&state).await?;
    Ok(no_content())
}

async fn set_disabled(state: &AppState, caller: &Caller, name: &str, disabled: bool) -> Answer {
    admin(state, caller).set_user_disabled(name, disabled).await?;
    sync_revocations(state).await?;
    let user = state.authority.store.find_user_by_name(name).await?.ok_or_else(|| not_found("user", name))?;
    Ok(json(StatusCode::OK, &UserView::from(&user)))
}

/// Disable a user: logins fail, and every token and session of theirs is revoked.
#[utoipa::path(post, path = "/admin/v1/users/{name}/disable", tag = "users", params(("name" = String, Path)),
    responses((status = 200, description = "The user, disabled", body = UserView),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json")))]
async fn disable_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathOf(name): PathOf<String>,
) -> Answer {
    set_disabled(&state, &caller, &name, true).await
}

/// Enable a disabled user.
#[utoipa::path(post, path = "/admin/v1/users/{name}/enable", tag = "users", params(("name" = String, Path)),
    responses((status = 200, description = "The user, enabled", body = UserView),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json")))]
async fn enable_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathOf(name): PathOf<String>,
) -> Answer {
    set_disabled(&state, &caller, &name, false).await
}

/// Log a user out everywhere: every session, browser session and access token of theirs is revoked.
#[utoipa::path(post, path = "/admin/v1/users/{name}/revoke", tag = "users", params(("name" = String, Path)),
    responses((status = 204, description = "Revoked"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json")))]
async fn revoke_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathOf(name): PathOf<String>,
) -> Answer {
    admin(&state, &caller).revoke_user(&name).await?;
    sync_revocations(&state).await?;
    Ok(no_content())
}

/// Set a user's password; every token and session of theirs is revoked.
#[utoipa::path(put, path = "/admin/v1/users/{name}/password", tag = "users", params(("name" = String, Path)),
    request_body = NewPassword,
    responses((status = 204, description = "Changed"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json")))]
async fn set_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathOf(name): PathOf<String>,
    Body(new): Body<NewPassword>,
) -> Answer {
    admin(&state, &caller).set_password(&name, Zeroizing::new(new.password)).await?;
    sync_revocations(&state).await?;
    Ok(no_content())
}

// Roles.

/// List roles, by name.
#[utoipa::path(get, path = "/admin/v1/roles", tag = "roles", params(PageQuery),
    responses((status = 200, description = "A page of roles", body = RolePage)))]
async fn list_roles(State(state): State<AppState>, Params(q): Params<PageQuery>) -> Answer {
    let (limit, after) = bounds(q.limit, q.after.as_deref())?;
    let rows = state.authority.store.list_roles(&after, limit + 1).await?;
    let (items, next) = paged(rows, limit, |r| r.name.clone());
    Ok(json(StatusCode::OK, &RolePage { items, next }))
}

/// Add a role.
#[utoipa::path(post, path = "/admin/v1/roles", tag = "roles", request_body = RoleView,
    responses((status = 201, description = "The role", body = RoleView),
        (status = 409, description = "A role of that name exists", body = Problem, content_type = "application/problem+json")))]
async fn add_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(new): Body<RoleView>,
) -> Answer {
    let role = admin(&state, &caller).add_role(&new.name, &new.scopes).await?;
    Ok(json(StatusCode::CREATED, &RoleView::from(&role)))
}

/// Remove a role; its users lose its scopes.
#[utoipa::path(delete, path = "/admin/v1/roles/{name}", tag = "roles", params(("name" = String, Path)),
    responses((status = 204, description = "Removed"),
        (status = 404, description = "No such role", body = Problem, content_type = "application/problem+json")))]
async fn remove_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathOf(name): PathOf<String>,
) -> Answer {
    admin(&state, &caller).remove_role(&name).await?;
    Ok(no_content())
}

// Clients.

/// List clients, by id.
#[utoipa::path(get, path = "/admin/v1/clients", tag = "clients", params(PageQuery),
    responses((status = 200, description = "A page of clients", body = ClientPage)))]
async fn list_clients(State(state): State<AppState>, Params(q): Params<PageQuery>) -> Answer {
    let (limit, after) = bounds(q.limit, q.after.as_deref())?;
    let rows = state.authority.store.list_clients(&after, limit + 1).await?;
    let (items, next) = paged(rows, limit, |c| c.id.clone());
    Ok(json(StatusCode::OK, &ClientPage { items, next }))
}

/// Register a client. A `client_secret` client's secret is in the answer, this once.
#[utoipa::path(post, path = "/admin/v1/clients", tag = "clients", request_body = NewClientRequest,
    responses((status = 201, description = "The client (and its secret)", body = CreatedClient),
        (status = 409, description = "A client of that id exists", body = Problem, content_type = "application/problem+json")))]
async fn add_client(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(new): Body<NewClientRequest>,
) -> Answer {
    let credential = match (new.auth_method, &new.jwks) {
        (AuthMethod::None, None) => ClientKind::Public,
        (AuthMethod::ClientSecret, None) => ClientKind::GenerateSecret,
        (AuthMethod::PrivateKeyJwt, Some(jwks)) => ClientKind::Jwks(jwks.to_string()),
        (AuthMethod::PrivateKeyJwt, None) => {
            return Err(problem(StatusCode::BAD_REQUEST, "private_key_jwt needs the client's jwks"))
        }
        (_, Some(_)) => return Err(problem(StatusCode::BAD_REQUEST, "jwks is only for private_key_jwt")),
    };
    let request = NewClient {
        id: new.id,
        credential,
        grants: new.grants.into_iter().map(GrantType::from).collect(),
        scopes: new.scopes,
        redirect_uris: new.redirect_uris,
        audiences: new.audiences,
        first_party: new.first_party,
        token_delivery: match new.token_delivery {
            Delivery::Body => TokenDelivery::Body,
            Delivery::Cookie => TokenDelivery::Cookie,
        },
        dpop_bound: new.require_dpop,
    };
    let (client, secret) = admin(&state, &caller).add_client(request).await?;
    let created =
        CreatedClient { client: ClientView::from(&client), client_secret: secret.map(|s| s.expose().to_owned()) };
    Ok(json(StatusCode::CREATED, &created))
}

/// Show a client.
#[utoipa::path(get, path = "/admin/v1/clients/{id}", tag = "clients", params(("id" = String, Path)),
    responses((status = 200, description = "The client", body = ClientView),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json")))]
async fn get_client(State(state): State<AppState>, PathOf(id): PathOf<String>) -> Answer {
    match state.authority.store.find_client(&id).await? {
        Some(client) => Ok(json(StatusCode::OK, &ClientView::from(&client))),
        None => Err(not_found("client", &id)),
    }
}

/// Refuses a change that would lock the caller out: its own client.
fn not_own_client(caller: &Caller, id: &str) -> Result<(), Problem> {
    if caller.client_id() == id {
        return Err(problem(StatusCode::CONFLICT, "this request's access token belongs to that client"));
    }
    Ok(())
}

/// Remove a client.
#[utoipa::path(delete, path = "/admin/v1/clients/{id}", tag = "clients", params(("id" = String, Path)),
    responses((status = 204, description = "Removed"),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller's own client", body = Problem, content_type = "application/problem+json")))]
async fn remove_client(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathOf(id): PathOf<String>,
) -> Answer {
    not_own_client(&caller, &id)?;
    admin(&state, &caller).remove_client(&id).await?;
    Ok(no_content())
}

async fn set_client_disabled(state: &AppState, caller: &Caller, id: &str, disabled: bool) -> Answer {
    not_own_client(caller, id)?;
    admin(state, caller).set_client_disabled(id, disabled).await?;
    let client = state.authority.store.find_client(id).await?.ok_or_else(|| not_found("client", id))?;
    Ok(json(StatusCode::OK, &ClientView::from(&client)))
}

/// Disable a client: it gets no more tokens.
#[utoipa::path(post, path = "/admin/v1/clients/{id}/disable", tag = "clients", params(("id" = String, Path)),
    responses((status = 200, description = "The client, disabled", body = ClientView),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller's own client", body = Problem, content_type = "application/problem+json")))]
async fn disable_client(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathOf(id): PathOf<String>,
) -> Answer {
    set_client_disabled(&state, &caller, &id, true).await
}

/// Enable a disabled client.
#[utoipa::path(post, path = "/admin/v1/clients/{id}/enable", tag = "clients", params(("id" = String, Path)),
    responses((status = 200, description = "The client, enabled", body = ClientView),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller's own client", body = Problem, content_type = "application/problem+json")))]
async fn enable_client(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathOf(id): PathOf<String>,
) -> Answer {
    set_client_disabled(&state, &caller, &id, false).await
}

// Signing keys.

/// List signing keys (public halves only), by kid.
#[utoipa::path(get, path = "/admin/v1/keys", tag = "keys", params(PageQuery),
    responses((status = 200, description = "A page of keys", body = KeyPage)))]
async fn list_keys(State(state): State<AppState>, Params(q): Params<PageQuery>) -> Answer {
    let (limit, after) = bounds(q.limit, q.after.as_deref())?;
    let mut keys = state.authority.store.list_keys().await?;
    keys.sort_by(|a, b| a.record.kid.cmp(&b.record.kid));
    keys.retain(|k| k.record.kid.as_str() > after.as_str());
    keys.truncate(limit as usize + 1);
    let (items, next) = paged(keys, limit, |k| k.record.kid.clone());
    Ok(json(StatusCode::OK, &KeyPage { items, next }))
}

/// Start a rotation: a new key is published now and signs once every verifier has had time to fetch it.
#[utoipa::path(post, path = "/admin/v1/keys/rotate", tag = "keys",
    responses((status = 201, description = "The new key", body = Rotation),
        (status = 409, description = "A rotation is already under way", body = Problem, content_type = "application/problem+json")))]
async fn rotate_key(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Answer {
    let keys = &state.authority.keys;
    let kid = admin(&state, &caller).rotate_key(keys).await?;
    let activate_at = state.authority.now().as_secs().saturating_add(keys.rules().jwks_max_age);
    Ok(json(StatusCode::CREATED, &Rotation { kid, activate_at }))
}

/// Revoke a signing key at once: tokens it signed stop verifying; a revoked active key is replaced.
#[utoipa::path(post, path = "/admin/v1/keys/{kid}/revoke", tag = "keys", params(("kid" = String, Path)),
    responses((status = 204, description = "Revoked"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json")))]
async fn revoke_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathOf(kid): PathOf<String>,
) -> Answer {
    admin(&state, &caller).revoke_key(&state.authority.keys, &kid).await?;
    Ok(no_content())
}

// Sessions, revocations, audit.

fn live_sessions(state: &AppState, user_id: Option<String>) -> SessionFilter {
    let rules = &state.authority.rules.refresh;
    let created_after = state.authority.now().as_secs().saturating_sub(rules.absolute_ttl);
    SessionFilter { user_id: user_id.unwrap_or_default(), created_after }
}

/// List live sessions (refresh-token families), by id, optionally of one user.
#[utoipa::path(get, path = "/admin/v1/sessions", tag = "sessions", params(SessionQuery),
    responses((status = 200, description = "A page of sessions", body = SessionPage)))]
async fn list_sessions(State(state): State<AppState>, Params(q): Params<SessionQuery>) -> Answer {
    let (limit, after) = bounds(q.limit, q.after.as_deref())?;
    if q.user_id.as_ref().is_some_and(|u| u.len() > 256) {
        return Err(problem(StatusCode::BAD_REQUEST, "user_id is too long"));
    }
    let filter = live_sessions(&state, q.user_id);
    let rows = state.authority.store.list_sessions(&filter, &after, limit + 1).await?;
    let (items, next) = paged(rows, limit, |f| f.id.clone());
    Ok(json(StatusCode::OK, &SessionPage { items, next }))
}

/// Show a live session.
#[utoipa::path(get, path = "/admin/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path)),
    responses((status = 200, description = "The session", body = SessionView),
        (status = 404, description = "No such live session", body = Problem, content_type = "application/problem+json")))]
async fn get_session(State(state): State<AppState>, PathOf(id): PathOf<String>) -> Answer {
    match state.authority.store.find_session(&live_sessions(&state, None), &id).await? {
        Some(family) => Ok(json(StatusCode::OK, &SessionView::from(&family))),
        None => Err(not_found("session", &id)),
    }
}

/// End a session: its refresh tokens and every access token carrying its `sid` are revoked.
#[utoipa::path(delete, path = "/admin/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path)),
    responses((status = 204, description = "Ended"),
        (status = 404, description = "No such live session", body = Problem, content_type = "application/problem+json")))]
async fn end_session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathOf(id): PathOf<String>,
) -> Answer {
    if state.authority.store.find_session(&live_sessions(&state, None), &id).await?.is_none() {
        return Err(not_found("session", &id));
    }
    let by = caller.0.to_json();
    state.authority.revoke_by_admin(RevocationKind::Session, &id, "revoked_by_admin", by).await?;
    Ok(no_content())
}

/// A seq cursor (`after`) as a number.
fn seq_cursor(after: &str) -> Result<i64, Problem> {
    if after.is_empty() {
        return Ok(0);
    }
    after
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| problem(StatusCode::BAD_REQUEST, "after: not a cursor this API gave"))
}

/// List revocations in force, oldest first (the `/events` feed's content).
#[utoipa::path(get, path = "/admin/v1/revocations", tag = "revocations", params(PageQuery),
    responses((status = 200, description = "A page of revocations", body = RevocationPage)))]
async fn list_revocations(State(state): State<AppState>, Params(q): Params<PageQuery>) -> Answer {
    let (limit, after) = bounds(q.limit, q.after.as_deref())?;
    let now = state.authority.now().as_secs();
    let rows = state.authority.store.revocations_since(seq_cursor(&after)?, now, limit + 1).await?;
    let (items, next) = paged(rows, limit, |r| r.seq.to_string());
    Ok(json(StatusCode::OK, &RevocationPage { items, next }))
}

/// Revoke an access token (`jti`), a session (`sid`) or everything of a subject (`sub`). Guards see it
/// within a second through the `/events` feed.
#[utoipa::path(post, path = "/admin/v1/revocations", tag = "revocations", request_body = NewRevocation,
    responses((status = 201, description = "The revocation", body = RevocationView)))]
async fn add_revocation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(new): Body<NewRevocation>,
) -> Answer {
    if new.value.is_empty() || new.value.len() > 256 || new.value.chars().any(char::is_control) {
        return Err(problem(StatusCode::BAD_REQUEST, "value: 1-256 characters, no control characters"));
    }
    let reason = new.reason.unwrap_or_else(|| "revoked_by_admin".into());
    let reason_ok =
        (1..=64).contains(&reason.len()) && reason.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if !reason_ok {
        return Err(problem(StatusCode::BAD_REQUEST, "reason: 1-64 characters of A-Z a-z 0-9 _ . : -"));
    }
    let kind = match new.kind {
        RevocationKindView::Jti => RevocationKind::Token,
        RevocationKindView::Sid => RevocationKind::Session,
        RevocationKindView::Sub => RevocationKind::Subject,
    };
    let revocation = state.authority.revoke_by_admin(kind, &new.value, &reason, caller.0.to_json()).await?;
    Ok(json(StatusCode::CREATED, &RevocationView::from(&revocation)))
}

/// Read the audit log in order.
#[utoipa::path(get, path = "/admin/v1/audit-events", tag = "audit", params(PageQuery),
    responses((status = 200, description = "A page of audit events", body = AuditPage)))]
async fn list_audit_events(State(state): State<AppState>, Params(q): Params<PageQuery>) -> Answer {
    let (limit, after) = bounds(q.limit, q.after.as_deref())?;
    let rows = state.authority.store.audit_since(seq_cursor(&after)?, limit + 1).await?;
    let (items, next) = paged(rows, limit, |e| e.seq.to_string());
    Ok(json(StatusCode::OK, &AuditPage { items, next }))
}

// The audit ledger.

fn ledger_on(state: &AppState) -> Result<(), Problem> {
    if state.authority.rules.audit_ledger {
        Ok(())
    } else {
        Err(problem(StatusCode::CONFLICT, "the audit ledger is off (audit_ledger = false)"))
    }
}

fn hashes(proof: &[merkle::Hash]) -> Vec<String> {
    proof.iter().map(|h| portcullis_jose::b64::encode(h)).collect()
}

/// List signed tree heads, smallest tree first.
#[utoipa::path(get, path = "/admin/v1/audit/heads", tag = "audit", params(PageQuery),
    responses((status = 200, description = "A page of signed tree heads", body = HeadPage)))]
async fn list_heads(State(state): State<AppState>, Params(q): Params<PageQuery>) -> Answer {
    let (limit, after) = bounds(q.limit, q.after.as_deref())?;
    let after = u64::try_from(seq_cursor(&after)?).unwrap_or_default();
    let rows = state.authority.store.heads(after, limit + 1).await?;
    let (items, next) = paged(rows, limit, |h| h.tree_size.to_string());
    Ok(json(StatusCode::OK, &HeadPage { items, next }))
}

/// Add every committed audit event to the tree and sign a head for it now.
#[utoipa::path(post, path = "/admin/v1/audit/heads", tag = "audit",
    responses((status = 201, description = "The signed tree head", body = TreeHeadView),
        (status = 409, description = "The ledger is off", body = Problem, content_type = "application/problem+json")))]
async fn sign_head(State(state): State<AppState>) -> Answer {
    ledger_on(&state)?;
    let authority = &state.authority;
    ledger::extend(authority.store.as_ref()).await?;
    let material = authority.keys.ring().current();
    let head = ledger::sign_head(authority.store.as_ref(), &material, &authority.rules.issuer, authority.now()).await?;
    Ok(json(StatusCode::CREATED, &TreeHeadView::from(&head)))
}

/// The proof that an audit event is in the tree of the first `tree_size` events.
#[utoipa::path(get, path = "/admin/v1/audit/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, description = "The inclusion proof", body = InclusionProof),
        (status = 409, description = "The ledger is off", body = Problem, content_type = "application/problem+json")))]
async fn inclusion_proof(State(state): State<AppState>, Params(q): Params<InclusionQuery>) -> Answer {
    ledger_on(&state)?;
    let store = state.authority.store.as_ref();
    let tree_size = match q.tree_size {
        Some(size) => size,
        None => store.ledger_size().await?,
    };
    let (leaf, proof) = ledger::inclusion(store, q.seq, tree_size).await?;
    let body =
        InclusionProof { seq: q.seq, tree_size, leaf_hash: portcullis_jose::b64::encode(&leaf), proof: hashes(&proof) };
    Ok(json(StatusCode::OK, &body))
}

/// The proof that the tree of `first` events is a prefix of the tree of `second`.
#[utoipa::path(get, path = "/admin/v1/audit/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, description = "The consistency proof", body = ConsistencyProof),
        (status = 409, description = "The ledger is off", body = Problem, content_type = "application/problem+json")))]
async fn consistency_proof(State(state): State<AppState>, Params(q): Params<ConsistencyQuery>) -> Answer {
    consistency(&state, q).await
}

pub(crate) async fn consistency(state: &AppState, q: ConsistencyQuery) -> Answer {
    ledger_on(state)?;
    let store = state.authority.store.as_ref();
    let second = match q.second {
        Some(size) => size,
        None => store.ledger_size().await?,
    };
    let proof = ledger::consistency(store, q.first, second).await?;
    Ok(json(StatusCode::OK, &ConsistencyProof { first: q.first, second, proof: hashes(&proof) }))
}

/// The latest signed tree head.
pub(crate) async fn latest_head(state: &AppState) -> Answer {
    ledger_on(state)?;
    match state.authority.store.latest_head().await? {
        Some(head) => Ok(json(StatusCode::OK, &TreeHeadView::from(&head))),
        None => Err(problem(StatusCode::NOT_FOUND, "no tree head has been signed yet")),
    }
}
