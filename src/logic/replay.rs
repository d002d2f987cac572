//! The replay worker's decisions, free of pgrx (docs/replication.md, "In-server
//! replay"): where a batch stands against the node's completed tick, what a branch
//! does about its own tick after a crash, what a cascade event asks for, when an
//! EXECUTE script runs on this node and how its `@name@` placeholders become local
//! names, how long to wait after an error, and the watermarks a node sends up and (with
//! the `sync_watermark` attribute) syncs with other branches.

use crate::logic::supervise::SEC;

/// What to do with the batch `prev..cur` the provider handed out, given the tick this
/// node recorded as completed in `pgq_node.local_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchVerdict {
    /// the batch starts where this node stands: apply it
    Apply,
    /// this node committed the batch already (a crash after the local commit, before
    /// `finish_batch` on the provider): only finish it on the provider
    AlreadyDone,
    /// the positions do not fit: an error, nothing is applied
    Lost(String),
}

pub fn batch_verdict(prev_tick: i64, cur_tick: i64, completed: Option<i64>) -> BatchVerdict {
    match completed {
        None => BatchVerdict::Lost("dst_tick NULL?".to_string()),
        Some(c) if c == prev_tick => BatchVerdict::Apply,
        Some(c) if c == cur_tick => BatchVerdict::AlreadyDone,
        Some(c) => BatchVerdict::Lost(format!(
            "Lost position: batch {prev_tick}..{cur_tick}, dst has {c}"
        )),
    }
}

/// What the replay worker of a node does with the batches it reads, by node type and,
/// for a merge leaf, by the type of the combined queue's node in the same database
/// (docs/replication.md, "Merge leaves").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duties {
    /// where the batch's events go besides: nowhere, this branch's own queue (same
    /// ids), or the combined queue (new ids, no `pgq.*`/`londiste.*` events)
    pub copy_to: CopyTo,
    /// end the batch with a `pgq.tick-id` event in the combined queue
    pub send_tick_event: bool,
    /// make this node's own tick with the provider's id and time after the batch
    pub create_tick: bool,
    /// apply nothing (else the data events, R and EXECUTE are applied to the local
    /// tables): the batch is done once the worker's completed tick, moved by
    /// the combined branch's replay (`set_partition_watermark`), reaches its end
    pub wait_behind: bool,
    /// a `pgq.tick-id` event moves the part queue's position here
    pub apply_tick_event: bool,
}

impl Duties {
    /// A plain leaf's: apply the events, nothing else (also a copy worker's catch-up).
    pub fn apply_only() -> Duties {
        Duties {
            copy_to: CopyTo::Nowhere,
            send_tick_event: false,
            create_tick: false,
            wait_behind: false,
            apply_tick_event: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyTo {
    Nowhere,
    OwnQueue,
    Combined(String),
}

/// The duties of a branch or leaf node, or why it cannot be replayed.
pub fn duties(
    node_type: crate::logic::node::NodeType,
    combined_queue: Option<&str>,
    combined_type: Option<crate::logic::node::NodeType>,
) -> Result<Duties, String> {
    use crate::logic::node::NodeType as T;
    let plain = Duties::apply_only();
    match (node_type, combined_queue, combined_type) {
        (T::Branch, None, _) => Ok(Duties {
            copy_to: CopyTo::OwnQueue,
            create_tick: true,
            apply_tick_event: true,
            ..plain
        }),
        (T::Leaf, None, _) => Ok(plain),
        (T::Leaf, Some(cq), Some(T::Root)) => Ok(Duties {
            copy_to: CopyTo::Combined(cq.to_string()),
            send_tick_event: true,
            ..plain
        }),
        (T::Leaf, Some(_), Some(T::Branch)) => Ok(Duties {
            wait_behind: true,
            ..plain
        }),
        (T::Leaf, Some(cq), other) => Err(format!(
            "the combined queue \"{cq}\" of this merge leaf has {} node here, not a root or branch",
            match other {
                Some(t) => format!("a {}", t.as_str()),
                None => "no".to_string(),
            }
        )),
        (T::Branch, Some(cq), _) => Err(format!(
            "a branch node with a combined queue (\"{cq}\"): only leaves merge"
        )),
        (T::Root, _, _) => Err("a root node has no provider to replay".to_string()),
    }
}

/// Whether an event of `ev_type` goes on into the combined queue: every event but the
/// cascade's own (`pgq.*`) and londiste's table and sequence events (`londiste.*`).
pub fn goes_to_combined(ev_type: &[u8]) -> bool {
    !(ev_type.starts_with(b"pgq.") || ev_type.starts_with(b"londiste."))
}

/// A wait-behind merge leaf: the batch `..cur` is done once the completed tick (moved
/// by the combined branch) reaches `cur`.
pub fn behind_done(completed: Option<i64>, cur_tick: i64) -> bool {
    completed.is_some_and(|c| c >= cur_tick)
}

/// A branch whose batch was already done: does its own queue have the tick?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchTick {
    /// the local tick is the batch's end: nothing to do
    Present,
    /// the crash came between the commit and the tick: make the tick now
    Missing,
    Wrong(String),
}

pub fn branch_tick(last_local_tick: Option<i64>, prev_tick: i64, cur_tick: i64) -> BranchTick {
    match last_local_tick {
        Some(t) if t == cur_tick => BranchTick::Present,
        Some(t) if t == prev_tick => BranchTick::Missing,
        other => BranchTick::Wrong(format!(
            "is_batch_done: last branch tick = {}, expected {prev_tick} or {cur_tick}",
            other
                .map(|t| t.to_string())
                .unwrap_or_else(|| "NULL".into())
        )),
    }
}

/// A `pgq.*` event of the cascade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CascadeEvent {
    /// `pgq.location-info`: register_location(queue, node, location, dead)
    LocationInfo {
        node: String,
        location: Option<String>,
        dead: bool,
    },
    /// `pgq.unregister-location`
    UnregisterLocation { node: String },
    /// `pgq.global-watermark`: the root's watermark, a tick id
    GlobalWatermark(i64),
    /// `pgq.tick-id` (only in a combined queue): a merge leaf on the combined root
    /// finished the part queue's batch ending at `tick`
    TickId { part_queue: String, tick: i64 },
}

/// Parse a `pgq.*` event. `extra1` must name this node's queue, except for
/// `pgq.tick-id`, which only a combined queue carries.
pub fn cascade_event(
    queue: &str,
    ev_type: &str,
    ev_data: Option<&str>,
    extra1: Option<&str>,
    extra2: Option<&str>,
    extra3: Option<&str>,
) -> Result<CascadeEvent, String> {
    if ev_type == "pgq.tick-id" {
        let part_queue = extra1.ok_or("pgq.tick-id without a part queue (ev_extra1)")?;
        if part_queue == queue {
            return Err(format!(
                "pgq.tick-id event for the node's own queue {queue}"
            ));
        }
        let d = ev_data.unwrap_or("");
        let tick = d
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("pgq.tick-id with a bad tick id: {d}"))?;
        return Ok(CascadeEvent::TickId {
            part_queue: part_queue.to_string(),
            tick,
        });
    }
    if extra1 != Some(queue) {
        return Err(format!(
            "bad event in queue: {ev_type} for queue {}",
            extra1.unwrap_or("NULL")
        ));
    }
    let data = || {
        ev_data
            .map(str::to_string)
            .ok_or_else(|| format!("{ev_type} without data"))
    };
    match ev_type {
        "pgq.location-info" => Ok(CascadeEvent::LocationInfo {
            node: data()?,
            location: extra2.map(str::to_string),
            dead: matches!(extra3, Some("true") | Some("t") | Some("1") | Some("on")),
        }),
        "pgq.unregister-location" => Ok(CascadeEvent::UnregisterLocation { node: data()? }),
        "pgq.global-watermark" => {
            let d = data()?;
            d.trim()
                .parse::<i64>()
                .map(CascadeEvent::GlobalWatermark)
                .map_err(|_| format!("pgq.global-watermark with a bad tick id: {d}"))
        }
        other => Err(format!("unknown cascade event: {other}")),
    }
}

