//! Applying decoded row changes (`logic::apply`) to destination tables: one kept SPI
//! plan per (table, statement shape), parameters typed as the destination columns and
//! filled through each column type's input function (as `COPY FROM` reads text).
//!
//! The caller (the replay worker) runs inside a transaction and an SPI connection,
//! with `session_replication_role = replica`. Every failure is a [`PgqError`] (naming
//! the table and column) or a
//! PostgreSQL ERROR (a constraint violation, a bad value for a type): nothing is
//! skipped.
//!
//! Table and column facts are cached per backend. A relcache invalidation of a cached
//! table (ALTER TABLE, DROP, TRUNCATE's relfilenode change does not matter) drops its
//! entry, so the next event resolves the table again and plans anew.

use crate::errors::{PgqError, SqlState};
use crate::logic::apply::{RowChange, Shape};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};

fn fail<T>(code: SqlState, message: String) -> Result<T, PgqError> {
    Err(PgqError::new(code, message))
}

struct Column {
    typid: pg_sys::Oid,
    typmod: i32,
    typioparam: pg_sys::Oid,
    /// the type's input function, looked up once (boxed: fmgr keeps its address)
    input: Box<pg_sys::FmgrInfo>,
    /// `OPERATOR(schema.=)` of the type's default equality, if it has one
    eq: Option<String>,
}

struct Table {
    relid: pg_sys::Oid,
    /// `schema.table`, quoted
    qname: String,
    columns: HashMap<Vec<u8>, Column>,
    /// one plan per statement shape; a table has few, found by a scan that needs no
    /// allocation per event
    plans: Vec<(Shape, Plan)>,
}

struct Plan {
    plan: pg_sys::SPIPlanPtr,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: the plan was kept with SPI_keepplan by this module and is freed once.
        unsafe {
            pg_sys::SPI_freeplan(self.plan);
        }
    }
}

thread_local! {
    /// destination name as stored (`schema.table`, unquoted) → its cached facts
    static TABLES: RefCell<HashMap<Vec<u8>, Table>> = RefCell::new(HashMap::new());
    /// relations invalidated since the last apply (InvalidOid: all)
    static STALE: RefCell<HashSet<pg_sys::Oid>> = RefCell::new(HashSet::new());
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // only remember: the cache is pruned at the next apply, outside the callback
    STALE.with(|s| {
        s.borrow_mut().insert(relid);
    });
}

/// `_PG_init` part: the relcache callback.
pub fn init() {
    // SAFETY: registering a callback at load time, as PostgreSQL's own modules do.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0));
    }
}

fn prune_stale() {
    let stale: HashSet<pg_sys::Oid> = STALE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if stale.is_empty() {
        return;
    }
    TABLES.with(|t| {
        let mut t = t.borrow_mut();
        if stale.contains(&pg_sys::InvalidOid) {
            t.clear();
        } else {
            t.retain(|_, tab| !stale.contains(&tab.relid));
        }
    });
}

fn quote_ident(s: &[u8]) -> String {
    String::from_utf8_lossy(&crate::logic::quote::quote_ident(s)).into_owned()
}

