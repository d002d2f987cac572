//! Status as rows (docs/admin.md "Status"): the facts `londiste status` and `members`
//! print, from any node, queryable and joinable.

use super::{arg, col, local_node, members, Peer};
use crate::errors::PgqResult;
use crate::logic::admin::{lag, LagFacts};
use crate::remote::redact;
use pgrx::datum::Interval;
use pgrx::prelude::*;

/// What one member says about itself (None fields: it could not be asked).
#[derive(Debug, Default, Clone)]
struct Seen {
    node_type: Option<String>,
    provider: Option<String>,
    paused: Option<bool>,
    uptodate: Option<bool>,
    last_tick: Option<i64>,
    lag: LagFacts,
    tables_ok: Option<i32>,
    tables_pending: Option<i32>,
    in_server: Option<bool>,
    replay_pid: Option<i32>,
    errors: Vec<String>,
}

fn f64_of(v: Option<&str>) -> Option<f64> {
    v.and_then(|s| s.parse().ok())
}

fn look(p: &mut Peer, queue: &str) -> PgqResult<Seen> {
    let q = [Some(queue)];
    let mut s = Seen::default();
    if let Some(v) = super::node_view(p, queue)? {
        let is_root = v.node_type == "root";
        s.node_type = Some(v.node_type);
        // a root names itself as its provider in get_node_info; it has none
        s.provider = v.provider_node.clone().filter(|_| !is_root);
        s.lag.provider = v.provider_node;
        s.lag.worker = v.worker_name;
        s.paused = Some(v.paused);
        s.uptodate = Some(v.uptodate);
        s.last_tick = v.last_tick;
    }
    for r in p.query(
        "reading the consumers",
        "select consumer_name::text, extract(epoch from current_timestamp - lag)::text \
         from pgq.get_consumer_info($1)",
        &q,
    )? {
        if let (Some(c), Some(t)) = (col(&r, 0), f64_of(col(&r, 1))) {
            s.lag.consumers.push((c.to_string(), t));
        }
    }
    if s.node_type.as_deref() == Some("root") {
        let r = p.row(
            "reading the queue",
            "select extract(epoch from ticker_lag)::text, \
                    extract(epoch from current_timestamp)::text from pgq.get_queue_info($1)",
            &q,
        )?;
        s.lag.queue = f64_of(col(&r, 0)).zip(f64_of(col(&r, 1)));
    }
    for r in p.query(
        "reading the consumer errors",
        "select consumer_name::text, cur_error::text from pgq_node.get_consumer_info($1) \
         where cur_error is not null",
        &q,
    )? {
        s.errors.push(format!(
            "{}: {}",
            col(&r, 0).unwrap_or(""),
            col(&r, 1).unwrap_or("").lines().next().unwrap_or("")
        ));
    }
    let r = p.row(
        "reading the tables",
        "select case when pg_catalog.to_regproc('londiste.get_table_list') is null then null \
         else (select pg_catalog.concat_ws(' ', count(*) filter (where merge_state = 'ok'), \
                   count(*) filter (where merge_state is distinct from 'ok')) \
               from londiste.get_table_list($1) where local) end",
        &q,
    )?;
    if let Some(t) = col(&r, 0) {
        let mut it = t.split(' ').map(|n| n.parse::<i32>().ok());
        s.tables_ok = it.next().flatten();
        s.tables_pending = it.next().flatten();
    }
    let r = p.row(
        "reading the replay setting",
        "select case when pg_catalog.to_regclass('pgq_cascade.node_replay') is null then null \
         else (select in_server::text from pgq_cascade.node_replay where queue_name = $1) end, \
         (select pid::text from pgq.worker_status() w where w.worker = 'replay' \
          and w.object = $1 and w.database = pg_catalog.current_database() limit 1)",
        &q,
    )?;
    s.in_server = col(&r, 0).map(|v| v == "true" || v == "t");
    s.replay_pid = col(&r, 1).and_then(|v| v.parse().ok());
    Ok(s)
}

type NodeRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Interval>,
    Option<i64>,
    Option<bool>,
    Option<bool>,
    Option<bool>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<String>,
);

#[pg_extern(sql = false)]
#[allow(clippy::type_complexity)]
fn pgq_cascade_nodes(
    i_queue_name: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(node_name, Option<String>),
        name!(node_type, Option<String>),
        name!(provider_node, Option<String>),
        name!(lag, Option<Interval>),
        name!(last_tick, Option<i64>),
        name!(paused, Option<bool>),
        name!(uptodate, Option<bool>),
        name!(in_server_replay, Option<bool>),
        name!(replay_pid, Option<i32>),
        name!(tables_ok, Option<i32>),
        name!(tables_pending, Option<i32>),
        name!(error, Option<String>),
    ),
> {
    TableIterator::new(nodes(i_queue_name).unwrap_or_else(|e| e.report()))
}

/// One row per member of the queue, in name order; each member is asked over libpq
/// (this node through SPI). A member that cannot be asked shows the reason in `error`;
/// a dead one shows type `dead`.
fn nodes(queue: Option<&str>) -> PgqResult<Vec<NodeRow>> {
    let queue = arg(queue, "queue name")?;
    let (mut me, view) = local_node(queue)?;
    let known = members(&mut me, queue)?;
    let mut seen = Vec::new();
    for m in known {
        let s = if m.dead {
            Ok(Seen {
                node_type: Some("dead".into()),
                ..Default::default()
            })
        } else if m.name == view.node_name {
            look(&mut me, queue)
        } else {
            Peer::connect(&m.name, &m.location).and_then(|mut p| look(&mut p, queue))
        };
        seen.push((m, s));
    }
    let facts: Vec<(&str, Option<&LagFacts>)> = seen
        .iter()
        .map(|(m, s)| (m.name.as_str(), s.as_ref().ok().map(|s| &s.lag)))
        .collect();
    let mut out = Vec::new();
    for (m, s) in &seen {
        let lag = lag(&m.name, &facts).map(Interval::from_seconds);
        out.push(match s {
            Ok(s) => (
                Some(m.name.clone()),
                s.node_type.clone(),
                s.provider.clone(),
                lag,
                s.last_tick,
                s.paused,
                s.uptodate,
                s.in_server,
                s.replay_pid,
                s.tables_ok,
                s.tables_pending,
                (!s.errors.is_empty()).then(|| s.errors.join("; ")),
            ),
            Err(e) => (
                Some(m.name.clone()),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                Some(format!(
                    "node failure: {}",
                    e.message.lines().next().unwrap_or("")
                )),
            ),
        });
    }
    Ok(out)
}

#[pg_extern(sql = false)]
fn pgq_cascade_members(
    i_queue_name: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(node_name, Option<String>),
        name!(location, Option<String>),
        name!(dead, Option<bool>),
    ),
> {
    let rows = (|| -> PgqResult<_> {
        let queue = arg(i_queue_name, "queue name")?;
        let mut me = Peer::local("local");
        Ok(members(&mut me, queue)?
            .into_iter()
            .map(|m| (Some(m.name), Some(redact(&m.location)), Some(m.dead)))
            .collect::<Vec<_>>())
    })()
    .unwrap_or_else(|e| e.report());
    TableIterator::new(rows)
}
