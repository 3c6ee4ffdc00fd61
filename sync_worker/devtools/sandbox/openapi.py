"""Check HTTP requests against Intercom's OpenAPI description.

Guarantees:
- :func:`find_spec` finds the description: an explicit path, else ``$INTERCOM_OPENAPI_SPEC``,
  else the copy shipped in this package (``sync_worker/devtools/sandbox/specs/``, found with
  :mod:`importlib.resources`, so an installed package has it too; see the licence file there);
- the YAML is parsed once per process per file (C loader when PyYAML has it), and one
  :class:`RequestValidator` per file is shared through :func:`get_validator`;
- :meth:`RequestValidator.validate` returns a list of readable problems, empty when the
  request matches the spec: a known path template, an operation for the method, declared
  header/path/query parameters valid against their schemas (query parameters the spec
  does not declare are accepted, as Intercom accepts them), and a JSON body valid against
  the operation's request schema under OpenAPI 3.0 rules (``OAS30Validator``, ``$ref`` values
  resolved inside the document). Schema validators are built once per operation.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS30Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4

SPEC_ENV = "INTERCOM_OPENAPI_SPEC"
SPEC_FILENAME = "intercom-openapi-2.14.yaml"
#: The descriptions shipped with the package, by ``Intercom-Version``.
SHIPPED_SPECS = {"2.14": SPEC_FILENAME, "Preview": "intercom-openapi-preview.yaml"}
_DOC_URI = "urn:intercom-openapi"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# Headers OpenAPI says are described elsewhere, never as parameters.
_IGNORED_HEADERS = {"accept", "content-type", "authorization"}
_MAX_MESSAGE = 400

try:  # the C loader parses the ~900 KB description several times faster
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


def shipped_spec(version: str = "2.14") -> Path:
    """The path of Intercom's description for ``version`` as shipped in this package."""
    return Path(str(files("sync_worker.devtools.sandbox").joinpath("specs", SHIPPED_SPECS[version])))


def find_spec(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The path of Intercom's 2.14 description; FileNotFoundError names the places tried."""
    if explicit is not None:
        candidate = Path(explicit)
    elif os.environ.get(SPEC_ENV):
        candidate = Path(os.environ[SPEC_ENV])
    else:
        candidate = shipped_spec()
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"Intercom OpenAPI description not found at {candidate} (set {SPEC_ENV})")


@lru_cache(maxsize=4)
def load_spec(path: str) -> dict[str, Any]:
    """The parsed description at ``path`` (cached per process)."""
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)


@dataclass(frozen=True)
class _Template:
    template: str
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    literal_segments: int

    @classmethod
    def compile(cls, template: str) -> _Template:
        regex, names, literals = "", [], 0
        for segment in template.strip("/").split("/"):
            match = re.fullmatch(r"\{([^}]+)\}", segment)
            if match:
                names.append(match.group(1))
                regex += "/([^/]+)"
            else:
                literals += 1
                regex += "/" + re.escape(segment)
        return cls(template, re.compile(f"^{regex or '/'}$"), tuple(names), literals)


@dataclass
class _Operation:
    method: str
    template: str
    operation_id: str
    parameters: list[dict[str, Any]]
    body: dict[str, Any] | None
    validators: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    """The operation a request maps to."""

    template: str
    method: str
    operation_id: str
    path_params: dict[str, str]


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _coerce(raw: str, schema: Mapping[str, Any]) -> Any:
    """A query/header/path string as the scalar type its schema names (left as is when it cannot be)."""
    kind = schema.get("type")
    if kind == "boolean" and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            return raw
    if kind == "number":
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


