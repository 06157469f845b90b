"""Fault suite, issue 22 item 10: the explorer listens beyond this machine only when asked, then only
behind a token printed once; its save endpoint writes only inside its output folder, under safe names.
Every request here goes to 127.0.0.1."""

import http.cookiejar
import json
import socket
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request

import pytest

from latentnav.errors import ConfigError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_loopback_addresses():
    from latentnav.commands.explore import is_loopback

    for host in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "10.1.2.3", "192.168.0.7", "fe80::1", "example.org", "127.0.0.1.example.org"):
        assert not is_loopback(host), host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.0.7"])
def test_a_non_local_host_needs_the_flag(host, tmp_path, capsys):
    from latentnav.commands.explore import main

    # refused before anything is read or loaded: the directions file need not even exist
    assert main(["--directions", json.dumps([str(tmp_path / "a.npz")]), "--host", host,
                 "--port", str(_free_port())]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("latentnav: error: --host"), captured.err
    assert "not a loopback address" in lines[0] and "--allow_remote" in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""


def _opener():
    """HTTP to 127.0.0.1 only: no proxy from the environment, cookies kept."""
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar)), jar


def _status(opener, url, data=None) -> int:
    try:
        with opener.open(url, data=data, timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_remote_bind_prints_a_token_and_refuses_requests_without_it(tmp_path, capsys, monkeypatch):
    pytest.importorskip("gradio", reason="the [explore] extra is not installed: pip install 'latentnav[explore]'")
    from latentnav.commands import explore
    from tests.commands.test_explore import _directions

    a, _ = _directions(tmp_path)
    stop = threading.Event()

    def sleep(seconds):  # the serving loop's sleep: Ctrl-C once the test is done
        if stop.is_set():
            raise KeyboardInterrupt
        time.sleep(seconds)

    monkeypatch.setattr(explore, "time", types.SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    port = _free_port()
    result = {}
    server = threading.Thread(target=lambda: result.setdefault("rc", explore.main(
        ["--directions", json.dumps([str(a)]), "--host", "0.0.0.0", "--allow_remote", "--port", str(port),
         "--out", str(tmp_path / "out"), "--open_for", "300"])), daemon=True)
    server.start()
    out, deadline = "", time.monotonic() + 120
    try:
        while "access token" not in out and server.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
            out += capsys.readouterr().out
        token_lines = [line for line in out.splitlines() if "access token" in line]
        assert len(token_lines) == 1, out
        token = token_lines[0].rsplit(" ", 1)[1]
        assert len(token) >= 32 and token not in out.replace(token_lines[0], "")  # printed once
        base = f"http://127.0.0.1:{port}"
        stranger, _ = _opener()
        assert _status(stranger, base + "/config") == 401
        join = json.dumps({"data": [], "fn_index": 0, "session_hash": "x"}).encode()
        assert _status(stranger, urllib.request.Request(base + "/gradio_api/queue/join", data=join,
                                                        headers={"Content-Type": "application/json"})) == 401
        assert _status(stranger, base + "/gradio_api/info") == 401
        wrong = urllib.parse.urlencode({"username": "me", "password": token[:-1] + "x"}).encode()
        assert _status(stranger, base + "/login", wrong) == 400
        assert _status(stranger, base + "/config") == 401
        user, jar = _opener()
        assert _status(user, base + "/login", urllib.parse.urlencode({"username": "me", "password": token}).encode()) == 200
        assert _status(user, base + "/config") == 200
    finally:
        stop.set()
        server.join(30)
    assert not server.is_alive() and result.get("rc") == 0
    assert not (tmp_path / "out").exists()  # nobody saved anything


def test_save_writes_only_inside_the_output_folder(tmp_path):
    from latentnav.commands.explore import Explorer, inside_folder
    from latentnav.names import MAX_STEM, safe_stem
    from tests.commands.test_explore import _directions

    a, _ = _directions(tmp_path)
    ex = Explorer([str(a)], judge="demo_judge")
    out = tmp_path / "out"
    before = {p for p in tmp_path.rglob("*")}
    hostile = ("../../escape", str(tmp_path / "absolute"), "a/b", ".hidden", "y" * 300)
    for name in (*hostile, ""):
        paths = ex.save(0, [1.0, 0.0], 3, None, [], str(out), frames=2, name=name)
        for p in paths:
            assert p.resolve().parent == out.resolve() and p.is_file(), (name, p)
            assert not p.name.startswith(".") and len(p.stem) <= MAX_STEM
    added = {p for p in tmp_path.rglob("*")} - before
    assert added and all(p == out or p.parent == out for p in added), sorted(added)
    default = f"explore_{a.stem}_seed3"  # an empty name saves under the default
    assert {p.name for p in added if p != out} == {f"{s}.{x}" for s in (*map(safe_stem, hostile), default)
                                                   for x in ("png", "gif")}
    # a name that resolves outside (a symbolic link planted in the folder) is refused, nothing written there
    (out / "planted.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(ConfigError, match="outside the output folder"):
        ex.save(0, [1.0, 0.0], 3, None, [], str(out), frames=2, name="planted")
    assert not (tmp_path / "outside.png").exists() and not (out / "planted.gif").exists()
    with pytest.raises(ConfigError, match="outside the output folder"):
        inside_folder(out, "../x.png")
    assert inside_folder(out, "x.png") == out.resolve() / "x.png"
