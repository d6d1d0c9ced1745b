"""Log lines are structured and never carry a secret."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import SecretStr

from foundation.redaction import redact
from wv.settings import PlatformSettings


@pytest.fixture
def restore_root_logger() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_extra_fields_and_mask_secrets(
    settings: PlatformSettings, capsys: pytest.CaptureFixture[str], restore_root_logger: object
) -> None:
    secret_settings = settings.model_copy(
        update={"log_format": "json", "sap_password": SecretStr("hunter2-very-secret")}
    )
    secret_settings.configure_logging()

    logging.getLogger("wv.test").warning(
        "login to %s with hunter2-very-secret failed",
        "postgresql://app:pa55word@db.example:5432/wv",
        extra={"facility_id": "FAC-001"},
    )

    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["level"] == "warning" and line["logger"] == "wv.test" and line["facility_id"] == "FAC-001"
    assert line["message"] == "login to postgresql://app:***@db.example:5432/wv with *** failed"


def test_redact_masks_tokens_and_password_parameters() -> None:
    text = "Authorization: Bearer abc.def-123 host=db password=s3cret user=x"

    assert redact(text) == "Authorization: Bearer *** host=db password=*** user=x"
