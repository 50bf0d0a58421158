"""Identities, users, roles and user secrets (components/twins/API.md)."""

from __future__ import annotations

import time
import uuid

import pytest

from twins_helpers import (
    SUPER_ADMIN_RULES,
    UUID_RE,
    account,
    call,
    create_twin,
    expect_error,
    make_user,
    ok,
    pause,
    secret_for,
    tt_for,
    twin_uuid,
)

IDENTITY_KEYS = {"visibility", "validity_ts", "created_ts", "updated_ts"}


@pytest.fixture(scope="module")
def a(server):
    return account(server)


# --------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------


@pytest.fixture
def idents(a):
    """A twin with a private valid, a public valid and an expired identity.

    Returns (twin, {"valid": name, "pub": name, "exp": name}); names are unique per test."""
    twin = create_twin(a.tt, {"kind": "ids"})
    tag = uuid.uuid4().hex[:12]
    names = {k: f"ID#{k}-{tag}" for k in ("valid", "pub", "exp")}
    past = round(time.time() - 60, 3)
    made = ok(a.tt.create_twin_identity, twin, body={"identities": {
        names["valid"]: {},
        names["pub"]: {"visibility": "true", "validity_ts": round(time.time() + 3600, 3)},
        names["exp"]: {"validity_ts": past},
    }}, status=201)
    assert sorted(made["identities"]) == sorted(names.values()), made
    return twin, names


def listed(a, twin, **params) -> dict:
    body = ok(a.tt.get_twin_identities, twin, params=params or None)
    assert isinstance(body.get("identities"), dict), body
    return body["identities"]


def test_identity_list_filters(a, idents):
    twin, n = idents
    default = listed(a, twin)
    assert set(default) == {n["valid"], n["pub"]}, default
    for name, info in default.items():
        assert set(info) == IDENTITY_KEYS, (name, info)
    assert default[n["valid"]]["visibility"] is None and default[n["valid"]]["validity_ts"] is None, default
    assert default[n["pub"]]["visibility"] == "true", default

    assert set(listed(a, twin, show_expired=True)) == {n["valid"], n["pub"], n["exp"]}
    assert set(listed(a, twin, show_expired=True, show_valid=False)) == {n["exp"]}
    assert set(listed(a, twin, show_valid=False)) == set()
    assert set(listed(a, twin, show_public=False)) == {n["valid"]}
    assert set(listed(a, twin, show_private=False)) == {n["pub"]}
    assert set(listed(a, twin, show_private=False, show_expired=True)) == {n["pub"]}
    assert set(listed(a, twin, show_public=False, show_expired=True)) == {n["valid"], n["exp"]}
    assert set(listed(a, twin, show_personal=False)) == set()


def test_expired_identity_does_not_resolve(a, idents):
    twin, n = idents
    assert ok(a.tt.resolve_twin_identity, n["valid"]) == {"twins": [twin]}
    assert ok(a.tt.resolve_twin_identity, n["exp"]) == {"twins": []}
    assert ok(a.tt.resolve_twin_identity, n["exp"], params={"context": "system"}) == {"twins": []}
    assert ok(a.tt.resolve_twin_identity, n["exp"], params={"context": a.account}) == {"twins": []}
    # still readable by name
    assert ok(a.tt.get_twin_identity, twin, n["exp"])["validity_ts"] < time.time()


