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

use super::direct;
use crate::errors::{PgqError, SqlState};
use crate::guards::OwnedContext;
use crate::logic::apply::{Op, RowChange, Shape};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};

fn fail<T>(code: SqlState, message: String) -> Result<T, PgqError> {
    Err(PgqError::new(code, message))
}

struct Column {
    att: i16,
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
    /// what the direct path needs, if the table can take it (`super::direct`)
    direct: Option<direct::Facts>,
    /// one way of applying per statement shape; a table has few, found by a scan that
    /// needs no allocation per event
    plans: Vec<(Shape, How)>,
}

/// How the changes of one statement shape are applied.
enum How {
    /// a kept SPI plan
    Spi(Plan),
    /// `super::direct`, with the attnums of the shape's columns and key; the SPI plan
    /// for a transaction whose role lacks a table privilege (made when first needed)
    Direct {
        op: direct::Op,
        cols: Vec<i16>,
        key: Vec<i16>,
        /// the local transaction and role for which the privileges were last found held
        allowed_for: (u32, pg_sys::Oid),
        spi: Option<Plan>,
    },
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
    /// the memory of one change (its values), reset before the next
    static ROW_CXT: RefCell<Option<OwnedContext>> = const { RefCell::new(None) };
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
    // SAFETY: a lock on the OID (as in `apply`), then catalog lookups of it in the
    // caller's transaction.
    unsafe { pg_sys::LockRelationOid(relid, pg_sys::RowExclusiveLock as i32) };
    // SAFETY: as above.
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
    // SAFETY: an existing relation, in the caller's transaction.
    let direct = match unsafe { direct::facts(relid) } {
        Ok(f) => Some(f),
        Err(why) => {
            pgrx::debug1!("pgq: changes of {qname} are applied through SPI plans ({why})");
            None
        }
    };
    Ok(Table {
        relid,
        qname,
        columns: HashMap::new(),
        direct,
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
            att: attnum,
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
    // Lock the table before its cached facts are used: the invalidations that come
    // with a lock newly taken (DDL committed meanwhile by other sessions) then drop a
    // stale entry first. A table not cached yet is locked when it is resolved.
    if let Some(relid) = TABLES.with(|t| t.borrow().get(dest).map(|t| t.relid)) {
        // SAFETY: a lock on an OID in the caller's transaction (also harmless for an
        // OID that no longer exists; the entry is then pruned and resolved again).
        unsafe { pg_sys::LockRelationOid(relid, pg_sys::RowExclusiveLock as i32) };
        prune_stale();
    }
    ROW_CXT.with(|c| {
        let mut c = c.borrow_mut();
        let cxt = c.get_or_insert_with(|| {
            // SAFETY: TopMemoryContext lives as long as the process.
            OwnedContext::new(
                unsafe { pg_sys::TopMemoryContext },
                c"pgq apply row",
                0,
                8 * 1024,
                8 * 1024 * 1024,
            )
        });
        // SAFETY: nothing points into it any more: the previous change is done.
        unsafe { pg_sys::MemoryContextReset(cxt.as_ptr()) };
        // the values of this change live here, not for the whole batch
        let _row = cxt.switch_to();
        apply_cached(dest, change)
    })
}

fn apply_cached(dest: &[u8], change: &RowChange) -> Result<u64, PgqError> {
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
                let how = match direct_way(tab, &shape) {
                    Some(how) => how,
                    None => How::Spi(prepare(tab, &shape)?),
                };
                tab.plans.push((shape, how));
                tab.plans.len() - 1
            }
        };
        let (values, nulls) = datums(tab, &tab.plans[i].0, change)?;
        let direct = match &mut tab.plans[i].1 {
            How::Spi(_) => false,
            How::Direct {
                op, allowed_for, ..
            } => direct_now(tab.relid, *op, allowed_for),
        };
        if !direct {
            if let How::Direct { spi: None, .. } = &tab.plans[i].1 {
                let plan = prepare(tab, &tab.plans[i].0)?;
                if let How::Direct { spi, .. } = &mut tab.plans[i].1 {
                    *spi = Some(plan);
                }
            }
        }
        match &tab.plans[i].1 {
            How::Spi(plan)
            | How::Direct {
                spi: Some(plan), ..
            } if !direct => execute(tab, plan, values, nulls, change.op),
            How::Direct { op, cols, key, .. } if direct => {
                let facts = tab.direct.as_ref().expect("a direct shape has facts");
                let all: Vec<direct::Value> = cols
                    .iter()
                    .chain(key)
                    .zip(values.iter().zip(&nulls))
                    .map(|(&att, (&datum, &null))| direct::Value {
                        att,
                        datum,
                        null: null == b'n' as std::ffi::c_char,
                    })
                    .collect();
                let (set, find) = all.split_at(cols.len());
                // SAFETY: the facts and index are of this relcache generation (a change
                // of the table drops the entry), the datums were made by the columns'
                // input functions, the attnums come from the catalog and each is named
                // once (`direct_way`).
                Ok(crate::db::plain_errors(|| unsafe {
                    direct::change(tab.relid, facts.natts, *op, set, find)
                }))
            }
            _ => unreachable!("a shape applied through SPI has its plan (made above)"),
        }
    })
}

