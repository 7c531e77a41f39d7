"""The disk backend's inlined fast paths keep one shape, so that a fix in one cannot miss the others.

``DiskBackend`` inlines the common case of each single-key operation (see
:mod:`locust_kv.backends.lmdb.backend`). The copies are compared here as
syntax trees, with what may differ between them (the operation's name and
arguments, its step, its error family, the state it compares with) replaced
by placeholders: any other change to one copy fails this test until the
others follow. The reads inline their step's own expression; that too is
checked against the step in :mod:`locust_kv.backends.lmdb.ops`. Every step
also takes the backend's clock (``self.clock``), read only when an expiry
matters; ``get`` and ``exists`` inline the expiry check of a store whose
keys expire, and ``size`` leaves such a store to its stepped slow path.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from locust_kv.backends.lmdb import backend, ops

WRITES = {
    # name: (family, step, the state record it compares with)
    "set": ("WRITE", "set_in", "fillable"),
    "delete": ("DELETE", "delete_in", "writable"),
    "increment_by": ("WRITE", "increment_in", "fillable"),
    "get_or_set": ("WRITE", "get_or_set_in", "fillable"),
    "swap": ("WRITE", "swap_in", "fillable"),
    "compare_and_swap": ("WRITE", "compare_and_swap_in", "fillable"),
    "compare_and_delete": ("DELETE", "compare_and_delete_in", "writable"),
}
READS = {
    "get": ("READ", "get_in"),
    "exists": ("EXISTS", "get_in"),
}
"""The reads that inline their step, and the expiry check of a store whose keys expire (same shape)."""


def _tree(function: object) -> ast.FunctionDef:
    node = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]  # type: ignore[arg-type]
    assert isinstance(node, ast.FunctionDef)
    node.decorator_list = []
    node.returns = None
    return node


class _Normalize(ast.NodeTransformer):
    """Replace the parts a fast path may vary in by placeholders."""

    def __init__(self, params: list[str], family: str, step: str, gate: str | None) -> None:
        self.params, self.family, self.step, self.gate = params, family, step, gate

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = "OP"
        node.args.args = [ast.arg("self"), ast.arg("ARGS")]
        node.args.defaults = []  # ttl_ms=None on the writes that take one
        self.generic_visit(node)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        names = {self.family: "FAMILY", self.step: "STEP"}
        return ast.Name(names.get(node.id, node.id), node.ctx)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if node.attr == self.gate:
            node.attr = "GATE"
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        if (isinstance(func, ast.Name) and func.id == "STEP") or (
            isinstance(func, ast.Attribute) and func.attr in ("_read", "_write")
        ):
            # (txn, view) or (family, step), then the operation's own arguments, in order: one placeholder.
            passed = [ast.unparse(arg) for arg in node.args[2:]]
            assert passed in (self.params, [*self.params, "self.clock"]), (
                f"{ast.unparse(node)} does not pass on the arguments {self.params}"
            )
            node.args = [*node.args[:2], ast.Name("ARGS", ast.Load())]
        return node


def _no_result_form(node: ast.FunctionDef) -> None:
    """Give an operation that returns nothing the shape of one that does (``result = step(...)``...)."""
    for parent in ast.walk(node):
        body = getattr(parent, "body", None)
        if not isinstance(body, list):
            continue
        for i, statement in enumerate(body):
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
                call = statement.value
                if isinstance(call.func, ast.Name) and call.func.id == "STEP":
                    body[i] = ast.Assign([ast.Name("result", ast.Store())], call, lineno=0)
                elif isinstance(call.func, ast.Attribute) and call.func.attr == "_write":
                    body[i] = ast.Return(call)
            elif isinstance(statement, ast.Return) and statement.value is None:
                statement.value = ast.Name("result", ast.Load())


READ_FIRST = {"get_or_set"}
"""Writes that first try to answer from a read transaction (a hit writes nothing); the rest is the write shape."""

_READ_FIRST_BLOCK = """
if self._read_first_skip:
    self._read_first_skip -= 1
else:
    try:
        txn = self._begin()
        try:
            view = self._view
            if view.writable is view.raw and (txn.id() == self._verified_txn or self._verify(txn, view)):
                current = txn.get(key, None, view.data)
                if current is not None and (
                    not view.expiring
                    or (now := _time() * 1000 if self.clock is wall_clock_ms else self.clock()) < view.floor
                    or (end := txn.get(key, None, view.expires)) is None
                    or int.from_bytes(end, "big") > now
                ):
                    return current, True
        finally:
            txn.abort()
    except lmdb.Error:
        pass
    self._read_first_skip = READ_FIRST_SKIP
