//! The apply planner of in-server replay: turns one Londiste data event into a row
//! change (operation, columns with text values, key columns with text values) and a
//! statement shape. A replay worker keeps one prepared plan per (table, shape) and
//! binds the values through the destination columns' input functions, so no event is
//! ever turned into a parsed SQL string.
//!
//! Event formats (docs/replication.md, "Event formats"):
//! * logutriga: ev_type `I:<pk list>` / `U:..` / `D:..`, ev_data an urlencoded row
//!   (`a=1&b&c=x+y`, a bare name is NULL);
//! * sqltriga: ev_type `I` / `U` / `D`, ev_data a statement fragment:
//!   `(a,b) values ('1',null)`, `a='1',b=NULL where k='1'`, `k='1' and k2='2'`;
//! * jsontriga: ev_type `{"op":"INSERT","table":[..],"pkey":[..]}`, ev_data a JSON
//!   object of the row.
//!
//! The row is identified by the key columns the event names (as the original does):
//! for logutriga and jsontriga the key values come from the row itself; sqltriga's
//! UPDATE carries them (old values) after ` where `.
//!
//! Values are bytes in the server encoding, as the triggers wrote them: a value is the
//! column type's text output on the provider.

use crate::logic::triggers::{hexval, urldecode as urldecode_one};

/// A value: the column's text form, or NULL.
pub type Value = Option<Vec<u8>>;
/// A column name and its value.
pub type ColValue = (Vec<u8>, Value);
/// A key column name and its (never NULL) value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    pub fn word(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
        }
    }
}

/// One row change of a destination table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    pub op: Op,
    /// INSERT: every column in payload order; UPDATE: the columns to set; DELETE: none
    pub cols: Vec<ColValue>,
    /// UPDATE / DELETE: the key columns and the values that find the row
    pub key: Vec<KeyValue>,
}

/// What an event asks of the replay worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// a row change (logutriga, sqltriga or jsontriga)
    Data,
    /// `R`, or a jsontriga TRUNCATE
    Truncate,
    /// `EXECUTE`: a DDL script
    Execute,
    /// `londiste.add-table`, `londiste.remove-table`, `londiste.update-seq`,
    /// `londiste.remove-seq`
    Londiste(LondisteEvent),
    /// `pgq.*`: cascade bookkeeping (location-info, global-watermark, ...)
    Cascade,
    /// anything else: an apply error (`Unhandled event type in queue: <type>`)
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LondisteEvent {
    AddTable,
    RemoveTable,
    UpdateSeq,
    RemoveSeq,
}

pub fn classify(ev_type: &[u8]) -> EventKind {
    match ev_type {
        b"I" | b"U" | b"D" => EventKind::Data,
        b"R" => EventKind::Truncate,
        b"EXECUTE" => EventKind::Execute,
        b"londiste.add-table" => EventKind::Londiste(LondisteEvent::AddTable),
        b"londiste.remove-table" => EventKind::Londiste(LondisteEvent::RemoveTable),
        b"londiste.update-seq" => EventKind::Londiste(LondisteEvent::UpdateSeq),
        b"londiste.remove-seq" => EventKind::Londiste(LondisteEvent::RemoveSeq),
        t if t.starts_with(b"pgq.") => EventKind::Cascade,
        [b'I' | b'U' | b'D', b':', ..] => EventKind::Data,
        t if t.starts_with(b"{\"") => match json_type(t) {
            Ok(j) if j.op == JsonOp::Truncate => EventKind::Truncate,
            _ => EventKind::Data,
        },
        _ => EventKind::Unknown,
    }
}

/// Why an event could not be decoded. Always an apply error: never skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(msg.into()))
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Decode a data event (see [`classify`]) into its row change.
pub fn decode(ev_type: &[u8], ev_data: &[u8]) -> Result<RowChange, DecodeError> {
    match ev_type {
        b"I" => sqltriga_insert(ev_data),
        b"U" => sqltriga_update(ev_data),
        b"D" => sqltriga_delete(ev_data),
        [op @ (b'I' | b'U' | b'D'), b':', keys @ ..] => {
            let op = match op {
                b'I' => Op::Insert,
                b'U' => Op::Update,
                _ => Op::Delete,
            };
            let keys: Vec<&[u8]> = if keys.is_empty() {
                Vec::new()
            } else {
                keys.split(|&b| b == b',').collect()
            };
            let row = urldecode_row(ev_data)?;
            from_row(op, &keys, row)
        }
        t if t.starts_with(b"{\"") => {
            let ty = json_type(t)?;
            let op = match ty.op {
                JsonOp::Insert => Op::Insert,
                JsonOp::Update => Op::Update,
                JsonOp::Delete => Op::Delete,
                JsonOp::Truncate => return err("a TRUNCATE event carries no row"),
            };
            let row = json_row(ev_data)?;
            let keys: Vec<&[u8]> = ty.pkey.iter().map(|k| k.as_slice()).collect();
            from_row(op, &keys, row)
        }
        _ => err(format!("not a data event type: {}", show(ev_type))),
    }
}

