"""Key sources: the Secrets Manager one against moto, and its local file twin, held to the same behaviour."""

from __future__ import annotations

import os
import time
from pathlib import Path

import boto3
import pytest

from edge.key_source import (
    FileKeySource,
    KeySourceConfigError,
    KeySourceError,
    SecretsManagerKeySource,
    SigningKeyMalformedError,
    SigningKeyMissingError,
    key_source_from_env,
)
from edge.keys import generate_key
from tests.helpers import mocked_aws

REGION = "eu-west-1"
OTHER_REGION = "ap-southeast-2"
NAME = "media-shield/signing-key"


@pytest.fixture(scope="module")
def aws():
    """One moto session for the module (starting it and making clients is the slow part); state is reset per test."""
    with mocked_aws(REGION):
        yield {region: boto3.client("secretsmanager", region_name=region) for region in (REGION, OTHER_REGION)}


@pytest.fixture
def secrets(aws):
    yield aws[REGION]
    for client in aws.values():  # leave no secret behind for the next test
        for secret in client.list_secrets()["SecretList"]:
            client.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)


class CountingClient:
    """Wraps the moto-backed client to count GetSecretValue calls and record their arguments."""

    def __init__(self, client) -> None:
        self.client = client
        self.calls: list[dict] = []

    def get_secret_value(self, **kwargs):
        self.calls.append(kwargs)
        return self.client.get_secret_value(**kwargs)


# -- Secrets Manager ---------------------------------------------------------------------------------------------


def test_reads_awscurrent(secrets) -> None:
    key = generate_key("kid-a")
    arn = secrets.create_secret(Name=NAME, SecretString=key.to_secret_json())["ARN"]
    counting = CountingClient(secrets)
    source = SecretsManagerKeySource(arn, client=counting)
    assert source.current() == key
    assert counting.calls == [{"SecretId": arn, "VersionStage": "AWSCURRENT"}]


def test_pending_version_is_not_used(secrets) -> None:
    current, pending = generate_key("kid-current"), generate_key("kid-pending")
    secrets.create_secret(Name=NAME, SecretString=current.to_secret_json())
    # mid-rotation: createSecret has staged the next key as AWSPENDING
    secrets.put_secret_value(SecretId=NAME, SecretString=pending.to_secret_json(), VersionStages=["AWSPENDING"])
    assert SecretsManagerKeySource(NAME, client=secrets).current() == current


def test_caches_within_cache_seconds_and_picks_up_rotation_after(secrets) -> None:
    old, new = generate_key("kid-old"), generate_key("kid-new")
    secrets.create_secret(Name=NAME, SecretString=old.to_secret_json())
    counting = CountingClient(secrets)
    source = SecretsManagerKeySource(NAME, client=counting, cache_seconds=1)

    assert source.current() == old
    secrets.put_secret_value(SecretId=NAME, SecretString=new.to_secret_json())  # rotation: new AWSCURRENT
    assert source.current() == old  # still cached
    assert len(counting.calls) == 1
    time.sleep(1.05)
    assert source.current() == new  # cache expired: re-read
    assert len(counting.calls) == 2
    assert source.current() == new and len(counting.calls) == 2
    source.invalidate()
    assert source.current() == new and len(counting.calls) == 3


def test_zero_cache_reads_every_time(secrets) -> None:
    secrets.create_secret(Name=NAME, SecretString=generate_key("k").to_secret_json())
    counting = CountingClient(secrets)
    source = SecretsManagerKeySource(NAME, client=counting, cache_seconds=0)
    source.current()
    source.current()
    assert len(counting.calls) == 2


def test_missing_secret_is_a_clear_error(secrets) -> None:
    source = SecretsManagerKeySource("media-shield/absent", client=secrets)
    with pytest.raises(SigningKeyMissingError, match="media-shield/absent") as info:
        source.current()
    assert info.value.reason == "missing" and isinstance(info.value, KeySourceError)


def test_secret_without_a_value_is_missing(secrets) -> None:
    secrets.create_secret(Name=NAME)  # no SecretString: no AWSCURRENT version
    with pytest.raises(SigningKeyMissingError, match="AWSCURRENT"):
        SecretsManagerKeySource(NAME, client=secrets).current()


@pytest.mark.parametrize(
    ("secret_string", "text"),
    [
        ("not json at all", "is not JSON"),
        ('{"kid": "k1"', "not valid JSON"),
        ('{"kid": "k1"}', '"kid"'),
        ('{"kid": "k1", "key": "c2hvcnQ"}', "at least 32"),
        ('{"kid": "bad kid", "key": "' + "A" * 43 + '"}', "1-64 characters"),
        ('{"kid": "k1", "key": "not+base64url/"}', "base64url"),
    ],
)
def test_malformed_secret_is_a_clear_error_without_its_content(secrets, secret_string: str, text: str) -> None:
    secrets.create_secret(Name=NAME, SecretString=secret_string)
    with pytest.raises(SigningKeyMalformedError, match=text) as info:
        SecretsManagerKeySource(NAME, client=secrets).current()
    assert NAME in str(info.value)
    assert "c2hvcnQ" not in str(info.value) and "A" * 43 not in str(info.value)


