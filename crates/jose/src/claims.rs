//! A verified claims set. The payload is kept as its JSON text, validated strictly once; registered claims
//! are type-checked then, and any claim can be read later without copying it.

use std::borrow::Cow;

use serde::de::DeserializeOwned;

use crate::error::{Error, JsonError, Part};
use crate::json::{self, JsonStr, Kind, RawValue};
use crate::jws::Span;
use crate::time::UnixTime;

/// String-valued registered claims (RFC 7519 §4.1, RFC 9068 §2.2, RFC 8693, OpenID Connect Core).
const STRING_CLAIMS: [&str; 8] = ["iss", "sub", "jti", "client_id", "scope", "sid", "azp", "nonce"];

/// NumericDate claims (RFC 7519 §2, OpenID Connect Core's `auth_time`); the first three by name below.
const TIME_CLAIMS: [&str; 4] = ["exp", "nbf", "iat", "auth_time"];
const EXP: usize = 0;
const NBF: usize = 1;
const IAT: usize = 2;

/// What a member name is to the parser.
enum Class {
    Str(usize),
    /// An index into `TIME_CLAIMS`.
    Time(usize),
    Aud,
    Cnf,
    Other,
}

/// Byte-by-byte slice patterns compile to a decision tree (length, then first byte, ...); literal patterns
/// (`b"iss"`) to one comparison after another. Called for every claim and every required one.
#[inline]
fn classify(name: &[u8]) -> Class {
    match name {
        [b'i', b's', b's'] => Class::Str(0),
        [b's', b'u', b'b'] => Class::Str(1),
        [b'j', b't', b'i'] => Class::Str(2),
        [b'c', b'l', b'i', b'e', b'n', b't', b'_', b'i', b'd'] => Class::Str(3),
        [b's', b'c', b'o', b'p', b'e'] => Class::Str(4),
        [b's', b'i', b'd'] => Class::Str(5),
        [b'a', b'z', b'p'] => Class::Str(6),
        [b'n', b'o', b'n', b'c', b'e'] => Class::Str(7),
        [b'e', b'x', b'p'] => Class::Time(EXP),
        [b'n', b'b', b'f'] => Class::Time(NBF),
        [b'i', b'a', b't'] => Class::Time(IAT),
        [b'a', b'u', b't', b'h', b'_', b't', b'i', b'm', b'e'] => Class::Time(3),
        [b'a', b'u', b'd'] => Class::Aud,
        [b'c', b'n', b'f'] => Class::Cnf,
        _ => Class::Other,
    }
}

#[derive(Debug, Clone, Copy)]
struct MemberSpan {
    key: Span,
    value: (u32, u32),
}

/// Where `aud` is: one string, or an array (kept as its text).
#[derive(Debug, Clone, Copy)]
enum Audience {
    Absent,
    One(Span),
    Many(u32, u32),
}

/// The claims of a verified token.
#[derive(Debug, Clone)]
pub struct Claims {
    json: String,
    members: Vec<MemberSpan>,
    max_depth: usize,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    /// The string claims of `STRING_CLAIMS`, in that order, found once at parse time.
    strings: [Option<Span>; STRING_CLAIMS.len()],
    aud: Audience,
}

fn offset(base: &str, part: &str) -> u32 {
    (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize) as u32
}

impl Claims {
    /// Parses and type-checks a claims set.
    pub fn parse(payload: Vec<u8>, max_depth: usize) -> Result<Claims, Error> {
        let json = String::from_utf8(payload)
            .map_err(|_| Error::Json { part: Part::Payload, error: JsonError::InvalidUnicode })?;
        let (mut exp, mut nbf, mut iat) = (None, None, None);
        let mut strings = [None; STRING_CLAIMS.len()];
        let mut aud = Audience::Absent;
        let mut members = Vec::with_capacity(16);
        // The first claim error, reported only if the whole text is strict JSON: a syntax error or a duplicate
        // anywhere wins over a wrong-typed claim before it, as if the text were parsed first and read after.
        let mut claim_error = None;
        let mut visit = |key: &JsonStr<'_>, value: &RawValue<'_>| {
            if claim_error.is_none() {
                match read_claim(&json, key, value, &mut strings, &mut aud) {
                    Ok(Some((EXP, t))) => exp = Some(t),
                    Ok(Some((NBF, t))) => nbf = Some(t),
                    Ok(Some((IAT, t))) => iat = Some(t),
                    Ok(_) => {}
                    Err(e) => claim_error = Some(e),
                }
            }
            let start = offset(&json, value.text());
            members.push(MemberSpan { key: Span::of(&json, *key), value: (start, start + value.text().len() as u32) });
        };
        json::visit_object(&json, max_depth, &mut visit).map_err(Error::json(Part::Payload))?;
        if let Some(e) = claim_error {
            return Err(e);
        }
        Ok(Claims { json, members, max_depth, exp, nbf, iat, strings, aud })
    }

