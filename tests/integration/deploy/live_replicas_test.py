#!/usr/bin/env python3
"""Two real mamba-serve replicas on loopback behind a real nginx running deploy/proxy/nginx.conf.

Checks what the stand-in replicas of proxy_affinity_test cannot: sessions created and resumed
through the proxy always reach the replica that holds their state, and the session invariant
holds through it; calls without a session reach both replicas; a session exported from one
replica and imported into the other continues exactly as it would have on the first.

Which replica served a call is proved twice, independently: by the upstream address in the
proxy's access log, and by the replicas themselves (a session exists on its owner only, and its
token count there grows by each turn; each replica's own mamba_requests_total counter).

    MAMBA_BIN_DIR=BUILD/bin python3 live_replicas_test.py --descriptors=BUILD/.../api.desc

The descriptor set (target mamba_api_descriptors) may also come as MAMBA_API_DESCRIPTORS. Exits
with 77 (skipped) where nginx or Python's grpc/protobuf modules are missing.
"""

import argparse
import os
import pathlib
import re
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import nginx_proxy  # noqa: E402

_SKIP = 77
try:
    import grpc
    import google.protobuf  # noqa: F401  (the descriptor-set loader below needs it)
except ImportError as e:  # pragma: no cover - setup.sh installs both
    print(f"live_replicas_test needs Python's grpc and protobuf modules ({e}): install "
          "python3-grpcio and python3-protobuf (scripts/setup.sh does) and run with the system "
          "python3", file=sys.stderr)
    sys.exit(_SKIP)

# The server tests' descriptor-set loader (message classes built at run time, no generated code).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "server"))
from python_client_test import load_messages  # noqa: E402

ARGS = None
_GENERATE = "/mambaserve.v1.Generation/Generate"
_SESSIONS = "/mambaserve.v1.Sessions/"
_CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]
_TIMEOUT_S = 30


