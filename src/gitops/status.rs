//! `cluster status`: where every pointer stands relative to main.

use super::{ClusterStatus, Fleet, PublishResult, pointer_ref};
use std::collections::BTreeSet;

impl Fleet {
    /// Status of every cluster (fetches first). A cluster whose remote cannot be reached
    /// gets a row with `error` set and no commit data; the others are complete.
    pub fn status(&self) -> PublishResult<Vec<ClusterStatus>> {
        let unavailable = self.fetch()?;
        let main = self.main_tracking();
        self.inventory
            .clusters
            .iter()
            .map(|c| {
                let mut row = ClusterStatus {
                    cluster: c.id.clone(),
                    pointer: c.pointer,
                    refname: pointer_ref(c),
                    remote: c.remote.clone(),
                    commit: None,
                    behind_main: None,
                    ahead_of_main: None,
                    diverged: false,
                    pending_unrelated: false,
                    error: unavailable
                        .get(&c.remote)
                        .map(|e| format!("remote {} unavailable: {e}", c.remote)),
                };
                if row.error.is_some() {
                    return Ok(row);
                }
                row.commit = self.pointer(c)?;
                if let Some(p) = &row.commit {
                    let behind = self.git.count(p, &main)?;
                    let ahead = self.git.count(&main, p)?;
                    let base = self.git.run(&["merge-base", p, &main])?.trim().to_owned();
                    row.pending_unrelated = !self
                        .unrelated(c, &base, &main, &BTreeSet::new())?
                        .is_empty();
                    row.behind_main = Some(behind);
                    row.ahead_of_main = Some(ahead);
                    row.diverged = ahead > 0;
                }
                Ok(row)
            })
            .collect()
    }
}
