"""Every error case of the twin API contract (components/twins/API.md, "Errors").

Each test checks the status, the subcode, the exact error body, and re-reads
afterwards that nothing changed.
"""

from __future__ import annotations

import base64
import os
import re
import time

import pytest

from twins_helpers import (
    UUID_RE,
    account,
    assert_error,
    b64_dict,
    call,
    create_role,
    create_twin,
    entries_of,
    expect_error,
    ledger,
    make_user,
    ok,
    random_uuid,
    raw,
    scan_all,
    tt_for,
    values,
)


@pytest.fixture(scope="module")
def a(server):
    return account(server)


@pytest.fixture(scope="module")
def b(server):
    return account(server)


def twin_count(acct) -> int:
    return len(scan_all(acct.tt))


def roles_of(acct) -> dict:
    body = ok(acct.tt.get_user_roles)
    assert isinstance(body.get("roles"), dict), body
    return body["roles"]


# --------------------------------------------------------------------------
# 401
# --------------------------------------------------------------------------


def test_no_authorization_is_401(server, a):
    before = twin_count(a)
    anon = tt_for(server)
    expect_error(anon.who_am_i, http=401, subcode=401000)
    expect_error(anon.create_twin, body={"description": {"k": 1}}, http=401, subcode=401000)
    expect_error(anon.scan_twins, http=401, subcode=401000)
    expect_error(anon.get_twin, random_uuid(), http=401, subcode=401000)
    assert twin_count(a) == before


def test_unknown_secret_is_401(server, a):
    before = twin_count(a)
    fake = base64.b64encode(os.urandom(48)).decode()
    assert len(fake) == 64
    expect_error(tt_for(server, fake).who_am_i, http=401, subcode=401000)
    expect_error(tt_for(server, fake).create_twin, http=401, subcode=401000)
    # the secret is sent raw: a scheme in front of it is an unknown secret
    expect_error(tt_for(server, "Bearer " + a.secret).who_am_i, http=401, subcode=401000)
    expect_error(tt_for(server, a.secret[:-1]).who_am_i, http=401, subcode=401000)
    assert twin_count(a) == before
    assert ok(a.tt.who_am_i)["account"] == a.account


def test_secret_with_validity_in_the_past_is_401(server, a):
    before = twin_count(a)
    u = make_user(server, a, validity_ts=round(time.time() - 1, 3))
    expect_error(u.tt.who_am_i, http=401, subcode=401000)
    expect_error(u.tt.create_twin, http=401, subcode=401000)
    assert twin_count(a) == before
    meta = ok(a.tt.get_user_secret, u.user)
    assert meta["validity_ts"] is not None and meta["validity_ts"] <= time.time(), meta


def test_pin_is_single_use(server, a):
    u = ok(a.tt.create_user, body={"name": "pin user", "role": a.role}, status=201)["uuid"]
    pin = ok(a.tt.create_user_secret_pin, u, status=201)["pin"]
    anon = tt_for(server)
    first = ok(anon.create_user_secret, a.account, pin, status=201)
    expect_error(anon.create_user_secret, a.account, pin, http=404, subcode=404653)
    # the first secret still works: the failed second use changed nothing
    assert ok(tt_for(server, first["secret"]).who_am_i)["user"] == u


def test_pin_of_another_account_or_unknown_is_404(server, a, b):
    u = ok(a.tt.create_user, body={"name": "pin user", "role": a.role}, status=201)["uuid"]
    pin = ok(a.tt.create_user_secret_pin, u, status=201)["pin"]
    anon = tt_for(server)
    expect_error(anon.create_user_secret, b.account, pin, http=404, subcode=404653)
    expect_error(anon.create_user_secret, random_uuid(), pin, http=404, subcode=404653)
    other = "ZZ9ZZ9" if pin != "ZZ9ZZ9" else "ZZ8ZZ8"
    expect_error(anon.create_user_secret, a.account, other, http=404, subcode=404653)
    status, body = call(a.tt.get_user_secret, u)
    assert_error(status, body, 404, 404653)  # no secret was created


