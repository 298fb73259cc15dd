"""A small ResNet for 28x28 grey images, and the plain CNN of the 10-class baseline.

Chapter: "Transfer learning in computer vision". The network is the chapter's example of a
pretrained backbone with a replaceable head: `model.fc` is the classifier, and
`model.fc.in_features` is the width of the features it reads, so the chapter's listing
`model.fc = tl.nn.Linear(model.fc.in_features, num_classes)` works as written.

A basic residual block (He et al. 2016) computes  y = relu(F(x) + shortcut(x))  with
F = conv3x3-BN-ReLU-conv3x3-BN; the shortcut is the identity, or a strided 1x1 conv + BN when
the block halves the resolution and changes the width. The stages run at 28x28, 14x14, 7x7.
"""
from __future__ import annotations

from .. import nn


class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.bn1(self.conv1(x)).relu()
        out = self.bn2(self.conv2(out))
        return (out + self.shortcut(x)).relu()  # the residual connection


class ResNetMini(nn.Module):
    """stem -> layer1 -> layer2 -> layer3 -> global average pool -> fc.

    The children, in order from input to output, are what `tl.transfer.freeze_lower` counts
    when it freezes "the lowest k blocks": `blocks()` lists them.
    """

    def __init__(self, num_classes=10, widths=(16, 32, 64), depth=(1, 1, 1), in_channels=1):
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w1, 3, padding=1, bias=False), nn.BatchNorm2d(w1), nn.ReLU())
        self.layer1 = nn.Sequential(*[BasicBlock(w1, w1) for _ in range(depth[0])])
        self.layer2 = nn.Sequential(BasicBlock(w1, w2, stride=2), *[BasicBlock(w2, w2) for _ in range(depth[1] - 1)])
        self.layer3 = nn.Sequential(BasicBlock(w2, w3, stride=2), *[BasicBlock(w3, w3) for _ in range(depth[2] - 1)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(w3, num_classes)

    def blocks(self):
        """The stages from the input up, head last: [stem, layer1, layer2, layer3, fc]."""
        return [self.stem, self.layer1, self.layer2, self.layer3, self.fc]

    def features(self, x):
        """The penultimate representation (N, widths[-1]) that the head reads."""
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.flatten(self.pool(x))

    def forward(self, x):
        return self.fc(self.features(x))


def resnet_mini(num_classes=10, widths=(16, 32, 64), depth=(1, 1, 1), in_channels=1):
    """A ResNet of three stages of basic blocks for 1x28x28 images (about 75k parameters at the
    default widths 16-32-64); its head is `model.fc`."""
    return ResNetMini(num_classes, widths, depth, in_channels)


def small_cnn(num_classes=10):
    """The issue's plain CNN for the 10-class baseline and the benchmark:
    conv(1->32, 3x3, pad 1)-BN-ReLU-maxpool2, conv(32->64, 3x3, pad 1)-BN-ReLU-maxpool2,
    Linear(64*7*7 -> 128)-ReLU-Linear(128 -> num_classes)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, num_classes))
