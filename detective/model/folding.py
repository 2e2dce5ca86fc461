"""BatchNorm folded into the convolutions before it: one convolution per pair, its weights and bias computed from
the live parameters on every call, for a backbone whose BatchNorm runs on its running statistics."""

from __future__ import annotations

import torch
from torch import Tensor, fx, nn
from torch.nn import functional as F


def fold_batchnorm(trunk: nn.Module) -> nn.Module:
    """A form of `trunk` for learning with BatchNorm's running statistics kept (BatchNorm in eval mode): each
    convolution + BatchNorm pair runs as one convolution whose weights and bias are folded from the live
    parameters on every call, so gradients still reach both layers' weights and the result equals the eager
    trunk's in eval mode, to float rounding. It spares BatchNorm's own pass over every activation, forward and
    backward, and autograd's record of it (see README "Speed").

    The form shares the trunk's modules and holds no parameters of its own: it never goes stale, and state dicts
    and optimisers see only the trunk."""
    graph_module = fx.symbolic_trace(trunk)
    modules = dict(graph_module.named_modules())
    for node in list(graph_module.graph.nodes):
        conv = node.args[0] if node.op == "call_module" and node.args else None
        if not (
            isinstance(modules.get(node.target), nn.BatchNorm2d)
            and isinstance(conv, fx.Node)
            and conv.op == "call_module"
            and isinstance(modules.get(conv.target), nn.Conv2d)
            and modules[conv.target].padding_mode == "zeros"
            and len(conv.users) == 1
        ):
            continue
        name = f"{conv.target}_with_{node.target}".replace(".", "_")
        graph_module.add_submodule(name, _ConvBatchNorm(modules[conv.target], modules[node.target]))
        with graph_module.graph.inserting_after(node):
            folded = graph_module.graph.call_module(name, conv.args)
        node.replace_all_uses_with(folded)
        graph_module.graph.erase_node(node)
        graph_module.graph.erase_node(conv)
    graph_module.recompile()
    return graph_module


class _ConvBatchNorm(nn.Module):
    """conv then BatchNorm (running statistics) as one convolution: w * s, beta + (b - mean) * s with
    s = gamma / sqrt(var + eps)."""

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv, self.norm = conv, norm

    def forward(self, x: Tensor) -> Tensor:
        conv, norm = self.conv, self.norm
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        bias = -norm.running_mean * scale if conv.bias is None else (conv.bias - norm.running_mean) * scale
        if norm.bias is not None:
            bias = bias + norm.bias
        weight = conv.weight * scale.view(-1, 1, 1, 1)
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
