-- The seed workload: a login/logout service, the replication scenario this project is
-- measured on (tests/cascade, bench/, the demo). Four tables in schema digoal: two with
-- one row per user (user_info, user_session; integer primary keys) and two append-only
-- logs (user_login_rec, user_logout_rec; bigserial keys, so their two sequences are
-- replicated as well), plus the two PL/pgSQL functions the pgbench scripts call.
--
--   psql -d <db> -v rows=200000 -f seed.sql   -- a provider: schema and rows
--   psql -d <db> -v rows=0      -f seed.sql   -- a subscriber: schema only
\set ON_ERROR_STOP 1
\if :{?rows}
\else
\set rows 200000
\endif

CREATE SCHEMA IF NOT EXISTS digoal;

CREATE TABLE IF NOT EXISTS digoal.user_info (
    userid     int PRIMARY KEY,
    engname    text,
    cnname     text,
    occupation text,
    birthday   date,
    signname   text,
    email      text,
    qq         numeric,
    crt_time   timestamp,
    mod_time   timestamp
);

CREATE TABLE IF NOT EXISTS digoal.user_session (
    userid          int PRIMARY KEY,
    logintime       timestamp(0),
    login_count     bigint DEFAULT 0,
    logouttime      timestamp(0),
    online_interval interval DEFAULT interval '0'
);

CREATE TABLE IF NOT EXISTS digoal.user_login_rec (
    id         bigserial PRIMARY KEY,
    userid     int,
    login_time timestamp,
    ip         inet
);

CREATE TABLE IF NOT EXISTS digoal.user_logout_rec (
    id          bigserial PRIMARY KEY,
    userid      int,
    logout_time timestamp,
    ip          inet
);

-- rows with non-ASCII text and a quote, so replication and compare see both
INSERT INTO digoal.user_info
SELECT n, 'user.' || n, '用户' || n, 'DBA', date '1970-01-01' + n % 20000,
       E'签名 of user ' || n || E', it\'s mine', 'user' || n || '@example.org',
       100000000 + n, clock_timestamp(), NULL
  FROM generate_series(1, :rows) AS n;

INSERT INTO digoal.user_session (userid)
SELECT n FROM generate_series(1, :rows) AS n;

-- login: read the profile, append a login record, count the session
CREATE OR REPLACE FUNCTION digoal.f_user_login(
    i_userid int,
    OUT o_userid int, OUT o_engname text, OUT o_cnname text, OUT o_occupation text,
    OUT o_birthday date, OUT o_signname text, OUT o_email text, OUT o_qq numeric)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT u.userid, u.engname, u.cnname, u.occupation, u.birthday, u.signname, u.email, u.qq
      INTO o_userid, o_engname, o_cnname, o_occupation, o_birthday, o_signname, o_email, o_qq
      FROM digoal.user_info u WHERE u.userid = i_userid;
    INSERT INTO digoal.user_login_rec (userid, login_time, ip)
    VALUES (i_userid, now(), inet_client_addr());
    UPDATE digoal.user_session
       SET logintime = now(), login_count = login_count + 1
     WHERE userid = i_userid;
END;
$$;

-- logout: append a logout record, add the time online; 0 on success, 1 on any error
CREATE OR REPLACE FUNCTION digoal.f_user_logout(i_userid int, OUT o_result int)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO digoal.user_logout_rec (userid, logout_time, ip)
    VALUES (i_userid, now(), inet_client_addr());
    UPDATE digoal.user_session
       SET logouttime = now(),
           online_interval = online_interval + (now() - coalesce(logintime, now()))
     WHERE userid = i_userid;
    o_result := 0;
EXCEPTION WHEN others THEN
    o_result := 1;
END;
$$;

ANALYZE digoal.user_info;
ANALYZE digoal.user_session;
