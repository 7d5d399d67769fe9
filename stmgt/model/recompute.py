"""Activation checkpointing that recomputes in the mode of the forward pass.

`torch.utils.checkpoint` replays the random state but calls the function as the module is when the
backward pass runs. The trainer's what-if loss runs the model in eval mode with gradients and switches
it back to training before the backward pass, so a plain checkpoint would recompute with dropout the
forward pass never drew (a `CheckpointError`, or wrong gradients)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torch.utils.checkpoint import checkpoint


def checkpointed(function: Callable, module: nn.Module, *args):
    """`function(module, *args)`, its activations recomputed in the backward pass with `module` in the
    mode it has now."""
    return checkpoint(_in_mode, function, module, module.training, *args, use_reentrant=False)


def _in_mode(function: Callable, module: nn.Module, training: bool, *args):
    if module.training == training:
        return function(module, *args)
    module.train(training)
    try:
        return function(module, *args)
    finally:
        module.train(not training)
