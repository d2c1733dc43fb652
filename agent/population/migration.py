"""Ring migration between islands: every n cycles the error-best member of island i is offered to
island (i + 1) mod k. The copy enters through the target's ordinary archive update (it may be
dominated there), so migration never bypasses dominance, and islands stay isolated in between."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from agent.population.pareto import Member, error_best


@dataclass(frozen=True)
class Migration:
    member: Member
    source: int
    target: int


def due(cycle: int, every: int, islands: int) -> bool:
    return islands > 1 and every > 0 and cycle > 0 and cycle % every == 0


def plan_migrations(archives: Sequence[Sequence[Member]]) -> list[Migration]:
    """One migrant per non-empty island, taken from the archives as they were before any moved
    (so a migrant is not forwarded twice in one round); members the target already holds are skipped."""
    k = len(archives)
    out = []
    for source, archive in enumerate(archives):
        if not archive or k < 2:
            continue
        target = (source + 1) % k
        best = error_best(archive)
        if all(m.id != best.id for m in archives[target]):
            out.append(Migration(member=best, source=source, target=target))
    return out
