//! The embedded CPython: initialization, the `erlang` module, and the `py` NIFs.
//!
//! Every Python call runs on a thread of our pool (see [`pool`]); the NIF only copies its
//! arguments into a process-independent environment and returns `ok`, and the result comes back
//! as a message `{Ref, Result}` to the calling process.

pub mod caller;
pub mod convert;
pub mod pool;

use std::ffi::{CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};
use rustler::env::SavedTerm;
use rustler::{Binary, Encoder, Env, Error, LocalPid, NifMap, NifResult, OwnedEnv, Term, TermType};

use crate::atoms;

/// Outcome of Python initialization, computed once.
static INIT: OnceLock<Result<(), String>> = OnceLock::new();

/// The `erlang` module of the embedded interpreter: `from erlang import PyBuffer` works, and
/// `erlang.PyBuffer is bodypipe.PyBuffer`.
#[pymodule(name = "erlang")]
pub fn erlang_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let bp = m.py().import("bodypipe")?;
    for name in ["PyBuffer", "BodyAborted"] {
        m.add(name, bp.getattr(name)?)?;
    }
    m.add("__doc__", "Objects shared with the Erlang VM that embeds this interpreter.")?;
    Ok(())
}

/// Promotes the already-loaded libpython to global symbol scope.
///
/// ERTS loads NIF libraries with `RTLD_LOCAL`, so libpython (a dependency of this NIF) is loaded
/// locally too, and C extension modules (`_json`, `_decimal`, numpy), which do not link
/// libpython themselves, would fail to resolve `Py*` symbols. `RTLD_NOLOAD` finds the copy that
/// is already mapped (located through `dladdr` on one of its symbols) rather than loading
/// another.
fn promote_libpython() -> Result<String, String> {
    let sym = pyo3::ffi::Py_IsInitialized as *const libc::c_void;
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only writes into `info`; `sym` is the address of a function in a loaded object.
    let found = unsafe { libc::dladdr(sym, info.as_mut_ptr()) };
    if found == 0 {
        return Err("dladdr could not locate libpython".into());
    }
    // SAFETY: dladdr returned non-zero, so it filled `info`.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return Err("dladdr gave no file name for libpython".into());
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the dynamic loader.
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_owned();
    // SAFETY: dlopen with RTLD_NOLOAD only changes the flags of an object already mapped; the
    // handle is deliberately leaked so the library stays loaded with global scope.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        return Err(format!("dlopen(RTLD_NOLOAD|RTLD_GLOBAL) failed for {}", path.to_string_lossy()));
    }
    Ok(path.to_string_lossy().into_owned())
}

/// Path of the libpython this NIF uses (after initialization).
static LIBPYTHON: OnceLock<String> = OnceLock::new();

fn initialize() -> Result<(), String> {
    let lib = promote_libpython()?;
    let _ = LIBPYTHON.set(lib);
    // SAFETY: a plain query of interpreter state.
    if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
        bodypipe_python::append_to_inittab();
        pyo3::append_to_inittab!(erlang_module);
    }
    Python::initialize();
    Python::attach(|py| -> PyResult<()> {
        let sys = py.import("sys")?;
        if !sys.hasattr("argv")? {
            sys.setattr("argv", vec![""])?;
        }
        Ok(())
    })
    .map_err(|e| format!("Python initialization failed: {e}"))
}

/// Initializes the interpreter once, on a dedicated thread that lives as long as the VM, so
/// Python's "main thread" never exits.
fn ensure_python() -> Result<(), String> {
    INIT.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("bodypipe-py-main".into()).spawn(move || {
            let r = catch_unwind(initialize).unwrap_or_else(|_| Err("Python initialization panicked".into()));
            let _ = tx.send(r);
            loop {
                std::thread::park();
            }
        });
        match spawned {
            Ok(_) => rx.recv().unwrap_or_else(|_| Err("Python init thread died".into())),
            Err(e) => Err(format!("cannot start the Python init thread: {e}")),
        }
    })
    .clone()
}

