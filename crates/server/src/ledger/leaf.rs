//! An audit event as a leaf of the ledger: canonical JSON (object keys sorted by bytes, no whitespace) of its
//! fields, the same text whichever JSON library or map order produced them. The audit writer builds one per
//! event, so the common case (a `detail` the server wrote, already canonical) is copied as it is, not parsed.

use std::fmt::Write as _;

use crate::store::StoredAuditEvent;

/// How deep a `detail` is checked for being canonical as it stands; deeper ones take the general path.
const MAX_DEPTH: usize = 32;

/// An audit event's `detail` as it enters the leaf: the stored JSON, or (if it is not JSON) the raw text.
pub fn detail_value(raw: &str) -> serde_json::Value {
    serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_owned()))
}

/// An audit event's fields besides `detail`, as they enter its leaf.
#[derive(Debug, Clone, Copy)]
pub struct LeafFields<'a> {
    pub seq: i64,
    pub at: i64,
    pub kind: &'a str,
    pub subject: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub jti: Option<&'a str>,
}

/// The leaf of an audit event: canonical JSON of its fields. The admin API serves the same fields, so anyone can
/// recompute it.
pub fn leaf_data(e: &StoredAuditEvent) -> Vec<u8> {
    let f = LeafFields {
        seq: e.seq,
        at: e.at,
        kind: &e.kind,
        subject: e.subject.as_deref(),
        client_id: e.client_id.as_deref(),
        jti: e.jti.as_deref(),
    };
    of_stored(f, &e.detail)
}

/// [`leaf_data`] from the fields, with `detail` as stored (JSON text, or any text).
pub(super) fn of_stored(f: LeafFields<'_>, detail: &str) -> Vec<u8> {
    fields(f, detail.len(), |out| {
        if is_canonical(detail.as_bytes()) {
            out.push_str(detail);
        } else {
            canonical(&detail_value(detail), out);
        }
    })
}

/// [`leaf_data`] from the fields, with `detail` as the admin API serves it.
pub fn leaf_data_of(f: LeafFields<'_>, detail: &serde_json::Value) -> Vec<u8> {
    fields(f, 64, |out| canonical(detail, out))
}

/// The leaf's object, its keys in byte order, with `detail` written by `detail`.
fn fields(f: LeafFields<'_>, detail_len: usize, detail: impl FnOnce(&mut String)) -> Vec<u8> {
    let LeafFields { seq, at, kind, subject, client_id, jti } = f;
    let mut out = String::with_capacity(
        96 + kind.len() + detail_len + [subject, client_id, jti].map(text_len).iter().sum::<usize>(),
    );
    out.push_str("{\"at\":");
    let _ = write!(out, "{at}");
    out.push_str(",\"client_id\":");
    text_or_null(client_id, &mut out);
    out.push_str(",\"detail\":");
    detail(&mut out);
    out.push_str(",\"jti\":");
    text_or_null(jti, &mut out);
    out.push_str(",\"kind\":");
    text(kind, &mut out);
    out.push_str(",\"seq\":");
    let _ = write!(out, "{seq}");
    out.push_str(",\"subject\":");
    text_or_null(subject, &mut out);
    out.push('}');
    out.into_bytes()
}

fn text_len(s: Option<&str>) -> usize {
    s.map_or(4, |s| s.len() + 2)
}

/// A JSON string, escaped as serde_json escapes it.
fn text(s: &str, out: &mut String) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
    }
}

fn text_or_null(s: Option<&str>, out: &mut String) {
    match s {
        Some(s) => text(s, out),
        None => out.push_str("null"),
    }
}

/// JSON with object keys sorted (by bytes) and no whitespace: one text for one value, whatever map order the
/// JSON library keeps.
pub fn canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            joined(out, ('{', '}'), keys, |key, out| {
                text(key, out);
                out.push(':');
                canonical(&map[key], out);
            });
        }
        serde_json::Value::Array(items) => joined(out, ('[', ']'), items, canonical),
        serde_json::Value::String(s) => text(s, out),
        other => out.push_str(&other.to_string()),
    }
}

/// `items` written by `each`, between `brackets`, separated by commas.
fn joined<T>(
    out: &mut String,
    brackets: (char, char),
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(T, &mut String),
) {
    out.push(brackets.0);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(item, out);
    }
    out.push(brackets.1);
}

