//! Scopes (RFC 6749 §3.3): space-delimited, case-sensitive tokens of `%x21 / %x23-5B / %x5D-7E`. A grant gives
//! the scopes requested and allowed by both the client and the user's roles (DESIGN.md §2).

use std::collections::BTreeSet;
use std::fmt;

/// The most scope tokens one request may name, and the longest token; larger requests are refused.
pub const MAX_SCOPES: usize = 64;
pub const MAX_SCOPE_LEN: usize = 128;

/// A set of scopes, kept sorted so that its text form is canonical.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

/// Why a scope parameter is refused (answered as `invalid_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope contains a character RFC 6749 does not allow")]
    Syntax,
    #[error("too many scopes, or a scope too long")]
    TooLarge,
}

fn valid_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

impl Scopes {
    /// Parses a `scope` parameter. Single spaces separate tokens; empty tokens (double or edge spaces) and
    /// any other whitespace are refused. Repeats collapse.
    pub fn parse(text: &str) -> Result<Scopes, ScopeError> {
        if text.is_empty() {
            return Ok(Scopes::default());
        }
        let mut set = BTreeSet::new();
        for token in text.split(' ') {
            if !valid_token(token) {
                return Err(ScopeError::Syntax);
            }
            if token.len() > MAX_SCOPE_LEN {
                return Err(ScopeError::TooLarge);
            }
            set.insert(token.to_owned());
            if set.len() > MAX_SCOPES {
                return Err(ScopeError::TooLarge);
            }
        }
        Ok(Scopes(set))
    }

    /// Builds a set from trusted configuration (tokens are checked all the same).
    pub fn of<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Result<Scopes, ScopeError> {
        let joined: Vec<String> = items.into_iter().map(|s| s.as_ref().to_owned()).collect();
        Scopes::parse(&joined.join(" "))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The scopes in both sets.
    pub fn intersect(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.intersection(&other.0).cloned().collect())
    }

    /// The scopes to grant. With no `requested` scope the client gets everything both it and the user's roles
    /// allow (RFC 6749 §3.3 lets the server apply a default).
    pub fn grant(requested: Option<&Scopes>, client_allowed: &Scopes, role_granted: &Scopes) -> Scopes {
        let allowed = client_allowed.intersect(role_granted);
        match requested {
            Some(requested) => requested.intersect(&allowed),
            None => allowed,
        }
    }
}

impl fmt::Display for Scopes {
    /// The canonical `scope` value: sorted, single spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_follows_rfc_6749_section_3_3() {
        assert_eq!(Scopes::parse("read write read").unwrap().to_string(), "read write");
        assert_eq!(Scopes::parse("b a").unwrap().to_string(), "a b");
        assert!(Scopes::parse("").unwrap().is_empty());
        assert!(Scopes::parse("openid read:orders https://api.example/x").is_ok());
        for bad in ["a  b", " a", "a ", "a\tb", "a\"b", "a\\b", "é", "a\nb"] {
            assert_eq!(Scopes::parse(bad), Err(ScopeError::Syntax), "{bad:?}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        assert_eq!(Scopes::parse(&many.join(" ")), Err(ScopeError::TooLarge));
        assert_eq!(Scopes::parse(&"x".repeat(129)), Err(ScopeError::TooLarge));
    }

    #[test]
    fn grants_are_the_intersection_of_request_client_and_roles() {
        let client = Scopes::of(["read", "write", "admin"]).unwrap();
        let roles = Scopes::of(["read", "write", "billing"]).unwrap();
        let requested = Scopes::parse("read admin billing").unwrap();
        assert_eq!(Scopes::grant(Some(&requested), &client, &roles).to_string(), "read");
        assert_eq!(Scopes::grant(None, &client, &roles).to_string(), "read write");
        assert!(Scopes::grant(Some(&Scopes::parse("delete").unwrap()), &client, &roles).is_empty());
    }
}
