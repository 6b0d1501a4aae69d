"""Command configs: the one place a command's defaults and their help live.

Each command's config is a dataclass whose fields are `setting(...)`s. The CLI builds its
options from them (cli/_common.option: the flag is the field's name, `--duration-s` for
`duration_s`, unless the setting names another), so a default is written once and a test can
check every flag against its field. Library callers build the same dataclass directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

DEFAULT_GAMMA = 7  # draft block size where a method takes one and nothing else sets it (serve, fit)
DEFAULT_MAX_CONCURRENCY_PER_GPU = 512  # sweep's concurrency range, per GPU of the instance
METHOD_NAMES = ("no-spec", "mtp-1", "dflash", "eagle3", "dspark")  # core.methods.METHODS, without importing numpy
DOMAINS = ("math", "code", "chat")  # the shipped workloads' and acceptance curves' domains
FIT_DOMAIN = "live"  # a fit's acceptance domain: whatever workload the load test sent

# `accept --protocol`: dsbench's own, or DeepSpec's eval.py exactly (deepspec-compat.md section 1)
PROTOCOLS = ("dsbench", "deepspec")
# defaults a protocol gives the fields left unset (None: a DeepSpec task's own count, else the whole file)
PROTOCOL_DEFAULTS = {
    "dsbench": {"samples": 20, "max_new_tokens": 256},
    "deepspec": {"samples": None, "max_new_tokens": 2048},
}
# DeepSpec's eval.py TASKS: file stem under its eval_datasets/ and the samples it keeps
DEEPSPEC_TASKS = {
    "gsm8k": 500,
    "math500": 500,
    "aime25": 30,
    "humaneval": 164,
    "mbpp": 256,
    "livecodebench": 500,
    "mt-bench": 80,
    "alpaca": 500,
    "arena-hard-v2": 500,
}
DTYPES = ("auto", "fp32", "bf16", "fp16")

# progress(label, done, total or None): what every long run reports as it goes
Progress = Callable[[str, int, "int | None"], None]

MISSING = dataclasses.MISSING


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    flag: str | None = None,
    short: str | None = None,
    panel: str | None = None,
    csv: type | None = None,
    argument: bool = False,
    factory=None,
) -> Any:
    """A config field: its default, the help the CLI shows, and how the CLI spells it.

    `csv` (int, float or str): the CLI takes a comma-separated list of that type; `flag`: the
    option's name when it is not the field's (`--workload` for `workloads`); `panel`: the help
    section; `argument`: a positional argument, not an option. A field without a default is
    required.
    """
    meta = {"help": help, "flag": flag, "short": short, "panel": panel, "csv": csv, "argument": argument}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (MISSING when it has none)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


# --------------------------------------------------------------------------- fit


@dataclass
class FitConfig:
    results: list[str] = setting(
        help="Load results (load.json or its directory), each optionally METHOD=PATH.", argument=True
    )
    method: str | None = setting(
        None, "Method of inputs given without METHOD= (points without speculative counters are no-spec)."
    )
    tile: int = setting(0, "GEMM tile in tokens for step-wise verification time (0: smooth).")
    flag_pct: float = setting(10.0, "Flag points the model misses by more than this many percent.")
    profile: str | None = setting(
        None,
        "Step-time profile: fit T_verify as a scale of its step times instead of the free "
        "form (how far the server is from the profile).",
    )
    acceptance: str | None = setting(None, "Acceptance curves giving tau for engines without speculative counters.")
    max_requests: int | None = setting(
        None,
        "Requests whose KV cache the served engine holds (e.g. vLLM's num_gpu_blocks x block_size / context): "
        "caps `sweep --fit` (default: the --profile's cap, else none).",
    )
    out: Path = setting(Path("dsbench-fit"), "Directory (or .json path) for fit.json.", short="-o", panel="Output")
    force: bool = setting(False, "Replace an earlier fit.json at --out.", panel="Output")

    def validate(self) -> None:
        if self.tile < 0 or not self.flag_pct > 0 or (self.max_requests is not None and self.max_requests < 1):
            raise InputError("--tile must be >= 0, --flag-pct > 0 and --max-requests >= 1")


# --------------------------------------------------------------------------- calibrate


@dataclass
class CalibrateConfig:
    acceptance: list[str] = setting(
        help="Measured DSpark acceptance file(s) or directory from dsbench accept. Repeatable."
    )
    holdout: float = setting(0.5, "Fraction of rounds held out to judge the calibration.")
    seed: int = setting(0, "Seed of the fit/held-out split.")
    out: Path = setting(Path("calibration.json"), "Calibration JSON to write.", short="-o", panel="Output")
    force: bool = setting(False, "Replace an earlier file at --out.", panel="Output")

    def validate(self) -> None:
        if not 0 < self.holdout < 1:
            raise InputError(f"--holdout must lie strictly between 0 and 1, got {self.holdout}")


# --------------------------------------------------------------------------- report


@dataclass
class ReportConfig:
    results: list[str] = setting(
        help="Result files or directories (searched recursively); each argument is one run, shown side by side.",
        argument=True,
    )
    title: str = setting("dsbench report", "Title of the report.")
    out: Path = setting(Path("report.html"), "HTML file to write.", short="-o", panel="Output")
    force: bool = setting(False, "Replace an earlier report at --out.", panel="Output")


# --------------------------------------------------------------------------- gate


@dataclass
class GateConfig:
    candidate: list[str] = setting(
        factory=list, help="Candidate results (files or directories); several = repeated runs.", argument=True
    )
    baseline: list[str] = setting(factory=list, help="Baseline results; repeat the option for repeated runs.")
    rules: str | None = setting(None, "Rules file (TOML or JSON): per-metric direction and tolerance, ignores.")
    max_drop_pct: float | None = setting(None, "Allowed drop of throughput and per-user speed, percent (default: 5).")
    allow_missing: bool = setting(False, "A metric the candidate lacks (a partial candidate's too) is not a failure.")
    alpha: float = setting(0.05, "Chance that an identical system fails the gate (family-wise, all metrics).")
    allow_different: bool = setting(
        False,
        "Compare runs that are not the same experiment (device, deployment, model, "
        "method, profile, workload, sampling); every row says so.",
    )
    run_noise_pct: float | None = setting(
        None,
        "Relative spread between runs to assume when no side has three runs to "
        "measure it, percent (`gate --plan` on three runs measures it).",
    )
    plan: bool = setting(
        False,
        "Size runs instead: what a gate against --baseline could resolve, and how much longer "
        "runs would resolve each tolerance.",
    )
    summary: Path | None = setting(
        None, "Also write the markdown table here (e.g. $GITHUB_STEP_SUMMARY).", panel="Output"
    )
    junit: Path | None = setting(None, "Write JUnit XML here.", panel="Output")

    def validate(self) -> None:
        if not self.baseline:
            raise InputError("give the baseline results: --baseline PATH (repeat it for repeated runs)")
        if self.max_drop_pct is not None and not self.max_drop_pct >= 0:
            raise InputError("--max-drop-pct must be >= 0")
        if self.run_noise_pct is not None and not self.run_noise_pct >= 0:
            raise InputError("--run-noise-pct must be >= 0")
        if not 0 < self.alpha < 1:
            raise InputError("--alpha must be between 0 and 1")
        if self.plan and self.candidate:
            raise InputError("--plan sizes runs from --baseline alone: give no candidate")
        if not self.plan and not self.candidate:
            raise InputError("give the candidate results to gate (or --plan to size runs from --baseline)")


ROOFLINE_DTYPES = ("bf16", "fp8", "fp4", "int4")  # core.roofline.WEIGHT_DTYPES, without importing numpy


# --------------------------------------------------------------------------- deployments


@dataclass
class DeploymentSettings:
    """The serving instance a roofline models (`profile --roofline`, `sweep --roofline`)."""

    gpus: int | None = setting(
        None, "GPUs in the serving instance (= tp x dp; default: tp x dp, 1).", panel="Deployment (roofline)"
    )
    tp: int | None = setting(
        None, "Tensor-parallel ranks (default: --gpus / --dp, so --gpus alone means TP).", panel="Deployment (roofline)"
    )
    dp: int | None = setting(
        None, "Data-parallel attention ranks, each serving 1/dp of the requests.", panel="Deployment (roofline)"
    )
    ep: int = setting(
        1,
        "Expert-parallel ranks the routed experts are split over (1: experts split tp ways).",
        panel="Deployment (roofline)",
    )
    kv_dtype: str = setting("bf16", "KV cache: bf16 or fp8.", panel="Deployment (roofline)")
    expert_imbalance: float = setting(
        1.0, "Tokens on the busiest expert-parallel rank over the mean (1: balanced).", panel="Deployment (roofline)"
    )

    def validate_deployment(self, dtype: str, roofline: bool) -> None:
        """Every deployment value checked; without a roofline none may be given (one device is measured)."""
        if not roofline:
            given = [f for f, v in (("--gpus", self.gpus), ("--tp", self.tp), ("--dp", self.dp)) if v is not None]
            given += [f for f, v, d in (("--ep", self.ep, 1), ("--kv-dtype", self.kv_dtype, "bf16")) if v != d]
            if given or self.expert_imbalance != 1.0:
                raise InputError(
                    f"{', '.join(given) or '--expert-imbalance'}: deployments are modelled, not measured: "
                    "use them with --roofline GPU"
                )
            return
        for flag, v in (("--gpus", self.gpus), ("--tp", self.tp), ("--dp", self.dp), ("--ep", self.ep)):
            if v is not None and v < 1:
                raise InputError(f"{flag} must be a whole number >= 1, got {v}")
        if dtype not in ("auto", *ROOFLINE_DTYPES):
            raise InputError(f"--dtype with --roofline must be auto or one of {', '.join(ROOFLINE_DTYPES)}")
        tp, dp = self.parallelism()
        if self.gpus is not None and tp * dp != self.gpus:
            raise InputError(f"--gpus {self.gpus} must equal --tp x --dp ({tp} x {dp} = {tp * dp})")

    def parallelism(self) -> tuple[int, int]:
        """(tp, dp) of the roofline instance from --gpus, --tp, --dp (--gpus alone: all TP)."""
        g, tp, dp = self.gpus, self.tp, self.dp
        if tp is None and dp is None:
            return (g or 1), 1
        if tp is None:
            return (max(1, g // dp) if g else 1), dp
        if dp is None:
            return tp, (max(1, g // tp) if g else 1)
        return tp, dp


# --------------------------------------------------------------------------- sweep


@dataclass
class SweepConfig(DeploymentSettings):
    """Inputs of one sweep. `profile`/`acceptance` are paths or shipped names; with `roofline`
    the profile is modelled in place (as `profile --roofline` would write it)."""

    slo: float = setting(80.0, "Per-user speed to promise, tokens/s per user.")
    profile: str = setting(
        "h100-qwen3-8b",
        "Profile JSON, or a shipped one by name (h100-qwen3-8b, h200-qwen3-8b, "
        "a100-qwen3-8b, b200-qwen3-8b, mi300x-qwen3-8b, l40s-qwen3-8b).",
        panel="Inputs",
    )
    roofline: str | None = setting(
        None,
        "Model this GPU (profiles/gpus.json) for --target instead of reading --profile; the deployment "
        "options apply, and the profile is written beside the sweep.",
        panel="Inputs",
    )
    target: str = setting("qwen3-8b", "Target model config for --roofline (a file or a shipped name).", panel="Inputs")
    context: int = setting(
        2048, "Context length (tokens) of every request with --roofline (--isl/--osl replace it).", panel="Inputs"
    )
    dtype: str = setting(
        "auto", "Weights with --roofline: bf16, fp8, fp4 (nvfp4) or int4 (auto: as the config ships).", panel="Inputs"
    )
    acceptance: str | None = setting(
        None, "Acceptance file or directory (default: shipped curves for the profile's model).", panel="Inputs"
    )
    domain: str = setting(
        "mix", "Traffic: math, code, chat, or mix (each request drawn from the three).", panel="Inputs"
    )
    isl: int | None = setting(
        None,
        "Prompt tokens per request; with --osl the KV read follows each request's growing context and "
        "arriving prompts are prefilled inside the step (roofline profiles).",
        panel="Traffic",
    )
    osl: int | None = setting(None, "Output tokens per request (with --isl).", panel="Traffic")
    lengths: str | None = setting(
        None,
        'JSONL of per-request lengths ({"input_tokens", "output_tokens"} per line) instead of --isl/--osl.',
        panel="Traffic",
    )
    fit: str | None = setting(
        None,
        "Fit file from `dsbench fit`: predict with the fitted step times and the measured "
        "acceptance instead of --profile (results are labelled predictions).",
        panel="Inputs",
    )
    methods: tuple[str, ...] = setting(METHOD_NAMES, "Comma-separated methods to compare.", csv=str)
    baseline: str = setting("mtp-1", "Method the ratios are taken against.")
    policy: str = setting("dspark", "DSpark verification policy: dspark, dspark-async, fixed[:l], threshold:t.")
    gamma: int | None = setting(
        None,
        "Draft block size for DFlash, Eagle3 and DSpark (MTP-1 always drafts 1) (default: search "
        "1..--max-gamma per method and report the best at the SLO; with --fit the length the fit measured).",
    )
    max_gamma: int = setting(8, "Longest draft the gamma search tries (capped at the acceptance curves' length).")
    max_concurrency: int | None = setting(
        None,
        f"Highest concurrency simulated (default: {DEFAULT_MAX_CONCURRENCY_PER_GPU} per GPU of the profile's "
        "instance; capped where the KV cache no longer fits).",
    )
    levels: int = setting(40, "Concurrency levels simulated between 1 and --max-concurrency.")
    samples: int = setting(
        20_000, "Request-rounds simulated per point (20,000: < 0.5 % Monte-Carlo error on throughput)."
    )
    seed: int = setting(0, "Random seed of the simulation.")
    out: Path = setting(
        Path("dsbench-out"), "Directory for frontier.png/.svg and sweep.json/.csv.", short="-o", panel="Output"
    )
    force: bool = setting(False, "Replace an earlier sweep in --out.", panel="Output")

    @property
    def draft_length(self) -> int:
        return DEFAULT_GAMMA if self.gamma is None else self.gamma

    def __post_init__(self):
        self.methods = tuple(self.methods)  # from the CLI a list; the default (every method) a tuple

    def validate(self):
        """The DSpark policy, parsed; every value checked (one line each)."""
        from .core.methods import METHODS
        from .core.policies import Policy

        self.validate_deployment(self.dtype, self.roofline is not None)
        if self.roofline is not None and (self.fit or self.context < 1):
            raise InputError("--roofline models a profile: not with --fit, and --context must be >= 1")
        if not self.slo > 0 or self.slo != self.slo or self.slo == float("inf"):
            raise InputError(f"--slo must be a positive number of tokens/s per user, got {self.slo}")
        if self.domain not in (*DOMAINS, "mix", FIT_DOMAIN):
            raise InputError(f"--domain must be one of math, code, chat, mix; got {self.domain!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise InputError(
                f"--methods: unknown method(s) {', '.join(unknown) or '(none given)'}; choose from "
                f"{', '.join(METHOD_NAMES)}"
            )
        if self.baseline not in self.methods:
            raise InputError(f"--baseline {self.baseline!r} is not among --methods ({', '.join(self.methods)})")
        if not 1 <= self.draft_length <= 64 or not 1 <= self.max_gamma <= 64:
            raise InputError(f"--gamma and --max-gamma must be between 1 and 64, got {self.gamma}, {self.max_gamma}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise InputError(f"--max-concurrency must be >= 1, got {self.max_concurrency}")
        if (self.isl is None) != (self.osl is None):
            raise InputError("give --isl and --osl together (prompt and output tokens per request)")
        if self.lengths and self.isl is not None:
            raise InputError("give --lengths FILE or --isl/--osl, not both")
        if self.isl is not None and (self.isl < 0 or self.osl < 1):
            raise InputError(f"--isl must be >= 0 and --osl >= 1 tokens, got {self.isl} and {self.osl}")
        if self.levels < 1 or self.samples < 100:
            raise InputError("--levels must be >= 1 and --samples >= 100")
        try:
            return Policy.parse(self.policy)
        except ValueError as e:
            raise InputError(f"--policy: {e}") from None


# --------------------------------------------------------------------------- profile

DRAFTERS = ("mtp-1", "eagle3", "dflash", "dspark")  # the methods with a drafter to time


@dataclass
class ProfileConfig(DeploymentSettings):
    target: str = setting(
        "qwen3-8b",
        "Target model: a Hugging Face config JSON, model folder, or a shipped config name "
        "(qwen3-4b, qwen3-8b, qwen3-14b, qwen3-30b-a3b).",
    )
    roofline: str | None = setting(None, "Model this GPU (from profiles/gpus.json) instead of measuring.")
    context: int = setting(2048, "Context length (tokens) of every request's KV cache.")
    dtype: str = setting(
        "auto",
        "Weights: measured bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on CPU); roofline bf16, fp8, fp4 "
        "(nvfp4) or int4 (default: fp8 for a config that ships fp8 weights, else bf16).",
    )
    device: str = setting("auto", "auto, cpu or cuda[:N].", panel="Measurement")
    batch_tokens: list[int] = setting(
        (1, 2, 4, 8, 16, 32, 64, 128),
        "Batch tokens B per verification pass, comma-separated.",
        panel="Measurement",
        csv=int,
    )
    concurrency: list[int] = setting(
        (1, 8),
        "Concurrent requests R (each with a KV cache of --context tokens), comma-separated.",
        panel="Measurement",
        csv=int,
    )
    layers: int | None = setting(
        None, "Profile K decoder layers (and 1) and extrapolate to full depth.", panel="Measurement"
    )
    repeats: int = setting(10, "Timed passes per point.", panel="Measurement")
    warmup_passes: int = setting(3, "Untimed passes per point before timing.", panel="Measurement")
    threads: int | None = setting(None, "CPU threads for torch (default: torch's).", panel="Measurement")
    cuda_graph: bool = setting(
        False, "Capture each pass in a CUDA graph and time its replay (CUDA only).", panel="Measurement"
    )
    draft: list[str] = setting(
        (),
        "Also measure drafter cost T_draft(R, gamma): comma-separated methods (mtp-1, eagle3, dflash, dspark) or all.",
        panel="Drafters",
        csv=str,
    )
    gamma: list[int] = setting(
        (1, 2, 4, 7), "Draft block sizes for --draft, comma-separated.", panel="Drafters", csv=int
    )
    out: Path = setting(
        Path("profile.json"), "Profile JSON to write (rewritten after every point).", short="-o", panel="Output"
    )
    force: bool = setting(False, "Replace an earlier profile at --out.", panel="Output")

    def __post_init__(self):
        self.draft = DRAFTERS if list(self.draft) == ["all"] else tuple(self.draft)

    def validate(self) -> None:
        if self.context <= 0:
            raise InputError(f"--context must be a positive number of tokens, got {self.context}")
        self.validate_deployment(self.dtype, self.roofline is not None)
        if self.roofline is not None:
            return
        if self.dtype not in ("auto", "bf16", "fp16", "fp32"):
            raise InputError(f"--dtype for a measured profile must be auto, bf16, fp16 or fp32, not {self.dtype!r}")
        unknown = [m for m in self.draft if m not in DRAFTERS]
        if unknown:
            raise InputError(f"--draft: no drafter for {', '.join(unknown)}; choose from {', '.join(DRAFTERS)} or all")
        if self.draft and (not self.gamma or min(self.gamma) < 1):
            raise InputError("--gamma takes positive whole numbers, e.g. 1,2,4,7")
        if not self.batch_tokens or not self.concurrency or min([*self.batch_tokens, *self.concurrency]) < 1:
            raise InputError("--batch-tokens and --concurrency take positive whole numbers, e.g. 1,8,64")
        if self.repeats < 2 or self.warmup_passes < 0 or (self.threads is not None and self.threads < 1):
            raise InputError("--repeats must be >= 2, --warmup-passes >= 0 and --threads >= 1")


# --------------------------------------------------------------------------- accept


@dataclass
class AcceptConfig:
    workloads: list[str] = setting(
        help="Prompt file(s), shipped sets (math, code, chat), or deepspec:DIR for DeepSpec's nine task "
        'files ({task}.jsonl in its {"turns"} layout). Repeatable.',
        flag="--workload",
    )
    target: str | None = setting(None, "Target model folder (config.json + safetensors + tokenizer).")
    draft: str | None = setting(
        None,
        "Drafter checkpoint folder in DeepSpec's layout, or `ngram` for prompt lookup (none: plain decoding, tau = 1).",
    )
    protocol: str = setting(
        "dsbench",
        "dsbench: the first --samples prompts, 256 tokens, full-length proposals. deepspec: DeepSpec's eval.py "
        "exactly (seeded subsample to each task's count, 2048 tokens, bf16 on GPU, its round bookkeeping).",
    )
    samples: int | None = setting(None, "Prompts per workload (default: 20; deepspec: each task's own count).")
    max_new_tokens: int | None = setting(None, "Tokens to generate per prompt (default: 256; deepspec: 2048).")
    temperature: float = setting(1.0, "Sampling temperature of target and drafter (0 = greedy).")
    policy: str = setting(
        "fixed",
        "Verification policy: fixed[:l], threshold:t (DeepSpec's --confidence-threshold), or dspark (with --profile).",
    )
    profile: str | None = setting(None, "Step-time profile for --policy dspark (file or shipped name).")
    gamma: int | None = setting(None, "Draft block size (default: the checkpoint's; 3 for ngram).")
    seed: int = setting(980406, "Seed (DeepSpec's default 980406; sample i uses seed + i, or batch from i).")
    batch: int = setting(
        1,
        "Prompts decoded together, one target pass per round for all (1: DeepSpec's loop; with "
        "--policy dspark the scheduler then sees the batch).",
    )
    dtype: str = setting(
        "auto", "Weights: auto (fp32 on CPU; on GPU the checkpoint's, deepspec: bf16), fp32, bf16 or fp16."
    )
    device: str = setting("cpu", "auto, cpu or cuda[:N].")
    backend: str | None = setting(
        None, "Measure against a live server instead (its speculative-decoding metrics).", panel="Backend"
    )
    model: str | None = setting(None, "Model id on the --backend server.", panel="Backend")
    method: str = setting("dspark", "What the --backend server runs (names the acceptance files).", panel="Backend")
    concurrency: int = setting(4, "Requests in flight against --backend.", panel="Backend")
    engine: str = setting(
        "auto",
        "Engine of --backend whose metrics and response fields to read: auto, vllm, llama.cpp, sglang, dsbench.",
        panel="Backend",
    )
    top_p: float | None = setting(None, "top_p sent to --backend (default: not sent).", panel="Backend")
    ignore_eos: bool = setting(False, "Ask --backend to ignore end-of-sequence.", panel="Backend")
    extra_body: dict = setting(
        factory=dict, help="More request-body fields for --backend as a JSON object.", panel="Backend"
    )
    out: Path = setting(
        Path("dsbench-accept"), "Directory for the acceptance files sweep reads.", short="-o", panel="Output"
    )
    force: bool = setting(False, "Replace acceptance files already in --out.", panel="Output")

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InputError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        if self.dtype not in DTYPES:
            raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.backend and not self.model:
            raise InputError("--backend needs --model (the model id on that server)")
        if not self.backend and not self.target:
            raise InputError("give --target (and --draft) for in-process decoding, or --backend URL --model NAME")
        if (
            (self.samples is not None and self.samples < 1)
            or (self.max_new_tokens is not None and self.max_new_tokens < 1)
            or self.temperature < 0
            or self.batch < 1
            or self.concurrency < 1
        ):
            raise InputError(
                "--samples, --max-new-tokens, --batch and --concurrency must be >= 1 and --temperature >= 0"
            )
        if self.protocol == "deepspec" and (self.backend or self.batch != 1 or self.policy.split(":")[0] == "dspark"):
            raise InputError(
                "--protocol deepspec is DeepSpec's in-process loop: one prompt at a time (--batch 1), "
                "--policy fixed or threshold:t, no --backend"
            )

    def resolved(self, field: str):
        """A field's value, or its protocol's default when it was left unset."""
        value = getattr(self, field)
        return PROTOCOL_DEFAULTS[self.protocol][field] if value is None else value


# --------------------------------------------------------------------------- load


@dataclass(kw_only=True)
class ClientSettings:
    """How requests are made and timed: the settings `load` and `search` share."""

    workloads: list[str] = setting(
        help='Prompt file(s), JSONL ({"prompt"} or DeepSpec {"turns"}), or a shipped set: '
        "math, code, chat. Repeatable.",
        flag="--workload",
    )
    warmup_s: float = setting(
        1.0, "Seconds at the start of each point left out of the steady-state window.", panel="Load"
    )
    max_tokens: int = setting(256, "max_tokens of each request.", panel="Load")
    drain_s: float | None = setting(
        None,
        "Seconds to let in-flight requests finish after a point's window closes before "
        "cancelling them (default: as long as --timeout-s).",
        panel="Load",
    )
    api: str = setting("chat", "chat (/v1/chat/completions) or completions (/v1/completions).", panel="Load")
    ramp_up_s: float = setting(
        0.0,
        "Seconds over which each point's load climbs to its level (closed loop: workers start one by one; "
        "open loop: the rate rises linearly); at most --warmup-s, so the window sees the full load.",
        panel="Load",
    )
    multi_turn: bool = setting(
        False,
        'Send each prompt\'s turns ({"turns"} files, ShareGPT) as one session: turn k carries the earlier turns '
        "and the server's replies, so the context grows (closed loop, chat API).",
        panel="Load",
    )
    prompt_seed: int = setting(
        0,
        "Seed of the prompt order (every prompt once per pass, shuffled); negative: cycle in file order.",
        panel="Load",
    )
    workers: int = setting(
        0,
        "Client processes per load point; 0: one per 256 closed-loop streams, up to the cores, when the point has "
        "--duration-s (one process held 256 streams to a p99 chunk lag under 10 ms here, 1,000 to 40 ms; two, 5 ms).",
        panel="Load",
    )
    metrics_url: str | None = setting(None, "Prometheus endpoint (default: URL/metrics).", panel="Server metrics")
    engine: str = setting(
        "auto",
        "Engine whose metrics and response fields to read: auto, vllm, llama.cpp, sglang, dsbench, none.",
        panel="Server metrics",
    )
    temperature: float | None = setting(
        0.0,
        "Sampling temperature sent with every request (acceptance depends on it). "
        "Negative: send none, the server's default.",
        panel="Sampling",
    )
    top_p: float | None = setting(None, "top_p sent with every request (default: not sent).", panel="Sampling")
    seed: int | None = setting(None, "Sampling seed sent with every request (default: not sent).", panel="Sampling")
    ignore_eos: bool = setting(
        False, "Ask the server to ignore end-of-sequence (every request runs to --max-tokens).", panel="Sampling"
    )
    extra_body: dict = setting(
        factory=dict,
        help="More request-body fields as a JSON object, sent as given (e.g. '{\"top_k\": 20}').",
        panel="Sampling",
    )
    api_key_env: str | None = setting(None, "Environment variable holding the API key (never written to outputs).")
    timeout_s: float = setting(60.0, "Seconds without data before a request counts as timed out.")
    http_client: str = setting(
        "auto",
        "HTTP client of the requests: raw (dsbench's own HTTP/1.1 streaming client, http:// only; an eighth of "
        "httpx's CPU per token, measured), httpx, or auto (raw for http://, httpx for https://).",
        panel="Load",
    )
    gpus: int = setting(1, "GPUs behind the server, for per-GPU throughput.")

    def __post_init__(self):
        if self.temperature is not None and self.temperature < 0:
            self.temperature = None  # negative on the command line: send none

    def recorded(self) -> dict:
        """The run's settings as its document records them (where it is written is not one)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("out", "force")}

    def validate_client(self) -> None:
        from .live.engines import ENGINES as KNOWN

        engines = ("auto", *KNOWN, "none")
        if self.drain_s is not None and self.drain_s < 0:
            raise InputError("--drain-s must be >= 0")
        if (
            self.temperature is not None
            and not self.temperature >= 0
            or self.top_p is not None
            and not 0 < self.top_p <= 1
        ):
            raise InputError("--temperature must be >= 0 and --top-p in (0, 1]")
        if not isinstance(self.extra_body, dict) or {"model", "messages", "prompt", "stream"} & set(self.extra_body):
            raise InputError("--extra-body must be a JSON object without model, messages, prompt or stream")
        if self.warmup_s < 0 or self.max_tokens < 1 or not self.timeout_s > 0 or self.gpus < 1:
            raise InputError("--warmup-s must be >= 0, --max-tokens >= 1, --timeout-s > 0, --gpus >= 1")
        if self.api not in ("chat", "completions"):
            raise InputError(f"--api must be chat or completions, got {self.api!r}")
        if self.engine not in engines:
            raise InputError(f"--engine must be one of {', '.join(engines)}, got {self.engine!r}")
        if self.workers < 0:
            raise InputError("--workers must be >= 0 (0: as many as the load needs)")
        if self.http_client not in ("auto", "raw", "httpx"):
            raise InputError(f"--http-client must be auto, raw or httpx, got {self.http_client!r}")
        if self.multi_turn and self.api != "chat":
            raise InputError("--multi-turn runs sessions over the chat API: use --api chat")
        if not 0 <= self.ramp_up_s <= self.warmup_s:
            raise InputError(f"--ramp-up-s must be between 0 and --warmup-s ({self.warmup_s}), got {self.ramp_up_s}")

    def sampling(self):
        from .documents import Sampling

        return Sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            ignore_eos=self.ignore_eos,
            extra_body=self.extra_body,
        )


