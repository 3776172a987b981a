"""Verifiers (schema, msgspec, callable, reviewer, agreement), their TOML shape, and tool-call validation."""

from __future__ import annotations

import tomllib

import msgspec
import pytest

from interlock._errors import RequestError
from interlock._types import (
    ChatRequest,
    ChatResponse,
    JsonSchemaFormat,
    Message,
    TextPart,
    ToolCall,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
)
from interlock.policies._tool_validate import corrective_message, validate_tool_calls
from interlock.policies._verify import (
    AgreementVerifier,
    CallableVerifier,
    ReviewerVerifier,
    SchemaVerifier,
    Verdict,
    VerifierSpec,
    agree,
    build_review_request,
    check_schema,
    combine_verdicts,
    is_other_lab,
    msgspec_verifier,
    parse_review,
    pick_reviewer,
    rejects,
    run_local,
    serves_as_reviewer,
    unjudged,
)

ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "total": {"type": "number"},
        "items": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "integer"}}}},
    },
    "required": ["total"],
}


def answer(text: str) -> ChatResponse:
    """A final response with the given text."""
    return ChatResponse(content=text)


def decode_specs(toml: str) -> tuple[VerifierSpec, ...]:
    """The ``verify`` list of a TOML job table, decoded as the config loader would."""
    return msgspec.convert(tomllib.loads(toml)["verify"], tuple[VerifierSpec, ...])


# -- TOML shape ----------------------------------------------------------------------------------


def test_toml_verify_list_decodes_each_kind() -> None:
    """A job's ``verify`` array of inline tables decodes to the tagged spec Structs, defaults filled."""
    specs = decode_specs(
        """
        verify = [
            { kind = "schema", schema = { type = "object", required = ["total"] } },
            { kind = "reviewer", model_class = "flagship" },
            { kind = "agreement", model = "mini", field = "total" },
        ]
        """
    )
    schema, reviewer, agreement = specs
    assert schema == SchemaVerifier(schema={"type": "object", "required": ["total"]})
    assert isinstance(reviewer, ReviewerVerifier)
    assert (reviewer.model, reviewer.model_class, reviewer.require_other_lab) == (None, "flagship", True)
    assert reviewer.prompt.startswith("You review")
    assert agreement == AgreementVerifier(model="mini", field="total")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('verify = [{ kind = "vibes" }]', "Invalid value 'vibes'"),
        ('verify = [{ kind = "reviewer" }]', "model_class must be set"),
        ('verify = [{ kind = "reviewer", model = "a", model_class = "b" }]', "model_class must be set"),
        ('verify = [{ kind = "reviewer", model = "a", prompt = "  " }]', "prompt must not be empty"),
        ('verify = [{ kind = "schema", schema = { type = 12 } }]', "schema must be a valid JSON Schema"),
        ('verify = [{ kind = "agreement", model = "m", field = "a..b" }]', "field must be a dotted path"),
        ('verify = [{ kind = "schema", schema = {}, extra = 1 }]', "unknown field `extra`"),
    ],
)
def test_toml_verify_errors_name_the_problem(toml: str, expected: str) -> None:
    """Malformed verifier tables fail at decode time with a message naming the field and the rule."""
    with pytest.raises(msgspec.ValidationError, match=expected):
        decode_specs(toml)


# -- schema, msgspec, callable -------------------------------------------------------------------


def test_schema_accepts_matching_json() -> None:
    """A JSON answer that matches the schema is accepted by the schema verifier."""
    result = check_schema(SchemaVerifier(schema=ORDER_SCHEMA), answer('{"total": 3.5, "items": [{"qty": 2}]}'))
    assert result == Verdict(True, "matches the schema", "schema")


@pytest.mark.anyio
async def test_run_local_runs_the_schema_check() -> None:
    """run_local dispatches a schema spec to the schema check."""
    assert not (await run_local(SchemaVerifier(schema=ORDER_SCHEMA), answer("{}"))).accepted


def test_schema_rejects_with_the_json_path() -> None:
    """A schema violation deep in the answer is rejected with the JSON path of the offending value."""
    body = '{"total": 1, "items": [{"qty": 1}, {"qty": "x"}]}'
    result = check_schema(SchemaVerifier(schema=ORDER_SCHEMA), answer(body))
    assert not result.accepted
    assert result.reason == "$.items[1].qty: 'x' is not of type 'integer'"


def test_schema_rejects_non_json_and_counts_other_errors() -> None:
    """Text that is not JSON is rejected as such; several violations report the worst and how many more."""
    not_json = check_schema(SchemaVerifier(schema=ORDER_SCHEMA), answer("Total: 3"))
    assert not not_json.accepted
    assert not_json.reason.startswith("answer is not JSON")
    several = check_schema(SchemaVerifier(schema=ORDER_SCHEMA), answer('{"items": [{"qty": "x"}, {"qty": 1.5}]}'))
    assert not several.accepted
    assert several.reason.endswith("(and 2 more)")


