//! The pure half of the libpq client (`crate::remote`): connection options, redaction
//! of secrets, the error type and the text-to-Rust value conversions. No libpq and no
//! server here, so all of it is unit-tested with plain `cargo test`.
//!
//! Parsing a conninfo string is libpq's job (`PQconninfoParse`, done by the caller);
//! this module works on the parsed `(keyword, value)` list it returns.

use super::sqlstate::SqlState;
use std::fmt;
use std::time::Duration;

/// Keywords whose values are secrets: never rendered, and scrubbed from every message.
pub const SECRET_KEYWORDS: &[&str] = &["password", "sslpassword"];

/// What a rendered message puts where a secret value was.
pub const SCRUBBED: &str = "********";

/// Secrets shorter than this are not searched for in messages: a one- or two-letter
/// password would otherwise blank every occurrence of that letter in every message.
/// (libpq never echoes a password; scrubbing is the second line of defence.)
pub const MIN_SCRUB_LEN: usize = 3;

/// Connect timeout when the conninfo sets none.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;

/// One parsed connection option (a keyword with a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnOpt {
    pub keyword: String,
    pub value: String,
}

impl ConnOpt {
    pub fn new(keyword: &str, value: &str) -> Self {
        ConnOpt {
            keyword: keyword.to_string(),
            value: value.to_string(),
        }
    }
}

pub fn is_secret_keyword(keyword: &str) -> bool {
    SECRET_KEYWORDS.contains(&keyword)
}

/// Quote a conninfo value the way libpq's parser reads it back: bare when it has no
/// whitespace, quote or backslash and is not empty, else single-quoted with `\'` and `\\`.
pub fn quote_value(v: &str) -> String {
    let bare = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if bare {
        return v.to_string();
    }
    let mut s = String::with_capacity(v.len() + 2);
    s.push('\'');
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('\'');
    s
}

/// `keyword=value ...` of every option, secrets left out entirely.
pub fn render_redacted(opts: &[ConnOpt]) -> String {
    opts.iter()
        .filter(|o| !is_secret_keyword(&o.keyword))
        .map(|o| format!("{}={}", o.keyword, quote_value(&o.value)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a conninfo that libpq cannot parse is shown as (its text may hold a password).
pub const UNPARSABLE_CONNINFO: &str = "(invalid connection string)";

/// The non-empty secret values of a parsed conninfo.
pub fn secrets(opts: &[ConnOpt]) -> Vec<String> {
    opts.iter()
        .filter(|o| is_secret_keyword(&o.keyword) && !o.value.is_empty())
        .map(|o| o.value.clone())
        .collect()
}

/// Replace every occurrence of a secret (at least `MIN_SCRUB_LEN` long) in `msg`.
/// Longer secrets first, so one that contains another is replaced whole.
pub fn scrub(msg: &str, secrets: &[String]) -> String {
    let mut list: Vec<&String> = secrets
        .iter()
        .filter(|s| s.len() >= MIN_SCRUB_LEN)
        .collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = msg.to_string();
    for s in list {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), SCRUBBED);
        }
    }
    out
}

/// libpq's conninfo parse errors quote the offending fragment of the string, which may
/// be (part of) a password: replace every double-quoted span with `"…"`.
pub fn mask_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            out.push(c);
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push('…');
    }
    out
}

/// Whether the conninfo itself gives a (non-empty) password, as dblink requires of a
/// role that is not a superuser.
pub fn gives_password(opts: &[ConnOpt]) -> bool {
    opts.iter()
        .any(|o| o.keyword == "password" && !o.value.is_empty())
}

fn get<'a>(opts: &'a [ConnOpt], keyword: &str) -> Option<&'a str> {
    opts.iter()
        .rev()
        .find(|o| o.keyword == keyword)
        .map(|o| o.value.as_str())
}