    /// The claims set's JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// A claim's value, by name.
    pub fn get(&self, name: &str) -> Option<RawValue<'_>> {
        let m = self.members.iter().find(|m| m.key.get(&self.json) == name)?;
        let text = self.json.get(m.value.0 as usize..m.value.1 as usize)?;
        json::parse_value(text, self.max_depth).ok()
    }

    /// True when the claim is present (whatever its value).
    pub fn contains(&self, name: &str) -> bool {
        match classify(name.as_bytes()) {
            Class::Str(i) => self.strings[i].is_some(),
            Class::Time(EXP) => self.exp.is_some(),
            Class::Time(IAT) => self.iat.is_some(),
            Class::Time(NBF) => self.nbf.is_some(),
            Class::Aud => !matches!(self.aud, Audience::Absent),
            _ => self.members.iter().any(|m| m.key.get(&self.json) == name),
        }
    }

    /// A string claim, or `None` when absent or not a string.
    pub fn string(&self, name: &str) -> Option<Cow<'_, str>> {
        match classify(name.as_bytes()) {
            Class::Str(i) => self.strings[i].map(|s| s.get(&self.json)),
            _ => self.get(name)?.as_str().map(|s| s.to_cow()),
        }
    }

    pub fn iss(&self) -> Option<Cow<'_, str>> {
        self.string("iss")
    }
    pub fn sub(&self) -> Option<Cow<'_, str>> {
        self.string("sub")
    }
    pub fn jti(&self) -> Option<Cow<'_, str>> {
        self.string("jti")
    }
    pub fn client_id(&self) -> Option<Cow<'_, str>> {
        self.string("client_id")
    }
    pub fn scope(&self) -> Option<Cow<'_, str>> {
        self.string("scope")
    }
    pub fn exp(&self) -> Option<i64> {
        self.exp
    }
    pub fn nbf(&self) -> Option<i64> {
        self.nbf
    }
    pub fn iat(&self) -> Option<i64> {
        self.iat
    }

    /// The audiences (`aud` as a string or an array).
    pub fn aud(&self) -> Vec<Cow<'_, str>> {
        match self.aud {
            Audience::Absent => Vec::new(),
            Audience::One(span) => vec![span.get(&self.json)],
            Audience::Many(start, end) => {
                let text = self.json.get(start as usize..end as usize).unwrap_or_default();
                let items = json::parse_value(text, self.max_depth).ok().and_then(|v| v.items()).unwrap_or_default();
                items.iter().filter_map(|i| i.as_str()).map(|s| s.to_cow()).collect()
            }
        }
    }

    /// Whether `aud` names any of `accepted`; `None` when the token has no `aud`.
    pub fn audience_matches(&self, accepted: &[String]) -> Option<bool> {
        match self.aud {
            Audience::Absent => None,
            Audience::One(span) => {
                let aud = span.get(&self.json);
                Some(accepted.iter().any(|a| *a == aud))
            }
            Audience::Many(..) => Some(self.aud().iter().any(|aud| accepted.iter().any(|a| a == aud))),
        }
    }

    /// The key a sender-constrained token is bound to: `cnf.jkt`, the RFC 7638 thumbprint of a DPoP key
    /// (RFC 9449 §6.1). `Ok(None)` when there is no `cnf`; an error when `cnf` holds no non-empty string `jkt`,
    /// because a confirmation the verifier cannot check must not be ignored.
    pub fn confirmation_jkt(&self) -> Result<Option<String>, Error> {
        let Some(cnf) = self.get("cnf") else { return Ok(None) };
        let members = cnf.members().ok_or(Error::ClaimType("cnf"))?;
        let jkt = json::find(&members, "jkt").and_then(|v| v.as_str()).map(|s| s.to_cow().into_owned());
        match jkt {
            Some(jkt) if !jkt.is_empty() => Ok(Some(jkt)),
            _ => Err(Error::ClaimType("cnf")),
        }
    }

    /// True when the space-separated `scope` contains `wanted`.
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope().is_some_and(|s| s.split(' ').any(|x| x == wanted))
    }

    /// Deserializes the (already strictly validated) claims into a type of the caller's.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.json)
    }

    /// Checks the time claims at `now` with `leeway` seconds of allowance.
    pub fn check_times(&self, now: UnixTime, leeway: i64, max_age: Option<i64>) -> Result<(), Error> {
        let now = now.as_secs();
        if let Some(exp) = self.exp {
            if now.saturating_sub(leeway) >= exp {
                return Err(Error::Expired);
            }
        }
        if let Some(nbf) = self.nbf {
            if now.saturating_add(leeway) < nbf {
                return Err(Error::NotYetValid);
            }
        }
        if let Some(iat) = self.iat {
            if iat > now.saturating_add(leeway) {
                return Err(Error::IssuedInFuture);
            }
        }
        if let Some(max_age) = max_age {
            let iat = self.iat.ok_or_else(|| Error::MissingClaim("iat".into()))?;
            if now.saturating_sub(iat) > max_age.saturating_add(leeway) {
                return Err(Error::TooOld);
            }
        }
        Ok(())
    }
}

