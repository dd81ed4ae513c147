//! The server's HTML pages (login, consent, errors): no JavaScript, one inline stylesheet allowed by its hash in
//! `Content-Security-Policy`, `X-Frame-Options: DENY`, never cached. Every value is escaped by `maud`.

use std::sync::LazyLock;

use aws_lc_rs::digest;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// One stylesheet for every page: readable on a phone and on a desktop, light and dark.
const CSS: &str = "\
:root{color-scheme:light dark;--fg:#1c2430;--muted:#5b6675;--bg:#f4f6f9;--card:#fff;--line:#d5dbe3;\
--accent:#1f5fbf;--danger:#b3261e}\
@media (prefers-color-scheme:dark){:root{--fg:#e6eaf0;--muted:#a3adbb;--bg:#11151b;--card:#1a2029;\
--line:#2f3743;--accent:#6ea2ff;--danger:#ff8a80}}\
*{box-sizing:border-box}\
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:var(--bg);\
color:var(--fg);font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;padding:16px}\
main{width:100%;max-width:400px;background:var(--card);border:1px solid var(--line);border-radius:12px;\
padding:28px 24px;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
h1{font-size:1.35rem;margin:0 0 4px}\
p.sub{color:var(--muted);margin:0 0 20px}\
label{display:block;font-weight:600;margin:14px 0 6px}\
input[type=text],input[type=password]{width:100%;padding:10px 12px;font:inherit;color:inherit;\
background:transparent;border:1px solid var(--line);border-radius:8px}\
input:focus{outline:2px solid var(--accent);outline-offset:1px}\
button{width:100%;margin-top:20px;padding:11px;font:inherit;font-weight:600;border-radius:8px;cursor:pointer;\
border:1px solid var(--accent);background:var(--accent);color:#fff}\
button.secondary{background:transparent;color:var(--fg);border-color:var(--line);margin-top:10px}\
.error{color:var(--danger);background:color-mix(in srgb,var(--danger) 10%,transparent);border-radius:8px;\
padding:10px 12px;margin:0 0 8px}\
ul{padding-left:20px;margin:8px 0 0}li{margin:6px 0}\
.who{color:var(--muted);font-size:.9rem;margin-top:18px}\
code{font-size:.95em}";

/// The `Content-Security-Policy` hash source of [`CSS`].
static CSS_HASH: LazyLock<String> =
    LazyLock::new(|| format!("'sha256-{}'", b64_std(digest::digest(&digest::SHA256, CSS.as_bytes()).as_ref())));

/// CSP hashes are in standard base64 with padding.
fn b64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body { main { (body) } }
        }
    }
}

/// A page response with the security headers. `form_target` is the origin a form on the page may end up at
/// after the server's redirect (the client's redirect URI), which CSP `form-action` must allow.
pub fn page(status: StatusCode, title: &str, body: Markup, form_target: Option<&str>) -> Response {
    let extra = form_target.map(|o| format!(" {o}")).unwrap_or_default();
    let csp = format!(
        "default-src 'none'; style-src {}; form-action 'self'{extra}; frame-ancestors 'none'; base-uri 'none'",
        *CSS_HASH
    );
    let mut response = (status, layout(title, body)).into_response();
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // `same-origin`, not `no-referrer`: with no referrer, browsers send `Origin: null` on our own form posts, which
    // the CSRF check would have to trust. Nothing leaks to other sites either way.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The origin (`scheme://host[:port]`) of an absolute URI, for `form-action`.
pub fn origin_of(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty() && !host.contains(['\'', ';', ' ', '"'])).then(|| format!("{scheme}://{host}"))
}

/// The hidden fields that carry the authorization request and the CSRF token through a form.
fn hidden(params: &[(&str, &str)], csrf: &str) -> Markup {
    html! {
        @for (name, value) in params {
            input type="hidden" name=(name) value=(value);
        }
        input type="hidden" name="csrf" value=(csrf);
    }
}

/// The login page.
pub fn login(client_name: &str, params: &[(&str, &str)], csrf: &str, error: Option<&str>) -> Markup {
    html! {
        h1 { "Sign in" }
        p.sub { "to continue to " strong { (client_name) } }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form method="post" action="/oauth2/authorize" {
            (hidden(params, csrf))
            input type="hidden" name="action" value="login";
            label for="username" { "Username" }
            input #username type="text" name="username" autocomplete="username" autocapitalize="none"
                spellcheck="false" required autofocus;
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
    }
}

/// What a scope lets an application do, in words.
fn describe(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are (your account id)".into(),
        "read" => "Read your data".into(),
        "write" => "Change your data".into(),
        "admin" => "Administer the service on your behalf".into(),
        other => format!("Use the \u{201c}{other}\u{201d} permission"),
    }
}

/// The consent page of a third-party application.
pub fn consent(client_name: &str, user_name: &str, scopes: &[&str], params: &[(&str, &str)], csrf: &str) -> Markup {
    html! {
        h1 { "Allow access?" }
        p.sub { strong { (client_name) } " would like to:" }
        ul {
            @for scope in scopes { li { (describe(scope)) " " code { "(" (scope) ")" } } }
            @if scopes.is_empty() { li { "Sign you in, with no further access" } }
        }
        form method="post" action="/oauth2/authorize" {
            (hidden(params, csrf))
            button type="submit" name="action" value="approve" { "Allow" }
            button.secondary type="submit" name="action" value="deny" { "Deny" }
        }
        p.who { "Signed in as " strong { (user_name) } }
    }
}

/// A page for a request that cannot continue and must not be sent back to the application.
pub fn error(message: &str) -> Markup {
    html! {
        h1 { "This sign-in cannot continue" }
        p.error role="alert" { (message) }
        p.sub { "Go back to the application and try again. If it keeps happening, tell its developers." }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show_and_carry_the_security_headers() {
        let hostile = "<script>alert(1)</script>";
        let markup = login(hostile, &[("state", "\"><img src=x>")], "tok", Some(hostile)).into_string();
        assert!(!markup.contains("<script>") && !markup.contains("<img"), "{markup}");
        let response = page(StatusCode::OK, "Sign in", error("x"), Some("https://app.example"));
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"), "{csp}");
        assert!(csp.contains("form-action 'self' https://app.example;") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn the_style_hash_is_of_the_stylesheet() {
        // The standard base64 of SHA-256("") is well known.
        assert_eq!(
            b64_std(digest::digest(&digest::SHA256, b"").as_ref()),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert!(CSS_HASH.starts_with("'sha256-") && CSS_HASH.ends_with("='"));
    }

    #[test]
    fn origins_are_scheme_and_authority_only() {
        assert_eq!(origin_of("https://app.example:8443/cb?x=1").as_deref(), Some("https://app.example:8443"));
        assert_eq!(origin_of("com.example.app:/cb"), None, "no authority");
        assert_eq!(origin_of("https://a'b/cb"), None, "nothing that could break out of the header");
    }
}
