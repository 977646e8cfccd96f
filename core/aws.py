"""The boto3 clients of the adapters: the one place that makes them, so every function and tool gets the same region
rules and retry settings.

boto3 is imported when the first client is made, not with this module: the local twins and the CLIs, which never
make one, then start without the 0.4 s boto3 takes to import.
"""

from __future__ import annotations

import re
from typing import Any

#: CloudFront's home: its global APIs (the KeyValueStore data plane, distributions) answer in any region.
CLOUDFRONT_HOME_REGION = "us-east-1"
#: DynamoDB throttling is retried longer than botocore's default (standard mode, 8 attempts).
DYNAMODB_RETRIES = {"mode": "standard", "max_attempts": 8}
_ARN_REGION = re.compile(r"^arn:aws[\w-]*:[\w-]+:(?P<region>[a-z0-9-]+):")


def client(service: str, *, region: str | None = None, retries: dict[str, Any] | None = None,
           fallback_region: str | None = None) -> Any:
    """A client of ``service`` from the default session: in ``region`` when given, else the session's region, else
    ``fallback_region``; ``retries`` is botocore's retry configuration."""
    import boto3  # see the module's docstring
    from botocore.config import Config

    session = boto3.session.Session()
    config = Config(retries=retries) if retries else None
    return session.client(service, region_name=region or session.region_name or fallback_region, config=config)


def global_cloudfront_client(service: str) -> Any:
    """A client of a global CloudFront API (``cloudfront-keyvaluestore``, ``cloudfront``): any region reaches it;
    us-east-1 when the session names none."""
    return client(service, fallback_region=CLOUDFRONT_HOME_REGION)


def arn_region(arn: str) -> str | None:
    """The region field of an ARN, or None (not an ARN, or a global resource)."""
    match = _ARN_REGION.match(arn)
    return match["region"] if match else None


def secretsmanager_client(secret_id: str) -> Any:
    """A Secrets Manager client in the secret's own region (from its ARN), else the session's region."""
    return client("secretsmanager", region=arn_region(secret_id))


def dynamodb_client() -> Any:
    return client("dynamodb", retries=DYNAMODB_RETRIES)
