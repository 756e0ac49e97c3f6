"""How API client errors surface in Dagster runs."""

import dagster as dg

from liq_pipeline.clients.errors import (
    KweryRateLimited,
    KweryServerError,
    LiqApiError,
    NewhedgeRateLimited,
    NewhedgeServerError,
)

# The clients already retried these within the request; a later run-level retry may still succeed.
TRANSIENT_ERRORS = (KweryServerError, KweryRateLimited, NewhedgeServerError, NewhedgeRateLimited)

# Transient failures get a few run-level retries spaced minutes apart; everything else (bad key,
# tier limits, malformed data, not published yet) fails at once with allow_retries=False.
API_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=60, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def as_dagster_failure(exc: LiqApiError) -> Exception:
    """The exception to raise for an API error: itself if a retry may help, else a final Failure."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return exc
    return dg.Failure(description=str(exc), allow_retries=False)
