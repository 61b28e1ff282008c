"""PyTorch tensors (CPU, or CUDA when torch sees a GPU), through array-api-compat."""
from __future__ import annotations

import numpy as np

from ._base import Backend, BackendUnavailableError


class TorchBackend(Backend):
    name = "torch"
    autograd = True

    def __init__(self, torch, device):
        import array_api_compat.torch as torch_xp

        self.torch = torch
        self.kind = "cuda" if device.type == "cuda" else "cpu"
        super().__init__(torch_xp, device, f"torch:{device}")

    def asarray(self, host, dtype=None, copy=False):
        host = np.asarray(host, dtype=dtype, order="C")     # keeps 0-d arrays 0-d
        if copy or self.kind == "cuda" or not host.flags.writeable:
            return self.torch.tensor(host, device=self.device)
        return self.torch.from_numpy(host)

    def to_numpy(self, array):
        return array.detach().cpu().numpy().copy()

    def owns(self, array):
        return isinstance(array, self.torch.Tensor) and array.device == self.device

    def synchronize(self):
        if self.kind == "cuda":
            self.torch.cuda.synchronize(self.device)


def torch_scatter_add_rows(values, indices, num_rows):
    """out (num_rows, D) with out[indices[k]] += values[k]: the fast path of bpcore.nn.scatter
    (``Tensor.index_add_``, which wants int64 or int32 indices)."""
    out = values.new_zeros((num_rows, values.shape[1]))
    return out.index_add_(0, indices if str(indices.dtype) in ("torch.int64", "torch.int32") else indices.long(),
                          values)


def torch_spec_of(array):
    """"torch:cuda:1" for a tensor on GPU 1 (without importing torch for other arrays)."""
    if type(array).__module__.partition(".")[0] != "torch" or not hasattr(array, "device"):
        return None
    return f"torch:{array.device}"


def make_torch(device):
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            'PyTorch is not installed: pip install "bpcore[torch]" '
            '(from a source checkout: pip install -e ".[torch]")') from None
    try:
        dev = torch.device(device or "cpu")
    except RuntimeError as error:
        raise ValueError(f"unknown torch device {device!r}: {error}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"torch {torch.__version__} sees no CUDA GPU (built for CUDA "
                f"{torch.version.cuda or 'none: a CPU-only build'}); on a GPU machine install a "
                f"CUDA build of torch")
        dev = torch.device("cuda", dev.index or 0)
        if dev.index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"torch sees {torch.cuda.device_count()} GPU(s); there is no {dev}")
    elif dev.type != "cpu":
        raise ValueError(f"the torch backend supports 'cpu' and 'cuda[:N]', got {device!r}")
    return TorchBackend(torch, dev)
