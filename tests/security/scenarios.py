#!/usr/bin/python3
"""tests/security/scenarios.py HOST PORT SERVER_LOG — issue 8's exploits as scenarios.

run.sh starts a preloaded cluster (ticks every 100 ms, maintenance every 1 s) and calls
this. Every scenario has its own database (with a control queue `ctl` that must keep
ticking) and its own attacking roles, prints PASS/FAIL with a reason, and asserts at
the end that no attacking role became superuser and that `ctl` still ticks. Where the
exploit runs a payload, the payload is a function that does ALTER ROLE <attacker>
SUPERUSER only when it runs as a superuser (it logs 'pgq-sec payload <tag> ran as
<user>' either way); a control step runs it once as a superuser in a rolled-back
transaction, so a PASS cannot come from a payload that never escalates.

Scenarios:
  1a  database owner creates public.||(text, integer); the worker's table rotation
      (maint_rotate_tables_step1: text || integer) must not run it
  1b  the same by a plain user, where public is CREATE-able by PUBLIC (PG <= 14 upgrades)
  1c  database owner: schema evil with ||(text, integer), ALTER DATABASE SET
      search_path = evil, pg_catalog, public, worker restarted by the harness
  1d  as 1c, but shadowing =(text, text) (queue_name = ..., current_setting() = 'on')
  2a  pgq_admin member puts its own pg_temp_N.esc(text) into queue_extra_maint: not
      called, a WARNING naming it in the server log
  2b  the same with a function in a normal schema owned by the attacker
  2c  the same as a londiste_writer member
  3a  pgq_admin: crafted queue_tick_seq + pgq.grant_perms() (SECURITY DEFINER)
  3b  pgq_admin: crafted queue_event_seq + pgq.grant_perms()
  3c  pgq_admin: crafted queue_data_pfx + pgq.drop_queue() (SECURITY DEFINER)
  3d  pgq_admin: crafted queue_data_pfx, then a superuser runs pgq.tune_storage()
  3e  pgq_admin: crafted queue_data_pfx reaching the worker's rotation (LOCK / TRUNCATE)
  3f  pgq_admin: crafted queue_data_pfx, a superuser consumer reads the batch with
      get_batch_events, get_batch_cursor and the SQL of batch_event_sql
  3g  londiste_writer member: crafted queue_tick_seq + grant_perms, crafted
      queue_data_pfx + drop_queue
  3h  pgq_admin alone: its own consumer and batch, crafted queue_data_pfx, then
      event_retry / batch_retry (SECURITY DEFINER, they run the batch query)
  4a  unprivileged user: DROP DATABASE / ALTER DATABASE RENAME / SET TABLESPACE /
      CREATE DATABASE TEMPLATE of the victim (all fail), three rounds: same ticker pid,
      ticks continue within 2 s after each
  4b  legitimate paths: superuser and database owner DROP DATABASE of a database with
      a running worker succeed
  5a  connect-only user holds pg_advisory_lock(8099567109638021995): ticks continue;
      pg_terminate_backend(worker) ends it within 1 s
  5b  harness holds LOCK TABLE pgq.tick IN ACCESS EXCLUSIVE MODE until the worker waits
      on it: pg_terminate_backend(worker) ends it within 1 s; after the release the
      launcher restarts it and ticking resumes
  6a  pgq_admin gives one queue an infinite tick time (4-argument pgq.ticker):
      other queues keep ticking
  6b  pgq_admin sets a malformed queue_tick_seq on one queue: other queues keep
      ticking, the problem is reported (worker_status.last_error or the server log)
  7   pgq.worker_status(): a plain user sees the launcher and its own database only;
      superuser and pg_monitor members see every row

Env: ONLY="1a 3c ..." runs a subset.
"""

import os
import re
import sys
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import pgqclient  # noqa: E402
from pgqclient import wait_until  # noqa: E402

HOST, PORT, SERVER_LOG = sys.argv[1], sys.argv[2], sys.argv[3]
ONLY = os.environ.get("ONLY", "").split()
TICKER_LOCK_KEY = 8099567109638021995
T0 = time.time()
RESULTS = []

# ------------------------------------------------------------------------- plumbing


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def connect(db, user="postgres", harness=True):
    """Harness sessions pin search_path (so the attackers' operators never run in
    them); attackers get whatever the database gives them."""
    opts = "-c search_path=pg_catalog,pg_temp" if harness else ""
    return pgqclient.connect(host=HOST, port=PORT, dbname=db, user=user, options=opts,
                             application_name="pgq-sec-" + ("harness" if harness else user),
                             autocommit=True)


_CONNS = {}


def hc(db):
    """The cached superuser harness connection of a database."""
    c = _CONNS.get(db)
    if c is None or c.closed:
        c = _CONNS[db] = connect(db)
    return c


def close_db(db):
    c = _CONNS.pop(db, None)
    if c is not None and not c.closed:
        c.close()


def rows(db, sql, args=None):
    return pgqclient.rows(hc(db), sql, args)


def one(db, sql, args=None):
    return pgqclient.one(hc(db), sql, args)


