# Nimbus's small stand-in for the `azure-functions` package (the types an HTTP
# function uses). Found only when the package does not vendor the real one
# (Nimbus appends this directory to the end of sys.path). Interface as
# documented for azure.functions: HttpRequest, HttpResponse, Context, Out,
# FunctionApp / Blueprint with route(), AuthLevel.

import json as _json
from urllib.parse import parse_qsl as _parse_qsl

__all__ = [
    "AuthLevel", "Blueprint", "Context", "FunctionApp", "HttpMethod", "HttpRequest",
    "HttpResponse", "Out",
]  # fmt: skip


class _CIDict(dict):
    """Case-insensitive header mapping (keys stored lower-case)."""

    def __init__(self, data=None):
        dict.__init__(self)
        for k, v in dict(data or {}).items():
            self[k] = v

    def __setitem__(self, k, v):
        dict.__setitem__(self, k.lower(), v)

    def __getitem__(self, k):
        return dict.__getitem__(self, k.lower())

    def __delitem__(self, k):
        dict.__delitem__(self, k.lower())

    def __contains__(self, k):
        return dict.__contains__(self, k.lower())

    def get(self, k, default=None):
        return dict.get(self, k.lower(), default)

    def setdefault(self, k, default=None):
        return dict.setdefault(self, k.lower(), default)

    def pop(self, k, *default):
        return dict.pop(self, k.lower(), *default)

    def update(self, *args, **kwargs):
        for k, v in dict(*args, **kwargs).items():
            self[k] = v


class HttpRequest(object):
    """An HTTP request: method (upper-case), url, headers (case-insensitive),
    params (query), route_params, get_body(), get_json(), form."""

    def __init__(self, method, url, *, headers=None, params=None, route_params=None, body):
        self._method = method.upper()
        self._url = url
        self._headers = _CIDict(headers)
        self._params = dict(params or {})
        self._route_params = dict(route_params or {})
        self._body = body if isinstance(body, bytes) else (body or "").encode("utf-8")
        self._form = None

    method = property(lambda self: self._method)
    url = property(lambda self: self._url)
    headers = property(lambda self: self._headers)
    params = property(lambda self: self._params)
    route_params = property(lambda self: self._route_params)

    def get_body(self):
        return self._body

    def get_json(self):
        """The body as JSON; ValueError when it is not JSON."""
        return _json.loads(self._body)

    @property
    def form(self):
        if self._form is None:
            ctype = self._headers.get("content-type", "")
            if ctype.startswith("application/x-www-form-urlencoded"):
                self._form = dict(_parse_qsl(self._body.decode("utf-8"), keep_blank_values=True))
            else:
                self._form = {}
        return self._form

    @property
    def files(self):
        return {}


class HttpResponse(object):
    """An HTTP response: body (str or bytes), status_code (200), headers,
    mimetype ('text/plain'), charset ('utf-8')."""

    def __init__(self, body=None, *, status_code=None, headers=None, mimetype=None,
                 charset=None):
        if status_code is None:
            status_code = 200
        self._status_code = int(status_code)
        self._headers = _CIDict(headers)
        self._mimetype = mimetype or "text/plain"
        self._charset = charset or "utf-8"
        if body is None:
            self._body = b""
        elif isinstance(body, (bytes, bytearray)):
            self._body = bytes(body)
        elif isinstance(body, str):
            self._body = body.encode(self._charset)
        else:
            raise TypeError("response is expected to be either of str, bytes, or bytearray, got "
                            + type(body).__name__)

    status_code = property(lambda self: self._status_code)
    headers = property(lambda self: self._headers)
    mimetype = property(lambda self: self._mimetype)
    charset = property(lambda self: self._charset)

    def get_body(self):
        return self._body


class Out(object):
    """An output binding parameter (`func.Out[T]`): set() / get()."""

    def __init__(self):
        self._value = None

    def __class_getitem__(cls, item):
        return cls

    def set(self, val):
        self._value = val

    def get(self):
        return self._value


class Context(object):
    def __init__(self, invocation_id, function_name, function_directory, trace_context=None,
                 retry_context=None):
        self.invocation_id = invocation_id
        self.function_name = function_name
        self.function_directory = function_directory
        self.trace_context = trace_context
        self.retry_context = retry_context


class AuthLevel(object):
    ANONYMOUS = "anonymous"
    FUNCTION = "function"
    ADMIN = "admin"


class HttpMethod(object):
    GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS = (
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
    )  # fmt: skip


class _Trigger(object):
    def __init__(self, name, route, methods, auth_level):
        self.name = name
        self.route = route
        self.methods = methods
        self.auth_level = auth_level


class _Function(object):
    def __init__(self, fn, name, trigger):
        self._fn = fn
        self._name = name
        self._trigger = trigger

    def get_function_name(self):
        return self._name

    def get_user_function(self):
        return self._fn

    def get_trigger(self):
        return self._trigger


class Blueprint(object):
    def __init__(self, http_auth_level=AuthLevel.FUNCTION):
        self._auth = http_auth_level
        self._functions = []
        self._names = {}

    def function_name(self, name):
        def deco(fn):
            self._names[id(getattr(fn, "__wrapped__", fn))] = name
            for f in self._functions:
                if f._fn is fn:
                    f._name = name
            fn.__nimbus_function_name__ = name
            return fn

        return deco

    def route(self, route=None, trigger_arg_name="req", binding_arg_name="$return",
              methods=None, auth_level=None, **_kwargs):
        def deco(fn):
            name = getattr(fn, "__nimbus_function_name__", None) or fn.__name__
            trigger = _Trigger(trigger_arg_name, route if route is not None else name,
                               methods, auth_level or self._auth)
            self._functions.append(_Function(fn, name, trigger))
            return fn

        return deco

    def get_functions(self):
        return list(self._functions)


class FunctionApp(Blueprint):
    def register_blueprint(self, bp):
        self._functions.extend(bp.get_functions())

    register_functions = register_blueprint
