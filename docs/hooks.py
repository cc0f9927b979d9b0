"""MkDocs hooks (mkdocs.yml `hooks:`): the pages that must not be typed by hand are written at build time.

- `<!-- include: benchmarks/results/NAME -->` on a line of its own: that results file as the benchmark script
  wrote it (a .md file with its headings moved two levels down, under the page's own `##` section; anything
  else as a text block). A benchmark run that rewrites the file rewrites the page; a missing file fails the
  build. tests/test_docs.py checks the figures typed around them against the same files.
- `<!-- scores-table -->`: the score registry (anomalyvae/scores.py) as a table, so a new score shows up.
- `<!-- cli-help -->`: `anomalyvae --help` and every command's `--help`, run at build time.
- `<!-- modules-table -->`: every module of anomalyvae/ with the first sentence of its docstring.
- `[[speed.txt:KEY]]` anywhere in a line: KEY's value in the last `key=value ...` line of that results file.
- benchmarks/results/*.png become site files under results/, for the benchmark pages to show.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"^<!-- (include: (?P<path>\S+)|(?P<what>scores-table|cli-help|modules-table)) -->$", re.M)
HEADING = re.compile(r"^(#{1,4}) ", re.M)
VALUE = re.compile(r"\[\[(?P<file>[\w.-]+):(?P<key>\w+)\]\]")
PAIR = re.compile(r"(\w+)=(\S+)")


def on_files(files, config):
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"results/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files):
    def expand(m: re.Match) -> str:
        if m["path"]:
            return include(m["path"], page.file.src_uri)
        return {"scores-table": scores_table, "cli-help": cli_help, "modules-table": modules_table}[m["what"]]()

    return VALUE.sub(lambda m: value(m["file"], m["key"], page.file.src_uri), MARKER.sub(expand, markdown))


def include(path: str, where: str) -> str:
    file = (ROOT / path).resolve()
    if not file.is_file() or RESULTS not in file.parents:
        raise PluginError(f"{where}: '<!-- include: {path} -->' names no file in benchmarks/results/")
    text = file.read_text().strip()
    if file.suffix == ".md":
        return HEADING.sub(lambda h: "##" + h[1] + " ", text)  # its title goes under the page's own "## ..."
    return f"`{path}`:\n\n```text\n{text}\n```"


def value(name: str, key: str, where: str) -> str:
    file = RESULTS / name
    lines = [line for line in file.read_text().splitlines() if PAIR.search(line)] if file.is_file() else []
    pairs = dict(PAIR.findall(lines[-1])) if lines else {}
    if key not in pairs:
        raise PluginError(f"{where}: [[{name}:{key}]]: no {key}=... in the last key=value line of {file}")
    v = pairs[key]
    if re.fullmatch(r"\d+", v):
        return f"{int(v):,}"
    return f"{float(v):,.0f}" if re.fullmatch(r"[\d.]+e\+\d+", v) else v


def scores_table() -> str:
    from anomalyvae.scores import SCORES, computed_by

    kinds = {"images": "images", "features": "feature vectors", "series": "time series"}
    rows = ["| score | what it is | detectors | fitted on normal data |", "| --- | --- | --- | --- |"]
    for s in SCORES.values():
        inputs = ", ".join(f"{kinds[d.inputs]} ({d.name})" for d in computed_by(s.name))
        what = s.help.replace("|", "\\|")  # a bar inside a cell ends the cell
        rows.append(f"| [`{s.name}`](#{s.name}) | {what} | {inputs} | {', '.join(s.needs) or 'the network'} |")
    return "\n".join(rows)


def cli_help() -> str:
    from typer.main import get_command

    from anomalyvae.cli.main import app  # cli/ of the checkout, as installed

    out = []
    for command in ([], *([name] for name in get_command(app).commands)):
        env = {**os.environ, "COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}  # the width of the page's text
        run = "import sys; sys.argv[0] = 'anomalyvae'; from anomalyvae.cli.main import main; main()"  # the name
        r = subprocess.run([sys.executable, "-c", run, *command, "--help"], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=120)
        if r.returncode != 0:
            raise PluginError(f"anomalyvae {' '.join(command)} --help failed: {r.stderr.strip()[-500:]}")
        out.append(f"## anomalyvae {' '.join(command)}\n\n```text\n{r.stdout.rstrip()}\n```")
    return "\n\n".join(out)


def modules_table() -> str:
    rows = ["| module | what it is |", "| --- | --- |"]
    package = ROOT / "anomalyvae"
    top = sorted(package.glob("*.py"))
    subpackages = sorted(p.parent for p in package.glob("*/__init__.py"))
    for path in top + [m for sub in subpackages for m in [sub / "__init__.py", *sorted(sub.glob("[!_]*.py"))]]:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        first = " ".join(doc.split("\n\n")[0].split())
        sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
        rel = path.relative_to(package)
        name = f"{rel.parent}/" if rel.name == "__init__.py" else str(rel.with_suffix(""))
        if sentence:
            rows.append(f"| `{name}` | " + sentence.replace("|", "\\|") + " |")
    return "\n".join(rows)