fn cstr(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated string returned by a PostgreSQL lookup.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// `OPERATOR(schema.name)` for operator `opno`.
fn render_operator(opno: pg_sys::Oid) -> Option<String> {
    // SAFETY: a syscache lookup by OID; the tuple is released before returning.
    unsafe {
        let tup = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::OPEROID as i32,
            pg_sys::Datum::from(opno),
        );
        if tup.is_null() {
            return None;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_operator>(tup);
        let name = cstr((*form).oprname.data.as_ptr());
        let ns = cstr(pg_sys::get_namespace_name((*form).oprnamespace));
        pg_sys::ReleaseSysCache(tup);
        Some(format!("OPERATOR({}.{})", quote_ident(ns.as_bytes()), name))
    }
}

fn resolve_table(dest: &[u8]) -> Result<Table, PgqError> {
    let shown = crate::names::display(dest);
    let relid = std::str::from_utf8(dest)
        .ok()
        .and_then(crate::names::stored_relid)
        .ok_or_else(|| {
            PgqError::new(
                SqlState::UNDEFINED_TABLE,
                format!("destination table {shown} does not exist"),
            )
        })?;
    // SAFETY: catalog lookups of an existing relation OID in the caller's transaction.
    let (kind, qname) = unsafe {
        let kind = pg_sys::get_rel_relkind(relid) as u8;
        let rel = cstr(pg_sys::get_rel_name(relid));
        let ns = cstr(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid)));
        (
            kind,
            format!(
                "{}.{}",
                quote_ident(ns.as_bytes()),
                quote_ident(rel.as_bytes())
            ),
        )
    };
    if kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_PARTITIONED_TABLE {
        return fail(
            SqlState::WRONG_OBJECT_TYPE,
            format!("destination {shown} is not a table"),
        );
    }
    Ok(Table {
        relid,
        qname,
        columns: HashMap::new(),
        plans: Vec::new(),
    })
}

fn resolve_column(table: &Table, name: &[u8]) -> Result<Column, PgqError> {
    let missing = || {
        PgqError::new(
            SqlState::UNDEFINED_COLUMN,
            format!(
                "column {} of destination table {} does not exist",
                crate::names::display(name),
                table.qname
            ),
        )
    };
    let cname = CString::new(name).map_err(|_| missing())?;
    // SAFETY: catalog and type-cache lookups for an existing relation in the caller's
    // transaction; the FmgrInfo lives in TopMemoryContext-owned storage of a Box we
    // keep as long as the Column.
    unsafe {
        let attnum = pg_sys::get_attnum(table.relid, cname.as_ptr());
        if attnum <= 0 {
            return Err(missing());
        }
        let mut typid = pg_sys::InvalidOid;
        let mut typmod = -1;
        let mut collid = pg_sys::InvalidOid;
        pg_sys::get_atttypetypmodcoll(table.relid, attnum, &mut typid, &mut typmod, &mut collid);
        let mut typinput = pg_sys::InvalidOid;
        let mut typioparam = pg_sys::InvalidOid;
        pg_sys::getTypeInputInfo(typid, &mut typinput, &mut typioparam);
        let mut input: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
        pg_sys::fmgr_info_cxt(typinput, &mut *input, pg_sys::TopMemoryContext);
        let tc = pg_sys::lookup_type_cache(typid, pg_sys::TYPECACHE_EQ_OPR as i32);
        let eq = if tc.is_null() || (*tc).eq_opr == pg_sys::InvalidOid {
            None
        } else {
            render_operator((*tc).eq_opr)
        };
        Ok(Column {
            typid,
            typmod,
            typioparam,
            input,
            eq,
        })
    }
}

/// Apply one row change to `dest` (the stored destination name). Returns the number of
/// rows the statement processed (0 is not an error: an UPDATE or DELETE that finds no
/// row is what the original does too).
pub fn apply(dest: &[u8], change: &RowChange) -> Result<u64, PgqError> {
    if change.is_noop() {
        return Ok(0);
    }
    prune_stale();
    TABLES.with(|t| {
        let mut tables = t.borrow_mut();
        if !tables.contains_key(dest) {
            let tab = resolve_table(dest)?;
            tables.insert(dest.to_vec(), tab);
        }
        let tab = tables.get_mut(dest).expect("inserted above");
        // columns this change names, resolved once
        let names = change.cols.iter().map(|(n, _)| n);
        for name in names.chain(change.key.iter().map(|(n, _)| n)) {
            if !tab.columns.contains_key(name) {
                let c = resolve_column(tab, name)?;
                tab.columns.insert(name.clone(), c);
            }
        }
        let i = match tab.plans.iter().position(|(s, _)| s.fits(change)) {
            Some(i) => i,
            None => {
                let shape = change.shape();
                let plan = prepare(tab, &shape)?;
                tab.plans.push((shape, plan));
                tab.plans.len() - 1
            }
        };
        let (shape, plan) = &tab.plans[i];
        execute(tab, shape, plan, change)
    })
}