"""


def _split_read_first(node: ast.FunctionDef) -> ast.stmt:
    """Take the read-first block off the front of ``if self._inline:``; that block."""
    inline = node.body[0]
    assert isinstance(inline, ast.If) and ast.unparse(inline.test) == "self._inline"
    return inline.body.pop(0)


def _shape(name: str, family: str, step: str, gate: str | None) -> str:
    node = _tree(getattr(backend.DiskBackend, name))
    if name in READ_FIRST:
        _split_read_first(node)
    params = [arg.arg for arg in node.args.args[1:]]
    node = _Normalize(params, family, step, gate).visit(node)
    _no_result_form(node)
    return ast.dump(node)


def test_the_write_fast_paths_have_one_shape() -> None:
    shapes = {name: _shape(name, *spec) for name, spec in WRITES.items()}
    reference = shapes["increment_by"]
    for name, shape in shapes.items():
        assert shape == reference, f"DiskBackend.{name} no longer has the shape of the other inlined writes"


@pytest.mark.parametrize("name", sorted(READ_FIRST))
def test_a_read_first_write_answers_a_hit_from_a_read_and_only_a_hit(name: str) -> None:
    block = _split_read_first(_tree(getattr(backend.DiskBackend, name)))
    assert ast.dump(block) == ast.dump(ast.parse(_READ_FIRST_BLOCK).body[0]), (
        f"DiskBackend.{name}: the read-first block changed"
    )


def _inlined(name: str, step: str, family: str) -> tuple[str, str]:
    """The read's shape with what it returns replaced, and the expression it reads the value with."""
    node = _tree(getattr(backend.DiskBackend, name))
    expressions = []
    for inner in ast.walk(node):
        if isinstance(inner, ast.Assign) and ast.unparse(inner.targets[0]) == "value":
            expressions.append(ast.dump(inner.value))
        if isinstance(inner, ast.Return) and inner.value is not None:
            value = inner.value
            if isinstance(value, ast.Compare) and isinstance(value.ops[0], ast.IsNot):
                value = value.left  # exists: "is not None" on the slow path
            if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "_read"):
                inner.value = ast.Name("INLINED", ast.Load())
            else:
                inner.value = value
    assert len(expressions) == 1, f"DiskBackend.{name}: expected one inlined read of the value"
    params = [arg.arg for arg in node.args.args[1:]]
    node = _Normalize(params, family, step, "raw").visit(node)
    return ast.dump(node), expressions[0]


@pytest.mark.parametrize("name", sorted(READS))
def test_each_read_fast_path_inlines_its_own_step(name: str) -> None:
    family, step = READS[name]
    _, expression = _inlined(name, step, family)
    body = _tree(getattr(ops, step)).body
    assert isinstance(body[-1], ast.Return) and body[-1].value is not None
    assert expression == ast.dump(body[-1].value), f"DiskBackend.{name} inlines something other than ops.{step}"


def test_size_inlines_its_step_for_a_store_without_expiries() -> None:
    node = _tree(backend.DiskBackend.size)
    returns = [
        inner.value
        for inner in ast.walk(node)
        if isinstance(inner, ast.Return) and inner.value is not None and not isinstance(inner.value, ast.Name)
    ]
    assert len(returns) == 1
    body = _tree(ops.size_in).body
    assert isinstance(body[-1], ast.Return) and body[-1].value is not None
    assert ast.dump(returns[0]) == ast.dump(body[-1].value)
    gates = [ast.unparse(inner.test) for inner in ast.walk(node) if isinstance(inner, ast.If)]
    assert (
        "(txn.id() == self._verified_txn or self._verify(txn, view)) and "
        "(not view.expiring or (_time() * 1000 if self.clock is wall_clock_ms else self.clock()) < view.floor)"
    ) in gates


def test_the_read_fast_paths_have_one_shape() -> None:
    shapes = {name: _inlined(name, step, family)[0] for name, (family, step) in READS.items()}
    reference = shapes["get"]
    for name, shape in shapes.items():
        assert shape == reference, f"DiskBackend.{name} no longer has the shape of the other inlined reads"
