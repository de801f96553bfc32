"""The exercises at the end of each notebook, learntools-style: `ex.check(answer)`,
`ex.hint()`, `ex.solution()`.

- `core`: `Exercise` (check, tiered hints, solution, a time limit on the learner's code) and
  the checks every checker shares (`expect`, `call_for_tensor`, `name_the_slip`).
- `nb01_patches` ... `nb08_practices`: one module per notebook, named after it, holding that
  notebook's exercises and their checkers: `from helpers.exercises.nb03_attention import
  ex_attention`.

A check tests what the answer *does* (shapes, values, gradients, an optimizer step), never
how it is written.
"""
