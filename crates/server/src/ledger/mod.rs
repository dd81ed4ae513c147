//! The tamper-evident audit ledger, in the manner of Certificate Transparency (RFC 9162): every audit event,
//! in `seq` order, is a leaf of one Merkle tree. The server grows the tree as events commit ([`extend`], batched,
//! off the request path), signs tree heads with its key ([`sign_head`]), and serves inclusion and consistency
//! proofs from the stored nodes. Anyone holding an earlier signed head can check that today's log extends it;
//! [`Verifier`] checks a whole log against the signed heads and names the first bad entry.

mod leaf;
pub mod merkle;

pub use leaf::{canonical, detail_value, leaf_data, leaf_data_of, LeafFields};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use portcullis_jose::{b64, jwt, Algorithm, KeySet, Policy, UnixTime};
use serde::{Deserialize, Serialize};

use crate::signing::{KeyMaterial, TREE_HEAD_TYP};
use crate::store::{LedgerGrowth, Store, StoreError, TreeHead};
use merkle::{Frontier, Hash, ProofPlan};

/// How many events one growth step reads and one transaction stores.
const BATCH: u32 = 4096;

/// The lowest level of the tree stored as nodes: subtrees of 16 events and up. Below it, the leaf hashes of each
/// complete block of 16 are stored as one row (`audit_leaves`), and the subtrees of 2, 4 and 8 are recomputed from
/// them; storing every leaf and small subtree as a row of its own made the ledger write sixteen times as many
/// rows and cost issuance throughput.
pub const STORED_LEVEL: u8 = 4;
const BLOCK: usize = 1 << STORED_LEVEL;

/// The leaf hashes of block `block` as recorded, or recomputed from the events for the block still being filled.
async fn block_leaves(store: &dyn Store, block: u64, recorded: Option<&Vec<u8>>) -> Result<Vec<Hash>, LedgerError> {
    if let Some(bytes) = recorded {
        return Ok(bytes.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok()).collect());
    }
    let first = block << STORED_LEVEL;
    let after = i64::try_from(first).map_err(|_| LedgerError::MissingNodes(first))?;
    let events = store.audit_since(after, BLOCK as u32).await?;
    Ok(events
        .iter()
        .enumerate()
        .take_while(|(i, e)| u64::try_from(e.seq).ok() == Some(first + *i as u64 + 1))
        .map(|(_, e)| merkle::leaf_hash(&leaf_data(e)))
        .collect())
}

/// The hashes of the nodes `ids`: stored ones from the ledger's tables, lower ones from the recorded leaves (or,
/// for the block still being filled, the events). Missing ones are absent from the answer.
async fn nodes_for(store: &dyn Store, ids: &[merkle::NodeId]) -> Result<HashMap<merkle::NodeId, Hash>, LedgerError> {
    let (low, high): (Vec<merkle::NodeId>, Vec<merkle::NodeId>) =
        ids.iter().partition(|(level, _)| *level < STORED_LEVEL);
    let mut found = store.ledger_nodes(&high).await?;
    let blocks: Vec<u64> = low
        .iter()
        .map(|(level, index)| (index << level) >> STORED_LEVEL)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let recorded = store.ledger_leaves(&blocks).await?;
    for block in blocks {
        let leaves = block_leaves(store, block, recorded.get(&block)).await?;
        let first = block << STORED_LEVEL;
        for &(level, index) in low.iter().filter(|(level, index)| (index << level) >> STORED_LEVEL == block) {
            let start = ((index << level) - first) as usize;
            if let Some(range) = leaves.get(start..start + (1usize << level)) {
                found.insert((level, index), merkle::root(range));
            }
        }
    }
    Ok(found)
}

/// The tree's right edge while it grows: the frontier, the leaves of the block being filled, and what a step
/// has completed and must store.
#[derive(Debug)]
struct Growth {
    frontier: Frontier,
    /// Leaf hashes of the incomplete last block.
    pending: Vec<Hash>,
    done: LedgerGrowth,
}