fn set_default(opts: &mut Vec<ConnOpt>, keyword: &str, value: &str) {
    if get(opts, keyword).is_none() {
        opts.push(ConnOpt::new(keyword, value));
    }
}

fn set_forced(opts: &mut Vec<ConnOpt>, keyword: &str, value: &str) {
    opts.retain(|o| o.keyword != keyword);
    opts.push(ConnOpt::new(keyword, value));
}

/// What the local side adds to a caller's conninfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSettings {
    /// What the connection is for ("replay node1", "admin"): becomes `application_name`
    /// `pgq <purpose>` unless the conninfo names one.
    pub purpose: String,
    /// The local server's encoding name: always sent as `client_encoding`, so text
    /// arrives in the encoding the local server stores.
    pub client_encoding: String,
}

/// `application_name` for a purpose (PostgreSQL keeps 63 bytes of it).
pub fn application_name(purpose: &str) -> String {
    let purpose = purpose.trim();
    let mut s = if purpose.is_empty() {
        "pgq".to_string()
    } else {
        format!("pgq {purpose}")
    };
    while s.len() > 63 {
        s.pop();
    }
    s
}

/// The final options for `PQconnectStartParams`: the caller's parsed options, plus
/// `client_encoding` (forced), `application_name`, `connect_timeout` and TCP keepalives
/// (defaults that the conninfo may override). Options whose value is empty are dropped
/// (libpq treats them as unset anyway).
pub fn connect_params(parsed: &[ConnOpt], settings: &ConnectSettings) -> Vec<ConnOpt> {
    let mut opts: Vec<ConnOpt> = parsed
        .iter()
        .filter(|o| !o.value.is_empty())
        .cloned()
        .collect();
    set_forced(&mut opts, "client_encoding", &settings.client_encoding);
    set_default(
        &mut opts,
        "application_name",
        &application_name(&settings.purpose),
    );
    set_default(
        &mut opts,
        "connect_timeout",
        &DEFAULT_CONNECT_TIMEOUT_SECS.to_string(),
    );
    set_default(&mut opts, "keepalives", "1");
    set_default(&mut opts, "keepalives_idle", "30");
    set_default(&mut opts, "keepalives_interval", "10");
    set_default(&mut opts, "keepalives_count", "3");
    opts
}

/// The connect deadline the options ask for, read as libpq reads `connect_timeout`
/// (whole seconds; 0 or less is no limit; 1 counts as 2). PQconnectPoll does not
/// enforce it, so the waiting loop does, for the whole connect (all hosts together).
pub fn connect_timeout(opts: &[ConnOpt]) -> Option<Duration> {
    let v = get(opts, "connect_timeout")?.trim();
    let secs: i64 = match v.parse() {
        Ok(n) => n,
        Err(_) => return Some(Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS)),
    };
    match secs {
        s if s <= 0 => None,
        1 => Some(Duration::from_secs(2)),
        s => Some(Duration::from_secs(s as u64)),
    }
}

/// An error of the remote side or of talking to it, in PostgreSQL's terms. Every text
/// in it has been scrubbed of the connection's secrets by whoever built it. (Boxed: it
/// travels in `Result`s; the fields are read through `Deref`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError(Box<RemoteErrorData>);

impl std::ops::Deref for RemoteError {
    type Target = RemoteErrorData;
    fn deref(&self) -> &RemoteErrorData {
        &self.0
    }
}

