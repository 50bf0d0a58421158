"""The python-aas-registry ("RIC") routes under /registry, with the RIC's
bugs fixed: real status codes, JSON everywhere, ids raw or %-encoded (not
base64), lookups by id / idShort / globalAssetId, both descriptor dialects
stored as one canonical v3 descriptor.

Samples in tests/data/ are the two descriptors of the RIC's shipped
data/database.json (see tests/README.md)."""

from __future__ import annotations

import copy
import json
import urllib.parse
import uuid

import pytest

from conftest import (
    assert_json,
    assert_paged,
    assert_result_body,
    assert_status,
    assert_subset,
    b64,
    ids_of,
    list_all,
    load_data,
    shell_desc,
    snapshot,
    submodel_desc,
    uid,
)


def pct(identifier: str) -> str:
    """%-encode everything but unreserved characters ('/' and ':' included)."""
    return urllib.parse.quote(identifier, safe="")


def tail() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def ric(server):
    return server.base_url + "/registry/shell-descriptors"


def walk_keys(value, found=None):
    found = set() if found is None else found
    if isinstance(value, dict):
        for k, v in value.items():
            found.add(k)
            walk_keys(v, found)
    elif isinstance(value, list):
        for v in value:
            walk_keys(v, found)
    return found


def assert_canonical(doc):
    keys = walk_keys(doc)
    for legacy in ("identification", "protocol_information", "endpointAddress", "endpoint_address",
                   "endpoint_protocol", "assetInformation"):
        assert legacy not in keys, f"stored descriptor still has RIC key {legacy!r}: {json.dumps(doc)[:800]}"
    assert isinstance(doc.get("id"), str) and doc["id"]


def items(resp):
    """A RIC list answer: a JSON array (accept the v3 paged shape too)."""
    assert_status(resp, 200)
    body = assert_json(resp)
    if isinstance(body, dict):
        assert "result" in body, body
        return body["result"]
    assert isinstance(body, list), body
    return body


def vws_sample():
    """The RIC's own descriptor (VWS_RIC) with unique ids."""
    d = load_data("ric_vws_ric_descriptor.json")
    t = tail()
    d["identification"]["id"] = f"www.company.com/ids/aas/{t}"
    d["idShort"] = f"VWS_RIC_{t[:12]}"
    for sm in d["submodelDescriptors"]:
        sm["identification"]["id"] += f"/{t}"
    return d


def swagger_sample(colon_ids: bool = False):
    """The RIC's Swagger-generated sample (with assetInformation), unique ids."""
    d = load_data("ric_swagger_descriptor.json")
    t = tail()
    if colon_ids:
        d["identification"]["id"] = f"urn:ric:aas:{t}"
        gaid = f"urn:ric:asset:{t}"
    else:
        d["identification"]["id"] = f"https://example.com/ids/aas/{t}"
        gaid = f"https://example.com/ids/asset/{t}#x?y"
    d["assetInformation"]["globalAssetId"]["keys"][0]["value"] = gaid
    d["idShort"] = f"Swagger_{t[:12]}"
    return d


def ric_post(client, ric, body):
    r = client.post(ric, json=body)
    assert_status(r, 201)
    if r.content:
        assert_json(r)
    return r


def ric_submodel(t=None, **extra):
    t = t or tail()
    d = {
        "idShort": "TechnicalData",
        "identification": {"idType": "IRI", "id": f"www.company.com/ids/sm/{t}"},
        "semanticId": {"keys": [{"type": "Submodel", "local": True, "value": "TCD", "index": 0, "idType": "Custom"}]},
        "endpoints": [{
            "protocol_information": {
                "endpoint_address": f"http://admin-shell-io.com:9021/aas/x/submodels/{t}",
                "endpoint_protocol": "http",
            },
            "interface": "restapi",
        }],
    }
    d.update(extra)
    return d


# ---------------------------------------------------------------------------
# Dialect conversion and cross-route visibility
# ---------------------------------------------------------------------------