@dataclass(kw_only=True)
class LoadConfig(ClientSettings):
    url: str = setting(help="Server base URL (OpenAI-compatible).")
    model: str = setting(help="Model id to request.")
    concurrency: list[int] = setting(
        factory=list, help="Closed-loop load points, comma-separated (e.g. 1,2,4,8).", panel="Load", csv=int
    )
    rates: list[float] = setting(
        factory=list,
        help="Open-loop Poisson load points in requests/s, comma-separated.",
        flag="--rate",
        panel="Load",
        csv=float,
    )
    requests: int | None = setting(None, "Requests per load point.", panel="Load")
    duration_s: float | None = setting(None, "Seconds of issuing per load point.", panel="Load")
    arrival_seed: int = setting(0, "Seed of the open-loop arrivals.", panel="Load")
    burstiness: float = setting(
        1.0,
        "Gamma shape of open-loop inter-arrival gaps: 1 Poisson, below 1 bursty, above 1 regular "
        "(vLLM's --burstiness).",
        panel="Load",
    )
    slo: float | None = setting(None, "Per-user speed SLO (tok/s) for goodput.")
    slo_ttft_s: float | None = setting(None, "TTFT SLO (seconds) for goodput: requests must meet every SLO given.")
    slo_tpot_s: float | None = setting(None, "TPOT SLO (seconds per token) for goodput.")
    method: str | None = setting(
        None, "What the server runs (no-spec, mtp-1, dflash, eagle3, dspark): recorded for `dsbench fit` and `report`."
    )
    out: Path = setting(
        Path("dsbench-load"), "Directory for requests.jsonl, points/, load.json.", short="-o", panel="Output"
    )
    force: bool = setting(False, "Replace results already in --out.", panel="Output")

    def validate(self) -> None:
        from .core.methods import METHODS

        self.validate_client()
        if not self.url.startswith(("http://", "https://")):
            raise InputError(f"--url must start with http:// or https://, got {self.url!r}")
        if self.http_client == "raw" and not self.url.startswith("http://"):
            raise InputError("--http-client raw speaks plain http:// only: use httpx (or auto) for https://")
        if not self.concurrency and not self.rates:
            raise InputError("give at least one load point: --concurrency 1,2,4 or --rate 2.5")
        if any(c < 1 for c in self.concurrency) or any(not r > 0 for r in self.rates):
            raise InputError("--concurrency values must be >= 1 and --rate values > 0")
        if (self.requests is None) == (self.duration_s is None):
            raise InputError("give exactly one of --requests N or --duration-s S")
        if (self.requests is not None and self.requests < 1) or (
            self.duration_s is not None and not self.duration_s > 0
        ):
            raise InputError("--requests must be >= 1 and --duration-s > 0")
        if self.method is not None and self.method not in METHODS:
            raise InputError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.workers > 1 and self.duration_s is None:
            raise InputError("more than one worker needs --duration-s (the window must end on time)")
        for flag, v in (("--slo", self.slo), ("--slo-ttft-s", self.slo_ttft_s), ("--slo-tpot-s", self.slo_tpot_s)):
            if v is not None and not v > 0:
                raise InputError(f"{flag} must be positive, got {v}")
        if self.multi_turn and self.rates:
            raise InputError("--multi-turn runs sessions in a closed loop: use --concurrency, not --rate")
        if not self.burstiness > 0:
            raise InputError(f"--burstiness must be > 0, got {self.burstiness}")

    def points(self):
        from .live.loadgen import PointPlan

        drain = self.timeout_s if self.drain_s is None else self.drain_s
        common = dict(
            requests=self.requests,
            duration_s=self.duration_s,
            warmup_s=self.warmup_s,
            drain_s=drain,
            seed=self.arrival_seed,
            burstiness=self.burstiness,
            ramp_up_s=self.ramp_up_s,
            prompt_seed=self.prompt_seed if self.prompt_seed >= 0 else None,
            multi_turn=self.multi_turn,
        )
        return [PointPlan(concurrency=c, **common) for c in self.concurrency] + [
            PointPlan(rate=r, **common) for r in self.rates
        ]