impl Growth {
    /// The edge of the stored tree of `size` leaves.
    async fn at(store: &dyn Store, size: u64) -> Result<Growth, LedgerError> {
        let nodes = nodes_for(store, &Frontier::nodes_at(size)).await?;
        let frontier = Frontier::at(size, &nodes).ok_or(LedgerError::MissingNodes(size))?;
        let partial = size as usize % BLOCK;
        let mut pending = Vec::with_capacity(BLOCK);
        if partial > 0 {
            let leaves = block_leaves(store, size >> STORED_LEVEL, None).await?;
            pending.extend(leaves.get(..partial).ok_or(LedgerError::MissingNodes(size))?);
        }
        Ok(Growth { frontier, pending, done: LedgerGrowth::default() })
    }

    /// Adds the stored events after the edge, up to `seq` `last` and at most a batch of them.
    async fn read_back(&mut self, store: &dyn Store, last: u64) -> Result<(), LedgerError> {
        let after = i64::try_from(self.frontier.size()).map_err(|_| LedgerError::MissingNodes(last))?;
        let limit = u32::try_from(last.saturating_sub(self.frontier.size())).unwrap_or(BATCH).min(BATCH);
        let events = store.audit_since(after, limit).await?;
        if events.is_empty() {
            let found = i64::try_from(last + 1).unwrap_or(i64::MAX);
            return Err(LedgerError::Gap { expected: self.frontier.size() + 1, found });
        }
        for e in &events {
            let expected = self.frontier.size() + 1;
            if u64::try_from(e.seq).ok() != Some(expected) {
                return Err(LedgerError::Gap { expected, found: e.seq });
            }
            self.push(merkle::leaf_hash(&leaf_data(e)));
        }
        Ok(())
    }

    fn push(&mut self, leaf: Hash) {
        self.pending.push(leaf);
        for (id, hash) in self.frontier.push(leaf) {
            if id.0 >= STORED_LEVEL {
                self.done.nodes.push((id, hash));
            }
        }
        if self.pending.len() == BLOCK {
            let block = (self.frontier.size() - 1) >> STORED_LEVEL;
            self.done.leaf_blocks.push((block, self.pending.concat()));
            self.pending.clear();
        }
    }

