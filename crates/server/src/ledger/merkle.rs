//! Merkle tree hashing as RFC 9162 §2.1 (the same as RFC 6962): leaf `SHA-256(0x00 || data)`, interior node
//! `SHA-256(0x01 || left || right)`, the tree of `n` leaves split at the largest power of two below `n`. Proofs
//! are computed from the hashes of perfect, aligned subtrees ("nodes": level `l`, index `i` covers leaves
//! `i·2^l .. (i+1)·2^l`), which the ledger stores as it grows, so a proof in a tree of any size needs only a few
//! dozen of them. Verification follows the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.

use std::collections::HashMap;

use aws_lc_rs::digest;

pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    sha256(&[&[]])
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[0x00], data])
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// A perfect, aligned subtree: `level` and `index` (leaves `index << level .. (index + 1) << level`).
pub type NodeId = (u8, u64);

/// Where node hashes come from.
pub trait Nodes {
    fn node(&self, id: NodeId) -> Option<Hash>;
}

impl Nodes for HashMap<NodeId, Hash> {
    fn node(&self, id: NodeId) -> Option<Hash> {
        self.get(&id).copied()
    }
}

/// Leaf hashes in memory, as a node source (tests and small trees): a node is computed from its leaves.
#[derive(Debug)]
pub struct Leaves<'a>(pub &'a [Hash]);

impl Nodes for Leaves<'_> {
    fn node(&self, (level, index): NodeId) -> Option<Hash> {
        let width = 1u64.checked_shl(u32::from(level))?;
        let lo = usize::try_from(index.checked_mul(width)?).ok()?;
        let hi = lo.checked_add(usize::try_from(width).ok()?)?;
        Some(root(self.0.get(lo..hi)?))
    }
}

/// MTH of a list of leaf hashes (RFC 9162 §2.1.1).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The hash of the leaves `lo..hi` (hi > lo), from perfect aligned subtrees. `None` when a node is missing.
fn range_hash(lo: u64, hi: u64, nodes: &dyn Nodes) -> Option<Hash> {
    let size = hi - lo;
    if size.is_power_of_two() && lo % size == 0 {
        return nodes.node((size.trailing_zeros() as u8, lo / size));
    }
    let k = split(size);
    Some(node_hash(&range_hash(lo, lo + k, nodes)?, &range_hash(lo + k, hi, nodes)?))
}

/// The node ids `range_hash(lo, hi)` reads.
fn range_nodes(lo: u64, hi: u64, out: &mut Vec<NodeId>) {
    let size = hi - lo;
    if size.is_power_of_two() && lo % size == 0 {
        out.push((size.trailing_zeros() as u8, lo / size));
        return;
    }
    let k = split(size);
    range_nodes(lo, lo + k, out);
    range_nodes(lo + k, hi, out);
}

/// The ranges whose hashes make the inclusion proof of leaf `m` in the tree of the first `n` leaves
/// (RFC 9162 §2.1.3.1 PATH), in proof order.
fn inclusion_ranges(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        inclusion_ranges(m, lo, lo + k, out);
        out.push((lo + k, hi));
    } else {
        inclusion_ranges(m - k, lo + k, hi, out);
        out.push((lo, lo + k));
    }
}

/// The ranges of the consistency proof between the trees of `m` and `n` leaves (RFC 9162 §2.1.4.1 SUBPROOF).
fn consistency_ranges(m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push((lo, hi));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        consistency_ranges(m, lo, lo + k, whole, out);
        out.push((lo + k, hi));
    } else {
        consistency_ranges(m - k, lo + k, hi, false, out);
        out.push((lo, lo + k));
    }
}

/// A proof to compute: the nodes it needs, then the proof from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    ranges: Vec<(u64, u64)>,
}

impl ProofPlan {
    /// The inclusion proof of leaf `index` (0-based) in the tree of `size` leaves; `None` if out of range.
    pub fn inclusion(index: u64, size: u64) -> Option<ProofPlan> {
        if index >= size {
            return None;
        }
        let mut ranges = Vec::new();
        inclusion_ranges(index, 0, size, &mut ranges);
        Some(ProofPlan { ranges })
    }

    /// The consistency proof between the trees of `first` and `second` leaves; `None` unless
    /// `0 < first <= second`.
    pub fn consistency(first: u64, second: u64) -> Option<ProofPlan> {
        if first == 0 || first > second {
            return None;
        }
        let mut ranges = Vec::new();
        consistency_ranges(first, 0, second, true, &mut ranges);
        Some(ProofPlan { ranges })
    }

