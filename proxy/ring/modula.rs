//! The modula distribution (`src/hashkit/nc_modula.c`).
//!
//! twemproxy builds a table holding each live server `weight` times, in server index
//! order, and picks `table[hash % table_len]`. So with weights 3/1/2 the six slots are
//! `[0, 0, 0, 1, 2, 2]`. Ejecting a server shrinks the table and remaps almost every key,
//! which is why modula is only for pools without ejection.
//!
//! We keep the literal table while it is small (one `u32` per weight unit, up to
//! [`MAX_TABLE`] slots), which gives an O(1) lookup. Larger total weights would make
//! twemproxy allocate one slot per weight unit (its table for weight 10^9 is 8 GB); we
//! switch to an equivalent representation instead: the cumulative weight where each
//! server's run of slots ends, searched with a binary search.

use super::RingNode;

/// Largest table kept literally (256 KiB of `u32`).
const MAX_TABLE: u64 = 1 << 16;

#[derive(Clone, Debug)]
pub(super) enum Modula {
    /// `table[h % len]` is the server index.
    Table(Vec<u32>),
    /// `ends[k]` is the cumulative weight up to and including run `k`, owned by server
    /// `owners[k]`; slot `s` belongs to the first run whose end is `> s`.
    Runs {
        ends: Vec<u64>,
        owners: Vec<u32>,
        total: u64,
    },
}

impl Modula {
    pub(super) fn build(nodes: &[RingNode<'_>]) -> Modula {
        Self::build_with_limit(nodes, MAX_TABLE)
    }

    /// `build` with a configurable table limit, so tests can compare both forms.
    pub(super) fn build_with_limit(nodes: &[RingNode<'_>], max_table: u64) -> Modula {
        // Weight-0 servers own no slot, so they are dropped here (twemproxy rejects
        // weight 0 in its configuration anyway).
        let live = || {
            nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.live && n.weight > 0)
        };
        let total: u64 = live().map(|(_, n)| u64::from(n.weight)).sum();
        if total <= max_table {
            let mut table = Vec::with_capacity(total as usize);
            for (index, node) in live() {
                table.extend(std::iter::repeat_n(index as u32, node.weight as usize));
            }
            Modula::Table(table)
        } else {
            let mut ends = Vec::new();
            let mut owners = Vec::new();
            let mut end = 0u64;
            for (index, node) in live() {
                end += u64::from(node.weight);
                ends.push(end);
                owners.push(index as u32);
            }
            Modula::Runs {
                ends,
                owners,
                total,
            }
        }
    }

    #[inline]
    pub(super) fn lookup(&self, hash: u32) -> Option<usize> {
        match self {
            Modula::Table(table) => {
                if table.is_empty() {
                    return None;
                }
                let slot = hash as usize % table.len();
                table.get(slot).map(|&i| i as usize)
            }
            Modula::Runs {
                ends,
                owners,
                total,
            } => {
                if *total == 0 {
                    return None;
                }
                let slot = u64::from(hash) % total;
                let run = ends.partition_point(|&end| end <= slot);
                owners.get(run).map(|&i| i as usize)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(weights: &[(u32, bool)]) -> Vec<RingNode<'static>> {
        weights
            .iter()
            .map(|&(weight, live)| RingNode {
                name: b"x",
                weight,
                live,
            })
            .collect()
    }

    #[test]
    fn table_layout() {
        let m = Modula::build(&nodes(&[(3, true), (1, true), (2, true)]));
        let got: Vec<_> = (0..12).map(|h| m.lookup(h).unwrap()).collect();
        assert_eq!(got, [0, 0, 0, 1, 2, 2, 0, 0, 0, 1, 2, 2]);
    }

    #[test]
    fn runs_equal_table() {
        let ns = nodes(&[(3, true), (0, true), (1, false), (5, true), (2, true)]);
        let table = Modula::build_with_limit(&ns, u64::MAX);
        let runs = Modula::build_with_limit(&ns, 0);
        assert!(matches!(table, Modula::Table(_)));
        assert!(matches!(runs, Modula::Runs { .. }));
        for h in (0..1000).chain(u32::MAX - 1000..=u32::MAX) {
            assert_eq!(table.lookup(h), runs.lookup(h), "hash {h}");
        }
    }

    #[test]
    fn huge_weights_do_not_allocate_tables() {
        let m = Modula::build(&nodes(&[(u32::MAX, true), (u32::MAX, true)]));
        assert!(matches!(m, Modula::Runs { .. }));
        // Slot = hash % (2 * u32::MAX) = hash: server 0 owns slots 0..u32::MAX.
        assert_eq!(m.lookup(u32::MAX - 1), Some(0));
        assert_eq!(m.lookup(u32::MAX), Some(1));
    }

    #[test]
    fn nothing_live() {
        assert_eq!(Modula::build(&nodes(&[(1, false)])).lookup(7), None);
        assert_eq!(Modula::build(&nodes(&[(0, true)])).lookup(7), None);
        assert_eq!(Modula::build_with_limit(&nodes(&[]), 0).lookup(7), None);
    }
}
