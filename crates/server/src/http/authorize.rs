//! `/oauth2/authorize` (RFC 6749 §4.1, RFC 7636, OpenID Connect Core §3.1.2): `GET` checks the request and shows
//! the login page (or, with a live browser session, goes straight on); `POST` takes the login form and the
//! consent form. Forms carry the request in hidden fields and a CSRF token that must equal the `portcullis_csrf`
//! cookie (double submit: another site can neither read the cookie nor set it); a cross-site `Origin` is refused
//! outright. Errors go back to the client's redirect URI only once the client and the URI are trusted.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use zeroize::Zeroizing;

use super::form::Form;
use super::pages::{self, origin_of, page};
use super::{AppState, PeerIp};
use crate::model::{Client, User};
use crate::oauth::authorize::{validate, with_query, AuthorizeError, AuthorizeParams, AuthorizeRequest, Redirect};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::secrets::random_id;
use crate::store::BrowserSession;

const CSRF_COOKIE: &str = "portcullis_csrf";
const SESSION_COOKIE: &str = "portcullis_session";
/// With TLS the session cookie carries the `__Host-` prefix: Secure, no Domain, Path=/ (RFC 6265bis §4.1.3.2).
const SESSION_COOKIE_TLS: &str = "__Host-portcullis_session";

fn tls(state: &AppState) -> bool {
    state.authority.rules.issuer.starts_with("https://")
}

pub(super) fn session_cookie_name(state: &AppState) -> &'static str {
    if tls(state) {
        SESSION_COOKIE_TLS
    } else {
        SESSION_COOKIE
    }
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(response: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The CSRF token of this browser: the cookie's, or a new one (then set on the response by [`with_csrf`]).
pub(super) fn csrf_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE)
        .filter(|v| v.len() == 16 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        Some(v) => (v.to_owned(), false),
        None => (random_id(), true),
    }
}

pub(super) fn with_csrf(state: &AppState, mut response: Response, token: &str, fresh: bool) -> Response {
    if fresh {
        let secure = if tls(state) { "; Secure" } else { "" };
        set_cookie(&mut response, format!("{CSRF_COOKIE}={token}; Path=/oauth2; HttpOnly; SameSite=Strict{secure}"));
    }
    response
}

/// Removes the browser session cookie.
pub(super) fn clear_session(state: &AppState, response: &mut Response) {
    let secure = if tls(state) { "; Secure" } else { "" };
    let name = session_cookie_name(state);
    set_cookie(response, format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}"));
}

fn error_page(status: StatusCode, message: &str) -> Response {
    page(status, "Sign-in error", pages::error(message), None)
}

fn unavailable(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    error_page(status, "The service is busy or unavailable. Please try again in a moment.")
}

pub(super) fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn redirect_error(
    state: &AppState,
    request: &AuthorizeRequest,
    error: &'static str,
    description: &'static str,
) -> Response {
    let r = Redirect { redirect_uri: request.redirect_uri.clone(), state: request.state.clone(), error, description };
    redirect(&r.location(&state.authority.rules.issuer))
}

/// The client and the checked request, or the response that ends the exchange.
async fn checked(state: &AppState, params: &AuthorizeParams) -> Result<(Client, AuthorizeRequest), Response> {
    let client = match params.client_id.as_deref() {
        Some(id) => state.authority.authorize_client(id).await.map_err(|e| unavailable(&e))?,
        None => None,
    };
    match validate(params, client.as_ref()) {
        Ok(request) => Ok((client.ok_or_else(|| error_page(StatusCode::BAD_REQUEST, "unknown client"))?, request)),
        Err(AuthorizeError::Page(message)) => Err(error_page(StatusCode::BAD_REQUEST, message)),
        Err(AuthorizeError::Redirect(r)) => Err(redirect(&r.location(&state.authority.rules.issuer))),
    }
}

/// The browser session, if it is live and recent enough for `max_age` and `prompt=login` did not ask again.
async fn usable_session(
    state: &AppState,
    headers: &HeaderMap,
    request: &AuthorizeRequest,
) -> Result<Option<(User, BrowserSession)>, Response> {
    if request.prompt.login {
        return Ok(None);
    }
    let Some(value) = cookie(headers, session_cookie_name(state)) else { return Ok(None) };
    let found = state.authority.browser_session(value).await.map_err(|e| unavailable(&e))?;
    let now = state.authority.now().as_secs();
    Ok(found.filter(|(_, s)| request.max_age.is_none_or(|age| now - s.auth_time <= age)))
}

fn login_page(
    state: &AppState,
    client: &Client,
    params: &AuthorizeParams,
    csrf: (&str, bool),
    error: Option<&str>,
) -> Response {
    let body = pages::login(&client.id, &params.pairs(), csrf.0, error);
    let response = page(StatusCode::OK, "Sign in", body, None);
    with_csrf(state, response, csrf.0, csrf.1)
}

