"""``shandy_cli.__all__`` is exactly the public surface (after httpx's ``test_exported_members``).

Generic on purpose: a name added to the package and to ``__all__`` needs no edit here.
What users' code already imports is pinned below, so it cannot silently vanish.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import ModuleType

import shandy_cli
from shandy_cli import errors

INIT = Path(shandy_cli.__file__)
# Public dunders: what ``__all__`` may hold beyond the public (no leading "_") names.
PUBLIC_DUNDERS = {"__version__"}

# The names users' code already imports: add freely, remove none.
CONTRACT = {
    "import_files",
    "ImportOptions",
    "ImportResult",
    "check_status",
    "preview_file",
    "ShandyError",
    "InputError",
    "ConfigError",
    "ApiError",
    "AuthenticationError",
    "ApiValidationError",
    "RequestTooLargeError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "ImportTimeout",
    "Interrupted",
    "trace",
    "TraceResult",
    "load_jobs",
    "list_jobs",
    "run_job",
}


def is_public(name: str) -> bool:
    return not name.startswith("_") or name in PUBLIC_DUNDERS


def top_level(tree: ast.Module) -> list[ast.stmt]:
    """The module's statements, with an ``if TYPE_CHECKING:`` block's own: the names the
    package loads on first use (its ``__getattr__``) are imported there for type checkers."""
    body: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            body.extend(node.body)
        else:
            body.append(node)
    return body


def names_bound_in_init() -> set[str]:
    """Every name ``__init__.py`` binds at top level: imports, defs, classes, assignments."""
    bound: set[str] = set()
    for node in top_level(ast.parse(INIT.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            bound.add(node.target.id)
    return bound - {"__all__", "annotations"}


def test_all_is_sorted_and_has_no_repeats() -> None:
    assert shandy_cli.__all__ == sorted(set(shandy_cli.__all__))


def test_every_name_in_all_exists_and_comes_from_the_package() -> None:
    for name in shandy_cli.__all__:
        assert hasattr(shandy_cli, name), f"__all__ lists {name!r}, which the package lacks"
        member = getattr(shandy_cli, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            assert member.__module__.split(".")[0] == "shandy_cli", (name, member.__module__)


def test_every_public_name_in_init_is_in_all() -> None:
    public = {name for name in names_bound_in_init() if is_public(name)}
    assert public - set(shandy_cli.__all__) == set(), "public names missing from __all__"
    assert set(shandy_cli.__all__) - public == set(), "__all__ names __init__.py does not bind"


def test_no_public_attribute_of_the_package_is_left_out() -> None:
    """What ``vars(shandy_cli)`` holds beyond ``__all__`` is private or a submodule."""
    stray = {
        name
        for name, value in vars(shandy_cli).items()
        if is_public(name) and not isinstance(value, ModuleType)
    } - set(shandy_cli.__all__)
    assert stray == set()


def test_the_contract_names_are_all_still_exported() -> None:
    assert CONTRACT - set(shandy_cli.__all__) == set()


def own_docstring(member: object) -> str:
    """The docstring ``member`` itself declares: not inherited, not a dataclass's signature."""
    if inspect.isclass(member):
        doc = vars(member).get("__doc__") or ""
        if doc.startswith(f"{member.__name__}("):  # what @dataclass makes when there is none
            return ""
        return doc.strip()
    return (getattr(member, "__doc__", None) or "").strip()


def test_every_listed_class_and_function_has_a_docstring() -> None:
    missing = [
        name
        for name in shandy_cli.__all__
        if (inspect.isclass(m := getattr(shandy_cli, name)) or inspect.isfunction(m))
        and not own_docstring(m)
    ]
    assert missing == []


def test_the_checks_above_can_fail() -> None:
    """The helpers catch what they exist to catch: an undocumented dataclass, a stray import."""
    from dataclasses import dataclass

    @dataclass
    class Bare:
        x: int

    @dataclass
    class Documented:
        """Said."""

        x: int

    class Child(errors.ShandyError):
        pass

    assert own_docstring(Bare) == "" and own_docstring(Child) == ""
    assert own_docstring(Documented) == "Said."
    assert "import_files" in names_bound_in_init() and "__version__" in names_bound_in_init()