/// A full row (logutriga, jsontriga) as a change: the key values come from the row.
fn from_row(op: Op, keys: &[&[u8]], row: Vec<ColValue>) -> Result<RowChange, DecodeError> {
    if op == Op::Insert {
        return Ok(RowChange {
            op,
            cols: row,
            key: Vec::new(),
        });
    }
    if keys.is_empty() {
        return err(format!(
            "{} event without primary key columns in its type",
            op.word()
        ));
    }
    let mut key = Vec::with_capacity(keys.len());
    for k in keys {
        match row.iter().find(|(n, _)| n.as_slice() == *k) {
            Some((_, Some(v))) => key.push((k.to_vec(), v.clone())),
            Some((_, None)) => return err(format!("key column {} is NULL", show(k))),
            None => return err(format!("key column {} is not in the row", show(k))),
        }
    }
    let cols = if op == Op::Update {
        row.into_iter()
            .filter(|(n, _)| !keys.contains(&n.as_slice()))
            .collect()
    } else {
        Vec::new()
    };
    Ok(RowChange { op, cols, key })
}

// ---------------------------------------------------------------------------------
// urlencoded rows
// ---------------------------------------------------------------------------------

fn urldecode(s: &[u8]) -> Result<Vec<u8>, DecodeError> {
    urldecode_one(s).map_err(|e| DecodeError(format!("{e} of an urlencoded row")))
}

/// `a=1&b&c=x+y` → [(a, '1'), (b, NULL), (c, 'x y')]; the empty string is no column.
pub fn urldecode_row(s: &[u8]) -> Result<Vec<ColValue>, DecodeError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(|&b| b == b'&')
        .map(|part| match part.iter().position(|&b| b == b'=') {
            Some(eq) => Ok((urldecode(&part[..eq])?, Some(urldecode(&part[eq + 1..])?))),
            None => Ok((urldecode(part)?, None)),
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// sqltriga fragments
// ---------------------------------------------------------------------------------

/// A cursor over a statement fragment: identifiers, literals and punctuation.
struct Frag<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Frag<'a> {
    fn new(s: &'a [u8]) -> Self {
        Frag { s, i: 0 }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn done(&mut self) -> bool {
        self.ws();
        self.i >= self.s.len()
    }

    fn fail<T>(&self, what: &str) -> Result<T, DecodeError> {
        err(format!(
            "malformed sqltriga payload: expected {what} at offset {}",
            self.i
        ))
    }

    fn punct(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), DecodeError> {
        if self.punct(c) {
            Ok(())
        } else {
            self.fail(&format!("'{}'", c as char))
        }
    }

    /// A case-insensitive keyword followed by a non-identifier byte.
    fn keyword(&mut self, kw: &str) -> bool {
        self.ws();
        let end = self.i + kw.len();
        if end <= self.s.len()
            && self.s[self.i..end].eq_ignore_ascii_case(kw.as_bytes())
            && !self.s.get(end).is_some_and(|&b| ident_byte(b))
        {
            self.i = end;
            true
        } else {
            false
        }
    }

    /// An identifier: `"Quoted ""name"""` or a bare name (folded to lower case, as
    /// the server folds it).
    fn ident(&mut self) -> Result<Vec<u8>, DecodeError> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'"') => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    match self.s.get(self.i) {
                        Some(b'"') if self.s.get(self.i + 1) == Some(&b'"') => {
                            out.push(b'"');
                            self.i += 2;
                        }
                        Some(b'"') => {
                            self.i += 1;
                            return Ok(out);
                        }
                        Some(&c) => {
                            out.push(c);
                            self.i += 1;
                        }
                        None => return self.fail("the end of a quoted identifier"),
                    }
                }
            }
            Some(&c) if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(|&b| ident_byte(b)) {
                    self.i += 1;
                }
                Ok(self.s[start..self.i].to_ascii_lowercase())
            }
            _ => self.fail("a column name"),
        }
    }

    /// A value: `'..'`, `E'..'`, or `null` (any case).
    fn value(&mut self) -> Result<Value, DecodeError> {
        self.ws();
        if self.keyword("null") {
            return Ok(None);
        }
        let escaped = matches!(self.s.get(self.i), Some(b'E' | b'e'))
            && self.s.get(self.i + 1) == Some(&b'\'');
        if escaped {
            self.i += 1;
        }
        if self.s.get(self.i) != Some(&b'\'') {
            return self.fail("a quoted value or null");
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                Some(b'\'') if self.s.get(self.i + 1) == Some(&b'\'') => {
                    out.push(b'\'');
                    self.i += 2;
                }
                Some(b'\'') => {
                    self.i += 1;
                    return Ok(Some(out));
                }
                Some(b'\\') if escaped => {
                    let (b, n) = self.escape()?;
                    out.extend_from_slice(&b);
                    self.i += n;
                }
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
                None => return self.fail("the end of a quoted value"),
            }
        }
    }

    /// The backslash escape at `self.i` of an E'' string: its bytes and length.
    fn escape(&self) -> Result<(Vec<u8>, usize), DecodeError> {
        let s = &self.s[self.i..];
        let c = match s.get(1) {
            Some(&c) => c,
            None => return self.fail("an escape after a backslash"),
        };
        let simple = match c {
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'0'..=b'7' => None,
            b'x' | b'u' | b'U' => None,
            other => Some(other), // \\ \' and any other byte stand for themselves
        };
        if let Some(b) = simple {
            return Ok((vec![b], 2));
        }
        match c {
            b'0'..=b'7' => {
                let mut v: u32 = 0;
                let mut n = 1;
                while n <= 3 && s.get(n).is_some_and(|d| (b'0'..=b'7').contains(d)) {
                    v = v * 8 + (s[n] - b'0') as u32;
                    n += 1;
                }
                Ok((vec![(v & 0xff) as u8], n))
            }
            b'x' => {
                let mut v: u32 = 0;
                let mut n = 2;
                while n <= 3 && s.get(n).copied().and_then(hexval).is_some() {
                    v = v * 16 + hexval(s[n]).unwrap_or(0) as u32;
                    n += 1;
                }
                if n == 2 {
                    return self.fail("hex digits after \\x");
                }
                Ok((vec![v as u8], n))
            }
            _ => {
                let digits = if c == b'u' { 4 } else { 8 };
                let hex = s
                    .get(2..2 + digits)
                    .filter(|h| h.iter().all(|&d| hexval(d).is_some()));
                let Some(hex) = hex else {
                    return self.fail("hex digits of a unicode escape");
                };
                let v = hex
                    .iter()
                    .fold(0u32, |a, &d| a * 16 + hexval(d).unwrap_or(0) as u32);
                match char::from_u32(v) {
                    Some(ch) => {
                        let mut buf = [0u8; 4];
                        Ok((ch.encode_utf8(&mut buf).as_bytes().to_vec(), 2 + digits))
                    }
                    None => self.fail("a valid unicode code point"),
                }
            }
        }
    }

    /// `col=value`
    fn assignment(&mut self) -> Result<(Vec<u8>, Value), DecodeError> {
        let name = self.ident()?;
        self.expect(b'=')?;
        Ok((name, self.value()?))
    }

    /// `k='1' and k2='2'` up to the end
    fn key_list(&mut self) -> Result<Vec<KeyValue>, DecodeError> {
        let mut key = Vec::new();
        loop {
            let (name, v) = self.assignment()?;
            match v {
                Some(v) => key.push((name, v)),
                None => return err(format!("key column {} is NULL", show(&name))),
            }
            if self.done() {
                return Ok(key);
            }
            if !self.keyword("and") {
                return self.fail("' and '");
            }
        }
    }
}

fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn sqltriga_insert(s: &[u8]) -> Result<RowChange, DecodeError> {
    let mut f = Frag::new(s);
    f.expect(b'(')?;
    let mut names = Vec::new();
    loop {
        names.push(f.ident()?);
        if f.punct(b')') {
            break;
        }
        f.expect(b',')?;
    }
    if !f.keyword("values") {
        return f.fail("'values'");
    }
    f.expect(b'(')?;
    let mut vals = Vec::new();
    loop {
        vals.push(f.value()?);
        if f.punct(b')') {
            break;
        }
        f.expect(b',')?;
    }
    if !f.done() {
        return f.fail("the end of the payload");
    }
    if names.len() != vals.len() {
        return err(format!(
            "malformed sqltriga payload: {} columns but {} values",
            names.len(),
            vals.len()
        ));
    }
    Ok(RowChange {
        op: Op::Insert,
        cols: names.into_iter().zip(vals).collect(),
        key: Vec::new(),
    })
}

fn sqltriga_update(s: &[u8]) -> Result<RowChange, DecodeError> {
    let mut f = Frag::new(s);
    let mut cols = Vec::new();
    loop {
        cols.push(f.assignment()?);
        if f.keyword("where") {
            break;
        }
        f.expect(b',')?;
    }
    let key = f.key_list()?;
    Ok(RowChange {
        op: Op::Update,
        cols,
        key,
    })
}

fn sqltriga_delete(s: &[u8]) -> Result<RowChange, DecodeError> {
    let mut f = Frag::new(s);
    let key = f.key_list()?;
    Ok(RowChange {
        op: Op::Delete,
        cols: Vec::new(),
        key,
    })
}

// ---------------------------------------------------------------------------------
// JSON (jsontriga)
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonOp {
    Insert,
    Update,
    Delete,
    Truncate,
}

#[derive(Debug)]
struct JsonType {
    op: JsonOp,
    pkey: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    /// a number, as written
    Num(Vec<u8>),
    Str(Vec<u8>),
    /// an array or object, as written (a column value that is one is passed on as
    /// its JSON text)
    Raw(Vec<u8>),
    Arr(Vec<Json>),
    Obj(Vec<(Vec<u8>, Json)>),
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn fail<T>(&self, what: &str) -> Result<T, DecodeError> {
        err(format!(
            "malformed JSON payload: expected {what} at offset {}",
            self.i
        ))
    }

