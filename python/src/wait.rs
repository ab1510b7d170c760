//! Waiting with the GIL released, in short slices so signals (Ctrl-C) are seen promptly.

use pyo3::prelude::*;
use std::time::{Duration, Instant};

/// How long one GIL-released wait lasts before we come back to check signals and the deadline.
/// Short enough that Ctrl-C feels immediate, long enough that an idle reader costs nothing.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// The deadline of an operation that starts now under `timeout` (`None`: wait forever).
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    // A timeout too large to add is as good as none.
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Runs `step` with the GIL released until it returns `Some`, giving it the end of the current
/// slice as its deadline. Between slices it reacquires the GIL to run signal handlers (so a
/// `KeyboardInterrupt` propagates) and checks the overall `deadline`.
///
/// Returns `Ok(None)` when `deadline` passed first.
pub(crate) fn in_slices<T, F>(py: Python<'_>, deadline: Option<Instant>, mut step: F) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(Instant) -> Option<T> + Send,
{
    loop {
        let now = Instant::now();
        let mut slice_end = now + SLICE;
        if let Some(d) = deadline {
            if now >= d {
                // One last non-waiting attempt, so a zero timeout still returns data that is there.
                return Ok(py.detach(|| step(now)));
            }
            slice_end = slice_end.min(d);
        }
        if let Some(v) = py.detach(|| step(slice_end)) {
            return Ok(Some(v));
        }
        py.check_signals()?;
    }
}
