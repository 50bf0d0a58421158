"""The validator Wasm component through `twinlattice validate`, the schema
samples under schemas/samples/, and the regex-equivalence script."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conftest import (
    REPO_ROOT,
    SAMPLES_DIR,
    assert_result_body,
    assert_status,
    b64,
    load_data,
    run_cli,
    uid,
)

SCHEMAS = [
    "aas-v3.0/shell-descriptor",
    "aas-v3.0/submodel-descriptor",
    "aas-v3.0/specific-asset-id",
    "ric/shell-descriptor",
    "ric/submodel-descriptor",
]

# sample file -> (schema, valid?)
SAMPLES = {
    "valid-shell-descriptor.json": ("aas-v3.0/shell-descriptor", True),
    "valid-submodel-descriptor.json": ("aas-v3.0/submodel-descriptor", True),
    "invalid-shell-descriptor.json": ("aas-v3.0/shell-descriptor", False),
    "ric-shell-descriptor.json": ("ric/shell-descriptor", True),
    "valid-shell-descriptor-unicode.json": ("aas-v3.0/shell-descriptor", True),
}


def validate(schema: str, path) -> tuple[int, dict | None, subprocess.CompletedProcess]:
    p = run_cli("validate", "--schema", schema, str(path))
    report = None
    if p.returncode in (0, 1):
        try:
            report = json.loads(p.stdout)
        except ValueError as e:
            raise AssertionError(f"validate printed no single JSON object: {p.stdout!r}\nstderr: {p.stderr}") from e
        assert isinstance(report, dict), report
        assert isinstance(report.get("valid"), bool), report
        assert isinstance(report.get("violations"), list), report
        for v in report["violations"]:
            assert isinstance(v.get("pointer"), str) and isinstance(v.get("reason"), str) and v["reason"], v
            assert v["pointer"] == "" or v["pointer"].startswith("/"), f"not a JSON pointer: {v}"
        assert report["valid"] == (p.returncode == 0), (p.returncode, report)
        assert report["valid"] == (not report["violations"]), report
    return p.returncode, report, p


def check(tmp_path, schema, doc, *, raw: bytes | None = None):
    f = tmp_path / "doc.json"
    if raw is not None:
        f.write_bytes(raw)
    else:
        f.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return validate(schema, f)


def pointers(report):
    return [v["pointer"] for v in report["violations"]]


def resolve(doc, pointer):
    """Follow a JSON pointer; raises KeyError/IndexError when it does not resolve."""
    if pointer == "":
        return doc
    cur = doc
    for part in pointer[1:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]
    return cur


def points_into(doc, pointer):
    """The pointer names an existing value, or a missing member of an existing object."""
    try:
        resolve(doc, pointer)
        return True
    except (KeyError, IndexError, ValueError, TypeError):
        parent = pointer.rsplit("/", 1)[0] if pointer else ""
        try:
            return isinstance(resolve(doc, parent), dict)
        except (KeyError, IndexError, ValueError, TypeError):
            return False


# ---------------------------------------------------------------------------
# --list
# ---------------------------------------------------------------------------


def test_list_names_every_schema():
    p = run_cli("validate", "--list")
    assert p.returncode == 0, p.stderr
    names = [line.strip() for line in p.stdout.splitlines() if line.strip()]
    assert len(names) == len(set(names)), names
    for s in SCHEMAS:
        assert s in names, f"{s} missing from --list: {names}"


def test_every_listed_schema_is_covered_here():
    names = [x.strip() for x in run_cli("validate", "--list").stdout.splitlines() if x.strip()]
    assert set(names) <= set(SCHEMAS), f"schemas without a test in test_validator.py: {set(names) - set(SCHEMAS)}"


# ---------------------------------------------------------------------------
# Per schema: valid and invalid documents with the expected pointers
# ---------------------------------------------------------------------------

V3_SHELL_VALID = {
    "id": "https://example.com/aas/1",
    "idShort": "Shell1",
    "assetKind": "Instance",
    "assetType": "urn:type:1",
    "globalAssetId": "https://example.com/asset/1",
    "specificAssetIds": [{"name": "serial", "value": "123"}],
    "description": [{"language": "en", "text": "a shell"}],
    "endpoints": [{"interface": "AAS-3.0", "protocolInformation": {"href": "https://example.com/aas/1",
                                                                     "endpointProtocol": "HTTP",
                                                                     "endpointProtocolVersion": ["1.1"]}}],
    "submodelDescriptors": [{
        "id": "https://example.com/sm/1",
        "endpoints": [{"interface": "SUBMODEL-3.0", "protocolInformation": {"href": "https://example.com/sm/1"}}],
    }],
}

V3_SUBMODEL_VALID = {
    "id": "https://example.com/sm/1",
    "idShort": "Nameplate",
    "semanticId": {"type": "ExternalReference",
                   "keys": [{"type": "GlobalReference", "value": "https://admin-shell.io/zvei/nameplate/1/0/Nameplate"}]},
    "endpoints": [{"interface": "SUBMODEL-3.0", "protocolInformation": {"href": "https://example.com/sm/1"}}],
}


@pytest.mark.parametrize(
    "schema,doc",
    [
        ("aas-v3.0/shell-descriptor", V3_SHELL_VALID),
        ("aas-v3.0/shell-descriptor", {"id": "only-an-id"}),
        ("aas-v3.0/shell-descriptor", {"id": "urn:ünïcødé:名前:🦀𝄞", "idShort": "Unicode",
                                       "description": [{"language": "de", "text": "Grüße 🦀"}]}),
        ("aas-v3.0/submodel-descriptor", V3_SUBMODEL_VALID),
        ("aas-v3.0/specific-asset-id", {"name": "serial", "value": "123"}),
        ("aas-v3.0/specific-asset-id", {"name": "globalAssetId", "value": "urn:𝄞"}),
        ("ric/shell-descriptor", "ric_vws_ric_descriptor.json"),
        ("ric/shell-descriptor", "ric_swagger_descriptor.json"),
        ("ric/submodel-descriptor", "ric_vws_ric_descriptor.json#/submodelDescriptors/0"),
    ],
    ids=["v3-shell-full", "v3-shell-id-only", "v3-shell-unicode", "v3-submodel", "sai", "sai-gaid",
         "ric-vws", "ric-swagger", "ric-sm-vws"],
)
def test_valid_documents(tmp_path, schema, doc):
    if isinstance(doc, str):
        name, _, pointer = doc.partition("#")
        doc = resolve(load_data(name), pointer)
    code, report, p = check(tmp_path, schema, doc)
    assert code == 0, f"{schema}: expected valid, got {report or p.stderr}"


INVALID = [
    # schema, document, pointers that must be reported (a violation's pointer
    # must equal or start with each)
    ("aas-v3.0/shell-descriptor", {"idShort": "noId"}, [("", "id")]),
    ("aas-v3.0/shell-descriptor", {"id": "", "idShort": 7, "endpoints": []}, ["/id", "/idShort", "/endpoints"]),
    ("aas-v3.0/shell-descriptor", {"id": "x" * 2001}, ["/id"]),
    ("aas-v3.0/shell-descriptor", {"id": "ctl\u0001char"}, ["/id"]),
    ("aas-v3.0/shell-descriptor", {"id": "a", "assetKind": "Role"}, ["/assetKind"]),
    ("aas-v3.0/shell-descriptor", {"id": "a", "endpoints": [{"interface": "AAS-3.0", "protocolInformation": {}}]},
     ["/endpoints/0/protocolInformation"]),
    ("aas-v3.0/shell-descriptor", {"id": "a", "specificAssetIds": [{"name": "n"}]}, ["/specificAssetIds/0"]),
    ("aas-v3.0/shell-descriptor", {"id": "a", "submodelDescriptors": [{"id": "s"}]}, ["/submodelDescriptors/0"]),
    ("aas-v3.0/shell-descriptor", [], [""]),
    ("aas-v3.0/submodel-descriptor", {"id": "s"}, [("", "endpoints")]),
    ("aas-v3.0/submodel-descriptor", {"id": "s", "endpoints": [{"protocolInformation": {"href": "x"}}]},
     ["/endpoints/0"]),
    ("aas-v3.0/submodel-descriptor",
     {"id": "s", "endpoints": [{"interface": "SUBMODEL-3.0", "protocolInformation": {"href": 5}}]},
     ["/endpoints/0/protocolInformation/href"]),
    ("aas-v3.0/submodel-descriptor", {"id": "s", "endpoints": [], "semanticId": "not-a-reference"},
     ["/endpoints", "/semanticId"]),
    ("aas-v3.0/specific-asset-id", {"name": "serial"}, [("", "value")]),
    ("aas-v3.0/specific-asset-id", {"name": 5, "value": "x"}, ["/name"]),
    ("aas-v3.0/specific-asset-id", {"name": "", "value": "x"}, ["/name"]),
    ("ric/shell-descriptor", "identification=5", ["/identification"]),
    ("ric/shell-descriptor", "endpoint-interface=5", ["/endpoints/0"]),
    ("ric/submodel-descriptor", "sm-identification=list", ["/identification"]),
    ("ric/submodel-descriptor", "sm-idShort=5", ["/idShort"]),
]


def ric_invalid(case):
    vws = load_data("ric_vws_ric_descriptor.json")
    sm = vws["submodelDescriptors"][0]
    if case == "identification=5":
        vws["identification"] = 5
        return vws
    if case == "endpoint-interface=5":
        vws["endpoints"][0]["interface"] = 5
        return vws
    if case == "sm-identification=list":
        sm["identification"] = ["x"]
        return sm
    if case == "sm-idShort=5":
        sm["idShort"] = 5
        return sm
    raise AssertionError(case)


@pytest.mark.parametrize("schema,doc,expected", INVALID, ids=[f"{i:02d}-{s}" for i, (s, _, _) in enumerate(INVALID)])
def test_invalid_documents(tmp_path, schema, doc, expected):
    if isinstance(doc, str):
        doc = ric_invalid(doc)
    code, report, p = check(tmp_path, schema, doc)
    assert code == 1, f"{schema}: expected invalid (exit 1), got exit {code}: {report or p.stderr}"
    got = pointers(report)
    for want in expected:
        if isinstance(want, tuple):  # a missing member: pointer at the object or at the member
            parent, member = want
            ok = any((ptr == parent and member in v["reason"]) or ptr == f"{parent}/{member}"
                     for ptr, v in zip(got, report["violations"]))
            assert ok, f"expected a violation for missing {member!r} at {parent!r}: {report['violations']}"
        else:
            assert any(ptr == want or ptr.startswith(want + "/") for ptr in got), (
                f"expected a violation at {want!r}: {report['violations']}")
    for ptr in got:
        assert points_into(doc, ptr), f"pointer {ptr!r} does not point into the document"


def test_all_violations_reported_not_only_first(tmp_path):
    doc = {"id": "", "idShort": 7, "assetKind": "Bogus", "endpoints": [], "globalAssetId": ""}
    code, report, _ = check(tmp_path, "aas-v3.0/shell-descriptor", doc)
    assert code == 1
    got = set(pointers(report))
    assert {"/id", "/idShort", "/assetKind", "/endpoints", "/globalAssetId"} <= got, report


# ---------------------------------------------------------------------------
# Errors of the CLI itself
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"id": "x"} {"id": "y"}', b"\xff\xfe{}"],
                         ids=["syntax", "empty", "two-documents", "not-utf8"])
def test_not_json_exits_2(tmp_path, raw):
    code, _, p = check(tmp_path, "aas-v3.0/shell-descriptor", None, raw=raw)
    assert code == 2, f"exit {code}, stdout {p.stdout!r}"
    assert p.stderr.strip(), "a message on stderr"


def test_unknown_schema_exits_2(tmp_path):
    f = tmp_path / "doc.json"
    f.write_text('{"id": "x"}')
    p = run_cli("validate", "--schema", "aas-v9.9/nothing", str(f))
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "aas-v9.9/nothing" in p.stderr, p.stderr


def test_missing_file_exits_2(tmp_path):
    p = run_cli("validate", "--schema", "aas-v3.0/shell-descriptor", str(tmp_path / "absent.json"))
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.strip()


# ---------------------------------------------------------------------------
# The samples shipped in schemas/samples/
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_schema_samples(name):
    path = SAMPLES_DIR / name
    assert path.is_file(), f"sample {path} is missing"
    schema, valid = SAMPLES[name]
    code, report, p = validate(schema, path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    if valid:
        assert code == 0, f"{name} should be valid against {schema}: {report or p.stderr}"
    else:
        assert code == 1, f"{name} should be invalid against {schema}: {report or p.stderr}"
        assert report["violations"]
        for ptr in pointers(report):
            assert points_into(doc, ptr), f"{name}: pointer {ptr!r} does not point into the document"


def test_unicode_sample_has_non_bmp_characters():
    text = (SAMPLES_DIR / "valid-shell-descriptor-unicode.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    assert any(ord(ch) > 0xFFFF for ch in json.dumps(doc, ensure_ascii=False)), "the unicode sample should use astral characters"


def test_samples_agree_with_http_api(client, server):
    """What the validator CLI says about a sample, POST /shell-descriptors says too."""
    good = json.loads((SAMPLES_DIR / "valid-shell-descriptor-unicode.json").read_text(encoding="utf-8"))
    good["id"] = good.get("id", "") + "#" + uid()
    r = client.post(server.base_url + "/shell-descriptors", json=good)
    assert_status(r, 201)
    g = client.get(f"{server.base_url}/shell-descriptors/{b64(good['id'])}")
    assert_status(g, 200)
    assert g.json()["id"] == good["id"]

    bad_path = SAMPLES_DIR / "invalid-shell-descriptor.json"
    _, report, _ = validate("aas-v3.0/shell-descriptor", bad_path)
    r = client.post(server.base_url + "/shell-descriptors", data=bad_path.read_bytes(),
                    headers={"Content-Type": "application/json"})
    msgs = assert_result_body(r, 400)
    assert len(msgs) == len(report["violations"]), (msgs, report)
    for v in report["violations"]:
        shown = v["pointer"] or "/"
        assert any(shown in m["text"] for m in msgs), f"no message names {shown}: {msgs}"


# ---------------------------------------------------------------------------
# Rust vs. JavaScript regex translation
# ---------------------------------------------------------------------------


def test_regex_equivalence_script():
    node = shutil.which("node")
    assert node, "node is required for tests/regex_equivalence.mjs"
    script = REPO_ROOT / "tests" / "regex_equivalence.mjs"
    assert script.is_file(), f"{script} is missing"
    p = subprocess.run([node, str(script)], cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"regex_equivalence.mjs failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
