"""Durability: data survives a clean restart (SIGTERM) and a crash (SIGKILL)
right after the 201s were received."""

from __future__ import annotations

import signal

import pytest

from conftest import (
    Client,
    assert_json,
    assert_paged,
    assert_result_body,
    assert_status,
    b64,
    ids_of,
    list_all,
    semantic_id,
    shell_desc,
    snapshot,
    submodel_desc,
    uid,
)

pytestmark = pytest.mark.slow


def test_clean_restart_keeps_everything(server_factory):
    s = server_factory()
    c = s.client
    api = s.base_url
    shells = [uid() for _ in range(5)]
    for i, sid in enumerate(shells):
        assert_status(c.post(api + "/shell-descriptors", json=shell_desc(sid, idShort=f"R{i}", assetKind="Instance")),
                      201)
    nested = uid("sm")
    assert_status(c.post(f"{api}/shell-descriptors/{b64(shells[0])}/submodel-descriptors",
                         json=submodel_desc(nested, idShort="Nested")), 201)
    sms = [uid("sm") for _ in range(3)]
    for smid in sms:
        assert_status(c.post(api + "/submodel-descriptors", json=submodel_desc(smid, semanticId=semantic_id("urn:s"))),
                      201)
    # a replace and a delete before the restart
    assert_status(c.put(f"{api}/shell-descriptors/{b64(shells[2])}", json=shell_desc(shells[2], idShort="R2-new")), 204)
    assert_status(c.delete(f"{api}/shell-descriptors/{b64(shells[3])}"), 204)
    assert_status(c.delete(f"{api}/submodel-descriptors/{b64(sms[1])}"), 204)
    before = snapshot(c, api)
    before_docs = {sid: assert_json(c.get(f"{api}/shell-descriptors/{b64(sid)}"))
                   for sid in shells if sid != shells[3]}

    code = s.stop()
    assert code in (0, -signal.SIGTERM), f"SIGTERM should end the server cleanly, exit code {code}\n{s.stderr_tail()}"
    s.start()
    c, api = s.client, s.base_url

    assert snapshot(c, api) == before
    for sid, doc in before_docs.items():
        assert assert_json(c.get(f"{api}/shell-descriptors/{b64(sid)}")) == doc
    assert assert_json(c.get(f"{api}/shell-descriptors/{b64(shells[2])}"))["idShort"] == "R2-new"
    assert_result_body(c.get(f"{api}/shell-descriptors/{b64(shells[3])}"), 404)
    assert_result_body(c.get(f"{api}/submodel-descriptors/{b64(sms[1])}"), 404)
    assert assert_json(c.get(f"{api}/shell-descriptors/{b64(shells[0])}/submodel-descriptors/{b64(nested)}"))[
        "idShort"] == "Nested"
    assert ids_of(list_all(c, api + "/shell-descriptors", limit=2)) == [x for x in shells if x != shells[3]]
    # filters still work on reloaded data
    assert ids_of(list_all(c, api + "/submodel-descriptors", {"semanticId": b64("urn:s")})) == [sms[0], sms[2]]
    # 409 still known after restart, and new writes go after the old ones
    assert_result_body(c.post(api + "/shell-descriptors", json=shell_desc(shells[0])), 409)
    late = uid()
    assert_status(c.post(api + "/shell-descriptors", json=shell_desc(late)), 201)
    assert ids_of(list_all(c, api + "/shell-descriptors"))[-1] == late


def test_ric_data_survives_restart(server_factory):
    s = server_factory()
    sid = f"urn:ric:persist:{uid('x').rsplit(':', 1)[1]}"
    body = {
        "idShort": "PersistMe" + sid[-8:],
        "identification": {"id": sid, "idType": "Custom"},
        "endpoints": [{"interface": "communication",
                       "protocol_information": {"endpoint_address": "http://127.0.0.1:9/i40commu", "endpoint_protocol": "http"}}],
        "submodelDescriptors": [],
    }
    assert_status(s.client.post(s.base_url + "/registry/shell-descriptors", json=body), 201)
    s.restart()
    for key in (sid, body["idShort"]):
        g = s.client.get(f"{s.base_url}/registry/shell-descriptors/{key}")
        assert_status(g, 200)
        assert assert_json(g)["endpoints"][0]["protocolInformation"]["href"] == "http://127.0.0.1:9/i40commu"