    /// Stores what was completed since `from` leaves; false if the tree is no longer `from` leaves.
    async fn store(&mut self, store: &dyn Store, from: u64) -> Result<bool, LedgerError> {
        let done = std::mem::take(&mut self.done);
        let grown = store.ledger_extend(from, self.frontier.size(), &done).await?;
        if grown {
            metrics::gauge!("portcullis_ledger_size").set(self.frontier.size() as f64);
        }
        Ok(grown)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored tree lacks a node it should have: the ledger tables were damaged.
    #[error("the ledger's stored tree is incomplete at size {0}")]
    MissingNodes(u64),
    /// The audit log has a hole where the next leaf should be: an event was deleted before it was logged.
    #[error("the audit log has no event {expected} (found {found} next)")]
    Gap { expected: u64, found: i64 },
    #[error("no active signing key to sign the tree head")]
    NoKey,
    #[error("{0}")]
    Invalid(String),
}

/// Adds every audit event not yet in the tree, in `seq` order, a batch per transaction; returns the tree's
/// size. Safe to run on several instances at once: a batch is stored only if the tree has not grown meanwhile.
pub async fn extend(store: &dyn Store) -> Result<u64, LedgerError> {
    extend_until(store, i64::MAX).await
}

/// [`extend`], stopping at the first event whose `at` is after `settled`: the server's background step leaves the
/// last seconds' events to the audit writer's [`Follower`], which adds them without reading them back.
pub async fn extend_until(store: &dyn Store, settled: i64) -> Result<u64, LedgerError> {
    loop {
        let size = store.ledger_size().await?;
        let after = i64::try_from(size).map_err(|_| LedgerError::MissingNodes(size))?;
        if settled < i64::MAX {
            // In the steady state the tree's edge is the writer's last second of events, all newer than
            // `settled`: one row says so, where a batch would read (and decode) thousands every second.
            let next = store.audit_since(after, 1).await?;
            if next.first().is_none_or(|e| e.at > settled) {
                return Ok(size);
            }
        }
        let mut events = store.audit_since(after, BATCH).await?;
        let full = events.len() == BATCH as usize;
        if let Some(recent) = events.iter().position(|e| e.at > settled) {
            events.truncate(recent);
        }
        if events.is_empty() {
            return Ok(size);
        }
        let mut growth = Growth::at(store, size).await?;
        for e in &events {
            let expected = growth.frontier.size() + 1;
            if u64::try_from(e.seq).ok() != Some(expected) {
                return Err(LedgerError::Gap { expected, found: e.seq });
            }
            growth.push(merkle::leaf_hash(&leaf_data(e)));
        }
        if growth.store(store, size).await? && (!full || events.len() < BATCH as usize) {
            return Ok(growth.frontier.size());
        }
    }
}

/// Adds events to the tree as the audit writer commits them, from memory (in the steady state nothing is read
/// back), and one write transaction per flush (a second), not one per group commit. It keeps the tree's right edge between batches and
/// stores its work only if the tree is still the size it last saw (the background [`extend`] may have moved it).
/// When the stored tree is not where its edge expects (at the start, after events written elsewhere, e.g. by the
/// CLI, or after it lost a race), it picks the edge up again from the store and reads back the events between
/// that edge and the batch in hand: under a steady load the background growth, which stays seconds behind, would
/// otherwise never hand the tree back.
#[derive(Debug, Default)]
pub struct Follower {
    growth: Option<Growth>,
    /// The tree size the store had when `growth` was last written (or loaded).
    stored: u64,
}

impl Follower {
    /// Adds events just committed as `seqs` (consecutive, and every lower `seq` committed before them) to the
    /// tree in memory; [`Follower::flush`] writes them.
    pub async fn add(
        &mut self,
        store: &dyn Store,
        events: &[crate::store::AuditEvent],
        seqs: &[i64],
    ) -> Result<(), LedgerError> {
        let Some(&first) = seqs.first() else { return Ok(()) };
        let first = u64::try_from(first).map_err(|_| LedgerError::Invalid("seq".into()))?;
        if self.growth.as_ref().is_some_and(|g| g.frontier.size() + 1 != first) {
            // Events from elsewhere came in between: write what we have, then pick the edge up from the store.
            self.flush(store).await?;
            self.growth = None;
        }
        if self.growth.is_none() {
            self.resync(store, first.saturating_sub(1)).await?;
        }
        let Some(growth) = self.growth.as_mut() else { return Ok(()) };
        for (e, seq) in events.iter().zip(seqs) {
            // The store's tree may already hold the start of the batch (the background growth got there first).
            if u64::try_from(*seq).ok() != Some(growth.frontier.size() + 1) {
                continue;
            }
            let fields = LeafFields {
                seq: *seq,
                at: e.at,
                kind: e.kind,
                subject: e.subject.as_deref(),
                client_id: e.client_id.as_deref(),
                jti: e.jti.as_deref(),
            };
            let data = leaf::of_stored(fields, &e.detail);
            growth.push(merkle::leaf_hash(&data));
        }
        Ok(())
    }

    /// Writes what [`Follower::add`] added since the last flush, in one transaction. If the stored tree moved
    /// meanwhile (the background growth, or events from elsewhere), picks its edge up and reads back to where it
    /// was, once.
    pub async fn flush(&mut self, store: &dyn Store) -> Result<(), LedgerError> {
        for attempt in 0..2 {
            let Some(growth) = self.growth.as_mut() else { return Ok(()) };
            if growth.frontier.size() == self.stored {
                return Ok(());
            }
            if growth.store(store, self.stored).await? {
                self.stored = growth.frontier.size();
                return Ok(());
            }
            let reached = growth.frontier.size();
            self.growth = None;
            if attempt == 0 {
                self.resync(store, reached).await?;
            }
        }
        Ok(())
    }

