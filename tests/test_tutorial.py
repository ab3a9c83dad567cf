"""docs/TUTORIAL.md runs as written: its Python blocks, in order, in one namespace."""
import re
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "TUTORIAL.md"


def test_tutorial_code_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.S)
    assert len(blocks) >= 6
    namespace = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{TUTORIAL.name}, block {number}", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    # the first block's output is shown in the tutorial: it must be what the code prints
    shown = re.search(r"```\n(tensor\(.*?\))\n```", TUTORIAL.read_text()).group(1)
    assert printed[0] == shown
