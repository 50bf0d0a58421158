"""The admin endpoint's bulk twin loader (benchmarks, capacity tests)."""

from __future__ import annotations

import pytest
import requests

from twins_helpers import account, admin_headers, admin_url, ok, scan_all

# The loader is the embedded host's admin endpoint (`POST /admin/bulk-twins`);
# a lattice has no admin endpoint.
pytestmark = pytest.mark.embedded


def test_bulk_twins_are_ordinary_twins(server):
    a = account(server)
    r = requests.post(f"{admin_url(server)}/admin/bulk-twins", json={"account": a.account, "count": 25, "entries": 3},
                      headers=admin_headers(server), timeout=30)
    assert r.status_code == 200, r.text
    made = r.json()
    assert len(made) == 25 and len(set(made)) == 25
    assert scan_all(a.tt) == made, "scan order is creation order"
    values = ok(a.tt.get_twin_ledger_entry_value, made[7])["entries"]
    assert {k: v["value"] for k, v in values.items()} == {"e0": 0, "e1": 1, "e2": 2}
    assert ok(a.tt.get_twin, made[7])["owner"] == a.account


def test_bulk_twins_refuses_bad_arguments(server):
    a = account(server)
    for body in ({"account": a.account, "count": 0, "entries": 1},
                 {"account": a.account, "count": 10_001, "entries": 1},
                 {"account": a.account, "count": 1, "entries": 65},
                 {"account": "00000000-0000-4000-8000-000000000000", "count": 1, "entries": 1}):
        r = requests.post(f"{admin_url(server)}/admin/bulk-twins", json=body, headers=admin_headers(server), timeout=30)
        assert r.status_code == 400 and "error" in r.json(), (body, r.text)
    assert scan_all(a.tt) == []
