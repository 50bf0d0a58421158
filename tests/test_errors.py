"""Bad input: every case gets a 4xx with the AAS Part 2 `Result` body, never
a 5xx, and nothing stored changes."""

from __future__ import annotations

import contextlib
import json
import re

import pytest

from conftest import (
    Client,
    assert_json,
    assert_result_body,
    assert_status,
    b64,
    post_shell,
    post_submodel,
    shell_desc,
    snapshot,
    submodel_desc,
    uid,
)


@contextlib.contextmanager
def unchanged(client, server):
    """Assert that the store is the same after the block (root listing)."""
    before = snapshot(client, server.base_url)
    yield
    after = snapshot(client, server.base_url)
    assert after == before, "an error response changed the stored data"


@pytest.fixture
def existing(client, api):
    """A shell with a nested submodel descriptor, and a registry submodel."""
    sid, nested, smid = uid(), uid("sm"), uid("sm")
    post_shell(client, api, shell_desc(sid, idShort="Existing", submodelDescriptors=[submodel_desc(nested)]))
    post_submodel(client, api, submodel_desc(smid, idShort="ExistingSm"))
    return {"shell": sid, "nested": nested, "submodel": smid}


def write_routes(api, ex):
    """(method, url, kind) of every route that takes a body; `kind` is the
    descriptor kind the body must be, `id` the id the path names."""
    s, n, m = b64(ex["shell"]), b64(ex["nested"]), b64(ex["submodel"])
    return {
        "POST shells": ("POST", f"{api}/shell-descriptors", "shell", None),
        "PUT shell": ("PUT", f"{api}/shell-descriptors/{s}", "shell", ex["shell"]),
        "POST superpath": ("POST", f"{api}/shell-descriptors/{s}/submodel-descriptors", "submodel", None),
        "PUT superpath": ("PUT", f"{api}/shell-descriptors/{s}/submodel-descriptors/{n}", "submodel", ex["nested"]),
        "POST submodels": ("POST", f"{api}/submodel-descriptors", "submodel", None),
        "PUT submodel": ("PUT", f"{api}/submodel-descriptors/{m}", "submodel", ex["submodel"]),
    }


ROUTE_NAMES = ["POST shells", "PUT shell", "POST superpath", "PUT superpath", "POST submodels", "PUT submodel"]


# ---------------------------------------------------------------------------
# Malformed JSON
# ---------------------------------------------------------------------------

MALFORMED = {
    "truncated": b'{"id": "x",',
    "missing-comma": b'{"id": "x" "idShort": "y"}',
    "single-quotes": b"{'id': 'x'}",
    "trailing-garbage": b'{"id": "x"} trailing',
    "bare-word": b"undefined",
    "trailing-comma": b'{"id": "x",}',
}


@pytest.mark.parametrize("route", ROUTE_NAMES)
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_json_is_400_with_position(client, server, api, existing, route, case):
    method, url, _, _ = write_routes(api, existing)[route]
    with unchanged(client, server):
        r = client.request(method, url, data=MALFORMED[case], headers={"Content-Type": "application/json"})
        msgs = assert_result_body(r, 400)
    text = " ".join(m["text"] for m in msgs).lower()
    assert "line" in text and "column" in text, f"the message should give line and column: {msgs}"


@pytest.mark.parametrize("route", ["POST shells", "PUT superpath", "POST submodels"])
def test_malformed_json_reports_the_right_line(client, server, api, existing, route):
    method, url, _, _ = write_routes(api, existing)[route]
    body = b'{\n  "id": "abc",\n  "idShort": oops\n}\n'
    with unchanged(client, server):
        msgs = assert_result_body(client.request(method, url, data=body,
                                                 headers={"Content-Type": "application/json"}), 400)
    text = " ".join(m["text"] for m in msgs)
    m = re.search(r"line\D{0,3}(\d+)", text, re.IGNORECASE)
    assert m and m.group(1) == "3", f"error is on line 3: {text}"
    assert re.search(r"column\D{0,3}\d+", text, re.IGNORECASE), text


@pytest.mark.parametrize("route", ROUTE_NAMES)
@pytest.mark.parametrize("case", ["empty", "invalid-utf8", "deep-nesting", "nul-bytes"])
def test_hostile_bodies_are_400(client, server, api, existing, route, case):
    method, url, _, _ = write_routes(api, existing)[route]
    body = {
        "empty": b"",
        "invalid-utf8": b'{"id": "\xff\xfe\xfd"}',
        "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
        "nul-bytes": b"\x00" * 64,
    }[case]
    with unchanged(client, server):
        assert_result_body(client.request(method, url, data=body, headers={"Content-Type": "application/json"}), 400)
    # still serving
    assert_status(client.get(api + "/description"), 200)


