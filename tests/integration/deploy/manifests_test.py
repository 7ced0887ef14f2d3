#!/usr/bin/env python3
"""Renders each Kubernetes overlay (deploy/kubernetes/overlays/*) with `kubectl kustomize` and
checks what a cluster would run: the server's arguments (resolved from the ConfigMap as the kubelet
does), ports against the server's defaults, gRPC probes and their health service names, the
grace period against --drain_seconds, the security context, volumes, the GPU limit, the
autoscaler's metric (and the prometheus-adapter rule that serves it), the disruption budget and
the PodMonitor.

Environment: MAMBA_BIN_DIR (optional): where mamba-serve was built; when the binary is there, the
flags and their defaults are also checked against its --helpfull.
Exit status 77 (a skip for ctest) when kubectl is not installed: it is not a Debian package.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
ADAPTER_VALUES = KUBERNETES / "prometheus-adapter" / "values.yaml"

# The server's contract: default ports, health service names, flags. When mamba-serve is built,
# its --helpfull is checked too and is the authority.
GRPC_PORT = 50051
METRICS_PORT = 8080
HTTP_PORT = 8000
KNOWN_FLAGS = {
    "model", "tokenizer", "backend", "device", "dtype", "state_dtype", "gpu_memory_fraction",
    "num_slots", "cpu_threads", "seed", "deterministic", "host", "port", "metrics_host",
    "metrics_port", "http_host", "http_port", "served_model_name", "chat_template",
    "max_receive_message_bytes", "stream_threads", "max_prompt_tokens",
    "max_new_tokens", "max_sessions", "session_ttl_seconds", "host_state_memory_gb",
    "max_running", "max_queue", "max_prefill_tokens_per_step", "max_unread_tokens",
    "drain_seconds", "log_level", "session_key_file",
}
HPA_METRIC = "mamba_requests_waiting"
# After SIGTERM the process still has to cancel what is left and exit once the drain ends.
EXIT_MARGIN_S = 10
# Loading a checkpoint from network storage and warming up (CUDA graph capture) takes minutes.
MIN_STARTUP_BUDGET_S = 300

_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def render(overlay):
    result = subprocess.run(["kubectl", "kustomize", str(KUBERNETES / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize overlays/{overlay} failed:\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def dockerfile_user():
    """The numeric uid of the last USER in the Dockerfile (the runtime stage's)."""
    users = re.findall(r"^USER\s+(\S+)", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    return int(users[-1].split(":")[0]) if users else None


def server_help():
    """mamba-serve --helpfull output, or None when the binary has not been built."""
    binary = pathlib.Path(os.environ.get("MAMBA_BIN_DIR", "")) / "mamba-serve"
    if not os.environ.get("MAMBA_BIN_DIR") or not binary.is_file():
        return None
    result = subprocess.run([str(binary), "--helpfull"], capture_output=True, text=True,
                            timeout=60, check=False)
    return result.stdout + result.stderr


def flag_default(help_text, name):
    """The `default: X;` that absl prints after --name's description."""
    m = re.search(r"--" + re.escape(name) + r" \(.*?default: ([^;\n]*);", help_text, re.DOTALL)
    return m.group(1).strip().strip('"') if m else None


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class OverlayChecks:
    """Checks every overlay must pass; subclasses name the overlay."""

    overlay = None

    @classmethod
    def setUpClass(cls):
        cls.objects = render(cls.overlay)
        cls.deployment = cls.one("Deployment")
        cls.pod = cls.deployment["spec"]["template"]
        cls.container = next(c for c in cls.pod["spec"]["containers"] if c["name"] == "mamba-serve")
        cls.flags = cls.resolve_flags()

    @classmethod
    def all(cls, kind):
        return [o for o in cls.objects if o["kind"] == kind]

    @classmethod
    def one(cls, kind, name=None):
        found = [o for o in cls.all(kind) if name is None or o["metadata"]["name"] == name]
        if len(found) != 1:
            raise AssertionError(f"overlays/{cls.overlay}: expected one {kind} {name or ''}, "
                                 f"found {len(found)}")
        return found[0]

    @classmethod
    def resolve_flags(cls):
        """The container's arguments with $(VAR) expanded from its environment, as the kubelet
        expands them: envFrom ConfigMaps first, then env entries. Returns {flag: value}."""
        configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in cls.all("ConfigMap")}
        env = {}
        for source in cls.container.get("envFrom", []):
            name = source["configMapRef"]["name"]
            if name not in configmaps:
                raise AssertionError(f"envFrom names ConfigMap {name}, which the overlay lacks")
            env.update(configmaps[name])
        for entry in cls.container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = entry["value"]
            elif "configMapKeyRef" in entry.get("valueFrom", {}):
                ref = entry["valueFrom"]["configMapKeyRef"]
                env[entry["name"]] = configmaps[ref["name"]][ref["key"]]
        flags = {}
        cls.from_configmap = set()
        for arg in cls.container.get("args", []):
            missing = [v for v in _VAR_REF.findall(arg) if v not in env]
            if missing:
                raise AssertionError(f"argument {arg!r} uses {missing}, which no ConfigMap sets")
            m = re.fullmatch(r"--([a-z_][a-z0-9_]*)=(.*)", arg)
            if not m:
                raise AssertionError(f"argument {arg!r} is not --flag=value")
            if m.group(1) in flags:
                raise AssertionError(f"--{m.group(1)} is given twice")
            flags[m.group(1)] = _VAR_REF.sub(lambda v: env[v.group(1)], m.group(2))
            if _VAR_REF.search(arg):
                cls.from_configmap.add(m.group(1))
        return flags

    def container_port(self, name):
        ports = {p["name"]: p["containerPort"] for p in self.container.get("ports", [])}
        self.assertIn(name, ports, f"container port {name!r}")
        return ports[name]

    # ---------------------------------------------------------------------------------------

    def test_objects_and_api_versions(self):
        expected = {
            "Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1",
            "PodMonitor": "monitoring.coreos.com/v1",
            "HorizontalPodAutoscaler": "autoscaling/v2",
            "PodDisruptionBudget": "policy/v1",
        }
        for kind, api in expected.items():
            objs = self.all(kind)
            self.assertTrue(objs, f"no {kind} in overlays/{self.overlay}")
            for o in objs:
                self.assertEqual(o["apiVersion"], api, kind)
        namespaces = {o["metadata"].get("namespace") for o in self.objects
                      if o["kind"] != "Namespace"}
        self.assertEqual(len(namespaces), 1, f"objects spread over namespaces {namespaces}")
        self.assertIsNotNone(namespaces.pop())

    def test_arguments_come_from_the_configmap_and_are_server_flags(self):
        for name in self.flags:
            self.assertIn(name, KNOWN_FLAGS, f"--{name} is not a mamba-serve flag")
        for name in ("model", "backend", "drain_seconds", "max_sessions"):
            self.assertIn(name, self.from_configmap, f"--{name} should come from the ConfigMap")
        for name in ("drain_seconds", "max_sessions", "session_ttl_seconds", "max_prompt_tokens",
                     "max_new_tokens"):
            if name in self.flags:
                self.assertRegex(self.flags[name], r"^[0-9]+$", f"--{name}")
                self.assertGreater(int(self.flags[name]), 0, f"--{name}")
        help_text = server_help()
        if help_text is None:
            print("mamba-serve not built here: flags checked against the documented list only",
                  file=sys.stderr)
            return
        offered = set(re.findall(r"--([a-z][a-z0-9_]*)", help_text))
        self.assertIn("port", offered, f"cannot read flags from mamba-serve --helpfull:\n"
                                       f"{help_text[:2000]}")
        for name in self.flags:
            self.assertIn(name, offered, f"mamba-serve has no --{name}")
        self.assertEqual(flag_default(help_text, "port"), str(GRPC_PORT))
        self.assertEqual(flag_default(help_text, "metrics_port"), str(METRICS_PORT))

    def test_ports_match_the_server_defaults(self):
        self.assertEqual(int(self.flags.get("port", GRPC_PORT)), GRPC_PORT)
        self.assertEqual(int(self.flags.get("metrics_port", METRICS_PORT)), METRICS_PORT)
        self.assertEqual(self.flags.get("host", "0.0.0.0"), "0.0.0.0")
        self.assertEqual(self.container_port("grpc"), GRPC_PORT)
        self.assertEqual(self.container_port("metrics"), METRICS_PORT)
        pod_labels = self.pod["metadata"]["labels"]
        for service in self.all("Service"):
            self.assertTrue(matches(service["spec"]["selector"], pod_labels),
                            f"Service {service['metadata']['name']} selects no mamba-serve pod")
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if isinstance(target, str):
                    target = self.container_port(target)
                expected = {"grpc": GRPC_PORT, "metrics": METRICS_PORT, "http": HTTP_PORT}[port["name"]]
                self.assertEqual((port["port"], target), (expected, expected), port)
                if port["name"] == "grpc":
                    self.assertEqual(port.get("appProtocol"), "grpc")
        main = self.one("Service", "mamba-serve")
        self.assertEqual({p["name"] for p in main["spec"]["ports"]}, {"grpc", "metrics", "http"})

    def test_probes_use_grpc_health_on_the_grpc_port(self):
        services = {"readinessProbe": {"readiness"}, "livenessProbe": {"liveness"},
                    "startupProbe": {"readiness", "liveness"}}
        for probe_name, allowed in services.items():
            probe = self.container.get(probe_name)
            self.assertIsNotNone(probe, f"no {probe_name}")
            self.assertIn("grpc", probe, f"{probe_name} is not a gRPC probe")
            self.assertEqual(probe["grpc"]["port"], GRPC_PORT, probe_name)
            self.assertIn(probe["grpc"].get("service"), allowed, probe_name)
        startup = self.container["startupProbe"]
        budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
        self.assertGreaterEqual(budget, MIN_STARTUP_BUDGET_S,
                                "startup probe gives loading and warm-up too little time")

    def test_grace_period_covers_the_drain(self):
        drain = int(self.flags["drain_seconds"])
        pre_stop = 0
        command = (self.container.get("lifecycle", {}).get("preStop", {})
                   .get("exec", {}).get("command", []))
        if command and command[0] == "sleep":
            pre_stop = int(command[1])
        grace = self.pod["spec"]["terminationGracePeriodSeconds"]
        self.assertGreaterEqual(grace, pre_stop + drain + EXIT_MARGIN_S,
                                f"grace {grace}s < preStop {pre_stop}s + drain {drain}s + "
                                f"{EXIT_MARGIN_S}s to exit")

    def test_runs_as_non_root_with_a_read_only_root(self):
        pod_sc = self.pod["spec"].get("securityContext", {})
        sc = self.container.get("securityContext", {})
        self.assertTrue(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")), "runAsNonRoot")
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        self.assertIsInstance(uid, int, "runAsUser must be numeric")
        self.assertGreater(uid, 0)
        self.assertEqual(uid, dockerfile_user(), "runAsUser differs from the image's USER")
        self.assertIs(sc.get("readOnlyRootFilesystem"), True)
        self.assertIs(sc.get("allowPrivilegeEscalation"), False)
        self.assertFalse(sc.get("privileged", False))
        self.assertIn("ALL", sc.get("capabilities", {}).get("drop", []))
        self.assertFalse(sc.get("capabilities", {}).get("add"))
        self.assertFalse(self.pod["spec"].get("hostNetwork", False))

    def test_volumes(self):
        mounts = {m["mountPath"]: m for m in self.container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes", [])}
        self.assertIn("/models", mounts)
        self.assertIs(mounts["/models"].get("readOnly"), True, "/models must be read-only")
        self.assertIn(mounts["/models"]["name"], volumes)
        # The root filesystem is read-only: /tmp needs its own writable volume.
        self.assertIn("/tmp", mounts)
        self.assertIn("emptyDir", volumes[mounts["/tmp"]["name"]])
        models = volumes[mounts["/models"]["name"]]
        if "persistentVolumeClaim" in models:
            claim = models["persistentVolumeClaim"]["claimName"]
            self.one("PersistentVolumeClaim", claim)
        model = self.flags["model"]
        self.assertTrue(model.startswith("/models/") or model.startswith("synthetic:"),
                        f"--model={model} is neither under /models nor synthetic")

    def test_resources(self):
        resources = self.container.get("resources", {})
        for r in ("cpu", "memory"):
            self.assertIn(r, resources.get("requests", {}), f"no {r} request")
        self.assertIn("memory", resources.get("limits", {}), "no memory limit")

    def test_autoscaler_scales_on_waiting_requests(self):
        hpa = self.one("HorizontalPodAutoscaler")
        ref = hpa["spec"]["scaleTargetRef"]
        self.assertEqual((ref["kind"], ref["name"]),
                         ("Deployment", self.deployment["metadata"]["name"]))
        self.assertNotIn("replicas", self.deployment["spec"],
                         "spec.replicas would fight the autoscaler on every apply")
        names = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
        self.assertEqual(names, [HPA_METRIC])
        self.assertLessEqual(hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])

    def test_disruption_budget_selects_the_pods_and_allows_a_drain(self):
        pdb = self.one("PodDisruptionBudget")
        selector = pdb["spec"]["selector"]["matchLabels"]
        self.assertTrue(matches(selector, self.pod["metadata"]["labels"]))
        self.assertEqual(selector, self.deployment["spec"]["selector"]["matchLabels"])
        min_replicas = self.one("HorizontalPodAutoscaler")["spec"]["minReplicas"]
        if "maxUnavailable" in pdb["spec"]:
            self.assertGreaterEqual(int(pdb["spec"]["maxUnavailable"]), 1)
        else:
            self.assertLess(int(pdb["spec"]["minAvailable"]), min_replicas,
                            "the budget would block every node drain")

    def test_pod_monitor_scrapes_the_metrics_port(self):
        monitor = self.one("PodMonitor")
        self.assertTrue(matches(monitor["spec"]["selector"]["matchLabels"],
                                self.pod["metadata"]["labels"]))
        endpoints = monitor["spec"]["podMetricsEndpoints"]
        self.assertEqual(len(endpoints), 1)
        self.assertEqual(self.container_port(endpoints[0]["port"]), METRICS_PORT)
        self.assertEqual(endpoints[0].get("path", "/metrics"), "/metrics")


class GpuOverlayTest(OverlayChecks, unittest.TestCase):
    overlay = "gpu"

    def test_one_gpu_and_the_cuda_backend(self):
        limits = self.container["resources"]["limits"]
        self.assertEqual(int(limits.get("nvidia.com/gpu", 0)), 1)
        self.assertEqual(self.flags["backend"], "cuda")
        tolerated = {t.get("key") for t in self.pod["spec"].get("tolerations", [])}
        self.assertIn("nvidia.com/gpu", tolerated)


class CpuOverlayTest(OverlayChecks, unittest.TestCase):
    overlay = "cpu"

    def test_no_gpu_and_the_cpu_backend(self):
        for c in self.pod["spec"]["containers"]:
            for part in ("requests", "limits"):
                self.assertNotIn("nvidia.com/gpu", c.get("resources", {}).get(part, {}))
        self.assertEqual(self.flags["backend"], "cpu")
        self.assertNotIn("nodeSelector", self.pod["spec"])


class PrometheusAdapterRuleTest(unittest.TestCase):
    """The adapter rule must serve the HPA's metric under its name, with a valid query."""

    def test_rule_exposes_the_metric_with_a_valid_query(self):
        values = yaml.safe_load(ADAPTER_VALUES.read_text())
        rules = [r for r in values["rules"]["custom"] if r["name"]["as"] == HPA_METRIC]
        self.assertEqual(len(rules), 1, f"no rule exposes {HPA_METRIC}")
        rule = rules[0]
        self.assertTrue(rule["seriesQuery"].startswith(HPA_METRIC + "{"))
        self.assertEqual(rule["resources"]["overrides"]["pod"]["resource"], "pod")
        self.assertEqual(rule["resources"]["overrides"]["namespace"]["resource"], "namespace")
        # What the adapter sends Prometheus for a query about two pods.
        query = (rule["metricsQuery"].replace("<<.Series>>", HPA_METRIC)
                 .replace("<<.LabelMatchers>>", 'namespace="mamba-serve",pod=~"a|b"')
                 .replace("<<.GroupBy>>", "pod"))
        self.assertNotIn("<<", query)
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool not found: install prometheus (scripts/setup.sh)")
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            yaml.safe_dump({"groups": [{"name": "adapter", "rules": [
                {"record": "adapter:" + HPA_METRIC, "expr": query}]}]}, f)
            f.flush()
            result = subprocess.run([promtool, "check", "rules", f.name], capture_output=True,
                                    text=True, timeout=60, check=False)
        self.assertEqual(result.returncode, 0,
                         f"metricsQuery is not valid PromQL: {query}\n{result.stdout}"
                         f"{result.stderr}")


if __name__ == "__main__":
    if shutil.which("kubectl") is None:
        print("kubectl not found: it is not a Debian package; install kubectl (tested with 1.32, "
              "kustomize v5.5) to render the overlays", file=sys.stderr)
        sys.exit(77)
    unittest.main(verbosity=2)
