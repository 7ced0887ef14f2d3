#!/usr/bin/env python3
"""The session-affinity proxy (deploy/proxy/nginx.conf) in a real nginx, in front of stand-in gRPC
replicas that answer with their own name: `nginx -t` passes, calls naming a session always reach
one replica, forks land with their parent, calls without a session reach every replica, streams
and large messages pass, and dropping a replica moves only its own sessions.

The same routing in front of real mamba-serve replicas is the live deployment test's job; this
one checks the proxy config on its own, so a routing mistake shows here first.
"""

import concurrent.futures
import json
import pathlib
import secrets
import sys
import tempfile
import time
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import nginx_proxy  # noqa: E402

try:
    import grpc
except ImportError:  # pragma: no cover - setup.sh installs it
    sys.exit("proxy_affinity_test needs Python's grpc module: install python3-grpcio "
             "(scripts/setup.sh does) and run with the system python3")

WHO = "/mambaserve.test.Replica/Who"
TICKS = "/mambaserve.test.Replica/Ticks"
_MAX_MESSAGE = 64 << 20
_CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0),
                    ("grpc.max_receive_message_length", _MAX_MESSAGE),
                    ("grpc.max_send_message_length", _MAX_MESSAGE)]


class _Replica(grpc.GenericRpcHandler):
    """A gRPC server that reports its name, the x-session-id it received and the request size."""

    def __init__(self, name):
        self.name = name
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=16),
                                  options=_CHANNEL_OPTIONS)
        self.server.add_generic_rpc_handlers((self,))
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        self.server.start()

    def service(self, handler_call_details):
        if handler_call_details.method == WHO:
            return grpc.unary_unary_rpc_method_handler(self._who)
        if handler_call_details.method == TICKS:
            return grpc.unary_stream_rpc_method_handler(self._ticks)
        return None

    def _describe(self, request, context):
        metadata = dict(context.invocation_metadata())
        return {"replica": self.name, "session": metadata.get("x-session-id"),
                "size": len(request)}

    def _who(self, request, context):
        return json.dumps(self._describe(request, context)).encode()

    def _ticks(self, request, context):
        # Gaps between messages, as in a generation stream.
        for i in range(4):
            time.sleep(0.25)
            yield json.dumps(dict(self._describe(request, context), tick=i)).encode()

    def stop(self):
        self.server.stop(grace=None).wait()


def _session_id():
    return secrets.token_hex(16)


class ProxyAffinityTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.replicas = [_Replica(f"r{i}") for i in range(3)]
        cls.by_address = {r.address: r.name for r in cls.replicas}
        cls.proxy = nginx_proxy.NginxProxy([r.address for r in cls.replicas])
        try:
            cls.proxy.start()
        except nginx_proxy.ProxyError:
            cls.proxy.close()
            for r in cls.replicas:
                r.stop()
            raise
        cls.channel = grpc.insecure_channel(cls.proxy.address, options=_CHANNEL_OPTIONS)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proxy.close()
        for r in cls.replicas:
            r.stop()

    def who(self, session=None, payload=b"", channel=None):
        metadata = [("x-session-id", session)] if session is not None else None
        call = (channel or self.channel).unary_unary(WHO)
        return json.loads(call(payload, metadata=metadata, timeout=10))

    def test_instantiated_template_passes_nginx_t(self):
        with tempfile.TemporaryDirectory() as tmp:
            # nginx -t binds the listen address: an unprivileged port, free now.
            listen = f"127.0.0.1:{nginx_proxy.free_port()}"
            conf = nginx_proxy.render(tmp, listen, ["127.0.0.1:2", "127.0.0.1:3"])
            nginx_proxy.check(conf)
            text = conf.read_text()
            self.assertNotIn("${", text)
            self.assertIn("hash $mamba_affinity_key consistent;", text)
            self.assertIn("map $http_x_session_id $mamba_affinity_key", text)
            self.assertIn("grpc_pass grpc://", text)
            self.assertIn(f"listen {listen} http2;", text)

    def test_helper_rejects_bad_input(self):
        with tempfile.TemporaryDirectory() as tmp:
            bad_template = pathlib.Path(tmp) / "t.conf"
            bad_template.write_text("pid ${MAMBA_PROXY_PIDFILE};\n")
            cases = [
                ("127.0.0.1:1", [], nginx_proxy.TEMPLATE, "at least one replica"),
                ("127.0.0.1", ["127.0.0.1:2"], nginx_proxy.TEMPLATE, "listen address"),
                ("127.0.0.1:1", ["127.0.0.1:70000"], nginx_proxy.TEMPLATE, "port in 1..65535"),
                ("127.0.0.1:1", ["a:2", "a:2"], nginx_proxy.TEMPLATE, "listed twice"),
                ("127.0.0.1:1", ["a:2"], bad_template, "MAMBA_PROXY_PIDFILE"),
            ]
            for listen, replicas, template, message in cases:
                with self.subTest(message=message):
                    with self.assertRaisesRegex(nginx_proxy.ProxyError, message):
                        nginx_proxy.render(tmp, listen, replicas, template)

    def test_a_session_always_reaches_the_same_replica(self):
        sessions = [_session_id() for _ in range(60)]
        first = {s: self.who(s)["replica"] for s in sessions}
        for _ in range(4):
            for s in reversed(sessions):
                answer = self.who(s)
                self.assertEqual(answer["replica"], first[s], s)
                # The replica sees the header unchanged: it is the server's session lookup key.
                self.assertEqual(answer["session"], s)

    def test_sessions_spread_over_every_replica(self):
        counts = {r.name: 0 for r in self.replicas}
        n = 300
        for _ in range(n):
            counts[self.who(_session_id())["replica"]] += 1
        for name, count in counts.items():
            self.assertGreater(count, n * 0.15, f"{name} owns too few sessions: {counts}")

    def test_a_fork_lands_on_its_parents_replica(self):
        # A fork keeps the parent's first 16 hex digits (its affinity prefix), so the proxy sends
        # the fork's calls to the replica that made it from the parent's state.
        for _ in range(60):
            parent = _session_id()
            child = parent[:16] + secrets.token_hex(8)
            self.assertEqual(self.who(child)["replica"], self.who(parent)["replica"])

    def test_other_session_values_are_hashed_whole(self):
        owners = set()
        for i in range(40):
            value = f"tenant-a/session-{i}"
            replica = self.who(value)["replica"]
            self.assertEqual(self.who(value)["replica"], replica)
            owners.add(replica)
        self.assertGreater(len(owners), 1)

    def test_calls_without_a_session_reach_every_replica(self):
        counts = {r.name: 0 for r in self.replicas}
        n = 90
        for _ in range(n):
            answer = self.who()
            self.assertIsNone(answer["session"])
            counts[answer["replica"]] += 1
        for name, count in counts.items():
            self.assertGreater(count, n * 0.1, f"stateless calls are not spread: {counts}")
        # An empty header is no session either.
        owners = {self.who("")["replica"] for _ in range(30)}
        self.assertEqual(len(owners), 3)

    def test_streams_and_large_messages_pass(self):
        s = _session_id()
        owner = self.who(s)["replica"]
        ticks = [json.loads(m) for m in self.channel.unary_stream(TICKS)(
            b"x", metadata=[("x-session-id", s)], timeout=30)]
        self.assertEqual([t["tick"] for t in ticks], [0, 1, 2, 3])
        self.assertEqual({t["replica"] for t in ticks}, {owner})
        # An ImportSession body carries a whole state (tens of MB for the large models).
        big = self.who(s, payload=b"\x07" * (24 << 20))
        self.assertEqual((big["replica"], big["size"]), (owner, 24 << 20))

    def test_access_log_names_the_replica_that_served_each_call(self):
        s = _session_id()
        owner = self.who(s)["replica"]
        for _ in range(3):
            self.who(s)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            entries = [e for e in self.proxy.access_log() if e.method == WHO]
            if len(entries) >= 4:
                break
            time.sleep(0.05)
        last = entries[-3:]
        for e in last:
            self.assertEqual((e.status, e.grpc_status), (200, "0"), e)
            self.assertEqual(self.by_address[e.upstream], owner, e)

    def test_dropping_a_replica_moves_only_its_sessions(self):
        sessions = [_session_id() for _ in range(150)]
        with nginx_proxy.NginxProxy([r.address for r in self.replicas]) as proxy:
            channel = grpc.insecure_channel(proxy.address, options=_CHANNEL_OPTIONS)
            before = {s: self.who(s, channel=channel)["replica"] for s in sessions}
            gone = self.replicas[2]
            proxy.restart([r.address for r in self.replicas[:2]])
            channel.close()
            channel = grpc.insecure_channel(proxy.address, options=_CHANNEL_OPTIONS)
            after = {s: self.who(s, channel=channel)["replica"] for s in sessions}
            channel.close()
        moved = [s for s in sessions if before[s] != after[s]]
        self.assertTrue(moved, "no session was on the dropped replica")
        for s in moved:
            self.assertEqual(before[s], gone.name, f"{s} moved from a replica that stayed")
        self.assertNotIn(gone.name, after.values())

    def test_a_replica_that_refuses_connections_is_skipped(self):
        dead = f"127.0.0.1:{nginx_proxy.free_port()}"
        live = self.replicas[0]
        with nginx_proxy.NginxProxy([live.address, dead]) as proxy:
            channel = grpc.insecure_channel(proxy.address, options=_CHANNEL_OPTIONS)
            for i in range(30):
                session = _session_id() if i % 2 else None
                self.assertEqual(self.who(session, channel=channel)["replica"], live.name)
            channel.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
