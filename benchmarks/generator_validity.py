"""docs/theory.md T6.4 measured: validity and distinctness of the generator's edits, per model and mode.

Same parent (the digits task's seed program evaluator/programs/mlp.py), same prompts, N proposals
per variant through the real `llm` proposer with the repair loop on; the model (a catalogue name
or a .gguf) is served by the private llama.cpp server (`llama_cpp` backend, streamed answers,
adaptive deadline). Every answer's build validity is checked by Evaluator.check in the
`subprocess` sandbox (build, forward shape, parameter cap).

A variant is MODE/DIVERSITY:
  MODE       delta | full | delta-constrained (delta decoded under agent.delta_grammar)
  DIVERSITY  off       one temperature (--temperature), no "already tried" section, no hints
             on        rotating temperatures, the edits already tried on the parent shown as
                       "do not repeat" (its own earlier answers here); repeats passed on
             distinct  the proposer's defaults: `on` + lines tried `avoid_tried_lines` times closed
                       as grammar anchors + a repeated program re-drawn, then failed as duplicate
             hints     distinct + a rotating operator hint per proposal (OPERATOR_HINTS)

Repair off vs on comes from the same proposals (paired): "off" is each proposal's answer before
any repair turn (after the re-draws of repeated or, under the grammar, broken answers, which are
part of one answer), "on" its outcome after up to K repair turns; "single draw" is the first sample
alone. Rates per variant:
  parse-valid     the answer is in the required format (blocks / a code block found, not cut off)
  apply-valid     the edit applied and the new program parses and differs from the parent
                  (a duplicate of a known program counts as applied, not as build-valid)
  build-valid     ... and the sandbox build/shape/size check passes
  distinct valid  the number of different build-valid programs (agent.proposers.llm.program_key:
                  equal up to formatting and comments); the search needs ideas, not copies
A generator timeout counts as a failed proposal (it is not dropped). T6.4: P(valid) = (1-eps)^L,
fitted when both delta and full ran; `--reanalyze results.json` recomputes from stored outcomes.

    .venv/bin/python benchmarks/generator_validity.py --model qwen2.5-coder-0.5b --n 30 \
        --variants delta-constrained/off,delta-constrained/on,delta/on --name generator_validity_qwen2.5-coder-0.5b
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.generators import make_generator  # noqa: E402
from agent.proposers.base import ProgramRecord, ProposalContext  # noqa: E402
from agent.proposers.llm import OPERATOR_HINTS, LLMProposer, LLMProposerConfig, program_key  # noqa: E402
from benchmarks._common import print_table, write_result  # noqa: E402
from evaluator.evaluate import Evaluator  # noqa: E402
from evaluator.tasks import get_task  # noqa: E402
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
    apply = parse and failure in (None, "build_failed", "duplicate")
    return parse, apply, failure is None


def variant_config(mode: str, diversity: str, args) -> dict:
    """The llm proposer's config for MODE/DIVERSITY (see the module docstring)."""
    cfg: dict = {"mode": "full" if mode == "full" else "delta", "constrained": mode == "delta-constrained",
                 "repair_retries": args.repairs, "check_build": True, "prompts_dir": args.prompts_dir,
                 "max_blocks": args.max_blocks}
    legacy = {"avoid_tried_lines": 0, "reject_repeats": False}
    if diversity == "off":
        cfg.update(temperatures=[args.temperature], show_tried=0, hints=[], **legacy)
    elif diversity == "on":
        cfg.update(**legacy)
    elif diversity == "hints":
        cfg.update(hints=list(OPERATOR_HINTS))
    elif diversity != "distinct":
        raise SystemExit(f"unknown diversity {diversity!r} (off, on, distinct, hints)")
    if args.avoid_after is not None and diversity in ("distinct", "hints"):
        cfg["avoid_tried_lines"] = args.avoid_after
    return cfg


