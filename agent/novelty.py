"""MinHash-Jaccard novelty filter (docs/theory.md T6.5): zero model calls, checked before evaluation.

Programs are compared as sets of token shingles (Python tokens, comments and whitespace
dropped, so reformatting does not make a program "new"). Locality-sensitive hashing finds
candidate neighbours among every archived program; the estimated Jaccard confirms them.
"""
from __future__ import annotations

import io
import tokenize
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH

SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
        tokenize.ENCODING, tokenize.ENDMARKER}


def tokens(source: str) -> list[str]:
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in SKIP]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source.split()  # unparsable text still gets a fingerprint


def shingles(source: str, k: int) -> set[str]:
    toks = tokens(source)
    if len(toks) < k:
        return {" ".join(toks)}
    return {" ".join(toks[i : i + k]) for i in range(len(toks) - k + 1)}


def exact_jaccard(a: str, b: str, k: int = 5) -> float:
    sa, sb = shingles(a, k), shingles(b, k)
    return len(sa & sb) / max(1, len(sa | sb))


@dataclass(frozen=True)
class NoveltyVerdict:
    novel: bool
    nearest_id: int | None
    similarity: float        # estimated Jaccard to the nearest archived program (0 if none)


class NoveltyFilter:
    def __init__(self, *, threshold: float = 0.9, num_perm: int = 128, shingle: int = 5) -> None:
        self.threshold, self.num_perm, self.shingle = threshold, num_perm, shingle
        # LSH at a slightly lower threshold so borderline neighbours are found, then confirmed
        self.lsh = MinHashLSH(threshold=max(0.05, threshold - 0.1), num_perm=num_perm)
        self.hashes: dict[int, MinHash] = {}

    def signature(self, source: str) -> MinHash:
        m = MinHash(num_perm=self.num_perm, seed=1)
        for s in shingles(source, self.shingle):
            m.update(s.encode())
        return m

    def check(self, source: str) -> NoveltyVerdict:
        sig = self.signature(source)
        best_id, best = None, 0.0
        for key in self.lsh.query(sig):
            sim = sig.jaccard(self.hashes[key])
            if sim > best:
                best_id, best = key, sim
        return NoveltyVerdict(novel=best < self.threshold, nearest_id=best_id, similarity=best)

    def add(self, program_id: int, source: str) -> None:
        if program_id in self.hashes:
            return
        sig = self.signature(source)
        self.hashes[program_id] = sig
        self.lsh.insert(program_id, sig)

    def __len__(self) -> int:
        return len(self.hashes)
