#!/usr/bin/env python3
"""Checks the Dockerfile's structure without a Docker engine: the stages and their base images,
that packages come from scripts/setup.sh and CUDA is built, the numeric non-root user, the
exposed ports, entrypoint, default arguments and health check, and that every path copied from
the build context exists and is not excluded by .dockerignore.
"""

import glob
import json
import pathlib
import re
import shlex
import unittest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
GRPC_PORT = 50051
METRICS_PORT = 8080
HTTP_PORT = 8000


class Instruction:
    def __init__(self, keyword, args, line):
        self.keyword = keyword
        self.args = args
        self.line = line

    def flags_and_words(self):
        """Splits `--flag=value ... word ...` (shell-style words) into ({flag: value}, [words])."""
        flags, words = {}, []
        for word in shlex.split(self.args):
            m = re.fullmatch(r"--([a-z-]+)(?:=(.*))?", word)
            if m and not words:
                flags[m.group(1)] = m.group(2) or ""
            else:
                words.append(word)
        return flags, words

    def exec_form(self):
        """The JSON array of an exec-form instruction; fails on shell form."""
        try:
            value = json.loads(self.args)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise AssertionError(f"line {self.line}: {self.keyword} is not in exec (JSON) form")
        return value


class Stage:
    def __init__(self, image, name, index):
        self.image = image
        self.name = name
        self.index = index
        self.instructions = []
        self.args = {}

    def all(self, keyword):
        return [i for i in self.instructions if i.keyword == keyword]


def _substitute(text, values, strict=True):
    """Replaces $NAME and ${NAME} with ARG values. strict: every reference must be an ARG with a
    default (FROM lines); otherwise unknown names are left for the shell (RUN lines)."""
    def repl(m):
        name = m.group(1) or m.group(2)
        if name in values and values[name] is not None:
            return values[name]
        if strict:
            raise AssertionError(f"${name} has no value (no ARG default)")
        return m.group(0)
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, text)


def _arg_default(args):
    name, _, value = args.partition("=")
    return name.strip(), shlex.split(value)[0] if value.strip() else None


def parse_dockerfile(text):
    """Returns the stages, with ARG defaults substituted into FROM and into each stage's ARGs."""
    logical, current, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        # Comment lines are dropped, also inside a continued instruction (as Docker does).
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if not current:
            start = number
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        logical.append((start, current))
        current = ""
    if current:
        raise AssertionError("the Dockerfile ends inside a continued line")

    global_args, stages = {}, []
    for line, text_line in logical:
        keyword, _, args = text_line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            image = _substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, name, len(stages)))
        elif not stages:
            if keyword != "ARG":
                raise AssertionError(f"line {line}: only ARG may come before the first FROM")
            name, value = _arg_default(args)
            global_args[name] = value
        else:
            stage = stages[-1]
            if keyword == "ARG":
                name, value = _arg_default(args)
                stage.args[name] = value if value is not None else global_args.get(name)
            stage.instructions.append(Instruction(keyword, args, line))
    return stages


class DockerIgnore:
    """The .dockerignore rules as Docker applies them: the last matching pattern wins, `!`
    re-includes, `**` spans folders, and excluding a folder excludes what is in it."""

    def __init__(self, text):
        self.rules = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclude = not line.startswith("!")
            pattern = line.lstrip("!").strip().strip("/")
            pattern = re.sub(r"^\./", "", pattern)
            self.rules.append((self._regex(pattern), exclude))

    @staticmethod
    def _regex(pattern):
        out, i = "", 0
        while i < len(pattern):
            c = pattern[i]
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
                continue
            if pattern.startswith("**", i):
                out, i = out + ".*", i + 2
                continue
            if c == "*":
                out += "[^/]*"
            elif c == "?":
                out += "[^/]"
            elif c == "[":
                end = pattern.index("]", i + 1)
                body = pattern[i + 1:end]
                out += "[" + ("^" + body[1:] if body.startswith(("!", "^")) else body) + "]"
                i = end
            else:
                out += re.escape(c)
            i += 1
        return re.compile(out + "$")

    def excluded(self, path):
        path = str(pathlib.PurePosixPath(path))  # drops "./" and trailing slashes
        if path == ".":
            return False
        parts = path.split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for regex, exclude in self.rules:
            if any(regex.match(c) for c in candidates):
                result = exclude
        return result


class DockerfileTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.stages = parse_dockerfile(DOCKERFILE.read_text())
        cls.build = cls.stages[0]
        cls.runtime = cls.stages[-1]
        cls.ignore = DockerIgnore(DOCKERIGNORE.read_text())

    def last(self, keyword):
        found = self.runtime.all(keyword)
        self.assertTrue(found, f"the runtime stage has no {keyword}")
        return found[-1]

    def test_builds_on_cuda13_devel_and_runs_on_the_matching_runtime(self):
        self.assertGreaterEqual(len(self.stages), 2, "not a multi-stage build")
        build = re.fullmatch(r"nvidia/cuda:(13\.0\.\d+)-devel-ubuntu24\.04", self.build.image)
        self.assertIsNotNone(build, f"build stage image {self.build.image}")
        runtime = re.fullmatch(r"nvidia/cuda:(13\.0\.\d+)-runtime-ubuntu24\.04", self.runtime.image)
        self.assertIsNotNone(runtime, f"runtime stage image {self.runtime.image}")
        self.assertEqual(build.group(1), runtime.group(1), "build and runtime CUDA releases differ")
        names = [s.name for s in self.stages if s.name]
        self.assertEqual(len(names), len(set(names)), "two stages share a name")

    def test_build_stage_installs_through_setup_and_builds_cuda(self):
        runs = [_substitute(r.args, self.build.args, strict=False) for r in self.build.all("RUN")]
        self.assertTrue(any(re.search(r"\bMAMBA_SETUP_NO_BUILD=1 scripts/setup\.sh\b", r)
                            for r in runs), "packages are not installed through scripts/setup.sh")
        cmake = [r for r in runs if "cmake -S" in r]
        self.assertTrue(cmake, "no cmake configure step")
        self.assertIn("-DMAMBA_CUDA=ON", cmake[0])
        archs = re.search(r'-DCMAKE_CUDA_ARCHITECTURES="?([^" ]+)"?', cmake[0])
        self.assertIsNotNone(archs, "CUDA architectures not set")
        self.assertEqual(set(archs.group(1).split(";")), {"80", "90a"})
        self.assertTrue(any(re.search(r"--target\b.*\bmamba-serve\b", r) and "mamba-client" in r
                            for r in runs), "mamba-serve and mamba-client are not built")

    def test_runtime_stage_takes_only_build_outputs(self):
        earlier = {s.name for s in self.stages[:-1] if s.name} | {
            str(s.index) for s in self.stages[:-1]}
        copies = self.runtime.all("COPY") + self.runtime.all("ADD")
        self.assertTrue(copies)
        for copy in copies:
            flags, words = copy.flags_and_words()
            self.assertIn("from", flags, f"line {copy.line}: the runtime stage copies from the "
                                         f"build context instead of the build stage")
            self.assertIn(flags["from"], earlier, f"line {copy.line}: unknown stage")
        bin_dests = [c.flags_and_words()[1][-1] for c in copies]
        self.assertIn("/usr/local/bin/", [d.rstrip("/") + "/" for d in bin_dests],
                      "the binaries are not installed on PATH")

    def test_runs_as_a_numeric_non_root_user(self):
        user = self.last("USER").args
        m = re.fullmatch(r"(\d+)(?::(\d+))?", user)
        self.assertIsNotNone(m, f"USER {user} is not numeric (Kubernetes' runAsNonRoot needs it)")
        self.assertNotEqual(int(m.group(1)), 0)
        if m.group(2):
            self.assertNotEqual(int(m.group(2)), 0)
        # The uid exists in /etc/passwd, so that tools asking for the user's name work.
        runs = " ".join(r.args for r in self.runtime.all("RUN"))
        self.assertRegex(runs, r"useradd\b[^&]*--uid " + m.group(1) + r"\b")
        # Nothing after USER switches back.
        last_user = self.runtime.instructions.index(self.last("USER"))
        for i in self.runtime.instructions[last_user + 1:]:
            self.assertNotEqual(i.keyword, "RUN", f"line {i.line}: RUN after USER")

    def test_exposes_the_server_ports(self):
        ports = set()
        for expose in self.runtime.all("EXPOSE"):
            ports |= {int(p.split("/")[0]) for p in expose.args.split()}
        self.assertEqual(ports, {GRPC_PORT, METRICS_PORT, HTTP_PORT})

    def test_entrypoint_default_arguments_and_health_check(self):
        self.assertEqual(self.last("ENTRYPOINT").exec_form(), ["mamba-serve"])
        args = dict(re.fullmatch(r"--([a-z_]+)=(.*)", a).groups()
                    for a in self.last("CMD").exec_form())
        self.assertRegex(args["model"], r"^(/models/.+|synthetic:\w+)$")
        self.assertEqual(int(args.get("port", GRPC_PORT)), GRPC_PORT)
        self.assertEqual(int(args.get("metrics_port", METRICS_PORT)), METRICS_PORT)
        health = self.last("HEALTHCHECK").args
        options, _, command = health.partition("CMD")
        self.assertTrue(command, "HEALTHCHECK has no CMD")
        argv = json.loads(command)
        self.assertEqual(argv[:2], ["mamba-client", "health"])
        self.assertIn(f"--addr=127.0.0.1:{GRPC_PORT}", argv)
        # Loading and warm-up must not count as failures.
        self.assertRegex(options, r"--start-period=\d+[ms]")

    def test_models_folder_exists_in_the_image(self):
        runs = " ".join(r.args for r in self.runtime.all("RUN"))
        self.assertRegex(runs, r"mkdir -p [^&]*/models\b")

    def test_copied_paths_exist_and_are_in_the_build_context(self):
        for stage in self.stages:
            for copy in stage.all("COPY") + stage.all("ADD"):
                flags, words = copy.flags_and_words()
                if "from" in flags:
                    continue
                self.assertGreaterEqual(len(words), 2, f"line {copy.line}")
                for source in words[:-1]:
                    self.assertNotRegex(source, r"^[a-z]+://", f"line {copy.line}: remote ADD")
                    matches = glob.glob(str(REPO_ROOT / source))
                    self.assertTrue(matches, f"line {copy.line}: {source} does not exist")
                    self.assertFalse(self.ignore.excluded(source),
                                     f"line {copy.line}: .dockerignore excludes {source}")

    def test_dockerignore_keeps_build_folders_out_and_sources_in(self):
        for path in ("build/CMakeCache.txt", "build-deploy/bin/mamba-serve", ".git/HEAD",
                     "engine/__pycache__/x.pyc", "tests/integration/deploy/x.pyc"):
            self.assertTrue(self.ignore.excluded(path), f"{path} would be sent to the builder")
        for path in ("CMakeLists.txt", "scripts/setup.sh", "engine/engine.h", "proto",
                     "server", "client", "kernels", "cmake/MambaCuda.cmake", "."):
            self.assertFalse(self.ignore.excluded(path), f"{path} is left out of the build")

    def test_dockerignore_matcher(self):
        ignore = DockerIgnore("build*\n**/*.pyc\ndocs/*.md\n!docs/keep.md\nlogs/\n")
        cases = {
            "build": True, "build-x/a": True, "a/build": False, "x.pyc": True,
            "a/b/c.pyc": True, "docs/a.md": True, "docs/keep.md": False, "docs/sub/a.md": False,
            "logs/today": True, "catalogs/x": False,
        }
        for path, expected in cases.items():
            with self.subTest(path=path):
                self.assertEqual(ignore.excluded(path), expected)


if __name__ == "__main__":
    unittest.main(verbosity=2)
