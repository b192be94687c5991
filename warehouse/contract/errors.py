"""The error of a payload that cannot become an event (any wire format)."""

from __future__ import annotations


class StructuralError(ValueError):
    """A payload that cannot become an event at all.

    Attributes:
        message: human-readable reason.
        field: the payload field at fault (``"uuid"``, ``"timestamp"``…), or ``None`` for the
            payload itself.
        reason: machine-readable kind, used for metrics and responses: ``invalid_event``,
            ``invalid_timestamp``, ``event_too_large`` or ``expansion_too_large``.
    """

    def __init__(self, message: str, field: str | None = None, reason: str = "invalid_event") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason
