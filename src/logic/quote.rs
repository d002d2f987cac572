//! SQL quoting as PostgreSQL does it: `quote_literal` and `quote_identifier`
//! (`quote_ident`), byte-wise (every server encoding is ASCII-safe: no byte below 0x80
//! is part of a multibyte character), with PostgreSQL 15's keyword list
//! (logic/pg_keywords.rs). The one implementation: every caller in the extension
//! (trigger payloads, londiste DDL, batch SQL, the insert path) uses these.

use super::pg_keywords::NON_UNRESERVED;

/// Append `s` as PostgreSQL's `quote_literal` would: `'...'` with `'` and `\\` doubled,
/// prefixed with `E` when the value holds a backslash. Byte-wise: every server
/// encoding is ASCII-safe (no byte below 0x80 is part of a multibyte character).
pub fn quote_literal_into(out: &mut Vec<u8>, s: &[u8]) {
    if s.contains(&b'\\') {
        out.push(b'E');
    }
    out.push(b'\'');
    // copy runs between quote/backslash bytes, doubling each of those
    let mut start = 0;
    for (i, &c) in s.iter().enumerate() {
        if c == b'\'' || c == b'\\' {
            out.extend_from_slice(&s[start..=i]);
            start = i;
        }
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'\'');
}

pub fn quote_literal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    quote_literal_into(&mut out, s);
    out
}

/// True for PostgreSQL 15 keywords other than unreserved ones (those need quotes).
pub fn is_quoting_keyword(s: &str) -> bool {
    NON_UNRESERVED.binary_search(&s).is_ok()
}

