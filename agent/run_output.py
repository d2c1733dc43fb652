"""Where a run's output goes while ``ensnas run``/``resume`` works.

The terminal gets ensnas's own log lines (loggers ``ensnas``, ``agent.*``, ``evaluator.*``,
``sandbox.*``) and the live progress line (agent/progress.py). Everything else goes to
``RUN/ensnas.log`` only: other libraries' log records, Python warnings (``FutureWarning`` and
friends), and whatever is printed or drawn on stdout/stderr from Python while the run works
(transformers' ``{'loss': …}`` dicts, tqdm bars, GGUF de-quantising bars). The log file gets
ensnas's lines too, with time stamps, so it is the whole story of the run. Every line passes
through the sanitiser (agent/safe_text.py).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from agent import progress
from agent.safe_text import SafeFormatter

LOG_NAME = "ensnas.log"
OURS = ("ensnas", "agent", "evaluator", "sandbox", "theory", "prompts")
# Libraries that draw bars on their own: off (their text would only clutter the log file).
QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


class _Ours(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".")[0] in OURS


class _LibraryLoggers:
    """Libraries such as transformers give their own logger a stderr handler and turn propagation
    off, so their records would bypass the root's handlers (and the redirect: the handler holds the
    real stderr). For the run, such loggers propagate to the root and their own handlers are set
    aside. A library imported later in the run does this when ensnas imports it (the transformers
    backend calls `transformers.utils.logging.enable_propagation()`)."""

    def __init__(self) -> None:
        self.saved: dict[str, tuple[list[logging.Handler], bool]] = {}

    def refresh(self) -> None:
        loggers = logging.root.manager.loggerDict
        for name, logger in list(loggers.items()):
            if (isinstance(logger, logging.Logger) and name not in self.saved and name.split(".")[0] not in OURS
                    and not logger.propagate):
                self.saved[name] = (logger.handlers[:], logger.propagate)
                logger.handlers, logger.propagate = [], True

    def restore(self) -> None:
        for name, (handlers, propagate) in self.saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = handlers, propagate
        self.saved.clear()


@contextlib.contextmanager
def run_output(run_dir: Path, *, verbose: bool = False, quiet: bool = False):
    """Route output for the duration of a run (the run directory must exist). Yields the log path."""
    log_path = Path(run_dir) / LOG_NAME
    # kept open for the life of the process: a library handler created during the run holds it
    log_file = open(log_path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
    to_file = logging.StreamHandler(log_file)
    to_file.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = progress.console_handler(sys.stderr)
    console.setFormatter(SafeFormatter("%(message)s"))
    console.addFilter(_Ours())
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {k: os.environ.get(k) for k in QUIET_ENV}
    libraries = _LibraryLoggers()
    libraries.refresh()
    root.handlers = [to_file, console]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    os.environ.update(QUIET_ENV)
    logging.captureWarnings(True)
    progress.configure(enabled=False if quiet else None, stream=sys.stderr)
    try:
        with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
            yield log_path
    finally:
        progress.configure(enabled=False)
        logging.captureWarnings(False)
        libraries.restore()
        root.handlers, level, env = saved[0], saved[1], saved[2]
        root.setLevel(level)
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        log_file.flush()
