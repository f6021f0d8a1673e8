"""Length-generalization evaluation: perplexity against length and passkey retrieval."""