def test_create_secret_needs_no_authentication_but_pin_creation_does(server, a):
    u = ok(a.tt.create_user, body={"name": "pin user", "role": a.role}, status=201)["uuid"]
    expect_error(tt_for(server).create_user_secret_pin, u, http=401, subcode=401000)
    expect_error(a.tt.create_user_secret_pin, random_uuid(), http=404, subcode=404653)


# --------------------------------------------------------------------------
# Transport: JSON, UTF-8, size
# --------------------------------------------------------------------------


JSON_HEADERS = {"Content-Type": "application/json"}


def test_invalid_json_is_400415(server, a):
    before = twin_count(a)
    for data in (b"{not json", b'{"description": {"a": 1}', b"{'single': 'quotes'}", b"tru"):
        status, body = raw(server, "POST", "/twins", a.secret, JSON_HEADERS, data=data)
        assert_error(status, body, 400, 400415)
    assert twin_count(a) == before

    twin = create_twin(a.tt)
    ok(a.tt.add_twin_ledger_entry, twin, body={"entries": {"x": {"value": 1}}}, status=201)
    status, body = raw(server, "PATCH", f"/twins/{twin}/ledgers/personal", a.secret, JSON_HEADERS,
                       data=b'{"entries": {"x": {"value": 2}}')
    assert_error(status, body, 400, 400415)
    assert values(a.tt, twin) == {"x": 1}


def test_non_utf8_body_is_400314(server, a):
    before = twin_count(a)
    status, body = raw(server, "POST", "/twins", a.secret, JSON_HEADERS,
                       data=b'{"description": {"name": "caf\xe9"}}')
    assert_error(status, body, 400, 400314)
    assert twin_count(a) == before


def test_body_over_64kb_is_400141(server, a):
    before = twin_count(a)
    expect_error(a.tt.create_twin, body={"description": {"blob": "x" * 70_000}}, http=400, subcode=400141)
    assert twin_count(a) == before
    twin = create_twin(a.tt)
    expect_error(a.tt.add_twin_ledger_entry, twin, body={"entries": {"big": {"value": "y" * 70_000}}},
                 http=400, subcode=400141)
    assert ledger(a.tt, twin) == {}


def test_ledger_quota_is_400141_and_nothing_written(server, a):
    twin = create_twin(a.tt)
    chunk = "q" * 25_000
    ok(a.tt.add_twin_ledger_entry, twin,
       body={"entries": {"e1": {"value": chunk}, "e2": {"value": chunk}}}, status=201)
    # a third chunk makes the ledger ~75 kB
    expect_error(a.tt.add_twin_ledger_entry, twin, body={"entries": {"e3": {"value": chunk}, "e4": {"value": 1}}},
                 http=400, subcode=400141)
    assert set(ledger(a.tt, twin)) == {"e1", "e2"}
    # growing an entry over the quota
    expect_error(a.tt.update_twin_ledger_entry, twin, body={"entries": {"e1": {"value": "r" * 45_000}}},
                 http=400, subcode=400141)
    assert values(a.tt, twin) == {"e1": chunk, "e2": chunk}
    # shrinking is fine
    ok(a.tt.update_twin_ledger_entry, twin, body={"entries": {"e1": {"value": "small"}}})
    assert values(a.tt, twin)["e1"] == "small"


