"""The agent: search loop, proposers, generator backends and the command line."""
