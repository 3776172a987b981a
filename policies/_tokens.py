"""Token estimates for routing and for providers that report no usage.

A heuristic of about four characters per token (the figure the major providers quote for
English text) is good enough to pick a context window and reserve a budget; billing always
uses the provider's own counts when it reports them.
"""

from __future__ import annotations

from interlock._types import ChatRequest, ImagePart, TextPart, ToolCallPart, ToolResultPart

_CHARS_PER_TOKEN = 4
_IMAGE_TOKENS = 765  # a 1024x1024 image at high detail on the OpenAI scale
_MESSAGE_OVERHEAD = 4


def estimate_text_tokens(text: str) -> int:
    """Tokens in ``text``, rounded up; an empty text is zero."""
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def estimate_input_tokens(request: ChatRequest) -> int:
    """Prompt tokens of ``request``: messages, parts, tool definitions."""
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
