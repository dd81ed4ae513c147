//! `/oauth2/logout` (OpenID Connect RP-Initiated Logout 1.0): ends the user's browser session at the server. With
//! a valid `id_token_hint` the logout happens at once; without one the user confirms it on a page (a form with
//! the CSRF token), so that another site cannot sign the user out by a link. `post_logout_redirect_uri` must be
//! one of the client's registered redirect URIs, compared exactly; `state` is passed back.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::authorize::{clear_session, cookie, csrf_token, redirect, same_origin_form, session_cookie_name, with_csrf};
use super::form::Form;
use super::pages::{self, page};
use super::AppState;
use crate::oauth::authorize::with_query;

/// The logout request's parameters.
#[derive(Debug, Default)]
struct LogoutParams {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
}

impl LogoutParams {
    fn from(get: impl Fn(&str) -> Option<String>) -> Self {
        LogoutParams {
            id_token_hint: get("id_token_hint"),
            post_logout_redirect_uri: get("post_logout_redirect_uri"),
            state: get("state"),
            client_id: get("client_id"),
        }
    }
}

/// Where to send the browser afterwards, if the request names a registered URI of its client. `Err` when it
/// names one that is not registered (shown on a page, never followed).
async fn destination(
    state: &AppState,
    params: &LogoutParams,
    hinted_client: Option<&str>,
) -> Result<Option<String>, Response> {
    let Some(uri) = &params.post_logout_redirect_uri else { return Ok(None) };
    let client_id = hinted_client.or(params.client_id.as_deref()).unwrap_or_default();
    let client = state.authority.authorize_client(client_id).await.ok().flatten();
    match client {
        Some(c) if c.redirect_uris.iter().any(|r| r == uri) => {
            let mut pairs = Vec::new();
            if let Some(s) = &params.state {
                pairs.push(("state", s.as_str()));
            }
            Ok(Some(if pairs.is_empty() { uri.clone() } else { with_query(uri, &pairs) }))
        }
        _ => Err(page(
            StatusCode::BAD_REQUEST,
            "Sign-out error",
            pages::error("The application asked to send you to an address it has not registered."),
            None,
        )),
    }
}

async fn sign_out(state: &AppState, headers: &HeaderMap, to: Option<String>) -> Response {
    if let Some(value) = cookie(headers, session_cookie_name(state)) {
        if state.authority.end_browser_session(value).await.is_err() {
            return page(StatusCode::SERVICE_UNAVAILABLE, "Sign-out error", pages::error("Please try again."), None);
        }
    }
    let mut response = match to {
        Some(to) => redirect(&to),
        None => page(
            StatusCode::OK,
            "Signed out",
            html! { h1 { "You are signed out" } p.sub { "You can close this page." } },
            None,
        ),
    };
    clear_session(state, &mut response);
    response
}

fn params_of_query(query: &str) -> LogoutParams {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    LogoutParams::from(|name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty()))
}

pub async fn logout_get(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let params = params_of_query(&query.unwrap_or_default());
    let hint = params.id_token_hint.as_deref().and_then(|h| state.authority.id_token_hint(h));
    let to = match destination(&state, &params, hint.as_ref().map(|(_, c)| c.as_str())).await {
        Ok(to) => to,
        Err(refused) => return refused,
    };
    if hint.is_some() {
        return sign_out(&state, &headers, to).await;
    }
    // No proof the request comes from the user's application: ask the user.
    let (csrf, fresh) = csrf_token(&headers);
    let fields: Vec<(&str, &str)> = [
        ("post_logout_redirect_uri", params.post_logout_redirect_uri.as_deref()),
        ("state", params.state.as_deref()),
        ("client_id", params.client_id.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let body = html! {
        h1 { "Sign out?" }
        p.sub { "You will be signed out of this server. Applications you use may keep you signed in." }
        form method="post" action="/oauth2/logout" {
            @for (name, value) in &fields { input type="hidden" name=(name) value=(value); }
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { "Sign out" }
        }
    };
    let form_target = to.as_deref().and_then(pages::origin_of);
    with_csrf(&state, page(StatusCode::OK, "Sign out?", body, form_target.as_deref()), &csrf, fresh)
}

pub async fn logout_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(form) = Form::parse(&headers, &body) else {
        return page(StatusCode::BAD_REQUEST, "Sign-out error", pages::error("The form could not be read."), None);
    };
    if !same_origin_form(&state, &headers, &form) {
        return page(
            StatusCode::FORBIDDEN,
            "Sign-out error",
            pages::error("This form has expired. Please try again."),
            None,
        );
    }
    let params = LogoutParams::from(|name| form.owned(name));
    let to = match destination(&state, &params, None).await {
        Ok(to) => to,
        Err(refused) => return refused,
    };
    sign_out(&state, &headers, to).await
}
