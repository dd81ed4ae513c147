//! Strict `application/x-www-form-urlencoded` bodies for the OAuth endpoints: the content type must say so,
//! and no parameter may appear twice (RFC 6749 §3.1, §3.2). Values are kept in `Zeroizing` strings because
//! passwords and refresh tokens travel here.

use std::collections::HashMap;

use axum::http::{header, HeaderMap};
use zeroize::Zeroizing;

use crate::oauth::error::{ErrorCode, OAuthError};

/// The most parameters a form may carry.
const MAX_PARAMS: usize = 32;

#[derive(Default)]
pub struct Form(HashMap<String, Zeroizing<String>>);

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Form {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Form, OAuthError> {
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let mut params = HashMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if params.len() >= MAX_PARAMS {
                return Err(OAuthError::new(ErrorCode::InvalidRequest, "too many parameters"));
            }
            // RFC 6749 §3.1: parameters sent without a value are treated as omitted.
            if value.is_empty() {
                continue;
            }
            if params.insert(name.into_owned(), Zeroizing::new(value.into_owned())).is_some() {
                return Err(OAuthError::new(ErrorCode::InvalidRequest, "a parameter is repeated"));
            }
        }
        Ok(Form(params))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.as_str())
    }

    pub fn owned(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    pub fn secret(&mut self, name: &str) -> Option<Zeroizing<String>> {
        self.0.remove(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        h
    }

    #[test]
    fn forms_are_strict() {
        let h = headers("application/x-www-form-urlencoded; charset=UTF-8");
        let mut f = Form::parse(&h, b"grant_type=client_credentials&scope=a+b&empty=").unwrap();
        assert_eq!(f.get("scope"), Some("a b"));
        assert_eq!(f.get("empty"), None);
        assert_eq!(f.secret("grant_type").unwrap().as_str(), "client_credentials");
        assert_eq!(f.get("grant_type"), None);
        assert!(Form::parse(&h, b"a=1&a=2").is_err(), "repeated parameter");
        assert!(Form::parse(&headers("application/json"), b"a=1").is_err());
        assert!(Form::parse(&HeaderMap::new(), b"a=1").is_err());
        let many: Vec<String> = (0..40).map(|i| format!("p{i}=x")).collect();
        assert!(Form::parse(&h, many.join("&").as_bytes()).is_err());
        assert!(!format!("{f:?}").contains("a b"), "values are not printed");
    }
}