/// The meta-comment attributes of an EXECUTE script (`--*-- Key: v1, v2`), as the root
/// stored them urlencoded in the event's `ev_extra2`: lower-case key, comma-joined
/// values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecAttrs {
    pub attrs: Vec<(String, Vec<String>)>,
}

/// The keys an EXECUTE script may name.
pub const EXEC_KEYS: [&str; 8] = [
    "local-table",
    "local-sequence",
    "local-destination",
    "need-table",
    "need-sequence",
    "need-function",
    "need-schema",
    "need-view",
];

impl ExecAttrs {
    pub fn parse(urlenc: Option<&str>) -> Result<ExecAttrs, String> {
        let mut attrs = Vec::new();
        let Some(s) = urlenc.filter(|s| !s.is_empty()) else {
            return Ok(ExecAttrs { attrs });
        };
        for part in s.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let dec = |x: &str| {
                crate::logic::triggers::urldecode(x.as_bytes())
                    .map_err(|e| format!("bad EXECUTE attributes: {e:?}"))
                    .and_then(|b| {
                        String::from_utf8(b).map_err(|_| "bad EXECUTE attributes: not UTF-8".into())
                    })
            };
            let key = dec(k)?.to_ascii_lowercase();
            if !EXEC_KEYS.contains(&key.as_str()) {
                return Err(format!("unknown EXECUTE attribute: {key}"));
            }
            let values = dec(v)?
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect();
            attrs.push((key, values));
        }
        Ok(ExecAttrs { attrs })
    }

    pub fn is_empty(&self) -> bool {
        self.attrs.iter().all(|(_, v)| v.is_empty())
    }

    /// The meta-comments at the top of a script: lines `--*-- Key: v1, v2` (a line
    /// ending with `,` continues on the next `--*--` line); the first other line ends
    /// them. Keys are matched without case.
    pub fn from_script(sql: &str) -> Result<ExecAttrs, String> {
        let mut attrs: Vec<(String, Vec<String>)> = Vec::new();
        let mut continuing = false;
        for line in sql.lines() {
            let line = line.trim();
            if line.is_empty() && attrs.is_empty() {
                continue;
            }
            let Some(body) = line.strip_prefix("--*--") else {
                break;
            };
            let body = body.trim();
            let values = if continuing {
                body
            } else {
                let (k, v) = body
                    .split_once(':')
                    .ok_or_else(|| format!("bad EXECUTE meta-comment: {line}"))?;
                let key = k.trim().to_ascii_lowercase();
                if !EXEC_KEYS.contains(&key.as_str()) {
                    return Err(format!("unknown EXECUTE attribute: {}", k.trim()));
                }
                attrs.push((key, Vec::new()));
                v
            };
            continuing = values.ends_with(',');
            if let Some((_, vals)) = attrs.last_mut() {
                vals.extend(
                    values
                        .split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty()),
                );
            }
        }
        Ok(ExecAttrs { attrs })
    }

    /// The urlencoded form stored with the script (None when there are none).
    pub fn encode(&self) -> Option<String> {
        if self.attrs.is_empty() {
            return None;
        }
        let enc = |x: &str| crate::logic::triggers::urlencode(x.as_bytes());
        Some(
            self.attrs
                .iter()
                .map(|(k, v)| format!("{}={}", enc(k), enc(&v.join(","))))
                .collect::<Vec<_>>()
                .join("&"),
        )
    }
}

