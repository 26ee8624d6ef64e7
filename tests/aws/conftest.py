"""Fixtures for the AWS-compatible Lambda API tests.

Every test module gets its own `nimbus up` on a free port with a fresh data dir
(module-scoped `server` fixture). The server imports the admin access key from
NIMBUS_ADMIN_ACCESS_KEY_ID / NIMBUS_ADMIN_SECRET_ACCESS_KEY; tests talk to it with
boto3 exactly as they would talk to AWS, only with `endpoint_url` set.

Build the server first: `cargo build -p nimbus` (the tests use target/debug/nimbus).
"""

import os
import queue
import signal
import site
import subprocess
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest

import lambda_helpers as h
from lambda_helpers import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, NIMBUS_BIN, make_lambda_client

STARTUP_TIMEOUT_S = 30
SHUTDOWN_TIMEOUT_S = 40


class NimbusServer:
    """A running `nimbus up` process."""

    def __init__(self, data_dir, log_dir, extra_args=()):
        self.data_dir = Path(data_dir)
        # Extra `nimbus up` flags (e.g. a short --async-retry-delay).
        self.extra_args = [str(a) for a in extra_args]
        self.stderr_path = Path(log_dir) / "server.stderr.log"
        self.stdout_lines = []
        self.url = None
        # The HTTP gateway's base URL (`  Gateway: http://...` in the banner).
        self.gateway_url = None
        self.proc = None

    def start(self):
        if not NIMBUS_BIN.exists():
            pytest.fail(f"{NIMBUS_BIN} not found: run `cargo build -p nimbus` first")
        env = dict(os.environ)
        env["NIMBUS_ADMIN_ACCESS_KEY_ID"] = ADMIN_ACCESS_KEY_ID
        env["NIMBUS_ADMIN_SECRET_ACCESS_KEY"] = ADMIN_SECRET_ACCESS_KEY
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [
                    str(NIMBUS_BIN), "up", "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0",
                    # boto3 for the functions, as Lambda's Python runtime provides it.
                    "--python-path", site.getsitepackages()[0],
                    "--data-dir", str(self.data_dir), *self.extra_args,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        lines = queue.Queue()

        def drain():
            # Keeps reading for the whole life of the server so it never blocks on a full pipe.
            for line in self.proc.stdout:
                self.stdout_lines.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, name="nimbus-stdout", daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while self.url is None or self.gateway_url is None:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                line = None
                remaining = 0
            if line is None:
                self.stop()
                pytest.fail(
                    "nimbus up did not announce its API address"
                    + (" in time" if remaining <= 0 else " (it exited)")
                    + f"; stdout:\n{''.join(self.stdout_lines)}\nstderr:\n{self.stderr()}"
                )
            if line.startswith("  Gateway:"):
                self.gateway_url = line.split(":", 1)[1].strip()
            if line.startswith("  API:"):
                self.url = line.split(":", 1)[1].strip()
        return self

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nimbus")
    srv = NimbusServer(tmp / "data", tmp).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def lambda_client(server):
    """Client signed with the admin key."""
    return make_lambda_client(server.url, ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY)


Created = namedtuple("Created", "name zip config")


@pytest.fixture
def create_function(lambda_client):
    """Factory: creates a uniquely named Python function and returns Created(name, zip, config).

    Keyword arguments override or extend the CreateFunction request.
    """

    def create(name=None, zip_bytes=None, **kwargs):
        name = name or h.unique_name()
        zip_bytes = h.handler_zip() if zip_bytes is None else zip_bytes
        request = {
            "FunctionName": name,
            "Runtime": h.RUNTIME,
            "Role": h.ROLE_ARN,
            "Handler": h.HANDLER,
            "Code": {"ZipFile": zip_bytes},
        }
        request.update(kwargs)
        config = lambda_client.create_function(**request)
        return Created(name, zip_bytes, config)

    return create
