//! Async reads (`aread`, `areadline`, `areadexactly`, `async for`): an event loop waits on one
//! file descriptor, shared by all of its waiting reads, that the writer's thread signals without
//! the GIL.
//!
//! The pieces:
//! - [`Notifier`] (Python: `bodypipe._Notifier`): one per event loop. An eventfd (a non-blocking
//!   pipe off Linux) the loop watches with `loop.add_reader`, and a queue of the ids of waits that
//!   became ready. Signalled from any thread, no GIL: push the id, and write the fd only when the
//!   queue was empty (a burst of wake-ups costs one syscall and one loop wake-up).
//! - Each parked wait is one core `Reader::on_readable_min` subscription with its own threshold
//!   ([`arm`]); the core keeps any number of them per reader, so waits through several wrappers
//!   of one reader (the NIF makes a wrapper per call) never replace each other. A wait that
//!   finds its condition still unmet when woken arms again.
//! - `aio.py` (compiled into this module, run on first use as `bodypipe._aio`): the coroutines
//!   and the per-loop registry (a `WeakKeyDictionary` from loop to notifier and futures).
//!
//! The writer pays nothing unless a wait is armed; then one flag load and threshold check per
//! write, and a mutex plus an `eventfd` write only when the wait becomes due.

use crate::errors::BodyAborted;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyModule};
use std::ffi::CString;
use std::sync::{Arc, Mutex, MutexGuard};

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fd side of a [`Notifier`]: written by any thread, read by the loop.
#[derive(Debug)]
struct WakeFd {
    /// What the loop watches and drains.
    read: std::os::fd::OwnedFd,
    /// What notifiers write: the same eventfd on Linux, the pipe's write end elsewhere.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    write: std::os::fd::OwnedFd,
}

impl WakeFd {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn new() -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(Self { read: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) } })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn new() -> std::io::Result<Self> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors; the result is checked.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: two fresh descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&read, &write] {
            // SAFETY: fcntl on a descriptor we own.
            unsafe {
                let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        Ok(Self { read, write })
    }

    fn raw_read(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.read.as_raw_fd()
    }

