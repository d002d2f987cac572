//! Compare and repair of replicated tables (docs/admin.md, "Compare and repair"): the
//! parts that need no server. The SQL both sides run, the column lists, the bucket
//! arithmetic, the row diff that becomes INSERT / UPDATE / DELETE statements, and the
//! decisions of a replay worker that a compare holds at a tick.
//!
//! The checksum is the one `londiste compare` prints: over the source's columns that
//! also exist locally, in the source's column order,
//! `count(1), sum(hashtext((c1,c2,...)::text)::bigint)`. A repair splits the same sum
//! into buckets by a hash of the primary key, so only the rows of buckets whose count
//! or sum differ are fetched and diffed.

use super::quote;
use std::collections::{BTreeMap, HashMap};

/// What a compare asked of a replay worker, and how far the worker got (kept in the
/// worker's shared-memory slot).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum HoldState {
    /// no hold
    #[default]
    None = 0,
    /// a compare wants the worker to stop at the hold tick; the worker is not there yet
    Requested = 1,
    /// the worker completed exactly the hold tick and applies nothing more
    Held = 2,
    /// the worker was already past the hold tick (the compare fails)
    Passed = 3,
    /// the worker cannot get there: its node is paused
    Paused = 4,
    /// the provider's next batch ends past the hold tick (no tick equal to it)
    Beyond = 5,
}

/// What a replay worker does at the start of a round while a compare holds it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HoldStep {
    /// go on replaying (no hold, or not at the hold tick yet)
    Proceed,
    /// report `state` and go on replaying (the compare will fail and let go)
    Report(HoldState),
    /// stand still at the hold tick: no batch, no copy, nothing that writes tables
    Stand,
}

/// The round's step for a worker whose completed tick is `position` (None: the
/// consumer has no position yet) and a hold at `hold_tick` (0: none).
pub fn hold_step(hold_tick: i64, position: Option<i64>, paused: bool) -> HoldStep {
    if hold_tick <= 0 {
        return HoldStep::Proceed;
    }
    match position {
        Some(p) if p == hold_tick => HoldStep::Stand,
        Some(p) if p > hold_tick => HoldStep::Report(HoldState::Passed),
        _ if paused => HoldStep::Report(HoldState::Paused),
        _ => HoldStep::Proceed,
    }
}

/// Whether a batch ending at `cur_tick` may be applied under a hold at `hold_tick`.
pub fn batch_allowed(hold_tick: i64, cur_tick: i64) -> bool {
    hold_tick <= 0 || cur_tick <= hold_tick
}

/// Why a compare cannot use the worker's state, as a message (None: keep waiting or
/// done).
pub fn hold_failure(state: HoldState, tick: i64, position: i64) -> Option<String> {
    match state {
        HoldState::Passed => Some(format!(
            "the local replay is already at tick {position}, past tick {tick} of the provider"
        )),
        HoldState::Paused => Some(format!(
            "the local replay is paused at tick {position} and cannot reach tick {tick}"
        )),
        HoldState::Beyond => Some(format!(
            "the provider's next batch after tick {position} ends past tick {tick}"
        )),
        HoldState::None | HoldState::Requested | HoldState::Held => None,
    }
}

/// The source's columns (in its order) that the local table also has.
pub fn common_columns(source: &[String], local: &[String]) -> Vec<String> {
    source
        .iter()
        .filter(|c| local.iter().any(|l| l == *c))
        .cloned()
        .collect()
}

/// `(c1,c2,...)` as `londiste compare` writes it: quoted names joined by commas in
/// parentheses (for one column that is just the parenthesized column).
pub fn column_tuple(cols: &[String]) -> String {
    let q: Vec<String> = cols.iter().map(|c| quote::ident(c, false)).collect();
    format!("({})", q.join(","))
}

/// The whole-table checksum: `londiste compare`'s query with every name qualified.
/// `table` is already quoted.
pub fn checksum_sql(table: &str, cols: &[String]) -> String {
    format!(
        "select pg_catalog.count(1), \
                pg_catalog.sum(pg_catalog.hashtext({}::pg_catalog.text)::pg_catalog.int8) \
           from only {table}",
        column_tuple(cols)
    )
}

