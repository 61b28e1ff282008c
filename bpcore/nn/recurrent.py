"""RNN, LSTM and GRU: one layer, one direction, batch first, backpropagation through time by hand.

Each layer maps x (N, T, C) to every hidden state h (N, T, H), starting from zeros (or from a state
you pass). Parameters as PyTorch's, transposed so that a gate is ``x @ W + b``:

    W_ih (C, G H), W_hh (H, G H), b_ih (G H,), b_hh (G H,)       G = 1 (RNN), 4 (LSTM), 3 (GRU)

torch's ``weight_ih_l0`` is ``W_ih.T``, ``bias_ih_l0`` is ``b_ih``; the gates are stacked in torch's
order (LSTM i, f, g, o; GRU r, z, n) and drawn U(-1/sqrt(H), 1/sqrt(H)) as torch.

How the work is laid out (the same in all three):

- forward: the input part of every gate at every step is one big matmul before the loop,
  ``XW = x @ W_ih + b_ih`` for all N T positions; each step then does ONE matmul for all its gates,
  ``h @ W_hh``, and elementwise work. Steps are a Python loop (no recursion); what backward reads
  step by step is kept per step, so memory grows linearly in T. Each step writes its h into the
  output, allocated once as (N, T, H), by slice assignment (``hidden[:, t, :] = h``).
- backward: the loop runs the steps in reverse, carrying dL/dh (and the LSTM's dL/dc) from step t+1
  to step t; each step does one matmul, ``dL/dh_{t-1} += dZ_t @ W_hh^T``, and writes its dL/d(gate
  pre-activations) dZ_t into one (N, T, G H) array. The parameter gradients and dL/dx need no loop:
  dL/dW_ih = X^T dZ, dL/dW_hh = H_prev^T dZ (H_prev: the state each step started from),
  dL/db = sum of dZ, dL/dx = dZ @ W_ih^T: four big matmuls on the batch-first rows as they lie
  (row n T + t), with no transpose or copy of x, the output or dZ.
- sigmoid(z) = (1 + tanh(z / 2)) / 2, so the LSTM's four gates take one tanh over (N, 4 H):
  a = tanh(z * s) * s + (1 - s) with s = 1/2 on sigmoid gates and 1 on the g gate (the weights are
  scaled by s once per forward, so the steps never multiply z by s).

State between calls (sampling one step at a time): ``forward(x, state)`` starts from ``state``
(h (N, H); for the LSTM a pair (h, c)) instead of zeros; ``final_state`` is the state after the last
step of the last forward, and after backward ``grad_state`` holds dL/d(state) (zeros-started: the
gradient a zero state would get).
"""
from __future__ import annotations

import math

from .._checks import check_int
from . import init as _init
from .module import Layer


