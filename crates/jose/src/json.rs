//! A strict, zero-copy JSON scanner for the JSON that JOSE trusts: headers, claims sets and keys.
//!
//! It accepts RFC 8259 JSON with the I-JSON rules of RFC 7493 on top, and refuses what lenient parsers let
//! through and attackers use to make two parsers disagree: a member name twice in one object (at any depth,
//! compared after unescaping), lone surrogates, numbers outside `i64` (integers) or finite `f64` (others),
//! nesting beyond a limit, and trailing data.
//!
//! One pass validates the whole text and records the top-level members as slices of it; nothing is copied.
//! Nested values are validated in that pass and can be walked again on demand ([`RawValue::items`],
//! [`RawValue::members`]), or handed as text to `serde_json` once they are known to be strict.

use std::borrow::Cow;

use smallvec::SmallVec;

use crate::error::JsonError;

/// The default nesting limit: objects and arrays deeper than this are refused.
pub const DEFAULT_MAX_DEPTH: usize = 16;

/// Above this many members, duplicate names are found by sorting rather than by pairwise comparison.
const LINEAR_DUP_CHECK: usize = 32;

/// The contents of a JSON string, as written between the quotes.
#[derive(Debug, Clone, Copy)]
pub struct JsonStr<'a> {
    raw: &'a str,
    /// Bit 31: the raw text has escapes. For member names, the other bits are a fingerprint (the length's low
    /// 31 bits and four bytes of the raw text), so that different fingerprints mean different unescaped names; 0
    /// for other strings, which are never compared this way. One word with no padding: a string with a separate
    /// flag byte is copied in odd-sized pieces, which stall the store-to-load forwarding when read back whole.
    meta: u64,
}

const ESCAPED: u64 = 1 << 31;

fn fingerprint(raw: &[u8]) -> u64 {
    let at = |i: usize| raw.get(i).copied().map_or(0, u64::from);
    let n = raw.len();
    (n as u64 & (ESCAPED - 1)) | at(0) << 32 | at(1) << 40 | at(n.wrapping_sub(1)) << 48 | at(n.wrapping_sub(2)) << 56
}

impl<'a> JsonStr<'a> {
    /// The text between the quotes, escapes not yet decoded.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// True when the raw text has escapes to decode.
    #[inline]
    pub fn is_escaped(&self) -> bool {
        self.meta & ESCAPED != 0
    }

    /// Rebuilds a string from raw text the parser already validated.
    pub(crate) fn from_raw(raw: &'a str, escaped: bool) -> Self {
        JsonStr { raw, meta: if escaped { ESCAPED } else { 0 } }
    }

    /// True when the decoded string equals `s`. Free of allocation unless the string has escapes.
    pub fn is(&self, s: &str) -> bool {
        if self.is_escaped() {
            self.to_cow() == s
        } else {
            self.raw == s
        }
    }

    /// The decoded string; borrowed unless it had escapes.
    #[inline]
    pub fn to_cow(&self) -> Cow<'a, str> {
        if self.is_escaped() {
            Cow::Owned(unescape(self.raw))
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// Inlined: most names differ in their fingerprints, which is one comparison.
    #[inline]
    fn same_as(&self, other: &JsonStr<'_>) -> bool {
        if (self.meta | other.meta) & ESCAPED == 0 {
            self.meta == other.meta && self.raw == other.raw
        } else {
            self.to_cow() == other.to_cow()
        }
    }
}

/// What a value is. Numbers are already range-checked.
#[derive(Debug, Clone, Copy)]
pub enum Kind<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(JsonStr<'a>),
    Array,
    Object,
}

/// A validated JSON value: its kind, and its exact text.
#[derive(Debug, Clone, Copy)]
pub struct RawValue<'a> {
    text: &'a str,
    kind: Kind<'a>,
    max_depth: usize,
}

/// One member of an object.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub key: JsonStr<'a>,
    pub value: RawValue<'a>,
}