    /// Picks the tree's edge up from the store and reads back the stored events up to `seq` `last`, storing each
    /// full batch on the way so that a long way back does not pile up in memory. Leaves no edge if another
    /// writer stores first.
    async fn resync(&mut self, store: &dyn Store, last: u64) -> Result<(), LedgerError> {
        let size = store.ledger_size().await?;
        let mut growth = Growth::at(store, size).await?;
        self.stored = size;
        while growth.frontier.size() < last {
            growth.read_back(store, last).await?;
            if growth.frontier.size() < last {
                if !growth.store(store, self.stored).await? {
                    return Ok(());
                }
                self.stored = growth.frontier.size();
            }
        }
        self.growth = Some(growth);
        Ok(())
    }
}

/// The root of the stored tree of `size` leaves.
pub async fn root_at(store: &dyn Store, size: u64) -> Result<Hash, LedgerError> {
    let nodes = nodes_for(store, &merkle::root_nodes(size)).await?;
    merkle::root_from(size, &nodes).ok_or(LedgerError::MissingNodes(size))
}

/// What a signed tree head says (the JWS payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadClaims {
    pub iss: String,
    pub iat: i64,
    pub tree_size: u64,
    /// base64url of the root hash.
    pub root_hash: String,
}

/// Signs a head for the tree as stored now, unless the latest head already covers that size (then returns it).
pub async fn sign_head(
    store: &dyn Store,
    material: &KeyMaterial,
    issuer: &str,
    now: UnixTime,
) -> Result<TreeHead, LedgerError> {
    let size = store.ledger_size().await?;
    if let Some(latest) = store.latest_head().await? {
        if latest.tree_size == size {
            return Ok(latest);
        }
    }
    let root = root_at(store, size).await?;
    let signer = material.head_signer.as_ref().ok_or(LedgerError::NoKey)?;
    let claims =
        HeadClaims { iss: issuer.to_owned(), iat: now.as_secs(), tree_size: size, root_hash: b64::encode(&root) };
    let jws = signer.sign(&claims).map_err(|e| LedgerError::Invalid(e.to_string()))?;
    let head = TreeHead { tree_size: size, root_hash: root, issued_at: now.as_secs(), jws };
    store.add_head(&head).await?;
    metrics::gauge!("portcullis_ledger_head_size").set(size as f64);
    tracing::info!(tree_size = size, "audit ledger: tree head signed");
    Ok(head)
}

/// Why a signed tree head was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Signed by a key the verifier does not have (a key retired and deleted since, or never ours).
    UnknownKey,
    Invalid(String),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::UnknownKey => f.write_str("the tree head is signed by a key that is not published"),
            HeadError::Invalid(why) => f.write_str(why),
        }
    }
}

/// Checks a signed tree head: signature by one of `keys`, `typ: tree-head+jwt`, issuer. Returns its claims and
/// root. `now` is only for the checks that need a clock; heads do not expire.
pub fn verify_head(jws: &str, keys: &KeySet, issuer: &str, now: UnixTime) -> Result<(HeadClaims, Hash), HeadError> {
    let policy = Policy::builder()
        .issuer(issuer)
        .danger_accept_any_audience()
        .typ(TREE_HEAD_TYP)
        .algorithms(&Algorithm::asymmetric().collect::<Vec<_>>())
        .danger_allow_no_exp()
        .leeway(300)
        .require(["iat", "tree_size", "root_hash"])
        .build()
        .map_err(|e| HeadError::Invalid(e.to_string()))?;
    let verified = jwt::verify(jws, keys, &policy, now).map_err(|e| match e {
        portcullis_jose::Error::UnknownKey => HeadError::UnknownKey,
        e => HeadError::Invalid(format!("the tree head does not verify: {e}")),
    })?;
    let claims: HeadClaims =
        verified.claims.deserialize().map_err(|e| HeadError::Invalid(format!("the tree head is malformed: {e}")))?;
    let root = b64::decode(claims.root_hash.as_bytes())
        .and_then(|r| <[u8; 32]>::try_from(r.as_slice()).ok())
        .ok_or_else(|| HeadError::Invalid("the tree head's root_hash is not a base64url SHA-256 hash".into()))?;
    Ok((claims, root))
}