def test_ric_dialect_post_is_stored_as_v3(client, server, ric):
    d = vws_sample()
    sid = d["identification"]["id"]
    ric_post(client, ric, d)
    g = client.get(f"{ric}/{pct(sid)}")
    assert_status(g, 200)
    doc = assert_json(g)
    assert_canonical(doc)
    assert doc["id"] == sid
    assert doc["idShort"] == d["idShort"]
    eps = doc["endpoints"]
    assert [e["interface"] for e in eps] == ["restapi", "communication"]
    assert [e["protocolInformation"]["href"] for e in eps] == [
        "http://admin-shell-io.com:9021/aas/VWS_RIC",
        "http://admin-shell-io.com:9021/i40commu",
    ]
    assert [e["protocolInformation"].get("endpointProtocol") for e in eps] == ["http", "http"]
    sms = doc["submodelDescriptors"]
    assert ids_of(sms) == [sm["identification"]["id"] for sm in d["submodelDescriptors"]]
    assert [sm["idShort"] for sm in sms] == ["TechnicalData", "Nameplate", "Skills", "AssetSpecificProperties"]
    assert sms[0]["endpoints"][0]["protocolInformation"]["href"].endswith("/submodels/TechnicalData")
    assert any(k.get("value") == "TCD" for k in sms[0]["semanticId"]["keys"])
    # the same document through the v3 routes, at both prefixes
    for prefix in ("", "/api/v3.0"):
        v3 = client.get(f"{server.base_url}{prefix}/shell-descriptors/{b64(sid)}")
        assert_status(v3, 200)
        assert assert_json(v3) == doc
        nested = client.get(f"{server.base_url}{prefix}/shell-descriptors/{b64(sid)}/submodel-descriptors/"
                            f"{b64(sms[1]['id'])}")
        assert_status(nested, 200)
        assert assert_json(nested)["idShort"] == "Nameplate"


def test_ric_dialect_asset_information(client, server, ric):
    d = swagger_sample()
    sid = d["identification"]["id"]
    gaid = d["assetInformation"]["globalAssetId"]["keys"][0]["value"]
    ric_post(client, ric, d)
    doc = assert_json(client.get(f"{server.base_url}/shell-descriptors/{b64(sid)}"))
    assert_canonical(doc)
    assert doc["globalAssetId"] == gaid
    assert doc["assetKind"] == "Type"
    assert doc["endpoints"][0]["protocolInformation"]["href"] == "string"
    assert doc["endpoints"][0]["protocolInformation"]["endpointProtocol"] == "string"
    assert doc["endpoints"][0]["interface"] == "string"
    assert doc["submodelDescriptors"][0]["id"] == "string"
    # the v3 filters see the converted fields
    found = list_all(client, server.base_url + "/shell-descriptors",
                     [("assetIds", b64(json.dumps({"name": "globalAssetId", "value": gaid})))])
    assert ids_of(found) == [sid]


@pytest.mark.parametrize("variant", ["camelCase", "snake_case"])
def test_ric_endpoint_key_spellings(client, server, ric, variant):
    t = tail()
    sid = f"urn:ric:endpoints:{t}"
    if variant == "camelCase":
        info = {"endpointAddress": f"http://host-{t}:9021/aas", "endpointProtocol": "HTTP"}
    else:
        info = {"endpoint_address": f"http://host-{t}:9021/aas", "endpoint_protocol": "HTTP"}
    body = {
        "idShort": f"Ep_{t[:8]}",
        "identification": {"id": sid, "idType": "Custom"},
        "endpoints": [{"interface": "communication", "protocol_information": info}],
        "submodelDescriptors": [],
    }
    ric_post(client, ric, body)
    doc = assert_json(client.get(f"{server.base_url}/shell-descriptors/{b64(sid)}"))
    assert_canonical(doc)
    assert doc["endpoints"] == [{
        "interface": "communication",
        "protocolInformation": {"href": f"http://host-{t}:9021/aas", "endpointProtocol": "HTTP"},
    }]


def test_v3_post_is_readable_on_ric_routes(client, server, ric):
    t = tail()
    sid = f"https://example.com/aas/{t}#frag?q=1"
    gaid = f"https://example.com/asset/{t}"
    desc = shell_desc(sid, idShort=f"V3_{t[:10]}", globalAssetId=gaid, assetKind="Instance")
    assert_status(client.post(server.base_url + "/api/v3.0/shell-descriptors", json=desc), 201)
    expected = assert_json(client.get(f"{server.base_url}/shell-descriptors/{b64(sid)}"))
    for key in (pct(sid), desc["idShort"], pct(desc["idShort"]), pct(gaid)):
        g = client.get(f"{ric}/{key}")
        assert_status(g, 200)
        assert assert_json(g) == expected, key


def test_v3_body_posted_on_ric_route(client, server, ric):
    t = tail()
    sid = f"urn:ric:v3body:{t}"
    desc = shell_desc(sid, idShort=f"V3body_{t[:8]}", assetKind="NotApplicable")
    ric_post(client, ric, desc)
    g = client.get(f"{server.base_url}/shell-descriptors/{b64(sid)}")
    assert_status(g, 200)
    doc = assert_json(g)
    assert_subset(desc, doc)
    assert_canonical(doc)


