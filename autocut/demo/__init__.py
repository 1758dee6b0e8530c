"""`make demo`: the main job end to end on the embedded defaults (`python -m autocut.demo --help`).

Builds the generated demo world, trains the tokenizers and the planner LM within a time budget,
starts the service, sends one edit over HTTP and prints what came back.
"""

__all__: list[str] = []
