"""Memory of the embedded `commlog.Store` from Python, on the reference workload's store.

    commlog --dir /tmp/demo1m demo                        # 1,000,000 messages; prints the Rust figures
    python benchmarks/bench_memory.py /tmp/demo1m         # open it for writing
    python benchmarks/bench_memory.py /tmp/demo1m --read-only

Reads /proc/self/status after `import commlog` (the interpreter's baseline), opens the store
(replay), then runs one query of each kind the demo runs — Q1 stats, a user's history, a
channel + window stats, and the four views: engagement, channel effectiveness, cost report
(month 2025-01), financial impact — so that the views' indexes are built, as the demo builds
them. Prints the growth of RssAnon (the demo's measure: resident anonymous memory, mapped
segment files excluded), VmRSS and VmHWM over the baseline, in bytes per message and MiB. Run
it in a fresh interpreter each time: the figures are the process's.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict

PYTHON_DIR = Path(__file__).resolve().parents[1]
try:
    import commlog
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(PYTHON_DIR))
    import commlog

FIELDS = ("RssAnon", "VmRSS", "VmHWM")


def status() -> Dict[str, int]:
    """The process's memory figures, in bytes."""
    out: Dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in FIELDS:
                out[key] = int(value.split()[0]) * 1024  # kB
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="a store made by `commlog demo`")
    parser.add_argument("--read-only", action="store_true", help="Store.open_read_only instead of Store(dir)")
    parser.add_argument("--user", type=int, default=8949, help="the user of the history and engagement (the demo's first Q4 pick)")
    args = parser.parse_args()

    baseline = status()
    started = time.perf_counter()
    store = commlog.Store.open_read_only(args.dir) if args.read_only else commlog.Store(args.dir, sync="interval")
    open_seconds = time.perf_counter() - started
    after_open = status()

    started = time.perf_counter()
    messages = store.get_communication_stats()["total_messages"]
    store.get_user_communication_history(args.user, limit=50)
    store.get_communication_stats(
        channel="sms",
        start_date=datetime(2025, 1, 13, 5, 28, 12, 613000, tzinfo=timezone.utc),
        end_date=datetime(2025, 1, 20, 5, 28, 12, 613000, tzinfo=timezone.utc),
    )
    store.get_user_engagement(args.user)
    store.get_channel_effectiveness()
    store.get_cost_report(month="2025-01")
    store.get_financial_impact()
    query_seconds = time.perf_counter() - started
    after_queries = status()

    mode = "open_read_only" if args.read_only else "Store(dir) for writing"
    print(f"commlog.Store from Python {sys.version.split()[0]}: {args.dir}, {mode}, {messages:,} messages")
    print(f"open (replay) {open_seconds:.3f} s; first query of each view (indexes built) {query_seconds:.3f} s")
    print(f"interpreter baseline (after import commlog): " + ", ".join(f"{k} {baseline[k] / 2**20:.1f} MiB" for k in FIELDS))
    print()
    print(f"{'growth over the baseline':<44} {'RssAnon':>16} {'VmRSS':>16} {'VmHWM':>16}")
    for label, s in (("after open (replay)", after_open), ("after one query of each view", after_queries)):
        cells = []
        for k in FIELDS:
            grown = s[k] - baseline[k]
            cells.append(f"{grown / messages:>6.1f} B/msg {grown / 2**20:>5.0f}M")
        print(f"{label:<44} " + " ".join(f"{c:>16}" for c in cells))
    print(f"process peak (VmHWM, with the interpreter): {after_queries['VmHWM'] / 2**20:.1f} MiB")
    store.close()


if __name__ == "__main__":
    main()
