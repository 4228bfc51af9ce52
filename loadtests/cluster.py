"""N real brum processes behind a real nginx, with a real redis-server, all on 127.0.0.1: what
the replica tests and ``python -m loadtests.replicas`` run. Debian: nginx-light, redis-server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loadtests.processes import ROOT, free_port, stop, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

# Round robin; on a refused connection, a reset or a 502/503 the request goes to the next
# replica, a POST included: a prediction has no side effect that a retry would repeat, and
# feedback is counted once by the shared store whichever replica gets it.
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    upstream brum {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://brum;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""


class MissingBinary(RuntimeError):
    pass


def require(binary: str, package: str) -> None:
    if not Path(binary).is_file():
        raise MissingBinary(f"{binary} not installed (apt-get install {package})")


def start_redis(work: Path) -> tuple[subprocess.Popen, str]:
    require(REDIS, "redis-server")
    port = free_port()
    log = (work / "redis.log").open("wb")
    process = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=work,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    stop(process)
    raise TimeoutError("redis-server did not answer PING")


def start_nginx(work: Path, ports: list[int]) -> tuple[subprocess.Popen, str]:
    require(NGINX, "nginx-light")
    port = free_port()
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=0;" for p in ports)
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, servers=servers, port=port))
    log = (work / "nginx.log").open("wb")
    process = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(work)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(work / 'nginx-error.log').read_text()}")
        try:
            httpx.get(url + "/healthz", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError("nginx did not answer")


@dataclass
class Replica:
    port: int
    env: dict[str, str]
    work: Path
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> None:
        self.starts += 1
        log = (self.work / f"replica-{self.port}-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=ROOT, env=self.env, stdout=log, stderr=log
        )
        if wait:
            wait_for(self.url, "/readyz", time.monotonic() + 60, self.process)

    def terminate(self) -> int:
        """SIGTERM, then wait for the drain to end; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop(self.process)

    def logs(self) -> str:
        logs = sorted(self.work.glob(f"replica-{self.port}-*.log"))
        return "".join(log.read_text(errors="replace") for log in logs)


@dataclass
class Cluster:
    replicas: list[Replica]
    balancer: str
    redis_url: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.balancer, timeout=30, **kwargs)


def start_cluster(work: Path, count: int, env: dict[str, str], shared: bool = True) -> Cluster:
    """``count`` replicas behind nginx; ``shared``: with a redis-server as their shared store."""
    redis, redis_url = start_redis(work) if shared else (None, "")
    ports = [free_port() for _ in range(count)]
    full = {**os.environ, "BRUM_HOST": "127.0.0.1", "BRUM_CALIBRATE": "false", **env}
    if shared:
        full["BRUM_REDIS_URL"] = redis_url
    replicas = [Replica(port, {**full, "BRUM_PORT": str(port)}, work) for port in ports]
    cluster = Cluster(replicas, "", redis_url, [redis] if redis else [])
    try:
        for replica in replicas:
            replica.start(wait=False)
        for replica in replicas:
            assert replica.process is not None
            wait_for(replica.url, "/readyz", time.monotonic() + 90, replica.process)
        nginx, cluster.balancer = start_nginx(work, ports)
        cluster.processes.append(nginx)
    except BaseException:
        close_cluster(cluster)
        raise
    return cluster


def close_cluster(cluster: Cluster) -> None:
    for replica in cluster.replicas:
        replica.stop()
    for process in reversed(cluster.processes):
        stop(process)


class Load:
    """Requests through the balancer from a few threads until stopped: every status counted, and
    every request that got no answer at all."""

    def __init__(self, url: str, path: str, texts: list[str], threads: int = 4) -> None:
        self.url, self.path, self.texts = url, path, texts
        self.statuses: Counter = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, seed: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = seed
            while not self._stop.is_set():
                text = self.texts[i % len(self.texts)]
                try:
                    response = client.post(self.path, json={"text": text})
                    self.statuses[response.status_code] += 1
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                i += 7

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    @property
    def not_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)