/// Whether PostgreSQL's `quote_identifier` leaves `s` bare: starts with `a-z` or `_`,
/// only `a-z0-9_`, and not a keyword other than an unreserved one.
pub fn ident_is_safe(s: &[u8]) -> bool {
    match s.first() {
        Some(b'a'..=b'z' | b'_') => {}
        _ => return false,
    }
    if !s
        .iter()
        .all(|&c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_'))
    {
        return false;
    }
    // all ASCII, checked above
    !std::str::from_utf8(s).is_ok_and(is_quoting_keyword)
}

/// Append `s` as PostgreSQL's `quote_identifier` would (`quote_all` =
/// `quote_all_identifiers`).
pub fn quote_ident_into(out: &mut Vec<u8>, s: &[u8], quote_all: bool) {
    if !quote_all && ident_is_safe(s) {
        out.extend_from_slice(s);
        return;
    }
    out.push(b'"');
    for &c in s {
        if c == b'"' {
            out.push(b'"');
        }
        out.push(c);
    }
    out.push(b'"');
}

pub fn quote_ident(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    quote_ident_into(&mut out, s, false);
    out
}

/// `quote_literal` of a text (the result is UTF-8 when the input is).
pub fn literal(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 3);
    quote_literal_into(&mut out, s.as_bytes());
    // only ASCII quote bytes are added to valid UTF-8
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `quote_ident` of a text (`quote_all` = `quote_all_identifiers`).
pub fn ident(s: &str, quote_all: bool) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    quote_ident_into(&mut out, s.as_bytes(), quote_all);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `schema.name` with both parts quoted, as PostgreSQL's `quote_qualified_identifier`.
pub fn qualified(schema: &[u8], name: &[u8], quote_all: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(schema.len() + name.len() + 5);
    quote_ident_into(&mut out, schema, quote_all);
    out.push(b'.');
    quote_ident_into(&mut out, name, quote_all);
    out
}

/// A stored `schema.name` (split at the first dot; no dot means `public`, as
/// `pgq.quote_fqname` and `londiste.quote_fqname` read it) with both parts quoted.
pub fn fqname(name: &str, quote_all: bool) -> String {
    let (schema, rel) = name.split_once('.').unwrap_or(("public", name));
    format!("{}.{}", ident(schema, quote_all), ident(rel, quote_all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn st(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }
    fn ql(s: &str) -> String {
        st(quote_literal(s.as_bytes()))
    }
    fn qi(s: &str) -> String {
        st(quote_ident(s.as_bytes()))
    }

    #[test]
    fn quote_literal_vectors() {
        assert_eq!(ql("1"), "'1'");
        assert_eq!(ql("x\\y'z"), "E'x\\\\y''z'");
        assert_eq!(
            ql("'\"quoted\\string$%,@\"'"),
            "E'''\"quoted\\\\string$%,@\"'''"
        );
        assert_eq!(ql("\\x00ff01"), "E'\\\\x00ff01'");
        assert_eq!(ql(""), "''");
        assert_eq!(quote_literal(b"caf\xe9'"), b"'caf\xe9'''");
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
            assert_eq!(qi(i), o, "{i}");
        }
        let mut s = Vec::new();
        quote_ident_into(&mut s, b"id", true);
        assert_eq!(s, b"\"id\"");
        assert_eq!(quote_ident(b"k\xe9"), b"\"k\xe9\"");
    }

    #[test]
    fn keywords_sorted() {
        assert!(NON_UNRESERVED.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(NON_UNRESERVED.len(), 151);
    }

    #[test]
    fn text_forms() {
        assert_eq!(literal("a'b"), "'a''b'");
        assert_eq!(literal("a\\b"), "E'a\\\\b'");
        assert_eq!(literal("café"), "'café'");
        assert_eq!(ident("My Schema", false), "\"My Schema\"");
        assert_eq!(ident("x\"y", false), "\"x\"\"y\"");
        assert_eq!(ident("table", false), "\"table\"");
        assert_eq!(ident("t1", false), "t1");
        assert_eq!(ident("t1", true), "\"t1\"");
        assert_eq!(ident("é", false), "\"é\"");
    }

    #[test]
    fn qualified_names() {
        assert_eq!(st(qualified(b"public", b"t", false)), "public.t");
        assert_eq!(st(qualified(b"a.b", b"Order", false)), "\"a.b\".\"Order\"");
        assert_eq!(
            st(qualified(b"pgq", b"event_1", true)),
            "\"pgq\".\"event_1\""
        );
        assert_eq!(st(qualified(b"user", b"x", false)), "\"user\".x");
        assert_eq!(fqname("My Schema.Tbl", false), "\"My Schema\".\"Tbl\"");
        assert_eq!(fqname("x.\"y\"", false), "x.\"\"\"y\"\"\"");
        assert_eq!(fqname("a.b.c", false), "a.\"b.c\"");
        assert_eq!(fqname("tbl", false), "public.tbl");
        assert_eq!(fqname("tbl", true), "\"public\".\"tbl\"");
        assert_eq!(fqname(".x", false), "\"\".x");
    }

    proptest! {
        #[test]
        fn quote_literal_is_balanced(s in any::<Vec<u8>>()) {
            let q = quote_literal(&s);
            let body = if q[0] == b'E' { &q[1..] } else { &q[..] };
            prop_assert_eq!(q[0] == b'E', s.contains(&b'\\'));
            prop_assert!(body.len() >= 2 && body[0] == b'\'' && body[body.len() - 1] == b'\'');
            // undoubling the body gives back the input
            let inner = &body[1..body.len() - 1];
            let mut un = Vec::new();
            let mut it = inner.iter().copied().peekable();
            while let Some(c) = it.next() {
                if c == b'\'' || c == b'\\' {
                    prop_assert_eq!(it.next(), Some(c));
                }
                un.push(c);
            }
            prop_assert_eq!(un, s);
        }

        #[test]
        fn quote_ident_roundtrip(s in any::<Vec<u8>>()) {
            let q = quote_ident(&s);
            if q.first() == Some(&b'"') {
                let inner = &q[1..q.len() - 1];
                let mut un = Vec::new();
                let mut i = 0;
                while i < inner.len() {
                    un.push(inner[i]);
                    i += if inner[i] == b'"' { 2 } else { 1 };
                }
                prop_assert_eq!(un, s);
            } else {
                prop_assert_eq!(q, s);
            }
        }

        #[test]
        fn text_forms_agree_with_bytes(s in ".*") {
            prop_assert_eq!(literal(&s).into_bytes(), quote_literal(s.as_bytes()));
            prop_assert_eq!(ident(&s, false).into_bytes(), quote_ident(s.as_bytes()));
        }
    }
}
