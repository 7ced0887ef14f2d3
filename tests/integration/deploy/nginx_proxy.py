#!/usr/bin/env python3
"""Instantiates deploy/proxy/nginx.conf for a set of replicas and runs nginx with it.

Used by the deploy tests (with stand-in gRPC replicas, and with real mamba-serve replicas), and by
hand to put a session-affinity proxy in front of local servers:

  nginx_proxy.py render --dir DIR --listen 127.0.0.1:50050 --replica 127.0.0.1:50051 \
      --replica 127.0.0.1:50052        writes DIR/nginx.conf and DIR/mamba-serve-replicas.conf
  nginx_proxy.py check  (same flags)   renders into a temporary folder and runs `nginx -t`
  nginx_proxy.py run    (same flags)   renders and runs nginx in the foreground until Ctrl-C

As a library:

  with NginxProxy(["127.0.0.1:50051", "127.0.0.1:50052"]) as proxy:
      channel = grpc.insecure_channel(proxy.address)
      ...
      proxy.access_log()   # one AccessLogEntry per call, with the replica that served it

Python 3 standard library only; nginx from the Debian package (nginx-light or nginx).
"""

import argparse
import dataclasses
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "deploy" / "proxy" / "nginx.conf"
REPLICAS_FILE = "mamba-serve-replicas.conf"
# The placeholders the template may use; anything else spelled ${MAMBA_...} is an error.
PLACEHOLDERS = ("MAMBA_PROXY_LISTEN", "MAMBA_PROXY_RUNTIME_DIR")

_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
_LOG_LINE = re.compile(
    r'^(?P<remote>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d+) '
    r"grpc=(?P<grpc>\S*) upstream=(?P<upstream>\S*) time=(?P<time_s>[0-9.]+)$")


class ProxyError(Exception):
    """A template that cannot be instantiated, or an nginx that would not start."""


@dataclasses.dataclass
class AccessLogEntry:
    request: str   # e.g. "POST /mambaserve.v1.Generation/Generate HTTP/2.0"
    status: int    # HTTP status (200 for every call that reached a replica)
    grpc_status: str  # the call's grpc-status ("0" = OK), "" if none was sent
    upstream: str  # the replica that served it ("-" if none did; "a, b" if it was retried)

    @property
    def method(self):
        """The gRPC method path, e.g. /mambaserve.v1.Sessions/CreateSession."""
        parts = self.request.split(" ")
        return parts[1] if len(parts) >= 2 else ""