def run_variant(variant: str, args, evaluator: Evaluator, generator, task, checkpoint=lambda per: None) -> dict:
    mode, _, diversity = variant.partition("/")
    diversity = diversity or "off"
    max_tokens = args.full_tokens if mode == "full" else args.delta_tokens
    generator.config = generator.config.model_copy(update={"sampling": generator.config.sampling.model_copy(
        update={"max_new_tokens": max_tokens, "temperature": args.temperature})})
    proposer = LLMProposer(config=LLMProposerConfig.model_validate(variant_config(mode, diversity, args)),
                           generator=generator, evaluator=evaluator)
    ctx = ProposalContext(task=task, incumbent=ProgramRecord(id=1, source=task.seed_source(), status="accepted"),
                          history=[], elites=[], cycle=0, rng=np.random.default_rng(args.seed), members=task.members)
    per = []
    for i in range(args.n):
        start = time.perf_counter()
        (cand,) = proposer.propose(ctx, 1)
        wall = time.perf_counter() - start
        attempts = cand.meta["attempts"]
        first = [a for a in attempts if a.get("turn", a["attempt"]) == 0][-1]    # the answer before any repair
        last = attempts[-1]
        per.append({"first": classify(first), "final": classify(last), "first_failure": first["failure"],
                    "first_draw": classify(attempts[0]), "first_draw_failure": attempts[0]["failure"],
                    "redraws": sum(a["failure"] == "duplicate" for a in attempts),
                    "broken_redraws": sum(a["failure"] in ("syntax_error", "build_failed") and a.get("turn", 0) == 0
                                          and a is not first for a in attempts),
                    "windows": cand.meta.get("windows"),
                    "final_failure": cand.failure, "first_tokens": first["tokens"],
                    # the cost of the answer before repair: every draw of turn 0 (None: it timed out)
                    "first_seconds": None if first["seconds"] is None else
                    sum(a["seconds"] or 0.0 for a in attempts if a.get("turn", a["attempt"]) == 0),
                    "tokens": cand.meta["tokens"], "gen_seconds": cand.meta["seconds"], "wall_s": wall,
                    "attempts": len(cand.meta["attempts"]), "temperature": cand.meta.get("temperature"),
                    "hint": cand.meta.get("hint"), "program_key": cand.meta["program_key"],
                    "diff": cand.meta["diff"][:1500],
                    "first_answer": cand.meta["raw_outputs"][0][:600] if cand.meta["raw_outputs"] else ""})
        print(f"  {variant} {i + 1:3d}/{args.n}: first={first['failure'] or 'valid'} final={cand.failure or 'valid'} "
              f"tokens={first['tokens']} wall={wall:.1f}s", flush=True)
        checkpoint(per)
    return summarise(variant, mode, diversity, max_tokens, per, generator, proposer.stats)


