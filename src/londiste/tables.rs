//! The table registry (`londiste.table_info`) and copy coordination: listing, adding
//! and removing tables locally and globally, table state, attributes and handlers,
//! and the coordination of part queues copying into one merged table.

use super::*;

type TableRow = (
    name!(table_name, Option<String>),
    name!(local, Option<bool>),
    name!(merge_state, Option<String>),
    name!(custom_snapshot, Option<String>),
    name!(table_attrs, Option<String>),
    name!(dropped_ddl, Option<String>),
    name!(copy_role, Option<String>),
    name!(copy_pos, Option<i32>),
    name!(dest_table, Option<String>),
);

#[pg_extern(sql = false)]
fn lnd_get_table_list(
    i_queue_name: &str,
) -> TableIterator<
    'static,
    (
        name!(table_name, Option<String>),
        name!(local, Option<bool>),
        name!(merge_state, Option<String>),
        name!(custom_snapshot, Option<String>),
        name!(table_attrs, Option<String>),
        name!(dropped_ddl, Option<String>),
        name!(copy_role, Option<String>),
        name!(copy_pos, Option<i32>),
        name!(dest_table, Option<String>),
    ),
> {
    let rows = read_rows(
        "select table_name, local::text, merge_state, custom_snapshot, table_attrs, dropped_ddl, dest_table \
           from londiste.table_info where queue_name = $1 order by nr, table_name",
        &[Some(i_queue_name)],
    );
    let out: Vec<TableRow> = rows
        .into_iter()
        .map(|r| {
            // a state that does not parse is not copying
            let copying = matches!(
                TableState::parse(r[2].as_deref()),
                Ok(TableState::InCopy | TableState::CatchingUp)
            );
            let (role, pos) = if copying {
                coordinate_copy(i_queue_name, r[0].as_deref().unwrap_or(""))
            } else {
                (None, 0)
            };
            (
                r[0].clone(),
                Some(truth(&r[1])),
                r[2].clone(),
                r[3].clone(),
                r[4].clone(),
                r[5].clone(),
                role,
                Some(pos),
                r[6].clone(),
            )
        })
        .collect();
    TableIterator::new(out)
}

/// Copy coordination between part queues feeding one destination table on a merge
/// node: (copy_role, copy_pos).
fn coordinate_copy(queue: &str, table: &str) -> (Option<String>, i32) {
    let Some(r) = read_row(
        "with me as (select t.merge_state, t.dropped_ddl, coalesce(t.dest_table, t.table_name) as dest, n.combined_queue \
                       from londiste.table_info t join pgq_node.node_info n on n.queue_name = t.queue_name \
                      where t.queue_name = $1 and t.table_name = $2), \
              sib as (select t2.* from me, londiste.table_info t2 \
                        join pgq_node.node_info n2 on n2.queue_name = t2.queue_name \
                       where n2.combined_queue is not distinct from me.combined_queue \
                         and coalesce(t2.dest_table, t2.table_name) = me.dest \
                         and (t2.merge_state is null or t2.merge_state <> 'ok')) \
         select me.merge_state, (me.dropped_ddl is not null)::text, me.combined_queue, \
                (select min(queue_name) from sib where local), \
                (select min(queue_name) from sib where local and dropped_ddl is not null), \
                (select count(*) from sib where local)::text, \
                (select count(*) from sib where local and merge_state <> 'in-copy')::text, \
                (select count(*) from sib where queue_name < $1 and me.merge_state = 'in-copy' \
                                            and merge_state = 'in-copy')::text \
           from me",
        &[Some(queue), Some(table)],
    ) else {
        return (None, 0);
    };
    let state = TableState::parse(r[0].as_deref()).ok();
    let has_ddl = truth(&r[1]);
    let combined = r[2].clone();
    let part1 = r[3].clone();
    let part_ddl = r[4].clone();
    let n_parts: i64 = r[5].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
    let n_done: i64 = r[6].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
    let pos: i32 = r[7].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
    if combined.is_none() || n_parts <= 1 {
        return (None, pos);
    }
    let lead = part_ddl.clone().or(part1);
    let is_lead = lead.as_deref() == Some(queue);
    let role = match (state, is_lead) {
        (Some(TableState::InCopy), true) => {
            if !has_ddl && n_done > 0 {
                Some("wait-replay")
            } else {
                Some("lead")
            }
        }
        (Some(TableState::CatchingUp), true) => {
            if has_ddl && n_done < n_parts {
                Some("wait-replay")
            } else {
                None
            }
        }
        (Some(TableState::InCopy), false) => {
            if part_ddl.is_some() || n_done > 0 {
                Some("wait-replay")
            } else {
                Some("wait-copy")
            }
        }
        (Some(TableState::CatchingUp), false) => {
            if part_ddl.is_some() {
                Some("wait-replay")
            } else {
                None
            }
        }
        _ => None,
    };
    (role.map(String::from), pos)
}