def run_as(db, user, sql, args=None, conn=None):
    """Run SQL as an attacking role; '' on success, else the error text."""
    c = conn or connect(db, user, harness=False)
    try:
        with c.cursor() as cur:
            cur.execute(sql, args)
        return ""
    except psycopg2.Error as e:
        if not c.autocommit:
            c.rollback()
        return (e.pgerror or str(e)).strip().splitlines()[0]
    finally:
        if conn is None:
            c.close()


def is_super(role):
    return one("postgres", "select rolsuper from pg_roles where rolname = %s", (role,))


def make_role(name, *memberof, extra=""):
    rows("postgres", f'create role "{name}" login {extra}')
    for g in memberof:
        rows("postgres", f'grant "{g}" to "{name}"')


def max_tick(db, queue="ctl"):
    return one(db, "select coalesce(max(t.tick_id), 0) from pgq.tick t join pgq.queue q "
                   "on q.queue_id = t.tick_queue where q.queue_name = %s", (queue,))


def ticker_pid(db):
    return one("postgres", "select pid from pg_stat_activity where backend_type = 'pgq ticker' "
                           "and datname = %s", (db,))


def worker_row(db):
    r = rows("postgres", "select pid, ticks, restarts, last_error from pgq.worker_status() "
                         "where database = %s", (db,))
    return r[0] if r else None


def ticking(db, queue="ctl", seconds=5.0, more=3):
    """True once `queue` got `more` new ticks within `seconds`."""
    t0 = max_tick(db, queue)
    return bool(wait_until(seconds, lambda: max_tick(db, queue) >= t0 + more))


def rotation_state(db, queue):
    return one(db, "select queue_cur_table || '@' || queue_switch_time from pgq.queue "
                   "where queue_name = %s", (queue,))


def wait_rotations(db, queue, n, seconds, stop=None):
    """Wait for n table switches of queue (or until stop() is true); returns how many."""
    seen, last = 0, rotation_state(db, queue)
    end = time.time() + seconds
    while time.time() < end and seen < n:
        if stop and stop():
            break
        time.sleep(0.1)
        cur = rotation_state(db, queue)
        if cur != last:
            seen, last = seen + 1, cur
    return seen


def log_pos():
    return os.path.getsize(SERVER_LOG)


def log_since(pos):
    with open(SERVER_LOG, "rb") as f:
        f.seek(pos)
        return f.read().decode("utf-8", "replace")


def payload_runs(pos, tag):
    """Users the payload `tag` ran as since log position pos."""
    out = []
    for line in log_since(pos).splitlines():
        key = f"pgq-sec payload {tag} ran as "
        if key in line:
            out.append(line.split(key, 1)[1].split()[0])
    return out


def payload_fn(qualname, sig, role, tag, ret_type, body_ret):
    """CREATE FUNCTION text: ALTER ROLE role SUPERUSER when run by a superuser."""
    return f"""create function {qualname}({sig}) returns {ret_type} language plpgsql as $f$
begin
  raise log 'pgq-sec payload {tag} ran as %', current_user;
  if exists (select 1 from pg_catalog.pg_roles r
              where r.rolname operator(pg_catalog.=) current_user and r.rolsuper) then
    alter role "{role}" superuser;
  end if;
  {body_ret}
end $f$"""


def control(db, call_sql, role):
    """Run the payload once as a superuser in a rolled-back transaction: it must
    escalate there, or the scenario proves nothing."""
    c = connect(db)
    c.autocommit = False
    try:
        with c.cursor() as cur:
            cur.execute(call_sql)
            cur.execute("select rolsuper from pg_roles where rolname = %s", (role,))
            ok = cur.fetchone()[0]
        return ok
    except psycopg2.Error as e:
        log(f"control call failed: {e}")
        return False
    finally:
        c.rollback()
        c.close()


def setup_db(db, owner=None):
    """A database with the extension and a control queue that ticks ~10 times a second
    (an idle queue ticks every max(ticker_max_lag / 2, ...) as in the original)."""
    rows("postgres", f'create database "{db}"' + (f' owner "{owner}"' if owner else ""))
    rows(db, "create extension pgq")
    rows(db, "select pgq.create_queue('ctl')")
    rows(db, "select pgq.set_queue_config('ctl', 'ticker_idle_period', '100 milliseconds')")
    rows(db, "select pgq.set_queue_config('ctl', 'ticker_max_lag', '100 milliseconds')")
    if not wait_until(10, lambda: ticker_pid(db) and max_tick(db) >= 2):
        log(f"WARNING: no worker ticks in {db} after 10 s: {worker_row(db)}")


def make_queue(db, name, rotation=None, idle=None, max_lag=None):
    rows(db, "select pgq.create_queue(%s)", (name,))
    if max_lag:
        rows(db, "select pgq.set_queue_config(%s, 'ticker_max_lag', %s)", (name, max_lag))
    if rotation:
        rows(db, "select pgq.set_queue_config(%s, 'rotation_period', %s)", (name, rotation))
    if idle:
        rows(db, "select pgq.set_queue_config(%s, 'ticker_idle_period', %s)", (name, idle))


def queue_col(db, queue, col):
    return one(db, f"select {col} from pgq.queue where queue_name = %s", (queue,))


def set_queue_col(db, queue, col, value):
    rows(db, f"update pgq.queue set {col} = %s where queue_name = %s", (value, queue))


