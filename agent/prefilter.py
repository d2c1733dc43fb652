"""The cheap pre-filter before the sandbox: parses, has build_model, size caps, novelty."""
from __future__ import annotations

import ast
from dataclasses import dataclass

from agent.config import NoveltyConfig, PrefilterConfig
from agent.novelty import NoveltyFilter
from evaluator.failures import FailureReason
from evaluator.parse_lock import parse_python


@dataclass(frozen=True)
class PrefilterVerdict:
    passed: bool
    reason: FailureReason | None = None
    detail: str = ""
    similarity: float = 0.0
    nearest_id: int | None = None


class Prefilter:
    def __init__(self, *, config: PrefilterConfig = PrefilterConfig(), novelty: NoveltyConfig = NoveltyConfig()) -> None:
        self.config, self.novelty_config = config, novelty
        self.novelty = NoveltyFilter(threshold=novelty.threshold, num_perm=novelty.num_perm, shingle=novelty.shingle)

    def check(self, source: str) -> PrefilterVerdict:
        size, lines = len(source.encode()), source.count("\n") + 1
        if size > self.config.max_bytes or lines > self.config.max_lines:
            return PrefilterVerdict(False, FailureReason.too_large,
                                    f"{size} bytes / {lines} lines > caps {self.config.max_bytes} / {self.config.max_lines}")
        try:
            tree = parse_python(source)
        except (SyntaxError, ValueError) as exc:
            return PrefilterVerdict(False, FailureReason.syntax_error, f"{exc.__class__.__name__}: {exc}")
        if not any(isinstance(n, (ast.FunctionDef, ast.Assign)) and _defines_build_model(n) for n in tree.body):
            return PrefilterVerdict(False, FailureReason.missing_build_model, "no top-level build_model")
        if self.novelty_config.enabled:
            verdict = self.novelty.check(source)
            if not verdict.novel:
                return PrefilterVerdict(False, FailureReason.duplicate,
                                        f"estimated Jaccard {verdict.similarity:.3f} ≥ {self.novelty_config.threshold}"
                                        f" to candidate {verdict.nearest_id}",
                                        similarity=verdict.similarity, nearest_id=verdict.nearest_id)
            return PrefilterVerdict(True, similarity=verdict.similarity, nearest_id=verdict.nearest_id)
        return PrefilterVerdict(True)

    def archive(self, program_id: int, source: str) -> None:
        self.novelty.add(program_id, source)


def _defines_build_model(node: ast.AST) -> bool:
    if isinstance(node, ast.FunctionDef):
        return node.name == "build_model"
    return any(isinstance(t, ast.Name) and t.id == "build_model" for t in node.targets)
