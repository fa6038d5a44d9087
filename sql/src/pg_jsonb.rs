//! `jsonb` values as PostgreSQL reads, prints and queries them. A jsonb value is kept as its
//! text in PostgreSQL's canonical form — object keys sorted (shorter first, then bytewise),
//! a duplicate key's last value kept, `": "` and `", "` between items, numbers in numeric's
//! form (`1.50` stays `1.50`, `1e2` is `100`) — so equal values have equal text. This module
//! parses such text (any valid JSON), prints it back, and answers the operators (`->`, `->>`,
//! `#>`, `@>`, `?`) over the parsed values.

use std::fmt::Write;

use freshet_common::{PgError, SqlState};

/// A parsed JSON value; numbers keep their (canonical) text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Sorted as jsonb sorts keys, without duplicates.
    Object(Vec<(String, Json)>),
}

/// 22P02 for text that is not JSON, as PostgreSQL says it.
fn invalid(text: &str, detail: &str) -> PgError {
    PgError::new(
        SqlState::INVALID_TEXT_REPRESENTATION,
        format!("invalid input syntax for type json: \"{text}\""),
    )
    .with_detail(detail.to_owned())
}

/// Parses `text` as JSON.
pub fn parse(text: &str) -> Result<Json, PgError> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
        text,
    };
    let v = p.value(0)?;
    p.skip_ws();
    if p.at != p.s.len() {
        return Err(invalid(text, "Expected end of input, but found more."));
    }
    Ok(v)
}

/// `text` in jsonb's canonical form (22P02 when it is not JSON).
pub fn normalize(text: &str) -> Result<String, PgError> {
    Ok(to_text(&parse(text)?))
}

/// A value's jsonb text.
pub fn to_text(v: &Json) -> String {
    let mut s = String::new();
    write_value(v, &mut s);
    s
}

fn write_value(v: &Json, s: &mut String) {
    match v {
        Json::Null => s.push_str("null"),
        Json::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => s.push_str(n),
        Json::String(t) => write_string(t, s),
        Json::Array(items) => {
            s.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_value(item, s);
            }
            s.push(']');
        }
        Json::Object(fields) => {
            s.push('{');
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_string(k, s);
                s.push_str(": ");
                write_value(item, s);
            }
            s.push('}');
        }
    }
}

fn write_string(t: &str, s: &mut String) {
    s.push('"');
    for c in t.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '\u{8}' => s.push_str("\\b"),
            '\u{c}' => s.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

/// jsonb's key order: shorter keys first, then bytewise.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    text: &'a str,
}

