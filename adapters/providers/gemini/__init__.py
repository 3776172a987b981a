"""The Google Gemini wire, codec, stream decoder and schema dialect."""
