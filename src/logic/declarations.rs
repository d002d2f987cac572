//! A check that every hand-written `CREATE FUNCTION ... LANGUAGE c` in `sql/` agrees
//! with the Rust function behind its symbol (`#[pg_extern(sql = false)] fn x` is the
//! symbol `x_wrapper`): the same number and types of arguments, STRICT whenever a Rust
//! argument cannot take NULL, and a result of the right form (a single record with OUT
//! columns for `OutRec`, `SETOF record` with the same OUT names and types for
//! `TableIterator`, the same scalar type otherwise). A function declared in one place
//! only fails the check too.
//!
//! It reads the sources at test time (from the crate's directory), so a function added,
//! changed or moved to another file is checked without editing this test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A Rust type as the SQL type it maps to, and whether it takes NULL.
fn rust_type(t: &str) -> Result<(String, bool), String> {
    let t: String = t.split_whitespace().collect::<Vec<_>>().join(" ");
    let t = t.trim();
    if let Some(inner) = t.strip_prefix("Option<").and_then(|r| r.strip_suffix('>')) {
        return Ok((rust_type(inner)?.0, true));
    }
    let base = t.rsplit("::").next().unwrap_or(t);
    let sql = match base {
        "&str" | "String" | "&'static str" => "text",
        "i32" => "int4",
        "i64" => "int8",
        "i16" => "int2",
        "bool" => "bool",
        "f64" => "float8",
        "Oid" => "oid",
        "Interval" => "interval",
        "AnyNumeric" => "numeric",
        "TimestampWithTimeZone" => "timestamptz",
        "Vec<Option<String>>" | "Vec<String>" => "text[]",
        _ => return Err(format!("no SQL mapping for Rust type `{t}`")),
    };
    Ok((sql.to_string(), false))
}

/// The canonical spelling of an SQL type name.
fn sql_type(t: &str) -> String {
    let t = t.trim().to_ascii_lowercase();
    let (base, array) = match t.strip_suffix("[]") {
        Some(b) => (b.trim().to_string(), "[]"),
        None => (t, ""),
    };
    let base = match base.as_str() {
        "integer" | "int" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "boolean" | "bool" => "bool",
        "double precision" | "float8" => "float8",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        other => other,
    }
    .to_string();
    format!("{base}{array}")
}

/// Split at top-level commas (not inside <>, (), []).
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out.into_iter().map(|p| p.trim().to_string()).collect()
}

