"""``production_model``: the model the edges run. Only a person moves it.

Materializing it (in the UI, with the approver's name in the run config) is the same act as
``wv model approve VERSION --by NAME``: the registry records the approver, retires the previous
production model and rewrites ``<models_dir>/production.json``, which the edges follow. No schedule
or sensor targets this asset, and the registry refuses a candidate whose evaluation did not pass.
"""

from typing import Any

import dagster as dg

from assets.common.resources import ModelRegistryResource
from realtime.storage.model_registry import ModelVersion, RegistryError

OWNERS = ["team:ml-platform"]


class ApprovalConfig(dg.Config):
    approved_by: str
    """Who approves (required): recorded with the promotion."""
    version: str = ""
    """Version to promote; empty: the newest candidate whose evaluation passed."""
    reason: str = ""


def newest_passing_candidate(candidates: list[ModelVersion]) -> ModelVersion | None:
    passing = [m for m in candidates if m.evaluation_passed]
    return max(passing, key=lambda m: m.created_at) if passing else None


PROMOTION_ID = "promotion_id"
"""Metadata key: the ``model_promotions`` row a production_model materialization stands for."""


def promotion_metadata(model: ModelVersion, promotion: dict[str, Any]) -> dict[str, Any]:
    """What a production_model materialization shows, for approvals in the UI and on the command line."""
    evaluation = model.metrics.get("evaluation") or {}
    return {
        "version": model.version,
        "action": promotion["action"],
        "by": promotion["actor"],
        "approved_by": model.approved_by or "",
        "previous": promotion["previous"] or "",
        "reason": promotion["reason"],
        "path": dg.MetadataValue.path(str(model.path)),
        "evaluation_passed": bool(evaluation.get("passed", False)),
        "comparisons": dg.MetadataValue.json(evaluation.get("comparisons", [])),
        PROMOTION_ID: dg.MetadataValue.int(int(promotion["id"])),
    }


@dg.asset(
    deps=["candidate_evaluation"],
    group_name="retraining",
    owners=OWNERS,
    kinds={"onnx"},
    tags={"domain": "retraining", "wv/manual": "true"},
    description=(
        "The production model the edges follow (`<models_dir>/production.json`). Never automated: "
        "materialize it in the UI with `approved_by` in the run config, or run `wv model approve VERSION "
        "--by NAME`. Only a candidate whose `candidate_evaluation` check passed can be promoted; "
        "`wv model rollback` restores the previous one."
    ),
)
def production_model(
    context: dg.AssetExecutionContext, config: ApprovalConfig, model_registry: ModelRegistryResource
) -> dg.MaterializeResult:
    registry = model_registry.registry()
    version = config.version
    if not version:
        chosen = newest_passing_candidate(registry.list("candidate"))
        if chosen is None:
            raise dg.Failure("no candidate has passed candidate_evaluation; nothing to approve")
        version = chosen.version
    try:
        promoted = registry.approve(version, config.approved_by, config.reason)
    except RegistryError as exc:
        raise dg.Failure(str(exc)) from None
    context.log.info("%s approved %s for production", config.approved_by, version)
    return dg.MaterializeResult(metadata=promotion_metadata(promoted, registry.history(version)[-1]))