class Order(msgspec.Struct):
    """A msgspec type the answer must decode into."""

    total: float
    note: str = ""


@pytest.mark.anyio
async def test_msgspec_verifier_accepts_and_rejects_with_path() -> None:
    """The msgspec factory accepts a decodable answer and rejects a wrong type with msgspec's path."""
    spec = msgspec_verifier(Order)
    assert spec.name == "msgspec:Order"
    assert (await run_local(spec, answer('{"total": 2}'))).accepted
    bad = await run_local(spec, answer('{"total": "two"}'))
    assert bad == Verdict(False, "Expected `float`, got `str` - at `$.total`", "msgspec:Order")
    assert (await run_local(spec, answer("nope"))).reason.startswith("answer is not JSON")


@pytest.mark.anyio
async def test_callable_verifier_runs_and_must_return_a_verdict() -> None:
    """A callable verifier's verdict is returned as is; a callable returning something else is a TypeError."""

    async def short(response: ChatResponse) -> Verdict:
        return Verdict(len(response.content) < 5, "length", "short")

    verdict = await run_local(CallableVerifier(name="short", check=short), answer("hey"))
    assert verdict == Verdict(True, "length", "short")

    async def broken(response: ChatResponse) -> Verdict:
        return "yes"  # type: ignore[return-value]

    with pytest.raises(TypeError, match="returned str"):
        await run_local(CallableVerifier(name="broken", check=broken), answer("x"))


@pytest.mark.anyio
async def test_run_local_refuses_model_verifiers() -> None:
    """Reviewer and agreement specs need a model call, so run_local refuses them."""
    with pytest.raises(ValueError, match="needs a model call"):
        await run_local(ReviewerVerifier(model_class="flagship"), answer("x"))
    with pytest.raises(ValueError, match="needs a model call"):
        await run_local(AgreementVerifier(model="mini"), answer("x"))


def test_combine_verdicts_first_reject_wins() -> None:
    """Several verdicts combine into the first reject, or an accept naming every verifier."""
    ok1, ok2 = Verdict(True, "a", "schema"), Verdict(True, "", "reviewer:x")
    bad1, bad2 = Verdict(False, "no", "agreement:m"), Verdict(False, "later", "schema")
    assert combine_verdicts([ok1, bad1, bad2]) == bad1
    assert combine_verdicts([ok1, ok2]) == Verdict(True, "a", "schema+reviewer:x")
    with pytest.raises(ValueError, match="no verdicts"):
        combine_verdicts([])


def test_an_unjudged_verdict_is_neither_accept_nor_reject() -> None:
    """A verifier that could not run is unjudged: a reject still wins over it, and it wins over accepts."""
    ok, bad = Verdict(True, "a", "schema"), Verdict(False, "no", "schema")
    none = unjudged("verifier could not run: " + "x" * 900, "reviewer")
    assert (none.accepted, none.judged, len(none.reason)) == (False, False, 500)
    assert not rejects(none)
    assert rejects(bad)
    assert combine_verdicts([ok, none, bad]) == bad
    assert combine_verdicts([ok, none]) == none
    with pytest.raises(ValueError, match="cannot be an accept"):
        Verdict(True, "", "reviewer", judged=False)


def test_only_the_asked_model_or_class_serves_as_reviewer() -> None:
    """A class-asked reviewer is a model of that class, a named one that model; a degradation's pick never is."""
    by_class = ReviewerVerifier(model_class="flagship")
    assert serves_as_reviewer(by_class, name="claude", model_id="c-1", model_class="flagship", degrade=False)
    assert not serves_as_reviewer(by_class, name="llama", model_id="l-1", model_class="local", degrade=False)
    assert not serves_as_reviewer(by_class, name="claude", model_id="c-1", model_class="flagship", degrade=True)
    named = ReviewerVerifier(model="claude")
    assert serves_as_reviewer(named, name="claude", model_id="c-1", model_class="flagship", degrade=False)
    assert serves_as_reviewer(named, name="alias", model_id="claude", model_class="flagship", degrade=False)
    assert not serves_as_reviewer(named, name="gpt", model_id="g-1", model_class="flagship", degrade=False)


# -- reviewer ------------------------------------------------------------------------------------


def original_request() -> ChatRequest:
    """A tool-using request with routing fields set, as the author model saw it."""
    return ChatRequest(
        messages=(
            Message.text("system", "Be terse."),
            Message.text("user", "Weather in Paris?"),
            Message(role="assistant", content=(ToolCallPart(id="c1", name="weather", arguments='{"city":"Paris"}'),)),
            Message(role="tool", content=(ToolResultPart(tool_call_id="c1", content="18C sunny"),)),
        ),
        tools=(ToolSpec(name="weather"),),
        task="chat",
        tenant="acme",
        caller="web",
        sensitivity="pii",
        metadata={"trace": "t1"},
        request_id="r42",
    )


