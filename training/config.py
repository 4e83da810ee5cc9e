"""Training configuration: the project's own fields in one small dataclass, every other option
passed through to TRL's ``GRPOConfig`` as TRL defines it (no mirrored copy of TRL's fields).

YAML files and ``--set key=value`` go through one typed path (:func:`load_config`): each value is
validated against its field's type (ours, or GRPOConfig's own annotation) with pydantic, and an
error names the file or flag, the field and what was expected.

The ablation axes of the paper's Tables 7 and 8 are fields here: ``item_reward``, ``reward_signal``,
``uncertainty`` and ``estimator``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flexrec_bench.foundation.errors import ConfigError, FlexRecError
from flexrec_bench.foundation.paths import data_flag
from flexrec_bench.building.retrieval import STAR_LAMBDA

ALGOS = ("flexrec", "rec-r1", "rank-grpo")
#: item-level reward variants (Table 7): sequence (Rec-R1's), independent, noncausal_swap, causal_swap
ITEM_REWARD_VARIANTS = ("sequence", "independent", "noncausal_swap", "causal_swap")
ITEM_NORMALISATIONS = ("pooled", "per_rank")
#: a critic folder holds a trained ``critic.pt`` or this table of estimates made elsewhere (training/imputations.py)
IMPUTATIONS_TABLE = "imputations.parquet"
#: where rewards for unobserved user-item pairs come from (Table 8); auto: the critic where one exists
REWARD_SIGNALS = ("auto", "observed", "item_knn", "user_knn", "critic")
#: what the SFT warm-up learns: the ideal list (Rec-R1's warm-up) or a random permutation (the answer format only)
SFT_TARGETS = ("ideal", "random")
#: policy-gradient estimator (Table 7): GRPO (group-relative, no value model) or PPO (GAE with a value model)
ESTIMATORS = ("grpo", "ppo")
BACKENDS = ("local", "verl")

#: GRPOConfig values this project sets when a config leaves them out (all ours; see training/configs/*.yaml)
TRL_DEFAULTS: dict[str, Any] = {"save_strategy": "steps", "save_steps": 50, "save_total_limit": 2, "report_to": "none",
                                 "logging_steps": 1, "seed": 0}


@dataclass
class TrainConfig:
    """One training run. Fields below are the project's; ``trl`` holds GRPOConfig fields as TRL names
    them (learning_rate, beta, entropy_coef, num_generations, loss_type, max_steps, ...)."""

    algo: str = "flexrec"                   #: flexrec, rec-r1 or rank-grpo
    model: str = ""                         #: HF model name or local path (policy and reference)
    dataset: str = "ml-100k"
    needs: tuple[str, ...] = ("interest",)  #: several needs = joint multi-need training
    eval_needs: tuple[str, ...] | None = None  #: validation needs (default: needs); another need = generalisation run
    data: str = "data"                      #: build-data output root
    output_dir: str = ""                    #: default checkpoints/<algo>-<dataset>-<needs>
    item_reward: str = "causal_swap"        #: Table 7 axis: sequence, independent, noncausal_swap, causal_swap
    reward_signal: str = "auto"             #: Table 8 axis: auto (the critic where one exists: --critic, or <data>/critics/<dataset>; else observed, said on stderr), observed, item_knn, user_knn or critic
    critic: str | None = None               #: critic checkpoint dir (reward_signal=critic or auto)
    item_normalisation: str = "pooled"      #: pooled (the paper's Sec. 3.2: over all items of all the prompt's rollouts) or per_rank (ours: each rank across the rollouts that named an item there, so tail ranks are not below the pool's mean for being last; docs/training.md)
    uncertainty: bool = True                #: Table 8 axis: down-weight advantages by the critic's reward variance (acts only with the critic)
    uncertainty_eps: float = 0.01           #: ours: w = 1 / (Var + eps) of a rollout's critic-filled reward
    uncertainty_clip: tuple[float, float] = (0.1, 3.0)  #: ours: the weights, normalised to mean 1 over the group, are clipped to this range
    uncertainty_items: bool = True          #: ours (an extension of the paper): a rollout's weight also scales its item advantages, not only its sequence advantage
    estimator: str = "grpo"                 #: Table 7 axis: grpo, or ppo (verl backend only: GAE with a value model)
    knn_neighbors: int = 50                 #: neighbours of the KNN reward signals (ours)
    train_limit: int | None = None          #: use the first N training instances per need
    skip_zero_gain: bool = False            #: ours: leave out training prompts whose candidates all have gain 0 (no positive among them, critic-filled gains included): every rollout of such a prompt earns the same reward, so its group gives no signal. Off: the paper's protocol (it says nothing of such prompts)
    eval_limit: int = 64                    #: validation instances per need
    eval_steps: int = 50                    #: validate every N optimizer steps (and at the end)
    max_prompt_tokens: int = 3072
    reasoning: bool = False                 #: ask for a <think> block before the permutation (the paper's optional reasoning)
    format_reward_weight: float = 0.1       #: Rec-R1 format reward weight
    squeeze_guard: bool = False             #: ours (issue 46 f): rollouts stay free (the paper's protocol), but the policy gradient reads each answer's valid prefix through the answer grammar's renormalised distribution and only the tokens from the first invalid one on through the model's own, so negative item credit moves mass among the ids still allowed and cannot push it off the format (Appendix F's squeeze). Off: the paper's loss
    constrained_decoding: bool = False      #: ours: rollouts (and validation) may write only permutations; the policy gradient uses the constrained distribution's log-probs (renormalised over the allowed tokens; flexrec_bench.ranking.constrained). Off: the paper's protocol
    sft_warmup_steps: int = 0               #: supervised warm-up before RL (Rec-R1: 25)
    sft_warmup_target: str = "ideal"        #: ideal (the oracle list, Rec-R1's warm-up) or random (a random permutation: the answer format only, no ranking signal; ours)
    lora: bool = False                      #: LoRA instead of full-parameter updates
    lora_r: int = 8
    lora_alpha: int = 16
    precision: str = "auto"                 #: auto (bf16 where the GPU supports it, else fp32), bf16, fp16 or fp32
    save_final: bool = True
    max_minutes: float | None = None        #: ours: stop after this many minutes of training (the step in progress ends, then the run ends as at max_steps: validation, the final model; the step reached is logged). For runs that share a deadline, e.g. parallel cells on one GPU (local backend). None: max_steps alone
    stop_at_ndcg: float | None = None       #: ours: end the run once every validation need's NDCG@5 has reached this at two validations in a row (then as at max_steps: the final model; the step is logged). For budgets stated as "up to N steps". None: max_steps alone
    trl: dict[str, Any] = field(default_factory=dict)  #: GRPOConfig fields, passed through as TRL defines them

    # -- reading ------------------------------------------------------------------------------------
    def rl(self, name: str) -> Any:
        """A GRPOConfig value as this run uses it: the config's, else ours, else TRL's default."""
        if name in self.trl:
            return self.trl[name]
        if name in TRL_DEFAULTS:
            return TRL_DEFAULTS[name]
        fields = _trl_fields()
        if not fields:
            raise ConfigError(f"{name} is not set and TRL, whose GRPOConfig gives its default, is not installed: "
                              f"set {name} in the training config")
        if name not in fields:
            raise ConfigError(f"{name!r} is not a GRPOConfig field")
        f = fields[name]
        return f.default_factory() if f.default is dataclasses.MISSING else f.default

    def resolved(self) -> TrainConfig:
        """Check the choices and fill the defaults that depend on others (output_dir, use_cpu, the
        completion budget)."""
        _choice("algo", self.algo, ALGOS)
        _choice("item_reward", self.item_reward, ITEM_REWARD_VARIANTS)
        _choice("item_normalisation", self.item_normalisation, ITEM_NORMALISATIONS)
        _choice("reward_signal", self.reward_signal, REWARD_SIGNALS)
        _choice("estimator", self.estimator, ESTIMATORS)
        _choice("sft_warmup_target", self.sft_warmup_target, SFT_TARGETS)
        if not self.model:
            raise FlexRecError("--model is required (a Hugging Face name or a local path)")
        if self.constrained_decoding and self.reasoning:
            raise ConfigError("constrained_decoding=true writes the answer directly: it cannot be combined with "
                              "reasoning=true")
        if self.squeeze_guard and (self.constrained_decoding or self.reasoning):
            raise ConfigError("squeeze_guard=true acts on free rollouts without reasoning: constrained_decoding=true "
                              "already keeps every rollout valid, and the answer grammar has no reasoning block")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be > 0 (or unset), got {self.max_minutes!r}")
        if self.stop_at_ndcg is not None and not 0 < self.stop_at_ndcg <= 1:
            raise ConfigError(f"stop_at_ndcg must be in (0, 1] (or unset), got {self.stop_at_ndcg!r}")
        if self.stop_at_ndcg is not None and not self.eval_steps:
            raise ConfigError("stop_at_ndcg reads the validations: set eval_steps > 0")
        lo, hi = self.uncertainty_clip
        if not (self.uncertainty_eps > 0 and 0 < lo <= 1 <= hi):
            raise ConfigError(f"uncertainty_eps must be > 0 and uncertainty_clip (lo, hi) must hold 1 with lo > 0, got "
                              f"{self.uncertainty_eps!r}, {self.uncertainty_clip!r}")
        signal, critic = resolve_reward_signal(self)
        if signal == "critic" and not critic:
            raise ConfigError("reward_signal=critic needs a critic checkpoint: run `flexrec-bench train-critic`, "
                              "then pass --critic DIR")
        if self.critic and signal != "critic":
            raise ConfigError(f"--critic is set but reward_signal={self.reward_signal}; add --set reward_signal=critic")
        d = asdict(self)
        # the one place of the rule "uncertainty weighting acts only on the critic's variances"
        d.update(reward_signal=signal, critic=critic, uncertainty=bool(self.uncertainty and signal == "critic"))
        d["needs"] = tuple(self.needs)
        d["eval_needs"] = tuple(self.eval_needs or self.needs)
        if not self.output_dir:
            d["output_dir"] = f"checkpoints/{self.algo}-{self.dataset}-{'+'.join(self.needs)}"
        trl = dict(self.trl)
        if trl.get("use_cpu") is None:
            import torch

            trl["use_cpu"] = not torch.cuda.is_available()
        d["trl"] = trl
        return TrainConfig(**d)

    def grpo_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of trl.GRPOConfig for this (resolved) run, before the reward weights."""
        from .sft import precision_flags

        kw = {**TRL_DEFAULTS, **self.trl, "output_dir": self.output_dir}
        for k, v in precision_flags(self.precision, bool(kw.get("use_cpu"))).items():
            kw.setdefault(k, v)
        return kw


