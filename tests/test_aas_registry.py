"""AAS Part 2 v3.0 registry API (AAS registry + submodel registry), at the
root and under /api/v3.0, over real HTTP."""

from __future__ import annotations

import urllib.parse

import pytest

from conftest import (
    AAS_REGISTRY_PROFILE,
    SUBMODEL_REGISTRY_PROFILE,
    asset_id_param,
    assert_json,
    assert_paged,
    assert_result_body,
    assert_status,
    assert_subset,
    b64,
    b64_padded,
    b64_pct,
    endpoint,
    id_forms,
    ids_of,
    list_all,
    post_shell,
    post_submodel,
    semantic_id,
    shell_desc,
    submodel_desc,
    uid,
    with_utf8_len_mod3,
)


def special_ids() -> dict[str, str]:
    """Ids that exercise base64url padding, the URL-safe alphabet and
    characters that would break a raw path."""
    tail = uid("x").rsplit(":", 1)[1]
    ids = {
        "url-slash-colon": f"https://example.com/ids/aas/{tail}",
        "hash-question": f"urn:example:aas#frag?q=1&r=2;{tail}",
        "unicode-astral": f"urn:ünïcødé:名前:🦀𝄞:{tail}",
        "percent-space": f"100% sure %3D id with spaces {tail}",
        # '?>' and '~' give '-' and '_' in base64url ('+' and '/' in base64)
        "urlsafe-alphabet": f"??>>~~~??>{tail}",
    }
    out = {}
    for name, i in ids.items():
        out[name + "-pad1"] = with_utf8_len_mod3(i, 2)  # one '='
        out[name + "-pad2"] = with_utf8_len_mod3(i, 1)  # two '='
    return out


SPECIAL = special_ids()


def test_special_ids_cover_padding_and_alphabet():
    encoded = [b64_padded(i) for i in SPECIAL.values()]
    assert any(e.endswith("==") for e in encoded)
    assert any(e.endswith("=") and not e.endswith("==") for e in encoded)
    assert any("-" in e for e in encoded) and any("_" in e for e in encoded)


# ---------------------------------------------------------------------------
# /description
# ---------------------------------------------------------------------------


def test_description(client, api):
    r = client.get(api + "/description")
    assert_status(r, 200)
    body = assert_json(r)
    assert isinstance(body.get("profiles"), list) and body["profiles"], body
    assert all(isinstance(p, str) for p in body["profiles"])
    assert AAS_REGISTRY_PROFILE in body["profiles"]
    assert SUBMODEL_REGISTRY_PROFILE in body["profiles"]


# ---------------------------------------------------------------------------
# Shell descriptors: CRUD
# ---------------------------------------------------------------------------


def test_post_shell_returns_201_location_and_body(client, api):
    sid = uid()
    desc = shell_desc(sid, idShort="PostMe", assetKind="Instance", globalAssetId=uid("asset"),
                      description=[{"language": "en", "text": "a shell"}])
    r = client.post(api + "/shell-descriptors", json=desc)
    assert_status(r, 201)
    loc = r.headers.get("Location")
    assert loc, "201 without Location header"
    assert loc.endswith("/shell-descriptors/" + b64(sid)), loc
    assert "=" not in loc.rsplit("/", 1)[1], f"Location must use unpadded base64url: {loc}"
    body = assert_json(r)
    assert_subset(desc, body)
    # The Location resolves to the same descriptor.
    g = client.get(urllib.parse.urljoin(r.url, loc))
    assert_status(g, 200)
    assert assert_json(g) == body


def test_get_shell_by_id_all_id_forms(client, api):
    sid = with_utf8_len_mod3(uid(), 1)  # two '=' of padding
    desc = shell_desc(sid, idShort="Forms")
    post_shell(client, api, desc)
    forms = id_forms(sid)
    assert forms["padded"].endswith("==") and forms["pct3D"].endswith("%3D%3D")
    for name, form in list(forms.items()) + [("pct3d-lower", forms["pct3D"].replace("%3D", "%3d"))]:
        r = client.get(f"{api}/shell-descriptors/{form}")
        assert_status(r, 200)
        assert_subset(desc, assert_json(r), f"[{name}]")