/// What this node has, for matching an EXECUTE script's attributes. Names are
/// `schema.name`, as londiste stores them.
pub trait LocalObjects {
    /// a table this node replicates (global name) → its local destination name
    fn local_table(&self, name: &str) -> Option<String>;
    /// a sequence this node replicates
    fn local_sequence(&self, name: &str) -> bool;
    /// a local destination table name of a replicated table
    fn local_destination(&self, name: &str) -> bool;
    /// catalog existence: key is `need-table`, `need-sequence`, `need-function`
    /// (`name(nargs)`), `need-schema` or `need-view`
    fn exists(&self, key: &str, name: &str) -> Result<bool, String>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecDecision {
    /// run it, with these `@name@` → local name substitutions
    Run(Vec<(String, String)>),
    /// none of the named objects is here: the script does not concern this node
    Skip,
}

fn fq(name: &str) -> String {
    crate::logic::londiste::make_fqname(name)
}

/// Decide about an EXECUTE script: every named object present → run; none → skip;
/// some → an error (the node is set up differently from what the script expects).
pub fn exec_decision(attrs: &ExecAttrs, here: &dyn LocalObjects) -> Result<ExecDecision, String> {
    let mut matched = Vec::new();
    let mut missing = Vec::new();
    let mut subst = Vec::new();
    for (key, values) in &attrs.attrs {
        for v in values {
            let ok = match key.as_str() {
                "local-table" => match here.local_table(&fq(v)) {
                    Some(dest) => {
                        subst.push((v.clone(), dest));
                        true
                    }
                    None => false,
                },
                "local-sequence" => {
                    let ok = here.local_sequence(&fq(v));
                    if ok {
                        subst.push((v.clone(), fq(v)));
                    }
                    ok
                }
                "local-destination" => {
                    let ok = here.local_destination(&fq(v));
                    if ok {
                        subst.push((v.clone(), fq(v)));
                    }
                    ok
                }
                other => here.exists(other, v)?,
            };
            if ok {
                matched.push(format!("{key}: {v}"));
            } else {
                missing.push(format!("{key}: {v}"));
            }
        }
    }
    if missing.is_empty() {
        Ok(ExecDecision::Run(subst))
    } else if matched.is_empty() {
        Ok(ExecDecision::Skip)
    } else {
        Err(format!(
            "EXECUTE script matches this node only partly: has {}, lacks {}",
            matched.join(", "),
            missing.join(", ")
        ))
    }
}

/// Replace every `@name@` of `subst` in `sql` by the quoted local name
/// (`quote_fq(name)`).
pub fn substitute(
    sql: &str,
    subst: &[(String, String)],
    quote_fq: impl Fn(&str) -> String,
) -> String {
    let mut out = sql.to_string();
    for (name, local) in subst {
        let pat = format!("@{name}@");
        if out.contains(&pat) {
            out = out.replace(&pat, &quote_fq(local));
        }
    }
    out
}

/// Delay before retry number `failures` (1 s, 2 s, 4 s ... 60 s).
pub fn retry_delay(failures: u32) -> i64 {
    let s = 1i64 << failures.saturating_sub(1).min(6);
    s.min(60) * SEC
}

/// The longest wait after an error that says the provider cannot be reached.
pub const UNREACHABLE_RETRY_MAX: i64 = 10 * SEC;

/// Delay before retry number `failures` after an error of SQLSTATE `code`: as
/// [`retry_delay`], but a provider that cannot be reached (class 08, or the server
/// shutting down or starting: 57P01-57P03) is tried again at least every 10 s, so a
/// node catches up soon after its provider is back.
pub fn retry_delay_after(failures: u32, code: &str) -> i64 {
    let d = retry_delay(failures);
    if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03") {
        d.min(UNREACHABLE_RETRY_MAX)
    } else {
        d
    }
}

/// The replay workers a transaction asks to look at their node again (a pause, a
/// resume, a new provider, a skip request), each queue once. They are woken when the
/// transaction commits, not before: a worker woken earlier reads the old state and goes
/// back to its wait, which after errors is a backoff of up to 60 s. An abort drops the
/// list (a rolled-back savepoint does not: an extra wake only costs the worker a round).
#[derive(Debug, Default)]
pub struct PendingWakes {
    queues: Vec<String>,
}

