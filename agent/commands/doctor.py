"""`ensnas doctor`: what this machine can run, in one screen (sandbox, generator, datasets, memory)."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check the sandbox, generator, datasets and memory in one screen")
    p.add_argument("--generator", help="check this generator instead of the default")
    p.add_argument("--sandbox", default="auto", help="the backend a run would ask for (default: auto)")
    p.add_argument("--no-verify", action="store_true", help="skip the model checksum (it reads every byte)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=run)


def run(args) -> int:
    from agent.doctor import all_rows
    from agent.safe_text import safe_line
    rows = all_rows(generator=args.generator, sandbox=args.sandbox, verify=not args.no_verify)
    blocking = [r for r in rows if r.required and r.ok is False]
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
        return 2 if blocking else 0
    group = None
    for r in rows:
        mark = {True: "ok ", False: "NO ", None: "   "}[r.ok]
        head = f"{r.group:<10}" if r.group != group else " " * 10
        group = r.group
        print(safe_line(f"{head} {mark} {r.name:<16} {r.text}"))
    if blocking:
        print("not ready: " + "; ".join(f"{r.group} {r.name}" for r in blocking) + " (see above)")
        return 2
    print("ready: `ensnas run` will work here")
    return 0