def default_critic_dir(data: str | Path, dataset: str) -> Path:
    """Where ``train-critic`` writes a dataset's critic by default: beside the build, outside its
    generation folder, so a rebuild does not remove it."""
    return Path(data) / "critics" / dataset


def resolve_reward_signal(cfg: TrainConfig) -> tuple[str, str | None]:
    """(reward signal, critic dir) of a run: ``auto`` is the critic when ``--critic`` names one or
    the default critic folder holds one, else ``observed``."""
    if cfg.reward_signal != "auto":
        return cfg.reward_signal, cfg.critic
    critic = cfg.critic
    found = default_critic_dir(cfg.data, cfg.dataset)
    if critic is None and ((found / "critic.pt").exists() or (found / IMPUTATIONS_TABLE).exists()):
        critic = str(found)
    return ("critic", critic) if critic else ("observed", None)


def reward_signal_line(cfg: TrainConfig) -> str:
    """The resolved reward signal with its reason, as a dry run and the first lines of a run print it
    (and train_config.json records it): ``auto`` says what it found, or why it fell back."""
    signal, critic = resolve_reward_signal(cfg)
    if cfg.reward_signal != "auto":
        return f"reward_signal: {signal} (set){f', critic {critic}' if critic else ''}"
    if signal == "critic":
        return f"reward_signal: critic (auto: {'--critic' if cfg.critic else 'found'} {critic})"
    return (f"reward_signal: observed (auto: no critic at {default_critic_dir(cfg.data, cfg.dataset)}; unobserved pairs "
            f"count 0 and the uncertainty weighting is off; train one with `flexrec-bench train-critic --dataset "
            f"{cfg.dataset}{data_flag(cfg.data)}`, or set reward_signal=item_knn)")


