//! Conversion between Erlang terms and Python objects (with the GIL held, on our own threads).
//!
//! Erlang -> Python: binary -> bytes (but a binary *map key* -> str when it is UTF-8), integer
//! (any size) -> int, float -> float, `true`/`false` -> bool, `none`/`undefined` -> None, other
//! atoms -> str, list -> list, tuple -> tuple, map -> dict, a `py_buffer` -> `PyBuffer` reading
//! the same stream, an opaque Python reference -> the object it holds.
//!
//! Python -> Erlang: None -> `none`, bool -> `true`/`false`, int -> integer, float -> float,
//! str -> UTF-8 binary, bytes/bytearray -> binary, list -> list, tuple -> tuple, dict -> map;
//! anything else -> an opaque reference that can be passed back into later calls.

use pyo3::exceptions::{PyMemoryError, PyRecursionError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use rustler::{BigInt, Binary, Encoder, Env, Term, TermType};

use crate::buffer::BufferRes;

/// Deepest nesting converted either way; deeper (or cyclic) structures raise `RecursionError`
/// instead of overflowing the thread's stack.
pub const MAX_DEPTH: usize = 512;

/// An arbitrary Python object held by Erlang.
pub struct PyObjRes {
    obj: Py<PyAny>,
}

#[rustler::resource_impl]
impl rustler::Resource for PyObjRes {}

// Dropping `Py<PyAny>` without the GIL (the resource destructor runs on a scheduler) defers the
// decref to pyo3's reference pool, processed the next time a thread attaches: no GIL wait on a
// scheduler.

fn too_deep() -> PyErr {
    PyRecursionError::new_err("structure nested too deeply to convert")
}

/// Converts an Erlang term into a Python object.
pub fn to_py<'py>(py: Python<'py>, t: Term, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    match t.get_type() {
        TermType::Atom => atom_to_py(py, t),
        TermType::Binary => {
            let b =
                Binary::from_term(t).map_err(|_| PyTypeError::new_err("bitstring is not a whole number of bytes"))?;
            Ok(PyBytes::new(py, b.as_slice()).into_any())
        }
        TermType::Integer => int_to_py(py, t),
        TermType::Float => {
            let f: f64 = t.decode().map_err(|_| PyTypeError::new_err("bad float"))?;
            Ok(PyFloat::new(py, f).into_any())
        }
        TermType::List => {
            let list = PyList::empty(py);
            let mut cur = t;
            loop {
                match cur.list_get_cell() {
                    Ok((head, tail)) => {
                        list.append(to_py(py, head, depth + 1)?)?;
                        cur = tail;
                    }
                    Err(_) if cur.is_empty_list() => break,
                    Err(_) => return Err(PyTypeError::new_err("improper lists cannot be converted")),
                }
            }
            Ok(list.into_any())
        }
        TermType::Tuple => {
            let elems = rustler::types::tuple::get_tuple(t).map_err(|_| PyTypeError::new_err("bad tuple"))?;
            let items = elems.iter().map(|e| to_py(py, *e, depth + 1)).collect::<PyResult<Vec<_>>>()?;
            Ok(PyTuple::new(py, items)?.into_any())
        }
        TermType::Map => {
            let dict = PyDict::new(py);
            let iter = rustler::types::map::MapIterator::new(t).ok_or_else(|| PyTypeError::new_err("bad map"))?;
            for (k, v) in iter {
                dict.set_item(key_to_py(py, k, depth + 1)?, to_py(py, v, depth + 1)?)?;
            }
            Ok(dict.into_any())
        }
        TermType::Ref => {
            if let Some(buf) = t.try_get_resource::<BufferRes>() {
                let obj = bodypipe_python::wrap_reader(py, buf.reader())?;
                return Ok(obj.into_bound(py).into_any());
            }
            if let Some(o) = t.try_get_resource::<PyObjRes>() {
                return Ok(o.obj.bind(py).clone());
            }
            Err(PyTypeError::new_err("only py_buffer and Python object references can be passed to Python"))
        }
        TermType::Fun => Err(PyTypeError::new_err("Erlang funs cannot be passed to Python")),
        TermType::Pid => Err(PyTypeError::new_err("pids cannot be passed to Python")),
        TermType::Port => Err(PyTypeError::new_err("ports cannot be passed to Python")),
        TermType::Unknown => Err(PyTypeError::new_err("unsupported Erlang term")),
    }
}

fn key_to_py<'py>(py: Python<'py>, k: Term, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    if k.get_type() == TermType::Binary {
        if let Ok(b) = Binary::from_term(k) {
            if let Ok(s) = std::str::from_utf8(b.as_slice()) {
                return Ok(PyString::new(py, s).into_any());
            }
        }
    }
    to_py(py, k, depth)
}

