"""Developer tools: checks of the code base against its own declarations."""