impl PendingWakes {
    pub const fn new() -> PendingWakes {
        PendingWakes { queues: Vec::new() }
    }

    pub fn add(&mut self, queue: &str) {
        if !self.queues.iter().any(|q| q == queue) {
            self.queues.push(queue.to_string());
        }
    }

    /// At commit: the queues whose workers to wake, in the order asked; the list is
    /// empty afterwards.
    pub fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.queues)
    }

    /// At abort (or PREPARE TRANSACTION: the commit comes later, in another session).
    pub fn clear(&mut self) {
        self.queues.clear();
    }
}

/// Where a table stands in its initial copy (`londiste.table_info.merge_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyPhase {
    /// NULL: registered, not copied yet
    Waiting,
    /// the copy worker copies it
    InCopy,
    /// copied with a snapshot; the copy worker applies its events alone
    CatchingUp,
    /// the copy worker caught up and waits, its next batch ending at this tick
    WannaSync(i64),
    /// the replay worker stopped before its batch ending at this tick; the copy
    /// worker applies up to it
    DoSync(i64),
    /// the replay worker applies its events (`?` is the legacy spelling)
    Ok,
}

impl CopyPhase {
    /// The phase a state string names; an unknown one is an error naming it.
    pub fn parse(state: Option<&str>) -> Result<CopyPhase, String> {
        let tick = |t: &str, s: &str| {
            t.parse::<i64>()
                .map_err(|_| format!("Invalid table state: {s}"))
        };
        match state {
            None => Ok(CopyPhase::Waiting),
            Some("ok") | Some("?") => Ok(CopyPhase::Ok),
            Some("in-copy") => Ok(CopyPhase::InCopy),
            Some("catching-up") => Ok(CopyPhase::CatchingUp),
            Some(s) => {
                if let Some(t) = s.strip_prefix("wanna-sync:") {
                    tick(t, s).map(CopyPhase::WannaSync)
                } else if let Some(t) = s.strip_prefix("do-sync:") {
                    tick(t, s).map(CopyPhase::DoSync)
                } else {
                    Err(format!("Invalid table state: {s}"))
                }
            }
        }
    }

    /// A copy worker works on the table.
    pub fn copying(self) -> bool {
        matches!(
            self,
            CopyPhase::InCopy
                | CopyPhase::CatchingUp
                | CopyPhase::WannaSync(_)
                | CopyPhase::DoSync(_)
        )
    }
}

/// What the replay worker does with a batch ending at `cur_tick`, given the copy
/// phases of the node's local tables.
#[derive(Debug, PartialEq, Eq)]
pub enum HandOff {
    /// apply it
    Apply,
    /// a copy worker is applying up to its `do-sync` tick: do not apply it, wait
    Wait,
    /// these tables (global name, their `wanna-sync:T` state) caught up at T <=
    /// cur_tick: set them `do-sync:<cur_tick>` and wait instead of applying
    DoSync(Vec<(String, String)>),
}

pub fn hand_off<'a>(
    tables: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    cur_tick: i64,
) -> HandOff {
    let mut sync = Vec::new();
    for (name, state) in tables {
        match CopyPhase::parse(state) {
            Ok(CopyPhase::DoSync(_)) => return HandOff::Wait,
            Ok(CopyPhase::WannaSync(t)) if t <= cur_tick => {
                sync.push((name.to_string(), state.unwrap_or_default().to_string()))
            }
            _ => {}
        }
    }
    if sync.is_empty() {
        HandOff::Apply
    } else {
        sync.sort();
        HandOff::DoSync(sync)
    }
}

/// What a copy worker does in its catch-up with its next batch ending at `cur_tick`.
#[derive(Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// apply the table's events of the batch
    Apply,
    /// announce `wanna-sync:<cur_tick>` and wait for the replay worker
    Announce,
    /// keep waiting for the replay worker
    Wait,
    /// the table is the replay worker's from this batch on: state ok, done
    HandOver,
}

/// `caught_up`: the copy worker's previous look found no batch.
pub fn catch_up(phase: CopyPhase, cur_tick: i64, caught_up: bool) -> Result<CatchUp, String> {
    match phase {
        CopyPhase::CatchingUp if caught_up => Ok(CatchUp::Announce),
        CopyPhase::CatchingUp => Ok(CatchUp::Apply),
        CopyPhase::WannaSync(t) if t == cur_tick => Ok(CatchUp::Wait),
        CopyPhase::WannaSync(t) => Err(format!(
            "Invalid table state: wanna-sync:{t}, but the next batch ends at tick {cur_tick}"
        )),
        CopyPhase::DoSync(c) if c == cur_tick => Ok(CatchUp::HandOver),
        CopyPhase::DoSync(c) if cur_tick < c => Ok(CatchUp::Apply),
        CopyPhase::DoSync(c) => Err(format!(
            "Invalid table state: do-sync:{c}, but the next batch ends at tick {cur_tick}"
        )),
        p => Err(format!("no catch-up in table state {p:?}")),
    }
}

/// The consumer a copy worker (or the Python copy process) registers for `table`.
pub fn copy_consumer(worker: &str, table: &str) -> String {
    format!("{worker}.copy.{table}")
}

/// The table a copy consumer of `worker` is for, if `consumer` is one.
pub fn copy_consumer_table<'a>(worker: &str, consumer: &'a str) -> Option<&'a str> {
    consumer
        .strip_prefix(worker)?
        .strip_prefix(".copy.")
        .filter(|t| !t.is_empty())
}

