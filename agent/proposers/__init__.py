"""Proposers: everything that emits candidate programs (LLM, DARTS/EdgeNES, RACHEL, closed form, baselines)."""
from agent.proposers.base import (PROPOSERS, Candidate, LoopResources, ProposalContext, Proposer, ProgramRecord, make_proposer,
                                  register_proposer)

__all__ = ["PROPOSERS", "Candidate", "LoopResources", "ProposalContext", "Proposer", "ProgramRecord", "make_proposer",
           "register_proposer"]
