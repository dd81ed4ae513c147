//! The admin API, `/admin/v1/`: users, roles, clients, signing keys, sessions, revocations and the audit log,
//! for callers whose access token carries the `portcullis:admin` scope (checked as every resource of ours
//! checks a token: bearer or DPoP-bound, unrevoked). Every list is paged by cursor; every error is an RFC 7807
//! problem (`application/problem+json`). The OpenAPI 3.1 document at `/admin/v1/openapi.json` is generated from
//! the handlers and types below, so it cannot drift from them.

mod routes;
pub mod views;

pub(crate) use routes::{consistency as ledger_consistency, latest_head as ledger_head};

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use super::{check_resource_token, AppState};
use crate::admin::{Actor, AdminError};
use crate::ledger::LedgerError;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::store::StoreError;
use views::{Problem, DEFAULT_LIMIT, MAX_LIMIT};

/// The scope an access token needs for the admin API.
pub const ADMIN_SCOPE: &str = "portcullis:admin";
/// Where the API lives.
pub const PREFIX: &str = "/admin/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portcullis admin API",
        description = "Manage users, roles, clients, signing keys, sessions and revocations, and read the audit \
                       log. Send an access token that carries the `portcullis:admin` scope. Lists are paged: pass \
                       a page's `next` as `after` to get the following one. Errors are RFC 7807 problem details."
    ),
    tags(
        (name = "users"), (name = "roles"), (name = "clients"), (name = "keys"), (name = "sessions"),
        (name = "revocations"), (name = "audit")
    )
)]
struct AdminDoc;

/// The admin API's routes, behind the admin-token check, and its OpenAPI document (public: it describes the
/// API and holds nothing secret).
pub fn router(state: AppState) -> Router<AppState> {
    let (api, mut openapi) = routes::all(OpenApiRouter::with_openapi(AdminDoc::openapi())).split_for_parts();
    CommonResponses.modify(&mut openapi);
    let document = Arc::new(openapi.to_json().unwrap_or_else(|_| "{}".into()));
    api.layer(middleware::from_fn_with_state(state, require_admin)).route(
        &format!("{PREFIX}/openapi.json"),
        axum::routing::get(move || {
            let document = Arc::clone(&document);
            async move { ([(header::CONTENT_TYPE, "application/json")], document.as_str().to_owned()) }
        }),
    )
}

/// The OpenAPI document, as served (for tests and `portcullis` tooling).
pub fn openapi() -> OpenApiDoc {
    let mut openapi = routes::all(OpenApiRouter::<AppState>::with_openapi(AdminDoc::openapi())).into_openapi();
    CommonResponses.modify(&mut openapi);
    openapi
}

/// The caller of an admin request, as the audit log names it.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Actor);

impl Caller {
    fn client_id(&self) -> &str {
        match &self.0 {
            Actor::Api { client_id, .. } => client_id,
            Actor::Cli => "",
        }
    }
}

/// Lets a request through only with an access token carrying [`ADMIN_SCOPE`]; otherwise a problem with the
/// RFC 6750 / RFC 9449 `WWW-Authenticate` challenge.
async fn require_admin(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let url = format!("{}{}", state.authority.rules.issuer, request.uri().path());
    let method = request.method().as_str().to_owned();
    match check_resource_token(&state, request.headers(), &method, &url, ADMIN_SCOPE).await {
        Ok(facts) => {
            let actor = Actor::Api { client_id: facts.client_id.clone(), sub: facts.sub.clone() };
            request.extensions_mut().insert(Caller(actor));
            next.run(request).await
        }
        Err(refused) => {
            let detail = match refused.code() {
                "insufficient_scope" => format!("the access token lacks the {ADMIN_SCOPE} scope"),
                "temporarily_unavailable" => "the service is temporarily unavailable; retry shortly".into(),
                "invalid_dpop_proof" => "the DPoP proof is missing or invalid".into(),
                "invalid_request" => "the Authorization header is malformed".into(),
                _ => format!("an access token with the {ADMIN_SCOPE} scope is required"),
            };
            let mut response = problem(refused.status(), detail).into_response();
            refused.add_headers(&mut response, ADMIN_SCOPE);
            response
        }
    }
}

/// A problem response with the status's reason phrase as its title.
pub(crate) fn problem(status: StatusCode, detail: impl Into<String>) -> Problem {
    Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail: detail.into(),
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).unwrap_or_default();
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/problem+json"), (header::CACHE_CONTROL, "no-store")], body)
                .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<AdminError> for Problem {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(why) => problem(StatusCode::BAD_REQUEST, why),
            AdminError::Store(e) => e.into(),
            AdminError::Failed(why) => {
                tracing::error!(error = %why, "admin request failed");
                problem(StatusCode::INTERNAL_SERVER_ERROR, "the server could not complete the change")
            }
        }
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => problem(StatusCode::NOT_FOUND, format!("{what} not found")),
            StoreError::Conflict(what) => problem(StatusCode::CONFLICT, format!("{what} already exists")),
            StoreError::Unavailable(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "store call failed");
                metrics::counter!("portcullis_store_errors_total").increment(1);
                problem(StatusCode::SERVICE_UNAVAILABLE, "the service is temporarily unavailable; retry shortly")
            }
        }
    }
}