/// The nodes a branch's `sync_watermark` attribute names (`pgq_node.node_info.node_attrs`,
/// an urlencoded dict: `sync_watermark=n1,n2`): in order, without blanks and repeats.
/// Empty when the attribute is missing or empty; an undecodable attribute is an error.
pub fn sync_watermark_nodes(node_attrs: Option<&str>) -> Result<Vec<String>, String> {
    let Some(s) = node_attrs.filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    let pairs = crate::logic::triggers::decode_urlenc_row(s)
        .map_err(|e| format!("bad node_attrs {s:?}: {e}"))?;
    let mut out: Vec<String> = Vec::new();
    for (k, v) in pairs {
        if k != "sync_watermark" {
            continue;
        }
        out.clear(); // the last one counts, as in a dict
        for n in v.unwrap_or_default().split(',').map(str::trim) {
            if !n.is_empty() && !out.iter().any(|x| x == n) {
                out.push(n.to_string());
            }
        }
    }
    Ok(out)
}

/// The watermark a node sends up to its provider after the batch `prev..cur`: its local
/// watermark (the lowest position of its own subscribers), never past the batch; a
/// `sync_watermark` branch sends the batch's start instead, because its subtree is kept
/// by the watermark it syncs with the listed nodes, not by the provider.
pub fn published_watermark(
    local_watermark: Option<i64>,
    sync_watermark: bool,
    prev_tick: i64,
    cur_tick: i64,
) -> i64 {
    if sync_watermark {
        prev_tick
    } else {
        local_watermark.unwrap_or(cur_tick).min(cur_tick)
    }
}

/// What a listed node of `sync_watermark` told about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerWatermark {
    /// its local watermark, as its `pgq_node.get_node_info` gave it (None: not set)
    Known(Option<i64>),
    /// marked dead in the member list: it needs nothing any more
    Dead,
    /// not in the member list (dropped, or a misspelt name): it needs nothing here
    NotMember,
    /// alive but not reachable or not answering (the reason, without secrets)
    Unreachable(String),
}

/// What the sync of a `sync_watermark` branch's global watermark decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncedWatermark {
    /// set the local global watermark to this tick
    Set(i64),
    /// leave the global watermark where it is (holding it back is always safe): why
    Keep(String),
}

