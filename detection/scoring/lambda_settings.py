"""What a Lambda function that scores reads of the detection policy: ``DETECTION_CONFIG``, the config as JSON."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from core.lambda_support import ConfigurationError, LambdaSettings
from detection.networks.settings import NetworkSettings
from detection.scoring.config import DetectionConfig


class DetectionConfigSettings(LambdaSettings):
    """``DETECTION_CONFIG``: the detection config as JSON (empty: the defaults)."""

    detection_config: str = Field("", validation_alias="DETECTION_CONFIG")

    def _config_data(self) -> dict[str, Any]:
        if not self.detection_config:
            return {}
        try:
            data = json.loads(self.detection_config)
        except ValueError as exc:
            raise ConfigurationError(f"DETECTION_CONFIG is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigurationError("DETECTION_CONFIG must be a JSON object")
        return data

    def config(self) -> DetectionConfig:
        try:
            return DetectionConfig.load(self._config_data())
        except ValueError as exc:
            raise ConfigurationError(f"DETECTION_CONFIG is not a valid detection configuration: {exc}") from exc

    def networks(self) -> NetworkSettings:
        """Only the config's ``networks`` section (what features.sql needs), without the policy."""
        try:
            return NetworkSettings.model_validate(self._config_data().get("networks", {}))
        except ValueError as exc:
            raise ConfigurationError(f"DETECTION_CONFIG networks is not valid: {exc}") from exc
