"""gunicorn's request corpus (tests/requests/{valid,invalid}) for bodypipe_http_corpus_SUITE.

    corpus.py fetch CACHE_DIR          pip-download gunicorn's sdist (the installed version) into
                                       CACHE_DIR unless there, unpack tests/requests; print the dir
    corpus.py export REQ_DIR OUT       write every case as an Erlang term file (file:consult/1)

The corpus is data from PyPI, read here, never vendored. A case's bytes are decoded by the rules
gunicorn's tests/treq.py documents for its .http files (file newlines are dropped; the literals
\\r\\n, \\n, \\t, \\0 and \\xHH are the bytes they name). Its .py file is executed with the names
it expects (`uri`, `cfg`) to get the expectation: a list of requests for a valid case, an
exception class for an invalid one, and the gunicorn settings the case changes.

For each case the export also records what gunicorn's own parser (the installed gunicorn, its
RequestParser fed the whole input) does with the case's settings and with the default ones: how
many requests it parses (bodies read to the end) before it raises, and the exception.
"""

import glob
import importlib.machinery
import os
import re
import subprocess
import sys
import tarfile
import types


def fetch(cache):
    import gunicorn

    version = gunicorn.__version__
    dest = os.path.join(cache, f"gunicorn-{version}")
    reqs = os.path.join(dest, "tests", "requests")
    if not os.path.isdir(os.path.join(reqs, "valid")):
        os.makedirs(cache, exist_ok=True)
        sdist = os.path.join(cache, f"gunicorn-{version}.tar.gz")
        if not os.path.exists(sdist):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--no-binary", ":all:", "--disable-pip-version-check",
                            f"gunicorn=={version}", "-d", cache], check=True)
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers()
                       if "/tests/requests/" in m.name or m.name.endswith("/tests/treq.py")]
            if not members:
                raise SystemExit(f"corpus: no tests/requests in {sdist}")
            tar.extractall(cache, members=members)
    print(reqs)


def decode(raw):
    data = raw.replace(b"\n", b"").replace(b"\\r\\n", b"\r\n")
    data = data.replace(b"\\0", b"\x00").replace(b"\\n", b"\n").replace(b"\\t", b"\t")
    data = re.sub(rb"\\x([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), data)
    if b"\\" in data:
        raise ValueError("a backslash escape the corpus rules do not define")
    return data


def uri(raw):
    # The fields gunicorn's expectation files compare; only "raw" is used by the suite.
    return {"raw": raw}


def load_expectation(path):
    from gunicorn.config import Config

    mod = types.ModuleType("corpus_case")
    mod.uri = uri
    mod.cfg = Config()
    importlib.machinery.SourceFileLoader("corpus_case", path).exec_module(mod)
    return vars(mod)


def changed_settings(cfg):
    from gunicorn.config import Config

    default = Config()
    out = {}
    for name, setting in cfg.settings.items():
        if setting.get() != default.settings[name].get():
            out[name] = setting.get()
    return out


def gunicorn_parse(data, cfg):
    """(requests parsed, exception name or None) with gunicorn's own parser."""
    from gunicorn.http.parser import RequestParser

    parsed = 0
    try:
        for req in RequestParser(cfg, iter([data]), None):
            while req.body.read(65536):
                pass
            parsed += 1
    except Exception as exc:  # the parser's verdict
        return parsed, type(exc).__name__
    return parsed, None


def term(value):
    """An Erlang term, in the text file:consult/1 reads."""
    if value is None:
        return "none"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        value = value.encode("latin-1", "backslashreplace")
    if isinstance(value, bytes):
        return "<<" + ",".join(str(b) for b in value) + ">>"
    if isinstance(value, (list, tuple)):
        inner = ",".join(term(v) for v in value)
        return "{" + inner + "}" if isinstance(value, tuple) else "[" + inner + "]"
    if isinstance(value, dict):
        return "#{" + ",".join(f"{k} => {term(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return repr(value)
    return term(repr(value))


def export(reqdir, out):
    from gunicorn.config import Config

    lines = []
    for kind in ("valid", "invalid"):
        for http in sorted(glob.glob(os.path.join(reqdir, kind, "*.http"))):
            name = f"{kind}/{os.path.basename(http)[:-5]}"
            with open(http, "rb") as f:
                data = decode(f.read())
            env = load_expectation(http[:-5] + ".py")
            cfg = env["cfg"]
            expect = env["request"]
            if kind == "valid":
                reqs = expect if isinstance(expect, list) else [expect]
                expect_t = [{"method": r["method"], "uri": r["uri"]["raw"],
                             "version": tuple(r["version"]),
                             "headers": [tuple(h) for h in r["headers"]],
                             "body": r["body"]} for r in reqs]
            else:
                expect_t = expect.__name__
            settings = {k: (v if isinstance(v, (int, bool, str)) else repr(v))
                        for k, v in changed_settings(cfg).items()}
            case = {"name": name, "kind": kind, "data": data, "expect": expect_t,
                    "settings": [(k, v) for k, v in sorted(settings.items())],
                    "gunicorn_cfg": gunicorn_parse(data, cfg),
                    "gunicorn_default": gunicorn_parse(data, Config())}
            lines.append(term(case) + ".\n")
    with open(out, "w") as f:
        f.writelines(lines)
    print(len(lines))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "fetch":
        fetch(sys.argv[2])
    elif cmd == "export":
        export(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown command {cmd}")
