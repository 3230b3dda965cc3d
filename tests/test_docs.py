"""The docs and code cite only what the repository holds, and the names they give are the ones the
code accepts."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = [p for pattern in ("*.md", "gpu_bptt/**/*.py", "gpu_bptt/**/*.h", "kernels/*", "docs/*.md",
                             "bench/*", "tests/**/*.py", "examples/*.py")
           for p in ROOT.glob(pattern) if p.is_file() and p.suffix in (".md", ".py", ".h", ".cu",
                                                                         ".cuh", ".sh")]


def test_no_citation_of_a_design_file_outside_the_repository():
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES if p.name != "test_docs.py"
           for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
           if re.search(r"DESIGN(\.md)?\s*§", line)]
    assert not bad, f"cite docs/architecture.md instead: {bad}"


def test_every_cited_doc_exists():
    cited = {(p, m) for p in SOURCES for m in re.findall(r"\b(docs/[\w.-]+\.md)",
                                                         p.read_text(encoding="utf-8"))}
    missing = sorted(f"{p.relative_to(ROOT)} cites {m}" for p, m in cited if not (ROOT / m).is_file())
    assert not missing, missing
    assert (ROOT / "docs" / "architecture.md").is_file()


def test_readme_thread_orders_are_the_accepted_values():
    from gpu_bptt.emulator.module import ORDERS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"orders ((?:`\w+`,? (?:and )?)+)\(", readme)
    assert m, "README names the emulator's thread orders"
    assert re.findall(r"`(\w+)`", m.group(1)) == list(ORDERS)
