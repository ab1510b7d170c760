//! Emits pyo3's cfgs (`Py_GIL_DISABLED` for a free-threaded interpreter), which the line
//! read-ahead needs: its table is guarded by the GIL (src/readahead.rs).
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
