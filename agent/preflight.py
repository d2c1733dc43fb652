"""Setup checks that run before a run directory exists or anything trains (`ensnas run`,
`resume`, `doctor`): the task and its data, the proposers, the generator, the sandbox.

Each check raises one typed error naming what is wrong and how to fix it, within seconds,
so a bad flag never leaves a dead run directory behind.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agent.config import RunConfig
from evaluator.failures import ConfigError, SandboxUnavailable

SANDBOX_WHAT = {"docker": "Docker: one throw-away container per evaluation",
                "process": "namespaces + rlimits, no daemon",
                "subprocess": "own process group and a timeout only: NOT isolated, for development"}


@dataclass(frozen=True)
class SandboxChoice:
    backend: str
    reason: str

    def line(self) -> str:
        return f"sandbox: {self.backend} ({self.reason})"


@dataclass
class Preflight:
    task: object
    sandbox: SandboxChoice
    generator: str | None                   # what will write the LLM proposals, when an llm proposer runs
    warnings: list[str] = field(default_factory=list)


def choose_sandbox(requested: str) -> SandboxChoice:
    """The backend a run will use, and why, said in words. ``auto`` takes the strongest available."""
    from sandbox.base import make_sandbox
    from sandbox.select import AUTO_ORDER
    if requested != "auto":
        make_sandbox(requested).check_available()   # SandboxUnavailable / ConfigError (unknown name)
        return SandboxChoice(requested, f"{SANDBOX_WHAT.get(requested, requested)}; chosen with --sandbox")
    refused = []
    for name in AUTO_ORDER:
        try:
            make_sandbox(name).check_available()
        except (SandboxUnavailable, ConfigError) as exc:
            refused.append(f"{name}: {_short(exc)}")
            continue
        why = SANDBOX_WHAT.get(name, name)
        if refused:
            why += "; " + "; ".join(refused) + f": using the {name} sandbox"
        return SandboxChoice(name, why)
    raise SandboxUnavailable("no sandbox backend works here: " + "; ".join(refused))


def _short(exc: Exception) -> str:
    text = str(exc).split("\n")[0]
    return text if len(text) < 200 else text[:197] + "…"


def check_task(config: RunConfig, *, load_data: bool = True):
    """The task exists, its seed program reads, and its data loads (into the shared cache)."""
    from evaluator.tasks import get_task
    task = get_task(config.task, data_path=config.data_path)
    task.seed_source()
    if config.data_path and not Path(config.data_path).expanduser().exists():
        raise ConfigError(f"--data-path {config.data_path} does not exist")
    if load_data:
        from evaluator.task_data import materialize
        materialize(task)   # a missing dataset or package fails here, in seconds, with its fix
    return task


def check_proposers(config: RunConfig) -> None:
    from agent.proposers.base import PROPOSERS
    for spec in config.proposers:
        if spec.name not in PROPOSERS:
            raise ConfigError(f"unknown proposer {spec.name!r}; known: {', '.join(PROPOSERS.names())}")


def uses_generator(config: RunConfig) -> bool:
    return any(spec.name == "llm" for spec in config.proposers)


def check_generator(config: RunConfig) -> tuple[str, list[str]]:
    """The generator of the llm proposer: (description, warnings); ConfigError when unusable.
    A URL is checked for form only (it is not contacted)."""
    gen = dict(config.generator)
    for spec in config.proposers:           # a proposer's own generator config wins
        if spec.name == "llm" and spec.options.get("generator"):
            gen.update(spec.options["generator"])
    backend, model = gen.get("backend", "llama_cpp"), gen.get("model")
    if backend == "openai":
        spec = gen.get("base_url") or "http://127.0.0.1:8000/v1"
    else:
        spec = model
    try:
        from agent.generators.catalogue import check_generator as catalogue_check
    except ImportError:
        catalogue_check = None
    if catalogue_check is not None:
        check = catalogue_check(spec, chat_template=gen.get("chat_template"), verify_checksum=False)
        if not check.ok:
            raise ConfigError(f"generator {spec or '(default)'}: " + "; ".join(check.problems))
        where = f", {check.path}" if check.path and check.path != check.spec else ""
        return f"{check.spec} ({check.kind}{where}; {backend} backend)", list(check.warnings)
    return _check_generator_files(backend, spec), []


def _check_generator_files(backend: str, spec: str | None) -> str:
    """Without the model catalogue: the file or directory exists and a .gguf has the GGUF magic."""
    import urllib.parse
    if backend == "openai":
        url = urllib.parse.urlsplit(spec or "")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"generator URL {spec!r} is not an http(s)://host[:port]/v1 URL")
        return f"openai-compatible server at {spec} (not contacted)"
    if spec is None:
        from agent.generators.base import bundled_gguf
        try:
            path = bundled_gguf()
        except Exception as exc:  # GeneratorUnavailable: the bundled model's package is missing
            raise ConfigError(f"the default generator is not installed: {exc}") from exc
    else:
        path = Path(spec).expanduser()
    if not path.exists():
        raise ConfigError(f"generator {spec}: {path} does not exist")
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ConfigError(f"generator {spec}: {path} is not a GGUF file (no GGUF magic at its start)")
    elif not (path / "config.json").is_file() and not list(path.glob("*.gguf")):
        raise ConfigError(f"generator {spec}: {path} has neither a config.json (Hugging Face checkpoint) nor a .gguf")
    return f"{backend} {path}"


def preflight(config: RunConfig, *, sandbox: str | None = None, load_data: bool = True) -> Preflight:
    """Every setup check, cheapest first; raises the first typed error."""
    task = check_task(config, load_data=False)
    check_proposers(config)
    generator, warnings = (check_generator(config) if uses_generator(config) else (None, []))
    choice = choose_sandbox(sandbox or config.sandbox.backend)
    if load_data:
        check_task(config, load_data=True)
    return Preflight(task=task, sandbox=choice, generator=generator, warnings=warnings)
