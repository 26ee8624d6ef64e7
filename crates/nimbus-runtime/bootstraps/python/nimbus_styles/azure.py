# Azure Functions Python adapter: v1 (`<Function>/function.json` + `main(req)`)
# and v2 (`function_app.py` with `app = func.FunctionApp()` and `@app.route`).
# The handler names the function: its folder (v1) or its function name (v2).

import importlib.util
import inspect
import json
import os
import sys

from nimbus_styles import HandlerNotFound, call_maybe_async, crash, http_in, http_out


def _import_file(name, path, package_dir=None):
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[package_dir] if package_dir else None
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _load_v1(task_root, handler):
    folder = os.path.join(task_root, handler)
    with open(os.path.join(folder, "function.json"), "rb") as f:
        meta = json.loads(f.read())
    script = meta.get("scriptFile") or "__init__.py"
    entry = meta.get("entryPoint") or "main"
    path = os.path.normpath(os.path.join(folder, script))
    if not os.path.isfile(path):
        raise ImportError("scriptFile %s of function %s not found" % (script, handler))
    if os.path.basename(path) == "__init__.py":
        module = _import_file(handler if handler.isidentifier() else "azure_fn_" + str(abs(hash(handler))),
                              path, os.path.dirname(path))
    else:
        name = os.path.splitext(os.path.basename(path))[0]
        module = _import_file(name, path)
    fn = getattr(module, entry, None)
    if fn is None:
        raise HandlerNotFound("function %s: entryPoint '%s' missing in %s" % (handler, entry, script))
    trigger, outputs = "req", []
    for b in meta.get("bindings") or []:
        if b.get("type") == "httpTrigger" and b.get("direction", "in") == "in":
            trigger = b.get("name") or trigger
        elif b.get("direction") == "out" and b.get("name") != "$return":
            outputs.append(b.get("name"))
    return fn, trigger, outputs, folder


def _load_v2(task_root, handler):
    module = _import_file("function_app", os.path.join(task_root, "function_app.py"))
    names = []
    for value in list(vars(module).values()):
        get_functions = getattr(value, "get_functions", None)
        if get_functions is None or isinstance(value, type):
            continue
        try:
            functions = get_functions()
        except Exception:
            continue
        for f in functions:
            name = f.get_function_name()
            names.append(name)
            if name == handler:
                trigger = f.get_trigger()
                arg = getattr(trigger, "name", None) or "req"
                return f.get_user_function(), arg, [], task_root
    raise HandlerNotFound(
        "function %r is not registered in function_app.py (registered: %s)"
        % (handler, ", ".join(names) or "none")
    )


def load(task_root, handler):
    # The Functions worker shows logging.info records; so does Nimbus for Azure
    # code (unless AWS_LAMBDA_LOG_LEVEL chooses a level).
    if not os.environ.get("AWS_LAMBDA_LOG_LEVEL"):
        import logging

        logging.getLogger().setLevel(logging.INFO)
    if os.path.isfile(os.path.join(task_root, handler, "function.json")):
        fn, trigger, outputs, directory = _load_v1(task_root, handler)
    elif os.path.isfile(os.path.join(task_root, "function_app.py")):
        fn, trigger, outputs, directory = _load_v2(task_root, handler)
    else:
        raise HandlerNotFound("no %s/function.json and no function_app.py" % handler)
    import azure.functions as func

    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = [trigger]

    def run(event, context):
        r = http_in(event)
        req = func.HttpRequest(
            r.method,
            r.url,
            headers=dict(r.headers),
            params=dict(r.query),
            route_params=r.path_params,
            body=r.body,
        )
        kwargs = {}
        outs = {}
        for p in params:
            if p == trigger:
                kwargs[p] = req
            elif p == "context":
                kwargs[p] = func.Context(context.aws_request_id, handler, directory)
            elif p in outputs:
                outs[p] = kwargs[p] = func.Out()
        try:
            result = call_maybe_async(fn, **kwargs)
            if result is None:
                for o in outs.values():
                    if o.get() is not None:
                        result = o.get()
                        break
            return _response(r, result)
        except Exception:
            return crash(r, 500, [], "")

    return run


def _response(r, result):
    if result is None:
        return http_out(r, 204, [], b"")
    if isinstance(result, str):
        return http_out(r, 200, [("Content-Type", "text/plain; charset=utf-8")], result)
    if isinstance(result, (dict, list)):
        return http_out(r, 200, [("Content-Type", "application/json")], json.dumps(result))
    get_body = getattr(result, "get_body", None)
    if get_body is None:
        raise TypeError("unable to convert %s to an HTTP response" % type(result).__name__)
    headers = [(k, v) for k, v in dict(result.headers).items()]
    if not any(k.lower() == "content-type" for k, _ in headers):
        mimetype = getattr(result, "mimetype", None) or "text/plain"
        charset = getattr(result, "charset", None) or "utf-8"
        if mimetype.startswith("text/") or mimetype == "application/json":
            mimetype += "; charset=" + charset
        headers.append(("Content-Type", mimetype))
    return http_out(r, result.status_code, headers, get_body())
