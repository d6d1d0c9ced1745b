"""On-call backfills of facility analytics through Dagster's GraphQL API.

``wv analytics backfill`` and the tests send the same mutations: launch an asset backfill over a
set of date × facility partitions, and re-execute only the failed partitions of an earlier one.
The webserver (``wv ui``) answers them at ``<url>/graphql``; the daemon then runs the backfill
under the run queue and the ``analytics_db`` / ``erp_api`` pools.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

import dagster as dg
import httpx

DEFAULT_ASSETS = ("facility_daily_analytics", "erp_sync")
IN_PROCESS: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}
"""Run configuration of backfill runs: a facility-day's two steps run in the run's own process
(the code location's default executor would start one more process per step, seconds each)."""

LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""

RETRY_FAILED = """
mutation RetryBackfill($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""


class BackfillError(RuntimeError):
    """Dagster refused the request; the message is Dagster's."""


def partition_keys(facilities: Iterable[str], first: date, last: date) -> list[str]:
    """Every ``date|facility`` key from ``first`` to ``last`` inclusive."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [
        str(dg.MultiPartitionKey({"date": d.isoformat(), "facility": f})) for d in days for f in facilities
    ]


def launch_variables(
    keys: Sequence[str], assets: Sequence[str] = DEFAULT_ASSETS, title: str = ""
) -> dict[str, Any]:
    return {
        "params": {
            "partitionNames": list(keys),
            "assetSelection": [{"path": [name]} for name in assets],
            "title": title or f"analytics backfill, {len(keys)} facility-days",
            "tags": [{"key": "wv/backfill", "value": "analytics"}],
            "runConfigData": IN_PROCESS,
        }
    }


def retry_variables(backfill_id: str) -> dict[str, Any]:
    return {"params": {"parentRunId": backfill_id, "strategy": "FROM_FAILURE"}}


def backfill_id(data: dict[str, Any], field: str) -> str:
    """The new backfill's id from a mutation answer, or :class:`BackfillError` with Dagster's reason."""
    answer = data[field]
    if answer.get("__typename") != "LaunchBackfillSuccess":
        raise BackfillError(f"{answer.get('__typename')}: {answer.get('message', '')}".strip())
    return str(answer["backfillId"])


def post(url: str, query: str, variables: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
    """Send one GraphQL request to the webserver at ``url``; returns ``data``."""
    try:
        response = httpx.post(
            url.rstrip("/") + "/graphql", json={"query": query, "variables": variables}, timeout=timeout_s
        )
    except httpx.TransportError as exc:
        raise BackfillError(
            f"Dagster webserver at {url} does not answer ({exc}); start it with `wv ui`"
        ) from None
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code != 200 or body.get("errors"):
        raise BackfillError(f"GraphQL request failed: HTTP {response.status_code} {body.get('errors', '')}")
    return dict(body["data"])
