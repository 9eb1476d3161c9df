"""A Python tool whose arguments could never be checked during a call (a model that contains itself),
or told to a model (NaN in its schema), or built at all (``_secret``), is refused at ``@agent.tool``
and by ``parley serve``, naming the tool and the argument: not served as an agent whose every call
fails to start."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from parley.agent_api import Agent, AgentConfigError
from parley.commands.serve import load_served_agent
from parley.engine.tools import CallContext
from parley.stack import build_tools


class Category(BaseModel):
    name: str
    children: list[Category] = []


class Node(BaseModel):
    label: str
    parent: Branch | None = None


class Branch(BaseModel):
    nodes: list[Node] = []


class Address(BaseModel):
    street: str
    city: str


def test_a_recursive_argument_model_is_refused_at_the_decorator() -> None:
    agent = Agent("shop")
    with pytest.raises(
        AgentConfigError, match=r"tool 'file_under': argument 'category': .*leads back to itself"
    ):

        @agent.tool
        async def file_under(sku: str, category: Category) -> str:
            """File a product under a category."""
            return "ok"

    with pytest.raises(AgentConfigError, match=r"tool 'place': argument 'node': .*contains itself"):

        @agent.tool
        async def place(node: Node) -> str:
            """Place a node (recursive through another model)."""
            return "ok"

    assert build_tools(agent.config).specs() == [], "no tool was added"


def test_an_underscore_parameter_and_a_non_finite_default_are_config_errors() -> None:
    agent = Agent("shop")
    with pytest.raises(
        AgentConfigError, match=r"tool 'lookup': parameter '_secret' starts with an underscore.*'secret'"
    ):

        @agent.tool
        async def lookup(sku: str, _secret: str = "") -> str:
            """Look a product up."""
            return sku

    for bad in (float("nan"), float("inf")):
        with pytest.raises(AgentConfigError, match=r"tool 'discount': argument 'rate': .*NaN or infinite"):

            @agent.tool
            async def discount(sku: str, rate: float = bad) -> str:
                """Discount a product."""
                return sku


async def test_nested_models_patterns_and_context_still_make_tools() -> None:
    agent = Agent("shop")

    @agent.tool
    async def ship(to: Address, code: Annotated[str, Field(pattern=r"^[0-9]{5}$")], ctx: CallContext) -> str:
        """Ship to an address."""
        return f"{to.city} {code} {ctx.call_id}"

    [spec] = build_tools(agent.config).specs()
    json.dumps(spec.parameters, allow_nan=False)
    assert set(spec.parameters["properties"]) == {"to", "code"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "shop_agent.py").write_text(
        "from __future__ import annotations\n"
        "from pydantic import BaseModel\n"
        "from parley import Agent\n"
        "class Category(BaseModel):\n"
        "    name: str\n"
        "    children: list[Category] = []\n"
        "agent = Agent('shop')\n"
        "@agent.tool\n"
        "async def file_under(category: Category) -> str:\n"
        "    '''File under a category.'''\n"
        "    return 'ok'\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("shop_agent", None)


def test_serve_refuses_the_module_naming_the_tool_and_argument(project: Path) -> None:
    with pytest.raises(AgentConfigError, match=r"tool 'file_under': argument 'category'"):
        load_served_agent("shop_agent:agent")
