"""The CAM++ speaker-embedding network (3D-Speaker, Apache-2.0), built to load its published weights.

A 2-D convolutional front (FCM) over 80 log-mel bands, then densely connected TDNN blocks whose outputs
are gated by context-aware masks (the mean of the whole input plus that of its 1 s segment), statistics
pooling and a 192-d projection. Module names follow the checkpoint's keys. torch is passed in, so that
importing this module does not import it.
"""

from __future__ import annotations

from typing import Any

EMBEDDING_SIZE = 192
FEATURE_SIZE = 80


def build_campplus(torch: Any) -> Any:
    """An untrained CAM++ (eval mode) whose `state_dict` keys match the 3D-Speaker checkpoint."""
    nn = torch.nn
    functional = torch.nn.functional

    def norm_relu(channels: int) -> Any:
        return nn.Sequential(_named(batchnorm=nn.BatchNorm1d(channels), relu=nn.ReLU()))

    class ResidualBlock(nn.Module):
        def __init__(self, in_planes: int, planes: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.shortcut = nn.Sequential()
            if stride != 1 or in_planes != planes:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(planes)
                )

        def forward(self, x: Any) -> Any:
            out = functional.relu(self.bn1(self.conv1(x)))
            return functional.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class FrequencyFront(nn.Module):
        """2-D convolutions that shrink the 80 bands to 10 and flatten them into 320 channels."""

        def __init__(self, channels: int = 32) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.layer1 = nn.Sequential(ResidualBlock(channels, channels, 2), ResidualBlock(channels, channels, 1))
            self.layer2 = nn.Sequential(ResidualBlock(channels, channels, 2), ResidualBlock(channels, channels, 1))
            self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)
            self.out_channels = channels * (FEATURE_SIZE // 8)

        def forward(self, x: Any) -> Any:
            out = functional.relu(self.bn1(self.conv1(x.unsqueeze(1))))
            out = functional.relu(self.bn2(self.conv2(self.layer2(self.layer1(out)))))
            return out.flatten(1, 2)

    class Tdnn(nn.Module):
        def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int) -> None:
            super().__init__()
            self.linear = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)
            self.nonlinear = norm_relu(out_channels)

        def forward(self, x: Any) -> Any:
            return self.nonlinear(self.linear(x))

    class ContextMask(nn.Module):
        """A local TDNN whose output is gated by the input's global and 100-frame segment means."""

        def __init__(self, channels: int, out_channels: int, kernel: int, dilation: int, segment: int = 100) -> None:
            super().__init__()
            padding = (kernel - 1) // 2 * dilation
            self.linear_local = nn.Conv1d(
                channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False
            )
            self.linear1 = nn.Conv1d(channels, channels // 2, 1)
            self.linear2 = nn.Conv1d(channels // 2, out_channels, 1)
            self.segment = segment

        def forward(self, x: Any) -> Any:
            frames = x.shape[-1]
            pooled = functional.avg_pool1d(x, self.segment, self.segment, ceil_mode=True)
            segments = pooled.repeat_interleave(self.segment, dim=-1)[..., :frames]
            context = x.mean(-1, keepdim=True) + segments
            return self.linear_local(x) * torch.sigmoid(self.linear2(functional.relu(self.linear1(context))))

    class DenseLayer(nn.Module):
        def __init__(self, in_channels: int, growth: int, bottleneck: int, kernel: int, dilation: int) -> None:
            super().__init__()
            self.nonlinear1 = norm_relu(in_channels)
            self.linear1 = nn.Conv1d(in_channels, bottleneck, 1, bias=False)
            self.nonlinear2 = norm_relu(bottleneck)
            self.cam_layer = ContextMask(bottleneck, growth, kernel, dilation)

        def forward(self, x: Any) -> Any:
            return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))

    class DenseBlock(nn.ModuleDict):
        """Each layer sees the block input and every earlier layer's output, concatenated."""

        def __init__(self, layers: int, in_channels: int, growth: int, kernel: int, dilation: int) -> None:
            super().__init__(
                {
                    f"tdnnd{i + 1}": DenseLayer(in_channels + i * growth, growth, 4 * growth, kernel, dilation)
                    for i in range(layers)
                }
            )

        def forward(self, x: Any) -> Any:
            for layer in self.values():
                x = torch.cat([x, layer(x)], dim=1)
            return x

    class Transit(nn.Module):
        def __init__(self, in_channels: int, out_channels: int) -> None:
            super().__init__()
            self.nonlinear = norm_relu(in_channels)
            self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

        def forward(self, x: Any) -> Any:
            return self.linear(self.nonlinear(x))

    class StatsPool(nn.Module):
        def forward(self, x: Any) -> Any:
            return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=-1)

    class Projection(nn.Module):
        def __init__(self, in_channels: int) -> None:
            super().__init__()
            self.linear = nn.Conv1d(in_channels, EMBEDDING_SIZE, 1, bias=False)
            self.nonlinear = nn.Sequential(_named(batchnorm=nn.BatchNorm1d(EMBEDDING_SIZE, affine=False)))

        def forward(self, x: Any) -> Any:
            return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))

    class CamPlusPlus(nn.Module):
        def __init__(self, growth: int = 32, init_channels: int = 128) -> None:
            super().__init__()
            self.head = FrequencyFront()
            self.xvector = nn.Sequential()
            self.xvector.add_module("tdnn", Tdnn(self.head.out_channels, init_channels, 5, stride=2))
            channels = init_channels
            for i, (layers, kernel, dilation) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
                self.xvector.add_module(f"block{i + 1}", DenseBlock(layers, channels, growth, kernel, dilation))
                channels += layers * growth
                self.xvector.add_module(f"transit{i + 1}", Transit(channels, channels // 2))
                channels //= 2
            self.xvector.add_module("out_nonlinear", norm_relu(channels))
            self.xvector.add_module("stats", StatsPool())
            self.xvector.add_module("dense", Projection(channels * 2))

        def frame_features(self, features: Any) -> Any:
            """(batch, frames, 80) mean-normalised log-mel → (batch, channels, frames / 2), before pooling."""
            return self.xvector[:-2](self.head(features.transpose(1, 2)))

        def forward(self, features: Any) -> Any:
            """(batch, frames, 80) mean-normalised log-mel → (batch, 192)."""
            return self.xvector[-2:](self.frame_features(features))

    return CamPlusPlus().eval()


def _named(**modules: Any) -> Any:
    from collections import OrderedDict

    return OrderedDict(modules)
