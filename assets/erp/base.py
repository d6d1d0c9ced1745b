"""The one small interface every ERP adapter implements, and the outcomes it reports.

An adapter turns outbox messages into records in one ERP. It never touches the database: the
dispatcher (:mod:`assets.erp.outbox`) claims messages, calls :meth:`ErpAdapter.deliver`
and records each :data:`Outcome`. Adapters must be idempotent per ``idempotency_key`` (the ERP
record's external id): delivering a message twice updates the record the first delivery made.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar, Literal

MessageKind = Literal["damage_claim", "discrepancy_report"]


@dataclass(frozen=True)
class OutboxMessage:
    """One row of ``erp_outbox`` as an adapter sees it."""

    id: int
    idempotency_key: str
    kind: MessageKind
    facility_id: str
    business_date: date
    payload: Mapping[str, Any]
    attempts: int = 0


@dataclass(frozen=True)
class Delivered:
    """The ERP holds the record. ``acknowledged`` is False when delivery is a file the ERP imports later."""

    external_id: str | None
    acknowledged: bool = True
    created: bool | None = None
    """True: a new record; False: an existing record updated (a re-send); None: unknown."""


@dataclass(frozen=True)
class Retry:
    """A transient failure (throttling, unavailability, network): try again later."""

    error: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Poison:
    """The ERP refused the message itself (schema, validation): retrying cannot help; park it."""

    error: str


Outcome = Delivered | Retry | Poison


class ErpError(Exception):
    """Base of the errors adapters raise for a whole request."""


class RetryableError(ErpError):
    """The whole request failed transiently (429, 503, timeouts); every message in it may be retried."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BatchRejected(ErpError):
    """The ERP refused a multi-message request as a whole; the dispatcher retries its messages one by one."""


class ErpConfigError(ErpError):
    """Credentials or endpoints are wrong (authentication refused, bad URL); nothing is parked."""


class ErpAdapter(ABC):
    """Delivers outbox messages to one ERP; subclasses are small and own their protocol details."""

    name: ClassVar[str]
    max_batch: int = 1
    """Messages :meth:`deliver` accepts at once (an OData ``$batch`` takes many)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(s for s in secrets if s)
        """Credential values that must never appear in errors, logs or metadata (see :func:`redact`)."""

    @abstractmethod
    def deliver(self, messages: Sequence[OutboxMessage]) -> list[Outcome]:
        """One outcome per message, in order; :class:`ErpError` subclasses for whole-request failures."""

    def acknowledgements(self, keys: Iterable[str]) -> dict[str, str | None]:
        """For messages delivered unacknowledged: key → external id of those the ERP has since confirmed."""
        return {}

    def close(self) -> None:  # noqa: B027 - adapters without connections have nothing to release
        """Release connections."""

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)


_BEARER = re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with secret values and Authorization credentials replaced by ``***``, at most 500 chars."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _BEARER.sub(lambda m: f"{m.group(1)} ***", text)[:500]
