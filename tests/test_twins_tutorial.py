"""The Trusted Twin tutorial "Create a digital twin of a meter [Python]", end to end.

One walk through the whole tutorial with the official client, against the
real server: Super Admin (from the CLI) → role → user → PIN → secret → twin →
ledger → identity → measurements → history → location → demo data →
references → delete → terminate. Contract: components/twins/API.md.
"""

from __future__ import annotations

import time

from trustedtwin.tt_api import TTRESTService

from twins_helpers import (
    NOT_ACCESSIBLE,
    PIN_RE,
    SECRET_RE,
    SUPER_ADMIN_RULES,
    TUTORIAL_ACTIONS,
    UUID_RE,
    assert_history_shape,
    call,
    create_twin,
    demo_seed,
    entries_of,
    expect_error,
    history,
    ledger,
    new_account,
    ok,
    pause,
    tt_for,
    twin_api_url,
    twin_uuid,
    values,
)

DEMO_APP = "Trusted Twin DEMO App"
TUTORIAL_RULE = "TWIN.application == 'Trusted Twin DEMO App'"
TS_KEYS = {"entry_created_ts", "entry_updated_ts", "value_changed_ts"}


def meter_description(serial: str, **extra) -> dict:
    d = {
        "application": DEMO_APP,
        "object": "water meter",
        "serial": serial,
        "website": "https://trustedtwin.com",
    }
    d.update(extra)
    return d


