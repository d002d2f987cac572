//! Londiste pure logic: table name handling, the table copy-state machine, the
//! `create_trigger` argument planner and trigger names, sequence publishing, and
//! partition names and definitions.
//! No pgrx here; SQL quoting is logic/quote.rs.

/// `schema.name` as Londiste stores it: unchanged if it has a dot, else `public.` added.
/// No case folding, no unquoting.
pub fn make_fqname(name: &str) -> String {
    if name.contains('.') {
        name.to_string()
    } else {
        format!("public.{name}")
    }
}

/// Split at the first dot; no dot means schema `public`.
pub fn split_fqname(name: &str) -> (String, String) {
    match name.find('.') {
        Some(i) => (name[..i].to_string(), name[i + 1..].to_string()),
        None => ("public".to_string(), name.to_string()),
    }
}

/// Copy state of a table on a subscriber (`table_info.merge_state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableState {
    /// NULL: registered, data not copied yet.
    New,
    InCopy,
    CatchingUp,
    WannaSync(i64),
    DoSync(i64),
    Ok,
}

impl TableState {
    /// Parse a stored state; `?` is the legacy spelling of `ok`.
    pub fn parse(s: Option<&str>) -> Result<TableState, String> {
        let Some(s) = s else {
            return Ok(TableState::New);
        };
        match s {
            "ok" | "?" => Ok(TableState::Ok),
            "in-copy" => Ok(TableState::InCopy),
            "catching-up" => Ok(TableState::CatchingUp),
            _ => {
                let num = |p: &str| {
                    p.parse::<i64>()
                        .map_err(|_| format!("Invalid table state: {s}"))
                };
                if let Some(t) = s.strip_prefix("wanna-sync:") {
                    Ok(TableState::WannaSync(num(t)?))
                } else if let Some(t) = s.strip_prefix("do-sync:") {
                    Ok(TableState::DoSync(num(t)?))
                } else {
                    Err(format!("Invalid table state: {s}"))
                }
            }
        }
    }

    pub fn to_db(&self) -> Option<String> {
        match self {
            TableState::New => None,
            TableState::InCopy => Some("in-copy".into()),
            TableState::CatchingUp => Some("catching-up".into()),
            TableState::WannaSync(t) => Some(format!("wanna-sync:{t}")),
            TableState::DoSync(t) => Some(format!("do-sync:{t}")),
            TableState::Ok => Some("ok".into()),
        }
    }

    /// Transitions a well-behaved worker/copy process makes (B4 of the spec); a
    /// resync (any state → New) is always allowed.
    pub fn can_move_to(&self, next: &TableState) -> bool {
        use TableState::*;
        match (self, next) {
            (_, New) => true,
            (New, InCopy) | (New, Ok) => true,
            (InCopy, CatchingUp) => true,
            (CatchingUp, WannaSync(_)) => true,
            (WannaSync(t), DoSync(c)) => c >= t,
            (DoSync(_), Ok) => true,
            (a, b) => a == b,
        }
    }
}

/// `ret_note` text of `local_set_table_state`: the state quoted, or NULL.
pub fn state_note(fq: &str, state: Option<&str>) -> String {
    match state {
        Some(s) => format!("Table {fq} state set to {}", super::quote::literal(s)),
        None => format!("Table {fq} state set to NULL"),
    }
}

/// Magic entries of `local_add_table`'s trigger argument list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AddTableFlags {
    pub expect_sync: bool,
    pub skip_truncate: bool,
    pub merge_all: bool,
    pub no_merge: bool,
    pub virtual_table: bool,
}

impl AddTableFlags {
    pub fn parse(args: &[String]) -> AddTableFlags {
        let mut f = AddTableFlags::default();
        for a in args {
            match a.as_str() {
                "expect_sync" => f.expect_sync = true,
                "skip_truncate" => f.skip_truncate = true,
                "merge_all" => f.merge_all = true,
                "no_merge" => f.no_merge = true,
                "virtual_table" => {
                    f.virtual_table = true;
                    f.expect_sync = true
                }
                _ => {}
            }
        }
        f
    }
}

