"""Settings of ERP sync: which adapter, its endpoints and credentials, and the dispatch policy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from foundation.settings import StateSettings


class ErpSettings(StateSettings):
    """Everything ERP sync reads from the environment (``WV_ERP_…``, ``WV_SAP_…``, ``WV_SALESFORCE_…``)."""

    erp_adapter: Literal["files", "sap", "salesforce"] = Field(
        "files", description="Where ERP sync sends records."
    )
    sap_base_url: str | None = Field(None, description="SAP OData service root URL.")
    sap_username: str | None = Field(None, description="SAP basic-auth user.")
    sap_password: SecretStr | None = Field(None, description="SAP basic-auth password (secret).")
    sap_oauth_token_url: str | None = Field(None, description="SAP OAuth token URL (instead of basic auth).")
    sap_client_id: str | None = Field(None, description="SAP OAuth client id.")
    sap_client_secret: SecretStr | None = Field(None, description="SAP OAuth client secret (secret).")
    salesforce_instance_url: str | None = Field(None, description="Salesforce instance URL.")
    salesforce_token_url: str | None = Field(None, description="Salesforce OAuth token URL.")
    salesforce_client_id: str | None = Field(None, description="Salesforce connected-app client id.")
    salesforce_client_secret: SecretStr | None = Field(None, description="Salesforce client secret (secret).")
    salesforce_api_version: str = Field(
        "v60.0",
        pattern=r"^v\d+\.\d$",
        description="Salesforce REST API version used in /services/data/<version>/.",
    )
    sap_damage_claim_set: str = Field(
        "DamageClaimSet", description="SAP OData entity set receiving damage claims."
    )
    sap_discrepancy_set: str = Field(
        "InventoryDiscrepancySet", description="SAP OData entity set receiving per-zone discrepancy lines."
    )
    erp_batch_size: int = Field(
        50, gt=0, le=1000, description="Outbox messages per ERP request ($batch) or pass."
    )
    erp_retry_attempts: int = Field(
        5, gt=0, description="Tries per message within one dispatch (429/503/network)."
    )
    erp_backoff_s: float = Field(
        1.0, gt=0, description="First backoff delay; doubles per try (plus Retry-After)."
    )
    erp_backoff_max_s: float = Field(
        60.0, gt=0, description="Longest wait inside a dispatch; longer waits defer."
    )
    erp_park_after: int = Field(
        20, gt=0, description="Total tries after which a still-failing message is parked."
    )
    erp_timeout_s: float = Field(30.0, gt=0, description="HTTP timeout of ERP requests.")