def test_tutorial_meter_walk(server):
    # ---- Super Admin ---------------------------------------------------
    sa = new_account(server, name="tutorial")
    sa_tt = tt_for(server, sa["secret"])

    me = ok(sa_tt.who_am_i)
    assert me == {"account": sa["account"], "user": sa["user"], "role": sa["role"]}

    role = ok(sa_tt.get_user_role, me["role"])
    assert role["name"] == "Super Admin", role
    assert role["uuid"] == sa["role"] and role["account"] == sa["account"], role
    assert role["statement"] == {"effect": "deny", "actions": []}, role
    assert role["rules"] == SUPER_ADMIN_RULES, role

    # ---- role, user, PIN, secret ----------------------------------------
    role_body = {
        "name": "Tutorial Role",
        "rules": {"twin": TUTORIAL_RULE},
        "statement": {"effect": "allow", "actions": TUTORIAL_ACTIONS},
    }
    new_role = ok(sa_tt.create_user_role, body=role_body, status=201)
    assert UUID_RE.match(new_role["uuid"]) and new_role["uuid"] != sa["role"], new_role
    assert new_role["account"] == sa["account"], new_role
    assert new_role["name"] == "Tutorial Role", new_role
    assert new_role["statement"] == role_body["statement"], new_role
    assert new_role["rules"]["twin"] == TUTORIAL_RULE, new_role
    assert new_role["rules"].get("entry") is None and new_role["rules"].get("identity") is None, new_role
    assert "twin_rule" not in new_role["rules"], f"rules must be answered in the spelling written: {new_role}"
    assert ok(sa_tt.get_user_role, new_role["uuid"])["statement"] == role_body["statement"]

    user = ok(sa_tt.create_user, body={"name": "Tutorial User", "role": new_role["uuid"],
                                       "description": {"department": "meters"}}, status=201)
    assert UUID_RE.match(user["uuid"]), user
    assert user["role"] == new_role["uuid"] and user["account"] == sa["account"], user
    assert user["name"] == "Tutorial User" and user["description"] == {"department": "meters"}, user

    validity = round(time.time() + 3600, 3)
    pin = ok(sa_tt.create_user_secret_pin, user["uuid"], body={"validity_ts": validity}, status=201)
    assert PIN_RE.match(pin["pin"]), pin

    anonymous = TTRESTService(tt_base=twin_api_url(server))
    made = ok(anonymous.create_user_secret, sa["account"], pin["pin"], status=201)
    assert made["account"] == sa["account"] and made["user"] == user["uuid"], made
    assert SECRET_RE.match(made["secret"]), made
    assert abs(made["validity_ts"] - validity) < 0.01, made
    secret = made["secret"]
    # the PIN is single use
    expect_error(anonymous.create_user_secret, sa["account"], pin["pin"], http=404, subcode=404653)

    tt = tt_for(server, secret)
    assert ok(tt.who_am_i) == {"account": sa["account"], "user": user["uuid"], "role": new_role["uuid"]}

    # ---- the role only allows the tutorial's actions --------------------
    expect_error(tt.create_user, body={"name": "x", "role": new_role["uuid"]}, http=403, subcode=403535)
    expect_error(tt.get_user_role, new_role["uuid"], http=403, subcode=403535)
    expect_error(tt.scan_twins, http=403, subcode=403535)
    expect_error(tt.create_user_secret_pin, user["uuid"], http=403, subcode=403535)

    # ---- the twin ---------------------------------------------------------
    serial = "12345"
    description = meter_description(serial)
    created = ok(tt.create_twin, body={"description": description}, status=201)
    twin = twin_uuid(created)
    assert created["status"] == "alive", created
    assert created["owner"] == sa["account"], created
    assert created["creation_certificate"]["creator"] == sa["account"], created
    assert created["description"] == description, created
    assert "uuid" not in created, f"the twin UUID is only in creation_certificate: {created}"

    got = ok(tt.get_twin, twin)
    assert twin_uuid(got) == twin and got["description"] == description and got["status"] == "alive", got
    assert got["owner"] == sa["account"], got

    # ---- ledger entries ---------------------------------------------------
    first = {
        "reading": {"value": 100, "visibility": "true", "history": "1M"},
        "battery": {"value": 98},
        "log": {"value": {"errors": []}},
        "location": {"value": {"lat": 54.352, "lon": 18.646}},
    }
    added = entries_of(ok(tt.add_twin_ledger_entry, twin, body={"entries": first}, status=201))
    assert set(added) == set(first), added
    for name, spec in first.items():
        assert added[name]["value"] == spec["value"], (name, added[name])
        assert TS_KEYS <= set(added[name]), (name, added[name])
        assert added[name]["entry_created_ts"] <= added[name]["entry_updated_ts"], added[name]
    assert added["reading"]["visibility"] == "true" and added["reading"]["history"] == "1M", added["reading"]
    assert added["battery"].get("visibility") is None, added["battery"]

    # adding again: 400358, nothing changes
    again = {"reading": {"value": 555}, "extra": {"value": 1}}
    expect_error(tt.add_twin_ledger_entry, twin, body={"entries": again}, http=400, subcode=400358)
    now_values = values(tt, twin)
    assert now_values == {k: v["value"] for k, v in first.items()}, now_values

    # ---- identity -----------------------------------------------------------
    ident = f"SN#{serial}"
    made_ident = ok(tt.create_twin_identity, twin,
                    body={"identities": {ident: {"visibility": None, "validity_ts": None}}}, status=201)
    assert made_ident == {"identities": [ident]}, made_ident
    for bad in ("SN-12345", "SERIALNUM1#12345", "SN#", "1SN#12345", "SN#12 345"):
        expect_error(tt.create_twin_identity, twin, body={"identities": {bad: {}}}, http=400, subcode=400589)

    idents = ok(tt.get_twin_identities, twin)
    assert set(idents["identities"]) == {ident}, idents
    info = idents["identities"][ident]
    assert info["visibility"] is None and info["validity_ts"] is None, info
    assert isinstance(info["created_ts"], float | int) and isinstance(info["updated_ts"], float | int), info

    def resolve() -> str:
        r = ok(tt.resolve_twin_identity, ident, params={"context": "personal"})
        assert r == {"twins": [twin]}, r
        return r["twins"][0]

    assert resolve() == twin

    # ---- store and read measurements ---------------------------------------
    readings = [101, 102.5, 104]
    for v in readings:
        pause()
        t = resolve()
        upd = entries_of(ok(tt.update_twin_ledger_entry, t, body={"entries": {"reading": {"value": v}}}))
        assert upd["reading"]["value"] == v, upd

    one = ledger(tt, resolve(), params={"entries": ["reading"]})
    assert set(one) == {"reading"}, one
    assert one["reading"]["value"] == 104, one
    assert one["reading"]["visibility"] == "true" and one["reading"]["history"] == "1M", one
    assert one["reading"]["value_changed_ts"] > one["reading"]["entry_created_ts"], one

    vals = entries_of(ok(tt.get_twin_ledger_entry_value, twin))
    assert set(vals) == set(first), vals
    assert vals["reading"]["value"] == 104 and vals["battery"]["value"] == 98, vals
    for name, e in vals.items():
        assert set(e) == {"value"} | TS_KEYS, (name, e)

    # ---- history ----------------------------------------------------------
    h = history(tt, twin, params={"entries": ["reading"]})
    assert set(h) == {"reading"}, h
    ts = assert_history_shape(h["reading"])
    assert list(h["reading"].values()) == [104, 102.5, 101, 100], h
    assert len(ts) == 4
    assert ts[0] == one["reading"]["value_changed_ts"], (ts, one)

    limited = history(tt, twin, params={"entries": ["reading"], "limit": 2})["reading"]
    assert list(limited.values()) == [104, 102.5], limited

    window = history(tt, twin, params={"entries": ["reading"], "ge": ts[2], "le": ts[1]})["reading"]
    assert list(window.values()) == [102.5, 101], (ts, window)
    newer = history(tt, twin, params={"entries": ["reading"], "ge": ts[1]})["reading"]
    assert list(newer.values()) == [104, 102.5], (ts, newer)

    # an entry without history
    both = history(tt, twin, params={"entries": ["reading", "battery"]})
    assert both["battery"] == NOT_ACCESSIBLE, both
    assert list(both["reading"].values()) == [104, 102.5, 101, 100], both

    # ---- change location ----------------------------------------------------
    new_description = meter_description(serial, location="Gdańsk, Długa 1")
    del new_description["website"]
    upd_twin = ok(tt.update_twin, twin, body={"description": new_description})
    assert upd_twin["description"] == new_description, upd_twin
    assert ok(tt.get_twin, twin)["description"] == new_description
    new_location = {"lat": 54.348, "lon": 18.653}
    ok(tt.update_twin_ledger_entry, twin, body={"entries": {"location": {"value": new_location}}})
    assert values(tt, twin, params={"entries": ["location"]}) == {"location": new_location}

    # ---- the demo data ---------------------------------------------------------
    seed = demo_seed(server)
    assert demo_seed(server) == seed, "demo seed must be idempotent"
    demo_account, demo_twin, meters = seed["account"], seed["twin"], seed["meters"]
    assert demo_account != sa["account"]

    resolved = ok(tt.resolve_twin_identity, seed["identity"], params={"context": demo_account})
    assert resolved == {"twins": [demo_twin]}, resolved
    # it is not an identity of the user's own account
    assert ok(tt.resolve_twin_identity, seed["identity"], params={"context": "personal"}) == {"twins": []}

    demo = ok(tt.get_twin, demo_twin)
    assert demo["description"]["application"] == DEMO_APP, demo
    assert demo["owner"] == demo_account, demo

    some = meters[:3]
    demo_vals = values(tt, demo_twin, demo_account, params={"entries": some})
    assert set(demo_vals) == set(some), demo_vals
    for m in some:
        assert isinstance(demo_vals[m], int | float) and not isinstance(demo_vals[m], bool), demo_vals
    stations = values(tt, demo_twin, demo_account, params={"entries": ["meters"]})
    assert set(stations) == {"meters"} and stations["meters"], stations
    assert isinstance(stations["meters"], list | dict), stations
    assert some[0] in str(stations["meters"]), stations

    # the demo ledger is not writable for the user
    expect_error(tt.update_twin_ledger_entry, demo_twin, demo_account,
                 body={"entries": {some[0]: {"value": -1}}}, http=403, subcode=403535)
    assert values(tt, demo_twin, demo_account, params={"entries": [some[0]]}) == {some[0]: demo_vals[some[0]]}

    # ---- references -------------------------------------------------------------
    meter = some[0]
    source = f"twin://{demo_twin}/{demo_account}/{meter}"
    ref_added = entries_of(ok(tt.add_twin_ledger_entry, twin,
                              body={"entries": {"temperature": {"ref": {"source": source}}}}, status=201))
    assert set(ref_added) == {"temperature"}, ref_added
    temp = ledger(tt, twin, params={"entries": ["temperature"]})["temperature"]
    assert temp["ref"]["source"] == source and temp["ref"]["status"] == "ok", temp
    assert temp["value"] == demo_vals[meter], (temp, demo_vals)
    assert values(tt, twin, params={"entries": ["temperature"]}) == {"temperature": demo_vals[meter]}

    # read after update: a second own twin is the source
    twin2 = create_twin(tt, meter_description("67890"))
    ok(tt.add_twin_ledger_entry, twin2, body={"entries": {"reading": {"value": 7}}}, status=201)
    peer_source = f"twin://{twin2}/{sa['account']}/reading"
    ok(tt.add_twin_ledger_entry, twin, body={"entries": {"peer": {"ref": {"source": peer_source}}}}, status=201)
    peer = ledger(tt, twin, params={"entries": ["peer"]})["peer"]
    assert peer["ref"]["source"] == peer_source and peer["ref"]["status"] == "ok", peer
    assert peer["value"] == 7, peer
    pause()
    src_after = entries_of(ok(tt.update_twin_ledger_entry, twin2, body={"entries": {"reading": {"value": 8}}}))
    peer = ledger(tt, twin, params={"entries": ["peer"]})["peer"]
    assert peer["value"] == 8 and peer["ref"]["status"] == "ok", peer
    assert peer["value_changed_ts"] == src_after["reading"]["value_changed_ts"], (peer, src_after)
    # the value of a reference cannot be written
    expect_error(tt.update_twin_ledger_entry, twin, body={"entries": {"peer": {"value": 9}}},
                 http=400, subcode=400897)
    assert values(tt, twin, params={"entries": ["peer"]}) == {"peer": 8}

    # ---- delete an entry ----------------------------------------------------------
    deleted = entries_of(ok(tt.delete_twin_ledger_entry, twin, params={"entries": ["log"]}))
    assert set(deleted) == {"log"} and deleted["log"]["value"] == {"errors": []}, deleted
    left = ledger(tt, twin)
    assert set(left) == {"reading", "battery", "location", "temperature", "peer"}, left

    # ---- terminate ------------------------------------------------------------------
    term = ok(tt.terminate_twin, twin)
    assert term["status"] == "terminated", term
    assert term["termination_certificate"]["issuer"] == sa["account"], term
    assert isinstance(term["termination_certificate"]["terminated_ts"], float | int), term
    body = expect_error(tt.terminate_twin, twin, http=400, subcode=400358)
    assert body["description"] == "Twin already terminated.", body
    assert ok(tt.get_twin, twin)["status"] == "terminated"
    status, _ = call(tt.get_twin, twin, params={"show_terminated": False})
    assert status == 404
    # ledgers of a terminated twin stay writable
    ok(tt.update_twin_ledger_entry, twin, body={"entries": {"battery": {"value": 97}}})
    assert values(tt, twin, params={"entries": ["battery"]}) == {"battery": 97}