def summarise(variant: str, mode: str, diversity: str, max_tokens: int, per: list[dict], generator, stats) -> dict:
    """Rates of one variant from its per-proposal records (also for a partial, interrupted run)."""
    n = len(per)

    def rates(key: str) -> dict:
        ks = [sum(p[key][j] for p in per) for j in range(3)]
        # distinct programs among the valid ones (repair off: those valid at the first answer)
        distinct = {p["program_key"] for p in per if p[key][2]}
        return {"parse_valid": ks[0] / n, "apply_valid": ks[1] / n, "build_valid": ks[2] / n,
                "build_valid_count": ks[2], "build_valid_ci95": wilson(ks[2], n), "distinct_valid": len(distinct)}

    def counts(key: str) -> dict:
        out: dict[str, int] = {}
        for p in per:
            out[p[key] or "valid"] = out.get(p[key] or "valid", 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    timed = [p["first_seconds"] for p in per if p["first_seconds"] is not None]   # a timeout has none
    return {"mode": mode, "diversity": diversity, "variant": variant, "n": n, "max_new_tokens": max_tokens,
            # single draw: the first sample alone, before any re-draw (of a repeat or a broken answer) or repair
            **({"single_draw": rates("first_draw"), "first_draw_failures": counts("first_draw_failure")}
               if all("first_draw" in p for p in per) else {}),
            "repair_off": rates("first"), "repair_on": rates("final"),
            "first_failures": counts("first_failure"), "final_failures": counts("final_failure"),
            "timeouts": sum(p["first_failure"] == "timeout" for p in per),
            "mean_emitted_tokens": float(np.mean([p["first_tokens"] for p in per])),
            "tokens_per_s": float(sum(p["tokens"] for p in per) / max(1e-9, sum(p["gen_seconds"] for p in per))),
            "decode_tokens_per_s": getattr(generator, "speeds", {}).get("decode_tokens_per_s"),
            "seconds_per_proposal_repair_off": float(np.mean(timed)) if timed else None,
            "seconds_per_proposal_repair_on": float(np.mean([p["wall_s"] for p in per])),
            "mean_attempts_repair_on": float(np.mean([p["attempts"] for p in per])),
            "proposer_stats": stats, "per_proposal": per}


LEVELS = {"apply": 1, "build": 2}   # index into the per-proposal (parse, apply, build) triples


def analyze(modes: dict) -> dict:
    """T6.4 fits and the delta-vs-full verdict (same diversity), for validity = apply- and build-valid."""
    pair = next(((modes[d], modes[f]) for d in modes for f in modes
                 if modes[d]["mode"] == "delta" and modes[f]["mode"] == "full"
                 and modes[d].get("diversity") == modes[f].get("diversity")), None)
    if pair is None:
        return {"t64_fit": {}, "verdict": {}}        # no delta/full pair: rates only
    d, f = pair
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
        for label in ("single_draw", "repair_off", "repair_on"):
            if label not in m:
                continue
            r = m[label]
            lo, hi = r["build_valid_ci95"]
            secs = {"repair_off": m["seconds_per_proposal_repair_off"],
                    "repair_on": m["seconds_per_proposal_repair_on"]}.get(label)
            rows.append([m.get("variant", m["mode"]), label.replace("_", " "), m["n"], f"{r['parse_valid']:.2f}",
                         f"{r['apply_valid']:.2f}", f"{r['build_valid']:.2f} [{lo:.2f},{hi:.2f}]",
                         r.get("distinct_valid", "-"), m.get("timeouts", 0), f"{m['mean_emitted_tokens']:.0f}",
                         f"{m['tokens_per_s']:.1f}", "-" if secs is None else f"{secs:.1f}"])
    print_table(["variant", "repair", "n", "parse-valid", "apply-valid", "build-valid [95% CI]", "distinct valid",
                 "timeouts", "mean tokens", "tok/s", "s/proposal"], rows)
    for level, fit in analysis["t64_fit"].items():
        print(f"T6.4 fit, valid = {level}-valid (first answers, both modes): eps = {fit['eps']:.5f}; predicted "
              f"delta {fit['predicted_delta']:.3f} vs observed {fit['observed_delta']:.3f}, full "
              f"{fit['predicted_full']:.3f} vs observed {fit['observed_full']:.3f}")
    for key, v in analysis["verdict"].items():
        print(f"{key}: delta {v['delta']:.2f} vs full {v['full']:.2f}; delta beats full: {v['delta_beats_full']} "
              f"(one-sided p delta>full = {v['p_delta_gt_full']:.3g}, full>delta = {v['p_full_gt_delta']:.3g})")
    for m in modes.values():
        print(f"{m.get('variant', m['mode'])} first-answer failures: {m['first_failures']}")
        print(f"{m.get('variant', m['mode'])} final failures (repair on): {m['final_failures']}")


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
    ap.add_argument("--model", default=None, help="catalogue name or .gguf (default: the catalogue's default)")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    ap.add_argument("--n", type=int, default=30, help="proposals per variant")
    ap.add_argument("--repairs", type=int, default=1, help="repair turns when the repair loop is on")
    ap.add_argument("--temperature", type=float, default=0.4, help="the one temperature of DIVERSITY=off")
    ap.add_argument("--delta-tokens", type=int, default=256)
    ap.add_argument("--full-tokens", type=int, default=512)
    ap.add_argument("--max-blocks", type=int, default=1, help="blocks the delta grammar admits")
    ap.add_argument("--avoid-after", type=int, default=None,
                    help="distinct/hints: close anchors changed this many times (default: the proposer's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="results name (default generator_validity_<model>)")
    ap.add_argument("--chat-template", default=None,
                    help="Jinja chat template file for a GGUF without one (prompts/chat_templates/gemma.jinja)")
    ap.add_argument("--prompts-dir", default=None, help="templates overriding prompts/templates (prompt variants)")
    ap.add_argument("--variants", default="delta-constrained/off,delta-constrained/on,delta/on",
                    help="comma-separated MODE/DIVERSITY (see the module docstring)")
    ap.add_argument("--reanalyze", type=Path, help="recompute fits/verdict of an existing results JSON and exit")
    args = ap.parse_args()
    if args.reanalyze:
        return reanalyze(args.reanalyze)
    from agent.generators.catalogue import DEFAULT_MODEL
    model = args.model or DEFAULT_MODEL
    name = args.name or f"generator_validity_{Path(model).stem if model.endswith('.gguf') else model}"
    torch.set_num_threads(1)
    task = get_task("digits")
    evaluator = Evaluator(task=task, sandbox=make_sandbox("subprocess"), limits=Limits(timeout_s=120))
    started, load_before = time.perf_counter(), os.getloadavg()
    template = Path(args.chat_template).read_text() if args.chat_template else None
    generator = make_generator({"backend": "llama_cpp", "model": model, "threads": args.threads,
                                "chat_template": template})
    modes = {}
    try:
        generator.generate([{"role": "user", "content": "hi"}])      # start + calibrate outside the timings
        for variant in args.variants.split(","):
            mode, _, diversity = variant.partition("/")

            def checkpoint(per, variant=variant, mode=mode, diversity=diversity or "off"):
                # a long run keeps what it measured, proposal by proposal
                tokens = args.full_tokens if mode == "full" else args.delta_tokens
                partial = {**modes, variant: summarise(variant, mode, diversity, tokens, per, generator, {})}
                write_result(name, {"partial": True, "loadavg": os.getloadavg(), "modes": partial})

            modes[variant] = run_variant(variant, args, evaluator, generator, task, checkpoint)
    finally:
        generator.close()
    analysis = analyze(modes)
    report(modes, analysis)
    scale = {"task": "digits", "parent": "evaluator/programs/mlp.py", "model": model,
             "generator": f"{model} via the llama_cpp backend (llama.cpp server from xllamacpp, streamed), "
                          f"{args.threads} thread(s)", "calibration": generator.calibration,
             "n_per_variant": args.n, "repair_turns": args.repairs, "temperature_off": args.temperature,
             "delta_max_new_tokens": args.delta_tokens, "full_max_new_tokens": args.full_tokens,
             "chat_template": args.chat_template, "max_blocks": args.max_blocks, "avoid_after": args.avoid_after, "sandbox": "subprocess, Evaluator.check",
             "prompts_dir": args.prompts_dir or "prompts/templates (bundled)",
             "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    path = write_result(name, {"scale": scale, "modes": modes, **analysis,
                               "wall_seconds": time.perf_counter() - started})
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
