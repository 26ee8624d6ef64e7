# Google Cloud Functions Python adapter (what functions-framework does with
# Flask): HTTP functions `def f(request)` get a Flask-like request and may
# return str / bytes / dict / list / (body, status[, headers]) / a Response;
# CloudEvent functions `def f(cloud_event)` get the event (binary or
# structured HTTP mode) and answer 200 "OK".
#
# The handler is the target (`hello_http`, looked up in main.py) or
# `module.target`. The signature type comes from the registration decorator,
# else FUNCTION_SIGNATURE_TYPE (http by default).
# When the user's code imports Flask itself (to return flask.Response,
# jsonify, abort, ...), requests run inside a real Flask request context and
# results go through Flask's make_response, as in functions-framework.

import json
import os
import sys
from urllib.parse import parse_qsl

from nimbus_styles import HandlerNotFound, call_maybe_async, crash, http_in, http_out

_CRASH = [("X-Google-Status", "crash"), ("Content-Type", "text/plain; charset=utf-8")]


class BadRequest(Exception):
    code = 400
    description = "The browser (or proxy) sent a request that this server could not understand."


class MultiDict(dict):
    """Query / form parameters: first value by key, getlist() for all."""

    def __init__(self, pairs=()):
        dict.__init__(self)
        self._lists = {}
        for k, v in pairs:
            self._lists.setdefault(k, []).append(v)
            if not dict.__contains__(self, k):
                dict.__setitem__(self, k, v)

    def get(self, key, default=None, type=None):
        if key not in self:
            return default
        value = self[key]
        if type is not None:
            try:
                return type(value)
            except (ValueError, TypeError):
                return default
        return value

    def getlist(self, key, type=None):
        values = list(self._lists.get(key, []))
        return [type(v) for v in values] if type is not None else values

    def to_dict(self, flat=True):
        return dict(self) if flat else {k: list(v) for k, v in self._lists.items()}

    def items(self, multi=False):
        if multi:
            return [(k, v) for k, vs in self._lists.items() for v in vs]
        return dict.items(self)


class Headers(object):
    """Case-insensitive request headers (werkzeug.Headers subset)."""

    def __init__(self, pairs):
        self._pairs = list(pairs)

    def get(self, key, default=None, type=None):
        key = key.lower()
        for k, v in self._pairs:
            if k.lower() == key:
                return type(v) if type is not None else v
        return default

    def getlist(self, key):
        key = key.lower()
        return [v for k, v in self._pairs if k.lower() == key]

    get_all = getlist

    def __getitem__(self, key):
        v = self.get(key)
        if v is None:
            raise KeyError(key)
        return v

    def __contains__(self, key):
        return self.get(key) is not None

    def __iter__(self):
        return iter([(k.title(), v) for k, v in self._pairs])

    def __len__(self):
        return len(self._pairs)

    def items(self):
        return [(k.title(), v) for k, v in self._pairs]

    def keys(self):
        return [k.title() for k, _ in self._pairs]

    def to_wsgi_list(self):
        return self.items()


class Request(object):
    """The parts of flask.Request HTTP functions use."""

    def __init__(self, r):
        self._r = r
        self.method = r.method
        self.path = r.path
        self.headers = Headers(r.headers)
        self.args = MultiDict(r.query)
        self.view_args = dict(r.path_params)
        self.remote_addr = r.source_ip or None
        self._json = Ellipsis

    @property
    def data(self):
        return self._r.body

    def get_data(self, cache=True, as_text=False, parse_form_data=False):
        return self._r.body.decode("utf-8", "replace") if as_text else self._r.body

    @property
    def content_type(self):
        return self.headers.get("content-type")

    @property
    def mimetype(self):
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    @property
    def is_json(self):
        mt = self.mimetype
        return mt == "application/json" or (mt.startswith("application/") and mt.endswith("+json"))

    def get_json(self, force=False, silent=False, cache=True):
        if not (force or self.is_json):
            if silent:
                return None
            raise BadRequest("Did not attempt to load JSON data because the request "
                             "Content-Type was not 'application/json'.")
        if self._json is not Ellipsis:
            return self._json
        try:
            value = json.loads(self._r.body) if self._r.body else None
            if value is None and not self._r.body:
                raise ValueError("empty body")
        except ValueError:
            if silent:
                return None
            raise BadRequest("Failed to decode JSON object")
        if cache:
            self._json = value
        return value

    @property
    def json(self):
        return self.get_json()

    @property
    def form(self):
        if self.mimetype == "application/x-www-form-urlencoded":
            return MultiDict(parse_qsl(self._r.body.decode("utf-8", "replace"), keep_blank_values=True))
        return MultiDict()

    @property
    def values(self):
        return MultiDict(list(self.args.items(multi=True)) + list(self.form.items(multi=True)))

    @property
    def files(self):
        return MultiDict()

    @property
    def cookies(self):
        out = {}
        for part in (self.headers.get("cookie") or "").split(";"):
            k, sep, v = part.strip().partition("=")
            if sep and k not in out:
                out[k] = v
        return out

    @property
    def query_string(self):
        return self._r.query_string.encode("latin-1", "replace")

    @property
    def full_path(self):
        return self.path + "?" + self._r.query_string

    @property
    def url(self):
        return self._r.url

    @property
    def base_url(self):
        return self._r.url.split("?", 1)[0]

    @property
    def host(self):
        return self.headers.get("host") or "localhost"

    @property
    def host_url(self):
        return self.base_url[: len(self.base_url) - len(self.path)] + "/"

    @property
    def url_root(self):
        return self.host_url

    @property
    def scheme(self):
        return self.headers.get("x-forwarded-proto") or "http"

    @property
    def user_agent(self):
        return self.headers.get("user-agent")


