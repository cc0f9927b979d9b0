"""Every ```bash and ```python block of the README and of docs/ runs, in order, as typed (issues 22 and 23).

The blocks of each file run one after another in one fresh folder laid out as a clean checkout after
`make demo`'s data step (MNIST in data/mnist, the 40 test digits in images/, configs/ and examples/), so a
block sees what the blocks above it made, as a reader following the page does. Small data: `anomalyvae train`
gets `--limit 600 --epochs 1` appended (a shim first on PATH; `source .venv/bin/activate` puts it there).

An HTML comment on the line before a block changes how it runs:
  <!-- illustrative: WHY -->    not run (a server that never ends, a GPU, hours); WHY is required
  <!-- requires: PATH -->       run only where PATH exists, else skipped naming it
  <!-- background: URL -->      started in the background; the next block runs once URL answers; stopped at the end
Every markdown file under docs/ is in DOCS: a new page's blocks run too.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
QUICK_TRAIN = "--limit 600 --epochs 1"
FENCE = re.compile(r"(?:<!--\s*(?P<kind>\w+):\s*(?P<arg>.*?)\s*-->\n)?```(?P<lang>bash|python)\n(?P<code>.*?)^```",
                   re.S | re.M)


@dataclass
class Block:
    doc: str
    line: int
    lang: str
    code: str
    kind: str | None  # illustrative | requires | background | None (run it)
    arg: str | None


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    return [Block(path.relative_to(ROOT).as_posix(), text[:m.start("lang")].count("\n") + 1, m["lang"], m["code"],
                  m["kind"], m["arg"])
            for m in FENCE.finditer(text)]


def test_every_block_that_is_not_run_says_why():
    for doc in DOCS:
        for b in blocks(doc):
            assert b.kind in (None, "illustrative", "requires", "background"), (b.doc, b.line, b.kind)
            assert b.kind is None or b.arg, f"{b.doc}:{b.line}: say why, or what it needs"


def test_the_readme_has_runnable_blocks_in_bash_and_python():
    found = blocks(ROOT / "README.md")
    assert {b.lang for b in found if b.kind is None} == {"bash", "python"}


def checkout(folder: Path, mnist: Path) -> dict[str, str]:
    """A clean checkout after `make demo`'s data step, and the environment its blocks run in."""
    for name in ("configs", "examples"):
        shutil.copytree(ROOT / name, folder / name)
    (folder / "data").mkdir()
    (folder / "data" / "mnist").symlink_to(mnist)
    subprocess.run([sys.executable, "examples/mnist_pngs.py", "--out", "images", "--data-dir", "data"],
                   cwd=folder, check=True, capture_output=True)
    shim = folder / ".venv" / "bin"
    shim.mkdir(parents=True)
    (shim / "anomalyvae").write_text(
        f'#!/bin/sh\nif [ "$1" = train ]; then exec "{sys.executable}" -m anomalyvae "$@" {QUICK_TRAIN}; fi\n'
        f'exec "{sys.executable}" -m anomalyvae "$@"\n')
    (shim / "anomalyvae").chmod(0o755)
    (shim / "activate").write_text(f'export PATH="{shim}:$PATH"\n')
    venv_bin = os.path.dirname(sys.executable)  # python, mlflow, uvicorn
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PATH=f"{shim}{os.pathsep}{venv_bin}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               MPLBACKEND="Agg")
    return env


def wait_for(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, f"the background block ended (exit {proc.returncode}) before {url} answered"
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer within {seconds:.0f} s"
            time.sleep(1)


def runs(b: Block) -> bool:
    return b.kind != "illustrative" and not (b.kind == "requires" and not Path(b.arg.split()[0]).exists())


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_the_code_blocks_run_in_order_as_typed(doc, tmp_path, mnist_dir):
    skipped = [f"{b.doc}:{b.line} ({b.arg})" for b in blocks(doc) if not runs(b)]
    print("not run:", *skipped, sep="\n  ")
    todo = [b for b in blocks(doc) if runs(b)]
    if not todo:
        return  # no checkout to lay out (it writes 40 PNG files): most pages have no block to run
    env = checkout(tmp_path, mnist_dir)
    servers = []
    try:
        for b in todo:
            where = f"{b.doc}:{b.line}"
            cmd = ["bash", "-euo", "pipefail", "-c", b.code] if b.lang == "bash" else [sys.executable, "-c", b.code]
            if b.kind == "background":
                log = open(tmp_path / f"background-{b.line}.log", "wb")
                servers.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True))
                wait_for(b.arg, servers[-1])
                continue
            r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, f"{where} failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    finally:
        for proc in servers:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except ProcessLookupError:  # it had ended already: wait_for's failure says how
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