def reward_signal_notice(cfg: TrainConfig) -> str | None:
    """The line a run prints when ``auto`` falls back to observed labels (not the paper's FlexRec)."""
    if cfg.algo != "flexrec" or resolve_reward_signal(cfg)[0] != "observed" or cfg.reward_signal != "auto":
        return None
    return (f"warning: no critic for {cfg.dataset} (--critic, or {default_critic_dir(cfg.data, cfg.dataset)}): FlexRec "
            f"trains on the observed labels only (unobserved pairs count 0) and without the uncertainty weighting, "
            f"which is not the paper's method; run `flexrec-bench train-critic --dataset {cfg.dataset}{data_flag(cfg.data)}` first")


@functools.cache
def _trl_fields() -> dict[str, dataclasses.Field]:
    try:
        from trl import GRPOConfig
    except ImportError:  # the verl environment has no TRL: values are then checked by verl itself
        return {}
    return {f.name: f for f in dataclasses.fields(GRPOConfig) if f.init}


@functools.cache
def _trl_types() -> dict[str, Any]:
    from trl import GRPOConfig

    return typing.get_type_hints(GRPOConfig)


_OWN = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name != "trl"}


def default(name: str) -> Any:
    """TrainConfig's default of ``name``: the one place it is defined (the environment, the KNN
    imputer and the verl workers take it from here)."""
    f = _OWN[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


@functools.cache
def _own_hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        from flexrec_bench.foundation.registry import did_you_mean

        raise ConfigError(f"unknown {name} {value!r}; {did_you_mean(value, list(allowed))}")


def _coerce(name: str, value: Any, annotation: Any, where: str) -> Any:
    """YAML values and --set strings through the project's one converter (flexrec_bench.foundation.options)."""
    from flexrec_bench.foundation.options import convert

    if isinstance(annotation, str):  # our own annotations are strings (from __future__ import annotations)
        annotation = _own_hints()[name]
    return convert(value, annotation, where, name)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def from_dict(values: dict[str, Any], where: str = "config") -> TrainConfig:
    """Build a TrainConfig from flat key/values (our fields and GRPOConfig's), each checked against
    its type. Unknown keys are refused with the nearest known name."""
    own: dict[str, Any] = {}
    trl: dict[str, Any] = {}
    trl_fields = _trl_fields()
    for key, value in values.items():
        key = key.replace("-", "_")
        if key in _OWN:
            own[key] = _coerce(key, value, _OWN[key].type, where)
        elif key in trl_fields:
            trl[key] = _coerce(key, value, _trl_types()[key], where)
        elif not trl_fields:  # without TRL (the verl environment) values pass unchecked; verl checks its own
            trl[key] = value
        else:
            from flexrec_bench.foundation.registry import did_you_mean

            known = sorted(set(_OWN) | set(trl_fields))
            raise ConfigError(f"{where}: unknown training option {key!r} (neither a flexrec-bench field nor a "
                              f"trl.GRPOConfig field); {did_you_mean(key, known)}")
    return TrainConfig(**own, trl=trl)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None,
                sets: dict[str, str] | None = None) -> TrainConfig:
    """YAML file, then the CLI's named options (``overrides``, None = not given), then ``--set``
    pairs (:func:`layered_config` without a preset)."""
    return layered_config(Path(path) if path is not None else None, None, overrides or {}, sets or {})[0]


