"""The ``salesrules`` command: check, schema, decide, test, simulate, compare, demo.

Exit codes: 0 success (``check``: no errors; warnings alone pass unless ``--strict``),
1 the policy or request has errors (or a scenario failed), 2 usage errors, 130 interrupted.

``decide`` reads one JSON request (a file or ``-`` for stdin) and writes the decision as JSON,
so a CRM written in any language can use salesrules as a subprocess::

    echo '{"policy": "rules", "kind": "deadline", "now": "2026-10-09T17:00:00+08:00",
           "start": "2026-10-09T17:00:00+08:00", "duration": "1 business day"}' \\
      | salesrules decide -

A bad request prints ``{"error": {...}}`` on stdout (and the message on stderr) and exits 1.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from salesrules.errors import PolicyError, RecordError, SalesRulesError

__all__ = ["main"]


def _cmd_check(args: argparse.Namespace) -> int:
    from salesrules.policy import load_policy

    try:
        policy = load_policy(args.path, strict=args.strict)
    except PolicyError as exc:
        if args.format == "json":
            print(json.dumps([i.to_dict() for i in exc.issues], ensure_ascii=False, indent=2))
        else:
            for issue in exc.issues:
                print(issue.render())
            print(exc.render().splitlines()[0], file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps([i.to_dict() for i in policy.warnings], ensure_ascii=False, indent=2))
    else:
        for issue in policy.warnings:
            print(issue.render())
        n = len(policy.warnings)
        sections = ", ".join(policy.section_names) or "no sections"
        tail = f", {n} warning{'s' if n != 1 else ''}" if n else ""
        print(f"ok: {args.path} ({sections}; digest {policy.digest[:12]}{tail})")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from salesrules.policy import policy_json_schema

    text = json.dumps(policy_json_schema(), ensure_ascii=False, indent=2, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def _error_json(kind: str, message: str, **extra: Any) -> str:
    return json.dumps({"error": {"type": kind, "message": message, **extra}}, ensure_ascii=False)


def _cmd_decide(args: argparse.Namespace) -> int:
    from salesrules.policy import load_policy

    try:
        raw = sys.stdin.read() if args.request in (None, "-") else Path(args.request).read_text(
            encoding="utf-8"
        )
    except OSError as exc:
        print(f"salesrules decide: cannot read request: {exc}", file=sys.stderr)
        return 2
    try:
        request = json.loads(raw)
    except json.JSONDecodeError as exc:
        print(_error_json("request", f"not valid JSON: {exc}"))
        print(f"salesrules decide: request is not valid JSON: {exc}", file=sys.stderr)
        return 1
    if not isinstance(request, dict):
        print(_error_json("request", "a request must be a JSON object"))
        return 1
    policy_path = args.policy or request.get("policy")
    if not policy_path:
        print(_error_json("request", "no policy: pass --policy or a 'policy' field"))
        print("salesrules decide: no policy given", file=sys.stderr)
        return 1
    if args.explain:
        request["explain"] = True
    try:
        policy = load_policy(policy_path)
        decision = policy.decide(request)
    except PolicyError as exc:
        print(_error_json("policy", exc.render(), issues=[i.to_dict() for i in exc.issues]))
        print(exc.render(), file=sys.stderr)
        return 1
    except RecordError as exc:
        print(_error_json("record", str(exc), record=exc.record, field=exc.field))
        print(f"salesrules decide: {exc}", file=sys.stderr)
        return 1
    print(decision.to_json(indent=args.indent))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from salesrules.policy import load_policy

    rules = Path(args.rules)
    examples = Path(args.examples)
    print(f"== salesrules demo: the bundled policy in {rules}/ ==")
    try:
        policy = load_policy(rules, strict=True)
    except PolicyError as exc:
        print(exc.render())
        return 1
    print(f"loaded {len(policy.sources)} files, sections: {', '.join(policy.section_names)}")
    print(f"digest {policy.digest}; zero errors, zero warnings (strict)")
    order = [
        "calendar_demo.py",
        "assignment_demo.py",
        "timeouts_demo.py",
        "stages_demo.py",
        "splits_demo.py",
        "handoff_demo.py",
        "simulate_demo.py",
    ]
    for name in order:
        script = examples / name
        if not script.exists():
            continue
        print(f"\n== {name} ==", flush=True)
        module = runpy.run_path(str(script), run_name="salesrules_demo")
        main = module.get("main")
        if callable(main):
            main()
    return 0


def _delegate(module: str, func: str, argv: Sequence[str]) -> int:
    import importlib

    mod = importlib.import_module(module)
    fn = getattr(mod, func, None)
    if fn is None:
        print(f"salesrules: this build has no '{module}.{func}'", file=sys.stderr)
        return 2
    result: int = fn(list(argv))
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="salesrules",
        description="Declarative CRM sales rules as pure, explainable decisions.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="validate a rule file or folder; print every issue")
    c.add_argument("path")
    c.add_argument("--strict", action="store_true", help="treat warnings as errors")
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.set_defaults(func=_cmd_check)

    s = sub.add_parser("schema", help="print the JSON Schema of the rule-file format")
    s.add_argument("--out", help="write to this file instead of stdout")
    s.set_defaults(func=_cmd_schema)

    d = sub.add_parser("decide", help="decide one JSON request (file or - for stdin)")
    d.add_argument("request", nargs="?", default="-")
    d.add_argument("--policy", help="policy file or folder (overrides the request's 'policy')")
    d.add_argument("--explain", action="store_true", help="include the trace")
    d.add_argument("--indent", type=int, default=None)
    d.set_defaults(func=_cmd_decide)

    m = sub.add_parser("demo", help="run the main job on the bundled policy and examples")
    m.add_argument("--rules", default="rules")
    m.add_argument("--examples", default="examples")
    m.set_defaults(func=_cmd_demo)

    for name, module, func, text in (
        ("test", "salesrules.testing", "cli_test", "run scenario files"),
        ("simulate", "salesrules.simulate", "cli_simulate", "replay a history"),
        ("compare", "salesrules.simulate", "cli_compare", "compare two policies on a history"),
    ):
        x = sub.add_parser(name, help=text, add_help=False)
        x.add_argument("rest", nargs=argparse.REMAINDER)
        x.set_defaults(func=None, delegate=(module, func))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        if args_list and args_list[0] in ("test", "simulate", "compare"):
            ns = parser.parse_args(args_list[:1])
            module, func = ns.delegate
            return _delegate(module, func, args_list[1:])
        args = parser.parse_args(args_list)
        code: int = args.func(args)
        return code
    except SystemExit as exc:  # argparse usage errors exit 2
        return int(exc.code) if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SalesRulesError as exc:
        print(f"salesrules: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
