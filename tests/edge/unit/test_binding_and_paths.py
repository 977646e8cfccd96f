import pytest

from edge.binding import (
    BindingError,
    Viewer,
    attribute_value,
    bind,
    binding_matches,
    canonical_ip,
    ip_binding,
    validate_descriptor,
)
from edge.paths import PathShapeError, is_safe_path, prefix_matches, split_token

KEY = b"k" * 32


@pytest.mark.parametrize(
    "spelling",
    ["2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:DB8:0:0::1", "2001:db8:0::0:1"],
)
def test_ipv6_spellings_are_one_address(spelling: str) -> None:
    assert canonical_ip(spelling) == "2001:0db8:0000:0000:0000:0000:0000:0001"


@pytest.mark.parametrize("spelling", ["::ffff:198.51.100.7", "::ffff:c633:6407", "0:0:0:0:0:ffff:c633:6407"])
def test_ipv4_mapped_is_the_ipv4_address(spelling: str) -> None:
    assert canonical_ip(spelling) == "198.51.100.7"
    assert canonical_ip(spelling, 24) == "198.51.100.0/24"


def test_prefixes_and_families() -> None:
    assert canonical_ip("2001:db8:1:ffff::9", 48) == "2001:0db8:0001:0000:0000:0000:0000:0000/48"
    assert canonical_ip("203.0.113.77", 24) == "203.0.113.0/24"
    assert canonical_ip("203.0.113.77", 48) is None  # IPv4 cannot take /48
    assert canonical_ip("not an ip") is None


def test_ip_binding_parses_cli_values() -> None:
    assert ip_binding("203.0.113.0/24") == ("ip/24", "203.0.113.0")
    assert ip_binding("2001:db8:1::/48") == ("ip/48", "2001:db8:1::")
    assert ip_binding("::ffff:203.0.113.5") == ("ip", "203.0.113.5")
    with pytest.raises(BindingError, match="neither"):
        ip_binding("203.0.113.0/33")
    with pytest.raises(BindingError, match="IPv4-mapped"):
        ip_binding("::ffff:203.0.113.0/120")


@pytest.mark.parametrize("bad", ["IP", "ip/129", "ip/024", "h:X-Upper", "h:", "cookie", "h:a b"])
def test_unknown_descriptors_rejected(bad: str) -> None:
    with pytest.raises(BindingError):
        validate_descriptor(bad)


def test_missing_attribute_never_skips_a_binding() -> None:
    viewer = Viewer.of("203.0.113.5", {"User-Agent": "player"})
    mac = bind(KEY, ["ip/24", "ua"], viewer)
    assert binding_matches(KEY, ["ip/24", "ua"], mac, Viewer.of("203.0.113.99", {"user-agent": "player"}))
    assert not binding_matches(KEY, ["ip/24", "ua"], mac, Viewer.of("203.0.113.99", {}))
    assert not binding_matches(KEY, ["ip/24", "ua"], mac, Viewer.of(None, {"user-agent": "player"}))
    with pytest.raises(BindingError, match="ua"):
        bind(KEY, ["ip", "ua"], Viewer.of("203.0.113.5"))


def test_country_and_region_are_case_insensitive_values() -> None:
    viewer = Viewer.of(None, {"CloudFront-Viewer-Country": "de", "CloudFront-Viewer-Country-Region": "be"})
    assert attribute_value("country", viewer) == "DE"
    assert attribute_value("region", viewer) == "BE"


def test_binding_mac_depends_on_key_and_order() -> None:
    viewer = Viewer.of("203.0.113.5", {"user-agent": "p"})
    assert bind(KEY, ["ip", "ua"], viewer) != bind(b"x" * 32, ["ip", "ua"], viewer)
    assert bind(KEY, ["ip", "ua"], viewer) != bind(KEY, ["ua", "ip"], viewer)


def test_split_token_shapes() -> None:
    parts = split_token("/abcdefghijklmnop.aa.bb.cc/live/x.ts")
    assert (parts.session_id, parts.jwt, parts.asset_path) == ("abcdefghijklmnop", "aa.bb.cc", "/live/x.ts")
    assert split_token("/abcdefghijklmnop.aa.bb.cc").asset_path == "/"
    for uri, reason in [("/live/x.ts", "missing-token"), ("relative", "missing-token"),
                        ("/short.aa.bb.cc/x", "malformed-token"), ("/abcdefghijklmnop.aa.bb/x", "malformed-token"),
                        ("/abcdefghijklmnop.aa.b+b.cc/x", "malformed-token"),
                        ("/abcdefghijklmnop." + "a" * 4096 + ".b.c/x", "malformed-token")]:
        with pytest.raises(PathShapeError) as info:
            split_token(uri)
        assert info.value.reason == reason, uri


@pytest.mark.parametrize(
    "path,safe",
    [("/live/a.ts", True), ("/", True), ("/a/../b", False), ("/a/./b", False), ("/a//b", False),
     ("/a/%2e%2e/b", False), ("/a%2Fb", False), ("/a%5cb", False), ("/a\\b", False), ("/a%00", False),
     ("/a\x01b", False), ("relative", False), ("/a/..b/c", True), ("/a/%41", False), ("/a/seg_1.t%73", False),
     ("/a/%252E", False), ("/a/caf%c3%a9", False), ("/a/%C0%AE", False), ("/a/%E0%9F%BF", False), ("/a/%F0%8F", False),
     ("/a/%F5", False), ("/a/x%3Bx", False), ("/a/%", False), ("/a/%4", False), ("/a/caf%C3%A9", True),
     ("/a/a%20b", True), ("/a/50%25.ts", True), ("/a/%E0%A0%80", True), ("/a/%F0%90%80%80", True)],
)
def test_safe_paths(path: str, safe: bool) -> None:
    assert is_safe_path(path) is safe


def test_prefix_boundaries() -> None:
    assert prefix_matches("/live/ch1", "/live/ch1")
    assert prefix_matches("/live/ch1", "/live/ch1/a.ts")
    assert not prefix_matches("/live/ch1", "/live/ch10/a.ts")
    assert prefix_matches("/live/", "/live/ch10/a.ts")
    assert not prefix_matches("/live/ch1/", "/live/ch1")
