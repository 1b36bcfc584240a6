"""The client's cost per call over the Unix socket, and its throughput from several processes.

    python benchmarks/bench_client.py                     # starts a commlog-serve on a temp store
    python benchmarks/bench_client.py --socket PATH       # an already running server
    python benchmarks/bench_client.py --sync interval     # the server's sync policy

Prints a table: p50 / p99 / mean latency of each call from one process (one keep-alive
connection), then total calls per second from N forked processes, each with its own
connection, sharing a Client made before the fork. The server binary is $COMMLOG_SERVE_BIN,
else ../target/release/commlog-serve relative to python/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

PYTHON_DIR = Path(__file__).resolve().parents[1]
try:
    from commlog.client import Client
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(PYTHON_DIR))
    from commlog.client import Client


def start_server(root: Path, sync: str) -> subprocess.Popen:
    binary = os.environ.get("COMMLOG_SERVE_BIN") or str(PYTHON_DIR.parent / "target" / "release" / "commlog-serve")
    socket_path = root / "store" / "commlog.sock"
    process = subprocess.Popen(
        [binary, "--dir", str(root / "store"), "--sync", sync],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{binary} exited with {process.returncode}")
        if socket_path.exists() and Client(socket=str(socket_path), retries=0).health():
            return process
        time.sleep(0.01)
    process.kill()
    raise SystemExit("the server did not start")


def percentile(sorted_values: List[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def latencies(call: Callable[[int], object], n: int) -> List[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - t)
    out.sort()
    return out


def throughput(client: Client, processes: int, calls: int) -> float:
    """Total sends per second from ``processes`` forked processes, ``calls`` each."""
    client.health()  # the Client is used before the fork, as under gunicorn --preload
    read, write = os.pipe()
    pids = []
    start = time.perf_counter()
    for n in range(processes):
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                os.close(read)
                for _ in range(calls):
                    client.track_message_sent(1000 + n, "email", "bench_fork", "0.001")
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(write)
    os.close(read)
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    elapsed = time.perf_counter() - start
    if failed:
        raise SystemExit(f"{failed} benchmark processes failed")
    return processes * calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", help="an already running server's socket")
    parser.add_argument("--sync", default="always", choices=["always", "interval"], help="the started server's sync policy")
    parser.add_argument("-n", type=int, default=2000, help="calls of each kind from one process")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--calls", type=int, default=2000, help="sends per process in the throughput run")
    args = parser.parse_args()

    root: Optional[Path] = None
    server: Optional[subprocess.Popen] = None
    socket_path = args.socket
    if socket_path is None:
        root = Path(tempfile.mkdtemp(prefix="clbench-", dir="/tmp"))
        server = start_server(root, args.sync)
        socket_path = str(root / "store" / "commlog.sock")
    try:
        client = Client(socket=socket_path)
        n = args.n
        ids: List[int] = []
        rows: Dict[str, List[float]] = {}

        def send(i: int) -> None:
            ids.append(client.track_message_sent(7, "sms", "bench", 0.05).id)

        rows["track_message_sent"] = latencies(send, n)
        rows["track_message_delivered"] = latencies(lambda i: client.track_message_delivered(ids[i]), n)
        rows["track_message_opened"] = latencies(lambda i: client.track_message_opened(ids[i]), n)
        rows["track_user_action"] = latencies(lambda i: client.track_user_action(ids[i], "clicked_link"), n)
        rows["track_financial_outcome"] = latencies(lambda i: client.track_financial_outcome(7, "bill_paid", 1), n)
        rows["message (GET)"] = latencies(lambda i: client.message(ids[i]), n)
        rows["history limit 50"] = latencies(lambda i: client.get_user_communication_history(7), max(1, n // 4))
        rows["get_communication_stats"] = latencies(lambda i: client.get_communication_stats(user_id=7), max(1, n // 4))
        rows["health (GET /healthz)"] = latencies(lambda i: client.health(), n)

        info = client.info()
        print(f"commlog client over unix:{socket_path} (server sync {info['sync']}, Python {sys.version.split()[0]})")
        print()
        print(f"{'call (one process)':<28} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'calls/s':>9}")
        for name, values in rows.items():
            mean = statistics.fmean(values)
            print(
                f"{name:<28} {len(values):>6} {percentile(values, 50) * 1e3:>8.3f} "
                f"{percentile(values, 99) * 1e3:>8.3f} {mean * 1e3:>8.3f} {1 / mean:>9.0f}"
            )
        print()
        rate = throughput(client, args.processes, args.calls)
        print(
            f"track_message_sent from {args.processes} processes x {args.calls}: "
            f"{rate:,.0f} calls/s in total"
        )
        rate1 = throughput(client, 1, args.calls)
        print(f"track_message_sent from 1 process x {args.calls}: {rate1:,.0f} calls/s")
        total = client.get_communication_stats()["total_messages"]
        print(f"messages in the store: {total}")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
