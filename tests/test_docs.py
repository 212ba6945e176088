"""docs/architecture.md stays true to the code: its generated tables are the ones gateskip.spec
makes today, and every file it names exists."""

import re
from pathlib import Path

from click.testing import CliRunner

from gateskip.spec import memories, protocol, registers

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"

#: a backticked block file of the hardware, e.g. `hw/backward.py`
HW_FILE = re.compile(r"`(hw/[A-Za-z0-9_]+\.py)`")
#: any backticked source file of the project's folders, e.g. `gateskip/host/link.py`
SOURCE_FILE = re.compile(r"`((?:spec|golden|hw|sim|synth|formal|gateskip|tests)/"
                         r"[A-Za-z0-9_./-]+\.(?:py|cpp|vlt))`")


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_register_memory_and_protocol_tables_are_generated():
    doc = _doc()
    assert registers.markdown_table() in doc, \
        "docs/architecture.md's register table is stale: paste `gateskip regs`"
    assert memories.markdown_table() in doc, \
        "docs/architecture.md's memory table is stale: paste `gateskip regs`"
    assert protocol.markdown_table() in doc, \
        "docs/architecture.md's protocol tables are stale: gateskip.spec.protocol.markdown_table()"


def test_gateskip_regs_output_appears_whole():
    """The register table then the memory table, exactly as the command prints them."""
    from gateskip.cli import main
    result = CliRunner().invoke(main, ["regs"])
    assert result.exit_code == 0, result.output
    assert result.output in _doc(), "docs/architecture.md differs from `gateskip regs`"


def test_every_hw_file_named_exists():
    named = sorted(set(HW_FILE.findall(_doc())))
    assert named, "no `hw/*.py` path found in docs/architecture.md"
    missing = [path for path in named if not (ROOT / path).is_file()]
    assert missing == [], f"docs/architecture.md names files that do not exist: {missing}"


def test_every_source_file_named_exists():
    named = sorted(set(SOURCE_FILE.findall(_doc())))
    missing = [path for path in named if not (ROOT / path).is_file()]
    assert missing == [], f"docs/architecture.md names files that do not exist: {missing}"
