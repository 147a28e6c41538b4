"""No platform module names a problem's feature, label or metric: they come from the declaration.

Platform: `mlops/`, `pipelines/`, `infra/` and `model_code/` (its steps, serving and drift). The
catalogues that define the vocabulary are exempt: `model_code/metrics.py` (the metrics and their
directions) and `model_code/estimators.py` (the estimators' parameters). The names checked are every
feature and label of the shipped problems and every metric a problem may choose as its primary one;
a string constant equal to one of them (or one of its words) fails the test. Docstrings are
documentation: their examples may name the Adult census.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mlops.settings import REPO_ROOT
from model_code import metrics
from model_code.problem import load_problem

PLATFORM = ("mlops", "pipelines", "infra", "model_code")
CATALOGUES = {Path("model_code/metrics.py"), Path("model_code/estimators.py")}


def problem_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for folder in sorted((REPO_ROOT / "problems").iterdir()):
        if (folder / "problem.yaml").is_file():
            schema = load_problem(folder).schema
            names |= {n: f"a column of problems/{folder.name}" for n in [*schema.feature_names, schema.label]}
    for task in metrics.BY_TASK:
        names |= {n: f"a {task} metric" for n in metrics.primary_names(task)}
    return names


def constants(tree: ast.AST) -> list[tuple[int, str]]:
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body and \
                isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            docstrings.add(id(body[0].value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_the_checked_names_include_each_problem_and_each_task() -> None:
    names = problem_names()
    assert {"age", "income_gt_50k", "cultivar", "progression", "auc", "rmse", "balanced_accuracy"} <= set(names)


def test_no_platform_module_names_a_feature_label_or_metric() -> None:
    names = problem_names()
    offenders = []
    for root in PLATFORM:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT)
            if relative in CATALOGUES:
                continue
            for line, text in constants(ast.parse(path.read_text())):
                for word in {text, *text.replace(",", " ").split()}:
                    if word in names:
                        offenders.append(f"{relative}:{line}: {word!r} ({names[word]})")
    assert offenders == []