    /// The nodes to fetch.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut ids = Vec::new();
        for (lo, hi) in &self.ranges {
            range_nodes(*lo, *hi, &mut ids);
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The proof, from the nodes; `None` if one is missing.
    pub fn build(&self, nodes: &dyn Nodes) -> Option<Vec<Hash>> {
        self.ranges.iter().map(|(lo, hi)| range_hash(*lo, *hi, nodes)).collect()
    }
}

/// The root of the tree of the first `size` leaves, from its nodes (one per set bit of `size`).
pub fn root_from(size: u64, nodes: &dyn Nodes) -> Option<Hash> {
    if size == 0 {
        return Some(empty_root());
    }
    range_hash(0, size, nodes)
}

/// The nodes [`root_from`] reads.
pub fn root_nodes(size: u64) -> Vec<NodeId> {
    let mut ids = Vec::new();
    if size > 0 {
        range_nodes(0, size, &mut ids);
    }
    ids
}

/// RFC 9162 §2.1.3.2: does `proof` show that `leaf` is leaf `index` of the tree of `size` leaves with `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `first` leaves with `first_root` is a prefix of the tree
/// of `second` leaves with `second_root`?
pub fn verify_consistency(first: u64, second: u64, proof: &[Hash], first_root: &Hash, second_root: &Hash) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((start, rest)) = path.split_first() else { return false };
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && fr == *first_root && sr == *second_root
}