impl<'a> RawValue<'a> {
    /// The value's JSON text, exactly as it appeared.
    pub fn text(&self) -> &'a str {
        self.text
    }

    pub fn kind(&self) -> Kind<'a> {
        self.kind
    }

    pub fn as_str(&self) -> Option<JsonStr<'a>> {
        match self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            Kind::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of an array, or `None` if this is not an array.
    pub fn items(&self) -> Option<Vec<RawValue<'a>>> {
        if !matches!(self.kind, Kind::Array) {
            return None;
        }
        let mut p = Parser::new(self.text, self.max_depth);
        let mut out = Vec::new();
        p.parse_array(Some(&mut out)).ok()?;
        Some(out)
    }

    /// The members of an object, or `None` if this is not an object.
    pub fn members(&self) -> Option<Vec<Member<'a>>> {
        if !matches!(self.kind, Kind::Object) {
            return None;
        }
        parse_object(self.text, self.max_depth).ok()
    }
}

/// Parses a JSON text whose top level must be an object, returning its members in order.
pub fn parse_object(text: &str, max_depth: usize) -> Result<Vec<Member<'_>>, JsonError> {
    // Eight members fit most headers and keys, in an allocation small enough for the allocator's fast path.
    let mut members = Vec::with_capacity(8);
    parse_top_object(text, max_depth, Out::Members(&mut members))?;
    Ok(members)
}

/// Parses a JSON text whose top level must be an object, handing each top-level member (name and value) to
/// `visit` in order, without collecting them. `visit` sees members as they are parsed, so a later syntax error
/// can follow a member it was shown: the text is strict only when this returns `Ok`.
pub fn visit_object<'a>(
    text: &'a str,
    max_depth: usize,
    visit: &mut dyn FnMut(&JsonStr<'a>, &RawValue<'a>),
) -> Result<(), JsonError> {
    parse_top_object(text, max_depth, Out::Visit(visit))
}

fn parse_top_object<'a>(text: &'a str, max_depth: usize, out: Out<'_, 'a>) -> Result<(), JsonError> {
    let mut p = Parser::new(text, max_depth);
    p.skip_ws();
    if p.peek() != Some(b'{') {
        // Distinguish "valid JSON but not an object" from "not JSON".
        p.parse_value(Out::Nothing)?;
        p.finish()?;
        return Err(JsonError::NotAnObject);
    }
    p.parse_object(out)?;
    p.finish()
}

/// Validates a JSON text of any kind and returns it as a value.
pub fn parse_value(text: &str, max_depth: usize) -> Result<RawValue<'_>, JsonError> {
    let mut p = Parser::new(text, max_depth);
    let v = p.parse_value(Out::Nothing)?;
    p.finish()?;
    Ok(v)
}

/// Parses a byte slice that must be UTF-8 JSON with an object at the top.
pub fn parse_object_bytes(bytes: &[u8], max_depth: usize) -> Result<Vec<Member<'_>>, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::InvalidUnicode)?;
    parse_object(text, max_depth)
}

/// Finds a member by name.
pub fn find<'a, 'm>(members: &'m [Member<'a>], name: &str) -> Option<&'m RawValue<'a>> {
    members.iter().find(|m| m.key.is(name)).map(|m| &m.value)
}