/// Append `skip_truncate=1` to urlencoded table attributes.
pub fn attrs_with_skip_truncate(attrs: Option<&str>) -> String {
    match attrs {
        None | Some("") => "skip_truncate=1".to_string(),
        Some(a) => format!("{a}&skip_truncate=1"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrigFunc {
    Logu,
    Sql,
    Json,
}

impl TrigFunc {
    pub fn sql_name(self) -> &'static str {
        match self {
            TrigFunc::Logu => "pgq.logutriga",
            TrigFunc::Sql => "pgq.sqltriga",
            TrigFunc::Json => "pgq.jsontriga",
        }
    }
}

/// What `create_trigger` was asked for, from its argument list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerRequest {
    /// `no_triggers` / `virtual_table`: nothing to create.
    pub no_triggers: bool,
    pub before: bool,
    pub func: TrigFunc,
    pub ins: bool,
    pub upd: bool,
    pub del: bool,
    pub skip: bool,
    /// Arguments passed through to the trigger function (after the queue name).
    pub args: Vec<String>,
}

impl TriggerRequest {
    /// Parse `i_trg_args`. `tgflags=` letters are case-insensitive: B(efore), A(fter,
    /// wins), Q/L/J function (J > L > Q), I/U/D events, S skip. `skip` in any case
    /// asks for a skipping trigger; londiste-only flags are dropped; anything else is
    /// a trigger argument. A renamed table gets `ev_extra1='<table>'` unless given.
    pub fn parse(args: &[String], table: &str, dest: &str) -> TriggerRequest {
        let mut flags = String::new();
        let mut r = TriggerRequest {
            no_triggers: false,
            before: false,
            func: TrigFunc::Logu,
            ins: true,
            upd: true,
            del: true,
            skip: false,
            args: Vec::new(),
        };
        for a in args {
            let low = a.to_lowercase();
            if let Some(f) = low.strip_prefix("tgflags=") {
                flags.push_str(&f.to_uppercase());
            } else if low == "skip" {
                r.skip = true;
            } else if a == "no_triggers" || a == "virtual_table" {
                r.no_triggers = true;
            } else if matches!(
                a.as_str(),
                "expect_sync" | "skip_truncate" | "merge_all" | "no_merge"
            ) {
            } else {
                r.args.push(a.clone());
            }
        }
        if flags.contains('B') {
            r.before = true;
        }
        if flags.contains('A') {
            r.before = false;
        }
        r.func = if flags.contains('J') {
            TrigFunc::Json
        } else if flags.contains('L') {
            TrigFunc::Logu
        } else if flags.contains('Q') {
            TrigFunc::Sql
        } else {
            TrigFunc::Logu
        };
        if flags.contains('I') || flags.contains('U') || flags.contains('D') {
            r.ins = flags.contains('I');
            r.upd = flags.contains('U');
            r.del = flags.contains('D');
        }
        if flags.contains('S') {
            r.skip = true;
        }
        if table != dest && !r.args.iter().any(|a| a.starts_with("ev_extra1=")) {
            r.args
                .push(format!("ev_extra1={}", super::quote::literal(table)));
        }
        r
    }

    /// `insert or update or delete` restricted to the requested events.
    pub fn events_sql(&self) -> String {
        let mut ev = Vec::new();
        if self.ins {
            ev.push("insert");
        }
        if self.upd {
            ev.push("update");
        }
        if self.del {
            ev.push("delete");
        }
        ev.join(" or ")
    }

    /// pg_trigger.tgtype bits for this row trigger (for comparing with an existing one).
    pub fn tgtype(&self) -> i16 {
        let mut t = 1; // ROW
        if self.before {
            t |= 2;
        }
        if self.ins {
            t |= 4;
        }
        if self.del {
            t |= 8;
        }
        if self.upd {
            t |= 16;
        }
        t
    }
}

/// How the SKIP rule resolves, given the number of other SKIP triggers on the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipPlan {
    /// Plain trigger with the default name.
    Normal,
    /// No SKIP trigger exists: name `zzz_<name>` and append `SKIP`.
    OwnSkip,
    /// One exists: it is renamed with a `zzz_` prefix if needed; ours is plain.
    RenameOther,
    /// Error code and note.
    Fail(i32, &'static str),
}

pub fn skip_plan(before: bool, skip: bool, n_skip_triggers: i64) -> SkipPlan {
    if !before && n_skip_triggers > 0 {
        return SkipPlan::Fail(403, "AFTER trigger cannot work with SKIP trigger(s)");
    }
    if !skip {
        return SkipPlan::Normal;
    }
    match n_skip_triggers {
        0 => SkipPlan::OwnSkip,
        1 => SkipPlan::RenameOther,
        _ => SkipPlan::Fail(405, "Multiple SKIP triggers"),
    }
}

/// pg_trigger.tgargs layout: every argument followed by a NUL byte.
pub fn encode_tgargs(args: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in args {
        out.extend_from_slice(a.as_bytes());
        out.push(0);
    }
    out
}

pub fn decode_tgargs(raw: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    if raw.last() == Some(&0) {
        v.pop();
    }
    v
}

pub fn hex_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let val = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    };
    b.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| val(c[0]) * 16 + val(c[1]))
        .collect()
}

