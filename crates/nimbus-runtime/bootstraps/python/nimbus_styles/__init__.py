# Nimbus handler-style adapters (Python). Loaded by bootstrap.py only when
# NIMBUS_HANDLER_STYLE is azure or google; Lambda functions never import this.
#
# Every adapter turns the user's function into a Lambda handler
# `handler(event, context) -> dict`: the event is an API Gateway proxy event
# (payload 1.0 or 2.0) built by the Nimbus gateway, the result an API Gateway
# proxy response {statusCode, headers, multiValueHeaders | cookies, body,
# isBase64Encoded}.

import base64
import json
import os
import sys
from urllib.parse import parse_qsl, urlencode


class HandlerNotFound(Exception):
    """The style's loader could not find the function the handler names."""


def add_shims():
    """Make Nimbus's `azure.functions` / `functions_framework` importable, after
    anything the package vendors or the interpreter has installed."""
    shims = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shims")
    if shims not in sys.path:
        sys.path.append(shims)


class HttpIn(object):
    """The HTTP request an API Gateway event describes."""

    __slots__ = (
        "method", "path", "query", "headers", "body", "path_params", "source_ip",
        "version", "raw",
    )  # fmt: skip

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    @property
    def query_string(self):
        return urlencode(self.query)

    @property
    def url(self):
        proto = self.header("x-forwarded-proto") or "http"
        host = self.header("host") or "localhost"
        qs = self.query_string
        return "%s://%s%s%s" % (proto, host, self.path, "?" + qs if qs else "")


def http_in(event):
    """Parses an API Gateway 1.0/2.0 event; any other event becomes a POST of
    its JSON to `/` (so `nimbus invoke` works on styled functions too)."""
    r = HttpIn()
    r.raw = event
    r.path_params = {}
    r.source_ip = ""
    if not isinstance(event, dict) or not (
        "httpMethod" in event or (event.get("version") == "2.0" and "rawPath" in event)
    ):
        r.version = None
        r.method = "POST"
        r.path = "/"
        r.query = []
        r.headers = [("content-type", "application/json")]
        r.body = json.dumps(event).encode("utf-8")
        return r
    ctx = event.get("requestContext") or {}
    headers = []
    if event.get("version") == "2.0":
        r.version = "2.0"
        http = ctx.get("http") or {}
        r.method = (http.get("method") or "GET").upper()
        r.path = event.get("rawPath") or "/"
        r.query = parse_qsl(event.get("rawQueryString") or "", keep_blank_values=True)
        for k, v in (event.get("headers") or {}).items():
            headers.append((k.lower(), v))
        cookies = event.get("cookies")
        if cookies:
            headers = [h for h in headers if h[0] != "cookie"]
            headers.append(("cookie", "; ".join(cookies)))
        r.source_ip = http.get("sourceIp") or ""
    else:
        r.version = "1.0"
        r.method = (event.get("httpMethod") or "GET").upper()
        r.path = event.get("path") or "/"
        mq = event.get("multiValueQueryStringParameters")
        if mq:
            r.query = [(k, v) for k, vs in mq.items() for v in (vs or [])]
        else:
            r.query = list((event.get("queryStringParameters") or {}).items())
        mh = event.get("multiValueHeaders")
        if mh:
            headers = [(k.lower(), v) for k, vs in mh.items() for v in (vs or [])]
        else:
            headers = [(k.lower(), v) for k, v in (event.get("headers") or {}).items()]
        r.source_ip = (ctx.get("identity") or {}).get("sourceIp") or ""
    r.headers = headers
    r.path_params = dict(event.get("pathParameters") or {})
    body = event.get("body")
    if body is None:
        r.body = b""
    elif event.get("isBase64Encoded"):
        r.body = base64.b64decode(body)
    else:
        r.body = body.encode("utf-8")
    return r


_TEXTUAL = ("text/", "application/json", "application/xml", "application/javascript")


def http_out(req, status, headers, body):
    """API Gateway proxy response for `req`'s payload format. `headers` is a
    list of (name, value); `body` str or bytes."""
    ctype = ""
    for k, v in headers:
        if k.lower() == "content-type":
            ctype = v.lower()
    if isinstance(body, str):
        text, b64 = body, False
    else:
        body = bytes(body or b"")
        text, b64 = None, False
        if not ctype or ctype.startswith(_TEXTUAL) or "+json" in ctype:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                pass
        if text is None:
            text, b64 = base64.b64encode(body).decode("ascii"), True
    out = {"statusCode": int(status), "body": text, "isBase64Encoded": b64}
    single = {}
    multi = {}
    cookies = []
    for k, v in headers:
        v = str(v)
        if k.lower() == "set-cookie":
            cookies.append(v)
        multi.setdefault(k, []).append(v)
        single[k] = v if k not in single else single[k] + ", " + v
    if req.version == "1.0":
        out["headers"] = {}
        out["multiValueHeaders"] = multi
    else:
        single.pop("set-cookie", None)
        single.pop("Set-Cookie", None)
        out["headers"] = single
        if cookies:
            out["cookies"] = cookies
    return out


def call_maybe_async(fn, *args, **kwargs):
    """Calls fn; runs the coroutine to completion if it returns one."""
    result = fn(*args, **kwargs)
    if hasattr(result, "__await__"):
        import asyncio

        global _loop
        if _loop is None:
            _loop = asyncio.new_event_loop()
        result = _loop.run_until_complete(result)
    return result


_loop = None


def crash(req, status, headers, message):
    """An unhandled exception in user code: logged (with traceback), answered
    like the cloud does (a 5xx, not a Lambda function error)."""
    import traceback

    sys.stdout.write("".join(traceback.format_exception(*sys.exc_info())))
    return http_out(req, status, headers, message)


def load(style, task_root, handler):
    add_shims()
    if style == "azure":
        from nimbus_styles import azure as m
    else:
        from nimbus_styles import google as m
    return m.load(task_root, handler)
