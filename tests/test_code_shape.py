"""The shape the code keeps: short product functions, no import-order tricks."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("model", "app", "digits")
MAX_FUNCTION_LINES = 50


def product_files():
    return sorted(f for package in PRODUCT for f in (ROOT / package).rglob("*.py"))


def test_no_product_function_is_longer_than_50_lines():
    long = []
    for f in product_files():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - first + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_no_import_waits_on_environment_set_above_it():
    offenders = [str(f.relative_to(ROOT)) for f in product_files() if "noqa: E402" in f.read_text()]
    assert not offenders, offenders
