//! Pure parts of the row-capture triggers (`pgq.logutriga`, `pgq.sqltriga`,
//! `pgq.jsontriga`): argument parsing, the encoders (urlencoding, SQL literal and
//! identifier quoting, JSON string escaping), the `ev_*=`/`when=` expression
//! rewriter and the payload builders. The pgrx glue in `src/triggers.rs` feeds them
//! the text output of each column.
//!
//! The decoder ([`urldecode`], [`decode_urlenc_row`]) is here for the replay side.

use super::pg_keywords::NON_UNRESERVED;

// ---------------------------------------------------------------------------------
// urlencoding
// ---------------------------------------------------------------------------------

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Per byte: its urlencoded form (1 or 3 bytes) and that length.
const fn url_table() -> [([u8; 3], u8); 256] {
    let mut t = [([0u8; 3], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-' {
            ([b, 0, 0], 1)
        } else if b == b' ' {
            ([b'+', 0, 0], 1)
        } else {
            ([b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]], 3)
        };
        i += 1;
    }
    t
}
static URL_TABLE: [([u8; 3], u8); 256] = url_table();

/// Append `s` urlencoded the PgQ way: `0-9A-Za-z_.-` unchanged, space as `+`, every
/// other byte as `%` and two lowercase hex digits.
#[allow(unsafe_code)]
pub fn urlencode_into(out: &mut String, s: &[u8]) {
    // SAFETY: only ASCII bytes are appended, so the String stays valid UTF-8.
    let v = unsafe { out.as_mut_vec() };
    v.reserve(s.len() * 3);
    let mut len = v.len();
    let base = v.as_mut_ptr();
    for &b in s {
        let (enc, n) = &URL_TABLE[b as usize];
        // SAFETY: capacity was reserved for 3 bytes per input byte; every entry is
        // written whole (3 bytes) and only its length is kept.
        unsafe { std::ptr::copy_nonoverlapping(enc.as_ptr(), base.add(len), 3) };
        len += *n as usize;
    }
    // SAFETY: bytes up to `len` were written above.
    unsafe { v.set_len(len) };
}

pub fn urlencode(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    urlencode_into(&mut out, s);
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// `%` not followed by two hex digits, at this byte offset
    BadEscape(usize),
    /// the decoded bytes are not UTF-8
    NotUtf8,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::BadEscape(p) => write!(f, "bad %-escape at offset {p}"),
            DecodeError::NotUtf8 => write!(f, "urldecoded value is not valid UTF-8"),
        }
    }
}

fn hexval(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode one urlencoded string: `+` is a space, `%XX` (either case) a byte, anything
/// else is taken literally.
pub fn urldecode(s: &str) -> Result<Vec<u8>, DecodeError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hexval);
                let lo = b.get(i + 2).copied().and_then(hexval);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(DecodeError::BadEscape(i)),
                }
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

fn urldecode_str(s: &str) -> Result<String, DecodeError> {
    String::from_utf8(urldecode(s)?).map_err(|_| DecodeError::NotUtf8)
}

/// Decode a logutriga row (`a=1&b&c=x+y`): pairs in order; a key without `=` is NULL.
/// The empty string is the empty row.
pub fn decode_urlenc_row(s: &str) -> Result<Vec<(String, Option<String>)>, DecodeError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split('&')
        .map(|part| match part.split_once('=') {
            Some((k, v)) => Ok((urldecode_str(k)?, Some(urldecode_str(v)?))),
            None => Ok((urldecode_str(part)?, None)),
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// SQL quoting (PostgreSQL's quote_literal / quote_identifier)
// ---------------------------------------------------------------------------------

/// Append `s` as PostgreSQL's `quote_literal` would: `'...'` with `'` and `\` doubled,
/// prefixed with `E` when the value holds a backslash.
pub fn quote_literal_into(out: &mut String, s: &str) {
    let b = s.as_bytes();
    if b.contains(&b'\\') {
        out.push('E');
    }
    out.push('\'');
    // copy runs between quote/backslash characters (ASCII, so runs split on char
    // boundaries), doubling each of those
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\'' || c == b'\\' {
            out.push_str(&s[start..=i]);
            start = i;
        }
    }
    out.push_str(&s[start..]);
    out.push('\'');
}

pub fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote_literal_into(&mut out, s);
    out
}

