"""The README and the documentation site (issue 23): a short README, and figures that cannot go stale.

Benchmark pages show the files in benchmarks/results/ that the benchmark scripts wrote (docs/hooks.py includes
them at build time), so a rerun updates them. What is typed by hand around them, the README's headline table
and the prose of the benchmark pages, is checked here against those files: a figure that a rerun changed
fails this test until the text says the new one. `make docs` (CI) builds the site with --strict.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.M)
NAMED = re.compile(r"benchmarks/results/([\w.-]+)")
# an AUROC, AUPRC, AUPRO or ratio to three or four decimals, as the results files print them
FIGURE = re.compile(r"(?<![\w.])\d\.\d{3,4}(?![\d])")
NUMBER = re.compile(r"\d+\.\d+")


def slug(heading: str) -> str:
    """The anchor of a heading, as Python-Markdown's toc and GitHub make it."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def section(text: str, anchor: str | None) -> str:
    """The part of a page under the heading with this anchor, up to the next heading as high; all without one."""
    if not anchor:
        return text
    headings = list(re.finditer(r"^(#+) (.*)$", text, re.M))
    for i, h in enumerate(headings):
        if slug(h[2]) == anchor:
            end = next((g.start() for g in headings[i + 1:] if len(g[1]) <= len(h[1])), len(text))
            return text[h.start():end]
    raise AssertionError(f"no heading with anchor #{anchor}")


def sources(text: str) -> list[Path]:
    """The results files a piece of a page includes or names."""
    return sorted({RESULTS / Path(p).name for p in INCLUDE.findall(text)} | {RESULTS / n for n in NAMED.findall(text)})


def appears(figure: str, files: list[Path]) -> bool:
    """Whether a figure is one of the files' numbers as printed, or rounded to the figure's decimals."""
    places = len(figure.split(".")[1])
    value = float(figure)
    return any(abs(float(n) - value) <= 0.5 * 10 ** -places + 1e-12
               for f in files for n in NUMBER.findall(f.read_text()))


def checked_prose(text: str) -> str:
    """The page without its include lines and its "Other runs" paragraphs and sections (figures measured by
    earlier runs or by commands that write no results file, each stated with its command)."""
    text = INCLUDE.sub("", text)
    text = re.sub(r"^(#+) Other runs.*?(?=^#{1,2} |\Z)", "", text, flags=re.M | re.S)
    return "\n\n".join(p for p in re.split(r"\n\s*\n", text) if not p.lstrip().startswith("**Other runs."))


def test_the_readme_is_short():
    assert len(README.read_text()) <= 10_000


def test_the_readme_starts_with_the_two_setup_commands():
    first_block = README.read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "demo"], ["make", "test"]]


def headline_rows() -> list[tuple[str, str, str | None]]:
    """(row, page, anchor) of the README's results table."""
    table = README.read_text().split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| benchmark")
            and not line.startswith("| ---")]
    out = []
    for row in rows:
        link = re.search(r"\]\((docs/[\w/.-]+\.md)(?:#([\w-]+))?\)", row)
        assert link, f"a headline row links to its benchmark page: {row}"
        out.append((row, link[1], link[2]))
    return out


# the README's sentence about what `make demo` flagged, with the keys of the results file its last step writes
DEMO = ("its last step writes `benchmarks/results/demo.txt`: of the first {images} test digits in `images/`, "
        "{digit_images} of them nines (the anomaly), the default model flagged {digit_flagged} of the nines and "
        "{other_flagged} of the {other_images} other digits (test AUROC {auroc:.3f} for digit {digit}, recall "
        "{recall:.3f} at the threshold calibrated for {fpr_pct} % false positives)")


def demo_results() -> dict:
    """benchmarks/results/demo.txt's key=value pairs, as `make demo` (examples/mnist_pngs.py --results) wrote them."""
    line = [x for x in (RESULTS / "demo.txt").read_text().splitlines() if x and not x.startswith("#")][-1]
    pairs = dict(p.split("=", 1) for p in line.split())
    return {k: (int(v) if re.fullmatch(r"\d+", v) else float(v) if NUMBER.fullmatch(v) else v)
            for k, v in pairs.items()}


def test_the_readme_demo_sentence_is_what_make_demo_wrote():
    """Every figure of the sentence is demo.txt's: a rerun that flags another count fails this until the
    README says it (the sentence was once stale: '0 of 5 nines' while the run flagged 1)."""
    values = demo_results()
    expected = DEMO.format(**values, fpr_pct=f"{values['target_fpr'] * 100:g}")
    paragraph = next(p for p in README.read_text().split("\n\n") if p.startswith("`make demo` ends by scoring"))
    text = " ".join(paragraph.split())
    assert expected in text, f"README: {text}\nresults: {expected}"
    # no other figure before it in the paragraph: each number up to its end is one of the sentence's
    head = text[:text.index(expected) + len(expected)]
    assert sorted(re.findall(r"\d+(?:\.\d+)?", head)) == sorted(re.findall(r"\d+(?:\.\d+)?", expected)), head


