"""Twins, ledgers, references and history (components/twins/API.md)."""

from __future__ import annotations

import time

import pytest

from twins_helpers import (
    NOT_ACCESSIBLE,
    UUID_RE,
    account,
    assert_history_shape,
    call,
    create_twin,
    entries_of,
    expect_error,
    history,
    ledger,
    ok,
    pause,
    scan_all,
    twin_uuid,
    values,
)

TS_KEYS = {"entry_created_ts", "entry_updated_ts", "value_changed_ts"}


@pytest.fixture(scope="module")
def a(server):
    return account(server)


@pytest.fixture(scope="module")
def b(server):
    return account(server)


def add(acct, twin, entries, ledger_id="personal"):
    return entries_of(ok(acct.tt.add_twin_ledger_entry, twin, ledger_id, body={"entries": entries}, status=201))


# --------------------------------------------------------------------------
# Twins
# --------------------------------------------------------------------------


def test_twin_description_semantics(a):
    bare = ok(a.tt.create_twin, status=201)
    assert "description" not in bare and bare["status"] == "alive", bare
    empty = ok(a.tt.create_twin, body={"description": {}}, status=201)
    assert empty["description"] == {}, empty

    twin = create_twin(a.tt, {"a": 1, "b": [1, 2]})
    t0 = ok(a.tt.get_twin, twin)
    pause()
    replaced = ok(a.tt.update_twin, twin, body={"description": {"c": {"d": None}}})
    assert replaced["description"] == {"c": {"d": None}}, replaced
    assert replaced["updated_ts"] > t0["updated_ts"], (t0, replaced)
    assert ok(a.tt.update_twin, twin, body={"description": {}})["description"] == {}
    removed = ok(a.tt.update_twin, twin, body={"description": None})
    assert "description" not in removed, removed
    ok(a.tt.update_twin, twin, body={"description": {"back": True}})
    # absent: unchanged
    same = ok(a.tt.update_twin, twin)  # no body: the client sends none, the server reads {}
    assert same["description"] == {"back": True}, same
    got = ok(a.tt.get_twin, twin)
    assert got["description"] == {"back": True} and twin_uuid(got) == twin, got
    assert got["owner"] == a.account and got["creation_certificate"]["creator"] == a.account, got


def test_get_twin_show_terminated(a):
    twin = create_twin(a.tt, {"x": 1})
    assert ok(a.tt.get_twin, twin, params={"show_terminated": False})["status"] == "alive"
    term = ok(a.tt.terminate_twin, twin)
    assert term["status"] == "terminated" and term["termination_certificate"]["issuer"] == a.account, term
    got = ok(a.tt.get_twin, twin)
    assert got["status"] == "terminated" and got["description"] == {"x": 1}, got
    assert ok(a.tt.get_twin, twin, params={"show_terminated": True})["status"] == "terminated"
    expect_error(a.tt.get_twin, twin, params={"show_terminated": False}, http=404, subcode=404653)
    # ledgers and identities of a terminated twin stay writable
    add(a, twin, {"after": {"value": 1}})
    ok(a.tt.create_twin_identity, twin, body={"identities": {"T#after": {}}}, status=201)
    assert values(a.tt, twin) == {"after": 1}