class _Recurrent(Layer):
    """What RNN, LSTM and GRU share: parameters, checks, the big matmuls around the step loops.

    A subclass sets ``_gates`` (G) and writes ``_steps(XW, state, hidden)`` (the forward loop: writes
    every step's h into ``hidden`` (N, T, H) and returns the final state and what its backward reads)
    and ``_back_steps(grad_out, h_prev, kept)`` (the reverse loop: returns dL/d(XW) and
    dL/d(h W_hh + b_hh), each (N, T, G H) and the same array where they are equal, and
    dL/d(initial state)).
    """

    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, seed=None):
        super().__init__()
        owner = type(self).__name__
        self.input_size = check_int(owner, "input_size", input_size)
        self.hidden_size = check_int(owner, "hidden_size", hidden_size)
        C, H, width = self.input_size, self.hidden_size, self._gates * self.hidden_size
        rng, bound = _init.host_rng(seed, type(self).__name__), 1.0 / math.sqrt(self.hidden_size)
        self.W_ih = self.parameter(_init.uniform((C, width), bound, rng))
        self.W_hh = self.parameter(_init.uniform((H, width), bound, rng))
        self.b_ih = self.parameter(_init.uniform((width,), bound, rng))
        self.b_hh = self.parameter(_init.uniform((width,), bound, rng))

    def config(self) -> dict:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size}

    @property
    def final_state(self):
        """The state after the last step of the last forward (h (N, H), or (h, c) for an LSTM); None
        before a forward (and after a move or cast)."""
        try:
            return self.saved("final_state")
        except RuntimeError:                    # no forward yet
            return None

    @property
    def grad_state(self):
        """dL/d(state) from the last backward (h (N, H), or (h, c) for an LSTM); None before one. It is
        kept with what forward saved, so a move or cast drops it as it drops them."""
        return None if self._saved is None else self._saved.get("grad_state")

    def forward(self, x, state=None):
        """x (N, T, input_size) -> every hidden state (N, T, hidden_size).

        ``state``: where to start (None: zeros): h (N, hidden_size), or (h, c) for an LSTM.
        """
        x = self.check_input(x, shape=("batch", "time", self.input_size))
        xp, width = self.xp, self._gates * self.hidden_size
        steps = x.shape[1]
        if steps == 0:
            raise ValueError(f"{self._name()}: the sequence is empty (time axis of length 0): {tuple(x.shape)}")
        x_rows = xp.reshape(x, (-1, self.input_size))                  # (N T, C): row n T + t is x[n, t]
        W, b = self._input_side()
        XW = x_rows @ W
        XW += b                            # in place: XW is a new array, and a pass over it costs time
        XW = xp.reshape(XW, (-1, steps, width))                             # (N, T, G H)
        state = self._initial_state(XW[:, 0, :self.hidden_size], state)
        hidden = xp.empty_like(XW[:, :, :self.hidden_size])     # (N, T, H), filled step by step
        final_state, kept = self._steps(XW, state, hidden)
        h_start = state[0] if self._gates == 4 else state
        self.save_for_backward(x_rows=x_rows, hidden=hidden, h_start=h_start, kept=kept, final_state=final_state)
        # (N, T, H); the reshape changes nothing but tells an ONNX trace (ndonnx's empty_like forgets
        # sizes) that T and H are fixed, as the next layer's checks expect
        return xp.reshape(hidden, (-1, steps, self.hidden_size))

    def backward(self, grad_out):
        """grad_out: dL/dh for every step (N, T, H) -> dL/dx (N, T, C); adds every parameter gradient."""
        dZ_input = self._parameter_gradients(grad_out)
        grad_in = dZ_input @ self.W_ih.data.T                             # dL/dx = dZ W_ih^T, (N T, C)
        return self.xp.reshape(grad_in, grad_out.shape[:2] + (self.input_size,))

    def backward_params(self, grad_out):
        """The parameter gradients of :meth:`backward`, without dL/dx (the first layer of a model needs none)."""
        self._parameter_gradients(grad_out)

    def _parameter_gradients(self, grad_out):
        """The reverse loop and the parameter gradients; returns dL/d(XW), (N T, G H)."""
        x_rows, hidden = self.saved("x_rows", "hidden")
        grad_out = self.check_grad_out(grad_out, tuple(hidden.shape))
        xp, width = self.xp, self._gates * self.hidden_size
        h_prev = self._states_before(hidden)                                # (N, T, H)
        grad_XW, grad_HW, grad_state = self._back_steps(grad_out, h_prev, self.saved("kept"))
        self._saved["grad_state"] = grad_state      # beside what forward kept (not a new dict: Sequential
                                                    # recognises this forward's record by its identity)
        dZ_input = xp.reshape(grad_XW, (-1, width))                         # (N T, G H)
        dZ_hidden = xp.reshape(grad_HW, (-1, width))
        self.W_ih.accumulate_grad(x_rows.T @ dZ_input)                     # dL/dW_ih = X^T dZ
        self.W_hh.accumulate_grad(xp.reshape(h_prev, (-1, self.hidden_size)).T @ dZ_hidden)  # H_prev^T dZ
        grad_b_ih = xp.sum(dZ_input, axis=0)
        self.b_ih.accumulate_grad(grad_b_ih)
        # RNN and LSTM: the same dZ for both biases, summed once (a copy: each gradient its own array)
        self.b_hh.accumulate_grad(xp.asarray(grad_b_ih, copy=True) if grad_HW is grad_XW
                                  else xp.sum(dZ_hidden, axis=0))
        return dZ_input

    # -- helpers -------------------------------------------------------------------------------
    def _input_side(self):
        """(W, b) of the one big matmul before the loop, XW = x @ W + b: (W_ih, b_ih) here; RNN and
        LSTM add b_hh in too, and the LSTM scales by its gates' s (module docstring)."""
        return self.W_ih.data, self.b_ih.data

    def _initial_state(self, like, state):
        """Zeros shaped as ``like`` (N, H), or ``state`` checked (h, or (h, c) for an LSTM)."""
        zeros = self.xp.zeros_like(like)
        if state is None:
            return zeros if self._gates != 4 else (zeros, self.xp.zeros_like(like))
        shape = (like.shape[0], self.hidden_size)
        if self._gates == 4:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{self._name()}: state must be a pair (h, c) of shape {shape} each, "
                                f"got {type(state).__name__}")
            return tuple(self.check_input(s, shape=shape, what=f"initial state {name}")
                         for s, name in zip(state, "hc"))
        return self.check_input(state, shape=shape, what="initial state h")

    def _states_before(self, hidden):
        """The state each step started from, (N, T, H): the initial h, then the output shifted by one."""
        h_start = self.saved("h_start")
        return self.xp.concat([h_start[:, None, :], hidden[:, :-1, :]], axis=1)

    def _empty_like_steps(self, like):
        """An uninitialised (N, T, G H) array, filled step by step with slice assignment."""
        shape = (like.shape[0], like.shape[1], self._gates * self.hidden_size)
        return self.xp.empty(shape, dtype=like.dtype, device=self.backend.device)

    def _split(self, array):
        """The G blocks of width H along the last axis (one per gate)."""
        H = self.hidden_size
        return [array[:, k * H:(k + 1) * H] for k in range(self._gates)]

    def _W_hh_T(self):
        """W_hh^T as a row-major copy, for the backward loop's dZ_t @ W_hh^T: BLAS multiplies it
        faster than the transposed view (reshaping the view to 1-D copies it in row-major order)."""
        H, width = self.hidden_size, self._gates * self.hidden_size
        return self.xp.reshape(self.xp.reshape(self.W_hh.data.T, (-1,)), (width, H))

    def _sigmoid(self, z):
        """sigmoid(z) = (1 + tanh(z / 2)) / 2: one tanh, no overflow for any z."""
        return 0.5 * self.xp.tanh(0.5 * z) + 0.5

    def __repr__(self):
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size})"


