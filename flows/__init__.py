"""Prefect flows: thin entrypoints that compose kirinuki's stages (shipped as `kirinuki.flows`)."""