/// Where an object's members go: a list, a visitor, or nowhere (nested values, validated only).
enum Out<'o, 'a> {
    Nothing,
    Members(&'o mut Vec<Member<'a>>),
    Visit(&'o mut dyn FnMut(&JsonStr<'a>, &RawValue<'a>)),
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    max_depth: usize,
    /// Member names of the objects being parsed, innermost last; each object owns a tail of it. On the stack
    /// up to a size that holds a claims set's names.
    keys: SmallVec<[JsonStr<'a>; 24]>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, max_depth: usize) -> Self {
        Parser { text, bytes: text.as_bytes(), pos: 0, depth: 0, max_depth, keys: SmallVec::new() }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), JsonError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(JsonError::Syntax)
        }
    }

    fn finish(&mut self) -> Result<(), JsonError> {
        self.skip_ws();
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(JsonError::Syntax)
        }
    }

    fn value_from(&self, start: usize, kind: Kind<'a>) -> RawValue<'a> {
        RawValue { text: &self.text[start..self.pos], kind, max_depth: self.max_depth }
    }

    // Inlined (as is `parse_string`) so that a value stays in registers: returned through memory, it is read back
    // in wider loads than it was written in, and each member then stalls the store-to-load forwarding.
    #[inline(always)]
    fn parse_value(&mut self, out: Out<'_, 'a>) -> Result<RawValue<'a>, JsonError> {
        self.skip_ws();
        let start = self.pos;
        let kind = match self.peek().ok_or(JsonError::Syntax)? {
            b'{' => {
                self.parse_object(out)?;
                Kind::Object
            }
            b'[' => {
                self.parse_array(None)?;
                Kind::Array
            }
            b'"' => Kind::Str(self.parse_string()?),
            b't' => self.literal("true", Kind::Bool(true))?,
            b'f' => self.literal("false", Kind::Bool(false))?,
            b'n' => self.literal("null", Kind::Null)?,
            b'-' | b'0'..=b'9' => self.parse_number()?,
            _ => return Err(JsonError::Syntax),
        };
        Ok(self.value_from(start, kind))
    }

    fn literal(&mut self, word: &str, kind: Kind<'a>) -> Result<Kind<'a>, JsonError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(kind)
        } else {
            Err(JsonError::Syntax)
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            Err(JsonError::TooDeep)
        } else {
            Ok(())
        }
    }

    fn parse_object(&mut self, mut out: Out<'_, 'a>) -> Result<(), JsonError> {
        self.enter()?;
        self.expect(b'{')?;
        // Member names seen so far: the list's own when members are collected, else the scratch list.
        let out_mark = match &out {
            Out::Members(out) => out.len(),
            _ => 0,
        };
        let mark = self.keys.len();
        // A 64-bit filter of the names' fingerprints: a name whose bit is not set yet cannot be a repeat, so the
        // siblings are compared only on a hit. Escaped names have fingerprints of their raw text, so once one is
        // seen every name is compared.
        let mut seen = 0u64;
        let mut escapes = false;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                if self.peek() != Some(b'"') {
                    return Err(JsonError::Syntax);
                }
                let mut key = self.parse_string()?;
                key.meta |= fingerprint(key.raw.as_bytes());
                let bit = 1u64 << (key.meta.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58);
                escapes |= key.is_escaped();
                let maybe_repeat = escapes || seen & bit != 0;
                seen |= bit;
                let duplicate = maybe_repeat
                    && match &out {
                        Out::Members(out) => {
                            let siblings = &out[out_mark..];
                            siblings.len() < LINEAR_DUP_CHECK && siblings.iter().any(|m| m.key.same_as(&key))
                        }
                        Out::Nothing | Out::Visit(_) => {
                            let siblings = &self.keys[mark..];
                            siblings.len() < LINEAR_DUP_CHECK && siblings.iter().any(|k| k.same_as(&key))
                        }
                    };
                if duplicate {
                    return Err(JsonError::DuplicateMember);
                }
                self.skip_ws();
                self.expect(b':')?;
                let value = self.parse_value(Out::Nothing)?;
                match &mut out {
                    Out::Members(out) => out.push(Member { key, value }),
                    Out::Visit(visit) => {
                        self.keys.push(key);
                        // By reference, in place: a `Member` built here would be copied byte by byte.
                        visit(&key, &value);
                    }
                    Out::Nothing => self.keys.push(key),
                }
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(JsonError::Syntax),
                }
            }
        }
        let names: Vec<JsonStr<'a>> = match &out {
            Out::Members(out) if out.len() - out_mark > LINEAR_DUP_CHECK => {
                out[out_mark..].iter().map(|m| m.key).collect()
            }
            Out::Nothing | Out::Visit(_) if self.keys.len() - mark > LINEAR_DUP_CHECK => self.keys[mark..].to_vec(),
            _ => Vec::new(),
        };
        if !names.is_empty() {
            let mut names: Vec<Cow<'a, str>> = names.iter().map(JsonStr::to_cow).collect();
            names.sort_unstable();
            if names.windows(2).any(|w| w[0] == w[1]) {
                return Err(JsonError::DuplicateMember);
            }
        }
        self.keys.truncate(mark);
        self.depth -= 1;
        Ok(())
    }

    fn parse_array(&mut self, mut out: Option<&mut Vec<RawValue<'a>>>) -> Result<(), JsonError> {
        self.enter()?;
        self.expect(b'[')?;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                let v = self.parse_value(Out::Nothing)?;
                if let Some(out) = out.as_deref_mut() {
                    out.push(v);
                }
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(JsonError::Syntax),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    #[inline(always)]
    fn parse_string(&mut self) -> Result<JsonStr<'a>, JsonError> {
        self.expect(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Skip eight ordinary bytes at a time. A closing quote with nothing special before it ends the string
            // here, found from the masks alone; a backslash or control byte first goes to the byte-wise checks.
            while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let (quote, other) = special_bytes(u64::from_le_bytes(word));
                if quote | other != 0 {
                    let (q, o) = (quote.trailing_zeros(), other.trailing_zeros());
                    self.pos += (q.min(o) / 8) as usize;
                    if q < o {
                        let raw = self.slice(start)?;
                        self.pos += 1;
                        return Ok(JsonStr::from_raw(raw, escaped));
                    }
                    break;
                }
                self.pos += 8;
            }
            let b = *self.bytes.get(self.pos).ok_or(JsonError::Syntax)?;
            match b {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek().ok_or(JsonError::Syntax)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            self.pos += 1;
                            let unit = self.hex4()?;
                            if (0xD800..0xDC00).contains(&unit) {
                                // A high surrogate must be followed by an escaped low surrogate.
                                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    return Err(JsonError::InvalidUnicode);
                                }
                                self.pos += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(JsonError::InvalidUnicode);
                                }
                            } else if (0xDC00..0xE000).contains(&unit) {
                                return Err(JsonError::InvalidUnicode);
                            }
                        }
                        _ => return Err(JsonError::Syntax),
                    }
                }
                0x00..=0x1F => return Err(JsonError::Syntax),
                _ => self.pos += 1,
            }
        }
        let raw = self.slice(start)?;
        self.pos += 1;
        Ok(JsonStr::from_raw(raw, escaped))
    }

    /// The text from `start` to the current position. Both ends are at quotes, so at character boundaries; the
    /// `split_at` checks inline where the range index's are a call per string.
    #[inline(always)]
    fn slice(&self, start: usize) -> Result<&'a str, JsonError> {
        let (before, _) = self.text.split_at_checked(self.pos).ok_or(JsonError::Syntax)?;
        Ok(before.split_at_checked(start).ok_or(JsonError::Syntax)?.1)
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(JsonError::Syntax)?;
        let mut v = 0u32;
        for &d in digits {
            v = v * 16 + (d as char).to_digit(16).ok_or(JsonError::Syntax)?;
        }
        self.pos += 4;
        Ok(v)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn parse_number(&mut self) -> Result<Kind<'a>, JsonError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        // The integer part accumulates as it is read: eighteen digits cannot overflow.
        let mut magnitude = 0u64;
        while let Some(&d @ b'0'..=b'9') = self.bytes.get(self.pos) {
            magnitude = magnitude.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            self.pos += 1;
        }
        let int_len = self.pos - int_start;
        if int_len == 0 || (int_len > 1 && self.bytes[int_start] == b'0') {
            return Err(JsonError::Syntax);
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
            integral = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
            integral = false;
        }
        if integral && int_len <= 18 {
            let v = i64::try_from(magnitude).map_err(|_| JsonError::NumberOutOfRange)?;
            Ok(Kind::Int(if negative { -v } else { v }))
        } else if integral {
            // Accumulate negatively so that i64::MIN is representable.
            let mut v: i64 = 0;
            for &d in &self.bytes[int_start..int_start + int_len] {
                v = v
                    .checked_mul(10)
                    .and_then(|v| v.checked_sub(i64::from(d - b'0')))
                    .ok_or(JsonError::NumberOutOfRange)?;
            }
            let v = if negative { Some(v) } else { v.checked_neg() };
            v.map(Kind::Int).ok_or(JsonError::NumberOutOfRange)
        } else {
            let f: f64 = self.text[start..self.pos].parse().map_err(|_| JsonError::Syntax)?;
            if f.is_finite() {
                Ok(Kind::Float(f))
            } else {
                Err(JsonError::NumberOutOfRange)
            }
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Two masks over the bytes of `v` (little-endian): the lowest set bit of the first is the high bit of the first
/// `"`, that of the second the high bit of the first `\\` or byte below 0x20; 0 when there is none. (Higher bits
/// may be set spuriously by borrows; the lowest one of each mask is exact.)
#[inline(always)]
fn special_bytes(v: u64) -> (u64, u64) {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = zero(v ^ (ONES * u64::from(b'"')));
    let other = zero(v ^ (ONES * u64::from(b'\\'))) | (v.wrapping_sub(ONES * 0x20) & !v & HIGHS);
    (quote, other)
}

/// Decodes the escapes of a string the parser has already validated.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let unit = hex_unit(&mut chars);
                let code = if (0xD800..0xDC00).contains(&unit) {
                    chars.next(); // '\\'
                    chars.next(); // 'u'
                    let low = hex_unit(&mut chars);
                    0x10000 + ((unit - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF)
                } else {
                    unit
                };
                out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn hex_unit(chars: &mut std::str::Chars<'_>) -> u32 {
    (0..4).fold(0, |v, _| v * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0))
}

/// Writes `s` as a JSON string literal (quotes included) to `out`.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses with `parse_object`, and checks that `visit_object` shows the same members or fails the same way.
    fn obj(text: &str) -> Result<Vec<Member<'_>>, JsonError> {
        let listed = parse_object(text, DEFAULT_MAX_DEPTH);
        let mut visited = Vec::new();
        let walked = visit_object(text, DEFAULT_MAX_DEPTH, &mut |k, v| visited.push((k.raw(), v.text())));
        match (&listed, walked) {
            (Ok(members), Ok(())) => {
                let listed: Vec<_> = members.iter().map(|m| (m.key.raw(), m.value.text())).collect();
                assert_eq!(listed, visited, "{text}");
            }
            (Err(a), Err(b)) => assert_eq!(*a, b, "{text}"),
            (a, b) => panic!("parse_object {a:?} but visit_object {b:?} for {text}"),
        }
        listed
    }

    #[test]
    fn accepts_ordinary_objects() {
        let m = obj(r#" {"a": 1, "b": [true, false, null, -0.5e3, "x\u00e9\ud83d\ude00"], "c": {"d": {}}} "#).unwrap();
        assert_eq!(m.len(), 3);
        assert!(m[0].key.is("a"));
        assert_eq!(m[0].value.as_i64(), Some(1));
        let items = m[1].value.items().unwrap();
        assert_eq!(items.len(), 5);
        assert_eq!(items[4].as_str().unwrap().to_cow(), "xé😀");
        assert_eq!(m[2].value.members().unwrap().len(), 1);
    }

    #[test]
    fn refuses_duplicates_at_any_depth_and_after_unescaping() {
        assert_eq!(obj(r#"{"a":1,"a":2}"#).unwrap_err(), JsonError::DuplicateMember);
        assert_eq!(obj(r#"{"a":1,"\u0061":2}"#).unwrap_err(), JsonError::DuplicateMember);
        assert_eq!(obj(r#"{"\u0061":1,"b":2,"a":3}"#).unwrap_err(), JsonError::DuplicateMember);
        // Every repeat is found whichever names share a bit of the fingerprint filter.
        for n in 1..40 {
            let names: Vec<String> = (0..n).map(|i| format!("\"name{i}\":{i}")).collect();
            assert!(obj(&format!("{{{}}}", names.join(","))).is_ok());
            for repeat in 0..n {
                let text = format!("{{{},\"name{repeat}\":0}}", names.join(","));
                assert_eq!(obj(&text).unwrap_err(), JsonError::DuplicateMember, "{text}");
            }
        }
        assert_eq!(obj(r#"{"x":{"b":1,"b":1}}"#).unwrap_err(), JsonError::DuplicateMember);
        assert_eq!(obj(r#"{"x":[{"b":1,"b":1}]}"#).unwrap_err(), JsonError::DuplicateMember);
        // The same name in sibling objects is fine.
        assert!(obj(r#"{"x":{"b":1},"y":{"b":1}}"#).is_ok());
        // Large objects take the sorting path.
        let mut big: String = (0..100).map(|i| format!("\"k{i}\":{i},")).collect();
        big.push_str("\"k7\":0");
        assert_eq!(obj(&format!("{{{big}}}")).unwrap_err(), JsonError::DuplicateMember);
        let ok: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(obj(&format!("{{{}}}", ok.join(","))).is_ok());
    }

    #[test]
    fn refuses_deep_nesting() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(20), "]".repeat(20));
        assert_eq!(obj(&deep).unwrap_err(), JsonError::TooDeep);
        let shallow = format!("{{\"a\":{}1{}}}", "[".repeat(10), "]".repeat(10));
        assert!(obj(&shallow).is_ok());
        // A huge nesting depth must fail fast, not overflow the stack.
        let hostile = "[".repeat(1_000_000);
        assert_eq!(parse_value(&hostile, DEFAULT_MAX_DEPTH).unwrap_err(), JsonError::TooDeep);
    }

    #[test]
    fn numbers_are_range_checked() {
        assert_eq!(obj(r#"{"n":9223372036854775807}"#).unwrap()[0].value.as_i64(), Some(i64::MAX));
        assert_eq!(obj(r#"{"n":-9223372036854775808}"#).unwrap()[0].value.as_i64(), Some(i64::MIN));
        assert_eq!(obj(r#"{"n":9223372036854775808}"#).unwrap_err(), JsonError::NumberOutOfRange);
        assert_eq!(obj(r#"{"n":1e400}"#).unwrap_err(), JsonError::NumberOutOfRange);
        for bad in [r#"{"n":01}"#, r#"{"n":1.}"#, r#"{"n":.5}"#, r#"{"n":+1}"#, r#"{"n":1e}"#, r#"{"n":-}"#] {
            assert_eq!(obj(bad).unwrap_err(), JsonError::Syntax, "{bad}");
        }
        // Integers of every length, either side of the unchecked fast path's eighteen digits, agree with std.
        for len in 1..=21 {
            for lead in [b'1', b'5', b'9'] {
                for fill in [b'0', b'3', b'9'] {
                    let digits: String =
                        std::iter::once(lead).chain(std::iter::repeat_n(fill, len - 1)).map(char::from).collect();
                    for text in [digits.clone(), format!("-{digits}")] {
                        let ours = obj(&format!(r#"{{"n":{text}}}"#)).map(|m| m[0].value.as_i64());
                        let std = text.parse::<i64>().map_err(|_| JsonError::NumberOutOfRange).map(Some);
                        assert_eq!(ours, std, "{text}");
                    }
                }
            }
        }
        assert_eq!(obj(r#"{"n":-0}"#).unwrap()[0].value.as_i64(), Some(0));
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in [
            "",
            "{",
            "{}x",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{'a':1}",
            "{\"a\":tru}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":[1,]}",
            "{\"a\":1 \"b\":2}",
        ] {
            assert!(obj(bad).is_err(), "{bad:?}");
        }
        assert_eq!(obj("[1]").unwrap_err(), JsonError::NotAnObject);
        assert_eq!(obj(r#"{"a":"\ud800"}"#).unwrap_err(), JsonError::InvalidUnicode);
        assert_eq!(obj(r#"{"a":"\udc00"}"#).unwrap_err(), JsonError::InvalidUnicode);
        assert_eq!(obj(r#"{"a":"\ud800\u0041"}"#).unwrap_err(), JsonError::InvalidUnicode);
        assert_eq!(parse_object_bytes(b"{\"a\":\"\xff\"}", 16).unwrap_err(), JsonError::InvalidUnicode);
    }

    #[test]
    fn the_word_at_a_time_scan_finds_every_special_byte() {
        // The first special byte is found exactly, whatever ordinary bytes come before it and whatever (special
        // or not) comes after it.
        let ordinary = [b'a', 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff];
        let any = [b'"', b'\\', 0x00, 0x01, 0x1f, 0x0a, b'a', 0x20, 0x80, 0xff];
        for special in [b'"', b'\\', 0x00, 0x1f, 0x0a] {
            for pos in 0..8 {
                for i in 0..ordinary.len() {
                    for &after in &any {
                        let mut w = [after; 8];
                        w[..pos].iter_mut().enumerate().for_each(|(k, b)| *b = ordinary[(i + k) % ordinary.len()]);
                        w[pos] = special;
                        let (quote, other) = special_bytes(u64::from_le_bytes(w));
                        assert_eq!((quote | other).trailing_zeros() as usize / 8, pos, "{w:x?}");
                        // Which kind comes first is exact too: the string ends there only at a quote.
                        let first = if special == b'"' { quote } else { other };
                        assert_eq!(first.trailing_zeros() as usize / 8, pos, "{w:x?}");
                    }
                }
            }
        }
        for plain in [*b"abcdefgh", [0x20; 8], [0xff; 8], [0x7f; 8], *b"\xc3\xa9 \xf0\x9f\x98\x80!"] {
            assert_eq!(special_bytes(u64::from_le_bytes(plain)), (0, 0), "{plain:?}");
        }
        // Strings longer than a word, with the special byte at every offset.
        for len in 0..40 {
            let body = "x".repeat(len);
            assert_eq!(obj(&format!("{{\"k\":\"{body}\"}}")).unwrap()[0].value.as_str().unwrap().raw(), body);
            assert!(obj(&format!("{{\"k\":\"{body}\u{1}\"}}")).is_err());
            // An escaped quote in the same word as the closing one does not end the string.
            let escaped = format!("{body}\\\"z");
            let text = format!("{{\"k\":\"{escaped}\"}}");
            let members = obj(&text).unwrap();
            let value = members[0].value.as_str().unwrap();
            assert_eq!((value.raw(), value.is_escaped()), (escaped.as_str(), true));
            assert_eq!(value.to_cow(), format!("{body}\"z"));
        }
    }

    #[test]
    fn write_str_round_trips_through_the_parser() {
        for s in ["plain", "quote\" back\\ nl\n tab\t ctl\u{1} é 😀"] {
            let mut out = String::from("{\"k\":");
            write_str(&mut out, s);
            out.push('}');
            let m = obj(&out).unwrap();
            assert_eq!(m[0].value.as_str().unwrap().to_cow(), s);
        }
    }
}
