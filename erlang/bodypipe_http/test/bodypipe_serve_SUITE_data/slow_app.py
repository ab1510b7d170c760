"""An app whose import never ends (within a test): bodypipe serve gives up after
--worker-start-timeout."""

import time

time.sleep(600)


def application(environ, start_response):  # pragma: no cover - never reached
    start_response("200 OK", [])
    return [b""]
