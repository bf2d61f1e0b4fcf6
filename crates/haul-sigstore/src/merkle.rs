//! RFC 6962 (and RFC 9162) Merkle inclusion proofs, as transparency logs give them: a leaf
//! hash is SHA-256(0x00 ‖ entry), an inner node SHA-256(0x01 ‖ left ‖ right).

use sha2::{Digest as _, Sha256};

pub fn leaf_hash(entry: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(entry);
    hasher.finalize().into()
}

fn node_hash(left: &[u8], right: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root that `proof` leads to from leaf `index` (hash `leaf`) of a tree of `size`
/// leaves; `None` when the proof has the wrong number of hashes for that place.
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: [u8; 32],
    proof: &[[u8; 32]],
) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    // The proof's first `inner` hashes climb the subtree where the paths to `index` and to
    // the last leaf part; the rest (`border`) join the left siblings along the right border.
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    // A shift by 64 (the paths part at the top bit) leaves nothing: checked, not a panic.
    let border = index.checked_shr(inner as u32).unwrap_or(0).count_ones() as usize;
    if proof.len() != inner + border {
        return None;
    }
    let mut hash = leaf;
    for (level, sibling) in proof[..inner].iter().enumerate() {
        hash = if (index >> level) & 1 == 0 {
            node_hash(&hash, sibling)
        } else {
            node_hash(sibling, &hash)
        };
    }
    for sibling in &proof[inner..] {
        hash = node_hash(sibling, &hash);
    }
    Some(hash)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The root of `leaves` as RFC 6962 §2.1 defines it (the split is the largest power of
    /// two below the count).
    pub fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let split = (n - 1).next_power_of_two().max(1);
                let split = if split >= n { split / 2 } else { split };
                node_hash(&root(&leaves[..split]), &root(&leaves[split..]))
            }
        }
    }

    /// The inclusion proof of leaf `index` (RFC 6962 §2.1.1's PATH).
    pub fn proof(leaves: &[[u8; 32]], index: usize) -> Vec<[u8; 32]> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let split = (n - 1).next_power_of_two();
        let split = if split >= n { split / 2 } else { split };
        if index < split {
            let mut path = proof(&leaves[..split], index);
            path.push(root(&leaves[split..]));
            path
        } else {
            let mut path = proof(&leaves[split..], index - split);
            path.push(root(&leaves[..split]));
            path
        }
    }

    #[test]
    fn every_leaf_of_every_tree_up_to_40_proves_its_inclusion() {
        for size in 1..=40usize {
            let leaves: Vec<[u8; 32]> = (0..size)
                .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
                .collect();
            let expected = root(&leaves);
            for index in 0..size {
                let path = proof(&leaves, index);
                assert_eq!(
                    root_from_inclusion_proof(index as u64, size as u64, leaves[index], &path),
                    Some(expected),
                    "leaf {index} of {size}"
                );
                // Another leaf, or a changed hash, leads elsewhere.
                if size > 1 {
                    let other = (index + 1) % size;
                    assert_ne!(
                        root_from_inclusion_proof(other as u64, size as u64, leaves[index], &path),
                        Some(expected)
                    );
                    let mut changed = path.clone();
                    changed[0][0] ^= 1;
                    assert_ne!(
                        root_from_inclusion_proof(
                            index as u64,
                            size as u64,
                            leaves[index],
                            &changed
                        ),
                        Some(expected)
                    );
                }
            }
        }
        assert_eq!(root_from_inclusion_proof(3, 3, [0; 32], &[]), None);
    }
}