/// Type-checks one member if it is a registered claim, recording string claims and `aud` as spans of `json`.
/// Returns a time claim's name and value.
fn read_claim(
    json: &str,
    key: &JsonStr<'_>,
    value: &RawValue<'_>,
    strings: &mut [Option<Span>; STRING_CLAIMS.len()],
    aud: &mut Audience,
) -> Result<Option<(usize, i64)>, Error> {
    // Classify decoded names: `"\u0065xp"` is `exp` and must be checked as `exp`.
    let name = key.to_cow();
    match classify(name.as_bytes()) {
        Class::Str(i) => {
            let value = value.as_str().ok_or(Error::ClaimType(STRING_CLAIMS[i]))?;
            strings[i] = Some(Span::of(json, value));
        }
        Class::Time(i) => return Ok(Some((i, numeric_date(TIME_CLAIMS[i], value)?))),
        Class::Aud => {
            check_aud(value)?;
            *aud = match value.as_str() {
                Some(one) => Audience::One(Span::of(json, one)),
                None => {
                    let start = offset(json, value.text());
                    Audience::Many(start, start + value.text().len() as u32)
                }
            };
        }
        Class::Cnf if !matches!(value.kind(), Kind::Object) => return Err(Error::ClaimType("cnf")),
        Class::Cnf | Class::Other => {}
    }
    Ok(None)
}

fn numeric_date(claim: &'static str, value: &RawValue<'_>) -> Result<i64, Error> {
    match value.kind() {
        Kind::Int(t) if (0..=UnixTime::MAX).contains(&t) => Ok(t),
        Kind::Int(_) => Err(Error::ClaimOutOfRange(claim)),
        _ => Err(Error::ClaimType(claim)),
    }
}

