//! The sequence registry (`londiste.seq_info`) and publishing sequence values from
//! the root.

use super::*;

#[pg_extern(sql = false)]
fn lnd_get_seq_list(
    i_queue_name: &str,
) -> TableIterator<
    'static,
    (
        name!(seq_name, Option<String>),
        name!(last_value, Option<i64>),
        name!(local, Option<bool>),
    ),
> {
    let rows = read_rows(
        "select seq_name, last_value::text, local::text from londiste.seq_info \
          where queue_name = $1 order by nr, seq_name",
        &[Some(i_queue_name)],
    );
    TableIterator::new(
        rows.into_iter()
            .map(|r| {
                (
                    r[0].clone(),
                    r[1].as_deref().and_then(|s| s.parse().ok()),
                    Some(truth(&r[2])),
                )
            })
            .collect::<Vec<_>>(),
    )
}

fn root_check_seqs_impl(queue: Option<&str>, buffer: Option<i64>) -> Ret {
    let buffer = lg::seq_buffer(buffer);
    let Some(node) = load_node(queue, true) else {
        return Ret(404, queue.map(|q| format!("Queue not found: {q}")));
    };
    if node.kind() != Some(NodeType::Root) {
        return ret(402, "Not a root node");
    }
    let queue = queue.unwrap_or_default();
    let seqs = read_rows(
        "select seq_name, last_value::pg_catalog.text from londiste.seq_info \
          where queue_name operator(pg_catalog.=) $1 and local order by nr",
        &[Some(queue)],
    );
    for s in seqs {
        let name = s[0].clone().unwrap_or_default();
        let published: i64 = s[1].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        let real: i64 = write_val("select pgq.seq_getval($1)::pg_catalog.text", &[Some(&name)])
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if let Some(new) = lg::seq_publish(real, published, buffer) {
            let nv = new.to_string();
            insert_event(queue, "londiste.update-seq", Some(&nv), Some(&name), None);
            exec(
                "update londiste.seq_info set last_value = $3::pg_catalog.int8 \
                  where queue_name operator(pg_catalog.=) $1 and seq_name operator(pg_catalog.=) $2",
                &[Some(queue), Some(&name), Some(&nv)],
            );
        }
    }
    ret(100, "Sequences updated")
}

#[pg_extern(sql = false)]
fn lnd_root_check_seqs1(i_queue_name: Option<&str>) -> Rec {
    from_ret(&root_check_seqs_impl(i_queue_name, None))
}

#[pg_extern(sql = false)]
fn lnd_root_check_seqs2(i_queue_name: Option<&str>, i_buffer: Option<i64>) -> Rec {
    from_ret(&root_check_seqs_impl(i_queue_name, i_buffer))
}

#[pg_extern(sql = false)]
fn lnd_local_add_seq(i_queue_name: Option<&str>, i_seq_name: Option<&str>) -> Rec {
    let fq = lg::make_fqname(i_seq_name.unwrap_or_default());
    if find_rel_oid(&fq, "S").is_none() {
        return Rec::ret(400, format!("Sequence not found: {fq}"));
    }
    let root = is_root_node(i_queue_name);
    let queue = i_queue_name.unwrap_or_default();
    let row = read_row(
        "select local::text, last_value::text from londiste.seq_info where queue_name = $1 and seq_name = $2",
        &[Some(queue), Some(&fq)],
    );
    if root {
        match row {
            Some(r) if truth(&r[0]) => return Rec::ret(201, format!("Sequence already added: {fq}")),
            Some(_) => exec(
                "update londiste.seq_info set local = true where queue_name = $1 and seq_name = $2",
                &[Some(queue), Some(&fq)],
            ),
            None => exec(
                "insert into londiste.seq_info (queue_name, seq_name, local, last_value) values ($1, $2, true, 0)",
                &[Some(queue), Some(&fq)],
            ),
        }
        root_check_seqs_impl(Some(queue), None);
    } else {
        let Some(r) = row else {
            return Rec::ret(404, format!("Unknown sequence: {fq}"));
        };
        if truth(&r[0]) {
            return Rec::ret(201, format!("Sequence already added: {fq}"));
        }
        exec(
            "update londiste.seq_info set local = true where queue_name = $1 and seq_name = $2",
            &[Some(queue), Some(&fq)],
        );
        exec(
            "select pgq.seq_setval($1, $2::int8)",
            &[Some(&fq), r[1].as_deref()],
        );
    }
    Rec::ret(200, format!("Sequence added: {fq}"))
}