/// True for PostgreSQL 15 keywords other than unreserved ones (those need quotes).
pub fn is_quoting_keyword(s: &str) -> bool {
    NON_UNRESERVED.binary_search(&s).is_ok()
}

/// Whether PostgreSQL's `quote_identifier` leaves `s` bare: starts with `a-z` or `_`,
/// only `a-z0-9_`, and not a keyword other than an unreserved one.
pub fn ident_is_safe(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(b'a'..=b'z' | b'_') => {}
        _ => return false,
    }
    if !b
        .iter()
        .all(|&c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_'))
    {
        return false;
    }
    !is_quoting_keyword(s)
}

/// Append `s` as PostgreSQL's `quote_identifier` would (`quote_all` =
/// `quote_all_identifiers`).
pub fn quote_ident_into(out: &mut String, s: &str, quote_all: bool) {
    if !quote_all && ident_is_safe(s) {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

pub fn quote_ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote_ident_into(&mut out, s, false);
    out
}

// ---------------------------------------------------------------------------------
// JSON (PostgreSQL's escape_json)
// ---------------------------------------------------------------------------------

/// Append `s` as a JSON string literal, escaping as PostgreSQL's `escape_json`.
pub fn json_string_into(out: &mut String, s: &str) {
    out.push('"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &str = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[(c >> 4) as usize] as char);
            out.push(HEX[(c & 15) as usize] as char);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

// ---------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------

/// Index of an overridable event field in [`TriggerArgs::overrides`] and in
/// [`EventFields`].
pub const EV_TYPE: usize = 0;
pub const EV_DATA: usize = 1;
pub const EV_EXTRA1: usize = 2;
pub const EV_EXTRA2: usize = 3;
pub const EV_EXTRA3: usize = 4;
pub const EV_EXTRA4: usize = 5;

/// Field names as they appear in `ev_*=` arguments and, prefixed with `_pgq_`, as
/// magic column names.
pub const FIELD_NAMES: [&str; 6] = [
    "ev_type",
    "ev_data",
    "ev_extra1",
    "ev_extra2",
    "ev_extra3",
    "ev_extra4",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerArgs {
    pub queue: String,
    pub skip: bool,
    pub backup: bool,
    pub deny: bool,
    pub ignore: Option<String>,
    pub pkey: Option<String>,
    pub when: Option<String>,
    /// ev_type, ev_data, ev_extra1..4 expressions
    pub overrides: [Option<String>; 6],
}

impl TriggerArgs {
    pub fn has_expressions(&self) -> bool {
        self.when.is_some() || self.overrides.iter().any(Option::is_some)
    }
}

/// Parse the trigger arguments (argument 0 is the queue). Errors carry the
/// original's message texts.
pub fn parse_args(args: &[&str], truncate: bool) -> Result<TriggerArgs, &'static str> {
    let Some((queue, opts)) = args.split_first() else {
        return Err("pgq trigger must have destination queue as argument");
    };
    let mut a = TriggerArgs {
        queue: (*queue).to_string(),
        ..Default::default()
    };
    for &opt in opts {
        if opt == "SKIP" {
            a.skip = true;
        } else if opt == "backup" {
            if truncate {
                return Err("Backup does not make sense for truncate trigger");
            }
            a.backup = true;
        } else if opt == "deny" {
            a.deny = true;
        } else if let Some(v) = opt.strip_prefix("ignore=") {
            if truncate {
                return Err("Column ignore does not make sense for truncate trigger");
            }
            a.ignore = Some(v.to_string());
        } else if let Some(v) = opt.strip_prefix("pkey=") {
            if truncate {
                return Err("Custom pkey_list does not make sense for truncate trigger");
            }
            a.pkey = Some(v.to_string());
        } else if let Some(v) = opt.strip_prefix("when=") {
            if truncate {
                return Err("Custom expressions do not make sense for truncater trigger");
            }
            a.when = Some(v.to_string());
        } else if let Some(i) = FIELD_NAMES.iter().position(|f| {
            opt.len() > f.len() && opt.starts_with(f) && opt.as_bytes()[f.len()] == b'='
        }) {
            if truncate {
                return Err("Custom expressions do not make sense for truncater trigger");
            }
            a.overrides[i] = Some(opt[FIELD_NAMES[i].len() + 1..].to_string());
        } else {
            return Err("bad param to pgq trigger");
        }
    }
    Ok(a)
}

/// Whether `name` is one of the tokens of `list` (separated by commas and/or
/// whitespace; exact, case-sensitive match).
pub fn list_contains(list: &str, name: &str) -> bool {
    list.split(|c: char| c == ',' || c.is_ascii_whitespace())
        .any(|t| !t.is_empty() && t == name)
}

/// Magic column `_pgq_ev_<field>`: `Ok(Some(field index))`, `Ok(None)` for an
/// ordinary column, `Err` for an unknown `_pgq_ev_` name.
pub fn magic_column(name: &str) -> Result<Option<usize>, String> {
    let Some(rest) = name.strip_prefix("_pgq_ev_") else {
        return Ok(None);
    };
    match FIELD_NAMES.iter().position(|f| &f[3..] == rest) {
        Some(i) => Ok(Some(i)),
        None => Err(format!("Unknown magic column: {name}")),
    }
}

// ---------------------------------------------------------------------------------
// Expression rewriting for ev_*= / when=
// ---------------------------------------------------------------------------------

/// Error text of the original's expression tokenizer.
pub const QB_SYNTAX_ERROR: &str = "QB: syntax error";

/// `select <expr>` with every bare word that names a column (per `column`) replaced
/// by a parameter `$n`. Returns the query and, per parameter, the column index that
/// `column` gave. Strings (`'..'`, `E'..'`, per `std_strings`), dollar quotes and
/// comments are copied unchanged. What the original's tokenizer refuses gives
/// [`QB_SYNTAX_ERROR`]: a non-empty double-quoted identifier standing alone, a `$` or
/// non-ASCII byte in a word, an unterminated string, dollar quote or comment.
pub fn rewrite_expr(
    expr: &str,
    std_strings: bool,
    mut column: impl FnMut(&str) -> Option<usize>,
) -> Result<(String, Vec<usize>), &'static str> {
    let b = expr.as_bytes();
    let mut out = String::with_capacity(expr.len() + 16);
    out.push_str("select ");
    let mut params: Vec<usize> = Vec::new();
    let is_word_start = |c: u8| c.is_ascii_alphabetic() || c == b'_';
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if (c == b'E' || c == b'e') && b.get(i + 1) == Some(&b'\'') {
            i = skip_quoted(b, i + 1, b'\'', true).ok_or(QB_SYNTAX_ERROR)?;
        } else if c == b'\'' {
            i = skip_quoted(b, i, b'\'', !std_strings).ok_or(QB_SYNTAX_ERROR)?;
        } else if c == b'"' {
            match skip_quoted(b, i, b'"', false) {
                // unterminated: left to the SQL parser
                None => i = b.len(),
                Some(j) if j == i + 2 => i = j,
                Some(_) => return Err(QB_SYNTAX_ERROR),
            }
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = skip_block_comment(b, i).ok_or(QB_SYNTAX_ERROR)?;
        } else if c == b'$' {
            i = skip_dollar(b, i).ok_or(QB_SYNTAX_ERROR)?;
        } else if c >= 0x80 {
            return Err(QB_SYNTAX_ERROR);
        } else if is_word_start(c) {
            let mut plain = true;
            while i < b.len() {
                let d = b[i];
                if is_word(d) {
                    i += 1;
                } else if d == b'.' && b.get(i + 1).is_some_and(|&n| is_word_start(n) || n == b'"')
                {
                    plain = false;
                    i += 1;
                } else if d == b'"' {
                    plain = false;
                    i = skip_quoted(b, i, b'"', false).ok_or(QB_SYNTAX_ERROR)?;
                } else if d >= 0x80 {
                    return Err(QB_SYNTAX_ERROR);
                } else {
                    break;
                }
            }
            let word = &expr[start..i];
            if let Some(col) = if plain { column(word) } else { None } {
                let n = match params.iter().position(|&p| p == col) {
                    Some(k) => k + 1,
                    None => {
                        params.push(col);
                        params.len()
                    }
                };
                out.push('$');
                out.push_str(&n.to_string());
                continue;
            }
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            if b.get(i).is_some_and(|&d| d >= 0x80) {
                return Err(QB_SYNTAX_ERROR);
            }
        } else {
            i += 1;
        }
        out.push_str(&expr[start..i]);
    }
    Ok((out, params))
}

/// From the opening quote at `i`, the index after the closing one; None when
/// unterminated.
fn skip_quoted(b: &[u8], i: usize, q: u8, backslash: bool) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        if backslash && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return Some(j + 1);
        }
        j += 1;
    }
    None
}