class Scenario:
    """Collects problems; finish() adds the common checks and prints PASS/FAIL."""

    def __init__(self, name, db, attackers):
        self.name, self.db, self.attackers = name, db, attackers
        self.problems, self.notes = [], []

    def bad(self, msg):
        self.problems.append(msg)

    def note(self, msg):
        self.notes.append(msg)

    def finish(self, check_ticks=True):
        for r in self.attackers:
            if is_super(r):
                self.bad(f"role {r} is SUPERUSER now")
        if check_ticks and self.db:
            if not ticking(self.db):
                self.bad(f"queue ctl of {self.db} stopped ticking (worker: {worker_row(self.db)})")
            else:
                self.note("ctl keeps ticking")
        ok = not self.problems
        text = "; ".join(self.problems + self.notes)
        line = f"{'PASS' if ok else 'FAIL'} {self.name}: {text}"
        RESULTS.append(line)
        print(line, flush=True)
        return ok


def ensure_db(db):
    if not one("postgres", "select 1 from pg_database where datname = %s", (db,)):
        setup_db(db)


def prepare(name, db, roles, member_of=(), own_db=False, shared_db=False, queues=()):
    """A scenario's prologue: the attacking roles (members of member_of), its database
    (owned by the first role with own_db; shared_db: made by the first scenario that
    needs it), the queues; returns the Scenario."""
    for r in roles:
        make_role(r, *member_of)
    if shared_db:
        ensure_db(db)
    else:
        setup_db(db, owner=roles[0] if own_db else None)
    for q in queues:
        make_queue(db, q)
    return Scenario(name, db, list(roles))


def scenario(name):
    def wrap(fn):
        fn.scenario_name = name
        SCENARIOS.append(fn)
        return fn
    return wrap


SCENARIOS = []

# ---------------------------------------------------------------- 1: search_path


def concat_operator_exploit(s, attacker, schema, restart, op="||"):
    """Common body of 1a-1d: attacker defines the operator, the worker rotates q1."""
    db = s.db
    make_queue(db, "q1", rotation="1 second")
    # the worker has rotated q1 before (its plans are cached): the realistic order
    if wait_rotations(db, "q1", 1, 10) < 1:
        s.bad("no rotation of q1 before the attack")
    tag = f"s{s.name}"
    if op == "||":
        fn = payload_fn(f"{schema}.sec_cat", "a text, b integer", attacker, tag, "text",
                        "return pg_catalog.textcat(a, b::text);")
        opdef = (f"create operator {schema}.|| (leftarg = text, rightarg = integer, "
                 f"function = {schema}.sec_cat)")
        call = f"select {schema}.sec_cat('x', 1)"
    else:
        fn = payload_fn(f"{schema}.sec_eq", "a text, b text", attacker, tag, "boolean",
                        "return pg_catalog.texteq(a, b);")
        opdef = (f"create operator {schema}.= (leftarg = text, rightarg = text, "
                 f"function = {schema}.sec_eq)")
        call = f"select {schema}.sec_eq('x', 'x')"
    pos = log_pos()
    c = connect(db, attacker, harness=False)
    for sql in ([f"create schema {schema}"] if schema != "public" else []) + [fn, opdef]:
        err = run_as(db, attacker, sql, conn=c)
        if err:
            s.bad(f"attacker could not run [{sql.split('(')[0]}]: {err}")
    if restart:
        err = run_as(db, attacker, f'alter database "{db}" set search_path = {schema}, pg_catalog, public',
                     conn=c)
        if err:
            s.bad(f"ALTER DATABASE SET search_path failed: {err}")
        old = ticker_pid(db)
        rows("postgres", "select pg_terminate_backend(%s)", (old,))
        new = wait_until(15, lambda: (lambda p: p if p and p != old else None)(ticker_pid(db)))
        if not new:
            s.bad(f"worker {old} not restarted within 15 s")
        else:
            s.note(f"worker restarted {old} -> {new}")
    c.close()
    n = wait_rotations(db, "q1", 2, 12, stop=lambda: is_super(attacker))
    ran = payload_runs(pos, tag)
    if is_super(attacker):
        s.bad(f"ESCALATED: the payload ran as {sorted(set(ran))} during rotation")
    elif ran:
        s.note(f"payload ran as {sorted(set(ran))} (not a superuser)")
    if n < 1 and not is_super(attacker):
        s.bad(f"no rotation of q1 after the attack: exploit path not exercised (worker: {worker_row(db)})")
    else:
        s.note(f"{n} rotation(s) after the attack")
    if not control(db, call, attacker):
        s.bad("control: the payload does not escalate even when a superuser runs it")


def operator_scenario(name, role, own_db, schema, restart, op, note, setup_sql=None):
    """1a-1d: one attacking role, its database sec<name>, concat_operator_exploit."""
    def run():
        s = prepare(name, f"sec{name}", [role], own_db=own_db)
        if setup_sql:
            rows(s.db, setup_sql)
        concat_operator_exploit(s, role, schema, restart=restart, op=op)
        s.note(note)
        return s.finish()
    run.__name__ = f"s{name}"
    return scenario(name)(run)


operator_scenario("1a", "sec1a_owner", True, "public", False, "||",
                  "database owner, public.||(text, integer)")
