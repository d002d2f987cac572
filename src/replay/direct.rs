//! Row changes applied through the executor's entry points for replication
//! (`ExecSimpleRelationInsert` / `Update` / `Delete`, a row found by a unique index
//! with `RelationFindReplTupleByIndex`), the way PostgreSQL's own logical replication
//! applies them: no plan, no executor start-up per row.
//!
//! Only for tables where that does exactly what the kept SPI plan of
//! [`super::apply`] does ([`facts`] says which, and why not): an ordinary table with no
//! row security, no rules, no trigger that fires in `replica` mode, no generated or
//! `GENERATED ALWAYS` identity column; an INSERT that names every column; an UPDATE or
//! DELETE whose key columns are exactly those of a valid, immediate, non-partial
//! unique btree index whose equality is the types' default one, under the columns'
//! collations, and that is the primary key or the replica identity index (the ones the
//! executor's lookup is made for). Everything else takes the SPI plan, and so does a
//! change the replay role lacks the table privilege for (the plan then raises
//! PostgreSQL's own error, or honours a column privilege).
//!
//! The row is found with a dirty snapshot and locked before it is changed, as in
//! PostgreSQL's apply worker: a change waits for a local transaction that holds the row
//! (the plan would not see an uncommitted row), and it always sees the latest committed
//! version (the replay runs at READ COMMITTED, as its transactions are short).
//!
//! What the executor checks is checked here too: NOT NULL and CHECK constraints, unique
//! indexes (a duplicate key is the same ERROR), a partition's bound. Foreign keys are
//! not: their triggers fire only on origin, as under the SPI plan with the replica role.

use pgrx::pg_sys;

/// A unique index that finds rows: its OID and its key columns (table attnums).
pub struct UniqueKey {
    pub index: pg_sys::Oid,
    pub atts: Vec<i16>,
}

/// What the direct path needs of a table, gathered once per relcache generation.
pub struct Facts {
    /// attributes of the row type, dropped ones included
    pub natts: usize,
    /// the live columns: an INSERT must name each of them once
    pub required: Vec<i16>,
    pub keys: Vec<UniqueKey>,
}

/// Which change the direct path makes.
#[derive(Clone, Copy)]
pub enum Op {
    Insert,
    Update(pg_sys::Oid),
    Delete(pg_sys::Oid),
}

/// A column value in table attribute terms.
pub struct Value {
    pub att: i16,
    pub datum: pg_sys::Datum,
    pub null: bool,
}

/// The facts of `relid`, or why its changes take the SPI plan.
///
/// # Safety
/// In a transaction; `relid` names an existing relation.
pub unsafe fn facts(relid: pg_sys::Oid) -> Result<Facts, &'static str> {
    // SAFETY: as the caller promises; the lock is kept to the end of the transaction
    // as any statement on the table would.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
        let r = facts_of(rel);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        r
    }
}

unsafe fn facts_of(rel: pg_sys::Relation) -> Result<Facts, &'static str> {
    // SAFETY: `rel` is open; the relcache entry and its index list stay valid while it
    // is; indexes are opened and closed here.
    unsafe {
        let form = &*(*rel).rd_rel;
        if form.relkind as u8 != pg_sys::RELKIND_RELATION {
            return Err("not an ordinary table");
        }
        if form.relrowsecurity {
            return Err("row security");
        }
        if form.relhasrules || !(*rel).rd_rules.is_null() {
            return Err("rules");
        }
        let trig = (*rel).trigdesc;
        if !trig.is_null() {
            let n = (*trig).numtriggers as usize;
            for t in std::slice::from_raw_parts((*trig).triggers, n) {
                let e = t.tgenabled as u8;
                if e == pg_sys::TRIGGER_FIRES_ALWAYS || e == pg_sys::TRIGGER_FIRES_ON_REPLICA {
                    return Err("a trigger that fires on replicas");
                }
            }
        }
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let constr = (*desc).constr;
        if !constr.is_null() && (*constr).has_generated_stored {
            return Err("generated columns");
        }
        let attrs = (*desc).attrs.as_slice(natts);
        let mut required = Vec::with_capacity(natts);
        for a in attrs {
            if a.attisdropped {
                continue;
            }
            if a.attidentity as u8 == pg_sys::ATTRIBUTE_IDENTITY_ALWAYS || a.attgenerated != 0 {
                return Err("a GENERATED ALWAYS column");
            }
            required.push(a.attnum);
        }
        let mut keys = Vec::new();
        // the executor's lookup by index is made for these two (and asserts it)
        let pk = pg_sys::RelationGetPrimaryKeyIndex(rel);
        let identity = pg_sys::RelationGetReplicaIndex(rel);
        let list = pg_sys::RelationGetIndexList(rel);
        let n = if list.is_null() { 0 } else { (*list).length };
        for i in 0..n {
            let oid = pg_sys::list_nth_oid(list, i);
            if oid != pk && oid != identity {
                continue;
            }
            let idx = pg_sys::index_open(oid, pg_sys::AccessShareLock as i32);
            if let Some(atts) = usable_key(idx, attrs) {
                keys.push(UniqueKey { index: oid, atts });
            }
            pg_sys::index_close(idx, pg_sys::NoLock as i32);
        }
        pg_sys::list_free(list);
        Ok(Facts {
            natts,
            required,
            keys,
        })
    }
}

