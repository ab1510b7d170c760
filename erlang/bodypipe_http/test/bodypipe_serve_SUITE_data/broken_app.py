"""An app whose import fails: bodypipe serve must show this traceback."""


def helper():
    raise RuntimeError("broken_app cannot start: the database is not configured")


helper()
