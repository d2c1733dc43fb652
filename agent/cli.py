"""`ensnas` command line. Library code raises typed errors; only this module turns them into
messages and exit codes (0 ok, 1 the candidate/run failed on its merits, 2 usage or setup error)."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from agent.safe_text import SafeFormatter, safe_text
from evaluator.failures import EnsnasError, EvaluationFailed

COMMANDS = ["run", "inspect", "report", "export", "predict", "evaluate", "compare", "models", "doctor"]  # module names under agent.commands, in help order


DESCRIPTION = ("Search neural architectures and the ensembles they are deployed in: a local LLM\n"
               "proposes code edits, every candidate runs in a sandbox, and one is accepted only\n"
               "when the deployed M-member ensemble provably improves.")
EPILOG = ("exit codes: 0 ok, 1 the candidate or run failed on its merits, 2 a usage or setup error.\n"
          "`ensnas COMMAND --help` for one command; README.md for the whole picture.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ensnas", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"agent.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(message)s"))  # log lines echo candidate and model text
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    try:
        return int(args.handler(args) or 0)
    except EvaluationFailed as exc:
        print(safe_text(f"ensnas: evaluation failed [{exc.reason.value}]: {exc.detail}"), file=sys.stderr)
        return 1
    except EnsnasError as exc:
        print(safe_text(f"ensnas: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ensnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