/// The key columns of index `idx` if it can find the one row a key names.
unsafe fn usable_key(
    idx: pg_sys::Relation,
    attrs: &[pg_sys::FormData_pg_attribute],
) -> Option<Vec<i16>> {
    // SAFETY: `idx` is an open index; its pg_index row and opclass arrays live in its
    // relcache entry.
    unsafe {
        let ix = &*(*idx).rd_index;
        if !ix.indisunique
            || !ix.indisvalid
            || !ix.indisready
            || !ix.indimmediate
            || ix.indisexclusion
            || (*(*idx).rd_rel).relam != pg_sys::BTREE_AM_OID
        {
            return None;
        }
        let tup = (*idx).rd_indextuple;
        let partial = !pg_sys::heap_attisnull(
            tup,
            pg_sys::Anum_pg_index_indpred as i32,
            std::ptr::null_mut(),
        );
        let exprs = !pg_sys::heap_attisnull(
            tup,
            pg_sys::Anum_pg_index_indexprs as i32,
            std::ptr::null_mut(),
        );
        if partial || exprs {
            return None;
        }
        let nkeys = ix.indnkeyatts as usize;
        let cols = ix.indkey.values.as_slice(nkeys);
        let mut atts = Vec::with_capacity(nkeys);
        for (i, &att) in cols.iter().enumerate() {
            if att <= 0 || att as usize > attrs.len() {
                return None;
            }
            let a = &attrs[att as usize - 1];
            let opcintype = *(*idx).rd_opcintype.add(i);
            let family = *(*idx).rd_opfamily.add(i);
            let eq = pg_sys::get_opfamily_member(
                family,
                opcintype,
                opcintype,
                pg_sys::BTEqualStrategyNumber as i16,
            );
            let tc = pg_sys::lookup_type_cache(a.atttypid, pg_sys::TYPECACHE_EQ_OPR as i32);
            if tc.is_null() || (*tc).eq_opr != eq || eq == pg_sys::InvalidOid {
                return None;
            }
            if *(*idx).rd_indcollation.add(i) != a.attcollation {
                return None;
            }
            atts.push(att);
        }
        Some(atts)
    }
}

/// Whether the current role holds every privilege `op` needs on the whole table
/// (INSERT; UPDATE or DELETE, and SELECT for the key it searches by).
///
/// # Safety
/// In a transaction.
pub unsafe fn allowed(relid: pg_sys::Oid, op: Op) -> bool {
    let need: &[u64] = match op {
        Op::Insert => &[pg_sys::ACL_INSERT as u64],
        Op::Update(_) => &[pg_sys::ACL_UPDATE as u64, pg_sys::ACL_SELECT as u64],
        Op::Delete(_) => &[pg_sys::ACL_DELETE as u64, pg_sys::ACL_SELECT as u64],
    };
    // SAFETY: catalog lookups for an existing relation in the caller's transaction.
    unsafe {
        let role = pg_sys::GetUserId();
        need.iter().all(|&m| {
            pg_sys::pg_class_aclcheck(relid, role, m as pg_sys::AclMode)
                == pg_sys::AclResult::ACLCHECK_OK
        })
    }
}