    /// Makes the fd readable. Never blocks; a full counter or pipe already means "readable".
    fn signal(&self) {
        use std::os::fd::AsRawFd;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let (fd, buf) = (self.read.as_raw_fd(), 1u64.to_ne_bytes());
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let (fd, buf) = (self.write.as_raw_fd(), [1u8; 1]);
        loop {
            // SAFETY: writes `buf.len()` bytes from a live buffer to a descriptor we own.
            let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return;
            }
        }
    }

    /// Makes the fd unreadable again (until the next `signal`).
    fn clear(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into a live buffer of `buf.len()` bytes from a descriptor we own.
            let n = unsafe { libc::read(self.raw_read(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 && cfg!(not(any(target_os = "linux", target_os = "android"))) && n as usize == buf.len() {
                continue; // a pipe may hold more
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
    }
}

/// The part of a loop's notifier that armed callbacks hold (they may outlive the Python object;
/// the fd is closed when the last of them is gone, so it is never reused under a late write).
#[derive(Debug)]
struct NotifyInner {
    fd: WakeFd,
    /// Ids of the waits that became ready since the loop last drained.
    ready: Mutex<Vec<u64>>,
}

impl NotifyInner {
    /// Marks wait `id` ready and wakes the loop. Any thread, no GIL; never blocks for long.
    fn notify(&self, id: u64) {
        let first = {
            let mut q = relock(&self.ready);
            q.push(id);
            q.len() == 1
        };
        // Only the push that made the queue non-empty writes the fd: the loop reads the fd before
        // it takes the queue, so every later push either lands in that take or finds the queue
        // empty again and writes itself.
        if first {
            self.fd.signal();
        }
    }
}

/// `bodypipe._Notifier`: one event loop's wake-up fd and ready queue (see the module docs).
#[pyclass(name = "_Notifier", module = "bodypipe", frozen)]
pub struct Notifier {
    inner: Arc<NotifyInner>,
}

#[pymethods]
impl Notifier {
    #[new]
    fn new() -> PyResult<Self> {
        let fd = WakeFd::new().map_err(|e| PyOSError::new_err(format!("cannot create the wake-up fd: {e}")))?;
        Ok(Self { inner: Arc::new(NotifyInner { fd, ready: Mutex::new(Vec::new()) }) })
    }

    /// The descriptor to watch with `loop.add_reader`.
    fn fileno(&self) -> i32 {
        self.inner.fd.raw_read()
    }

    /// Clears the fd, then returns (and forgets) the ids of the waits that became ready.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.inner.fd.clear();
        let ids = std::mem::take(&mut *relock(&self.inner.ready));
        PyList::new(py, ids)
    }
}

/// `bodypipe._Armed`: one armed core readiness subscription, as `PyBuffer._arm` returns it and
/// `PyBuffer._disarm` takes it back.
#[pyclass(name = "_Armed", module = "bodypipe", frozen)]
pub(crate) struct Armed(pub(crate) ::bodypipe::Subscription);

/// Parks wait `id` of `notifier` on `reader` until `min` bytes beyond its read position are
/// written or the stream ends: one core subscription of its own, so any number of waits, from
/// any number of wrappers of one reader and any number of loops, each get their wake-up. Fires at
/// once (through the fd) if that already holds.
pub(crate) fn arm(reader: &::bodypipe::Reader, notifier: &Notifier, id: u64, min: usize) -> Armed {
    let notify = Arc::clone(&notifier.inner);
    // Runs on the writer's thread (or here, at once): no GIL, one short mutex and a
    // non-blocking write.
    Armed(reader.on_readable_min(min, move || notify.notify(id)))
}

/// Parks wait `id` of `notifier` on `writer` until writing makes sense again (unread bytes below
/// half of `max_buffered`, or the reader closed): a core `Writer::on_writable` subscription.
pub(crate) fn arm_writable(writer: &::bodypipe::Writer, notifier: &Notifier, id: u64) -> Armed {
    let notify = Arc::clone(&notifier.inner);
    // Runs on the reader's thread (or here, at once): no GIL.
    Armed(writer.on_writable(move |_| notify.notify(id)))
}

/// Forgets a wait (cancelled, timed out): its subscription is removed unfired, if it has not
/// fired already.
pub(crate) fn disarm(reader: &::bodypipe::Reader, armed: &Armed) {
    reader.cancel_readable(armed.0);
}

/// The coroutines, compiled on first use.
pub(crate) struct Aio {
    pub(crate) aread: Py<PyAny>,
    pub(crate) areadline: Py<PyAny>,
    pub(crate) areadexactly: Py<PyAny>,
    pub(crate) anext: Py<PyAny>,
    pub(crate) awrite: Py<PyAny>,
    pub(crate) wait_writable: Py<PyAny>,
}

static AIO: PyOnceLock<Aio> = PyOnceLock::new();

/// The `bodypipe._aio` module's entry points (compiling it on first use).
pub(crate) fn aio(py: Python<'_>) -> PyResult<&'static Aio> {
    AIO.get_or_try_init(py, || {
        let src = CString::new(include_str!("aio.py")).map_err(|e| PyOSError::new_err(e.to_string()))?;
        let m = PyModule::from_code(py, &src, c"bodypipe/_aio.py", c"bodypipe._aio")?;
        m.setattr("BodyAborted", py.get_type::<BodyAborted>())?;
        m.setattr("_Notifier", py.get_type::<Notifier>())?;
        m.setattr("_Gather", py.get_type::<crate::gather::PyGather>())?;
        let get = |name: &str| m.getattr(name).map(Bound::unbind);
        Ok(Aio {
            aread: get("aread")?,
            areadline: get("areadline")?,
            areadexactly: get("areadexactly")?,
            anext: get("anext")?,
            awrite: get("awrite")?,
            wait_writable: get("wait_writable")?,
        })
    })
}
