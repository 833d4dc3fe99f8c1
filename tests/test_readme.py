"""The README's Python example runs as written."""

import re
from pathlib import Path


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"## Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102  our own documentation, not user input
    assert "fmen_s 4 255.0 local(34)" in capsys.readouterr().out