/// The right edge of a growing tree: one perfect subtree per set bit of its size, largest first. Appending a
/// leaf completes the nodes it returns, which the ledger stores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash), levels strictly decreasing.
    peaks: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of the tree of `size` leaves, from its nodes ([`root_nodes`] order is not needed: one node
    /// per set bit, read here).
    pub fn at(size: u64, nodes: &dyn Nodes) -> Option<Frontier> {
        let mut peaks = Vec::new();
        let mut lo = 0u64;
        for level in (0..64u8).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                peaks.push((level, nodes.node((level, lo >> level))?));
                lo += width;
            }
        }
        Some(Frontier { size, peaks })
    }

    /// The nodes [`Frontier::at`] reads.
    pub fn nodes_at(size: u64) -> Vec<NodeId> {
        let mut ids = Vec::new();
        let mut lo = 0u64;
        for level in (0..64u8).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                ids.push((level, lo >> level));
                lo += width;
            }
        }
        ids
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns the nodes completed (the leaf itself first, then each merge).
    pub fn push(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        self.size += 1;
        let mut done = vec![((0u8, index), leaf)];
        let mut current = (0u8, leaf);
        while let Some(&(level, left)) = self.peaks.last() {
            if level != current.0 {
                break;
            }
            self.peaks.pop();
            let merged = node_hash(&left, &current.1);
            current = (level + 1, merged);
            done.push(((current.0, index >> current.0), merged));
        }
        self.peaks.push(current);
        done
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, mut acc)) = peaks.next() else { return empty_root() };
        for (_, left) in peaks {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Hash {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    // The RFC 6962 reference data: eight leaf inputs and the tree heads of their prefixes, with reference inclusion
    // and consistency proofs. From Certificate Transparency's merkle_tree_test.cc, published again as
    // transparency-dev/merkle `testonly/constants.go` and used by every CT implementation.
    const INPUTS: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    /// (leaf index, tree size, proof).
    const INCLUSION: [(u64, u64, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    /// (first size, second size, proof).
    const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    fn reference_leaves() -> Vec<Hash> {
        INPUTS
            .iter()
            .map(|h| {
                let bytes: Vec<u8> =
                    (0..h.len() / 2).map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap()).collect();
                leaf_hash(&bytes)
            })
            .collect()
    }

    #[test]
    fn roots_proofs_and_verification_match_the_rfc_6962_reference_data() {
        let leaves = reference_leaves();
        let mut frontier = Frontier::default();
        assert_eq!(hex(&frontier.root()), ROOTS[0]);
        for n in 1..=8 {
            frontier.push(leaves[n - 1]);
            assert_eq!(hex(&root(&leaves[..n])), ROOTS[n], "MTH of {n}");
            assert_eq!(hex(&frontier.root()), ROOTS[n], "incremental root of {n}");
        }
        let nodes = Leaves(&leaves);
        for (index, size, want) in INCLUSION {
            let proof = ProofPlan::inclusion(index, size).unwrap().build(&nodes).unwrap();
            assert_eq!(proof.iter().map(hex).collect::<Vec<_>>(), want, "inclusion {index} in {size}");
            assert!(verify_inclusion(index, size, &leaves[index as usize], &proof, &unhex(ROOTS[size as usize])));
            assert!(!verify_inclusion(index, size, &leaves[index as usize], &proof, &unhex(ROOTS[0])));
        }
        for (first, second, want) in CONSISTENCY {
            let proof = ProofPlan::consistency(first, second).unwrap().build(&nodes).unwrap();
            assert_eq!(proof.iter().map(hex).collect::<Vec<_>>(), want, "consistency {first} -> {second}");
            let (a, b) = (unhex(ROOTS[first as usize]), unhex(ROOTS[second as usize]));
            assert!(verify_consistency(first, second, &proof, &a, &b));
        }
    }

    #[test]
    fn stored_nodes_give_the_same_roots_frontiers_and_proofs() {
        let leaves: Vec<Hash> = (0..300u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut stored: HashMap<NodeId, Hash> = HashMap::new();
        let mut frontier = Frontier::default();
        for (n, leaf) in leaves.iter().enumerate() {
            stored.extend(frontier.push(*leaf));
            let size = n as u64 + 1;
            assert_eq!(frontier.root(), root(&leaves[..=n]));
            assert_eq!(root_from(size, &stored), Some(frontier.root()));
            assert_eq!(Frontier::at(size, &stored).as_ref(), Some(&frontier));
            assert!(root_nodes(size).len() <= 64 && Frontier::nodes_at(size).len() == size.count_ones() as usize);
        }
        // One stored node per leaf and per completed merge: fewer than two per leaf.
        assert!(stored.len() < 2 * leaves.len());
        for (index, size) in [(0, 1), (7, 300), (255, 256), (256, 300), (299, 300)] {
            let plan = ProofPlan::inclusion(index, size).unwrap();
            assert!(plan.nodes().iter().all(|id| stored.contains_key(id)));
            assert_eq!(plan.build(&stored), plan.build(&Leaves(&leaves[..size as usize])));
        }
        assert_eq!(ProofPlan::inclusion(5, 5), None);
        assert_eq!(ProofPlan::consistency(0, 5), None);
        assert_eq!(ProofPlan::consistency(6, 5), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn every_proof_verifies_and_every_altered_one_fails(n in 1u64..200, a in 0u64..200, b in 0u64..200, flip in 0usize..32) {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
            let nodes = Leaves(&leaves);
            let roots: Vec<Hash> = (0..=n as usize).map(|m| root(&leaves[..m])).collect();
            let index = a % n;
            let proof = ProofPlan::inclusion(index, n).unwrap().build(&nodes).unwrap();
            proptest::prop_assert!(verify_inclusion(index, n, &leaves[index as usize], &proof, &roots[n as usize]));
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][flip] ^= 1;
                proptest::prop_assert!(!verify_inclusion(index, n, &leaves[index as usize], &bad, &roots[n as usize]));
            }
            if n > 1 {
                proptest::prop_assert!(!verify_inclusion((index + 1) % n, n, &leaves[index as usize], &proof, &roots[n as usize]));
            }
            let mut short = proof.clone();
            if short.pop().is_some() {
                proptest::prop_assert!(!verify_inclusion(index, n, &leaves[index as usize], &short, &roots[n as usize]));
            }

            let first = b % n + 1;
            let proof = ProofPlan::consistency(first, n).unwrap().build(&nodes).unwrap();
            let (r1, r2) = (roots[first as usize], roots[n as usize]);
            proptest::prop_assert!(verify_consistency(first, n, &proof, &r1, &r2));
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][flip] ^= 1;
                proptest::prop_assert!(!verify_consistency(first, n, &bad, &r1, &r2));
            }
            let mut other = r1;
            other[flip] ^= 1;
            proptest::prop_assert!(!verify_consistency(first, n, &proof, &other, &r2));
            if first < n {
                // A history rewritten after `first`: the new tree's root is not consistent with the old one.
                let mut rewritten = leaves.clone();
                rewritten[(first - 1) as usize][flip] ^= 1;
                let forged = ProofPlan::consistency(first, n).unwrap().build(&Leaves(&rewritten)).unwrap();
                proptest::prop_assert!(!verify_consistency(first, n, &forged, &r1, &root(&rewritten)));
            }
        }
    }
}
