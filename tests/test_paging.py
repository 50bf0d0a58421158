"""Cursor paging of the list routes: completeness, order, stability.

These tests use their own servers, so that the exact contents of a list are
known."""

from __future__ import annotations

import pytest

from conftest import (
    Client,
    Server,
    assert_json,
    assert_paged,
    assert_result_body,
    assert_status,
    b64,
    ids_of,
    list_all,
    shell_desc,
    submodel_desc,
    uid,
)

pytestmark = pytest.mark.slow

N = 1000


@pytest.fixture(scope="module")
def paging_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("data-paging")).start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def thousand(paging_server):
    """1,000 shell descriptors, POSTed in this order. Read-only for the tests."""
    run = uid("run").rsplit(":", 1)[1]
    ids = [f"urn:paging:{run}:{i:04d}" for i in range(N)]
    with Client() as c:
        for i, sid in enumerate(ids):
            r = c.post(paging_server.base_url + "/shell-descriptors", json=shell_desc(sid, idShort=f"P{i:04d}"))
            assert_status(r, 201)
    return ids


def walk(client, url, limit, params=None):
    """All pages; returns the list of pages and checks the cursor rules."""
    pages = []
    cursor = None
    seen_cursors = set()
    while True:
        q = dict(params or {})
        if limit is not None:
            q["limit"] = limit
        if cursor is not None:
            q["cursor"] = cursor
        page, cursor = assert_paged(client.get(url, params=q))
        pages.append(page)
        if cursor is None:
            return pages
        assert cursor not in seen_cursors, "cursor repeats: paging would loop"
        seen_cursors.add(cursor)
        assert len(pages) <= N + 1, "too many pages"


def continue_from(client, url, cursor, limit):
    """Every item after `cursor`."""
    items = []
    while cursor:
        page, cursor = assert_paged(client.get(url, params={"limit": limit, "cursor": cursor}))
        assert len(page) <= limit
        items.extend(page)
    return items


@pytest.mark.parametrize("prefix", ["", "/api/v3.0"], ids=["root", "api-v3.0"])
def test_limit_100_sees_every_descriptor_once_in_order(paging_server, thousand, prefix):
    with Client() as c:
        pages = walk(c, paging_server.base_url + prefix + "/shell-descriptors", 100)
    assert [len(p) for p in pages] == [100] * 10, "10 full pages, the last one without cursor"
    seen = [d["id"] for p in pages for d in p]
    assert seen == thousand
    assert [d["idShort"] for p in pages for d in p] == [f"P{i:04d}" for i in range(N)]


def test_odd_limit_37(paging_server, thousand):
    with Client() as c:
        pages = walk(c, paging_server.base_url + "/shell-descriptors", 37)
    sizes = [len(p) for p in pages]
    assert sizes == [37] * 27 + [N - 27 * 37], sizes
    seen = ids_of(d for p in pages for d in p)
    assert seen == thousand
    assert len(set(seen)) == N


def test_default_limit_is_100(paging_server, thousand):
    with Client() as c:
        page, cursor = assert_paged(c.get(paging_server.base_url + "/shell-descriptors"))
        assert len(page) == 100 and cursor
        assert ids_of(page) == thousand[:100]
        # the cursor from a default-limit page continues where it stopped
        page2, _ = assert_paged(c.get(paging_server.base_url + "/shell-descriptors", params={"cursor": cursor}))
        assert ids_of(page2) == thousand[100:200]


def test_limit_covering_everything_has_no_cursor(paging_server, thousand):
    with Client() as c:
        for limit in (N, N + 1, 10000):
            page, cursor = assert_paged(c.get(paging_server.base_url + "/shell-descriptors", params={"limit": limit}))
            assert ids_of(page) == thousand, limit
            assert cursor is None, f"limit={limit}: no cursor on the last page"
        page, cursor = assert_paged(c.get(paging_server.base_url + "/shell-descriptors", params={"limit": N - 1}))
        assert ids_of(page) == thousand[:-1] and cursor
        last, cursor2 = assert_paged(c.get(paging_server.base_url + "/shell-descriptors",
                                           params={"limit": N - 1, "cursor": cursor}))
        assert ids_of(last) == thousand[-1:] and cursor2 is None


def test_limit_one(paging_server, thousand):
    with Client() as c:
        url = paging_server.base_url + "/shell-descriptors"
        cursor = None
        for i in range(5):
            q = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page, cursor = assert_paged(c.get(url, params=q))
            assert ids_of(page) == [thousand[i]]
            assert cursor


def test_cursor_is_reusable(paging_server, thousand):
    with Client() as c:
        url = paging_server.base_url + "/shell-descriptors"
        _, cursor = assert_paged(c.get(url, params={"limit": 250}))
        a, ca = assert_paged(c.get(url, params={"limit": 250, "cursor": cursor}))
        b, cb = assert_paged(c.get(url, params={"limit": 250, "cursor": cursor}))
        assert a == b and ca == cb
        assert ids_of(a) == thousand[250:500]
        # a cursor works with another limit too
        small, _ = assert_paged(c.get(url, params={"limit": 3, "cursor": cursor}))
        assert ids_of(small) == thousand[250:253]


def test_limit_above_maximum_is_refused_or_capped(paging_server, thousand):
    with Client() as c:
        r = c.get(paging_server.base_url + "/shell-descriptors", params={"limit": 10001})
        if r.status_code == 400:
            assert_result_body(r, 400)
        else:
            page, _ = assert_paged(r)
            assert len(page) <= 10000 and ids_of(page) == thousand


