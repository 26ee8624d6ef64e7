"""Fixtures for the AWS-compatible Lambda API tests.

Every test module gets its own `nimbus up` on a free port with a fresh data dir
(module-scoped `server` fixture). The server imports the admin access key from
NIMBUS_ADMIN_ACCESS_KEY_ID / NIMBUS_ADMIN_SECRET_ACCESS_KEY; tests talk to it with
boto3 exactly as they would talk to AWS, only with `endpoint_url` set.

Build the server first: `cargo build -p nimbus` (the tests use target/debug/nimbus).

Cluster mode: with NIMBUS_TEST_CLUSTER=N (N >= 2) every "server" is N nodes
on one PostgreSQL database (a database per data dir, on the server of
NIMBUS_TEST_POSTGRES), behind `nimbus-cluster-proxy`, which sends every
request to a node chosen at random. The tests run unchanged: `server.url`
and `server.gateway_url` are the proxy's, `server.proc` stands for all the
nodes, and the nodes append to one stderr log.
"""

import base64
import hashlib
import os
import queue
import signal
import shutil
import site
import socket
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

CLUSTER_NODES = int(os.environ.get("NIMBUS_TEST_CLUSTER", "0") or 0)
POSTGRES_ADMIN_URL = os.environ.get("NIMBUS_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
PROXY_BIN = NIMBUS_BIN.parent / "nimbus-cluster-proxy"
# Databases of this run are named with this prefix (dropped at the end).
CLUSTER_DB_PREFIX = f"nimbus_aws_{os.getpid()}_"


class NimbusServer:
    """A running `nimbus up` process (or, in cluster mode, a cluster of them)."""

    def __new__(cls, *args, **kwargs):
        if CLUSTER_NODES >= 2 and cls is NimbusServer:
            return NimbusCluster(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, data_dir, log_dir, extra_args=(), stderr_mode="wb"):
        self.data_dir = Path(data_dir)
        self.stderr_mode = stderr_mode
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
        with open(self.stderr_path, self.stderr_mode) as stderr:
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql):
    subprocess.run(["psql", POSTGRES_ADMIN_URL, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                   check=True, capture_output=True, text=True)


class Nodes:
    """Stands for a cluster's node processes where tests use `server.proc`."""

    def __init__(self, procs):
        self.procs = procs
        self.pid = procs[0].pid

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()

    def send_signal(self, sig):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(sig)

    def wait(self, timeout=None):
        return [p.wait(timeout=timeout) for p in self.procs][0]

    def poll(self):
        codes = [p.poll() for p in self.procs]
        return None if any(c is None for c in codes) else codes[0]


class NimbusCluster:
    """CLUSTER_NODES `nimbus up` nodes on one PostgreSQL database behind the
    random-routing proxy, with the interface of a NimbusServer. The database
    and the master key belong to the data dir, so a restart on the same data
    dir (a test of durability) finds everything again."""

    def __init__(self, data_dir, log_dir, extra_args=(), nodes=None):
        self.node_count = nodes or CLUSTER_NODES
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.extra_args = [str(a) for a in extra_args]
        self.stderr_path = self.log_dir / "server.stderr.log"
        self.nodes = []
        self.proxy = None
        self.proc = None
        self.url = None
        self.gateway_url = None
        self.stdout_lines = []

    def database_url(self):
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:16]
        name = CLUSTER_DB_PREFIX + digest
        marker = self.data_dir / "cluster-database"
        if not marker.exists():
            psql(f"CREATE DATABASE {name}")
            marker.write_text(name)
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        return f"{base}/{name}"

    def master_key_file(self):
        path = self.data_dir / "cluster-master.key"
        if not path.exists():
            path.write_text(base64.b64encode(os.urandom(32)).decode())
        return path

    def start(self):
        if not PROXY_BIN.exists():
            pytest.fail(f"{PROXY_BIN} not found: run `cargo build --workspace --all-targets` first")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        url = self.database_url()
        api_port, gateway_port = free_port(), free_port()
        cluster_args = [
            "--postgres", url, "--master-key-file", str(self.master_key_file()),
            "--public-url", f"http://127.0.0.1:{api_port}",
            "--public-gateway-url", f"http://127.0.0.1:{gateway_port}",
        ]
        self.stderr_path.write_bytes(b"")
        self.nodes = []
        for i in range(self.node_count):
            node = object.__new__(NimbusServer)
            NimbusServer.__init__(node, self.data_dir / f"node{i}", self.log_dir,
                                  [*cluster_args, *self.extra_args], stderr_mode="ab")
            self.nodes.append(node.start())
        self.proxy = subprocess.Popen(
            [str(PROXY_BIN), "--api", ",".join(n.url for n in self.nodes),
             "--gateway", ",".join(n.gateway_url for n in self.nodes),
             "--api-listen", f"127.0.0.1:{api_port}", "--gateway-listen", f"127.0.0.1:{gateway_port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(2):
            line = self.proxy.stdout.readline()
            self.stdout_lines.append(line)
            if line.startswith("  Gateway:"):
                self.gateway_url = line.split(":", 1)[1].strip()
            if line.startswith("  API:"):
                self.url = line.split(":", 1)[1].strip()
        if self.url is None or self.gateway_url is None:
            self.stop()
            pytest.fail(f"nimbus-cluster-proxy did not start: {self.stdout_lines}")
        self.proc = Nodes([n.proc for n in self.nodes])
        return self

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        for node in self.nodes:
            node.stop()
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.kill()
            self.proxy.wait()


# What two nodes do not yet do as one (the next issue, cluster mode part 2:
# coordination): these tests run in the cluster pass and are reported as
# expected failures there, each with the reason. Not strict: random routing
# makes some of them pass when every request happens to reach one node.
CLUSTER_GAPS = {
    "test_lambda_concurrency.py::test_calls_beyond_the_reservation_are_throttled":
        "reserved concurrency is enforced per node, not cluster-wide",
    "test_lambda_concurrency.py::test_reservation_covers_all_versions_of_a_function":
        "reserved concurrency is enforced per node, not cluster-wide",
    "test_lambda_provisioned.py::test_provisioned_alias_starts_warm":
        "provisioned instances are started by each node, not spread over the nodes, "
        "and the other node's may not be ready yet",
    "test_grants.py::test_revoked_grants_stop_existing_subscriptions_redrives_and_notifications":
        "/metrics counts this node's deliveries only",
    "test_grants.py::test_queued_retries_stop_when_the_grant_is_revoked":
        "/metrics counts this node's deliveries only",
    "test_grants.py::test_states_operations_on_other_machines_are_refused":
        "StopExecution reaches only executions the node itself advances",
    "test_stepfunctions.py::test_list_executions_filter_and_pages":
        "StopExecution reaches only executions the node itself advances",
}


def pytest_collection_modifyitems(config, items):
    if CLUSTER_NODES < 2:
        return
    for item in items:
        reason = CLUSTER_GAPS.get(item.nodeid.split("tests/aws/")[-1])
        if reason:
            item.add_marker(pytest.mark.xfail(reason=f"cluster: {reason}", strict=False))


def pytest_sessionfinish(session, exitstatus):
    """Drops this run's cluster databases."""
    if shutil.which("psql") is None:
        return
    out = subprocess.run(
        ["psql", POSTGRES_ADMIN_URL, "-At", "-c",
         f"SELECT datname FROM pg_database WHERE datname LIKE '{CLUSTER_DB_PREFIX}%'"],
        capture_output=True, text=True,
    )
    for name in out.stdout.split():
        subprocess.run(["psql", POSTGRES_ADMIN_URL, "-q", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                       capture_output=True)


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