# ---------------------------------------------------------------------------
# Schema violations
# ---------------------------------------------------------------------------


def texts(msgs):
    return [m["text"] for m in msgs]


def mentions(msgs, pointer):
    return any(pointer in t for t in texts(msgs))


def test_shell_without_id_is_400(client, server, api):
    with unchanged(client, server):
        msgs = assert_result_body(client.post(api + "/shell-descriptors", json={"idShort": "noId"}), 400)
    assert any("id" in t for t in texts(msgs)), msgs


def test_shell_violations_give_one_message_each_with_pointer(client, server, api):
    sid = uid()
    body = {"id": sid, "idShort": 5, "assetKind": "Bogus", "endpoints": []}
    with unchanged(client, server):
        msgs = assert_result_body(client.post(api + "/shell-descriptors", json=body), 400)
    assert len(msgs) >= 3, f"one message per violation: {msgs}"
    for pointer in ("/idShort", "/assetKind", "/endpoints"):
        assert mentions(msgs, pointer), f"no message names {pointer}: {texts(msgs)}"
    assert_result_body(client.get(f"{api}/shell-descriptors/{b64(sid)}"), 404)


SHELL_VIOLATIONS = {
    "empty-id": ({"id": ""}, "/id"),
    "id-not-string": ({"id": 42}, "/id"),
    "id-too-long": ({"id": "x" * 2001}, "/id"),
    "id-control-char": ({"id": "bad\u0001id"}, "/id"),
    "endpoint-without-href": (
        {"endpoints": [{"interface": "AAS-3.0", "protocolInformation": {"endpointProtocol": "HTTP"}}]},
        "/endpoints/0/protocolInformation",
    ),
    "endpoint-without-interface": ({"endpoints": [{"protocolInformation": {"href": "http://x"}}]}, "/endpoints/0"),
    "endpoints-not-array": ({"endpoints": {"interface": "AAS-3.0"}}, "/endpoints"),
    "specific-asset-id-without-value": ({"specificAssetIds": [{"name": "serial"}]}, "/specificAssetIds/0"),
    "asset-kind-role-is-3.1": ({"assetKind": "Role"}, "/assetKind"),
    "nested-submodel-without-endpoints": ({"submodelDescriptors": [{"id": "urn:sm:x"}]}, "/submodelDescriptors/0"),
    "description-not-array": ({"description": "text"}, "/description"),
}


@pytest.mark.parametrize("case", sorted(SHELL_VIOLATIONS))
def test_shell_schema_violation(client, server, api, case):
    patch, pointer = SHELL_VIOLATIONS[case]
    sid = uid()
    body = {"id": sid, **patch}
    with unchanged(client, server):
        msgs = assert_result_body(client.post(api + "/shell-descriptors", json=body), 400)
        assert mentions(msgs, pointer), f"expected a message naming {pointer}: {texts(msgs)}"
        # the same body through PUT
        same_id = isinstance(body["id"], str) and body["id"] != ""
        put_id = body["id"] if same_id else sid
        msgs = assert_result_body(client.put(f"{api}/shell-descriptors/{b64(put_id)}", json=body), 400)
        if same_id:  # otherwise an id-mismatch message is as good an answer
            assert mentions(msgs, pointer), texts(msgs)
    assert_result_body(client.get(f"{api}/shell-descriptors/{b64(sid)}"), 404)


@pytest.mark.parametrize("body", [[], ["id"], "a string", 42, None, True], ids=["array", "array2", "string", "number",
                                                                                  "null", "bool"])
def test_non_object_json_is_400(client, server, api, body):
    with unchanged(client, server):
        assert_result_body(client.post(api + "/shell-descriptors", data=json.dumps(body),
                                       headers={"Content-Type": "application/json"}), 400)
        assert_result_body(client.post(api + "/submodel-descriptors", data=json.dumps(body),
                                       headers={"Content-Type": "application/json"}), 400)


SUBMODEL_VIOLATIONS = {
    "no-endpoints": ({"endpoints": None}, "endpoints"),
    "empty-endpoints": ({"endpoints": []}, "/endpoints"),
    "no-href": ({"endpoints": [{"interface": "SUBMODEL-3.0", "protocolInformation": {}}]},
                "/endpoints/0/protocolInformation"),
    "no-protocol-information": ({"endpoints": [{"interface": "SUBMODEL-3.0"}]}, "/endpoints/0"),
    "no-interface": ({"endpoints": [{"protocolInformation": {"href": "http://x"}}]}, "/endpoints/0"),
    "href-not-string": ({"endpoints": [{"interface": "SUBMODEL-3.0", "protocolInformation": {"href": 7}}]},
                        "/endpoints/0/protocolInformation/href"),
    "no-id": ({"id": None}, "id"),
}