def test_get_unknown_shell_is_404(client, api):
    r = client.get(f"{api}/shell-descriptors/{b64(uid())}")
    msgs = assert_result_body(r, 404)
    assert any("not" in m["text"].lower() or "no " in m["text"].lower() or "unknown" in m["text"].lower()
               for m in msgs), msgs


def test_post_duplicate_shell_is_409_and_keeps_original(client, api):
    sid = uid()
    original = shell_desc(sid, idShort="Original")
    post_shell(client, api, original)
    r = client.post(api + "/shell-descriptors", json=shell_desc(sid, idShort="Impostor"))
    assert_result_body(r, 409)
    g = client.get(f"{api}/shell-descriptors/{b64(sid)}")
    assert_status(g, 200)
    assert assert_json(g)["idShort"] == "Original"
    # exactly one entry with that id in the list
    assert ids_of(list_all(client, api + "/shell-descriptors")).count(sid) == 1


def test_put_shell_replaces_with_204(client, api):
    sid = uid()
    post_shell(client, api, shell_desc(sid, idShort="Before", assetKind="Type"))
    new = shell_desc(sid, idShort="After", assetKind="Instance", assetType="urn:type:after")
    r = client.put(f"{api}/shell-descriptors/{b64(sid)}", json=new)
    assert_status(r, 204)
    assert r.content == b""
    got = assert_json(client.get(f"{api}/shell-descriptors/{b64(sid)}"))
    assert_subset(new, got)
    assert got["idShort"] == "After"


def test_put_shell_creates_with_201(client, api):
    sid = uid()
    desc = shell_desc(sid, idShort="CreatedByPut")
    r = client.put(f"{api}/shell-descriptors/{b64_pct(sid)}", json=desc)
    assert_status(r, 201)
    g = client.get(f"{api}/shell-descriptors/{b64(sid)}")
    assert_status(g, 200)
    assert_subset(desc, assert_json(g))
    assert sid in ids_of(list_all(client, api + "/shell-descriptors"))


def test_put_shell_by_padded_and_pct_ids(client, api):
    sid = with_utf8_len_mod3(uid(), 2)  # one '='
    post_shell(client, api, shell_desc(sid, idShort="v0"))
    for n, form in enumerate([b64_padded(sid), b64_pct(sid), b64(sid)], start=1):
        r = client.put(f"{api}/shell-descriptors/{form}", json=shell_desc(sid, idShort=f"v{n}"))
        assert_status(r, 204)
        assert assert_json(client.get(f"{api}/shell-descriptors/{b64(sid)}"))["idShort"] == f"v{n}"


def test_delete_shell(client, api):
    sid = uid()
    post_shell(client, api, shell_desc(sid))
    r = client.delete(f"{api}/shell-descriptors/{b64(sid)}")
    assert_status(r, 204)
    assert r.content == b""
    assert_result_body(client.get(f"{api}/shell-descriptors/{b64(sid)}"), 404)
    assert sid not in ids_of(list_all(client, api + "/shell-descriptors"))
    assert_result_body(client.delete(f"{api}/shell-descriptors/{b64(sid)}"), 404)


def test_delete_shell_by_pct_padded_id(client, api):
    sid = with_utf8_len_mod3(uid(), 1)
    post_shell(client, api, shell_desc(sid))
    assert_status(client.delete(f"{api}/shell-descriptors/{b64_pct(sid)}"), 204)
    assert_result_body(client.get(f"{api}/shell-descriptors/{b64(sid)}"), 404)


def test_recreate_after_delete(client, api):
    sid = uid()
    post_shell(client, api, shell_desc(sid, idShort="first"))
    assert_status(client.delete(f"{api}/shell-descriptors/{b64(sid)}"), 204)
    r = client.post(api + "/shell-descriptors", json=shell_desc(sid, idShort="second"))
    assert_status(r, 201)
    assert assert_json(client.get(f"{api}/shell-descriptors/{b64(sid)}"))["idShort"] == "second"


