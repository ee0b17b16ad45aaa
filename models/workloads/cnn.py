"""Convolutional and MLP workloads: im2col conv lowering, ResNet-18/50, plain MLPs.

A 2-D convolution lowers to the GEMM
``(B*Hout*Wout) x (Cin/groups*kh*kw) @ (Cin/groups*kh*kw) x (Cout/groups)``,
once per group (``count = groups``).  ResNets follow ``torchvision.models``
(v1.5 bottleneck: the stride sits in the 3x3 conv) with torchvision's module
names; the one ReLU module torchvision reuses inside a block appears here as
``relu1``, ``relu2`` (, ``relu3``) so that every op has its own name.
"""

from __future__ import annotations

from collections.abc import Sequence

from sparsa.errors import ConfigError, ShapeError

from .graph import ConvGeometry, GemmLayer, Op, VectorOp, Workload

__all__ = [
    "conv2d_output_size",
    "conv2d_gemm",
    "resnet",
    "resnet18",
    "resnet50",
    "mlp",
    "IMAGENET_CLASSES",
]

#: Output classes of the torchvision ImageNet heads.
IMAGENET_CLASSES = 1000

_TORCHVISION = "torchvision.models.{name} (He et al. 2016, torchvision v1.5 layout), ImageNet 1000 classes"


