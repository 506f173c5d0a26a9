"""A tiny CNN for fast tests: three conv/bn/relu/maxpool stages on 32x32 RGB images, then one Linear."""
from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """3x32x32 images → logits (batch, num_classes); 33,946 parameters at 10 classes."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for out_channels in (width, 2 * width, 4 * width):
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        # three 2x poolings take 32x32 down to 4x4
        self.classifier = nn.Linear(in_channels * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def small_cnn(*, num_classes: int = 10, width: int = 16) -> SmallCNN:
    """The test CNN; ``width`` is the channel count of the first stage (then 2x, 4x)."""
    return SmallCNN(num_classes, width)