impl From<LedgerError> for Problem {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Store(e) => e.into(),
            LedgerError::Invalid(why) => problem(StatusCode::BAD_REQUEST, why),
            LedgerError::NoKey => problem(StatusCode::SERVICE_UNAVAILABLE, "no signing key is active yet"),
            e @ (LedgerError::MissingNodes(_) | LedgerError::Gap { .. }) => {
                tracing::error!(error = %e, "audit ledger damaged; run `portcullis audit verify`");
                problem(StatusCode::INTERNAL_SERVER_ERROR, "the audit ledger is damaged")
            }
        }
    }
}

impl From<OAuthError> for Problem {
    fn from(e: OAuthError) -> Self {
        match e.code {
            ErrorCode::TemporarilyUnavailable => problem(StatusCode::SERVICE_UNAVAILABLE, e.description),
            _ => problem(StatusCode::INTERNAL_SERVER_ERROR, e.description),
        }
    }
}

/// A JSON request body whose every rejection is a problem: 415 without `Content-Type: application/json`,
/// 413 over the size limit, 400 for anything else.
pub(crate) struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the body as application/json"))
            }
            Err(JsonRejection::BytesRejection(_)) => {
                Err(problem(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large"))
            }
            Err(e) => Err(problem(StatusCode::BAD_REQUEST, short(&e.body_text()))),
        }
    }
}

/// Query parameters whose rejection is a 400 problem.
pub(crate) struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(problem(StatusCode::BAD_REQUEST, short(&e.body_text())))
            }
            Err(e) => Err(problem(StatusCode::BAD_REQUEST, short(&e.body_text()))),
        }
    }
}

/// Path parameters whose rejection is a 400 problem.
pub(crate) struct PathOf<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathOf<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathOf(value)),
            Err(e @ PathRejection::FailedToDeserializePathParams(_)) => {
                Err(problem(StatusCode::BAD_REQUEST, short(&e.body_text())))
            }
            Err(e) => Err(problem(StatusCode::BAD_REQUEST, short(&e.body_text()))),
        }
    }
}

/// A rejection's text, cut to a line's length (it can quote the input).
fn short(text: &str) -> String {
    text.chars().take(200).collect()
}

/// A page's bounds from the request: `limit` in 1..=200, `after` at most 256 bytes.
pub(crate) fn bounds(limit: Option<u32>, after: Option<&str>) -> Result<(u32, String), Problem> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(problem(StatusCode::BAD_REQUEST, format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let after = after.unwrap_or_default();
    if after.len() > 256 {
        return Err(problem(StatusCode::BAD_REQUEST, "after: not a cursor this API gave"));
    }
    Ok((limit, after.to_owned()))
}

/// Cuts `rows` (fetched with one more than `limit`) to a page and the cursor of the next, if any.
pub(crate) fn paged<T, V>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> (Vec<V>, Option<String>)
where
    V: for<'a> From<&'a T>,
{
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(key) } else { None };
    (rows.iter().map(V::from).collect(), next)
}

/// Adds what every operation may answer to each of them (so clients and checkers know every status we send),
/// and the bearer security scheme.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token with the portcullis:admin scope (Bearer, or DPoP-bound)"))
                    .build(),
            ),
        );
        let common = [
            ("400", "The request is malformed: a parameter or the body is invalid"),
            ("401", "No access token, or one that is invalid, expired or revoked"),
            ("403", "The access token lacks the portcullis:admin scope"),
            ("503", "The database is unavailable; retry after the Retry-After seconds"),
        ];
        let with_body = [("413", "The request body is too large"), ("415", "The request body is not application/json")];
        for item in openapi.paths.paths.values_mut() {
            let operations: [Option<&mut Operation>; 5] =
                [item.get.as_mut(), item.post.as_mut(), item.put.as_mut(), item.delete.as_mut(), item.patch.as_mut()];
            for operation in operations.into_iter().flatten() {
                let extra: &[(&str, &str)] = if operation.request_body.is_some() { &with_body } else { &[] };
                for (status, description) in common.iter().chain(extra) {
                    let response = ResponseBuilder::new()
                        .description(*description)
                        .content(
                            "application/problem+json",
                            ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                        )
                        .build();
                    operation.responses.responses.entry((*status).to_owned()).or_insert(response.into());
                }
                operation.security =
                    Some(vec![utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new())]);
            }
        }
    }
}