def test_paging_survives_deletes_inserts_and_replaces(server_factory):
    s = server_factory()
    url = s.base_url + "/shell-descriptors"
    with Client() as c:
        ids = [uid() for _ in range(250)]
        for i, sid in enumerate(ids):
            assert_status(c.post(url, json=shell_desc(sid, idShort=f"D{i}")), 201)
        page1, cursor = assert_paged(c.get(url, params={"limit": 50}))
        assert ids_of(page1) == ids[:50] and cursor
        # mid-way: delete the cursor's own anchor (last of page 1), one already
        # seen, and some not yet seen; replace one not yet seen; add a new one
        deleted = {ids[49], ids[10], ids[50], ids[120], ids[249]}
        for sid in deleted:
            assert_status(c.delete(f"{url}/{b64(sid)}"), 204)
        assert_status(c.put(f"{url}/{b64(ids[60])}", json=shell_desc(ids[60], idShort="D60-replaced")), 204)
        late = uid()
        assert_status(c.post(url, json=shell_desc(late, idShort="late")), 201)
        rest = continue_from(c, url, cursor, 50)
        expected_rest = [i for i in ids[50:] if i not in deleted] + [late]
        assert ids_of(rest) == expected_rest
        by_id = {d["id"]: d for d in rest}
        assert by_id[ids[60]]["idShort"] == "D60-replaced"
        # a full walk now: creation order, PUT-replaced keeps its place
        everything = list_all(c, url, limit=33)
        assert ids_of(everything) == [i for i in ids if i not in deleted] + [late]
        # a PUT that creates goes to the end
        created = uid()
        assert_status(c.put(f"{url}/{b64(created)}", json=shell_desc(created)), 201)
        assert ids_of(list_all(c, url, limit=7))[-2:] == [late, created]
        # re-POSTing a deleted id puts it at the end
        assert_status(c.post(url, json=shell_desc(ids[10])), 201)
        assert ids_of(list_all(c, url, limit=1000))[-3:] == [late, created, ids[10]]


def test_paging_past_a_deleted_tail(server_factory):
    """The cursor points just before the last items, which are then deleted:
    the next page is empty and has no cursor (not an error)."""
    s = server_factory()
    url = s.base_url + "/shell-descriptors"
    with Client() as c:
        ids = [uid() for _ in range(10)]
        for sid in ids:
            assert_status(c.post(url, json=shell_desc(sid)), 201)
        page, cursor = assert_paged(c.get(url, params={"limit": 5}))
        assert ids_of(page) == ids[:5] and cursor
        for sid in ids[5:]:
            assert_status(c.delete(f"{url}/{b64(sid)}"), 204)
        page, cursor = assert_paged(c.get(url, params={"limit": 5, "cursor": cursor}))
        assert page == [] and cursor is None


def test_submodel_registry_paging(server_factory):
    s = server_factory()
    url = s.base_url + "/api/v3.0/submodel-descriptors"
    with Client() as c:
        ids = [uid("sm") for _ in range(300)]
        for sid in ids:
            assert_status(c.post(url, json=submodel_desc(sid)), 201)
        pages = walk(c, url, 37)
        assert [len(p) for p in pages] == [37] * 8 + [300 - 8 * 37]
        assert ids_of(d for p in pages for d in p) == ids
        # delete mid-way and continue
        first, cursor = assert_paged(c.get(url, params={"limit": 100}))
        gone = ids[100:110]
        for sid in gone:
            assert_status(c.delete(f"{url}/{b64(sid)}"), 204)
        rest = continue_from(c, url, cursor, 100)
        assert ids_of(first) + ids_of(rest) == [i for i in ids if i not in gone]


def test_superpath_paging(server_factory):
    s = server_factory()
    sid = uid()
    with Client() as c:
        assert_status(c.post(s.base_url + "/shell-descriptors", json=shell_desc(sid)), 201)
        url = f"{s.base_url}/shell-descriptors/{b64(sid)}/submodel-descriptors"
        ids = [uid("sm") for _ in range(25)]
        for smid in ids:
            assert_status(c.post(url, json=submodel_desc(smid)), 201)
        pages = walk(c, url, 7)
        assert [len(p) for p in pages] == [7, 7, 7, 4]
        assert ids_of(d for p in pages for d in p) == ids
        shell = assert_json(c.get(f"{s.base_url}/shell-descriptors/{b64(sid)}"))
        assert ids_of(shell["submodelDescriptors"]) == ids


def test_superpath_paging_survives_deletes(server_factory):
    s = server_factory()
    sid = uid()
    with Client() as c:
        assert_status(c.post(s.base_url + "/shell-descriptors", json=shell_desc(sid)), 201)
        url = f"{s.base_url}/shell-descriptors/{b64(sid)}/submodel-descriptors"
        ids = [uid("sm") for _ in range(20)]
        for smid in ids:
            assert_status(c.post(url, json=submodel_desc(smid)), 201)
        first, cursor = assert_paged(c.get(url, params={"limit": 8}))
        assert ids_of(first) == ids[:8] and cursor
        # delete one already seen and the cursor's anchor, then one not yet seen
        gone = {ids[2], ids[7], ids[12]}
        for smid in gone:
            assert_status(c.delete(f"{url}/{b64(smid)}"), 204)
        rest = continue_from(c, url, cursor, 8)
        assert ids_of(rest) == [i for i in ids[8:] if i not in gone], "no item skipped or repeated"