def test_make_demo_writes_the_results_the_readme_sentence_reads(tmp_path):
    """examples/mnist_pngs.py --flagged ... --results writes the keys DEMO names, from the CSV and metrics."""
    import json
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    import mnist_pngs

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text(json.dumps({"config": {"fpr": 0.05}}))
    (tmp_path / "m.json").write_text(json.dumps({"auroc": 0.80123, "recall": 0.15, "score": "combined",
                                                 "model_dir": str(tmp_path / "m")}))
    rows = [f"images/{i:05d}-digit{d}.png,{flag}" for i, (d, flag) in enumerate([(9, True), (9, False), (4, True),
                                                                                 (7, False)])]
    (tmp_path / "scores.csv").write_text("path,is_anomaly\n" + "\n".join(rows) + "\n")
    out = tmp_path / "demo.txt"
    assert mnist_pngs.main(["--flagged", str(tmp_path / "scores.csv"), "--metrics", str(tmp_path / "m.json"),
                            "--results", str(out)]) == 0
    line = out.read_text().splitlines()[-1]
    assert line == ("images=4 digit=9 digit_images=2 digit_flagged=1 other_images=2 other_flagged=1 auroc=0.8012 "
                    "recall=0.15 score=combined target_fpr=0.05")
    assert "make demo" in out.read_text().splitlines()[0]


def test_the_readme_headline_table_links_each_row_to_a_benchmark_page():
    rows = headline_rows()
    assert len(rows) >= 4
    for _, page, _ in rows:
        assert page.startswith("docs/benchmarks/") and (ROOT / page).is_file(), page


@pytest.mark.parametrize("row, page, anchor", headline_rows(), ids=lambda v: str(v)[:40])
def test_each_readme_headline_figure_is_in_the_results_file_its_page_shows(row, page, anchor):
    files = sources(section((ROOT / page).read_text(), anchor))
    assert files, f"{page}#{anchor} shows no results file"
    figures = NUMBER.findall(row)
    assert figures, row
    missing = [f for f in figures if not appears(f, files)]
    assert not missing, f"{missing} of '{row[:60]}...' are not in {[f.name for f in files]}: rerun and update"


BENCHMARK_PAGES = sorted((DOCS / "benchmarks").glob("*.md"))


@pytest.mark.parametrize("page", BENCHMARK_PAGES, ids=lambda p: p.name)
def test_every_figure_in_a_benchmark_page_prose_is_in_the_results_files_its_section_shows(page):
    for part in re.split(r"^(?=## )", page.read_text(), flags=re.M):
        figures = FIGURE.findall(checked_prose(part))
        if not figures:
            continue
        files = sources(part)
        heading = part.splitlines()[0]
        assert files, f"{page.name}, '{heading}': figures {figures} but no results file included or named"
        missing = [f for f in figures if not appears(f, files)]
        assert not missing, (f"{page.name}, '{heading}': {missing} are in none of {[f.name for f in files]}: a "
                             "rerun changed them (update the text), or they belong in an '**Other runs.**' "
                             "paragraph with the command that measured them")


def test_every_include_names_a_results_file_and_every_results_file_is_shown():
    included = set()
    for page in DOCS.rglob("*.md"):
        for path in INCLUDE.findall(page.read_text()):
            assert (ROOT / path).is_file() and (ROOT / path).parent == RESULTS, f"{page.name}: {path}"
            included.add(Path(path).name)
    written = {p.name for p in RESULTS.iterdir() if p.suffix in (".md", ".txt")}
    assert written - included == set(), "results files that no benchmark page shows"


def test_the_scores_page_has_a_section_for_every_score_of_the_registry():
    from anomalyvae.scores import NAMES

    text = (DOCS / "concepts" / "scores.md").read_text()
    assert re.findall(r"^## `(\w+)`$", text, re.M) == list(NAMES)
    assert "<!-- scores-table -->" in text  # the registry's own table, written at build time


def test_the_cli_reference_is_the_help_of_the_commands():
    assert "<!-- cli-help -->" in (DOCS / "reference" / "cli.md").read_text()


def test_every_docs_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert {p for p in pages if f": {p}" not in nav} == set()


def test_formulas_render_offline_from_the_bundled_mathjax():
    import yaml

    conf = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python/name:", ""))
    scripts = [s if isinstance(s, str) else s.get("path", "") for s in conf["extra_javascript"]]
    assert not [s for s in scripts if "://" in s], scripts  # nothing from a CDN
    assert (DOCS / "javascripts" / "mathjax" / "tex-chtml.js").stat().st_size > 100_000


def test_pages_speak_to_users_not_about_the_projects_history():
    history = re.compile(r"\bissue \d+|\bthe issue\b|\bthe seeds'|\blast round\b|\bthis round\b", re.I)
    found = [(p.name, m.group(0)) for p in DOCS.rglob("*.md") for m in history.finditer(p.read_text())]
    assert not found, found