    fn ws(&mut self) {
        while self
            .s
            .get(self.i)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &[u8]) -> bool {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// Parse a value; `depth` 0 is the top level (containers kept as structures one
    /// level down, deeper ones as raw text).
    fn value(&mut self, keep_structure: bool) -> Result<Json, DecodeError> {
        self.ws();
        let start = self.i;
        match self.s.get(self.i) {
            Some(b'n') if self.lit(b"null") => Ok(Json::Null),
            Some(b't') if self.lit(b"true") => Ok(Json::Bool(true)),
            Some(b'f') if self.lit(b"false") => Ok(Json::Bool(false)),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => {
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    self.i += 1;
                }
                Ok(Json::Num(self.s[start..self.i].to_vec()))
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if !self.lit(b"]") {
                    loop {
                        items.push(self.value(false)?);
                        self.ws();
                        if self.lit(b"]") {
                            break;
                        }
                        if !self.lit(b",") {
                            return self.fail("',' or ']'");
                        }
                    }
                }
                Ok(if keep_structure {
                    Json::Arr(items)
                } else {
                    Json::Raw(self.s[start..self.i].to_vec())
                })
            }
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if !self.lit(b"}") {
                    loop {
                        self.ws();
                        if self.s.get(self.i) != Some(&b'"') {
                            return self.fail("a member name");
                        }
                        let k = self.string()?;
                        self.ws();
                        if !self.lit(b":") {
                            return self.fail("':'");
                        }
                        let v = self.value(false)?;
                        members.push((k, v));
                        self.ws();
                        if self.lit(b"}") {
                            break;
                        }
                        if !self.lit(b",") {
                            return self.fail("',' or '}'");
                        }
                    }
                }
                Ok(if keep_structure {
                    Json::Obj(members)
                } else {
                    Json::Raw(self.s[start..self.i].to_vec())
                })
            }
            _ => self.fail("a JSON value"),
        }
    }

    fn string(&mut self) -> Result<Vec<u8>, DecodeError> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let c = match self.s.get(self.i + 1) {
                        Some(&c) => c,
                        None => return self.fail("an escape"),
                    };
                    self.i += 2;
                    match c {
                        b'"' | b'\\' | b'/' => out.push(c),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) {
                                // a surrogate pair
                                if !self.lit(b"\\u") {
                                    return self.fail("the second half of a surrogate pair");
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return self.fail("a low surrogate");
                                }
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            }
                            match char::from_u32(cp) {
                                Some(ch) => {
                                    let mut buf = [0u8; 4];
                                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                                }
                                None => return self.fail("a valid unicode escape"),
                            }
                        }
                        _ => return self.fail("a valid escape"),
                    }
                }
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
                None => return self.fail("the end of a string"),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, DecodeError> {
        let h = self.s.get(self.i..self.i + 4);
        match h.filter(|h| h.iter().all(|&d| hexval(d).is_some())) {
            Some(h) => {
                self.i += 4;
                Ok(h.iter()
                    .fold(0u32, |a, &d| a * 16 + hexval(d).unwrap_or(0) as u32))
            }
            None => self.fail("four hex digits"),
        }
    }

    fn top(s: &[u8]) -> Result<Json, DecodeError> {
        let mut p = JsonParser { s, i: 0 };
        let v = p.value(true)?;
        p.ws();
        if p.i != s.len() {
            return p.fail("the end of the payload");
        }
        Ok(v)
    }
}

fn json_type(t: &[u8]) -> Result<JsonType, DecodeError> {
    let Json::Obj(members) = JsonParser::top(t)? else {
        return err("a JSON event type must be an object");
    };
    let mut op = None;
    let mut pkey = Vec::new();
    for (k, v) in members {
        match (k.as_slice(), v) {
            (b"op", Json::Str(o)) => {
                op = Some(match o.first() {
                    Some(b'I') => JsonOp::Insert,
                    Some(b'U') => JsonOp::Update,
                    Some(b'D') => JsonOp::Delete,
                    Some(b'T') => JsonOp::Truncate,
                    _ => return err(format!("unknown op {} in a JSON event type", show(&o))),
                })
            }
            (b"pkey", Json::Raw(raw)) => {
                // one level down arrays are kept raw: parse the key list itself
                let Json::Arr(items) = JsonParser::top(&raw)? else {
                    return err("pkey of a JSON event type must be an array");
                };
                for it in items {
                    match it {
                        Json::Str(s) => pkey.push(s),
                        _ => return err("pkey of a JSON event type must hold strings"),
                    }
                }
            }
            _ => {}
        }
    }
    match op {
        Some(op) => Ok(JsonType { op, pkey }),
        None => err("a JSON event type without op"),
    }
}

fn json_row(data: &[u8]) -> Result<Vec<ColValue>, DecodeError> {
    let Json::Obj(members) = JsonParser::top(data)? else {
        return err("a JSON row must be an object");
    };
    Ok(members
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Json::Null => None,
                Json::Bool(true) => Some(b"t".to_vec()),
                Json::Bool(false) => Some(b"f".to_vec()),
                Json::Num(n) | Json::Str(n) | Json::Raw(n) => Some(n),
                Json::Arr(_) | Json::Obj(_) => unreachable!("nested values are kept raw"),
            };
            (k, v)
        })
        .collect())
}

// ---------------------------------------------------------------------------------
// statement shapes
// ---------------------------------------------------------------------------------

/// What a prepared statement depends on: the operation and the column names in
/// order. Events of one table with the same shape share one plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape {
    pub op: Op,
    pub cols: Vec<Vec<u8>>,
    pub key: Vec<Vec<u8>>,
}