def test_get_update_delete_identity(a, idents):
    twin, n = idents
    got = ok(a.tt.get_twin_identity, twin, n["valid"])
    assert got["visibility"] is None and got["validity_ts"] is None, got
    pause()
    upd = ok(a.tt.update_twin_identity, twin, n["valid"], body={"visibility": "USER.k == 1"})
    assert upd["visibility"] == "USER.k == 1" and upd["validity_ts"] is None, upd
    again = ok(a.tt.get_twin_identity, twin, n["valid"])
    assert again["visibility"] == "USER.k == 1" and again["updated_ts"] > got["updated_ts"], again

    # expire it through PATCH: it stops resolving
    ok(a.tt.update_twin_identity, twin, n["valid"], body={"validity_ts": round(time.time() - 1, 3)})
    assert ok(a.tt.resolve_twin_identity, n["valid"]) == {"twins": []}
    # validity back to null: it resolves again; visibility untouched
    back = ok(a.tt.update_twin_identity, twin, n["valid"], body={"validity_ts": None})
    assert back["validity_ts"] is None and back["visibility"] == "USER.k == 1", back
    assert ok(a.tt.resolve_twin_identity, n["valid"]) == {"twins": [twin]}

    expect_error(a.tt.update_twin_identity, twin, n["valid"], body={"visibility": "=="}, http=400, subcode=400589)
    assert ok(a.tt.get_twin_identity, twin, n["valid"])["visibility"] == "USER.k == 1"

    ok(a.tt.delete_twin_identity, twin, n["valid"])
    expect_error(a.tt.get_twin_identity, twin, n["valid"], http=404, subcode=404653)
    expect_error(a.tt.delete_twin_identity, twin, n["valid"], http=404, subcode=404653)
    assert ok(a.tt.resolve_twin_identity, n["valid"]) == {"twins": []}
    assert set(listed(a, twin, show_expired=True)) == {n["pub"], n["exp"]}
    # it can be created again
    ok(a.tt.create_twin_identity, twin, body={"identities": {n["valid"]: {}}}, status=201)
    assert ok(a.tt.resolve_twin_identity, n["valid"]) == {"twins": [twin]}


def test_resolve_details(a):
    t1 = create_twin(a.tt, {"n": 1})
    t2 = create_twin(a.tt, {"n": 2})
    for t in (t1, t2):
        ok(a.tt.create_twin_identity, t, body={"identities": {"RFID#shared-1": {}}}, status=201)
    plain = ok(a.tt.resolve_twin_identity, "RFID#shared-1")
    assert sorted(plain["twins"]) == sorted([t1, t2]), plain
    plain_false = ok(a.tt.resolve_twin_identity, "RFID#shared-1", params={"details": False})
    assert sorted(plain_false["twins"]) == sorted([t1, t2]), plain_false

    detailed = ok(a.tt.resolve_twin_identity, "RFID#shared-1", params={"details": True})
    assert isinstance(detailed["twins"], dict) and set(detailed["twins"]) == {t1, t2}, detailed
    for u, twin in detailed["twins"].items():
        assert twin_uuid(twin) == u and twin["owner"] == a.account, twin
    assert detailed["twins"][t1]["description"] == {"n": 1}
    assert detailed["twins"][t2]["description"] == {"n": 2}

    assert ok(a.tt.resolve_twin_identity, "RFID#nobody", params={"details": True}) == {"twins": []}


def test_resolve_details_only_lists_accessible_twins(server, a):
    t_ok = create_twin(a.tt, {"kind": "meter"})
    t_hidden = create_twin(a.tt, {"kind": "valve"})
    for t in (t_ok, t_hidden):
        ok(a.tt.create_twin_identity, t, body={"identities": {"MIX#1": {}}}, status=201)
    role = ok(a.tt.create_user_role, body={"name": "meters only",
                                           "statement": {"effect": "allow", "actions": ["resolve_twin_identity"]},
                                           "rules": {"twin": "TWIN.kind == 'meter'"}}, status=201)["uuid"]
    u = make_user(server, a, role=role)
    # details false: every twin the visible identity is attached to
    assert sorted(ok(u.tt.resolve_twin_identity, "MIX#1")["twins"]) == sorted([t_ok, t_hidden])
    detailed = ok(u.tt.resolve_twin_identity, "MIX#1", params={"details": True})
    assert set(detailed["twins"]) == {t_ok}, detailed


def test_identity_created_by_another_account_is_separate(server, a):
    b = account(server)
    twin = create_twin(a.tt)
    ok(a.tt.create_twin_identity, twin, body={"identities": {"SN#same": {}}}, status=201)
    # B attaches the same name to A's twin: another identity (per account)
    ok(b.tt.create_twin_identity, twin, body={"identities": {"SN#same": {"visibility": "true"}}}, status=201)
    assert ok(b.tt.resolve_twin_identity, "SN#same") == {"twins": [twin]}
    assert ok(a.tt.get_twin_identity, twin, "SN#same")["visibility"] is None
    assert ok(b.tt.get_twin_identity, twin, "SN#same")["visibility"] == "true"
    ok(b.tt.delete_twin_identity, twin, "SN#same")
    assert ok(a.tt.resolve_twin_identity, "SN#same") == {"twins": [twin]}


