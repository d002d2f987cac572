//! Pure parts of the row-capture triggers (`pgq.logutriga`, `pgq.sqltriga`,
//! `pgq.jsontriga`): argument parsing, the encoders (urlencoding, JSON string
//! escaping; SQL quoting is logic/quote.rs), the `ev_*=`/`when=` expression
//! rewriter and the payload builders. The pgrx glue in `src/triggers.rs` feeds them
//! the text output of each column, as bytes in the server encoding.
//!
//! The decoder ([`urldecode`], [`decode_urlenc_row`]) is here for the replay side.

/// The replay applier (src/replay/apply.rs) names quote_ident by this path.
pub use super::quote::quote_ident;
use super::quote::quote_literal_into;

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
/// other byte as `%` and two lowercase hex digits. Byte-wise, so the same in every
/// server encoding.
#[allow(unsafe_code)]
pub fn urlencode_into(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() * 3);
    let mut len = out.len();
    let base = out.as_mut_ptr();
    for &b in s {
        let (enc, n) = &URL_TABLE[b as usize];
        // SAFETY: capacity was reserved for 3 bytes per input byte; every entry is
        // written whole (3 bytes) and only its length is kept.
        unsafe { std::ptr::copy_nonoverlapping(enc.as_ptr(), base.add(len), 3) };
        len += *n as usize;
    }
    // SAFETY: bytes up to `len` were written above (u8 needs no other initialisation).
    unsafe { out.set_len(len) };
}

pub fn urlencode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len() + 8);
    urlencode_into(&mut out, s);
    // only ASCII bytes are written
    String::from_utf8(out).expect("urlencoded text is ASCII")
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

