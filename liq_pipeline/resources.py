"""Thin Dagster resources around the plain HTTP clients; secrets arrive through `dg.EnvVar`."""

from typing import ClassVar

import dagster as dg
from pydantic import Field

from liq_pipeline.clients import KweryClient, NewhedgeClient
from liq_pipeline.clients.http import RETRY_BUDGET_S
from liq_pipeline.clients.kwery import KWERY_BASE_URL
from liq_pipeline.clients.newhedge import NEWHEDGE_BASE_URL
from liq_pipeline.redaction import SecretsMaskedInRepr

RETRY_BUDGET_HELP = (
    "Seconds a run may spend retrying transient failures (429, 5xx, timeouts, dropped or refused "
    "connections) and waiting between them, in all; then it fails, saying so. Permanent errors "
    "(bad key, plan limits, bad data, DNS) are never retried."
)


class KweryResource(SecretsMaskedInRepr, dg.ConfigurableResource):
    """Kwery liquidations API. `api_key` is bound to `dg.EnvVar("KWERY_API_KEY")`."""

    secret_fields: ClassVar[tuple[str, ...]] = ("api_key",)

    api_key: str = Field(description="Kwery API key (secret; from KWERY_API_KEY)")
    base_url: str = Field(default=KWERY_BASE_URL, description="Kwery API root (KWERY_BASE_URL)")
    credit_budget: int | None = Field(
        default=None, description="Most credits a run may spend; the next request is not sent"
    )
    retry_budget_seconds: float = Field(default=RETRY_BUDGET_S, ge=0, description=RETRY_BUDGET_HELP)

    def get_client(self) -> KweryClient:
        return KweryClient(
            self.api_key,
            self.base_url,
            credit_budget=self.credit_budget,
            retry_budget=self.retry_budget_seconds,
        )


class NewhedgeResource(SecretsMaskedInRepr, dg.ConfigurableResource):
    """Newhedge metrics API. `api_token` is bound to `dg.EnvVar("NEWHEDGE_API_TOKEN")`."""

    secret_fields: ClassVar[tuple[str, ...]] = ("api_token",)

    api_token: str = Field(description="Newhedge 24-character token (secret; NEWHEDGE_API_TOKEN)")
    base_url: str = Field(
        default=NEWHEDGE_BASE_URL, description="Newhedge root (NEWHEDGE_BASE_URL)"
    )
    retry_budget_seconds: float = Field(default=RETRY_BUDGET_S, ge=0, description=RETRY_BUDGET_HELP)

    def get_client(self) -> NewhedgeClient:
        return NewhedgeClient(self.api_token, self.base_url, retry_budget=self.retry_budget_seconds)
