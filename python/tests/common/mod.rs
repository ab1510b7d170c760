//! What every embedding test does first: start an interpreter the way the Erlang NIF does.

use pyo3::prelude::*;

/// Registers the `bodypipe` module with the inittab and starts the interpreter (once per test
/// process). An embedded interpreter must find its standard library: unless the environment
/// says otherwise, that of the `python3` on PATH.
pub fn start_embedded() {
    if std::env::var_os("PYTHONHOME").is_none() {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.base_prefix)"])
            .output()
            .expect("python3 on PATH");
        let prefix = String::from_utf8(out.stdout).expect("utf-8 prefix");
        std::env::set_var("PYTHONHOME", prefix.trim());
    }
    bodypipe_python::append_to_inittab();
    Python::initialize();
}
