"""The token figures of policies/_tokens.py: the routing estimate, the budget bound, the billing estimate."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from interlock._types import (
    ChatRequest,
    ImagePart,
    JsonSchemaFormat,
    Message,
    Part,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
)
from interlock.policies._tokens import (
    FORMAT_BOUND,
    IMAGE_TOKENS_BOUND,
    MESSAGE_BOUND,
    PART_BOUND,
    REPLY_BOUND,
    TOOL_BOUND,
    TOOLS_BOUND,
    estimate_input_tokens,
    estimate_output_tokens,
    input_token_bound,
    text_token_bound,
)

CJK = "请用一句话总结这段文字🙂🚀"


def ask(text: str) -> ChatRequest:
    """One user message holding ``text``."""
    return ChatRequest(messages=(Message.text("user", text),))


def test_cjk_and_emoji_are_bounded_by_their_bytes_where_the_estimate_undercounts() -> None:
    """Eleven CJK characters and two emoji are 41 bytes: the bound counts all of them, the estimate four."""
    assert text_token_bound(CJK) == len(CJK.encode()) == 41
    assert input_token_bound(ask(CJK)) == REPLY_BOUND + MESSAGE_BOUND + PART_BOUND + 41
    assert estimate_input_tokens(ask(CJK)) == 4 + 4  # a message's overhead, then 13 characters / 4
    assert text_token_bound("\ud800") == 3  # a lone surrogate is measured, not an error


def test_every_text_a_request_carries_counts_toward_the_bound() -> None:
    """Tool calls and results, images, tools with their schemas and a response schema each add their bytes."""
    schema = {"type": "object", "properties": {"名前": {"type": "string"}}}
    parts: tuple[Part, ...] = (
        ToolCallPart("call_1", "lookup", '{"sku": "好"}', "sig"),
        ToolResultPart("call_1", "在庫あり"),
        ImagePart(url="https://example.com/a.png"),
    )
    request = ChatRequest(
        messages=(Message("assistant", parts),),
        tools=(ToolSpec("lookup", "在庫を調べる", schema),),
        response_format=JsonSchemaFormat("answer", schema),
    )
    schema_bytes = len(msgspec.json.encode(schema))
    expected = (
        REPLY_BOUND + MESSAGE_BOUND + 3 * PART_BOUND
        + len(b"call_1lookup") + len('{"sku": "好"}'.encode()) + len(b"sig")
        + len(b"call_1") + len("在庫あり".encode())
        + IMAGE_TOKENS_BOUND
        + TOOLS_BOUND + TOOL_BOUND + len(b"lookup") + len("在庫を調べる".encode()) + schema_bytes
        + FORMAT_BOUND + len(b"answer") + schema_bytes
    )  # fmt: skip
    assert input_token_bound(request) == expected


texts = st.text(max_size=200)
parts_strategy = st.one_of(
    st.builds(TextPart, texts),
    st.builds(ImagePart, st.none() | st.just("https://example.com/i.png")),
    st.builds(ToolCallPart, texts, texts, texts, texts),
    st.builds(ToolResultPart, texts, texts),
)
messages = st.builds(
    Message, st.sampled_from(["system", "user", "assistant", "tool"]), st.tuples(parts_strategy) | st.tuples()
)
tools = st.builds(ToolSpec, texts, texts, st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4))
requests = st.builds(
    ChatRequest, messages=st.lists(messages, max_size=5).map(tuple), tools=st.lists(tools, max_size=3).map(tuple)
)


@given(requests)
def test_the_bound_is_never_below_the_bytes_nor_the_routing_estimate(request: ChatRequest) -> None:
    """For any request: bound >= every text's UTF-8 length, and bound >= the routing estimate."""
    texts_bytes = 0
    for message in request.messages:
        for part in message.content:
            if isinstance(part, TextPart):
                texts_bytes += text_token_bound(part.text)
            elif isinstance(part, ToolCallPart):
                texts_bytes += text_token_bound(part.arguments)
            elif isinstance(part, ToolResultPart):
                texts_bytes += text_token_bound(part.content)
    bound = input_token_bound(request)
    assert bound >= texts_bytes
    assert bound >= estimate_input_tokens(request)


@given(st.text(max_size=300), st.none() | st.integers(min_value=0, max_value=400))
def test_the_billing_estimate_never_under_counts_a_byte_level_tokenizer(text: str, limit: int | None) -> None:
    """A delivered text is billed its UTF-8 length, capped by the attempt's output limit (never past it)."""
    billed = estimate_output_tokens(text, limit)
    assert billed == (text_token_bound(text) if limit is None else min(text_token_bound(text), limit))
    assert estimate_output_tokens(CJK) == 41
