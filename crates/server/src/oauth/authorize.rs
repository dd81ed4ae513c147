//! The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OpenID Connect Core §3.1.2.1, RFC 9449 §10) and
//! PKCE, judged without I/O. Who may see an error matters (RFC 6749 §4.1.2.1): a request from an unknown client
//! or with a redirect URI the client did not register is answered on a page, never by a redirect; every other
//! error goes back to the client's redirect URI.

use aws_lc_rs::{constant_time, digest};
use portcullis_jose::b64;

use super::scope::Scopes;
use crate::model::{Client, GrantType};

/// The longest `state` and `nonce` accepted.
const MAX_OPAQUE: usize = 1024;

/// The scopes of OpenID Connect itself: granted to any client using the code flow when it asks, whatever the
/// user's roles, because they name no resource.
pub const OIDC_SCOPES: [&str; 1] = ["openid"];

/// `resource` plus the OpenID Connect scopes of `requested`: what a user may grant, roles having bounded the
/// rest.
pub fn with_oidc(resource: &Scopes, requested: &Scopes) -> Scopes {
    let oidc = requested.iter().filter(|s| OIDC_SCOPES.contains(s));
    let names: Vec<String> = resource.iter().chain(oidc).map(str::to_owned).collect();
    Scopes::of(names).unwrap_or_default()
}

/// The raw parameters of an authorization request (query or form), each at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub dpop_jkt: Option<String>,
    pub resource: Option<String>,
    pub response_mode: Option<String>,
}

impl AuthorizeParams {
    /// The names of the parameters, to carry a request through the login form as hidden fields.
    pub const NAMES: [&'static str; 13] = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "nonce",
        "prompt",
        "max_age",
        "dpop_jkt",
        "resource",
        "response_mode",
    ];

    /// Builds the parameters from (name, value) pairs, refusing a repeated one and ignoring unknown ones
    /// (RFC 6749 §3.1). `None` for a repeated parameter.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> Option<Self> {
        let mut p = AuthorizeParams::default();
        for (name, value) in pairs {
            let slot = match name {
                "response_type" => &mut p.response_type,
                "client_id" => &mut p.client_id,
                "redirect_uri" => &mut p.redirect_uri,
                "scope" => &mut p.scope,
                "state" => &mut p.state,
                "code_challenge" => &mut p.code_challenge,
                "code_challenge_method" => &mut p.code_challenge_method,
                "nonce" => &mut p.nonce,
                "prompt" => &mut p.prompt,
                "max_age" => &mut p.max_age,
                "dpop_jkt" => &mut p.dpop_jkt,
                "resource" => &mut p.resource,
                "response_mode" => &mut p.response_mode,
                _ => continue,
            };
            if value.is_empty() {
                continue;
            }
            if slot.replace(value).is_some() {
                return None;
            }
        }
        Some(p)
    }

    /// The parameters present, as (name, value) pairs in [`Self::NAMES`] order.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let values = [
            &self.response_type,
            &self.client_id,
            &self.redirect_uri,
            &self.scope,
            &self.state,
            &self.code_challenge,
            &self.code_challenge_method,
            &self.nonce,
            &self.prompt,
            &self.max_age,
            &self.dpop_jkt,
            &self.resource,
            &self.response_mode,
        ];
        Self::NAMES.iter().zip(values).filter_map(|(n, v)| v.as_deref().map(|v| (*n, v))).collect()
    }
}

/// What `prompt` asks for (OpenID Connect Core §3.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prompt {
    /// `none`: no page may be shown; fail with `login_required` or `consent_required` instead.
    pub none: bool,
    /// `login`: authenticate again even with a live session.
    pub login: bool,
    /// `consent`: ask for consent even if it was given before.
    pub consent: bool,
}

/// A request that passed every check: what the code will be issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub redirect_uri_given: bool,
    /// The scopes asked for, within the client's (OpenID Connect scopes always allowed).
    pub scopes: Scopes,
    pub state: Option<String>,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub dpop_jkt: Option<String>,
    pub audience: String,
}

impl AuthorizeRequest {
    pub fn wants_id_token(&self) -> bool {
        self.scopes.contains("openid")
    }
}

/// Why a request was refused, and where the answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or its redirect URI cannot be trusted: show this on a page (RFC 6749 §4.1.2.1).
    Page(&'static str),
    /// Send `error` back to the redirect URI (with `state`).
    Redirect(Redirect),
}

/// An error to send to the client's redirect URI (RFC 6749 §4.1.2.1, OpenID Connect Core §3.1.2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub error: &'static str,
    pub description: &'static str,
}

impl Redirect {
    /// The URL to send the browser to, with `error`, `error_description`, `state` and `iss` (RFC 9207).
    pub fn location(&self, issuer: &str) -> String {
        let mut pairs = vec![("error", self.error), ("error_description", self.description)];
        if let Some(state) = &self.state {
            pairs.push(("state", state));
        }
        pairs.push(("iss", issuer));
        with_query(&self.redirect_uri, &pairs)
    }
}

/// `uri` with `pairs` appended to its query (form-encoded).
pub fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{}", query.finish())
}