def test_not_an_object_or_wrong_field_type_is_400589(server, a):
    before = twin_count(a)
    for data in (b"[]", b'"twin"', b"42", b"null"):
        status, body = raw(server, "POST", "/twins", a.secret, JSON_HEADERS, data=data)
        assert_error(status, body, 400, 400589)
    expect_error(a.tt.create_twin, body={"description": "a string"}, http=400, subcode=400589)
    assert twin_count(a) == before

    twin = create_twin(a.tt)
    expect_error(a.tt.add_twin_ledger_entry, twin, body={"entries": []}, http=400, subcode=400589)
    expect_error(a.tt.add_twin_ledger_entry, twin, body={"entries": {"x": "no object"}}, http=400, subcode=400589)
    expect_error(a.tt.add_twin_ledger_entry, twin, body={"nothing": 1}, http=400, subcode=400589)
    expect_error(a.tt.create_user, body={"name": "no role"}, http=400, subcode=400589)
    expect_error(a.tt.create_user_secret_pin, a.user, body={"validity_ts": "tomorrow"}, http=400, subcode=400589)
    assert ledger(a.tt, twin) == {}


# --------------------------------------------------------------------------
# Roles
# --------------------------------------------------------------------------


def test_unknown_action_name_is_400589(server, a):
    before = roles_of(a)
    for actions in (["create_twin", "fly_to_the_moon"], ["Create_Twin"], ["get_twin "]):
        expect_error(a.tt.create_user_role, body={"name": "bad actions",
                                                  "statement": {"effect": "allow", "actions": actions}},
                     http=400, subcode=400589)
    expect_error(a.tt.create_user_role, body={"name": "bad effect",
                                              "statement": {"effect": "maybe", "actions": ["get_twin"]}},
                 http=400, subcode=400589)
    assert roles_of(a) == before


def test_role_with_more_rights_than_creator_is_403535(server, a):
    limited = create_role(a.tt, ["create_user_role", "get_user_role", "get_user_roles", "create_twin", "get_twin"])
    u = make_user(server, a, role=limited)
    before = roles_of(a)
    expect_error(u.tt.create_user_role, body={"name": "escalate",
                                              "statement": {"effect": "allow",
                                                            "actions": ["create_twin", "terminate_twin"]}},
                 http=403, subcode=403535)
    expect_error(u.tt.create_user_role, body={"name": "everything",
                                              "statement": {"effect": "deny", "actions": None}},
                 http=403, subcode=403535)
    expect_error(u.tt.create_user_role, body={"name": "almost everything",
                                              "statement": {"effect": "deny", "actions": ["create_twin"]}},
                 http=403, subcode=403535)
    assert roles_of(a) == before
    # a subset of the creator's rights is fine
    sub = ok(u.tt.create_user_role, body={"name": "subset",
                                          "statement": {"effect": "allow", "actions": ["create_twin"]}},
             status=201)
    assert sub["statement"] == {"effect": "allow", "actions": ["create_twin"]}, sub
    # the limited user can not update a role either without the action
    expect_error(u.tt.update_user_role, sub["uuid"], body={"name": "renamed"}, http=403, subcode=403535)


def test_action_not_in_statement_is_403535_and_nothing_written(server, a):
    only_get = create_role(a.tt, ["get_twin", "get_twin_ledger_entry"])
    u = make_user(server, a, role=only_get)
    twin = create_twin(a.tt, {"kind": "x"})
    before = twin_count(a)
    expect_error(u.tt.create_twin, http=403, subcode=403535)
    expect_error(u.tt.update_twin, twin, body={"description": {"kind": "y"}}, http=403, subcode=403535)
    expect_error(u.tt.add_twin_ledger_entry, twin, body={"entries": {"a": {"value": 1}}}, http=403, subcode=403535)
    expect_error(u.tt.terminate_twin, twin, http=403, subcode=403535)
    assert twin_count(a) == before
    t = ok(a.tt.get_twin, twin)
    assert t["description"] == {"kind": "x"} and t["status"] == "alive", t
    assert ledger(a.tt, twin) == {}
    # who_am_i needs no action
    assert ok(u.tt.who_am_i)["role"] == only_get