def test_binary_secret_is_malformed(secrets) -> None:
    secrets.create_secret(Name=NAME, SecretBinary=generate_key("k").secret)
    with pytest.raises(SigningKeyMalformedError, match="SecretString"):
        SecretsManagerKeySource(NAME, client=secrets).current()


def test_failed_read_is_not_cached(secrets) -> None:
    key = generate_key("kid-late")
    source = SecretsManagerKeySource(NAME, client=secrets)
    with pytest.raises(SigningKeyMissingError):
        source.current()
    secrets.create_secret(Name=NAME, SecretString=key.to_secret_json())
    assert source.current() == key  # the failure was not cached


def test_default_client_uses_the_region_of_the_arn(secrets, aws) -> None:
    key = generate_key("kid-r")
    arn = aws[OTHER_REGION].create_secret(Name=NAME, SecretString=key.to_secret_json())["ARN"]
    assert SecretsManagerKeySource(arn).current() == key  # AWS_DEFAULT_REGION is eu-west-1


def test_errors_other_than_not_found_are_unavailable() -> None:
    from botocore.exceptions import ClientError

    class DeniedClient:
        def get_secret_value(self, **kwargs):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetSecretValue")

    with pytest.raises(KeySourceError, match="AccessDeniedException") as info:
        SecretsManagerKeySource(NAME, client=DeniedClient()).current()
    assert info.value.reason == "unavailable"
    assert not isinstance(info.value, (SigningKeyMissingError, SigningKeyMalformedError))


# -- the local file twin -----------------------------------------------------------------------------------------


def test_file_source_reads_and_rereads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "signing-secret.json"
    old, new = generate_key("kid-old"), generate_key("kid-new")
    path.write_text(old.to_secret_json())
    source = FileKeySource(path)
    assert source.current() == old
    assert source.current() == old
    # rotation rewrites the file (atomically, like `python -m rotation rotate --secret-file`)
    tmp = tmp_path / "signing-secret.json.tmp"
    tmp.write_text(new.to_secret_json())
    os.replace(tmp, path)
    assert source.current() == new


def test_file_source_rereads_an_in_place_edit(tmp_path: Path) -> None:
    path = tmp_path / "signing-secret.json"
    first, second = generate_key("kid-1"), generate_key("kid-2")
    path.write_text(first.to_secret_json())
    source = FileKeySource(path)
    assert source.current() == first
    path.write_text(second.to_secret_json())
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # make sure the mtime moves
    assert source.current() == second


def test_file_source_errors(tmp_path: Path) -> None:
    path = tmp_path / "signing-secret.json"
    with pytest.raises(SigningKeyMissingError, match="does not exist"):
        FileKeySource(path).current()
    path.write_text(generate_key("k").encoded)  # a raw key is not the secret's shape
    with pytest.raises(SigningKeyMalformedError, match="not JSON"):
        FileKeySource(path).current()
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(SigningKeyMalformedError, match="UTF-8"):
        FileKeySource(path).current()
    path.write_text('{"kid": "k1", "key": "c2hvcnQ"}')
    with pytest.raises(SigningKeyMalformedError, match="at least 32") as info:
        FileKeySource(path).current()
    assert "c2hvcnQ" not in str(info.value)


def test_file_source_does_not_serve_a_stale_key_once_the_file_breaks(tmp_path: Path) -> None:
    path = tmp_path / "signing-secret.json"
    path.write_text(generate_key("k").to_secret_json())
    source = FileKeySource(path)
    source.current()
    path.unlink()
    with pytest.raises(SigningKeyMissingError):
        source.current()


# -- choosing a source from the environment ----------------------------------------------------------------------


def test_key_source_from_env(tmp_path: Path) -> None:
    file_source = key_source_from_env({"SIGNING_KEY_FILE": str(tmp_path / "k.json")})
    assert isinstance(file_source, FileKeySource) and file_source.path == tmp_path / "k.json"
    secret_source = key_source_from_env({"SIGNING_SECRET_ARN": NAME, "SIGNING_KEY_CACHE_SECONDS": "5"})
    assert isinstance(secret_source, SecretsManagerKeySource)
    assert (secret_source.secret_id, secret_source.cache_seconds) == (NAME, 5.0)
    assert key_source_from_env({"SIGNING_SECRET_ARN": NAME, "SIGNING_KEY_FILE": " "}).cache_seconds == 60


@pytest.mark.parametrize(
    ("env", "text"),
    [
        ({}, "SIGNING_SECRET_ARN"),
        ({"SIGNING_SECRET_ARN": "a", "SIGNING_KEY_FILE": "b"}, "not both"),
        ({"SIGNING_SECRET_ARN": "a", "SIGNING_KEY_CACHE_SECONDS": "soon"}, "not a number"),
        ({"SIGNING_SECRET_ARN": "a", "SIGNING_KEY_CACHE_SECONDS": "-1"}, ">= 0"),
        ({"SIGNING_SECRET_ARN": "a", "SIGNING_KEY_CACHE_SECONDS": "nan"}, ">= 0"),
    ],
)
def test_key_source_from_env_errors(env: dict[str, str], text: str) -> None:
    with pytest.raises(KeySourceConfigError, match=text):
        key_source_from_env(env)