def _status(value):
    if isinstance(value, int):
        return value
    return int(str(value).split(" ", 1)[0])


def _headers(value):
    if value is None:
        return []
    if hasattr(value, "items"):
        value = value.items()
    return [(str(k), str(v)) for k, v in value]


def _to_response(r, rv):
    """Flask's make_response rules, without Flask."""
    status, headers = None, []
    if isinstance(rv, tuple):
        if len(rv) == 3:
            rv, status, headers = rv
        elif len(rv) == 2:
            if isinstance(rv[1], (dict, list, tuple)) or hasattr(rv[1], "items"):
                rv, headers = rv
            else:
                rv, status = rv
        else:
            raise TypeError("The view function did not return a valid response tuple.")
        headers = _headers(headers)
    if rv is None:
        raise TypeError("The view function did not return a valid response. "
                        "The function either returned None or ended without a return statement.")
    if isinstance(rv, (str, bytes, bytearray)):
        base = [("Content-Type", "text/html; charset=utf-8")]
        body = rv if isinstance(rv, str) else bytes(rv)
        code = 200
    elif isinstance(rv, (dict, list)):
        base = [("Content-Type", "application/json")]
        body = json.dumps(rv) + "\n"
        code = 200
    elif hasattr(rv, "get_data") and hasattr(rv, "status_code"):
        base = _headers(rv.headers)
        body = rv.get_data()
        code = rv.status_code
    else:
        raise TypeError("The view function did not return a valid response: %s" % type(rv).__name__)
    if status is not None:
        code = _status(status)
    names = {k.lower() for k, _ in headers}
    merged = [(k, v) for k, v in base if k.lower() not in names] + headers
    return http_out(r, code, merged, body)


class CloudEvent(object):
    """A CloudEvent: attributes by item access, payload in .data (the
    cloudevents.http.CloudEvent interface)."""

    def __init__(self, attributes, data=None):
        self._attributes = dict(attributes)
        self.data = data

    def __getitem__(self, key):
        return self._attributes[key]

    def __setitem__(self, key, value):
        self._attributes[key] = value

    def __contains__(self, key):
        return key in self._attributes

    def get(self, key, default=None):
        return self._attributes.get(key, default)

    def get_attributes(self):
        return dict(self._attributes)

    def get_data(self):
        return self.data

    def __repr__(self):
        return "CloudEvent(%r, %r)" % (self._attributes, self.data)


_REQUIRED = ("id", "source", "specversion", "type")


