"""Quality evaluation of Prism on a real model (SmolLM2-135M-Instruct)."""
