#!/usr/bin/env python3
"""Checks the module layering of the source tree: every project include (#include "a/b.h") of a
file goes to a module its own module may depend on (ALLOWED below, the graph docs/architecture.md
draws), and the module graph the includes actually form has no cycle.

A module is a folder with one job: common, kernels, the engine's sub-folders (engine/model, ...),
the engine's root (the facade and the backend factory), server, server/http, server/metrics,
client, bench, tests. Exit status 0 when the tree follows the graph; otherwise each offending include is printed
as FILE:LINE: MODULE -> MODULE (HEADER).

    tests/layering/check_layering.py [ROOT]        check (ctest runs this)
    tests/layering/check_layering.py --graph ROOT  print the include graph between modules
"""
import os
import re
import sys

# Who may include whom. A module may always include itself. Anything not listed may not be
# included by anyone (it is only compiled).
ENGINE_PARTS = ["engine/model", "engine/tokenizer", "engine/sampling", "engine/simd",
                "engine/api", "engine/backend", "engine/cpu", "engine/cuda", "engine/sessions",
                "engine/prefix_cache", "engine/scheduler"]
ALLOWED = {
    "common": [],
    "kernels": [],
    "engine/simd": [],
    "engine/model": ["common"],
    "engine/tokenizer": ["common"],
    "engine/sampling": ["common", "engine/simd"],
    "engine/api": ["engine/model", "engine/sampling"],
    "engine/backend": ["engine/model", "engine/sampling"],
    "engine/cpu": ["common", "engine/backend", "engine/model", "engine/sampling", "engine/simd"],
    "engine/cuda": ["common", "engine/backend", "engine/model", "engine/sampling", "kernels"],
    "engine/sessions": ["common", "engine/api", "engine/backend", "engine/model"],
    "engine/prefix_cache": ["engine/api", "engine/backend", "engine/model", "engine/sessions"],
    "engine/scheduler": ["common", "engine/api", "engine/backend", "engine/model",
                         "engine/sampling", "engine/sessions", "engine/prefix_cache",
                         "engine/tokenizer"],
    # The facade and the backend factory: everything of the engine.
    "engine": ["common"] + ENGINE_PARTS,
    # Protocols see the facade, the public vocabulary and the export format, never the internals
    # (scheduler, placement, backends).
    # The HTTP server knows no endpoint and no engine.
    "server/http": ["common"],
    "server/metrics": ["common", "server/http", "engine", "engine/api", "engine/model", "engine/sampling",
                       "engine/backend", "engine/sessions", "engine/tokenizer"],
    "server": ["common", "engine", "engine/api", "engine/model", "engine/sampling",
               "engine/backend", "engine/sessions", "engine/tokenizer", "server/http",
               "server/metrics"],
    "client": ["common"],
    # Benchmarks and tests may reach anything they measure or check.
    "bench": ["common", "kernels", "engine", "server", "server/http", "server/metrics", "client"]
             + ENGINE_PARTS,
    "tests": ["common", "kernels", "engine", "server", "server/http", "server/metrics", "client",
              "bench"]
             + ENGINE_PARTS,
}
SOURCE = re.compile(r"\.(cc|h|cu|cuh)$")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def module_of(path):
    """The module a repository path belongs to, or None when it is not project source."""
    parts = path.split("/")
    if parts[0] == "engine":
        if len(parts) > 2 and "engine/" + parts[1] in ENGINE_PARTS:
            return "engine/" + parts[1]
        return "engine" if len(parts) == 2 else None
    if parts[0] == "server":
        if len(parts) > 2 and parts[1] in ("http", "metrics"):
            return "server/" + parts[1]
        return "server"
    if parts[0] in ("common", "kernels", "client", "bench", "tests"):
        return parts[0]
    return None


def scan(root):
    """Yields (file, line number, from module, to module, header) for every project include."""
    for top in ("common", "engine", "kernels", "server", "client", "bench", "tests"):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                if not SOURCE.search(name):
                    continue
                path = os.path.relpath(os.path.join(dirpath, name), root)
                src = module_of(path)
                if src is None:
                    continue
                with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        dst = module_of(m.group(1))
                        if dst is not None:
                            yield path, number, src, dst, m.group(1)


def find_cycle(edges):
    """A cycle in the module graph as a list of modules, or None."""
    state = {}
    stack = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def main(argv):
    graph_only = "--graph" in argv
    args = [a for a in argv[1:] if a != "--graph"]
    root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    edges = {}
    bad = []
    for path, number, src, dst, header in scan(root):
        if src == dst:
            continue
        edges.setdefault(src, set()).add(dst)
        if dst not in ALLOWED.get(src, []):
            bad.append(f"{path}:{number}: {src} -> {dst} ({header})")
    if graph_only:
        for src in sorted(edges):
            print(f"{src} -> {', '.join(sorted(edges[src]))}")
        return 0
    # The allowed graph itself must be acyclic, or the check would bless a cycle.
    allowed_cycle = find_cycle({k: set(v) for k, v in ALLOWED.items()})
    cycle = find_cycle(edges)
    for line in bad:
        print("upward or sideways include: " + line)
    if allowed_cycle:
        print("the allowed module graph has a cycle: " + " -> ".join(allowed_cycle))
    if cycle:
        print("the include graph has a cycle: " + " -> ".join(cycle))
    if bad or allowed_cycle or cycle:
        return 1
    print(f"layering ok: {sum(len(v) for v in edges.values())} module edges, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
