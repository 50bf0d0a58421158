"""`twinlattice serve` command line: the stdout lines, port selection
(--port, LIA_AAS_RESTAPI_PORT_INTERN), clean shutdown."""

from __future__ import annotations

import signal
import socket

import requests

from conftest import LISTEN_RE, assert_json, assert_status


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stdout_lines_and_ephemeral_port(server_factory):
    s = server_factory()
    listening = [line for line in s.stdout_lines if LISTEN_RE.match(line.strip())]
    assert len(listening) == 1, s.stdout_lines
    assert listening[0].strip() == f"twinlattice http listening on http://127.0.0.1:{s.port}"
    assert s.port and s.port > 0
    ready_at = next(i for i, line in enumerate(s.stdout_lines) if line.startswith("twinlattice ready"))
    assert ready_at > s.stdout_lines.index(listening[0]), "ready comes after the listening line"
    r = requests.get(s.base_url + "/description", timeout=10)
    assert_status(r, 200)
    assert assert_json(r)["profiles"]


def test_two_servers_get_different_ephemeral_ports(server_factory):
    a, b = server_factory(), server_factory()
    assert a.port != b.port
    assert_status(requests.get(a.base_url + "/description", timeout=10), 200)
    assert_status(requests.get(b.base_url + "/description", timeout=10), 200)


def test_port_from_environment(server_factory):
    port = free_port()
    s = server_factory(port_args=[], env={"LIA_AAS_RESTAPI_PORT_INTERN": str(port)})
    assert s.port == port, s.stdout_lines
    assert_status(requests.get(f"http://127.0.0.1:{port}/description", timeout=10), 200)


def test_port_flag_wins_over_environment(server_factory):
    env_port, flag_port = free_port(), free_port()
    while flag_port == env_port:
        flag_port = free_port()
    s = server_factory(port_args=["--port", str(flag_port)], env={"LIA_AAS_RESTAPI_PORT_INTERN": str(env_port)})
    assert s.port == flag_port, s.stdout_lines
    assert_status(requests.get(f"http://127.0.0.1:{flag_port}/description", timeout=10), 200)


def test_sigterm_is_clean(server_factory):
    s = server_factory()
    code = s.stop()
    assert code in (0, -signal.SIGTERM), f"exit code {code}\n{s.stderr_tail()}"
    assert not s.running


def test_port_in_use_fails_without_hanging(server_factory):
    """A second server on a taken port must fail to start (not report ready)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        s = server_factory(start=False, port_args=["--port", str(port)])
        import subprocess

        p = subprocess.run(s.command(), capture_output=True, text=True, timeout=60)
        assert p.returncode != 0
        assert "twinlattice ready" not in p.stdout
        assert p.stderr.strip(), "an error message on stderr"