/// The global watermark of a `sync_watermark` branch: the lowest of its own local
/// watermark, the last global watermark its provider sent (the root's, as far as the
/// rest of the cascade goes) and the local watermarks of the listed nodes that are
/// alive. Whenever one of those is unknown — no global watermark received since the
/// worker started, a listed live node unreachable or without a local watermark — the
/// watermark is kept where it is rather than moved on a guess.
pub fn synced_global_watermark(
    own_local: Option<i64>,
    received_global: Option<i64>,
    peers: &[(String, PeerWatermark)],
) -> SyncedWatermark {
    let Some(received) = received_global else {
        return SyncedWatermark::Keep(
            "no pgq.global-watermark event received since the worker started".to_string(),
        );
    };
    let Some(own) = own_local else {
        return SyncedWatermark::Keep("this node has no local watermark".to_string());
    };
    let mut wm = own.min(received);
    for (name, p) in peers {
        match p {
            PeerWatermark::Known(Some(w)) => wm = wm.min(*w),
            PeerWatermark::Known(None) => {
                return SyncedWatermark::Keep(format!("node {name} has no local watermark"))
            }
            PeerWatermark::Dead | PeerWatermark::NotMember => {}
            PeerWatermark::Unreachable(why) => {
                return SyncedWatermark::Keep(format!("node {name} is not reachable: {why}"))
            }
        }
    }
    SyncedWatermark::Set(wm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_wakes() {
        let mut w = PendingWakes::new();
        assert!(w.take().is_empty());
        w.add("q1");
        w.add("q2");
        w.add("q1");
        assert_eq!(w.take(), vec!["q1".to_string(), "q2".to_string()]);
        // taken: the next transaction starts with none
        assert!(w.take().is_empty());
        w.add("q3");
        w.clear();
        assert!(w.take().is_empty());
        // names are compared exactly (queue names are case-sensitive)
        w.add("Q");
        w.add("q");
        assert_eq!(w.take().len(), 2);
    }

    #[test]
    fn verdicts() {
        assert_eq!(batch_verdict(5, 6, Some(5)), BatchVerdict::Apply);
        assert_eq!(batch_verdict(5, 6, Some(6)), BatchVerdict::AlreadyDone);
        assert_eq!(
            batch_verdict(5, 6, Some(3)),
            BatchVerdict::Lost("Lost position: batch 5..6, dst has 3".into())
        );
        assert_eq!(
            batch_verdict(5, 6, None),
            BatchVerdict::Lost("dst_tick NULL?".into())
        );
    }

    #[test]
    fn branch_ticks() {
        assert_eq!(branch_tick(Some(6), 5, 6), BranchTick::Present);
        assert_eq!(branch_tick(Some(5), 5, 6), BranchTick::Missing);
        assert!(
            matches!(branch_tick(Some(2), 5, 6), BranchTick::Wrong(m) if m == "is_batch_done: last branch tick = 2, expected 5 or 6")
        );
        assert!(matches!(branch_tick(None, 5, 6), BranchTick::Wrong(_)));
    }

    #[test]
    fn cascade_events() {
        assert_eq!(
            cascade_event(
                "q",
                "pgq.location-info",
                Some("n2"),
                Some("q"),
                Some("dbname=x"),
                Some("false")
            ),
            Ok(CascadeEvent::LocationInfo {
                node: "n2".into(),
                location: Some("dbname=x".into()),
                dead: false
            })
        );
        assert_eq!(
            cascade_event(
                "q",
                "pgq.location-info",
                Some("n2"),
                Some("q"),
                None,
                Some("true")
            ),
            Ok(CascadeEvent::LocationInfo {
                node: "n2".into(),
                location: None,
                dead: true
            })
        );
        assert_eq!(
            cascade_event(
                "q",
                "pgq.global-watermark",
                Some("42"),
                Some("q"),
                None,
                None
            ),
            Ok(CascadeEvent::GlobalWatermark(42))
        );
        assert!(cascade_event(
            "q",
            "pgq.global-watermark",
            Some("x"),
            Some("q"),
            None,
            None
        )
        .is_err());
        assert_eq!(
            cascade_event(
                "q",
                "pgq.unregister-location",
                Some("n3"),
                Some("q"),
                None,
                None
            ),
            Ok(CascadeEvent::UnregisterLocation { node: "n3".into() })
        );
        assert_eq!(
            cascade_event(
                "q",
                "pgq.location-info",
                Some("n"),
                Some("other"),
                None,
                None
            ),
            Err("bad event in queue: pgq.location-info for queue other".into())
        );
        assert_eq!(
            cascade_event("q", "pgq.frobnicate", Some("n"), Some("q"), None, None),
            Err("unknown cascade event: pgq.frobnicate".into())
        );
        assert_eq!(
            cascade_event("q", "pgq.tick-id", Some("17"), Some("p"), None, None),
            Ok(CascadeEvent::TickId {
                part_queue: "p".into(),
                tick: 17
            })
        );
        assert_eq!(
            cascade_event("q", "pgq.tick-id", Some("17"), Some("q"), None, None),
            Err("pgq.tick-id event for the node's own queue q".into())
        );
        assert!(cascade_event("q", "pgq.tick-id", Some("x"), Some("p"), None, None).is_err());
        assert!(cascade_event("q", "pgq.tick-id", Some("1"), None, None, None).is_err());
    }

    #[test]
    fn node_duties() {
        use crate::logic::node::NodeType as T;
        let b = duties(T::Branch, None, None).unwrap();
        assert!(b.create_tick && b.apply_tick_event && !b.wait_behind);
        assert_eq!(b.copy_to, CopyTo::OwnQueue);
        let l = duties(T::Leaf, None, None).unwrap();
        assert!(!l.wait_behind && !l.create_tick && !l.send_tick_event && !l.apply_tick_event);
        assert_eq!(l.copy_to, CopyTo::Nowhere);
        let m = duties(T::Leaf, Some("c"), Some(T::Root)).unwrap();
        assert!(m.send_tick_event && !m.create_tick && !m.wait_behind);
        assert_eq!(m.copy_to, CopyTo::Combined("c".into()));
        let w = duties(T::Leaf, Some("c"), Some(T::Branch)).unwrap();
        assert!(w.wait_behind && !w.send_tick_event && !w.apply_tick_event);
        assert_eq!(w.copy_to, CopyTo::Nowhere);
        assert!(duties(T::Leaf, Some("c"), None).is_err());
        assert!(duties(T::Leaf, Some("c"), Some(T::Leaf)).is_err());
        assert!(duties(T::Branch, Some("c"), Some(T::Root)).is_err());
        assert!(duties(T::Root, None, None).is_err());
    }

    #[test]
    fn combined_copy_filter() {
        assert!(goes_to_combined(b"I:id"));
        assert!(goes_to_combined(b"U"));
        assert!(goes_to_combined(b"R"));
        assert!(goes_to_combined(b"EXECUTE"));
        assert!(!goes_to_combined(b"pgq.tick-id"));
        assert!(!goes_to_combined(b"pgq.location-info"));
        assert!(!goes_to_combined(b"londiste.update-seq"));
        assert!(!goes_to_combined(b"londiste.add-table"));
        assert!(behind_done(Some(5), 5));
        assert!(behind_done(Some(9), 5));
        assert!(!behind_done(Some(4), 5));
        assert!(!behind_done(None, 5));
    }

    struct Here;
    impl LocalObjects for Here {
        fn local_table(&self, name: &str) -> Option<String> {
            (name == "public.t1").then(|| "public.t1_local".to_string())
        }
        fn local_sequence(&self, name: &str) -> bool {
            name == "public.s1"
        }
        fn local_destination(&self, name: &str) -> bool {
            name == "public.t1_local"
        }
        fn exists(&self, key: &str, name: &str) -> Result<bool, String> {
            Ok(key == "need-schema" && name == "app")
        }
    }

    #[test]
    fn exec_attrs_and_decisions() {
        assert_eq!(
            exec_decision(&ExecAttrs::parse(None).unwrap(), &Here),
            Ok(ExecDecision::Run(vec![]))
        );
        let a = ExecAttrs::parse(Some("local-table=t1&need-schema=app")).unwrap();
        assert_eq!(
            exec_decision(&a, &Here),
            Ok(ExecDecision::Run(vec![(
                "t1".into(),
                "public.t1_local".into()
            )]))
        );
        let a = ExecAttrs::parse(Some("local-table=t2%2Ct3")).unwrap();
        assert_eq!(
            a.attrs,
            vec![(
                "local-table".to_string(),
                vec!["t2".to_string(), "t3".to_string()]
            )]
        );
        assert_eq!(exec_decision(&a, &Here), Ok(ExecDecision::Skip));
        let a = ExecAttrs::parse(Some("local-table=t1%2Ct2")).unwrap();
        assert!(exec_decision(&a, &Here)
            .unwrap_err()
            .contains("only partly"));
        assert!(ExecAttrs::parse(Some("bogus=1")).is_err());
        let a = ExecAttrs::parse(Some("Local-Sequence=s1")).unwrap();
        assert_eq!(
            exec_decision(&a, &Here),
            Ok(ExecDecision::Run(vec![("s1".into(), "public.s1".into())]))
        );
    }

    #[test]
    fn substitution() {
        let s = substitute(
            "alter table @t1@ add c int; select 1 from @t1@",
            &[("t1".into(), "public.T1".into())],
            |n| format!("<{n}>"),
        );
        assert_eq!(
            s,
            "alter table <public.T1> add c int; select 1 from <public.T1>"
        );
        assert_eq!(substitute("x @y@", &[], |n| n.to_string()), "x @y@");
    }

    #[test]
    fn delays() {
        assert_eq!(retry_delay(1), SEC);
        assert_eq!(retry_delay(2), 2 * SEC);
        assert_eq!(retry_delay(4), 8 * SEC);
        assert_eq!(retry_delay(7), 60 * SEC);
        assert_eq!(retry_delay(100), 60 * SEC);
        assert_eq!(retry_delay(0), SEC);
        // an unreachable provider is retried at least every 10 s
        assert_eq!(retry_delay_after(3, "08006"), 4 * SEC);
        assert_eq!(retry_delay_after(5, "08001"), 10 * SEC);
        assert_eq!(retry_delay_after(9, "57P01"), 10 * SEC);
        assert_eq!(retry_delay_after(9, "23505"), 60 * SEC);
    }

    #[test]
    fn exec_attrs_come_from_the_scripts_meta_comments() {
        let sql = "\n--*-- Local-Table: public.a,\n--*--   public.b\n--*-- need-schema: s1\nalter table @a@ add c int;\n--*-- Local-Table: late";
        let a = ExecAttrs::from_script(sql).unwrap();
        assert_eq!(
            a.attrs,
            vec![
                (
                    "local-table".to_string(),
                    vec!["public.a".to_string(), "public.b".to_string()]
                ),
                ("need-schema".to_string(), vec!["s1".to_string()]),
            ]
        );
        let enc = a.encode().unwrap();
        assert_eq!(ExecAttrs::parse(Some(&enc)).unwrap(), a);
        assert_eq!(
            ExecAttrs::from_script("create table x ();")
                .unwrap()
                .encode(),
            None
        );
        assert!(ExecAttrs::from_script("--*-- Bogus: x\nselect 1").is_err());
        assert!(ExecAttrs::from_script("--*-- no colon\nselect 1").is_err());
    }
    #[test]
    fn copy_phases_parse() {
        assert_eq!(CopyPhase::parse(None), Ok(CopyPhase::Waiting));
        assert_eq!(CopyPhase::parse(Some("?")), Ok(CopyPhase::Ok));
        assert_eq!(CopyPhase::parse(Some("ok")), Ok(CopyPhase::Ok));
        assert_eq!(CopyPhase::parse(Some("in-copy")), Ok(CopyPhase::InCopy));
        assert_eq!(
            CopyPhase::parse(Some("wanna-sync:123")),
            Ok(CopyPhase::WannaSync(123))
        );
        assert_eq!(
            CopyPhase::parse(Some("do-sync:7")),
            Ok(CopyPhase::DoSync(7))
        );
        assert!(CopyPhase::parse(Some("do-sync:x")).is_err());
        assert!(CopyPhase::parse(Some("lead")).is_err());
        assert!(CopyPhase::parse(Some("catching-up")).unwrap().copying());
        assert!(!CopyPhase::parse(Some("ok")).unwrap().copying());
        assert!(!CopyPhase::Waiting.copying());
    }

    #[test]
    fn hand_off_rules() {
        let t = |v: &[(&'static str, Option<&'static str>)]| v.to_vec();
        assert_eq!(
            hand_off(t(&[("a", Some("ok")), ("b", None)]), 10),
            HandOff::Apply
        );
        assert_eq!(
            hand_off(t(&[("a", Some("catching-up"))]), 10),
            HandOff::Apply
        );
        // announced for a later tick: the replay worker is behind, it applies on
        assert_eq!(
            hand_off(t(&[("a", Some("wanna-sync:11"))]), 10),
            HandOff::Apply
        );
        assert_eq!(
            hand_off(
                t(&[("b", Some("wanna-sync:10")), ("a", Some("wanna-sync:9"))]),
                10
            ),
            HandOff::DoSync(vec![
                ("a".into(), "wanna-sync:9".into()),
                ("b".into(), "wanna-sync:10".into())
            ])
        );
        // a copy worker still applying up to its tick: nothing else happens
        assert_eq!(
            hand_off(
                t(&[("a", Some("wanna-sync:9")), ("b", Some("do-sync:10"))]),
                10
            ),
            HandOff::Wait
        );
    }

    #[test]
    fn catch_up_rules() {
        use CopyPhase::{CatchingUp, DoSync, InCopy, WannaSync};
        assert_eq!(catch_up(CatchingUp, 5, false), Ok(CatchUp::Apply));
        assert_eq!(catch_up(CatchingUp, 5, true), Ok(CatchUp::Announce));
        assert_eq!(catch_up(WannaSync(5), 5, false), Ok(CatchUp::Wait));
        assert!(catch_up(WannaSync(5), 6, false).is_err());
        assert_eq!(catch_up(DoSync(8), 5, true), Ok(CatchUp::Apply));
        assert_eq!(catch_up(DoSync(8), 8, false), Ok(CatchUp::HandOver));
        assert!(catch_up(DoSync(8), 9, false).is_err());
        assert!(catch_up(InCopy, 9, false).is_err());
        assert!(catch_up(CopyPhase::Ok, 9, false).is_err());
    }

    #[test]
    fn copy_consumer_names() {
        let c = copy_consumer("n1_worker", "public.t1");
        assert_eq!(c, "n1_worker.copy.public.t1");
        assert_eq!(copy_consumer_table("n1_worker", &c), Some("public.t1"));
        assert_eq!(copy_consumer_table("n1_worker", "n1_worker"), None);
        assert_eq!(copy_consumer_table("n1_worker", "n1_worker.copy."), None);
        assert_eq!(copy_consumer_table("n2_worker", &c), None);
    }

    #[test]
    fn sync_watermark_attribute() {
        assert_eq!(sync_watermark_nodes(None).unwrap(), Vec::<String>::new());
        assert_eq!(
            sync_watermark_nodes(Some("")).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            sync_watermark_nodes(Some("sync_watermark=n1,n2")).unwrap(),
            vec!["n1", "n2"]
        );
        assert_eq!(
            sync_watermark_nodes(Some("x=1&sync_watermark=%20n1%2C+n2,,n1&y")).unwrap(),
            vec!["n1", "n2"]
        );
        assert_eq!(
            sync_watermark_nodes(Some("sync_watermark=a&sync_watermark=b")).unwrap(),
            vec!["b"]
        );
        assert_eq!(
            sync_watermark_nodes(Some("sync_watermark")).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            sync_watermark_nodes(Some("other=n1")).unwrap(),
            Vec::<String>::new()
        );
        assert!(sync_watermark_nodes(Some("sync_watermark=%zz")).is_err());
    }

    #[test]
    fn published_watermark_rules() {
        // the local watermark, never past the batch
        assert_eq!(published_watermark(Some(5), false, 7, 9), 5);
        assert_eq!(published_watermark(Some(12), false, 7, 9), 9);
        assert_eq!(published_watermark(None, false, 7, 9), 9);
        // sync_watermark: the batch's start, whatever the subtree needs
        assert_eq!(published_watermark(Some(5), true, 7, 9), 7);
        assert_eq!(published_watermark(None, true, 7, 9), 7);
    }

    #[test]
    fn synced_watermark_is_the_lowest_known() {
        use PeerWatermark::*;
        let p = |n: &str, w| (n.to_string(), w);
        assert_eq!(
            synced_global_watermark(Some(10), Some(20), &[p("b", Known(Some(15)))]),
            SyncedWatermark::Set(10)
        );
        assert_eq!(
            synced_global_watermark(Some(10), Some(8), &[p("b", Known(Some(15)))]),
            SyncedWatermark::Set(8)
        );
        assert_eq!(
            synced_global_watermark(
                Some(10),
                Some(20),
                &[p("b", Known(Some(4))), p("c", Known(Some(6)))]
            ),
            SyncedWatermark::Set(4)
        );
        // dead and unknown nodes do not hold it
        assert_eq!(
            synced_global_watermark(
                Some(10),
                Some(20),
                &[p("b", Dead), p("c", NotMember), p("d", Known(Some(12)))]
            ),
            SyncedWatermark::Set(10)
        );
        assert_eq!(
            synced_global_watermark(Some(10), Some(20), &[]),
            SyncedWatermark::Set(10)
        );
        // anything unknown keeps the watermark where it is
        assert!(matches!(
            synced_global_watermark(Some(10), None, &[p("b", Known(Some(4)))]),
            SyncedWatermark::Keep(_)
        ));
        assert!(matches!(
            synced_global_watermark(None, Some(20), &[]),
            SyncedWatermark::Keep(_)
        ));
        assert!(matches!(
            synced_global_watermark(Some(10), Some(20), &[p("b", Known(None))]),
            SyncedWatermark::Keep(_)
        ));
        match synced_global_watermark(
            Some(10),
            Some(20),
            &[
                p("b", Known(Some(4))),
                p("c", Unreachable("refused".into())),
            ],
        ) {
            SyncedWatermark::Keep(why) => {
                assert!(why.contains("node c") && why.contains("refused"))
            }
            other => panic!("{other:?}"),
        }
    }
}
