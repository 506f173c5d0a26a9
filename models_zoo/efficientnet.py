"""EfficientNet-B0 with torchvision's structure: MBConv blocks (SiLU, squeeze-excitation, stochastic depth)."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from models_zoo.layers import Conv2dNormActivation, SqueezeExcitation, StochasticDepth, make_divisible


@dataclass
class MBConvConfig:
    """One stage: expansion ratio, kernel, first stride, channels (width-adjusted) and block count."""

    expand_ratio: float
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int

    @classmethod
    def scaled(cls, expand_ratio, kernel, stride, input_channels, out_channels, num_layers,
               width_mult: float = 1.0, depth_mult: float = 1.0) -> "MBConvConfig":
        return cls(expand_ratio, kernel, stride, make_divisible(input_channels * width_mult, 8),
                   make_divisible(out_channels * width_mult, 8), int(math.ceil(num_layers * depth_mult)))


class MBConv(nn.Module):
    """Expand 1x1 → depthwise k x k → squeeze-excitation → project 1x1, all with SiLU, plus a residual
    that stochastic depth drops per sample during training."""

    def __init__(self, cnf: MBConvConfig, stochastic_depth_prob: float, norm_layer) -> None:
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError("illegal stride value")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        activation_layer = nn.SiLU
        expanded_channels = make_divisible(cnf.input_channels * cnf.expand_ratio, 8)
        layers: list[nn.Module] = []
        if expanded_channels != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, expanded_channels, kernel_size=1,
                                               norm_layer=norm_layer, activation_layer=activation_layer))
        layers.append(Conv2dNormActivation(expanded_channels, expanded_channels, kernel_size=cnf.kernel,
                                           stride=cnf.stride, groups=expanded_channels, norm_layer=norm_layer,
                                           activation_layer=activation_layer))
        squeeze_channels = max(1, cnf.input_channels // 4)
        layers.append(SqueezeExcitation(expanded_channels, squeeze_channels,
                                        activation=partial(nn.SiLU, inplace=True)))
        layers.append(Conv2dNormActivation(expanded_channels, cnf.out_channels, kernel_size=1,
                                           norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += x
        return result


class EfficientNet(nn.Module):
    """EfficientNet for RGB images; returns logits (batch, num_classes)."""

    def __init__(self, setting: list[MBConvConfig], dropout: float, stochastic_depth_prob: float = 0.2,
                 num_classes: int = 1000, last_channel: int | None = None) -> None:
        super().__init__()
        norm_layer = nn.BatchNorm2d
        layers: list[nn.Module] = [
            Conv2dNormActivation(3, setting[0].input_channels, kernel_size=3, stride=2, norm_layer=norm_layer,
                                 activation_layer=nn.SiLU)
        ]
        total_blocks = sum(cnf.num_layers for cnf in setting)
        block_id = 0
        for cnf in setting:
            stage: list[nn.Module] = []
            for _ in range(cnf.num_layers):
                block_cnf = copy.copy(cnf)
                if stage:
                    block_cnf.input_channels = block_cnf.out_channels
                    block_cnf.stride = 1
                # the drop probability grows linearly with depth
                sd_prob = stochastic_depth_prob * float(block_id) / total_blocks
                stage.append(MBConv(block_cnf, sd_prob, norm_layer))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        lastconv_input = setting[-1].out_channels
        lastconv_output = last_channel if last_channel is not None else 4 * lastconv_input
        layers.append(Conv2dNormActivation(lastconv_input, lastconv_output, kernel_size=1, norm_layer=norm_layer,
                                           activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True),
                                        nn.Linear(lastconv_output, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init_range = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -init_range, init_range)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


_B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
       (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


def efficientnet_b0(*, num_classes: int = 1000, dropout: float = 0.2,
                    stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B0 (5,288,548 parameters at 1000 classes)."""
    setting = [MBConvConfig.scaled(*row, width_mult=1.0, depth_mult=1.0) for row in _B0]
    return EfficientNet(setting, dropout, stochastic_depth_prob, num_classes)