def test_scan_twins_paging_match_details(server):
    acct = account(server)
    made = []
    for i in range(25):
        made.append(create_twin(acct.tt, {"n": i, "kind": "even" if i % 2 == 0 else "odd"}))

    everything = ok(acct.tt.scan_twins)
    assert everything["twins"] == made and everything["cursor"] is None, everything

    pages = []
    cursor = None
    while True:
        params = {"count": 10}
        if cursor is not None:
            params["cursor"] = cursor
        page = ok(acct.tt.scan_twins, params=params)
        pages.append(page["twins"])
        cursor = page["cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor, page
    assert [len(p) for p in pages] == [10, 10, 5], pages
    assert sum(pages, []) == made

    assert scan_all(acct.tt, count=1) == made
    assert scan_all(acct.tt, count=1000) == made

    evens = scan_all(acct.tt, match="TWIN.kind == 'even'", count=4)
    assert evens == made[0::2], evens
    assert scan_all(acct.tt, match="TWIN.n >= 20") == made[20:]
    assert scan_all(acct.tt, match="false") == []

    detailed = ok(acct.tt.scan_twins, params={"details": True, "count": 3})
    assert len(detailed["twins"]) == 3, detailed
    for i, t in enumerate(detailed["twins"]):
        assert isinstance(t, dict) and twin_uuid(t) == made[i] and t["description"]["n"] == i, t
    not_detailed = ok(acct.tt.scan_twins, params={"details": False, "count": 3})
    assert not_detailed["twins"] == made[:3], not_detailed

    for bad in (0, 1001, -5, "many"):
        expect_error(acct.tt.scan_twins, params={"count": bad}, http=400, subcode=400589)
    # other accounts' twins are not scanned
    other = account(server)
    create_twin(other.tt)
    assert scan_all(acct.tt) == made


# --------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------


def test_value_entry_shape_and_update_semantics(a):
    twin = create_twin(a.tt)
    created = add(a, twin, {"v": {"value": {"nested": [1, "two", None]}, "visibility": "true"}})["v"]
    assert created["value"] == {"nested": [1, "two", None]} and created["visibility"] == "true", created
    assert TS_KEYS <= set(created), created
    assert "ref" not in created and "include" not in created, created

    pause()
    vis = entries_of(ok(a.tt.update_twin_ledger_entry, twin, body={"entries": {"v": {"visibility": None}}}))["v"]
    assert vis["value"] == created["value"], vis
    assert vis.get("visibility") is None, vis
    assert vis["value_changed_ts"] == created["value_changed_ts"], (created, vis)
    assert vis["entry_updated_ts"] > created["entry_updated_ts"], (created, vis)
    assert vis["entry_created_ts"] == created["entry_created_ts"], (created, vis)

    pause()
    same = entries_of(ok(a.tt.update_twin_ledger_entry, twin,
                         body={"entries": {"v": {"value": {"nested": [1, "two", None]}}}}))["v"]
    assert same["value_changed_ts"] == created["value_changed_ts"], "the value did not change"
    assert same["entry_updated_ts"] > vis["entry_updated_ts"], (vis, same)

    pause()
    changed = entries_of(ok(a.tt.update_twin_ledger_entry, twin, body={"entries": {"v": {"value": 5}}}))["v"]
    assert changed["value"] == 5 and changed["value_changed_ts"] > created["value_changed_ts"], changed
    assert changed.get("visibility") is None, changed
    assert ledger(a.tt, twin)["v"]["value"] == 5


def test_value_endpoints(a):
    twin = create_twin(a.tt)
    add(a, twin, {"x": {"value": 1, "visibility": "true", "history": "1D"}, "y": {"value": "y"}})
    got = entries_of(ok(a.tt.get_twin_ledger_entry_value, twin))
    assert set(got) == {"x", "y"}
    for name, e in got.items():
        assert set(e) == {"value"} | TS_KEYS, (name, e)
    pause()
    upd = entries_of(ok(a.tt.update_twin_ledger_entry_value, twin, body={"entries": {"x": {"value": 2}}}))
    assert upd["x"]["value"] == 2, upd
    full = ledger(a.tt, twin)
    assert full["x"]["value"] == 2 and full["x"]["visibility"] == "true" and full["x"]["history"] == "1D", full
    assert full["y"]["value"] == "y", full
    assert list(history(a.tt, twin, params={"entries": ["x"]})["x"].values()) == [2, 1]
    # value is required on the value endpoint
    expect_error(a.tt.update_twin_ledger_entry_value, twin, body={"entries": {"x": {"visibility": None}}},
                 http=400, subcode=400589)
    assert ledger(a.tt, twin)["x"]["visibility"] == "true"


def test_show_filters_on_personal_ledger(a):
    src = create_twin(a.tt)
    add(a, src, {"s": {"value": "src"}})
    twin = create_twin(a.tt)
    add(a, twin, {
        "pub": {"value": 1, "visibility": "true"},
        "priv": {"value": 2},
        "ref": {"ref": {"source": f"twin://{src}/{a.account}/s"}},
    })
    assert set(ledger(a.tt, twin)) == {"pub", "priv", "ref"}
    assert set(ledger(a.tt, twin, params={"show_references": False})) == {"pub", "priv"}
    no_public = set(ledger(a.tt, twin, params={"show_public": False}))
    assert "priv" in no_public and "pub" not in no_public, no_public
    no_private = set(ledger(a.tt, twin, params={"show_private": False}))
    assert "pub" in no_private and "priv" not in no_private, no_private
    assert set(ledger(a.tt, twin, params={"show_public": False, "show_private": False,
                                          "show_references": False})) == set()
    assert set(ledger(a.tt, twin, params={"entries": ["pub", "ref"]})) == {"pub", "ref"}


def test_delete_entries(a):
    twin = create_twin(a.tt)
    add(a, twin, {"a": {"value": 1, "history": "1D"}, "b": {"value": 2}, "c": {"value": 3}, "d": {"value": 4}})
    deleted = entries_of(ok(a.tt.delete_twin_ledger_entry, twin, params={"entries": ["a", "b", "ghost"]}))
    assert set(deleted) == {"a", "b"} and deleted["a"]["value"] == 1 and deleted["b"]["value"] == 2, deleted
    assert values(a.tt, twin) == {"c": 3, "d": 4}
    assert history(a.tt, twin, params={"entries": ["a"]}) == {"a": NOT_ACCESSIBLE}

    # the history went with the entry
    pause()
    add(a, twin, {"a": {"value": 10, "history": "1D"}})
    assert list(history(a.tt, twin, params={"entries": ["a"]})["a"].values()) == [10]

    everything = entries_of(ok(a.tt.delete_twin_ledger_entry, twin))
    assert set(everything) == {"a", "c", "d"}, everything
    assert ledger(a.tt, twin) == {}
    assert entries_of(ok(a.tt.delete_twin_ledger_entry, twin)) == {}


# --------------------------------------------------------------------------
# References and includes
# --------------------------------------------------------------------------


def test_reference_statuses(a, b):
    src = create_twin(a.tt)
    add(a, src, {"s": {"value": "hello"}})
    twin = create_twin(a.tt)
    add(a, twin, {
        "ok_ref": {"ref": {"source": f"twin://{src}/{a.account}/s"}},
        "missing_ref": {"ref": {"source": f"twin://{src}/{a.account}/nothing"}},
        "ghost_twin_ref": {"ref": {"source": f"twin://{b.account}/{a.account}/s"}},
    })
    got = ledger(a.tt, twin)
    assert got["ok_ref"]["ref"] == {"source": f"twin://{src}/{a.account}/s", "status": "ok"}, got
    assert got["ok_ref"]["value"] == "hello", got
    for name in ("missing_ref", "ghost_twin_ref"):
        assert got[name]["ref"]["status"] == "not_found" and got[name]["value"] is None, got[name]

    # the source appears later: the reference resolves
    add(a, src, {"nothing": {"value": 3}})
    assert ledger(a.tt, twin)["missing_ref"]["ref"]["status"] == "ok"
    assert values(a.tt, twin, params={"entries": ["missing_ref"]}) == {"missing_ref": 3}

    # the source is deleted: not_found again
    ok(a.tt.delete_twin_ledger_entry, src, params={"entries": ["nothing"]})
    again = ledger(a.tt, twin)["missing_ref"]
    assert again["ref"]["status"] == "not_found" and again["value"] is None, again

    # the source twin is terminated: not_found
    ok(a.tt.terminate_twin, src)
    gone = ledger(a.tt, twin)["ok_ref"]
    assert gone["ref"]["status"] == "not_found" and gone["value"] is None, gone


def test_reference_to_foreign_entry_follows_its_visibility(a, b):
    twin_b = create_twin(b.tt)
    add(b, twin_b, {"pub": {"value": "p", "visibility": "true"}, "priv": {"value": "q"}})
    twin = create_twin(a.tt)
    add(a, twin, {
        "to_pub": {"ref": {"source": f"twin://{twin_b}/{b.account}/pub"}},
        "to_priv": {"ref": {"source": f"twin://{twin_b}/{b.account}/priv"}, "visibility": "true"},
    })
    got = ledger(a.tt, twin)
    assert got["to_pub"]["ref"]["status"] == "ok" and got["to_pub"]["value"] == "p", got
    assert got["to_priv"]["ref"]["status"] == "not_found" and got["to_priv"]["value"] is None, got
    assert got["to_priv"]["visibility"] == "true", got
    # B makes the entry public: A's reference resolves
    ok(b.tt.update_twin_ledger_entry, twin_b, body={"entries": {"priv": {"visibility": "true"}}})
    got = ledger(a.tt, twin)
    assert got["to_priv"]["ref"]["status"] == "ok" and got["to_priv"]["value"] == "q", got


def test_reference_visibility_inside_ref(a):
    src = create_twin(a.tt)
    add(a, src, {"s": {"value": 1}})
    twin = create_twin(a.tt)
    add(a, twin, {"r": {"ref": {"source": f"twin://{src}/{a.account}/s", "visibility": "true"}}})
    got = ledger(a.tt, twin)["r"]
    assert got["visibility"] == "true" or got["ref"].get("visibility") == "true", got
    assert got["ref"]["status"] == "ok" and got["value"] == 1, got


def test_reference_loop_detected(a):
    t1 = create_twin(a.tt)
    t2 = create_twin(a.tt)
    add(a, t1, {"r": {"ref": {"source": f"twin://{t2}/{a.account}/s"}}})
    add(a, t2, {"s": {"ref": {"source": f"twin://{t1}/{a.account}/r"}}})
    for twin, name in ((t1, "r"), (t2, "s")):
        e = ledger(a.tt, twin)[name]
        assert e["ref"]["status"] == "loop_detected" and e["value"] is None, e


def test_reference_chains(a):
    def chain(n: int) -> str:
        twins = [create_twin(a.tt) for _ in range(n + 1)]
        add(a, twins[-1], {"e": {"value": f"end of {n}"}})
        for i in range(n - 1, -1, -1):
            add(a, twins[i], {"e": {"ref": {"source": f"twin://{twins[i + 1]}/{a.account}/e"}}})
        return twins[0]

    short = ledger(a.tt, chain(3))["e"]
    assert short["ref"]["status"] == "ok" and short["value"] == "end of 3", short
    long = ledger(a.tt, chain(12))["e"]
    assert long["ref"]["status"] == "too_many_hops" and long["value"] is None, long


def test_include(a):
    src = create_twin(a.tt)
    add(a, src, {"s": {"value": [1, 2]}})
    twin = create_twin(a.tt)
    inc = add(a, twin, {"i": {"include": {"source": f"twin://{src}/s"}}})["i"]
    assert inc["include"]["source"] == f"twin://{src}/s", inc
    got = ledger(a.tt, twin)["i"]
    assert got["value"] == [1, 2] and got["include"]["source"] == f"twin://{src}/s", got
    ok(a.tt.update_twin_ledger_entry, src, body={"entries": {"s": {"value": [3]}}})
    assert values(a.tt, twin) == {"i": [3]}


def test_an_include_of_a_terminated_twin_is_not_found(a):
    """L8: an include of a terminated twin's entry reads as not found, as a
    reference does (before, the terminated twin's value was still shown)."""
    src = create_twin(a.tt)
    add(a, src, {"s": {"value": "secret"}})
    twin = create_twin(a.tt)
    add(a, twin, {"i": {"include": {"source": f"twin://{src}/s"}}})
    assert ledger(a.tt, twin)["i"]["value"] == "secret"
    ok(a.tt.terminate_twin, src)
    gone = ledger(a.tt, twin)["i"]
    assert gone["include"]["status"] == "not_found" and gone["value"] is None, gone


# --------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------


def test_history_order_bounds_limit_and_key_format(a):
    twin = create_twin(a.tt)
    add(a, twin, {"h": {"value": 0, "history": "2W"}, "n": {"value": 0}})
    for v in range(1, 12):
        pause()
        ok(a.tt.update_twin_ledger_entry, twin, body={"entries": {"h": {"value": v}, "n": {"value": v}}})
    h = history(a.tt, twin)
    assert set(h) == {"h", "n"}, h
    assert h["n"] == NOT_ACCESSIBLE, h
    ts = assert_history_shape(h["h"])
    assert list(h["h"].values()) == list(range(11, -1, -1)), h
    assert len(ts) == 12
    current = ledger(a.tt, twin)["h"]
    assert ts[0] == current["value_changed_ts"], (ts[0], current)
    assert ts[-1] == current["entry_created_ts"], (ts[-1], current)

    assert list(history(a.tt, twin, params={"entries": ["h"], "limit": 1})["h"].values()) == [11]
    assert list(history(a.tt, twin, params={"entries": ["h"], "limit": 100})["h"].values()) == list(range(11, -1, -1))
    # ts is newest first: ts[i] holds value 11 - i
    window = history(a.tt, twin, params={"entries": ["h"], "ge": ts[8], "le": ts[3]})["h"]
    assert list(window.values()) == [8, 7, 6, 5, 4, 3], (ts, window)
    window = history(a.tt, twin, params={"entries": ["h"], "ge": ts[8], "le": ts[3], "limit": 2})["h"]
    assert list(window.values()) == [8, 7], window
    older = history(a.tt, twin, params={"entries": ["h"], "le": ts[10]})["h"]
    assert list(older.values()) == [1, 0], older
    assert history(a.tt, twin, params={"entries": ["h"], "ge": ts[0] + 10})["h"] == {}
    assert history(a.tt, twin, params={"entries": ["missing"]}) == {"missing": NOT_ACCESSIBLE}


def test_history_keys_match_value_changed_ts(a):
    twin = create_twin(a.tt)
    seen = [add(a, twin, {"h": {"value": "a", "history": "INF"}})["h"]["value_changed_ts"]]
    for v in ("b", "c"):
        pause()
        e = entries_of(ok(a.tt.update_twin_ledger_entry, twin, body={"entries": {"h": {"value": v}}}))["h"]
        seen.append(e["value_changed_ts"])
    h = history(a.tt, twin)["h"]
    assert list(h) == [str(float(t)) for t in reversed(seen)], (h, seen)
    assert list(h.values()) == ["c", "b", "a"]


def test_history_enabled_later_and_retention_change(a):
    twin = create_twin(a.tt)
    add(a, twin, {"h": {"value": "v1"}})
    assert history(a.tt, twin, params={"entries": ["h"]}) == {"h": NOT_ACCESSIBLE}
    pause()
    ok(a.tt.update_twin_ledger_entry, twin, body={"entries": {"h": {"value": "v2"}}})
    ok(a.tt.update_twin_ledger_entry, twin, body={"entries": {"h": {"history": "1D"}}})
    assert ledger(a.tt, twin)["h"]["history"] == "1D"
    pause()
    ok(a.tt.update_twin_ledger_entry, twin, body={"entries": {"h": {"value": "v3"}}})
    vals = list(history(a.tt, twin, params={"entries": ["h"]})["h"].values())
    assert vals[0] == "v3" and "v1" not in vals, vals
    ok(a.tt.update_twin_ledger_entry, twin, body={"entries": {"h": {"history": "3M"}}})
    got = ledger(a.tt, twin)["h"]
    assert got["history"] == "3M" and got["value"] == "v3", got
    assert list(history(a.tt, twin, params={"entries": ["h"]})["h"].values())[0] == "v3"


def test_many_history_values_are_kept(a):
    """No 1,000-value cap: retention alone bounds the history."""
    twin = create_twin(a.tt)
    add(a, twin, {"h": {"value": -1, "history": "1D"}})
    n = 150
    for v in range(n):
        time.sleep(0.002)
        ok(a.tt.update_twin_ledger_entry_value, twin, body={"entries": {"h": {"value": v}}})
    newest = history(a.tt, twin, params={"entries": ["h"]})["h"]
    assert list(newest.values()) == list(range(n - 1, n - 101, -1)), "limit defaults to 100, newest first"
    ts = assert_history_shape(newest)
    rest = history(a.tt, twin, params={"entries": ["h"], "le": ts[-1] - 0.0005})["h"]
    assert list(rest.values()) == list(range(n - 101, -2, -1)), rest


# --------------------------------------------------------------------------
# Ledger aliases
# --------------------------------------------------------------------------


def test_ledger_aliases(a, b):
    twin = create_twin(a.tt)
    add(a, twin, {"e": {"value": 1, "visibility": "true"}, "p": {"value": 2}})
    assert values(a.tt, twin, a.account) == {"e": 1, "p": 2}
    assert values(a.tt, twin, "owner") == {"e": 1, "p": 2}
    assert values(a.tt, twin, "creator") == {"e": 1, "p": 2}
    # for B, owner/creator is A's ledger, seen from outside
    assert values(b.tt, twin, "owner") == {"e": 1}
    assert values(b.tt, twin, "personal") == {}
    # writes with the own account UUID
    add(a, twin, {"via_uuid": {"value": 3}}, a.account)
    assert values(a.tt, twin)["via_uuid"] == 3
    status, _ = call(b.tt.add_twin_ledger_entry, twin, "owner", body={"entries": {"x": {"value": 1}}})
    assert status == 403
    assert UUID_RE.match(a.account)


def test_history_keeps_the_newest_1000_values(a):
    """Trusted Twin keeps the most recent 1,000 values of an entry's
    history whatever its retention; older ones are gone (the store holds no
    unbounded history, the AAS mirror's included)."""
    twin = create_twin(a.tt)
    add(a, twin, {"h": {"value": 0, "history": "INF"}})
    for v in range(1, 1006):
        ok(a.tt.update_twin_ledger_entry, twin, body={"entries": {"h": {"value": v}}})
    kept: list = []
    le = None
    while True:
        params = {"entries": ["h"], "limit": 100, **({"le": le} if le is not None else {})}
        page = history(a.tt, twin, params=params)["h"]
        if not page:
            break
        kept += list(page.values())
        le = min(float(t) for t in page) - 0.0005
    assert len(kept) == 1000, len(kept)
    assert kept[0] == 1005 and kept[-1] == 6, (kept[:3], kept[-3:])