def test_list_shells_shape_and_contents(client, api):
    mine = [uid() for _ in range(3)]
    for i, sid in enumerate(mine):
        post_shell(client, api, shell_desc(sid, idShort=f"L{i}"))
    page, _ = assert_paged(client.get(api + "/shell-descriptors"))
    assert len(page) <= 100
    everything = list_all(client, api + "/shell-descriptors")
    got = [d for d in everything if d.get("id") in mine]
    assert [d["id"] for d in got] == mine, "creation order"
    assert [d["idShort"] for d in got] == ["L0", "L1", "L2"]


def test_both_prefixes_share_one_store(client, server):
    sid = uid()
    root, api = server.base_url, server.base_url + "/api/v3.0"
    post_shell(client, root, shell_desc(sid, idShort="SharedStore"))
    g = client.get(f"{api}/shell-descriptors/{b64(sid)}")
    assert_status(g, 200)
    assert assert_json(g)["idShort"] == "SharedStore"
    assert_status(client.delete(f"{api}/shell-descriptors/{b64(sid)}"), 204)
    assert_result_body(client.get(f"{root}/shell-descriptors/{b64(sid)}"), 404)


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_special_character_ids_full_cycle(client, api, name):
    base_id = SPECIAL[name]
    sid = base_id + ":" + uid("s").rsplit(":", 1)[1][:8]
    smid = "sm/" + sid + "#sub?x=1"
    desc = shell_desc(sid, idShort="Special")
    r = client.post(api + "/shell-descriptors", json=desc)
    assert_status(r, 201)
    assert r.headers["Location"].endswith("/shell-descriptors/" + b64(sid))
    for form in id_forms(sid).values():
        g = client.get(f"{api}/shell-descriptors/{form}")
        assert_status(g, 200)
        assert assert_json(g)["id"] == sid
    # list shows the id byte-exact
    assert sid in ids_of(list_all(client, api + "/shell-descriptors"))
    # nested submodel descriptor with a special id too
    sm = submodel_desc(smid)
    r = client.post(f"{api}/shell-descriptors/{b64(sid)}/submodel-descriptors", json=sm)
    assert_status(r, 201)
    assert r.headers["Location"].endswith(f"/shell-descriptors/{b64(sid)}/submodel-descriptors/{b64(smid)}")
    g = client.get(f"{api}/shell-descriptors/{b64_padded(sid)}/submodel-descriptors/{b64_pct(smid)}")
    assert_status(g, 200)
    assert assert_json(g)["id"] == smid
    # replace, then delete
    assert_status(client.put(f"{api}/shell-descriptors/{b64_pct(sid)}", json=shell_desc(sid, idShort="Special2",
                                                                                         submodelDescriptors=[sm])), 204)
    assert assert_json(client.get(f"{api}/shell-descriptors/{b64(sid)}"))["idShort"] == "Special2"
    assert_status(client.delete(f"{api}/shell-descriptors/{b64_padded(sid)}"), 204)
    assert_result_body(client.get(f"{api}/shell-descriptors/{b64(sid)}"), 404)


@pytest.mark.parametrize("name", ["url-slash-colon-pad1", "unicode-astral-pad2", "hash-question-pad1"])
def test_special_character_submodel_registry_ids(client, api, name):
    smid = SPECIAL[name] + ":" + uid("s").rsplit(":", 1)[1][:8]
    desc = submodel_desc(smid, idShort="SpecialSm")
    r = client.post(api + "/submodel-descriptors", json=desc)
    assert_status(r, 201)
    assert r.headers["Location"].endswith("/submodel-descriptors/" + b64(smid))
    for form in id_forms(smid).values():
        g = client.get(f"{api}/submodel-descriptors/{form}")
        assert_status(g, 200)
        assert_subset(desc, assert_json(g))
    assert_status(client.delete(f"{api}/submodel-descriptors/{b64_pct(smid)}"), 204)
    assert_result_body(client.get(f"{api}/submodel-descriptors/{b64(smid)}"), 404)