def test_build_review_request_carries_exchange_and_rails() -> None:
    """The review request shows the exchange as data, appends the protocol, and keeps tenant and sensitivity."""
    spec = ReviewerVerifier(model_class="flagship", prompt="Check the facts.")
    response = ChatResponse(content="18C and sunny.", thinking="secret plan", tool_calls=(ToolCall("c2", "log", "{}"),))
    review = build_review_request(original_request(), response, spec)
    system, user = review.messages
    assert system.role == "system"
    assert system.plain_text.startswith("Check the facts.")
    assert "starts with ACCEPT or REJECT" in system.plain_text
    text = user.plain_text
    shown = (
        "[system]\nBe terse.",
        "Weather in Paris?",
        '[tool call weather {"city":"Paris"}]',
        "[tool result c1] 18C sunny",
        "[tools offered] weather",
        "<answer>\n18C and sunny.\n[tool call log {}]\n</answer>",
    )
    for part in shown:
        assert part in text
    assert "secret plan" not in text
    assert (review.model, review.model_class, review.task) == (None, "flagship", None)
    assert (review.tenant, review.caller, review.sensitivity) == ("acme", "web", "pii")
    assert review.metadata == {"trace": "t1", "interlock.review_of": "r42", "interlock.review_task": "chat"}
    assert review.tools == ()


def test_build_review_request_pins_a_named_model_and_shows_the_schema() -> None:
    """A reviewer named by model pins that model, and a JSON-schema format is shown to the reviewer."""
    request = ChatRequest(
        messages=(Message(role="user", content=(TextPart("Total?"),)),),
        response_format=JsonSchemaFormat(name="o", schema={"type": "object"}),
    )
    review = build_review_request(request, answer("{}"), ReviewerVerifier(model="judge"))
    assert (review.model, review.model_class) == ("judge", None)
    assert '[answer must be JSON matching] {"type":"object"}' in review.messages[1].plain_text


@pytest.mark.parametrize(
    ("reply", "accepted", "reason"),
    [
        ("ACCEPT: the answer is correct.", True, "the answer is correct."),
        ("REJECT - the total omits shipping", False, "the total omits shipping"),
        ("accept. fine", True, "fine"),
        ("**Verdict:** REJECT — missing the date", False, "missing the date"),
        ("The sum checks out.\n\nVERDICT: ACCEPT: sums match", True, "sums match"),
        ("ACCEPTED\nEvery figure matches.", True, "Every figure matches."),
        ("REJECT", False, "no reason given"),
        ("> ACCEPT: quoted\nACCEPT: again", True, "quoted"),
    ],
)
def test_parse_review_clear_verdicts(reply: str, accepted: bool, reason: str) -> None:
    """A reply with agreeing verdict lines gives that verdict and the first line's reason."""
    assert parse_review(reply, verifier="reviewer:judge") == Verdict(accepted, reason, "reviewer:judge")


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("", "reply is empty"),
        ("   \n ", "reply is empty"),
        ("Looks good to me.", "no line starts with ACCEPT or REJECT"),
        ("I would not ACCEPT this answer.", "no line starts with ACCEPT or REJECT"),
        ("Acceptable, mostly.", "no line starts with ACCEPT or REJECT"),
        ("ACCEPT: fine\nREJECT: wrong date", "both ACCEPT and REJECT lines"),
    ],
)
def test_parse_review_ambiguous_replies_reject(reply: str, why: str) -> None:
    """An empty, verdict-less or self-contradicting reply is a reject whose reason says it was ambiguous."""
    verdict = parse_review(reply)
    assert not verdict.accepted
    assert verdict.verifier == "reviewer"
    assert verdict.reason.startswith("ambiguous review")
    assert why in verdict.reason


def test_other_lab_needs_two_known_different_labs() -> None:
    """Different known labs are independent; the same lab (any case or spacing) or an unknown lab is not."""
    assert is_other_lab("openai", "anthropic")
    assert not is_other_lab("OpenAI", " openai ")
    assert not is_other_lab("", "anthropic")
    assert not is_other_lab("openai", "")


def test_pick_reviewer_takes_the_first_allowed_candidate() -> None:
    """With require_other_lab the first candidate from another known lab reviews; without it, the first."""
    candidates = [("gpt", "openai"), ("mystery", ""), ("claude", "anthropic")]
    assert pick_reviewer(candidates, "openai", require_other_lab=True) == "claude"
    assert pick_reviewer(candidates, "openai", require_other_lab=False) == "gpt"
    assert pick_reviewer(candidates[:2], "openai", require_other_lab=True) is None
    assert pick_reviewer(candidates, "", require_other_lab=True) is None  # the author's lab is unknown