/// Whether a change of a direct shape takes the direct way now; otherwise its SPI plan
/// runs: the direct way is switched off (`pgq.apply_direct`); the session is not in
/// the replica role (other triggers fire, which the facts did not look at); or the role
/// lacks a table privilege (the plan raises PostgreSQL's error, or uses a column
/// privilege). The privileges are looked up once per transaction and role.
fn direct_now(relid: pg_sys::Oid, op: direct::Op, allowed_for: &mut (u32, pg_sys::Oid)) -> bool {
    if !crate::gucs::APPLY_DIRECT.get() || !crate::insert::is_replica_role() {
        return false;
    }
    // SAFETY: PostgreSQL's process-local PGPROC, set up before any transaction of this
    // worker; the current user id.
    let now = unsafe { ((*pg_sys::MyProc).lxid, pg_sys::GetUserId()) };
    // SAFETY: in the caller's transaction.
    if *allowed_for != now && unsafe { direct::allowed(relid, op) } {
        *allowed_for = now;
    }
    *allowed_for == now
}

/// The direct way for `shape` on `tab`, if the table and the shape allow it.
fn direct_way(tab: &Table, shape: &Shape) -> Option<How> {
    let facts = tab.direct.as_ref()?;
    let atts =
        |names: &[Vec<u8>]| -> Vec<i16> { names.iter().map(|n| tab.columns[n].att).collect() };
    let cols = atts(&shape.cols);
    let key = atts(&shape.key);
    let mut once = cols.clone();
    once.sort_unstable();
    once.dedup();
    if once.len() != cols.len() {
        return None; // a column set twice: the plan raises PostgreSQL's error
    }
    let keys: Vec<(pg_sys::Oid, &[i16])> = facts
        .keys
        .iter()
        .map(|k| (k.index, k.atts.as_slice()))
        .collect();
    let op = match shape.op {
        Op::Insert if crate::logic::apply::names_each_once(&cols, &facts.required) => {
            direct::Op::Insert
        }
        Op::Update => direct::Op::Update(crate::logic::apply::key_index(&key, &keys)?),
        Op::Delete => direct::Op::Delete(crate::logic::apply::key_index(&key, &keys)?),
        Op::Insert => return None,
    };
    Some(How::Direct {
        op,
        cols,
        key,
        allowed_for: (0, pg_sys::InvalidOid),
        spi: None,
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

/// The change's parameter values, in the order of `shape`'s columns then key, as
/// datums of the columns' types, and their SPI null flags (`n`: NULL).
fn datums(
    tab: &Table,
    shape: &Shape,
    change: &RowChange,
) -> Result<(Vec<pg_sys::Datum>, Vec<std::ffi::c_char>), PgqError> {
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
    Ok((values, nulls))
}

fn execute(
    tab: &Table,
    plan: &Plan,
    values: Vec<pg_sys::Datum>,
    mut nulls: Vec<std::ffi::c_char>,
    op: Op,
) -> Result<u64, PgqError> {
    let mut values = values;
    nulls.push(0);
    // SAFETY: a kept plan of this module with as many parameters as values/nulls hold
    // (both built from the same shape); SPI is connected by the caller.
    let rc = unsafe {
        pg_sys::SPI_execute_plan(plan.plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0)
    };
    let expected = match op {
        Op::Insert => pg_sys::SPI_OK_INSERT,
        Op::Update => pg_sys::SPI_OK_UPDATE,
        Op::Delete => pg_sys::SPI_OK_DELETE,
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

    /// How each shape cached for `dest` is applied, in the order first seen:
    /// `I`, `U`, `D` followed by `=direct` or `=spi`.
    fn ways(dest: &str) -> String {
        TABLES.with(|t| {
            let t = t.borrow();
            let Some(tab) = t.get(dest.as_bytes()) else {
                return String::new();
            };
            let ways: Vec<String> = tab
                .plans
                .iter()
                .map(|(s, h)| {
                    let op = match s.op {
                        Op::Insert => "I",
                        Op::Update => "U",
                        Op::Delete => "D",
                    };
                    let how = match h {
                        How::Spi(_) => "spi",
                        How::Direct { .. } => "direct",
                    };
                    format!("{op}={how}")
                })
                .collect();
            ways.join(",")
        })
    }

    fn replica() {
        Spi::run("set local session_replication_role = replica").unwrap();
    }

    #[pg_test]
    fn direct_where_a_unique_key_finds_the_row() {
        replica();
        Spi::run(
            "create table public.dp1 (a int, b text, v text, w int default 7, primary key (b, a))",
        )
        .unwrap();
        Spi::run("alter table public.dp1 drop column w").unwrap();
        Spi::run("select 1").unwrap();
        ap("public.dp1", "I:a,b", "a=1&b=x&v=one").unwrap();
        ap("public.dp1", "I:a,b", "a=2&b=x&v=two").unwrap();
        // the key named in the other order than the index's
        assert_eq!(ap("public.dp1", "U:a,b", "a=1&b=x&v=uno").unwrap(), 1);
        assert_eq!(ap("public.dp1", "U:a,b", "a=9&b=x&v=none").unwrap(), 0);
        assert_eq!(ap("public.dp1", "D:a,b", "a=2&b=x&v=two").unwrap(), 1);
        assert_eq!(ap("public.dp1", "D:a,b", "a=2&b=x&v=two").unwrap(), 0);
        // insert, update and delete of one row in one transaction see each other
        ap("public.dp1", "I:a,b", "a=3&b=y&v=three").unwrap();
        assert_eq!(ap("public.dp1", "U:a,b", "a=3&b=y&v=drei").unwrap(), 1);
        ap("public.dp1", "I:a,b", "a=4&b=y&v=four").unwrap();
        assert_eq!(ap("public.dp1", "D:a,b", "a=4&b=y&v=four").unwrap(), 1);
        assert_eq!(ways("public.dp1"), "I=direct,U=direct,D=direct");
        assert_eq!(
            rows("select string_agg(format('%s|%s|%s', a, b, v), ',' order by a) from public.dp1"),
            "1|x|uno,3|y|drei"
        );
        // an UPDATE that leaves a column out keeps its value
        assert_eq!(
            ap("public.dp1", "U", "v='eins' where a='1' and b='x'").unwrap(),
            1
        );
        assert_eq!(
            ap("public.dp1", "U", "b='z' where a='3' and b='y'").unwrap(),
            1
        );
        assert_eq!(
            rows("select string_agg(format('%s|%s|%s', a, b, v), ',' order by a) from public.dp1"),
            "1|x|eins,3|z|drei"
        );
    }

    #[pg_test(error = "duplicate key value violates unique constraint \"dp2_pkey\"")]
    fn direct_duplicate_key_is_the_same_error() {
        replica();
        Spi::run("create table public.dp2 (id int primary key, v text not null)").unwrap();
        ap("public.dp2", "I:id", "id=1&v=a").unwrap();
        let _ = ap("public.dp2", "I:id", "id=1&v=b");
    }

    #[pg_test(
        error = "null value in column \"v\" of relation \"dp3\" violates not-null constraint"
    )]
    fn direct_checks_not_null() {
        replica();
        Spi::run("create table public.dp3 (id int primary key, v text not null)").unwrap();
        let _ = ap("public.dp3", "I:id", "id=1&v");
    }

    #[pg_test]
    fn plans_where_direct_would_differ() {
        replica();
        // an INSERT that leaves a column to its default
        Spi::run("create table public.sp1 (id int primary key, v text, d int default 42)").unwrap();
        ap("public.sp1", "I:id", "id=1&v=a").unwrap();
        ap("public.sp1", "I:id", "id=2&v=b&d=3").unwrap();
        assert_eq!(ways("public.sp1"), "I=spi,I=direct");
        assert_eq!(
            rows("select string_agg(d::text, ',' order by id) from public.sp1"),
            "42,3"
        );
        // no unique index on the key the event names
        Spi::run("create table public.sp2 (id int, v text)").unwrap();
        ap("public.sp2", "I:id", "id=1&v=a").unwrap();
        ap("public.sp2", "I:id", "id=1&v=b").unwrap();
        assert_eq!(ap("public.sp2", "U:id", "id=1&v=c").unwrap(), 2);
        assert_eq!(ways("public.sp2"), "I=direct,U=spi");
        // a trigger that fires on replicas
        Spi::run(
            "create table public.sp3 (id int primary key, v text);
             create function public.sp3_up() returns trigger language plpgsql as
               $$ begin new.v := upper(new.v); return new; end $$;
             create trigger sp3_up before insert on public.sp3 for each row execute function public.sp3_up();
             alter table public.sp3 enable always trigger sp3_up",
        )
        .unwrap();
        ap("public.sp3", "I:id", "id=1&v=a").unwrap();
        assert_eq!(ways("public.sp3"), "I=spi");
        assert_eq!(rows("select v from public.sp3"), "A");
        // a generated column
        Spi::run("create table public.sp4 (id int primary key, v int, g int generated always as (v * 2) stored)").unwrap();
        ap("public.sp4", "I:id", "id=1&v=2").unwrap();
        assert_eq!(ways("public.sp4"), "I=spi");
        assert_eq!(rows("select g::text from public.sp4"), "4");
        // row security
        Spi::run("create table public.sp5 (id int primary key, v text); alter table public.sp5 enable row level security").unwrap();
        ap("public.sp5", "I:id", "id=1&v=a").unwrap();
        assert_eq!(ways("public.sp5"), "I=spi");
        // a partial unique index finds no single row
        Spi::run("create table public.sp6 (id int, v text); create unique index on public.sp6 (id) where v is not null").unwrap();
        ap("public.sp6", "I:id", "id=1&v=a").unwrap();
        assert_eq!(ap("public.sp6", "D:id", "id=1&v=a").unwrap(), 1);
        assert_eq!(ways("public.sp6"), "I=direct,D=spi");
        // a unique index that is neither the primary key nor the replica identity
        Spi::run("create table public.sp8 (id int primary key, code text not null unique, v text)")
            .unwrap();
        ap("public.sp8", "I:id", "id=1&code=a&v=x").unwrap();
        assert_eq!(ap("public.sp8", "U:code", "id=1&code=a&v=y").unwrap(), 1);
        assert_eq!(ways("public.sp8"), "I=direct,U=spi");
        Spi::run("alter table public.sp8 replica identity using index sp8_code_key").unwrap();
        Spi::run("select 1").unwrap();
        assert_eq!(ap("public.sp8", "U:code", "id=1&code=a&v=z").unwrap(), 1);
        assert_eq!(ways("public.sp8"), "U=direct");
        assert_eq!(rows("select v from public.sp8"), "z");
    }

    #[pg_test]
    fn direct_follows_a_new_column() {
        replica();
        Spi::run("create table public.dp5 (id int primary key, v text)").unwrap();
        ap("public.dp5", "I:id", "id=1&v=a").unwrap();
        Spi::run("alter table public.dp5 add column w int default 5").unwrap();
        Spi::run("select 1").unwrap();
        ap("public.dp5", "I:id", "id=2&v=b&w=7").unwrap();
        ap("public.dp5", "I:id", "id=3&v=c").unwrap();
        assert_eq!(ap("public.dp5", "U:id", "id=1&v=aa&w=9").unwrap(), 1);
        assert_eq!(ways("public.dp5"), "I=direct,I=spi,U=direct");
        assert_eq!(
            rows(
                "select string_agg(format('%s|%s|%s', id, v, w), ',' order by id) from public.dp5"
            ),
            "1|aa|9,2|b|7,3|c|5"
        );
    }

    #[pg_test]
    fn direct_needs_the_replica_role() {
        Spi::run("create table public.sp7 (id int primary key, v text)").unwrap();
        replica();
        ap("public.sp7", "I:id", "id=1&v=a").unwrap();
        Spi::run("set local session_replication_role = origin").unwrap();
        ap("public.sp7", "I:id", "id=2&v=b").unwrap();
        assert_eq!(rows("select count(*)::text from public.sp7"), "2");
    }

    #[pg_test(error = "permission denied for table dp4")]
    fn direct_honours_table_privileges() {
        Spi::run(
            "create table public.dp4 (id int primary key, v text);
             create role pgq_dp4_role;
             grant insert on public.dp4 to pgq_dp4_role;
             grant usage on schema public to pgq_dp4_role",
        )
        .unwrap();
        replica();
        Spi::run("set local role pgq_dp4_role").unwrap();
        ap("public.dp4", "I:id", "id=1&v=a").unwrap();
        // UPDATE needs UPDATE and SELECT, which the role lacks: the plan's error
        let _ = ap("public.dp4", "U:id", "id=1&v=b");
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
