"""The sensor that evaluates the freshness checks."""

import dagster as dg


def build_freshness_sensor(
    freshness_checks: list[dg.AssetChecksDefinition],
) -> dg.SensorDefinition:
    """Running by default: it only reads the instance, never calls the paid APIs."""
    return dg.build_sensor_for_freshness_checks(
        freshness_checks=freshness_checks,
        minimum_interval_seconds=600,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