def _submodel_body(patch):
    body = submodel_desc(uid("sm"))
    for k, v in patch.items():
        if v is None:
            body.pop(k)
        else:
            body[k] = v
    return body


@pytest.mark.parametrize("case", sorted(SUBMODEL_VIOLATIONS))
def test_submodel_schema_violation(client, server, api, existing, case):
    patch, pointer = SUBMODEL_VIOLATIONS[case]
    body = _submodel_body(patch)
    sm_path_id = body.get("id") or uid("sm")
    urls = [
        ("POST", f"{api}/submodel-descriptors"),
        ("PUT", f"{api}/submodel-descriptors/{b64(sm_path_id)}"),
        ("POST", f"{api}/shell-descriptors/{b64(existing['shell'])}/submodel-descriptors"),
        ("PUT", f"{api}/shell-descriptors/{b64(existing['shell'])}/submodel-descriptors/{b64(sm_path_id)}"),
    ]
    with unchanged(client, server):
        for method, url in urls:
            msgs = assert_result_body(client.request(method, url, json=body), 400)
            assert mentions(msgs, pointer), f"{method} {url}: expected a message naming {pointer}: {texts(msgs)}"
    assert_result_body(client.get(f"{api}/submodel-descriptors/{b64(sm_path_id)}"), 404)


# ---------------------------------------------------------------------------
# Identifiers that are not base64url
# ---------------------------------------------------------------------------

BAD_IDS = {
    "bang": "!!!",
    "one-char": "a",
    "pct-ff": "%FF",
    "std-base64-plus": "Pz8+",  # base64 of '??>' is 'Pz8+'; base64url would be 'Pz8-'
    "not-utf8": "__79",  # bytes ff fe fd
    "only-padding": "%3D%3D",
    "space": "YW%20Jj",
    "dot": "YW.Jj",
}


@pytest.mark.parametrize("case", sorted(BAD_IDS))
def test_bad_base64_identifier_is_400(client, server, api, existing, case):
    bad = BAD_IDS[case]
    s, n = b64(existing["shell"]), b64(existing["nested"])
    calls = [
        ("GET", f"{api}/shell-descriptors/{bad}", None),
        ("PUT", f"{api}/shell-descriptors/{bad}", shell_desc(uid())),
        ("DELETE", f"{api}/shell-descriptors/{bad}", None),
        ("GET", f"{api}/shell-descriptors/{bad}/submodel-descriptors", None),
        ("POST", f"{api}/shell-descriptors/{bad}/submodel-descriptors", submodel_desc(uid("sm"))),
        ("GET", f"{api}/shell-descriptors/{s}/submodel-descriptors/{bad}", None),
        ("PUT", f"{api}/shell-descriptors/{s}/submodel-descriptors/{bad}", submodel_desc(uid("sm"))),
        ("DELETE", f"{api}/shell-descriptors/{s}/submodel-descriptors/{bad}", None),
        ("GET", f"{api}/shell-descriptors/{bad}/submodel-descriptors/{n}", None),
        ("GET", f"{api}/submodel-descriptors/{bad}", None),
        ("PUT", f"{api}/submodel-descriptors/{bad}", submodel_desc(uid("sm"))),
        ("DELETE", f"{api}/submodel-descriptors/{bad}", None),
    ]
    with unchanged(client, server):
        for method, url, body in calls:
            r = client.request(method, url, json=body) if body is not None else client.request(method, url)
            assert_result_body(r, 400)


def test_valid_base64_of_unknown_id_is_404_not_400(client, api):
    assert_result_body(client.get(f"{api}/shell-descriptors/{b64(uid())}"), 404)
    assert_result_body(client.get(f"{api}/submodel-descriptors/{b64(uid())}"), 404)


# ---------------------------------------------------------------------------
# Body size
# ---------------------------------------------------------------------------