/// How many buckets a repair splits a table of about `rows` rows into: a power of two
/// giving about 128 rows per bucket, at least 16 and at most 65536.
pub fn bucket_count(rows: f64) -> i64 {
    let want = if rows.is_finite() && rows > 0.0 {
        (rows / 128.0).ceil() as i64
    } else {
        1
    };
    (want.clamp(16, 65536) as u64).next_power_of_two() as i64
}

/// The bucket of a row: its key tuple's text hashed, shifted to 0..2^32, modulo `n`.
pub fn bucket_expr(keys: &[String], n: i64) -> String {
    format!(
        "((pg_catalog.hashtext({}::pg_catalog.text)::pg_catalog.int8 operator(pg_catalog.+) 2147483648) \
          operator(pg_catalog.%) {n})",
        column_tuple(keys)
    )
}

/// Per bucket: bucket number, row count, and the checksum's sum as text.
pub fn bucket_sums_sql(table: &str, cols: &[String], keys: &[String], n: i64) -> String {
    format!(
        "select s.b, pg_catalog.count(1), pg_catalog.sum(s.h)::pg_catalog.text \
           from (select {} as b, \
                        pg_catalog.hashtext({}::pg_catalog.text)::pg_catalog.int8 as h \
                   from only {table}) s \
          group by s.b",
        bucket_expr(keys, n),
        column_tuple(cols)
    )
}

/// A column's value as its type's output function writes it (what libpq's text format
/// and `record_out` show), NULL for NULL. `concat` calls the output function; a plain
/// `::text` cast would not always (boolean gives `true`, inet keeps its netmask), and
/// `IS NULL` is true for a composite value whose fields are all NULL.
fn value_expr(col: &str) -> String {
    let c = quote::ident(col, false);
    format!(
        "case when pg_catalog.num_nulls({c}) operator(pg_catalog.=) 1 then null \
              else pg_catalog.concat({c}) end"
    )
}

/// The rows of the buckets in `$1` (an int8[] literal), every column as text.
pub fn bucket_rows_sql(table: &str, cols: &[String], keys: &[String], n: i64) -> String {
    let vals: Vec<String> = cols.iter().map(|c| value_expr(c)).collect();
    format!(
        "select {} from only {table} where {} operator(pg_catalog.=) any ($1::pg_catalog.int8[])",
        vals.join(", "),
        bucket_expr(keys, n)
    )
}

/// An int8[] literal of bucket numbers.
pub fn bucket_array(buckets: &[i64]) -> String {
    let v: Vec<String> = buckets.iter().map(|b| b.to_string()).collect();
    format!("{{{}}}", v.join(","))
}

/// One bucket's row count and checksum sum (as text).
pub type BucketSum = (i64, Option<String>);