/// Make one change on table `relid`: `cols` are the values to insert or set, `key` the
/// values that find the row (UPDATE, DELETE). Returns the rows changed (0: no row has
/// the key, as an UPDATE or DELETE that matches nothing).
///
/// # Safety
/// In a transaction with `facts(relid)` Ok and the op's index one of its keys; datums
/// of the columns' types; every attnum within the row type, each at most once in
/// `cols`; for an INSERT, `cols` names every required column.
pub unsafe fn change(
    relid: pg_sys::Oid,
    natts: usize,
    op: Op,
    cols: &[Value],
    key: &[Value],
) -> u64 {
    // SAFETY: the executor's replication entry points used as PostgreSQL's apply worker
    // uses them: an executor state with a one-entry range table and a result relation,
    // indexes open, AFTER-trigger query level and an active snapshot around the change.
    // On an ERROR the (sub)transaction abort releases the relation, indexes, snapshot,
    // buffer pins and memory; the guard puts the caller's memory context back.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as i32);
        // the caller locked the table before it used its cached facts, so they are
        // this relation's; a mismatch would be a bug, never a wrong row
        if (*(*rel).rd_att).natts as usize != natts {
            pgrx::error!(
                "pgq: the cached row type of table {} is out of date",
                relid.to_u32()
            );
        }
        let estate = pg_sys::CreateExecutorState();
        // the caller's context comes back when the guard drops, also when an ERROR
        // unwinds (the transaction abort then frees the executor state)
        let back = crate::guards::switch_to_context((*estate).es_query_cxt);

        let rte = pg_sys::palloc0(std::mem::size_of::<pg_sys::RangeTblEntry>())
            as *mut pg_sys::RangeTblEntry;
        (*rte).type_ = pg_sys::NodeTag::T_RangeTblEntry;
        (*rte).rtekind = pg_sys::RTEKind::RTE_RELATION;
        (*rte).relid = relid;
        (*rte).relkind = pg_sys::RELKIND_RELATION as std::ffi::c_char;
        (*rte).rellockmode = pg_sys::AccessShareLock as i32;
        if let Op::Update(_) = op {
            // the columns set: the indexes' "unchanged by the update" hint reads them
            for v in cols {
                (*rte).updatedCols = pg_sys::bms_add_member(
                    (*rte).updatedCols,
                    v.att as i32 - pg_sys::FirstLowInvalidHeapAttributeNumber,
                );
            }
        }
        let range = pg_sys::lappend(std::ptr::null_mut(), rte.cast());
        pg_sys::ExecInitRangeTable(estate, range);
        let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
            as *mut pg_sys::ResultRelInfo;
        (*rri).type_ = pg_sys::NodeTag::T_ResultRelInfo;
        pg_sys::InitResultRelInfo(rri, rel, 1, std::ptr::null_mut(), 0);
        (*estate).es_opened_result_relations =
            pg_sys::lappend((*estate).es_opened_result_relations, rri.cast());
        (*estate).es_output_cid = pg_sys::GetCurrentCommandId(true);

        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::AfterTriggerBeginQuery();
        pg_sys::ExecOpenIndices(rri, false);
        let desc = (*rel).rd_att;
        let virt = std::ptr::addr_of!(pg_sys::TTSOpsVirtual);

        let done = match op {
            Op::Insert => {
                let slot = pg_sys::ExecInitExtraTupleSlot(estate, desc, virt);
                fill(slot, natts, cols);
                pg_sys::ExecSimpleRelationInsert(rri, estate, slot);
                1
            }
            Op::Update(index) | Op::Delete(index) => {
                let search = pg_sys::ExecInitExtraTupleSlot(estate, desc, virt);
                fill(search, natts, key);
                let found = pg_sys::table_slot_create(rel, &mut (*estate).es_tupleTable);
                if !pg_sys::RelationFindReplTupleByIndex(
                    rel,
                    index,
                    pg_sys::LockTupleMode::LockTupleExclusive,
                    search,
                    found,
                ) {
                    0
                } else {
                    let mut epq: pg_sys::EPQState = std::mem::zeroed();
                    pg_sys::EvalPlanQualInit(
                        &mut epq,
                        estate,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        -1,
                    );
                    if let Op::Update(_) = op {
                        pg_sys::slot_getallattrs(found);
                        let new = pg_sys::ExecInitExtraTupleSlot(estate, desc, virt);
                        pg_sys::ExecClearTuple(new);
                        std::ptr::copy_nonoverlapping(
                            (*found).tts_values,
                            (*new).tts_values,
                            natts,
                        );
                        std::ptr::copy_nonoverlapping(
                            (*found).tts_isnull,
                            (*new).tts_isnull,
                            natts,
                        );
                        set(new, cols);
                        pg_sys::ExecStoreVirtualTuple(new);
                        epq.origslot = new;
                        pg_sys::ExecSimpleRelationUpdate(rri, estate, &mut epq, found, new);
                    } else {
                        pg_sys::ExecSimpleRelationDelete(rri, estate, &mut epq, found);
                    }
                    pg_sys::EvalPlanQualEnd(&mut epq);
                    1
                }
            }
        };

        pg_sys::ExecCloseIndices(rri);
        pg_sys::AfterTriggerEndQuery(estate);
        pg_sys::PopActiveSnapshot();
        pg_sys::ExecResetTupleTable((*estate).es_tupleTable, false);
        drop(back);
        pg_sys::FreeExecutorState(estate);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        // the next change (or statement) of the batch sees this one
        pg_sys::CommandCounterIncrement();
        done
    }
}

/// `slot` holds exactly `values` (every other column NULL).
unsafe fn fill(slot: *mut pg_sys::TupleTableSlot, natts: usize, values: &[Value]) {
    // SAFETY: a virtual slot of the table's row type, `natts` wide.
    unsafe {
        pg_sys::ExecClearTuple(slot);
        std::slice::from_raw_parts_mut((*slot).tts_isnull, natts).fill(true);
        set(slot, values);
        pg_sys::ExecStoreVirtualTuple(slot);
    }
}

unsafe fn set(slot: *mut pg_sys::TupleTableSlot, values: &[Value]) {
    // SAFETY: attnums are within the row type (the caller's promise).
    unsafe {
        for v in values {
            let i = v.att as usize - 1;
            *(*slot).tts_values.add(i) = v.datum;
            *(*slot).tts_isnull.add(i) = v.null;
        }
    }
}