fn skip_block_comment(b: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0;
    let mut j = i;
    while j < b.len() {
        if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
            depth += 1;
            j += 2;
        } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return Some(j);
            }
        } else {
            j += 1;
        }
    }
    None
}

/// `$n` parameter, or `$tag$ ... $tag$` dollar quote starting at `i`.
fn skip_dollar(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j).is_some_and(|c| c.is_ascii_digit()) {
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        return Some(j);
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let tag = &b[i..=j];
    let mut k = j + 1;
    while k + tag.len() <= b.len() {
        if &b[k..k + tag.len()] == tag {
            return Some(k + tag.len());
        }
        k += 1;
    }
    None
}

// ---------------------------------------------------------------------------------
// Payload builders
// ---------------------------------------------------------------------------------

/// The statement kind, as in ev_type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub fn letter(self) -> &'static str {
        match self {
            Op::Insert => "I",
            Op::Update => "U",
            Op::Delete => "D",
            Op::Truncate => "R",
        }
    }
    pub fn word(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
            Op::Truncate => "TRUNCATE",
        }
    }
}

/// `I:key1,key2` (logutriga; `pkey_text` is the verbatim `pkey=` text or the
/// comma-joined primary key).
pub fn logu_ev_type(op: Op, pkey_text: &str) -> String {
    if op == Op::Truncate {
        return "R".to_string();
    }
    format!("{}:{}", op.letter(), pkey_text)
}

