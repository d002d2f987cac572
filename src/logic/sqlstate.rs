//! SQLSTATE codes as plain Rust: the five-character code, PostgreSQL's packed integer
//! form (MAKE_SQLSTATE), and the decision a worker takes on an error by its class —
//! retry the batch later, or stop and wait for an operator.

/// A five-character SQLSTATE (`[0-9A-Z]{5}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState([u8; 5]);

impl SqlState {
    pub const RAISE_EXCEPTION: SqlState = SqlState(*b"P0001");
    pub const INTERNAL_ERROR: SqlState = SqlState(*b"XX000");
    pub const DATATYPE_MISMATCH: SqlState = SqlState(*b"42804");
    pub const UNDEFINED_OBJECT: SqlState = SqlState(*b"42704");
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState(*b"42501");
    pub const NOT_NULL_VIOLATION: SqlState = SqlState(*b"23502");
    pub const UNDEFINED_TABLE: SqlState = SqlState(*b"42P01");
    pub const UNDEFINED_COLUMN: SqlState = SqlState(*b"42703");
    pub const UNDEFINED_FUNCTION: SqlState = SqlState(*b"42883");
    pub const WRONG_OBJECT_TYPE: SqlState = SqlState(*b"42809");
    pub const INVALID_TEXT_REPRESENTATION: SqlState = SqlState(*b"22P02");
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState(*b"54000");
    pub const CONFIGURATION_LIMIT_EXCEEDED: SqlState = SqlState(*b"53400");
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState(*b"55000");
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState(*b"0A000");
    pub const DATA_EXCEPTION: SqlState = SqlState(*b"22000");
    pub const CHARACTER_NOT_IN_REPERTOIRE: SqlState = SqlState(*b"22021");
    pub const SYNTAX_ERROR: SqlState = SqlState(*b"42601");
    pub const QUERY_CANCELED: SqlState = SqlState(*b"57014");
    pub const CONNECTION_EXCEPTION: SqlState = SqlState(*b"08000");
    pub const CONNECTION_DOES_NOT_EXIST: SqlState = SqlState(*b"08003");
    /// sqlclient_unable_to_establish_sqlconnection
    pub const UNABLE_TO_ESTABLISH: SqlState = SqlState(*b"08001");
    pub const CONNECTION_FAILURE: SqlState = SqlState(*b"08006");
    pub const PROTOCOL_VIOLATION: SqlState = SqlState(*b"08P01");
    /// prohibited_sql_statement_attempted, which dblink raises for a missing password
    pub const PASSWORD_REQUIRED: SqlState = SqlState(*b"2F003");
    pub const NULL_VALUE_NOT_ALLOWED: SqlState = SqlState(*b"22004");
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState(*b"22023");
    pub const DUPLICATE_OBJECT: SqlState = SqlState(*b"42710");
    pub const INVALID_TABLE_DEFINITION: SqlState = SqlState(*b"42P16");
    pub const OBJECT_IN_USE: SqlState = SqlState(*b"55006");
    pub const INVALID_TRANSACTION_STATE: SqlState = SqlState(*b"25000");

    /// The code of a text, if it is a well-formed SQLSTATE.
    pub fn parse(s: &str) -> Option<SqlState> {
        let b = s.as_bytes();
        if b.len() != 5
            || !b
                .iter()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        {
            return None;
        }
        let mut code = [0u8; 5];
        code.copy_from_slice(b);
        Some(SqlState(code))
    }

    /// PostgreSQL's packed form: six bits per character, first character lowest.
    pub fn packed(self) -> i32 {
        self.0
            .iter()
            .enumerate()
            .map(|(i, &c)| (((c - b'0') & 0x3F) as i32) << (6 * i))
            .sum()
    }

    /// The code of a packed SQLSTATE (as `ErrorData.sqlerrcode` holds it).
    pub fn from_packed(code: i32) -> SqlState {
        let mut s = [0u8; 5];
        for (i, c) in s.iter_mut().enumerate() {
            *c = (((code >> (6 * i)) & 0x3F) as u8) + b'0';
        }
        SqlState(s)
    }