def algo_config(algo: str) -> Path:
    """training/configs/<algo>.yaml, the shipped config of an algorithm."""
    import importlib.resources

    return Path(str(importlib.resources.files("training") / "configs" / f"{algo}.yaml"))


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the training config ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(raw).__name__}")
    return raw


def max_candidates(cfg: TrainConfig) -> int | None:
    """The largest candidate list among the training needs' instances, from the build's manifest
    (None when the data is not built yet)."""
    from flexrec_bench.building.splits import load_manifest

    try:
        manifest = load_manifest(cfg.data, cfg.dataset)
    except FlexRecError:
        return None
    return int(manifest.get("config", {}).get("candidates") or 0) or None


def completion_budget(cfg: TrainConfig, k_max: int | None) -> int | None:
    """max_completion_length: the config's, else enough for k_max ids (and the reasoning block)."""
    from flexrec_bench.ranking.prompts import answer_tokens

    given = cfg.trl.get("max_completion_length")
    if k_max is None:
        return given
    need = answer_tokens(k_max, cfg.reasoning)
    if given is None:
        return need
    if cfg.reasoning and given < need:
        raise ConfigError(f"max_completion_length={given} is too short for reasoning before {k_max} ids: "
                          f"set at least {need} or leave it out")
    return int(given)


PRESETS = ("smoke", "miniature", "learnability", "paper", "gpu")


def preset_path(name: str) -> Path:
    """training/configs/presets/<name>.yaml."""
    import importlib.resources

    if name not in PRESETS:
        from flexrec_bench.foundation.registry import did_you_mean

        raise ConfigError(f"unknown --preset {name!r}; {did_you_mean(name, list(PRESETS))}")
    return Path(str(importlib.resources.files("training") / "configs" / "presets" / f"{name}.yaml"))