# --------------------------------------------------------------------------- search

SLO_STATS = ("mean", "p50", "p90")  # core.loadstats.SPEED_STATS, without importing numpy


@dataclass(kw_only=True)
class SearchConfig(ClientSettings):
    slo: float = setting(
        help="Per-user speed SLO (tok/s): the search finds the highest throughput meeting it.", panel="Search"
    )
    url: str | None = setting(
        None, "Server base URL (OpenAI-compatible), searched when no --serve starts one.", panel="Server"
    )
    model: str | None = setting(None, "Model id to request (default: the first one /v1/models lists).", panel="Server")
    serve: list[str] = setting(
        factory=list,
        help="A server to start, search and stop, as LABEL=COMMAND (repeatable): LABEL a method (no-spec, mtp-1, "
        "dflash, eagle3, dspark) or any name; {port} in COMMAND becomes a free loopback port (else it must listen "
        "at --url).",
        panel="Server",
    )
    method: str | None = setting(
        None, "What the --url server runs, its label in the results (default: server).", panel="Server"
    )
    startup_timeout_s: float = setting(600.0, "Seconds a --serve server has to answer /v1/models.", panel="Server")
    slo_stat: str = setting("mean", "The SLO's statistic of per-user speed: mean, p50 or p90.", panel="Search")
    slo_ttft_s: float | None = setting(
        None, "TTFT SLO (seconds, on the same statistic): a point over it fails.", panel="Search"
    )
    tolerance: float = setting(
        0.05,
        "Stop when the throughputs of the highest point meeting the SLO and the lowest above it failing are this "
        "close (relative).",
        panel="Search",
    )
    max_concurrency: int = setting(DEFAULT_MAX_CONCURRENCY_PER_GPU, "Highest concurrency to measure.", panel="Search")
    start_concurrency: int = setting(1, "The first concurrency measured.", panel="Search")
    windows: int = setting(
        5, "Windows each measurement is cut into, for intervals of speed and throughput.", panel="Search"
    )
    repeats: int = setting(
        2,
        "Measurements of a concurrency whose speed interval straddles the SLO before its mean decides.",
        panel="Search",
    )
    max_measurements: int = setting(16, "Measurements per server at most.", panel="Search")
    baseline: str = setting("mtp-1", "Label the others are compared with.", panel="Search")
    duration_s: float = setting(8.0, "Seconds of issuing per load point.", panel="Load")
    out: Path = setting(
        Path("dsbench-search"), "Directory for search.json and one load run per server.", short="-o", panel="Output"
    )
    force: bool = setting(
        False, "Replace results already in --out (else an earlier search there resumes).", panel="Output"
    )

    def servers(self) -> list[tuple[str, str | None]]:
        """(label, command or None) per server to search, in order."""
        if not self.serve:
            return [(self.method or "server", None)]
        out = []
        for item in self.serve:
            label, sep, command = item.partition("=")
            out.append((label.strip(), command.strip() if sep else ""))
        return out

    def settings(self):
        from .core.search import SearchSettings

        return SearchSettings(
            slo=self.slo,
            tolerance=self.tolerance,
            max_concurrency=self.max_concurrency,
            start=self.start_concurrency,
            repeats=self.repeats,
            max_measurements=self.max_measurements,
            ttft_slo_s=self.slo_ttft_s,
        )

    def validate(self) -> None:
        self.validate_client()
        if not self.slo > 0 or (self.slo_ttft_s is not None and not self.slo_ttft_s > 0):
            raise InputError(f"--slo and --slo-ttft-s must be positive, got {self.slo} and {self.slo_ttft_s}")
        if self.slo_stat not in SLO_STATS:
            raise InputError(f"--slo-stat must be one of {', '.join(SLO_STATS)}, got {self.slo_stat!r}")
        if not self.serve and not self.url:
            raise InputError("give a server: --url URL, or --serve LABEL=COMMAND (repeatable)")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise InputError(f"--url must start with http:// or https://, got {self.url!r}")
        labels = [label for label, _ in self.servers()]
        bad = [x for x, (label, cmd) in zip(self.serve, self.servers()) if not label or not cmd or "/" in label]
        if bad or len(set(labels)) != len(labels):
            raise InputError(
                f"--serve takes LABEL=COMMAND with distinct labels (no '/'): got {', '.join(bad or labels)}"
            )
        if not 0 < self.tolerance < 1 or not self.duration_s > 0 or not self.startup_timeout_s > 0:
            raise InputError("--tolerance must be in (0, 1), --duration-s and --startup-timeout-s > 0")
        if not 1 <= self.start_concurrency <= self.max_concurrency:
            raise InputError("--start-concurrency must be between 1 and --max-concurrency")
        if self.windows < 2 or self.repeats < 1 or self.max_measurements < 1:
            raise InputError("--windows must be >= 2 (an interval needs two), --repeats and --max-measurements >= 1")
        if self.warmup_s >= self.duration_s:
            raise InputError(f"--warmup-s ({self.warmup_s}) must be shorter than --duration-s ({self.duration_s})")


