"""Python SDK: OpenAI-style batch and file calls straight to a provider (filled in by issue 4)."""
