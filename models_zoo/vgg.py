"""VGG-11, VGG-16 and VGG-16-BN with torchvision's structure (``features``, ``avgpool``, ``classifier``)."""
from __future__ import annotations

import torch
from torch import nn

# channel counts of the 3x3 convolutions; "M" is a 2x2 max-pool
_CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def _make_features(config: list[int | str], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG for 224x224 RGB images; returns logits (batch, num_classes)."""

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg11(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """VGG-11 (132,863,336 parameters at 1000 classes)."""
    return VGG(_make_features(_CONFIGS["A"], batch_norm=False), num_classes, dropout)


def vgg16(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """VGG-16 (138,357,544 parameters at 1000 classes)."""
    return VGG(_make_features(_CONFIGS["D"], batch_norm=False), num_classes, dropout)


def vgg16_bn(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """VGG-16 with BatchNorm after every convolution (138,365,992 parameters at 1000 classes)."""
    return VGG(_make_features(_CONFIGS["D"], batch_norm=True), num_classes, dropout)