operator_scenario("1b", "sec1b_plain", False, "public", False, "||",
                  "plain user, CREATE on public granted to PUBLIC",
                  setup_sql="grant create on schema public to public")
operator_scenario("1c", "sec1c_owner", True, "evil", True, "||",
                  "database owner, evil.||(text, integer) + ALTER DATABASE SET search_path")
operator_scenario("1d", "sec1d_owner", True, "evil", True, "=",
                  "database owner, evil.=(text, text) + ALTER DATABASE SET search_path")

# --------------------------------------------------------------- 2: extra_maint


def extra_maint_exploit(s, attacker, queue, schema):
    """schema None: the attacker's own temp schema (its session stays open)."""
    db = s.db
    make_queue(db, queue)
    tag = f"s{s.name}"
    c = connect(db, attacker, harness=False)
    if schema is None:
        err = run_as(db, attacker, payload_fn("pg_temp.esc", "q text", attacker, tag, "integer",
                                              "return 0;"), conn=c)
        with c.cursor() as cur:
            cur.execute("select nspname from pg_namespace where oid = pg_my_temp_schema()")
            r = cur.fetchone()
        fname = f"{r[0]}.esc" if r else "pg_temp.esc"
    else:
        err = run_as(db, attacker, payload_fn(f"{schema}.esc", "q text", attacker, tag, "integer",
                                              "return 0;"), conn=c)
        fname = f"{schema}.esc"
    if err:
        s.bad(f"attacker could not create the function: {err}")
    pos = log_pos()
    maint0 = one("postgres", "select last_maint from pgq.worker_status() where database = %s", (db,))
    err = run_as(db, attacker, "update pgq.queue set queue_extra_maint = array[%s] where queue_name = %s",
                 (fname, queue), conn=c)
    if err:
        s.bad(f"attacker could not set queue_extra_maint: {err}")
    short = fname.split(".")[-1]

    def warned():
        # the name may come back quoted or qualified: look for the function name as a word
        return [ln for ln in log_since(pos).splitlines()
                if "WARNING" in ln and re.search(r"\b" + re.escape(short) + r"\b", ln)]

    def last_maint():
        return one("postgres", "select last_maint from pgq.worker_status() where database = %s", (db,))
    # two maintenance runs after the update
    wait_until(2.5, lambda: last_maint() != maint0)
    m1 = last_maint()
    wait_until(2.5, lambda: last_maint() != m1)
    wait_until(1.5, lambda: is_super(attacker) or warned())
    ran = payload_runs(pos, tag)
    warnings = warned()
    if is_super(attacker):
        s.bad(f"ESCALATED: {fname} ran as {sorted(set(ran))} from queue_extra_maint")
    elif ran:
        s.bad(f"{fname} was called (as {sorted(set(ran))})")
    if not warnings:
        s.bad(f"no WARNING naming {fname} in the server log")
    else:
        s.note(f"log: {warnings[0].split('WARNING:', 1)[-1].strip()[:120]}")
    if not control(db, f"select {fname}('{queue}')", attacker):
        s.bad("control: the payload does not escalate even when a superuser runs it")
    c.close()
    set_queue_col(db, queue, "queue_extra_maint", None)


def extra_maint_scenario(name, role, group, schema, note):
    """2a-2c: one attacking role in the shared database sec2, its queue q<name>, its
    function in its temp schema (schema None) or in a schema it owns."""
    def run():
        s = prepare(name, "sec2", [role], [group], shared_db=True)
        if schema:
            rows(s.db, f'create schema {schema} authorization "{role}"')
        extra_maint_exploit(s, role, f"q{name}", schema)
        s.note(note)
        return s.finish()
    run.__name__ = f"s{name}"
    return scenario(name)(run)


extra_maint_scenario("2a", "sec2a_admin", "pgq_admin", None, "pgq_admin member, own temp-schema function")
extra_maint_scenario("2b", "sec2b_admin", "pgq_admin", "sec2b",
                     "pgq_admin member, function in a schema it owns")
extra_maint_scenario("2c", "sec2c_lw", "londiste_writer", "sec2c",
                     "londiste_writer member, function in a schema it owns")

# ------------------------------------------------------------ 3: stored names


# crafted stored names: a sequence name inside GRANT ... ON SEQUENCE <name> TO ...,
# a table prefix inside DROP TABLE <prefix>_N
CRAFT_SEQ = '{orig} TO public; ALTER ROLE "{role}" SUPERUSER; --'
CRAFT_PFX = 'IF EXISTS {orig} CASCADE; ALTER ROLE "{role}" SUPERUSER; --'


def stored_name_via_definer(s, attacker, queue, col, crafted, call):
    """Attacker: UPDATE pgq.queue SET col = crafted, call the SECURITY DEFINER function,
    put the value back, all in one transaction (the worker never sees it)."""
    db = s.db
    orig = queue_col(db, queue, col)
    value = crafted.format(orig=orig, role=attacker)
    c = connect(db, attacker, harness=False)
    c.autocommit = False
    err = run_as(db, attacker, f"update pgq.queue set {col} = %s where queue_name = %s",
                 (value, queue), conn=c)
    if err:
        s.bad(f"attacker could not set {col}: {err}")
        c.close()
        return
    err = run_as(db, attacker, call, conn=c)
    if not err:
        run_as(db, attacker, f"update pgq.queue set {col} = %s where queue_name = %s", (orig, queue), conn=c)
        c.commit()
        s.note(f"{call} accepted the crafted {col}")
    else:
        s.note(f"{call} refused: {err[:100]}")
    c.close()
    if is_super(attacker):
        s.bad(f"ESCALATED through {call} with {col} = {value!r}")