/// `{"op":"INSERT","table":["schema","table"],"pkey":["id"]}` (jsontriga).
pub fn json_ev_type(op: Op, schema: &str, table: &str, pkeys: &[&str]) -> String {
    let mut s = String::with_capacity(64);
    s.push_str("{\"op\":\"");
    s.push_str(op.word());
    s.push_str("\",\"table\":[");
    json_string_into(&mut s, schema);
    s.push(',');
    json_string_into(&mut s, table);
    s.push_str("],\"pkey\":[");
    for (i, k) in pkeys.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_string_into(&mut s, k);
    }
    s.push_str("]}");
    s
}

/// Urlencoded row: `name=value` joined by `&`; NULL is the bare name.
pub fn urlenc_row<'a>(cols: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> String {
    let mut out = String::with_capacity(128);
    let mut first = true;
    for (name, val) in cols {
        if !first {
            out.push('&');
        }
        first = false;
        urlencode_into(&mut out, name.as_bytes());
        if let Some(v) = val {
            out.push('=');
            urlencode_into(&mut out, v.as_bytes());
        }
    }
    out
}

/// A column value for jsontriga: already-JSON (numbers, booleans, null) or text that
/// becomes a JSON string.
#[derive(Debug, Clone, Copy)]
pub enum JsonVal<'a> {
    Null,
    Raw(&'a str),
    Str(&'a str),
}

pub fn json_row<'a>(cols: impl IntoIterator<Item = (&'a str, JsonVal<'a>)>) -> String {
    let mut out = String::with_capacity(128);
    out.push('{');
    let mut first = true;
    for (name, val) in cols {
        if !first {
            out.push(',');
        }
        first = false;
        json_string_into(&mut out, name);
        out.push(':');
        match val {
            JsonVal::Null => out.push_str("null"),
            JsonVal::Raw(s) => out.push_str(s),
            JsonVal::Str(s) => json_string_into(&mut out, s),
        }
    }
    out.push('}');
    out
}

/// sqltriga INSERT: `(a,b) values ('1',null)`. Names are already quoted (see
/// [`quote_ident_into`]).
pub fn sql_insert<'a>(cols: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> String {
    let mut names = String::with_capacity(64);
    let mut vals = String::with_capacity(128);
    for (name, val) in cols {
        if !names.is_empty() {
            names.push(',');
            vals.push(',');
        }
        names.push_str(name);
        match val {
            Some(v) => quote_literal_into(&mut vals, v),
            None => vals.push_str("null"),
        }
    }
    let mut out = String::with_capacity(names.len() + vals.len() + 12);
    out.push('(');
    out.push_str(&names);
    out.push_str(") values (");
    out.push_str(&vals);
    out.push(')');
    out
}

/// Key condition list `k1='1' and k2='x'` (names already quoted).
pub fn sql_key_where<'a>(out: &mut String, keys: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (i, (name, val)) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push_str(" and ");
        }
        out.push_str(name);
        out.push('=');
        quote_literal_into(out, val);
    }
}

