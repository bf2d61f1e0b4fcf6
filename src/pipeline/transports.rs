//! The transport each registry host took (HTTPS, unverified HTTPS, plain HTTP), remembered in
//! the cache for the next run, so a far or awkward host is probed once.

use super::*;

/// The transports remembered in `store` (none if the file is missing or unreadable).
pub(super) fn remembered_transports(
    store: &BlobStore,
) -> std::collections::HashMap<String, crate::registry::endpoint::Transport> {
    std::fs::read_to_string(store.path_of(crate::cache::Bucket::Transports))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (host, name) = line.split_once(' ')?;
            Some((
                host.to_string(),
                crate::registry::endpoint::Transport::from_name(name.trim())?,
            ))
        })
        .collect()
}

impl Session {
    /// Keeps the transport each host took for the next run (best effort: losing it costs one
    /// probe). Only hosts that may use more than one are worth it, but all are cheap.
    pub fn remember_transports(&self) {
        let mut all = remembered_transports(&self.store);
        let learned = self.client.learned_transports();
        if learned.iter().all(|(host, t)| all.get(host) == Some(t)) {
            return;
        }
        all.extend(learned);
        let mut text: Vec<String> = all
            .iter()
            .map(|(host, transport)| format!("{host} {}", transport.name()))
            .collect();
        text.sort();
        let path = self.store.path_of(crate::cache::Bucket::Transports);
        let _ = crate::fsx::write_record(&path, (text.join("\n") + "\n").as_bytes());
    }
}