def stored_name_scenario(name, col, crafted, call):
    """3a-3c: a pgq_admin member, its own queue q<name>, one crafted column + call."""
    def run():
        r, q = f"sec{name}_admin", f"q{name}"
        s = prepare(name, "sec3", [r], ["pgq_admin"], shared_db=True, queues=[q])
        stored_name_via_definer(s, r, q, col, crafted, call.format(q=q))
        return s.finish()
    run.__name__ = f"s{name}"
    return scenario(name)(run)


stored_name_scenario("3a", "queue_tick_seq", CRAFT_SEQ, "select pgq.grant_perms('{q}')")
stored_name_scenario("3b", "queue_event_seq", CRAFT_SEQ, "select pgq.grant_perms('{q}')")
# every DROP TABLE of drop_queue starts with the prefix: the first drops the queue's
# tables, IF EXISTS keeps the later ones valid, so drop_queue commits
stored_name_scenario("3c", "queue_data_pfx", CRAFT_PFX, "select pgq.drop_queue('{q}')")


@scenario("3d")
def s3d():
    db, r = "sec3", "sec3d_admin"
    s = prepare("3d", db, [r], ["pgq_admin"], shared_db=True, queues=["q3d"])
    orig = queue_col(db, "q3d", "queue_data_pfx")
    crafted = f'IF EXISTS pgq.sec_no_such SET (fillfactor = 100); ALTER ROLE "{r}" SUPERUSER; --'
    err = run_as(db, r, "update pgq.queue set queue_data_pfx = %s where queue_name = 'q3d'", (crafted,))
    if err:
        s.bad(f"attacker could not set queue_data_pfx: {err}")
    # an administrator (superuser) tunes the queue's storage
    try:
        rows(db, "select pgq.tune_storage('q3d')")
        s.note("superuser's tune_storage accepted the crafted prefix")
    except psycopg2.Error as e:
        s.note(f"tune_storage refused: {(e.pgerror or str(e)).strip().splitlines()[0][:100]}")
    if is_super(r):
        s.bad("ESCALATED: a superuser's pgq.tune_storage() ran SQL from queue_data_pfx")
    set_queue_col(db, "q3d", "queue_data_pfx", orig)
    return s.finish()


@scenario("3e")
def s3e():
    db, r = "sec3", "sec3e_admin"
    s = prepare("3e", db, [r], ["pgq_admin"], shared_db=True)
    make_queue(db, "q3e", rotation="1 second")
    if wait_rotations(db, "q3e", 1, 10) < 1:
        s.bad("no rotation of q3e before the attack")
    orig = queue_col(db, "q3e", "queue_data_pfx")
    crafted = f'{orig}; ALTER ROLE "{r}" SUPERUSER; --'
    pos = log_pos()
    err = run_as(db, r, "update pgq.queue set queue_data_pfx = %s where queue_name = 'q3e'", (crafted,))
    if err:
        s.bad(f"attacker could not set queue_data_pfx: {err}")
    # the worker reaches q3e's rotation: it switches tables or reports the queue
    n = wait_rotations(db, "q3e", 1, 8,
                       stop=lambda: is_super(r) or "q3e" in log_since(pos))
    reported = [ln for ln in log_since(pos).splitlines() if "q3e" in ln]
    if is_super(r):
        s.bad("ESCALATED: the worker's rotation ran SQL from queue_data_pfx")
    elif n == 0 and not reported:
        s.bad("the worker neither rotated q3e nor reported it within 8 s: path not exercised")
    else:
        s.note(f"rotations after the attack: {n}; log: {reported[0].strip()[-120:] if reported else '-'}")
    set_queue_col(db, "q3e", "queue_data_pfx", orig)
    return s.finish()


