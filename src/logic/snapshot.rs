//! txid snapshots (`xmin:xmax:xip,...`) and the visibility rule batches are built on.
//!
//! Pure Rust, no PostgreSQL: the text form is what `txid_snapshot` prints and what
//! Python's `skytools.Snapshot` parses, with 64-bit epoch-extended txids.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub xmin: i64,
    pub xmax: i64,
    /// In-progress txids, sorted ascending, all in `xmin..xmax`.
    pub xip: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotParseError(pub String);

impl fmt::Display for SnapshotParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid txid snapshot: \"{}\"", self.0)
    }
}

impl Snapshot {
    pub fn parse(text: &str) -> Result<Snapshot, SnapshotParseError> {
        let err = || SnapshotParseError(text.to_string());
        let mut parts = text.splitn(3, ':');
        let xmin: i64 = parts
            .next()
            .ok_or_else(err)?
            .trim()
            .parse()
            .map_err(|_| err())?;
        let xmax: i64 = parts
            .next()
            .ok_or_else(err)?
            .trim()
            .parse()
            .map_err(|_| err())?;
        let rest = parts.next().ok_or_else(err)?.trim();
        let mut xip = Vec::new();
        if !rest.is_empty() {
            for p in rest.split(',') {
                xip.push(p.trim().parse::<i64>().map_err(|_| err())?);
            }
        }
        if xmin > xmax || xip.iter().any(|&x| x < xmin || x >= xmax) {
            return Err(err());
        }
        xip.sort_unstable();
        xip.dedup();
        Ok(Snapshot { xmin, xmax, xip })
    }

    /// Did the transaction `txid` commit before this snapshot was taken (as far as
    /// the snapshot can tell: aborted transactions are "visible" too, they just have no rows).
    pub fn visible(&self, txid: i64) -> bool {
        txid < self.xmin || (txid < self.xmax && self.xip.binary_search(&txid).is_err())
    }

    pub fn in_progress(&self, txid: i64) -> bool {
        self.xip.binary_search(&txid).is_ok()
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.xmin, self.xmax)?;
        for (i, x) in self.xip.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{x}")?;
        }
        Ok(())
    }
}

/// The set of txids belonging to the batch between ticks `sn1` (older) and `sn2`:
/// visible in `sn2` and not visible in `sn1`. Described as a half-open range
/// `[lo, hi)` minus `range_exclude`, restricted below `sn1.xmax` to `range_low_ids`,
/// plus an explicit `extra` list of far-away ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTxids {
    pub lo: i64,
    pub hi: i64,
    /// `sn1.xmax`: ids in `[lo, low_bound)` count only if listed in `range_low_ids`.
    pub low_bound: i64,
    pub range_low_ids: Vec<i64>,
    /// txids in `[lo, hi)` still running at `sn2` (never part of the batch).
    pub range_exclude: Vec<i64>,
    /// txids far below the range that finished between the ticks.
    pub extra: Vec<i64>,
}

/// How far below the range start a finished transaction may lie and still be folded
/// into the range scan instead of the explicit list (keeps index range scans short).
pub const ABSORB_DISTANCE: i64 = 100;

impl BatchTxids {
    pub fn between(sn1: &Snapshot, sn2: &Snapshot) -> BatchTxids {
        let hi = sn2.xmax;
        let mut lo = sn1.xmax;
        let mut range_low_ids = Vec::new();
        let mut extra = Vec::new();
        // txids running at sn1 that are no longer running at sn2: they ended in between.
        for &x in sn1.xip.iter().rev() {
            if sn2.in_progress(x) {
                continue;
            }
            if x >= lo - ABSORB_DISTANCE {
                lo = x;
                range_low_ids.push(x);
            } else {
                extra.push(x);
            }
        }
        range_low_ids.sort_unstable();
        extra.sort_unstable();
        let range_exclude = sn2
            .xip
            .iter()
            .copied()
            .filter(|&x| x >= lo && x < hi)
            .collect();
        BatchTxids {
            lo,
            hi,
            low_bound: sn1.xmax,
            range_low_ids,
            range_exclude,
            extra,
        }
    }