def test_raw_utf8_body_and_escaped_body_are_the_same(client, api):
    """Astral characters sent raw (UTF-8) and as JSON surrogate-pair escapes."""
    import json

    raw_id = "urn:raw:🦀𝄞名前:" + uid()
    esc_id = "urn:esc:🦀𝄞名前:" + uid()
    hdr = {"Content-Type": "application/json"}
    raw = json.dumps(shell_desc(raw_id, idShort="Raw", description=[{"language": "ja", "text": "名前 🦀"}]),
                     ensure_ascii=False).encode("utf-8")
    esc = json.dumps(shell_desc(esc_id, idShort="Esc", description=[{"language": "ja", "text": "名前 🦀"}]),
                     ensure_ascii=True).encode("ascii")
    assert b"\\ud83e\\udd80" in esc
    assert_status(client.post(api + "/shell-descriptors", data=raw, headers=hdr), 201)
    assert_status(client.post(api + "/shell-descriptors", data=esc, headers=hdr), 201)
    for sid in (raw_id, esc_id):
        g = client.get(f"{api}/shell-descriptors/{b64(sid)}")
        assert_status(g, 200)
        doc = assert_json(g)
        assert doc["id"] == sid
        assert doc["description"][0]["text"] == "名前 🦀"


def test_max_length_id(client, api):
    sid = uid()
    sid = sid + "x" * (2000 - len(sid))
    assert len(sid) == 2000
    post_shell(client, api, shell_desc(sid))
    g = client.get(f"{api}/shell-descriptors/{b64(sid)}")
    assert_status(g, 200)
    assert assert_json(g)["id"] == sid


def test_shell_with_only_id_is_valid(client, api):
    """AAS Part 2 v3.0: only `id` is required on a shell descriptor."""
    sid = uid()
    r = client.post(api + "/shell-descriptors", json={"id": sid})
    assert_status(r, 201)
    assert assert_json(client.get(f"{api}/shell-descriptors/{b64(sid)}"))["id"] == sid


# ---------------------------------------------------------------------------
# Nested submodel descriptors (superpath)
# ---------------------------------------------------------------------------


def test_superpath_crud(client, api):
    sid, smid = uid(), uid("sm")
    base = f"{api}/shell-descriptors/{b64(sid)}/submodel-descriptors"
    post_shell(client, api, shell_desc(sid))
    # empty list first
    page, cursor = assert_paged(client.get(base))
    assert page == [] and cursor is None
    sm = submodel_desc(smid, idShort="Nameplate", semanticId=semantic_id("https://admin-shell.io/zvei/nameplate/1/0"))
    r = client.post(base, json=sm)
    assert_status(r, 201)
    assert r.headers["Location"].endswith(f"/shell-descriptors/{b64(sid)}/submodel-descriptors/{b64(smid)}")
    assert_subset(sm, assert_json(r))
    # list
    page, cursor = assert_paged(client.get(base))
    assert cursor is None
    assert ids_of(page) == [smid]
    assert_subset(sm, page[0])
    # get (all id forms)
    for form in id_forms(smid).values():
        g = client.get(f"{base}/{form}")
        assert_status(g, 200)
        assert_subset(sm, assert_json(g))
    # the shell carries it
    shell = assert_json(client.get(f"{api}/shell-descriptors/{b64(sid)}"))
    assert ids_of(shell.get("submodelDescriptors", [])) == [smid]
    # duplicate
    assert_result_body(client.post(base, json=submodel_desc(smid, idShort="Dup")), 409)
    assert assert_json(client.get(f"{base}/{b64(smid)}"))["idShort"] == "Nameplate"
    # replace
    sm2 = submodel_desc(smid, idShort="Nameplate2")
    assert_status(client.put(f"{base}/{b64(smid)}", json=sm2), 204)
    assert assert_json(client.get(f"{base}/{b64(smid)}"))["idShort"] == "Nameplate2"
    # create via PUT
    smid2 = uid("sm")
    sm3 = submodel_desc(smid2, idShort="Second")
    assert_status(client.put(f"{base}/{b64_pct(smid2)}", json=sm3), 201)
    page, _ = assert_paged(client.get(base))
    assert ids_of(page) == [smid, smid2]
    # delete
    assert_status(client.delete(f"{base}/{b64(smid)}"), 204)
    assert_result_body(client.get(f"{base}/{b64(smid)}"), 404)
    assert_result_body(client.delete(f"{base}/{b64(smid)}"), 404)
    page, _ = assert_paged(client.get(base))
    assert ids_of(page) == [smid2]
    # the shell itself is untouched
    shell = assert_json(client.get(f"{api}/shell-descriptors/{b64(sid)}"))
    assert shell["idShort"] == "shell"
    assert ids_of(shell.get("submodelDescriptors", [])) == [smid2]