/// What a verified log looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub verified: Verified,
    /// The latest signed head, which the log matched.
    pub latest: Option<HeadClaims>,
    /// Older heads signed by keys no longer published (not used to narrow a finding down).
    pub unverifiable_heads: usize,
}

/// The signed heads that verified: roots by tree size, the latest head's claims, and how many older heads could not
/// be checked for want of their key.
pub type CheckedHeads = (BTreeMap<u64, Hash>, Option<HeadClaims>, usize);

/// Checks signed heads with `keys`: the roots by size of those that verify, and how many could not be checked
/// for want of their key. The latest head must verify; any head that is not what it claims (a bad signature, a
/// root that is not the one in its signed claims) is an error.
pub fn check_heads(heads: &[TreeHead], keys: &KeySet, issuer: &str, now: UnixTime) -> Result<CheckedHeads, String> {
    let mut roots = BTreeMap::new();
    let mut unverifiable = 0;
    let mut latest = None;
    let last = heads.iter().map(|h| h.tree_size).max();
    for head in heads {
        match verify_head(&head.jws, keys, issuer, now) {
            Ok((claims, root)) => {
                if claims.tree_size != head.tree_size || root != head.root_hash {
                    return Err(format!("the stored tree head of size {} differs from what it signed", head.tree_size));
                }
                roots.insert(claims.tree_size, root);
                if Some(claims.tree_size) == last {
                    latest = Some(claims);
                }
            }
            Err(HeadError::UnknownKey) if Some(head.tree_size) != last => unverifiable += 1,
            Err(e) => return Err(format!("the signed tree head of size {}: {e}", head.tree_size)),
        }
    }
    Ok((roots, latest, unverifiable))
}

/// Verifies the whole log in a store: every event against the leaf the ledger recorded and every signed head
/// against the events (heads checked with `keys`). `Err` names the first problem.
pub async fn verify_store(store: &dyn Store, keys: &KeySet, issuer: &str, now: UnixTime) -> Result<Report, String> {
    let mut heads = Vec::new();
    loop {
        let after = heads.last().map_or(0, |h: &TreeHead| h.tree_size);
        let page = store.heads(after, 1000).await.map_err(|e| e.to_string())?;
        if page.is_empty() {
            break;
        }
        heads.extend(page);
    }
    let (roots, latest, unverifiable_heads) = check_heads(&heads, keys, issuer, now)?;
    let mut verifier = Verifier::new(roots);
    let mut after = 0i64;
    loop {
        let events = store.audit_since(after, 4096).await.map_err(|e| e.to_string())?;
        let Some(last) = events.last() else { break };
        // The leaf hashes the ledger recorded for the blocks of 16 these events fall in.
        let blocks: Vec<u64> = events
            .iter()
            .filter_map(|e| u64::try_from(e.seq - 1).ok())
            .map(|i| i >> STORED_LEVEL)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let recorded = store.ledger_leaves(&blocks).await.map_err(|e| e.to_string())?;
        verifier.expect(
            recorded
                .into_iter()
                .flat_map(|(block, hashes)| {
                    let leaves: Vec<(merkle::NodeId, Hash)> = hashes
                        .chunks_exact(32)
                        .enumerate()
                        .filter_map(|(i, c)| {
                            Some(((0, (block << STORED_LEVEL) + i as u64), <[u8; 32]>::try_from(c).ok()?))
                        })
                        .collect();
                    leaves
                })
                .collect(),
        );
        for e in &events {
            verifier.feed(e.seq, &leaf_data(e)).map_err(|f| f.to_string())?;
        }
        after = last.seq;
    }
    let verified = verifier.finish().map_err(|f| f.to_string())?;
    Ok(Report { verified, latest, unverifiable_heads })
}

/// A witness's memory: the last signed head it accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub issuer: String,
    pub tree_size: u64,
    /// base64url.
    pub root_hash: String,
    pub jws: String,
}