/// Whether `raw` is already what [`canonical`] makes of it: JSON with no whitespace, object keys strictly
/// increasing, strings without escapes or control characters, integers of at most 18 digits (never `-0`), and
/// at most [`MAX_DEPTH`] deep. Anything else (even when it would come out the same) answers false, and takes the
/// general path.
fn is_canonical(raw: &[u8]) -> bool {
    let mut scan = Scan { b: raw, i: 0 };
    scan.value(0) && scan.i == raw.len()
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.i += usize::from(hit);
        hit
    }

    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'{') if depth < MAX_DEPTH => self.object(depth),
            Some(b'[') if depth < MAX_DEPTH => self.array(depth),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.integer(),
            _ => false,
        }
    }

    fn object(&mut self, depth: usize) -> bool {
        let mut previous: Option<&'a [u8]> = None;
        self.sequence(b'}', |scan| {
            let Some(key) = scan.string() else { return false };
            let increasing = previous.is_none_or(|p| p < key);
            previous = Some(key);
            increasing && scan.eat(b':') && scan.value(depth + 1)
        })
    }

    fn array(&mut self, depth: usize) -> bool {
        self.sequence(b']', |scan| scan.value(depth + 1))
    }

    /// The elements of an object or array (past its opening bracket), comma-separated, up to `close`.
    fn sequence(&mut self, close: u8, mut element: impl FnMut(&mut Self) -> bool) -> bool {
        self.i += 1;
        if self.eat(close) {
            return true;
        }
        loop {
            if !element(self) {
                return false;
            }
            if self.eat(close) {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    /// A string's content, if it needs no escaping.
    fn string(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        let len = self.b[start..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        self.i = start + len;
        if !self.eat(b'"') {
            return None;
        }
        Some(&self.b[start..start + len])
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let hit = self.b[self.i..].starts_with(word);
        self.i += if hit { word.len() } else { 0 };
        hit
    }

    fn integer(&mut self) -> bool {
        let negative = self.eat(b'-');
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        let fraction_or_exponent = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        match digits {
            [] => false,
            [b'0'] => !negative && !fraction_or_exponent,
            [b'0', ..] => false,
            _ => digits.len() <= 18 && !fraction_or_exponent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn general(raw: &str) -> String {
        let mut out = String::new();
        canonical(&detail_value(raw), &mut out);
        out
    }

    fn fast(raw: &str) -> String {
        let f = LeafFields { seq: 1, at: 2, kind: "k", subject: None, client_id: None, jti: None };
        let leaf = String::from_utf8(of_stored(f, raw)).unwrap();
        let general = String::from_utf8(leaf_data_of(f, &detail_value(raw))).unwrap();
        assert_eq!(leaf, general, "both paths make one leaf for {raw:?}");
        leaf
    }

    #[test]
    fn canonical_details_are_recognised_and_others_are_not() {
        for raw in [
            "{}",
            "[]",
            r#"{"a":1,"b":[true,false,null],"c":{"d":"é"}}"#,
            r#"{"aud":["api"],"grant":"client_credentials","jkt":null,"scope":"read","sid":null}"#,
            "-12",
            "0",
            "123456789012345678",
            "\"x\u{7f}\"",
        ] {
            assert!(is_canonical(raw.as_bytes()), "{raw}");
            assert_eq!(general(raw), raw);
            fast(raw);
        }
        for raw in [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a": 1}"#,
            " {}",
            "{} ",
            "1.0",
            "1e3",
            "-0",
            "01",
            "1234567890123456789",
            r#""a\"b""#,
            r#""\u0041""#,
            "\"tab\there\"",
            "[1,]",
            "{\"a\"}",
            "not json",
            "",
            "[",
            "tru",
        ] {
            assert!(!is_canonical(raw.as_bytes()), "{raw}");
            fast(raw);
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(!is_canonical(deep.as_bytes()));
        fast(&deep);
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        for s in ["plain", "quo\"te", "back\\slash", "nl\n", "\u{1}", "é\u{7f}"] {
            let mut out = String::new();
            text(s, &mut out);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            (-1e6f64..1e6).prop_map(serde_json::Value::from),
            "[a-c\"\\\\\u{0}-\u{1f}é ]{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-d\"]{0,3}", inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The fast path makes the same leaf as the general one for any JSON, compact or pretty.
        #[test]
        fn fast_leaf_matches_the_general_one(value in json()) {
            let compact = serde_json::to_string(&value).unwrap();
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            fast(&compact);
            fast(&pretty);
        }
    }
}
