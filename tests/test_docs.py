"""The documentation (docs/, Sphinx) builds without a warning, and documents every public name
of ``normkit`` and ``normkit.torch``: its API pages are autodoc of the installed package, so a
docstring with broken markup, a renamed function or a new one left out fails here."""

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
pytestmark = [pytest.mark.any_isa, pytest.mark.skipif(
    not (DOCS / "conf.py").is_file(),
    reason="no docs/ beside tests/ (a copy of tests/ run against an installed wheel)")]

FAMILY_PAGES = ["row_norms", "elementwise", "batch_norm", "group_norm", "batch_layer_norm",
                "param_norms", "standardization", "rnn"]


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    pytest.importorskip("torch")  # the torch pages are autodoc of normkit.torch
    pytest.importorskip("sphinx")  # in the test extra; absent where only the wheel's tests run
    out = tmp_path_factory.mktemp("docs")
    run = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"sphinx-build -W failed:\n{run.stdout}\n{run.stderr}"
    return out / "html"


def test_docs_build_without_warnings(html):
    for page in ["index", "install", "support", "torch", "runtime", "testing", "benchmarks",
                 *FAMILY_PAGES]:
        assert (html / f"{page}.html").is_file(), page
    # The math is there (MathJax source), not only the API.
    assert "\\mathrm{rstd}" in (html / "row_norms.html").read_text(encoding="utf-8")


def test_every_public_name_is_documented(html):
    import normkit
    import normkit.torch

    text = "".join(p.read_text(encoding="utf-8") for p in html.glob("*.html"))
    missing = [f"normkit.{n}" for n in normkit.__all__ if f'id="normkit.{n}"' not in text]
    missing += [f"normkit.torch.{n}" for n in normkit.torch.__all__
                if f'id="normkit.torch.{n}"' not in text]
    assert not missing, f"not in the API reference: {missing}"
