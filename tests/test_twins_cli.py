"""`twinlattice account create` and `demo seed` on a stopped host's data
directory, and their failure when no host answers."""

from __future__ import annotations

import json

from conftest import require_binary
from twins_helpers import ok, run_twinlattice, tt_for


def test_account_and_demo_on_a_data_dir_then_served(server_factory, tmp_path):
    data = tmp_path / "data"
    created = run_twinlattice("account", "create", "--name", "Offline Co", "--data-dir", str(data))
    assert created.returncode == 0, created.stderr
    lines = [l for l in created.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, created.stdout
    creds = json.loads(lines[0])
    assert set(creds) == {"account", "user", "role", "secret"}

    seeded = run_twinlattice("demo", "seed", "--data-dir", str(data))
    again = run_twinlattice("demo", "seed", "--data-dir", str(data))
    assert seeded.returncode == 0 and again.returncode == 0, (seeded.stderr, again.stderr)
    assert json.loads(seeded.stdout) == json.loads(again.stdout), "seeding is idempotent"
    demo = json.loads(seeded.stdout)

    server = server_factory(data_dir=data)
    tt = tt_for(server, creds["secret"])
    assert ok(tt.who_am_i) == {"account": creds["account"], "user": creds["user"], "role": creds["role"]}
    found = ok(tt.resolve_twin_identity, demo["identity"], params={"context": demo["account"]})
    assert found == {"twins": [demo["twin"]]}


def test_account_create_without_a_host_fails_clearly():
    # Port 9 (discard) on loopback: nothing of ours listens there.
    p = run_twinlattice("account", "create", "--admin", "http://127.0.0.1:9")
    assert p.returncode != 0
    assert p.stdout.strip() == ""
    assert "admin endpoint" in p.stderr, p.stderr
    assert require_binary().exists()
