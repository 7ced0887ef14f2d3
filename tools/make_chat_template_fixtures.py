#!/usr/bin/env python3
"""Makes tests/data/chat_templates/expected.json: what jinja2 renders, in the environment
Hugging Face transformers' apply_chat_template renders chat templates with, for

  chat      every template (*.jinja) of tests/data/chat_templates/ with every conversation of
            cases.json: messages, add_generation_prompt, tools and documents (None unless the
            case's "extra" has them), the template's special tokens (cases.json "templates"),
            then the case's "extra" variables, as apply_chat_template passes them;
  language  every snippet of language_cases.json with its context.

Each entry holds the output, or the error: its message, its type, and whether the template
raised it with raise_exception() (then the C++ renderer must give exactly that message).

The environment is transformers' (transformers/utils/chat_template_utils.py):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
plus the {% generation %} tag), globals raise_exception and strftime_now, and transformers'
tojson filter (json.dumps with ensure_ascii=False). strftime_now reads a fixed clock,
2024-07-26 09:05:03, which the C++ test sets too.

    tools/make_chat_template_fixtures.py                 write expected.json
    tools/make_chat_template_fixtures.py --output FILE   write elsewhere (the C++ test does this
                                                         to compare with live jinja2)
    tools/make_chat_template_fixtures.py --check         exit 1 when expected.json is stale
    tools/make_chat_template_fixtures.py --against-transformers
                                                         render every chat case with transformers'
                                                         own renderer (render_jinja_template, what
                                                         apply_chat_template calls) and compare
                                                         with expected.json; exit 1 on a difference

Needs python3 and jinja2 (Debian: python3-jinja2); --against-transformers also needs
transformers (the GPU host has it).
"""
import argparse
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "chat_templates")
FIXED_NOW = datetime.datetime(2024, 7, 26, 9, 5, 3)


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker without the tracking: {% generation %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, context):
    """{"output": text} or {"error": message, "error_type": name, "raised": bool}."""
    try:
        template = env.from_string(source)
    except Exception as e:  # syntax errors
        return {"error": str(e), "error_type": type(e).__name__, "raised": False}
    try:
        return {"output": template.render(**context)}
    except jinja2.exceptions.TemplateError as e:
        # raise_exception raises the TemplateError base class itself; jinja2's own errors are
        # its subclasses (UndefinedError, SecurityError, ...).
        raised = type(e) is jinja2.exceptions.TemplateError
        return {"error": str(e), "error_type": type(e).__name__, "raised": raised}
    except Exception as e:
        return {"error": str(e), "error_type": type(e).__name__, "raised": False}


def chat_context(case, special_tokens):
    """The variables apply_chat_template renders with."""
    context = dict(special_tokens)
    extra = dict(case.get("extra", {}))
    context["tools"] = extra.pop("tools", None)
    context["documents"] = extra.pop("documents", None)
    context.update(extra)
    context["messages"] = case["messages"]
    context["add_generation_prompt"] = case["add_generation_prompt"]
    return context


def build():
    env = make_environment()
    with open(os.path.join(DATA, "cases.json"), encoding="utf-8") as f:
        chat = json.load(f)
    with open(os.path.join(DATA, "language_cases.json"), encoding="utf-8") as f:
        language = json.load(f)
    result = {"chat": [], "language": []}
    templates = sorted(n for n in os.listdir(DATA) if n.endswith(".jinja"))
    for name in templates:
        if name not in chat["templates"]:
            sys.exit(f"{name}: add its special tokens to cases.json \"templates\"")
        with open(os.path.join(DATA, name), encoding="utf-8", newline="") as f:
            source = f.read()
        for case in chat["cases"]:
            entry = {"template": name, "case": case["name"]}
            entry.update(render(env, source, chat_context(case, chat["templates"][name])))
            result["chat"].append(entry)
    for case in language["cases"]:
        entry = {"name": case["name"]}
        entry.update(render(env, case["template"], case.get("context", {})))
        result["language"].append(entry)
    return result


def against_transformers():
    """Renders the chat cases with transformers and compares with expected.json."""
    import transformers
    from transformers.utils import chat_template_utils as ctu

    # strftime_now reads the clock: pin it to the fixtures' instant where the module allows.
    class FixedDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return FIXED_NOW

    if hasattr(ctu, "datetime"):
        if isinstance(ctu.datetime, type):
            ctu.datetime = FixedDatetime
        else:
            ctu.datetime.datetime = FixedDatetime
    if hasattr(ctu, "_compile_jinja_template") and hasattr(ctu._compile_jinja_template, "cache_clear"):
        ctu._compile_jinja_template.cache_clear()

    with open(os.path.join(DATA, "cases.json"), encoding="utf-8") as f:
        chat = json.load(f)
    with open(os.path.join(DATA, "expected.json"), encoding="utf-8") as f:
        expected = {(e["template"], e["case"]): e for e in json.load(f)["chat"]}
    cases = {c["name"]: c for c in chat["cases"]}
    compared = same = 0
    differences = []
    for (name, case_name), want in sorted(expected.items()):
        case = cases[case_name]
        with open(os.path.join(DATA, name), encoding="utf-8", newline="") as f:
            source = f.read()
        # The variables the fixtures render with; transformers takes the first four as arguments.
        kwargs = chat_context(case, chat["templates"][name])
        messages = kwargs.pop("messages")
        tools = kwargs.pop("tools")
        documents = kwargs.pop("documents")
        add_generation_prompt = kwargs.pop("add_generation_prompt")
        try:
            if hasattr(ctu, "render_jinja_template"):  # transformers >= 4.51
                rendered, _ = ctu.render_jinja_template(
                    conversations=[messages], tools=tools, documents=documents,
                    chat_template=source, add_generation_prompt=add_generation_prompt, **kwargs)
                got = {"output": rendered[0]}
            else:  # older: what apply_chat_template did itself
                got = {"output": ctu._compile_jinja_template(source).render(
                    messages=messages, tools=tools, documents=documents,
                    add_generation_prompt=add_generation_prompt, **kwargs)}
        except Exception as e:  # template errors, raise_exception
            got = {"error": str(e), "error_type": type(e).__name__}
        compared += 1
        if "output" in want:
            ok = got.get("output") == want["output"]
        else:  # both must fail; raise_exception messages must match
            ok = "error" in got and (not want.get("raised") or got["error"] == want["error"])
        if ok:
            same += 1
        else:
            differences.append((name, case_name, want, got))
    print(f"transformers {transformers.__version__}: {same} of {compared} chat cases agree "
          f"with expected.json")
    for name, case_name, want, got in differences:
        print(f"- {name} / {case_name}:\n  expected {json.dumps(want, ensure_ascii=False)}"
              f"\n  transformers {json.dumps(got, ensure_ascii=False)}")
    return 0 if not differences else 1


def dump(result):
    return json.dumps(result, indent=1, ensure_ascii=False) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=os.path.join(DATA, "expected.json"))
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed expected.json instead of writing")
    parser.add_argument("--against-transformers", action="store_true",
                        help="compare expected.json with transformers' own rendering")
    args = parser.parse_args()
    if args.against_transformers:
        return against_transformers()
    text = dump(build())
    if args.check:
        with open(os.path.join(DATA, "expected.json"), encoding="utf-8") as f:
            if f.read() != text:
                print("tests/data/chat_templates/expected.json is stale: run "
                      "tools/make_chat_template_fixtures.py", file=sys.stderr)
                return 1
        return 0
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
