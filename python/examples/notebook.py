"""A report from a commlog store, opened read-only (beside its writer, if one runs):

    python examples/notebook.py /var/lib/commlog [YYYY-MM|-] [USER_ID]

Prints the communication statistics and the four views, as a notebook cell would. Read-only
opening needs the embedded store (``commlog.Store``: the package built with its native module);
it sees the log as it was when opened.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any, List

try:
    from commlog import Store
except ImportError as error:  # the package without its native module
    raise SystemExit(f"the embedded store is not available ({error}); build the package: pip install ./python")


def money(value: Any) -> str:
    return f"${value:,.4f}" if isinstance(value, Decimal) else "-"


def percent(value: Any) -> str:
    return f"{value:5.1f}%" if isinstance(value, (int, float)) else "  -  "


def main(argv: List[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    path = argv[1]
    month = argv[2] if len(argv) > 2 and argv[2] != "-" else None
    user = int(argv[3]) if len(argv) > 3 else 1
    store = Store.open_read_only(path)
    try:
        stats = store.get_communication_stats()
        print(f"== {path}: {stats['total_messages']} messages, {stats['outcome_count']} outcomes")
        print(
            f"delivery {percent(stats['delivery_rate'])}  open {percent(stats['open_rate'])}  "
            f"click {percent(stats['click_rate'])}  action {percent(stats['action_rate'])}"
        )
        print(f"cost {money(stats['total_cost'])} (per message {money(stats['avg_cost_per_message'])}), "
              f"impact {money(stats['total_impact'])}")
        print("by channel:", dict(stats["channel_breakdown"]))
        print("by type:   ", dict(stats["message_type_breakdown"]))
        print("by status: ", dict(stats["status_breakdown"]))

        print("\n== channel effectiveness")
        channels = store.get_channel_effectiveness()
        print(f"{'channel':<8} {'sent':>8} {'deliv':>7} {'open':>7} {'resp':>7} {'cost':>14} {'roi':>8} {'score':>6}")
        for line in channels["channels"]:
            roi = "-" if line["roi"] is None else f"{line['roi']:.1f}"
            print(
                f"{line['channel']:<8} {line['sent']:>8} {percent(line['delivery_rate'])} "
                f"{percent(line['open_rate'])} {percent(line['response_rate'])} "
                f"{money(line['total_cost']):>14} {roi:>8} {line['performance_score']:>6.1f}"
            )
        for winner in channels["winners"]:
            print(f"  best for {winner['message_type']}: {winner['channel']} (score {winner['performance_score']:.1f})")

        print("\n== costs" + (f" ({month})" if month else ""))
        costs = store.get_cost_report(month=month)
        total = costs["total"]
        print(f"spent {money(total['spent'])} on {total['messages']} messages; "
              f"per response {money(total['cost_per_response'])}")
        for channel, line in costs["by_channel"].items():
            print(f"  {channel:<8} {money(line['spent']):>14} ({line['messages']} messages)")
        for budget in costs["budgets"]:
            flag = "EXCEEDED" if budget["exceeded"] else ("alert" if budget["alert"] else "ok")
            print(f"  budget {budget['scope']} {budget['month']}: {money(budget['spent'])} of "
                  f"{money(budget['budget'])} ({budget['utilization']:.1f}%) {flag}")

        print("\n== financial impact")
        impact = store.get_financial_impact()
        print(f"outcomes {impact['outcomes']['count']} worth {money(impact['outcomes']['amount'])}; "
              f"attributed {impact['attributed']['count']} ({money(impact['attributed']['amount'])}), "
              f"unattributed {impact['unattributed']['count']}")
        for line in impact["by_channel"]:
            roi = "-" if line["roi"] is None else f"{line['roi']:.1f}"
            print(f"  {line['channel']:<8} attributed {money(line['attributed']['amount']):>14}  "
                  f"cost {money(line['cost']):>12}  roi {roi}")

        engagement = store.get_user_engagement(user)
        if engagement["sent"]:
            print(f"\n== engagement of user {user}")
            print(f"sent {engagement['sent']}, engaged {engagement['engaged']}, "
                  f"score {engagement['engagement_score']:.1f}, trend {engagement['trend']}, "
                  f"preferred channel {engagement['preferred_channel']}")
            for m in store.get_user_communication_history(user, limit=5):
                print(f"  #{m.id} {m.sent_at:%Y-%m-%d %H:%M} {m.channel:<7} {m.message_type:<16} {m.status}")
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv)
