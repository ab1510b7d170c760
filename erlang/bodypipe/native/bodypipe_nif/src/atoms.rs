//! Atoms used by the NIF.

rustler::atoms! {
    ok,
    error,
    undefined,
    none,
    true_ = "true",
    false_ = "false",
    dirty,
    // write / new errors
    closed,
    exceeds_content_length,
    too_large,
    full,
    enomem,
    system_limit,
    // close
    incomplete,
    // notify_writable
    py_buffer,
    writable,
    // info keys
    written,
    read,
    buffered,
    eof,
    aborted,
    reader_closed,
    writer_closed,
    content_length,
    max_buffered,
    abort_reason,
    reader_wakes,
    writer_wakes,
    reader_waiting,
    writer_waiting,
    // python
    py_context,
    initialized,
    threads,
    idle,
    queued,
    max_threads,
    python_version,
    python_prefix,
    libpython,
}