# --------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------


def test_users_crud(server, a):
    created = ok(a.tt.create_user, body={"name": "Alice", "role": a.role, "description": {"team": "blue"}},
                 status=201)
    u = created["uuid"]
    assert UUID_RE.match(u) and created["account"] == a.account and created["role"] == a.role, created
    assert created["description"] == {"team": "blue"} and created["name"] == "Alice", created

    listing = ok(a.tt.get_users)
    assert isinstance(listing.get("users"), dict), listing
    assert {a.user, u} <= set(listing["users"]), listing
    assert listing["users"][u]["name"] == "Alice", listing
    assert listing["users"][u]["role"] == a.role, listing

    got = ok(a.tt.get_user, u)
    assert got["uuid"] == u and got["name"] == "Alice" and got["description"] == {"team": "blue"}, got

    pause()
    upd = ok(a.tt.update_user, u, body={"name": "Alice B", "description": {"team": "red"}})
    assert upd["name"] == "Alice B" and upd["description"] == {"team": "red"}, upd
    assert upd["updated_ts"] > created["updated_ts"], upd
    assert ok(a.tt.get_user, u)["description"] == {"team": "red"}

    status, body = call(a.tt.update_user, u, body={"role": "not-a-role"})
    assert status in (400, 404), (status, body)
    assert ok(a.tt.get_user, u)["role"] == a.role

    secret = secret_for(server, a.tt, a.account, u)
    assert ok(tt_for(server, secret).who_am_i)["user"] == u
    ok(a.tt.delete_user, u)
    expect_error(a.tt.get_user, u, http=404, subcode=404653)
    assert u not in ok(a.tt.get_users)["users"]
    expect_error(tt_for(server, secret).who_am_i, http=401, subcode=401000)


def test_users_of_other_accounts_are_invisible(server, a):
    b = account(server)
    expect_error(b.tt.get_user, a.user, http=404, subcode=404653)
    expect_error(b.tt.update_user, a.user, body={"name": "evil"}, http=404, subcode=404653)
    expect_error(b.tt.create_user_secret_pin, a.user, http=404, subcode=404653)
    assert a.user not in ok(b.tt.get_users)["users"]
    expect_error(b.tt.get_user_role, a.role, http=404, subcode=404653)
    expect_error(b.tt.create_user, body={"name": "x", "role": a.role}, http=404, subcode=404653)


# --------------------------------------------------------------------------
# Roles
# --------------------------------------------------------------------------


def test_roles_crud_and_rule_spelling(a):
    long_form = ok(a.tt.create_user_role, body={
        "name": "long form",
        "statement": {"effect": "allow", "actions": ["get_twin"]},
        "rules": {"twin_rule": "TWIN.kind == 'x'", "entry_rule": None},
    }, status=201)
    assert long_form["rules"]["twin_rule"] == "TWIN.kind == 'x'", long_form
    assert long_form["rules"].get("entry_rule") is None and long_form["rules"].get("identity_rule") is None
    assert "twin" not in long_form["rules"], long_form

    short_form = ok(a.tt.create_user_role, body={
        "name": "short form",
        "statement": {"effect": "deny", "actions": ["terminate_twin"]},
        "rules": {"twin": "true", "identity": "USER.x == 1"},
    }, status=201)
    assert short_form["rules"]["twin"] == "true" and short_form["rules"]["identity"] == "USER.x == 1", short_form
    assert short_form["rules"].get("entry") is None, short_form
    assert "twin_rule" not in short_form["rules"], short_form

    assert ok(a.tt.get_user_role, long_form["uuid"])["rules"]["twin_rule"] == "TWIN.kind == 'x'"
    assert ok(a.tt.get_user_role, short_form["uuid"])["rules"]["twin"] == "true"

    roles = ok(a.tt.get_user_roles)
    assert isinstance(roles.get("roles"), dict), roles
    assert {a.role, long_form["uuid"], short_form["uuid"]} <= set(roles["roles"]), roles
    assert roles["roles"][long_form["uuid"]]["name"] == "long form", roles
    assert roles["roles"][a.role]["name"] == "Super Admin", roles

    pause()
    upd = ok(a.tt.update_user_role, long_form["uuid"], body={"name": "renamed",
                                                              "statement": {"effect": "allow",
                                                                            "actions": ["get_twin", "create_twin"]}})
    assert upd["name"] == "renamed", upd
    assert upd["statement"] == {"effect": "allow", "actions": ["get_twin", "create_twin"]}, upd
    assert upd["rules"]["twin_rule"] == "TWIN.kind == 'x'", "rules absent from the PATCH stay"
    assert upd["updated_ts"] > long_form["updated_ts"], upd
    assert ok(a.tt.get_user_role, long_form["uuid"])["name"] == "renamed"

    ok(a.tt.delete_user_role, short_form["uuid"])
    expect_error(a.tt.get_user_role, short_form["uuid"], http=404, subcode=404653)
    assert short_form["uuid"] not in ok(a.tt.get_user_roles)["roles"]


