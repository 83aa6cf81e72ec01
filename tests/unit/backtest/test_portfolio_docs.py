"""The Python examples of docs/portfolio.md run as written (from the repository root)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]


def test_docs_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "portfolio.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 4
    code = "\n".join(blocks).replace('"tests/data/', f'"{ROOT}/tests/data/')
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(code, "docs/portfolio.md", "exec"), scope)
    assert (tmp_path / "portfolio.html").exists()
