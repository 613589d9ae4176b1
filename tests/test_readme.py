"""The README's Python API example runs as written and prints what it says."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch):
    block = re.search(r"<!-- api-example:begin -->\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNSTUDY_CACHE", str(tmp_path / "cache"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        exec(compile(block, "README.md", "exec"), {})
    text = out.getvalue()
    assert "verdict" in text and "test_acc" in text and "mlp" in text
    assert "report.html" in text and (tmp_path / "nnstudy-out" / "quickstart" / "report.html").is_file()
    assert len(re.findall(r"\bdone\b", text)) == 4, text