fn atom_to_py<'py>(py: Python<'py>, t: Term) -> PyResult<Bound<'py, PyAny>> {
    let name = t.atom_to_string().map_err(|_| PyTypeError::new_err("bad atom"))?;
    Ok(match name.as_str() {
        "true" => PyBool::new(py, true).to_owned().into_any(),
        "false" => PyBool::new(py, false).to_owned().into_any(),
        "none" | "undefined" => py.None().into_bound(py),
        _ => PyString::new(py, &name).into_any(),
    })
}

fn int_to_py<'py>(py: Python<'py>, t: Term) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(i) = t.decode::<i64>() {
        return Ok(i.into_pyobject(py)?.into_any());
    }
    if let Ok(u) = t.decode::<u64>() {
        return Ok(u.into_pyobject(py)?.into_any());
    }
    // A bignum: rustler's `BigInt`, handed over as two's-complement bytes, which Python's
    // `int.from_bytes` reads. (pyo3's `num-bigint` feature would take the `BigInt` directly, but
    // pyo3 0.30 builds on num-bigint 0.4 and rustler 0.39 on 0.5: two different types.)
    let big: BigInt = t.decode().map_err(|_| PyTypeError::new_err("bad integer"))?;
    let bytes = PyBytes::new(py, &big.to_signed_bytes_le());
    let signed = PyDict::new(py);
    signed.set_item("signed", true)?;
    py.get_type::<PyInt>().call_method("from_bytes", (bytes, "little"), Some(&signed))
}

/// A Python `int` beyond 64 bits as an Erlang integer (through rustler's `BigInt`).
fn big_int_to_term<'a>(env: Env<'a>, i: &Bound<'_, PyInt>) -> PyResult<Term<'a>> {
    let too_large = || PyTypeError::new_err("integer too large for Erlang");
    let bits: usize = i.call_method0("bit_length")?.extract()?;
    // rustler writes the magnitude's length as a u32 (a longer one would wrap); Erlang's own
    // limit on integers is far below that, so anything near it is refused here.
    if bits / 8 >= u32::MAX as usize {
        return Err(too_large());
    }
    let signed = PyDict::new(i.py());
    signed.set_item("signed", true)?;
    // bit_length excludes the sign: one more byte always holds it.
    let bytes = i.call_method("to_bytes", (bits / 8 + 1, "little"), Some(&signed))?;
    let big = BigInt::from_signed_bytes_le(bytes.cast::<PyBytes>()?.as_bytes());
    let term = big.encode(env);
    // rustler's encoder gives `{error, big_int_encoder_invalid_bytes}` when the VM refuses the
    // integer (larger than Erlang integers may be); an integer is never a tuple.
    if term.is_tuple() {
        return Err(too_large());
    }
    Ok(term)
}

/// A binary copy of `data`; `MemoryError` if the VM cannot allocate it (never a VM abort).
fn make_binary<'a>(env: Env<'a>, data: &[u8]) -> PyResult<Term<'a>> {
    crate::try_binary_term(env, data)
        .ok_or_else(|| PyMemoryError::new_err(format!("cannot allocate an Erlang binary of {} bytes", data.len())))
}

/// Converts a Python object into an Erlang term.
pub fn to_term<'a>(env: Env<'a>, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Term<'a>> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    if obj.is_none() {
        return Ok(crate::atoms::none().encode(env));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(b.is_true().encode(env));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(v.encode(env));
        }
        if let Ok(v) = i.extract::<u64>() {
            return Ok(v.encode(env));
        }
        return big_int_to_term(env, i);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(f.value().encode(env));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let bytes = s.encode_utf8()?;
        return make_binary(env, bytes.as_bytes());
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return make_binary(env, b.as_bytes());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        // SAFETY: the GIL is held and no Python code runs during the copy, so nothing can
        // resize or free the bytearray's buffer while it is borrowed.
        return make_binary(env, unsafe { b.as_bytes() });
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let items = l.iter().map(|x| to_term(env, &x, depth + 1)).collect::<PyResult<Vec<_>>>()?;
        return Ok(items.encode(env));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let items = t.iter().map(|x| to_term(env, &x, depth + 1)).collect::<PyResult<Vec<_>>>()?;
        return Ok(rustler::types::tuple::make_tuple(env, &items));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = rustler::types::map::map_new(env);
        for (k, v) in d.iter() {
            let k = to_term(env, &k, depth + 1)?;
            let v = to_term(env, &v, depth + 1)?;
            // Distinct Python keys can map to one Erlang key (`'a'` and `b'a'`): last one wins.
            map = map.map_put(k, v).map_err(|_| PyTypeError::new_err("cannot build map"))?;
        }
        return Ok(map);
    }
    Ok(rustler::ResourceArc::new(PyObjRes { obj: obj.clone().unbind() }).encode(env))
}