impl RowChange {
    pub fn shape(&self) -> Shape {
        Shape {
            op: self.op,
            cols: self.cols.iter().map(|(n, _)| n.clone()).collect(),
            key: self.key.iter().map(|(n, _)| n.clone()).collect(),
        }
    }

    /// The parameter values in the order of [`Shape::sql`]'s `$n`.
    pub fn params(&self) -> impl Iterator<Item = Option<&[u8]>> {
        self.cols
            .iter()
            .map(|(_, v)| v.as_deref())
            .chain(self.key.iter().map(|(_, v)| Some(v.as_slice())))
    }

    /// An UPDATE that sets nothing (a table of key columns only) changes no row:
    /// the replay worker skips it.
    pub fn is_noop(&self) -> bool {
        self.op == Op::Update && self.cols.is_empty()
    }
}

impl Shape {
    /// Whether `change` has this shape, compared without building its shape (this is
    /// the per-event lookup of the replay worker's plan cache).
    pub fn fits(&self, change: &RowChange) -> bool {
        self.op == change.op
            && self.cols.len() == change.cols.len()
            && self.key.len() == change.key.len()
            && self.cols.iter().zip(&change.cols).all(|(a, (b, _))| a == b)
            && self.key.iter().zip(&change.key).all(|(a, (b, _))| a == b)
    }

    /// The statement text for this shape on `dest` (already quoted). Column names
    /// are quoted with `quote_ident`; `eq(i)` renders the equality operator for key
    /// column `i` (the destination key's own operator, schema-qualified).
    pub fn sql(
        &self,
        dest: &str,
        quote_ident: impl Fn(&[u8]) -> String,
        eq: impl Fn(usize) -> String,
    ) -> Result<String, DecodeError> {
        let mut n = 0;
        let mut param = || {
            n += 1;
            format!("${n}")
        };
        let mut where_ = Vec::with_capacity(self.key.len());
        let mut out = match self.op {
            Op::Insert => {
                if self.cols.is_empty() {
                    return err("an INSERT event without columns");
                }
                let names: Vec<String> = self.cols.iter().map(|c| quote_ident(c)).collect();
                let vals: Vec<String> = self.cols.iter().map(|_| param()).collect();
                return Ok(format!(
                    "insert into {dest} ({}) values ({})",
                    names.join(", "),
                    vals.join(", ")
                ));
            }
            Op::Update => {
                if self.cols.is_empty() {
                    return err("an UPDATE event that sets no column");
                }
                let sets: Vec<String> = self
                    .cols
                    .iter()
                    .map(|c| format!("{} = {}", quote_ident(c), param()))
                    .collect();
                format!("update only {dest} set {}", sets.join(", "))
            }
            Op::Delete => format!("delete from only {dest}"),
        };
        if self.key.is_empty() {
            return err(format!("{} event without key columns", self.op.word()));
        }
        for (i, k) in self.key.iter().enumerate() {
            where_.push(format!("{} {} {}", quote_ident(k), eq(i), param()));
        }
        out.push_str(" where ");
        out.push_str(&where_.join(" and "));
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------
// handlers
// ---------------------------------------------------------------------------------

/// How a table's events are applied: only the default handler (`londiste`, with its
/// argument `ignore_truncate`) is built in. Any other handler is refused by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Handler {
    pub ignore_truncate: bool,
}

/// Parse the `handler` value of a table's `table_attrs` (`None`: the default):
/// `name` or `name(k1=v1&k2=v2)`.
pub fn parse_handler(spec: Option<&str>) -> Result<Handler, String> {
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(Handler::default());
    };
    let (name, args) = match spec.find('(') {
        Some(p) if spec.ends_with(')') => (&spec[..p], &spec[p + 1..spec.len() - 1]),
        Some(_) => return Err(format!("malformed handler specification \"{spec}\"")),
        None => (spec, ""),
    };
    if name != "londiste" {
        return Err(format!(
            "handler \"{name}\" is not supported by in-server replay (only the default handler \"londiste\" is)"
        ));
    }
    let mut h = Handler::default();
    for (k, v) in urldecode_row(args.as_bytes()).map_err(|e| e.0)? {
        let v = v.map(|v| String::from_utf8_lossy(&v).into_owned());
        match (k.as_slice(), v.as_deref()) {
            (b"ignore_truncate", Some("1" | "true" | "on")) => h.ignore_truncate = true,
            (b"ignore_truncate", Some("0" | "false" | "off")) => h.ignore_truncate = false,
            _ => {
                return Err(format!(
                    "handler argument {}={} of handler \"londiste\" is not supported by in-server replay",
                    show(&k),
                    v.unwrap_or_default()
                ))
            }
        }
    }
    Ok(h)
}

/// The `handler` entry of an urlencoded `table_attrs` value.
pub fn handler_of_attrs(attrs: Option<&str>) -> Result<Option<String>, String> {
    let Some(a) = attrs.filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    for (k, v) in urldecode_row(a.as_bytes()).map_err(|e| e.0)? {
        if k == b"handler" {
            return Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned()));
        }
    }
    Ok(None)
}

