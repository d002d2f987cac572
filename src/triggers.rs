//! pgrx glue for the row-capture triggers `pgq.logutriga`, `pgq.sqltriga` and
//! `pgq.jsontriga` (contract: spec/triggers.md). The payload logic is pure Rust in
//! `logic::triggers`; this module reads the trigger data, caches per-relation
//! information and inserts the event with the semantics of `pgq.insert_event(7)`
//! (`insert::insert_event7`, no SPI on the hot path). When `pgq.insert_event` was
//! replaced, the replacement is called by name through SQL as the current user, as
//! the original's triggers do (`insert::replaced`).
//!
//! Text is bytes in the server encoding throughout (names, arguments, values,
//! payloads), so every server encoding gives the original's bytes.
//!
//! Cache: per relation OID a [`TableInfo`] (columns with their output and equality
//! functions, primary key names, and per trigger the parsed arguments and the kept
//! plans of `ev_*=`/`when=` expressions). A relcache callback only marks entries
//! stale; the next firing rebuilds them. Entries are reference counted, so a firing
//! that is in progress keeps using the version it started with.
//!
//! The functions are plain version-1 C functions (declared in sql/pgq_triggers.sql),
//! not `#[pg_trigger]`, to keep the per-row path free of wrappers.

use crate::errors::{raise_code, raise_internal};
use crate::insert;
use crate::logic::triggers::{self as tl, JsonVal, Op};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::rc::Rc;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavour {
    Logu,
    Sql,
    Json,
}

// ---------------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum JsonKind {
    Text,
    Bool,
    Int,
    DateTime,
}

enum Eq {
    Unknown,
    Text,
    Func(Box<pg_sys::FmgrInfo>),
}

struct Col {
    dropped: bool,
    /// the column name, bytes in the server encoding
    name: Vec<u8>,
    /// `name` as quote_ident gives it (quote_all_identifiers off)
    quoted: Vec<u8>,
    typid: pg_sys::Oid,
    collation: pg_sys::Oid,
    out: Box<pg_sys::FmgrInfo>,
    /// text/varchar: output is the stored string
    plain_text: bool,
    json: JsonKind,
    /// `_pgq_ev_*` column: index of the event field it sets
    magic: Option<usize>,
    eq: RefCell<Eq>,
}

struct TableInfo {
    valid: Cell<bool>,
    schema: Vec<u8>,
    table: Vec<u8>,
    /// `schema.table`, unquoted (ev_extra1)
    fqname: Vec<u8>,
    cols: Vec<Col>,
    /// magic column name error, raised at firing time
    magic_error: Option<String>,
    /// primary key column names (index attribute names, index order)
    pk_names: Vec<Vec<u8>>,
    /// memory for the FmgrInfos (fn_extra caches of output/equality functions)
    mcxt: pg_sys::MemoryContext,
    triggers: RefCell<HashMap<(pg_sys::Oid, bool), Rc<TrigInfo>>>,
}

impl Drop for TableInfo {
    fn drop(&mut self) {
        if !self.mcxt.is_null() {
            unsafe { pg_sys::MemoryContextDelete(self.mcxt) };
        }
    }
}

struct Expr {
    plan: pg_sys::SPIPlanPtr,
    /// column index per parameter
    params: Vec<usize>,
}

impl Drop for Expr {
    fn drop(&mut self) {
        if !self.plan.is_null() {
            unsafe { pg_sys::SPI_freeplan(self.plan) };
        }
    }
}

struct TrigInfo {
    args: tl::TriggerArgs,
    /// effective key names (pkey= split, or the primary key)
    key_names_nonempty: bool,
    /// per column: is a key column (by name, as the original matches)
    is_key: Vec<bool>,
    /// per column: in the `ignore=` list
    ignored: Vec<bool>,
    /// ev_type per op (I, U, D, R) and flavour (logutriga, sqltriga, jsontriga)
    ev_type: [[Vec<u8>; 3]; 4],
    /// sqltriga: a `pkey=` name that is not a column of the table (true: it is a
    /// magic column, which is never a key)
    missing_key: Option<(Vec<u8>, bool)>,
    /// ev_type=, ev_data=, ev_extra1..4= expressions, prepared on first use
    exprs: RefCell<[Option<Rc<Expr>>; 6]>,
    when: RefCell<Option<Rc<Expr>>>,
}

