"""RegNetX/Y feature extractors with timm's parameter names, so released ``bev_encoder.*`` weights load here.

The released BEV encoder builds its two branches with ``timm.create_model(arch, features_only=True)``. timm needs
torchvision, whose PyPI wheels do not load beside a CPU-only torch (see model/released/README facts in the report),
so we build the same network ourselves: same module tree (``stem.conv/bn``, ``s{1..4}.b{j}.conv1..3``, ``se.fc1/2``,
``downsample``), same maths (BatchNorm eps 1e-5, ReLU, SE after the grouped 3x3 conv, residual then ReLU).
Architecture numbers (w0, wa, wm, group size, depth, SE ratio) are the published RegNet design-space values, as
listed in timm's ``regnet.py`` model table; the width rule is the RegNet paper's quantized linear rule.
``make_timm_features`` builds the timm model instead when timm imports (used by the parity test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# name -> (w0, wa, wm, group_size, depth, se_ratio); plain ImageNet RegNets (timm model table, pycls values).
REGNET_TABLE: dict[str, tuple[int, float, float, int, int, float]] = {
    "regnetx_002": (24, 36.44, 2.49, 8, 13, 0.0),
    "regnetx_004": (24, 24.48, 2.54, 16, 22, 0.0),
    "regnetx_006": (48, 36.97, 2.24, 24, 16, 0.0),
    "regnetx_008": (56, 35.73, 2.28, 16, 16, 0.0),
    "regnetx_016": (80, 34.01, 2.25, 24, 18, 0.0),
    "regnetx_032": (88, 26.31, 2.25, 48, 25, 0.0),
    "regnetx_040": (96, 38.65, 2.43, 40, 23, 0.0),
    "regnety_002": (24, 36.44, 2.49, 8, 13, 0.25),
    "regnety_004": (48, 27.89, 2.09, 8, 16, 0.25),
    "regnety_006": (48, 32.54, 2.32, 16, 15, 0.25),
    "regnety_008": (56, 38.84, 2.4, 16, 14, 0.25),
    "regnety_016": (48, 20.71, 2.65, 24, 27, 0.25),
    "regnety_032": (80, 42.63, 2.66, 24, 21, 0.25),
    "regnety_040": (96, 31.41, 2.24, 64, 22, 0.25),
    "regnety_064": (112, 33.22, 2.27, 72, 25, 0.25),
    "regnety_080": (192, 76.82, 2.19, 56, 17, 0.25),
}


@dataclass(frozen=True)
class RegNetSpec:
    """Per-stage layout of a RegNet (what the architecture name expands to)."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    group_sizes: tuple[int, ...]
    se_ratio: float
    stem_width: int = 32

    @classmethod
    def from_name(cls, name: str) -> RegNetSpec:
        if name not in REGNET_TABLE:
            raise ValueError(
                f"BEV encoder architecture {name!r} is not a supported RegNet; known: {sorted(REGNET_TABLE)} "
                "(the released bev_config.json names regnety_032)"
            )
        return cls.from_design(*REGNET_TABLE[name])

    @classmethod
    def from_design(cls, w0: int, wa: float, wm: float, group_size: int, depth: int, se_ratio: float) -> RegNetSpec:
        """RegNet quantized linear width rule (Radosavovic et al. 2020), computed in fp32 like the reference."""
        cpu = torch.device("cpu")  # explicit: specs are also computed while building on the meta device
        u = torch.arange(depth, dtype=torch.float32, device=cpu) * wa + w0
        exps = torch.round(torch.log(u / w0) / math.log(wm))
        per_block = (torch.round(w0 * torch.pow(torch.tensor(wm, device=cpu), exps) / 8) * 8).int().tolist()
        widths, depths = torch.unique(torch.tensor(per_block, device=cpu), return_counts=True)
        widths, depths = widths.tolist(), depths.tolist()
        groups = [min(group_size, w) for w in widths]
        # Widths are made divisible by their group width (bottleneck ratio 1).
        widths = [int(round(w / g) * g) for w, g in zip(widths, groups)]
        return cls(tuple(widths), tuple(depths), tuple(groups), se_ratio)