/// sqltriga UPDATE: `a='1',b=NULL where k='1'`; `set` holds the changed columns
/// (the caller substitutes the first key for a no-op update). Names already quoted.
pub fn sql_update<'a>(
    set: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    keys: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut out = String::with_capacity(128);
    for (i, (name, val)) in set.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push('=');
        match val {
            Some(v) => quote_literal_into(&mut out, v),
            None => out.push_str("NULL"),
        }
    }
    out.push_str(" where ");
    sql_key_where(&mut out, keys);
    out
}

/// sqltriga DELETE: `k='1' and k2='x'` (names already quoted).
pub fn sql_delete<'a>(keys: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::with_capacity(64);
    sql_key_where(&mut out, keys);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urlencode_vectors() {
        assert_eq!(urlencode(b"text1"), "text1");
        assert_eq!(
            urlencode("'\"quoted\\string$%,@\"'".as_bytes()),
            "%27%22quoted%5cstring%24%25%2c%40%22%27"
        );
        assert_eq!(
            urlencode("a b&c=d%é~!*()'".as_bytes()),
            "a+b%26c%3dd%25%c3%a9%7e%21%2a%28%29%27"
        );
        assert_eq!(
            urlencode(b"2009-09-19 11:59:48.599+00"),
            "2009-09-19+11%3a59%3a48.599%2b00"
        );
        assert_eq!(urlencode(b"-_.~"), "-_.%7e");
    }

    #[test]
    fn urldecode_vectors() {
        assert_eq!(
            urldecode("a+b%26c%3Dd%25%c3%a9").unwrap(),
            "a b&c=d%é".as_bytes()
        );
        assert!(matches!(urldecode("%zz"), Err(DecodeError::BadEscape(0))));
        assert!(matches!(urldecode("ab%4"), Err(DecodeError::BadEscape(2))));
        assert_eq!(
            decode_urlenc_row("id=1&txt&val=1.5&e=").unwrap(),
            vec![
                ("id".into(), Some("1".into())),
                ("txt".into(), None),
                ("val".into(), Some("1.5".into())),
                ("e".into(), Some("".into())),
            ]
        );
        assert_eq!(decode_urlenc_row("").unwrap(), vec![]);
    }

    #[test]
    fn quote_literal_vectors() {
        assert_eq!(quote_literal("1"), "'1'");
        assert_eq!(quote_literal("x\\y'z"), "E'x\\\\y''z'");
        assert_eq!(
            quote_literal("'\"quoted\\string$%,@\"'"),
            "E'''\"quoted\\\\string$%,@\"'''"
        );
        assert_eq!(quote_literal("\\x00ff01"), "E'\\\\x00ff01'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn quote_ident_vectors() {
        for (i, o) in [
            ("id", "id"),
            ("Id", "\"Id\""),
            ("Val", "\"Val\""),
            ("select", "\"select\""),
            ("user", "\"user\""),
            ("order", "\"order\""),
            ("int", "\"int\""),
            ("name", "name"),
            ("data", "data"),
            ("type", "type"),
            ("_x1", "_x1"),
            ("1x", "\"1x\""),
            ("a\"b", "\"a\"\"b\""),
            ("my table", "\"my table\""),
            ("é", "\"é\""),
            ("", "\"\""),
            ("between", "\"between\""),
            ("left", "\"left\""),
            ("abort", "abort"),
        ] {
            assert_eq!(quote_ident(i), o, "{i}");
        }
        let mut s = String::new();
        quote_ident_into(&mut s, "id", true);
        assert_eq!(s, "\"id\"");
    }

    #[test]
    fn keywords_sorted() {
        assert!(NON_UNRESERVED.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(NON_UNRESERVED.len(), 151);
    }

    #[test]
    fn json_escape() {
        let mut s = String::new();
        json_string_into(&mut s, "'\"quoted\\string$%,@\"'");
        assert_eq!(s, r#""'\"quoted\\string$%,@\"'""#);
        s.clear();
        json_string_into(&mut s, "a\u{1}\n\t\r\u{8}\u{c}/é");
        assert_eq!(s, "\"a\\u0001\\n\\t\\r\\b\\f/é\"");
    }

    #[test]
    fn args() {
        let a = parse_args(
            &[
                "q",
                "SKIP",
                "ignore=a,b",
                "pkey=x",
                "backup",
                "deny",
                "when=x>1",
                "ev_extra3=1=1",
            ],
            false,
        )
        .unwrap();
        assert!(a.skip && a.backup && a.deny);
        assert_eq!(a.ignore.as_deref(), Some("a,b"));
        assert_eq!(a.pkey.as_deref(), Some("x"));
        assert_eq!(a.when.as_deref(), Some("x>1"));
        assert_eq!(a.overrides[EV_EXTRA3].as_deref(), Some("1=1"));
        assert!(a.has_expressions());
        assert_eq!(
            parse_args(&[], false).unwrap_err(),
            "pgq trigger must have destination queue as argument"
        );
        assert_eq!(
            parse_args(&["q", "skip"], false).unwrap_err(),
            "bad param to pgq trigger"
        );
        assert_eq!(
            parse_args(&["q", "ev_extra5=1"], false).unwrap_err(),
            "bad param to pgq trigger"
        );
        assert_eq!(
            parse_args(&["q", "ignore=a"], true).unwrap_err(),
            "Column ignore does not make sense for truncate trigger"
        );
        assert_eq!(
            parse_args(&["q", "ev_type=1"], true).unwrap_err(),
            "Custom expressions do not make sense for truncater trigger"
        );
        assert!(parse_args(&["q", "deny", "SKIP"], true).is_ok());
    }

    #[test]
    fn lists() {
        assert!(list_contains("a,b", "b"));
        assert!(list_contains(" a , b ", "a"));
        assert!(list_contains("a b", "b"));
        assert!(!list_contains("ab,c", "a"));
        assert!(!list_contains("A", "a"));
        assert!(!list_contains("", ""));
    }

    #[test]
    fn magic() {
        assert_eq!(magic_column("_pgq_ev_type"), Ok(Some(EV_TYPE)));
        assert_eq!(magic_column("_pgq_ev_extra4"), Ok(Some(EV_EXTRA4)));
        assert_eq!(magic_column("x"), Ok(None));
        assert_eq!(
            magic_column("_pgq_ev_foo"),
            Err("Unknown magic column: _pgq_ev_foo".into())
        );
    }

    #[test]
    fn rewrite() {
        let cols = ["nr", "col1", "col2", "Val", "select"];
        let f = |w: &str| cols.iter().position(|c| *c == w);
        let ok = |e: &str| rewrite_expr(e, true, f).unwrap();
        assert_eq!(ok("(nr+3)::text"), ("select ($1+3)::text".into(), vec![0]));
        assert_eq!(
            ok("col1||col2||col1"),
            ("select $1||$2||$1".into(), vec![1, 2])
        );
        assert_eq!(ok("$$nr$$||'nr'"), ("select $$nr$$||'nr'".into(), vec![]));
        assert_eq!(
            ok("t.nr || nr -- nr\n"),
            ("select t.nr || $1 -- nr\n".into(), vec![0])
        );
        assert_eq!(
            ok("E'\\'nr' || nr"),
            ("select E'\\'nr' || $1".into(), vec![0])
        );
        assert_eq!(ok("'a\\' || nr"), ("select 'a\\' || $1".into(), vec![0]));
        assert_eq!(
            ok("/* nr /* x */ nr */ Val"),
            ("select /* nr /* x */ nr */ $1".into(), vec![3])
        );
        assert_eq!(
            ok("$1 || 1e5 || nr1"),
            ("select $1 || 1e5 || nr1".into(), vec![])
        );
        assert_eq!(
            ok("$q$ x $q$||nr"),
            ("select $q$ x $q$||$1".into(), vec![0])
        );
        assert_eq!(ok("select"), ("select $1".into(), vec![4]));
        assert_eq!(ok("NR"), ("select NR".into(), vec![]));
        assert_eq!(ok("col1\"x\""), ("select col1\"x\"".into(), vec![]));
        assert_eq!(ok("\"\""), ("select \"\"".into(), vec![]));
        assert_eq!(ok("\"a"), ("select \"a".into(), vec![]));
        assert_eq!(ok("'é'"), ("select 'é'".into(), vec![]));
        assert_eq!(ok(""), ("select ".into(), vec![]));
        assert_eq!(ok("col1$$x$$"), ("select $1$$x$$".into(), vec![1]));
        for bad in [
            "\"Val\"",
            "1 || \"Val\"",
            "é",
            "aé",
            "1é",
            "nr$",
            "nr$x",
            "$$x",
            "$x",
            "/* x",
            "'x",
            "nr\"",
        ] {
            assert_eq!(rewrite_expr(bad, true, f), Err(QB_SYNTAX_ERROR), "{bad}");
        }
        // standard_conforming_strings off: backslash escapes in plain strings
        assert_eq!(
            rewrite_expr("'a\\' || nr'", false, f).unwrap().1,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn builders() {
        assert_eq!(
            urlenc_row([("id", Some("1")), ("txt", Some("text1")), ("val", None)]),
            "id=1&txt=text1&val"
        );
        assert_eq!(
            sql_insert([("id", Some("1")), ("txt", Some("text1")), ("val", None)]),
            "(id,txt,val) values ('1','text1',null)"
        );
        let sel = quote_ident("select");
        assert_eq!(
            sql_update([(sel.as_str(), Some("4")), ("z", None)], [("id", "1")]),
            "\"select\"='4',z=NULL where id='1'"
        );
        assert_eq!(
            sql_delete([("nr", "1"), ("col1", "col1")]),
            "nr='1' and col1='col1'"
        );
        assert_eq!(
            json_ev_type(Op::Insert, "public", "trigger_base", &["id"]),
            r#"{"op":"INSERT","table":["public","trigger_base"],"pkey":["id"]}"#
        );
        assert_eq!(
            json_ev_type(Op::Truncate, "public", "t", &[]),
            r#"{"op":"TRUNCATE","table":["public","t"],"pkey":[]}"#
        );
        assert_eq!(
            json_row([
                ("id", JsonVal::Raw("1")),
                ("txt", JsonVal::Str("text1")),
                ("val", JsonVal::Null)
            ]),
            r#"{"id":1,"txt":"text1","val":null}"#
        );
        assert_eq!(json_row(std::iter::empty()), "{}");
        assert_eq!(logu_ev_type(Op::Insert, ""), "I:");
        assert_eq!(logu_ev_type(Op::Update, "nr,col1"), "U:nr,col1");
        assert_eq!(logu_ev_type(Op::Truncate, "x"), "R");
    }

    proptest! {
        #[test]
        fn urlencode_roundtrip(s in any::<Vec<u8>>()) {
            let e = urlencode(&s);
            prop_assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-+%".contains(&b)));
            prop_assert_eq!(urldecode(&e).unwrap(), s);
        }

        #[test]
        fn row_roundtrip(row in proptest::collection::vec((".+", proptest::option::of(".*")), 0..6)) {
            let enc = urlenc_row(row.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
            let dec = decode_urlenc_row(&enc).unwrap();
            // (column names are never empty in PostgreSQL)
            prop_assert_eq!(dec, row);
        }

        #[test]
        fn quote_literal_is_balanced(s in ".*") {
            let q = quote_literal(&s);
            let body = q.trim_start_matches('E');
            prop_assert!(body.starts_with('\'') && body.ends_with('\''));
            // undoubling the body gives back the input
            let inner = &body[1..body.len() - 1];
            let mut un = String::new();
            let mut it = inner.chars().peekable();
            while let Some(c) = it.next() {
                if c == '\'' || c == '\\' {
                    prop_assert_eq!(it.next(), Some(c));
                }
                un.push(c);
            }
            prop_assert_eq!(un, s);
        }

        #[test]
        fn json_string_matches_charwise(s in ".*") {
            let mut fast = String::new();
            json_string_into(&mut fast, &s);
            let mut slow = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => slow.push_str("\\\""),
                    '\\' => slow.push_str("\\\\"),
                    '\u{8}' => slow.push_str("\\b"),
                    '\u{c}' => slow.push_str("\\f"),
                    '\n' => slow.push_str("\\n"),
                    '\r' => slow.push_str("\\r"),
                    '\t' => slow.push_str("\\t"),
                    c if (c as u32) < 0x20 => slow.push_str(&format!("\\u{:04x}", c as u32)),
                    c => slow.push(c),
                }
            }
            slow.push('"');
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn quote_ident_roundtrip(s in ".*") {
            let q = quote_ident(&s);
            if q.starts_with('"') {
                prop_assert_eq!(q[1..q.len() - 1].replace("\"\"", "\""), s);
            } else {
                prop_assert_eq!(q, s);
            }
        }
    }
}
