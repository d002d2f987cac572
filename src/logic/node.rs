//! Cascaded-queue decisions (docs/pgq_node.md): node types, argument checks of
//! create_node, watermark moves, demote_root steps, and the texts of the result
//! notes. Pure, so the rules are unit-tested without a server.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    Root,
    Branch,
    Leaf,
}

impl NodeType {
    pub fn parse(s: &str) -> Option<NodeType> {
        match s {
            "root" => Some(NodeType::Root),
            "branch" => Some(NodeType::Branch),
            "leaf" => Some(NodeType::Leaf),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Root => "root",
            NodeType::Branch => "branch",
            NodeType::Leaf => "leaf",
        }
    }

    /// Root and branch nodes own a pgq queue; leaves do not.
    pub fn has_queue(self) -> bool {
        !matches!(self, NodeType::Leaf)
    }
}

/// create_node argument check: the 401 note, if the arguments are wrong for the type.
/// Unknown types pass (the original goes on and the CHECK constraint rejects the row).
pub fn create_node_arg_error(
    node_type: Option<&str>,
    provider: Option<&str>,
    global_watermark: Option<i64>,
    combined_queue: Option<&str>,
) -> Option<&'static str> {
    match node_type.and_then(NodeType::parse) {
        Some(NodeType::Root) => {
            if provider.is_some() || global_watermark.is_some() || combined_queue.is_some() {
                Some("unexpected args for root")
            } else {
                None
            }
        }
        Some(NodeType::Branch) => {
            if provider.is_none() {
                Some("provider not set for branch")
            } else if global_watermark.is_none() {
                Some("global watermark not set for branch")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// How set_subscriber_watermark treats a new value against the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkMove {
    Backwards,
    Same,
    Forward,
}

/// Comparisons with NULL are neither smaller nor equal, so they move forward (and
/// pgq.register_consumer_at then decides), as in the original.
pub fn watermark_move(current: Option<i64>, new: Option<i64>) -> WatermarkMove {
    match (current, new) {
        (Some(c), Some(n)) if n < c => WatermarkMove::Backwards,
        (Some(c), Some(n)) if n == c => WatermarkMove::Same,
        _ => WatermarkMove::Forward,
    }
}

/// demote_root steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoteStep {
    DisableWrites,
    LastTick,
    Demote,
}

pub fn demote_step(step: Option<i32>) -> Option<DemoteStep> {
    match step {
        Some(1) => Some(DemoteStep::DisableWrites),
        Some(2) => Some(DemoteStep::LastTick),
        Some(3) => Some(DemoteStep::Demote),
        _ => None,
    }
}

/// Name of the pseudo-consumer carrying a subscriber's watermark.
pub fn subscriber_watermark_name(node: &str) -> String {
    format!(".{node}.watermark")
}

pub const GLOBAL_WATERMARK: &str = ".global_watermark";

/// Word used by set_consumer_paused notes.
pub fn paused_word(paused: Option<bool>) -> &'static str {
    if paused == Some(true) {
        "paused"
    } else {
        "resumed"
    }
}

/// Name of a pgq_coop sub-consumer's own pgq consumer.
pub fn subconsumer_name(consumer: &str, sub: &str) -> String {
    format!("{consumer}.{sub}")
}

/// An error DETAIL without the Rust backtrace that a pgrx guard appends to it when
/// RUST_BACKTRACE is set (pgrx writes `"{detail}\n{backtrace}"`, and a rendered
/// backtrace starts with frame `   0: `). None when nothing else is left.
pub fn strip_backtrace(detail: &str) -> Option<&str> {
    let d = match detail.find("\n   0: ") {
        Some(i) => &detail[..i],
        None => detail,
    };
    (!d.is_empty()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtrace_stripped_from_detail() {
        assert_eq!(
            strip_backtrace("Failing row contains (1)."),
            Some("Failing row contains (1).")
        );
        assert_eq!(
            strip_backtrace("Key (id)=(1) exists.\n   0: std::thread::local\n   1: x"),
            Some("Key (id)=(1) exists.")
        );
        assert_eq!(strip_backtrace("\n   0: std::thread::local\n"), None);
        assert_eq!(strip_backtrace(""), None);
        assert_eq!(strip_backtrace("two\nlines"), Some("two\nlines"));
    }

    #[test]
    fn root_takes_no_provider_args() {
        assert_eq!(create_node_arg_error(Some("root"), None, None, None), None);
        assert_eq!(
            create_node_arg_error(Some("root"), Some("n1"), None, None),
            Some("unexpected args for root")
        );
        assert_eq!(
            create_node_arg_error(Some("root"), None, Some(1), None),
            Some("unexpected args for root")
        );
        assert_eq!(
            create_node_arg_error(Some("root"), None, None, Some("cq")),
            Some("unexpected args for root")
        );
    }

    #[test]
    fn branch_needs_provider_then_watermark() {
        assert_eq!(
            create_node_arg_error(Some("branch"), None, None, None),
            Some("provider not set for branch")
        );
        assert_eq!(
            create_node_arg_error(Some("branch"), Some("p"), None, None),
            Some("global watermark not set for branch")
        );
        assert_eq!(
            create_node_arg_error(Some("branch"), Some("p"), Some(5), None),
            None
        );
    }

    #[test]
    fn leaf_and_unknown_types_pass() {
        assert_eq!(create_node_arg_error(Some("leaf"), None, None, None), None);
        assert_eq!(create_node_arg_error(Some("bogus"), None, None, None), None);
        assert_eq!(create_node_arg_error(None, None, None, None), None);
    }

    #[test]
    fn node_types() {
        assert_eq!(NodeType::parse("root"), Some(NodeType::Root));
        assert_eq!(NodeType::parse("Root"), None);
        assert!(NodeType::Branch.has_queue());
        assert!(!NodeType::Leaf.has_queue());
    }

    #[test]
    fn watermark_moves() {
        assert_eq!(watermark_move(Some(5), Some(4)), WatermarkMove::Backwards);
        assert_eq!(watermark_move(Some(5), Some(5)), WatermarkMove::Same);
        assert_eq!(watermark_move(Some(5), Some(6)), WatermarkMove::Forward);
        assert_eq!(watermark_move(None, Some(6)), WatermarkMove::Forward);
        assert_eq!(watermark_move(Some(5), None), WatermarkMove::Forward);
    }

    #[test]
    fn demote_steps() {
        assert_eq!(demote_step(Some(1)), Some(DemoteStep::DisableWrites));
        assert_eq!(demote_step(Some(3)), Some(DemoteStep::Demote));
        assert_eq!(demote_step(Some(0)), None);
        assert_eq!(demote_step(None), None);
    }

    #[test]
    fn names() {
        assert_eq!(subscriber_watermark_name("n2"), ".n2.watermark");
        assert_eq!(subconsumer_name("c", "s"), "c.s");
        assert_eq!(paused_word(Some(true)), "paused");
        assert_eq!(paused_word(Some(false)), "resumed");
    }
}