/// Named namespaces (`py:context/1`), keyed by the external term format of the name.
fn contexts() -> &'static Mutex<std::collections::HashMap<Vec<u8>, Py<PyDict>>> {
    static C: OnceLock<Mutex<std::collections::HashMap<Vec<u8>, Py<PyDict>>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn context<'py>(py: Python<'py>, key: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    // Only ever locked with the GIL held and released before any Python code runs: no deadlock.
    let mut map = contexts().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = map.get(key) {
        return Ok(d.bind(py).clone());
    }
    let d = PyDict::new(py);
    d.set_item("__builtins__", py.import("builtins")?)?;
    d.set_item("__name__", "__bodypipe__")?;
    map.insert(key.to_vec(), d.clone().unbind());
    Ok(d)
}

enum Target {
    Module(String),
    Object(SavedTerm),
}

enum Op {
    Exec { code: CString },
    Eval { code: CString, locals: Option<SavedTerm> },
    Call { target: Target, function: String, args: SavedTerm },
}

struct Job {
    env: OwnedEnv,
    pid: LocalPid,
    reference: SavedTerm,
    ctx: Vec<u8>,
    op: Op,
    /// Aborts the call's buffers if the caller dies before the call ends.
    watch: Option<caller::Watch>,
}

/// What a job produced, before conversion.
enum Outcome {
    Ok,
    Value(Py<PyAny>),
    Err(PyErr),
}

fn execute(py: Python<'_>, env: Env<'_>, ctx_key: &[u8], op: &Op) -> Outcome {
    let run = || -> PyResult<Option<Py<PyAny>>> {
        let ctx = context(py, ctx_key)?;
        match op {
            Op::Exec { code } => {
                py.run(code.as_c_str(), Some(&ctx), None)?;
                Ok(None)
            }
            Op::Eval { code, locals } => {
                let globals = match locals {
                    None => ctx,
                    Some(l) => {
                        // Locals are merged into a copy of the namespace (rather than passed as
                        // a separate mapping) so lambdas and comprehensions can see them too.
                        let g = ctx.copy()?;
                        let l = convert::to_py(py, l.load(env), 0)?;
                        g.update(l.cast::<pyo3::types::PyMapping>()?)?;
                        g
                    }
                };
                Ok(Some(py.eval(code.as_c_str(), Some(&globals), None)?.unbind()))
            }
            Op::Call { target, function, args } => {
                let mut obj = match target {
                    Target::Module(name) => py.import("importlib")?.call_method1("import_module", (name.as_str(),))?,
                    Target::Object(t) => convert::to_py(py, t.load(env), 0)?,
                };
                for part in function.split('.') {
                    obj = obj.getattr(part)?;
                }
                let args = convert::to_py(py, args.load(env), 0)?;
                let args = args.cast::<pyo3::types::PyList>()?.to_tuple();
                Ok(Some(obj.call1(args)?.unbind()))
            }
        }
    };
    match run() {
        Ok(None) => Outcome::Ok,
        Ok(Some(v)) => Outcome::Value(v),
        Err(e) => Outcome::Err(e),
    }
}

/// Longest exception message passed on; longer ones are cut (at a character boundary), so a
/// huge message costs no huge copy.
const MAX_ERROR_MESSAGE: usize = 64 << 10;

fn error_term<'a>(py: Python<'_>, env: Env<'a>, e: &PyErr) -> Term<'a> {
    let name = e.get_type(py).name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|_| "Exception".into());
    let msg = e.value(py).str().map(|s| cut(&s.to_string_lossy(), MAX_ERROR_MESSAGE).to_owned()).unwrap_or_default();
    plain_error(env, &name, &msg)
}

/// At most `max` bytes of `s`, ending at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn plain_error<'a>(env: Env<'a>, name: &str, msg: &str) -> Term<'a> {
    let pair = (crate::binary_term(env, name.as_bytes()), crate::binary_term(env, msg.as_bytes()));
    (atoms::error(), pair).encode(env)
}