fn global_remove_seq_impl(queue: &str, seq: &str) -> Ret {
    let fq = lg::make_fqname(seq);
    let del = write_rows(
        "delete from londiste.seq_info where queue_name = $1 and seq_name = $2 returning '1'::text",
        &[Some(queue), Some(&fq)],
    );
    if del.is_empty() {
        return ret(400, format!("Sequence not found: {fq}"));
    }
    if node_is_root(queue) {
        root_notify_change_impl(Some(queue), Some("londiste.remove-seq"), Some(&fq));
    }
    ret(200, format!("Sequence removed: {fq}"))
}

pub(super) fn local_remove_seq_impl(queue: &str, seq: &str) -> Ret {
    let fq = lg::make_fqname(seq);
    if is_root_node(Some(queue)) {
        return global_remove_seq_impl(queue, &fq);
    }
    let upd = write_rows(
        "update londiste.seq_info set local = false where queue_name = $1 and seq_name = $2 and local returning '1'::text",
        &[Some(queue), Some(&fq)],
    );
    if upd.is_empty() {
        return ret(404, format!("Sequence not found: {fq}"));
    }
    ret(200, format!("Sequence removed: {fq}"))
}

#[pg_extern(sql = false)]
fn lnd_local_remove_seq(i_queue_name: &str, i_seq_name: &str) -> Rec {
    from_ret(&local_remove_seq_impl(i_queue_name, i_seq_name))
}

#[pg_extern(sql = false)]
fn lnd_global_remove_seq(i_queue_name: &str, i_seq_name: &str) -> Rec {
    from_ret(&global_remove_seq_impl(i_queue_name, i_seq_name))
}

#[pg_extern(sql = false)]
fn lnd_global_update_seq(
    i_queue_name: Option<&str>,
    i_seq_name: Option<&str>,
    i_value: Option<i64>,
) -> Rec {
    let Some(node) = load_node(i_queue_name, false) else {
        return Rec::ret(
            404,
            format!("Set not found: {}", i_queue_name.unwrap_or_default()),
        );
    };
    if node.kind() == Some(NodeType::Root) {
        return Rec::ret(402, "Must not run on root node");
    }
    let fq = lg::make_fqname(i_seq_name.unwrap_or_default());
    let v = i_value.map(|v| v.to_string());
    let row = write_row(
        "update londiste.seq_info set last_value = $3::int8 where queue_name = $1 and seq_name = $2 \
         returning local::text",
        &[i_queue_name, Some(&fq), v.as_deref()],
    );
    // a new sequence; another session (the CLI's add-seq beside the replay applying
    // the root's update-seq) may insert it at the same time: then this is its update
    let row = row.or_else(|| {
        write_row(
            "insert into londiste.seq_info (queue_name, seq_name, last_value) values ($1, $2, $3::int8) \
             on conflict (queue_name, seq_name) do update set last_value = excluded.last_value \
             returning local::text",
            &[i_queue_name, Some(&fq), v.as_deref()],
        )
    });
    if row.is_some_and(|r| truth(&r[0])) {
        exec(
            "select pgq.seq_setval($1, $2::int8)",
            &[Some(&fq), v.as_deref()],
        );
    }
    Rec::ret(200, "Sequence updated")
}
