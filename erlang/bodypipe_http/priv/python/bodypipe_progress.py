"""Upload progress as an app sees it: ``environ["bodypipe.progress"]`` (WSGI) and
``scope["extensions"]["bodypipe.progress"]`` (ASGI) are a :class:`Progress` over the request's
body. The operator's view of the same figures (every request in flight) is
``bodypipe_http:requests/1`` and the server's admin endpoint (``bodypipe_http_admin``)."""

__all__ = ["Progress"]


class Progress:
    """Bytes of one request body received so far and expected in all.

    ``received`` counts what the server has put into the body's buffer (read by the app or
    not); ``expected`` is the Content-Length, or ``None`` for a chunked body whose end is not
    known yet; ``done`` is true once the whole body has arrived.
    """

    __slots__ = ("_buf", "_expected")

    def __init__(self, buf, expected=None):
        self._buf = buf
        self._expected = expected if expected is not None else buf.content_length

    @property
    def received(self):
        # The writer's count: the app's own seeks (a virtual seek(0, 2) of a body still
        # arriving moves tell() to the declared end) do not change what has arrived.
        return self._buf._written()

    @property
    def expected(self):
        return self._expected

    @property
    def done(self):
        buf = self._buf
        return buf._ended() and (self._expected is None or self.received >= self._expected)

    def fraction(self):
        """``received / expected`` (between 0 and 1), or ``None`` when the length is unknown."""
        if not self._expected:
            return None if self._expected is None else 1.0
        return min(1.0, self.received / self._expected)

    def __repr__(self):
        return f"<bodypipe.Progress {self.received} of {self._expected} bytes>"