# ---------------------------------------------------------------------------
# Lookups
# ---------------------------------------------------------------------------


def test_lookup_raw_and_pct_encoded(client, ric):
    d = swagger_sample(colon_ids=True)
    sid = d["identification"]["id"]
    gaid = d["assetInformation"]["globalAssetId"]["keys"][0]["value"]
    ric_post(client, ric, d)
    expected = assert_json(client.get(f"{ric}/{pct(sid)}"))
    assert expected["id"] == sid
    for name, key in {
        "id-raw": sid,
        "id-pct": pct(sid),
        "idShort-raw": d["idShort"],
        "idShort-pct": pct(d["idShort"]),
        "globalAssetId-raw": gaid,
        "globalAssetId-pct": pct(gaid),
    }.items():
        g = client.get(f"{ric}/{key}")
        assert_status(g, 200)
        assert assert_json(g) == expected, name


def test_lookup_ids_with_slashes_pct_encoded(client, ric):
    d = swagger_sample(colon_ids=False)
    sid = d["identification"]["id"]
    gaid = d["assetInformation"]["globalAssetId"]["keys"][0]["value"]
    assert "/" in sid and "/" in gaid and "#" in gaid and "?" in gaid
    ric_post(client, ric, d)
    for key in (pct(sid), pct(gaid), d["idShort"]):
        g = client.get(f"{ric}/{key}")
        assert_status(g, 200)
        assert assert_json(g)["id"] == sid


@pytest.mark.parametrize("special", ["a/b:c", "x#y?z=1&w", "ünï 名前 🦀", "100% %3D", "sp ace+plus"])
def test_special_ids_full_cycle(client, server, ric, special):
    sid = f"urn:ric:{special}:{tail()}"
    body = {
        "idShort": f"S_{tail()[:8]}",
        "identification": {"id": sid, "idType": "Custom"},
        "endpoints": [{"interface": "restapi", "protocol_information": {"endpointAddress": "http://x/aas"}}],
        "submodelDescriptors": [],
    }
    ric_post(client, ric, body)
    assert assert_json(client.get(f"{ric}/{pct(sid)}"))["id"] == sid
    assert assert_json(client.get(f"{server.base_url}/shell-descriptors/{b64(sid)}"))["id"] == sid
    body["idShort"] = "Renamed_" + tail()[:8]
    assert_status(client.put(f"{ric}/{pct(sid)}", json=body), 204)
    assert assert_json(client.get(f"{ric}/{pct(sid)}"))["idShort"] == body["idShort"]
    assert_status(client.delete(f"{ric}/{pct(sid)}"), 204)
    assert_result_body(client.get(f"{ric}/{pct(sid)}"), 404)
    assert_result_body(client.get(f"{server.base_url}/shell-descriptors/{b64(sid)}"), 404)


# ---------------------------------------------------------------------------
# List, conflicts, replace, delete
# ---------------------------------------------------------------------------


def test_ric_list_is_a_json_array(client, ric):
    mine = []
    for _ in range(2):
        d = vws_sample()
        ric_post(client, ric, d)
        mine.append(d["identification"]["id"])
    r = client.get(ric)
    assert_status(r, 200)
    body = assert_json(r)
    assert isinstance(body, list), f"GET /registry/shell-descriptors must be a JSON array, got {type(body).__name__}"
    assert all(isinstance(x, dict) and isinstance(x.get("id"), str) for x in body)
    for x in body:
        assert_canonical(x)
    ids = ids_of(body)
    assert [i for i in ids if i in mine] == mine, "both present, in creation order"


def test_ric_duplicate_is_409(client, server, ric):
    d = vws_sample()
    sid = d["identification"]["id"]
    ric_post(client, ric, d)
    before = assert_json(client.get(f"{ric}/{pct(sid)}"))
    dup = copy.deepcopy(d)
    dup["idShort"] = "Impostor"
    assert_result_body(client.post(ric, json=dup), 409)
    # the v3 spelling of the same id conflicts too, in both directions
    assert_result_body(client.post(ric, json=shell_desc(sid)), 409)
    assert_result_body(client.post(server.base_url + "/shell-descriptors", json=shell_desc(sid)), 409)
    assert assert_json(client.get(f"{ric}/{pct(sid)}")) == before
    assert ids_of(items(client.get(ric))).count(sid) == 1


