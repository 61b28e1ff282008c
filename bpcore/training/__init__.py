"""Floor 5: training a model: fit, evaluate/predict, the data checks, callbacks, History.

    fit.py        the training loop (one host transfer per epoch), divergence and Ctrl-C rollback
    evaluate.py   evaluate, predict
    inputs.py     the checks fit, evaluate and predict run where data enter
    metrics.py    accuracy, counted on the device
    callbacks.py  Callback, EarlyStopping, ModelCheckpoint, CSVLogger
    history.py    History, DivergenceError
    health.py     diagnose (gradient health report)
    gradient_health.py  GradientHealth (its fit callback), the divergence hint
    resume.py     load_checkpoint (with its History) and fit's resume=
    generate.py   generate (extend a prompt token by token: greedy, temperature, top-k; on the device)
"""
from __future__ import annotations

from .callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint
from .evaluate import evaluate, predict
from .fit import fit
from .generate import generate
from .gradient_health import GradientHealth, GradientHealthWarning
from .health import HealthReport, diagnose
from .history import DivergenceError, History
from .resume import load_checkpoint

__all__ = ["Callback", "CSVLogger", "DivergenceError", "EarlyStopping", "History", "ModelCheckpoint", "evaluate", "fit",
           "GradientHealth", "GradientHealthWarning", "HealthReport", "diagnose",
           "generate", "load_checkpoint", "predict"]