#[pg_extern(sql = false)]
fn lnd_coordinate_copy(i_queue_name: &str, i_table_name: &str) -> Rec {
    let (role, pos) = coordinate_copy(i_queue_name, i_table_name);
    Rec::new().col(role).col(Some(pos))
}

#[pg_extern(sql = false)]
fn lnd_local_show_missing(
    i_queue_name: &str,
) -> TableIterator<
    'static,
    (
        name!(obj_kind, Option<String>),
        name!(obj_name, Option<String>),
    ),
> {
    let rows = if is_root_node(Some(i_queue_name)) {
        read_rows(
            "select c.relkind::text, n.nspname || '.' || c.relname \
               from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
              where c.relkind in ('r', 'S') \
                and n.nspname not in ('pgq', 'pgq_ext', 'pgq_node', 'londiste', 'pg_catalog', 'information_schema') \
                and n.nspname !~ '^pg_(toast|temp)' \
                and not exists (select 1 from londiste.table_info t \
                                 where t.queue_name = $1 and t.local \
                                   and coalesce(t.dest_table, t.table_name) = n.nspname || '.' || c.relname) \
              order by 1, 2",
            &[Some(i_queue_name)],
        )
    } else {
        read_rows(
            "select * from (select 'S'::text, seq_name from londiste.seq_info where queue_name = $1 and not local \
                            union all \
                            select 'r'::text, table_name from londiste.table_info where queue_name = $1 and not local) x \
              order by 1, 2",
            &[Some(i_queue_name)],
        )
    };
    TableIterator::new(
        rows.into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect::<Vec<_>>(),
    )
}

fn global_add_table_impl(queue: &str, table: &str) -> Ret {
    let fq = lg::make_fqname(table);
    let Some(node) = load_node(Some(queue), false) else {
        return ret(400, format!("No such queue: {queue}"));
    };
    let inserted = write_rows(
        "insert into londiste.table_info (queue_name, table_name) values ($1, $2) \
         on conflict (queue_name, table_name) do nothing returning '1'::text",
        &[Some(queue), Some(&fq)],
    );
    if inserted.is_empty() {
        return ret(200, format!("Table already added: {fq}"));
    }
    if let Some(cq) = node.combined_queue.as_deref() {
        global_add_table_impl(cq, &fq);
    }
    ret(200, format!("Table added: {table}"))
}

#[pg_extern(sql = false)]
fn lnd_global_add_table(i_queue_name: &str, i_table_name: &str) -> Rec {
    from_ret(&global_add_table_impl(i_queue_name, i_table_name))
}

#[pg_extern(sql = false)]
fn lnd_global_remove_table(i_queue_name: &str, i_table_name: &str) -> Rec {
    pinned(|caller| global_remove_table_impl(i_queue_name, i_table_name, caller))
}

fn global_remove_table_impl(i_queue_name: &str, i_table_name: &str, caller_path: &str) -> Rec {
    let fq = lg::make_fqname(i_table_name);
    if !node_is_root(i_queue_name) {
        local_remove_table_impl(i_queue_name, i_table_name, caller_path);
    }
    let del = write_rows(
        "delete from londiste.table_info where queue_name = $1 and table_name = $2 returning '1'::text",
        &[Some(i_queue_name), Some(&fq)],
    );
    if del.is_empty() {
        Rec::ret(400, format!("Table not found: {fq}"))
    } else {
        Rec::ret(200, format!("Table removed: {i_table_name}"))
    }
}

