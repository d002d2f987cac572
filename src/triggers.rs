//! pgrx glue for the row-capture triggers `pgq.logutriga`, `pgq.sqltriga` and
//! `pgq.jsontriga` (contract: docs/triggers.md). The payload logic is pure Rust in
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
use crate::guards::{
    att_name, spi_first_text, spi_first_value, spi_processed, spi_result_type, KeptPlan, OpenRel,
    OwnedContext, RelRef,
};
use crate::insert;
use crate::logic::triggers::{self as tl, JsonVal, Op};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::marker::PhantomData;
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
    triggers: RefCell<HashMap<(pg_sys::Oid, bool), Rc<TrigInfo>>>,
    /// memory for the FmgrInfos (fn_extra caches of output/equality functions); the
    /// last field, so it is deleted after the FmgrInfos that point into it
    _mcxt: OwnedContext,
}

struct Expr {
    plan: KeptPlan,
    /// column index per parameter
    params: Vec<usize>,
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

// Backend-local state: a backend runs one thread, and the invalidation callbacks run
// on it. `thread_local!` with `const` initialisers of types without `Drop` makes each
// access a plain thread-local load or store, as cheap as a `static mut`, without
// unsafe.
thread_local! {
    static TABLES: RefCell<HashMap<pg_sys::Oid, Rc<TableInfo>>> = RefCell::new(HashMap::new());
    /// a relcache callback found TABLES borrowed: drop every entry at the next firing
    static ALL_STALE: Cell<bool> = const { Cell::new(false) };
    /// pgq.insert_event(text x 7); InvalidOid: look it up again
    static INSERT_EVENT_OID: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    /// the user last found to have EXECUTE on it
    static ACL_OK_USER: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

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
        ALL_STALE.set(true);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn proc_callback(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    // pgq.insert_event may have been re-created, its ACL or a role membership changed
    INSERT_EVENT_OID.set(pg_sys::InvalidOid);
    ACL_OK_USER.set(pg_sys::InvalidOid);
}

pub fn init() {
    // SAFETY: registering callbacks at load time (from _PG_init), as PostgreSQL's own
    // modules do; the callbacks are `#[pg_guard]` functions that only set flags.
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
///
/// # Safety
/// `p` is a NUL-terminated string that outlives `'a`.
unsafe fn cstr<'a>(p: *const c_char) -> &'a [u8] {
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(p).to_bytes() }
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// The schema and name of a relation.
fn rel_names(rel: RelRef<'_>) -> (Vec<u8>, Vec<u8>) {
    // SAFETY: an open relation: rd_rel is valid; get_namespace_name returns a palloc'd
    // copy or NULL (checked), copied here.
    unsafe {
        let form = (*rel.as_ptr()).rd_rel;
        let nsp = pg_sys::get_namespace_name((*form).relnamespace);
        let schema = if nsp.is_null() {
            Vec::new()
        } else {
            cstr(nsp).to_vec()
        };
        (schema, cstr((*form).relname.data.as_ptr()).to_vec())
    }
}

/// A zeroed FmgrInfo set up for `func` with its caches in `cxt`.
fn fmgr_info(func: pg_sys::Oid, cxt: pg_sys::MemoryContext) -> Box<pg_sys::FmgrInfo> {
    // SAFETY: FmgrInfo is a plain C struct for which all-zero is the state
    // fmgr_info_cxt expects to fill; `cxt` is a live context owned by the caller.
    unsafe {
        let mut f: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
        pg_sys::fmgr_info_cxt(func, &mut *f, cxt);
        f
    }
}

/// The names of the primary key's attributes (index order), or none.
fn primary_key_names(rel: RelRef<'_>) -> Vec<Vec<u8>> {
    for oid in rel.index_oids() {
        let idx = OpenRel::index(oid, pg_sys::AccessShareLock, pg_sys::AccessShareLock);
        // SAFETY: an open index: rd_index is valid.
        if unsafe { (*(*idx.as_ptr()).rd_index).indisprimary } {
            return idx
                .rel_ref()
                .attributes()
                .iter()
                .map(|a| att_name(a).to_vec())
                .collect();
        }
    }
    Vec::new()
}

fn build_table(rel: RelRef<'_>) -> TableInfo {
    let (schema, table) = rel_names(rel);
    let mcxt = OwnedContext::new(
        // SAFETY: reading the address of a backend-global context.
        unsafe { pg_sys::CacheMemoryContext },
        c"pgq trigger cache",
        0,
        1024,
        8 * 1024 * 1024,
    );
    let attrs = rel.attributes();
    let mut cols = Vec::with_capacity(attrs.len());
    let mut magic_error = None;
    for att in attrs {
        let name = att_name(att).to_vec();
        let typid = att.atttypid;
        let dropped = att.attisdropped;
        let mut magic = None;
        let out = if dropped {
            // SAFETY: all-zero is a valid (unset) FmgrInfo; a dropped column's is
            // never called.
            Box::new(unsafe { std::mem::zeroed::<pg_sys::FmgrInfo>() })
        } else {
            let mut outfn = pg_sys::InvalidOid;
            let mut varlena = false;
            // SAFETY: a type OID of a live column; the outputs are written to locals.
            unsafe { pg_sys::getTypeOutputInfo(typid, &mut outfn, &mut varlena) };
            match tl::magic_column(&name) {
                Ok(m) => magic = m,
                Err(e) => {
                    magic_error.get_or_insert(e);
                }
            }
            fmgr_info(outfn, mcxt.as_ptr())
        };
        let json = match typid {
            pg_sys::BOOLOID => JsonKind::Bool,
            pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => JsonKind::Int,
            pg_sys::DATEOID | pg_sys::TIMESTAMPOID | pg_sys::TIMESTAMPTZOID => JsonKind::DateTime,
            _ => JsonKind::Text,
        };
        cols.push(Col {
            dropped,
            quoted: crate::logic::quote::quote_ident(&name),
            name,
            typid,
            collation: att.attcollation,
            out,
            plain_text: matches!(typid, pg_sys::TEXTOID | pg_sys::VARCHAROID),
            json,
            magic,
            eq: RefCell::new(Eq::Unknown),
        });
    }
    let pk_names = primary_key_names(rel);
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
        triggers: RefCell::new(HashMap::new()),
        _mcxt: mcxt,
    }
}

/// The cached info of the trigger's table, rebuilt when a relcache invalidation
/// marked it stale (or its column count no longer matches the relation's).
fn table_info(rel: RelRef<'_>) -> Rc<TableInfo> {
    let relid = rel.relid();
    if ALL_STALE.replace(false) {
        // dropping the map's references is safe here: firings in progress hold
        // their own Rc
        let old = TABLES.with(|t| std::mem::take(&mut *t.borrow_mut()));
        drop(old);
    }
    if let Some(ti) = TABLES.with(|t| t.borrow().get(&relid).cloned()) {
        if ti.valid.get() && ti.cols.len() == rel.attributes().len() {
            return ti;
        }
    }
    let ti = Rc::new(build_table(rel));
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

/// The cached parsed arguments of the firing trigger (per trigger OID; TRUNCATE
/// firings parse the arguments their own way).
fn trig_info(table: &TableInfo, call: &TrigCall<'_>) -> Rc<TrigInfo> {
    let truncate = call.op == Op::Truncate;
    let key = (call.trigger_oid(), truncate);
    if let Some(t) = table.triggers.borrow().get(&key) {
        return t.clone();
    }
    let parsed = match tl::parse_args(&call.trigger_args(), truncate) {
        Ok(a) => a,
        Err(e) => raise_internal(e),
    };
    let ti = Rc::new(build_trig(table, parsed));
    table.triggers.borrow_mut().insert(key, ti.clone());
    ti
}

// ---------------------------------------------------------------------------------
// The trigger call (the unsafe part of a firing)
// ---------------------------------------------------------------------------------

/// What the trigger manager passed to one firing, read once. Everything a firing
/// needs from the raw TriggerData goes through here; the lifetime `'a` is the call's,
/// for which the trigger manager keeps the relation open and the tuples alive.
struct TrigCall<'a> {
    op: Op,
    row_level: bool,
    before: bool,
    rel: RelRef<'a>,
    trigger: &'a pg_sys::Trigger,
    /// the row (INSERT: new, UPDATE/DELETE: old); NULL for statement triggers
    trigtuple: pg_sys::HeapTuple,
    /// UPDATE: the new row; else NULL
    newtuple: pg_sys::HeapTuple,
}

impl<'a> TrigCall<'a> {
    /// Read the call data; an ERROR when the function was not called as a trigger.
    ///
    /// # Safety
    /// `fcinfo` is the call info the function manager passed to this V1 function, and
    /// the result does not outlive the call.
    unsafe fn read(fcinfo: pg_sys::FunctionCallInfo, fl: Flavour) -> TrigCall<'a> {
        // SAFETY: the caller's contract: fcinfo is valid; a context of node type
        // T_TriggerData is a TriggerData (checked before the cast) whose relation,
        // trigger and tuples the trigger manager keeps valid for the call.
        unsafe {
            let ctx = (*fcinfo).context;
            if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
                raise_internal(match fl {
                    Flavour::Sql => "pgq.sqltriga not called as trigger",
                    _ => "pgq.logutriga not called as trigger",
                });
            }
            let td = &*(ctx as *const pg_sys::TriggerData);
            let event = td.tg_event;
            let op = match event & pg_sys::TRIGGER_EVENT_OPMASK {
                pg_sys::TRIGGER_EVENT_INSERT => Op::Insert,
                pg_sys::TRIGGER_EVENT_UPDATE => Op::Update,
                pg_sys::TRIGGER_EVENT_DELETE => Op::Delete,
                _ => Op::Truncate,
            };
            let row_level = event & pg_sys::TRIGGER_EVENT_ROW != 0;
            TrigCall {
                op,
                row_level,
                before: event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_BEFORE,
                rel: RelRef::new(td.tg_relation),
                trigger: &*td.tg_trigger,
                trigtuple: if row_level {
                    td.tg_trigtuple
                } else {
                    std::ptr::null_mut()
                },
                newtuple: if row_level && op == Op::Update {
                    td.tg_newtuple
                } else {
                    std::ptr::null_mut()
                },
            }
        }
    }

