"""Champion vs challenger in the training pipeline: the CompareChampion and CheckChampion steps.

::

    Train --model--> CompareChampion (processing)  <--test split-- Preprocess
                       |  comparison.json (PropertyFile "ChampionComparison"; model_code/champion.py):
                       |  the group's newest Approved package scored on this execution's test split
                       v
    CheckTestMetric --true--> CheckChampion (condition) challenger.value >= required (<= when lower is better)
                                | true               | false
                                v                    v
                              Register             ChampionNotBeaten (fail)

``required`` is the champion's value plus ``PromotionMinImprovement`` (minus, lower is better), or the
challenger's own value when the group has no Approved package yet or its champion cannot be compared
(the comparison records why). The comparison's metadata strings go into the package's
CustomerMetadataProperties, so `mlops model list` and `release promote` see both scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.naming import Names
from pipelines.training import CHAMPION_FAIL, CHECK_CHAMPION, COMPARE, scoring_step

if TYPE_CHECKING:
    from pipelines.training import Build

COMPARISON_PROPERTY_FILE = "ChampionComparison"
COMPARISON_OUTPUT = "comparison"
COMPARISON_FILE = "comparison.json"
# model_code/champion.py writes these strings (a test keeps the two lists equal)
METADATA_KEYS = ("champion_model_package_arn", "champion_status", "promotion_min_improvement")


def comparison_property_file(b: Build) -> Any:
    return b.sdk.PropertyFile(name=COMPARISON_PROPERTY_FILE, output_name=COMPARISON_OUTPUT, path=COMPARISON_FILE)


def comparison_value(b: Build, comparison: Any, json_path: str) -> Any:
    return b.sdk.JsonGet(step_name=COMPARE, property_file=comparison, json_path=json_path)


def compare_step(b: Build, preprocess: Any, train: Any, comparison: Any) -> Any:
    """Score the group's newest Approved package on this execution's test split, beside the new model."""
    return scoring_step(b, preprocess, train, comparison, name=COMPARE, module="model_code.champion",
                        output=COMPARISON_OUTPUT,
                        arguments=["--champion-group", Names.of(b.settings).model_package_group,
                                   "--min-improvement", b.params.min_improvement.to_string(),
                                   "--region", b.settings.region],
                        description="Score the current champion on the same test split")


def champion_metadata(b: Build, comparison: Any) -> dict[str, Any]:
    """CustomerMetadataProperties from the comparison: the champion, its score on this split, the margin."""
    keys = (*METADATA_KEYS, f"champion_{b.inputs.problem.primary_metric}")
    return {key: b.sdk.Join(on="", values=[comparison_value(b, comparison, f"metadata.{key}")]) for key in keys}


def check_champion_step(b: Build, comparison: Any, register: Any) -> Any:
    """Register only a challenger at least `PromotionMinImprovement` better than the champion on the same data."""
    sdk, problem = b.sdk, b.inputs.problem
    compare = sdk.ConditionGreaterThanOrEqualTo if problem.direction == "higher" else sdk.ConditionLessThanOrEqualTo
    condition = compare(left=comparison_value(b, comparison, "challenger.value"),
                        right=comparison_value(b, comparison, "required"))
    fail = sdk.FailStep(
        name=CHAMPION_FAIL,
        error_message=sdk.Join(on="", values=[
            f"challenger {problem.primary_metric} ", comparison_value(b, comparison, "challenger.value"),
            " does not reach ", comparison_value(b, comparison, "required"),
            " (champion ", comparison_value(b, comparison, "metadata.champion_model_package_arn"), " scores ",
            comparison_value(b, comparison, f"metadata.champion_{problem.primary_metric}"),
            " on the same test split, PromotionMinImprovement=", b.params.min_improvement,
            f", {problem.direction} is better); the model is not registered",
        ]),
    )
    return sdk.ConditionStep(name=CHECK_CHAMPION, conditions=[condition], if_steps=[register], else_steps=[fail])