/// The value of one hex digit (either case).
pub fn hexval(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode one urlencoded string: `+` is a space, `%XX` (either case) a byte, anything
/// else is taken literally. Byte-wise: payloads are in the server encoding.
pub fn urldecode(s: impl AsRef<[u8]>) -> Result<Vec<u8>, DecodeError> {
    let b = s.as_ref();
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
// JSON (PostgreSQL's escape_json)
// ---------------------------------------------------------------------------------

/// Append `s` as a JSON string literal, escaping as PostgreSQL's `escape_json`.
/// Bytes of 0x80 and above are copied as they are (in any server encoding).
pub fn json_string_into(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in s.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(c >> 4) as usize]);
            out.push(HEX[(c & 15) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
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
    pub queue: Vec<u8>,
    pub skip: bool,
    pub backup: bool,
    pub deny: bool,
    pub ignore: Option<Vec<u8>>,
    pub pkey: Option<Vec<u8>>,
    pub when: Option<Vec<u8>>,
    /// ev_type, ev_data, ev_extra1..4 expressions
    pub overrides: [Option<Vec<u8>>; 6],
}

impl TriggerArgs {
    pub fn has_expressions(&self) -> bool {
        self.when.is_some() || self.overrides.iter().any(Option::is_some)
    }
}

/// Parse the trigger arguments (argument 0 is the queue), as bytes in the server
/// encoding. Errors carry the original's message texts.
pub fn parse_args(args: &[&[u8]], truncate: bool) -> Result<TriggerArgs, &'static str> {
    let Some((queue, opts)) = args.split_first() else {
        return Err("pgq trigger must have destination queue as argument");
    };
    let mut a = TriggerArgs {
        queue: queue.to_vec(),
        ..Default::default()
    };
    for &opt in opts {
        if opt == b"SKIP" {
            a.skip = true;
        } else if opt == b"backup" {
            if truncate {
                return Err("Backup does not make sense for truncate trigger");
            }
            a.backup = true;
        } else if opt == b"deny" {
            a.deny = true;
        } else if let Some(v) = opt.strip_prefix(b"ignore=") {
            if truncate {
                return Err("Column ignore does not make sense for truncate trigger");
            }
            a.ignore = Some(v.to_vec());
        } else if let Some(v) = opt.strip_prefix(b"pkey=") {
            if truncate {
                return Err("Custom pkey_list does not make sense for truncate trigger");
            }
            a.pkey = Some(v.to_vec());
        } else if let Some(v) = opt.strip_prefix(b"when=") {
            if truncate {
                return Err("Custom expressions do not make sense for truncater trigger");
            }
            a.when = Some(v.to_vec());
        } else if let Some(i) = FIELD_NAMES.iter().position(|f| {
            opt.len() > f.len() && opt.starts_with(f.as_bytes()) && opt[f.len()] == b'='
        }) {
            if truncate {
                return Err("Custom expressions do not make sense for truncater trigger");
            }
            a.overrides[i] = Some(opt[FIELD_NAMES[i].len() + 1..].to_vec());
        } else {
            return Err("bad param to pgq trigger");
        }
    }
    Ok(a)
}

/// The tokens of a `pkey=`/`ignore=` list (separated by commas and/or ASCII
/// whitespace; empty tokens dropped).
pub fn list_tokens(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&c| c == b',' || c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
}

/// Whether `name` is one of the tokens of `list` (exact, case-sensitive match).
pub fn list_contains(list: &[u8], name: &[u8]) -> bool {
    list_tokens(list).any(|t| t == name)
}

/// Magic column `_pgq_ev_<field>`: `Ok(Some(field index))`, `Ok(None)` for an
/// ordinary column, `Err` for an unknown `_pgq_ev_` name.
pub fn magic_column(name: &[u8]) -> Result<Option<usize>, String> {
    let Some(rest) = name.strip_prefix(b"_pgq_ev_") else {
        return Ok(None);
    };
    match FIELD_NAMES.iter().position(|f| &f.as_bytes()[3..] == rest) {
        Some(i) => Ok(Some(i)),
        None => Err(format!(
            "Unknown magic column: {}",
            String::from_utf8_lossy(name)
        )),
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
    expr: &[u8],
    std_strings: bool,
    mut column: impl FnMut(&[u8]) -> Option<usize>,
) -> Result<(Vec<u8>, Vec<usize>), &'static str> {
    let b = expr;
    let mut out = Vec::with_capacity(expr.len() + 16);
    out.extend_from_slice(b"select ");
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
                out.push(b'$');
                out.extend_from_slice(n.to_string().as_bytes());
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
        out.extend_from_slice(&expr[start..i]);
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
pub fn logu_ev_type(op: Op, pkey_text: &[u8]) -> Vec<u8> {
    if op == Op::Truncate {
        return b"R".to_vec();
    }
    let mut s = Vec::with_capacity(pkey_text.len() + 2);
    s.extend_from_slice(op.letter().as_bytes());
    s.push(b':');
    s.extend_from_slice(pkey_text);
    s
}

/// `{"op":"INSERT","table":["schema","table"],"pkey":["id"]}` (jsontriga).
pub fn json_ev_type(op: Op, schema: &[u8], table: &[u8], pkeys: &[&[u8]]) -> Vec<u8> {
    let mut s = Vec::with_capacity(64);
    s.extend_from_slice(b"{\"op\":\"");
    s.extend_from_slice(op.word().as_bytes());
    s.extend_from_slice(b"\",\"table\":[");
    json_string_into(&mut s, schema);
    s.push(b',');
    json_string_into(&mut s, table);
    s.extend_from_slice(b"],\"pkey\":[");
    for (i, k) in pkeys.iter().enumerate() {
        if i > 0 {
            s.push(b',');
        }
        json_string_into(&mut s, k);
    }
    s.extend_from_slice(b"]}");
    s
}

/// Urlencoded row: `name=value` joined by `&`; NULL is the bare name.
pub fn urlenc_row<'a>(cols: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut first = true;
    for (name, val) in cols {
        if !first {
            out.push(b'&');
        }
        first = false;
        urlencode_into(&mut out, name);
        if let Some(v) = val {
            out.push(b'=');
            urlencode_into(&mut out, v);
        }
    }
    out
}

/// A column value for jsontriga: already-JSON (numbers, booleans, null) or text that
/// becomes a JSON string.
#[derive(Debug, Clone, Copy)]
pub enum JsonVal<'a> {
    Null,
    Raw(&'a [u8]),
    Str(&'a [u8]),
}

pub fn json_row<'a>(cols: impl IntoIterator<Item = (&'a [u8], JsonVal<'a>)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(b'{');
    let mut first = true;
    for (name, val) in cols {
        if !first {
            out.push(b',');
        }
        first = false;
        json_string_into(&mut out, name);
        out.push(b':');
        match val {
            JsonVal::Null => out.extend_from_slice(b"null"),
            JsonVal::Raw(s) => out.extend_from_slice(s),
            JsonVal::Str(s) => json_string_into(&mut out, s),
        }
    }
    out.push(b'}');
    out
}

/// sqltriga INSERT: `(a,b) values ('1',null)`. Names are already quoted (see
/// [`crate::logic::quote::quote_ident_into`]).
pub fn sql_insert<'a>(cols: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> Vec<u8> {
    let mut names = Vec::with_capacity(64);
    let mut vals = Vec::with_capacity(128);
    for (name, val) in cols {
        if !names.is_empty() {
            names.push(b',');
            vals.push(b',');
        }
        names.extend_from_slice(name);
        match val {
            Some(v) => quote_literal_into(&mut vals, v),
            None => vals.extend_from_slice(b"null"),
        }
    }
    let mut out = Vec::with_capacity(names.len() + vals.len() + 12);
    out.push(b'(');
    out.extend_from_slice(&names);
    out.extend_from_slice(b") values (");
    out.extend_from_slice(&vals);
    out.push(b')');
    out
}

/// Key condition list `k1='1' and k2='x'` (names already quoted).
pub fn sql_key_where<'a>(out: &mut Vec<u8>, keys: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
    for (i, (name, val)) in keys.into_iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b" and ");
        }
        out.extend_from_slice(name);
        out.push(b'=');
        quote_literal_into(out, val);
    }
}