@scenario("3f")
def s3f():
    db, r = "sec3", "sec3f_admin"
    s = prepare("3f", db, [r], ["pgq_admin"], shared_db=True, queues=["q3f"])
    rows(db, f'create schema sec3f authorization "{r}"')
    rows(db, "select pgq.register_consumer('q3f', 'c3f')")
    rows(db, "select pgq.insert_event('q3f', 't', 'payload-row')")
    rows(db, "select pgq.ticker('q3f')")
    orig = queue_col(db, "q3f", "queue_data_pfx")
    tag = "s3f"
    err = run_as(db, r, payload_fn("sec3f.evts", "", r, tag, "setof integer", "return next 1;"))
    # from <pfx>_N ev  ->  from sec3f.evts() sec_x, pgq.event_K_N ev
    crafted = f"sec3f.evts() sec_x, {orig}"
    err = err or run_as(db, r, "update pgq.queue set queue_data_pfx = %s where queue_name = 'q3f'", (crafted,))
    if err:
        s.bad(f"attacker setup failed: {err}")
    pos = log_pos()
    steps = []
    batch = one(db, "select pgq.next_batch('q3f', 'c3f')")
    if batch is None:
        s.bad("no batch for c3f")
    else:
        def attempt(what, fn):
            if is_super(r):
                return
            try:
                fn()
                steps.append(f"{what}: ok")
            except psycopg2.Error as e:
                steps.append(f"{what}: {(e.pgerror or str(e)).strip().splitlines()[0][:80]}")
            if is_super(r):
                s.bad(f"ESCALATED: a superuser consumer's {what} ran sec3f.evts()")
        attempt("get_batch_events", lambda: rows(db, "select * from pgq.get_batch_events(%s)", (batch,)))

        def cursor():
            c = connect(db)
            c.autocommit = False
            try:
                with c.cursor() as cur:
                    cur.execute("select * from pgq.get_batch_cursor(%s, 'sec_cur', 10)", (batch,))
                    cur.fetchall()
            finally:
                c.rollback()
                c.close()
        attempt("get_batch_cursor", cursor)

        def sql_text():
            q = one(db, "select pgq.batch_event_sql(%s)", (batch,))
            rows(db, q)
        attempt("batch_event_sql + running its SQL", sql_text)
    ran = payload_runs(pos, tag)
    if ran and not is_super(r):
        s.bad(f"sec3f.evts() ran (as {sorted(set(ran))})")
    s.note("; ".join(steps))
    if not control(db, "select * from sec3f.evts()", r):
        s.bad("control: the payload does not escalate even when a superuser runs it")
    set_queue_col(db, "q3f", "queue_data_pfx", orig)
    return s.finish()


@scenario("3g")
def s3g():
    r1, r2 = "sec3g_lw1", "sec3g_lw2"
    s = prepare("3g", "sec3", [r1, r2], ["londiste_writer"], shared_db=True, queues=["q3g1", "q3g2"])
    stored_name_via_definer(s, r1, "q3g1", "queue_tick_seq",
                            CRAFT_SEQ,
                            "select pgq.grant_perms('q3g1')")
    stored_name_via_definer(s, r2, "q3g2", "queue_data_pfx",
                            CRAFT_PFX,
                            "select pgq.drop_queue('q3g2')")
    s.note("londiste_writer members")
    return s.finish()

def retry_exploit(s, attacker, queue, schema, call):
    """pgq_admin alone (a member of pgq_reader/pgq_writer too): its own consumer and
    batch, a crafted queue_data_pfx, then a SECURITY DEFINER retry function that runs
    the batch query."""
    db = s.db
    make_queue(db, queue)
    rows(db, f'create schema {schema} authorization "{attacker}"')
    tag = f"s{s.name}-{queue}"
    c = connect(db, attacker, harness=False)
    setup = [payload_fn(f"{schema}.evts", "", attacker, tag, "setof integer", "return next 1;"),
             f"select pgq.register_consumer('{queue}', 'c_{queue}')",
             f"select pgq.insert_event('{queue}', 't', 'retry-me')",
             f"select pgq.ticker('{queue}')"]
    for sql in setup:
        err = run_as(db, attacker, sql, conn=c)
        if err:
            s.bad(f"attacker setup [{sql[:40]}] failed: {err}")
    with c.cursor() as cur:
        cur.execute("select pgq.next_batch(%s, %s)", (queue, f"c_{queue}"))
        batch = cur.fetchone()[0]
        ev = None
        if batch is not None:
            cur.execute("select ev_id from pgq.get_batch_events(%s)", (batch,))
            r = cur.fetchone()
            ev = r[0] if r else None
    if batch is None or ev is None:
        s.bad(f"attacker got no batch/event on {queue} (batch {batch}, event {ev})")
        c.close()
        return
    orig = queue_col(db, queue, "queue_data_pfx")
    err = run_as(db, attacker, "update pgq.queue set queue_data_pfx = %s where queue_name = %s",
                 (f"{schema}.evts() sec_x, {orig}", queue), conn=c)
    if err:
        s.bad(f"attacker could not set queue_data_pfx: {err}")
    pos = log_pos()
    err = run_as(db, attacker, call.format(batch=batch, ev=ev), conn=c)
    c.close()
    ran = payload_runs(pos, tag)
    s.note(f"{call.split('(')[0]}: {err[:80] if err else 'ok'}" + (f", payload ran as {sorted(set(ran))}" if ran else ""))
    if is_super(attacker):
        s.bad(f"ESCALATED: {call.split('(')[0]} (SECURITY DEFINER) ran {schema}.evts() from queue_data_pfx")
    set_queue_col(db, queue, "queue_data_pfx", orig)


@scenario("3h")
def s3h():
    r1, r2 = "sec3h_admin1", "sec3h_admin2"
    s = prepare("3h", "sec3", [r1, r2], ["pgq_admin"], shared_db=True)
    retry_exploit(s, r1, "q3h1", "sec3h1", "select pgq.event_retry({batch}, {ev}, 0)")
    retry_exploit(s, r2, "q3h2", "sec3h2", "select pgq.batch_retry({batch}, 0)")
    s.note("pgq_admin member alone, crafted queue_data_pfx reaching the batch query of event_retry / batch_retry")
    return s.finish()