/// After authentication: ask for consent where needed, else issue the code and send the browser back.
async fn proceed(
    state: &AppState,
    client: &Client,
    params: &AuthorizeParams,
    request: &AuthorizeRequest,
    (user, session): (&User, &BrowserSession),
    csrf: (&str, bool),
) -> Response {
    let authority = &state.authority;
    let scopes = authority.scopes_for(request, user);
    let needs = match authority.needs_consent(client, user, &scopes, request.prompt.consent).await {
        Ok(needs) => needs,
        Err(e) => return unavailable(&e),
    };
    if needs {
        if request.prompt.none {
            return redirect_error(state, request, "consent_required", "the user has not consented to this client");
        }
        let listed: Vec<&str> = scopes.iter().collect();
        let body = pages::consent(&client.id, &user.name, &listed, &params.pairs(), csrf.0);
        let response = page(StatusCode::OK, "Allow access?", body, origin_of(&request.redirect_uri).as_deref());
        return with_csrf(state, response, csrf.0, csrf.1);
    }
    issue(state, request, user, session, &scopes).await
}

async fn issue(
    state: &AppState,
    request: &AuthorizeRequest,
    user: &User,
    session: &BrowserSession,
    scopes: &crate::oauth::scope::Scopes,
) -> Response {
    match state.authority.issue_code(request, user, session, scopes).await {
        Ok(code) => {
            let mut pairs = vec![("code", code.as_str())];
            if let Some(s) = &request.state {
                pairs.push(("state", s));
            }
            pairs.push(("iss", &state.authority.rules.issuer));
            redirect(&with_query(&request.redirect_uri, &pairs))
        }
        Err(e) => unavailable(&e),
    }
}

pub async fn authorize_get(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let Some(params) = AuthorizeParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.clone()))) else {
        return error_page(StatusCode::BAD_REQUEST, "The request repeats a parameter.");
    };
    let (client, request) = match checked(&state, &params).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let csrf = csrf_token(&headers);
    match usable_session(&state, &headers, &request).await {
        Err(response) => response,
        Ok(Some((user, session))) => {
            proceed(&state, &client, &params, &request, (&user, &session), (&csrf.0, csrf.1)).await
        }
        Ok(None) if request.prompt.none => {
            redirect_error(&state, &request, "login_required", "the user is not signed in")
        }
        Ok(None) => login_page(&state, &client, &params, (&csrf.0, csrf.1), None),
    }
}

/// Whether a form post comes from our own pages: the CSRF field equals the cookie, and any `Origin` is ours.
pub(super) fn same_origin_form(state: &AppState, headers: &HeaderMap, form: &Form) -> bool {
    let ours = origin_of(&state.authority.rules.issuer);
    let origin_ok = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => Some(origin) == ours.as_deref(),
    };
    let token_ok = match (cookie(headers, CSRF_COOKIE), form.get("csrf")) {
        (Some(c), Some(f)) => aws_lc_rs::constant_time::verify_slices_are_equal(c.as_bytes(), f.as_bytes()).is_ok(),
        _ => false,
    };
    origin_ok && token_ok
}

pub async fn authorize_post(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(mut form) = Form::parse(&headers, &body) else {
        return error_page(StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    if !same_origin_form(&state, &headers, &form) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this site. Go back, reload the page and try again.",
        );
    }
    let Some(params) =
        AuthorizeParams::from_pairs(AuthorizeParams::NAMES.iter().filter_map(|n| form.owned(n).map(|v| (*n, v))))
    else {
        return error_page(StatusCode::BAD_REQUEST, "The request repeats a parameter.");
    };
    let (client, request) = match checked(&state, &params).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let csrf = csrf_token(&headers);
    let csrf = (csrf.0.as_str(), csrf.1);
    match form.get("action") {
        Some("login") => {
            if !state.login_allowed(peer.0) {
                return login_page(
                    &state,
                    &client,
                    &params,
                    csrf,
                    Some("Too many attempts from your network. Wait a minute and try again."),
                );
            }
            let username = form.owned("username").unwrap_or_default();
            let password = form.secret("password").unwrap_or_else(|| Zeroizing::new(String::new()));
            match state.authority.sign_in(&client, &username, password).await {
                Ok((user, session, id)) => {
                    let secure = if tls(&state) { "; Secure" } else { "" };
                    let name = session_cookie_name(&state);
                    let max_age = session.expires_at - session.auth_time;
                    let mut response = proceed(&state, &client, &params, &request, (&user, &session), csrf).await;
                    set_cookie(
                        &mut response,
                        format!("{name}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}", id.as_str()),
                    );
                    response
                }
                Err(e) if e.code == ErrorCode::InvalidGrant => {
                    login_page(&state, &client, &params, csrf, Some("Wrong username or password."))
                }
                Err(e) => unavailable(&e),
            }
        }
        Some(action @ ("approve" | "deny")) => {
            let session = match usable_session(&state, &headers, &request).await {
                Ok(Some(found)) => found,
                Ok(None) => return login_page(&state, &client, &params, csrf, Some("Please sign in again.")),
                Err(response) => return response,
            };
            if action == "deny" {
                return redirect_error(&state, &request, "access_denied", "the user denied the request");
            }
            let (user, session) = session;
            let scopes = state.authority.scopes_for(&request, &user);
            if let Err(e) = state.authority.record_consent(&client, &user, &scopes).await {
                return unavailable(&e);
            }
            issue(&state, &request, &user, &session, &scopes).await
        }
        _ => error_page(StatusCode::BAD_REQUEST, "The form could not be read."),
    }
}