def _cloud_event(r):
    """The CloudEvent an HTTP request carries (binary or structured mode), or
    None when it carries none."""
    from urllib.parse import unquote

    if r.version is None and isinstance(r.raw, dict) and "specversion" in r.raw:
        doc = dict(r.raw)
    else:
        ctype = ""
        attrs = {}
        for k, v in r.headers:
            if k == "content-type":
                ctype = v
            elif k.startswith("ce-"):
                attrs[k[3:]] = unquote(v)
        if ctype.lower().startswith("application/cloudevents"):
            try:
                doc = json.loads(r.body)
            except ValueError:
                return None
        else:
            if not all(a in attrs for a in _REQUIRED):
                return None
            data = r.body
            mt = ctype.split(";", 1)[0].strip().lower()
            if mt == "application/json" or mt.endswith("+json"):
                try:
                    data = json.loads(r.body) if r.body else None
                except ValueError:
                    return None
            elif mt.startswith("text/"):
                data = r.body.decode("utf-8", "replace")
            if ctype:
                attrs["datacontenttype"] = ctype
            return CloudEvent(attrs, data)
    if not isinstance(doc, dict) or not all(a in doc for a in _REQUIRED):
        return None
    data = doc.pop("data", None)
    if "data_base64" in doc:
        import base64

        data = base64.b64decode(doc.pop("data_base64"))
    return CloudEvent(doc, data)


def _import(task_root, handler):
    if "." in handler:
        modname, target = handler.rsplit(".", 1)
        modname = modname.replace("/", ".")
    else:
        modname, target = "main", handler
    source = os.environ.get("FUNCTION_SOURCE")
    if source and "." not in handler:
        modname = os.path.splitext(os.path.basename(source))[0]
    import importlib

    module = importlib.import_module(modname)
    fn = getattr(module, target, None)
    if fn is None or not callable(fn):
        raise HandlerNotFound("function target '%s' is not defined in %s" % (target, modname))
    return fn, target


def _signature(fn, target):
    ff = sys.modules.get("functions_framework")
    registry = getattr(ff, "REGISTRY", None)
    if registry is None:  # the real package
        reg = sys.modules.get("functions_framework._function_registry")
        registry = getattr(reg, "REGISTRY_MAP", None) or {}
    kind = registry.get(target) or registry.get(getattr(fn, "__name__", target))
    if kind is None:
        kind = (os.environ.get("FUNCTION_SIGNATURE_TYPE") or "http").lower()
    return "cloudevent" if kind in ("cloudevent", "cloud_event") else kind


def load(task_root, handler):
    fn, target = _import(task_root, handler)
    kind = _signature(fn, target)
    if kind == "cloudevent":
        return _cloudevent_handler(fn)
    if kind != "http":
        raise HandlerNotFound("signature type %r of '%s' is not supported (http or cloudevent)"
                              % (kind, target))
    if "flask" in sys.modules:
        return _flask_handler(fn)

    def run(event, context):
        r = http_in(event)
        if r.path in ("/favicon.ico", "/robots.txt"):
            return http_out(r, 404, [("Content-Type", "text/plain")], "Not Found")
        try:
            return _to_response(r, call_maybe_async(fn, Request(r)))
        except BadRequest as e:
            return http_out(r, 400, [("Content-Type", "text/plain; charset=utf-8")], str(e))
        except Exception:
            return crash(r, 500, _CRASH, "Internal Server Error")

    return run


def _cloudevent_handler(fn):
    def run(event, context):
        r = http_in(event)
        ce = _cloud_event(r)
        if ce is None:
            return http_out(r, 400, [("Content-Type", "text/plain; charset=utf-8")],
                            "Bad Request: the request is not a valid CloudEvent")
        try:
            call_maybe_async(fn, ce)
        except Exception:
            return crash(r, 500, [("X-Google-Status", "error")], "")
        return http_out(r, 200, [("Content-Type", "text/plain; charset=utf-8")], "OK")

    return run


def _flask_handler(fn):
    import flask

    app = flask.Flask("nimbus_function")

    def run(event, context):
        r = http_in(event)
        if r.path in ("/favicon.ico", "/robots.txt"):
            return http_out(r, 404, [("Content-Type", "text/plain")], "Not Found")
        headers = [(k, v) for k, v in r.headers if k not in ("content-length",)]
        with app.test_request_context(
            r.path, method=r.method, headers=headers, data=r.body,
            query_string=r.query_string, base_url=r.url.split(r.path, 1)[0] or None,
            environ_base={"REMOTE_ADDR": r.source_ip or "127.0.0.1"},
        ):
            try:
                resp = app.make_response(call_maybe_async(fn, flask.request))
            except Exception as e:
                code = getattr(e, "code", None)
                if isinstance(code, int) and hasattr(e, "get_response"):
                    resp = e.get_response()
                else:
                    return crash(r, 500, _CRASH, "Internal Server Error")
            return http_out(r, resp.status_code, list(resp.headers.items()), resp.get_data())

    return run
