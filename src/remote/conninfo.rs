//! Conninfo strings through libpq's own parser (`PQconninfoParse`): keyword=value
//! strings and `postgresql://` URIs, exactly as libpq reads them. Only libpq is called
//! here (no server function), so the unit tests run without a server.

use std::ffi::{CStr, CString};

use crate::logic::remote::{self as logic, ConnOpt, RemoteError};

/// The options a conninfo string sets, in libpq's keyword order, or libpq's complaint.
/// `.pgpass`, `service` and environment defaults are not applied here: connecting
/// applies them (PQconnectStartParams), as for any libpq client.
pub fn parse(conninfo: &str) -> Result<Vec<ConnOpt>, RemoteError> {
    let c = CString::new(conninfo).map_err(|_| {
        RemoteError::new(
            crate::errors::SqlState::SYNTAX_ERROR,
            "invalid connection string syntax",
        )
        .detail("The connection string contains a zero byte.")
    })?;
    let mut err: *mut std::os::raw::c_char = std::ptr::null_mut();
    // SAFETY: `c` is a valid NUL-terminated string and `err` a valid out pointer;
    // libpq returns a malloc'ed array (or NULL with a malloc'ed message in `err`).
    let list = unsafe { pq_sys::PQconninfoParse(c.as_ptr(), &mut err) };
    if list.is_null() {
        let msg = if err.is_null() {
            "out of memory".to_string()
        } else {
            // SAFETY: libpq gave us a NUL-terminated message that we now own.
            let m = unsafe { CStr::from_ptr(err) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: `err` was allocated by libpq and is freed exactly once.
            unsafe { pq_sys::PQfreemem(err.cast()) };
            m
        };
        return Err(RemoteError::invalid_conninfo(&msg));
    }
    let mut out = Vec::new();
    let mut p = list;
    // SAFETY: the array ends with an entry whose keyword is NULL; every non-NULL
    // keyword/val is a NUL-terminated string owned by the array, which lives until the
    // PQconninfoFree below.
    unsafe {
        while !(*p).keyword.is_null() {
            if !(*p).val.is_null() {
                out.push(ConnOpt {
                    keyword: CStr::from_ptr((*p).keyword).to_string_lossy().into_owned(),
                    value: CStr::from_ptr((*p).val).to_string_lossy().into_owned(),
                });
            }
            p = p.add(1);
        }
        pq_sys::PQconninfoFree(list);
    }
    Ok(out)
}

/// The conninfo as it may be shown anywhere (logs, errors, status views): re-rendered
/// from libpq's parse without `password` / `sslpassword`; a string that does not parse
/// is not shown at all.
pub fn redact(conninfo: &str) -> String {
    match parse(conninfo) {
        Ok(opts) => logic::render_redacted(&opts),
        Err(_) => logic::UNPARSABLE_CONNINFO.to_string(),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn redacts_keyword_value_strings() {
        assert_eq!(
            redact("host=h1 port=5433 password=secret dbname=db"),
            "dbname=db host=h1 port=5433"
        );
        assert_eq!(
            redact(r"password='it\'s a secret' user=bob sslpassword=kp"),
            "user=bob"
        );
        assert_eq!(
            redact("password = 'with = and spaces' host=/tmp/sock"),
            "host=/tmp/sock"
        );
        assert_eq!(redact("dbname='my db'"), "dbname='my db'");
    }

    #[test]
    fn redacts_uris() {
        let r = redact("postgresql://user:secret@host:5432/db?sslmode=require");
        assert!(!r.contains("secret"), "{r}");
        assert_eq!(r, "user=user dbname=db host=host port=5432 sslmode=require");
        let r = redact("postgres://u:p%40ss%20word@h/d?password=other");
        assert!(
            !r.contains("p@ss") && !r.contains("other") && !r.contains("%40"),
            "{r}"
        );
        assert_eq!(
            redact("postgresql:///db?host=/var/run/postgresql"),
            "dbname=db host=/var/run/postgresql"
        );
    }

    #[test]
    fn unparsable_strings_are_not_shown() {
        assert_eq!(redact("host=h password"), logic::UNPARSABLE_CONNINFO);
        assert_eq!(
            redact("password='unterminated secret"),
            logic::UNPARSABLE_CONNINFO
        );
        let e = parse("host=h secretvalue").unwrap_err();
        assert_eq!(e.sqlstate, "42601");
        assert!(!e.to_string().contains("secretvalue"), "{e}");
        let e = parse("postgresql://u:pw@h/db?bogus_opt=secretvalue").unwrap_err();
        assert!(!e.to_string().contains("secretvalue"), "{e}");
    }

    #[test]
    fn parse_gives_the_options_set() {
        let o = parse("service=prov sslmode=verify-full host=/tmp").unwrap();
        let kv: Vec<(&str, &str)> = o
            .iter()
            .map(|o| (o.keyword.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(
            kv,
            vec![
                ("service", "prov"),
                ("host", "/tmp"),
                ("sslmode", "verify-full")
            ]
        );
        assert!(parse("").unwrap().is_empty());
        assert!(parse("nosuchkeyword=1").is_err());
    }
}