/// Judges an authorization request for `client` (`None` when no such client exists or it is disabled).
pub fn validate(params: &AuthorizeParams, client: Option<&Client>) -> Result<AuthorizeRequest, AuthorizeError> {
    let Some(client) = client.filter(|c| !c.disabled && params.client_id.as_deref() == Some(c.id.as_str())) else {
        return Err(AuthorizeError::Page("The application that sent you here is not known to this server."));
    };
    // Exact string comparison with a registered URI: no prefixes, no wildcards (RFC 9700 §4.1.3).
    let (redirect_uri, given) =
        match (&params.redirect_uri, client.redirect_uris.as_slice()) {
            (Some(uri), registered) if registered.iter().any(|r| r == uri) => (uri.clone(), true),
            (None, [only]) => (only.clone(), false),
            _ => return Err(AuthorizeError::Page(
                "The application asked to send you to an address it has not registered, so you were not sent there.",
            )),
        };
    let state = params.state.clone();
    let fail = |error: &'static str, description: &'static str| {
        AuthorizeError::Redirect(Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description,
        })
    };
    if state.as_ref().is_some_and(|s| s.len() > MAX_OPAQUE) {
        return Err(fail("invalid_request", "state is too long"));
    }
    if params.response_type.as_deref() != Some("code") {
        return Err(fail("unsupported_response_type", "only response_type=code is supported"));
    }
    if params.response_mode.as_deref().is_some_and(|m| m != "query") {
        return Err(fail("invalid_request", "only response_mode=query is supported"));
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(fail("unauthorized_client", "the client may not use the authorization code flow"));
    }
    if params.code_challenge_method.as_deref() != Some("S256") {
        return Err(fail("invalid_request", "PKCE with code_challenge_method=S256 is required"));
    }
    let code_challenge = match params.code_challenge.as_deref() {
        Some(c) if b64::decode_fixed::<32>(c.as_bytes()).is_some() => c.to_owned(),
        _ => return Err(fail("invalid_request", "code_challenge must be a base64url SHA-256 value")),
    };
    let requested = match params.scope.as_deref().map(Scopes::parse).transpose() {
        Ok(s) => s,
        Err(_) => return Err(fail("invalid_scope", "scope is malformed")),
    };
    let scopes = match requested {
        None => client.scopes.clone(),
        Some(requested) => {
            let allowed = requested.intersect(&client.scopes);
            let oidc = requested.iter().filter(|s| OIDC_SCOPES.contains(s));
            let names: Vec<String> = allowed.iter().chain(oidc).map(str::to_owned).collect();
            let scopes = Scopes::of(names).unwrap_or_default();
            if scopes.is_empty() && !requested.is_empty() {
                return Err(fail("invalid_scope", "none of the requested scopes may be granted"));
            }
            scopes
        }
    };
    let nonce = params.nonce.clone();
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_OPAQUE) {
        return Err(fail("invalid_request", "nonce is too long"));
    }
    let prompt = parse_prompt(params.prompt.as_deref()).ok_or_else(|| fail("invalid_request", "prompt is invalid"))?;
    let max_age = match params.max_age.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(age)) if age >= 0 => Some(age),
        Some(_) => return Err(fail("invalid_request", "max_age must be a non-negative integer")),
    };
    let dpop_jkt = match params.dpop_jkt.as_deref() {
        None => None,
        Some(jkt) if b64::decode_fixed::<32>(jkt.as_bytes()).is_some() => Some(jkt.to_owned()),
        Some(_) => return Err(fail("invalid_request", "dpop_jkt must be a JWK SHA-256 thumbprint")),
    };
    let audience = client
        .audience_for(params.resource.as_deref())
        .ok_or_else(|| fail("invalid_target", "the resource is not one this client may use"))?;
    Ok(AuthorizeRequest {
        client_id: client.id.clone(),
        redirect_uri,
        redirect_uri_given: given,
        scopes,
        state,
        code_challenge,
        nonce,
        prompt,
        max_age,
        dpop_jkt,
        audience,
    })
}

fn parse_prompt(prompt: Option<&str>) -> Option<Prompt> {
    let mut p = Prompt::default();
    for value in prompt.unwrap_or_default().split(' ').filter(|v| !v.is_empty()) {
        match value {
            "none" => p.none = true,
            "login" => p.login = true,
            "consent" => p.consent = true,
            "select_account" => {}
            _ => return None,
        }
    }
    // `none` with anything else is an error (OpenID Connect Core §3.1.2.1).
    (!(p.none && (p.login || p.consent))).then_some(p)
}

