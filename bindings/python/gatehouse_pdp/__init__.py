"""Gatehouse decisions in-process: the pdp-wasm module under wasmtime.

Talks to the module through its plain C ABI (see pdp-wasm/README.md):
JSON in, tagged JSON out — ``{"type": "success", ...}`` or
``{"type": "failure", "errors": [{"kind": ..., "message": ...}]}`` —
byte-identical to native pdp-core. Decisions never raise for bad input;
only :meth:`Pdp.load` raises (:class:`LoadError`), since there is no
decision point to return.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import wasmtime

try:  # wasmtime-py's own ctypes bindings: only for the checked fast path below
    from wasmtime import _ffi as _wffi
except ImportError:  # pragma: no cover - another wasmtime-py layout
    _wffi = None

__all__ = ["Pdp", "LoadError", "default_module_path"]

JsonInput = Union[str, bytes, Mapping[str, Any]]

_MASK32 = 0xFFFFFFFF


def default_module_path() -> Path:
    """``GATEHOUSE_PDP_WASM`` if set, else the module shipped in this package."""
    env = os.environ.get("GATEHOUSE_PDP_WASM")
    return Path(env) if env else Path(__file__).with_name("pdp_wasm.wasm")


class LoadError(Exception):
    """A bundle (or the options) was refused; ``kind`` is the stable reason."""

    def __init__(self, errors: list):
        self.errors = errors
        first = errors[0] if errors else {"kind": "internal", "message": "no detail"}
        self.kind = first.get("kind", "internal")
        super().__init__(f"{self.kind}: {first.get('message', '')}")


_modules: dict = {}
_modules_lock = threading.Lock()


def _compiled(path: Path):
    """One engine and compiled module per file, shared by every Pdp."""
    key = str(path.resolve())
    with _modules_lock:
        if key not in _modules:
            engine = wasmtime.Engine()
            _modules[key] = (engine, wasmtime.Module.from_file(engine, key))
        return _modules[key]


def _bytes(value: JsonInput) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _failure(kind: str, message: str) -> str:
    return json.dumps(
        {"type": "failure", "errors": [{"kind": kind, "message": message}]},
        separators=(",", ":"),
    )


class _Export:
    """An exported function of integer parameters and results.

    wasmtime-py's ``Func.__call__`` reflects on the function's type (several
    FFI calls and objects) on every call, which costs more than a decision.
    Here the type is checked once; then each call fills a reused array of
    raw values and goes through ``wasmtime_func_call_unchecked`` — sound
    because the types were checked. Any other signature, or a wasmtime-py
    without those bindings, takes the ordinary checked call.
    """

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func):
        self.func = func
        ty = func.type(store)
        self.params = [str(t) for t in ty.params]
        self.results = [str(t) for t in ty.results]
        kinds = self.params + self.results
        self.fast = (
            _wffi is not None
            and hasattr(_wffi, "wasmtime_func_call_unchecked")
            and hasattr(_wffi, "wasmtime_val_raw")
            and hasattr(func, "_func")
            and len(self.results) <= 1
            and all(k in ("i32", "i64") for k in kinds)
        )
        if self.fast:
            self.raw = (_wffi.wasmtime_val_raw * max(1, len(self.params), len(self.results)))()

    def __call__(self, store: wasmtime.Store, *args: int) -> Any:
        if not self.fast:
            return self.func(store, *args)
        if len(args) != len(self.params):
            raise wasmtime.WasmtimeError(f"expected {len(self.params)} arguments, got {len(args)}")
        raw = self.raw
        for i, (kind, value) in enumerate(zip(self.params, args)):
            if kind == "i32":
                raw[i].i32 = value
            else:
                raw[i].i64 = value
        trap = ctypes.POINTER(_wffi.wasm_trap_t)()
        error = _wffi.wasmtime_func_call_unchecked(
            store._context(), ctypes.byref(self.func._func), raw, len(raw), ctypes.byref(trap)
        )
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if trap:
            raise wasmtime.Trap._from_ptr(trap)
        if not self.results:
            return None
        return raw[0].i32 if self.results[0] == "i32" else raw[0].i64


class _Instance:
    """One module instance and its C ABI; every import is a trap (the C ABI
    never calls the JS face's imports)."""

    def __init__(self, path: Path):
        engine, module = _compiled(path)
        self.store = wasmtime.Store(engine)
        linker = wasmtime.Linker(engine)
        linker.define_unknown_imports_as_traps(module)
        instance = linker.instantiate(self.store, module)
        exports = instance.exports(self.store)
        self.memory = exports["memory"]
        self.f = {
            name: _Export(self.store, exports[name])
            for name in (
                "alloc",
                "dealloc",
                "gatehouse_load",
                "gatehouse_apply_delta",
                "gatehouse_is_authorized",
                "gatehouse_is_authorized_with_token",
                "gatehouse_batch_is_authorized",
                "gatehouse_user",
                "gatehouse_search_resources",
                "gatehouse_search_subjects",
                "gatehouse_search_actions",
                "gatehouse_revision",
                "gatehouse_free",
            )
        }

        # One request buffer, reused and grown as needed (a host-owned
        # buffer from `alloc`, per the ABI), instead of alloc+dealloc per call.
        self.scratch = (0, 0)

    def put_scratch(self, data: bytes) -> tuple:
        if len(data) > self.scratch[1]:
            if self.scratch[1]:
                self.free(self.scratch)
                self.scratch = (0, 0)
            size = max(len(data), 4096)
            ptr = self.f["alloc"](self.store, size)
            if ptr == 0:
                raise MemoryError(f"the module could not allocate {size} bytes")
            self.scratch = (ptr, size)
        if data:
            self.memory.write(self.store, data, self.scratch[0])
        return self.scratch[0], len(data)

    def put(self, data: bytes) -> tuple:
        ptr = self.f["alloc"](self.store, len(data))
        if ptr == 0 and data:
            raise MemoryError(f"the module could not allocate {len(data)} bytes")
        if data:
            self.memory.write(self.store, data, ptr)
        return ptr, len(data)

    def free(self, buf: tuple) -> None:
        self.f["dealloc"](self.store, buf[0], buf[1])

    def take(self, packed: int) -> str:
        packed &= 0xFFFFFFFFFFFFFFFF
        ptr, length = packed >> 32, packed & _MASK32
        data = self.memory.read(self.store, ptr, ptr + length)
        self.free((ptr, length))
        return bytes(data).decode("utf-8")

    def call(self, name: str, *args) -> str:
        """Call ``name`` with byte arguments in module memory (freed after)
        and plain integers as they are; the answer as a string."""
        bufs, flat = [], []
        single = sum(isinstance(a, bytes) for a in args) == 1
        try:
            for a in args:
                if isinstance(a, bytes) and single and len(a) <= 1 << 20:
                    flat.extend(self.put_scratch(a))
                elif isinstance(a, bytes):
                    buf = self.put(a)
                    bufs.append(buf)
                    flat.extend(buf)
                else:
                    flat.append(a)
            return self.take(self.f[name](self.store, *flat))
        finally:
            for b in bufs:
                self.free(b)


class Pdp:
    """A loaded decision point. Thread-safe (calls are serialised)."""

    def __init__(self, instance: _Instance, handle: int, loaded: dict):
        self._i = instance
        self._handle = handle
        self._lock = threading.Lock()
        #: What the load answered: realm, revision, signed_by.
        self.loaded = loaded

    @classmethod
    def load(
        cls,
        bundle: bytes,
        options: Optional[JsonInput] = None,
        *,
        module: Optional[Union[str, Path]] = None,
    ) -> "Pdp":
        """Load a bundle. ``options``: ``trust_keys`` (Ed25519 SPKI PEMs),
        ``jwks``, ``dev``, ``limits``, ``max_request_bytes`` (see
        pdp-wasm/README.md). Raises :class:`LoadError` when refused."""
        inst = _Instance(Path(module) if module else default_module_path())
        answer = json.loads(
            inst.call("gatehouse_load", bytes(bundle), _bytes(options or b""))
        )
        if answer.get("type") != "success":
            raise LoadError(answer.get("errors", []))
        return cls(inst, answer.pop("handle"), answer)

    def _call(self, name: str, *args) -> str:
        with self._lock:
            return self._i.call(name, self._handle, *args)

    def is_authorized_json(self, request: JsonInput) -> str:
        """Decide one request; the tagged answer as JSON text."""
        return self._call("gatehouse_is_authorized", _bytes(request))

    def is_authorized(self, request: JsonInput) -> dict:
        """Decide one request; the tagged answer."""
        return json.loads(self.is_authorized_json(request))

    def is_authorized_with_token_json(
        self, token: str, request: JsonInput, now: Optional[float] = None
    ) -> str:
        """Decide for the subject of ``token`` verified at ``now`` (unix
        seconds; default: this host's clock). ``request`` has no principal
        and no token."""
        try:
            body = json.loads(request) if isinstance(request, (str, bytes)) else dict(request)
        except ValueError as e:
            return _failure("invalid_json", str(e))
        if not isinstance(body, dict):
            return _failure("invalid_json", "a request must be a JSON object")
        if "token" in body:
            return _failure(
                "invalid_json", "the token is given as its own argument, not in the request"
            )
        if not isinstance(token, str):
            return _failure("invalid_request", "token must be a string")
        seconds = int(time.time() if now is None else now)
        return self._call(
            "gatehouse_is_authorized_with_token", _bytes({"token": token, **body}), seconds
        )

    def is_authorized_with_token(
        self, token: str, request: JsonInput, now: Optional[float] = None
    ) -> dict:
        """:meth:`is_authorized_with_token_json`, parsed."""
        return json.loads(self.is_authorized_with_token_json(token, request, now))

    def token_request_json(self, request: JsonInput, now: int) -> str:
        """A ``TokenRequest`` with the token inside (the C ABI's own form)."""
        return self._call("gatehouse_is_authorized_with_token", _bytes(request), int(now))

    def batch_is_authorized_json(self, batch: JsonInput) -> str:
        """Decide a batch sharing a principal or a resource; JSON text."""
        return self._call("gatehouse_batch_is_authorized", _bytes(batch))

    def batch_is_authorized(self, batch: JsonInput) -> dict:
        """:meth:`batch_is_authorized_json`, parsed."""
        return json.loads(self.batch_is_authorized_json(batch))

    def search_resources_json(self, query: JsonInput) -> str:
        """One page of the resources of ``resource_type`` that ``principal``
        may do ``action`` on (``page``: ``limit``, and ``token``, the
        previous page's ``next_token``); the tagged answer as JSON text,
        exactly the line ``pdp search resource`` prints."""
        return self._call("gatehouse_search_resources", _bytes(query))

    def search_resources(self, query: JsonInput) -> dict:
        """:meth:`search_resources_json`, parsed: ``{"type": "success",
        "results": [...], "next_token": ..., "revision": N}`` (no
        ``next_token`` on the last page) or a failure."""
        return json.loads(self.search_resources_json(query))

    def search_subjects_json(self, query: JsonInput) -> str:
        """One page of the subjects of ``subject_type`` that may do
        ``action`` on ``resource`` (users only when Active); JSON text."""
        return self._call("gatehouse_search_subjects", _bytes(query))

    def search_subjects(self, query: JsonInput) -> dict:
        """:meth:`search_subjects_json`, parsed."""
        return json.loads(self.search_subjects_json(query))

    def search_actions_json(self, query: JsonInput) -> str:
        """One page of the actions ``principal`` may take on ``resource``;
        JSON text."""
        return self._call("gatehouse_search_actions", _bytes(query))

    def search_actions(self, query: JsonInput) -> dict:
        """:meth:`search_actions_json`, parsed."""
        return json.loads(self.search_actions_json(query))

    def apply_delta(self, bundle: bytes) -> dict:
        """Apply a delta (or newer snapshot); on failure the old one stays."""
        answer = json.loads(self._call("gatehouse_apply_delta", bytes(bundle)))
        answer.pop("handle", None)
        return answer

    def user(self, user_id: str) -> dict:
        """``{"type": "success", "user": {...} | None}``."""
        return json.loads(self._call("gatehouse_user", user_id.encode("utf-8")))

    def revision(self) -> int:
        """The bundle revision held."""
        with self._lock:
            return self._i.f["gatehouse_revision"](self._i.store, self._handle)

    def close(self) -> None:
        """Free the decision point's memory in the module."""
        with self._lock:
            if self._handle:
                self._i.f["gatehouse_free"](self._i.store, self._handle)
                self._handle = 0

    def __enter__(self) -> "Pdp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