class RNN(_Recurrent):
    """Elman RNN, as ``torch.nn.RNN(C, H, nonlinearity, batch_first=True)``.

    Forward per step::

        h_t = act(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh),  act = tanh or relu

    Backward per step, with dh = dL/dh_t from the output plus from step t+1::

        dz_t = dh * act'(z_t)   (tanh: 1 - h_t^2; relu: 1 where h_t > 0)
        dL/dh_{t-1} (carried) = dz_t @ W_hh^T

    Then dL/dW_ih = X^T dZ, dL/dW_hh = H_prev^T dZ, dL/db_ih = dL/db_hh = sum dZ, dL/dx = dZ W_ih^T.

    Args:
        input_size, hidden_size: C and H. nonlinearity: "tanh" (default) or "relu".
        seed: int, None or a NumPy Generator (weights drawn on the host: the same on every backend).
    """

    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", seed=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, seed)

    def config(self) -> dict:
        return {**super().config(), "nonlinearity": self.nonlinearity}

    def _input_side(self):
        return self.W_ih.data, self.b_ih.data + self.b_hh.data      # both biases once, outside the loop

    def _steps(self, XW, h, hidden):
        xp, W_hh = self.xp, self.W_hh.data
        zero = self.backend.constant(0.0, XW.dtype)
        for t in range(XW.shape[1]):
            z = XW[:, t, :] + h @ W_hh
            h = xp.tanh(z) if self.nonlinearity == "tanh" else xp.maximum(z, zero)
            hidden[:, t, :] = h
        return h, {}

    def _back_steps(self, grad_out, h_prev, kept):
        xp, W_hh_T, hidden = self.xp, self._W_hh_T(), self.saved("hidden")
        dZ = self._empty_like_steps(grad_out)
        dh = None
        for t in reversed(range(grad_out.shape[1])):
            dh = grad_out[:, t, :] if dh is None else grad_out[:, t, :] + dh
            h = hidden[:, t, :]
            slope = 1.0 - h * h if self.nonlinearity == "tanh" else xp.astype(h > 0, h.dtype)
            dz = dh * slope                                              # dL/dz_t
            dZ[:, t, :] = dz
            dh = dz @ W_hh_T                                              # dL/dh_{t-1}
        return dZ, dZ, dh

    def __repr__(self):
        extra = "" if self.nonlinearity == "tanh" else ", nonlinearity='relu'"
        return f"RNN({self.input_size}, {self.hidden_size}{extra})"


