"""The local API process under hostile input: bounded bodies, 4xx (never 500) in Supabase's error shape,
and half-open connections that cannot starve the server. Judged on a real API process (its RSS measured
with psutil), real sockets and the official client's URLs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest

from workbench.local.api import MAX_BODY_BYTES
from workbench.local.postgres import free_port
from workbench.local.standin import LocalStandIn

HEADER_TIMEOUT = 1.0


@dataclass
class ApiProcess:
    url: str
    port: int
    process: psutil.Process

    def rss(self) -> int:
        return int(self.process.memory_info().rss)


@pytest.fixture(scope="module")
def api(standin: LocalStandIn) -> Iterator[ApiProcess]:
    """A second API process on the session's stand-in, with a short header deadline so tests are quick."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench.local.api",
            "--dir",
            str(standin.data_dir),
            "--port",
            str(port),
            "--header-timeout",
            str(HEADER_TIMEOUT),
            "--read-timeout",
            "2",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the API process exited"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)  # polling the health check, not a fixed wait
    else:
        pytest.fail("the API process did not answer in 30 s")
    yield ApiProcess(url, port, psutil.Process(proc.pid))
    proc.terminate()
    proc.wait(timeout=10)


def healthy(api: ApiProcess) -> bool:
    return httpx.get(f"{api.url}/health", timeout=5).status_code == 200