# -- agreement -----------------------------------------------------------------------------------


def test_agree_on_text() -> None:
    """Without a field, answers agree when their whitespace-trimmed texts are equal."""
    assert agree(answer(" Paris\n"), answer("Paris"), None) == Verdict(True, "answers are identical", "agreement")
    verdict = agree(answer("Paris"), answer("paris"), None, verifier="agreement:mini")
    assert verdict == Verdict(False, "answers differ: 'Paris' vs 'paris'", "agreement:mini")


def test_agree_on_json_field() -> None:
    """With a field, the JSON values at the dotted path must be equal as JSON values."""
    a = answer('{"total": 1, "items": [{"sku": "A1"}], "flag": true}')
    b = answer('{"total": 1.0, "items": [{"sku": "A1"}], "flag": 1, "extra": 2}')
    assert agree(a, b, "total").accepted
    assert agree(a, b, "items.0.sku") == Verdict(True, "answers agree on items.0.sku", "agreement")
    assert agree(a, b, "flag") == Verdict(False, "answers differ on flag: true vs 1", "agreement")


def test_agree_on_field_rejects_missing_or_non_json() -> None:
    """A missing field or a non-JSON answer is a reject that says which answer failed."""
    good = answer('{"total": 1}')
    assert agree(good, answer('{"sum": 1}'), "total") == Verdict(False, "answer B has no field 'total'", "agreement")
    short = agree(answer('{"total": [1, 2, 3, 4]}'), answer('{"total": [1]}'), "total.3")
    assert short.reason == "answer B has no field 'total.3'"
    not_json = agree(answer("one"), good, "total")
    assert not not_json.accepted
    assert not_json.reason.startswith("answer A is not JSON")


# -- tool-call validation ------------------------------------------------------------------------

WEATHER = ToolSpec(
    name="weather",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
PING = ToolSpec(name="ping")


def test_valid_tool_calls_have_no_problems() -> None:
    """Calls whose arguments match their schemas, and an empty argument string for a no-arg tool, pass."""
    calls = [ToolCall("c1", "weather", '{"city": "Oslo", "days": 2}'), ToolCall("c2", "ping", "")]
    assert validate_tool_calls([WEATHER, PING], calls) == []


def test_tool_call_problems_by_kind_and_path() -> None:
    """Unknown tools, non-JSON and non-object arguments, and schema violations are each reported with a path."""
    calls = [
        ToolCall("c1", "forecast", "{}"),
        ToolCall("c2", "weather", '{"city": "Oslo"'),
        ToolCall("c3", "weather", "[1]"),
        ToolCall("c4", "weather", '{"days": 0, "unit": "C"}'),
    ]
    problems = validate_tool_calls([WEATHER, PING], calls)
    summary = [(p.call_id, p.kind, p.path) for p in problems]
    assert summary == [
        ("c1", "unknown_tool", "$"),
        ("c2", "invalid_json", "$"),
        ("c3", "schema", "$"),
        ("c4", "schema", "$"),
        ("c4", "schema", "$"),
        ("c4", "schema", "$.days"),
    ]
    assert problems[0].message == "no tool named 'forecast'; offered: ping, weather"
    assert {p.message for p in problems[3:5]} == {
        "'city' is a required property",
        "Additional properties are not allowed ('unit' was unexpected)",
    }
    assert problems[5].message == "0 is less than the minimum of 1"


def test_malformed_tool_schema_is_a_request_error() -> None:
    """An offered tool whose parameters are not a valid JSON Schema is the caller's error, naming the tool index."""
    broken = ToolSpec(name="bad", parameters={"type": "nonsense"})
    with pytest.raises(RequestError) as info:
        validate_tool_calls([PING, broken], [ToolCall("c1", "ping", "{}")])
    assert info.value.field == "tools[1].parameters"


def test_corrective_message_names_each_call_and_problem() -> None:
    """The corrective message is one user message quoting each bad call and listing its problems by path."""
    problems = validate_tool_calls([WEATHER], [ToolCall("c1", "weather", '{"days": "2"}'), ToolCall("c2", "radar", "")])
    message = corrective_message(problems)
    assert message.role == "user"
    text = message.plain_text
    assert text.startswith("Your tool calls could not be run.")
    assert """Call c1 to 'weather' with arguments: {"days": "2"}""" in text
    assert "- schema at $.days: '2' is not of type 'integer'" in text
    assert "- schema at $: 'city' is a required property" in text
    assert "Call c2 to 'radar' with arguments: (empty)" in text
    assert "- unknown_tool: no tool named 'radar'; offered: weather" in text


def test_corrective_message_needs_problems() -> None:
    """There is no corrective message without problems."""
    with pytest.raises(ValueError, match="no tool-call problems"):
        corrective_message([])