def layered_config(config_path: Path | None, preset: str | None, overrides: dict[str, Any],
                   sets: dict[str, str]) -> tuple[TrainConfig, dict[str, str]]:
    """The algorithm's YAML, then the preset's, then the CLI's options, then --set: one typed path
    (each layer checked once, its errors naming the file or flag). Returns the config and where
    each explicitly set value came from."""
    layers: list[tuple[str, str, dict]] = []  # (source label, where errors point, values)
    for label, path in (("config", config_path), ("preset", preset_path(preset) if preset else None)):
        if path is not None:
            layers.append((f"{label} {Path(path).name}", str(path), _read_yaml(path)))
    given = {k: v for k, v in overrides.items() if v is not None}
    if preset == "smoke" and given.get("max_steps") is not None:  # a shorter smoke run validates less
        label = "preset smoke (capped by --max-steps)"
        layers.append((label, label, {"eval_limit": max(1, 2 * int(given["max_steps"]))}))
    layers += [("command line", "command line", given), ("--set", "--set", dict(sets))]
    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    for label, where, values in layers:
        from_dict(values, where=where)
        merged.update(values)
        source.update({k.replace("-", "_"): label for k in values})
    return from_dict(merged, where="config"), source


def describe(cfg: TrainConfig, source: dict[str, str]) -> list[dict[str, str]]:
    """Every field of the run: name, type, value and where it comes from (flexrec-bench's default,
    a file, the command line, or TRL's GRPOConfig default)."""
    rows = []
    hints = _own_hints()
    for name in _OWN:
        rows.append({"field": name, "type": _type_name(hints[name]), "value": repr(getattr(cfg, name)),
                     "source": source.get(name, "flexrec-bench default"), "help": _help(name)})
    trl_fields = _trl_fields()
    types = _trl_types() if trl_fields else {}
    for name in sorted(set(trl_fields) - set(_OWN)):  # eval_steps, output_dir: ours govern
        value = cfg.trl.get(name, TRL_DEFAULTS.get(name, cfg.rl(name)))
        src = source.get(name) or ("flexrec-bench default" if name in TRL_DEFAULTS else "trl.GRPOConfig default")
        rows.append({"field": name, "type": _type_name(types.get(name)), "value": repr(value), "source": src,
                     "help": (trl_fields[name].metadata or {}).get("help", "").split(". ")[0][:100]})
    return rows


def _help(name: str) -> str:
    """The ``#:`` comment of a TrainConfig field (its documentation)."""
    return _field_docs().get(name, "")


@functools.cache
def _field_docs() -> dict[str, str]:
    import inspect
    import re

    docs = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        m = re.match(r"\s+(\w+): .*?#: (.*)$", line)
        if m:
            docs[m.group(1)] = m.group(2).strip()
    return docs


@dataclass
class CriticConfig:
    """Critic architecture and training. Paper (Appendix G): hidden 256, dropout 0.05, ReLU,
    LayerNorm, 30 epochs, 8:1:1 split, best-MSE checkpoint. Ours (the text leaves them out): beta,
    batch size, learning rate, history length and the profile's discount."""

    hidden: int = 256              #: paper: width of both towers and the joint MLP
    dropout: float = 0.05          #: paper: dropout after each hidden layer
    beta: float = 0.5              #: ours (stripped in the text; Seitzer et al.'s recommended 0.5): beta of beta-NLL
    epochs: int = 30               #: paper: passes over the training pairs
    batch_size: int = 512          #: ours
    lr: float = 1e-3               #: ours
    history: int = 20              #: ours: most recent items in the history profile
    lam: float = STAR_LAMBDA       #: ours: STAR temporal discount of the profile
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  #: paper: the 8:1:1 train/val/test shares; ours: of the training users' observed pairs (the paper: all interactions)
    seed: int = 0                  #: seeds the split of the observed pairs and the initialisation
    max_pairs: int | None = None   #: subsample pairs (quick runs)
    patience: int | None = None    #: ours, off (the paper trains all 30 epochs): stop after this many epochs without a better val MSE
    device: str = "auto"           #: auto (CUDA when present), cpu or cuda

    def validate(self) -> None:
        """One-line errors for values no run can use, before any data is read."""
        import re

        for name, lo in (("epochs", 1), ("batch_size", 1), ("hidden", 1), ("history", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise FlexRecError(f"critic {name} must be an integer >= {lo}, got {v!r}")
        if self.max_pairs is not None and self.max_pairs < 10:
            raise FlexRecError(f"critic max_pairs must be at least 10 (an 8:1:1 split), got {self.max_pairs!r}")
        if self.patience is not None and self.patience < 1:
            raise FlexRecError(f"critic patience must be >= 1 (or unset), got {self.patience!r}")
        if not (self.lr > 0 and 0 <= self.dropout < 1 and self.beta >= 0):
            raise FlexRecError(f"critic lr must be > 0, dropout in [0, 1), beta >= 0; got {self.lr}, {self.dropout}, "
                               f"{self.beta}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(self.device)):
            raise FlexRecError(f"critic device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