def _write_burst(c: Client, api: str, n: int, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        sid = uid(f"burst-{tag}")
        r = c.post(api + "/shell-descriptors", json=shell_desc(sid, idShort=f"{tag}{i}"))
        assert r.status_code == 201, f"POST {i}: {r.status_code} {r.text[:300]}"
        ids.append(sid)
    return ids


def test_sigkill_right_after_201s_loses_nothing(server_factory):
    s = server_factory()
    ids = _write_burst(s.client, s.base_url, 50, "k1-")
    s.kill()  # SIGKILL immediately after the last 201
    s.start()
    c, api = s.client, s.base_url
    for i, sid in enumerate(ids):
        r = c.get(f"{api}/shell-descriptors/{b64(sid)}")
        assert r.status_code == 200, f"descriptor {i} of 50 lost after SIGKILL: {r.status_code}"
        assert assert_json(r)["idShort"] == f"k1-{i}"
    assert ids_of(list_all(c, api + "/shell-descriptors", limit=17)) == ids

    # a second crash on top: more writes, a replace and a delete, then kill -9
    more = _write_burst(c, api, 50, "k2-")
    assert_status(c.put(f"{api}/shell-descriptors/{b64(ids[0])}", json=shell_desc(ids[0], idShort="replaced")), 204)
    assert_status(c.delete(f"{api}/shell-descriptors/{b64(ids[1])}"), 204)
    smid = uid("sm")
    assert_status(c.post(f"{api}/shell-descriptors/{b64(ids[2])}/submodel-descriptors", json=submodel_desc(smid)), 201)
    s.kill()
    s.start()
    c, api = s.client, s.base_url
    expected = [x for x in ids + more if x != ids[1]]
    assert ids_of(list_all(c, api + "/shell-descriptors", limit=100)) == expected
    assert assert_json(c.get(f"{api}/shell-descriptors/{b64(ids[0])}"))["idShort"] == "replaced"
    assert_result_body(c.get(f"{api}/shell-descriptors/{b64(ids[1])}"), 404)
    assert_status(c.get(f"{api}/shell-descriptors/{b64(ids[2])}/submodel-descriptors/{b64(smid)}"), 200)
    # the order counter survived: a new write lands at the end and nothing is overwritten
    new = uid()
    assert_status(c.post(api + "/shell-descriptors", json=shell_desc(new)), 201)
    page, cursor = assert_paged(c.get(api + "/shell-descriptors", params={"limit": 10000}))
    assert ids_of(page) == expected + [new] and cursor is None


def test_sigkill_submodel_registry(server_factory):
    s = server_factory()
    ids = []
    for i in range(50):
        smid = uid("sm-burst")
        r = s.client.post(s.base_url + "/submodel-descriptors", json=submodel_desc(smid, idShort=f"S{i}"))
        assert r.status_code == 201, r.text
        ids.append(smid)
    s.kill()
    s.start()
    assert ids_of(list_all(s.client, s.base_url + "/submodel-descriptors")) == ids


def test_restart_on_empty_data_dir_then_reuse(server_factory):
    """A data dir written by one process is usable by the next, repeatedly."""
    s = server_factory()
    seen = []
    for round_ in range(3):
        sid = uid(f"round{round_}")
        assert_status(s.client.post(s.base_url + "/shell-descriptors", json=shell_desc(sid)), 201)
        seen.append(sid)
        if round_ % 2:
            s.restart(clean=False)
        else:
            s.restart()
        assert ids_of(list_all(s.client, s.base_url + "/shell-descriptors")) == seen