def test_bad_rule_syntax_is_400589_naming_the_position(server, a):
    before = roles_of(a)
    rule = "TWIN.a == == 1"
    body = expect_error(a.tt.create_user_role, body={"name": "bad rule", "rules": {"twin_rule": rule},
                                                     "statement": {"effect": "allow", "actions": ["get_twin"]}},
                        http=400, subcode=400589)
    # the second '==' is at offset 10 (column 11)
    assert re.search(r"\b(10|11)\b", body["description"]), body
    for rules in ({"entry": "(("}, {"identity": "USER.x =="}, {"twin": "'unterminated"}):
        expect_error(a.tt.create_user_role, body={"name": "bad rule", "rules": rules,
                                                  "statement": {"effect": "allow", "actions": ["get_twin"]}},
                     http=400, subcode=400589)
    assert roles_of(a) == before

    twin = create_twin(a.tt)
    expect_error(a.tt.add_twin_ledger_entry, twin, body={"entries": {"v": {"value": 1, "visibility": "true and"}}},
                 http=400, subcode=400589)
    assert ledger(a.tt, twin) == {}
    expect_error(a.tt.create_twin_identity, twin, body={"identities": {"ID#1": {"visibility": "== 3"}}},
                 http=400, subcode=400589)
    assert ok(a.tt.get_twin_identities, twin)["identities"] == {}
    expect_error(a.tt.scan_twins, params={"match": "TWIN.x =="}, http=400, subcode=400589)


# --------------------------------------------------------------------------
# Twins
# --------------------------------------------------------------------------


def test_update_or_terminate_twin_not_owner_is_403(server, a, b):
    twin = create_twin(a.tt, {"owner_only": True})
    # B's Super Admin sees the twin (twin rule "true") but does not own it
    assert ok(b.tt.get_twin, twin)["description"] == {"owner_only": True}
    expect_error(b.tt.update_twin, twin, body={"description": {"hijacked": 1}}, http=403, subcode=403535)
    expect_error(b.tt.terminate_twin, twin, http=403, subcode=403535)
    t = ok(a.tt.get_twin, twin)
    assert t["description"] == {"owner_only": True} and t["status"] == "alive", t


def test_terminated_twin_description_is_400897(server, a):
    twin = create_twin(a.tt, {"v": 1})
    ok(a.tt.terminate_twin, twin)
    for desc in ({"v": 2}, {}, None):
        expect_error(a.tt.update_twin, twin, body={"description": desc}, http=400, subcode=400897)
    t = ok(a.tt.get_twin, twin)
    assert t["description"] == {"v": 1} and t["status"] == "terminated", t
    body = expect_error(a.tt.terminate_twin, twin, http=400, subcode=400358)
    assert body["description"] == "Twin already terminated.", body


def test_unknown_twin_is_404653(server, a):
    ghost = random_uuid()
    expect_error(a.tt.get_twin, ghost, http=404, subcode=404653)
    expect_error(a.tt.update_twin, ghost, body={"description": {}}, http=404, subcode=404653)
    expect_error(a.tt.terminate_twin, ghost, http=404, subcode=404653)
    expect_error(a.tt.get_twin_ledger_entry, ghost, http=404, subcode=404653)
    expect_error(a.tt.add_twin_ledger_entry, ghost, body={"entries": {"x": {"value": 1}}}, http=404, subcode=404653)
    expect_error(a.tt.get_twin_ledger_entry_value, ghost, http=404, subcode=404653)
    expect_error(a.tt.get_twin_ledger_entry_history, ghost, http=404, subcode=404653)
    expect_error(a.tt.create_twin_identity, ghost, body={"identities": {"ID#ghost": {}}}, http=404, subcode=404653)
    expect_error(a.tt.get_twin_identities, ghost, http=404, subcode=404653)
    expect_error(a.tt.get_twin, "not-a-uuid", http=404, subcode=404653)
    assert ok(a.tt.resolve_twin_identity, "ID#ghost") == {"twins": []}


