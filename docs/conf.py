"""Sphinx configuration of normkit's documentation (built in CI with ``-W``: a warning fails).

Build: ``pip install ".[docs]" && sphinx-build -W -b html docs docs/_build/html``. The API
pages are autodoc of the installed package, so the docstrings are the reference."""

import normkit

project = "normkit"
author = "the normkit authors"
copyright = "2026, the normkit authors"
version = release = normkit.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.mathjax"]
# docs/ also holds developer notes in Markdown (ADDING_AN_OP.md): not part of this site.
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build"]
autodoc_default_options = {"member-order": "bysource"}
# Signatures as written; the docstrings say what each argument takes.
autodoc_typehints = "none"
autodoc_preserve_defaults = True
nitpicky = False

html_theme = "alabaster"
html_static_path = ["_static"]
html_theme_options = {
    "description": "Fast, exact normalization kernels",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
