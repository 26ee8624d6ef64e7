"""The soak: mixed load on one server for a while (default ten minutes), sampling
what must stay flat: the server's RSS, its open descriptors, the data
directory's size, and the p50/p99 of synchronous invocations per window.

Run it with `scripts/soak [minutes]`. It prints one row per window and the drift
between the first and the last third of the run. The load is the
fault-injection test's (tests/aws/mixed_load.py) plus synchronous invocations;
objects are deleted after their PUT so the data directory measures leaks, not
data it was asked to keep. Workflow histories are kept by design (as Step
Functions keeps them for 90 days), so they are reported apart.
"""

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import NimbusServer  # noqa: E402
from mixed_load import Load, Sink, deploy  # noqa: E402

WORKERS = 4
WINDOW_S = 30


class One:
    """A server that is never killed (the Load's view of a cluster)."""

    def __init__(self, srv):
        self.srv = srv
        self.clock_s = 0.0

    def current(self):
        return self.srv, 0


def dir_bytes(path, exclude=()):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if any(x in p for x in exclude):
                continue
            try:
                total += os.lstat(p).st_size
            except OSError:
                pass
    return total


def sample(pid, data_dir):
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    wf = dir_bytes(data_dir) - dir_bytes(data_dir, exclude=("workflows.db",))
    return rss_kb / 1024, fds, dir_bytes(data_dir) / 2**20, wf / 2**20


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def main():
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    tmp = Path(tempfile.mkdtemp(prefix="nimbus-soak-"))
    sink = Sink()
    srv = NimbusServer(tmp / "data", tmp, extra_args=["--test-clock"]).start()
    try:
        names = deploy(srv, sink.url)
        load = Load(One(srv), names, kinds=Load.KINDS + ["sync"] * 4, keep_objects=False)
        workers = [threading.Thread(target=load.worker, daemon=True) for _ in range(WORKERS)]
        for w in workers:
            w.start()
        rows = []
        start = time.monotonic()
        print(f"soak: {minutes:g} min of mixed load, {WORKERS} workers; one row per {WINDOW_S} s window", flush=True)
        print(f"{'t (s)':>6} {'RSS MB':>8} {'fds':>5} {'data MB':>8} {'of it workflows MB':>19} {'calls':>6} {'p50 ms':>7} {'p99 ms':>7}")
        while time.monotonic() - start < minutes * 60:
            w0 = time.monotonic()
            time.sleep(WINDOW_S)
            with load.lock:
                window = [d for t, d in load.latencies if t >= w0]
                acked = len(load.acked)
            rss, fds, data, wf = sample(srv.proc.pid, tmp / "data")
            row = (time.monotonic() - start, rss, fds, data, wf, acked, pct(window, 0.5), pct(window, 0.99))
            rows.append(row)
            print(f"{row[0]:6.0f} {rss:8.1f} {fds:5d} {data:8.1f} {wf:19.1f} {acked:6d} {row[6]:7.1f} {row[7]:7.1f}", flush=True)
        load.stop.set()
        for w in workers:
            w.join(30)
        third = max(1, len(rows) // 3)
        first, last = rows[:third], rows[-third:]

        def drift(i):
            a, b = statistics.median(r[i] for r in first), statistics.median(r[i] for r in last)
            return a, b, b - a

        print("\ndrift (median of the first third -> median of the last third):")
        for name, i in [("RSS MB", 1), ("fds", 2), ("data MB", 3), ("data MB without workflow histories", None), ("p99 ms", 7)]:
            if i is None:
                a = statistics.median(r[3] - r[4] for r in first)
                b = statistics.median(r[3] - r[4] for r in last)
                print(f"  {name:36} {a:9.1f} -> {b:9.1f} ({b - a:+.1f})")
                continue
            a, b, d = drift(i)
            print(f"  {name:36} {a:9.1f} -> {b:9.1f} ({d:+.1f})")
        print(f"  errors: {dict(load.errors)}; calls acknowledged: {len(load.acked)}")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
