"""The layer kit: the few methods every layer (bpcore's own and yours) is written with.

A layer needs five things besides its arithmetic, and each is one call:

    self.W = self.parameter(host_array)        make a Parameter on the layer's device and dtype
    x = self.check_input(x, shape=("batch", ..., n))   accept an input (array, device, dtype, sizes) or say why not
    self.save_for_backward(x=x, mask=mask)     keep what backward reads ...
    x, mask = self.saved("x", "mask")          ... and get it back ("call forward first" if there is none)
    self.check_grad_out(grad_out, shape)       refuse a grad_out that does not fit the forward output
    self.W.accumulate_grad(x.T @ grad_out)     add (+=) into a Parameter's gradient

plus ``self.register_buffer(name, host_array)`` for state that is not trained (running
statistics). What ``save_for_backward`` keeps is dropped by ``to()`` and ``astype()`` (it lives on
the old device or in the old dtype), whatever it is called; parameters and buffers move.

Integer inputs: a layer whose input is integer indices (an Embedding, a language model) says so by
returning their bound V from ``input_indices()`` (the default, None, means numbers: integer and bool
inputs are cast to the layer's float dtype). ``check_input`` then keeps the integers as they are,
refuses floats, and checks every index lies in [0, V) on each call where reading values costs no
device sync (``backend.sync_free``: NumPy, array_api_strict, torch on the CPU); ``fit``,
``evaluate``, ``predict`` and ``gradcheck`` ask the model, so integer data reach it unconverted and
are checked once where they enter. A Sequential answers for its first layer; a layer of yours
whose input goes to an Embedding returns that Embedding's ``input_indices()``. Backward of such a
layer returns None: indices have no gradient.

``KitMethods`` is a base of :class:`bpcore.nn.Layer`; its methods read the layer's backend
(``self._backend``), float dtype (``self._dtype``, and the namespace's dtype object for it,
``self._array_dtype``) and name for messages (``self._name()``).
"""
from __future__ import annotations

import math

import backends

from .._checks import ArgumentTypeError, check_cast_range
from . import budget
from .parameter import Parameter, checked_host_cast, dtype_name

# A torch tensor that autograd tracks would attach a graph to every result (memory growing each step).
TRACKED = ("{} is a torch tensor with requires_grad=True; bpcore computes gradients by hand, and "
           "autograd would record a graph at every step. Pass x.detach()")


def shape_fits(shape, spec) -> bool:
    """Whether ``shape`` matches ``spec``: a tuple of ints (sizes that must match), strings (any
    size: names such as "batch") and at most one ``...`` (any number of axes, none included)."""
    if spec.__class__ is not tuple:
        if isinstance(spec, (str, bytes)) or not hasattr(spec, "__iter__"):
            raise TypeError(f"a shape spec is a tuple of ints, names and at most one ..., got {spec!r}")
        spec = tuple(spec)
    plan = _PLANS.get(spec)
    if plan is None:
        if len(_PLANS) > 4096:           # specs come from layers' sizes: a few per model, bounded anyway
            _PLANS.clear()
        plan = _PLANS[spec] = _plan(spec)
    exact, minimum, checks = plan
    ndim = len(shape)
    if ndim != exact if exact is not None else ndim < minimum:
        return False
    for axis, size in checks:
        if shape[axis] != size:
            return False
    return True


_PLANS: dict = {}     # spec -> _plan(spec): the checks a spec means, worked out once (checks run every call)


def _plan(spec):
    """(the exact number of axes or None, the least number, ((axis, size), ...)) for a shape spec;
    axes after a ``...`` are counted from the end. A spec that is not ints >= 0, names and at most
    one ``...`` is a TypeError."""
    for wanted in spec:
        if not (wanted is Ellipsis or wanted.__class__ is str
                or (isinstance(wanted, int) and not isinstance(wanted, bool) and wanted >= 0)):
            raise TypeError(f"a shape spec is a tuple of ints >= 0, names and at most one ..., got {spec!r}")
    if spec.count(Ellipsis) > 1:
        raise TypeError(f"a shape spec has at most one ..., got {spec!r}")
    if Ellipsis in spec:
        cut = spec.index(Ellipsis)
        before, after = spec[:cut], spec[cut + 1:]
        checks = [(axis, wanted) for axis, wanted in enumerate(before) if wanted.__class__ is int]
        checks += [(axis - len(after), wanted) for axis, wanted in enumerate(after) if wanted.__class__ is int]
        return None, len(before) + len(after), tuple(checks)
    return len(spec), len(spec), tuple((axis, wanted) for axis, wanted in enumerate(spec) if wanted.__class__ is int)


