"""Nothing acknowledged is lost: mixed load, SIGKILLs at random moments, restarts,
and a ledger kept outside the server.

Workers drive six kinds of work against a real `nimbus up` (async invocations,
SQS sends consumed by an event source mapping, SNS publishes to a Lambda
subscription, S3 puts with a bucket notification, workflow starts whose Task
invokes a function, and schedule fires driven by the test clock). Every one
carries a fresh token; when Nimbus acknowledges it, the token goes in the
ledger. One function, `rec`, receives all of them and reports each delivery
(token and the delivery's own identity: request id, message id, execution id)
to a sink served by this test, outside the server, so the record survives the
kills. Meanwhile the server is SIGKILLed at random moments and restarted on
the same data directory.

At the end every acknowledged token must have been delivered (and every
acknowledged object must read back whole), and nothing may have run more often
than the documented semantics allow: deliveries are at least once, so a token
may arrive more than once, but only as redeliveries of the *same* event,
message or execution (one identity per token); a schedule fire is exactly
once, so one fire time never has two request ids.

`NIMBUS_FAULT_KILLS` sets the number of kills (CI: 5); `scripts/fault-injection`
runs the long version and prints the figures.
"""

import os
import random
import threading
import time
from collections import defaultdict
from datetime import datetime

import pytest

from conftest import NimbusServer
from lambda_helpers import native
from mixed_load import Load, Sink, client, deploy

KILLS = int(os.environ.get("NIMBUS_FAULT_KILLS", "5"))
WORKERS = 4
# How long the server runs between two kills: uniform in this range (seconds).
UPTIME_S = (0.5, 3.0)
DRAIN_TIMEOUT_S = float(os.environ.get("NIMBUS_FAULT_DRAIN_S", "90"))

class Cluster:
    """The server under test: killed and restarted on the same data directory."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.clock_s = 0.0  # acknowledged test-clock advances, carried over restarts
        self.generation = 0
        self.lock = threading.Lock()
        self.up = threading.Event()
        self.server = None
        self.stderr_logs = []

    def start(self):
        log_dir = self.tmp / f"run{self.generation}"
        log_dir.mkdir()
        self.stderr_logs.append(log_dir / "server.stderr.log")
        srv = NimbusServer(
            self.tmp / "data",
            log_dir,
            extra_args=["--test-clock", "--test-clock-offset", f"{int(self.clock_s)}s", "--async-retry-delay", "1s"],
        ).start()
        with self.lock:
            self.server = srv
            self.generation += 1
        self.up.set()
        return srv

    def kill(self):
        self.up.clear()
        with self.lock:
            srv = self.server
        srv.proc.kill()
        srv.proc.wait()

    def current(self):
        self.up.wait(60)
        with self.lock:
            return self.server, self.generation


def wait_delivered(sink, load, deadline):
    while time.time() < deadline:
        seen = sink.snapshot()
        missing = [t for t in load.acked if t not in seen]
        if not missing:
            return []
        time.sleep(0.5)
    return missing


def test_acknowledged_work_survives_sigkill(tmp_path):
    sink = Sink()
    cluster = Cluster(tmp_path)
    srv = cluster.start()
    names = deploy(srv, sink.url)
    load = Load(cluster, names)
    workers = [threading.Thread(target=load.worker, daemon=True) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    started = time.time()
    for _ in range(KILLS):
        time.sleep(random.uniform(*UPTIME_S))
        cluster.kill()
        cluster.start()
    time.sleep(2)
    load.stop.set()
    for w in workers:
        w.join(30)
    srv, _ = cluster.current()
    # One more fire after the last restart: the clock goes on where it was.
    assert native(srv, "POST", "/v1/debug/clock", {"advance_s": 60})[0] in (200, 204)
    missing = wait_delivered(sink, load, time.time() + DRAIN_TIMEOUT_S)
    seen = sink.snapshot()

    by_kind = defaultdict(int)
    for kind in load.acked.values():
        by_kind[kind] += 1
    fires = {t: d for t, d in seen.items() if t.startswith("fire:")}
    redelivered = sum(len(d) - 1 for t, d in seen.items())
    print(
        f"\nfault injection: {KILLS} SIGKILLs in {time.time() - started:.1f} s; "
        f"acknowledged {dict(by_kind)} ({len(load.acked)} in all, {sum(load.errors.values())} calls failed under the kills); "
        f"{len(fires)} schedule fire times; {redelivered} redeliveries"
    )

    # 1. Every acknowledged item was delivered.
    if missing:
        sfn = client("stepfunctions", srv)
        states = {}
        for t in missing:
            if t in load.executions:
                try:
                    d = sfn.describe_execution(executionArn=load.executions[t])
                    states[t] = (d["status"], d.get("error"), d.get("cause"))
                except Exception as e:  # noqa: BLE001 - reported, not handled
                    states[t] = repr(e)
        pytest.fail(f"{len(missing)} acknowledged items never delivered, e.g. {missing[:5]}; executions: {list(states.items())[:5]}")
    # 2. At least once, but only as redeliveries of one event/message/execution.
    doubled = {t: d for t, d in seen.items() if len({i for _, i in d}) > 1}
    assert not doubled, f"items delivered as more than one event: {list(doubled.items())[:5]}"
    # 3. Schedule fires: exactly once per fire time (one request id), and the
    #    clock kept firing across restarts.
    assert len(fires) >= 2, f"the schedule stopped firing across restarts: {fires}"
    # A rate(1 minute) rule fires on its own grid (a whole number of minutes
    # from the first fire), never in between.
    times = sorted(datetime.strptime(t[5:], "%Y-%m-%dT%H:%M:%SZ") for t in fires)
    for t in times:
        assert (t - times[0]).total_seconds() % 60 == 0, f"a fire off the schedule's grid: {t} vs {times[0]}"
    # 4. Acknowledged objects read back whole; acknowledged executions finished.
    s3 = client("s3", srv, s3={"addressing_style": "path"})
    for key, body in load.objects.items():
        assert s3.get_object(Bucket="chaos", Key=key)["Body"].read() == body, key
    sfn = client("stepfunctions", srv)
    deadline = time.time() + 30
    for token, arn in load.executions.items():
        while True:
            status = sfn.describe_execution(executionArn=arn)["status"]
            if status != "RUNNING" or time.time() > deadline:
                break
            time.sleep(0.2)
        assert status == "SUCCEEDED", (token, status)
    # 5. No restart found anything it could not recover from.
    for log in cluster.stderr_logs:
        text = log.read_text(errors="replace")
        assert "panicked" not in text, f"{log}:\n{text[-4000:]}"
    cluster.current()[0].stop()
