"""CloudFront distributions behind one small adapter: read a distribution's configuration with its ETag, write it back
with that ETag (``IfMatch``), and nothing else. The rules for changing a configuration live in
:mod:`tools.attach`, which never sees boto3.
"""

from __future__ import annotations

from typing import Any

from core.aws import global_cloudfront_client

__all__ = ["CloudFrontDistributions", "DistributionChangedError", "DistributionError"]


class DistributionError(Exception):
    """The distribution cannot be read or updated; the message says which and why."""


class DistributionChangedError(DistributionError):
    """The distribution changed after it was read (the ETag no longer matches): read it again and re-plan."""


class CloudFrontDistributions:
    """``GetDistributionConfig`` / ``UpdateDistribution`` with ETags, errors turned into :class:`DistributionError`."""

    def __init__(self, client: Any = None) -> None:
        self.client = client if client is not None else global_cloudfront_client("cloudfront")

    def get_config(self, distribution_id: str) -> tuple[dict[str, Any], str]:
        """``(DistributionConfig, ETag)``."""
        response = self._call("read", distribution_id, self.client.get_distribution_config, Id=distribution_id)
        return response["DistributionConfig"], response["ETag"]

    def update_config(self, distribution_id: str, config: dict[str, Any], etag: str) -> tuple[dict[str, Any], str]:
        """Write ``config`` if the distribution still has ``etag``; returns the configuration as CloudFront stored it
        and the new ETag. Raises :class:`DistributionChangedError` when someone changed it in between."""
        response = self._call(
            "update", distribution_id, self.client.update_distribution,
            Id=distribution_id, IfMatch=etag, DistributionConfig=config,
        )
        return response["Distribution"]["DistributionConfig"], response["ETag"]

    def _call(self, verb: str, distribution_id: str, method: Any, **request: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "Unknown"), error.get("Message", str(exc))
            if code in ("PreconditionFailed", "InvalidIfMatchVersion"):
                raise DistributionChangedError(
                    f"distribution {distribution_id} changed since it was read ({code}): run the command again"
                ) from None
            if code == "NoSuchDistribution":
                raise DistributionError(f"no distribution {distribution_id} in this account") from None
            if code in ("AccessDenied", "AccessDeniedException"):
                action = "cloudfront:GetDistributionConfig" if verb == "read" else "cloudfront:UpdateDistribution"
                raise DistributionError(f"not allowed to {verb} distribution {distribution_id}: needs {action} ({message})") from None
            raise DistributionError(f"cannot {verb} distribution {distribution_id}: {code}: {message}") from None
        except BotoCoreError as exc:
            raise DistributionError(f"cannot {verb} distribution {distribution_id}: {exc}") from None