def describe_shape(spec, got_ndim: int) -> str:
    """"(batch, 3, height, width)" for a spec. Its ``...`` is left out when the input had no more axes
    than the spec names (the everyday case: "(batch, 2)" for a Linear's ("batch", ..., 2))."""
    named = len(spec) - (Ellipsis in spec)
    names = ["..." if wanted is Ellipsis else str(wanted)
             for wanted in spec if wanted is not Ellipsis or got_ndim > named]
    return "(" + ", ".join(names) + (",)" if len(names) == 1 else ")")


def check_index_range(backend, indices, below: int, owner, what: str = "input") -> None:
    """Raise ValueError unless every entry of ``indices`` (an integer array of ``backend``) lies in
    [0, below). Reads the smallest and largest on the host together: one sync on a GPU, which is
    why layers call it per call only where that is free and fit/evaluate/predict once per data set.
    ``owner`` names the layer in the message (a string, or a callable giving it)."""
    if not math.prod(indices.shape):
        return
    xp = backend.xp
    with backend.activate():
        both = backend.to_numpy(xp.stack([xp.min(indices), xp.max(indices)]))
    smallest, largest = int(both[0]), int(both[1])
    if smallest < 0 or largest >= below:
        name = owner() if callable(owner) else owner
        bad = smallest if smallest < 0 else largest
        raise ValueError(f"{name}: {what} holds index {bad}, outside [0, {below}) (indices from {smallest} "
                         f"to {largest})")


def widened_indices(backend, indices, owner, what: str = "input"):
    """Integer ``indices`` (an array of ``backend``) as int64 unless they are int32 or int64 already:
    torch indexes only with those, and has no min or max (so no range check) for uint16, uint32 and
    uint64. The widening keeps every value, except a uint64 above int64's range, which is refused
    first where reading values is free (``backend.sync_free``) rather than wrapped to a negative."""
    xp = backend.xp
    if indices.dtype == xp.int64 or indices.dtype == xp.int32:
        return indices
    if indices.dtype == xp.uint64 and backend.sync_free:
        check_cast_range(backend.to_numpy(indices), "int64", f"{owner() if callable(owner) else owner}: {what}")
    with backend.activate():
        return xp.astype(indices, xp.int64)