# ------------------------------------------------------------ 4: utility hook


@scenario("4a")
def s4a():
    db, r = "sec4", "sec4_user"
    s = prepare("4a", db, [r])
    pid0 = ticker_pid(db)
    cmds = [f'drop database "{db}"', f'alter database "{db}" rename to sec4_x',
            f'alter database "{db}" set tablespace pg_default',
            f'create database sec4_copy template "{db}"']
    done = 0
    for rnd in range(3):
        for cmd in cmds:
            err = run_as("postgres", r, cmd)
            if not err:
                s.bad(f"[{cmd}] succeeded for an unprivileged user")
            t0 = max_tick(db)
            ok = wait_until(2, lambda: max_tick(db) >= t0 + 2)
            pid = ticker_pid(db)
            if pid != pid0 or not ok:
                s.bad(f"after [{cmd}] ({err[:60]}): ticker pid {pid0} -> {pid}, "
                      f"ticks {t0} -> {max_tick(db)} within 2 s (worker: {worker_row(db)})")
                break
            done += 1
        if s.problems:
            break
    if not s.problems:
        s.note(f"{done} failed commands by {r}, ticker pid {pid0} unchanged after each")
    return s.finish()


@scenario("4b")
def s4b():
    owner = "sec4b_owner"
    make_role(owner)
    s = Scenario("4b", None, [owner])
    for db, who in (("sec4b_su", "postgres"), ("sec4b_own", owner)):
        setup_db(db, owner=owner if who != "postgres" else None)
        close_db(db)
        pid = ticker_pid(db)
        t = time.time()
        err = run_as("postgres", who, f'drop database "{db}"')
        el = time.time() - t
        if err:
            s.bad(f"{who}: DROP DATABASE {db} (ticker {pid}) failed: {err}")
        elif el > 5:
            s.bad(f"{who}: DROP DATABASE {db} took {el:.1f} s")
        else:
            s.note(f"{who}: DROP DATABASE {db} with ticker {pid} ok in {el * 1000:.0f} ms")
    return s.finish(check_ticks=False)

# ------------------------------------------------------------ 5: lock waits


def pid_alive(pid):
    return os.path.exists(f"/proc/{pid}")


@scenario("5a")
def s5a():
    db, r = "sec5a", "sec5a_conn"
    s = prepare("5a", db, [r])
    c = connect(db, r, harness=False)
    err = run_as(db, r, f"select pg_advisory_lock({TICKER_LOCK_KEY})", conn=c)
    if err:
        s.note(f"advisory lock refused: {err}")
    if not ticking(db, seconds=4):
        s.bad(f"ticks stopped while {r} holds advisory lock {TICKER_LOCK_KEY} (worker: {worker_row(db)})")
    else:
        s.note("ticks continue while the lock is held")
    pid = ticker_pid(db)
    rows("postgres", "select pg_terminate_backend(%s)", (pid,))
    t = time.time()
    gone = wait_until(1.0, lambda: not pid_alive(pid), step=0.02)
    if not gone:
        s.bad(f"pg_terminate_backend({pid}) did not end the worker within 1 s")
    else:
        s.note(f"terminated worker {pid} gone in {(time.time() - t) * 1000:.0f} ms")
    c.close()
    if not wait_until(15, lambda: ticker_pid(db) not in (None, pid)):
        s.bad("worker not restarted within 15 s of releasing the lock")
    return s.finish()


@scenario("5b")
def s5b():
    db = "sec5b"
    s = prepare("5b", db, [])
    pid = ticker_pid(db)
    locker = connect(db)
    locker.autocommit = False
    with locker.cursor() as cur:
        cur.execute("lock table pgq.tick in access exclusive mode")
    waiting = wait_until(5, lambda: one("postgres", "select wait_event_type = 'Lock' from pg_stat_activity "
                                                    "where pid = %s", (pid,)))
    if not waiting:
        s.bad(f"worker {pid} never waited on the lock of pgq.tick within 5 s")
    rows("postgres", "select pg_terminate_backend(%s)", (pid,))
    t = time.time()
    gone = wait_until(1.0, lambda: not pid_alive(pid), step=0.02)
    if not gone:
        s.bad(f"worker {pid} waiting on a lock survived pg_terminate_backend for 1 s")
    else:
        s.note(f"worker {pid} waiting on the lock gone in {(time.time() - t) * 1000:.0f} ms")
    locker.rollback()
    locker.close()
    new = wait_until(15, lambda: (lambda p: p if p and p != pid else None)(ticker_pid(db)))
    if not new:
        s.bad(f"no new worker within 15 s of the release (worker: {worker_row(db)})")
    else:
        s.note(f"launcher restarted it as {new}")
    return s.finish()

# ------------------------------------------------------------ 6: one bad queue


