"""Rule engine limits through the twin API (security review H6).

A rule (a scan's `match`, a role's rules) is bounded in length, nesting
and work per evaluation (components/rules, `Limits`). Over a limit it is a
400 naming the limit, never a 500 from an exhausted Wasm stack, and an
evaluation that would copy gigabytes ends at its budget in milliseconds.
A `match` whose evaluation exceeds the budget is refused (400) rather than
counted as "no match" for every twin of the scan.
"""

from __future__ import annotations

import time

import pytest

from twins_helpers import Account, account, assert_error, create_role, create_twin, expect_error, ok, raw

FORMAT = {"http": 400, "subcode": 400589}
BIG = "A" * 60_000


@pytest.fixture(scope="module")
def acct(server) -> Account:
    a = account(server)
    create_twin(a.tt, {"kind": "big", "x": BIG})
    create_twin(a.tt, {"kind": "small"})
    return a


def scan(a: Account, rule: str) -> tuple[int, dict]:
    return raw(a.server, "GET", "/twins", a.secret, params={"match": rule, "count": 1000})


def refused(a: Account, rule: str, limit: str) -> dict:
    status, body = scan(a, rule)
    assert_error(status, body, **FORMAT)
    assert limit in body["description"], body
    return body


def test_the_reviews_deep_match_is_a_400_naming_the_length_limit(acct):
    body = refused(acct, "-" * 60_000 + "1", "rule longer than 4096 bytes")
    assert "'match'" in body["description"], body


@pytest.mark.parametrize("rule", [
    "-" * 4000 + "1",
    "(" * 2000 + "1" + ")" * 2000,
    "not " * 1000 + "true",
    "TWIN" + ".a" * 2000,
    "[" * 2000 + "]" * 2000,
])
def test_deep_nesting_within_the_length_is_a_400_naming_the_depth_limit(acct, rule):
    refused(acct, rule, "rule nesting deeper than 64")


def deepest(levels: int) -> str:
    """`levels` brackets, each holding every operator layer that adds no
    nesting level of its own (`twin` is the twin's uuid, `now` a number)."""
    s = "now"
    for _ in range(levels):
        s = f"(f or twin and now == now + now * {s} ? now : now)"
    return s


def test_the_deepest_accepted_match_evaluates_on_the_wasm_stack(acct):
    # The whole rule is one level, each bracket one more, the innermost
    # `? :` branches one more: 62 brackets is the deepest rule there is.
    rule = deepest(62)
    assert len(rule) <= 4096
    status, body = scan(acct, rule)
    assert status == 200, body
    assert len(body["twins"]) == 2, body
    refused(acct, deepest(63), "rule nesting deeper than 64")


def test_a_role_rule_over_the_length_limit_is_a_400_naming_it(acct):
    role = create_role(acct.tt, ["get_twin"], rules={"twin_rule": "true"})
    long_rule = " or ".join(["TWIN.kind == 'small'"] * 200)
    assert len(long_rule) > 4096
    body = expect_error(acct.tt.update_user_role, role, body={"rules": {"twin_rule": long_rule}}, **FORMAT)
    assert "rule longer than 4096 bytes" in body["description"], body
    assert "rules.twin_rule" in body["description"], body
    # A long rule within the limit is fine, and flat runs are not nesting.
    within = " or ".join(["TWIN.kind == 'small'"] * 150)
    assert len(within) <= 4096
    ok(acct.tt.update_user_role, role, body={"rules": {"twin_rule": within}})


def test_the_quadratic_concatenation_match_ends_quickly_with_a_400(acct):
    # The review's recipe is refused for its length before it runs.
    recipe = "+".join(["TWIN.x"] * 3000) + " == ''"
    refused(acct, recipe, "rule longer than 4096 bytes")
    # The longest chain that fits copied 500 x 60 KB per step before; now
    # it is appended in place and stops at the 1 MiB budget.
    chain = "+".join(["TWIN.x"] * 500) + " == ''"
    assert len(chain) <= 4096
    start = time.monotonic()
    refused(acct, chain, "rule evaluation builds more than 1048576 bytes")
    assert time.monotonic() - start < 5


def test_matches_within_the_budget_still_work(acct):
    status, body = scan(acct, "TWIN.kind == 'small'")
    assert status == 200 and len(body["twins"]) == 1, body
    # 16 copies of 60 KB: under the budget.
    status, body = scan(acct, "+".join(["TWIN.x"] * 16) + " != ''")
    assert status == 200 and len(body["twins"]) == 1, body
    # An evaluation error other than a limit is still "no match".
    status, body = scan(acct, "TWIN.x > 3")
    assert status == 200 and body["twins"] == [], body