fn local_add_table_impl(
    queue: Option<&str>,
    table: Option<&str>,
    trg_args: Vec<String>,
    attrs: Option<String>,
    dest: Option<&str>,
) -> Ret {
    let fq = lg::make_fqname(table.unwrap_or_default());
    let dest_fq = match dest {
        Some(d) => lg::make_fqname(d),
        None => fq.clone(),
    };
    let desc = if dest_fq == fq {
        fq.clone()
    } else {
        format!("{fq}({dest_fq})")
    };
    let flags = lg::AddTableFlags::parse(&trg_args);
    let mut attrs = attrs;
    if flags.skip_truncate {
        attrs = Some(lg::attrs_with_skip_truncate(attrs.as_deref()));
    }
    if flags.merge_all && flags.no_merge {
        return ret(405, "Cannot use merge-all and no-merge together");
    }
    if !flags.virtual_table {
        let Some(oid) = find_rel_oid(&dest_fq, "r") else {
            return ret(404, format!("Table does not exist: {desc}"));
        };
        let has_pk = truth(&read_val(
            "select exists (select 1 from pg_catalog.pg_index where indrelid = $1::oid and indisprimary)::text",
            &[Some(&oid)],
        ));
        if !has_pk {
            // a sibling part queue may have dropped the key while copying
            let dropped = truth(&read_val(
                "select exists (select 1 from londiste.table_info where coalesce(dest_table, table_name) = $1 \
                   and queue_name is distinct from $2 and dropped_ddl is not null)::text",
                &[Some(&dest_fq), queue],
            ));
            if !dropped {
                return ret(400, format!("Primary key missing on table: {desc}"));
            }
        }
    }
    let Some(node) = node_info(queue) else {
        return ret(400, format!("No such set: {}", queue.unwrap_or_default()));
    };
    let queue = queue.unwrap_or_default();
    let node_type = node.node_type;
    let load = || {
        read_row(
            "select local::text, table_attrs from londiste.table_info where queue_name = $1 and table_name = $2",
            &[Some(queue), Some(&fq)],
        )
    };
    let row = match load() {
        Some(r) => r,
        None => {
            if node_type != Some(NodeType::Root) {
                return ret(404, format!("Table not available on queue: {desc}"));
            }
            let r = global_add_table_impl(queue, &fq);
            if r.0 != 200 {
                return r;
            }
            load().unwrap_or_else(|| raise(format!("lost table: {fq}")))
        }
    };
    if truth(&row[0]) {
        if row[1] != attrs {
            return ret(
                410,
                format!(
                    "Table {desc} already added, but with different args: {}",
                    row[1].clone().unwrap_or_default()
                ),
            );
        }
        return ret(200, format!("Table already added: {desc}"));
    }
    // a root owns the data, a merge leaf gets it through its combined branch, and
    // expect_sync means the table is known to be in sync already: no copy needed
    let in_sync = node_type == Some(NodeType::Root)
        || (node_type == Some(NodeType::Leaf) && node.combined_type == Some(NodeType::Branch))
        || flags.expect_sync;
    let new_state = if in_sync {
        TableState::Ok
    } else {
        TableState::New
    };
    let new_state_db = new_state.to_db();
    let dest_store = if dest_fq == fq {
        None
    } else {
        Some(dest_fq.as_str())
    };
    exec(
        "update londiste.table_info set local = true, merge_state = $3, \
                table_attrs = coalesce($4, table_attrs), dest_table = $5 \
          where queue_name = $1 and table_name = $2",
        &[
            Some(queue),
            Some(&fq),
            new_state_db.as_deref(),
            attrs.as_deref(),
            dest_store,
        ],
    );
    if node_type == Some(NodeType::Root) {
        root_notify_change_impl(Some(queue), Some("londiste.add-table"), Some(&fq));
    }
    if node_type == Some(NodeType::Leaf) && !flags.no_merge {
        let sibs = read_rows(
            "select t2.queue_name, t2.table_name, t2.local::text \
               from londiste.table_info t \
               join pgq_node.node_info n on n.queue_name = t.queue_name \
               join pgq_node.node_info n2 on n2.combined_queue is not distinct from n.combined_queue \
               join londiste.table_info t2 on t2.queue_name = n2.queue_name \
                and coalesce(t2.dest_table, t2.table_name) = coalesce(t.dest_table, t.table_name) \
              where t.queue_name = $1 and t.table_name = $2 and t2.queue_name <> $1",
            &[Some(queue), Some(&fq)],
        );
        for s in sibs {
            let not_ok = new_state != TableState::Ok;
            if truth(&s[2]) && not_ok {
                return ret(
                    405,
                    format!(
                        "Found local table {desc} in queue {}, use remove-table first to remove all previous table subscriptions",
                        s[0].clone().unwrap_or_default()
                    ),
                );
            }
            if !flags.merge_all && not_ok {
                return ret(
                    405,
                    format!("Found multiple sources for table {desc}, use merge-all or no-merge to continue"),
                );
            }
            exec(
                "update londiste.table_info set local = true, merge_state = $3, table_attrs = coalesce($4, table_attrs) \
                  where queue_name = $1 and table_name = $2",
                &[s[0].as_deref(), s[1].as_deref(), new_state_db.as_deref(), attrs.as_deref()],
            );
        }
        // the combined queue's node on this database needs the table too
        if let Some(cq) = node.combined_queue.as_deref() {
            let has = truth(&read_val(
                "select exists (select 1 from londiste.table_info where queue_name = $1 and table_name = $2 and local)::text",
                &[Some(cq), Some(&fq)],
            ));
            if !has {
                let r = local_add_table_impl(
                    Some(cq),
                    Some(&fq),
                    trg_args.clone(),
                    attrs.clone(),
                    Some(&dest_fq),
                );
                if r.0 >= 300 {
                    return r;
                }
            }
        }
    }
    let t = create_trigger_impl(queue, &fq, &trg_args, Some(&dest_fq), node_type);
    if t.0 > 299 {
        return ret(
            t.0,
            format!(
                "Trigger creation failed for table {desc}: {}",
                t.1.unwrap_or_default()
            ),
        );
    }
    if t.0 == 201 {
        return ret(200, format!("Table added with no triggers: {desc}"));
    }
    ret(200, format!("Table added: {desc}"))
}