/// A witness's judgement of a new verified head against the last one it saw, given the consistency proof from the
/// old size to the new one. `Err` is an alarm: the log was rolled back or its history rewritten (a fork).
pub fn witness(old: &Seen, new_size: u64, new_root: &Hash, proof: &[Hash]) -> Result<(), String> {
    let old_root = b64::decode(old.root_hash.as_bytes())
        .and_then(|r| <[u8; 32]>::try_from(r.as_slice()).ok())
        .ok_or("the state file's root_hash is not a base64url SHA-256 hash")?;
    if new_size < old.tree_size {
        return Err(format!(
            "ROLLBACK: the log now has {new_size} entries, but it had {} when last seen: entries were removed",
            old.tree_size
        ));
    }
    if new_size == old.tree_size {
        return if *new_root == old_root {
            Ok(())
        } else {
            Err(format!("FORK: two different logs of {new_size} entries were signed: history was rewritten"))
        };
    }
    if old.tree_size == 0 || merkle::verify_consistency(old.tree_size, new_size, proof, &old_root, new_root) {
        Ok(())
    } else {
        Err(format!(
            "FORK: the log of {new_size} entries does not extend the log of {} entries seen before: history was \
             rewritten",
            old.tree_size
        ))
    }
}

/// The inclusion proof of event `seq` in the tree of `tree_size` events, with the event's leaf hash.
pub async fn inclusion(store: &dyn Store, seq: u64, tree_size: u64) -> Result<(Hash, Vec<Hash>), LedgerError> {
    let size = store.ledger_size().await?;
    if seq == 0 || tree_size > size {
        return Err(LedgerError::Invalid(format!("the ledger has {size} entries")));
    }
    let plan = ProofPlan::inclusion(seq - 1, tree_size)
        .ok_or_else(|| LedgerError::Invalid("seq must be at most tree_size".into()))?;
    let mut ids = plan.nodes();
    ids.push((0, seq - 1));
    let nodes = nodes_for(store, &ids).await?;
    let leaf = *nodes.get(&(0, seq - 1)).ok_or(LedgerError::MissingNodes(tree_size))?;
    Ok((leaf, plan.build(&nodes).ok_or(LedgerError::MissingNodes(tree_size))?))
}

/// The consistency proof between the trees of `first` and `second` events.
pub async fn consistency(store: &dyn Store, first: u64, second: u64) -> Result<Vec<Hash>, LedgerError> {
    let size = store.ledger_size().await?;
    if second > size {
        return Err(LedgerError::Invalid(format!("the ledger has {size} entries")));
    }
    let plan =
        ProofPlan::consistency(first, second).ok_or_else(|| LedgerError::Invalid("need 0 < first <= second".into()))?;
    let nodes = nodes_for(store, &plan.nodes()).await?;
    plan.build(&nodes).ok_or(LedgerError::MissingNodes(second))
}

/// The first thing wrong with a log, found by [`Verifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// No event `seq` where it should be: deleted, or moved later.
    Missing { seq: u64 },
    /// Event `seq` where `expected` should be: inserted, duplicated or moved.
    OutOfPlace { seq: i64, expected: u64 },
    /// The events `from..=to` no longer hash to what the ledger recorded for them when it added them (a block
    /// of 16): one of them was changed (or swapped with another).
    Modified { from: u64, to: u64 },
    /// The tree of the first `size` events does not have the root a signed head gave it: an event in
    /// `from..=size` was changed (found before any recorded hash could show it, or with those rewritten too).
    HeadMismatch { size: u64, from: u64 },
    /// A signed head covers `head_size` events but the log has only `have`: the rest were deleted.
    Truncated { have: u64, head_size: u64 },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Missing { seq } => write!(f, "entry {seq} is missing (deleted, or moved later)"),
            Finding::OutOfPlace { seq, expected } => {
                write!(f, "entry {seq} is where entry {expected} should be (inserted, duplicated or reordered)")
            }
            Finding::Modified { from, to } if from == to => {
                write!(f, "entry {from} was modified (it no longer hashes to the leaf the ledger recorded)")
            }
            Finding::Modified { from, to } => write!(
                f,
                "an entry between {from} and {to} was modified (they no longer hash to what the ledger recorded when \
                 it added them)"
            ),
            Finding::HeadMismatch { size, from } => write!(
                f,
                "the log does not match the signed tree head of size {size}: an entry between {from} and {size} \
                 was modified"
            ),
            Finding::Truncated { have, head_size } => write!(
                f,
                "entries {} to {head_size} are missing: a signed tree head covers {head_size} entries, the log has \
                 {have}",
                have + 1
            ),
        }
    }
}