def find_nginx():
    """The nginx binary: on PATH, or where Debian installs it (/usr/sbin is not always on PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise ProxyError("nginx not found: install the nginx-light (Debian) or nginx package")


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (the caller retries if someone takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_host_port(value, what):
    m = _HOST_PORT.match(value)
    if not m or not 1 <= int(m.group(2)) <= 65535:
        raise ProxyError(f"{what} {value!r} is not HOST:PORT with a port in 1..65535")


def render(runtime_dir, listen, replicas, template=TEMPLATE):
    """Writes runtime_dir/nginx.conf (the template with its placeholders filled in) and
    runtime_dir/mamba-serve-replicas.conf (one `server` line per replica). Returns the path of
    nginx.conf. listen is HOST:PORT; replicas are HOST:PORT of mamba-serve gRPC ports."""
    runtime_dir = pathlib.Path(runtime_dir).resolve()
    _check_host_port(listen, "listen address")
    if not replicas:
        raise ProxyError("at least one replica is needed")
    for replica in replicas:
        _check_host_port(replica, "replica")
    if len(set(replicas)) != len(replicas):
        raise ProxyError(f"replicas listed twice: {replicas}")
    # nginx takes paths with spaces or quotes only quoted; a plain folder keeps the template simple.
    if re.search(r"[\s;'\"{}$]", str(runtime_dir)):
        raise ProxyError(f"runtime folder {runtime_dir} has characters nginx would misread")

    values = {"MAMBA_PROXY_LISTEN": listen, "MAMBA_PROXY_RUNTIME_DIR": str(runtime_dir)}
    text = pathlib.Path(template).read_text()
    for name in PLACEHOLDERS:
        text = text.replace("${" + name + "}", values[name])
    leftover = sorted(set(re.findall(r"\$\{(\w+)\}", text)))
    if leftover:
        raise ProxyError(f"{template} has placeholders this script does not know: {leftover} "
                         f"(known: {list(PLACEHOLDERS)})")

    runtime_dir.mkdir(parents=True, exist_ok=True)
    conf = runtime_dir / "nginx.conf"
    conf.write_text(text)
    lines = [f"server {r} max_fails=1 fail_timeout=10s;\n" for r in replicas]
    (runtime_dir / REPLICAS_FILE).write_text("".join(lines))
    return conf


def check(conf):
    """Runs `nginx -t` on an instantiated config. Returns nginx's output; raises ProxyError
    with that output if the test fails."""
    conf = pathlib.Path(conf)
    cmd = [find_nginx(), "-t", "-q", "-c", str(conf), "-p", str(conf.parent) + "/", "-e", "stderr"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise ProxyError(f"nginx -t failed on {conf}:\n{output}")
    return output


def _wait_for_port(host, port, proc, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class NginxProxy:
    """nginx running the instantiated template in the foreground, as a child of this process.

    replicas: HOST:PORT of each mamba-serve gRPC port. listen_port 0 picks a free port.
    runtime_dir: where the config, logs and temp files go; None makes a temporary folder, which
    close() removes. Use as a context manager, or call start() and close()."""

    def __init__(self, replicas, listen_host="127.0.0.1", listen_port=0, runtime_dir=None):
        self.replicas = list(replicas)
        self.listen_host = listen_host
        self.port = listen_port
        self._own_dir = runtime_dir is None
        self.runtime_dir = pathlib.Path(runtime_dir or tempfile.mkdtemp(prefix="mamba-proxy-"))
        self._proc = None

    @property
    def address(self):
        """HOST:PORT for gRPC clients."""
        return f"{self.listen_host}:{self.port}"

    def start(self, timeout_s=15.0):
        if self._proc is not None:
            raise ProxyError("already started")
        fixed_port = self.port != 0
        last_error = ""
        for _ in range(1 if fixed_port else 5):
            port = self.port if fixed_port else free_port(self.listen_host)
            conf = render(self.runtime_dir, f"{self.listen_host}:{port}", self.replicas)
            if os.geteuid() == 0:
                # A root master runs its workers as nobody; they create temp files in here.
                os.chmod(self.runtime_dir, 0o755)
            check(conf)
            stderr_path = self.runtime_dir / "nginx.stderr"
            with open(stderr_path, "wb") as stderr:
                proc = subprocess.Popen(
                    [find_nginx(), "-c", str(conf), "-p", str(self.runtime_dir) + "/",
                     "-e", "stderr", "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
            if _wait_for_port(self.listen_host, port, proc, time.monotonic() + timeout_s):
                self._proc, self.port = proc, port
                return self
            _terminate(proc)
            last_error = stderr_path.read_text(errors="replace") + self.error_log()
            # Someone took the port between free_port() and nginx's bind: try another one.
            if "Address already in use" not in last_error:
                break
        raise ProxyError(f"nginx did not start listening on {self.listen_host}:\n{last_error}")

    def stop(self):
        """Graceful shutdown (SIGQUIT: open streams finish), then SIGKILL after 10 s."""
        if self._proc is not None:
            _terminate(self._proc)
            self._proc = None

    def restart(self, replicas):
        """Stops nginx and starts it again on the same port with a new replica list (what an
        operator's reload does, but synchronous: every call after this uses the new ring)."""
        self.stop()
        self.replicas = list(replicas)
        self.start()

    def running(self):
        return self._proc is not None and self._proc.poll() is None

    def error_log(self):
        path = self.runtime_dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self):
        """Every call the proxy has finished so far, oldest first."""
        path = self.runtime_dir / "access.log"
        if not path.exists():
            return []
        entries = []
        for line in path.read_text(errors="replace").splitlines():
            m = _LOG_LINE.match(line)
            if not m:
                raise ProxyError(f"access log line not in the template's format: {line!r}")
            # nginx writes "-" for a value it does not have.
            grpc_status = "" if m["grpc"] == "-" else m["grpc"]
            entries.append(AccessLogEntry(request=m["request"], status=int(m["status"]),
                                          grpc_status=grpc_status, upstream=m["upstream"]))
        return entries

    def close(self):
        """stop(), and removes the runtime folder if this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()


def _terminate(proc):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["render", "check", "run"])
    parser.add_argument("--listen", default="127.0.0.1:50050", help="HOST:PORT to listen on")
    parser.add_argument("--replica", action="append", required=True,
                        help="HOST:PORT of a mamba-serve gRPC port (repeat for each replica)")
    parser.add_argument("--dir", help="runtime folder (render: required)")
    args = parser.parse_args(argv)
    try:
        if args.command == "render":
            if not args.dir:
                parser.error("render needs --dir")
            print(render(args.dir, args.listen, args.replica))
        elif args.command == "check":
            with tempfile.TemporaryDirectory(prefix="mamba-proxy-") as tmp:
                check(render(args.dir or tmp, args.listen, args.replica))
            print("nginx -t: ok")
        else:
            host, _, port = args.listen.rpartition(":")
            proxy = NginxProxy(args.replica, host, int(port), args.dir)
            with proxy:
                print(f"proxy on {proxy.address} -> {', '.join(args.replica)} "
                      f"(logs in {proxy.runtime_dir})", flush=True)
                try:
                    while proxy.running():
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
    except ProxyError as e:
        print(f"nginx_proxy: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
