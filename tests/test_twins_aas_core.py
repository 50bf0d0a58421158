"""One twin core: AAS shells registered through the AAS registry are twins.

Each shell becomes a Twin owned by the registry's own account; its id and
globalAssetId resolve as public Identities (`AAS#id` where the id fits the
identity pattern, a hashed `HID#…` otherwise); its descriptor and liveness
are public entries of that account's Ledger, with history.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

import uuid


def uid() -> str:
    return uuid.uuid4().hex
from twins_helpers import NOT_ACCESSIBLE, account, history, ledger, ok, twin_uuid


def hashed(kind: str, ident: str) -> str:
    digest = hashlib.sha256(f"{kind}:{ident}".encode()).digest()[:21]
    return "HID#" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def shell(ident: str, asset: str, liveness: str | None = None) -> dict:
    d = {"id": ident, "idShort": "Pump", "assetKind": "Instance", "globalAssetId": asset,
         "endpoints": [{"interface": "AAS-3.0", "protocolInformation": {"href": "http://pump.example/aas"}}]}
    if liveness:
        d["extensions"] = [{"name": "twinlattice:liveness", "value": liveness}]
    return d


def resolve_one(tt, name: str) -> str:
    twins = ok(tt.resolve_twin_identity, name, params={"context": "system"})["twins"]
    assert len(twins) == 1, (name, twins)
    return twins[0]


@pytest.fixture
def reader(server):
    return account(server)


def test_registered_shell_is_a_twin_with_identities_and_entries(server, reader):
    ident = f"https://example.com/ids/aas/{uid()}"
    asset = f"urn_asset_{uid()}".replace("-", "_")
    r = server.client.post(server.url("/shell-descriptors"), json=shell(ident, asset))
    assert r.status_code == 201, r.text

    # The URL id does not fit the identity pattern: hashed. The asset id fits.
    twin = resolve_one(reader.tt, hashed("AAS", ident))
    assert resolve_one(reader.tt, f"ASSET#{asset}") == twin

    t = ok(reader.tt.get_twin, twin)
    assert twin_uuid(t) == twin and t["status"] == "alive"
    assert t["description"]["aas_id"] == ident and t["description"]["global_asset_id"] == asset
    registry_account = t["owner"]
    assert registry_account != reader.account

    entries = ledger(reader.tt, twin, registry_account)
    assert entries["descriptor"]["value"]["id"] == ident, entries
    assert entries["descriptor"]["visibility"] == "true"
    assert "liveness" not in entries

    # A replacement (with the broker's liveness extension) is a new value
    # of the same entries, with history.
    r = server.client.put(server.url(f"/shell-descriptors/{base64.urlsafe_b64encode(ident.encode()).decode().rstrip('=')}"),
                          json=shell(ident, asset, liveness="online"))
    assert r.status_code == 204, r.text
    entries = ledger(reader.tt, twin, registry_account)
    assert entries["liveness"]["value"] == "online"
    h = history(reader.tt, twin, registry_account, params={"entries": ["descriptor", "liveness"]})
    assert len(h["descriptor"]) == 2 and list(h["liveness"].values()) == ["online"], h
    newest = next(iter(h["descriptor"].values()))
    assert newest["extensions"][0]["value"] == "online"

    # The reader's own ledger is unaffected, and it cannot write the registry's.
    assert ledger(reader.tt, twin) == {}

    # Deleting the shell terminates its twin and removes its identities;
    # the ledger stays readable.
    r = server.client.delete(server.url(f"/shell-descriptors/{base64.urlsafe_b64encode(ident.encode()).decode()}"))
    assert r.status_code == 204, r.text
    assert ok(reader.tt.resolve_twin_identity, hashed("AAS", ident), params={"context": "system"}) == {"twins": []}
    assert ok(reader.tt.get_twin, twin)["status"] == "terminated"
    assert ledger(reader.tt, twin, registry_account)["descriptor"]["value"]["id"] == ident


def test_plain_identity_for_ids_that_fit_the_pattern(server, reader):
    ident = f"pump_{uid()}".replace("-", "_")
    r = server.client.post(server.url("/shell-descriptors"), json=shell(ident, f"asset_{ident}"))
    assert r.status_code == 201, r.text
    twin = resolve_one(reader.tt, f"AAS#{ident}")
    assert history(reader.tt, twin, params={"entries": ["descriptor"]})["descriptor"] == NOT_ACCESSIBLE