def test_unknown_user_role_identity_is_404653(server, a):
    twin = create_twin(a.tt)
    expect_error(a.tt.get_user, random_uuid(), http=404, subcode=404653)
    expect_error(a.tt.get_user_role, random_uuid(), http=404, subcode=404653)
    expect_error(a.tt.get_twin_identity, twin, "ID#none", http=404, subcode=404653)
    expect_error(a.tt.update_twin_identity, twin, "ID#none", body={"visibility": "true"}, http=404, subcode=404653)
    expect_error(a.tt.delete_twin_identity, twin, "ID#none", http=404, subcode=404653)


def test_unknown_path_is_404653(server, a):
    # Unknown paths outside the twin API's families ("/nope") belong to the
    # AAS face at the same root and get its error body (test_errors.py).
    for path in ("/twins/a/b/c/d/e", "/resolve", "/users/a/b/c", "/whoami/x"):
        status, body = raw(server, "GET", path, a.secret)
        assert_error(status, body, 404, 404653)


# --------------------------------------------------------------------------
# Ledger entries
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Reading", "a__b", "a-", "-a", "a.b", "a b", "a" * 129, "é", "a_-b"])
def test_bad_entry_name_is_400589(server, a, name):
    twin = create_twin(a.tt)
    expect_error(a.tt.add_twin_ledger_entry, twin, body={"entries": {name: {"value": 1}, "good": {"value": 2}}},
                 http=400, subcode=400589)
    assert ledger(a.tt, twin) == {}


def test_good_entry_names_are_accepted(server, a):
    twin = create_twin(a.tt)
    names = ["_x", "__private", "a-b_c", "x1", "0", "a" * 128, "sn_0000000", "a1-b2-c3"]
    added = entries_of(ok(a.tt.add_twin_ledger_entry, twin,
                          body={"entries": {n: {"value": i} for i, n in enumerate(names)}}, status=201))
    assert set(added) == set(names)
    assert values(a.tt, twin) == {n: i for i, n in enumerate(names)}


def test_duplicate_entry_is_400358_and_nothing_written(server, a):
    twin = create_twin(a.tt)
    ok(a.tt.add_twin_ledger_entry, twin, body={"entries": {"dup": {"value": 1}}}, status=201)
    expect_error(a.tt.add_twin_ledger_entry, twin, body={"entries": {"other": {"value": 3}, "dup": {"value": 2}}},
                 http=400, subcode=400358)
    assert values(a.tt, twin) == {"dup": 1}


def test_update_of_missing_entry_is_404_and_nothing_written(server, a):
    twin = create_twin(a.tt)
    ok(a.tt.add_twin_ledger_entry, twin, body={"entries": {"here": {"value": 1}}}, status=201)
    expect_error(a.tt.update_twin_ledger_entry, twin,
                 body={"entries": {"here": {"value": 2}, "missing": {"value": 3}}}, http=404, subcode=404653)
    expect_error(a.tt.update_twin_ledger_entry_value, twin,
                 body={"entries": {"here": {"value": 2}, "missing": {"value": 3}}}, http=404, subcode=404653)
    assert values(a.tt, twin) == {"here": 1}


def test_value_write_to_reference_or_include_is_400897(server, a):
    src = create_twin(a.tt)
    ok(a.tt.add_twin_ledger_entry, src, body={"entries": {"s": {"value": 10}}}, status=201)
    twin = create_twin(a.tt)
    ok(a.tt.add_twin_ledger_entry, twin, body={"entries": {
        "r": {"ref": {"source": f"twin://{src}/{a.account}/s"}},
        "i": {"include": {"source": f"twin://{src}/s"}},
        "v": {"value": 1},
    }}, status=201)
    for name in ("r", "i"):
        expect_error(a.tt.update_twin_ledger_entry, twin, body={"entries": {name: {"value": 5}}},
                     http=400, subcode=400897)
        expect_error(a.tt.update_twin_ledger_entry_value, twin, body={"entries": {name: {"value": 5}}},
                     http=400, subcode=400897)
    # changing an entry's type
    expect_error(a.tt.update_twin_ledger_entry, twin,
                 body={"entries": {"v": {"ref": {"source": f"twin://{src}/{a.account}/s"}}}},
                 http=400, subcode=400897)
    assert values(a.tt, twin) == {"r": 10, "i": 10, "v": 1}
    got = ledger(a.tt, twin)
    assert "ref" not in got["v"] and "include" not in got["v"], got