fn prepare(tab: &Table, shape: &Shape) -> Result<Plan, PgqError> {
    let mut ops = Vec::with_capacity(shape.key.len());
    for name in &shape.key {
        match tab.columns.get(name).and_then(|c| c.eq.clone()) {
            Some(op) => ops.push(op),
            None => {
                return fail(
                    SqlState::UNDEFINED_FUNCTION,
                    format!(
                        "key column {} of {} has a type without an equality operator",
                        crate::names::display(name),
                        tab.qname
                    ),
                )
            }
        }
    }
    let sql = shape
        .sql(&tab.qname, quote_ident, |i| ops[i].clone())
        .map_err(|e| {
            PgqError::new(
                SqlState::INVALID_TEXT_REPRESENTATION,
                format!("{} on {}", e.0, tab.qname),
            )
        })?;
    let mut types: Vec<pg_sys::Oid> = shape
        .cols
        .iter()
        .chain(shape.key.iter())
        .map(|n| tab.columns[n].typid)
        .collect();
    let csql = CString::new(sql).map_err(|_| {
        PgqError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("a column name of {} holds a NUL byte", tab.qname),
        )
    })?;
    // SAFETY: SPI is connected by the caller; the argument type array outlives the
    // call; SPI_prepare raises an ERROR on failure (a bad statement), it never returns
    // NULL otherwise; the kept plan is owned by the returned Plan.
    unsafe {
        let plan = pg_sys::SPI_prepare(csql.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() {
            let code = std::ptr::addr_of!(pg_sys::SPI_result).read();
            return fail(
                SqlState::INTERNAL_ERROR,
                format!(
                    "could not prepare the apply statement for {} (SPI result {})",
                    tab.qname, code
                ),
            );
        }
        pg_sys::SPI_keepplan(plan);
        Ok(Plan { plan })
    }
}