def test_superpath_on_unknown_shell_is_404(client, api):
    base = f"{api}/shell-descriptors/{b64(uid())}/submodel-descriptors"
    assert_result_body(client.get(base), 404)
    assert_result_body(client.post(base, json=submodel_desc(uid("sm"))), 404)
    assert_result_body(client.get(f"{base}/{b64(uid('sm'))}"), 404)
    assert_result_body(client.delete(f"{base}/{b64(uid('sm'))}"), 404)


def test_superpath_unknown_submodel_is_404(client, api):
    sid = uid()
    post_shell(client, api, shell_desc(sid))
    base = f"{api}/shell-descriptors/{b64(sid)}/submodel-descriptors"
    assert_result_body(client.get(f"{base}/{b64(uid('sm'))}"), 404)
    assert_result_body(client.delete(f"{base}/{b64(uid('sm'))}"), 404)


def test_inline_submodel_descriptors_are_reachable_through_superpath(client, api):
    sid, a, b = uid(), uid("sm"), uid("sm")
    post_shell(client, api, shell_desc(sid, submodelDescriptors=[submodel_desc(a, idShort="A"),
                                                                 submodel_desc(b, idShort="B")]))
    base = f"{api}/shell-descriptors/{b64(sid)}/submodel-descriptors"
    page, cursor = assert_paged(client.get(base))
    assert ids_of(page) == [a, b] and cursor is None
    assert assert_json(client.get(f"{base}/{b64(b)}"))["idShort"] == "B"
    # paging the nested list
    first, cursor = assert_paged(client.get(base, params={"limit": 1}))
    assert ids_of(first) == [a] and cursor
    second, cursor2 = assert_paged(client.get(base, params={"limit": 1, "cursor": cursor}))
    assert ids_of(second) == [b] and cursor2 is None


def test_deleting_shell_deletes_its_submodel_descriptors(client, api):
    sid, smid = uid(), uid("sm")
    post_shell(client, api, shell_desc(sid))
    base = f"{api}/shell-descriptors/{b64(sid)}/submodel-descriptors"
    assert_status(client.post(base, json=submodel_desc(smid)), 201)
    assert_status(client.delete(f"{api}/shell-descriptors/{b64(sid)}"), 204)
    assert_result_body(client.get(f"{base}/{b64(smid)}"), 404)
    # a new shell with the same id starts without them
    post_shell(client, api, {"id": sid})
    page, _ = assert_paged(client.get(base))
    assert page == []
    assert_result_body(client.get(f"{base}/{b64(smid)}"), 404)
    shell = assert_json(client.get(f"{api}/shell-descriptors/{b64(sid)}"))
    assert not shell.get("submodelDescriptors")


def test_nested_submodel_put_id_mismatch_is_400(client, api):
    sid, smid = uid(), uid("sm")
    post_shell(client, api, shell_desc(sid, submodelDescriptors=[submodel_desc(smid, idShort="Keep")]))
    base = f"{api}/shell-descriptors/{b64(sid)}/submodel-descriptors"
    other = uid("sm")
    assert_result_body(client.put(f"{base}/{b64(smid)}", json=submodel_desc(other)), 400)
    page, _ = assert_paged(client.get(base))
    assert ids_of(page) == [smid] and page[0]["idShort"] == "Keep"


# ---------------------------------------------------------------------------
# Submodel registry
# ---------------------------------------------------------------------------


