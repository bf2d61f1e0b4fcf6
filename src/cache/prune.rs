//! Choosing what to prune: a pure function over (blob, size, last use), so the policy is
//! tested without files. Deleting is the caller's job.

use std::time::Duration;

/// What `haul cache prune` was asked to do.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrunePolicy {
    /// Keep at most this many bytes, removing the least recently used first.
    pub max_size: Option<u64>,
    /// Remove what was not used for this long.
    pub older_than: Option<Duration>,
    /// Remove everything.
    pub all: bool,
}

/// One prunable thing: a blob or a partial download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<K> {
    pub key: K,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub last_used: u64,
}

/// The candidates to remove under `policy` at time `now` (seconds since the epoch): first
/// everything older than `older_than`, then, oldest first, until what is left fits `max_size`.
pub fn select<K: Clone>(
    mut candidates: Vec<Candidate<K>>,
    policy: &PrunePolicy,
    now: u64,
) -> Vec<Candidate<K>> {
    if policy.all {
        return candidates;
    }
    // Oldest first; ties broken by size, largest first, to free space with fewer removals.
    candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(b.size.cmp(&a.size)));
    let mut total: u64 = candidates.iter().map(|c| c.size).sum();
    let mut removed = Vec::new();
    for candidate in candidates {
        let too_old = policy
            .older_than
            .is_some_and(|age| now.saturating_sub(candidate.last_used) >= age.as_secs());
        let too_big = policy.max_size.is_some_and(|max| total > max);
        if too_old || too_big {
            total -= candidate.size;
            removed.push(candidate);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: &'static str, size: u64, last_used: u64) -> Candidate<&'static str> {
        Candidate {
            key,
            size,
            last_used,
        }
    }

    fn keys(v: Vec<Candidate<&'static str>>) -> Vec<&'static str> {
        v.into_iter().map(|c| c.key).collect()
    }

    #[test]
    fn least_recently_used_first_until_it_fits() {
        let blobs = vec![c("new", 100, 300), c("old", 100, 100), c("mid", 100, 200)];
        let policy = PrunePolicy {
            max_size: Some(150),
            ..Default::default()
        };
        assert_eq!(keys(select(blobs.clone(), &policy, 400)), ["old", "mid"]);
        let policy = PrunePolicy {
            max_size: Some(300),
            ..Default::default()
        };
        assert!(select(blobs, &policy, 400).is_empty());
    }

    #[test]
    fn older_than_and_both() {
        let blobs = vec![c("new", 100, 390), c("old", 10, 100), c("mid", 100, 200)];
        let policy = PrunePolicy {
            older_than: Some(Duration::from_secs(150)),
            ..Default::default()
        };
        assert_eq!(keys(select(blobs.clone(), &policy, 400)), ["old", "mid"]);
        let policy = PrunePolicy {
            older_than: Some(Duration::from_secs(250)),
            max_size: Some(100),
            ..Default::default()
        };
        assert_eq!(keys(select(blobs.clone(), &policy, 400)), ["old", "mid"]);
        let all = PrunePolicy {
            all: true,
            ..Default::default()
        };
        assert_eq!(select(blobs, &all, 400).len(), 3);
    }
}