fn run_job(mut job: Job) {
    let watch = job.watch.take();
    send_result(job, watch);
}

/// Runs the call and sends its result. `watch` ends once the call has run and *before* the
/// result is sent: the caller may exit as soon as it has the result, and that exit must not
/// abort the buffers it handed over (it did, now and then: `py_SUITE`'s
/// `a_call_that_ended_keeps_its_buffers`).
fn send_result(job: Job, watch: Option<caller::Watch>) {
    let Job { mut env, pid, reference, ctx, op, .. } = job;
    if let Err(msg) = ensure_python() {
        drop(watch);
        let _ = env.send_and_clear(&pid, |e| (reference.load(e), plain_error(e, "RuntimeError", &msg)));
        return;
    }
    let sent = catch_unwind(AssertUnwindSafe(|| {
        Python::attach(|py| {
            let outcome = env.run(|e| execute(py, e, &ctx, &op));
            // The call has ended: the caller's death no longer concerns its buffers.
            drop(watch);
            let _ = env.send_and_clear(&pid, |e| {
                let result = match &outcome {
                    Outcome::Ok => atoms::ok().encode(e),
                    Outcome::Value(v) => match convert::to_term(e, v.bind(py), 0) {
                        Ok(t) => (atoms::ok(), t).encode(e),
                        Err(err) => error_term(py, e, &err),
                    },
                    Outcome::Err(err) => error_term(py, e, err),
                };
                (reference.load(e), result)
            });
        })
    }));
    if sent.is_err() {
        // Best effort: tell the caller instead of leaving it waiting forever.
        let mut fresh = OwnedEnv::new();
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let r = fresh.save(env.run(|e| reference.load(e)));
            let _ = fresh.send_and_clear(&pid, |e| {
                (r.load(e), plain_error(e, "SystemError", "internal error in the Erlang bridge"))
            });
        }));
    }
}

fn code_arg(t: Term) -> NifResult<CString> {
    let b = Binary::from_term(t).map_err(|_| Error::BadArg)?;
    CString::new(b.as_slice()).map_err(|_| Error::BadArg)
}

fn ctx_key(t: Term) -> NifResult<Vec<u8>> {
    let elems = rustler::types::tuple::get_tuple(t).map_err(|_| Error::BadArg)?;
    match elems.as_slice() {
        [tag, name] if *tag == atoms::py_context().to_term(t.get_env()) => Ok(name.to_binary().as_slice().to_vec()),
        _ => Err(Error::BadArg),
    }
}

fn name_arg(t: Term) -> NifResult<String> {
    if t.is_atom() {
        return t.atom_to_string().map_err(|_| Error::BadArg);
    }
    let b = Binary::from_term(t).map_err(|_| Error::BadArg)?;
    String::from_utf8(b.as_slice().to_vec()).map_err(|_| Error::BadArg)
}

fn submit<'a>(env: Env<'a>, job: Job) -> NifResult<Term<'a>> {
    match pool::submit(Box::new(move || run_job(job))) {
        Ok(()) => Ok(atoms::ok().encode(env)),
        Err(_) => Ok(plain_error(env, "RuntimeError", "cannot start a thread for Python")),
    }
}

/// A job for the pool; `passed` are the terms that become Python values (whose buffers are
/// aborted if the caller dies during the call).
fn new_job<'a>(
    env: Env<'a>,
    reference: Term<'a>,
    ctx: Term<'a>,
    passed: &[Term<'a>],
    op: impl FnOnce(&OwnedEnv) -> NifResult<Op>,
) -> NifResult<Job> {
    if !reference.is_ref() {
        return Err(Error::BadArg);
    }
    let ctx = ctx_key(ctx)?;
    let owned = OwnedEnv::new();
    let op = op(&owned)?;
    let reference = owned.save(reference);
    let watch = caller::Watch::start(env, passed);
    Ok(Job { env: owned, pid: env.pid(), reference, ctx, op, watch })
}

