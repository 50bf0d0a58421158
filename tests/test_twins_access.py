"""Who sees what across accounts (components/twins/API.md, "Who sees what").

Two accounts A and B, both with Super Admins (rules "true"). B reads A's
twin, ledger, history and identities; visibility rules decide. Ends with a
property-style test: random visibility rules from a small grammar, random
readers, and a Python reference evaluator of the same rules.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import pytest

from twins_helpers import (
    NOT_ACCESSIBLE,
    Account,
    User,
    account,
    assert_history_shape,
    create_role,
    create_twin,
    entries_of,
    expect_error,
    history,
    ledger,
    make_user,
    ok,
    pause,
    twin_uuid,
    values,
)


@dataclass
class World:
    a: Account
    b: Account
    twin: str  # A's twin, description {"kind": "meter"}
    blue: User  # B user, description {"team": "blue"}
    red: User  # B user, description {"team": "red"}


ENTRIES = {
    "private_e": {"value": "secret", "history": "1D"},
    "public_e": {"value": 42, "visibility": "true", "history": "1D"},
    "user_e": {"value": "for blue", "visibility": "USER.team == 'blue'"},
    "dict_e": {"value": "for S-1", "visibility": "DICT.serial == 'S-1'"},
    "false_e": {"value": 0, "visibility": "false"},
}


@pytest.fixture(scope="module")
def world(server) -> World:
    a = account(server)
    b = account(server)
    twin = create_twin(a.tt, {"kind": "meter"})
    ok(a.tt.add_twin_ledger_entry, twin, body={"entries": ENTRIES}, status=201)
    pause()
    ok(a.tt.update_twin_ledger_entry, twin, body={"entries": {"public_e": {"value": 43},
                                                               "private_e": {"value": "secret2"}}})
    ok(a.tt.create_twin_identity, twin, body={"identities": {
        "PUB#a1": {"visibility": "true"},
        "PRIV#a1": {"visibility": None},
        "BLUE#a1": {"visibility": "USER.team == 'blue'"},
        "DICT#a1": {"visibility": "DICT.serial == 'S-1'"},
    }}, status=201)
    blue = make_user(server, b, description={"team": "blue"}, name="blue")
    red = make_user(server, b, description={"team": "red"}, name="red")
    return World(a, b, twin, blue, red)


def visible(tt, w: World, **kw) -> set[str]:
    return set(ledger(tt, w.twin, w.a.account, **kw))


# --------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------


def test_owner_sees_every_entry(world):
    w = world
    assert set(ledger(w.a.tt, w.twin)) == set(ENTRIES)
    assert set(ledger(w.a.tt, w.twin, w.a.account)) == set(ENTRIES)


def test_foreign_reader_sees_only_entries_whose_visibility_is_true(world):
    w = world
    assert visible(w.b.tt, w) == {"public_e"}
    got = ledger(w.b.tt, w.twin, w.a.account)
    assert got["public_e"]["value"] == 43 and got["public_e"]["visibility"] == "true", got
    assert values(w.b.tt, w.twin, w.a.account) == {"public_e": 43}


def test_user_description_decides(world):
    w = world
    assert visible(w.blue.tt, w) == {"public_e", "user_e"}
    assert visible(w.red.tt, w) == {"public_e"}
    assert values(w.blue.tt, w.twin, w.a.account) == {"public_e": 43, "user_e": "for blue"}


def test_x_trustedtwin_dict_decides(world):
    w = world
    assert visible(w.red.tt, w, dictionary={"serial": "S-1"}) == {"public_e", "dict_e"}
    assert visible(w.red.tt, w, dictionary={"serial": "S-2"}) == {"public_e"}
    assert visible(w.blue.tt, w, dictionary={"serial": "S-1"}) == {"public_e", "user_e", "dict_e"}
    assert visible(w.b.tt, w, dictionary={}) == {"public_e"}


def test_asking_for_an_invisible_entry_by_name_does_not_reveal_it(world):
    w = world
    status_body = ok(w.b.tt.get_twin_ledger_entry, w.twin, w.a.account,
                     params={"entries": ["private_e", "false_e", "public_e"]})
    assert set(entries_of(status_body)) == {"public_e"}, status_body
    v = ok(w.b.tt.get_twin_ledger_entry_value, w.twin, w.a.account, params={"entries": ["private_e"]})
    assert entries_of(v) == {}, v


def test_foreign_history(world):
    w = world
    h = history(w.b.tt, w.twin, w.a.account, params={"entries": ["public_e", "private_e", "user_e", "nope"]})
    assert set(h) == {"public_e", "private_e", "user_e", "nope"}, h
    assert_history_shape(h["public_e"])
    assert list(h["public_e"].values()) == [43, 42], h
    assert h["private_e"] == NOT_ACCESSIBLE, h
    assert h["user_e"] == NOT_ACCESSIBLE, h  # invisible to B's Super Admin (and no history)
    assert h["nope"] == NOT_ACCESSIBLE, h
    # the owner reads the private history
    own = history(w.a.tt, w.twin, params={"entries": ["private_e"]})
    assert list(own["private_e"].values()) == ["secret2", "secret"], own


def test_foreign_ledger_is_not_writable(world):
    w = world
    before = values(w.a.tt, w.twin)
    expect_error(w.b.tt.add_twin_ledger_entry, w.twin, w.a.account, body={"entries": {"intruder": {"value": 1}}},
                 http=403, subcode=403535)
    expect_error(w.b.tt.update_twin_ledger_entry, w.twin, w.a.account,
                 body={"entries": {"public_e": {"value": -1}}}, http=403, subcode=403535)
    expect_error(w.b.tt.update_twin_ledger_entry_value, w.twin, w.a.account,
                 body={"entries": {"public_e": {"value": -1}}}, http=403, subcode=403535)
    expect_error(w.b.tt.delete_twin_ledger_entry, w.twin, w.a.account, params={"entries": ["public_e"]},
                 http=403, subcode=403535)
    assert values(w.a.tt, w.twin) == before


def test_foreign_account_has_its_own_ledger_on_the_twin(world, server):
    w = world
    twin = create_twin(w.a.tt, {"kind": "meter"})
    ok(w.a.tt.add_twin_ledger_entry, twin, body={"entries": {"mine": {"value": "A"}}}, status=201)
    # B writes into its personal ledger of A's twin
    ok(w.b.tt.add_twin_ledger_entry, twin, body={"entries": {
        "mine": {"value": "B"}, "b_public": {"value": 1, "visibility": "true"}}}, status=201)
    assert values(w.b.tt, twin) == {"mine": "B", "b_public": 1}
    assert values(w.b.tt, twin, w.b.account) == {"mine": "B", "b_public": 1}
    assert values(w.a.tt, twin) == {"mine": "A"}
    # A sees only B's public entry in B's ledger
    assert values(w.a.tt, twin, w.b.account) == {"b_public": 1}


# --------------------------------------------------------------------------
# Twins and role rules
# --------------------------------------------------------------------------


def test_role_twin_rule_limits_twins_in_own_and_foreign_accounts(world, server):
    w = world
    role = create_role(w.a.tt, ["get_twin", "get_twin_ledger_entry", "create_twin"],
                       rules={"twin_rule": "TWIN.kind == 'meter'", "entry_rule": None, "identity_rule": None})
    u = make_user(server, w.a, role=role)
    valve = create_twin(w.a.tt, {"kind": "valve"})
    assert twin_uuid(ok(u.tt.get_twin, w.twin)) == w.twin
    expect_error(u.tt.get_twin, valve, http=404, subcode=404653)
    expect_error(u.tt.get_twin_ledger_entry, valve, http=404, subcode=404653)
    assert set(ledger(u.tt, w.twin)) == set(ENTRIES)
    # a foreign twin whose description matches is accessible (rule non-null and true)
    b_meter = create_twin(w.b.tt, {"kind": "meter"})
    b_valve = create_twin(w.b.tt, {"kind": "valve"})
    assert twin_uuid(ok(u.tt.get_twin, b_meter)) == b_meter
    expect_error(u.tt.get_twin, b_valve, http=404, subcode=404653)


def test_null_twin_rule_means_no_foreign_twins(world, server):
    w = world
    role = create_role(w.b.tt, ["get_twin", "get_twin_ledger_entry", "get_twin_ledger_entry_value",
                                "resolve_twin_identity", "create_twin"])
    u = make_user(server, w.b, role=role)
    own = create_twin(w.b.tt, {"kind": "meter"})
    assert twin_uuid(ok(u.tt.get_twin, own)) == own
    expect_error(u.tt.get_twin, w.twin, http=404, subcode=404653)
    expect_error(u.tt.get_twin_ledger_entry, w.twin, w.a.account, http=404, subcode=404653)
    expect_error(u.tt.get_twin_ledger_entry_value, w.twin, w.a.account, http=404, subcode=404653)


def test_role_entry_rule_restricts_own_and_foreign_entries(world, server):
    w = world
    role = create_role(w.b.tt, ["get_twin", "get_twin_ledger_entry"],
                       rules={"twin_rule": "true", "entry_rule": "entry_name != 'public_e'"})
    u = make_user(server, w.b, role=role, description={"team": "blue"})
    # user_e is visible to blue, public_e is cut by the role's entry rule
    assert visible(u.tt, w) == {"user_e"}
    own = create_twin(w.b.tt)
    ok(w.b.tt.add_twin_ledger_entry, own, body={"entries": {"public_e": {"value": 1}, "other": {"value": 2}}},
       status=201)
    assert set(ledger(u.tt, own)) == {"other"}


def test_twin_description_is_visible_to_foreign_super_admin(world):
    w = world
    t = ok(w.b.tt.get_twin, w.twin)
    assert t["description"] == {"kind": "meter"} and t["owner"] == w.a.account, t


# --------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------


def test_resolve_foreign_identities(world):
    w = world
    for ctx in (w.a.account, "system"):
        assert ok(w.b.tt.resolve_twin_identity, "PUB#a1", params={"context": ctx}) == {"twins": [w.twin]}, ctx
        assert ok(w.b.tt.resolve_twin_identity, "PRIV#a1", params={"context": ctx}) == {"twins": []}, ctx
        assert ok(w.b.tt.resolve_twin_identity, "BLUE#a1", params={"context": ctx}) == {"twins": []}, ctx
        assert ok(w.blue.tt.resolve_twin_identity, "BLUE#a1", params={"context": ctx}) == {"twins": [w.twin]}, ctx
        assert ok(w.red.tt.resolve_twin_identity, "BLUE#a1", params={"context": ctx}) == {"twins": []}, ctx
        assert ok(w.red.tt.resolve_twin_identity, "DICT#a1", params={"context": ctx},
                  dictionary={"serial": "S-1"}) == {"twins": [w.twin]}, ctx
        assert ok(w.red.tt.resolve_twin_identity, "DICT#a1", params={"context": ctx},
                  dictionary={"serial": "S-9"}) == {"twins": []}, ctx
    # personal context: B owns none of them
    assert ok(w.b.tt.resolve_twin_identity, "PUB#a1") == {"twins": []}
    assert ok(w.b.tt.resolve_twin_identity, "PUB#a1", params={"context": "personal"}) == {"twins": []}
    # the owner resolves its private identity
    assert ok(w.a.tt.resolve_twin_identity, "PRIV#a1") == {"twins": [w.twin]}
    # another account as context does not find A's identities
    assert ok(w.blue.tt.resolve_twin_identity, "PUB#a1", params={"context": w.b.account}) == {"twins": []}


def test_list_foreign_identities(world):
    w = world
    mine = ok(w.b.tt.get_twin_identities, w.twin)
    assert mine["identities"] == {}, mine
    foreign = ok(w.b.tt.get_twin_identities, w.twin, params={"show_foreign": True})["identities"]
    assert set(foreign) == {"PUB#a1"}, foreign
    assert foreign["PUB#a1"]["account"] == w.a.account and foreign["PUB#a1"]["visibility"] == "true", foreign
    blue = ok(w.blue.tt.get_twin_identities, w.twin, params={"show_foreign": w.a.account})["identities"]
    assert set(blue) == {"PUB#a1", "BLUE#a1"}, blue
    other = ok(w.blue.tt.get_twin_identities, w.twin, params={"show_foreign": w.b.account})["identities"]
    assert other == {}, other
    # the owner lists all of its own identities
    own = ok(w.a.tt.get_twin_identities, w.twin)["identities"]
    assert set(own) == {"PUB#a1", "PRIV#a1", "BLUE#a1", "DICT#a1"}, own
    assert "account" not in own["PUB#a1"], own


def test_foreign_identity_is_not_readable_or_writable_by_name(world):
    w = world
    expect_error(w.b.tt.get_twin_identity, w.twin, "PUB#a1", http=404, subcode=404653)
    expect_error(w.b.tt.update_twin_identity, w.twin, "PUB#a1", body={"visibility": None}, http=404, subcode=404653)
    expect_error(w.b.tt.delete_twin_identity, w.twin, "PUB#a1", http=404, subcode=404653)
    assert ok(w.a.tt.get_twin_identity, w.twin, "PUB#a1")["visibility"] == "true"


# --------------------------------------------------------------------------
# Property: random visibility rules against a reference evaluator
# --------------------------------------------------------------------------


class RuleError(Exception):
    """An evaluation error: the whole rule is false."""


MISSING = object()

VARS_ANY = ["USER.x", "USER.team", "USER.nope", "DICT.y", "DICT.serial", "entry_name", "entry_value"]
VARS_ORD = ["USER.x", "DICT.y", "entry_name", "entry_value"]  # always present, never null
LIT_INTS = list(range(10))
LIT_STRS = ["a", "b", "m", "blue", "red", "S-1", "S-2", "p07", "p20", "zz"]
# Regular expressions that mean the same in Python's `re` and Rust's `regex`.
PATTERNS = ["a", "^b", "b.*", "p0[0-9]", ".*", "z+", "[ab]", "m$", "blue|red", "^S-", "e", "^$"]
REGEX_OPS = ["=~", "=~~", "!~", "!~~"]
REGEX_SUBJECTS = ["USER.team", "DICT.serial", "DICT.y", "entry_name", "entry_value"]
N_LEDGER_NAMES = 40  # LEDGER.pNN for NN below this


def lit_text(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"'{v}'"
    return repr(v)


def gen_literal(rng: random.Random, allow_null: bool) -> Any:
    r = rng.random()
    if allow_null and r < 0.1:
        return None
    if r < 0.5:
        return rng.choice(LIT_INTS)
    if r < 0.57:
        return rng.choice([2.5, 7.5])
    return rng.choice(LIT_STRS)


def ledger_var(rng: random.Random) -> str:
    return f"LEDGER.p{rng.randrange(N_LEDGER_NAMES):02d}"


def gen_leaf(rng: random.Random, rich: bool) -> tuple:
    """A comparison; `rich` adds regex matches (`=~ =~~ !~ !~~`, patterns
    constant or taken from `DICT.p`) and `LEDGER` (values and names)."""
    r = rng.random()
    if rich and r < 0.45:
        r = rng.random()
        if r < 0.35:
            subject = ledger_var(rng) if rng.random() < 0.5 else rng.choice(REGEX_SUBJECTS)
            pattern = ("var", "DICT.p") if rng.random() < 0.4 else ("lit", rng.choice(PATTERNS))
            return ("re", rng.choice(REGEX_OPS), subject, pattern)
        if r < 0.7:
            return ("cmp", rng.choice(["==", "!="]), ledger_var(rng), gen_literal(rng, True))
        if r < 0.85:
            return ("cmp", rng.choice(["<", ">"]), ledger_var(rng), gen_literal(rng, False))
        return ("inledger", f"p{rng.randrange(N_LEDGER_NAMES):02d}")
    r = rng.random()
    if r < 0.05:
        return ("bool", rng.random() < 0.5)
    if r < 0.45:
        return ("cmp", rng.choice(["==", "!="]), rng.choice(VARS_ANY), gen_literal(rng, True))
    if r < 0.8:
        return ("cmp", rng.choice(["<", ">"]), rng.choice(VARS_ORD), gen_literal(rng, False))
    return ("in", rng.choice(VARS_ANY), [gen_literal(rng, False) for _ in range(rng.randint(1, 4))])


def gen_rule(rng: random.Random, depth: int = 3, rich: bool = False) -> tuple:
    if depth == 0 or rng.random() < 0.35:
        return gen_leaf(rng, rich)
    r = rng.random()
    if r < 0.4:
        return ("and", gen_rule(rng, depth - 1, rich), gen_rule(rng, depth - 1, rich))
    if r < 0.8:
        return ("or", gen_rule(rng, depth - 1, rich), gen_rule(rng, depth - 1, rich))
    return ("not", gen_rule(rng, depth - 1, rich))


def rule_text(node: tuple) -> str:
    kind = node[0]
    if kind == "bool":
        return lit_text(node[1])
    if kind == "cmp":
        return f"{node[2]} {node[1]} {lit_text(node[3])}"
    if kind == "in":
        return f"{node[1]} in [{', '.join(lit_text(v) for v in node[2])}]"
    if kind == "re":
        _, op, subject, (pkind, pattern) = node
        return f"{subject} {op} {pattern if pkind == 'var' else lit_text(pattern)}"
    if kind == "inledger":
        return f"'{node[1]}' in LEDGER"
    if kind == "not":
        return f"not ({rule_text(node[1])})"
    return f"({rule_text(node[1])}) {kind} ({rule_text(node[2])})"


def lookup(var: str, ctx: dict) -> Any:
    if "." in var:
        root, key = var.split(".", 1)
        d = ctx.get(root)
        return d.get(key) if isinstance(d, dict) else None
    return ctx.get(var)


def is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def ev(node: tuple, ctx: dict) -> bool:
    kind = node[0]
    if kind == "bool":
        return node[1]
    if kind == "cmp":
        _, op, var, lit = node
        v = lookup(var, ctx)
        if op == "==":
            return v == lit and (is_num(v) == is_num(lit))
        if op == "!=":
            return not (v == lit and (is_num(v) == is_num(lit)))
        if not ((is_num(v) and is_num(lit)) or (isinstance(v, str) and isinstance(lit, str))):
            raise RuleError(f"cannot order {v!r} and {lit!r}")
        return v < lit if op == "<" else v > lit
    if kind == "in":
        v = lookup(node[1], ctx)
        return any(v == x and is_num(v) == is_num(x) for x in node[2])
    if kind == "re":
        _, op, subject, (pkind, pattern) = node
        v = lookup(subject, ctx)
        p = lookup(pattern, ctx) if pkind == "var" else pattern
        if not (isinstance(v, str) and isinstance(p, str)):
            raise RuleError(f"cannot match {v!r} with {p!r}")
        try:
            found = (re.fullmatch(p, v) if op in ("=~", "!~") else re.search(p, v)) is not None
        except re.error as e:
            raise RuleError(str(e)) from e
        return found if op in ("=~", "=~~") else not found
    if kind == "inledger":
        ledger_values = ctx.get("LEDGER")
        if ledger_values is None:
            return False
        return node[1] in ledger_values
    if kind == "not":
        return not ev(node[1], ctx)
    if kind == "and":
        return ev(node[1], ctx) and ev(node[2], ctx)
    if kind == "or":
        return ev(node[1], ctx) or ev(node[2], ctx)
    raise AssertionError(node)


def rule_true(node: tuple, ctx: dict) -> bool:
    """rule-engine semantics: short-circuit and/or; an evaluation error makes the rule false."""
    try:
        return bool(ev(node, ctx))
    except RuleError:
        return False


def test_reference_evaluator_sanity():
    ctx = {"USER": {"x": 3}, "DICT": {"y": "a"}, "entry_name": "p01", "entry_value": 2.5}
    assert rule_true(("cmp", "<", "USER.x", 5), ctx)
    assert not rule_true(("cmp", "<", "USER.x", "a"), ctx)
    assert not rule_true(("not", ("cmp", "<", "USER.x", "a")), ctx)  # the error fails the whole rule
    assert rule_true(("or", ("bool", True), ("cmp", "<", "USER.x", "a")), ctx)  # short-circuit
    assert rule_true(("cmp", "==", "USER.team", None), ctx)  # missing is null
    assert not rule_true(("in", "USER.team", ["blue"]), ctx)
    assert rule_true(("cmp", "!=", "DICT.y", 1), ctx)
    assert rule_text(("and", ("cmp", "==", "USER.x", "a"), ("not", ("bool", False)))) == \
        "(USER.x == 'a') and (not (false))"
    lctx = {"LEDGER": {"p01": "blue", "p02": 3}, "DICT": {"p": "^b"}}
    assert rule_true(("re", "=~~", "LEDGER.p01", ("var", "DICT.p")), lctx)
    assert not rule_true(("re", "=~", "LEDGER.p01", ("lit", "b")), lctx)  # =~ is a whole match
    assert rule_true(("re", "!~", "LEDGER.p01", ("lit", "b")), lctx)
    assert not rule_true(("re", "=~~", "LEDGER.p02", ("lit", "3")), lctx)  # not a string: error
    assert not rule_true(("not", ("re", "=~~", "LEDGER.p09", ("lit", "a"))), lctx)  # missing: null: error
    assert rule_true(("inledger", "p02"), lctx) and not rule_true(("inledger", "p09"), lctx)
    assert rule_text(("re", "!~~", "LEDGER.p01", ("var", "DICT.p"))) == "LEDGER.p01 !~~ DICT.p"
    assert rule_text(("inledger", "p07")) == "'p07' in LEDGER"


N_ENTRIES = 40
N_READERS = 10  # each with a role entry rule of its own
DICTS_PER_READER = 13  # 10 readers x 13 dicts x 2 endpoints x 40 entries = 10,400 probes
PRIVATE_SHARE = 0.3  # entries with no visibility: never visible to another account

def random_value(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.5:
        return rng.randint(0, 9)
    if r < 0.65:
        return rng.choice([0.5, 2.5, 7.5])
    return rng.choice(["a", "b", "blue", "p07", "zz", "m"])


def random_description(rng: random.Random) -> dict:
    d: dict = {"x": rng.choice(LIT_INTS[:6] + ["a", "b", "m"])}
    if rng.random() < 0.6:
        d["team"] = rng.choice(["blue", "red", "green"])
    return d


def random_dict(rng: random.Random) -> dict:
    d: dict = {"y": rng.choice(LIT_INTS[:6] + ["a", "zz", "S-1"])}
    if rng.random() < 0.5:
        d["serial"] = rng.choice(["S-1", "S-2"])
    if rng.random() < 0.8:
        d["p"] = rng.choice(PATTERNS)
    return d


def expected_visible(vis: dict[str, tuple | None], role_rule: tuple | None, vals: dict[str, Any],
                     desc: dict, dct: dict, leaky: bool = False) -> set[str]:
    """What a reader of another account sees (API.md, "Who sees what"): an
    entry whose visibility holds (evaluated with the whole ledger as
    LEDGER, the owner's choice), then the reader's role entry rule, with
    LEDGER holding only the entries visible so far. `leaky` gives the role
    rule the whole ledger instead: what a server with the H2 hole returns."""
    full = dict(vals)
    shown = {name for name, rule in vis.items()
             if rule is not None and rule_true(rule, {"USER": desc, "DICT": dct, "entry_name": name,
                                                       "entry_value": vals[name], "LEDGER": full})}
    if role_rule is None:
        return shown
    ledger_for_role = full if leaky else {n: vals[n] for n in shown}
    return {name for name in shown
            if rule_true(role_rule, {"USER": desc, "DICT": dct, "entry_name": name, "entry_value": vals[name],
                                     "LEDGER": ledger_for_role})}


def test_random_visibility_rules_match_the_reference_evaluator(server):
    """Random visibility rules (by the owner) and role entry rules (by the
    reader's account), with regex matches and LEDGER, against the reference
    evaluator: 10,000+ probes of (reader, DICT, endpoint, entry), zero
    disagreements, hence zero leaks of private entries through LEDGER."""
    rng = random.Random(20241001)
    a = account(server)
    b = account(server)
    twin = create_twin(a.tt, {"kind": "property"})

    vis: dict[str, tuple | None] = {}
    vals: dict[str, Any] = {}
    body: dict = {}
    for i in range(N_ENTRIES):
        name = f"p{i:02d}"
        vis[name] = None if rng.random() < PRIVATE_SHARE else gen_rule(rng, rich=True)
        vals[name] = random_value(rng)
        body[name] = {"value": vals[name], "visibility": None if vis[name] is None else rule_text(vis[name])}
    added = entries_of(ok(a.tt.add_twin_ledger_entry, twin, body={"entries": body}, status=201))
    assert set(added) == set(body)
    stored = ledger(a.tt, twin)
    for name in body:
        assert stored[name]["visibility"] == body[name]["visibility"], (name, stored[name])
        assert stored[name]["value"] == vals[name], (name, stored[name])

    checks = 0
    mismatches: list[str] = []
    seen_true = seen_false = discriminating = 0
    for r in range(N_READERS):
        desc = random_description(rng)
        # most readers' roles have a rule over LEDGER; one has none
        role_rule = None if r == 0 else gen_rule(rng, rich=True)
        if role_rule is not None and "LEDGER" not in rule_text(role_rule):
            role_rule = ("or", ("inledger", f"p{rng.randrange(N_ENTRIES):02d}"), role_rule)
        role = create_role(b.tt, ["get_twin", "get_twin_ledger_entry", "get_twin_ledger_entry_value"],
                           rules={"twin_rule": "true",
                                  "entry_rule": None if role_rule is None else rule_text(role_rule)},
                           name=f"reader role {r}")
        reader = make_user(server, b, role=role, description=desc, name=f"reader {r}")
        for _ in range(DICTS_PER_READER):
            dct = random_dict(rng)
            expected = expected_visible(vis, role_rule, vals, desc, dct)
            if expected != expected_visible(vis, role_rule, vals, desc, dct, leaky=True):
                discriminating += 1
            seen_true += len(expected)
            seen_false += N_ENTRIES - len(expected)

            got_full = ledger(reader.tt, twin, a.account, dictionary=dct)
            got_vals = entries_of(ok(reader.tt.get_twin_ledger_entry_value, twin, a.account, dictionary=dct))
            for got, what in ((set(got_full), "get_twin_ledger_entry"), (set(got_vals), "get_twin_ledger_entry_value")):
                for name in vis:
                    checks += 1
                    if (name in got) != (name in expected):
                        mismatches.append(
                            f"{what}: entry {name} visibility {body[name]['visibility']!r} value {vals[name]!r} "
                            f"role rule {None if role_rule is None else rule_text(role_rule)!r} "
                            f"USER={desc!r} DICT={dct!r}: expected visible={name in expected}, got {name in got}"
                        )
            for name in set(got_vals) & expected:
                assert got_vals[name]["value"] == vals[name], (name, got_vals[name])

    assert checks >= 10_000, checks
    # the generated rules must exercise both outcomes, and some probes must
    # tell a leaky server from a sound one
    assert seen_true >= 100 and seen_false >= 100, (seen_true, seen_false)
    assert discriminating >= 3, discriminating
    assert not mismatches, f"{len(mismatches)} of {checks} checks disagree:\n" + "\n".join(mismatches[:30])