/// sqltriga UPDATE: `a='1',b=NULL where k='1'`; `set` holds the changed columns
/// (the caller substitutes the first key for a no-op update). Names already quoted.
pub fn sql_update<'a>(
    set: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    keys: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for (i, (name, val)) in set.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(name);
        out.push(b'=');
        match val {
            Some(v) => quote_literal_into(&mut out, v),
            None => out.extend_from_slice(b"NULL"),
        }
    }
    out.extend_from_slice(b" where ");
    sql_key_where(&mut out, keys);
    out
}

/// sqltriga DELETE: `k='1' and k2='x'` (names already quoted).
pub fn sql_delete<'a>(keys: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    sql_key_where(&mut out, keys);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn st(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }
    fn pa(v: &[&str], truncate: bool) -> Result<TriggerArgs, &'static str> {
        let b: Vec<&[u8]> = v.iter().map(|s| s.as_bytes()).collect();
        parse_args(&b, truncate)
    }
    fn js(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        json_string_into(&mut out, s);
        out
    }

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
        // LATIN1 / SQL_ASCII bytes are encoded as they are
        assert_eq!(urlencode(b"caf\xe9"), "caf%e9");
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
    fn json_escape() {
        assert_eq!(
            st(js("'\"quoted\\string$%,@\"'".as_bytes())),
            r#""'\"quoted\\string$%,@\"'""#
        );
        assert_eq!(
            st(js("a\u{1}\n\t\r\u{8}\u{c}/é".as_bytes())),
            "\"a\\u0001\\n\\t\\r\\b\\f/é\""
        );
        // what the original writes in a LATIN1 database: the byte as it is
        assert_eq!(js(b"caf\xe9 \"x\"\x01"), b"\"caf\xe9 \\\"x\\\"\\u0001\"");
    }

    #[test]
    fn args() {
        let a = pa(
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
        assert_eq!(a.queue, b"q");
        assert_eq!(a.ignore.as_deref(), Some(&b"a,b"[..]));
        assert_eq!(a.pkey.as_deref(), Some(&b"x"[..]));
        assert_eq!(a.when.as_deref(), Some(&b"x>1"[..]));
        assert_eq!(a.overrides[EV_EXTRA3].as_deref(), Some(&b"1=1"[..]));
        assert!(a.has_expressions());
        assert_eq!(
            pa(&[], false).unwrap_err(),
            "pgq trigger must have destination queue as argument"
        );
        assert_eq!(
            pa(&["q", "skip"], false).unwrap_err(),
            "bad param to pgq trigger"
        );
        assert_eq!(
            pa(&["q", "ev_extra5=1"], false).unwrap_err(),
            "bad param to pgq trigger"
        );
        assert_eq!(
            pa(&["q", "ignore=a"], true).unwrap_err(),
            "Column ignore does not make sense for truncate trigger"
        );
        assert_eq!(
            pa(&["q", "ev_type=1"], true).unwrap_err(),
            "Custom expressions do not make sense for truncater trigger"
        );
        assert!(pa(&["q", "deny", "SKIP"], true).is_ok());
        let a = parse_args(&[b"q\xe9", b"ev_extra1='\xe9'"], false).unwrap();
        assert_eq!(a.queue, b"q\xe9");
        assert_eq!(a.overrides[EV_EXTRA1].as_deref(), Some(&b"'\xe9'"[..]));
    }

    #[test]
    fn lists() {
        assert!(list_contains(b"a,b", b"b"));
        assert!(list_contains(b" a , b ", b"a"));
        assert!(list_contains(b"a b", b"b"));
        assert!(!list_contains(b"ab,c", b"a"));
        assert!(!list_contains(b"A", b"a"));
        assert!(!list_contains(b"", b""));
        assert!(list_contains(b"x,k\xe9", b"k\xe9"));
        assert_eq!(
            list_tokens(b" a,,b\tc ").collect::<Vec<_>>(),
            vec![&b"a"[..], b"b", b"c"]
        );
    }

    #[test]
    fn magic() {
        assert_eq!(magic_column(b"_pgq_ev_type"), Ok(Some(EV_TYPE)));
        assert_eq!(magic_column(b"_pgq_ev_extra4"), Ok(Some(EV_EXTRA4)));
        assert_eq!(magic_column(b"x"), Ok(None));
        assert_eq!(
            magic_column(b"_pgq_ev_foo"),
            Err("Unknown magic column: _pgq_ev_foo".into())
        );
    }

    #[test]
    fn rewrite() {
        let cols = ["nr", "col1", "col2", "Val", "select"];
        let f = |w: &[u8]| cols.iter().position(|c| c.as_bytes() == w);
        let ok = |e: &str| {
            let (q, p) = rewrite_expr(e.as_bytes(), true, f).unwrap();
            (st(q), p)
        };
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
        // single-byte encodings: bytes in strings pass through
        assert_eq!(
            rewrite_expr(b"nr || '\xe9'", true, f).unwrap(),
            (b"select $1 || '\xe9'".to_vec(), vec![0])
        );
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
            assert_eq!(
                rewrite_expr(bad.as_bytes(), true, f),
                Err(QB_SYNTAX_ERROR),
                "{bad}"
            );
        }
        assert_eq!(rewrite_expr(b"\xe9", true, f), Err(QB_SYNTAX_ERROR));
        // standard_conforming_strings off: backslash escapes in plain strings
        assert_eq!(
            rewrite_expr(b"'a\\' || nr'", false, f).unwrap().1,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn builders() {
        assert_eq!(
            st(urlenc_row([
                (&b"id"[..], Some(&b"1"[..])),
                (b"txt", Some(b"text1")),
                (b"val", None)
            ])),
            "id=1&txt=text1&val"
        );
        assert_eq!(
            urlenc_row([(&b"k\xe9"[..], Some(&b"\xe9"[..]))]),
            b"k%e9=%e9"
        );
        assert_eq!(
            st(sql_insert([
                (&b"id"[..], Some(&b"1"[..])),
                (b"txt", Some(b"text1")),
                (b"val", None)
            ])),
            "(id,txt,val) values ('1','text1',null)"
        );
        let sel = quote_ident(b"select");
        assert_eq!(
            st(sql_update(
                [(sel.as_slice(), Some(&b"4"[..])), (b"z", None)],
                [(&b"id"[..], &b"1"[..])]
            )),
            "\"select\"='4',z=NULL where id='1'"
        );
        assert_eq!(
            st(sql_delete([(&b"nr"[..], &b"1"[..]), (b"col1", b"col1")])),
            "nr='1' and col1='col1'"
        );
        assert_eq!(
            st(json_ev_type(
                Op::Insert,
                b"public",
                b"trigger_base",
                &[b"id"]
            )),
            r#"{"op":"INSERT","table":["public","trigger_base"],"pkey":["id"]}"#
        );
        assert_eq!(
            st(json_ev_type(Op::Truncate, b"public", b"t", &[])),
            r#"{"op":"TRUNCATE","table":["public","t"],"pkey":[]}"#
        );
        assert_eq!(
            st(json_row([
                (&b"id"[..], JsonVal::Raw(b"1")),
                (b"txt", JsonVal::Str(b"text1")),
                (b"val", JsonVal::Null)
            ])),
            r#"{"id":1,"txt":"text1","val":null}"#
        );
        assert_eq!(json_row(std::iter::empty()), b"{}");
        assert_eq!(logu_ev_type(Op::Insert, b""), b"I:");
        assert_eq!(logu_ev_type(Op::Update, b"nr,col1"), b"U:nr,col1");
        assert_eq!(logu_ev_type(Op::Truncate, b"x"), b"R");
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
            let enc = urlenc_row(row.iter().map(|(k, v)| (k.as_bytes(), v.as_deref().map(str::as_bytes))));
            let dec = decode_urlenc_row(&st(enc)).unwrap();
            // (column names are never empty in PostgreSQL)
            prop_assert_eq!(dec, row);
        }

        #[test]
        fn json_string_matches_charwise(s in ".*") {
            let fast = st(js(s.as_bytes()));
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
        fn json_string_keeps_high_bytes(s in any::<Vec<u8>>()) {
            let out = js(&s);
            let high_in = s.iter().filter(|&&b| b >= 0x80).count();
            let high_out = out.iter().filter(|&&b| b >= 0x80).count();
            prop_assert_eq!(high_in, high_out);
        }

    }
}