class Replica:
    """A mamba-serve process on loopback; its addresses come from its listening line."""

    def __init__(self, binary, name, key_file):
        self.name = name
        # --drain_seconds=0: nothing is left running at the end, and stopping stays quick.
        # Replicas that exchange sessions share the session key that signs the exports.
        self.process = subprocess.Popen(
            [binary, "--model=synthetic:tiny", "--backend=cpu", "--cpu_threads=1",
             "--host=127.0.0.1", "--port=0", "--metrics_port=0", "--http_port=0", "--log_level=warning",
             "--drain_seconds=0", f"--session_key_file={key_file}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        deadline = time.monotonic() + 60
        line = b""
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([self.process.stdout], [], [],
                                        max(0.0, deadline - time.monotonic()))
            if not ready:
                self.process.kill()
                self.process.wait()
                raise RuntimeError(f"{name}: mamba-serve printed no listening line in 60 s")
            chunk = os.read(self.process.stdout.fileno(), 1)
            if not chunk:
                raise RuntimeError(f"{name}: mamba-serve exited with {self.process.wait()} "
                                   "before listening")
            line += chunk
        words = line.decode().split()
        if words[:2] != ["mamba-serve", "listening"]:
            self.process.kill()
            raise RuntimeError(f"{name}: unexpected first line {line!r}")
        fields = dict(w.split("=", 1) for w in words[2:])
        self.address = fields["grpc"]
        self.metrics_address = fields["metrics"]
        self.channel = grpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)

    def requests_total(self, method, code="OK"):
        """This replica's own count of finished `method` RPCs with `code`."""
        url = f"http://{self.metrics_address}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith("mamba_requests_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            if labels.get("method") == method and labels.get("code") == code:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process.stdout.close()
        return code


def _session_id():
    # What clients do: 128 bits from a CSPRNG, 32 lowercase hex digits.
    return secrets.token_hex(16)


class LiveReplicasTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        message = load_messages(ARGS.descriptors)
        cls.GenerateRequest = message("mambaserve.v1.GenerateRequest")
        cls.GenerateResponse = message("mambaserve.v1.GenerateResponse")
        cls.CreateSessionRequest = message("mambaserve.v1.CreateSessionRequest")
        cls.GetSessionRequest = message("mambaserve.v1.GetSessionRequest")
        cls.ForkSessionRequest = message("mambaserve.v1.ForkSessionRequest")
        cls.Session = message("mambaserve.v1.Session")
        cls.ExportSessionRequest = message("mambaserve.v1.ExportSessionRequest")
        cls.ExportSessionResponse = message("mambaserve.v1.ExportSessionResponse")
        cls.ImportSessionRequest = message("mambaserve.v1.ImportSessionRequest")
        binary = os.path.join(os.environ["MAMBA_BIN_DIR"], "mamba-serve")
        cls.replicas = []
        cls.proxy = None
        cls.key_dir = tempfile.TemporaryDirectory()
        key_file = os.path.join(cls.key_dir.name, "session-keys")
        with open(key_file, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        try:
            cls.replicas = [Replica(binary, "a", key_file), Replica(binary, "b", key_file)]
            cls.by_address = {r.address: r for r in cls.replicas}
            cls.proxy = nginx_proxy.NginxProxy([r.address for r in cls.replicas]).start()
        except BaseException:
            cls._close()
            raise
        cls.channel = grpc.insecure_channel(cls.proxy.address, options=_CHANNEL_OPTIONS)

    @classmethod
    def _close(cls):
        codes = [r.stop() for r in cls.replicas]
        if cls.proxy is not None:
            cls.proxy.close()
        cls.key_dir.cleanup()
        return codes

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        codes = cls._close()
        assert codes == [0] * len(codes), f"mamba-serve exit codes on SIGTERM: {codes}"

    # --- calls -------------------------------------------------------------------------------

    def unary(self, channel, method, request, response_type, session_id=None):
        call = channel.unary_unary(_SESSIONS + method,
                                   request_serializer=type(request).SerializeToString,
                                   response_deserializer=response_type.FromString)
        metadata = [("x-session-id", session_id)] if session_id else None
        return call(request, metadata=metadata, timeout=_TIMEOUT_S)

    def generate(self, channel, ids, max_tokens, session_id="", sampling=None):
        """Tokens and their logprobs of one greedy (or `sampling`) generation over token ids."""
        call = channel.unary_stream(_GENERATE,
                                    request_serializer=self.GenerateRequest.SerializeToString,
                                    response_deserializer=self.GenerateResponse.FromString)
        request = self.GenerateRequest(
            token_ids={"ids": ids}, session_id=session_id, sampling=sampling or {},
            stopping={"max_tokens": max_tokens, "ignore_eos": True}, logprobs=0)
        # The client sends the session as metadata too: that is what the proxy routes by.
        metadata = [("x-session-id", session_id)] if session_id else None
        responses = list(call(request, metadata=metadata, timeout=_TIMEOUT_S))
        tokens = [t for r in responses for t in r.token_ids]
        logprobs = [lp.chosen.logprob for r in responses for lp in r.logprobs]
        self.assertEqual((len(tokens), len(logprobs)), (max_tokens, max_tokens))
        return tokens, logprobs, responses[-1].usage

    def create(self, channel, ids, session_id):
        request = self.CreateSessionRequest(token_ids={"ids": ids}, session_id=session_id)
        return self.unary(channel, "CreateSession", request, self.Session, session_id)

    def get(self, replica, session_id):
        """The session as `replica` holds it, or None where it does not hold it."""
        try:
            return self.unary(replica.channel, "GetSession",
                              self.GetSessionRequest(session_id=session_id), self.Session)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def owner(self, session_id):
        """The one replica that holds the session (fails if none or both do)."""
        holders = [r for r in self.replicas if self.get(r, session_id) is not None]
        self.assertEqual(len(holders), 1, f"{session_id} is held by {[r.name for r in holders]}")
        return holders[0]

    def through_proxy(self, call):
        """Runs call() (one RPC through the proxy) and returns (its result, the replica the
        proxy's access log says served it)."""
        # Calls made through the proxy outside this helper (stateless checks) may still have their
        # line to write: wait until the log has been quiet for a moment, or that late line would
        # be taken for this call's (seen under ctest -j2).
        before = len(self.proxy.access_log())
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 0.06:
            time.sleep(0.01)
            now = len(self.proxy.access_log())
            if now != before:
                before, quiet_since = now, time.monotonic()
        result = call()
        # nginx writes the line when the call ends, a moment after the client saw the end.
        deadline = time.monotonic() + 5
        while True:
            entries = self.proxy.access_log()
            if len(entries) > before or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.assertEqual(len(entries), before + 1, "expected one access-log line for one call")
        entry = entries[-1]
        self.assertEqual((entry.status, entry.grpc_status), (200, "0"), entry)
        # No retry on another replica: exactly one upstream, one of ours.
        self.assertIn(entry.upstream, self.by_address, entry)
        return result, self.by_address[entry.upstream]

    # --- tests -------------------------------------------------------------------------------

    def test_sessions_reach_their_replica_and_the_invariant_holds(self):
        t1, t2, t3 = [72, 105, 33], [10, 63], [40, 41]
        n_out = 5
        owners = {}
        for i in range(12):
            sid = _session_id()
            session, served = self.through_proxy(lambda: self.create(self.channel, t1, sid))
            self.assertEqual((session.session_id, session.tokens), (sid, len(t1)))
            self.assertIs(self.owner(sid), served, "the access log and the replicas disagree")
            owners[sid] = served
            # Every later turn reaches the same replica, and lands in that replica's state.
            history = list(t1)
            outputs = []
            for turn in (t2, t3):
                (out, _, usage), served = self.through_proxy(
                    lambda: self.generate(self.channel, turn, n_out, sid))
                self.assertIs(served, owners[sid], f"{sid}: a turn went to another replica")
                self.assertEqual(usage.cached_tokens, len(history))
                history += turn + out
                outputs.append(out)
                self.assertEqual(self.get(served, sid).tokens, len(history))
                self.assertIsNone(self.get(self.other(served), sid))
            if i < 3:
                # The session invariant through the proxy: turn 2 equals one stateless request
                # over everything the session has seen (turn 1's input and output, turn 2).
                full = t1 + t2 + outputs[0] + t3
                whole, _, usage = self.generate(self.channel, full, n_out)
                # Stateless: what it did not prefill came from the prefix cache, not a session.
                self.assertEqual(usage.cached_tokens + usage.prompt_tokens, len(full))
                self.assertEqual(outputs[1], whole, sid)
            # A status call naming the session is routed like its turns.
            got, served = self.through_proxy(lambda: self.unary(
                self.channel, "GetSession", self.GetSessionRequest(session_id=sid),
                self.Session, sid))
            self.assertIs(served, owners[sid])
            self.assertEqual(got.tokens, len(history))
        names = sorted({r.name for r in owners.values()})
        # 12 random ids all on one replica: probability 2 * 2^-12 with an even ring.
        self.assertEqual(names, ["a", "b"], "every session landed on one replica")

    def test_stateless_requests_reach_both_replicas(self):
        before = {r.name: r.requests_total("Generate") for r in self.replicas}
        served = {r.name: 0 for r in self.replicas}
        n = 24
        first = None
        for _ in range(n):
            (out, _, _), replica = self.through_proxy(
                lambda: self.generate(self.channel, [1, 2, 3], 3))
            served[replica.name] += 1
            # Both replicas serve the same model: greedy output does not depend on the replica.
            first = first or out
            self.assertEqual(out, first)
        for name, count in served.items():
            self.assertGreater(count, 0, f"no stateless call reached replica {name}: {served}")
        # The replicas' own counters agree with the proxy's log.
        after = {r.name: r.requests_total("Generate") for r in self.replicas}
        self.assertEqual({k: after[k] - before[k] for k in after},
                         {k: float(v) for k, v in served.items()})

    def test_an_imported_session_continues_as_it_would_have(self):
        t1, t2, t3 = [87, 104, 121, 63], [8, 9, 10], [200, 201]
        sid = _session_id()
        # Created and given a turn through the proxy, which puts it on its owner ("source").
        _, source = self.through_proxy(lambda: self.create(self.channel, t1, sid))
        (out1, _, _), served = self.through_proxy(lambda: self.generate(self.channel, t2, 4, sid))
        self.assertIs(served, source)
        target = self.other(source)

        # Export through the proxy (it reaches the source), import straight into the other
        # replica under the same id: what a draining replica's sessions go through.
        exported, served = self.through_proxy(lambda: self.unary(
            self.channel, "ExportSession", self.ExportSessionRequest(session_id=sid),
            self.ExportSessionResponse, sid))
        self.assertIs(served, source)
        self.assertEqual(exported.tokens, len(t1 + t2 + out1))
        self.assertTrue(exported.model_identity)
        self.assertIsNone(self.get(target, sid))
        imported = self.unary(target.channel, "ImportSession",
                              self.ImportSessionRequest(state=exported.state, session_id=sid),
                              self.Session)
        self.assertEqual((imported.session_id, imported.tokens), (sid, exported.tokens))
        # Export leaves the state on the source: both replicas now hold the same session, and
        # both continuations are computed, each on its own replica, from the same turn on.
        for replica in self.replicas:
            self.assertEqual(self.get(replica, sid).tokens, exported.tokens, replica.name)

        seeded = {"temperature": 0.8, "top_k": 50, "seed": 1234}
        for turn, sampling in ((t3, None), ([33], seeded), ([7, 7], None)):
            on_source = self.generate(source.channel, turn, 6, sid, sampling)
            on_target = self.generate(target.channel, turn, 6, sid, sampling)
            self.assertEqual(on_target[0], on_source[0], f"tokens differ (sampling={sampling})")
            for a, b in zip(on_target[1], on_source[1]):
                self.assertAlmostEqual(a, b, places=5)
            self.assertEqual(on_target[2].cached_tokens, on_source[2].cached_tokens)
        self.assertEqual(self.get(target, sid).tokens, self.get(source, sid).tokens)

        # And the moved session still obeys the invariant: its first turn on the target equals
        # one stateless request over its whole history, wherever the proxy sends that request.
        sid2 = _session_id()
        _, source2 = self.through_proxy(lambda: self.create(self.channel, t1, sid2))
        state2 = self.unary(source2.channel, "ExportSession",
                            self.ExportSessionRequest(session_id=sid2), self.ExportSessionResponse)
        target2 = self.other(source2)
        self.unary(target2.channel, "ImportSession",
                   self.ImportSessionRequest(state=state2.state, session_id=sid2), self.Session)
        moved, _, usage = self.generate(target2.channel, t2, 6, sid2)
        self.assertEqual(usage.cached_tokens, len(t1))
        whole, _, _ = self.generate(self.channel, t1 + t2, 6)
        self.assertEqual(moved, whole)
        # Not tested: a call through the proxy naming a moved session. The proxy hashes the id,
        # so it keeps sending it to the source; moving sessions pays off when the source leaves
        # the replica list and its sessions' ids hash to the replicas that imported them
        # (proxy_affinity_test checks that only a dropped replica's sessions move).

    def other(self, replica):
        return next(r for r in self.replicas if r is not replica)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--descriptors", default=os.environ.get("MAMBA_API_DESCRIPTORS"),
                        help="protoc descriptor set of the API (target mamba_api_descriptors)")
    ARGS, rest = parser.parse_known_args()
    try:
        nginx_proxy.find_nginx()
    except nginx_proxy.ProxyError as e:
        print(f"live_replicas_test: {e}", file=sys.stderr)
        return _SKIP
    bin_dir = os.environ.get("MAMBA_BIN_DIR")
    if not bin_dir or not os.access(os.path.join(bin_dir, "mamba-serve"), os.X_OK):
        print(f"live_replicas_test: no mamba-serve in MAMBA_BIN_DIR ({bin_dir!r}): build the "
              "mamba-serve target first", file=sys.stderr)
        return 1
    if not ARGS.descriptors or not os.path.isfile(ARGS.descriptors):
        print(f"live_replicas_test: no API descriptor set at {ARGS.descriptors!r}: build the "
              "mamba_api_descriptors target first (or pass --descriptors)", file=sys.stderr)
        return 1
    program = unittest.main(argv=[sys.argv[0]] + rest, verbosity=2, exit=False)
    return 0 if program.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
