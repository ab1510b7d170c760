"""Python side of py_SUITE."""


def echo(*args):
    return args[0] if len(args) == 1 else args


def types(value):
    return type(value).__name__


def key_types(d):
    return sorted(type(k).__name__ for k in d)


def gen(n):
    for i in range(n):
        yield i


def boom(msg):
    raise ValueError(msg)


class Counter:
    def __init__(self):
        self.n = 0

    def incr(self, by=1):
        self.n += by
        return self.n
