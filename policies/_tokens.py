"""Token counts without a tokenizer: an estimate for routing, a bound for budgets, a billing figure.

Three functions, three jobs, because one figure cannot serve them all:

- ``estimate_input_tokens`` (about four characters per token, the figure the major providers
  quote for English) is a central guess. Routing compares it with context windows and rules'
  ``min_input_tokens``/``max_input_tokens``, and classifiers read it as a feature; a bound there
  would turn models away from prompts they can take (English text is a quarter of its bound).
- ``input_token_bound`` is an upper bound on what a provider bills for a request's prompt, used
  by the budget rail to size reservations. Every tokenizer the providers we speak use is
  byte-level BPE (OpenAI's o200k/cl100k, Anthropic's) or SentencePiece with byte fallback
  (Gemini): a token covers at least one UTF-8 byte, so a text never has more tokens than bytes.
  The framing the provider wraps around each message, part and tool is not in the text; the
  documented overheads below bound it. No provider offers a count that is cheap and local (the
  counting endpoints of Anthropic and Gemini are network calls, and no tokenizer is bundled), so
  none is used.
- ``estimate_output_tokens`` is what a stream that broke before its usage arrived is billed for.

Images are the one part without a text to measure; their bound is the largest per-image figure
the providers publish (see ``IMAGE_TOKENS_BOUND``).
"""

from __future__ import annotations

import msgspec

from interlock._types import ChatRequest, ImagePart, JsonSchemaFormat, TextPart, ToolCallPart, ToolResultPart

_CHARS_PER_TOKEN = 4
_IMAGE_TOKENS = 765  # a 1024x1024 image at high detail on the OpenAI scale
_MESSAGE_OVERHEAD = 4

# The bound's overheads, each above what any provider we speak documents for the same framing.
# OpenAI counts 3 tokens per message and 3 to prime the reply (its cookbook's count_tokens);
# Anthropic and Gemini publish no figure, and their role and block markers are a few tokens too.
MESSAGE_BOUND = 8  # role markers and separators of one message
PART_BOUND = 8  # a content block's markers, and SentencePiece's dummy prefix before a text
REPLY_BOUND = 8  # the tokens that prime the assistant's reply
# Anthropic's tool-use system prompt is the largest documented: 530 tokens (Claude 3 models,
# tool_choice auto); a request with tools pays it once, beside each tool's own text.
TOOLS_BOUND = 600
TOOL_BOUND = 32  # the per-tool wrapper (OpenAI renders tools as a typed namespace)
FORMAT_BOUND = 32  # the wrapper of a response format's schema
# OpenAI's patch-based models (gpt-4.1-nano) bill up to 1,536 patches x 2.46 = 3,779 tokens per
# image, the largest published figure; tile-based gpt-4o caps at 1,445, Anthropic near 1,600.
IMAGE_TOKENS_BOUND = 4_000

_json = msgspec.json.Encoder()


def estimate_text_tokens(text: str) -> int:
    """Tokens in ``text`` at four characters each, rounded up; an empty text is zero."""
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def estimate_input_tokens(request: ChatRequest) -> int:
    """A central estimate of ``request``'s prompt tokens, for routing and classifier features (not a bound)."""
    total = 0
    for message in request.messages:
        total += _MESSAGE_OVERHEAD
        for part in message.content:
            if isinstance(part, TextPart):
                total += estimate_text_tokens(part.text)
            elif isinstance(part, ImagePart):
                total += _IMAGE_TOKENS
            elif isinstance(part, ToolCallPart):
                total += estimate_text_tokens(part.name) + estimate_text_tokens(part.arguments)
            elif isinstance(part, ToolResultPart):
                total += estimate_text_tokens(part.content)
    for tool in request.tools:
        total += estimate_text_tokens(tool.name) + estimate_text_tokens(tool.description)
        total += estimate_text_tokens(str(tool.parameters))
    return total


def text_token_bound(text: str) -> int:
    """At most this many tokens in ``text`` under a byte-level tokenizer: its UTF-8 length."""
    return len(text.encode("utf-8", "surrogatepass"))


def input_token_bound(request: ChatRequest) -> int:
    """An upper bound on the prompt tokens a provider bills for ``request``, for budget reservations.

    Every text the request carries counts one token per UTF-8 byte (a tool call's id, name,
    arguments and signature, a tool result's id and content, each tool's name, description and
    JSON schema, a response format's schema), plus the framing overheads of this module.
    """
    total = REPLY_BOUND
    for message in request.messages:
        total += MESSAGE_BOUND
        for part in message.content:
            total += PART_BOUND
            if isinstance(part, TextPart):
                total += text_token_bound(part.text)
            elif isinstance(part, ImagePart):
                total += IMAGE_TOKENS_BOUND
            elif isinstance(part, ToolCallPart):
                total += sum(map(text_token_bound, (part.id, part.name, part.arguments, part.signature)))
            elif isinstance(part, ToolResultPart):
                total += text_token_bound(part.tool_call_id) + text_token_bound(part.content)
    if request.tools:
        total += TOOLS_BOUND
    for tool in request.tools:
        total += TOOL_BOUND + text_token_bound(tool.name) + text_token_bound(tool.description)
        total += len(_json.encode(tool.parameters))
    fmt = request.response_format
    if fmt is not None:
        total += FORMAT_BOUND
        if isinstance(fmt, JsonSchemaFormat):
            total += text_token_bound(fmt.name) + len(_json.encode(fmt.schema))
    return total


def estimate_output_tokens(text: str, max_tokens: int | None = None) -> int:
    """Output tokens to bill for ``text`` delivered by a stream whose provider reported no usage.

    The choice is the conservative one: the UTF-8 length, the most tokens a byte-level tokenizer
    can make of the text, so a broken stream is never billed for less than it cost (English is
    over-billed about fourfold; a provider that sends usage is always billed by its own count).
    ``max_tokens``, the attempt's output limit, caps it: no provider generates past that.
    """
    bound = text_token_bound(text)
    return bound if max_tokens is None else min(bound, max(max_tokens, 0))
