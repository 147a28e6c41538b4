"""IAM policy documents as plain data: statements with sorted actions, and the document around them."""

from __future__ import annotations


def statement(
    sid: str, actions: list[str], resources: list | str, condition: dict | None = None, effect: str = "Allow"
) -> dict:
    statement = {"Sid": sid, "Effect": effect, "Action": sorted(actions), "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def document(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}
