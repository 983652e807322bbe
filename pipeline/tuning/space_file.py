"""Reading a search-space file (pipeline/tuning/space.py) strictly: a key given twice, an
alias (`*name`) and a non-finite number (.inf, .nan) are refused where PyYAML would accept them.

YAML keeps the last of two equal keys, so a space would silently mean less than it reads; a
few hundred bytes of nested aliases expand to hundreds of MB (and to a message of that size);
no bound or step of a space is infinite, and Optuna fails on one mid-study. yaml is imported
inside the functions: `tune --help` imports this module and stays instant.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pipeline.core.errors import quote
from pipeline.tuning.space_params import SpaceError


def read(path: Path) -> Any:
    """The YAML in `path`, read strictly; every problem is a one-line SpaceError."""
    import yaml

    where = path.name
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_strict_loader())
    except FileNotFoundError:
        raise SpaceError(
            f"{path}: no such search-space file; see search_spaces/ for the shipped ones"
        ) from None
    except IsADirectoryError:
        raise SpaceError(
            f"{path}: is a folder; give one search-space file, such as search_spaces/fcn.yaml"
        ) from None
    except UnicodeDecodeError as e:
        raise SpaceError(
            f"{where}: not UTF-8 text (byte {e.start}); a search space is a "
            "YAML file saved as UTF-8"
        ) from None
    except OSError as e:
        raise SpaceError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise SpaceError(f"{where}: nested too deeply; a search space is a few levels") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark else ""
        if not getattr(e, "refused", False):
            at = f"not valid YAML at {at}" if at else "not valid YAML: "
        raise SpaceError(f"{where}: {at}{getattr(e, 'problem', e)}") from None


@functools.cache
def _strict_loader() -> type:
    """PyYAML's safe loader, refusing what would make a space mean something else than it
    reads as: a key given twice (YAML keeps the last), an alias (a few hundred bytes of them
    expand to hundreds of MB), a non-finite number (no bound or step is infinite)."""
    import math

    import yaml
    from yaml.constructor import ConstructorError

    def refuse(problem: str, mark: Any) -> yaml.MarkedYAMLError:
        error = ConstructorError(None, None, problem, mark)
        error.refused = True  # type: ignore[attr-defined]
        return error

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise refuse("an alias (*name) is not allowed; write the value out", mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)):
                    continue  # not a parameter's name: the space's own checks say so
                if key in seen:
                    raise refuse(f"{quote(key)} is given twice; give it once", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

        def construct_yaml_float(self, node: Any) -> float:
            value = super().construct_yaml_float(node)
            if not math.isfinite(value):
                raise refuse(f"{quote(node.value)} is not a finite number", node.start_mark)
            return value

    StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_yaml_float)
    return StrictLoader