def test_ric_put_replace_create_and_mismatch(client, server, ric):
    d = vws_sample()
    sid = d["identification"]["id"]
    ric_post(client, ric, d)
    # replace by id (%-encoded), RIC dialect
    d2 = copy.deepcopy(d)
    d2["endpoints"] = d2["endpoints"][:1]
    d2["endpoints"][0]["protocol_information"]["endpoint_address"] = "http://replaced:1/aas"
    assert_status(client.put(f"{ric}/{pct(sid)}", json=d2), 204)
    doc = assert_json(client.get(f"{server.base_url}/shell-descriptors/{b64(sid)}"))
    assert [e["protocolInformation"]["href"] for e in doc["endpoints"]] == ["http://replaced:1/aas"]
    # replace addressed by idShort, v3 dialect
    v3 = shell_desc(sid, idShort=d["idShort"], assetKind="Instance")
    assert_status(client.put(f"{ric}/{d['idShort']}", json=v3), 204)
    doc = assert_json(client.get(f"{ric}/{pct(sid)}"))
    assert doc["assetKind"] == "Instance"
    assert doc["endpoints"] == v3["endpoints"]
    # create
    new = vws_sample()
    nid = new["identification"]["id"]
    assert_status(client.put(f"{ric}/{pct(nid)}", json=new), 201)
    assert assert_json(client.get(f"{server.base_url}/shell-descriptors/{b64(nid)}"))["idShort"] == new["idShort"]
    # mismatch: nothing changes
    before = snapshot(client, server.base_url)
    other = vws_sample()
    assert_result_body(client.put(f"{ric}/{pct(sid)}", json=other), 400)
    assert snapshot(client, server.base_url) == before
    assert_result_body(client.get(f"{ric}/{pct(other['identification']['id'])}"), 404)


def test_ric_delete(client, server, ric):
    d = swagger_sample(colon_ids=True)
    sid = d["identification"]["id"]
    ric_post(client, ric, d)
    r = client.delete(f"{ric}/{d['idShort']}")
    assert_status(r, 204)
    assert_result_body(client.get(f"{ric}/{pct(sid)}"), 404)
    assert_result_body(client.get(f"{ric}/{d['idShort']}"), 404)
    assert_result_body(client.get(f"{server.base_url}/shell-descriptors/{b64(sid)}"), 404)
    assert sid not in ids_of(items(client.get(ric)))
    assert_result_body(client.delete(f"{ric}/{pct(sid)}"), 404)


def test_ric_unknown_is_404_json(client, ric):
    unknown = pct(f"urn:ric:unknown:{tail()}")
    for method, url in [
        ("GET", f"{ric}/{unknown}"),
        ("DELETE", f"{ric}/{unknown}"),
        ("GET", f"{ric}/{unknown}/submodel-descriptors"),
        ("POST", f"{ric}/{unknown}/submodel-descriptors"),
        ("GET", f"{ric}/{unknown}/submodel-descriptors/{pct('urn:sm:' + tail())}"),
        ("DELETE", f"{ric}/{unknown}/submodel-descriptors/{pct('urn:sm:' + tail())}"),
    ]:
        body = ric_submodel() if method == "POST" else None
        assert_result_body(client.request(method, url, json=body), 404)


# ---------------------------------------------------------------------------
# Submodel descriptor routes
# ---------------------------------------------------------------------------


