"""How API client errors surface in Dagster runs."""

import dagster as dg

from liq_pipeline.clients.errors import LiqApiError


def as_dagster_failure(exc: LiqApiError) -> dg.Failure:
    """The run-ending Failure for an API error, with the client's (redacted) message.

    Runs are never retried by Dagster: the client already retried what may succeed (429, 5xx,
    timeouts, dropped connections) within the run's retry budget, a permanent error would only
    fail again after spending credits, and a retry policy would turn a stop request into a retry.
    """
    return dg.Failure(description=str(exc), allow_retries=False)