/// Nesting deeper than this is refused (54001), as PostgreSQL's stack depth check would:
/// parsing, printing and containment recurse once per level.
const MAX_DEPTH: usize = 1000;

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.at < self.s.len() && matches!(self.s[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn bad(&self) -> PgError {
        if self.at >= self.s.len() {
            return invalid(self.text, "The input string ended unexpectedly.");
        }
        let rest = &self.text[self.at..];
        let token: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let token = if token.is_empty() {
            rest.chars().next().map(String::from).unwrap_or_default()
        } else {
            token
        };
        invalid(self.text, &format!("Token \"{token}\" is invalid."))
    }

    fn value(&mut self, depth: usize) -> Result<Json, PgError> {
        if depth > MAX_DEPTH {
            return Err(PgError::new(
                SqlState("54001"),
                "stack depth limit exceeded".to_owned(),
            ));
        }
        self.skip_ws();
        let Some(&c) = self.s.get(self.at) else {
            return Err(self.bad());
        };
        match c {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => Ok(Json::String(self.string()?)),
            b't' if self.s[self.at..].starts_with(b"true") => {
                self.at += 4;
                Ok(Json::Bool(true))
            }
            b'f' if self.s[self.at..].starts_with(b"false") => {
                self.at += 5;
                Ok(Json::Bool(false))
            }
            b'n' if self.s[self.at..].starts_with(b"null") => {
                self.at += 4;
                Ok(Json::Null)
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.bad()),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, PgError> {
        self.at += 1;
        let mut fields: Vec<(String, Json)> = Vec::new();
        self.skip_ws();
        if self.s.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Ok(Json::Object(fields));
        }
        loop {
            self.skip_ws();
            if self.s.get(self.at) != Some(&b'"') {
                return Err(self.bad());
            }
            let key = self.string()?;
            self.skip_ws();
            if self.s.get(self.at) != Some(&b':') {
                return Err(self.bad());
            }
            self.at += 1;
            let v = self.value(depth + 1)?;
            match fields.binary_search_by(|(k, _)| key_order(k, &key)) {
                Ok(i) => fields[i].1 = v,
                Err(i) => fields.insert(i, (key, v)),
            }
            self.skip_ws();
            match self.s.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Json::Object(fields));
                }
                _ => return Err(self.bad()),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, PgError> {
        self.at += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.s.get(self.at) == Some(&b']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.s.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.bad()),
            }
        }
    }

    fn string(&mut self) -> Result<String, PgError> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let Some(&c) = self.s.get(self.at) else {
                return Err(self.bad());
            };
            match c {
                b'"' => {
                    self.at += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let Some(&e) = self.s.get(self.at + 1) else {
                        return Err(self.bad());
                    };
                    self.at += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => {
                            return Err(invalid(
                                self.text,
                                &format!("Escape sequence \"\\{}\" is invalid.", e as char),
                            ))
                        }
                    }
                }
                c if c < 0x20 => {
                    return Err(invalid(
                        self.text,
                        &format!("Character with value 0x{c:02x} must be escaped."),
                    ))
                }
                _ => {
                    // Copy one UTF-8 character.
                    let rest = &self.text[self.at..];
                    let ch = rest.chars().next().ok_or_else(|| self.bad())?;
                    out.push(ch);
                    self.at += ch.len_utf8();
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, PgError> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.bad())?;
        let v = u32::from_str_radix(digits, 16).map_err(|_| {
            invalid(
                self.text,
                "\"\\u\" must be followed by four hexadecimal digits.",
            )
        })?;
        self.at += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, PgError> {
        let hi = self.hex4()?;
        if hi == 0 {
            return Err(PgError::new(
                SqlState("22P05"),
                "unsupported Unicode escape sequence".to_owned(),
            )
            .with_detail("\\u0000 cannot be converted to text.".to_owned()));
        }
        if (0xD800..0xDC00).contains(&hi) {
            if self.s.get(self.at) == Some(&b'\\') && self.s.get(self.at + 1) == Some(&b'u') {
                self.at += 2;
                let lo = self.hex4()?;
                if (0xDC00..0xE000).contains(&lo) {
                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    return char::from_u32(c).ok_or_else(|| self.bad());
                }
            }
            return Err(invalid(
                self.text,
                "Unicode low surrogate must follow a high surrogate.",
            ));
        }
        char::from_u32(hi).ok_or_else(|| {
            invalid(
                self.text,
                "Unicode low surrogate must follow a high surrogate.",
            )
        })
    }

    /// A number, in numeric's canonical text: the exponent applied to the digits.
    fn number(&mut self) -> Result<Json, PgError> {
        let start = self.at;
        let digits_from = |p: &mut Self| {
            let s = p.at;
            while p.s.get(p.at).is_some_and(u8::is_ascii_digit) {
                p.at += 1;
            }
            p.at - s
        };
        if self.s[self.at] == b'-' {
            self.at += 1;
        }
        let int_start = self.at;
        let int_len = digits_from(self);
        if int_len == 0 || (int_len > 1 && self.s[int_start] == b'0') {
            self.at = start;
            return Err(self.bad());
        }
        let mut frac = "";
        if self.s.get(self.at) == Some(&b'.') {
            self.at += 1;
            let f = self.at;
            if digits_from(self) == 0 {
                self.at = start;
                return Err(self.bad());
            }
            frac = &self.text[f..self.at];
        }
        let mut exp: i64 = 0;
        if matches!(self.s.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            let e = self.at;
            if matches!(self.s.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits_from(self) == 0 {
                self.at = start;
                return Err(self.bad());
            }
            exp = self.text[e..self.at].parse().map_err(|_| self.bad())?;
        }
        // numeric's range: 131072 digits before the point, 16383 after.
        let point = (int_len as i64).saturating_add(exp);
        if point > 131_072 || (frac.len() as i64).saturating_sub(exp) > 16_383 {
            return Err(PgError::new(
                SqlState("22003"),
                "value overflows numeric format".to_owned(),
            ));
        }
        let negative = self.s[start] == b'-';
        let int = &self.text[int_start..int_start + int_len];
        Ok(Json::Number(canonical_number(negative, int, frac, exp)))
    }
}

/// `[-]int.frac × 10^exp` as numeric prints it: no exponent, scale `frac − exp` (at least 0).
fn canonical_number(negative: bool, int: &str, frac: &str, exp: i64) -> String {
    let digits: String = format!("{int}{frac}");
    // The decimal point sits after `point` digits of `digits`.
    let point = int.len() as i64 + exp;
    let scale = (frac.len() as i64 - exp).max(0) as usize;
    let (whole, fraction) = if point <= 0 {
        (
            String::from("0"),
            format!("{}{}", "0".repeat((-point) as usize), digits),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{}{}", digits, "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        (
            digits[..point as usize].to_owned(),
            digits[point as usize..].to_owned(),
        )
    };
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let mut fraction: String = fraction.chars().take(scale).collect();
    while fraction.len() < scale {
        fraction.push('0');
    }
    let zero = whole == "0" && fraction.chars().all(|c| c == '0');
    let sign = if negative && !zero { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// A key step of `->` / `#>`: an object's field, or an array's element (negative from the end).
pub fn get<'a>(v: &'a Json, step: &Step) -> Option<&'a Json> {
    match (v, step) {
        (Json::Object(fields), Step::Key(k)) => fields
            .binary_search_by(|(f, _)| key_order(f, k))
            .ok()
            .map(|i| &fields[i].1),
        (Json::Array(items), Step::Index(i)) => {
            let i = if *i < 0 { items.len() as i64 + i } else { *i };
            usize::try_from(i).ok().and_then(|i| items.get(i))
        }
        // `#>` paths are text: an array takes a step that reads as an integer.
        (Json::Array(_), Step::Key(k)) => {
            k.trim().parse().ok().and_then(|i| get(v, &Step::Index(i)))
        }
        _ => None,
    }
}

/// One step of a path.
#[derive(Debug, Clone)]
pub enum Step {
    Key(String),
    Index(i64),
}

/// What `->>` gives: a string's own text, NULL for a JSON null, other values' jsonb text.
pub fn as_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(to_text(other)),
    }
}

/// `a @> b`: whether `a` contains `b`, as jsonb containment is defined.
pub fn contains(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Object(_), Json::Object(bf)) => bf.iter().all(|(k, bv)| {
            get(a, &Step::Key(k.clone())).is_some_and(|av| contained_in_field(av, bv))
        }),
        (Json::Array(ai), Json::Array(bi)) => bi.iter().all(|bv| {
            ai.iter().any(|av| match (av, bv) {
                (Json::Array(_), Json::Array(_)) | (Json::Object(_), Json::Object(_)) => {
                    contains(av, bv)
                }
                _ => av == bv,
            })
        }),
        // A top-level array contains a scalar that is one of its elements.
        (Json::Array(ai), scalar) if !matches!(scalar, Json::Object(_)) => {
            ai.iter().any(|av| av == scalar)
        }
        _ => a == b,
    }
}

