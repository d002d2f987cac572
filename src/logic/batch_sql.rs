//! Which event tables a batch reads, and the SQL that returns its events.
//!
//! The SQL inlines the two tick snapshots as constants (computed by
//! [`BatchTxids`]) instead of calling `txid_visible_in_snapshot` per row, so the
//! event-table scan is a plain index range scan on `ev_txid`.

use super::snapshot::{BatchTxids, Snapshot};
use std::fmt::Write;

/// Rotation state of a queue as stored in `pgq.queue`.
#[derive(Debug, Clone)]
pub struct QueueTables<'a> {
    pub data_pfx: &'a str,
    pub cur_table: i32,
    pub ntables: i32,
    pub switch_step1: i64,
    pub switch_step2: Option<i64>,
}

/// The event tables (unquoted `pfx_N` names, previous table first) that may hold
/// events of a batch whose oldest snapshot xmin is `tx_min` and newest xmax `tx_max`.
pub fn batch_tables(q: &QueueTables<'_>, tx_min: i64, tx_max: i64) -> Vec<String> {
    let prev = (q.cur_table + q.ntables - 1).rem_euclid(q.ntables.max(1));
    let name = |n: i32| format!("{}_{}", q.data_pfx, n);
    if tx_max < q.switch_step1 {
        vec![name(prev)]
    } else if matches!(q.switch_step2, Some(s2) if tx_min > s2) {
        vec![name(q.cur_table)]
    } else {
        vec![name(prev), name(q.cur_table)]
    }
}

const EQ: &str = "operator(pg_catalog.=)";
const NE: &str = "operator(pg_catalog.<>)";
const GE: &str = "operator(pg_catalog.>=)";
const LT: &str = "operator(pg_catalog.<)";

pub const EVENT_COLUMNS: &str =
    "ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4";

fn push_list(out: &mut String, ids: &[i64]) {
    for (i, x) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write!(out, "{x}").unwrap();
    }
}

/// SQL returning the events of a batch, ordered by ev_id; always ends in ` order by 1`
/// (get_batch_cursor strips that suffix to wrap the query in a filter). `tables` are
/// spliced as given: the caller passes them quoted. Every operator is pg_catalog's,
/// named explicitly, so the query means the same under any search_path.
pub fn batch_sql(sn1: &Snapshot, sn2: &Snapshot, tables: &[String], sub_id: i32) -> String {
    let t = BatchTxids::between(sn1, sn2);
    let owner = format!("(ev.ev_owner is null or ev.ev_owner {EQ} {sub_id})");
    let mut parts: Vec<String> = Vec::new();
    for table in tables {
        if t.lo < t.hi {
            let mut q = format!(
                "select {EVENT_COLUMNS} from {table} ev where ev.ev_txid {GE} {} and ev.ev_txid {LT} {}",
                t.lo, t.hi
            );
            if !t.range_exclude.is_empty() {
                write!(q, " and ev.ev_txid {NE} all (array[").unwrap();
                push_list(&mut q, &t.range_exclude);
                q.push_str("]::int8[])");
            }
            if t.lo < t.low_bound {
                write!(
                    q,
                    " and (ev.ev_txid {GE} {} or ev.ev_txid {EQ} any (array[",
                    t.low_bound
                )
                .unwrap();
                push_list(&mut q, &t.range_low_ids);
                q.push_str("]::int8[]))");
            }
            q.push_str(" and ");
            q.push_str(&owner);
            parts.push(q);
        }
        if !t.extra.is_empty() {
            let mut q =
                format!("select {EVENT_COLUMNS} from {table} ev where ev.ev_txid {EQ} any (array[");
            push_list(&mut q, &t.extra);
            q.push_str("]::int8[]) and ");
            q.push_str(&owner);
            parts.push(q);
        }
    }
    if parts.is_empty() {
        // Nothing can be in this batch (both ticks see the same transactions);
        // still return a well-formed, typed, empty query.
        parts.push(format!(
            "select {EVENT_COLUMNS} from {} ev where false",
            tables
                .first()
                .map(String::as_str)
                .unwrap_or("pgq.event_template")
        ));
    }
    let mut sql = parts.join(" union all ");
    sql.push_str(" order by 1");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(step2: Option<i64>) -> QueueTables<'static> {
        QueueTables {
            data_pfx: "pgq.event_2",
            cur_table: 0,
            ntables: 3,
            switch_step1: 1000,
            switch_step2: step2,
        }
    }

    #[test]
    fn table_choice() {
        assert_eq!(
            batch_tables(&q(Some(1010)), 900, 999),
            vec!["pgq.event_2_2"]
        );
        assert_eq!(
            batch_tables(&q(Some(1010)), 1011, 1100),
            vec!["pgq.event_2_0"]
        );
        assert_eq!(
            batch_tables(&q(Some(1010)), 1005, 1100),
            vec!["pgq.event_2_2", "pgq.event_2_0"]
        );
        assert_eq!(
            batch_tables(&q(None), 2000, 2100),
            vec!["pgq.event_2_2", "pgq.event_2_0"]
        );
    }

    #[test]
    fn spec_example_sql() {
        let sn1 = Snapshot::parse("759:763:759").unwrap();
        let sn2 = Snapshot::parse("766:766:").unwrap();
        let sql = batch_sql(&sn1, &sn2, &["pgq.event_2_0".to_string()], 3);
        assert!(sql.ends_with(" order by 1"));
        assert!(sql.contains(&format!("ev.ev_txid {GE} 759 and ev.ev_txid {LT} 766")));
        assert!(sql.contains(&format!(
            "(ev.ev_txid {GE} 763 or ev.ev_txid {EQ} any (array[759]::int8[]))"
        )));
        assert!(sql.contains(&format!("ev.ev_owner {EQ} 3")));
        // no operator is left to search_path resolution
        let bare = sql
            .replace(EQ, "")
            .replace(GE, "")
            .replace(LT, "")
            .replace(NE, "");
        assert!(
            !bare.contains('=') && !bare.contains('<') && !bare.contains('>'),
            "{sql}"
        );
        assert!(!sql.contains("union all"));
    }

    #[test]
    fn two_tables_and_explicit_list() {
        let sn1 = Snapshot::parse("100:1000:100").unwrap();
        let sn2 = Snapshot::parse("1000:1100:").unwrap();
        let tables = vec!["pgq.event_1_2".to_string(), "pgq.event_1_0".to_string()];
        let sql = batch_sql(&sn1, &sn2, &tables, 1);
        assert_eq!(sql.matches("union all").count(), 3);
        assert!(sql.contains(&format!(
            "from pgq.event_1_2 ev where ev.ev_txid {EQ} any (array[100]::int8[])"
        )));
    }

    #[test]
    fn empty_batch_is_typed_query() {
        let sn = Snapshot::parse("5:5:").unwrap();
        let sql = batch_sql(&sn, &sn, &["pgq.event_1_0".to_string()], 1);
        assert_eq!(
            sql,
            format!("select {EVENT_COLUMNS} from pgq.event_1_0 ev where false order by 1")
        );
    }
}