    /// The function's result when the row goes on unchanged: the row for BEFORE ROW
    /// triggers, NULL otherwise.
    fn passthrough(&self) -> pg_sys::Datum {
        let t = if self.before && self.row_level {
            if self.op == Op::Update {
                self.newtuple
            } else {
                self.trigtuple
            }
        } else {
            std::ptr::null_mut()
        };
        pg_sys::Datum::from(t as *mut std::ffi::c_void)
    }

    fn trigger_oid(&self) -> pg_sys::Oid {
        self.trigger.tgoid
    }

    /// The trigger's arguments (CREATE TRIGGER ... (args)).
    fn trigger_args(&self) -> Vec<&'a [u8]> {
        (0..self.trigger.tgnargs as usize)
            // SAFETY: tgargs holds tgnargs NUL-terminated strings, kept by the
            // relcache entry's trigger descriptor for the call.
            .map(|i| unsafe { cstr(*self.trigger.tgargs.add(i)) })
            .collect()
    }

    /// The row (and for UPDATE the new row), deformed with the relation's descriptor.
    fn rows(&self) -> (Row<'a>, Option<Row<'a>>) {
        let old = self.deform(self.trigtuple);
        let new = (!self.newtuple.is_null()).then(|| self.deform(self.newtuple));
        (old, new)
    }

    fn deform(&self, tup: pg_sys::HeapTuple) -> Row<'a> {
        if tup.is_null() {
            raise_internal("pgq trigger: no row in a row-level firing");
        }
        let n = self.rel.attributes().len();
        let mut values = vec![pg_sys::Datum::from(0); n];
        let mut nulls = vec![true; n];
        // SAFETY: a tuple of this relation, alive for the call; the arrays hold natts
        // entries, as heap_deform_tuple writes with the relation's descriptor.
        unsafe {
            pg_sys::heap_deform_tuple(
                tup,
                (*self.rel.as_ptr()).rd_att,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            )
        };
        Row {
            values,
            nulls,
            _call: PhantomData,
        }
    }
}