/// Default and effective buffer of `root_check_seqs`.
pub fn seq_buffer(buffer: Option<i64>) -> i64 {
    match buffer {
        Some(b) if b >= 10 => b,
        _ => 10000,
    }
}

/// The value to publish for a root sequence, or None when the published one is
/// still far enough ahead of the real one.
pub fn seq_publish(real: i64, published: i64, buffer: i64) -> Option<i64> {
    if real.saturating_add(buffer) >= published {
        Some(real.saturating_add(buffer.saturating_mul(3)))
    } else {
        None
    }
}

/// Longest identifier PostgreSQL keeps whole (NAMEDATALEN - 1 bytes); longer ones
/// are truncated, so two long names that differ only at the end would collide.
pub const MAX_IDENT_BYTES: usize = 63;

/// `name` unchanged when PostgreSQL keeps it whole; otherwise a deterministic
/// shortened form: as much of the start as fits, then `_` and 8 hex digits of a hash
/// of the full name, 63 bytes at most.
pub fn fit_ident(name: &str) -> String {
    if name.len() <= MAX_IDENT_BYTES {
        return name.to_string();
    }
    // FNV-1a, 64 bit, folded to 32: stable across builds and platforms
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let tag = format!("_{:08x}", ((h >> 32) ^ h) as u32);
    let mut cut = MAX_IDENT_BYTES - tag.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tag}", &name[..cut])
}

/// Names of the triggers `create_trigger` puts on a table for a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTriggerNames {
    /// `_londiste_<queue>`
    pub main: String,
    /// `zzz__londiste_<queue>` (the trigger that runs last, with SKIP)
    pub skip: String,
    /// `_londiste_<queue>_truncate`
    pub truncate: String,
}

/// The original's names while they fit in 63 bytes, else `fit_ident` of them, so the
/// three stay distinct for every queue name.
pub fn queue_trigger_names(queue: &str) -> QueueTriggerNames {
    let base = format!("_londiste_{queue}");
    QueueTriggerNames {
        main: fit_ident(&base),
        skip: fit_ident(&format!("zzz_{base}")),
        truncate: fit_ident(&format!("{base}_truncate")),
    }
}

/// Name suffix and `to_char` format of a partition period, as the retention helpers
/// spell them: `year`/`yearly` `_YYYY`, `month`/`monthly` `_YYYY_MM`, `day`/`daily`
/// `_YYYY_MM_DD`, `hour`/`hourly` `_YYYY_MM_DD_HH24`. Case-sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSuffix {
    /// number of numeric groups: 1 (year) .. 4 (hour)
    pub groups: usize,
    pub to_char: &'static str,
}

pub fn part_suffix(period: &str) -> Option<PartSuffix> {
    let (groups, to_char) = match period {
        "year" | "yearly" => (1, "_YYYY"),
        "month" | "monthly" => (2, "_YYYY_MM"),
        "day" | "daily" => (3, "_YYYY_MM_DD"),
        "hour" | "hourly" => (4, "_YYYY_MM_DD_HH24"),
        _ => return None,
    };
    Some(PartSuffix { groups, to_char })
}

