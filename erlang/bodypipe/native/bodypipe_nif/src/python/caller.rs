//! Freeing a Python thread whose caller died.
//!
//! A `py` call runs on a pool thread while the calling process waits in `receive`. If that
//! process dies (killed, or its connection timed out) while Python is blocked reading a
//! `py_buffer` that nobody will write any more, the thread would stay blocked for good. So each
//! call that is handed buffers monitors its caller; if the caller goes down before the call
//! ends, every buffer among the call's arguments is aborted (reason `caller_down`), and the
//! blocked read raises `BodyAborted`, which lets the Python code return.

use std::sync::atomic::{AtomicBool, Ordering};

use rustler::types::map::MapIterator;
use rustler::types::tuple::get_tuple;
use rustler::{Env, LocalPid, Monitor, Resource, ResourceArc, Term, TermType};

use super::convert::MAX_DEPTH;
use crate::buffer::BufferRes;

/// Reason the buffers are aborted with (what `BodyAborted` says in Python).
pub const CALLER_DOWN: &str = "caller_down";

/// The buffers of one call, aborted if its caller dies first.
pub struct CallWatch {
    buffers: Vec<ResourceArc<BufferRes>>,
    /// Set when the call has ended: a `down` that comes after changes nothing.
    ended: AtomicBool,
}

#[rustler::resource_impl]
impl Resource for CallWatch {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        // ORDERING: Relaxed: the flag publishes no other data (`buffers` is fixed before the
        // monitor exists). A `down` that races the end of the call may still abort its
        // buffers, exactly as if the caller had died a moment earlier.
        if !self.ended.load(Ordering::Relaxed) {
            for buf in &self.buffers {
                // On a scheduler: never wait for a writer held by a large write.
                buf.abort_soon(CALLER_DOWN);
            }
        }
    }
}

/// A monitor on a call's caller; dropping it (when the call has ended, or was never run)
/// removes the monitor.
pub struct Watch {
    res: ResourceArc<CallWatch>,
    monitor: Monitor,
}

impl Watch {
    /// Watches the calling process of `env` for a call handed `terms`; `None` if they hold no
    /// buffer (nothing to free) or the monitor cannot be set.
    pub fn start<'a>(env: Env<'a>, terms: &[Term<'a>]) -> Option<Watch> {
        let mut buffers = Vec::new();
        for t in terms {
            collect(*t, &mut buffers, 0);
        }
        if buffers.is_empty() {
            return None;
        }
        let res = ResourceArc::new(CallWatch { buffers, ended: AtomicBool::new(false) });
        // The caller is running this NIF, so it is alive and the monitor can be set.
        let monitor = env.monitor(&res, &env.pid())?;
        Some(Watch { res, monitor })
    }
}

impl Drop for Watch {
    /// The call ended: from now on the caller's death aborts nothing. Runs on any thread.
    fn drop(&mut self) {
        // ORDERING: Relaxed, see `down`; the demonitor that follows makes a later `down`
        // impossible anyway.
        self.res.ended.store(true, Ordering::Relaxed);
        self.res.demonitor(None, &self.monitor);
    }
}

/// Every `py_buffer` in `t`, however deeply nested (within the conversion's depth limit).
fn collect(t: Term, out: &mut Vec<ResourceArc<BufferRes>>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match t.get_type() {
        TermType::Ref => {
            if let Ok(buf) = t.decode::<ResourceArc<BufferRes>>() {
                out.push(buf);
            }
        }
        TermType::List => {
            let mut cur = t;
            while let Ok((head, tail)) = cur.list_get_cell() {
                collect(head, out, depth + 1);
                cur = tail;
            }
        }
        TermType::Tuple => {
            if let Ok(elems) = get_tuple(t) {
                for e in elems {
                    collect(e, out, depth + 1);
                }
            }
        }
        TermType::Map => {
            if let Some(iter) = MapIterator::new(t) {
                for (k, v) in iter {
                    collect(k, out, depth + 1);
                    collect(v, out, depth + 1);
                }
            }
        }
        _ => {}
    }
}
