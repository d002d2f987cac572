//! EXECUTE bookkeeping: `londiste.applied_execute`, so a script runs once per queue,
//! and its event to the subscribers.

use super::*;

fn execute_start_impl(
    queue: Option<&str>,
    file: Option<&str>,
    sql: Option<&str>,
    expect_root: Option<bool>,
    attrs: Option<&str>,
) -> Rec {
    let root = is_root_node(queue);
    if expect_root == Some(true) && !root {
        return Rec::ret(
            401,
            format!("Node is not root node: {}", queue.unwrap_or_default()),
        );
    }
    let ins = write_rows(
        "insert into londiste.applied_execute (queue_name, execute_file, execute_sql, execute_attrs) \
         values ($1, $2, $3, $4) on conflict do nothing returning '1'::text",
        &[queue, file, sql, attrs],
    );
    let f = file.unwrap_or_default();
    if ins.is_empty() {
        return Rec::ret(201, format!("EXECUTE: \"{f}\" already applied, skipping"));
    }
    Rec::ret(200, format!("Executing: {f}"))
}

#[pg_extern(sql = false)]
fn lnd_execute_start4(
    i_queue_name: Option<&str>,
    i_file_name: Option<&str>,
    i_sql: Option<&str>,
    i_expect_root: Option<bool>,
) -> Rec {
    execute_start_impl(i_queue_name, i_file_name, i_sql, i_expect_root, None)
}

#[pg_extern(sql = false)]
fn lnd_execute_start5(
    i_queue_name: Option<&str>,
    i_file_name: Option<&str>,
    i_sql: Option<&str>,
    i_expect_root: Option<bool>,
    i_attrs: Option<&str>,
) -> Rec {
    execute_start_impl(i_queue_name, i_file_name, i_sql, i_expect_root, i_attrs)
}

#[pg_extern(sql = false)]
fn lnd_execute_finish(i_queue_name: &str, i_file_name: &str) -> Rec {
    let Some(r) = read_row(
        "select execute_sql, execute_attrs from londiste.applied_execute where execute_file = $1",
        &[Some(i_file_name)],
    ) else {
        return Rec::ret(404, "execute_file called without execute_start");
    };
    if is_root_node(Some(i_queue_name)) {
        insert_event(
            i_queue_name,
            "EXECUTE",
            r[0].as_deref(),
            Some(i_file_name),
            r[1].as_deref(),
        );
    }
    Rec::ret(200, format!("Execute finished: {i_file_name}"))
}