fn check_aud(value: &RawValue<'_>) -> Result<(), Error> {
    match value.kind() {
        Kind::Str(_) => Ok(()),
        Kind::Array => {
            let items = value.items().unwrap_or_default();
            if !items.is_empty() && items.iter().all(|i| i.as_str().is_some()) {
                Ok(())
            } else {
                Err(Error::ClaimType("aud"))
            }
        }
        _ => Err(Error::ClaimType("aud")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Claims, Error> {
        Claims::parse(s.as_bytes().to_vec(), json::DEFAULT_MAX_DEPTH)
    }

    #[test]
    fn registered_claims_are_type_checked() {
        assert_eq!(parse(r#"{"exp":"1"}"#).unwrap_err(), Error::ClaimType("exp"));
        assert_eq!(parse(r#"{"nbf":1.5}"#).unwrap_err(), Error::ClaimType("nbf"));
        assert_eq!(parse(r#"{"iat":-1}"#).unwrap_err(), Error::ClaimOutOfRange("iat"));
        assert_eq!(parse(r#"{"exp":253402300800}"#).unwrap_err(), Error::ClaimOutOfRange("exp"));
        assert_eq!(parse(r#"{"sub":5}"#).unwrap_err(), Error::ClaimType("sub"));
        assert_eq!(parse(r#"{"aud":[]}"#).unwrap_err(), Error::ClaimType("aud"));
        assert_eq!(parse(r#"{"aud":["a",1]}"#).unwrap_err(), Error::ClaimType("aud"));
        assert_eq!(parse(r#"{"cnf":"x"}"#).unwrap_err(), Error::ClaimType("cnf"));
        assert!(matches!(parse(r#"{"exp":1,"exp":2}"#), Err(Error::Json { .. })));
        // A broken text is a JSON error even after a wrong-typed claim: the text is judged whole first.
        assert!(matches!(parse(r#"{"exp":"x","a":1,"a":2}"#), Err(Error::Json { .. })));
        assert!(matches!(parse(r#"{"sub":5,}"#), Err(Error::Json { .. })));
        assert_eq!(parse(r#"{"sub":5,"exp":"x"}"#).unwrap_err(), Error::ClaimType("sub"));
        assert_eq!(parse(r#"{"\u0065xp":"soon"}"#).unwrap_err(), Error::ClaimType("exp"));
        assert_eq!(parse(r#"{"\u0065xp":7}"#).unwrap().exp(), Some(7));
    }

    #[test]
    fn accessors_read_without_copying() {
        let c = parse(r#"{"sub":"al\u0069ce","aud":["a","b"],"scope":"read write","exp":10,"x":{"y":[1]}}"#).unwrap();
        assert_eq!(c.sub().as_deref(), Some("alice"));
        assert_eq!(c.aud(), vec!["a", "b"]);
        assert!(c.has_scope("write") && !c.has_scope("wri"));
        assert_eq!(c.exp(), Some(10));
        assert_eq!(c.get("x").unwrap().text(), r#"{"y":[1]}"#);
        #[derive(serde::Deserialize)]
        struct Mine {
            sub: String,
        }
        assert_eq!(c.deserialize::<Mine>().unwrap().sub, "alice");
    }

    #[test]
    fn the_confirmation_key_is_read_strictly() {
        assert_eq!(parse(r#"{"sub":"a"}"#).unwrap().confirmation_jkt(), Ok(None));
        assert_eq!(parse(r#"{"cnf":{"jkt":"abc"}}"#).unwrap().confirmation_jkt(), Ok(Some("abc".into())));
        for unusable in
            [r#"{"cnf":{}}"#, r#"{"cnf":{"jkt":""}}"#, r#"{"cnf":{"jkt":7}}"#, r#"{"cnf":{"x5t#S256":"a"}}"#]
        {
            assert_eq!(parse(unusable).unwrap().confirmation_jkt(), Err(Error::ClaimType("cnf")), "{unusable}");
        }
    }

    #[test]
    fn times_are_judged_with_leeway() {
        let c = parse(r#"{"exp":100,"nbf":50,"iat":40}"#).unwrap();
        let at = |t| c.check_times(UnixTime(t), 5, None);
        assert_eq!(at(104), Ok(()));
        assert_eq!(at(105), Err(Error::Expired));
        assert_eq!(at(45), Ok(()));
        assert_eq!(at(44), Err(Error::NotYetValid));
        let future = parse(r#"{"iat":100}"#).unwrap();
        assert_eq!(future.check_times(UnixTime(94), 5, None), Err(Error::IssuedInFuture));
        assert_eq!(c.check_times(UnixTime(60), 5, Some(10)), Err(Error::TooOld));
        assert_eq!(c.check_times(UnixTime(55), 5, Some(10)), Ok(()));
    }
}
