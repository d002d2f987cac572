//! The pure parts of the SQL administration (src/admin/, docs/admin.md): lag as
//! `londiste status` computes it, and add_table's options as londiste's arguments.

/// What the lag of a node is computed from, as one node reports it.
#[derive(Debug, Default, Clone)]
pub struct LagFacts {
    pub provider: Option<String>,
    pub worker: Option<String>,
    /// consumer name → epoch seconds of the tick it last finished (this node as a
    /// provider records it)
    pub consumers: Vec<(String, f64)>,
    /// a root: (ticker lag seconds, its clock in epoch seconds)
    pub queue: Option<(f64, f64)>,
}

/// The lag of `name` in seconds: the root's clock minus the time of the tick the node's
/// worker last finished, as its provider records it (never negative); a root's lag is
/// its ticker lag. `nodes`: every member with what it reported (None: unreachable).
pub fn lag(name: &str, nodes: &[(&str, Option<&LagFacts>)]) -> Option<f64> {
    let me = nodes.iter().find(|(n, _)| *n == name)?.1?;
    let root_now = nodes
        .iter()
        .filter_map(|(_, f)| *f)
        .find_map(|f| f.queue.map(|(_, now)| now))?;
    if let Some((lag, _)) = me.queue {
        return Some(lag.max(0.0));
    }
    let provider = me.provider.as_deref()?;
    let worker = me.worker.as_deref()?;
    let p = nodes.iter().find(|(n, _)| *n == provider)?.1?;
    let t = p.consumers.iter().find(|(c, _)| c == worker)?.1;
    Some((root_now - t).max(0.0))
}

/// `name` as londiste spells it: schema-qualified, `public.` by default.
pub fn fq(name: &str) -> String {
    crate::logic::londiste::make_fqname(name)
}

/// The options of add_table, as `londiste add-table` takes them.
#[derive(Debug, Default)]
pub struct AddTable<'a> {
    pub create: bool,
    pub skip_truncate: bool,
    pub expect_sync: bool,
    pub copy_node: Option<&'a str>,
    pub when: Option<&'a str>,
    pub trigger_args: Vec<String>,
    pub dest_table: Option<&'a str>,
}

/// The trigger arguments and table attributes londiste.local_add_table gets.
pub fn add_table_args(o: &AddTable<'_>) -> (Vec<String>, Option<String>) {
    let mut tgargs = Vec::new();
    if o.expect_sync {
        tgargs.push("expect_sync".to_string());
    }
    if o.skip_truncate {
        tgargs.push("skip_truncate".to_string());
    }
    if let Some(w) = o.when {
        tgargs.push(format!("when={w}"));
    }
    tgargs.extend(o.trigger_args.iter().cloned());
    let attrs = o.copy_node.map(|n| {
        format!(
            "copy_node={}",
            crate::logic::triggers::urlencode(n.as_bytes())
        )
    });
    (tgargs, attrs)
}

/// A text[] literal of `items` (an array passed as one text parameter).
pub fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_root_clock_minus_the_providers_record_of_the_worker() {
        let root = LagFacts {
            queue: Some((0.5, 1000.0)),
            consumers: vec![("w_branch".into(), 990.0)],
            ..Default::default()
        };
        let branch = LagFacts {
            provider: Some("root".into()),
            worker: Some("w_branch".into()),
            consumers: vec![("w_leaf".into(), 1003.0)],
            ..Default::default()
        };
        let leaf = LagFacts {
            provider: Some("branch".into()),
            worker: Some("w_leaf".into()),
            ..Default::default()
        };
        let nodes = [
            ("root", Some(&root)),
            ("branch", Some(&branch)),
            ("leaf", Some(&leaf)),
            ("gone", None),
        ];
        assert_eq!(lag("root", &nodes), Some(0.5));
        assert_eq!(lag("branch", &nodes), Some(10.0));
        // a clock ahead of the root's gives no negative lag
        assert_eq!(lag("leaf", &nodes), Some(0.0));
        assert_eq!(lag("gone", &nodes), None);
        // no root reachable: no clock to measure against
        assert_eq!(lag("leaf", &nodes[1..]), None);
    }

    #[test]
    fn add_table_options_become_londiste_arguments() {
        let o = AddTable {
            skip_truncate: true,
            expect_sync: true,
            copy_node: Some("n 1"),
            when: Some("new.x > 0"),
            trigger_args: vec!["pkey=id".into()],
            ..Default::default()
        };
        let (tg, attrs) = add_table_args(&o);
        assert_eq!(
            tg,
            ["expect_sync", "skip_truncate", "when=new.x > 0", "pkey=id"]
        );
        assert_eq!(attrs.as_deref(), Some("copy_node=n+1"));
        assert_eq!(
            add_table_args(&AddTable::default()),
            (Vec::<String>::new(), None)
        );
        assert_eq!(
            array_literal(&tg),
            r#"{"expect_sync","skip_truncate","when=new.x > 0","pkey=id"}"#
        );
        assert_eq!(array_literal(&[r#"a"b\c"#.to_string()]), r#"{"a\"b\\c"}"#);
        assert_eq!(array_literal(&[]), "{}");
    }

    #[test]
    fn names_default_to_public() {
        assert_eq!(fq("t"), "public.t");
        assert_eq!(fq("s.t"), "s.t");
    }
}