def read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of one HTTP/1.1 response (the server closes the connection after it)."""
    data = b""
    sock.settimeout(10)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


# ---------------------------------------------------------------------------------------------- bodies


def test_a_huge_body_is_refused_without_growing_the_process(api: ApiProcess, standin: LocalStandIn) -> None:
    anon = standin.keys().anon_key
    before = api.rss()

    # Declared too large: a 413 in GoTrue's shape before a byte of the body is read.
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(
            b"POST /auth/v1/token?grant_type=password HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"apikey: {anon}\r\nContent-Length: {200 * 1024 * 1024}\r\n\r\n".encode()
        )
        status, body = read_response(sock)
    assert status == 413 and body["code"] == 413 and body["error_code"] == "request_too_large"

    # Not declared (chunked): the server stops reading at the limit; 200 MB never reach it.
    sent = 0
    chunk = b"x" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(
            b"POST /auth/v1/token?grant_type=password HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"apikey: {anon}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        sock.settimeout(10)
        try:
            while sent < 200 * 1024 * 1024:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
    assert sent < 200 * 1024 * 1024  # the server hung up long before the end
    grown = api.rss() - before
    assert grown < 40 * 1024 * 1024, f"the API grew by {grown / 2**20:.0f} MB"
    assert healthy(api)


def test_storage_json_bodies_are_bounded_but_uploads_stream(api: ApiProcess, standin: LocalStandIn) -> None:
    key = standin.keys().service_role_key
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    too_big = b'{"name": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}'
    res = httpx.post(f"{api.url}/storage/v1/bucket", content=too_big, headers=headers)
    assert res.status_code == 413
    assert res.json() | {"message": ""} == {
        "statusCode": "413",
        "code": "EntityTooLarge",
        "error": "Payload too large",
        "message": "",
    }
    # An upload larger than the JSON limit is not cut by it: uploads stream under the bucket's own limit.
    name = f"robust-{uuid.uuid4().hex[:8]}"
    assert httpx.post(
        f"{api.url}/storage/v1/bucket", json={"name": name, "file_size_limit": 3 * 2**20}, headers=headers
    ).is_success
    try:
        ok = httpx.post(
            f"{api.url}/storage/v1/object/{name}/big.bin",
            content=b"z" * (MAX_BODY_BYTES + 1),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/octet-stream"},
        )
        assert ok.status_code == 200, ok.text
        over = httpx.post(
            f"{api.url}/storage/v1/object/{name}/bigger.bin",
            content=b"z" * (4 * 2**20),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/octet-stream"},
        )
        assert over.json()["statusCode"] == "413"
    finally:
        httpx.post(f"{api.url}/storage/v1/bucket/{name}/empty", headers=headers)
        httpx.delete(f"{api.url}/storage/v1/bucket/{name}", headers=headers)


# ---------------------------------------------------------------------------------------------- bad input


def auth_error(res: httpx.Response, status: int) -> None:
    assert res.status_code == status, res.text
    body = res.json()
    assert set(body) >= {"code", "error_code", "msg"} and body["code"] == status


def storage_error(res: httpx.Response, status: str = "400") -> None:
    assert res.status_code < 500, res.text
    body = res.json()
    assert set(body) >= {"statusCode", "error", "message"} and body["statusCode"] == status, body


@pytest.fixture(scope="module")
def bucket(api: ApiProcess, standin: LocalStandIn) -> Iterator[str]:
    key = standin.keys().service_role_key
    headers = {"Authorization": f"Bearer {key}"}
    name = f"robust-{uuid.uuid4().hex[:8]}"
    httpx.post(f"{api.url}/storage/v1/bucket", json={"name": name}, headers=headers).raise_for_status()
    httpx.post(f"{api.url}/storage/v1/object/{name}/a.txt", content=b"a", headers=headers).raise_for_status()
    yield name
    httpx.post(f"{api.url}/storage/v1/bucket/{name}/empty", headers=headers)
    httpx.delete(f"{api.url}/storage/v1/bucket/{name}", headers=headers)


def test_bad_auth_input_is_a_4xx_in_gotrue_shape(api: ApiProcess, standin: LocalStandIn) -> None:
    keys = standin.keys()
    anon = {"apikey": keys.anon_key}
    admin = {"apikey": keys.anon_key, "Authorization": f"Bearer {keys.service_role_key}"}
    token = f"{api.url}/auth/v1/token"
    auth_error(
        httpx.post(token, params={"grant_type": "refresh_token"}, json={"refresh_token": "a\x00b"}, headers=anon), 400
    )
    auth_error(httpx.post(token, params={"grant_type": "password"}, content=b"not json", headers=anon), 400)
    auth_error(httpx.post(token, params={"grant_type": "password"}, content=b"[" * 100_000, headers=anon), 400)
    auth_error(httpx.post(f"{api.url}/auth/v1/signup", json={"email": 5, "password": []}, headers=anon), 400)
    auth_error(httpx.get(f"{api.url}/auth/v1/admin/users", params={"page": str(2**70)}, headers=admin), 400)
    auth_error(
        httpx.get(f"{api.url}/auth/v1/admin/users", params={"page": "3", "per_page": str(2**62)}, headers=admin), 400
    )
    auth_error(httpx.get(f"{api.url}/auth/v1/admin/users", params={"filter": "a\x00"}, headers=admin), 400)
    auth_error(
        httpx.post(
            f"{api.url}/auth/v1/recover",
            params={"redirect_to": "http://x/\r\nSet-Cookie: a=b"},
            json={"email": "a@example.com"},
            headers=anon,
        ),
        400,
    )
    # An absurd ban: longer than Go's duration can hold.
    users = httpx.get(f"{api.url}/auth/v1/admin/users", headers=admin).json()["users"]
    res = httpx.put(
        f"{api.url}/auth/v1/admin/users/{users[0]['id']}", json={"ban_duration": "99999999999999999h"}, headers=admin
    )
    auth_error(res, 400)
    assert "292 years" in res.json()["msg"]
    assert healthy(api)


def test_bad_storage_input_is_a_4xx_in_supabase_shape(api: ApiProcess, standin: LocalStandIn, bucket: str) -> None:
    key = standin.keys().service_role_key
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    base = f"{api.url}/storage/v1"
    storage_error(httpx.post(f"{base}/object/list/{bucket}", json={"prefix": "a\x00"}, headers=h))
    storage_error(httpx.post(f"{base}/object/list/{bucket}", json={"prefix": "", "offset": 2**70}, headers=h))
    storage_error(httpx.post(f"{base}/object/list/{bucket}", json={"prefix": 5}, headers=h))
    storage_error(httpx.post(f"{base}/object/list/{bucket}", content=b"not json", headers=h))
    storage_error(httpx.post(f"{base}/object/list/{bucket}", content=b"[" * 100_000, headers=h))
    storage_error(httpx.get(f"{base}/object/{bucket}/a%00b", headers=h))
    storage_error(httpx.post(f"{base}/object/sign/{bucket}/a.txt", content=b'{"expiresIn": 1e400}', headers=h))
    storage_error(httpx.post(f"{base}/object/sign/{bucket}/a.txt", json={"expiresIn": 10**30}, headers=h))
    storage_error(httpx.post(f"{base}/object/list-v2/{bucket}", json={"cursor": "\x00"}, headers=h))
    storage_error(httpx.post(f"{base}/bucket", content=b"{", headers=h))
    assert healthy(api)


# ---------------------------------------------------------------------------------------------- timeouts


def test_half_open_connections_are_closed_and_others_served(api: ApiProcess) -> None:
    """200 clients that send half a request (or nothing) neither hold the server nor stay open."""
    sockets = []
    for i in range(200):
        sock = socket.create_connection(("127.0.0.1", api.port))
        if i % 2:
            sock.sendall(b"POST /auth/v1/token HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        sockets.append(sock)
    try:
        started = time.monotonic()
        assert healthy(api)  # served while the 200 are open
        assert time.monotonic() - started < 2
        deadline = time.monotonic() + HEADER_TIMEOUT + 10
        open_ones = list(sockets)
        while open_ones and time.monotonic() < deadline:
            still = []
            for sock in open_ones:
                sock.settimeout(0.05)
                try:
                    if sock.recv(1024) != b"":
                        still.append(sock)  # an answer is fine too, as long as it then closes
                except TimeoutError:
                    still.append(sock)
                except ConnectionResetError:
                    pass
            open_ones = still
        assert not open_ones, f"{len(open_ones)} half-open connections still held"
        assert healthy(api)
    finally:
        for sock in sockets:
            sock.close()