class KitMethods:
    """The layer kit (see the module docstring): parameters, buffers, input and grad_out checks, the cache."""

    _saved = None             # what the last forward kept for backward (a dict), or None

    # -- making state ------------------------------------------------------
    def parameter(self, host_array) -> Parameter:
        """A trainable :class:`Parameter` holding ``host_array`` (NumPy, a list or a number), copied
        onto this layer's device in its float dtype. Call it in ``__init__``: ``self.W = self.parameter(W0)``.

        Raises:
            TypeError: the values are not numbers. ValueError: NaN or infinite values, or values
                beyond the range of the layer's dtype.
        """
        what = f"{type(self).__name__}.parameter()"
        host = backends.host_array_from(host_array, what)
        budget.spend(host.size, type(self).__name__)
        values = checked_host_cast(host, self._dtype, what)      # NaN, inf, or beyond float32: refused
        # a cast made a fresh array, which the parameter may keep; the caller's own array is copied
        return Parameter(self._backend.asarray(values, dtype=self._dtype, copy=values is host), self._backend)

    def register_buffer(self, name: str, host_array, persistent: bool = True) -> None:
        """Keep ``host_array`` as ``self.<name>``: state that is not trained (running statistics, a
        constant mask). It moves with ``to()``, floating values follow ``astype()``, and with
        ``persistent=True`` it is saved in ``state_dict()`` and checkpoints, as PyTorch's buffers.
        Floating values take the layer's dtype; integer and bool values keep theirs.
        """
        owner = f"{type(self).__name__}.register_buffer"
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"{owner}: name must be a public identifier, got {name!r}")
        if not isinstance(persistent, bool):
            raise ArgumentTypeError(f"{owner}: persistent must be True or False, got {persistent!r}")
        if name not in self._buffer_names + self._constant_names and (hasattr(type(self), name)
                                                                       or name in vars(self)):
            taken = "a method or attribute of the class" if hasattr(type(self), name) else \
                f"a {type(vars(self)[name]).__name__}"
            raise ValueError(f"{owner}: {name!r} is already {taken}; choose another name")
        host = backends.host_array_from(host_array, f"{type(self).__name__}.register_buffer({name!r})")
        budget.spend(host.size, type(self).__name__)
        floating = host.dtype.kind == "f"
        host = checked_host_cast(host, self._dtype if floating else None, f"buffer {name!r}")
        setattr(self, name, self._backend.asarray(host, dtype=str(host.dtype), copy=True))
        kind, other = ("_buffer_names", "_constant_names") if persistent else ("_constant_names", "_buffer_names")
        if name not in getattr(self, kind):
            setattr(self, kind, getattr(self, kind) + (name,))
        setattr(self, other, tuple(known for known in getattr(self, other) if known != name))

    # -- what forward receives ---------------------------------------------
    def input_indices(self) -> int | None:
        """None when this layer's input holds numbers (the default), or V when it holds integer
        indices below V (see the module docstring): :meth:`check_input` then keeps them integers."""
        return None

    def check_input(self, x, shape=None, what: str = "input"):
        """Return ``x`` as an array of this layer's device and float dtype, or raise naming the layer.

        Host NumPy arrays are moved and cast to the layer's dtype; arrays already on the device
        must have that dtype when they are floating point (no silent casts); integer and bool
        arrays are cast. ``shape`` (optional) is a tuple of ints (sizes that must match), names (any
        size) and at most one ``...`` (any number of axes): ``("batch", ..., n_in)`` for a Linear (2-D
        or more), ``(..., n)`` (any number of leading axes), ``("batch", 3, "height", "width")``.

        A layer whose ``input_indices()`` is V takes integer indices instead: they keep their
        integer dtype, floats and bools are refused, and on a sync-free backend every index must
        lie in [0, V).

        Raises:
            TypeError: not an array, another device's array, a float array of the other dtype, a
                torch tensor that autograd tracks, floats for indices. ValueError: the shape does
                not fit ``shape``; an index out of range.
        """
        backend = self._backend
        below = self.input_indices()
        if below is not None:
            x = self._convert_indices(x, what, below)
        elif not (backend.owns(x) and x.dtype == self._array_dtype) or (backend.autograd and x.requires_grad):
            x = self._convert_input(x, what)
        if shape is None:
            return x
        try:
            fits = shape_fits(x.shape, shape)
        except TypeError as error:                  # a malformed spec: this layer's mistake, named
            raise TypeError(f"{self._name()}: check_input(shape=...): {error}") from None
        if not fits:
            ndim = len(shape) - (Ellipsis in shape)
            if Ellipsis not in shape and x.ndim != ndim:
                expected = f"a {ndim}-D {what} of shape {describe_shape(shape, x.ndim)}"
            else:
                expected = f"{what} of shape {describe_shape(shape, x.ndim)}"
            raise ValueError(f"{self._name()}: expected {expected}, got {tuple(x.shape)}")
        return x

    def _convert_indices(self, x, what, below):
        """:meth:`check_input` for integer indices below ``below``: moved as they are, range-checked
        where that costs no sync."""
        backend = self._backend
        if getattr(x, "requires_grad", False):
            raise TypeError(TRACKED.format(f"{self._name()}: {what}"))
        if backends.is_host_array(x):
            integral = x.dtype.kind in "iu"
        else:
            x = backends.accept_array(backend, x, self._name, what)      # names another device's array
            integral = backend.isdtype(x.dtype, "integral")
        if not integral:
            hint = " (cast them: x.astype('int64'))" if "float" in dtype_name(x.dtype) else ""
            raise TypeError(f"{self._name()}: {what} must be integer indices in [0, {below}), got dtype "
                            f"{dtype_name(x.dtype)}{hint}")
        x = backend.asarray(x) if backends.is_host_array(x) else x
        x = widened_indices(backend, x, self._name, what)
        if backend.sync_free:
            check_index_range(backend, x, below, self._name, what)
        return x

    def _convert_input(self, x, what):
        """The slow path of :meth:`check_input`: move a host array, cast integers, or say what is wrong."""
        backend = self._backend
        if getattr(x, "requires_grad", False):
            raise TypeError(TRACKED.format(f"{self._name()}: {what}"))
        host = backends.is_host_array(x)
        if host:
            check_cast_range(x, self._dtype, f"{self._name()}: {what}")     # 1e39 would become float32 inf
        x = backends.accept_array(backend, x, self._name, what, dtype=self._dtype if host else None)
        dtype = self._array_dtype
        if x.dtype == dtype:
            return x
        xp = backend.xp
        if xp.isdtype(x.dtype, "real floating"):
            raise TypeError(f"{self._name()}: {what} has dtype {dtype_name(x.dtype)}, but the layer is "
                            f"{self._dtype}; cast it, or call model.astype({dtype_name(x.dtype)!r})")
        if not xp.isdtype(x.dtype, ("integral", "bool")):
            raise TypeError(f"{self._name()}: {what} must be a real-valued array, got dtype {x.dtype}")
        return xp.astype(x, dtype)

    # -- the cache between forward and backward ----------------------------
    def save_for_backward(self, **values) -> None:
        """Keep what backward will read (arrays, shapes, flags), by name; replaces what the last
        forward kept. ``to()``, ``astype()`` and ``summary()`` drop it."""
        self._saved = values

    def saved(self, *names):
        """What forward kept under ``names``: one value for one name, a tuple for several.

        Raises:
            RuntimeError: no forward has run since the layer was made, moved or cast ("call
                forward first"), or forward did not keep one of ``names``.
        """
        saved = self._saved
        if not names:
            raise TypeError(f"{self._name()}: saved() needs the names to read, e.g. x = self.saved('x')")
        if saved is None:
            raise self._no_forward()
        try:
            if len(names) == 1:
                return saved[names[0]]
            return tuple([saved[name] for name in names])
        except KeyError:
            missing = [name for name in names if name not in saved]
            raise RuntimeError(f"{self._name()}: backward asked for {missing}, but forward kept only "
                               f"{sorted(saved)} (save_for_backward(name=value, ...) in forward)") from None

    # -- what backward receives --------------------------------------------
    def check_grad_out(self, grad_out, shape=None):
        """Return ``grad_out`` after the checks forward's input gets: an array of this layer's device
        (a host array, another device's array or None is a TypeError), of the layer's dtype (no
        silent float64 gradients in a float32 model) and, when given, of ``shape`` (the forward
        output's shape: a ValueError otherwise)."""
        backend = self._backend
        if (backend.owns(grad_out) and grad_out.dtype == self._array_dtype and backend.trains
                and (shape is None or grad_out.shape == shape)
                and not (backend.autograd and grad_out.requires_grad)):
            return grad_out             # the common case, first; each failure is named below
        if shape is not None and (not isinstance(shape, (tuple, list)) or not all(   # None: a traced batch axis
                size is None or (isinstance(size, int) and not isinstance(size, bool) and size >= 0)
                for size in shape)):
            raise TypeError(f"{self._name()}: check_grad_out(grad_out, shape): shape must be a tuple of ints "
                            f"(the forward output's shape), got {shape!r}")
        if not backend.trains:
            raise self._inference_only()
        if getattr(grad_out, "requires_grad", False):
            raise TypeError(TRACKED.format(f"{self._name()}: grad_out"))
        if not backend.owns(grad_out):
            backends.accept_array(backend, grad_out, self._name, "grad_out")     # raises, naming both
            raise TypeError(f"{self._name()}: grad_out must be an array of {backend.spec} (the layer's "
                            f"device), got a host array; move it with model.backend.asarray(...)")
        if grad_out.dtype != self._array_dtype:
            raise TypeError(f"{self._name()}: grad_out has dtype {dtype_name(grad_out.dtype)}, but the layer "
                            f"is {self._dtype}; cast it, or call model.astype({dtype_name(grad_out.dtype)!r})")
        if shape is not None and tuple(grad_out.shape) != tuple(shape):
            raise ValueError(f"{self._name()}: backward expected grad_out of shape "
                             f"{tuple(shape)} (the forward output), got {tuple(grad_out.shape)}")
        return grad_out

    # -- the errors --------------------------------------------------------
    def _inference_only(self):
        return backends.InferenceOnlyError(
            f"{self._name()}: backward() on the {self._backend.spec} backend, which only records the forward "
            f"pass: export is inference-only. Train on another backend (model.to('cpu')), then export")

    def _no_forward(self):
        if not self._backend.trains:
            return self._inference_only()
        return RuntimeError(f"{self._name()}: backward() called before forward(); run a forward pass first "
                            f"(the layer was just made, moved with to() or cast with astype())")
