//! Indexes and constraints an initial copy drops before its COPY and rebuilds after it
//! (docs/replication.md, "Initial copy"). Pure: the catalog facts come in, the verdict
//! and the statements go out; src/replay/copy.rs reads the facts and runs the SQL.
//!
//! Restoring rebuilds each index from its `pg_get_indexdef` text (names, method,
//! columns, expressions, opclasses, collations, `INCLUDE`, `WITH (...)`, `WHERE`,
//! `NULLS NOT DISTINCT` are in it) in the tablespace it was in (via
//! `default_tablespace`, since neither `pg_get_indexdef` nor `pg_get_constraintdef` names
//! it). A primary key or unique constraint is then put back onto its rebuilt index with
//! `ADD CONSTRAINT ... USING INDEX` (its deferrability as before), an exclusion
//! constraint from its `pg_get_constraintdef` text. Comments of indexes and constraints,
//! the `CLUSTER` mark and the replica identity index follow. Indexes are rebuilt in their
//! original order (by OID), so the same unique index reports a conflict first.
//!
//! What this cannot put back exactly is left in place (kept, and maintained row by
//! row during the COPY as before): an index other objects depend on (a view's
//! functional dependency on a primary key, a foreign key still referencing it), an
//! index with a statistics target on one of its columns or a security label, an
//! index not valid or not ready, an inherited constraint, an exclusion constraint with
//! storage parameters, an index in a tablespace the role may not create in. The whole
//! table is left alone when it is partitioned, a partition, has inheritance children,
//! or is not owned by the replay role.

use super::quote;

/// The kind of constraint an index backs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConKind {
    Primary,
    Unique,
    Exclusion,
}

impl ConKind {
    /// From `pg_constraint.contype`.
    pub fn from_contype(c: &str) -> Option<ConKind> {
        match c {
            "p" => Some(ConKind::Primary),
            "u" => Some(ConKind::Unique),
            "x" => Some(ConKind::Exclusion),
            _ => None,
        }
    }
}

/// The constraint an index backs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConFacts {
    pub name: String,
    pub kind: ConKind,
    /// `pg_get_constraintdef(oid)`
    pub def: String,
    pub deferrable: bool,
    pub deferred: bool,
    /// `coninhcount > 0 or not conislocal`
    pub inherited: bool,
    pub comment: Option<String>,
}

/// One index of the destination, as the catalogs tell it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexFacts {
    /// unqualified (an index lives in its table's schema)
    pub name: String,
    /// `pg_get_indexdef(oid)`
    pub def: String,
    /// None: the database's default tablespace
    pub tablespace: Option<String>,
    /// the role may create in that tablespace (true for the default one)
    pub tablespace_ok: bool,
    pub constraint: Option<ConFacts>,
    pub clustered: bool,
    pub replident: bool,
    /// indisvalid and indisready and indislive
    pub valid: bool,
    pub has_reloptions: bool,
    /// objects other than its own constraint depend on the index or its constraint
    pub has_dependents: bool,
    /// a column of the index has its own statistics target
    pub has_stattarget: bool,
    pub has_seclabel: bool,
    pub comment: Option<String>,
}

/// The destination table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableFacts {
    /// schema-qualified, quoted
    pub qname: String,
    /// quoted schema name
    pub qschema: String,
    pub partitioned: bool,
    pub partition: bool,
    pub has_children: bool,
    /// the replay role has the owner's privileges
    pub owned: bool,
}

/// One restore statement, run with `default_tablespace` set to `tablespace` ('' for the
/// database default) when that is Some.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    pub tablespace: Option<String>,
    pub sql: String,
}

/// What to do around the COPY.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// run before the COPY, in order
    pub drop: Vec<String>,
    /// run after the COPY, in order
    pub restore: Vec<Stmt>,
    /// names of the indexes left in place, with the reason
    pub kept: Vec<(String, &'static str)>,
}

/// The restore statements as one SQL text, what a lead copy of a merged table stores
/// in `londiste.table_info.dropped_ddl` until every part queue's copy is in: each
/// statement ends with `;` and its own line, a tablespace it asks for set before it
/// (`SET LOCAL default_tablespace`, back to the default at the end). None: nothing was
/// dropped.
pub fn ddl_text(stmts: &[Stmt]) -> Option<String> {
    if stmts.is_empty() {
        return None;
    }
    let mut out = String::new();
    let mut set = false;
    for s in stmts {
        if let Some(ts) = &s.tablespace {
            out.push_str(&format!(
                "SET LOCAL default_tablespace = {};\n",
                crate::logic::quote::literal(ts)
            ));
            set = true;
        }
        out.push_str(s.sql.trim_end().trim_end_matches(';'));
        out.push_str(";\n");
    }
    if set {
        out.push_str("SET LOCAL default_tablespace TO DEFAULT;\n");
    }
    Some(out)
}