    /// Reference membership test (used by tests to check the SQL built from this).
    pub fn contains(&self, x: i64) -> bool {
        if self.extra.binary_search(&x).is_ok() {
            return true;
        }
        if x < self.lo || x >= self.hi || self.range_exclude.binary_search(&x).is_ok() {
            return false;
        }
        x >= self.low_bound || self.range_low_ids.binary_search(&x).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_print() {
        let s = Snapshot::parse("759:763:759").unwrap();
        assert_eq!(
            s,
            Snapshot {
                xmin: 759,
                xmax: 763,
                xip: vec![759]
            }
        );
        assert_eq!(s.to_string(), "759:763:759");
        let e = Snapshot::parse("766:766:").unwrap();
        assert!(e.xip.is_empty());
        assert_eq!(e.to_string(), "766:766:");
        assert!(Snapshot::parse("5:3:").is_err());
        assert!(Snapshot::parse("1:3:7").is_err());
        assert!(Snapshot::parse("a:b:").is_err());
        assert!(Snapshot::parse("1:2").is_err());
    }

    #[test]
    fn visibility() {
        let s = Snapshot::parse("10:20:12,15").unwrap();
        assert!(s.visible(9));
        assert!(s.visible(11));
        assert!(!s.visible(12));
        assert!(!s.visible(15));
        assert!(s.visible(19));
        assert!(!s.visible(20));
    }

    #[test]
    fn spec_worked_example() {
        // a worked example: tick 3 = 759:763:759, tick 4 = 766:766:
        let sn1 = Snapshot::parse("759:763:759").unwrap();
        let sn2 = Snapshot::parse("766:766:").unwrap();
        let b = BatchTxids::between(&sn1, &sn2);
        assert_eq!(b.lo, 759);
        assert_eq!(b.hi, 766);
        assert!(b.extra.is_empty());
        assert!(b.contains(759));
        assert!(!b.contains(760));
        assert!(b.contains(763));
        assert!(!b.contains(766));
        // batch 2 -> 3
        let sn0 = Snapshot::parse("759:761:759").unwrap();
        let b = BatchTxids::between(&sn0, &sn1);
        assert_eq!((b.lo, b.hi), (761, 763));
        assert!(!b.contains(759));
    }

    #[test]
    fn far_away_txid_goes_to_explicit_list() {
        let sn1 = Snapshot::parse("100:1000:100,500").unwrap();
        let sn2 = Snapshot::parse("500:1200:500").unwrap();
        let b = BatchTxids::between(&sn1, &sn2);
        assert_eq!(b.extra, vec![100]);
        assert_eq!(b.lo, 1000);
        assert!(b.contains(100));
        assert!(!b.contains(500));
    }

    fn arb_pair() -> impl Strategy<Value = (Snapshot, Snapshot)> {
        // sn1 taken before sn2: xmin1 <= xmin2, xmax1 <= xmax2, every id running at
        // sn2 and below xmax1 was also running at sn1.
        (
            1i64..400,
            0i64..300,
            0i64..300,
            proptest::collection::vec(0i64..1000, 0..12),
        )
            .prop_map(|(xmin1, w1, adv, picks)| {
                let xmax1 = xmin1 + w1;
                let xmax2 = xmax1 + adv;
                let mut xip1: Vec<i64> = Vec::new();
                let mut xip2: Vec<i64> = Vec::new();
                for (i, p) in picks.iter().enumerate() {
                    if w1 > 0 && i % 2 == 0 {
                        let x = xmin1 + p % w1;
                        xip1.push(x);
                        if p % 3 == 0 {
                            xip2.push(x);
                        }
                    } else if adv > 0 {
                        xip2.push(xmax1 + p % adv);
                    }
                }
                if w1 > 0 && !xip1.contains(&xmin1) {
                    xip1.push(xmin1);
                }
                xip1.sort_unstable();
                xip1.dedup();
                xip2.sort_unstable();
                xip2.dedup();
                let xmin2 = xip2.first().copied().unwrap_or(xmax2);
                let sn1 = Snapshot {
                    xmin: xmin1,
                    xmax: xmax1,
                    xip: xip1,
                };
                let sn2 = Snapshot {
                    xmin: xmin2.min(xmax2),
                    xmax: xmax2,
                    xip: xip2,
                };
                (sn1, sn2)
            })
    }

    proptest! {
        #[test]
        fn batch_txids_match_visibility_rule((sn1, sn2) in arb_pair()) {
            let b = BatchTxids::between(&sn1, &sn2);
            for x in (sn1.xmin - 5)..(sn2.xmax + 5) {
                let expected = sn2.visible(x) && !sn1.visible(x);
                prop_assert_eq!(b.contains(x), expected, "txid {} sn1={} sn2={}", x, sn1, sn2);
            }
        }

        #[test]
        fn text_round_trip((sn1, _sn2) in arb_pair()) {
            prop_assert_eq!(Snapshot::parse(&sn1.to_string()).unwrap(), sn1);
        }
    }
}