// ---------------------------------------------------------------------------------
// Per-row helpers
// ---------------------------------------------------------------------------------

/// A deformed row of the trigger's relation. Only [`TrigCall::rows`] makes one, so
/// value `i` is NULL or a valid datum of column `i`'s type (the cached [`TableInfo`]
/// matches the relation's descriptor: it is rebuilt on every relcache invalidation
/// and when the column count differs), pointing into a tuple alive for `'a`.
struct Row<'a> {
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    _call: PhantomData<&'a ()>,
}

impl Row<'_> {
    fn get(&self, i: usize) -> Option<pg_sys::Datum> {
        if self.nulls[i] {
            None
        } else {
            Some(self.values[i])
        }
    }
}

/// Text output of a non-null value of `col`'s type; the string lives in the current
/// (per-tuple) memory context (or in the tuple itself). `text` and `varchar`, whose
/// output function returns the stored bytes, are read in place.
///
/// # Safety
/// `d` is a valid non-null datum of `col`'s type that outlives `'a`.
unsafe fn out_text<'a>(col: &Col, d: pg_sys::Datum) -> &'a [u8] {
    // SAFETY: the caller's contract; output strings and detoasted copies live in the
    // current (per-tuple) memory context, which outlives the firing's use of them.
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

/// Text output of column `i` of `row` (None for NULL).
fn text_of<'a>(col: &Col, row: &Row<'a>, i: usize) -> Option<&'a [u8]> {
    // SAFETY: a Row's non-null value `i` is of column `i`'s type and lives for 'a.
    row.get(i).map(|d| unsafe { out_text(col, d) })
}