def test_reference_into_the_same_ledger_is_400897(server, a):
    twin = create_twin(a.tt)
    ok(a.tt.add_twin_ledger_entry, twin, body={"entries": {"s": {"value": 1}}}, status=201)
    expect_error(a.tt.add_twin_ledger_entry, twin,
                 body={"entries": {"self_ref": {"ref": {"source": f"twin://{twin}/{a.account}/s"}}}},
                 http=400, subcode=400897)
    assert set(ledger(a.tt, twin)) == {"s"}


def test_failed_condition_is_400592_and_nothing_written(server, a):
    twin = create_twin(a.tt)
    added = entries_of(ok(a.tt.add_twin_ledger_entry, twin,
                          body={"entries": {"c": {"value": 1}, "d": {"value": "x"}}}, status=201))
    # a false condition: nothing is written, also not the other entry
    expect_error(a.tt.update_twin_ledger_entry, twin, body={
        "entries": {"c": {"value": 2}, "d": {"value": "y"}},
        "conditions": {"c": "entry_value == 999"},
    }, http=400, subcode=400592)
    assert values(a.tt, twin) == {"c": 1, "d": "x"}
    # one false among true ones
    expect_error(a.tt.update_twin_ledger_entry, twin, body={
        "entries": {"c": {"value": 2}},
        "conditions": {"c": "entry_value == 1", "d": "entry_value == 'nope'"},
    }, http=400, subcode=400592)
    # a condition on a missing entry
    expect_error(a.tt.update_twin_ledger_entry, twin, body={
        "entries": {"c": {"value": 2}},
        "conditions": {"ghost": "true"},
    }, http=400, subcode=400592)
    # on add and delete too
    expect_error(a.tt.add_twin_ledger_entry, twin, body={
        "entries": {"e": {"value": 0}},
        "conditions": {"c": "entry_value > 5"},
    }, http=400, subcode=400592)
    expect_error(a.tt.delete_twin_ledger_entry, twin, params={"entries": ["c"]},
                 body={"conditions": {"c": "entry_value == 0"}}, http=400, subcode=400592)
    assert values(a.tt, twin) == {"c": 1, "d": "x"}
    # optimistic concurrency on value_changed_ts
    ts = added["c"]["value_changed_ts"]
    done = entries_of(ok(a.tt.update_twin_ledger_entry, twin, body={
        "entries": {"c": {"value": 2}},
        "conditions": {"c": f"value_changed_ts == {ts!r}", "d": "entry_value == 'x'"},
    }))
    assert done["c"]["value"] == 2
    expect_error(a.tt.update_twin_ledger_entry, twin, body={
        "entries": {"c": {"value": 3}},
        "conditions": {"c": f"value_changed_ts == {ts!r}"},
    }, http=400, subcode=400592)
    assert values(a.tt, twin) == {"c": 2, "d": "x"}


@pytest.mark.parametrize("retention", ["0D", "1000D", "1H", "INFINITE", "inf", "5d", "1.5M", "", "M", "01D", 5])
def test_bad_history_retention_is_400589(server, a, retention):
    twin = create_twin(a.tt)
    expect_error(a.tt.add_twin_ledger_entry, twin, body={"entries": {"h": {"value": 1, "history": retention}}},
                 http=400, subcode=400589)
    assert ledger(a.tt, twin) == {}
    ok(a.tt.add_twin_ledger_entry, twin, body={"entries": {"h": {"value": 1, "history": "999Y"}}}, status=201)
    expect_error(a.tt.update_twin_ledger_entry, twin, body={"entries": {"h": {"history": retention}}},
                 http=400, subcode=400589)
    assert ledger(a.tt, twin)["h"]["history"] == "999Y"


