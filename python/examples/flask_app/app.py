"""The analytics routes of a Flask app, tracking through ``commlog.compat``.

The app's code is the original's: only the import changed (``from commlog.compat import …``
instead of ``from backend.services.flask_analytics_service import …``). The tracking functions
never raise, so a tracking failure can never fail a request.

Run it against a commlog server (several gunicorn workers share it)::

    commlog --dir /var/lib/commlog serve &
    COMMLOG_SOCKET=/var/lib/commlog/commlog.sock gunicorn -w 4 --preload 'app:app'

or, for one process only, with the store embedded: ``COMMLOG_DIR=./data flask --app app run``.
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Any, Dict, List, Optional

from flask import Flask, jsonify, request

from commlog.compat import (
    get_communication_stats,
    track_financial_outcome,
    track_message_delivered,
    track_message_opened,
    track_message_sent,
    track_user_action,
)

logger = logging.getLogger(__name__)

app = Flask(__name__)


class StubSmsProvider:
    """Stands for the SMS provider's SDK (Twilio, …): accepts every message, at a fixed price."""

    price = Decimal("0.0075")

    def __init__(self) -> None:
        self.sent: List[Dict[str, Any]] = []

    def send(self, to: str, body: str) -> Dict[str, Any]:
        receipt = {"sid": "SM" + uuid.uuid4().hex, "to": to, "body": body, "status": "delivered", "price": self.price}
        self.sent.append(receipt)
        return receipt


sms_provider = StubSmsProvider()


def phone_number_of(user_id: int) -> str:
    """Stands for the app's user lookup."""
    return f"+1555{user_id:07d}"[-12:]


def send_low_balance_sms(user_id: int) -> Optional[int]:
    """The background task (Celery, RQ, …): sends the low-balance SMS and tracks it; the
    message's id, or ``None`` if the SMS could not be sent or tracked."""
    try:
        receipt = sms_provider.send(phone_number_of(user_id), "Your balance is low: top up to avoid fees.")
    except Exception:
        logger.exception("low-balance SMS to user %s failed", user_id)
        return None
    message = track_message_sent(user_id, "sms", "low_balance", receipt["price"])
    if message is None:
        return None
    if receipt["status"] == "delivered":
        track_message_delivered(message.id)
    return message.id


@app.route("/user-action", methods=["POST"])
def user_action() -> Any:
    """A user acted on a message: ``{"message_id", "action_type"}``, with the financial impact
    if there is one (``"user_id", "action", "impact_amount"``)."""
    data = request.get_json(silent=True) or {}
    message_id = data.get("message_id")
    action_type = data.get("action_type")
    if message_id is None or not action_type:
        return jsonify({"error": "message_id and action_type are required"}), 400
    if data.get("impact_amount") is not None and data.get("user_id") is None:
        return jsonify({"error": "user_id is required with impact_amount"}), 400
    tracked = track_user_action(message_id, action_type)
    outcome = None
    if data.get("impact_amount") is not None:
        outcome = track_financial_outcome(
            data["user_id"], data.get("action") or action_type, str(data["impact_amount"])
        )
    return jsonify(
        {
            "status": "success",
            "tracked": tracked is not None,
            "outcome_tracked": outcome is not None,
        }
    )


@app.route("/webhook/email-opened", methods=["POST"])
def email_opened() -> Any:
    """The email provider's open notification: ``{"message_id"}``."""
    data = request.get_json(silent=True) or {}
    message_id = data.get("message_id")
    if message_id is None:
        return jsonify({"error": "message_id is required"}), 400
    tracked = track_message_opened(message_id)
    return jsonify({"status": "success", "tracked": tracked is not None})


def _plain(value: Any) -> Any:
    """JSON-ready: Decimal dollars as strings (exact), mappings as dicts."""
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@app.route("/stats", methods=["GET"])
def stats() -> Any:
    """The communication statistics, filtered by ``user_id``, ``message_type``, ``channel``,
    ``start_date`` and ``end_date`` (RFC 3339 or YYYY-MM-DD) query parameters."""
    args = request.args
    user_id = args.get("user_id", type=int)
    result = get_communication_stats(
        user_id=user_id,
        message_type=args.get("message_type"),
        channel=args.get("channel"),
        start_date=args.get("start_date"),
        end_date=args.get("end_date"),
    )
    if result is None:
        return jsonify({"error": "statistics unavailable"}), 503
    print(
        f"{result['total_messages']} messages, delivery {result['delivery_rate']:.1f}%, "
        f"open {result['open_rate']:.1f}%, cost ${result['total_cost']}"
    )
    return jsonify(_plain(result))


if __name__ == "__main__":
    app.run(debug=True)