/// `py_exec(Ref, Ctx, Code)` -> `ok`; later `{Ref, ok | {error, {Name, Msg}}}`.
#[rustler::nif]
fn py_exec<'a>(env: Env<'a>, reference: Term<'a>, ctx: Term<'a>, code: Term<'a>) -> NifResult<Term<'a>> {
    let code = code_arg(code)?;
    let job = new_job(env, reference, ctx, &[], |_| Ok(Op::Exec { code }))?;
    submit(env, job)
}

/// `py_eval(Ref, Ctx, Code, Locals | undefined)` -> `ok`; later `{Ref, {ok, T} | {error, E}}`.
#[rustler::nif]
fn py_eval<'a>(
    env: Env<'a>,
    reference: Term<'a>,
    ctx: Term<'a>,
    code: Term<'a>,
    locals: Term<'a>,
) -> NifResult<Term<'a>> {
    let code = code_arg(code)?;
    let locals = if locals.get_type() == TermType::Map {
        Some(locals)
    } else if locals == atoms::undefined().to_term(env) {
        None
    } else {
        return Err(Error::BadArg);
    };
    let passed: Vec<Term> = locals.into_iter().collect();
    let job = new_job(env, reference, ctx, &passed, |o| Ok(Op::Eval { code, locals: locals.map(|l| o.save(l)) }))?;
    submit(env, job)
}

/// `py_call(Ref, Ctx, Module | Object, Function, Args)` -> `ok`; later `{Ref, {ok, T} | {error, E}}`.
#[rustler::nif]
fn py_call<'a>(
    env: Env<'a>,
    reference: Term<'a>,
    ctx: Term<'a>,
    module: Term<'a>,
    function: Term<'a>,
    args: Term<'a>,
) -> NifResult<Term<'a>> {
    let function = name_arg(function)?;
    if !args.is_list() {
        return Err(Error::BadArg);
    }
    let module_is_obj = module.try_get_resource::<convert::PyObjRes>().is_some();
    let module_name = if module_is_obj { None } else { Some(name_arg(module)?) };
    let job = new_job(env, reference, ctx, &[args], |o| {
        let target = match module_name {
            Some(n) => Target::Module(n),
            None => Target::Object(o.save(module)),
        };
        Ok(Op::Call { target, function, args: o.save(args) })
    })?;
    submit(env, job)
}

/// The map `py_info/0` returns (`py:info/0`); keys are the field names.
#[derive(NifMap)]
#[rustler(encode)]
struct PyInfo<'a> {
    initialized: bool,
    threads: usize,
    idle: usize,
    queued: usize,
    max_threads: usize,
    libpython: crate::OrUndefined<Term<'a>>,
}

/// `py_info()` -> `#{initialized, threads, idle, queued, max_threads, libpython}`.
#[rustler::nif]
fn py_info(env: Env<'_>) -> Term<'_> {
    let c = pool::counters();
    PyInfo {
        initialized: matches!(INIT.get(), Some(Ok(()))),
        threads: c.threads,
        idle: c.idle,
        queued: c.queued,
        max_threads: c.max_threads,
        libpython: crate::OrUndefined(LIBPYTHON.get().map(|s| crate::binary_term(env, s.as_bytes()))),
    }
    .encode(env)
}

/// The map `build_info/0` returns.
#[derive(NifMap)]
#[rustler(encode)]
struct BuildInfo<'a> {
    python_version: Term<'a>,
    python_prefix: Term<'a>,
}

/// `build_info()` -> the Python the NIF was built against: `#{python_version, python_prefix}`.
#[rustler::nif]
fn build_info(env: Env<'_>) -> Term<'_> {
    BuildInfo {
        python_version: crate::binary_term(env, env!("BODYPIPE_PY_VERSION").as_bytes()),
        python_prefix: crate::binary_term(env, env!("BODYPIPE_PY_PREFIX").as_bytes()),
    }
    .encode(env)
}
