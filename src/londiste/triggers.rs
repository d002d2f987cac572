//! Capture trigger DDL: creating the pgq triggers of a registered table
//! (create_trigger, with SKIP and deny handling) and dropping them again
//! (drop_table_triggers, and the table_info trigger that calls it on delete).

use super::*;

/// Drop every pgq capture trigger of `queue` from the table registered as `table`.
pub(super) fn drop_table_triggers_impl(queue: &str, table: &str) {
    let fq = lg::make_fqname(table);
    let Some(dest) = read_val(
        "select coalesce(dest_table, table_name) from londiste.table_info where queue_name = $1 and table_name = $2",
        &[Some(queue), Some(&fq)],
    ) else {
        return;
    };
    let Some(oid) = find_rel_oid(&dest, "r") else {
        return;
    };
    let trigs = read_rows(
        "select t.tgname::text, encode(t.tgargs, 'hex') from pg_catalog.pg_trigger t \
           join pg_catalog.pg_proc p on p.oid = t.tgfoid \
           join pg_catalog.pg_namespace n on n.oid = p.pronamespace \
          where t.tgrelid = $1::oid and not t.tgisinternal and n.nspname = 'pgq' \
            and p.proname in ('sqltriga', 'logutriga', 'jsontriga')",
        &[Some(&oid)],
    );
    for t in trigs {
        let args = lg::decode_tgargs(&lg::hex_decode(t[1].as_deref().unwrap_or("")));
        if args.first().map(String::as_str) == Some(queue) {
            let name = t[0].clone().unwrap_or_default();
            exec_dyn(
                &format!("drop trigger {} on {}", quote_ident(&name), quote_fq(&dest)),
                &[],
            );
        }
    }
}

#[pg_extern(sql = false)]
fn lnd_drop_table_triggers(i_queue_name: &str, i_table_name: &str) {
    drop_table_triggers_impl(i_queue_name, i_table_name)
}

#[pg_trigger(sql = false)]
fn lnd_table_info_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let old = trigger.old();
    if let Some(old) = &old {
        let qn: Option<String> = old.get_by_name("queue_name").unwrap_or(None);
        let tn: Option<String> = old.get_by_name("table_name").unwrap_or(None);
        if let (Some(qn), Some(tn)) = (qn, tn) {
            drop_table_triggers_impl(&qn, &tn);
        }
    }
    Ok(old)
}

