"""Large multimodal model stage (G3 geo-diversification): backends, prompts, parsing, records."""
