"""Floor 3: optimizers (torch.optim's update rules and argument names), schedules and clipping.

    optimizers.py   Optimizer, SGD, Adam, AdamW, RMSprop
    schedules.py    StepLR, ExponentialLR, CosineAnnealingLR, LinearLR, ReduceLROnPlateau
    clip.py         clip_grad_norm_, clip_grad_value_
"""
from __future__ import annotations

from .clip import clip_grad_norm_, clip_grad_value_
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop
from .schedules import CosineAnnealingLR, ExponentialLR, LinearLR, LRScheduler, ReduceLROnPlateau, StepLR

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "clip_grad_norm_", "clip_grad_value_",
           "LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "ReduceLROnPlateau"]
