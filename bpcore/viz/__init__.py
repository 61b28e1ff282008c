"""Floor 6: pictures. Figures of the lessons (matplotlib, the "viz" extra) and the Neural Flow page.

    figures.py     decision_boundary, curves, confusion_matrix
    gradients.py   gradient_flow, weight_histograms
    attention.py   attention (one attention layer's weights for one input, per head)
    filters.py     filters (a CNN's first-layer kernels), feature_maps (its channels for one image)
    health_figure.py  health (a diagnose report or a GradientHealth history as bars)
    flow.py        FlowRecorder (a fit callback) and neural_flow (writes the page)
    flow_page.py   the page itself, from page/flow.html, page/flow.css and page/flow.js
"""
from __future__ import annotations

from .attention import attention
from .figures import confusion_matrix, curves, decision_boundary
from .filters import feature_maps, filters
from .flow import FlowRecorder, neural_flow
from .gradients import gradient_flow, weight_histograms
from .health_figure import health

__all__ = ["FlowRecorder", "attention", "confusion_matrix", "curves", "decision_boundary", "feature_maps", "filters",
           "gradient_flow", "health", "neural_flow", "weight_histograms"]