/// The text between the bracket at `open` and its match.
fn bracketed(s: &str, open: usize) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let (o, c) = match b.get(open)? {
        b'(' => (b'(', b')'),
        b'<' => (b'<', b'>'),
        _ => return None,
    };
    let mut depth = 0;
    for (i, &x) in b.iter().enumerate().skip(open) {
        if x == o {
            depth += 1;
        } else if x == c {
            depth -= 1;
            if depth == 0 {
                return Some((open + 1, i));
            }
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Returns {
    /// `OutRec`: one record, OUT columns declared in SQL only (checked at run time)
    Record,
    /// `TableIterator`: SETOF record with these OUT columns
    Table(Vec<(String, String)>),
    /// `SetOfIterator<T>`
    SetOf(String),
    Scalar(String),
    Void,
}

#[derive(Debug)]
struct RustFn {
    file: String,
    args: Vec<(String, bool)>,
    returns: Returns,
}

#[derive(Debug)]
struct SqlFn {
    file: String,
    name: String,
    args: Vec<String>,
    strict: bool,
    returns: Returns,
}

fn rust_returns(r: &str) -> Result<Returns, String> {
    let r = r.trim();
    if r.is_empty() || r == "()" {
        return Ok(Returns::Void);
    }
    if r == "OutRec" || r == "Rec" || r.ends_with("::OutRec") {
        return Ok(Returns::Record);
    }
    if let Some(p) = r.find("TableIterator") {
        let open = p + r[p..].find('<').ok_or("TableIterator without <")?;
        let (a, b) = bracketed(r, open).ok_or("unbalanced TableIterator<>")?;
        let inner = split_top(&r[a..b]);
        let tuple = inner.last().ok_or("empty TableIterator")?;
        let tuple = tuple.trim();
        let tuple = tuple
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .unwrap_or(tuple);
        let mut cols = Vec::new();
        for c in split_top(tuple) {
            let c = c.trim();
            let body = c
                .strip_prefix("name!(")
                .and_then(|x| x.strip_suffix(')'))
                .ok_or_else(|| format!("TableIterator column `{c}` is not name!(..)"))?;
            let parts = split_top(body);
            if parts.len() != 2 {
                return Err(format!("name!({body}): expected two parts"));
            }
            cols.push((parts[0].clone(), rust_type(&parts[1])?.0));
        }
        return Ok(Returns::Table(cols));
    }
    if let Some(p) = r.find("SetOfIterator") {
        let open = p + r[p..].find('<').ok_or("SetOfIterator without <")?;
        let (a, b) = bracketed(r, open).ok_or("unbalanced SetOfIterator<>")?;
        let inner = split_top(&r[a..b]);
        return Ok(Returns::SetOf(
            rust_type(inner.last().ok_or("empty SetOfIterator")?)?.0,
        ));
    }
    Ok(Returns::Scalar(rust_type(r)?.0))
}

/// `#[pg_extern(... sql = false ...)] fn name(args) -> ret {` in one source file.
fn rust_fns(file: &str, src: &str, out: &mut BTreeMap<String, RustFn>) -> Result<(), String> {
    // attributes are recognised at the start of a line only (not in doc comments)
    let mut at = 0;
    let mut starts = Vec::new();
    for line in src.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("#[pg_extern") || t.starts_with("#[pg_trigger") {
            starts.push(at + (line.len() - line.trim_start().len()));
        }
        at += line.len();
    }
    for p in starts {
        let rest = &src[p..];
        let attr_end = rest.find(")]").ok_or("unterminated #[pg_extern(")?;
        if !rest[..attr_end].contains("sql = false") {
            continue;
        }
        let trigger = rest.starts_with("#[pg_trigger");
        // the item: skip further attributes and comments up to the fn
        let mut item = &rest[attr_end + 2..];
        loop {
            let t = item.trim_start();
            if t.starts_with("#[") {
                let e = t
                    .find(")]")
                    .or_else(|| t.find(']'))
                    .ok_or("unterminated attribute")?;
                item = &t[e + 1..];
                item = item.strip_prefix(']').unwrap_or(item);
            } else if t.starts_with("//") {
                item = t.find('\n').map(|e| &t[e..]).unwrap_or("");
            } else {
                item = t;
                break;
            }
        }
        let fnpos = item.find("fn ").ok_or("#[pg_extern] without fn")?;
        if !item[..fnpos]
            .split_whitespace()
            .all(|w| matches!(w, "pub" | "unsafe" | "extern" | "\"C\"" | "pub(crate)"))
        {
            return Err(format!(
                "#[pg_extern] not followed by a fn: {}",
                &item[..fnpos.min(40)]
            ));
        }
        let rest = item;
        let after = &rest[fnpos + 3..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let open = fnpos + 3 + after.find('(').ok_or("fn without (")?;
        let (a, b) = bracketed(rest, open).ok_or_else(|| format!("fn {name}: unbalanced ()"))?;
        let mut args = Vec::new();
        if trigger {
            // a trigger function takes no SQL arguments and returns `trigger`
            out.insert(
                format!("{name}_wrapper"),
                RustFn {
                    file: file.to_string(),
                    args,
                    returns: Returns::Scalar("trigger".into()),
                },
            );
            continue;
        }
        for arg in split_top(&rest[a..b]) {
            let ty = arg
                .split_once(':')
                .map(|(_, t)| t)
                .ok_or_else(|| format!("fn {name}: argument `{arg}` without type"))?;
            args.push(rust_type(ty).map_err(|e| format!("fn {name}: {e}"))?);
        }
        let tail = &rest[b + 1..];
        let body = tail
            .find('{')
            .ok_or_else(|| format!("fn {name}: no body"))?;
        let sig = tail[..body].trim();
        let ret = sig.strip_prefix("->").unwrap_or("").trim();
        let returns = rust_returns(ret).map_err(|e| format!("fn {name}: {e}"))?;
        out.insert(
            format!("{name}_wrapper"),
            RustFn {
                file: file.to_string(),
                args,
                returns,
            },
        );
    }
    Ok(())
}

/// Every `CREATE [OR REPLACE] FUNCTION ... LANGUAGE c ... AS 'MODULE_PATHNAME', 'sym';`.
/// `CREATE TABLE name (col type ..., ...)`: the columns (name, type), constraints
/// left out; a `SETOF <table>` result is that table's row type.
fn sql_tables(src: &str, out: &mut BTreeMap<String, Vec<(String, String)>>) {
    let upper = src.to_ascii_uppercase();
    let mut from = 0;
    while let Some(p) = upper[from..].find("CREATE TABLE ") {
        let start = from + p + "CREATE TABLE ".len();
        let Some(open) = src[start..].find('(').map(|o| start + o) else {
            break;
        };
        let name = src[start..open].trim().to_ascii_lowercase();
        let Some((a, b)) = bracketed(src, open) else {
            break;
        };
        let cols = split_top(&src[a..b])
            .into_iter()
            .filter_map(|c| {
                let w: Vec<&str> = c.split_whitespace().collect();
                let first = w.first()?.to_ascii_uppercase();
                if matches!(
                    first.as_str(),
                    "PRIMARY" | "UNIQUE" | "CHECK" | "FOREIGN" | "CONSTRAINT" | "EXCLUDE"
                ) || w.len() < 2
                {
                    return None;
                }
                // the type is the words up to the first constraint keyword
                let ty: Vec<&str> = w[1..]
                    .iter()
                    .take_while(|x| {
                        !matches!(
                            x.to_ascii_uppercase().as_str(),
                            "NOT"
                                | "NULL"
                                | "DEFAULT"
                                | "PRIMARY"
                                | "REFERENCES"
                                | "UNIQUE"
                                | "CHECK"
                                | "CONSTRAINT"
                                | "GENERATED"
                                | "COLLATE"
                        )
                    })
                    .copied()
                    .collect();
                Some((w[0].to_string(), sql_type(&ty.join(" "))))
            })
            .collect();
        out.insert(name, cols);
        from = b;
    }
}

fn sql_fns(file: &str, src: &str, out: &mut BTreeMap<String, SqlFn>) -> Result<(), String> {
    // drop comments first
    let text: String = src
        .lines()
        .map(|l| match l.find("--") {
            Some(p) => &l[..p],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let upper = text.to_ascii_uppercase();
    let mut from = 0;
    while let Some(p) = upper[from..].find("CREATE ") {
        let start = from + p;
        let end = match text[start..].find(';') {
            Some(e) => start + e,
            None => break,
        };
        from = end + 1;
        let stmt = &text[start..end];
        let ustmt = stmt.to_ascii_uppercase();
        let Some(fpos) = ustmt.find("FUNCTION ") else {
            continue;
        };
        if !ustmt[..fpos].trim_end().ends_with("CREATE")
            && !ustmt[..fpos].trim_end().ends_with("REPLACE")
        {
            continue;
        }
        if !ustmt.contains("LANGUAGE C") || !stmt.contains("MODULE_PATHNAME") {
            continue;
        }
        let open = fpos + stmt[fpos..].find('(').ok_or("CREATE FUNCTION without (")?;
        let name = stmt[fpos + 9..open].trim().to_string();
        let (a, b) = bracketed(stmt, open).ok_or_else(|| format!("{name}: unbalanced ()"))?;
        let mut args = Vec::new();
        let mut outs = Vec::new();
        for arg in split_top(&stmt[a..b]) {
            let arg = match arg.to_ascii_uppercase().find(" DEFAULT ") {
                Some(d) => arg[..d].to_string(),
                None => arg,
            };
            let words: Vec<&str> = arg.split_whitespace().collect();
            match words.first().map(|w| w.to_ascii_uppercase()) {
                Some(w) if w == "OUT" => {
                    outs.push((words[1].to_string(), sql_type(&words[2..].join(" "))))
                }
                Some(w) if w == "IN" => args.push(sql_type(&words[2..].join(" "))),
                Some(_) if words.len() >= 2 => args.push(sql_type(&words[1..].join(" "))),
                Some(_) => args.push(sql_type(words[0])),
                None => {}
            }
        }
        let after = &stmt[b + 1..];
        let uafter = after.to_ascii_uppercase();
        let r = uafter
            .find("RETURNS ")
            .ok_or_else(|| format!("{name}: no RETURNS"))?;
        let rtext = after[r + 8..].trim_start();
        let rword_end = rtext
            .to_ascii_uppercase()
            .find(" LANGUAGE")
            .unwrap_or(rtext.len());
        let rtype = rtext[..rword_end].trim();
        let urtype = rtype.to_ascii_uppercase();
        let returns = if urtype.starts_with("SETOF RECORD") {
            Returns::Table(outs.clone())
        } else if urtype.starts_with("TABLE") {
            let open = rtype
                .find('(')
                .ok_or_else(|| format!("{name}: TABLE without ("))?;
            let (x, y) = bracketed(rtype, open).ok_or_else(|| format!("{name}: TABLE ()"))?;
            Returns::Table(
                split_top(&rtype[x..y])
                    .iter()
                    .map(|c| {
                        let w: Vec<&str> = c.split_whitespace().collect();
                        (w[0].to_string(), sql_type(&w[1..].join(" ")))
                    })
                    .collect(),
            )
        } else if let Some(t) = urtype.strip_prefix("SETOF ") {
            Returns::SetOf(sql_type(t))
        } else if urtype.starts_with("RECORD") {
            Returns::Record
        } else if urtype.starts_with("VOID") {
            Returns::Void
        } else {
            Returns::Scalar(sql_type(rtype.split_whitespace().next().unwrap_or("")))
        };
        if returns == Returns::Record && outs.is_empty() {
            return Err(format!("{name}: RETURNS record without OUT columns"));
        }
        let strict = uafter.contains(" STRICT") || uafter.contains("RETURNS NULL ON NULL INPUT");
        let sym = stmt
            .rsplit('\'')
            .nth(1)
            .ok_or_else(|| format!("{name}: no symbol"))?
            .to_string();
        if let Some(prev) = out.get(&sym) {
            // one symbol may back several SQL names only if they are declared alike
            if prev.args != args || prev.returns != returns || prev.strict != strict {
                return Err(format!(
                    "symbol {sym} is declared differently as {} and {name}",
                    prev.name
                ));
            }
        }
        out.insert(
            sym,
            SqlFn {
                file: file.to_string(),
                name,
                args,
                strict,
                returns,
            },
        );
    }
    Ok(())
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "archive") {
                files(&p, ext, out);
            }
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// Every disagreement between the SQL declarations and the Rust functions.
fn check(root: &Path) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut rust = BTreeMap::new();
    let mut sql = BTreeMap::new();
    let mut rs = Vec::new();
    files(&root.join("src"), "rs", &mut rs);
    files(&root.join("bgworker"), "rs", &mut rs);
    for f in &rs {
        let name = f.display().to_string();
        if name.ends_with("logic/declarations.rs") {
            continue;
        }
        let src = std::fs::read_to_string(f).unwrap_or_default();
        if let Err(e) = rust_fns(&name, &src, &mut rust) {
            problems.push(format!("{name}: {e}"));
        }
    }
    let mut sq = Vec::new();
    files(&root.join("sql"), "sql", &mut sq);
    for f in sq.iter().filter(|f| {
        // the upgrade scripts repeat what the install files declare
        !f.file_name()
            .is_some_and(|n| n.to_string_lossy().contains("--"))
    }) {
        let name = f.display().to_string();
        let src = std::fs::read_to_string(f).unwrap_or_default();
        if let Err(e) = sql_fns(&name, &src, &mut sql) {
            problems.push(format!("{name}: {e}"));
        }
    }
    let mut tables = BTreeMap::new();
    for f in &sq {
        sql_tables(&std::fs::read_to_string(f).unwrap_or_default(), &mut tables);
    }
    for s in sql.values_mut() {
        if let Returns::SetOf(t) = &s.returns {
            if let Some(cols) = tables.get(t) {
                s.returns = Returns::Table(cols.clone());
            }
        }
    }
    // symbols that only frozen install scripts of earlier versions name: kept for that
    // SQL ("C symbols are forever"), declared by no current file
    let mut archived = Vec::new();
    files(&root.join("sql/archive"), "sql", &mut archived);
    let frozen: String = archived
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    for (sym, r) in &rust {
        let Some(s) = sql.get(sym) else {
            if frozen.contains(&format!("'{sym}'")) {
                continue;
            }
            problems.push(format!(
                "{sym} ({}): sql = false but no CREATE FUNCTION in sql/ names it",
                r.file
            ));
            continue;
        };
        let what = format!("{} ({} / {})", s.name, s.file, r.file);
        let rargs: Vec<&str> = r.args.iter().map(|(t, _)| t.as_str()).collect();
        let sargs: Vec<&str> = s.args.iter().map(|t| t.as_str()).collect();
        if rargs != sargs {
            problems.push(format!("{what}: arguments SQL {sargs:?}, Rust {rargs:?}"));
        }
        if !s.strict && r.args.iter().any(|(_, nullable)| !nullable) {
            problems.push(format!(
                "{what}: a Rust argument cannot be NULL but the function is not STRICT"
            ));
        }
        let ok = match (&s.returns, &r.returns) {
            (Returns::Record, Returns::Record) => true,
            (Returns::Table(a), Returns::Table(b)) => a == b,
            (a, b) => a == b,
        };
        if !ok {
            problems.push(format!(
                "{what}: result SQL {:?}, Rust {:?}",
                s.returns, r.returns
            ));
        }
    }
    for (sym, s) in &sql {
        let is_rust_symbol = sym.ends_with("_wrapper");
        if is_rust_symbol && !rust.contains_key(sym) {
            problems.push(format!(
                "{} ({}): symbol {sym} has no #[pg_extern(sql = false)] function",
                s.name, s.file
            ));
        }
    }
    (problems, rust.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_declarations_match_rust_functions() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (problems, checked) = check(root);
        // pgq_node, londiste, pgq_ext, pgq_coop: about a hundred functions
        assert!(checked >= 90, "only {checked} functions found");
        assert!(
            problems.is_empty(),
            "{} problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }

    #[test]
    fn the_check_finds_disagreements() {
        let mut rust = BTreeMap::new();
        rust_fns(
            "a.rs",
            "#[pg_extern(sql = false)]\nfn f(a: &str, b: Option<i64>) -> OutRec { x }\n\
             #[pg_extern(sql = false)]\nfn g(a: Option<&str>) -> TableIterator<'static, (name!(x, Option<String>), name!(n, Option<i32>))> { x }",
            &mut rust,
        )
        .unwrap();
        assert_eq!(
            rust["f_wrapper"].args,
            vec![("text".into(), false), ("int8".into(), true)]
        );
        assert_eq!(
            rust["g_wrapper"].returns,
            Returns::Table(vec![
                ("x".into(), "text".into()),
                ("n".into(), "int4".into())
            ])
        );
        let mut sql = BTreeMap::new();
        sql_fns(
            "a.sql",
            "CREATE FUNCTION s.f(i text, i2 bigint, OUT ret_code int4, OUT ret_note text)\n\
             RETURNS record LANGUAGE c CALLED ON NULL INPUT AS 'MODULE_PATHNAME', 'f_wrapper';\n\
             -- a comment; with a semicolon\n\
             CREATE FUNCTION s.g(i text, OUT x text, OUT n integer) RETURNS SETOF record\n\
             LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'g_wrapper';",
            &mut sql,
        )
        .unwrap();
        assert!(!sql["f_wrapper"].strict);
        assert_eq!(sql["f_wrapper"].args, vec!["text", "int8"]);
        assert_eq!(sql["g_wrapper"].returns, rust["g_wrapper"].returns);
        // a whole tree with a non-STRICT declaration of a non-Option argument
        let dir = std::env::temp_dir().join(format!("pgq-decl-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::create_dir_all(dir.join("sql")).unwrap();
        std::fs::write(
            dir.join("src/x.rs"),
            "#[pg_extern(sql = false)]\nfn f(a: &str) -> i32 { 1 }\n#[pg_extern(sql = false)]\nfn h() -> bool { true }\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("sql/x.sql"),
            "CREATE FUNCTION s.f(a text) RETURNS int8 LANGUAGE c AS 'MODULE_PATHNAME', 'f_wrapper';\n\
             CREATE FUNCTION s.k() RETURNS int4 LANGUAGE c AS 'MODULE_PATHNAME', 'k_wrapper';\n",
        )
        .unwrap();
        let (p, _) = check(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let all = p.join("\n");
        assert!(all.contains("not STRICT"), "{all}");
        assert!(
            all.contains("result SQL Scalar(\"int8\"), Rust Scalar(\"int4\")"),
            "{all}"
        );
        assert!(
            all.contains("h_wrapper") && all.contains("no CREATE FUNCTION"),
            "{all}"
        );
        assert!(all.contains("k_wrapper has no"), "{all}");
        assert_eq!(p.len(), 4, "{all}");
    }
}
