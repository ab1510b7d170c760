"""Python side of bodypipe_http_parser_SUITE: the reader of the decoded bodies."""


def read_all(buf):
    return buf.read()


def close(buf):
    buf.close()