class LSTM(_Recurrent):
    """Long short-term memory, as ``torch.nn.LSTM(C, H, batch_first=True)``.

    Forward per step, with z = x_t W_ih + b_ih + h_{t-1} W_hh + b_hh split into [z_i, z_f, z_g, z_o]::

        i = sigmoid(z_i), f = sigmoid(z_f), g = tanh(z_g), o = sigmoid(z_o)
        c_t = f * c_{t-1} + i * g,    h_t = o * tanh(c_t)

    Backward per step, with dh = dL/dh_t (output + from step t+1) and dc carried from step t+1::

        do = dh * tanh(c_t)
        dc = dc + dh * o * (1 - tanh(c_t)^2)
        di = dc * g,  df = dc * c_{t-1},  dg = dc * i
        dz = [di i (1 - i), df f (1 - f), dg (1 - g^2), do o (1 - o)]
        dL/dc_{t-1} (carried) = dc * f,   dL/dh_{t-1} (carried) = dz @ W_hh^T

    Then the same four big matmuls as every recurrent layer (module docstring).
    """

    _gates = 4

    def _scale(self):
        """s: 1/2 on the sigmoid gates i, f, o and 1 on the tanh gate g, shape (4 H,)."""
        half = self.xp.full((self.hidden_size,), 0.5, dtype=self.W_hh.data.dtype, device=self.backend.device)
        return self.xp.concat([half, half, half + 0.5, half])

    def _input_side(self):
        # z * s is what the tanh takes: W_ih and both biases scaled by s before the big matmul and
        # W_hh before the loop (s is 1/2 or 1: exact in floating point), so no step multiplies by s
        s = self._scale()
        return self.W_ih.data * s, (self.b_ih.data + self.b_hh.data) * s

    def _steps(self, XW, state, hidden):
        xp = self.xp
        h, c = state
        s = self._scale()
        W_hh, shift = self.W_hh.data * s, 1.0 - s
        gates, c_prev, tanh_c = [], [], []
        for t in range(XW.shape[1]):
            c_prev.append(c)
            a = h @ W_hh                      # z * s = XW_t s + h (W_hh s); then a = tanh(z s) s + (1 - s)
            a += XW[:, t, :]                  # in place: a is a new array, and each pass costs time
            a = xp.tanh(a)
            a *= s
            a += shift                        # [i, f, g, o]
            i, f, g, o = self._split(a)
            c = f * c + i * g
            tc = xp.tanh(c)
            h = o * tc
            hidden[:, t, :] = h
            gates.append(a)
            tanh_c.append(tc)
        return (h, c), {"c_prev": c_prev, "gates": gates, "tanh_c": tanh_c}

    def _back_steps(self, grad_out, h_prev, kept):
        xp, W_hh_T = self.xp, self._W_hh_T()
        gates, c_prev, tanh_c = kept["gates"], kept["c_prev"], kept["tanh_c"]
        # the gates' slopes from their outputs a: sigmoid' = a (1 - a) on i, f, o and tanh' = 1 - a^2
        # on g, together a (k - a) + (1 - k) with k = 1 on the sigmoid gates and 0 on g
        k = 2.0 * (1.0 - self._scale())
        dZ = self._empty_like_steps(grad_out)
        dh = dc = None
        for t in reversed(range(grad_out.shape[1])):
            a, tc = gates[t], tanh_c[t]
            i, f, g, o = self._split(a)
            dh = grad_out[:, t, :] if dh is None else grad_out[:, t, :] + dh
            dc_here = dh * o * (1.0 - tc * tc)
            dc = dc_here if dc is None else dc + dc_here                   # dL/dc_t
            da = xp.concat([dc * g, dc * c_prev[t], dc * i, dh * tc], axis=1)     # dL/d[i, f, g, o]
            dz = da * (a * (k - a) + (1.0 - k))                                # dL/dz_t
            dZ[:, t, :] = dz
            dc = dc * f                                                        # dL/dc_{t-1}
            dh = dz @ W_hh_T                                                   # dL/dh_{t-1}
        return dZ, dZ, (dh, dc)