/// The buckets whose count or sum differ (present on one side only included), sorted.
pub fn differing_buckets(
    source: &BTreeMap<i64, BucketSum>,
    local: &BTreeMap<i64, BucketSum>,
) -> Vec<i64> {
    let mut out: Vec<i64> = source
        .iter()
        .filter(|(b, s)| local.get(b) != Some(s))
        .map(|(b, _)| *b)
        .collect();
    out.extend(local.keys().filter(|b| !source.contains_key(b)));
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether the two sides' count and checksum agree (an empty table has a NULL sum).
pub fn same_checksum(source: (i64, Option<&str>), local: (i64, Option<&str>)) -> bool {
    source == local
}

/// A row: every common column's text, in the common order.
pub type Values = Vec<Option<String>>;

/// What the statements of a repair need to know about the local table.
#[derive(Debug, Clone)]
pub struct Shape {
    /// the local table, quoted
    pub table: String,
    /// the common columns (source order)
    pub cols: Vec<String>,
    /// positions in `cols` of the local primary key's columns, in key order
    pub keys: Vec<usize>,
    /// per column of `cols`: it can be written (not a generated column here)
    pub writable: Vec<bool>,
}

impl Shape {
    /// The shape, or why the table cannot be repaired row by row.
    pub fn new(
        table: String,
        cols: Vec<String>,
        pkey: &[String],
        generated: &[String],
    ) -> Result<Shape, String> {
        if pkey.is_empty() {
            return Err("it has no primary key".into());
        }
        let mut keys = Vec::new();
        for k in pkey {
            match cols.iter().position(|c| c == k) {
                Some(i) => keys.push(i),
                None => {
                    return Err(format!(
                        "its primary key column {} is not a column of the source table",
                        quote::ident(k, false)
                    ))
                }
            }
        }
        let writable = cols.iter().map(|c| !generated.contains(c)).collect();
        Ok(Shape {
            table,
            cols,
            keys,
            writable,
        })
    }

    /// The key column names, in key order.
    pub fn key_names(&self) -> Vec<String> {
        self.keys.iter().map(|&i| self.cols[i].clone()).collect()
    }

    fn key_of(&self, row: &Values) -> Result<Vec<String>, String> {
        self.keys
            .iter()
            .map(|&i| {
                row.get(i).cloned().flatten().ok_or_else(|| {
                    format!(
                        "a row has NULL in key column {}",
                        quote::ident(&self.cols[i], false)
                    )
                })
            })
            .collect()
    }

    fn value(v: &Option<String>) -> String {
        match v {
            Some(s) => quote::literal(s),
            None => "NULL".to_string(),
        }
    }

    fn where_clause(&self, key: &[String]) -> String {
        self.keys
            .iter()
            .zip(key)
            .map(|(&i, v)| {
                format!(
                    "{} = {}",
                    quote::ident(&self.cols[i], false),
                    quote::literal(v)
                )
            })
            .collect::<Vec<_>>()
            .join(" and ")
    }

    pub fn insert_sql(&self, row: &Values) -> String {
        let (cols, vals): (Vec<String>, Vec<String>) = self
            .cols
            .iter()
            .zip(row)
            .zip(&self.writable)
            .filter(|(_, w)| **w)
            .map(|((c, v), _)| (quote::ident(c, false), Self::value(v)))
            .unzip();
        format!(
            "insert into {} ({}) values ({})",
            self.table,
            cols.join(", "),
            vals.join(", ")
        )
    }

    /// The UPDATE that makes `local` equal to `source` (same key); None when only
    /// columns that cannot be written differ.
    pub fn update_sql(&self, key: &[String], source: &Values, local: &Values) -> Option<String> {
        let sets: Vec<String> = (0..self.cols.len())
            .filter(|i| !self.keys.contains(i) && self.writable[*i] && source[*i] != local[*i])
            .map(|i| {
                format!(
                    "{} = {}",
                    quote::ident(&self.cols[i], false),
                    Self::value(&source[i])
                )
            })
            .collect();
        if sets.is_empty() {
            return None;
        }
        Some(format!(
            "update {} set {} where {}",
            self.table,
            sets.join(", "),
            self.where_clause(key)
        ))
    }

    pub fn delete_sql(&self, key: &[String]) -> String {
        format!(
            "delete from {} where {}",
            self.table,
            self.where_clause(key)
        )
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Delete,
    Update,
    Insert,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// One row-level statement of a repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub op: Op,
    pub sql: String,
}

/// The statements that turn the local rows of some buckets into the source's rows of
/// the same buckets: deletes first, then updates, then inserts (so a row that moved
/// from one key to another does not collide with itself), each in key order.
pub fn diff_rows(
    shape: &Shape,
    source: Vec<Values>,
    local: Vec<Values>,
) -> Result<Vec<Statement>, String> {
    let width = shape.cols.len();
    let mut src: HashMap<Vec<String>, Values> = HashMap::with_capacity(source.len());
    for row in source {
        if row.len() != width {
            return Err(format!(
                "a source row has {} columns, expected {width}",
                row.len()
            ));
        }
        let key = shape.key_of(&row).map_err(|e| format!("source: {e}"))?;
        if src.insert(key.clone(), row).is_some() {
            return Err(format!(
                "the source has two rows with key ({})",
                key.join(", ")
            ));
        }
    }
    let mut out: Vec<(Op, Vec<String>, String)> = Vec::new();
    for row in local {
        if row.len() != width {
            return Err(format!(
                "a local row has {} columns, expected {width}",
                row.len()
            ));
        }
        let key = shape.key_of(&row).map_err(|e| format!("local: {e}"))?;
        match src.remove(&key) {
            None => {
                let sql = shape.delete_sql(&key);
                out.push((Op::Delete, key, sql));
            }
            Some(s) if s != row => {
                if let Some(sql) = shape.update_sql(&key, &s, &row) {
                    out.push((Op::Update, key, sql));
                }
            }
            Some(_) => {}
        }
    }
    for (key, row) in src {
        let sql = shape.insert_sql(&row);
        out.push((Op::Insert, key, sql));
    }
    out.sort();
    Ok(out
        .into_iter()
        .map(|(op, _, sql)| Statement { op, sql })
        .collect())
}

/// Session settings that change how values are written as text: the provider session
/// takes the local session's values, so both sides write a value alike.
pub const TEXT_SETTINGS: [&str; 5] = [
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "extra_float_digits",
    "bytea_output",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }
    fn row(v: &[Option<&str>]) -> Values {
        v.iter().map(|x| x.map(str::to_string)).collect()
    }

    #[test]
    fn hold_steps() {
        assert_eq!(hold_step(0, Some(5), false), HoldStep::Proceed);
        assert_eq!(hold_step(0, None, true), HoldStep::Proceed);
        assert_eq!(hold_step(7, Some(5), false), HoldStep::Proceed);
        assert_eq!(hold_step(7, None, false), HoldStep::Proceed);
        assert_eq!(hold_step(7, Some(7), false), HoldStep::Stand);
        assert_eq!(hold_step(7, Some(7), true), HoldStep::Stand);
        assert_eq!(
            hold_step(7, Some(8), false),
            HoldStep::Report(HoldState::Passed)
        );
        assert_eq!(
            hold_step(7, Some(5), true),
            HoldStep::Report(HoldState::Paused)
        );
        assert!(batch_allowed(0, 100));
        assert!(batch_allowed(7, 7));
        assert!(batch_allowed(7, 6));
        assert!(!batch_allowed(7, 8));
        assert!(hold_failure(HoldState::Held, 7, 7).is_none());
        assert!(hold_failure(HoldState::Requested, 7, 3).is_none());
        let m = hold_failure(HoldState::Passed, 7, 9).unwrap();
        assert!(m.contains("tick 9") && m.contains("tick 7"), "{m}");
        assert!(hold_failure(HoldState::Beyond, 7, 5)
            .unwrap()
            .contains("past tick 7"));
        assert!(hold_failure(HoldState::Paused, 7, 5)
            .unwrap()
            .contains("paused"));
    }

    #[test]
    fn columns_and_checksum_sql() {
        let src = s(&["id", "name", "Extra", "gone"]);
        let local = s(&["name", "id", "Extra", "local_only"]);
        assert_eq!(common_columns(&src, &local), s(&["id", "name", "Extra"]));
        assert!(common_columns(&src, &s(&["x"])).is_empty());
        assert_eq!(
            column_tuple(&s(&["id", "name", "Extra"])),
            "(id,name,\"Extra\")"
        );
        assert_eq!(column_tuple(&s(&["id"])), "(id)");
        assert_eq!(column_tuple(&s(&["select", "a b"])), "(\"select\",\"a b\")");
        let q = checksum_sql("public.t", &s(&["id", "v"]));
        assert_eq!(
            q.split_whitespace().collect::<Vec<_>>().join(" "),
            "select pg_catalog.count(1), pg_catalog.sum(pg_catalog.hashtext((id,v)::pg_catalog.text)::pg_catalog.int8) from only public.t"
        );
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_count(0.0), 16);
        assert_eq!(bucket_count(-1.0), 16);
        assert_eq!(bucket_count(f64::NAN), 16);
        assert_eq!(bucket_count(1000.0), 16);
        assert_eq!(bucket_count(1_000_000.0), 8192);
        assert_eq!(bucket_count(1e12), 65536);
        for r in [0.0, 10.0, 3000.0, 77777.0, 5e6] {
            let n = bucket_count(r);
            assert!(n.count_ones() == 1 && (16..=65536).contains(&n), "{r}: {n}");
        }
        let e = bucket_expr(&s(&["a", "B"]), 64);
        assert!(e.contains("hashtext((a,\"B\")::pg_catalog.text)"), "{e}");
        assert!(
            e.contains("2147483648") && e.ends_with("operator(pg_catalog.%) 64)"),
            "{e}"
        );
        let q = bucket_sums_sql("x.t", &s(&["a", "v"]), &s(&["a"]), 16);
        assert!(
            q.contains("group by s.b") && q.contains("from only x.t"),
            "{q}"
        );
        let r = bucket_rows_sql("x.t", &s(&["a", "v"]), &s(&["a"]), 16);
        assert!(
            r.contains("pg_catalog.concat(v)") && r.contains("any ($1::pg_catalog.int8[])"),
            "{r}"
        );
        assert_eq!(bucket_array(&[3, 1, 20]), "{3,1,20}");
        assert_eq!(bucket_array(&[]), "{}");

        let mut a = BTreeMap::new();
        let mut b = BTreeMap::new();
        a.insert(1, (3, Some("10".to_string())));
        a.insert(2, (1, Some("5".to_string())));
        a.insert(4, (2, Some("-7".to_string())));
        b.insert(1, (3, Some("10".to_string())));
        b.insert(2, (1, Some("6".to_string())));
        b.insert(3, (1, Some("1".to_string())));
        assert_eq!(differing_buckets(&a, &b), vec![2, 3, 4]);
        assert_eq!(differing_buckets(&a, &a), Vec::<i64>::new());
        assert!(same_checksum((0, None), (0, None)));
        assert!(same_checksum((2, Some("-4")), (2, Some("-4"))));
        assert!(!same_checksum((2, Some("-4")), (2, Some("4"))));
        assert!(!same_checksum((2, Some("-4")), (3, Some("-4"))));
    }

    fn shape() -> Shape {
        Shape::new(
            "public.\"T\"".into(),
            s(&["id", "k2", "name", "total"]),
            &s(&["k2", "id"]),
            &s(&["total"]),
        )
        .unwrap()
    }

    #[test]
    fn shapes() {
        assert!(Shape::new("t".into(), s(&["a"]), &[], &[])
            .unwrap_err()
            .contains("no primary key"));
        assert!(Shape::new("t".into(), s(&["a"]), &s(&["b"]), &[])
            .unwrap_err()
            .contains("column b"));
        let sh = shape();
        assert_eq!(sh.keys, vec![1, 0]);
        assert_eq!(sh.key_names(), s(&["k2", "id"]));
    }

    #[test]
    fn statements() {
        let sh = shape();
        let r = row(&[Some("1"), Some("a"), Some("O'Hara \\ x"), Some("3")]);
        assert_eq!(
            sh.insert_sql(&r),
            "insert into public.\"T\" (id, k2, name) values ('1', 'a', E'O''Hara \\\\ x')"
        );
        let l = row(&[Some("1"), Some("a"), None, Some("4")]);
        assert_eq!(
            sh.update_sql(&["a".into(), "1".into()], &r, &l).unwrap(),
            "update public.\"T\" set name = E'O''Hara \\\\ x' where k2 = 'a' and id = '1'"
        );
        assert_eq!(
            sh.update_sql(&["a".into(), "1".into()], &l, &r).unwrap(),
            "update public.\"T\" set name = NULL where k2 = 'a' and id = '1'"
        );
        // only the generated column differs: nothing to write
        let g = row(&[Some("1"), Some("a"), None, Some("5")]);
        assert!(sh.update_sql(&["a".into(), "1".into()], &g, &l).is_none());
        assert_eq!(
            sh.delete_sql(&["it's".into(), "2".into()]),
            "delete from public.\"T\" where k2 = 'it''s' and id = '2'"
        );
    }

    #[test]
    fn diff() {
        let sh = shape();
        let source = vec![
            row(&[Some("1"), Some("a"), Some("same"), None]),
            row(&[Some("2"), Some("a"), Some("new name"), None]),
            row(&[Some("3"), Some("a"), Some("only on source"), None]),
            row(&[Some("0"), Some("b"), Some(""), None]),
        ];
        let local = vec![
            row(&[Some("2"), Some("a"), Some("old name"), None]),
            row(&[Some("1"), Some("a"), Some("same"), None]),
            row(&[Some("9"), Some("z"), Some("only here"), None]),
            row(&[Some("0"), Some("b"), None, None]),
        ];
        let st = diff_rows(&sh, source.clone(), local.clone()).unwrap();
        let got: Vec<(&str, &str)> = st.iter().map(|s| (s.op.as_str(), s.sql.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (
                    "delete",
                    "delete from public.\"T\" where k2 = 'z' and id = '9'"
                ),
                (
                    "update",
                    "update public.\"T\" set name = 'new name' where k2 = 'a' and id = '2'"
                ),
                (
                    "update",
                    "update public.\"T\" set name = '' where k2 = 'b' and id = '0'"
                ),
                (
                    "insert",
                    "insert into public.\"T\" (id, k2, name) values ('3', 'a', 'only on source')"
                ),
            ]
        );
        // equal sides: nothing
        assert!(diff_rows(&sh, source.clone(), source.clone())
            .unwrap()
            .is_empty());
        // an empty side: all inserts / all deletes
        let ins = diff_rows(&sh, source.clone(), vec![]).unwrap();
        assert!(ins.len() == 4 && ins.iter().all(|s| s.op == Op::Insert));
        let del = diff_rows(&sh, vec![], local.clone()).unwrap();
        assert!(del.len() == 4 && del.iter().all(|s| s.op == Op::Delete));
        // bad rows
        let dup = vec![source[0].clone(), source[0].clone()];
        assert!(diff_rows(&sh, dup, vec![])
            .unwrap_err()
            .contains("two rows"));
        let nullkey = vec![row(&[None, Some("a"), None, None])];
        assert!(diff_rows(&sh, vec![], nullkey)
            .unwrap_err()
            .contains("NULL in key column id"));
        assert!(diff_rows(&sh, vec![row(&[Some("1")])], vec![])
            .unwrap_err()
            .contains("1 columns"));
    }

    /// Applying the statements' effect to the local rows gives the source rows: a
    /// small model of the table (key → row) checked on generated cases.
    #[test]
    fn diff_makes_sides_equal() {
        let sh = Shape::new("t".into(), s(&["id", "v"]), &s(&["id"]), &[]).unwrap();
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..200 {
            let mut src = BTreeMap::new();
            let mut loc = BTreeMap::new();
            for id in 0..(next() % 12) {
                if next() % 3 != 0 {
                    src.insert(id.to_string(), (next() % 3).to_string());
                }
                if next() % 3 != 0 {
                    loc.insert(id.to_string(), (next() % 3).to_string());
                }
            }
            let rows = |m: &BTreeMap<String, String>| {
                m.iter()
                    .map(|(k, v)| vec![Some(k.clone()), Some(v.clone())])
                    .collect::<Vec<_>>()
            };
            let st = diff_rows(&sh, rows(&src), rows(&loc)).unwrap();
            let mut model = loc.clone();
            let lit = |x: &str| x.trim_matches('\'').to_string();
            for s in &st {
                match s.op {
                    Op::Delete => {
                        let k = lit(s.sql.rsplit("id = ").next().unwrap());
                        assert!(model.remove(&k).is_some(), "{}", s.sql);
                    }
                    Op::Update => {
                        let (set, key) = s.sql.split_once(" where id = ").unwrap();
                        let v = lit(set.rsplit("v = ").next().unwrap());
                        assert!(model.insert(lit(key), v).is_some(), "{}", s.sql);
                    }
                    Op::Insert => {
                        let vals = s
                            .sql
                            .rsplit("values (")
                            .next()
                            .unwrap()
                            .trim_end_matches(')');
                        let (k, v) = vals.split_once(", ").unwrap();
                        assert!(model.insert(lit(k), lit(v)).is_none(), "{}", s.sql);
                    }
                }
            }
            assert_eq!(model, src);
        }
    }
}