#[pg_extern(sql = false)]
fn lnd_local_add_table2(i_queue_name: &str, i_table_name: &str) -> Rec {
    from_ret(&local_add_table_impl(
        Some(i_queue_name),
        Some(i_table_name),
        vec![],
        None,
        None,
    ))
}

#[pg_extern(sql = false)]
fn lnd_local_add_table3(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_trg_args: Option<Vec<Option<String>>>,
) -> Rec {
    from_ret(&local_add_table_impl(
        i_queue_name,
        i_table_name,
        text_array(i_trg_args),
        None,
        None,
    ))
}

#[pg_extern(sql = false)]
fn lnd_local_add_table4(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_trg_args: Option<Vec<Option<String>>>,
    i_table_attrs: Option<&str>,
) -> Rec {
    from_ret(&local_add_table_impl(
        i_queue_name,
        i_table_name,
        text_array(i_trg_args),
        i_table_attrs.map(String::from),
        None,
    ))
}

#[pg_extern(sql = false)]
fn lnd_local_add_table5(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_trg_args: Option<Vec<Option<String>>>,
    i_table_attrs: Option<&str>,
    i_dest_table: Option<&str>,
) -> Rec {
    from_ret(&local_add_table_impl(
        i_queue_name,
        i_table_name,
        text_array(i_trg_args),
        i_table_attrs.map(String::from),
        i_dest_table,
    ))
}

/// `caller_path`: the search_path the caller's stored `dropped_ddl` runs with.
fn local_remove_table_impl(queue: &str, table: &str, caller_path: &str) -> Ret {
    let fq = lg::make_fqname(table);
    let Some(row) = read_row(
        "select local::text, dropped_ddl, coalesce(dest_table, table_name) from londiste.table_info \
          where queue_name = $1 and table_name = $2",
        &[Some(queue), Some(&fq)],
    ) else {
        return ret(400, format!("Table not found: {fq}"));
    };
    let root = node_is_root(queue);
    if truth(&row[0]) {
        drop_table_triggers_impl(queue, &fq);
        let dest = row[2].clone().unwrap_or_default();
        if let Some(ddl) = row[1].as_deref() {
            exec_dyn(&format!("truncate only {}", quote_fq(&dest)), &[]);
            // the stored DDL is the caller's (the londiste CLI's): it runs as written,
            // with the caller's search_path, as in the original
            crate::db::with_search_path(caller_path, || exec_dyn(ddl, &[]));
        }
        exec(
            "update londiste.table_info set local = false, custom_snapshot = null, table_attrs = null, \
                    dropped_ddl = null, merge_state = null, dest_table = null \
              where queue_name = $1 and table_name = $2",
            &[Some(queue), Some(&fq)],
        );
        // serial sequences of the table stop being replicated too
        if let Some(oid) = find_rel_oid(&dest, "r") {
            let seqs = read_rows(
                "select s from (select pg_catalog.pg_get_serial_sequence($2, a.attname) as s \
                                  from pg_catalog.pg_attribute a \
                                  join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum \
                                 where a.attrelid = $1::oid and a.attnum > 0 and not a.attisdropped \
                                   and a.atttypid in ('int4'::regtype, 'int8'::regtype)) x \
                  where s is not null order by 1",
                &[Some(&oid), Some(&quote_fq(&dest))],
            );
            for s in seqs.into_iter().filter_map(|r| r[0].clone()) {
                local_remove_seq_impl(queue, &s);
            }
        }
    } else if !root {
        return ret(400, format!("Table not registered locally: {fq}"));
    }
    if root {
        exec(
            "delete from londiste.table_info where queue_name = $1 and table_name = $2",
            &[Some(queue), Some(&fq)],
        );
        root_notify_change_impl(Some(queue), Some("londiste.remove-table"), Some(&fq));
    }
    ret(200, format!("Table removed: {fq}"))
}

