//! Which buffers each owner process created, so its death can abort them.
//!
//! A NIF resource monitor tells us *that* a process died but not *why*, and the issue wants
//! `{owner_down, Reason}`. So an Erlang process (`bodypipe_owner_watch`) monitors each owner
//! once and, on `'DOWN'`, calls `owner_down(Pid, FormattedReason)`, which aborts every live
//! buffer registered here for that pid. Per-buffer resource monitors remain as a fallback for
//! when that process is not running (see `BufferRes::down`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rustler::LocalPid;

use crate::shared::Shared;

struct Entry {
    buffers: Vec<Weak<Shared>>,
    /// Prune dead entries when `buffers` reaches this length (doubles each time).
    prune_at: usize,
}

fn registry() -> &'static Mutex<BTreeMap<LocalPid, Entry>> {
    static REG: OnceLock<Mutex<BTreeMap<LocalPid, Entry>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Records `buf` as owned by `pid`. Returns `true` if `pid` had no entry yet, i.e. the
/// watcher process must be told to monitor it.
pub fn register(pid: LocalPid, buf: &Arc<Shared>) -> bool {
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    match reg.get_mut(&pid) {
        Some(entry) => {
            entry.buffers.push(Arc::downgrade(buf));
            if entry.buffers.len() >= entry.prune_at {
                entry.buffers.retain(|w| w.strong_count() > 0);
                entry.prune_at = (entry.buffers.len() * 2).max(16);
            }
            false
        }
        None => {
            reg.insert(pid, Entry { buffers: vec![Arc::downgrade(buf)], prune_at: 16 });
            true
        }
    }
}

/// Removes `pid`'s entry and returns its still-live buffers.
pub fn take(pid: &LocalPid) -> Vec<Arc<Shared>> {
    let entry = {
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.remove(pid)
    };
    entry.map(|e| e.buffers.iter().filter_map(Weak::upgrade).collect()).unwrap_or_default()
}

/// Every pid with an entry (for a restarted watcher to monitor again).
pub fn pids() -> Vec<LocalPid> {
    let reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    reg.keys().copied().collect()
}