def test_submodel_registry_crud(client, api):
    smid = uid("sm")
    desc = submodel_desc(smid, idShort="TechnicalData", semanticId=semantic_id("urn:sem:td"),
                         administration={"version": "1", "revision": "0"})
    r = client.post(api + "/submodel-descriptors", json=desc)
    assert_status(r, 201)
    loc = r.headers.get("Location", "")
    assert loc.endswith("/submodel-descriptors/" + b64(smid)), loc
    assert_subset(desc, assert_json(r))
    g = client.get(urllib.parse.urljoin(r.url, loc))
    assert_status(g, 200)
    assert_subset(desc, assert_json(g))
    # dup
    assert_result_body(client.post(api + "/submodel-descriptors", json=submodel_desc(smid, idShort="Dup")), 409)
    assert assert_json(client.get(f"{api}/submodel-descriptors/{b64(smid)}"))["idShort"] == "TechnicalData"
    # list
    assert smid in ids_of(list_all(client, api + "/submodel-descriptors"))
    # replace
    new = submodel_desc(smid, idShort="TechnicalData2", endpoints=[endpoint("https://example.com/sm2", "SUBMODEL-3.0")])
    assert_status(client.put(f"{api}/submodel-descriptors/{b64_padded(smid)}", json=new), 204)
    got = assert_json(client.get(f"{api}/submodel-descriptors/{b64(smid)}"))
    assert_subset(new, got)
    # create via PUT
    smid2 = uid("sm")
    assert_status(client.put(f"{api}/submodel-descriptors/{b64(smid2)}", json=submodel_desc(smid2)), 201)
    assert_status(client.get(f"{api}/submodel-descriptors/{b64(smid2)}"), 200)
    # delete
    assert_status(client.delete(f"{api}/submodel-descriptors/{b64(smid)}"), 204)
    assert_result_body(client.get(f"{api}/submodel-descriptors/{b64(smid)}"), 404)
    assert_result_body(client.delete(f"{api}/submodel-descriptors/{b64(smid)}"), 404)
    listed = ids_of(list_all(client, api + "/submodel-descriptors"))
    assert smid not in listed and smid2 in listed


def test_submodel_registry_and_shell_registry_are_separate(client, api):
    """A submodel descriptor id is not a shell descriptor id and vice versa."""
    i = uid("both")
    post_submodel(client, api, submodel_desc(i))
    assert_result_body(client.get(f"{api}/shell-descriptors/{b64(i)}"), 404)
    post_shell(client, api, shell_desc(i))
    assert_status(client.get(f"{api}/shell-descriptors/{b64(i)}"), 200)
    assert_status(client.delete(f"{api}/submodel-descriptors/{b64(i)}"), 204)
    assert_status(client.get(f"{api}/shell-descriptors/{b64(i)}"), 200)


# ---------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------


def _filtered(client, url, params):
    return list_all(client, url, params)


def test_filter_asset_kind(client, api):
    tag = uid("type")
    kinds = {"Instance": uid(), "Type": uid(), "NotApplicable": uid()}
    for kind, sid in kinds.items():
        post_shell(client, api, shell_desc(sid, assetKind=kind, assetType=tag))
    no_kind = uid()
    post_shell(client, api, shell_desc(no_kind, assetType=tag))
    for kind, sid in kinds.items():
        got = _filtered(client, api + "/shell-descriptors", {"assetKind": kind})
        assert all(d.get("assetKind") == kind for d in got), [d.get("assetKind") for d in got]
        ids = ids_of(got)
        assert sid in ids
        assert not ({s for k, s in kinds.items() if k != kind} | {no_kind}) & set(ids)


