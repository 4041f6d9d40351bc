"""The text corpus: docstrings of a fixed list of standard-library modules, read at run time.

Nothing is downloaded or committed: every Python installation carries its standard library, and
this module parses the source files (with `ast`, never importing them, so nothing runs) and keeps
the docstrings of each module, class and function in source order.

Determinism: the corpus is a pure function of the standard-library *files* of the running
interpreter. The same Python build gives the same corpus, byte for byte, on any machine; another
Python version gives a slightly different one (docstrings change between releases, and a listed
module that a release removed is skipped). `Corpus.fingerprint` (sha256) tells two peers whether
they hold the same text. Validators of one subnet should therefore run the same Python minor
version, or accept that their challenges differ.

Split: each docstring goes wholly to the training part or the held-out part, chosen by a hash of
its ``module:qualname``, so about one docstring in ten is held out. The split keeps measurement
honest for models trained with the built-in scripts; it is not a secret (the text is public), so
it cannot stop a miner from memorising the held-out part.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

# The character vocabulary of the text task: newline plus printable ASCII (96 symbols). Fixed by
# the task, not learnt from the corpus, so every model and validator agrees on it.
VOCAB = "\n" + "".join(chr(code) for code in range(32, 127))
# Characters outside the vocabulary become this one (docstrings are nearly all ASCII).
REPLACEMENT = "?"
# One docstring in HELDOUT_MODULUS is held out.
HELDOUT_MODULUS = 10

# Dotted module names, resolved to `a/b.py` or `a/b/__init__.py` under the stdlib directory.
# Chosen for long, prose-rich docstrings and for existing in CPython 3.11 to 3.13.
CORPUS_MODULES: tuple[str, ...] = (
    "abc",
    "argparse",
    "ast",
    "base64",
    "bdb",
    "bisect",
    "calendar",
    "cmd",
    "code",
    "codecs",
    "collections",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "difflib",
    "doctest",
    "email.message",
    "enum",
    "fileinput",
    "fractions",
    "ftplib",
    "functools",
    "getopt",
    "gettext",
    "glob",
    "graphlib",
    "gzip",
    "heapq",
    "hmac",
    "imaplib",
    "inspect",
    "ipaddress",
    "json",
    "json.decoder",
    "json.encoder",
    "logging",
    "logging.handlers",
    "mailbox",
    "numbers",
    "optparse",
    "os",
    "pdb",
    "pickle",
    "pickletools",
    "pkgutil",
    "platform",
    "pprint",
    "pydoc",
    "queue",
    "random",
    "sched",
    "secrets",
    "selectors",
    "shlex",
    "shutil",
    "smtplib",
    "socket",
    "socketserver",
    "ssl",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "traceback",
    "typing",
    "unittest.case",
    "unittest.mock",
    "uuid",
    "warnings",
    "wave",
    "weakref",
    "zipfile",
)


@dataclass(frozen=True)
class Corpus:
    """The text corpus, split into a training part and a held-out part (both over `VOCAB`)."""

    train: str
    heldout: str
    modules: tuple[str, ...]  # the listed modules found in this installation, in order
    python_version: str

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of both parts: equal fingerprints mean identical corpora."""
        digest = hashlib.sha256()
        digest.update(self.train.encode())
        digest.update(b"\0")
        digest.update(self.heldout.encode())
        return digest.hexdigest()


def normalize(text: str) -> str:
    """Map text onto `VOCAB`: tabs become spaces, other unknown characters become '?'."""
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    vocab = _VOCAB_SET
    return "".join(ch if ch in vocab else REPLACEMENT for ch in text)


_VOCAB_SET = frozenset(VOCAB)


def stdlib_dir() -> Path:
    """The directory of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def _module_path(root: Path, dotted: str) -> Path | None:
    parts = dotted.split(".")
    for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _docstrings(tree: ast.Module) -> list[tuple[str, str]]:
    """(qualname, docstring) for the module and every class and function, in source order."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, qualname: str) -> None:
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                found.append((qualname or "<module>", doc))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, f"{qualname}.{child.name}" if qualname else child.name)

    visit(tree, "")
    return found


def is_heldout(module: str, qualname: str) -> bool:
    """Whether the docstring of ``module:qualname`` belongs to the held-out part."""
    digest = hashlib.sha256(f"{module}:{qualname}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HELDOUT_MODULUS == 0


@functools.lru_cache(maxsize=1)
def load_corpus() -> Corpus:
    """Build (once per process) the corpus from this interpreter's standard library.

    Takes about a second; the result is cached. Raises RuntimeError when the standard library
    sources are missing (some stripped-down installations ship only bytecode).
    """
    root = stdlib_dir()
    train: list[str] = []
    heldout: list[str] = []
    found: list[str] = []
    for module in CORPUS_MODULES:
        path = _module_path(root, module)
        if path is None:
            continue
        found.append(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for qualname, doc in _docstrings(tree):
            part = heldout if is_heldout(module, qualname) else train
            part.append(normalize(doc) + "\n\n")
    if not train or not heldout:
        raise RuntimeError(f"no standard-library sources found under {root}: cannot build the text corpus")
    version = ".".join(str(part) for part in sys.version_info[:3])
    return Corpus(
        train="".join(train), heldout="".join(heldout), modules=tuple(found), python_version=version
    )
