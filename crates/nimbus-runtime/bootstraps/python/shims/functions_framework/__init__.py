# Nimbus's small stand-in for Google's `functions-framework` package: the
# registration decorators user code calls. Found only when the package does
# not vendor the real one (this directory is at the end of sys.path). Nimbus
# itself plays the framework's server part (see nimbus_styles/google.py).

__all__ = ["cloud_event", "errorhandler", "http", "typed"]

# target name -> signature type ("http" | "cloudevent")
REGISTRY = {}


def http(func):
    """Registers an HTTP function: `def f(request)` with a Flask-like request."""
    REGISTRY[func.__name__] = "http"
    return func


def cloud_event(func):
    """Registers a CloudEvent function: `def f(cloud_event)`."""
    REGISTRY[func.__name__] = "cloudevent"
    return func


def typed(*args, **kwargs):
    raise NotImplementedError("functions_framework.typed is not supported by Nimbus")


def errorhandler(*args, **kwargs):
    def deco(fn):
        return fn

    return deco