def _pair(name: str, value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ShapeError(f"{name} must be an int or an (h, w) pair, not {value!r}")
        return value
    return (value, value)


def conv2d_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis (PyTorch rule).

    Parameters
    ----------
    size : int
        Input length (positive).
    kernel, stride, dilation : int
        Window, step and dilation (positive).
    padding : int
        Zero padding on each side (non-negative).

    Returns
    -------
    int
        ``floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1``.

    Raises
    ------
    ShapeError
        A bad argument, or a window that does not fit (result below 1).
    """
    for field, value, low in (("size", size, 1), ("kernel", kernel, 1), ("stride", stride, 1),
                              ("padding", padding, 0), ("dilation", dilation, 1)):
        if type(value) is not int or value < low:
            kind = "positive" if low else "non-negative"
            raise ShapeError(f"conv {field} must be a {kind} integer, not {value!r}")
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise ShapeError(
            f"conv kernel {kernel} (dilation {dilation}, padding {padding}) does not fit an input of {size}"
        )
    return out


def conv2d_gemm(
    name: str,
    *,
    batch: int,
    in_channels: int,
    out_channels: int,
    height: int,
    width: int,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    bias: bool = False,
) -> GemmLayer:
    """Lower a 2-D convolution to an im2col GEMM.

    Parameters
    ----------
    name : str
        Op name.
    batch : int
        Images.
    in_channels, out_channels : int
        Channel counts (both divisible by ``groups``).
    height, width : int
        Input feature-map size.
    kernel, stride, padding, dilation : int or (int, int)
        PyTorch ``Conv2d`` arguments.
    groups : int, default 1
        Channel groups; each becomes one GEMM instance.
    bias : bool, default False
        Whether the conv has a bias.

    Returns
    -------
    GemmLayer
        ``kind="conv"`` with ``m = batch*Hout*Wout``, ``k = in_channels/groups*kh*kw``,
        ``n = out_channels/groups``, ``count = groups`` and the geometry attached.
    """
    if type(batch) is not int or batch < 1:
        raise ShapeError(f"conv {name!r}: batch must be a positive integer, not {batch!r}")
    geo = ConvGeometry(
        in_channels=in_channels,
        out_channels=out_channels,
        in_height=height,
        in_width=width,
        kernel=_pair("kernel", kernel),
        stride=_pair("stride", stride),
        padding=_pair("padding", padding),
        dilation=_pair("dilation", dilation),
        groups=groups,
    )
    kh, kw = geo.kernel
    return GemmLayer(
        name,
        m=batch * geo.out_height * geo.out_width,
        k=in_channels // groups * kh * kw,
        n=out_channels // groups,
        kind="conv",
        count=groups,
        bias=bias,
        conv=geo,
    )


class _Net:
    """Accumulates ops while tracking the current feature-map shape."""

    def __init__(self, batch: int, channels: int, height: int, width: int) -> None:
        self.batch, self.c, self.h, self.w = batch, channels, height, width
        self.ops: list[Op] = []

    @property
    def elements(self) -> int:
        return self.batch * self.c * self.h * self.w

    def conv(self, name: str, out: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        layer = conv2d_gemm(
            name, batch=self.batch, in_channels=self.c, out_channels=out,
            height=self.h, width=self.w, kernel=kernel, stride=stride, padding=padding,
        )
        self.ops.append(layer)
        assert layer.conv is not None
        self.c, self.h, self.w = out, layer.conv.out_height, layer.conv.out_width

    def vector(self, name: str, kind: str, **kw: int) -> None:
        """A vector op over the current feature map: one row per pixel of ``c`` channels (NHWC)."""
        self.ops.append(VectorOp(name, self.elements, kind, row_length=self.c, **kw))  # type: ignore[arg-type]

    def bn(self, name: str) -> None:
        self.vector(name, "batchnorm", params=2 * self.c)


def _basic_block(net: _Net, p: str, planes: int, stride: int) -> None:
    c_in, h_in, w_in = net.c, net.h, net.w
    net.conv(f"{p}.conv1", planes, 3, stride, 1)
    net.bn(f"{p}.bn1")
    net.vector(f"{p}.relu1", "relu")
    net.conv(f"{p}.conv2", planes, 3, 1, 1)
    net.bn(f"{p}.bn2")
    _shortcut(net, p, c_in, h_in, w_in, planes, stride)
    net.vector(f"{p}.relu2", "relu")


def _bottleneck(net: _Net, p: str, planes: int, stride: int) -> None:
    c_in, h_in, w_in = net.c, net.h, net.w
    net.conv(f"{p}.conv1", planes, 1)
    net.bn(f"{p}.bn1")
    net.vector(f"{p}.relu1", "relu")
    net.conv(f"{p}.conv2", planes, 3, stride, 1)
    net.bn(f"{p}.bn2")
    net.vector(f"{p}.relu2", "relu")
    net.conv(f"{p}.conv3", planes * 4, 1)
    net.bn(f"{p}.bn3")
    _shortcut(net, p, c_in, h_in, w_in, planes * 4, stride)
    net.vector(f"{p}.relu3", "relu")


def _shortcut(net: _Net, p: str, c_in: int, h_in: int, w_in: int, c_out: int, stride: int) -> None:
    if stride != 1 or c_in != c_out:
        ds = conv2d_gemm(
            f"{p}.downsample.0", batch=net.batch, in_channels=c_in, out_channels=c_out,
            height=h_in, width=w_in, kernel=1, stride=stride,
        )
        net.ops.append(ds)
        net.ops.append(VectorOp(f"{p}.downsample.1", net.elements, "batchnorm", params=2 * c_out, row_length=c_out))
    net.vector(f"{p}.add", "eltwise_add", input_elements=2 * net.elements)


def resnet(depth: int, batch: int = 1, image_size: int = 224) -> Workload:
    """ResNet-18/34/50/101/152 as in ``torchvision.models``, lowered to GEMMs.

    Parameters
    ----------
    depth : {18, 34, 50, 101, 152}
        Variant.
    batch : int, default 1
        Images.
    image_size : int, default 224
        Square RGB input (ImageNet evaluation crop is 224).

    Returns
    -------
    Workload
        Phase ``forward``, ``context=None``; ops named like torchvision modules
        (``conv1``, ``layer2.0.downsample.0``, ``fc``).

    Raises
    ------
    ConfigError
        Unknown depth, or bad batch / image size.
    """
    plans = {
        18: (_basic_block, 1, (2, 2, 2, 2)),
        34: (_basic_block, 1, (3, 4, 6, 3)),
        50: (_bottleneck, 4, (3, 4, 6, 3)),
        101: (_bottleneck, 4, (3, 4, 23, 3)),
        152: (_bottleneck, 4, (3, 8, 36, 3)),
    }
    if depth not in plans:
        raise ConfigError(f"ResNet depth must be one of {sorted(plans)}, not {depth!r}")
    if type(batch) is not int or batch < 1:
        raise ConfigError(f"resnet{depth}: batch must be a positive integer, not {batch!r}")
    if type(image_size) is not int or image_size < 32:
        raise ConfigError(f"resnet{depth}: image_size must be an integer >= 32, not {image_size!r}")
    block, expansion, repeats = plans[depth]
    net = _Net(batch, 3, image_size, image_size)
    net.conv("conv1", 64, 7, 2, 3)
    net.bn("bn1")
    net.vector("relu", "relu")
    before = net.elements
    net.h = conv2d_output_size(net.h, 3, 2, 1)
    net.w = conv2d_output_size(net.w, 3, 2, 1)
    net.vector("maxpool", "maxpool", input_elements=before)
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), repeats, strict=True), start=1):
        for j in range(count):
            stride = 2 if stage > 1 and j == 0 else 1
            block(net, f"layer{stage}.{j}", planes, stride)
    before = net.elements
    net.h = net.w = 1
    net.vector("avgpool", "avgpool", input_elements=before)
    net.ops.append(GemmLayer("fc", batch, 512 * expansion, IMAGENET_CLASSES, "linear", bias=True))
    name = f"resnet{depth}"
    return Workload(
        name=name, phase="forward", batch=batch, context=None, layers=tuple(net.ops),
        source=_TORCHVISION.format(name=name),
    )


def resnet18(batch: int = 1, image_size: int = 224) -> Workload:
    """ResNet-18 (``torchvision.models.resnet18``); see :func:`resnet`."""
    return resnet(18, batch, image_size)


def resnet50(batch: int = 1, image_size: int = 224) -> Workload:
    """ResNet-50 (``torchvision.models.resnet50``, v1.5); see :func:`resnet`."""
    return resnet(50, batch, image_size)


def mlp(sizes: Sequence[int], batch: int = 1, name: str | None = None) -> Workload:
    """A fully connected ReLU network, e.g. ``mlp([784, 256, 256, 10])``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first; at least two.
    batch : int, default 1
        Samples.
    name : str or None
        Workload name; default ``"mlp-" + "-".join(sizes)``.

    Returns
    -------
    Workload
        Ops ``fc1``, ``relu1``, ..., ``fc{n}`` (biased linear layers, ReLU between
        them, none after the last), phase ``forward``.

    Raises
    ------
    ConfigError
        Fewer than two sizes, a non-positive size, or a bad batch.
    """
    sizes = tuple(sizes)
    if len(sizes) < 2:
        raise ConfigError(f"mlp needs at least two sizes (input and output), not {sizes!r}")
    for s in sizes:
        if type(s) is not int or s < 1:
            raise ConfigError(f"mlp sizes must be positive integers, not {s!r} in {sizes!r}")
    if type(batch) is not int or batch < 1:
        raise ConfigError(f"mlp batch must be a positive integer, not {batch!r}")
    ops: list[Op] = []
    last = len(sizes) - 1
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        ops.append(GemmLayer(f"fc{i}", batch, k, n, "linear", bias=True))
        if i < last:
            ops.append(VectorOp(f"relu{i}", batch * n, "relu", row_length=n))
    label = name if name is not None else "mlp-" + "-".join(str(s) for s in sizes)
    return Workload(
        name=label, phase="forward", batch=batch, context=None, layers=tuple(ops),
        source="fully connected ReLU network defined by its layer sizes",
    )
