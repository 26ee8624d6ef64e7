# Nimbus Python bootstrap: the AWS Lambda Runtime API client that runs inside
# every `python3` function instance.
#
# Started by Nimbus as `python3 -s $LAMBDA_RUNTIME_DIR/bootstrap.py` with
# cwd = LAMBDA_TASK_ROOT. It imports the handler named by _HANDLER (or argv[1]),
# then loops: GET /next -> handler(event, context) -> POST /response | /error.
# Behaviour (error types and messages, error documents, stack traces, log
# formats, the context object) follows awslambdaric, the official AWS Python
# runtime interface client.
#
# Speed notes (cold start and the warm path are both first-class goals):
# * File layout: CPython never caches byte code for the script it runs, and
#   parsing + compiling this file costs 5-8 ms, as much as starting the
#   interpreter. So the implementation is the `_IMPL` string below (ordinary
#   Python source, line numbers preserved), and the small loader at the top
#   runs it from a code cache: `__pycache__/bootstrap.<tag>.nimbus-code` next
#   to this file (or under PYTHONPYCACHEPREFIX), keyed like a .pyc by the
#   interpreter's magic number and this file's path, mtime and size. A miss
#   compiles and tries to write the cache (atomically; never when
#   PYTHONDONTWRITEBYTECODE is set). When the runtime directory is read-only
#   to functions, build the cache at install time with
#   `python3 bootstrap.py --compile [PATH]`: PATH is where instances will see
#   this file (`/var/runtime/bootstrap.py` in Nimbus's sandbox); each path
#   has a cache of its own (the name holds a hash of the path), so the
#   sandboxed and the unsandboxed path can both be warm.
# * Startup imports only built-in / C modules (`_socket`, `_json`, `time`,
#   `marshal`) plus `os` and `sys`, which the interpreter has already loaded.
#   `socket`, `json`, `re`, `enum`, `logging`, `traceback`, `decimal` and
#   `importlib` are never imported on the success path.
# * `logging` is configured lazily: a meta-path finder waits for the first
#   `import logging` (by the function or a library) and installs the Lambda
#   handler on the root logger right after that module has executed, before
#   the importer sees it.
# * One persistent keep-alive HTTP/1.1 connection (TCP_NODELAY) with a small
#   hand-written client; events are decoded with the C JSON scanner and
#   results encoded with the C JSON encoder.
# stdlib only; CPython 3.8+ (Nimbus runs 3.11).

import os
import sys