/// Whether `verifier` is a valid PKCE code verifier (RFC 7636 §4.1) whose S256 challenge is `challenge`. The
/// comparison is in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return false;
    }
    let computed = b64::encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref());
    constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClientCredential, TokenDelivery};

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client() -> Client {
        Client {
            id: "app".into(),
            credential: ClientCredential::None,
            grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: Scopes::parse("read write").unwrap(),
            redirect_uris: vec!["https://app.example/cb".into(), "http://127.0.0.1:5000/cb".into()],
            audiences: vec!["api".into()],
            first_party: false,
            token_delivery: TokenDelivery::Body,
            dpop_bound: false,
            disabled: false,
            created_at: 0,
        }
    }

    fn params() -> AuthorizeParams {
        AuthorizeParams {
            response_type: Some("code".into()),
            client_id: Some("app".into()),
            redirect_uri: Some("https://app.example/cb".into()),
            scope: Some("openid read".into()),
            state: Some("xyz".into()),
            code_challenge: Some(CHALLENGE.into()),
            code_challenge_method: Some("S256".into()),
            nonce: Some("n-0S6".into()),
            ..AuthorizeParams::default()
        }
    }

    fn redirect_error(p: &AuthorizeParams) -> &'static str {
        match validate(p, Some(&client())) {
            Err(AuthorizeError::Redirect(r)) => {
                assert_eq!(r.state.as_deref(), p.state.as_deref(), "state is returned");
                r.error
            }
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes_with_its_scopes_bounded_by_the_client() {
        let mut p = params();
        p.scope = Some("openid read admin".into());
        let r = validate(&p, Some(&client())).unwrap();
        assert_eq!(r.scopes.to_string(), "openid read", "openid is always allowed; admin is not the client's");
        assert!(r.wants_id_token() && r.redirect_uri_given);
        assert_eq!((r.audience.as_str(), r.nonce.as_deref()), ("api", Some("n-0S6")));
    }

    #[test]
    fn untrusted_clients_and_redirect_uris_are_answered_on_a_page() {
        assert!(matches!(validate(&params(), None), Err(AuthorizeError::Page(_))));
        let mut disabled = client();
        disabled.disabled = true;
        assert!(matches!(validate(&params(), Some(&disabled)), Err(AuthorizeError::Page(_))));
        for uri in [
            "https://app.example/cb/extra",
            "https://app.example/c",
            "https://evil.example/cb",
            "https://app.example/cb?x=1",
        ] {
            let p = AuthorizeParams { redirect_uri: Some(uri.into()), ..params() };
            assert!(matches!(validate(&p, Some(&client())), Err(AuthorizeError::Page(_))), "{uri}");
        }
        // Two registered URIs: the request must name one.
        let p = AuthorizeParams { redirect_uri: None, ..params() };
        assert!(matches!(validate(&p, Some(&client())), Err(AuthorizeError::Page(_))));
        let mut one = client();
        one.redirect_uris.truncate(1);
        assert!(!validate(&p, Some(&one)).unwrap().redirect_uri_given);
    }

    #[test]
    fn other_errors_go_back_to_the_client_with_state() {
        type Change = fn(&mut AuthorizeParams);
        let cases: [(Change, &str); 9] = [
            (|p| p.response_type = Some("token".into()), "unsupported_response_type"),
            (|p| p.code_challenge = None, "invalid_request"),
            (|p| p.code_challenge_method = Some("plain".into()), "invalid_request"),
            (|p| p.code_challenge = Some("short".into()), "invalid_request"),
            (|p| p.scope = Some("admin".into()), "invalid_scope"),
            (|p| p.prompt = Some("none login".into()), "invalid_request"),
            (|p| p.max_age = Some("-1".into()), "invalid_request"),
            (|p| p.resource = Some("https://other.example".into()), "invalid_target"),
            (|p| p.response_mode = Some("fragment".into()), "invalid_request"),
        ];
        for (change, expected) in cases {
            let mut p = params();
            change(&mut p);
            assert_eq!(redirect_error(&p), expected, "{p:?}");
        }
        let mut no_code_grant = client();
        no_code_grant.grants = vec![GrantType::ClientCredentials];
        assert!(matches!(
            validate(&params(), Some(&no_code_grant)),
            Err(AuthorizeError::Redirect(Redirect { error: "unauthorized_client", .. }))
        ));
    }

    #[test]
    fn error_redirects_carry_state_and_issuer() {
        let r = Redirect {
            redirect_uri: "https://app.example/cb?tenant=1".into(),
            state: Some("a b".into()),
            error: "access_denied",
            description: "the user said no",
        };
        assert_eq!(
            r.location("https://auth.example"),
            "https://app.example/cb?tenant=1&error=access_denied&error_description=the+user+said+no&state=a+b\
             &iss=https%3A%2F%2Fauth.example"
        );
    }

    #[test]
    fn repeated_parameters_are_refused_and_pairs_round_trip() {
        assert!(AuthorizeParams::from_pairs([("state", "a".to_owned()), ("state", "b".to_owned())]).is_none());
        let p = params();
        let again = AuthorizeParams::from_pairs(p.pairs().into_iter().map(|(n, v)| (n, v.to_owned()))).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn pkce_follows_rfc_7636_appendix_b() {
        assert!(pkce_matches(VERIFIER, CHALLENGE));
        assert!(!pkce_matches(&VERIFIER.replace('d', "e"), CHALLENGE));
        assert!(!pkce_matches("too-short", CHALLENGE));
        assert!(!pkce_matches(&format!("{VERIFIER}!"), CHALLENGE), "outside the verifier alphabet");
    }
}
