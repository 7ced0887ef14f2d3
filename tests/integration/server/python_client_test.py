"""Drives mamba-serve from an independent gRPC implementation (Python grpcio).

The messages are built at run time from a descriptor set that protoc wrote from the .proto
files, so nothing here shares code with the C++ client. Checks a streamed generation, a session
turn (the session invariant), health, and an invalid-UTF-8 request sent as raw bytes.

    python3 python_client_test.py --server=PATH/mamba-serve --descriptors=PATH/api.desc
"""

import argparse
import os
import select
import signal
import subprocess
import sys
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

ARGS = None


def load_messages(path):
    with open(path, "rb") as f:
        files = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    factory = message_factory.MessageFactory(pool)

    def message(name):
        descriptor = pool.FindMessageTypeByName(name)
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(descriptor)
        return factory.GetPrototype(descriptor)

    return message


class Server:
    """A mamba-serve process on loopback; the address comes from its listening line."""

    def __init__(self, binary):
        self.process = subprocess.Popen(
            [binary, "--model=synthetic:tiny", "--backend=cpu", "--host=127.0.0.1",
             "--port=0", "--metrics_port=0", "--http_port=0", "--log_level=warning"],
            stdout=subprocess.PIPE)
        deadline = time.time() + 60
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.time()
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, remaining))
            if not ready:
                self.process.kill()
                raise RuntimeError("mamba-serve printed no listening line")
            chunk = os.read(self.process.stdout.fileno(), 1)
            if not chunk:
                raise RuntimeError("mamba-serve exited before listening")
            line += chunk
        fields = dict(f.split("=", 1) for f in line.decode().split()[2:])
        self.address = fields["grpc"]

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.process.stdout.close()
        return code


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        message = load_messages(ARGS.descriptors)
        cls.GenerateRequest = message("mambaserve.v1.GenerateRequest")
        cls.GenerateResponse = message("mambaserve.v1.GenerateResponse")
        cls.CreateSessionRequest = message("mambaserve.v1.CreateSessionRequest")
        cls.GetSessionRequest = message("mambaserve.v1.GetSessionRequest")
        cls.Session = message("mambaserve.v1.Session")
        cls.DetokenizeRequest = message("mambaserve.v1.DetokenizeRequest")
        cls.DetokenizeResponse = message("mambaserve.v1.DetokenizeResponse")
        cls.HealthCheckRequest = message("grpc.health.v1.HealthCheckRequest")
        cls.HealthCheckResponse = message("grpc.health.v1.HealthCheckResponse")
        cls.server = Server(ARGS.server)
        cls.channel = grpc.insecure_channel(cls.server.address)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        assert cls.server.stop() == 0, "mamba-serve did not exit with 0 on SIGTERM"

    def unary(self, method, request_type, response_type):
        return self.channel.unary_unary(method, request_serializer=request_type.SerializeToString,
                                        response_deserializer=response_type.FromString)

    def generate(self, **fields):
        call = self.channel.unary_stream(
            "/mambaserve.v1.Generation/Generate",
            request_serializer=self.GenerateRequest.SerializeToString,
            response_deserializer=self.GenerateResponse.FromString)
        request = self.GenerateRequest(**fields)
        return list(call(request, timeout=60))

    def greedy(self, ids, max_tokens, session_id=""):
        responses = self.generate(token_ids={"ids": ids}, session_id=session_id,
                                  stopping={"max_tokens": max_tokens, "ignore_eos": True})
        return [t for r in responses for t in r.token_ids], responses

    def test_streamed_generation(self):
        responses = self.generate(text="Hello from Python", stopping={"max_tokens": 12},
                                  logprobs=2)
        ids = [t for r in responses for t in r.token_ids]
        text = "".join(r.text for r in responses)
        last = responses[-1]
        finish = self.GenerateResponse.DESCRIPTOR.fields_by_name["finish_reason"].enum_type
        self.assertEqual(finish.values_by_number[last.finish_reason].name,
                         "FINISH_REASON_LENGTH")
        self.assertEqual(len(ids), 12)
        self.assertEqual(last.usage.generated_tokens, 12)
        self.assertEqual(last.usage.prompt_tokens, len("Hello from Python".encode()))
        self.assertEqual(sum(len(r.logprobs) for r in responses), 12)
        for r in responses[:-1]:
            self.assertEqual(r.finish_reason, 0)
        # The text deltas are exactly the detokenized ids.
        detokenize = self.unary("/mambaserve.v1.Models/Detokenize", self.DetokenizeRequest,
                                self.DetokenizeResponse)
        self.assertEqual(detokenize(self.DetokenizeRequest(token_ids=ids), timeout=10).text, text)

    def test_session_turn(self):
        create = self.unary("/mambaserve.v1.Sessions/CreateSession", self.CreateSessionRequest,
                            self.Session)
        get = self.unary("/mambaserve.v1.Sessions/GetSession", self.GetSessionRequest,
                         self.Session)
        t1, t2 = [40, 41, 42], [43, 44]
        session = create(self.CreateSessionRequest(token_ids={"ids": t1}), timeout=10)
        self.assertEqual(len(session.session_id), 32)
        self.assertEqual(session.tokens, 3)
        out1, _ = self.greedy([45], 6, session.session_id)
        out2, responses = self.greedy(t2, 6, session.session_id)
        self.assertEqual(responses[-1].usage.cached_tokens, len(t1) + 1 + 6)
        whole, _ = self.greedy(t1 + [45] + out1 + t2, 6)
        self.assertEqual(out2, whole)
        after = get(self.GetSessionRequest(session_id=session.session_id),
                    metadata=(("x-session-id", session.session_id),), timeout=10)
        self.assertEqual(after.tokens, len(t1) + 1 + 6 + len(t2) + 6)

    def test_health(self):
        check = self.unary("/grpc.health.v1.Health/Check", self.HealthCheckRequest,
                           self.HealthCheckResponse)
        for service in ("", "liveness", "readiness"):
            response = check(self.HealthCheckRequest(service=service), timeout=10)
            self.assertEqual(response.status, 1, service)  # SERVING

    def test_invalid_utf8_is_invalid_argument(self):
        raw = self.channel.unary_stream("/mambaserve.v1.Generation/Generate",
                                        request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)
        with self.assertRaises(grpc.RpcError) as caught:
            list(raw(b"\x0a\x03a\xff\xfe", timeout=10))
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("field 'text' is not valid UTF-8", caught.exception.details())

    def test_validation_error(self):
        with self.assertRaises(grpc.RpcError) as caught:
            self.generate(text="x", sampling={"top_p": 1.5})
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("(0, 1]", caught.exception.details())


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--descriptors", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