thread_local! {
    static TABLES: RefCell<HashMap<pg_sys::Oid, Rc<TableInfo>>> = RefCell::new(HashMap::new());
}
static mut ALL_STALE: bool = false;
static mut INSERT_EVENT_OID: pg_sys::Oid = pg_sys::InvalidOid;
static mut ACL_OK_USER: pg_sys::Oid = pg_sys::InvalidOid;

/// Relcache callback: only flags entries (it may run in the middle of a firing or an
/// SPI call, so nothing is freed here).
#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let done = TABLES
        .try_with(|t| match t.try_borrow() {
            Ok(t) => {
                if relid == pg_sys::InvalidOid {
                    t.values().for_each(|ti| ti.valid.set(false));
                } else if let Some(ti) = t.get(&relid) {
                    ti.valid.set(false);
                }
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false);
    if !done {
        unsafe { ALL_STALE = true };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn proc_callback(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    // pgq.insert_event may have been re-created, its ACL or a role membership changed
    unsafe {
        INSERT_EVENT_OID = pg_sys::InvalidOid;
        ACL_OK_USER = pg_sys::InvalidOid;
    }
}

pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0));
        // EXECUTE on pgq.insert_event: its ACL, and role memberships
        for cache in [
            pg_sys::SysCacheIdentifier::PROCOID,
            pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
            pg_sys::SysCacheIdentifier::AUTHOID,
        ] {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as i32,
                Some(proc_callback),
                pg_sys::Datum::from(0),
            );
        }
    }
}

