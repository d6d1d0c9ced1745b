"""ERP sync: adapters behind one interface (files, SAP, Salesforce) and the outbox dispatcher.

``build_adapter`` picks the adapter named by ``WV_ERP_ADAPTER``; credentials come only from the
environment (the settings), never from Dagster run or resource configuration.
"""

from __future__ import annotations

from pathlib import Path

from assets.erp.base import ErpAdapter, ErpConfigError
from assets.erp.settings import ErpSettings


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def build_adapter(
    settings: ErpSettings, *, name: str | None = None, files_root: Path | None = None
) -> ErpAdapter:
    """The configured adapter; a missing or bad credential raises :class:`ErpConfigError` naming it."""
    from assets.erp.http import ClientCredentials, checked_url

    name = name or settings.erp_adapter
    if name == "files":
        from assets.erp.files import FilesAdapter

        return FilesAdapter(files_root or settings.state_dir / "erp")
    if name == "sap":
        from assets.erp.sap import SapAdapter

        oauth = None
        if settings.sap_oauth_token_url:
            if not (settings.sap_client_id and settings.sap_client_secret):
                raise ErpConfigError(
                    "WV_SAP_OAUTH_TOKEN_URL is set: WV_SAP_CLIENT_ID and WV_SAP_CLIENT_SECRET are needed"
                )
            oauth = ClientCredentials(
                checked_url(settings.sap_oauth_token_url, "WV_SAP_OAUTH_TOKEN_URL"),
                settings.sap_client_id,
                _secret(settings.sap_client_secret) or "",
                basic_client_auth=True,
            )
        return SapAdapter(
            base_url=checked_url(settings.sap_base_url, "WV_SAP_BASE_URL"),
            claim_set=settings.sap_damage_claim_set,
            discrepancy_set=settings.sap_discrepancy_set,
            username=settings.sap_username,
            password=_secret(settings.sap_password),
            oauth=oauth,
            batch_size=settings.erp_batch_size,
            timeout_s=settings.erp_timeout_s,
        )
    if name == "salesforce":
        from assets.erp.salesforce import SalesforceAdapter

        if not (settings.salesforce_client_id and settings.salesforce_client_secret):
            raise ErpConfigError("Salesforce needs WV_SALESFORCE_CLIENT_ID and WV_SALESFORCE_CLIENT_SECRET")
        oauth = ClientCredentials(
            checked_url(settings.salesforce_token_url, "WV_SALESFORCE_TOKEN_URL"),
            settings.salesforce_client_id,
            _secret(settings.salesforce_client_secret) or "",
        )
        if settings.salesforce_instance_url:
            checked_url(settings.salesforce_instance_url, "WV_SALESFORCE_INSTANCE_URL")
        return SalesforceAdapter(
            oauth=oauth,
            instance_url=settings.salesforce_instance_url,
            api_version=settings.salesforce_api_version,
            batch_size=settings.erp_batch_size,
            timeout_s=settings.erp_timeout_s,
        )
    raise ErpConfigError(f"WV_ERP_ADAPTER: unknown adapter {name!r} (files, sap or salesforce)")
