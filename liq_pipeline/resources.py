"""Thin Dagster resources around the plain HTTP clients; secrets arrive through `dg.EnvVar`."""

from typing import ClassVar

import dagster as dg

from liq_pipeline.clients import KweryClient, NewhedgeClient
from liq_pipeline.clients.kwery import KWERY_BASE_URL
from liq_pipeline.clients.newhedge import NEWHEDGE_BASE_URL
from liq_pipeline.redaction import SecretsMaskedInRepr


class KweryResource(SecretsMaskedInRepr, dg.ConfigurableResource):
    """Kwery liquidations API. `api_key` is bound to `dg.EnvVar("KWERY_API_KEY")`."""

    secret_fields: ClassVar[tuple[str, ...]] = ("api_key",)

    api_key: str
    base_url: str = KWERY_BASE_URL
    credit_budget: int | None = None

    def get_client(self) -> KweryClient:
        return KweryClient(self.api_key, self.base_url, credit_budget=self.credit_budget)


class NewhedgeResource(SecretsMaskedInRepr, dg.ConfigurableResource):
    """Newhedge metrics API. `api_token` is bound to `dg.EnvVar("NEWHEDGE_API_TOKEN")`."""

    secret_fields: ClassVar[tuple[str, ...]] = ("api_token",)

    api_token: str
    base_url: str = NEWHEDGE_BASE_URL

    def get_client(self) -> NewhedgeClient:
        return NewhedgeClient(self.api_token, self.base_url)