/// The bytes of a server string (server encoding; not necessarily UTF-8).
unsafe fn cstr<'a>(p: *const c_char) -> &'a [u8] {
    // SAFETY: the caller passes a NUL-terminated string that outlives 'a.
    unsafe { CStr::from_ptr(p).to_bytes() }
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

unsafe fn build_table(rel: pg_sys::Relation) -> TableInfo {
    unsafe {
        let relid = (*rel).rd_id;
        let nsp = pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace);
        let schema = if nsp.is_null() {
            Vec::new()
        } else {
            cstr(nsp).to_vec()
        };
        let table = cstr((*(*rel).rd_rel).relname.data.as_ptr()).to_vec();
        let mcxt = pg_sys::AllocSetContextCreateInternal(
            pg_sys::CacheMemoryContext,
            c"pgq trigger cache".as_ptr(),
            0,
            1024,
            8 * 1024 * 1024,
        );
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let mut cols = Vec::with_capacity(natts);
        let mut magic_error = None;
        for i in 0..natts {
            let att = (*desc).attrs.as_ptr().add(i);
            let name = cstr((*att).attname.data.as_ptr()).to_vec();
            let typid = (*att).atttypid;
            let mut out: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
            let dropped = (*att).attisdropped;
            let mut magic = None;
            if !dropped {
                let mut outfn = pg_sys::InvalidOid;
                let mut varlena = false;
                pg_sys::getTypeOutputInfo(typid, &mut outfn, &mut varlena);
                pg_sys::fmgr_info_cxt(outfn, &mut *out, mcxt);
                match tl::magic_column(&name) {
                    Ok(m) => magic = m,
                    Err(e) => {
                        magic_error.get_or_insert(e);
                    }
                }
            }
            let json = match typid {
                pg_sys::BOOLOID => JsonKind::Bool,
                pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => JsonKind::Int,
                pg_sys::DATEOID | pg_sys::TIMESTAMPOID | pg_sys::TIMESTAMPTZOID => {
                    JsonKind::DateTime
                }
                _ => JsonKind::Text,
            };
            cols.push(Col {
                dropped,
                quoted: tl::quote_ident(&name),
                name,
                typid,
                collation: (*att).attcollation,
                out,
                plain_text: matches!(typid, pg_sys::TEXTOID | pg_sys::VARCHAROID),
                json,
                magic,
                eq: RefCell::new(Eq::Unknown),
            });
        }
        // primary key: names of the PK index's attributes, in index order
        let mut pk_names = Vec::new();
        let list = pg_sys::RelationGetIndexList(rel);
        if !list.is_null() {
            for k in 0..(*list).length as usize {
                let oid = (*(*list).elements.add(k)).oid_value;
                let idx = pg_sys::index_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
                if (*(*idx).rd_index).indisprimary {
                    let idesc = (*idx).rd_att;
                    for j in 0..(*idesc).natts as usize {
                        let a = (*idesc).attrs.as_ptr().add(j);
                        pk_names.push(cstr((*a).attname.data.as_ptr()).to_vec());
                    }
                }
                pg_sys::index_close(idx, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
                if !pk_names.is_empty() {
                    break;
                }
            }
            pg_sys::list_free(list);
        }
        let _ = relid;
        let mut fqname = schema.clone();
        fqname.push(b'.');
        fqname.extend_from_slice(&table);
        TableInfo {
            valid: Cell::new(true),
            fqname,
            schema,
            table,
            cols,
            magic_error,
            pk_names,
            mcxt,
            triggers: RefCell::new(HashMap::new()),
        }
    }
}

unsafe fn table_info(rel: pg_sys::Relation) -> Rc<TableInfo> {
    let relid = unsafe { (*rel).rd_id };
    unsafe {
        if ALL_STALE {
            ALL_STALE = false;
            // dropping the map's references is safe here: firings in progress hold
            // their own Rc
            let old = TABLES.with(|t| std::mem::take(&mut *t.borrow_mut()));
            drop(old);
        }
    }
    if let Some(ti) = TABLES.with(|t| t.borrow().get(&relid).cloned()) {
        if ti.valid.get() {
            return ti;
        }
    }
    let ti = Rc::new(unsafe { build_table(rel) });
    let old = TABLES.with(|t| t.borrow_mut().insert(relid, ti.clone()));
    drop(old);
    ti
}

fn build_trig(table: &TableInfo, args: tl::TriggerArgs) -> TrigInfo {
    let key_names: Vec<&[u8]> = match &args.pkey {
        Some(p) => tl::list_tokens(p).collect(),
        None => table.pk_names.iter().map(Vec::as_slice).collect(),
    };
    let is_key: Vec<bool> = table
        .cols
        .iter()
        .map(|c| {
            !c.dropped
                && c.magic.is_none()
                && match &args.pkey {
                    Some(p) => tl::list_contains(p, &c.name),
                    None => table.pk_names.contains(&c.name),
                }
        })
        .collect();
    // a pkey= name that matches no (ordinary) column would leave the key incomplete
    let missing_key = args.pkey.as_ref().and_then(|_| {
        key_names
            .iter()
            .find(|k| {
                !table
                    .cols
                    .iter()
                    .zip(&is_key)
                    .any(|(c, &key)| key && c.name.as_slice() == **k)
            })
            .map(|k| {
                let magic = table
                    .cols
                    .iter()
                    .any(|c| !c.dropped && c.name.as_slice() == *k);
                (k.to_vec(), magic)
            })
    });
    let ignored = table
        .cols
        .iter()
        .map(|c| {
            args.ignore
                .as_deref()
                .is_some_and(|l| tl::list_contains(l, &c.name))
        })
        .collect();
    let ops = [Op::Insert, Op::Update, Op::Delete, Op::Truncate];
    let logu_keys: Vec<u8> = match &args.pkey {
        Some(p) => p.clone(),
        None => table.pk_names.join(&b","[..]),
    };
    let json_keys: Vec<&[u8]> = match &args.pkey {
        Some(p) => p.split(|&c| c == b',').collect(),
        None => table.pk_names.iter().map(Vec::as_slice).collect(),
    };
    let ev_type = ops.map(|op| {
        [
            tl::logu_ev_type(op, &logu_keys),
            op.letter().as_bytes().to_vec(),
            tl::json_ev_type(op, &table.schema, &table.table, &json_keys),
        ]
    });
    let key_names_nonempty = !key_names.is_empty();
    TrigInfo {
        key_names_nonempty,
        is_key,
        ignored,
        ev_type,
        missing_key,
        args,
        exprs: RefCell::new(Default::default()),
        when: RefCell::new(None),
    }
}

impl TrigInfo {
    fn ev_type(&self, op: Op, fl: Flavour) -> &[u8] {
        let i = match op {
            Op::Insert => 0,
            Op::Update => 1,
            Op::Delete => 2,
            Op::Truncate => 3,
        };
        let n = match fl {
            Flavour::Logu => 0,
            Flavour::Sql => 1,
            Flavour::Json => 2,
        };
        &self.ev_type[i][n]
    }
}

unsafe fn trig_info(
    table: &TableInfo,
    trig: *const pg_sys::Trigger,
    truncate: bool,
) -> Rc<TrigInfo> {
    let tgoid = unsafe { (*trig).tgoid };
    if let Some(t) = table.triggers.borrow().get(&(tgoid, truncate)) {
        return t.clone();
    }
    let nargs = unsafe { (*trig).tgnargs } as usize;
    let args: Vec<&[u8]> = (0..nargs)
        .map(|i| unsafe { cstr(*(*trig).tgargs.add(i)) })
        .collect();
    let parsed = match tl::parse_args(&args, truncate) {
        Ok(a) => a,
        Err(e) => raise_internal(e),
    };
    let ti = Rc::new(build_trig(table, parsed));
    table
        .triggers
        .borrow_mut()
        .insert((tgoid, truncate), ti.clone());
    ti
}

// ---------------------------------------------------------------------------------
// Per-row helpers
// ---------------------------------------------------------------------------------

/// A deformed tuple.
struct Row {
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
}

unsafe fn deform(tup: pg_sys::HeapTuple, desc: pg_sys::TupleDesc) -> Row {
    let n = unsafe { (*desc).natts } as usize;
    let mut values = vec![pg_sys::Datum::from(0); n];
    let mut nulls = vec![true; n];
    unsafe { pg_sys::heap_deform_tuple(tup, desc, values.as_mut_ptr(), nulls.as_mut_ptr()) };
    Row { values, nulls }
}

impl Row {
    fn get(&self, i: usize) -> Option<pg_sys::Datum> {
        if self.nulls[i] {
            None
        } else {
            Some(self.values[i])
        }
    }
}

/// Text output of a value; the string lives in the current (per-tuple) memory context
/// (or in the tuple itself). `text` and `varchar`, whose output function returns
/// the stored bytes, are read in place.
unsafe fn out_text<'a>(col: &Col, d: pg_sys::Datum) -> &'a [u8] {
    // SAFETY: `d` is a non-null value of the column's type; output strings and
    // detoasted copies live in the current (per-tuple) memory context.
    unsafe {
        if col.plain_text {
            let p = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
            let len = pgrx::varlena::varsize_any_exhdr(p);
            let data = pgrx::varlena::vardata_any(p) as *const u8;
            return std::slice::from_raw_parts(data, len);
        }
        let p = pg_sys::OutputFunctionCall(&*col.out as *const _ as *mut _, d);
        cstr(p)
    }
}

unsafe fn text_of<'a>(col: &Col, row: &Row, i: usize) -> Option<&'a [u8]> {
    row.get(i).map(|d| unsafe { out_text(col, d) })
}

/// Whether OLD and NEW differ in column `i` (type equality operator, or text output
/// when the type has none or it is the generic array one).
unsafe fn changed(col: &Col, old: &Row, new: &Row, i: usize) -> bool {
    match (old.get(i), new.get(i)) {
        (None, None) => false,
        (None, Some(_)) | (Some(_), None) => true,
        (Some(a), Some(b)) => unsafe {
            if matches!(*col.eq.borrow(), Eq::Unknown) {
                let tc = pg_sys::lookup_type_cache(col.typid, pg_sys::TYPECACHE_EQ_OPR as i32);
                let opr = (*tc).eq_opr;
                let e =
                    if opr == pg_sys::InvalidOid || opr == pg_sys::Oid::from(pg_sys::ARRAY_EQ_OP) {
                        Eq::Text
                    } else {
                        let mut f: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
                        pg_sys::fmgr_info_cxt(pg_sys::get_opcode(opr), &mut *f, col.out.fn_mcxt);
                        Eq::Func(f)
                    };
                *col.eq.borrow_mut() = e;
            }
            match &*col.eq.borrow() {
                Eq::Func(f) => {
                    let r =
                        pg_sys::FunctionCall2Coll(&**f as *const _ as *mut _, col.collation, a, b);
                    !bool::from_datum(r, false).unwrap_or(false)
                }
                _ => out_text(col, a) != out_text(col, b),
            }
        },
    }
}

unsafe fn json_val<'a>(col: &Col, d: Option<pg_sys::Datum>) -> JsonVal<'a> {
    let Some(d) = d else { return JsonVal::Null };
    unsafe {
        match col.json {
            JsonKind::Bool => JsonVal::Raw(if d.value() != 0 { b"true" } else { b"false" }),
            JsonKind::Int => JsonVal::Raw(out_text(col, d)),
            JsonKind::DateTime => {
                let p = pg_sys::JsonEncodeDateTime(
                    std::ptr::null_mut(),
                    d,
                    col.typid,
                    std::ptr::null(),
                );
                JsonVal::Str(cstr(p))
            }
            JsonKind::Text => JsonVal::Str(out_text(col, d)),
        }
    }
}

/// The row encoded per flavour's row format (urlenc for logutriga/sqltriga backup,
/// JSON for jsontriga), over the columns in `keep`.
unsafe fn encode_row(t: &TableInfo, tr: &TrigInfo, row: &Row, json: bool) -> Vec<u8> {
    let cols = t
        .cols
        .iter()
        .enumerate()
        .filter(|(i, c)| !c.dropped && c.magic.is_none() && !tr.ignored[*i]);
    if json {
        tl::json_row(cols.map(|(i, c)| (c.name.as_slice(), unsafe { json_val(c, row.get(i)) })))
    } else {
        tl::urlenc_row(cols.map(|(i, c)| (c.name.as_slice(), unsafe { text_of(c, row, i) })))
    }
}

// ---------------------------------------------------------------------------------
// Expressions
// ---------------------------------------------------------------------------------

unsafe fn prepare_expr(t: &TableInfo, src: &[u8]) -> Rc<Expr> {
    let (sql, params) =
        match tl::rewrite_expr(src, unsafe { pg_sys::standard_conforming_strings }, |w| {
            t.cols.iter().position(|c| !c.dropped && c.name == w)
        }) {
            Ok(r) => r,
            Err(e) => raise_internal(e),
        };
    let mut types: Vec<pg_sys::Oid> = params.iter().map(|&i| t.cols[i].typid).collect();
    let csql = std::ffi::CString::new(sql).unwrap_or_else(|_| raise_internal("QB: syntax error"));
    unsafe {
        let plan = pg_sys::SPI_prepare(csql.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() {
            raise_internal(format!(
                "pgq trigger: SPI_prepare failed for \"{}\"",
                lossy(src)
            ));
        }
        pg_sys::SPI_keepplan(plan);
        Rc::new(Expr { plan, params })
    }
}

enum ExprResult {
    Text(Option<Vec<u8>>),
    Bool(bool),
}

/// Run one expression (inside an SPI connection) with the row's values.
unsafe fn run_expr(e: &Expr, row: &Row, want_bool: bool) -> ExprResult {
    unsafe {
        let mut values: Vec<pg_sys::Datum> = e.params.iter().map(|&i| row.values[i]).collect();
        let nulls: Vec<c_char> = e
            .params
            .iter()
            .map(|&i| {
                if row.nulls[i] {
                    b'n' as c_char
                } else {
                    b' ' as c_char
                }
            })
            .collect();
        let rc = pg_sys::SPI_execute_plan(e.plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0);
        if rc < 0 {
            raise_internal(format!("pgq trigger: SPI_execute_plan failed ({rc})"));
        }
        let n = pg_sys::SPI_processed;
        if n != 1 {
            raise_internal(format!("Expect 1 row from override query, got {n}"));
        }
        let tt = pg_sys::SPI_tuptable;
        let tup = *(*tt).vals;
        let desc = (*tt).tupdesc;
        if want_bool {
            let ty = pg_sys::SPI_gettypeid(desc, 1);
            if ty != pg_sys::BOOLOID {
                raise_internal(format!(
                    "when= query result must be boolean, got={}",
                    ty.to_u32()
                ));
            }
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(tup, desc, 1, &mut isnull);
            if isnull {
                raise_internal("when= should not be NULL");
            }
            ExprResult::Bool(d.value() != 0)
        } else {
            let p = pg_sys::SPI_getvalue(tup, desc, 1);
            ExprResult::Text(if p.is_null() {
                None
            } else {
                Some(cstr(p).to_vec())
            })
        }
    }
}

// ---------------------------------------------------------------------------------
// The trigger body
// ---------------------------------------------------------------------------------

unsafe fn check_insert_acl() {
    // SAFETY: backend-local statics; catalog lookups.
    unsafe {
        let uid = pg_sys::GetUserId();
        if ACL_OK_USER == uid && INSERT_EVENT_OID != pg_sys::InvalidOid {
            return;
        }
        if INSERT_EVENT_OID == pg_sys::InvalidOid {
            let oid = Spi::get_one::<pg_sys::Oid>(
                "select 'pgq.insert_event(text,text,text,text,text,text,text)'::pg_catalog.regprocedure::pg_catalog.oid",
            )
            .ok()
            .flatten()
            .unwrap_or(pg_sys::InvalidOid);
            INSERT_EVENT_OID = oid;
        }
        if INSERT_EVENT_OID != pg_sys::InvalidOid
            && pg_sys::pg_proc_aclcheck(
                INSERT_EVENT_OID,
                uid,
                pg_sys::ACL_EXECUTE as pg_sys::AclMode,
            ) != pg_sys::AclResult::ACLCHECK_OK
        {
            raise_code(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "permission denied for function insert_event",
            );
        }
        ACL_OK_USER = uid;
    }
}

unsafe fn fire(fcinfo: pg_sys::FunctionCallInfo, fl: Flavour) -> pg_sys::Datum {
    // SAFETY: called by the trigger manager with a TriggerData context (checked);
    // tuples and descriptors are the trigger manager's, valid for this call.
    unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
            raise_internal(match fl {
                Flavour::Sql => "pgq.sqltriga not called as trigger",
                _ => "pgq.logutriga not called as trigger",
            });
        }
        let td = ctx as *mut pg_sys::TriggerData;
        let event = (*td).tg_event;
        let row_level = event & pg_sys::TRIGGER_EVENT_ROW != 0;
        let before = event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_BEFORE;
        let op = match event & pg_sys::TRIGGER_EVENT_OPMASK {
            pg_sys::TRIGGER_EVENT_INSERT => Op::Insert,
            pg_sys::TRIGGER_EVENT_UPDATE => Op::Update,
            pg_sys::TRIGGER_EVENT_DELETE => Op::Delete,
            _ => Op::Truncate,
        };
        let passthrough = if before && row_level {
            if op == Op::Update {
                (*td).tg_newtuple
            } else {
                (*td).tg_trigtuple
            }
        } else {
            std::ptr::null_mut()
        };
        let ret = |t: pg_sys::HeapTuple| pg_sys::Datum::from(t as *mut std::ffi::c_void);
        if pg_sys::SessionReplicationRole == pg_sys::SESSION_REPLICATION_ROLE_LOCAL as i32 {
            return ret(passthrough);
        }
        if op == Op::Truncate {
            if row_level {
                raise_internal("pgq tRuncate trigger must be fired FOR EACH STATEMENT");
            }
        } else if !row_level {
            raise_internal("pgq Ins/Upd/Del trigger must be fired FOR EACH ROW");
        }
        let rel = (*td).tg_relation;
        let t = table_info(rel);
        let tr = trig_info(&t, (*td).tg_trigger, op == Op::Truncate);
        let a = &tr.args;
        if matches!(op, Op::Update | Op::Delete) && !tr.key_names_nonempty {
            raise_internal("Update/Delete on table without pkey");
        }
        if a.skip && !before {
            raise_internal("SKIP does not work in AFTER trigger.");
        }
        if a.deny {
            raise_internal(format!(
                "Table '{}' to queue '{}': change not allowed ({})",
                lossy(&t.fqname),
                lossy(&a.queue),
                op.word()
            ));
        }
        if let Some(e) = &t.magic_error {
            if op != Op::Truncate {
                raise_internal(e.clone());
            }
        }
        if fl == Flavour::Sql && matches!(op, Op::Update | Op::Delete) {
            // the WHERE clause would miss that key (the original emitted it anyway)
            if let Some((k, magic)) = &tr.missing_key {
                let (code, what) = if *magic {
                    (
                        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        "is a magic column, not a key,",
                    )
                } else {
                    (PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, "does not exist")
                };
                raise_code(
                    code,
                    format!(
                        "pgq.sqltriga: pkey column \"{}\" {what} in table {}",
                        lossy(k),
                        lossy(&t.fqname)
                    ),
                );
            }
        }
        let result = if a.skip {
            std::ptr::null_mut()
        } else {
            passthrough
        };

        let mut fields: [Option<Vec<u8>>; 6] = Default::default();
        fields[tl::EV_TYPE] = Some(tr.ev_type(op, fl).to_vec());
        fields[tl::EV_EXTRA1] = Some(t.fqname.clone());
        if op == Op::Truncate {
            fields[tl::EV_DATA] = Some(if fl == Flavour::Json {
                b"{}".to_vec()
            } else {
                Vec::new()
            });
        } else {
            let desc = (*rel).rd_att;
            let trig_row = deform((*td).tg_trigtuple, desc);
            let new_row = if op == Op::Update {
                Some(deform((*td).tg_newtuple, desc))
            } else {
                None
            };
            // the row whose values go to ev_data, magic columns and expressions
            let data_row = new_row.as_ref().unwrap_or(&trig_row);

            let mut set_cols: Vec<usize> = Vec::new();
            if let Some(new) = &new_row {
                let old = &trig_row;
                let compare_all = fl == Flavour::Sql || a.ignore.is_some();
                let mut changed_kept = false;
                let mut changed_ignored = false;
                for (i, c) in t.cols.iter().enumerate() {
                    if c.dropped || c.magic.is_some() {
                        continue;
                    }
                    if !(compare_all || tr.is_key[i]) {
                        continue;
                    }
                    if !changed(c, old, new, i) {
                        continue;
                    }
                    if tr.is_key[i] {
                        raise_internal("primary key update not allowed");
                    }
                    if tr.ignored[i] {
                        changed_ignored = true;
                    } else {
                        changed_kept = true;
                        set_cols.push(i);
                    }
                }
                if changed_ignored && !changed_kept {
                    return ret(result);
                }
                if a.backup {
                    fields[tl::EV_EXTRA2] = Some(encode_row(&t, &tr, old, fl == Flavour::Json));
                }
            }

            fields[tl::EV_DATA] = Some(match fl {
                Flavour::Logu => encode_row(&t, &tr, data_row, false),
                Flavour::Json => encode_row(&t, &tr, data_row, true),
                Flavour::Sql => {
                    // quoted column names: cached, unless quote_all_identifiers is on
                    let forced: Vec<Vec<u8>>;
                    let names: Vec<&[u8]> = if pg_sys::quote_all_identifiers {
                        forced = t
                            .cols
                            .iter()
                            .map(|c| {
                                let mut q = Vec::with_capacity(c.name.len() + 2);
                                tl::quote_ident_into(&mut q, &c.name, true);
                                q
                            })
                            .collect();
                        forced.iter().map(Vec::as_slice).collect()
                    } else {
                        t.cols.iter().map(|c| c.quoted.as_slice()).collect()
                    };
                    let old = &trig_row;
                    let keys = || {
                        t.cols
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| tr.is_key[*i])
                            .map(|(i, c)| match text_of(c, old, i) {
                                Some(v) => (names[i], v),
                                None => raise_internal("logtriga: Unexpected NULL key value"),
                            })
                    };
                    match op {
                        Op::Insert => tl::sql_insert(
                            t.cols
                                .iter()
                                .enumerate()
                                .filter(|(i, c)| !c.dropped && c.magic.is_none() && !tr.ignored[*i])
                                .map(|(i, c)| (names[i], text_of(c, data_row, i))),
                        ),
                        Op::Update => {
                            let new = new_row.as_ref().unwrap();
                            if set_cols.is_empty() {
                                let first: Vec<(&[u8], Option<&[u8]>)> =
                                    keys().take(1).map(|(n, v)| (n, Some(v))).collect();
                                tl::sql_update(first, keys())
                            } else {
                                tl::sql_update(
                                    set_cols
                                        .iter()
                                        .map(|&i| (names[i], text_of(&t.cols[i], new, i))),
                                    keys(),
                                )
                            }
                        }
                        _ => tl::sql_delete(keys()),
                    }
                }
            });

            // magic columns, then expressions
            for (i, c) in t.cols.iter().enumerate() {
                if let (false, Some(f)) = (c.dropped, c.magic) {
                    fields[f] = text_of(c, data_row, i).map(<[u8]>::to_vec);
                }
            }
            if a.has_expressions() {
                if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
                    raise_internal("pgq trigger: SPI_connect failed");
                }
                for f in 0..6 {
                    let Some(src) = &a.overrides[f] else { continue };
                    let e = {
                        let mut ex = tr.exprs.borrow_mut();
                        ex[f].get_or_insert_with(|| prepare_expr(&t, src)).clone()
                    };
                    if let ExprResult::Text(v) = run_expr(&e, data_row, false) {
                        fields[f] = v;
                    }
                }
                let mut emit = true;
                if let Some(src) = &a.when {
                    let e = {
                        let mut w = tr.when.borrow_mut();
                        w.get_or_insert_with(|| prepare_expr(&t, src)).clone()
                    };
                    if let ExprResult::Bool(b) = run_expr(&e, data_row, true) {
                        emit = b;
                    }
                }
                pg_sys::SPI_finish();
                if !emit {
                    return ret(result);
                }
            }
        }

        let f = |i: usize| fields[i].as_deref();
        let extra = [f(2), f(3), f(4), f(5)];
        if insert::replaced().insert_event {
            // a replaced pgq.insert_event is called by name, as the current user, as
            // the original's triggers do
            insert::call_insert_event_sql(Some(&a.queue), f(0), f(1), extra);
        } else {
            check_insert_acl();
            insert::as_owner(|| insert::insert_event7(Some(&a.queue), f(0), f(1), extra));
        }
        ret(result)
    }
}

macro_rules! trigger_fn {
    ($finfo:ident, $name:ident, $fl:expr) => {
        #[no_mangle]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[no_mangle]
        #[pg_guard]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            unsafe { fire(fcinfo, $fl) }
        }
    };
}

trigger_fn!(pg_finfo_pgq_logutriga, pgq_logutriga, Flavour::Logu);
trigger_fn!(pg_finfo_pgq_sqltriga, pgq_sqltriga, Flavour::Sql);
trigger_fn!(pg_finfo_pgq_jsontriga, pgq_jsontriga, Flavour::Json);