/// The unique index (out of `keys`: an index and its key columns) that finds the row
/// an UPDATE or DELETE names by `key`: one whose key columns are exactly those of the
/// event, in any order. A column named twice in `key` matches none.
pub fn key_index<I: Copy>(key: &[i16], keys: &[(I, &[i16])]) -> Option<I> {
    let mut want = key.to_vec();
    want.sort_unstable();
    if want.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    keys.iter().find_map(|(i, atts)| {
        let mut have = atts.to_vec();
        have.sort_unstable();
        (have == want).then_some(*i)
    })
}

/// Whether an INSERT of columns `cols` names each of the `required` columns exactly
/// once and nothing else (the direct path then needs no column default).
pub fn names_each_once(cols: &[i16], required: &[i16]) -> bool {
    if cols.len() != required.len() {
        return false;
    }
    let mut a = cols.to_vec();
    let mut b = required.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::triggers as trg;
    use proptest::prelude::*;

    #[test]
    fn direct_key_choice() {
        let pk: &[i16] = &[1];
        let pair: &[i16] = &[3, 2];
        let keys = [(10u32, pk), (20u32, pair)];
        assert_eq!(key_index(&[1], &keys), Some(10));
        assert_eq!(key_index(&[2, 3], &keys), Some(20));
        assert_eq!(key_index(&[3, 2], &keys), Some(20));
        // a subset or a superset of an index's columns finds no single row
        assert_eq!(key_index(&[2], &keys), None);
        assert_eq!(key_index(&[1, 2], &keys), None);
        assert_eq!(key_index(&[1, 1], &keys), None);
        assert_eq!(key_index(&[], &keys), None);
        assert_eq!(key_index::<u32>(&[1], &[]), None);
    }

    #[test]
    fn direct_insert_names_every_column() {
        assert!(names_each_once(&[2, 1, 3], &[1, 2, 3]));
        assert!(!names_each_once(&[1, 2], &[1, 2, 3]));
        assert!(!names_each_once(&[1, 2, 2], &[1, 2, 3]));
        assert!(!names_each_once(&[1, 2, 4], &[1, 2, 3]));
        assert!(names_each_once(&[], &[]));
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }
    fn col(n: &str, v: Option<&str>) -> (Vec<u8>, Value) {
        (b(n), v.map(b))
    }
    fn key(n: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (b(n), b(v))
    }

    #[test]
    fn classify_types() {
        assert_eq!(classify(b"I:id"), EventKind::Data);
        assert_eq!(classify(b"U:"), EventKind::Data);
        assert_eq!(classify(b"D"), EventKind::Data);
        assert_eq!(classify(b"R"), EventKind::Truncate);
        assert_eq!(classify(b"EXECUTE"), EventKind::Execute);
        assert_eq!(
            classify(b"londiste.add-table"),
            EventKind::Londiste(LondisteEvent::AddTable)
        );
        assert_eq!(classify(b"pgq.location-info"), EventKind::Cascade);
        assert_eq!(
            classify(br#"{"op":"TRUNCATE","table":["public","t"],"pkey":["id"]}"#),
            EventKind::Truncate
        );
        assert_eq!(
            classify(br#"{"op":"INSERT","table":["public","t"],"pkey":["id"]}"#),
            EventKind::Data
        );
        assert_eq!(classify(b"X:id"), EventKind::Unknown);
        assert_eq!(classify(b"whatever"), EventKind::Unknown);
        assert_eq!(classify(b"londiste.other"), EventKind::Unknown);
    }

    #[test]
    fn logutriga_events() {
        let c = decode(b"I:id", b"id=1&txt&val=1.5").unwrap();
        assert_eq!(c.op, Op::Insert);
        assert_eq!(
            c.cols,
            vec![
                col("id", Some("1")),
                col("txt", None),
                col("val", Some("1.5"))
            ]
        );
        let c = decode(b"U:id", b"id=1&txt=text2&val").unwrap();
        assert_eq!(c.cols, vec![col("txt", Some("text2")), col("val", None)]);
        assert_eq!(c.key, vec![key("id", "1")]);
        let c = decode(b"D:nr,col1", b"nr=1&col1=a+b%2c%c3%a9&x=").unwrap();
        assert_eq!(c.op, Op::Delete);
        assert!(c.cols.is_empty());
        assert_eq!(
            c.key,
            vec![key("nr", "1"), (b("col1"), "a b,é".as_bytes().to_vec())]
        );
        // a table without a key: inserts only
        let c = decode(b"I:", b"dat=foo").unwrap();
        assert_eq!(c.cols, vec![col("dat", Some("foo"))]);
        assert!(decode(b"U:", b"dat=foo").is_err());
    }

    #[test]
    fn logutriga_errors() {
        assert!(decode(b"U:id", b"txt=x")
            .unwrap_err()
            .0
            .contains("not in the row"));
        assert!(decode(b"D:id", b"id&txt=x")
            .unwrap_err()
            .0
            .contains("is NULL"));
        assert!(decode(b"I:id", b"id=%zz")
            .unwrap_err()
            .0
            .contains("%-escape"));
        assert!(decode(b"I:id", b"id=%4").is_err());
    }

    #[test]
    fn sqltriga_events() {
        let c = decode(b"I", b"(id,txt,val) values ('1','text1',null)").unwrap();
        assert_eq!(
            c.cols,
            vec![
                col("id", Some("1")),
                col("txt", Some("text1")),
                col("val", None)
            ]
        );
        let c = decode(b"U", b"txt='text2' where id='1'").unwrap();
        assert_eq!(c.cols, vec![col("txt", Some("text2"))]);
        assert_eq!(c.key, vec![key("id", "1")]);
        let c = decode(b"U", br#""select"='4',z=NULL where id='1'"#).unwrap();
        assert_eq!(c.cols, vec![col("select", Some("4")), col("z", None)]);
        let c = decode(b"D", b"nr='1' and col1='col1'").unwrap();
        assert_eq!(c.key, vec![key("nr", "1"), key("col1", "col1")]);
        // E'' literals, doubled quotes, quoted mixed-case names
        let c = decode(
            b"I",
            br#"("Id","Name",v) values ('1',E'x\\y''z',E'''"quoted\\string$%,@"''')"#,
        )
        .unwrap();
        assert_eq!(
            c.cols,
            vec![
                col("Id", Some("1")),
                col("Name", Some("x\\y'z")),
                col("v", Some("'\"quoted\\string$%,@\"'"))
            ]
        );
        let c = decode(b"U", br#""Id"='1' where "Id"='1' and "Name"=E'x\\y''z'"#).unwrap();
        assert_eq!(c.key, vec![key("Id", "1"), key("Name", "x\\y'z")]);
        // other escapes of E'' strings
        let c = decode(b"I", br"(a) values (E'\n\t\x41\101\u00e9')").unwrap();
        assert_eq!(c.cols, vec![(b("a"), Some("\n\tAAé".as_bytes().to_vec()))]);
    }

    #[test]
    fn sqltriga_errors() {
        for bad in [
            &b"(a,b) values ('1')"[..],
            b"(a) values (1)",
            b"(a) values ('1'",
            b"(a) vals ('1')",
            b"(a) values ('1') trailing",
            b"(a) values ('unterminated)",
        ] {
            assert!(decode(b"I", bad).is_err(), "{}", show(bad));
        }
        assert!(decode(b"U", b"a='1'").is_err());
        assert!(decode(b"U", b"a='1' where k=NULL")
            .unwrap_err()
            .0
            .contains("NULL"));
        assert!(decode(b"D", b"k='1' or k='2'").is_err());
        assert!(decode(b"D", b"").is_err());
    }

    #[test]
    fn jsontriga_events() {
        let t = br#"{"op":"INSERT","table":["public","trigger_base"],"pkey":["id"]}"#;
        let c = decode(
            t,
            br#"{"id":1,"txt":"text1","val":null,"b":true,"j":"{\"a\": [1, \"b\"]}"}"#,
        )
        .unwrap();
        assert_eq!(
            c.cols,
            vec![
                col("id", Some("1")),
                col("txt", Some("text1")),
                col("val", None),
                col("b", Some("t")),
                col("j", Some(r#"{"a": [1, "b"]}"#)),
            ]
        );
        let t = br#"{"op":"UPDATE","table":["public","t"],"pkey":["Id","Name"]}"#;
        let c = decode(t, br#"{"Id":1,"Name":"x\\y'z","n":"2.50","e":"\u00e9\n"}"#).unwrap();
        assert_eq!(c.key, vec![key("Id", "1"), key("Name", "x\\y'z")]);
        assert_eq!(
            c.cols,
            vec![
                col("n", Some("2.50")),
                (b("e"), Some("é\n".as_bytes().to_vec()))
            ]
        );
        let t = br#"{"op":"DELETE","table":["public","t"],"pkey":["id"]}"#;
        let c = decode(t, br#"{"id":-3.5e2,"x":{"nested":[1,2]}}"#).unwrap();
        assert_eq!(c.key, vec![key("id", "-3.5e2")]);
        // errors
        assert!(decode(t, br#"{"x":1}"#).is_err());
        assert!(decode(t, br#"{"id":1"#).is_err());
        assert!(decode(t, br#"[1]"#).is_err());
        assert!(decode(br#"{"op":"MERGE","pkey":[]}"#, b"{}").is_err());
        assert!(decode(br#"{"table":[],"pkey":[]}"#, b"{}").is_err());
    }

    #[test]
    fn shapes_and_sql() {
        let qi = |n: &[u8]| String::from_utf8(crate::logic::quote::quote_ident(n)).unwrap();
        let eq = |_| "OPERATOR(pg_catalog.=)".to_string();
        let c = decode(b"I:id", b"id=1&Val=2").unwrap();
        assert_eq!(
            c.shape().sql("public.t", qi, eq).unwrap(),
            r#"insert into public.t (id, "Val") values ($1, $2)"#
        );
        let c = decode(b"U:a,b", b"a=1&x=2&b=3&y").unwrap();
        assert_eq!(
            c.shape().sql("s.t", qi, eq).unwrap(),
            "update only s.t set x = $1, y = $2 where a OPERATOR(pg_catalog.=) $3 and b OPERATOR(pg_catalog.=) $4"
        );
        let p: Vec<Option<&[u8]>> = c.params().collect();
        assert_eq!(p, vec![Some(&b"2"[..]), None, Some(b"1"), Some(b"3")]);
        let c = decode(b"D:a", b"a=1&x=2").unwrap();
        assert_eq!(
            c.shape().sql("s.t", qi, eq).unwrap(),
            "delete from only s.t where a OPERATOR(pg_catalog.=) $1"
        );
        // same columns, other values: one shape
        assert_eq!(
            decode(b"I:id", b"id=1&v=2").unwrap().shape(),
            decode(b"I:id", b"id=7&v").unwrap().shape()
        );
        let s = decode(b"I:id", b"id=1&v=2").unwrap().shape();
        assert!(s.fits(&decode(b"I:id", b"id=7&v").unwrap()));
        assert!(!s.fits(&decode(b"I:id", b"v=7&id=1").unwrap()));
        assert!(!s.fits(&decode(b"I:id", b"id=7").unwrap()));
        assert!(!s.fits(&decode(b"D:id", b"id=7&v=2").unwrap()));
        // an update of a key-only table sets nothing
        let c = decode(b"U:id", b"id=1").unwrap();
        assert!(c.is_noop());
        assert!(c.shape().sql("t", qi, eq).is_err());
    }

    #[test]
    fn handlers() {
        assert_eq!(parse_handler(None), Ok(Handler::default()));
        assert_eq!(parse_handler(Some("londiste")), Ok(Handler::default()));
        assert_eq!(
            parse_handler(Some("londiste(ignore_truncate=1)")),
            Ok(Handler {
                ignore_truncate: true
            })
        );
        let e = parse_handler(Some("bulk(method=1)")).unwrap_err();
        assert!(e.contains("\"bulk\""), "{e}");
        assert!(parse_handler(Some("londiste(encoding=utf8)")).is_err());
        assert!(parse_handler(Some("londiste(ignore_truncate=1")).is_err());
        assert_eq!(
            handler_of_attrs(Some("skip_truncate=1&handler=bulk%28method%3d1%29")),
            Ok(Some("bulk(method=1)".to_string()))
        );
        assert_eq!(handler_of_attrs(Some("skip_truncate=1")), Ok(None));
        assert_eq!(handler_of_attrs(None), Ok(None));
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[a-z_][a-z0-9_]{0,8}".prop_map(|s| s.into_bytes()),
            proptest::collection::vec(1u8..=255, 1..10),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        proptest::option::weighted(0.8, proptest::collection::vec(any::<u8>(), 0..16))
    }

    fn row() -> impl Strategy<Value = Vec<(Vec<u8>, Value)>> {
        proptest::collection::vec((name(), value()), 1..6).prop_map(|mut r| {
            // column names are unique in a table
            let mut seen = std::collections::HashSet::new();
            r.retain(|(n, _)| seen.insert(n.clone()));
            r
        })
    }

    proptest! {
        // what the triggers write, the planner reads back exactly
        #[test]
        fn urlenc_round_trip(r in row()) {
            let data = trg::urlenc_row(r.iter().map(|(n, v)| (n.as_slice(), v.as_deref())));
            let c = decode(b"I:", &data).unwrap();
            prop_assert_eq!(c.cols, r);
        }

        #[test]
        fn sqltriga_insert_round_trip(r in row()) {
            let quoted: Vec<Vec<u8>> = r.iter().map(|(n, _)| crate::logic::quote::quote_ident(n)).collect();
            let data = trg::sql_insert(quoted.iter().zip(&r).map(|(q, (_, v))| (q.as_slice(), v.as_deref())));
            let c = decode(b"I", &data).unwrap();
            prop_assert_eq!(c.cols, r);
        }

        #[test]
        fn sqltriga_update_round_trip(r in row(), k in proptest::collection::vec(any::<u8>(), 0..12)) {
            let quoted: Vec<Vec<u8>> = r.iter().map(|(n, _)| crate::logic::quote::quote_ident(n)).collect();
            let data = trg::sql_update(
                quoted.iter().zip(&r).map(|(q, (_, v))| (q.as_slice(), v.as_deref())),
                [(&b"pk"[..], k.as_slice())],
            );
            let c = decode(b"U", &data).unwrap();
            prop_assert_eq!(c.cols, r);
            prop_assert_eq!(c.key, vec![(b"pk".to_vec(), k)]);
        }

        #[test]
        fn json_round_trip(r in row()) {
            let data = trg::json_row(r.iter().map(|(n, v)| (n.as_slice(), match v {
                Some(v) => trg::JsonVal::Str(v.as_slice()),
                None => trg::JsonVal::Null,
            })));
            let t = br#"{"op":"INSERT","table":["s","t"],"pkey":[]}"#;
            let c = decode(t, &data).unwrap();
            prop_assert_eq!(c.cols, r);
        }

        // no input makes the decoder panic
        #[test]
        fn garbage_never_panics(t in proptest::collection::vec(any::<u8>(), 0..12),
                                d in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = classify(&t);
            let _ = decode(&t, &d);
            let _ = decode(b"I", &d);
            let _ = decode(b"U", &d);
            let _ = decode(br#"{"op":"UPDATE","pkey":["a"]}"#, &d);
        }
    }
}