# --------------------------------------------------------------------------- serve


@dataclass
class ServeConfig:
    sim: bool = setting(
        False, "Run the simulated engine (rounds timed by the profile, acceptance drawn from the curves)."
    )
    target: str | None = setting(
        None, "Real engine: target model folder (safetensors + tokenizer).", panel="Real engine"
    )
    draft: str | None = setting(
        None, "Real engine: drafter checkpoint in DeepSpec's layout, or `ngram` (prompt lookup).", panel="Real engine"
    )
    temperature: float = setting(1.0, "Real engine: sampling temperature.", panel="Real engine")
    device: str = setting("cpu", "Real engine: auto, cpu or cuda[:N].", panel="Real engine")
    profile: str = setting("h100-qwen3-8b", "Profile JSON or shipped name.", panel="Engine")
    acceptance: str | None = setting(
        None, "Acceptance file or directory (default: shipped curves for the profile's model).", panel="Engine"
    )
    method: str = setting("dspark", "Decoding method: dspark, dflash, eagle3, mtp-1, no-spec.", panel="Engine")
    policy: str = setting(
        "dspark", "DSpark verification policy: dspark, dspark-async, fixed[:l], threshold:t.", panel="Engine"
    )
    gamma: int | None = setting(
        None,
        f"Draft block size (default: {DEFAULT_GAMMA} simulated; the checkpoint's for the real engine).",
        panel="Engine",
    )
    domain: str = setting("mix", "Acceptance curves: math, code, chat, or mix (one drawn per request).", panel="Engine")
    time_scale: float = setting(1.0, "Wall seconds per simulated second (2 = twice as slow).", panel="Engine")
    seed: int = setting(0, "Random seed of the engine.", panel="Engine")
    host: str = setting("127.0.0.1", "Address to bind (loopback unless you mean otherwise).")
    port: int = setting(8000, "Port to bind.")
    model_name: str = setting("dsbench-sim", "Model id the server answers to.")
    inject_error: list[str] = setting(
        factory=list,
        help="Fault injection for client tests: STATUS:FRACTION, repeatable (e.g. 500:0.1).",
        panel="Fault injection",
    )
    stall_after: int | None = setting(None, "Stall every stream after this many chunks.", panel="Fault injection")

    def validate(self) -> None:
        if self.sim == bool(self.target):
            raise InputError("choose one engine: --sim, or --target PATH [--draft PATH]")
        if not self.time_scale > 0:
            raise InputError(f"--time-scale must be > 0, got {self.time_scale}")
