"""The freshness sensor: reports each freshness check's result when it changes, quietly."""

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from liq_pipeline.checks import FRESHNESS_CHECK, Freshness, FreshnessRule, evaluate_freshness

FRESHNESS_SENSOR = "freshness_checks_sensor"


def changed(previous: Mapping[str, Any], current: Sequence[Freshness]) -> list[Freshness]:
    """The results that differ from the last reported ones (result, due day or materialization
    judged); every result when nothing was reported yet."""
    return [f for f in current if previous.get(f.asset_key.to_user_string()) != f.state()]


def _reported(cursor: str | None) -> dict[str, Any]:
    try:
        reported = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}  # an unreadable cursor: report every result again, once
    return reported if isinstance(reported, dict) else {}


def build_freshness_sensor(rules: Sequence[FreshnessRule], first_day: str) -> dg.SensorDefinition:
    """Running by default: it only reads the instance, never calls the paid APIs."""

    @dg.sensor(
        name=FRESHNESS_SENSOR,
        minimum_interval_seconds=600,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Every 10 minutes, evaluates each asset's freshness check from the instance (no run, "
            "no API call) and reports the results that changed since its last tick."
        ),
    )
    def freshness_checks_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        now = dt.datetime.now(dt.UTC)
        current = [
            evaluate_freshness(context.instance, key, rule.deadline, first_day, now)
            for rule in rules
            for key in rule.asset_keys
        ]
        report = changed(_reported(context.cursor), current)
        for f in report:
            outcome = "passed" if f.passed else "failed"
            context.log.info(
                f"{f.asset_key.to_user_string()} {FRESHNESS_CHECK} {outcome}: {f.description}"
            )
        state = {f.asset_key.to_user_string(): f.state() for f in current}
        return dg.SensorResult(
            asset_events=[f.evaluation() for f in report],
            cursor=json.dumps(state, sort_keys=True),
            # What the tick history shows (the sensor never launches runs).
            skip_reason=f"{len(report)} freshness result(s) changed and reported"
            if report
            else "no freshness result changed",
        )

    return freshness_checks_sensor