fn execute(tab: &Table, shape: &Shape, plan: &Plan, change: &RowChange) -> Result<u64, PgqError> {
    let names = shape.cols.iter().chain(shape.key.iter());
    let mut values: Vec<pg_sys::Datum> = Vec::with_capacity(shape.cols.len() + shape.key.len());
    let mut nulls: Vec<std::ffi::c_char> = Vec::with_capacity(values.capacity() + 1);
    for (name, v) in names.zip(change.params()) {
        let col = &tab.columns[name];
        match v {
            None => {
                values.push(pg_sys::Datum::from(0));
                nulls.push(b'n' as std::ffi::c_char);
            }
            Some(text) => {
                let c = CString::new(text).map_err(|_| {
                    PgqError::new(
                        SqlState::INVALID_TEXT_REPRESENTATION,
                        format!(
                            "value of column {} of {} holds a NUL byte",
                            crate::names::display(name),
                            tab.qname
                        ),
                    )
                })?;
                // SAFETY: the input function of the column's type with its
                // typioparam/typmod, on a NUL-terminated string; it raises an ERROR for
                // text the type does not accept. The FmgrInfo pointer is stable (boxed).
                let d = unsafe {
                    pg_sys::InputFunctionCall(
                        &*col.input as *const pg_sys::FmgrInfo as *mut pg_sys::FmgrInfo,
                        c.as_ptr() as *mut std::ffi::c_char,
                        col.typioparam,
                        col.typmod,
                    )
                };
                values.push(d);
                nulls.push(b' ' as std::ffi::c_char);
            }
        }
    }
    nulls.push(0);
    // SAFETY: a kept plan of this module with as many parameters as values/nulls hold
    // (both built from the same shape); SPI is connected by the caller.
    let rc = unsafe {
        pg_sys::SPI_execute_plan(plan.plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0)
    };
    let expected = match change.op {
        crate::logic::apply::Op::Insert => pg_sys::SPI_OK_INSERT,
        crate::logic::apply::Op::Update => pg_sys::SPI_OK_UPDATE,
        crate::logic::apply::Op::Delete => pg_sys::SPI_OK_DELETE,
    } as i32;
    if rc != expected {
        return fail(
            SqlState::INTERNAL_ERROR,
            format!("applying a row change to {}: SPI result {rc}", tab.qname),
        );
    }
    // SAFETY: a PostgreSQL global set by the execution above.
    Ok(unsafe { pg_sys::SPI_processed })
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;
    use crate::logic::apply::decode;

    fn ap(dest: &str, t: &str, d: &str) -> Result<u64, PgqError> {
        let change = decode(t.as_bytes(), d.as_bytes()).expect("decodes");
        Spi::connect(|_| apply(dest.as_bytes(), &change))
    }

    fn rows(sql: &str) -> String {
        Spi::get_one::<String>(sql).unwrap().unwrap_or_default()
    }

    #[pg_test]
    fn applies_the_three_flavours() {
        Spi::run(r#"create table public.ap1 (id int primary key, "Txt" text, n numeric, ts timestamptz, b bool)"#).unwrap();
        ap(
            "public.ap1",
            "I:id",
            "id=1&Txt=a+b&n=1.50&ts=2009-09-19+11%3a59%3a48.599%2b00&b=t",
        )
        .unwrap();
        ap(
            "public.ap1",
            "I",
            r#"(id,"Txt",n,ts,b) values ('2',E'x\\y''z',null,null,'f')"#,
        )
        .unwrap();
        ap(
            "public.ap1",
            r#"{"op":"INSERT","table":["public","ap1"],"pkey":["id"]}"#,
            r#"{"id":3,"Txt":"j","n":"2.5","ts":null,"b":true}"#,
        )
        .unwrap();
        assert_eq!(ap("public.ap1", "U:id", "id=1&Txt=c&n&ts&b=f").unwrap(), 1);
        assert_eq!(
            ap("public.ap1", "U", r#""Txt"='d' where id='2'"#).unwrap(),
            1
        );
        assert_eq!(ap("public.ap1", "D:id", "id=3&Txt=j").unwrap(), 1);
        // a row that is not there: 0 rows, not an error
        assert_eq!(ap("public.ap1", "D", "id='99'").unwrap(), 0);
        assert_eq!(
            rows(
                r#"select string_agg(format('%s|%s|%s|%s', id, "Txt", n, b), ',' order by id) from public.ap1"#
            ),
            r"1|c||f,2|d||f"
        );
    }

    #[pg_test]
    fn errors_name_table_and_column() {
        Spi::run("create table public.ap2 (id int primary key, v text)").unwrap();
        let e = ap("public.nope", "I:id", "id=1").unwrap_err();
        assert_eq!(e.sqlstate(), "42P01");
        assert!(e.message.contains("public.nope"), "{}", e.message);
        let e = ap("public.ap2", "I:id", "id=1&zz=2").unwrap_err();
        assert_eq!(e.sqlstate(), "42703");
        assert!(
            e.message.contains("zz") && e.message.contains("public.ap2"),
            "{}",
            e.message
        );
    }

    #[pg_test(error = "invalid input syntax for type integer: \"x\"")]
    fn bad_value_is_an_error() {
        Spi::run("create table public.ap3 (id int primary key)").unwrap();
        let _ = ap("public.ap3", "I:id", "id=x");
    }

    #[pg_test]
    fn plans_follow_alter_table() {
        Spi::run("create table public.ap4 (id int primary key, v int)").unwrap();
        ap("public.ap4", "I:id", "id=1&v=1").unwrap();
        // the column changes type: the cached input function must not be reused
        Spi::run("alter table public.ap4 alter column v type text").unwrap();
        // make the invalidation visible to this backend's caches
        Spi::run("select 1").unwrap();
        ap("public.ap4", "I:id", "id=2&v=abc").unwrap();
        assert_eq!(
            rows("select string_agg(v, ',' order by id) from public.ap4"),
            "1,abc"
        );
    }
}