impl std::ops::DerefMut for RemoteError {
    fn deref_mut(&mut self) -> &mut RemoteErrorData {
        &mut self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteErrorData {
    pub sqlstate: SqlState,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// The remote server's own CONTEXT lines, if it sent any.
    pub remote_context: Option<String>,
    /// Which remote this was: `remote node "x"` or the redacted conninfo.
    pub context: Option<String>,
}

impl RemoteError {
    pub fn new(sqlstate: SqlState, message: impl Into<String>) -> Self {
        RemoteError(Box::new(RemoteErrorData {
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
            remote_context: None,
            context: None,
        }))
    }

    pub fn detail(mut self, d: impl Into<String>) -> Self {
        let d = d.into();
        self.detail = if d.is_empty() { None } else { Some(d) };
        self
    }

    pub fn hint(mut self, h: impl Into<String>) -> Self {
        let h = h.into();
        self.hint = if h.is_empty() { None } else { Some(h) };
        self
    }

    pub fn context(mut self, c: impl Into<String>) -> Self {
        self.context = Some(c.into());
        self
    }

    /// Connecting failed (08001), libpq's message as the detail.
    pub fn connect_failed(libpq_message: &str) -> Self {
        RemoteError::new(
            SqlState::UNABLE_TO_ESTABLISH,
            "could not establish connection",
        )
        .detail(clean_libpq_message(libpq_message))
    }

    /// The connection broke during a command (08006).
    pub fn connection_lost(libpq_message: &str) -> Self {
        RemoteError::new(
            SqlState::CONNECTION_FAILURE,
            "lost connection to the remote server",
        )
        .detail(clean_libpq_message(libpq_message))
    }

    /// A non-superuser's conninfo gives no password (2F003, as dblink).
    pub fn password_not_given() -> Self {
        RemoteError::new(SqlState::PASSWORD_REQUIRED, "password is required")
            .detail("Non-superusers must provide a password in the connection string.")
    }

    /// A non-superuser connected without the server asking for the password (2F003).
    pub fn password_not_used() -> Self {
        RemoteError::new(SqlState::PASSWORD_REQUIRED, "password is required")
            .detail("Non-superuser cannot connect if the server does not request a password.")
            .hint("Target server's authentication method must be changed.")
    }

    /// The conninfo does not parse (42601); libpq's message with its quoted fragments
    /// masked.
    pub fn invalid_conninfo(libpq_message: &str) -> Self {
        RemoteError::new(SqlState::SYNTAX_ERROR, "invalid connection string syntax")
            .detail(mask_quoted(&clean_libpq_message(libpq_message)))
    }

    /// An error the remote server sent, from its diagnostic fields. A missing or
    /// malformed SQLSTATE means libpq made the error up itself: 08006 when the
    /// connection is gone, else XX000.
    pub fn from_remote(
        sqlstate: Option<&str>,
        message: Option<&str>,
        detail: Option<&str>,
        hint: Option<&str>,
        remote_context: Option<&str>,
        connection_ok: bool,
        fallback_message: &str,
    ) -> Self {
        let code = match sqlstate.and_then(SqlState::parse) {
            Some(s) => s,
            None if !connection_ok => SqlState::CONNECTION_FAILURE,
            None => SqlState::INTERNAL_ERROR,
        };
        let message = match message {
            Some(m) if !m.trim().is_empty() => clean_libpq_message(m),
            _ if !connection_ok => return RemoteError::connection_lost(fallback_message),
            _ => clean_libpq_message(fallback_message),
        };
        let mut e = RemoteError::new(code, message);
        e.detail = detail.map(clean_libpq_message).filter(|s| !s.is_empty());
        e.hint = hint.map(clean_libpq_message).filter(|s| !s.is_empty());
        e.remote_context = remote_context
            .map(clean_libpq_message)
            .filter(|s| !s.is_empty());
        e
    }

    /// Apply `scrub` to every text.
    pub fn scrubbed(mut self, secrets: &[String]) -> Self {
        let d = &mut *self.0;
        d.message = scrub(&d.message, secrets);
        for s in [
            &mut d.detail,
            &mut d.hint,
            &mut d.remote_context,
            &mut d.context,
        ]
        .into_iter()
        .flatten()
        {
            *s = scrub(s, secrets);
        }
        self
    }

    /// The CONTEXT text: the remote's own context lines, then which remote it was.
    pub fn full_context(&self) -> Option<String> {
        let mut lines = Vec::new();
        if let Some(c) = &self.remote_context {
            lines.push(format!("remote {c}"));
        }
        if let Some(c) = &self.context {
            lines.push(c.clone());
        }
        if lines.is_empty() {
            None
        } else {
            Some(lines.join("\n"))
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.sqlstate, self.message)?;
        if let Some(d) = &self.detail {
            write!(f, "\nDETAIL: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nHINT: {h}")?;
        }
        if let Some(c) = self.full_context() {
            write!(f, "\nCONTEXT: {c}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RemoteError {}

/// libpq messages end in a newline and may hold several lines: trim the end.
pub fn clean_libpq_message(m: &str) -> String {
    m.trim_end().to_string()
}

/// How a connection is named in messages: the node name the caller gives, else the
/// redacted conninfo.
pub fn remote_label(node: Option<&str>, redacted_conninfo: &str) -> String {
    match node {
        Some(n) if !n.is_empty() => format!("remote node \"{n}\""),
        _ => format!("remote connection \"{redacted_conninfo}\""),
    }
}

/// A value in PostgreSQL's text output format, converted to a Rust type.
pub trait FromText: Sized {
    fn from_text(s: &str) -> Option<Self>;
}

impl FromText for String {
    fn from_text(s: &str) -> Option<Self> {
        Some(s.to_string())
    }
}

impl FromText for bool {
    fn from_text(s: &str) -> Option<Self> {
        match s {
            "t" | "true" | "on" | "1" | "yes" => Some(true),
            "f" | "false" | "off" | "0" | "no" => Some(false),
            _ => None,
        }
    }
}

macro_rules! from_text_parse {
    ($($t:ty),*) => {$(
        impl FromText for $t {
            fn from_text(s: &str) -> Option<Self> {
                s.parse().ok()
            }
        }
    )*};
}
from_text_parse!(i16, i32, i64, u32, u64);

impl FromText for f64 {
    fn from_text(s: &str) -> Option<Self> {
        match s {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => s.parse().ok(),
        }
    }
}

/// A value that does not convert (22P02, as PostgreSQL's own input functions).
pub fn conversion_error(column: &str, value: &str, type_name: &str) -> RemoteError {
    let mut shown: String = value.chars().take(64).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    RemoteError::new(
        SqlState::INVALID_TEXT_REPRESENTATION,
        format!("invalid value for {type_name} in column \"{column}\""),
    )
    .detail(format!("The remote value was \"{shown}\"."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[(&str, &str)]) -> Vec<ConnOpt> {
        list.iter().map(|(k, v)| ConnOpt::new(k, v)).collect()
    }

    /// A tiny reader of the keyword=value syntax, only to check that `quote_value`
    /// output reads back (libpq's parser is the real one).
    fn read_back(s: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut it = s.chars().peekable();
        loop {
            while it.peek().is_some_and(|c| c.is_whitespace()) {
                it.next();
            }
            if it.peek().is_none() {
                break;
            }
            let mut k = String::new();
            for c in it.by_ref() {
                if c == '=' {
                    break;
                }
                k.push(c);
            }
            let mut v = String::new();
            if it.peek() == Some(&'\'') {
                it.next();
                while let Some(c) = it.next() {
                    match c {
                        '\\' => v.push(it.next().unwrap()),
                        '\'' => break,
                        c => v.push(c),
                    }
                }
            } else {
                while let Some(&c) = it.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    v.push(c);
                    it.next();
                }
            }
            out.push((k, v));
        }
        out
    }

    #[test]
    fn redaction_leaves_out_secrets() {
        let o = opts(&[
            ("host", "db1"),
            ("password", "s3cr3t pass'word"),
            ("dbname", "my db"),
            ("sslpassword", "keypass"),
            ("user", "o'brien"),
        ]);
        let r = render_redacted(&o);
        assert_eq!(r, r"host=db1 dbname='my db' user='o\'brien'");
        assert!(!r.contains("s3cr3t") && !r.contains("keypass"));
    }

    #[test]
    fn quoted_values_read_back() {
        for v in [
            "plain",
            "with space",
            "it's",
            r"back\slash",
            "",
            "tab\there",
            "=eq",
        ] {
            let s = format!("k={}", quote_value(v));
            assert_eq!(read_back(&s), vec![("k".to_string(), v.to_string())], "{s}");
        }
    }

    #[test]
    fn scrub_replaces_every_secret() {
        let secrets = vec![
            "hunter22".to_string(),
            "hunter22xyz".to_string(),
            "ab".to_string(),
        ];
        let m = "auth failed for hunter22xyz (tried hunter22) ab";
        assert_eq!(
            scrub(m, &secrets),
            "auth failed for ******** (tried ********) ab"
        );
        assert_eq!(scrub("nothing here", &secrets), "nothing here");
    }

    #[test]
    fn parse_errors_are_masked() {
        assert_eq!(
            mask_quoted(r#"missing "=" after "hunter2" in connection info string"#),
            r#"missing "…" after "…" in connection info string"#
        );
        assert_eq!(mask_quoted(r#"unterminated "secret"#), r#"unterminated "…"#);
        assert_eq!(mask_quoted("no quotes"), "no quotes");
    }

    #[test]
    fn secrets_and_password_given() {
        let o = opts(&[("password", "x y"), ("sslpassword", ""), ("user", "u")]);
        assert_eq!(secrets(&o), vec!["x y".to_string()]);
        assert!(gives_password(&o));
        assert!(!gives_password(&opts(&[("password", ""), ("user", "u")])));
        assert!(!gives_password(&opts(&[("user", "u")])));
    }

    #[test]
    fn params_add_defaults_and_force_encoding() {
        let s = ConnectSettings {
            purpose: "replay n1".into(),
            client_encoding: "UTF8".into(),
        };
        let p = connect_params(
            &opts(&[
                ("host", "h"),
                ("client_encoding", "LATIN1"),
                ("port", ""),
                ("keepalives", "0"),
            ]),
            &s,
        );
        let get = |k: &str| {
            p.iter()
                .filter(|o| o.keyword == k)
                .map(|o| o.value.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("client_encoding"), vec!["UTF8"]);
        assert_eq!(get("application_name"), vec!["pgq replay n1"]);
        assert_eq!(get("connect_timeout"), vec!["10"]);
        assert_eq!(
            get("keepalives"),
            vec!["0"],
            "the conninfo's own setting stays"
        );
        assert_eq!(get("keepalives_idle"), vec!["30"]);
        assert!(get("port").is_empty(), "empty values are dropped");

        let p = connect_params(
            &opts(&[("application_name", "mine"), ("connect_timeout", "3")]),
            &s,
        );
        let get = |k: &str| {
            p.iter()
                .filter(|o| o.keyword == k)
                .map(|o| o.value.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("application_name"), vec!["mine"]);
        assert_eq!(get("connect_timeout"), vec!["3"]);
    }

    #[test]
    fn application_name_is_bounded() {
        assert_eq!(application_name(""), "pgq");
        assert_eq!(application_name("copy t1"), "pgq copy t1");
        assert_eq!(application_name(&"x".repeat(100)).len(), 63);
        assert_eq!(
            application_name(&"é".repeat(40)).len(),
            62,
            "never splits a character"
        );
    }

    #[test]
    fn connect_timeout_as_libpq_reads_it() {
        let t = |v: &str| connect_timeout(&opts(&[("connect_timeout", v)]));
        assert_eq!(t("5"), Some(Duration::from_secs(5)));
        assert_eq!(t("1"), Some(Duration::from_secs(2)));
        assert_eq!(t("0"), None);
        assert_eq!(t("-3"), None);
        assert_eq!(
            t("abc"),
            Some(Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS))
        );
        assert_eq!(connect_timeout(&[]), None);
    }

    #[test]
    fn remote_errors_keep_the_remote_fields() {
        let e = RemoteError::from_remote(
            Some("23505"),
            Some("duplicate key value violates unique constraint \"t_pkey\""),
            Some("Key (id)=(1) already exists.\n"),
            None,
            Some("SQL statement \"insert ...\""),
            true,
            "ERROR:  duplicate ...\n",
        )
        .context(remote_label(Some("n1"), ""));
        assert_eq!(e.sqlstate, "23505");
        assert_eq!(e.detail.as_deref(), Some("Key (id)=(1) already exists."));
        assert_eq!(
            e.full_context().unwrap(),
            "remote SQL statement \"insert ...\"\nremote node \"n1\""
        );
    }

    #[test]
    fn libpq_made_errors_get_connection_codes() {
        let e = RemoteError::from_remote(
            None,
            None,
            None,
            None,
            None,
            false,
            "server closed the connection unexpectedly\n",
        );
        assert_eq!(e.sqlstate, "08006");
        assert_eq!(
            e.detail.as_deref(),
            Some("server closed the connection unexpectedly")
        );
        let e = RemoteError::from_remote(
            Some("bad"),
            Some("no COPY in progress"),
            None,
            None,
            None,
            true,
            "",
        );
        assert_eq!(e.sqlstate, "XX000");
        assert_eq!(e.message, "no COPY in progress");
        let e = RemoteError::from_remote(Some("12"), Some("x"), None, None, None, true, "");
        assert_eq!(e.sqlstate, "XX000");
    }

    #[test]
    fn fixed_errors() {
        let e = RemoteError::password_not_given();
        assert_eq!(
            (e.sqlstate.as_str(), e.message.as_str()),
            ("2F003", "password is required")
        );
        assert!(RemoteError::password_not_used().hint.is_some());
        let e = RemoteError::connect_failed("connection to server at \"h\" failed: refused\n");
        assert_eq!(e.sqlstate, "08001");
        assert_eq!(
            e.detail.as_deref(),
            Some("connection to server at \"h\" failed: refused")
        );
        let e = RemoteError::invalid_conninfo(
            "missing \"=\" after \"topsecret\" in connection info string\n",
        );
        assert_eq!(e.sqlstate, "42601");
        assert!(!e.to_string().contains("topsecret"));
    }

    #[test]
    fn scrubbed_error_has_no_secret() {
        let secrets = vec!["pa55word".to_string()];
        let e = RemoteError::new(
            SqlState::parse("28P01").unwrap(),
            "password authentication failed pa55word",
        )
        .detail("pa55word")
        .hint("use pa55word")
        .context("remote pa55word")
        .scrubbed(&secrets);
        assert!(!e.to_string().contains("pa55word"), "{e}");
    }

    #[test]
    fn labels() {
        assert_eq!(remote_label(Some("prov"), "host=h"), "remote node \"prov\"");
        assert_eq!(remote_label(None, "host=h"), "remote connection \"host=h\"");
        assert_eq!(
            remote_label(Some(""), "host=h"),
            "remote connection \"host=h\""
        );
    }

    #[test]
    fn text_values() {
        assert_eq!(bool::from_text("t"), Some(true));
        assert_eq!(bool::from_text("f"), Some(false));
        assert_eq!(bool::from_text("x"), None);
        assert_eq!(i64::from_text("-42"), Some(-42));
        assert_eq!(i32::from_text("4.2"), None);
        assert_eq!(f64::from_text("Infinity"), Some(f64::INFINITY));
        assert!(f64::from_text("NaN").unwrap().is_nan());
        assert_eq!(String::from_text("a b"), Some("a b".to_string()));
        let e = conversion_error("c", &"9".repeat(100), "bigint");
        assert_eq!(e.sqlstate, "22P02");
        assert!(e.detail.as_deref().unwrap().ends_with("…\"."));
    }
}
