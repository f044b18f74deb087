"""Importing a Python file by its path: the operators' notifier plugins and workflows.

Both discoveries load files that are not on sys.path, under a module name prefixed with what
they are and salted with their folder, so that `a/email.py` and `b/email.py` coexist and neither
shadows a real top-level module such as `email`. The module is registered in sys.modules before
it runs (pydantic, dataclasses and `typing.get_type_hints` resolve annotations through
`sys.modules[obj.__module__]`) and taken out again if it fails, putting back whatever was there.
What a failure means (which line, which words) is each discovery's own business.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["NotASourceFile", "import_file", "module_name_for"]


class NotASourceFile(Exception):
    """The path cannot be imported as Python source."""


def module_name_for(path: Path, kind: str) -> str:
    """The module name a file of this `kind` ("plugin", "workflow") is imported under."""
    digest = hashlib.sha256(str(path.parent).encode()).hexdigest()[:10]
    return f"_notifier_{kind}_{digest}_{path.stem}"


def import_file(path: Path, module_name: str) -> ModuleType:
    """Run the file at `path` as module `module_name` and return it. NotASourceFile when it is
    not Python source; whatever the file raises propagates, after sys.modules is restored."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise NotASourceFile("cannot be imported (not a Python source file?)")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = previous
        raise
    return module
