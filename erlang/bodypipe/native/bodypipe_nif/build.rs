//! Pins the libpython this NIF embeds and records which one it is.
//!
//! - `-Wl,-rpath,<libdir>` so the VM loads the libpython we were built against, not whatever
//!   the dynamic loader finds first;
//! - `BODYPIPE_PY_VERSION` / `BODYPIPE_PY_PREFIX` (that interpreter's `sys.version` and
//!   `sys.prefix`) so the tests can check, from Erlang, that the embedded one is the same.

use std::process::Command;

fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let cfg = pyo3_build_config::get();
    let (mut version, mut prefix) = (String::new(), String::new());
    if let Some(exe) = cfg.executable() {
        let out = Command::new(exe)
            .args(["-c", "import sys; print(sys.version.replace('\\n', ' ')); print(sys.prefix)"])
            .output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut lines = text.lines();
            version = lines.next().unwrap_or_default().to_owned();
            prefix = lines.next().unwrap_or_default().to_owned();
        }
    }
    println!("cargo:rustc-env=BODYPIPE_PY_VERSION={version}");
    println!("cargo:rustc-env=BODYPIPE_PY_PREFIX={prefix}");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=PYO3_CONFIG_FILE");
}