def test_ric_submodel_routes(client, server, ric):
    d = vws_sample()
    d["submodelDescriptors"] = d["submodelDescriptors"][:1]
    sid = d["identification"]["id"]
    first_sm = d["submodelDescriptors"][0]["identification"]["id"]
    ric_post(client, ric, d)
    base = f"{ric}/{pct(sid)}/submodel-descriptors"
    sm = ric_submodel()
    smid = sm["identification"]["id"]
    r = client.post(base, json=sm)
    assert_status(r, 201)
    if r.content:
        assert_json(r)
    # listed (also when the shell is addressed by idShort)
    assert ids_of(items(client.get(base))) == [first_sm, smid]
    assert ids_of(items(client.get(f"{ric}/{d['idShort']}/submodel-descriptors"))) == [first_sm, smid]
    # read it, in v3 form
    g = client.get(f"{base}/{pct(smid)}")
    assert_status(g, 200)
    doc = assert_json(g)
    assert_canonical(doc)
    assert doc["id"] == smid and doc["idShort"] == "TechnicalData"
    assert doc["endpoints"][0]["protocolInformation"]["href"] == sm["endpoints"][0]["protocol_information"]["endpoint_address"]
    assert any(k.get("value") == "TCD" for k in doc["semanticId"]["keys"])
    # the v3 superpath sees the same
    v3 = client.get(f"{server.base_url}/shell-descriptors/{b64(sid)}/submodel-descriptors/{b64(smid)}")
    assert_status(v3, 200)
    assert assert_json(v3) == doc
    page, _ = assert_paged(client.get(f"{server.base_url}/shell-descriptors/{b64(sid)}/submodel-descriptors"))
    assert ids_of(page) == [first_sm, smid]
    # duplicate
    assert_result_body(client.post(base, json=sm), 409)
    # replace
    sm2 = copy.deepcopy(sm)
    sm2["idShort"] = "TechnicalData2"
    assert_status(client.put(f"{base}/{pct(smid)}", json=sm2), 204)
    assert assert_json(client.get(f"{base}/{pct(smid)}"))["idShort"] == "TechnicalData2"
    # create by PUT (v3 body)
    smid3 = f"urn:ric:sm:{tail()}"
    assert_status(client.put(f"{base}/{pct(smid3)}", json=submodel_desc(smid3)), 201)
    assert ids_of(items(client.get(base))) == [first_sm, smid, smid3]
    # mismatch
    assert_result_body(client.put(f"{base}/{pct(smid)}", json=ric_submodel()), 400)
    # delete
    assert_status(client.delete(f"{base}/{pct(smid)}"), 204)
    assert_result_body(client.get(f"{base}/{pct(smid)}"), 404)
    assert_result_body(client.delete(f"{base}/{pct(smid)}"), 404)
    assert ids_of(items(client.get(base))) == [first_sm, smid3]
    # the shell itself is intact (the RIC corrupted it here)
    shell = assert_json(client.get(f"{server.base_url}/shell-descriptors/{b64(sid)}"))
    assert shell["idShort"] == d["idShort"]
    assert ids_of(shell["submodelDescriptors"]) == [first_sm, smid3]
    assert_status(client.get(f"{ric}/{pct(sid)}"), 200)


def test_ric_submodel_lookup_by_idshort(client, ric):
    """The RIC matched a submodel descriptor on its idShort too."""
    d = vws_sample()
    sid = d["identification"]["id"]
    ric_post(client, ric, d)
    g = client.get(f"{ric}/{pct(sid)}/submodel-descriptors/Skills")
    assert_status(g, 200)
    assert assert_json(g)["id"] == d["submodelDescriptors"][2]["identification"]["id"]


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_ric_bad_bodies(client, server, ric):
    d = vws_sample()
    sid = d["identification"]["id"]
    ric_post(client, ric, d)
    before = snapshot(client, server.base_url)
    ric_before = items(client.get(ric))
    hdr = {"Content-Type": "application/json"}
    msgs = assert_result_body(client.post(ric, data=b'{"identification": {"id": "x", ', headers=hdr), 400)
    assert "line" in " ".join(m["text"] for m in msgs).lower()
    bad_identification = vws_sample()
    bad_identification["identification"] = 5
    msgs = assert_result_body(client.post(ric, json=bad_identification), 400)
    assert any("/identification" in m["text"] for m in msgs), msgs
    bad_endpoint = vws_sample()
    bad_endpoint["endpoints"][0]["interface"] = 5
    msgs = assert_result_body(client.post(ric, json=bad_endpoint), 400)
    assert any("/endpoints/0" in m["text"] for m in msgs), msgs
    no_id = {"idShort": "NoId", "endpoints": [], "submodelDescriptors": []}
    assert_result_body(client.post(ric, json=no_id), 400)
    assert_result_body(client.post(ric, json=[]), 400)
    assert_result_body(client.put(f"{ric}/{pct(sid)}", data=b"{", headers=hdr), 400)
    assert_result_body(client.post(f"{ric}/{pct(sid)}/submodel-descriptors", data=b"nope", headers=hdr), 400)
    bad_sm = ric_submodel()
    bad_sm["identification"] = ["x"]
    assert_result_body(client.post(f"{ric}/{pct(sid)}/submodel-descriptors", json=bad_sm), 400)
    assert snapshot(client, server.base_url) == before
    assert items(client.get(ric)) == ric_before


def test_ric_wrong_method_is_405(client, server, ric):
    d = vws_sample()
    ric_post(client, ric, d)
    before = snapshot(client, server.base_url)
    for method, url in [("DELETE", ric), ("PUT", ric), ("POST", f"{ric}/{pct(d['identification']['id'])}"),
                        ("PATCH", f"{ric}/{pct(d['identification']['id'])}")]:
        assert_result_body(client.request(method, url, json=d if method != "DELETE" else None), 405)
    assert snapshot(client, server.base_url) == before