    pub fn as_str(&self) -> &str {
        // the bytes are ASCII by construction (parse checks, from_packed yields
        // '0'..='o' which is ASCII)
        std::str::from_utf8(&self.0).unwrap_or("XX000")
    }

    /// The class: the first two characters.
    pub fn class(&self) -> &str {
        &self.as_str()[..2]
    }
}

/// `code == "42601"`: compare with a code's text (tests, logs).
impl PartialEq<&str> for SqlState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a worker does after an error rolled its transaction back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: run the same step again after a backoff (serialization failures,
    /// deadlocks, lock timeouts, cancels, lost connections, resource shortages).
    Retry,
    /// Retrying cannot help until something changes (bad SQL, bad data, missing
    /// objects, privileges, internal errors): stop this object and report.
    Stop,
}

/// The disposition of an error by its SQLSTATE.
pub fn disposition(code: SqlState) -> Disposition {
    match code.as_str() {
        // lock_not_available (lock_timeout, NOWAIT), query_canceled (statement_timeout)
        "55P03" | "57014" => return Disposition::Retry,
        // admin_shutdown / crash_shutdown / cannot_connect_now: the server goes away
        // or is starting; the worker is restarted and tries again
        "57P01" | "57P02" | "57P03" => return Disposition::Retry,
        // idle_in_transaction_session_timeout
        "25P03" => return Disposition::Retry,
        _ => {}
    }
    match code.class() {
        // transaction rollback: serialization_failure 40001, deadlock_detected 40P01, ...
        "40" => Disposition::Retry,
        // connection exceptions (a remote provider, later)
        "08" => Disposition::Retry,
        // insufficient resources: disk full, out of memory, too many connections
        "53" => Disposition::Retry,
        // everything else: syntax/access (42), data (22), integrity (23), internal
        // (XX), PL/pgSQL raise (P0), object state (55 other than 55P03), ...
        _ => Disposition::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Disposition {
        disposition(SqlState::parse(s).unwrap())
    }

    #[test]
    fn parse_checks_form() {
        assert_eq!(SqlState::parse("40P01").unwrap().as_str(), "40P01");
        assert!(SqlState::parse("40p01").is_none());
        assert!(SqlState::parse("4000").is_none());
        assert!(SqlState::parse("400001").is_none());
        assert!(SqlState::parse("40-01").is_none());
    }

    #[test]
    fn packed_roundtrip() {
        // MAKE_SQLSTATE('4','0','0','0','1') in PostgreSQL
        let ser = SqlState::parse("40001").unwrap();
        assert_eq!(ser.packed(), 4 | (1 << 24));
        for s in [
            "00000", "P0001", "XX000", "42P01", "55P03", "ZZ999", "42501", "22008", "57P01",
        ] {
            let c = SqlState::parse(s).unwrap();
            assert_eq!(SqlState::from_packed(c.packed()), c, "{s}");
        }
    }

    #[test]
    fn retryable_classes() {
        for s in [
            "40001", "40P01", "40000", "55P03", "57014", "08006", "08001", "53100", "53200",
            "57P01", "25P03",
        ] {
            assert_eq!(d(s), Disposition::Retry, "{s}");
        }
    }

    #[test]
    fn stop_classes() {
        for s in [
            "42601", "42P01", "42501", "22P02", "22012", "23505", "23503", "XX000", "P0001",
            "55000", "55006", "0A000", "2BP01",
        ] {
            assert_eq!(d(s), Disposition::Stop, "{s}");
        }
    }

    #[test]
    fn class_is_first_two() {
        assert_eq!(SqlState::parse("57014").unwrap().class(), "57");
        assert_eq!(SqlState::DATATYPE_MISMATCH.to_string(), "42804");
    }
}
