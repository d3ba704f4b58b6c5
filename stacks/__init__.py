"""Blueprint stacks: each composes messaging_constructs into one deployable architecture."""