class GRU(_Recurrent):
    """Gated recurrent unit, as ``torch.nn.GRU(C, H, batch_first=True)``.

    Forward per step, with xw = x_t W_ih + b_ih = [xw_r, xw_z, xw_n], hw = h_{t-1} W_hh + b_hh likewise::

        r = sigmoid(xw_r + hw_r),  z = sigmoid(xw_z + hw_z)
        n = tanh(xw_n + r * hw_n)            (hw_n = h_{t-1} W_hn + b_hn: the reset gate scales it)
        h_t = (1 - z) * n + z * h_{t-1}

    Backward per step, with dh = dL/dh_t (output + from step t+1)::

        dn = dh (1 - z) (1 - n^2)           (dL/d of n's pre-activation)
        dr = dn * hw_n * r (1 - r),   dz = dh (h_{t-1} - n) z (1 - z)
        dL/dxw = [dr, dz, dn],   dL/dhw = [dr, dz, dn * r]
        dL/dh_{t-1} (carried) = dh * z + dL/dhw @ W_hh^T

    The input and hidden parts differ only in the n block, so dL/dW_hh = H_prev^T dL/dhw.
    """

    _gates = 3

    def _steps(self, XW, h, hidden):
        xp, H, W_hh, b_hh = self.xp, self.hidden_size, self.W_hh.data, self.b_hh.data
        reset_update, new, hw_new = [], [], []
        for t in range(XW.shape[1]):
            xw, hw = XW[:, t, :], h @ W_hh + b_hh                   # one matmul for the three gates
            rz = self._sigmoid(xw[:, :2 * H] + hw[:, :2 * H])     # [r, z]
            hn = hw[:, 2 * H:]
            n = xp.tanh(xw[:, 2 * H:] + rz[:, :H] * hn)
            h = n + rz[:, H:] * (h - n)                            # (1 - z) n + z h_{t-1}
            hidden[:, t, :] = h
            reset_update.append(rz)
            new.append(n)
            hw_new.append(hn)
        return h, {"rz": reset_update, "n": new, "hn": hw_new}

    def _back_steps(self, grad_out, h_prev, kept):
        xp, H, W_hh_T = self.xp, self.hidden_size, self._W_hh_T()
        reset_update, new, hw_new = kept["rz"], kept["n"], kept["hn"]
        grad_XW, grad_HW = self._empty_like_steps(grad_out), self._empty_like_steps(grad_out)
        dh = None
        for t in reversed(range(grad_out.shape[1])):
            rz, n = reset_update[t], new[t]
            r, z = rz[:, :H], rz[:, H:]
            dh = grad_out[:, t, :] if dh is None else grad_out[:, t, :] + dh
            dn = dh * (1.0 - z) * (1.0 - n * n)                        # dL/d(xw_n + r hw_n)
            d_rz = xp.concat([dn * hw_new[t], dh * (h_prev[:, t, :] - n)], axis=1) * rz * (1.0 - rz)
            grad_XW[:, t, :2 * H] = d_rz
            grad_XW[:, t, 2 * H:] = dn
            grad_hw = xp.concat([d_rz, dn * r], axis=1)
            grad_HW[:, t, :] = grad_hw
            dh = dh * z + grad_hw @ W_hh_T                             # dL/dh_{t-1}
        return grad_XW, grad_HW, dh
