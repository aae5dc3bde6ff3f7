"""The documentation that is generated or promised stays in step with the code."""

from __future__ import annotations

from pathlib import Path

from b2fs.options import OPTIONS, MountOptions, markdown_table

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_configuration_md_lists_every_option_as_the_code_defines_it() -> None:
    assert markdown_table() in (DOCS / "CONFIGURATION.md").read_text()


def test_option_defaults_are_defined_once() -> None:
    defaults = MountOptions()
    for name, spec in OPTIONS.items():
        if spec.default is not None:  # uid and gid default to the mounting user
            assert getattr(defaults, name) == spec.default, name


def test_readme_links_the_docs() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    for doc in DOCS.glob("*.md"):
        assert f"docs/{doc.name}" in readme, doc.name