/// The equality function of `col`'s type (cached on the column).
fn col_eq(col: &Col) -> std::cell::Ref<'_, Eq> {
    if matches!(*col.eq.borrow(), Eq::Unknown) {
        // SAFETY: a type cache lookup for a live column's type (never NULL; an ERROR
        // for a missing type).
        let opr = unsafe {
            (*pg_sys::lookup_type_cache(col.typid, pg_sys::TYPECACHE_EQ_OPR as i32)).eq_opr
        };
        let e = if opr == pg_sys::InvalidOid || opr == pg_sys::Oid::from(pg_sys::ARRAY_EQ_OP) {
            Eq::Text
        } else {
            // SAFETY: get_opcode of an existing operator.
            let func = unsafe { pg_sys::get_opcode(opr) };
            Eq::Func(fmgr_info(func, col.out.fn_mcxt))
        };
        *col.eq.borrow_mut() = e;
    }
    col.eq.borrow()
}

/// Whether OLD and NEW differ in column `i` (type equality operator, or text output
/// when the type has none or it is the generic array one).
fn changed(col: &Col, old: &Row<'_>, new: &Row<'_>, i: usize) -> bool {
    match (old.get(i), new.get(i)) {
        (None, None) => false,
        (None, Some(_)) | (Some(_), None) => true,
        (Some(a), Some(b)) => match &*col_eq(col) {
            Eq::Func(f) => {
                // SAFETY: the type's equality function on two non-null values of
                // that type; it returns a bool datum.
                let r = unsafe {
                    pg_sys::FunctionCall2Coll(&**f as *const _ as *mut _, col.collation, a, b)
                };
                r.value() == 0
            }
            _ => text_of(col, old, i) != text_of(col, new, i),
        },
    }
}

/// Column `i` of `row` as a JSON value.
fn json_of<'a>(col: &Col, row: &Row<'a>, i: usize) -> JsonVal<'a> {
    let Some(d) = row.get(i) else {
        return JsonVal::Null;
    };
    match col.json {
        JsonKind::Bool => JsonVal::Raw(if d.value() != 0 { b"true" } else { b"false" }),
        JsonKind::Int => JsonVal::Raw(text_of(col, row, i).unwrap_or_default()),
        JsonKind::DateTime => {
            // SAFETY: a non-null date/timestamp(tz) value of the column's type
            // (JsonKind::DateTime is set for exactly those); the result is a palloc'd
            // string in the current (per-tuple) context.
            JsonVal::Str(unsafe {
                cstr(pg_sys::JsonEncodeDateTime(
                    std::ptr::null_mut(),
                    d,
                    col.typid,
                    std::ptr::null(),
                ))
            })
        }
        JsonKind::Text => JsonVal::Str(text_of(col, row, i).unwrap_or_default()),
    }
}