/// Checks a log, event by event in `seq` order, against the roots of verified signed heads (by tree size) and,
/// where given, the node hashes the ledger recorded. Streams: memory is the heads, a 64-entry frontier and the
/// recorded hashes of the page at hand.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    frontier: Frontier,
    heads: BTreeMap<u64, Hash>,
    last_matched: u64,
    /// Node hashes the ledger recorded, checked as the recomputed tree completes them.
    recorded: HashMap<merkle::NodeId, Hash>,
}

/// What a clean check covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// The largest signed head the log matched (0: none).
    pub head_size: u64,
    pub root: Hash,
}

impl Verifier {
    pub fn new(heads: BTreeMap<u64, Hash>) -> Verifier {
        Verifier { heads, ..Verifier::default() }
    }

    /// Node hashes the ledger recorded (for the events about to be fed).
    pub fn expect(&mut self, recorded: HashMap<merkle::NodeId, Hash>) {
        self.recorded.extend(recorded);
    }

    /// The next event.
    pub fn feed(&mut self, seq: i64, leaf_data: &[u8]) -> Result<(), Finding> {
        let expected = self.frontier.size() + 1;
        match u64::try_from(seq) {
            Ok(s) if s == expected => {}
            Ok(s) if s > expected => return Err(Finding::Missing { seq: expected }),
            _ => return Err(Finding::OutOfPlace { seq, expected }),
        }
        for ((level, index), hash) in self.frontier.push(merkle::leaf_hash(leaf_data)) {
            if let Some(recorded) = self.recorded.remove(&(level, index)) {
                if recorded != hash {
                    return Err(Finding::Modified { from: (index << level) + 1, to: (index + 1) << level });
                }
            }
        }
        if let Some(root) = self.heads.get(&expected) {
            if *root != self.frontier.root() {
                return Err(Finding::HeadMismatch { size: expected, from: self.last_matched + 1 });
            }
            self.last_matched = expected;
        }
        Ok(())
    }