def test_role_statement_semantics(server, a):
    twin = create_twin(a.tt)
    cases = [
        ({"effect": "allow", "actions": ["get_twin"]}, True, False),
        ({"effect": "deny", "actions": ["get_twin"]}, False, True),
        ({"effect": "deny", "actions": None}, True, True),
        ({"effect": "allow", "actions": None}, False, False),
        ({"effect": "allow", "actions": []}, False, False),
        ({"effect": "deny", "actions": []}, True, True),
    ]
    for statement, can_get, can_create in cases:
        role = ok(a.tt.create_user_role, body={"name": "stmt", "statement": statement}, status=201)["uuid"]
        u = make_user(server, a, role=role)
        status, _ = call(u.tt.get_twin, twin)
        assert (status == 200) == can_get and status in (200, 403), (statement, status)
        status, _ = call(u.tt.create_twin)
        assert (status == 201) == can_create and status in (201, 403), (statement, status)


def test_super_admin_role(a):
    role = ok(a.tt.get_user_role, a.role)
    assert role["name"] == "Super Admin" and role["rules"] == SUPER_ADMIN_RULES, role
    assert role["statement"] == {"effect": "deny", "actions": []}, role


# --------------------------------------------------------------------------
# User secrets
# --------------------------------------------------------------------------


def test_user_secret_metadata_update_delete(server, a):
    u = make_user(server, a)
    meta = ok(a.tt.get_user_secret, u.user)
    assert set(meta) == {"account", "user", "validity_ts", "created_ts", "updated_ts", "fingerprint"}, meta
    assert meta["fingerprint"] == u.secret[-4:], (meta, u.secret[-4:])
    assert meta["account"] == a.account and meta["user"] == u.user and meta["validity_ts"] is None, meta

    future = round(time.time() + 7200, 3)
    upd = ok(a.tt.update_user_secret, u.user, body={"validity_ts": future})
    assert abs(upd["validity_ts"] - future) < 0.01 and upd["fingerprint"] == u.secret[-4:], upd
    assert ok(u.tt.who_am_i)["user"] == u.user

    ok(a.tt.update_user_secret, u.user, body={"validity_ts": round(time.time() - 1, 3)})
    expect_error(u.tt.who_am_i, http=401, subcode=401000)
    ok(a.tt.update_user_secret, u.user, body={"validity_ts": None})
    assert ok(u.tt.who_am_i)["user"] == u.user

    ok(a.tt.delete_user_secret, u.user)
    expect_error(u.tt.who_am_i, http=401, subcode=401000)
    expect_error(a.tt.get_user_secret, u.user, http=404, subcode=404653)
    expect_error(a.tt.update_user_secret, u.user, body={"validity_ts": None}, http=404, subcode=404653)


def test_new_secret_replaces_the_old_one(server, a):
    u = make_user(server, a)
    second = secret_for(server, a.tt, a.account, u.user)
    assert second != u.secret
    expect_error(u.tt.who_am_i, http=401, subcode=401000)
    assert ok(tt_for(server, second).who_am_i)["user"] == u.user
    assert ok(a.tt.get_user_secret, u.user)["fingerprint"] == second[-4:]


def test_user_without_secret_has_no_secret_metadata(a):
    u = ok(a.tt.create_user, body={"name": "no secret", "role": a.role}, status=201)["uuid"]
    expect_error(a.tt.get_user_secret, u, http=404, subcode=404653)
    expect_error(a.tt.delete_user_secret, u, http=404, subcode=404653)
