"""Concurrent writers on one ledger lose nothing.

Writes to one ledger are serialized by a per-ledger lock in the store, so
parallel updates of different entries all land, and parallel updates of one
entry each leave their value in its history.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from twins_helpers import account, create_twin, history, ledger, ok, twin_api_url

WRITERS = 8
WRITES = 25


def test_parallel_writers_lose_no_update_and_no_history(server):
    a = account(server)
    twin = create_twin(a.tt)
    ok(a.tt.add_twin_ledger_entry, twin, status=201, body={"entries": {f"e{i}": {"value": -1} for i in range(WRITERS)} | {"shared": {"value": -1, "history": "INF"}}})
    url = f"{twin_api_url(server)}/twins/{twin}/ledgers/personal"
    headers = {"Authorization": a.secret, "Content-Type": "application/json"}

    def writer(i: int) -> list[int]:
        s = requests.Session()
        codes = []
        for n in range(WRITES):
            body = {"entries": {f"e{i}": {"value": n}, "shared": {"value": i * 1000 + n}}}
            codes.append(s.patch(url, json=body, headers=headers, timeout=30).status_code)
        return codes

    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(writer, range(WRITERS)))
    assert all(code == 200 for codes in results for code in codes), results

    entries = ledger(a.tt, twin)
    # Every writer's own entry holds its last value: no update was lost.
    assert {f"e{i}": entries[f"e{i}"]["value"] for i in range(WRITERS)} == {f"e{i}": WRITES - 1 for i in range(WRITERS)}
    # The shared entry's history holds every value written (plus the first),
    # read back 100 at a time through le.
    seen: list = []
    params = {"entries": ["shared"], "limit": 100}
    while True:
        page = history(a.tt, twin, params=params)["shared"]
        if not page:
            break
        seen.extend(page.values())
        params = {"entries": ["shared"], "limit": 100, "le": min(float(k) for k in page) - 0.0005}
        if len(page) < 100:
            break
    written = {i * 1000 + n for i in range(WRITERS) for n in range(WRITES)}
    # History times are distinct per entry (a value changed in the same
    # millisecond as the last one is stamped a millisecond later), so every
    # value shows up exactly once, newest first, and the newest is the
    # current value.
    assert sorted(seen) == sorted(written | {-1}), (len(seen), len(written) + 1)
    assert seen[0] == entries["shared"]["value"]