/// Why a table is copied with all its indexes in place (None: it may drop them).
pub fn table_skip_reason(t: &TableFacts) -> Option<&'static str> {
    if t.partitioned {
        Some("a partitioned table")
    } else if t.partition {
        Some("a partition")
    } else if t.has_children {
        Some("a table with inheritance children")
    } else if !t.owned {
        Some("not owned by the replay role")
    } else {
        None
    }
}

/// Why this index stays in place (None: it is dropped and rebuilt).
pub fn index_keep_reason(i: &IndexFacts) -> Option<&'static str> {
    if !i.valid {
        return Some("not valid");
    }
    if i.has_dependents {
        return Some("other objects depend on it");
    }
    if i.has_stattarget {
        return Some("a column statistics target");
    }
    if i.has_seclabel {
        return Some("a security label");
    }
    if !i.tablespace_ok {
        return Some("no CREATE privilege on its tablespace");
    }
    if let Some(c) = &i.constraint {
        if c.inherited {
            return Some("an inherited constraint");
        }
        if c.kind == ConKind::Exclusion && i.has_reloptions {
            return Some("an exclusion constraint with storage parameters");
        }
    }
    None
}

fn deferrability(c: &ConFacts) -> &'static str {
    match (c.deferrable, c.deferred) {
        (true, true) => " DEFERRABLE INITIALLY DEFERRED",
        (true, false) => " DEFERRABLE",
        _ => "",
    }
}