def test_filter_asset_type(client, api):
    t1, t2 = uid("type") + "/π", uid("type")
    a, b, c = uid(), uid(), uid()
    post_shell(client, api, shell_desc(a, assetType=t1, assetKind="Type"))
    post_shell(client, api, shell_desc(b, assetType=t2, assetKind="Type"))
    post_shell(client, api, shell_desc(c, assetType=t1, assetKind="Instance"))
    assert ids_of(_filtered(client, api + "/shell-descriptors", {"assetType": b64(t1)})) == [a, c]
    assert ids_of(_filtered(client, api + "/shell-descriptors", {"assetType": b64_padded(t1)})) == [a, c]
    assert ids_of(_filtered(client, api + "/shell-descriptors", {"assetType": b64(t2)})) == [b]
    # combined with assetKind
    assert ids_of(_filtered(client, api + "/shell-descriptors", {"assetType": b64(t1), "assetKind": "Instance"})) == [c]
    assert _filtered(client, api + "/shell-descriptors", {"assetType": b64(uid("type"))}) == []


def test_filter_asset_ids(client, api):
    serial, batch, gaid = uid("serial"), uid("batch"), uid("asset")
    both, only_serial, only_batch, by_gaid = uid(), uid(), uid(), uid()
    post_shell(client, api, shell_desc(both, specificAssetIds=[{"name": "serial", "value": serial},
                                                               {"name": "batch", "value": batch}]))
    post_shell(client, api, shell_desc(only_serial, specificAssetIds=[{"name": "serial", "value": serial}]))
    post_shell(client, api, shell_desc(only_batch, specificAssetIds=[{"name": "batch", "value": batch}]))
    post_shell(client, api, shell_desc(by_gaid, globalAssetId=gaid,
                                       specificAssetIds=[{"name": "serial", "value": serial}]))
    url = api + "/shell-descriptors"
    assert ids_of(_filtered(client, url, [("assetIds", asset_id_param("serial", serial))])) == [both, only_serial, by_gaid]
    assert ids_of(_filtered(client, url, [("assetIds", asset_id_param("batch", batch))])) == [both, only_batch]
    # repeated parameter: all must match
    assert ids_of(_filtered(client, url, [("assetIds", asset_id_param("serial", serial)),
                                          ("assetIds", asset_id_param("batch", batch))])) == [both]
    # name and value must match together
    assert _filtered(client, url, [("assetIds", asset_id_param("batch", serial))]) == []
    # globalAssetId
    assert ids_of(_filtered(client, url, [("assetIds", asset_id_param("globalAssetId", gaid))])) == [by_gaid]
    assert ids_of(_filtered(client, url, [("assetIds", asset_id_param("globalAssetId", gaid)),
                                          ("assetIds", asset_id_param("serial", serial))])) == [by_gaid]
    assert _filtered(client, url, [("assetIds", asset_id_param("globalAssetId", gaid)),
                                   ("assetIds", asset_id_param("batch", batch))]) == []


def test_filter_asset_ids_with_unicode_values(client, api):
    value = "Ünïcødé 🦀 " + uid("serial")
    sid = uid()
    post_shell(client, api, shell_desc(sid, specificAssetIds=[{"name": "serial", "value": value}]))
    assert ids_of(_filtered(client, api + "/shell-descriptors",
                            [("assetIds", asset_id_param("serial", value))])) == [sid]


def test_filter_semantic_id(client, api):
    s1, s2, other = uid("sem"), uid("sem"), uid("sem")
    a, b, c = uid("sm"), uid("sm"), uid("sm")
    post_submodel(client, api, submodel_desc(a, semanticId=semantic_id(s1)))
    post_submodel(client, api, submodel_desc(b, semanticId=semantic_id(other, s1)))  # second key matches
    post_submodel(client, api, submodel_desc(c, semanticId=semantic_id(s2)))
    url = api + "/submodel-descriptors"
    assert ids_of(_filtered(client, url, {"semanticId": b64(s1)})) == [a, b]
    assert ids_of(_filtered(client, url, {"semanticId": b64(s2)})) == [c]
    assert ids_of(_filtered(client, url, {"semanticId": b64(other)})) == [b]
    assert _filtered(client, url, {"semanticId": b64(uid("sem"))}) == []


def test_filter_results_are_paged(client, api):
    tag = uid("type")
    mine = [uid() for _ in range(7)]
    for sid in mine:
        post_shell(client, api, shell_desc(sid, assetType=tag))
    got = list_all(client, api + "/shell-descriptors", {"assetType": b64(tag)}, limit=3)
    assert ids_of(got) == mine