class RequestValidator:
    """Validates requests against one OpenAPI 3.0 description (thread-safe)."""

    def __init__(self, spec_path: str | os.PathLike[str] | None = None):
        self.spec_path = find_spec(spec_path)
        self.spec = load_spec(str(self.spec_path))
        self._registry: Registry = Registry().with_resource(_DOC_URI, DRAFT4.create_resource(self.spec))
        self._lock = threading.Lock()
        self._operations: dict[str, _Operation] = {}
        self._templates = sorted(
            (_Template.compile(t) for t in self.spec.get("paths", {})),
            key=lambda t: (-t.literal_segments, t.template),
        )

    # --- matching -------------------------------------------------------------------

    def match(self, method: str, path: str) -> Match | None:
        """The operation for ``method path``, or None (no template, or none with the method)."""
        found = self._find(method, path)
        return found if isinstance(found, Match) else None

    def _find(self, method: str, path: str) -> Match | str:
        method = method.lower()
        path = "/" + path.strip("/") if path.strip("/") else "/"
        templates_without_method = []
        for template in self._templates:
            hit = template.pattern.match(path)
            if hit is None:
                continue
            item = self.spec["paths"][template.template]
            operation = item.get(method)
            if operation is None:
                templates_without_method.append(template.template)
                continue
            params = dict(zip(template.names, hit.groups(), strict=True))
            return Match(template.template, method, operation.get("operationId", ""), params)
        if templates_without_method:
            return f"method {method.upper()} is not allowed on {templates_without_method[0]}"
        return f"no operation matches path {path}"

    # --- validation -----------------------------------------------------------------

    def validate(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> list[str]:
        """Problems with the request; an empty list means it matches the spec."""
        found = self._find(method, path)
        if isinstance(found, str):
            return [found]
        operation = self._operation(found)
        problems: list[str] = []
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        sources = {"path": found.path_params, "query": dict(query or {}), "header": lowered}
        for index, param in enumerate(operation.parameters):
            where, name = param.get("in"), param.get("name", "")
            if where not in sources or (where == "header" and name.lower() in _IGNORED_HEADERS):
                continue
            key = name.lower() if where == "header" else name
            values = sources[where]
            if key not in values:
                if param.get("required"):
                    problems.append(f"{where} parameter {name} is required")
                continue
            raw = values[key]
            raw = raw[0] if isinstance(raw, list | tuple) and raw else raw
            schema = param.get("schema") or {}
            value = _coerce(str(raw), self._resolve(schema))
            error = best_match(self._param_validator(operation, index, schema).iter_errors(value))
            if error is not None:
                problems.append(_short(f"{where} parameter {name}: {error.message}"))
        problems += self._check_body(operation, lowered.get("content-type", ""), body)
        return problems

    def _check_body(self, operation: _Operation, content_type: str, body: bytes | None) -> list[str]:
        if operation.body is None:
            return [f"{operation.operation_id} takes no request body"] if body else []
        if not body:
            return ["request body is required"] if operation.body.get("required") else []
        media = content_type.split(";")[0].strip().lower() or "application/json"
        content = operation.body.get("content") or {}
        if media not in content:
            return [f"content type {media} is not accepted (expected {', '.join(content)})"]
        try:
            document = json.loads(body)
        except ValueError as exc:
            return [f"request body is not valid JSON: {exc}"]
        validator = self._body_validator(operation, media)
        if validator is None:
            return []
        errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
        return [_short(f"body {_describe(error)}") for error in errors[:5]]

    # --- cached pieces ----------------------------------------------------------------

    def _resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        """``node`` itself, or what its local ``$ref`` points to (followed to the end)."""
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = self.spec
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return self._resolve(target)
        return node

    def _operation(self, found: Match) -> _Operation:
        key = f"{found.method} {found.template}"
        with self._lock:
            cached = self._operations.get(key)
            if cached is None:
                item = self.spec["paths"][found.template]
                raw = item[found.method]
                params = [self._resolve(p) for p in [*item.get("parameters", []), *raw.get("parameters", [])]]
                body = self._resolve(raw["requestBody"]) if "requestBody" in raw else None
                cached = _Operation(found.method, found.template, found.operation_id, params, body)
                self._operations[key] = cached
            return cached

    def _validator(self, operation: _Operation, key: str, schema: Mapping[str, Any]) -> Any:
        with self._lock:
            validator = operation.validators.get(key)
            if validator is None:
                validator = OAS30Validator(_absolute(schema), registry=self._registry)
                operation.validators[key] = validator
            return validator

    def _param_validator(self, operation: _Operation, index: int, schema: Mapping[str, Any]) -> Any:
        return self._validator(operation, f"param:{index}", schema)

    def _body_validator(self, operation: _Operation, media: str) -> Any:
        schema = ((operation.body or {}).get("content") or {}).get(media, {}).get("schema")
        return None if schema is None else self._validator(operation, f"body:{media}", schema)


def _describe(error: Any) -> str:
    """``<path>: <message>``, naming the closest failing branch of a ``oneOf``/``anyOf``."""
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    text = f"{where}: {error.message}"
    if error.context:
        branches: dict[Any, list[Any]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        closest = min(branches.values(), key=len)  # the branch that came nearest to matching
        detail = _describe(best_match(closest) or closest[0])
        if len(error.schema.get(error.validator) or ()) == 1:  # a oneOf of one: only its reason matters
            return detail
        text += f" (closest: {detail})"
    return text


def _absolute(node: Any) -> Any:
    """A copy of ``node`` whose local ``$ref`` values point into the registered document."""
    if isinstance(node, Mapping):
        return {
            key: (
                f"{_DOC_URI}{value}"
                if key == "$ref" and isinstance(value, str) and value.startswith("#")
                else _absolute(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_absolute(item) for item in node]
    return node


@lru_cache(maxsize=4)
def _shared(path: str) -> RequestValidator:
    return RequestValidator(path)


def get_validator(spec_path: str | os.PathLike[str] | None = None) -> RequestValidator:
    """The process's validator for the description at ``spec_path`` (found as :func:`find_spec` does)."""
    return _shared(str(find_spec(spec_path)))
