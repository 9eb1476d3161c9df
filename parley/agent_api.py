"""The Python API: an agent and its tools in a few lines, served by ``parley serve --agent module:agent``.

    agent = Agent(name="dentist", instructions="…", knowledge=["We open at 9."])

    @agent.tool
    async def book(day: str, ctx: CallContext) -> str:
        \"\"\"Book a cleaning on the given day.\"\"\"

A tool's JSON schema comes from its type hints (argument descriptions from ``Annotated[str, "…"]``, a
pydantic ``Field`` or the docstring's ``Args:`` section), its description from the docstring. A
parameter annotated ``CallContext`` (or ``CallContext | None``) receives the call's context and is not
shown to the model.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import json
import re
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model
from pydantic.errors import PydanticUserError
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from parley.engine.agent import AgentConfig, AgentConfigError
from parley.engine.schema_checks import UnsupportedSchema, check_schema, without_patterns
from parley.engine.tools import BUILTIN_PATTERNS, CallContext, Tool, ToolFactory, ToolResult

__all__ = ["Agent", "AgentConfigError", "CallContext", "ToolResult", "load_agent_target"]

F = TypeVar("F", bound=Callable[..., Any])
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class PythonAgentConfig(AgentConfig):
    """An ``AgentConfig`` that also carries Python tools. They live in this process only: the config
    itself (what is stored, compared and shown) is exactly the YAML form."""

    _code_tools: list[ToolFactory] = PrivateAttr(default_factory=list)

    def code_tools(self) -> Sequence[ToolFactory]:
        return tuple(self._code_tools)


class Agent:
    """An agent defined in Python. Any ``AgentConfig`` setting may be passed by keyword (``llm=``,
    ``tts=``, ``tools=[{"name": "end_call"}]`` for built-ins, ``endpointing=`` …)."""

    def __init__(
        self,
        name: str = "assistant",
        instructions: str | None = None,
        *,
        knowledge: Sequence[str] = (),
        first_message: str | None = None,
        **settings: Any,
    ) -> None:
        fields: dict[str, Any] = {"name": name, "knowledge": list(knowledge), **settings}
        if instructions is not None:
            fields["system_prompt"] = instructions
        if first_message is not None:
            fields["first_message"] = first_message
        try:
            self.config: PythonAgentConfig = PythonAgentConfig.model_validate(fields)
        except ValidationError as exc:
            raise AgentConfigError(f"agent {name!r}: invalid settings:\n{exc}") from exc
        self._tool_names = {t.name for t in self.config.tools}

    @property
    def name(self) -> str:
        return self.config.name

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float = 5.0,
        side_effect: bool = False,
        filler: bool = True,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float = 5.0,
        side_effect: bool = False,
        filler: bool = True,
    ) -> Any:
        """Offer ``fn`` to the model as a tool. ``side_effect``: run it only once what the agent said
        before calling it was heard (bookings, payments); ``filler``: say the agent's filler when it
        takes more than a second. The function is returned unchanged."""

        def register(function: F) -> F:
            factory = python_tool(
                function,
                name=name,
                description=description,
                timeout_s=timeout_s,
                side_effect=side_effect,
                filler=filler,
            )
            if factory.name in self._tool_names:
                raise AgentConfigError(f"agent {self.name!r} already has a tool named {factory.name!r}")
            self._tool_names.add(factory.name)
            self.config._code_tools.append(factory)
            return function

        return register(fn) if fn is not None else register


class _PythonToolFactory:
    """Binds one Python function to each call's context: the ``ToolFactory`` of a Python tool."""

    def __init__(
        self,
        function: Callable[..., Any],
        name: str,
        description: str,
        arguments: type[BaseModel],
        schema: dict[str, Any],
        context_params: list[str],
        timeout_s: float,
        side_effect: bool,
        filler: bool,
    ) -> None:
        self.function = function
        self.name = name
        self.description = description
        self.arguments = arguments
        self.context_params = context_params
        self.schema = schema
        self.timeout_s = timeout_s
        self.side_effect = side_effect
        self.filler = filler

    def __call__(self, context: CallContext) -> Tool:
        async def handler(raw: dict[str, Any]) -> Any:
            try:
                parsed = self.arguments.model_validate(raw)
            except ValidationError as exc:
                raise ValueError(_first_error(exc)) from exc
            kwargs = {field: getattr(parsed, field) for field in type(parsed).model_fields}
            kwargs.update(dict.fromkeys(self.context_params, context))
            if inspect.iscoroutinefunction(self.function):
                result = await self.function(**kwargs)
            else:  # a plain function may block: it runs off the event loop the call's audio needs
                result = await asyncio.to_thread(self.function, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            if isinstance(result, ToolResult):
                return ToolResult(to_jsonable_python(result.value), end_call=result.end_call)
            return to_jsonable_python(result)

        return Tool(
            self.name,
            self.description,
            self.schema,
            handler,
            self.timeout_s,
            self.side_effect,
            self.filler,
        )


def python_tool(
    function: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = 5.0,
    side_effect: bool = False,
    filler: bool = True,
) -> _PythonToolFactory:
    """The tool factory for a typed function: schema from its hints, description from its docstring."""
    tool_name = name or function.__name__
    if not TOOL_NAME.match(tool_name):
        raise AgentConfigError(f"tool name {tool_name!r}: use letters, digits, _ and - (at most 64)")
    if not callable(function):
        raise AgentConfigError(f"tool {tool_name!r} is not a function")
    summary, documented = _docstring(inspect.getdoc(function) or "")
    try:
        hints = get_type_hints(function, include_extras=True)
    except (NameError, TypeError, SyntaxError) as exc:  # a hint naming what is not importable at run time
        raise AgentConfigError(
            f"tool {tool_name!r}: cannot resolve its type hints ({exc}); import the types they name at "
            "module level (not under TYPE_CHECKING) or spell them correctly"
        ) from exc
    fields: dict[str, Any] = {}
    context_params: list[str] = []
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise AgentConfigError(f"tool {tool_name!r}: *args and **kwargs cannot be described to a model")
        annotation = hints.get(param.name, Any)
        if _is_context(annotation):
            context_params.append(param.name)
            continue
        if _mentions_context(annotation):
            raise AgentConfigError(
                f"tool {tool_name!r}: parameter {param.name!r} mixes CallContext with other types; "
                "annotate it CallContext or CallContext | None"
            )
        if param.name not in hints:
            raise AgentConfigError(f"tool {tool_name!r}: parameter {param.name!r} needs a type hint")
        if param.name.startswith("_"):
            raise AgentConfigError(
                f"tool {tool_name!r}: parameter {param.name!r} starts with an underscore, which no argument "
                f"the model fills in may; rename it (e.g. {param.name.lstrip('_') or 'value'!r})"
            )
        fields[param.name] = _field(annotation, param.default, documented.get(param.name))
    model, schema = _arguments(tool_name, fields)
    return _PythonToolFactory(
        function,
        tool_name,
        description if description is not None else summary,
        model,
        schema,
        context_params,
        timeout_s,
        side_effect,
        filler,
    )


def _arguments(tool_name: str, fields: dict[str, Any]) -> tuple[type[BaseModel], dict[str, Any]]:
    """The arguments' model and JSON schema, checked now as the tool registry checks it for every call:
    a tool the model could not be told about, or whose arguments could not be checked, fails here, at
    definition, naming the argument, and never as an agent whose every call fails to start."""
    try:
        model = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        schema = _schema(model)
    except PydanticUserError as exc:
        raise AgentConfigError(
            f"tool {tool_name!r}: {_failing_argument(tool_name, fields)}cannot be described to a model: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    problem = _schema_problem(schema)
    if problem is not None:
        raise AgentConfigError(f"tool {tool_name!r}: {_failing_argument(tool_name, fields)}{problem}")
    return model, schema


def _failing_argument(tool_name: str, fields: dict[str, Any]) -> str:
    """``"argument 'x': "`` for the first argument whose schema fails on its own ("" when none does)."""
    for name, field in fields.items():
        try:
            alone = _schema(create_model(f"{tool_name}_{name}", **{name: field}))
        except PydanticUserError:
            return f"argument {name!r}: "
        if _schema_problem(alone) is not None:
            return f"argument {name!r}: "
    return ""


def _schema_problem(schema: dict[str, Any]) -> str | None:
    """Why the tool registry would refuse ``schema`` (``ToolRegistry.register``), or send a model JSON
    it cannot read; None when it is fine."""
    try:
        json.dumps(schema, allow_nan=False)
    except ValueError:
        return "a default or limit is NaN or infinite, which JSON cannot carry: use a finite number or None"
    checked = without_patterns(schema, BUILTIN_PATTERNS)
    try:
        check_schema(checked, allowed_patterns=BUILTIN_PATTERNS)
    except UnsupportedSchema as exc:
        hint = (
            " (a model that contains itself, directly or through another, cannot be checked during a "
            "call: give the nesting a fixed depth)"
            if "leads back to itself" in str(exc)
            else ""
        )
        return f"{exc}{hint}"
    return None


def _is_context(annotation: Any) -> bool:
    """``CallContext``, also in ``Annotated`` or ``Optional``: the call passes it, the model never sees it."""
    annotation = _unannotated(annotation)
    if _is_union(annotation):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return bool(members) and all(_is_context(a) for a in members)
    return isinstance(annotation, type) and issubclass(annotation, CallContext)


def _mentions_context(annotation: Any) -> bool:
    """Whether a union names ``CallContext`` next to a real argument type (``CallContext | str``)."""
    annotation = _unannotated(annotation)
    if _is_union(annotation):
        return any(_mentions_context(a) for a in get_args(annotation))
    return _is_context(annotation)


def _unannotated(annotation: Any) -> Any:
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _is_union(annotation: Any) -> bool:
    """``X | Y`` and ``Optional[X]``/``Union[X, Y]`` are different objects before Python 3.14."""
    return get_origin(annotation) in (Union, types.UnionType)


def _field(annotation: Any, default: Any, documented: str | None) -> tuple[Any, FieldInfo]:
    """A pydantic field for one parameter; a plain string in ``Annotated`` is its description."""
    description = documented
    if get_origin(annotation) is Annotated:
        base, *extras = get_args(annotation)
        texts = [e for e in extras if isinstance(e, str)]
        if texts:
            description = texts[0]
            rest = [e for e in extras if not isinstance(e, str)]
            annotation = Annotated[(base, *rest)] if rest else base
    if isinstance(default, FieldInfo):
        if description and default.description is None:
            annotation = Annotated[annotation, Field(description=description)]
        return annotation, default
    required = default is inspect.Parameter.empty
    return annotation, Field(... if required else default, description=description)


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """The arguments' JSON schema, without pydantic's titles (words a small model need not read)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    schema: dict[str, Any] = strip(model.model_json_schema())
    schema.setdefault("properties", {})
    return schema


_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$", re.IGNORECASE)
_ARG_LINE = re.compile(r"^\s+(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description (the text before ``Args:``) and the arguments documented under ``Args:``."""
    lines = doc.splitlines()
    header = next((i for i, line in enumerate(lines) if _ARGS_HEADER.match(line)), len(lines))
    summary = " ".join(" ".join(lines[:header]).split())
    documented: dict[str, str] = {}
    last: str | None = None
    for line in lines[header + 1 :]:
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            break
        found = _ARG_LINE.match(line)
        if found and (last is None or len(line) - len(line.lstrip()) <= 4):
            last = found.group(1)
            documented[last] = found.group(2).strip()
        elif last is not None:
            documented[last] += " " + line.strip()
    return summary, documented


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "arguments"
    return f"{where}: {first['msg']}"


def load_agent_target(target: str) -> AgentConfig:
    """``module:attribute`` (or ``path/to/file.py:attribute``) naming an ``Agent`` or ``AgentConfig``.

    The operator's own code: imported from the current directory, as ``uvicorn module:app`` does.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise AgentConfigError(f"--agent {target!r}: expected module:attribute, e.g. my_agent:agent")
    try:
        if module_name.endswith(".py"):
            module = _import_file(Path(module_name))
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentConfigError(f"--agent {target!r}: cannot import {module_name!r}: {exc}") from exc
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise AgentConfigError(f"--agent {target!r}: {module_name!r} has no attribute {attribute!r}")
        found = getattr(found, part)
    if isinstance(found, Agent):
        return found.config
    if isinstance(found, AgentConfig):
        return found
    raise AgentConfigError(
        f"--agent {target!r}: {attribute!r} is a {type(found).__name__}, not a parley.Agent or AgentConfig"
    )


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ImportError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python module: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module
