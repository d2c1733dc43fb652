"""`ensnas models`: the bundled generator checkpoints, whether they are installed, size, licence and
the edit validity measured for them (benchmarks/generator_validity.py)."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the bundled LLM checkpoints (use one with --generator NAME)")
    p.add_argument("--verify", action="store_true",
                   help="assemble installed models into the cache and check their SHA-256 (slow: reads every byte)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=run)


def rows(verify: bool = False) -> list[dict]:
    from agent.generators.catalogue import DEFAULT_MODEL, MODELS, check_generator
    out = []
    for name, model in MODELS.items():
        check = check_generator(name, verify_checksum=verify, chat_template="" if not model.chat_template else None)
        installed = not any("not installed" in p or "is version" in p for p in check.problems)
        status = ("ok" if check.ok else check.problems[0]) if installed else "not installed"
        out.append({"name": name, "default": name == DEFAULT_MODEL, "title": model.title, "installed": installed,
                    "status": status, "verified": verify and check.ok, "size_mb": round(model.size / 2**20),
                    "licence": model.licence, "chat_template": model.chat_template, "validity": model.validity,
                    "install": model.install_command, "path": check.path})
    return out


def run(args) -> int:
    table = rows(verify=args.verify)
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    width = max(len(r["name"]) for r in table) + 2
    for r in table:
        mark = "*" if r["default"] else " "
        state = ("verified" if r["verified"] else "installed") if r["installed"] and r["status"] == "ok" else \
            r["status"] if r["installed"] else "not installed"
        print(f"{mark} {r['name']:<{width}}{r['size_mb']:>6} MB  {state:<13} {r['licence']:<19} {r['title']}")
        if r["validity"]:
            print(f"  {'':<{width}}measured: {r['validity']}")
        if not r["chat_template"]:
            print(f"  {'':<{width}}base model without a chat template: needs generator.chat_template")
        if not r["installed"]:
            print(f"  {'':<{width}}install: {r['install']}")
    print("* default. Use one with: ensnas run --generator NAME")
    return 0
