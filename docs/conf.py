"""Sphinx configuration of the celery-svcjwt documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))  # a checkout works without installing the package

import celery_svcjwt  # noqa: E402

project = "celery-svcjwt"
author = "the celery-svcjwt authors"
copyright = "2026, the celery-svcjwt authors"
release = celery_svcjwt.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "svcjwt_settings",  # docs/_ext: the configuration reference, generated from SETTINGS
]
# No intersphinx: the build must not need the network.

root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []
pygments_style = "sphinx"

# Every cross-reference must resolve: a renamed setting, class or page fails the build.
nitpicky = True
nitpick_ignore_regex = [
    # Types from other projects: without intersphinx they have no target here.
    (r"py:.*", r"(celery|requests|urllib3|click|typing|collections|datetime|urllib|unittest)(\..*)?"),
    (r"py:.*", r"(Any|Task|Exception|ValueError|str|float|int|bool|None|object|type|tuple|dict|list)"),
    # ApiSession.resolve's docstring names it relative to celery_svcjwt.session, where
    # it is imported, not documented; it is documented as celery_svcjwt.ForeignOriginError.
    ("py:class", "ForeignOriginError"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": False}

try:
    import furo  # noqa: F401
except ImportError:
    html_theme = "alabaster"
else:
    html_theme = "furo"
html_title = f"celery-svcjwt {release}"
html_static_path = ["_static"]
html_css_files = ["svcjwt.css"]