/// The plan for `table` with `indexes` (in OID order). Empty when the table is skipped.
pub fn plan(table: &TableFacts, indexes: &[IndexFacts]) -> Plan {
    let mut p = Plan::default();
    if table_skip_reason(table).is_some() {
        return p;
    }
    let mut after = Vec::new();
    for i in indexes {
        if let Some(why) = index_keep_reason(i) {
            p.kept.push((i.name.clone(), why));
            continue;
        }
        let qidx = format!("{}.{}", table.qschema, quote::ident(&i.name, false));
        let ts = Some(i.tablespace.clone().unwrap_or_default());
        match &i.constraint {
            Some(c) => {
                let qcon = quote::ident(&c.name, false);
                p.drop.push(format!(
                    "ALTER TABLE ONLY {} DROP CONSTRAINT {qcon}",
                    table.qname
                ));
                match c.kind {
                    ConKind::Primary | ConKind::Unique => {
                        p.restore.push(Stmt {
                            tablespace: ts,
                            sql: i.def.clone(),
                        });
                        let kw = if c.kind == ConKind::Primary {
                            "PRIMARY KEY"
                        } else {
                            "UNIQUE"
                        };
                        p.restore.push(Stmt {
                            tablespace: None,
                            sql: format!(
                                "ALTER TABLE ONLY {} ADD CONSTRAINT {qcon} {kw} USING INDEX {}{}",
                                table.qname,
                                quote::ident(&i.name, false),
                                deferrability(c)
                            ),
                        });
                    }
                    ConKind::Exclusion => {
                        p.restore.push(Stmt {
                            tablespace: ts,
                            sql: format!(
                                "ALTER TABLE ONLY {} ADD CONSTRAINT {qcon} {}",
                                table.qname, c.def
                            ),
                        });
                    }
                }
                if let Some(cm) = &c.comment {
                    after.push(format!(
                        "COMMENT ON CONSTRAINT {qcon} ON {} IS {}",
                        table.qname,
                        quote::literal(cm)
                    ));
                }
            }
            None => {
                p.drop.push(format!("DROP INDEX {qidx}"));
                p.restore.push(Stmt {
                    tablespace: ts,
                    sql: i.def.clone(),
                });
            }
        }
        if let Some(cm) = &i.comment {
            after.push(format!("COMMENT ON INDEX {qidx} IS {}", quote::literal(cm)));
        }
        if i.clustered {
            after.push(format!(
                "ALTER TABLE ONLY {} CLUSTER ON {}",
                table.qname,
                quote::ident(&i.name, false)
            ));
        }
        if i.replident {
            after.push(format!(
                "ALTER TABLE ONLY {} REPLICA IDENTITY USING INDEX {}",
                table.qname,
                quote::ident(&i.name, false)
            ));
        }
    }
    p.restore.extend(after.into_iter().map(|sql| Stmt {
        tablespace: None,
        sql,
    }));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableFacts {
        TableFacts {
            qname: "s.\"T\"".into(),
            qschema: "s".into(),
            partitioned: false,
            partition: false,
            has_children: false,
            owned: true,
        }
    }

    fn idx(name: &str, def: &str) -> IndexFacts {
        IndexFacts {
            name: name.into(),
            def: def.into(),
            tablespace: None,
            tablespace_ok: true,
            constraint: None,
            clustered: false,
            replident: false,
            valid: true,
            has_reloptions: false,
            has_dependents: false,
            has_stattarget: false,
            has_seclabel: false,
            comment: None,
        }
    }

    fn con(name: &str, kind: ConKind, def: &str) -> ConFacts {
        ConFacts {
            name: name.into(),
            kind,
            def: def.into(),
            deferrable: false,
            deferred: false,
            inherited: false,
            comment: None,
        }
    }

    fn sqls(p: &Plan) -> Vec<&str> {
        p.restore.iter().map(|s| s.sql.as_str()).collect()
    }

    #[test]
    fn stored_ddl_text() {
        assert_eq!(ddl_text(&[]), None);
        let plain = vec![
            Stmt {
                tablespace: None,
                sql: "ALTER TABLE s.t ADD CONSTRAINT t_pkey PRIMARY KEY (id)".into(),
            },
            Stmt {
                tablespace: Some("fast's".into()),
                sql: "CREATE INDEX i ON s.t USING btree (v);".into(),
            },
        ];
        assert_eq!(
            ddl_text(&plain).unwrap(),
            "ALTER TABLE s.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n\
             SET LOCAL default_tablespace = 'fast''s';\n\
             CREATE INDEX i ON s.t USING btree (v);\n\
             SET LOCAL default_tablespace TO DEFAULT;\n"
        );
    }

    #[test]
    fn primary_key_and_plain_index() {
        let mut pk = idx(
            "T_pkey",
            "CREATE UNIQUE INDEX \"T_pkey\" ON s.\"T\" USING btree (id)",
        );
        pk.constraint = Some(con("T_pkey", ConKind::Primary, "PRIMARY KEY (id)"));
        let mut sec = idx(
            "by_name",
            "CREATE INDEX by_name ON s.\"T\" USING btree (name) WHERE (x > 0)",
        );
        sec.tablespace = Some("fast".into());
        let p = plan(&table(), &[pk, sec]);
        assert_eq!(
            p.drop,
            vec![
                "ALTER TABLE ONLY s.\"T\" DROP CONSTRAINT \"T_pkey\"",
                "DROP INDEX s.by_name"
            ]
        );
        assert_eq!(
            sqls(&p),
            vec![
                "CREATE UNIQUE INDEX \"T_pkey\" ON s.\"T\" USING btree (id)",
                "ALTER TABLE ONLY s.\"T\" ADD CONSTRAINT \"T_pkey\" PRIMARY KEY USING INDEX \"T_pkey\"",
                "CREATE INDEX by_name ON s.\"T\" USING btree (name) WHERE (x > 0)",
            ]
        );
        // each index in its own tablespace ('' = the database default); constraints
        // made on an existing index need none
        assert_eq!(p.restore[0].tablespace.as_deref(), Some(""));
        assert_eq!(p.restore[1].tablespace, None);
        assert_eq!(p.restore[2].tablespace.as_deref(), Some("fast"));
        assert!(p.kept.is_empty());
    }

    #[test]
    fn deferrable_unique_exclusion_marks_and_comments() {
        let mut u = idx(
            "u_k",
            "CREATE UNIQUE INDEX u_k ON s.\"T\" USING btree (a, b)",
        );
        let mut c = con(
            "u_k",
            ConKind::Unique,
            "UNIQUE (a, b) DEFERRABLE INITIALLY DEFERRED",
        );
        c.deferrable = true;
        c.deferred = true;
        c.comment = Some("it's the key".into());
        u.constraint = Some(c);
        u.comment = Some("index note".into());
        let mut x = idx(
            "no_overlap",
            "CREATE INDEX no_overlap ON s.\"T\" USING gist (r)",
        );
        let mut xc = con(
            "no_overlap",
            ConKind::Exclusion,
            "EXCLUDE USING gist (r WITH &&)",
        );
        xc.deferrable = true;
        x.constraint = Some(xc);
        let mut cl = idx(
            "lower_e",
            "CREATE INDEX lower_e ON s.\"T\" USING btree (lower(e))",
        );
        cl.clustered = true;
        let mut ri = idx("ri", "CREATE UNIQUE INDEX ri ON s.\"T\" USING btree (a)");
        ri.replident = true;
        let p = plan(&table(), &[u, x, cl, ri]);
        assert_eq!(p.drop.len(), 4);
        assert_eq!(
            sqls(&p),
            vec![
                "CREATE UNIQUE INDEX u_k ON s.\"T\" USING btree (a, b)",
                "ALTER TABLE ONLY s.\"T\" ADD CONSTRAINT u_k UNIQUE USING INDEX u_k DEFERRABLE INITIALLY DEFERRED",
                // the exclusion constraint's text carries its own deferrability
                "ALTER TABLE ONLY s.\"T\" ADD CONSTRAINT no_overlap EXCLUDE USING gist (r WITH &&)",
                "CREATE INDEX lower_e ON s.\"T\" USING btree (lower(e))",
                "CREATE UNIQUE INDEX ri ON s.\"T\" USING btree (a)",
                "COMMENT ON CONSTRAINT u_k ON s.\"T\" IS 'it''s the key'",
                "COMMENT ON INDEX s.u_k IS 'index note'",
                "ALTER TABLE ONLY s.\"T\" CLUSTER ON lower_e",
                "ALTER TABLE ONLY s.\"T\" REPLICA IDENTITY USING INDEX ri",
            ]
        );
        assert_eq!(p.restore[2].tablespace.as_deref(), Some(""));
    }

    #[test]
    fn deferrable_not_deferred() {
        let mut u = idx("k", "CREATE UNIQUE INDEX k ON s.\"T\" USING btree (a)");
        let mut c = con("k", ConKind::Unique, "UNIQUE (a) DEFERRABLE");
        c.deferrable = true;
        u.constraint = Some(c);
        let p = plan(&table(), &[u]);
        assert!(p.restore[1].sql.ends_with("USING INDEX k DEFERRABLE"));
    }

    #[test]
    fn kept_indexes() {
        let mut a = idx("a", "CREATE INDEX a ON s.\"T\" USING btree (a)");
        a.valid = false;
        let mut b = idx("b", "CREATE UNIQUE INDEX b ON s.\"T\" USING btree (b)");
        b.constraint = Some(con("b", ConKind::Primary, "PRIMARY KEY (b)"));
        b.has_dependents = true;
        let mut c = idx("c", "CREATE INDEX c ON s.\"T\" USING btree ((c + 1))");
        c.has_stattarget = true;
        let mut d = idx("d", "CREATE INDEX d ON s.\"T\" USING btree (d)");
        d.tablespace = Some("t".into());
        d.tablespace_ok = false;
        let mut e = idx(
            "e",
            "CREATE INDEX e ON s.\"T\" USING gist (e) WITH (buffering=on)",
        );
        e.constraint = Some(con(
            "e",
            ConKind::Exclusion,
            "EXCLUDE USING gist (e WITH &&)",
        ));
        e.has_reloptions = true;
        let mut f = idx("f", "CREATE UNIQUE INDEX f ON s.\"T\" USING btree (f)");
        let mut fc = con("f", ConKind::Unique, "UNIQUE (f)");
        fc.inherited = true;
        f.constraint = Some(fc);
        let mut g = idx("g", "CREATE INDEX g ON s.\"T\" USING btree (g)");
        g.has_seclabel = true;
        // storage parameters of a plain or unique index are in its definition
        let mut h = idx(
            "h",
            "CREATE INDEX h ON s.\"T\" USING btree (h) WITH (fillfactor='50')",
        );
        h.has_reloptions = true;
        let p = plan(&table(), &[a, b, c, d, e, f, g, h]);
        assert_eq!(
            p.kept.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(),
            vec!["a", "b", "c", "d", "e", "f", "g"]
        );
        assert_eq!(p.drop, vec!["DROP INDEX s.h"]);
        assert_eq!(
            sqls(&p),
            vec!["CREATE INDEX h ON s.\"T\" USING btree (h) WITH (fillfactor='50')"]
        );
    }

    #[test]
    fn skipped_tables() {
        let i = [idx("a", "CREATE INDEX a ON s.\"T\" USING btree (a)")];
        assert_eq!(table_skip_reason(&table()), None);
        assert!(!plan(&table(), &i).drop.is_empty());
        let cases: [fn(&mut TableFacts); 4] = [
            |t| t.partitioned = true,
            |t| t.partition = true,
            |t| t.has_children = true,
            |t| t.owned = false,
        ];
        for f in cases {
            let mut t = table();
            f(&mut t);
            assert!(table_skip_reason(&t).is_some());
            assert_eq!(plan(&t, &i), Plan::default());
        }
    }
}
