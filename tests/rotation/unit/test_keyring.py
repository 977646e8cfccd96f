"""The rotation plan (rotation.keyring): secret value format, which keys are kept and which are deleted, and when."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.b64 import b64url_decode
from edge.keys import generate_key, parse_key_text
from edge.verify import SKEW_SECONDS
from rotation.keyring import (
    InvalidSecretValue,
    KeyRing,
    RetiredKey,
    RotationConflict,
    RotationPolicy,
    check_successor,
    is_stale,
    parse_secret_value,
    plan_rotation,
    promotion_deadline,
    store_changes,
)

HOUR, DAY = 3600, 86400
POLICY_1H = RotationPolicy(max_token_lifetime=HOUR)  # margin 300, issuer cache 60
T0 = 1_767_225_600


def ring(kid: str = "cur", created: int | None = T0, retired: tuple[tuple[str, int], ...] = ()) -> KeyRing:
    return KeyRing(current=generate_key(kid), created=created, retired=tuple(RetiredKey(k, t) for k, t in retired))


# -- the secret value --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [None, "", "   ", "Zx8#random-generated-password", "[]", "{", '{"kid": "a"}', '{"kid": 1, "key": "x"}',
     json.dumps({"kid": "a", "key": "c2hvcnQ"}),  # 5 bytes: not a usable key
     json.dumps({"kid": "bad kid!", "key": generate_key().encoded})],
)
def test_a_value_without_a_usable_key_is_an_empty_ring(text: str | None) -> None:
    assert parse_secret_value(text) == KeyRing()
    assert parse_secret_value(text).is_empty


def test_round_trip_and_edge_sign_reads_the_same_value() -> None:
    value = ring("k2", T0, (("k0", T0 - 10), ("k1", T0 - 5)))
    text = value.to_json()
    assert parse_secret_value(text) == value
    key = parse_key_text(text)  # what `python -m edge sign --key-file F` does
    assert key.kid == "k2" and key.secret == value.current.secret
    assert json.loads(text)["retired"] == [{"kid": "k0", "retired_at": T0 - 10}, {"kid": "k1", "retired_at": T0 - 5}]


def test_a_bare_kid_and_key_secret_is_a_ring_without_history() -> None:
    key = generate_key("handmade")
    parsed = parse_secret_value(key.to_secret_json())
    assert parsed.current == key and parsed.created is None and parsed.retired == ()


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"retired": {"kid": "a"}}, "must be a list"),
        ({"retired": [{"kid": "a"}]}, "retired\\[0\\]"),
        ({"retired": [{"kid": "a", "retired_at": True}]}, "retired\\[0\\]"),
        ({"retired": [{"kid": "a", "retired_at": "1"}]}, "retired\\[0\\]"),
        ({"retired": [{"kid": "no spaces", "retired_at": 1}]}, "retired\\[0\\]"),
        ({"retired": [{"kid": "a", "retired_at": 1}, {"kid": "a", "retired_at": 2}]}, "more than once"),
        ({"retired": [{"kid": "cur", "retired_at": 1}]}, "more than once"),
        ({"created": -1}, "created"),
        ({"created": 1.5}, "created"),
    ],
)
def test_a_key_with_unreadable_history_is_refused_not_guessed(extra: dict, message: str) -> None:
    doc = {"kid": "cur", "key": generate_key().encoded, **extra}
    with pytest.raises(InvalidSecretValue, match=message):
        parse_secret_value(json.dumps(doc))


def test_errors_and_repr_never_contain_key_material() -> None:
    value = ring("k2")
    assert value.current.encoded not in repr(value)
    doc = {"kid": "k", "key": value.current.encoded, "retired": "x"}
    with pytest.raises(InvalidSecretValue) as info:
        parse_secret_value(json.dumps(doc))
    assert value.current.encoded not in str(info.value)


# -- the plan ----------------------------------------------------------------------------------------------------


def test_first_rotation_creates_the_first_key() -> None:
    plan = plan_rotation(KeyRing(), T0, POLICY_1H)
    pending = plan.pending
    assert pending.current is not None and pending.created == T0 and pending.retired == ()
    assert len(b64url_decode(pending.current.encoded)) >= 32
    assert dict(plan.changes.puts) == {f"k:{pending.current.kid}": pending.current.encoded}
    assert plan.changes.deletes == ()


def test_rotation_retires_the_current_key_now_and_puts_a_new_one() -> None:
    current = ring("cur", T0 - DAY)
    plan = plan_rotation(current, T0, POLICY_1H)
    assert plan.new_kid not in ("cur",)
    assert plan.pending.retired == (RetiredKey("cur", T0),)
    assert plan.pending.current.secret != current.current.secret
    # The new key, and the current one again (a no-op write that heals a store which lost it).
    assert dict(plan.changes.puts) == {
        f"k:{plan.new_kid}": plan.pending.current.encoded,
        "k:cur": current.current.encoded,
    }
    assert plan.changes.deletes == ()
    check_successor(current, plan.pending)  # planned from it


def test_kids_are_unique_and_keys_random() -> None:
    plans = [plan_rotation(KeyRing(), T0, POLICY_1H) for _ in range(50)]
    assert len({p.new_kid for p in plans}) == 50
    assert len({p.pending.current.secret for p in plans}) == 50
    with pytest.raises(ValueError, match="already in use"):
        plan_rotation(ring("cur"), T0, POLICY_1H, new_key=generate_key("cur"))


@pytest.mark.parametrize(
    "age, deleted",
    [
        (HOUR + 300 - 1, False),  # one second before every token it signed is certainly expired
        (HOUR + 300, True),  # exactly at retired_at + lifetime + margin
        (HOUR + 300 + 1, True),
        (0, False),
    ],
)
def test_expiry_boundary(age: int, deleted: bool) -> None:
    now = T0 + 10 * DAY
    current = ring("cur", now - age, (("old", now - age),))
    plan = plan_rotation(current, now, POLICY_1H)
    assert ("old" not in plan.pending.kids) is deleted
    assert plan.changes.deletes == (("k:old",) if deleted else ())
    assert "cur" in plan.pending.kids  # the current key is always kept


def test_only_expired_retired_keys_go_and_order_is_kept() -> None:
    now = T0
    current = ring("cur", now - 100, (("a", now - 3 * DAY), ("b", now - HOUR - 301), ("c", now - HOUR), ("d", now - 100)))
    plan = plan_rotation(current, now, POLICY_1H)
    assert [r.kid for r in plan.pending.retired] == ["c", "d", "cur"]
    assert set(plan.changes.deletes) == {"k:a", "k:b"}
    assert plan.pending.kids[-1] == plan.new_kid


def test_store_changes_never_delete_the_current_key() -> None:
    current = ring("cur", T0, (("old", T0),))
    stranger = ring("other", T0)  # not planned from current (no 'cur' in it)
    changes = store_changes(current, stranger)
    assert "k:cur" not in changes.deletes and changes.deletes == ("k:old",)
    with pytest.raises(RotationConflict, match="not planned from the current value"):
        check_successor(current, stranger)
    check_successor(KeyRing(), stranger)  # anything may follow an empty ring


def test_promotion_deadline_boundary() -> None:
    policy = RotationPolicy(max_token_lifetime=HOUR, margin=300, issuer_cache=60)
    assert policy.max_promotion_lag == 300 - 60 - SKEW_SECONDS == 210
    pending = ring("new", T0)
    assert promotion_deadline(pending, policy) == T0 + 210
    assert not is_stale(pending, T0 + 210, policy)
    assert is_stale(pending, T0 + 211, policy)
    assert not is_stale(ring("new", None), T0 + 10**6, policy)  # no 'created': no limit


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_token_lifetime": 0}, "at least 1"),
        ({"max_token_lifetime": HOUR, "margin": 89}, "must cover"),
        ({"max_token_lifetime": HOUR, "issuer_cache": -1}, "negative"),
        ({"max_token_lifetime": 1.5}, "whole number"),
        ({"max_token_lifetime": True}, "whole number"),
    ],
)
def test_policy_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RotationPolicy(**kwargs)


# -- the timeline ------------------------------------------------------------------------------------------------


def simulate(policy: RotationPolicy, times: list[int]) -> list[tuple[str, ...]]:
    """Rotate at each time (all four steps at once) and return the kids in the store after each rotation."""
    current, store, after = KeyRing(), set(), []
    for now in times:
        plan = plan_rotation(current, now, policy)
        store |= {k.removeprefix("k:") for k in plan.changes.puts}
        store -= set(plan.changes.deleted_kids)
        assert store == set(plan.pending.kids)  # the store holds exactly what the secret lists
        current = plan.pending
        after.append(current.kids)
    return after


def test_timeline_daily_rotation_one_hour_tokens() -> None:
    """Daily, 1 h tokens: the current key and the previous one (its tokens died 65 min after it was retired)."""
    after = simulate(RotationPolicy(max_token_lifetime=HOUR), [T0 + d * DAY for d in range(5)])
    assert [len(kids) for kids in after] == [1, 2, 2, 2, 2]
    assert after[3][0] == after[2][1]  # yesterday's current key is today's previous key


def test_timeline_daily_rotation_one_day_tokens() -> None:
    """Daily, 24 h tokens: the previous key is needed all day and 5 min more, so the one before it goes a day later."""
    after = simulate(RotationPolicy(max_token_lifetime=DAY), [T0 + d * DAY for d in range(6)])
    assert [len(kids) for kids in after] == [1, 2, 3, 3, 3, 3]
    # Rotations 5 min late (e.g. the rotation window) let the key before the previous one go one rotation earlier.
    after = simulate(RotationPolicy(max_token_lifetime=DAY), [T0 + d * (DAY + 300) for d in range(6)])
    assert [len(kids) for kids in after] == [1, 2, 2, 2, 2, 2]


@settings(max_examples=200, deadline=None)
@given(
    lifetime=st.integers(min_value=1, max_value=7 * DAY),
    margin_extra=st.integers(min_value=0, max_value=3600),
    gaps=st.lists(st.integers(min_value=1, max_value=3 * DAY), min_size=1, max_size=12),
)
def test_a_key_stays_while_any_token_it_signed_can_be_valid_and_goes_after(
    lifetime: int, margin_extra: int, gaps: list[int]
) -> None:
    """Keys stay while a token they signed can still pass the edge, and are deleted at the first rotation after.

    A key K retired at rotation time r may still sign until r + max_promotion_lag + issuer_cache; such a token lives
    until at most that + lifetime, and the edge accepts it SKEW seconds longer.
    """
    policy = RotationPolicy(max_token_lifetime=lifetime, margin=90 + margin_extra)
    now, current, retired_at = T0, KeyRing(), {}
    for gap in gaps:
        now += gap
        plan = plan_rotation(current, now, policy)
        if current.current is not None:
            retired_at[current.current.kid] = now
        for kid, r in retired_at.items():
            last_accepted = r + policy.max_promotion_lag + policy.issuer_cache + lifetime + SKEW_SECONDS
            kept = kid in plan.pending.kids
            assert kept or now >= last_accepted, f"{kid} deleted at {now}, tokens valid until {last_accepted}"
            if now >= r + lifetime + policy.margin:
                assert not kept  # and not kept a rotation longer than needed
        current = plan.pending