#[pg_extern(sql = false)]
fn lnd_local_remove_table(i_queue_name: &str, i_table_name: &str) -> Rec {
    pinned(|caller| from_ret(&local_remove_table_impl(i_queue_name, i_table_name, caller)))
}

#[pg_extern(sql = false)]
fn lnd_local_set_table_state(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_snapshot: Option<&str>,
    i_merge_state: Option<&str>,
) -> Rec {
    let fq = lg::make_fqname(i_table_name.unwrap_or_default());
    let upd = write_rows(
        "update londiste.table_info set custom_snapshot = $3, merge_state = $4 \
          where queue_name = $1 and table_name = $2 and local returning '1'::text",
        &[i_queue_name, Some(&fq), i_snapshot, i_merge_state],
    );
    if upd.is_empty() {
        return Rec::ret(404, format!("No such table: {fq}"));
    }
    Rec::ret(200, lg::state_note(&fq, i_merge_state))
}

fn set_table_attrs_impl(queue: Option<&str>, table: Option<&str>, attrs: Option<&str>) -> Ret {
    let upd = write_rows(
        "update londiste.table_info set table_attrs = $3 \
          where queue_name = $1 and table_name = $2 and local returning '1'::text",
        &[queue, table, attrs],
    );
    let t = table.unwrap_or_default();
    if upd.is_empty() {
        ret(404, format!("no such local table: {t}"))
    } else {
        ret(200, format!("{t}: Table attributes stored"))
    }
}

#[pg_extern(sql = false)]
fn lnd_local_set_table_attrs(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_table_attrs: Option<&str>,
) -> Rec {
    from_ret(&set_table_attrs_impl(
        i_queue_name,
        i_table_name,
        i_table_attrs,
    ))
}

#[pg_extern(sql = false)]
fn lnd_local_set_table_struct(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_dropped_ddl: Option<&str>,
) -> Rec {
    let upd = write_rows(
        "update londiste.table_info set dropped_ddl = $3 \
          where queue_name = $1 and table_name = $2 and local returning '1'::text",
        &[i_queue_name, i_table_name, i_dropped_ddl],
    );
    if upd.is_empty() {
        Rec::ret(
            404,
            format!("no such local table: {}", i_table_name.unwrap_or_default()),
        )
    } else {
        Rec::ret(200, "Table struct stored")
    }
}

#[pg_extern(sql = false)]
fn lnd_local_change_handler(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_trg_args: Option<Vec<Option<String>>>,
    i_table_attrs: Option<&str>,
) -> Rec {
    let fq = lg::make_fqname(i_table_name.unwrap_or_default());
    let Some(node) = node_info(i_queue_name) else {
        return Rec::ret(
            400,
            format!("No such set: {}", i_queue_name.unwrap_or_default()),
        );
    };
    let queue = i_queue_name.unwrap_or_default();
    let r = set_table_attrs_impl(Some(queue), Some(&fq), i_table_attrs);
    if r.0 != 200 {
        return from_ret(&r);
    }
    let dest = read_val(
        "select coalesce(dest_table, table_name) from londiste.table_info where queue_name = $1 and table_name = $2",
        &[Some(queue), Some(&fq)],
    );
    drop_table_triggers_impl(queue, &fq);
    let t = create_trigger_impl(
        queue,
        &fq,
        &text_array(i_trg_args),
        dest.as_deref(),
        node.node_type,
    );
    if t.0 > 299 {
        return Rec::ret(
            t.0,
            format!(
                "Trigger creation failed for table {fq}: {}",
                t.1.unwrap_or_default()
            ),
        );
    }
    if t.0 == 201 {
        return Rec::ret(200, format!("Table handler updated with no triggers: {fq}"));
    }
    Rec::ret(200, format!("Handler changed for table: {fq}"))
}