def padded_body(desc: dict, size: int) -> bytes:
    """Valid JSON of exactly `size` bytes (whitespace padding)."""
    raw = json.dumps(desc).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def test_oversize_body_is_413_small_limit(client, server_factory):
    s = server_factory(extra_args=["--max-body-bytes", "2048"])
    with Client() as c:
        under, over, at = uid(), uid(), uid()
        hdr = {"Content-Type": "application/json"}
        before = snapshot(c, s.base_url)
        r = c.post(s.base_url + "/shell-descriptors", data=padded_body(shell_desc(over), 2049), headers=hdr)
        assert_result_body(r, 413)
        r = c.put(f"{s.base_url}/shell-descriptors/{b64(over)}", data=padded_body(shell_desc(over), 4096), headers=hdr)
        assert_result_body(r, 413)
        r = c.post(s.base_url + "/api/v3.0/submodel-descriptors", data=padded_body(submodel_desc(over), 100_000),
                   headers=hdr)
        assert_result_body(r, 413)

        # chunked transfer (no Content-Length) must be limited as well
        def chunks():
            yield json.dumps(shell_desc(over)).encode()
            for _ in range(16):
                yield b" " * 1024

        r = c.post(s.base_url + "/shell-descriptors", data=chunks(), headers=hdr)
        assert_result_body(r, 413)
        assert snapshot(c, s.base_url) == before
        assert_result_body(c.get(f"{s.base_url}/shell-descriptors/{b64(over)}"), 404)
        # at and under the limit is fine
        assert_status(c.post(s.base_url + "/shell-descriptors", data=padded_body(shell_desc(at), 2048), headers=hdr), 201)
        assert_status(c.post(s.base_url + "/shell-descriptors", data=padded_body(shell_desc(under), 1000), headers=hdr),
                      201)
        assert assert_json(c.get(f"{s.base_url}/shell-descriptors/{b64(at)}"))["id"] == at


def test_oversize_body_is_413_default_1mib(client, server):
    mib = 1024 * 1024
    over, at = uid(), uid()
    hdr = {"Content-Type": "application/json"}
    with unchanged(client, server):
        r = client.post(server.base_url + "/shell-descriptors", data=padded_body(shell_desc(over), mib + 1), headers=hdr)
        assert_result_body(r, 413)
        r = client.post(server.base_url + "/shell-descriptors", data=padded_body(shell_desc(over), 8 * mib),
                        headers=hdr)
        assert_result_body(r, 413)
    r = client.post(server.base_url + "/shell-descriptors", data=padded_body(shell_desc(at), mib), headers=hdr)
    assert_status(r, 201)
    assert assert_json(client.get(f"{server.base_url}/shell-descriptors/{b64(at)}"))["id"] == at


# ---------------------------------------------------------------------------
# Query parameters
# ---------------------------------------------------------------------------

BAD_LIMITS = ["0", "-1", "-100", "abc", "1.5", "", "1e3", "0x10", "ten"]
BAD_CURSORS = ["", "garbage!!", "Zm9v", "%FF", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]


def list_urls(api, ex):
    return [
        f"{api}/shell-descriptors",
        f"{api}/submodel-descriptors",
        f"{api}/shell-descriptors/{b64(ex['shell'])}/submodel-descriptors",
    ]


@pytest.mark.parametrize("limit", BAD_LIMITS, ids=[repr(x) for x in BAD_LIMITS])
def test_bad_limit_is_400(client, api, existing, limit):
    for url in list_urls(api, existing):
        msgs = assert_result_body(client.get(url, params={"limit": limit}), 400)
        assert any("limit" in t for t in texts(msgs)), msgs


@pytest.mark.parametrize("cursor", BAD_CURSORS, ids=[repr(x) for x in BAD_CURSORS])
def test_bad_cursor_is_400(client, api, existing, cursor):
    for url in list_urls(api, existing):
        # built by hand so that '%FF' reaches the server as is
        r = client.get(f"{url}?cursor={cursor}")
        msgs = assert_result_body(r, 400)
        assert any("cursor" in t.lower() for t in texts(msgs)), msgs


@pytest.mark.parametrize("kind", ["instance", "INSTANCE", "Role", "", "Foo", "Type,Instance"])
def test_bad_asset_kind_is_400(client, api, kind):
    msgs = assert_result_body(client.get(api + "/shell-descriptors", params={"assetKind": kind}), 400)
    assert any("assetKind" in t for t in texts(msgs)), msgs


@pytest.mark.parametrize(
    "param,value",
    [
        ("assetType", "!!!"),
        ("assetIds", "!!!"),
        ("assetIds", b64("not json")),
        ("assetIds", b64('{"name": "serial"}')),
        ("assetIds", b64('["serial", "1"]')),
    ],
    ids=["assetType-not-b64", "assetIds-not-b64", "assetIds-not-json", "assetIds-no-value", "assetIds-array"],
)
def test_bad_shell_filter_values_are_400(client, api, param, value):
    assert_result_body(client.get(api + "/shell-descriptors", params={param: value}), 400)


