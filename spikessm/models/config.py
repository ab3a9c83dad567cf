"""``ModelConfig``: everything needed to build a model, and nothing about its data.

A training config's ``model`` section says which model and how large; the task adds what the data
decides (the task kind, the number of classes, the input width or vocabulary). Together they are a
:class:`ModelConfig`, which every checkpoint and pretrained directory holds, so that
:func:`spikessm.load_model` rebuilds the model without reading any data.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from spikessm.errors import UserError, check_choice
from spikessm.models.backbone import NORMS, POOLS, SequenceModel, cutoffs_problem
from spikessm.models.registry import get_model_spec
from spikessm.models.spec import COMMON_OPTIONS, SSM_KEYS
from spikessm.ssm.kernel import INITS

KINDS = ("classify", "retrieval", "lm")
COMMON_CHOICES = {"init": INITS, "norm": NORMS, "pool": POOLS}


def model_defaults(name: str) -> dict[str, Any]:
    """The full option dict of a model (a training config's ``model`` section): the common options,
    then its own."""
    return {"name": name, **COMMON_OPTIONS, **get_model_spec(name).options}


def check_model_options(options: dict[str, Any], where: str = "model.") -> None:
    """One-line errors for a model option dict whose names are unknown or whose choices are invalid."""
    spec = get_model_spec(options["name"])
    choices = {**COMMON_CHOICES, **spec.choices}
    for key, valid in choices.items():
        if key in options:
            check_choice(f"{where}{key}", options[key], valid)


@dataclass
class ModelConfig:
    """A registered model (``name``) with its backbone, S4D and block options, and what the data
    decides: ``kind`` (classify, retrieval, lm), ``n_classes`` (the vocabulary size for lm),
    ``d_input`` (features per step) or ``vocab_size`` (token ids). ``block``: the block's own
    options (``spikessm models``); missing ones take the model's defaults."""

    name: str = "spikingssm"
    kind: str = "classify"
    n_classes: int = 10
    d_input: int | None = 1
    vocab_size: int | None = None
    d_model: int = COMMON_OPTIONS["d_model"]
    n_layers: int = COMMON_OPTIONS["n_layers"]
    d_state: int = COMMON_OPTIONS["d_state"]
    dt_min: float = COMMON_OPTIONS["dt_min"]
    dt_max: float = COMMON_OPTIONS["dt_max"]
    init: str = COMMON_OPTIONS["init"]
    bidirectional: bool = COMMON_OPTIONS["bidirectional"]
    norm: str = COMMON_OPTIONS["norm"]
    prenorm: bool = COMMON_OPTIONS["prenorm"]
    dropout: float = COMMON_OPTIONS["dropout"]
    pool: str = COMMON_OPTIONS["pool"]
    adaptive_softmax_cutoffs: list[int] = field(default_factory=list)
    adaptive_softmax_div_value: float = COMMON_OPTIONS["adaptive_softmax_div_value"]
    block: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = get_model_spec(self.name)
        unknown = sorted(set(self.block) - set(spec.options))
        if unknown:
            raise UserError(f"model {self.name!r} has no option {unknown[0]!r}; its options: "
                            f"{', '.join(spec.options) or 'none'}")
        self.block = {**spec.options, **self.block}
        self.adaptive_softmax_cutoffs = list(self.adaptive_softmax_cutoffs or [])
        check_choice("model kind", self.kind, KINDS)
        if (self.d_input is None) == (self.vocab_size is None):
            raise UserError("a model config needs exactly one of d_input (real-valued input) and vocab_size (ids)")
        for key in ("n_classes", "d_input", "vocab_size", "d_model", "n_layers", "d_state"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UserError(f"model {key} must be a positive integer; got {value!r}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"model dropout must be in [0, 1); got {self.dropout!r}")
        problem = cutoffs_problem(self.adaptive_softmax_cutoffs, self.n_classes)
        if problem:
            raise UserError(f"model adaptive_softmax_cutoffs={self.adaptive_softmax_cutoffs!r} {problem}")
        check_model_options({"name": self.name, **self.options()}, where="model ")

    # ---- conversions

    @classmethod
    def from_options(cls, options: dict[str, Any], kind: str, n_classes: int, d_input: int | None = None,
                     vocab_size: int | None = None) -> "ModelConfig":
        """From a training config's ``model`` section (name, common and block options) and the task's
        shapes. Options missing from old configs take their defaults."""
        spec = get_model_spec(options["name"])
        common = {k: options.get(k, v) for k, v in COMMON_OPTIONS.items()}
        if common["adaptive_softmax_cutoffs"] is None:
            common["adaptive_softmax_cutoffs"] = []
        block = {k: options[k] for k in spec.options if k in options}
        return cls(name=options["name"], kind=kind, n_classes=n_classes, d_input=None if vocab_size else d_input,
                   vocab_size=vocab_size, block=block, **common)

    def options(self) -> dict[str, Any]:
        """The common and block options as one flat dict (a training config's ``model`` section, less the name)."""
        return {**{k: getattr(self, k) for k in COMMON_OPTIONS}, **self.block}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "model config") -> "ModelConfig":
        """From :meth:`to_dict`'s output; a one-line UserError (starting with ``source``) if it is not one."""
        if not isinstance(data, dict):
            raise UserError(f"{source}: the model config must be a mapping; got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{source}: unknown model config key {unknown[0]!r}")
        if "name" not in data:
            raise UserError(f"{source}: the model config has no 'name'")
        try:
            return cls(**data)
        except UserError as e:
            raise UserError(f"{source}: {e}") from None
        except (TypeError, ValueError) as e:
            raise UserError(f"{source}: invalid model config ({e})") from None

    # ---- the model

    def build(self) -> SequenceModel:
        """A freshly initialised :class:`SequenceModel` (train mode); ``model.config`` is this config."""
        spec = get_model_spec(self.name)
        backbone = dict(kind=self.kind, n_classes=self.n_classes, d_model=self.d_model, n_layers=self.n_layers,
                        d_input=self.d_input, vocab_size=self.vocab_size, norm=self.norm, prenorm=self.prenorm,
                        dropout=self.dropout, pool=self.pool, adaptive_cutoffs=self.adaptive_softmax_cutoffs,
                        adaptive_div_value=self.adaptive_softmax_div_value)
        if spec.model_class is not None:
            model = spec.model_class(dict(self.block), bidirectional=self.bidirectional, **backbone)
        else:
            ssm = {k: getattr(self, k) for k in SSM_KEYS}
            model = SequenceModel(lambda d: spec.make_block(d, self.dropout, ssm, dict(self.block)), **backbone)
        model.config = self
        return model


def build_model(options: dict[str, Any], splits: Any, kind: str) -> SequenceModel:
    """A model for a task's splits (anything with ``n_classes``, ``d_input``, ``vocab_size``) from a
    training config's ``model`` section."""
    return ModelConfig.from_options(options, kind, splits.n_classes, splits.d_input, splits.vocab_size).build()