class ConvBN(nn.Module):
    """Conv (no bias) + BatchNorm (+ ReLU): timm's ConvNormAct naming (``conv``, ``bn``)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        # timm's symmetric padding for odd kernels: ((stride - 1) + (k - 1)) // 2
        self.conv = nn.Conv2d(cin, cout, k, stride, ((stride - 1) + (k - 1)) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Global mean -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid gate (``fc1``/``fc2`` with biases)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class Bottleneck(nn.Module):
    """RegNet block: 1x1 -> grouped 3x3 (stride) -> SE -> 1x1 (no act), plus shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, group_size: int, se_ratio: float) -> None:
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 1)
        self.conv2 = ConvBN(cout, cout, 3, stride, groups=cout // group_size)
        # The SE width follows the block *input* channels (RegNet convention).
        self.se = SqueezeExcite(cout, int(round(cin * se_ratio))) if se_ratio else nn.Identity()
        self.conv3 = ConvBN(cout, cout, 1, act=False)
        self.downsample = ConvBN(cin, cout, 1, stride, act=False) if (cin != cout or stride != 1) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.se(self.conv2(self.conv1(x))))
        return torch.relu(y + self.downsample(x))


class RegStage(nn.Sequential):
    def __init__(self, depth: int, cin: int, cout: int, group_size: int, se_ratio: float) -> None:
        super().__init__()
        for i in range(depth):
            self.add_module(
                f"b{i + 1}", Bottleneck(cin if i == 0 else cout, cout, 2 if i == 0 else 1, group_size, se_ratio)
            )


class RegNetFeatures(nn.Module):
    """``stem`` + four stages ``s1..s4`` (strides 4, 8, 16, 32). ``stages()`` yields them in order."""

    def __init__(self, spec: RegNetSpec, in_chans: int = 3) -> None:
        super().__init__()
        if len(spec.widths) != 4:
            raise ValueError(f"RegNet must have 4 stages for the TransFuser fusion, got widths {spec.widths}")
        self.spec = spec
        self.stem = ConvBN(in_chans, spec.stem_width, 3, 2)
        cin = spec.stem_width
        for i, (w, d, g) in enumerate(zip(spec.widths, spec.depths, spec.group_sizes)):
            self.add_module(f"s{i + 1}", RegStage(d, cin, w, g, spec.se_ratio))
            cin = w

    @property
    def channels(self) -> list[int]:
        return list(self.spec.widths)

    def stages(self) -> list[nn.Module]:
        return [self.s1, self.s2, self.s3, self.s4]


class TimmStages(nn.Module):
    """Adapter around a timm ``features_only`` RegNet: same ``stem`` / ``stages()`` interface and state-dict names."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        names = model.feature_info.module_name()
        if names[:1] != ["stem"] or len(names) != 5:
            raise ValueError(f"expected a timm RegNet with stem + 4 stages, got feature modules {names}")
        for name in names:
            self.add_module(name, getattr(model, name))
        self._channels = list(model.feature_info.channels()[1:])

    @property
    def channels(self) -> list[int]:
        return list(self._channels)

    def stages(self) -> list[nn.Module]:
        return [self.s1, self.s2, self.s3, self.s4]


def make_timm_features(name: str, in_chans: int) -> TimmStages:
    """The same branch built by timm (needs a torchvision that imports; raises ImportError naming what failed)."""
    try:
        import timm  # pyright: ignore[reportMissingImports]  # optional: only to load timm-named weights
    except Exception as exc:  # timm imports torchvision at import time
        raise ImportError(
            f"timm is not usable here ({type(exc).__name__}: {exc}); PyPI's torchvision wheels need a CUDA torch. "
            "Use backend='native' (identical parameter names and maths)."
        ) from exc
    return TimmStages(timm.create_model(name, pretrained=False, features_only=True, in_chans=in_chans))


def make_branch(name: str, in_chans: int, backend: str = "native") -> nn.Module:
    """One RegNet branch of the BEV encoder: ``native`` (ours) or ``timm``."""
    if backend == "native":
        return RegNetFeatures(RegNetSpec.from_name(name), in_chans)
    if backend == "timm":
        return make_timm_features(name, in_chans)
    raise ValueError(f"BEV encoder backend must be 'native' or 'timm', got {backend!r}")