@pytest.mark.parametrize("limit", [0, 101, -1, "ten"])
def test_bad_history_limit_is_400589(server, a, limit):
    twin = create_twin(a.tt)
    ok(a.tt.add_twin_ledger_entry, twin, body={"entries": {"h": {"value": 1, "history": "1D"}}}, status=201)
    expect_error(a.tt.get_twin_ledger_entry_history, twin, params={"limit": limit}, http=400, subcode=400589)


# --------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SN12345", "#12345", "TOOLONGXX#1", "SN#", "1SN#1", "SN#a b", "SN#a/b",
                                  "SN#" + "a" * 129, "S-N#1", "SN##1"])
def test_bad_identity_name_is_400589(server, a, name):
    twin = create_twin(a.tt)
    expect_error(a.tt.create_twin_identity, twin, body={"identities": {name: {}, "OK#1": {}}},
                 http=400, subcode=400589)
    assert ok(a.tt.get_twin_identities, twin)["identities"] == {}


def test_duplicate_identity_is_400358(server, a):
    twin = create_twin(a.tt)
    assert ok(a.tt.create_twin_identity, twin, body={"identities": {"SN#dup": {"visibility": "true"}}},
              status=201) == {"identities": ["SN#dup"]}
    expect_error(a.tt.create_twin_identity, twin, body={"identities": {"SN#dup": {"visibility": None},
                                                                        "SN#new": {}}},
                 http=400, subcode=400358)
    ids = ok(a.tt.get_twin_identities, twin)["identities"]
    assert set(ids) == {"SN#dup"} and ids["SN#dup"]["visibility"] == "true", ids
    # the same name on another twin is another identity
    other = create_twin(a.tt)
    ok(a.tt.create_twin_identity, other, body={"identities": {"SN#dup": {}}}, status=201)
    assert sorted(ok(a.tt.resolve_twin_identity, "SN#dup")["twins"]) == sorted([twin, other])


# --------------------------------------------------------------------------
# Families not served
# --------------------------------------------------------------------------


UNSERVED = [
    ("get_timeseries_tables", ()),
    ("create_timeseries_table", ()),
    ("get_indexes_tables", ()),
    ("get_databases", ()),
    ("get_batches", ()),
    ("get_log", ()),
    ("get_account_usage", ()),
    ("list_stickers", ()),
    ("create_user_token", ()),
    ("create_upload_url", ()),
    ("get_notifications_access", ()),
    ("webhook_subscribe", ()),
    ("get_twin_docs", ("TWIN",)),
    ("get_stickers", ("TWIN",)),
]


@pytest.mark.parametrize("method,args", UNSERVED, ids=[m for m, _ in UNSERVED])
def test_unserved_family_is_400979(server, a, method, args):
    twin = create_twin(a.tt)
    args = tuple(twin if x == "TWIN" else x for x in args)
    expect_error(getattr(a.tt, method), *args, http=400, subcode=400979)


def test_trace_is_201_empty_object(server, a):
    assert ok(a.tt.trace, status=201) == {}


# --------------------------------------------------------------------------
# Transport quirks (requests)
# --------------------------------------------------------------------------


def test_empty_body_with_json_content_type_is_an_empty_object(server, a):
    status, body = raw(server, "POST", "/twins", a.secret, JSON_HEADERS)
    assert status == 201, body
    twin = body["creation_certificate"]["uuid"]
    assert UUID_RE.match(twin) and "description" not in body, body
    # the client itself sends no body for body={}
    created = ok(a.tt.create_twin, body={}, status=201)
    assert "description" not in created, created
    # PATCH with no body leaves the twin as it is
    ok(a.tt.update_twin, twin, body={"description": {"k": 1}})
    status, body = raw(server, "PATCH", f"/twins/{twin}", a.secret, JSON_HEADERS)
    assert status == 200 and body["description"] == {"k": 1}, body


