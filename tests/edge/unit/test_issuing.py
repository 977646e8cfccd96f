"""Issuing rules (edge/issuing.py): request validation, viewer recognition, binding choice, revocation refusal."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge.binding import Viewer
from edge.issuing import (
    InvalidIssueRequest,
    IssuePolicy,
    IssueRequest,
    MissingViewerAttribute,
    RevocationCheckFailed,
    SessionRevoked,
    issue,
    parse_viewer_address,
    token_request,
    viewer_from_request,
)
from edge.keys import SigningKey, generate_key
from edge.paths import split_token
from edge.verify import MappingReader, verify_request

NOW = 1_800_000_000
SID = "sessionABCDEFGH_123"
KEY = SigningKey("kid-1", b"k" * 32)


def edge_store(extra: dict[str, str] | None = None) -> MappingReader:
    return MappingReader({KEY.store_key: KEY.encoded, **(extra or {})})


def req(**fields) -> IssueRequest:
    return IssueRequest.model_validate({"asset_url": "https://cdn.example.com/vod/t1/master.m3u8", **fields})


# -- CloudFront-Viewer-Address and the viewer -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "ip"),
    [
        ("198.51.100.10:46532", "198.51.100.10"),
        ("2001:db8::1:443", "2001:db8::1"),  # CloudFront's IPv6 form: the port is after the last colon
        ("2001:db8:0:0:0:0:0:7:51000", "2001:db8::7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:203.0.113.7:8080", "203.0.113.7"),  # IPv4-mapped counts as IPv4
        ("198.51.100.10", None),  # no port
        ("198.51.100.10:99999", None),
        ("not-an-ip:443", None),
        ("", None),
    ],
)
def test_parse_viewer_address(header: str, ip: str | None) -> None:
    assert parse_viewer_address(header) == ip


def test_viewer_address_header_wins_over_source_ip() -> None:
    viewer = viewer_from_request({"CloudFront-Viewer-Address": "203.0.113.9:1234"}, source_ip="192.0.2.1")
    assert viewer.ip == "203.0.113.9"
    # A present but malformed header means "no address": the source IP would be CloudFront's, not the viewer's.
    viewer = viewer_from_request({"cloudfront-viewer-address": "garbage"}, source_ip="192.0.2.1")
    assert viewer.ip is None


def test_source_ip_only_when_viewer_address_absent() -> None:
    viewer = viewer_from_request({"User-Agent": "Player/1.0"}, source_ip="192.0.2.1")
    assert viewer.ip == "192.0.2.1"
    assert viewer.header("user-agent") == "Player/1.0"
    assert viewer_from_request({}, source_ip="::ffff:192.0.2.1").ip == "192.0.2.1"
    assert viewer_from_request({}, source_ip=None).ip is None


# -- binding names to descriptors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "descriptor"),
    [
        ("203.0.113.7:443", "ip/24"),
        ("2001:db8:1:2::9:443", "ip/48"),
        ("::ffff:203.0.113.7:443", "ip/24"),  # IPv4-mapped: the IPv4 prefix
    ],
)
def test_ip_prefix_follows_the_address_family(address: str, descriptor: str) -> None:
    viewer = viewer_from_request({"cloudfront-viewer-address": address})
    assert token_request(req(bind=["ip-prefix"]), viewer).bindings == (descriptor,)


def test_binding_names_map_to_descriptors() -> None:
    viewer = viewer_from_request(
        {
            "cloudfront-viewer-address": "203.0.113.7:443",
            "cloudfront-viewer-country": "de",
            "cloudfront-viewer-country-region": "be",
            "user-agent": "Player/1.0",
            "x-device-id": "dev-1",
        }
    )
    wanted = token_request(req(bind=["ip", "country", "region", "ua", "header:X-Device-Id"]), viewer)
    assert wanted.bindings == ("ip", "country", "region", "ua", "h:x-device-id")


def test_missing_attribute_is_an_error_naming_it() -> None:
    viewer = viewer_from_request({"cloudfront-viewer-country": "DE"})  # no address, no source IP, no UA
    with pytest.raises(MissingViewerAttribute) as info:
        token_request(req(bind=["country", "ip-prefix", "ua"]), viewer)
    message = str(info.value)
    assert "'ip-prefix'" in message and "CloudFront-Viewer-Address" in message
    assert "'ua'" in message and "User-Agent" in message
    assert "'country'" not in message
    assert info.value.reason == "missing-viewer-attribute"
    with pytest.raises(MissingViewerAttribute, match="x-token-ctx header"):
        token_request(req(bind=["header:x-token-ctx"]), viewer)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("cloudfront-viewer-country", "DE,FR"),  # a viewer's copy beside CloudFront's, joined by the function URL
        ("cloudfront-viewer-country", "Germany"),
        ("cloudfront-viewer-country", "D"),
        ("cloudfront-viewer-country-region", "BE,BY"),
        ("cloudfront-viewer-country-region", "BERL"),
    ],
)
def test_a_location_value_cloudfront_would_not_set_is_not_bound(header: str, value: str) -> None:
    name = "country" if header.endswith("country") else "region"
    viewer = viewer_from_request({"cloudfront-viewer-country": "DE", "cloudfront-viewer-country-region": "BE",
                                  header: value})
    with pytest.raises(MissingViewerAttribute, match=f"'{name}'.*ISO|'{name}'.*region code"):
        token_request(req(bind=[name]), viewer)


@pytest.mark.parametrize(
    "bind",
    [["geo"], ["header:"], ["header:bad_name"], ["header:" + "a" * 65], ["ip", "ip"], ["header:X-A", "header:x-a"]],
)
def test_bad_binding_names_are_rejected(bind: list[str]) -> None:
    with pytest.raises(ValidationError, match="bind"):
        req(bind=bind)


# -- request validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example.com/a.m3u8",
        "ftp://cdn.example.com/a.m3u8",
        "cdn.example.com/a.m3u8",
        "https:///a.m3u8",
        "https://user:pw@cdn.example.com/a.m3u8",
        "//cdn.example.com/a.m3u8",
        "/vod/../secret/a.m3u8",
        "/vod/%2e%2e/a.m3u8",
        "/vod/a b.m3u8",
        "",
    ],
)
def test_bad_asset_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValidationError, match="asset_url"):
        IssueRequest.model_validate({"asset_url": url})


def test_asset_url_may_be_an_absolute_path_or_https_url() -> None:
    assert IssueRequest.model_validate({"asset_url": "/vod/t1/master.m3u8"}).asset_url == "/vod/t1/master.m3u8"
    assert IssueRequest.model_validate({"asset_url": "https://cdn.example.com"}).asset_url


@pytest.mark.parametrize(
    "fields",
    [
        {"session_id": "short"},
        {"session_id": "x" * 33},
        {"session_id": "has.dot.in.it.1234567"},
        {"ttl_seconds": 0},
        {"ttl_seconds": -5},
        {"ttl_seconds": "60"},
        {"ttl_seconds": True},
        {"ttl_seconds": 1.5},
        {"path_prefixes": []},
        {"path_prefixes": ["vod/"]},
        {"exempt_prefixes": ["/keys/../x"]},
        {"path_prefixes": ["/live/"]},  # the asset is outside the scope it asks for
        {"unknown_field": 1},
    ],
)
def test_bad_requests_are_rejected(fields: dict) -> None:
    with pytest.raises(ValidationError):
        req(**fields)


def test_ttl_default_and_maximum_come_from_the_policy() -> None:
    policy = IssuePolicy(default_ttl_seconds=600, max_ttl_seconds=7200)
    viewer = Viewer()
    assert token_request(req(), viewer, policy).ttl_seconds == 600
    assert token_request(req(ttl_seconds=1), viewer, policy).ttl_seconds == 1
    assert token_request(req(ttl_seconds=7200), viewer, policy).ttl_seconds == 7200
    with pytest.raises(InvalidIssueRequest, match="maximum of 7200") as info:
        token_request(req(ttl_seconds=7201), viewer, policy)
    assert info.value.reason == "ttl-too-large"
    with pytest.raises(ValueError):
        IssuePolicy(default_ttl_seconds=7201, max_ttl_seconds=7200)
    with pytest.raises(ValueError):
        IssuePolicy(max_ttl_seconds=8 * 24 * 3600)


# -- revocation -------------------------------------------------------------------------------------------------


def test_revoked_session_is_refused() -> None:
    store = edge_store({f"r:{SID}": f"{NOW + 3600}|auto"})
    with pytest.raises(SessionRevoked, match=SID):
        issue(req(session_id=SID), Viewer(), KEY, store, now=NOW)


def test_expired_revocation_no_longer_refuses() -> None:
    store = edge_store({f"r:{SID}": f"{NOW - 1}|auto"})
    assert issue(req(session_id=SID), Viewer(), KEY, store, now=NOW).session_id == SID


def test_unreadable_revocation_expiry_fails_closed() -> None:
    store = edge_store({f"r:{SID}": "garbage|manual"})
    with pytest.raises(SessionRevoked):
        issue(req(session_id=SID), Viewer(), KEY, store, now=NOW)


def test_store_failure_refuses_a_chosen_session_id_but_not_a_fresh_one() -> None:
    class BrokenStore:
        def get(self, key: str) -> str | None:
            raise OSError("store down")

    with pytest.raises(RevocationCheckFailed, match="store down"):
        issue(req(session_id=SID), Viewer(), KEY, BrokenStore(), now=NOW)
    assert issue(req(), Viewer(), KEY, BrokenStore(), now=NOW).session_id != SID


def test_key_source_is_asked_only_after_the_checks() -> None:
    class CountingSource:
        calls = 0

        def current(self) -> SigningKey:
            self.calls += 1
            return KEY

    source = CountingSource()
    store = edge_store({f"r:{SID}": f"{NOW + 60}|auto"})
    with pytest.raises(SessionRevoked):
        issue(req(session_id=SID), Viewer(), source, store, now=NOW)
    with pytest.raises(MissingViewerAttribute):
        issue(req(bind=["ip"]), Viewer(), source, store, now=NOW)
    assert source.calls == 0
    assert issue(req(), Viewer(), source, store, now=NOW).kid == KEY.kid
    assert source.calls == 1


# -- issued URLs verify at the edge -----------------------------------------------------------------------------


def test_issued_url_verifies_for_the_viewer_and_not_for_another() -> None:
    headers = {"cloudfront-viewer-address": "203.0.113.7:5000", "user-agent": "Player/1.0"}
    viewer = viewer_from_request(headers)
    issued = issue(
        req(bind=["ip-prefix", "ua"], ttl_seconds=300, path_prefixes=["/vod/t1/"]), viewer, KEY, edge_store(), now=NOW
    )
    assert issued.url.startswith(f"https://cdn.example.com/{issued.session_id}.")
    assert issued.url.endswith("/vod/t1/master.m3u8")
    assert issued.expires_at == NOW + 300 and issued.kid == KEY.kid
    uri = "/" + issued.url.split("/", 3)[3]

    same_net = viewer_from_request({**headers, "cloudfront-viewer-address": "203.0.113.200:6000"})
    assert verify_request(uri, viewer, edge_store(), NOW).allowed
    assert verify_request(uri, same_net, edge_store(), NOW).allowed  # same /24
    other_net = viewer_from_request({**headers, "cloudfront-viewer-address": "198.51.100.7:5000"})
    denied = verify_request(uri, other_net, edge_store(), NOW)
    assert (denied.status, denied.reason) == (403, "binding")
    other_ua = viewer_from_request({**headers, "user-agent": "curl/8"})
    assert verify_request(uri, other_ua, edge_store(), NOW).reason == "binding"
    # the scope asked for is in the token
    outside = uri.replace("/vod/t1/master.m3u8", "/vod/t2/master.m3u8")
    assert verify_request(outside, viewer, edge_store(), NOW).reason == "out-of-scope"


def test_ipv6_exact_binding_verifies_across_notations() -> None:
    viewer = viewer_from_request({"cloudfront-viewer-address": "2001:db8::1:443"})
    issued = issue(req(bind=["ip"], asset_url="/live/ch1/index.m3u8"), viewer, KEY, edge_store(), now=NOW)
    parts = split_token(issued.url)
    assert parts.session_id == issued.session_id and parts.asset_path == "/live/ch1/index.m3u8"
    edge_viewer = Viewer.of("2001:0db8:0000:0000:0000:0000:0000:0001")
    assert verify_request(issued.url, edge_viewer, edge_store(), NOW).allowed
    assert verify_request(issued.url, Viewer.of("2001:db8::2"), edge_store(), NOW).reason == "binding"


def test_revoked_session_cannot_be_revived_by_a_new_token_but_another_session_can_play() -> None:
    store = edge_store({f"r:{SID}": f"{NOW + 3600}|auto"})
    with pytest.raises(SessionRevoked):
        issue(req(session_id=SID), Viewer(), KEY, store, now=NOW)
    fresh = issue(req(), Viewer(), KEY, store, now=NOW)
    assert fresh.session_id != SID
    assert verify_request("/" + fresh.url.split("/", 3)[3], Viewer(), store, NOW).allowed


def test_too_large_token_is_refused() -> None:
    prefixes = [f"/vod/{'x' * 400}{i}/" for i in range(12)] + ["/vod/t1/"]
    with pytest.raises(InvalidIssueRequest, match="at most 4096") as info:
        issue(req(path_prefixes=prefixes), Viewer(), generate_key(), edge_store(), now=NOW)
    assert info.value.reason == "token-too-large"


def test_exempt_prefixes_skip_binding_only_there() -> None:
    viewer = viewer_from_request({"cloudfront-viewer-address": "203.0.113.7:5000"})
    issued = issue(req(asset_url="/vod/t1/master.m3u8", bind=["ip"], exempt_prefixes=["/vod/t1/keys"]), viewer, KEY,
                   edge_store(), now=NOW)
    stranger = Viewer.of("198.51.100.1")
    key_uri = issued.url.replace("/vod/t1/master.m3u8", "/vod/t1/keys/k1.bin")
    assert verify_request(key_uri, stranger, edge_store(), NOW).allowed
    assert verify_request(issued.url, stranger, edge_store(), NOW).reason == "binding"
