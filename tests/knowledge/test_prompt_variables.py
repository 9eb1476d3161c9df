"""Prompt variables: filled per call, checked when the agent is saved, and never more than data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from parley.engine.agent import AgentConfig
from parley.engine.variables import (
    FIELDS,
    FREE_FORM,
    CallVariables,
    PromptTemplateError,
    check_template,
    render,
    render_agent,
)

CALL = CallVariables(
    call_id="call_1",
    direction="outbound",
    caller_number="+14155550100",
    caller_name="Ana",
    called_number="+14155550199",
    metadata={"order": {"id": 42, "items": ["crown", "cleaning"]}, "plan": "gold"},
    started_at=datetime(2026, 3, 3, 13, 5, tzinfo=UTC),
    time_zone="Europe/Paris",
)


def test_variables_are_filled_from_the_call() -> None:
    text = (
        "Caller {{ caller.name }} ({{caller.number}}), {{ call.direction }} call {{call.id}} to "
        "{{ call.number }}; order {{ metadata.order.id }} has {{ metadata.order['items'] }}; "
        "plan {{ metadata.plan | upper }}. Now: {{ now }}."
    )
    assert render(text, CALL) == (
        "Caller Ana (+14155550100), outbound call call_1 to +14155550199; order 42 has crown, cleaning; "
        "plan GOLD. Now: Tuesday 3 March 2026, 14:05 (Europe/Paris)."
    )


def test_missing_values_render_empty_and_if_blocks_work() -> None:
    text = (
        "Hello{% if caller.name %} {{ caller.name }}{% endif %}! Ref {{ metadata.ref }}|{{ metadata.a.b.c }}"
    )
    assert render(text, CallVariables()) == "Hello! Ref |"
    assert render("Hi {{ caller.name | default('there', true) }}", CallVariables()) == "Hi there"


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ("Hi {{ colour }}", "unknown prompt variable 'colour'"),
        ("Hi {{caller.nmae}}!", "unknown prompt variable 'caller.nmae'; did you mean 'caller.name'"),
        ("{{call.directoin}}", "unknown prompt variable 'call.directoin'; did you mean 'call.direction'"),
        ("{% if caller.nmae %}Hi{% endif %}", "unknown prompt variable 'caller.nmae'"),
        ("{{ call['numbr'] }}", "unknown prompt variable 'call.numbr'"),
        ("{{ caller[metadata.field] }}", r"unknown prompt variable 'caller\[…\]'"),
        ("{{ caller.name.first }}", "unknown prompt variable 'caller.name.first'"),
        ("{{ now.year }}", "unknown prompt variable 'now.year'"),
        ("{{ caller.__class__ }}", "unknown prompt variable 'caller.__class__'"),
        ("{% for x in metadata %}{{ x }}{% endfor %}", "'For' is not allowed"),
        ("{{ caller.name.upper() }}", "'Call' is not allowed"),
        ("{{ 'ab' * 100000000 }}", "'Mul' is not allowed"),
        ("{% set secret = 1 %}", "'Assign' is not allowed"),
        ("{{ caller | attr('__class__') }}", "filter 'attr' is not allowed"),
        ("{{ caller.name ", "syntax error"),
        ("{% include 'x' %}", "not allowed"),
        ("{" * 5000, "nests brackets too deeply"),  # jinja2 recursed to a 500 on this
        ("{{ " + "(" * 3000 + "caller.name" + ")" * 3000 + " }}", "nests brackets too deeply"),
    ],
)
def test_what_is_not_plain_data_is_refused_at_validation(template: str, complaint: str) -> None:
    with pytest.raises(PromptTemplateError, match=complaint):
        check_template(template)
    with pytest.raises(ValidationError, match=complaint):
        AgentConfig(system_prompt=template)


def test_a_misspelt_field_is_refused_with_the_fields_a_call_has() -> None:
    """``{{caller.nmae}}`` used to pass the save and greet every caller with "Hi !"."""
    with pytest.raises(ValidationError) as refused:
        AgentConfig(system_prompt="Be brief.", first_message="Hi {{caller.nmae}}!")
    message = str(refused.value)
    assert "first_message" in message and "'caller.nmae'" in message
    for known in (
        "caller.name",
        "caller.number",
        "call.id",
        "call.direction",
        "call.number",
        "metadata.<key>",
    ):
        assert known in message, "the error lists what may be used instead"


def test_every_known_field_and_any_metadata_key_is_accepted() -> None:
    every = "{{caller.name}}{{caller.number}}{{call.id}}{{call.direction}}{{call.number}}{{now}}"
    assert render(every, CallVariables(caller_name="Ana", direction="web")).startswith("Anaweb")
    free = "{{ metadata.anything.nested }}|{{ metadata['order'].id }}|{% if metadata.vip %}VIP{% endif %}"
    check_template(free)
    assert render(free, CALL) == "|42|"
    namespace = CallVariables().namespace()
    fixed = {root: frozenset(v) if isinstance(v, dict) else frozenset() for root, v in namespace.items()}
    assert {root: fixed[root] for root in namespace if root not in FREE_FORM} == FIELDS, "checks match calls"


def test_tenant_text_reaches_no_object_internals() -> None:
    assert render("{{ metadata.__class__ }}{{ metadata.keys }}{{ metadata['__init__'] }}", CALL) == ""
    tricky = CallVariables(metadata={"keys": "k", "items": "i"})
    assert render("{{ metadata.keys }} {{ metadata.items }}", tricky) == "k i"


def test_metadata_is_never_itself_a_template() -> None:
    sneaky = CallVariables(caller_name="{{ metadata.secret }}", metadata={"secret": "s3cret"})
    assert render("Hi {{ caller.name }}", sneaky) == "Hi {{ metadata.secret }}"


def test_an_agent_is_rendered_per_call_and_left_alone_without_templates() -> None:
    agent = AgentConfig(system_prompt="You help {{ caller.name }}.", first_message="Hi {{ caller.name }}!")
    rendered = render_agent(agent, CALL)
    assert (rendered.system_prompt, rendered.first_message) == ("You help Ana.", "Hi Ana!")
    assert agent.system_prompt == "You help {{ caller.name }}.", "the agent itself is unchanged"
    plain = AgentConfig(system_prompt="You help.")
    assert render_agent(plain, CALL) is plain
