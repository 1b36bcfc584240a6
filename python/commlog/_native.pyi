"""The native module: `commlog.Store` wraps it; use that instead."""

from typing import List, Optional, Tuple, Union

__version__: str

_Times = Tuple[int, Optional[int], Optional[int], Optional[int], Optional[int]]
# (id, user_id, channel, message_type, status, cost_micros,
#  (sent_at_ms, delivered_at_ms, opened_at_ms, clicked_at_ms, failed_at_ms),
#  failure_reason, action_taken)
MessageTuple = Tuple[
    int, int, str, str, str, int, _Times, Optional[str], Optional[str]
]
# (user_id, outcome, amount_micros, at_ms)
OutcomeTuple = Tuple[int, str, int, int]
_Ref = Union[int, str]

class NativeStore:
    @staticmethod
    def open(path: str, sync: str = "always", interval_ms: int = 100) -> "NativeStore": ...
    @staticmethod
    def open_read_only(path: str) -> "NativeStore": ...
    @property
    def path(self) -> str: ...
    @property
    def read_only(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def pid(self) -> int: ...
    def close(self) -> None: ...
    def flush(self) -> None: ...
    def sync(self) -> None: ...
    def track_message_sent(
        self,
        user_id: int,
        channel: str,
        message_type: str,
        cost_micros: int,
        sent_at_ms: Optional[int] = None,
        external_id: Optional[str] = None,
    ) -> MessageTuple: ...
    def track_message_delivered(self, message: _Ref, at_ms: Optional[int] = None) -> MessageTuple: ...
    def track_message_opened(self, message: _Ref, at_ms: Optional[int] = None) -> MessageTuple: ...
    def track_user_action(
        self, message: _Ref, action: str, at_ms: Optional[int] = None
    ) -> MessageTuple: ...
    def track_message_failed(
        self, message: _Ref, reason: str, at_ms: Optional[int] = None
    ) -> MessageTuple: ...
    def track_financial_outcome(
        self, user_id: int, outcome: str, amount_micros: int, at_ms: Optional[int] = None
    ) -> OutcomeTuple: ...
    def set_budget(
        self, scope: str, month: str, amount_micros: int, alert_percent: Optional[int] = None
    ) -> None: ...
    def message(self, message: _Ref) -> MessageTuple: ...
    def message_by_external_id(self, external_id: str) -> Optional[MessageTuple]: ...
    def external_id(self, id: int) -> Optional[str]: ...
    def history(self, user_id: int, limit: int = 50) -> List[MessageTuple]: ...
    def stats_json(
        self,
        user_id: Optional[int] = None,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_ms: Optional[int] = None,
        end_ms: Optional[int] = None,
    ) -> str: ...
    def engagement_json(
        self,
        user_id: int,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_ms: Optional[int] = None,
        end_ms: Optional[int] = None,
    ) -> str: ...
    def channels_json(
        self,
        user_id: Optional[int] = None,
        message_type: Optional[str] = None,
        start_ms: Optional[int] = None,
        end_ms: Optional[int] = None,
        period: Optional[str] = None,
    ) -> str: ...
    def costs_json(
        self,
        month: Optional[str] = None,
        user_id: Optional[int] = None,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_ms: Optional[int] = None,
        end_ms: Optional[int] = None,
    ) -> str: ...
    def impact_json(
        self,
        user_id: Optional[int] = None,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_ms: Optional[int] = None,
        end_ms: Optional[int] = None,
    ) -> str: ...