def test_bad_semantic_id_is_400(client, api):
    assert_result_body(client.get(api + "/submodel-descriptors", params={"semanticId": "!!!"}), 400)


# ---------------------------------------------------------------------------
# Unknown paths and wrong methods
# ---------------------------------------------------------------------------


def test_unknown_paths_are_404(client, server, api, existing):
    s, n = b64(existing["shell"]), b64(existing["nested"])
    paths = [
        "/nope",
        "/shell-descriptor",
        "/shells",
        "/api/v2.0/shell-descriptors",
        "/api/v3.1/shell-descriptors",
        f"/shell-descriptors/{s}/nope",
        f"/shell-descriptors/{s}/submodel-descriptors/{n}/extra",
        f"/submodel-descriptors/{b64(existing['submodel'])}/submodel-descriptors",
        "/description/extra",
    ]
    with unchanged(client, server):
        for p in paths:
            for method in ("GET", "POST", "DELETE"):
                r = client.request(method, server.base_url + p, json={"id": uid()} if method == "POST" else None)
                assert_result_body(r, 404)
        for p in paths[:3]:
            assert_result_body(client.get(api + p), 404)


def test_wrong_methods_are_405(client, server, api, existing):
    s, n, m = b64(existing["shell"]), b64(existing["nested"]), b64(existing["submodel"])
    calls = [
        ("DELETE", "/shell-descriptors"),
        ("PUT", "/shell-descriptors"),
        ("PATCH", "/shell-descriptors"),
        ("POST", f"/shell-descriptors/{s}"),
        ("PATCH", f"/shell-descriptors/{s}"),
        ("DELETE", f"/shell-descriptors/{s}/submodel-descriptors"),
        ("PUT", f"/shell-descriptors/{s}/submodel-descriptors"),
        ("POST", f"/shell-descriptors/{s}/submodel-descriptors/{n}"),
        ("DELETE", "/submodel-descriptors"),
        ("PUT", "/submodel-descriptors"),
        ("POST", f"/submodel-descriptors/{m}"),
        ("POST", "/description"),
        ("DELETE", "/description"),
        ("PUT", "/description"),
    ]
    with unchanged(client, server):
        for method, path in calls:
            body = shell_desc(existing["shell"]) if method in ("POST", "PUT", "PATCH") else None
            r = client.request(method, api + path, json=body)
            assert_result_body(r, 405)
    # the collection is still there after DELETE /shell-descriptors
    assert_status(client.get(f"{api}/shell-descriptors/{s}"), 200)


# ---------------------------------------------------------------------------
# Id mismatch
# ---------------------------------------------------------------------------


def test_put_shell_id_mismatch_is_400(client, server, api, existing):
    other = uid()
    with unchanged(client, server):
        msgs = assert_result_body(
            client.put(f"{api}/shell-descriptors/{b64(existing['shell'])}", json=shell_desc(other, idShort="Mismatch")),
            400)
        # and against an absent path id (would be a create)
        absent = uid()
        assert_result_body(client.put(f"{api}/shell-descriptors/{b64(absent)}", json=shell_desc(other)), 400)
    assert msgs
    assert assert_json(client.get(f"{api}/shell-descriptors/{b64(existing['shell'])}"))["idShort"] == "Existing"
    assert_result_body(client.get(f"{api}/shell-descriptors/{b64(other)}"), 404)
    assert_result_body(client.get(f"{api}/shell-descriptors/{b64(absent)}"), 404)


def test_put_submodel_id_mismatch_is_400(client, server, api, existing):
    other = uid("sm")
    with unchanged(client, server):
        assert_result_body(client.put(f"{api}/submodel-descriptors/{b64(existing['submodel'])}",
                                      json=submodel_desc(other)), 400)
        assert_result_body(client.put(
            f"{api}/shell-descriptors/{b64(existing['shell'])}/submodel-descriptors/{b64(existing['nested'])}",
            json=submodel_desc(other)), 400)
    assert_result_body(client.get(f"{api}/submodel-descriptors/{b64(other)}"), 404)
    assert assert_json(client.get(f"{api}/submodel-descriptors/{b64(existing['submodel'])}"))["idShort"] == "ExistingSm"


def test_duplicate_post_is_409_everywhere(client, server, api, existing):
    with unchanged(client, server):
        assert_result_body(client.post(api + "/shell-descriptors", json=shell_desc(existing["shell"])), 409)
        assert_result_body(client.post(api + "/submodel-descriptors", json=submodel_desc(existing["submodel"])), 409)
        assert_result_body(client.post(f"{api}/shell-descriptors/{b64(existing['shell'])}/submodel-descriptors",
                                       json=submodel_desc(existing["nested"])), 409)