    /// After the last event: every signed head must have been reached.
    pub fn finish(&self) -> Result<Verified, Finding> {
        let have = self.frontier.size();
        if let Some((&head_size, _)) = self.heads.last_key_value() {
            if head_size > have {
                return Err(Finding::Truncated { have, head_size });
            }
        }
        Ok(Verified { entries: have, head_size: self.last_matched, root: self.frontier.root() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredAuditEvent;

    fn event(seq: i64, detail: &str) -> StoredAuditEvent {
        StoredAuditEvent {
            seq,
            at: 1_700_000_000 + seq,
            kind: "token_issued".into(),
            subject: Some("u_1".into()),
            client_id: None,
            jti: Some(format!("j{seq}")),
            detail: detail.into(),
        }
    }

    #[test]
    fn leaves_are_canonical_json() {
        let a = leaf_data(&event(3, r#"{"scope":"read","by":{"sub":"x","client_id":"y"}}"#));
        let b = leaf_data(&event(3, r#"{ "by": {"client_id":"y", "sub":"x"}, "scope": "read" }"#));
        assert_eq!(a, b, "key order and spaces do not change a leaf");
        assert_eq!(
            String::from_utf8(a).unwrap(),
            r#"{"at":1700000003,"client_id":null,"detail":{"by":{"client_id":"y","sub":"x"},"scope":"read"},"jti":"j3","kind":"token_issued","seq":3,"subject":"u_1"}"#
        );
        let raw = leaf_data(&event(3, "not json"));
        assert!(String::from_utf8(raw).unwrap().contains(r#""detail":"not json""#));
    }

    fn log(n: i64) -> Vec<StoredAuditEvent> {
        (1..=n).map(|s| event(s, &format!(r#"{{"n":{s}}}"#))).collect()
    }

    fn heads_of(events: &[StoredAuditEvent], sizes: &[u64]) -> BTreeMap<u64, Hash> {
        let leaves: Vec<Hash> = events.iter().map(|e| merkle::leaf_hash(&leaf_data(e))).collect();
        sizes.iter().map(|&s| (s, merkle::root(&leaves[..s as usize]))).collect()
    }

    fn check(
        events: &[StoredAuditEvent],
        heads: &BTreeMap<u64, Hash>,
        recorded: &HashMap<merkle::NodeId, Hash>,
    ) -> Result<Verified, Finding> {
        let mut v = Verifier::new(heads.clone());
        v.expect(recorded.clone());
        for e in events {
            v.feed(e.seq, &leaf_data(e))?;
        }
        v.finish()
    }

    #[test]
    fn the_verifier_names_each_kind_of_edit() {
        let good = log(40);
        let heads = heads_of(&good, &[5, 12, 20, 40]);
        // What the ledger records: the leaves (of complete blocks) and the nodes of 16 and up.
        let mut recorded = HashMap::new();
        let mut frontier = Frontier::default();
        for e in good.iter().take(32) {
            recorded.extend(frontier.push(merkle::leaf_hash(&leaf_data(e))));
        }
        let none = HashMap::new();
        let ok = check(&good, &heads, &recorded).unwrap();
        assert_eq!((ok.entries, ok.head_size), (40, 40));

        let mut modified = good.clone();
        modified[7].detail = r#"{"n":999}"#.into();
        assert_eq!(check(&modified, &heads, &recorded), Err(Finding::Modified { from: 8, to: 8 }));
        assert_eq!(check(&modified, &heads, &none), Err(Finding::HeadMismatch { size: 12, from: 6 }));
        let mut late = good.clone();
        late[24].detail = r#"{"n":999}"#.into();
        assert_eq!(check(&late, &heads_of(&good, &[40]), &recorded), Err(Finding::Modified { from: 25, to: 25 }));
        assert!(Finding::Modified { from: 25, to: 25 }.to_string().starts_with("entry 25 was modified"));
        // Only the block hash recorded (not its leaves): the block is named.
        let blocks: HashMap<merkle::NodeId, Hash> =
            recorded.iter().filter(|(id, _)| id.0 >= 4).map(|(k, v)| (*k, *v)).collect();
        assert_eq!(check(&late, &heads_of(&good, &[40]), &blocks), Err(Finding::Modified { from: 17, to: 32 }));
        // The recorded hashes rewritten too: the signed head still catches it, between the heads around it.
        assert_eq!(check(&late, &heads, &none), Err(Finding::HeadMismatch { size: 40, from: 21 }));

        let mut deleted = good.clone();
        deleted.remove(9);
        assert_eq!(check(&deleted, &heads, &recorded), Err(Finding::Missing { seq: 10 }));

        let mut reordered = good.clone();
        reordered.swap(2, 3);
        assert_eq!(check(&reordered, &heads, &recorded), Err(Finding::Missing { seq: 3 }));
        let mut duplicated = good.clone();
        duplicated.insert(3, good[2].clone());
        assert_eq!(check(&duplicated, &heads, &recorded), Err(Finding::OutOfPlace { seq: 3, expected: 4 }));
        // Swapped contents under the original numbers.
        let mut swapped = good.clone();
        let (a, b) = (swapped[2].detail.clone(), swapped[3].detail.clone());
        swapped[2].detail = b;
        swapped[3].detail = a;
        assert_eq!(check(&swapped, &heads_of(&good, &[40]), &recorded), Err(Finding::Modified { from: 3, to: 3 }));

        let mut inserted = good.clone();
        inserted.insert(4, event(5, r#"{"n":"forged"}"#));
        assert_eq!(check(&inserted, &heads, &none), Err(Finding::HeadMismatch { size: 5, from: 1 }));

        let truncated = &good[..15];
        assert_eq!(check(truncated, &heads, &none), Err(Finding::Truncated { have: 15, head_size: 40 }));
        assert!(Finding::Truncated { have: 15, head_size: 40 }.to_string().contains("entries 16 to 40 are missing"));
    }
}
