"""The local-mode commands as a data scientist types them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_VIOLATIONS, main
from mlops.local import aws as local_aws


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path / "state"
    local_aws.stop(tmp_path / "state")


def test_local_up_status_down(capsys, state: Path) -> None:
    assert main(["local", "status"]) == EXIT_OK
    assert "not running" in capsys.readouterr().out
    assert main(["local", "up"]) == EXIT_OK
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in capsys.readouterr().out
    assert main(["local", "status"]) == EXIT_OK
    assert "embedded AWS on http://127.0.0.1:" in capsys.readouterr().out
    assert main(["local", "down"]) == EXIT_OK
    assert "stopped" in capsys.readouterr().out
    assert local_aws.running(state) is None


def test_a_bad_dataset_fails_the_command_at_validate(capsys, state: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("age,workclass\n39,Private\n")
    assert main(["pipeline", "run", "--local", "--data", str(bad)]) == EXIT_VIOLATIONS
    captured = capsys.readouterr()
    assert "Validate" in captured.out and "FAILED" in captured.out
    assert "nothing was registered" in captured.err
    assert main(["pipeline", "runs"]) == EXIT_OK
    assert "Failed" in capsys.readouterr().out


def test_missing_data_and_missing_local_flag(capsys, state: Path, tmp_path: Path) -> None:
    assert main(["pipeline", "run", "--local", "--data", str(tmp_path / "none.csv")]) == EXIT_BAD_INPUT
    assert "no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pipeline", "run"])


def test_monitor_commands_before_anything_is_monitored(capsys, state: Path) -> None:
    assert main(["monitor", "status"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "alarm OK" in out and "ALARM when 2 of the last 3 datapoints flag drift" in out
    assert main(["monitor", "run"]) == EXIT_BAD_INPUT
    assert "run `mlops monitor baseline` first" in capsys.readouterr().err
    assert main(["monitor", "status", "--json"]) == EXIT_OK
    assert '"alarm": "OK"' in capsys.readouterr().out