/// The row encoded per flavour's row format (urlenc for logutriga/sqltriga backup,
/// JSON for jsontriga), over the columns that are not dropped, magic or ignored.
fn encode_row(t: &TableInfo, tr: &TrigInfo, row: &Row<'_>, json: bool) -> Vec<u8> {
    let cols = t
        .cols
        .iter()
        .enumerate()
        .filter(|(i, c)| !c.dropped && c.magic.is_none() && !tr.ignored[*i]);
    if json {
        tl::json_row(cols.map(|(i, c)| (c.name.as_slice(), json_of(c, row, i))))
    } else {
        tl::urlenc_row(cols.map(|(i, c)| (c.name.as_slice(), text_of(c, row, i))))
    }
}

// ---------------------------------------------------------------------------------
// Expressions
// ---------------------------------------------------------------------------------

fn standard_conforming_strings() -> bool {
    // SAFETY: reading a GUC variable of this backend.
    unsafe { pg_sys::standard_conforming_strings }
}

fn prepare_expr(client: &pgrx::spi::SpiClient<'_>, t: &TableInfo, src: &[u8]) -> Rc<Expr> {
    let (sql, params) = match tl::rewrite_expr(src, standard_conforming_strings(), |w| {
        t.cols.iter().position(|c| !c.dropped && c.name == w)
    }) {
        Ok(r) => r,
        Err(e) => raise_internal(e),
    };
    let types: Vec<pg_sys::Oid> = params.iter().map(|&i| t.cols[i].typid).collect();
    let csql = std::ffi::CString::new(sql).unwrap_or_else(|_| raise_internal("QB: syntax error"));
    let what = format!("the trigger expression \"{}\"", lossy(src));
    Rc::new(Expr {
        plan: KeptPlan::prepare(client, &csql, &types, &what),
        params,
    })
}

enum ExprResult {
    Text(Option<Vec<u8>>),
    Bool(bool),
}

/// Run one expression with the row's values.
fn run_expr(
    client: &pgrx::spi::SpiClient<'_>,
    e: &Expr,
    row: &Row<'_>,
    want_bool: bool,
) -> ExprResult {
    let mut values: Vec<pg_sys::Datum> = e.params.iter().map(|&i| row.values[i]).collect();
    let nulls: Vec<c_char> = e
        .params
        .iter()
        .map(|&i| if row.nulls[i] { b'n' } else { b' ' } as c_char)
        .collect();
    let rc = e.plan.execute(client, &mut values, &nulls, false, 0);
    if rc < 0 {
        raise_internal(format!("pgq trigger: SPI_execute_plan failed ({rc})"));
    }
    let n = spi_processed(client);
    if n != 1 {
        raise_internal(format!("Expect 1 row from override query, got {n}"));
    }
    if want_bool {
        let ty = spi_result_type(client, 1);
        if ty != pg_sys::BOOLOID {
            raise_internal(format!(
                "when= query result must be boolean, got={}",
                ty.to_u32()
            ));
        }
        match spi_first_value(client, 1) {
            Some((d, false)) => ExprResult::Bool(d.value() != 0),
            _ => raise_internal("when= should not be NULL"),
        }
    } else {
        ExprResult::Text(spi_first_text(client, 1))
    }
}

// ---------------------------------------------------------------------------------
// The trigger body, in steps
// ---------------------------------------------------------------------------------

/// ev_type, ev_data, ev_extra1..4 of the event to insert.
type Fields = [Option<Vec<u8>>; 6];

fn check_insert_acl() {
    // SAFETY: reads the current user id (a backend variable).
    let uid = unsafe { pg_sys::GetUserId() };
    if ACL_OK_USER.get() == uid && INSERT_EVENT_OID.get() != pg_sys::InvalidOid {
        return;
    }
    if INSERT_EVENT_OID.get() == pg_sys::InvalidOid {
        let oid = Spi::get_one::<pg_sys::Oid>(
            "select 'pgq.insert_event(text,text,text,text,text,text,text)'::pg_catalog.regprocedure::pg_catalog.oid",
        )
        .ok()
        .flatten()
        .unwrap_or(pg_sys::InvalidOid);
        INSERT_EVENT_OID.set(oid);
    }
    let func = INSERT_EVENT_OID.get();
    // SAFETY: an ACL check of a function OID (a catalog lookup; an ERROR when missing).
    let allowed = func == pg_sys::InvalidOid
        || unsafe { pg_sys::pg_proc_aclcheck(func, uid, pg_sys::ACL_EXECUTE as pg_sys::AclMode) }
            == pg_sys::AclResult::ACLCHECK_OK;
    if !allowed {
        raise_code(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied for function insert_event",
        );
    }
    ACL_OK_USER.set(uid);
}