def test_tutorial_role_only_sees_demo_app_twins(server):
    """The tutorial's twin rule keeps the user away from other twins, own account included."""
    sa = new_account(server)
    sa_tt = tt_for(server, sa["secret"])
    role = ok(sa_tt.create_user_role, body={
        "name": "Tutorial Role",
        "rules": {"twin": TUTORIAL_RULE},
        "statement": {"effect": "allow", "actions": TUTORIAL_ACTIONS},
    }, status=201)["uuid"]
    user = ok(sa_tt.create_user, body={"name": "meter user", "role": role}, status=201)["uuid"]
    pin = ok(sa_tt.create_user_secret_pin, user, status=201)["pin"]
    secret = ok(TTRESTService(tt_base=twin_api_url(server)).create_user_secret, sa["account"], pin, status=201)["secret"]
    tt = tt_for(server, secret)

    other = create_twin(sa_tt, {"application": "something else"})
    mine = create_twin(sa_tt, {"application": DEMO_APP})
    bare = create_twin(sa_tt)

    assert twin_uuid(ok(tt.get_twin, mine)) == mine
    expect_error(tt.get_twin, other, http=404, subcode=404653)
    expect_error(tt.get_twin, bare, http=404, subcode=404653)
    expect_error(tt.get_twin_ledger_entry, other, http=404, subcode=404653)
    # the Super Admin still sees both
    assert twin_uuid(ok(sa_tt.get_twin, other)) == other

    # a role without an action: 403535 and nothing written
    no_terminate = ok(sa_tt.create_user_role, body={
        "name": "no terminate",
        "rules": {"twin": TUTORIAL_RULE},
        "statement": {"effect": "deny", "actions": ["terminate_twin"]},
    }, status=201)["uuid"]
    u2 = ok(sa_tt.create_user, body={"name": "no terminate", "role": no_terminate}, status=201)["uuid"]
    pin2 = ok(sa_tt.create_user_secret_pin, u2, status=201)["pin"]
    s2 = ok(TTRESTService(tt_base=twin_api_url(server)).create_user_secret, sa["account"], pin2, status=201)["secret"]
    tt2 = tt_for(server, s2)
    expect_error(tt2.terminate_twin, mine, http=403, subcode=403535)
    assert ok(sa_tt.get_twin, mine)["status"] == "alive"
    # everything else is allowed (deny + list)
    assert twin_uuid(ok(tt2.get_twin, mine)) == mine