/// The part of `name` before a `_DDDD[_DD[_DD[_DD]]]` suffix of the period's shape
/// (digits only; whether they form a valid date does not matter), or None when the
/// name does not end that way.
pub fn partition_base(name: &str, suffix: PartSuffix) -> Option<&str> {
    let len = 5 + 3 * (suffix.groups - 1);
    if name.len() < len || !name.is_char_boundary(name.len() - len) {
        return None;
    }
    let (base, tail) = name.split_at(name.len() - len);
    let t = tail.as_bytes();
    let mut widths = vec![4usize];
    widths.resize(suffix.groups, 2);
    let mut pos = 0;
    for w in widths {
        if t[pos] != b'_' || !t[pos + 1..pos + 1 + w].iter().all(u8::is_ascii_digit) {
            return None;
        }
        pos += 1 + w;
    }
    Some(base)
}

/// Byte offset of the first `kw` (e.g. `" ON "`) at or after `from` that is outside
/// double-quoted identifiers.
fn find_unquoted(s: &str, kw: &str, from: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut in_quote = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            in_quote = !in_quote;
        } else if !in_quote && i >= from && b[i..].starts_with(kw.as_bytes()) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Re-point a `pg_get_triggerdef` / `pg_get_ruledef` definition at another table:
/// `head` is the definition's start up to and including the quoted object name
/// (`CREATE TRIGGER "Fooza"`, `CREATE RULE r AS`), `kw` the keyword before the table
/// (`" ON "` for triggers, `" TO "` for rules), `from_rel` the table as the definition
/// names it (schema-qualified, quoted). Only that one occurrence is replaced, never
/// text inside the object's name, column names or the body. None if it is not found.
pub fn repoint_definition(
    def: &str,
    head: &str,
    kw: &str,
    from_rel: &str,
    to_rel: &str,
) -> Option<String> {
    let start = if def.starts_with(head) {
        head.len()
    } else {
        return None;
    };
    let mut at = start;
    loop {
        let i = find_unquoted(def, kw, at)?;
        let rel_at = i + kw.len();
        let rest = &def[rel_at..];
        if let Some(after) = rest.strip_prefix(from_rel) {
            if after.is_empty() || after.starts_with(|c: char| c.is_whitespace()) {
                return Some(format!("{}{to_rel}{after}", &def[..rel_at]));
            }
        }
        at = i + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(make_fqname("tbl"), "public.tbl");
        assert_eq!(make_fqname("a.b.c"), "a.b.c");
        assert_eq!(make_fqname(""), "public.");
        assert_eq!(split_fqname("a.b.c"), ("a".into(), "b.c".into()));
        assert_eq!(split_fqname(".x"), ("".into(), "x".into()));
    }

    #[test]
    fn states() {
        for s in [
            "ok",
            "in-copy",
            "catching-up",
            "wanna-sync:12",
            "do-sync:15",
        ] {
            assert_eq!(
                TableState::parse(Some(s)).unwrap().to_db().as_deref(),
                Some(s)
            );
        }
        assert_eq!(TableState::parse(Some("?")).unwrap(), TableState::Ok);
        assert_eq!(TableState::parse(None).unwrap(), TableState::New);
        assert_eq!(TableState::New.to_db(), None);
        assert_eq!(
            TableState::parse(Some("?")).unwrap().to_db().as_deref(),
            Some("ok")
        );
        assert!(TableState::parse(Some("wanna-sync:x")).is_err());
        assert!(TableState::parse(Some("bogus")).is_err());
        assert!(TableState::WannaSync(5).can_move_to(&TableState::DoSync(7)));
        assert!(!TableState::WannaSync(5).can_move_to(&TableState::DoSync(4)));
        assert!(TableState::DoSync(7).can_move_to(&TableState::Ok));
        assert!(!TableState::InCopy.can_move_to(&TableState::Ok));
        assert!(TableState::Ok.can_move_to(&TableState::New));
        assert_eq!(
            state_note("a.b", Some("in-copy")),
            "Table a.b state set to 'in-copy'"
        );
        assert_eq!(state_note("a.b", None), "Table a.b state set to NULL");
    }

    #[test]
    fn trigger_requests() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let r = TriggerRequest::parse(&s(&["tgflags=BIU", "skip", "pkey=id"]), "a.t", "a.t");
        assert!(r.before && r.skip && r.ins && r.upd && !r.del);
        assert_eq!(r.args, vec!["pkey=id"]);
        assert_eq!(r.events_sql(), "insert or update");
        let r = TriggerRequest::parse(&s(&["tgflags=jd", "expect_sync"]), "a.t", "a.t");
        assert_eq!(r.func, TrigFunc::Json);
        assert_eq!(r.events_sql(), "delete");
        assert!(r.args.is_empty());
        let r = TriggerRequest::parse(&s(&["tgflags=LQ", "tgflags=A"]), "a.t", "a.t");
        assert_eq!(r.func, TrigFunc::Logu);
        assert!(!r.before);
        let r = TriggerRequest::parse(&s(&["tgflags=BA"]), "a.t", "a.t");
        assert!(!r.before);
        let r = TriggerRequest::parse(&[], "lt.src", "lt.dst");
        assert_eq!(r.args, vec!["ev_extra1='lt.src'"]);
        let r = TriggerRequest::parse(&s(&["ev_extra1=x"]), "lt.src", "lt.dst");
        assert_eq!(r.args, vec!["ev_extra1=x"]);
        assert!(TriggerRequest::parse(&s(&["no_triggers"]), "a", "a").no_triggers);
        assert_eq!(
            TriggerRequest::parse(&s(&["tgflags=BSI"]), "a", "a").tgtype(),
            1 | 2 | 4
        );
    }

    #[test]
    fn skip_rules() {
        assert_eq!(
            skip_plan(false, false, 1),
            SkipPlan::Fail(403, "AFTER trigger cannot work with SKIP trigger(s)")
        );
        assert_eq!(skip_plan(true, true, 0), SkipPlan::OwnSkip);
        assert_eq!(skip_plan(true, true, 1), SkipPlan::RenameOther);
        assert_eq!(
            skip_plan(true, true, 2),
            SkipPlan::Fail(405, "Multiple SKIP triggers")
        );
        assert_eq!(skip_plan(true, false, 3), SkipPlan::Normal);
    }

    #[test]
    fn tgargs_roundtrip() {
        let a = vec!["q".to_string(), "pkey=id".to_string(), "SKIP".to_string()];
        assert_eq!(decode_tgargs(&encode_tgargs(&a)), a);
        assert_eq!(hex_decode("710070"), vec![b'q', 0, b'p']);
    }

    #[test]
    fn seqs() {
        assert_eq!(seq_buffer(None), 10000);
        assert_eq!(seq_buffer(Some(5)), 10000);
        assert_eq!(seq_buffer(Some(100)), 100);
        assert_eq!(seq_publish(1, 0, 10000), Some(30001));
        assert_eq!(seq_publish(1, 30001, 10000), None);
        assert_eq!(seq_publish(29000, 30500, 10000), Some(59000));
    }

    #[test]
    fn partitions() {
        let m = part_suffix("month").unwrap();
        assert_eq!(partition_base("lt.events_2020_01", m), Some("lt.events"));
        // any digits: no date check, so odd suffixes never fail
        assert_eq!(partition_base("events_2020_13", m), Some("events"));
        assert_eq!(partition_base("events_2020_01_01", m), None);
        assert_eq!(partition_base("events_2020_1", m), None);
        assert_eq!(partition_base("_2020_01", m), Some(""));
        assert_eq!(partition_base("x_2020_01", m), Some("x"));
        assert_eq!(partition_base("events_20x0_01", m), None);
        assert_eq!(partition_base("é_2020_01", m), Some("é"));
        let h = part_suffix("hourly").unwrap();
        assert_eq!(h.to_char, "_YYYY_MM_DD_HH24");
        assert_eq!(partition_base("ev_2020_01_02_25", h), Some("ev"));
        assert_eq!(
            partition_base("ev_2020", part_suffix("year").unwrap()),
            Some("ev")
        );
        assert_eq!(part_suffix("Month"), None);
        assert_eq!(part_suffix("week"), None);
    }

    #[test]
    fn long_trigger_names() {
        let short = queue_trigger_names("q");
        assert_eq!(short.main, "_londiste_q");
        assert_eq!(short.skip, "zzz__londiste_q");
        assert_eq!(short.truncate, "_londiste_q_truncate");
        // 44 bytes: all three still fit and keep the original's names
        let q44 = "q".repeat(44);
        let n = queue_trigger_names(&q44);
        assert_eq!(n.truncate, format!("_londiste_{q44}_truncate"));
        for len in [53, 54, 60, 63, 100, 200] {
            let q = "a".repeat(len);
            let n = queue_trigger_names(&q);
            for x in [&n.main, &n.skip, &n.truncate] {
                assert!(x.len() <= MAX_IDENT_BYTES, "{x}");
            }
            assert_ne!(n.main, n.truncate);
            assert_ne!(n.main, n.skip);
            assert_ne!(n.skip, n.truncate);
            assert_eq!(n, queue_trigger_names(&q));
        }
        assert_eq!(
            queue_trigger_names(&"a".repeat(53)).main,
            format!("_londiste_{}", "a".repeat(53))
        );
        // two long queues sharing a 60-byte prefix get different names
        let a = queue_trigger_names(&format!("{}x", "p".repeat(60)));
        let b = queue_trigger_names(&format!("{}y", "p".repeat(60)));
        assert_ne!(a.main, b.main);
        // multibyte names are cut at a character boundary
        let m = fit_ident(&"ä".repeat(40));
        assert!(m.len() <= MAX_IDENT_BYTES && m.is_char_boundary(m.len()));
    }

    #[test]
    fn repointed_definitions() {
        let d = "CREATE TRIGGER \"Fooza\" AFTER INSERT ON public.events FOR EACH ROW EXECUTE FUNCTION trgf()";
        assert_eq!(
            repoint_definition(d, "CREATE TRIGGER \"Fooza\"", " ON ", "public.events", "public.events_2020_01").as_deref(),
            Some("CREATE TRIGGER \"Fooza\" AFTER INSERT ON public.events_2020_01 FOR EACH ROW EXECUTE FUNCTION trgf()")
        );
        // the name and a column list contain the same text; only the table is replaced
        let d = "CREATE TRIGGER \"t ON public.events x\" AFTER UPDATE OF \"c ON public.events \" ON public.events FOR EACH ROW EXECUTE FUNCTION f()";
        assert_eq!(
            repoint_definition(d, "CREATE TRIGGER \"t ON public.events x\"", " ON ", "public.events", "s.p").as_deref(),
            Some("CREATE TRIGGER \"t ON public.events x\" AFTER UPDATE OF \"c ON public.events \" ON s.p FOR EACH ROW EXECUTE FUNCTION f()")
        );
        // a longer table name with the same prefix is not the table
        let d = "CREATE RULE r AS\n    ON INSERT TO public.events_log DO INSTEAD NOTHING";
        assert_eq!(
            repoint_definition(d, "CREATE RULE r AS", " TO ", "public.events", "x.y"),
            None
        );
        let d = "CREATE RULE r AS\n    ON INSERT TO \"My S\".\"Ev\" DO INSTEAD INSERT INTO \"My S\".\"Ev\" VALUES (1)";
        assert_eq!(
            repoint_definition(d, "CREATE RULE r AS", " TO ", "\"My S\".\"Ev\"", "\"My S\".\"Ev_1\"").as_deref(),
            Some("CREATE RULE r AS\n    ON INSERT TO \"My S\".\"Ev_1\" DO INSTEAD INSERT INTO \"My S\".\"Ev\" VALUES (1)")
        );
        assert_eq!(
            repoint_definition(d, "CREATE RULE q AS", " TO ", "a.b", "c.d"),
            None
        );
    }
}
