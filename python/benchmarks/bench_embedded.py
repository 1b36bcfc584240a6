"""The cost of one tracking call from Python through the embedded `commlog.Store`.

    python benchmarks/bench_embedded.py --events EVENTS.jsonl                 # sync interval and never
    python benchmarks/bench_embedded.py --events EVENTS.jsonl --sync always --limit 5000

The calls are the reference workload's (docs/WORKLOAD.md), read from the JSON lines that
`commlog export --format jsonl` writes of a demo store:

    commlog --dir /tmp/demo20k demo --messages 20000
    commlog --dir /tmp/demo20k export --format jsonl --out EVENTS.jsonl

Each event becomes the call that made it, with the same arguments: sends (user, channel, message
type, cost in float dollars, sent time), deliveries, opens, actions (on the id the send
returned) and financial outcomes (user, action, float dollars), each with the workload's time as
an aware datetime (`--now`: no time, the store's clock; `--native`: the native module under
`commlog.Store` called directly, times in ms and money in micro-dollars, to show what the
Python layer costs). Arguments are prepared before the
timing; only the call is timed, with time.perf_counter_ns. Per sync policy: one untimed warm-up
pass over the events into a fresh store, then `--passes` timed passes into the same store.
Prints p50 / p99 / mean in microseconds of each kind of call.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from time import perf_counter_ns
from typing import Any, Dict, List, Optional, Tuple

PYTHON_DIR = Path(__file__).resolve().parents[1]
try:
    import commlog
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(PYTHON_DIR))
    import commlog

KINDS = {
    "sent": "track_message_sent",
    "delivered": "track_message_delivered",
    "opened": "track_message_opened",
    "action": "track_user_action",
    "outcome": "track_financial_outcome",
}
TARGET_P50_US = 5.0
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc)


def load(path: Path, limit: Optional[int], now: bool, native: bool) -> List[Tuple]:
    """The workload's calls: (kind, args), where a follow-up's first argument is the index of
    the send it follows (resolved to the id the store returned, before the timing)."""
    calls: List[Tuple] = []
    send_index: Dict[int, int] = {}
    with open(path) as f:
        for line in f:
            e = json.loads(line)
            kind = e["kind"]
            if kind not in KINDS:
                continue  # the workload's one budget, and nothing else
            when = None if now else parse_time(e["time"])
            if native and when is not None:  # the native module's arguments: ms and micros
                when = (when - EPOCH) // timedelta(milliseconds=1)
            if kind == "sent":
                send_index[e["message_id"]] = len(send_index)
                cost = e["cost_micros"] if native else e["cost_micros"] / 1e6
                calls.append(("sent", e["user_id"], e["channel"], e["message_type"], cost, when))
            elif kind == "outcome":
                amount = e["amount_micros"] if native else e["amount_micros"] / 1e6
                calls.append(("outcome", e["user_id"], e["outcome"], amount, when))
            elif kind == "action":
                calls.append(("action", send_index[e["message_id"]], e["action"], when))
            else:
                calls.append((kind, send_index[e["message_id"]], when))
            if limit is not None and len(calls) >= limit:
                break
    return calls


def run_pass(store: Any, calls: List[Tuple], times: Optional[Dict[str, List[int]]]) -> None:
    """One pass over the calls, on a `commlog.Store` or the native module's store under it."""
    sent_ids: List[int] = []
    native = not isinstance(store, commlog.Store)
    sent = store.track_message_sent
    delivered = store.track_message_delivered
    opened = store.track_message_opened
    action = store.track_user_action
    outcome = store.track_financial_outcome
    t_sent: List[int] = []
    t_delivered: List[int] = []
    t_opened: List[int] = []
    t_action: List[int] = []
    t_outcome: List[int] = []
    for c in calls:
        kind = c[0]
        if kind == "sent":
            _, user, channel, mtype, cost, when = c
            if native:  # (..., sent_at_ms, external_id)
                t = perf_counter_ns()
                m = sent(user, channel, mtype, cost, when, None)
                t_sent.append(perf_counter_ns() - t)
                sent_ids.append(m.id)
            else:  # (..., external_id, sent_at)
                t = perf_counter_ns()
                m = sent(user, channel, mtype, cost, None, when)
                t_sent.append(perf_counter_ns() - t)
                sent_ids.append(m.id)
        elif kind == "delivered":
            mid = sent_ids[c[1]]
            when = c[2]
            t = perf_counter_ns()
            delivered(mid, when)
            t_delivered.append(perf_counter_ns() - t)
        elif kind == "opened":
            mid = sent_ids[c[1]]
            when = c[2]
            t = perf_counter_ns()
            opened(mid, when)
            t_opened.append(perf_counter_ns() - t)
        elif kind == "action":
            mid = sent_ids[c[1]]
            name, when = c[2], c[3]
            t = perf_counter_ns()
            action(mid, name, when)
            t_action.append(perf_counter_ns() - t)
        else:
            _, user, name, amount, when = c
            t = perf_counter_ns()
            outcome(user, name, amount, when)
            t_outcome.append(perf_counter_ns() - t)
    if times is not None:
        for key, values in zip(KINDS, (t_sent, t_delivered, t_opened, t_action, t_outcome)):
            times.setdefault(key, []).extend(values)


def percentile(sorted_values: List[int], p: float) -> int:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def bench(calls: List[Tuple], sync: str, passes: int, root: Path, native: bool) -> Dict[str, List[int]]:
    store_dir = root / f"store-{sync}"
    times: Dict[str, List[int]] = {}
    with commlog.Store(store_dir, sync=sync) as store:
        target = store._native if native else store
        run_pass(target, calls, None)  # warm-up
        for _ in range(passes):
            run_pass(target, calls, times)
    shutil.rmtree(store_dir, ignore_errors=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", required=True, type=Path, help="`commlog export --format jsonl` of a demo store")
    parser.add_argument("--sync", action="append", choices=["always", "interval", "never"],
                        help="sync policy (repeatable; default: interval and never)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the events")
    parser.add_argument("--limit", type=int, help="only the first N calls of the events")
    parser.add_argument("--now", action="store_true", help="calls without a time (the store's clock)")
    parser.add_argument("--native", action="store_true",
                        help="call the native module under commlog.Store directly (ms and micros): the cost without the Python layer")
    parser.add_argument("--dir", type=Path, help="where to make the stores (default: a temporary directory in /tmp)")
    args = parser.parse_args()

    calls = load(args.events, args.limit, args.now, args.native)
    root = Path(tempfile.mkdtemp(prefix="clembed-", dir=args.dir or "/tmp"))
    try:
        print(
            f"commlog.Store embedded, {len(calls):,} calls from {args.events.name} "
            f"({'no time' if args.now else 'workload times'}{', native module' if args.native else ''}), 1 warm-up + {args.passes} timed passes, "
            f"Python {sys.version.split()[0]}"
        )
        for sync in args.sync or ["interval", "never"]:
            times = bench(calls, sync, args.passes, root, args.native)
            print()
            print(f"sync={sync}")
            print(f"{'call':<26} {'n':>8} {'p50 µs':>8} {'p99 µs':>8} {'mean µs':>8}  p50 ≤ {TARGET_P50_US:g} µs")
            for kind, name in KINDS.items():
                values = sorted(times.get(kind, []))
                if not values:
                    continue
                p50 = percentile(values, 50) / 1e3
                print(
                    f"{name:<26} {len(values):>8} {p50:>8.2f} {percentile(values, 99) / 1e3:>8.2f} "
                    f"{statistics.fmean(values) / 1e3:>8.2f}  {'yes' if p50 <= TARGET_P50_US else 'NO'}"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