fn replication_role_local() -> bool {
    // SAFETY: reading a GUC variable of this backend.
    unsafe { pg_sys::SessionReplicationRole == pg_sys::SESSION_REPLICATION_ROLE_LOCAL as i32 }
}

/// Step 1: the trigger is declared the way pgq triggers must be.
fn check_declaration(call: &TrigCall<'_>) {
    if call.op == Op::Truncate {
        if call.row_level {
            raise_internal("pgq tRuncate trigger must be fired FOR EACH STATEMENT");
        }
    } else if !call.row_level {
        raise_internal("pgq Ins/Upd/Del trigger must be fired FOR EACH ROW");
    }
}

/// Step 2: whether this event may be captured at all with these arguments (ERRORs).
fn check_event(call: &TrigCall<'_>, fl: Flavour, t: &TableInfo, tr: &TrigInfo) {
    let (op, a) = (call.op, &tr.args);
    if matches!(op, Op::Update | Op::Delete) && !tr.key_names_nonempty {
        raise_internal("Update/Delete on table without pkey");
    }
    if a.skip && !call.before {
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
}

/// Step 3a (UPDATE): the changed columns that are kept, in column order; None when
/// only ignored columns changed (no event). A changed key column is an ERROR.
fn update_changes(
    fl: Flavour,
    t: &TableInfo,
    tr: &TrigInfo,
    old: &Row<'_>,
    new: &Row<'_>,
) -> Option<Vec<usize>> {
    let compare_all = fl == Flavour::Sql || tr.args.ignore.is_some();
    let mut set_cols = Vec::new();
    let mut changed_ignored = false;
    for (i, c) in t.cols.iter().enumerate() {
        if c.dropped || c.magic.is_some() || !(compare_all || tr.is_key[i]) {
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
            set_cols.push(i);
        }
    }
    if changed_ignored && set_cols.is_empty() {
        return None;
    }
    Some(set_cols)
}

/// Step 3b (sqltriga): the SQL statement fragment of ev_data.
fn sql_payload(
    op: Op,
    t: &TableInfo,
    tr: &TrigInfo,
    old: &Row<'_>,
    new: Option<&Row<'_>>,
    set_cols: &[usize],
) -> Vec<u8> {
    // quoted column names: cached, unless quote_all_identifiers is on
    let forced: Vec<Vec<u8>>;
    let names: Vec<&[u8]> = if crate::names::quote_all_identifiers() {
        forced = t
            .cols
            .iter()
            .map(|c| {
                let mut q = Vec::with_capacity(c.name.len() + 2);
                crate::logic::quote::quote_ident_into(&mut q, &c.name, true);
                q
            })
            .collect();
        forced.iter().map(Vec::as_slice).collect()
    } else {
        t.cols.iter().map(|c| c.quoted.as_slice()).collect()
    };
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
    match (op, new) {
        (Op::Insert, _) => tl::sql_insert(
            t.cols
                .iter()
                .enumerate()
                .filter(|(i, c)| !c.dropped && c.magic.is_none() && !tr.ignored[*i])
                .map(|(i, c)| (names[i], text_of(c, old, i))),
        ),
        (Op::Update, Some(new)) => {
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

/// Step 3c: magic columns, then `ev_*=` expressions, over the data row; false when a
/// `when=` expression says not to emit the event.
fn apply_overrides(t: &TableInfo, tr: &TrigInfo, row: &Row<'_>, fields: &mut Fields) -> bool {
    for (i, c) in t.cols.iter().enumerate() {
        if let (false, Some(f)) = (c.dropped, c.magic) {
            fields[f] = text_of(c, row, i).map(<[u8]>::to_vec);
        }
    }
    let a = &tr.args;
    if !a.has_expressions() {
        return true;
    }
    Spi::connect(|client| {
        for (f, src) in a.overrides.iter().enumerate() {
            let Some(src) = src else { continue };
            let e = {
                let mut ex = tr.exprs.borrow_mut();
                ex[f]
                    .get_or_insert_with(|| prepare_expr(client, t, src))
                    .clone()
            };
            if let ExprResult::Text(v) = run_expr(client, &e, row, false) {
                fields[f] = v;
            }
        }
        let Some(src) = &a.when else { return true };
        let e = {
            let mut w = tr.when.borrow_mut();
            w.get_or_insert_with(|| prepare_expr(client, t, src))
                .clone()
        };
        match run_expr(client, &e, row, true) {
            ExprResult::Bool(b) => b,
            ExprResult::Text(_) => true,
        }
    })
}

/// Step 3: the event's fields; None when no event is to be inserted.
fn build_payload(call: &TrigCall<'_>, fl: Flavour, t: &TableInfo, tr: &TrigInfo) -> Option<Fields> {
    let op = call.op;
    let mut fields: Fields = Default::default();
    fields[tl::EV_TYPE] = Some(tr.ev_type(op, fl).to_vec());
    fields[tl::EV_EXTRA1] = Some(t.fqname.clone());
    if op == Op::Truncate {
        fields[tl::EV_DATA] = Some(if fl == Flavour::Json {
            b"{}".to_vec()
        } else {
            Vec::new()
        });
        return Some(fields);
    }
    let (trig_row, new_row) = call.rows();
    // the row whose values go to ev_data, magic columns and expressions
    let data_row = new_row.as_ref().unwrap_or(&trig_row);
    let mut set_cols = Vec::new();
    if let Some(new) = &new_row {
        set_cols = update_changes(fl, t, tr, &trig_row, new)?;
        if tr.args.backup {
            fields[tl::EV_EXTRA2] = Some(encode_row(t, tr, &trig_row, fl == Flavour::Json));
        }
    }
    fields[tl::EV_DATA] = Some(match fl {
        Flavour::Logu => encode_row(t, tr, data_row, false),
        Flavour::Json => encode_row(t, tr, data_row, true),
        Flavour::Sql => sql_payload(op, t, tr, &trig_row, new_row.as_ref(), &set_cols),
    });
    apply_overrides(t, tr, data_row, &mut fields).then_some(fields)
}

/// Step 4: insert the event, with the semantics of `pgq.insert_event(7)`.
fn insert_fields(queue: &[u8], fields: &Fields) {
    let f = |i: usize| fields[i].as_deref();
    let extra = [f(2), f(3), f(4), f(5)];
    if insert::replaced().insert_event {
        // a replaced pgq.insert_event is called by name, as the current user, as
        // the original's triggers do
        insert::call_insert_event_sql(Some(queue), f(0), f(1), extra);
    } else {
        check_insert_acl();
        insert::as_owner(|| insert::insert_event7(Some(queue), f(0), f(1), extra));
    }
}

/// One firing: the steps above; the function's result.
fn fire(call: &TrigCall<'_>, fl: Flavour) -> pg_sys::Datum {
    if replication_role_local() {
        return call.passthrough();
    }
    check_declaration(call);
    let t = table_info(call.rel);
    let tr = trig_info(&t, call);
    check_event(call, fl, &t, &tr);
    let result = if tr.args.skip {
        pg_sys::Datum::from(0)
    } else {
        call.passthrough()
    };
    if let Some(fields) = build_payload(call, fl, &t, &tr) {
        insert_fields(&tr.args.queue, &fields);
    }
    result
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
            // SAFETY: called by the function manager as a V1 function; the call data
            // is used only during this call.
            let call = unsafe { TrigCall::read(fcinfo, $fl) };
            fire(&call, $fl)
        }
    };
}

trigger_fn!(pg_finfo_pgq_logutriga, pgq_logutriga, Flavour::Logu);
trigger_fn!(pg_finfo_pgq_sqltriga, pgq_sqltriga, Flavour::Sql);
trigger_fn!(pg_finfo_pgq_jsontriga, pgq_jsontriga, Flavour::Json);