def _nimbus_code(force_compile=False, as_path=None):
    """Code object of _IMPL: from the cache when it is valid, else compiled
    (and cached if possible). Returns (code, cache path or None if the cache
    could not be written). `as_path`: the path instances will run this file
    under (the cache key and the code's file name), if not this one."""
    import marshal

    real = os.path.abspath(__file__)
    path = as_path or real
    directory, name = os.path.split(real)
    digest = 2166136261  # FNV-1a of the path: hashlib would cost an import
    for b in path.encode("utf-8", "surrogateescape"):
        digest = ((digest ^ b) * 16777619) & 0xFFFFFFFF
    name = "%s.%s.%08x.nimbus-code" % (
        name.rpartition(".")[0],
        sys.implementation.cache_tag,
        digest,
    )
    prefix = getattr(sys, "pycache_prefix", None)
    if prefix:
        cache_dir = os.path.join(prefix, os.path.splitdrive(directory)[1].lstrip(os.sep))
    else:
        cache_dir = os.path.join(directory, "__pycache__")
    cache = os.path.join(cache_dir, name)
    try:
        st = os.stat(real)
        key = b"nimbus-bootstrap-code %s %d %d %s\n" % (
            sys.modules["_frozen_importlib_external"].MAGIC_NUMBER.hex().encode(),
            st.st_mtime_ns,
            st.st_size,
            path.encode("utf-8", "surrogateescape"),
        )
    except Exception:
        key = None
    if key is not None and not force_compile:
        try:
            with open(cache, "rb") as f:
                data = f.read()
            if data[: len(key)] == key:
                return marshal.loads(memoryview(data)[len(key) :]), cache
        except Exception:
            pass

    # Miss: compile _IMPL with its lines numbered as in this file.
    with open(real, "rb") as f:
        text = f.read()
    offset = text.count(b"\n", 0, text.index(b"\n_IMPL = r\'\'\'\n") + 1)
    code = compile("\n" * offset + _IMPL, path, "exec", dont_inherit=True)
    if key is None or (sys.dont_write_bytecode and not force_compile):
        return code, None
    tmp = "%s.%d.tmp" % (cache, os.getpid())
    try:
        os.makedirs(cache_dir, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(key + marshal.dumps(code))
        os.replace(tmp, cache)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return code, None
    return code, cache


_IMPL = r'''
import os
import sys
from time import time as _now, gmtime as _gmtime, strftime as _strftime

import _json
import _socket

_environ = os.environ


# Standard-library modules most handlers import (json alone pulls in re): a
# spare imports them while it waits, as SOCK's zygotes pre-import popular
# packages, so a cold start does not pay for them. A function that ships a
# module of the same name gets its own (see _unshadow).
_PRELOAD = ("json", "re", "base64", "datetime", "hashlib", "uuid", "typing", "urllib.parse")


def _unshadow(task_root):
    """Forgets preloaded modules the function's own code replaces, so that its
    `import uuid` finds its uuid.py as in a freshly started instance."""
    for name in _PRELOAD:
        top = name.partition(".")[0]
        if os.path.exists(os.path.join(task_root, top + ".py")) or os.path.isdir(
            os.path.join(task_root, top)
        ):
            for loaded in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
                del sys.modules[loaded]


def _await_assignment():
    """A spare instance (Nimbus started it before any function needed it) waits
    here, interpreter and runtime loaded, for its function: the task root and
    the environment it would have been started with. Then it goes on exactly as
    a freshly started instance."""
    for name in _PRELOAD:
        try:
            __import__(name)
        except Exception:
            pass
    host, _, port = _environ["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
    if _API_SOCKET:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    else:
        s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        s.connect(_API_SOCKET or (host, int(port)))
        s.sendall(
            b"GET /2018-06-01/runtime/nimbus/assignment HTTP/1.1\r\n"
            b"Host: nimbus\r\nConnection: close\r\n\r\n"
        )
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        os._exit(1)
    finally:
        s.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        os._exit(0)  # never assigned: the server stopped it
    fields = body.decode("utf-8", "surrogateescape").split("\0")
    os.chdir(fields[0])
    _unshadow(fields[0])
    _environ.clear()
    for entry in fields[1:]:
        name, _, value = entry.partition("=")
        _environ[name] = value
    # What the interpreter would have done with PYTHONPATH at startup.
    extra = [p for p in _environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[1:1] = extra


# Nimbus serves the same Runtime API on a Unix socket private to this instance,
# cheaper per round trip than loopback TCP. Not part of the function's environment.
_API_SOCKET = _environ.pop("NIMBUS_RUNTIME_API_SOCKET", None)

if _environ.get("NIMBUS_SPARE") == "1":
    _await_assignment()
    _environ.pop("NIMBUS_RUNTIME_API_SOCKET", None)

# --------------------------------------------------------------------------
# Settings read once at startup

_RUNTIME_API = _environ.get("AWS_LAMBDA_RUNTIME_API") or "127.0.0.1:9001"
_FUNCTION_NAME = _environ.get("AWS_LAMBDA_FUNCTION_NAME")
_FUNCTION_VERSION = _environ.get("AWS_LAMBDA_FUNCTION_VERSION")
_MEMORY_SIZE = _environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
_LOG_GROUP = _environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
_LOG_STREAM = _environ.get("AWS_LAMBDA_LOG_STREAM_NAME")

# awslambdaric stops escaping non-ASCII characters from python3.12 on.
_ENSURE_ASCII = _environ.get("AWS_EXECUTION_ENV") not in (
    "AWS_Lambda_python3.12",
    "AWS_Lambda_python3.13",
    "AWS_Lambda_python3.14",
    "AWS_Lambda_python3.15",
)
_LOG_JSON = (_environ.get("AWS_LAMBDA_LOG_FORMAT") or "").upper() == "JSON"
_ll = _environ.get("AWS_LAMBDA_LOG_LEVEL")
_LOG_LEVEL = {None: "", "TRACE": "DEBUG"}.get(_ll, _ll).upper()
del _ll

_ERR_MARSHAL = "Runtime.MarshalError"
_ERR_UNMARSHAL = "Runtime.UnmarshalError"
_ERR_SYNTAX = "Runtime.UserCodeSyntaxError"
_ERR_HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
_ERR_IMPORT = "Runtime.ImportModuleError"
_ERR_BUILTIN_CONFLICT = "Runtime.BuiltInModuleConflict"
_ERR_MALFORMED_HANDLER = "Runtime.MalformedHandlerName"
_ERR_CONTEXT_UNMARSHAL = "Runtime.LambdaContextUnmarshalError"

_LAMBDA_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the "
    "function code. However, in rare cases, a Lambda runtime update can cause "
    "unexpected function behavior. For functions using managed runtimes, runtime "
    "updates can be triggered by a function change, or can be applied automatically. "
    "To determine if the runtime has been updated, check the runtime version in the "
    "INIT_START log entry. If this error correlates with a change in the runtime "
    "version, you may be able to mitigate this error by temporarily rolling back to "
    "the previous runtime version. For more information, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html\r"
)

# Request id / tenant id of the invocation in progress (read by the log filter).
_request_id = None
_tenant_id = None


class _Fault(Exception):
    """A runtime-detected failure with a fixed Lambda error type."""

    def __init__(self, error_type, msg, trace=None):
        Exception.__init__(self, msg)
        self.error_type = error_type
        self.msg = msg
        self.trace = trace


class _RuntimeApiError(Exception):
    """The Runtime API connection failed; the runtime cannot continue."""


# --------------------------------------------------------------------------
# JSON: C scanner / C encoder, with slow fallbacks that only load `json`
# (and its `re` dependency) when the fast path cannot handle the input.

_NaN = float("nan")
_Inf = float("inf")


class _ScannerContext(object):
    # The attributes the C scanner reads, with json.JSONDecoder's defaults.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": -_Inf, "Infinity": _Inf, "NaN": _NaN}.__getitem__
    memo = {}


_scan_once = _json.make_scanner(_ScannerContext)
_JSON_WS = " \t\n\r"


def _loads(data):
    """json.loads(data) for bytes or str, without importing `json` unless the
    input is not plain UTF-8 JSON (BOM, UTF-16/32) or is invalid."""
    try:
        s = data if data.__class__ is str else data.decode("utf-8")
        i = 0
        if s and s[0] in _JSON_WS:
            i = len(s) - len(s.lstrip(_JSON_WS))
        obj, end = _scan_once(s, i)
        if end == len(s) or not s[end:].strip(_JSON_WS):
            return obj
    except Exception:
        pass
    import json  # exact json.loads semantics, including its error messages

    return json.loads(data)


class _NeedSlowEncoder(Exception):
    pass


def _fast_default(o):
    if isinstance(o, bytes):  # simplejson decodes nested bytes as UTF-8 text
        return o.decode("utf-8")
    dec = sys.modules.get("decimal")
    if dec is not None and isinstance(o, dec.Decimal):
        raise _NeedSlowEncoder
    raise TypeError("Object of type %s is not JSON serializable" % o.__class__.__name__)


_str_encoder = _json.encode_basestring_ascii if _ENSURE_ASCII else _json.encode_basestring
_enc_markers = {}
_c_encode = _json.make_encoder(
    _enc_markers, _fast_default, _str_encoder, None, ": ", ", ", False, False, True
)


class _RawNumber(float):
    """Carries the exact text of a Decimal through the pure-Python encoder."""

    __slots__ = ("text",)


def _slow_default(o):
    if isinstance(o, bytes):
        return o.decode("utf-8")
    dec = sys.modules.get("decimal")
    if dec is not None and isinstance(o, dec.Decimal):
        # Like awslambdaric's simplejson encoder: NaN -> NaN, otherwise str(d)
        # verbatim as a JSON number.
        if o.is_nan():
            return _NaN
        r = _RawNumber()
        r.text = str(o)
        return r
    raise TypeError("Object of type %s is not JSON serializable" % o.__class__.__name__)


def _slow_floatstr(o, _repr=float.__repr__):
    if o.__class__ is _RawNumber:
        return o.text
    if o != o:
        return "NaN"
    if o == _Inf:
        return "Infinity"
    if o == -_Inf:
        return "-Infinity"
    return _repr(o)


def _dumps(o):
    """simplejson-compatible encoding (Decimal as a number, NaN allowed,
    nested bytes as UTF-8 text) of o; raises on unserialisable input."""
    try:
        return "".join(_c_encode(o, 0))
    except _NeedSlowEncoder:
        _enc_markers.clear()
    except BaseException:
        _enc_markers.clear()
        raise
    from json.encoder import _make_iterencode

    it = _make_iterencode(
        {}, _slow_default, _str_encoder, None, _slow_floatstr, ": ", ", ", False, False, True
    )
    return "".join(it(o, 0))


# --------------------------------------------------------------------------
# Minimal HTTP/1.1 client: one persistent connection to the Runtime API.

_NODELAY = getattr(_socket, "TCP_NODELAY", None)
_RECV_SIZE = 65536


class _Closed(Exception):
    """The server closed the connection before sending any response byte."""


def _header_in(head, key):
    """Value (bytes) of the header whose CRLF-prefixed, lower-case name plus
    colon is `key`, searched in the lower-cased head; None when absent."""
    j = head.find(key)
    if j < 0:
        return None
    j += len(key)
    e = head.find(b"\r\n", j)
    return (head[j:e] if e >= 0 else head[j:]).strip()


def _parse_headers(head):
    """All headers of a raw head as {lower-case name: str value}."""
    lines = head.decode("latin-1").split("\r\n")
    del lines[0]
    return {k.lower(): v.strip() for k, _, v in [line.partition(":") for line in lines]}


class _Http(object):
    __slots__ = ("host", "port", "sock", "buf")

    def __init__(self, api):
        host, _, port = api.rpartition(":")
        if not host:  # no port given
            host, port = api, "80"
        if host[:1] == "[" and host[-1:] == "]":
            host = host[1:-1]
        self.host = host
        self.port = int(port)
        self.sock = None
        self.buf = b""

    def connect(self):
        if _API_SOCKET:
            s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                s.connect(_API_SOCKET)
            except OSError:
                s.close()
                raise
            self.sock = s
            self.buf = b""
            return
        host, port = self.host, self.port
        try:
            _socket.inet_pton(_socket.AF_INET, host)
            targets = [(_socket.AF_INET, (host, port))]
        except (OSError, ValueError):
            targets = [
                (ai[0], ai[4])
                for ai in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)
            ]
        err = None
        for family, addr in targets:
            s = _socket.socket(family, _socket.SOCK_STREAM)
            try:
                if _NODELAY is not None:
                    s.setsockopt(_socket.IPPROTO_TCP, _NODELAY, 1)
                s.connect(addr)
            except OSError as e:
                s.close()
                err = e
                continue
            self.sock = s
            self.buf = b""
            return
        raise err if err is not None else OSError("cannot resolve %r" % host)

    def close(self):
        s = self.sock
        self.sock = None
        self.buf = b""
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def request(self, head, body=None):
        """Send one request (head must end with CRLFCRLF and carry
        Content-Length when there is a body). Returns (status, head, body)
        where head is the raw status line and header block. A connection
        that turns out to be dead before any response byte arrives is
        replaced once."""
        retried = False
        while True:
            try:
                if self.sock is None:
                    self.connect()
                sock = self.sock
                if body is None:
                    sock.sendall(head)
                elif len(body) <= _RECV_SIZE:
                    sock.sendall(head + body)
                else:
                    sock.sendall(head)
                    sock.sendall(body)
                return self._read_response()
            except (_Closed, OSError) as e:
                self.close()
                if retried:
                    raise _RuntimeApiError(str(e) or e.__class__.__name__)
                retried = True
            except _RuntimeApiError:
                self.close()
                raise

    def _read_response(self):
        sock = self.sock
        buf = self.buf
        while True:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                try:
                    data = sock.recv(_RECV_SIZE)
                except OSError as e:
                    if buf:
                        raise _RuntimeApiError("connection failed mid-response: %s" % e)
                    raise
                if not data:
                    if buf:
                        raise _RuntimeApiError("connection closed mid-response")
                    raise _Closed("connection closed by the Runtime API")
                buf += data
                continue
            head = buf[:i]
            buf = buf[i + 4 :]
            try:
                if head[:5] != b"HTTP/":
                    raise ValueError
                status = int(head[9:12])
            except ValueError:
                raise _RuntimeApiError("bad status line %r" % head[:100])
            if status < 200 and status != 101:  # interim response: no body
                continue
            break
        try:
            return self._read_body(status, head, buf)
        except OSError as e:  # never retried: part of the response has arrived
            raise _RuntimeApiError("connection failed mid-response: %s" % e)

    def _read_body(self, status, head, buf):
        # Framing headers only; callers that need more use _parse_headers.
        sock = self.sock
        lower = head.lower()
        keep = True
        te = _header_in(lower, b"\r\ntransfer-encoding:")
        if te is not None and b"chunked" in te:
            body, buf = self._read_chunked(buf)
        else:
            cl = _header_in(lower, b"\r\ncontent-length:")
            if cl is not None:
                try:
                    n = int(cl)
                except ValueError:
                    raise _RuntimeApiError("bad Content-Length %r" % cl)
                have = len(buf)
                if have == n:
                    body, buf = buf, b""
                elif have > n:
                    body, buf = buf[:n], buf[n:]
                else:
                    body, buf = self._read_exact(buf, n), b""
            elif status == 204 or status == 304:
                body = b""
            else:  # delimited by the end of the connection
                parts = [buf]
                while True:
                    data = sock.recv(_RECV_SIZE)
                    if not data:
                        break
                    parts.append(data)
                body, buf = b"".join(parts), b""
                keep = False
        conn = _header_in(lower, b"\r\nconnection:")
        if conn is not None and b"close" in conn:
            keep = False
        elif head[:8] == b"HTTP/1.0" and (conn is None or b"keep-alive" not in conn):
            keep = False
        if keep:
            self.buf = buf
        else:
            self.close()
        return status, head, body

    def _read_exact(self, buf, n):
        ba = bytearray(n)
        mv = memoryview(ba)
        have = len(buf)
        mv[:have] = buf
        recv_into = self.sock.recv_into
        while have < n:
            k = recv_into(mv[have:], n - have)
            if not k:
                raise _RuntimeApiError("connection closed mid-body")
            have += k
        return bytes(ba)

    def _more(self, buf):
        data = self.sock.recv(_RECV_SIZE)
        if not data:
            raise _RuntimeApiError("connection closed mid-body")
        return buf + data

    def _read_chunked(self, buf):
        parts = []
        while True:
            i = buf.find(b"\r\n")
            while i < 0:
                buf = self._more(buf)
                i = buf.find(b"\r\n")
            try:
                size = int(buf[:i].split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _RuntimeApiError("bad chunk size line %r" % buf[:i])
            buf = buf[i + 2 :]
            if size == 0:
                while True:  # trailers, then the final empty line
                    i = buf.find(b"\r\n")
                    while i < 0:
                        buf = self._more(buf)
                        i = buf.find(b"\r\n")
                    line, buf = buf[:i], buf[i + 2 :]
                    if not line:
                        return b"".join(parts), buf
            while len(buf) < size + 2:
                buf = self._more(buf)
            parts.append(buf[:size])
            buf = buf[size + 2 :]


_http = _Http(_RUNTIME_API)
_COMMON_HEADERS = (
    "Host: %s\r\nUser-Agent: nimbus-python/%d.%d.%d\r\n"
    % ((_RUNTIME_API,) + tuple(sys.version_info[:3]))
).encode("latin-1")
_NEXT_REQUEST = (
    b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + _COMMON_HEADERS + b"\r\n"
)
_INVOCATION_PATH = b"POST /2018-06-01/runtime/invocation/"
_CT_JSON = b"application/json"
# With Nimbus's own socket, a result is posted with Nimbus-Await-Next and its
# answer is the next invocation instead of 202 (see runtime_api.rs): one
# message each way per invocation.
_AWAIT_NEXT = b"Nimbus-Await-Next: 1\r\n" if _API_SOCKET else b""
# Request heads of the success path, up to the Content-Length value.
_RESPONSE_JSON_TAIL = (
    b"/response HTTP/1.1\r\n" + _COMMON_HEADERS + _AWAIT_NEXT
    + b"Content-Type: application/json\r\nContent-Length: "
)
_RESPONSE_UNKNOWN_TAIL = (
    b"/response HTTP/1.1\r\n" + _COMMON_HEADERS + _AWAIT_NEXT
    + b"Content-Type: application/unknown\r\nContent-Length: "
)


def _header_value(s):
    return s.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


def _post(start, payload, content_type, error_type=None, extra=b""):
    head = start + b" HTTP/1.1\r\n" + _COMMON_HEADERS + extra + b"Content-Type: " + content_type + b"\r\n"
    if error_type is not None:
        head += b"Lambda-Runtime-Function-Error-Type: " + _header_value(error_type) + b"\r\n"
    return _http.request(head + b"Content-Length: %d\r\n\r\n" % len(payload), payload)


# --------------------------------------------------------------------------
# Output helpers


def _flush():
    out = sys.stdout
    err = sys.stderr
    try:
        out.flush()
    except Exception:
        pass
    try:
        err.flush()
    except Exception:
        pass
    if out is not sys.__stdout__ or err is not sys.__stderr__:  # replaced by user code
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except Exception:
                pass


def _write(stream, text):
    try:
        stream.write(text)
    except Exception:
        try:
            os.write(2, text.encode("utf-8", "replace"))
        except OSError:
            pass


def _nbsp_indent(line):
    n = len(line) - len(line.lstrip(" "))
    return "\u00a0" * n + line[n:]


def _log_error(err, stream):
    """Write an error document the way awslambdaric logs it."""
    if _LOG_JSON:
        doc = {"timestamp": _strftime("%Y-%m-%dT%H:%M:%SZ", _gmtime(_now())), "level": "ERROR"}
        doc.update(err)
        try:
            text = _dumps(doc) + "\n"
        except Exception:
            text = repr(doc) + "\n"
    else:
        desc = "[ERROR]"
        etype = err.get("errorType")
        msg = err.get("errorMessage")
        if etype:
            desc += " " + etype
        if msg:
            if etype:
                desc += ":"
            desc += " " + msg
        lines = [desc]
        trace = err.get("stackTrace")
        if trace is not None:
            lines.append("Traceback (most recent call last):")
            for element in trace:
                if element == "":
                    lines.append("")
                else:
                    for tl in element.splitlines():
                        lines.append(_nbsp_indent(tl))
        text = "\r".join(lines) + "\n"
    _write(stream, text)


def _log_warning_line(msg, stream):
    """A WARNING record as the Lambda root-logger handler would print it
    (used before/without `logging`)."""
    if _LOG_LEVEL in ("ERROR", "CRITICAL", "FATAL"):
        return
    t = _now()
    if _LOG_JSON:
        doc = {
            "timestamp": _strftime("%Y-%m-%dT%H:%M:%SZ", _gmtime(t)),
            "level": "WARNING",
            "message": msg,
            "logger": "root",
            "requestId": _request_id or "",
        }
        text = _dumps(doc) + "\n"
    else:
        text = "[WARNING]\t%s.%03dZ\t%s\t%s\n" % (
            _strftime("%Y-%m-%dT%H:%M:%S", _gmtime(t)),
            int((t - int(t)) * 1000),
            _request_id or "",
            msg,
        )
    _write(stream, text)


def _make_error(msg, error_type, trace, request_id=None):
    return {
        "errorMessage": msg if msg else "",
        "errorType": error_type if error_type else "",
        "requestId": request_id if request_id is not None else "",
        "stackTrace": trace if trace else [],
    }


def _exception_error(exc_info, request_id=None):
    """Error document for an exception raised by user code: frames of this
    file at the top of the traceback are dropped, the rest is formatted like
    traceback.format_list (as awslambdaric does)."""
    import traceback

    etype, value, tb = exc_info
    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    for i in range(len(frames)):
        if "/bootstrap.py" not in frames[i][0]:
            frames = frames[i:]
            break
    try:
        msg = str(value)
    except Exception:
        msg = "<unprintable %s object>" % etype.__name__
    return _make_error(msg, etype.__name__, traceback.format_list(frames), request_id)


# --------------------------------------------------------------------------
# Context object (members as in awslambdaric's LambdaContext)

_W3C_FIELDS = ("traceparent", "tracestate", "baggage")


class CognitoIdentity(object):
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __repr__(self):
        return "%s([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.__class__.__name__,
            self.cognito_identity_id,
            self.cognito_identity_pool_id,
        )


class Client(object):
    __slots__ = [
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    ]

    def __repr__(self):
        return (
            "%s([installation_id=%s,app_title=%s,app_version_name=%s,"
            "app_version_code=%s,app_package_name=%s])"
            % (
                self.__class__.__name__,
                self.installation_id,
                self.app_title,
                self.app_version_name,
                self.app_version_code,
                self.app_package_name,
            )
        )


class ClientContext(object):
    __slots__ = ["custom", "env", "client"]

    def __repr__(self):
        return "%s([custom=%s,env=%s,client=%s])" % (
            self.__class__.__name__,
            self.custom,
            self.env,
            self.client,
        )


def _obj_from_dict(cls, d):
    if d is None:
        return None
    obj = cls()
    for field in cls.__slots__:
        setattr(obj, field, d.get(field, None))
    return obj


class LambdaContext(object):
    def __init__(
        self,
        invoke_id,
        client_context,
        cognito_identity,
        epoch_deadline_time_in_ms,
        invoked_function_arn=None,
        tenant_id=None,
    ):
        self.aws_request_id = invoke_id
        self.log_group_name = _LOG_GROUP
        self.log_stream_name = _LOG_STREAM
        self.function_name = _FUNCTION_NAME
        self.memory_limit_in_mb = _MEMORY_SIZE
        self.function_version = _FUNCTION_VERSION
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id

        w3c = {}
        if client_context is not None:
            if isinstance(client_context, dict) and "w3c" in client_context:
                raw = client_context.pop("w3c")
                if isinstance(raw, dict):
                    for key in _W3C_FIELDS:
                        value = raw.get(key)
                        if isinstance(value, str):
                            w3c[key] = value
            cc = _obj_from_dict(ClientContext, client_context)
            cc.client = _obj_from_dict(Client, cc.client)
            self.client_context = cc
        else:
            self.client_context = None
        self._w3c_fields = w3c

        identity = CognitoIdentity()
        if cognito_identity is not None:
            identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")
        else:
            identity.cognito_identity_id = None
            identity.cognito_identity_pool_id = None
        self.identity = identity

        self._epoch_deadline_time_in_ms = epoch_deadline_time_in_ms

    def get_remaining_time_in_millis(self):
        delta = self._epoch_deadline_time_in_ms - int(_now() * 1000)
        return delta if delta > 0 else 0

    def w3c(self):
        return dict(self._w3c_fields)

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return (
            "%s([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
            "function_name=%s,memory_limit_in_mb=%s,function_version=%s,"
            "invoked_function_arn=%s,client_context=%s,identity=%s,tenant_id=%s])"
            % (
                self.__class__.__name__,
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
                self.tenant_id,
            )
        )


def _parse_json_header(value, name):
    try:
        # Header text was decoded as latin-1; JSON on the wire is UTF-8.
        return _loads(value.encode("latin-1"))
    except Exception as e:
        raise _Fault(_ERR_CONTEXT_UNMARSHAL, "Unable to parse %s JSON: %s" % (name, e))


# --------------------------------------------------------------------------
# Lazy logging setup: configure the root logger the moment `logging` is
# first imported, so the common no-logging function never pays for it.


def _setup_logging(logging):
    logging.Formatter.converter = _gmtime
    root = logging.getLogger()

    class LambdaLoggerHandler(logging.Handler):
        def __init__(self):
            logging.Handler.__init__(self)
            self.log_sink = sys.stdout

        def emit(self, record):
            msg = self.format(record)
            if msg[-1:] != "\n":
                msg += "\n"
            sys.stdout.write(msg)

    class LambdaLoggerFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _request_id or ""
            record.tenant_id = _tenant_id
            return True

    handler = LambdaLoggerHandler()
    if _LOG_JSON:
        handler.setFormatter(_make_json_formatter(logging))
    else:
        handler.setFormatter(
            logging.Formatter(
                "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
                "%Y-%m-%dT%H:%M:%S",
            )
        )
    if _LOG_LEVEL in logging._nameToLevel:
        root.setLevel(_LOG_LEVEL)
    handler.addFilter(LambdaLoggerFilter())
    root.addHandler(handler)


def _make_json_formatter(logging):
    import json
    import traceback

    reserved = {
        "name", "msg", "args", "levelname", "levelno", "pathname", "filename",
        "module", "exc_info", "exc_text", "stack_info", "lineno", "funcName",
        "created", "msecs", "relativeCreated", "thread", "threadName",
        "processName", "process", "aws_request_id", "tenant_id", "_frame_type",
    }  # fmt: skip
    encode = json.JSONEncoder(ensure_ascii=False, default=str).encode

    class JsonFormatter(logging.Formatter):
        def __init__(self):
            logging.Formatter.__init__(self, datefmt="%Y-%m-%dT%H:%M:%SZ")

        def format(self, record):
            record.levelno = min(50, max(0, record.levelno)) // 10 * 10
            record.levelname = logging.getLevelName(record.levelno)
            exc = record.exc_info
            result = {
                "timestamp": self.formatTime(record, self.datefmt),
                "level": record.levelname,
                "message": record.msg
                if isinstance(record.msg, dict) and not record.args
                else record.getMessage(),
                "logger": record.name,
                "stackTrace": traceback.format_tb(exc[2]) if exc else None,
                "errorType": exc[0].__name__ if exc else None,
                "errorMessage": str(exc[1]) if exc else None,
                "requestId": getattr(record, "aws_request_id", None),
                "location": "%s:%s:%s" % (record.pathname, record.funcName, record.lineno)
                if exc
                else None,
            }
            if getattr(record, "tenant_id", None) is not None:
                result["tenantId"] = record.tenant_id
            result.update(
                (k, v)
                for k, v in record.__dict__.items()
                if k not in reserved and k not in result
            )
            return encode({k: v for k, v in result.items() if v is not None}) + "\n"

    return JsonFormatter()


class _LoggingImportHook(object):
    """Meta-path finder that only reacts to the first `import logging`."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "logging":
            return None
        try:
            sys.meta_path.remove(cls)
        except ValueError:
            pass
        spec = None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(name, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        real_exec = getattr(loader, "exec_module", None)
        if real_exec is None:
            return spec

        def exec_module(module):
            if getattr(module, "__name__", None) != "logging":
                return real_exec(module)
            try:
                del loader.exec_module  # unhook before anything else is imported
            except AttributeError:
                pass
            real_exec(module)
            try:
                _setup_logging(module)
            except Exception as e:
                _write(sys.stderr, "[WARNING] could not configure logging: %r\n" % (e,))

        try:
            loader.exec_module = exec_module
        except (AttributeError, TypeError):
            pass
        return spec


def _install_logging_hook():
    logging = sys.modules.get("logging")
    if logging is not None:
        _setup_logging(logging)
    else:
        sys.meta_path.insert(0, _LoggingImportHook)


# --------------------------------------------------------------------------
# Handler loading (messages and error types as awslambdaric)

_gcd_import = sys.modules["_frozen_importlib"]._gcd_import


def _import_module(name):
    if name.startswith("."):
        import importlib

        return importlib.import_module(name)
    return _gcd_import(name)


def _get_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise _Fault(_ERR_MALFORMED_HANDLER, "Bad handler '%s': %s" % (handler, e))

    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise _Fault(
                _ERR_BUILTIN_CONFLICT,
                "Cannot use built-in module %s as a handler module" % modname,
            )
        m = _import_module(modname.replace("/", "."))
    except ImportError as e:
        raise _Fault(_ERR_IMPORT, "Unable to import module '%s': %s" % (modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise _Fault(_ERR_SYNTAX, "Syntax error in module '%s': %s" % (modname, e), trace)

    try:
        return getattr(m, fname)
    except AttributeError:
        raise _Fault(
            _ERR_HANDLER_NOT_FOUND, "Handler '%s' missing on module '%s'" % (fname, modname)
        )


def _get_styled_handler(style, task_root, handler_name):
    """An Azure or Google function wrapped as a Lambda handler by the adapters
    in nimbus_styles/ (next to this file; imported only for these styles)."""
    sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
    try:
        from nimbus_styles import HandlerNotFound, load
    finally:
        del sys.path[1]
    try:
        return load(style, task_root, handler_name)
    except HandlerNotFound as e:
        raise _Fault(_ERR_HANDLER_NOT_FOUND, str(e))
    except ImportError as e:
        raise _Fault(_ERR_IMPORT, "Unable to import module '%s': %s" % (handler_name, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise _Fault(_ERR_SYNTAX, "Syntax error in module '%s': %s" % (handler_name, e), trace)


def _fatal(msg):
    _flush()
    _write(sys.stderr, "[ERROR] Nimbus bootstrap: %s\n" % msg)
    _flush()
    os._exit(1)


def _init_failed(err):
    _log_warning_line(_LAMBDA_WARNING, sys.stderr)
    _log_error(err, sys.stderr)
    _flush()
    try:
        status, _, body = _post(
            b"POST /2018-06-01/runtime/init/error",
            _dumps(err).encode("utf-8", "replace"),
            _CT_JSON,
            err["errorType"],
        )
        if status != 202:
            _write(
                sys.stderr,
                "[ERROR] Nimbus bootstrap: POST /runtime/init/error answered %d: %r\n"
                % (status, body[:512]),
            )
    except Exception as e:
        _write(sys.stderr, "[ERROR] Nimbus bootstrap: cannot report init error: %s\n" % e)
    _flush()
    os._exit(1)


# --------------------------------------------------------------------------
# The invocation loop


def _is_json_type(content_type):
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def _run(handler):
    global _request_id, _tenant_id

    request = _http.request
    parse_headers = _parse_headers
    environ = _environ
    next_request = _NEXT_REQUEST
    invocation_path = _INVOCATION_PATH
    json_tail = _RESPONSE_JSON_TAIL
    unknown_tail = _RESPONSE_UNKNOWN_TAIL
    loads = _loads
    dumps = _dumps
    Context = LambdaContext
    Fault = _Fault
    flush = _flush

    await_next = _AWAIT_NEXT
    received = None  # the next invocation, when it came as the answer to a result
    while True:
        if received is None:
            try:
                status, head, body = request(next_request)
            except _RuntimeApiError as e:
                _fatal("GET /runtime/invocation/next failed: %s" % e)
        else:
            status, head, body = received
            received = None
        if status != 200:
            _fatal("GET /runtime/invocation/next answered %d: %r" % (status, body[:512]))
        get = parse_headers(head).get
        request_id = get("lambda-runtime-aws-request-id")
        if not request_id:
            _fatal("next invocation has no Lambda-Runtime-Aws-Request-Id header")
        _request_id = request_id
        tenant_id = get("lambda-runtime-aws-tenant-id")
        if tenant_id is not None:
            tenant_id = tenant_id.encode("latin-1").decode("utf-8", "replace")
        _tenant_id = tenant_id

        trace_id = get("lambda-runtime-trace-id")
        if trace_id is not None:
            environ["_X_AMZN_TRACE_ID"] = trace_id
        elif "_X_AMZN_TRACE_ID" in environ:
            del environ["_X_AMZN_TRACE_ID"]

        error = None
        try:
            client_context = get("lambda-runtime-client-context")
            client_context = (
                _parse_json_header(client_context, "Client Context") if client_context else None
            )
            cognito = get("lambda-runtime-cognito-identity")
            cognito = _parse_json_header(cognito, "Cognito Identity") if cognito else None
            try:
                deadline = int(get("lambda-runtime-deadline-ms"))
            except (TypeError, ValueError):
                deadline = 0
            context = Context(
                request_id,
                client_context,
                cognito,
                deadline,
                get("lambda-runtime-invoked-function-arn"),
                tenant_id,
            )

            content_type = get("content-type")
            if content_type is None or content_type == "application/json" or _is_json_type(
                content_type
            ):
                try:
                    event = loads(body)
                except Exception as e:
                    raise Fault(_ERR_UNMARSHAL, "Unable to unmarshal input: %s" % e)
            else:
                event = body

            result = handler(event, context)

            if isinstance(result, bytes):
                payload = result
                tail = unknown_tail
            else:
                try:
                    payload = dumps(result).encode("utf-8")
                except Exception as e:
                    raise Fault(_ERR_MARSHAL, "Unable to marshal response: %s" % e)
                tail = json_tail
        except Fault as e:
            error = _make_error(e.msg, e.error_type, e.trace, request_id)
        except Exception:
            error = _exception_error(sys.exc_info(), request_id)

        rid = request_id.encode("latin-1")
        # Drop references to this invocation's objects before blocking on the
        # next one (frees big events/results; finalizers run now, not later).
        body = event = result = context = None
        try:
            if error is None:
                flush()
                status, rhead, rbody = request(
                    invocation_path + rid + tail + b"%d\r\n\r\n" % len(payload), payload
                )
            else:
                _log_error(error, sys.stdout)
                flush()
                try:
                    doc = dumps(error)
                except Exception:
                    doc = dumps(_make_error(repr(error.get("errorMessage")),
                                            error.get("errorType"), None, request_id))
                status, rhead, rbody = _post(
                    invocation_path + rid + b"/error",
                    doc.encode("utf-8", "replace"),
                    _CT_JSON,
                    error["errorType"],
                    await_next,
                )
        except _RuntimeApiError as e:
            _fatal("posting the result of %s failed: %s" % (request_id, e))
        payload = error = None
        if status == 200 and await_next:
            received = (status, rhead, rbody)
        elif not 200 <= status < 300:
            _write(
                sys.stderr,
                "[WARNING] Nimbus bootstrap: Runtime API answered %d for %s: %r\n"
                % (status, request_id, rbody[:512]),
            )
            flush()


def _main():
    task_root = _environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    sys.path.insert(0, task_root)
    # Libraries the platform provides (boto3, as Lambda's /var/runtime does),
    # after everything of the function's own, so a vendored copy wins.
    sys.path.extend(p for p in _environ.get("NIMBUS_RUNTIME_PYTHONPATH", "").split(":") if p)
    handler_name = sys.argv[1] if len(sys.argv) > 1 else _environ.get("_HANDLER", "")

    _install_logging_hook()

    error = None
    try:
        style = _environ.get("NIMBUS_HANDLER_STYLE")
        if style == "azure" or style == "google":
            handler = _get_styled_handler(style, task_root, handler_name)
        else:
            handler = _get_handler(handler_name)
    except _Fault as e:
        error = _make_error(e.msg, e.error_type, e.trace)
    except Exception:
        error = _exception_error(sys.exc_info())
    if error is not None:
        _init_failed(error)

    _flush()  # output written during init belongs to init, not the first invoke
    _run(handler)

'''

if __name__ == "__main__" and sys.argv[1:2] == ["--compile"] and len(sys.argv) <= 3:
    _code, _cache = _nimbus_code(force_compile=True, as_path=(sys.argv[2:] or [None])[0])
    print(_cache or "cannot write the code cache")
    if _cache:  # byte code of the handler-style adapters and shims
        import compileall

        _here = os.path.dirname(os.path.abspath(__file__))
        for _d in ("nimbus_styles", "shims"):
            if os.path.isdir(os.path.join(_here, _d)):
                compileall.compile_dir(os.path.join(_here, _d), quiet=1)
    sys.exit(0 if _cache else 1)
exec(_nimbus_code()[0], globals())
del _IMPL

if __name__ == "__main__":
    _main()  # noqa: F821 (defined by _IMPL)
