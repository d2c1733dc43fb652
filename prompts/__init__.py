"""Prompt templates for the LLM generator, rendered with Jinja2.

The templates are plain files in ``prompts/templates/`` that a user can edit, or override one
by one: a ``prompts_dir`` given to :class:`PromptRenderer` is searched first, so a file
``propose.j2`` there replaces the bundled one and everything else falls back to the bundle.

Templates and what they receive:

- ``system.j2``: the role (no variables).
- ``propose.j2``: the first user turn; includes ``task.j2`` (task, metric, budget, contract),
  ``parent.j2`` (the parent, with line numbers in delta mode only: a whole-program answer would
  copy them, and its statistics), ``history.j2`` (recent accepted and rejected candidates with
  the reason), ``tried.j2`` (edits already tried on this parent, not to be repeated),
  ``hint.j2`` (an optional direction for this one answer) and ``format_<mode>.j2`` (the exact
  output format). The sections that change from one proposal to the next come last, so a
  server's prompt cache reuses the rest. Variables: task, members, mode, source,
  numbered_source, statistics, history, tried (list of {label, diff}), hint (str or None), and
  any ``extra`` keyword a caller passes (for templates it adds). The population search passes
  two: ``second`` (crossover: a second parent, rendered by ``crossover.j2``) and
  ``inspirations`` (other archive members, ``inspirations.j2``), each a dict from
  ``agent.proposers.llm.archive_view`` (id, error, params, ratios, diff against the parent).
- ``repair.j2``: the follow-up turn after a failed answer. Variables: mode, failure, detail.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from evaluator.failures import EnsnasError

TEMPLATES_DIR = Path(__file__).parent / "templates"


class PromptError(EnsnasError):
    """A template is missing, does not parse, or uses a variable the renderer does not provide."""


def numbered(source: str) -> str:
    """The parent as the prompt shows it: '  7 | code'."""
    lines = source.splitlines()
    width = len(str(len(lines)))
    return "\n".join(f"{i:>{width}} | {line}" for i, line in enumerate(lines, 1))


class PromptRenderer:
    """Renders chat messages (system + user turns) from the template files."""

    def __init__(self, *, prompts_dir: str | Path | None = None) -> None:
        search = [str(TEMPLATES_DIR)]
        if prompts_dir is not None:
            path = Path(prompts_dir)
            if not path.is_dir():
                raise PromptError(f"prompts_dir {path} is not a directory")
            search.insert(0, str(path))
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(search), undefined=jinja2.StrictUndefined,
                                      keep_trailing_newline=False, trim_blocks=False, autoescape=False)

    def render(self, name: str, **variables: Any) -> str:
        try:
            return self.env.get_template(name).render(**variables).strip() + "\n"
        except jinja2.TemplateNotFound as exc:
            raise PromptError(f"prompt template {exc.name!r} not found") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(f"prompt template {exc.name or name} line {exc.lineno}: {exc.message}") from exc
        except jinja2.UndefinedError as exc:
            raise PromptError(f"prompt template {name}: {exc.message}") from exc

    def proposal_messages(self, *, task: Any, source: str, mode: str, members: int,
                          statistics: dict[str, Any] | None = None, history: Sequence[Any] = (),
                          tried: Sequence[dict[str, str]] = (), hint: str | None = None,
                          **extra: Any) -> list[dict[str, str]]:
        """System + first user message for one proposal (`extra` reaches templates that add sections)."""
        user = self.render("propose.j2", task=task, members=members, mode=mode, source=source,
                           numbered_source=numbered(source), statistics=statistics or {}, history=list(history),
                           tried=list(tried), hint=hint, **extra)
        return [{"role": "system", "content": self.render("system.j2")}, {"role": "user", "content": user}]

    def repair_message(self, *, mode: str, failure: str, detail: str) -> dict[str, str]:
        """The user turn that feeds the exact error back to the model."""
        return {"role": "user", "content": self.render("repair.j2", mode=mode, failure=failure, detail=detail)}