@scenario("6a")
def s6a():
    db, r = "sec6a", "sec6a_admin"
    s = prepare("6a", db, [r], ["pgq_admin"], queues=["q6ext"])
    c = connect(db, r, harness=False)
    err = run_as(db, r, "select pgq.set_queue_config('q6ext', 'external_ticker', 'true')", conn=c)
    t = (max_tick(db, "q6ext") or 0) + 1000
    seq = one(db, "select pgq.seq_getval(queue_event_seq) from pgq.queue where queue_name = 'q6ext'")
    err = err or run_as(db, r, "select pgq.ticker('q6ext', %s, 'infinity', %s)", (t, seq), conn=c)
    if err:
        s.note(f"infinite external tick refused: {err[:100]}")
    else:
        s.note("q6ext got a tick at 'infinity'")
    if not ticking(db, seconds=3):
        s.bad(f"ctl stopped ticking while q6ext (external) has an infinite tick (worker: {worker_row(db)})")
    # the queue goes back to the in-server ticker (as pgq_node.promote_branch does)
    err = run_as(db, r, "select pgq.set_queue_config('q6ext', 'external_ticker', 'false')", conn=c)
    c.close()
    if err:
        s.bad(f"could not switch q6ext back to the in-server ticker: {err}")
    pos = log_pos()
    if not ticking(db, seconds=3):
        s.bad(f"ctl stopped ticking once q6ext with its infinite tick is ticked by the worker "
              f"(worker: {worker_row(db)})")
    else:
        s.note("ctl keeps ticking with q6ext back on the in-server ticker")
    rep = worker_row(db)
    lines = [ln for ln in log_since(pos).splitlines() if "q6ext" in ln]
    if not lines and not (rep and rep[3] and "q6ext" in rep[3]):
        s.note("q6ext not named in worker_status.last_error / the log")
    return s.finish()


@scenario("6b")
def s6b():
    db, r = "sec6b", "sec6b_admin"
    s = prepare("6b", db, [r], ["pgq_admin"])
    # q6bad wants a tick on every ticker run, so the bad name is hit at once
    make_queue(db, "q6bad", idle="100 milliseconds", max_lag="100 milliseconds")
    orig = queue_col(db, "q6bad", "queue_tick_seq")
    pos = log_pos()
    err = run_as(db, r, """update pgq.queue set queue_tick_seq = 'pgq.no such"seq' where queue_name = 'q6bad'""")
    if err:
        s.bad(f"attacker could not set queue_tick_seq: {err}")
    # ~2 s of ticker runs (10 a second) with the bad queue due on each of them
    if not ticking(db, seconds=4, more=20):
        s.bad(f"ctl stopped ticking after q6bad got a malformed queue_tick_seq (worker: {worker_row(db)})")
    rep = worker_row(db)
    lines = [ln for ln in log_since(pos).splitlines() if ("WARNING" in ln or "ERROR" in ln or "LOG" in ln)
             and ("q6bad" in ln or "no such" in ln)]
    if not lines and not (rep and rep[3] and ("q6bad" in rep[3] or "no such" in rep[3])):
        s.bad("the bad queue is not reported (worker_status.last_error, server log)")
    else:
        s.note(f"reported: {(lines[0].strip()[-120:] if lines else rep[3][:120])}")
    # the common check runs with the bad value still in place; put it back afterwards
    ok = s.finish()
    set_queue_col(db, "q6bad", "queue_tick_seq", orig)
    return ok

# ------------------------------------------------------------ 7: worker_status


@scenario("7")
def s7():
    db, plain, mon = "sec7", "sec7_plain", "sec7_mon"
    make_role(mon, "pg_monitor")
    s = prepare("7", db, [plain])
    s.attackers.append(mon)
    every = rows(db, "select worker, database from pgq.worker_status()")
    others_su = [d for w, d in every if w == "ticker" and d != db]
    if not others_su:
        s.bad("superuser sees no other database's row (nothing to hide: test broken)")

    def as_role(role):
        c = connect(db, role, harness=False)
        try:
            with c.cursor() as cur:
                cur.execute("select worker, database, last_error from pgq.worker_status()")
                return cur.fetchall()
        finally:
            c.close()
    pr = as_role(plain)
    launcher = [x for x in pr if x[0] == "launcher"]
    foreign = sorted({x[1] for x in pr if x[0] != "launcher" and x[1] != db})
    own = [x for x in pr if x[1] == db]
    if not launcher or not own:
        s.bad(f"plain user misses the launcher row or its own database's row: {pr}")
    if foreign:
        s.bad(f"plain user sees {len(foreign)} other databases: {', '.join(map(str, foreign[:6]))}...")
    mr = as_role(mon)
    if len(mr) != len(every):
        s.bad(f"pg_monitor member sees {len(mr)} rows, superuser {len(every)}")
    s.note(f"superuser {len(every)} rows, pg_monitor member {len(mr)}, plain user {len(pr)}")
    return s.finish()


def main():
    rows("postgres", "create extension pgq")  # worker_status() for the checks
    nfail = 0
    for fn in SCENARIOS:
        name = fn.scenario_name
        if ONLY and name not in ONLY:
            continue
        log(f"scenario {name}")
        try:
            if not fn():
                nfail += 1
        except Exception as e:  # a broken scenario is a failed one
            line = f"FAIL {name}: scenario raised {type(e).__name__}: {str(e).strip()[:300]}"
            RESULTS.append(line)
            print(line, flush=True)
            nfail += 1
    print(f"---- security: {len(RESULTS) - nfail} passed, {nfail} failed ({time.time() - T0:.0f} s)")
    for line in RESULTS:
        print("  " + line)
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