pub(super) fn create_trigger_impl(
    queue: &str,
    table: &str,
    trg_args: &[String],
    dest: Option<&str>,
    node_type: Option<NodeType>,
) -> Ret {
    let dest_name = dest.unwrap_or(table);
    let req = lg::TriggerRequest::parse(trg_args, table, dest_name);
    if req.no_triggers {
        return ret(201, "Trigger not created");
    }
    let mut deny = false;
    if node_type == Some(NodeType::Leaf) {
        let have = truth(&read_val(
            "select exists (select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace \
              where n.nspname = 'pgq' and p.proname in ('sqltriga', 'logutriga'))::text",
            &[],
        ));
        if !have {
            return ret(201, "Trigger not created");
        }
        deny = true;
    }
    let Some(dest) = dest else {
        crate::errors::raise_code(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "query string argument of EXECUTE is null",
        )
    };
    let Some(oid) = find_rel_oid(dest, "r") else {
        crate::errors::raise_code(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation \"{}\" does not exist", quote_fq(dest)),
        )
    };
    let qdest = quote_fq(dest);
    let names = lg::queue_trigger_names(queue);
    let base = names.main;
    let skip_name = names.skip;
    // other SKIP triggers on the table (ours of this queue are replaced below)
    let skips = read_rows(
        "select tgname::text from pg_catalog.pg_trigger \
          where tgrelid = $1::oid and not tgisinternal and tgname not in ($2, $3) \
            and position('\\x00534b495000'::bytea in '\\x00'::bytea || tgargs) > 0",
        &[Some(&oid), Some(&base), Some(&skip_name)],
    );
    let mut args: Vec<String> = vec![queue.to_string()];
    args.extend(req.args.iter().cloned());
    if deny {
        args.push("deny".into());
    }
    let mut name = base.clone();
    match lg::skip_plan(req.before, req.skip, skips.len() as i64) {
        lg::SkipPlan::Fail(code, note) => return ret(code, note),
        lg::SkipPlan::Normal => {}
        lg::SkipPlan::OwnSkip => {
            name = skip_name.clone();
            args.push("SKIP".into());
        }
        lg::SkipPlan::RenameOther => {
            let other = skips[0][0].clone().unwrap_or_default();
            if !other.starts_with("zzz_") {
                exec_dyn(
                    &format!(
                        "alter trigger {} on {} rename to {}",
                        quote_ident(&other),
                        qdest,
                        quote_ident(&lg::fit_ident(&format!("zzz_{other}")))
                    ),
                    &[],
                );
            }
        }
    }
    let func = req.func.sql_name();
    // the other spelling of our own trigger goes away
    for n in [&base, &skip_name] {
        let exists = truth(&read_val(
            "select exists (select 1 from pg_catalog.pg_trigger where tgrelid = $1::oid and tgname = $2)::text",
            &[Some(&oid), Some(n)],
        ));
        if *n != name && exists {
            exec_dyn(
                &format!("drop trigger {} on {}", quote_ident(n), qdest),
                &[],
            );
        }
    }
    let existing = read_row(
        "select encode(t.tgargs, 'hex'), t.tgtype::text, t.tgfoid::regproc::text from pg_catalog.pg_trigger t \
          where t.tgrelid = $1::oid and t.tgname = $2",
        &[Some(&oid), Some(&name)],
    );
    let want_type = req.tgtype().to_string();
    let mut create = true;
    if let Some(e) = existing {
        let same = lg::hex_decode(e[0].as_deref().unwrap_or("")) == lg::encode_tgargs(&args)
            && e[1].as_deref() == Some(want_type.as_str())
            && e[2].as_deref() == Some(func);
        if same {
            create = false;
        } else {
            exec_dyn(
                &format!("drop trigger {} on {}", quote_ident(&name), qdest),
                &[],
            );
        }
    }
    if create {
        let arglist: Vec<String> = args.iter().map(|a| quote_literal(a)).collect();
        exec_dyn(
            &format!(
                "create trigger {} {} {} on {} for each row execute procedure {}({})",
                quote_ident(&name),
                if req.before { "before" } else { "after" },
                req.events_sql(),
                qdest,
                func,
                arglist.join(", ")
            ),
            &[],
        );
    }
    let trunc = names.truncate;
    let has_trunc = truth(&read_val(
        "select exists (select 1 from pg_catalog.pg_trigger where tgrelid = $1::oid and tgname = $2)::text",
        &[Some(&oid), Some(&trunc)],
    ));
    if !has_trunc {
        let mut targs = vec![quote_literal(queue)];
        if deny {
            targs.push(quote_literal("deny"));
        }
        exec_dyn(
            &format!(
                "create trigger {} after truncate on {} for each statement execute procedure pgq.sqltriga({})",
                quote_ident(&trunc),
                qdest,
                targs.join(", ")
            ),
            &[],
        );
    }
    ret(200, "OK")
}

#[pg_extern(sql = false)]
fn lnd_create_trigger(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_trg_args: Option<Vec<Option<String>>>,
    i_dest_table: Option<&str>,
    i_node_type: Option<&str>,
) -> Rec {
    let r = create_trigger_impl(
        i_queue_name.unwrap_or_default(),
        i_table_name.unwrap_or_default(),
        &text_array(i_trg_args),
        i_dest_table,
        i_node_type.and_then(NodeType::parse),
    );
    from_ret(&r).col(None::<String>)
}