@pytest.mark.parametrize("word,visible", [
    ("True", True), ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("YES", True),
    ("False", False), ("false", False), ("FaLsE", False), ("0", False), ("no", False), ("No", False),
])
def test_query_booleans(server, a, word, visible):
    twin = create_twin(a.tt)
    ok(a.tt.terminate_twin, twin)
    status, body = raw(server, "GET", f"/twins/{twin}?show_terminated={word}", a.secret)
    if visible:
        assert status == 200 and body["status"] == "terminated", body
    else:
        assert_error(status, body, 404, 404653)


def test_client_booleans_and_bad_booleans(server, a):
    twin = create_twin(a.tt)
    ok(a.tt.terminate_twin, twin)
    # the client sends str(bool): "True" / "False"
    assert ok(a.tt.get_twin, twin, params={"show_terminated": True})["status"] == "terminated"
    expect_error(a.tt.get_twin, twin, params={"show_terminated": False}, http=404, subcode=404653)
    assert ok(a.tt.get_twin, twin)["status"] == "terminated"  # default true
    for bad in ("maybe", "2", "", "tru"):
        status, body = raw(server, "GET", f"/twins/{twin}?show_terminated={bad}", a.secret)
        assert_error(status, body, 400, 400589)


def test_entries_query_forms(server, a):
    twin = create_twin(a.tt)
    ok(a.tt.add_twin_ledger_entry, twin, body={"entries": {n: {"value": i} for i, n in enumerate("abcd")}},
       status=201)
    base = f"/twins/{twin}/ledgers/personal/value"
    for query, want in (("entries=a,b", {"a", "b"}),
                        ("entries=a&entries=c", {"a", "c"}),
                        ("entries=a,b&entries=d", {"a", "b", "d"}),
                        ("entries=c", {"c"}),
                        ("", {"a", "b", "c", "d"})):
        status, body = raw(server, "GET", f"{base}?{query}", a.secret)
        assert status == 200 and set(entries_of(body)) == want, (query, body)
    # the client's list form (repeated keys)
    assert set(values(a.tt, twin, params={"entries": ["b", "d"]})) == {"b", "d"}
    # delete with the comma form
    status, body = raw(server, "DELETE", f"/twins/{twin}/ledgers/personal?entries=a,b", a.secret)
    assert status == 200 and set(entries_of(body)) == {"a", "b"}, body
    assert set(values(a.tt, twin)) == {"c", "d"}


def test_percent_encoded_identity_in_path(server, a):
    twin = create_twin(a.tt)
    name = "SN#a+b=c-1"
    ok(a.tt.create_twin_identity, twin, body={"identities": {name: {}}}, status=201)
    status, body = raw(server, "GET", "/resolve/SN%23a%2Bb%3Dc-1", a.secret)
    assert status == 200 and body == {"twins": [twin]}, body
    status, body = raw(server, "GET", f"/twins/{twin}/identities/SN%23a%2Bb%3Dc-1", a.secret)
    assert status == 200, body
    # the client quotes the path itself
    assert ok(a.tt.resolve_twin_identity, name) == {"twins": [twin]}
    assert ok(a.tt.get_twin_identity, twin, name)["validity_ts"] is None


def test_x_trustedtwin_header_must_be_base64_json(server, a, b):
    twin = create_twin(a.tt)
    ok(a.tt.add_twin_ledger_entry, twin, body={"entries": {"d": {"value": 1, "visibility": "DICT.k == 'v'"}}},
       status=201)
    path = f"/twins/{twin}/ledgers/{a.account}/value"
    status, body = raw(server, "GET", path, b.secret, {"X-TrustedTwin": b64_dict({"k": "v"})})
    assert status == 200 and set(entries_of(body)) == {"d"} and body["entries"]["d"]["value"] == 1, body
    status, body = raw(server, "GET", path, b.secret, {"X-TrustedTwin": b64_dict({"k": "w"})})
    assert status == 200 and entries_of(body) == {}, body