fn contained_in_field(av: &Json, bv: &Json) -> bool {
    match (av, bv) {
        (Json::Object(_), Json::Object(_)) | (Json::Array(_), Json::Array(_)) => contains(av, bv),
        _ => av == bv,
    }
}

/// `v ? key`: a top-level key of an object, a string element of an array, or the string
/// itself.
pub fn has_key(v: &Json, key: &str) -> bool {
    match v {
        Json::Object(fields) => fields.binary_search_by(|(f, _)| key_order(f, key)).is_ok(),
        Json::Array(items) => items
            .iter()
            .any(|i| matches!(i, Json::String(s) if s == key)),
        Json::String(s) => s == key,
        _ => false,
    }
}

/// `jsonb_typeof`.
pub fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text() {
        assert_eq!(
            normalize(r#"{"b":1,"a":[1, 2.50,true,null], "aa": {}}"#).unwrap(),
            r#"{"a": [1, 2.50, true, null], "b": 1, "aa": {}}"#
        );
        assert_eq!(normalize(r#"{"a":1,"a":2}"#).unwrap(), r#"{"a": 2}"#);
        assert_eq!(normalize("1e2").unwrap(), "100");
        assert_eq!(normalize("1.5e-3").unwrap(), "0.0015");
        assert_eq!(normalize("-0").unwrap(), "0");
        assert_eq!(normalize("12.30E1").unwrap(), "123.0");
        assert_eq!(normalize(r#""a\u00e9\n""#).unwrap(), "\"a\u{e9}\\n\"");
        assert_eq!(normalize(" [ ] ").unwrap(), "[]");
        assert_eq!(normalize("1e999999999").unwrap_err().sqlstate.0, "22003");
        assert_eq!(normalize("1e-99999").unwrap_err().sqlstate.0, "22003");
        assert_eq!(
            normalize("1e9223372036854775807").unwrap_err().sqlstate.0,
            "22003"
        );
        assert_eq!(
            normalize("1e-9223372036854775808").unwrap_err().sqlstate.0,
            "22003"
        );
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(normalize(&deep).is_ok());
        let deeper = format!("{}{}", "[".repeat(1002), "]".repeat(1002));
        assert_eq!(normalize(&deeper).unwrap_err().sqlstate.0, "54001");
        for bad in [
            "",
            "{",
            "[1,]",
            "01",
            "not json",
            r#"{"a" 1}"#,
            "1 2",
            "\"\\q\"",
            "1.",
        ] {
            let e = normalize(bad).unwrap_err();
            assert_eq!(e.sqlstate.0, "22P02", "{bad}");
        }
    }

    #[test]
    fn operators() {
        let v = parse(r#"{"a": {"b": [1, "x"]}, "c": "s", "n": null}"#).unwrap();
        let a = get(&v, &Step::Key("a".into())).unwrap();
        assert_eq!(to_text(a), r#"{"b": [1, "x"]}"#);
        let b = get(a, &Step::Key("b".into())).unwrap();
        assert_eq!(
            get(b, &Step::Index(-1)).and_then(as_text).as_deref(),
            Some("x")
        );
        assert_eq!(
            get(b, &Step::Key("0".into())).map(to_text).as_deref(),
            Some("1")
        );
        assert_eq!(get(&v, &Step::Key("n".into())).and_then(as_text), None);
        assert!(contains(&v, &parse(r#"{"a": {"b": ["x"]}}"#).unwrap()));
        assert!(!contains(&v, &parse(r#"{"a": {"b": ["y"]}}"#).unwrap()));
        assert!(contains(&parse("[1, 2, 3]").unwrap(), &parse("2").unwrap()));
        assert!(has_key(&v, "c") && !has_key(&v, "s"));
        assert!(has_key(&parse(r#"["k", 1]"#).unwrap(), "k"));
        assert_eq!(type_name(&v), "object");
    }
}
