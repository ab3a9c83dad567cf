"""ListOps generator, following LRA's ``lra_benchmarks/data/listops.py`` (Tay et al. 2021).

A tree is a digit 0-9 (a leaf) or an operator applied to 2..``max_args`` subtrees. At depth < ``max_depth``
a node is an operator with probability ``VALUE_P`` = 0.25, otherwise a leaf; at ``max_depth`` always a
leaf; the root has depth 1. Operators: MIN, MAX, MED (``int(np.median(args))``, the floor of the
middle pair's mean for an even count) and SM (sum modulo 10); the label is the tree's value. A tree's
length counts operators, digits and closing brackets (the tokens a model sees, parentheses aside),
and only trees with ``min_length < length < max_length`` are kept, without duplicates across the
three splits. The text form wraps every (function, argument) pair in parentheses as LRA writes it:
``[MAX 2 9]`` is ``( ( ( [MAX 2 ) 9 ) ] )``. Files: ``basic_{train,val,test}.tsv`` with the header
``Source<TAB>Target``, the layout :mod:`spikessm.data.lra.listops` reads.

Speed: only ~2% of trees fall in a length window, and the rejected ones are mostly huge (the tree
grows by 0.25 x 6 = 1.5 children per node), so drawing trees one node at a time in Python is slow.
We draw the *shapes* of many trees at once, level by level with numpy, stop growing a tree once it
is too long, and only then build the kept ones, drawing their digits and operators. A node's kind,
arity, digit and operator are independent draws, so this yields the same distribution as LRA's
depth-first recursion. Unlike LRA (unseeded, set order), a seed reproduces the files exactly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from spikessm.errors import UserError

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
VALUE_P = 0.25
BATCH = 20000  # trees whose shapes are drawn together
STALL_BATCHES = 50


def evaluate(op: str, args: list[int]) -> int:
    """The value of operator ``op`` applied to digits ``args``."""
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[MED":
        ordered, middle = sorted(args), len(args) // 2
        # == int(np.median(args)) for non-negative ints, without numpy's per-call cost
        return ordered[middle] if len(args) % 2 else (ordered[middle - 1] + ordered[middle]) // 2
    return sum(args) % 10


def _draw_shapes(rng: np.random.Generator, max_depth: int, max_args: int, max_length: int):
    """Shapes of ``BATCH`` random trees, drawn one depth at a time for all trees together.

    Returns ``lengths`` (BATCH,) and per depth ``(tree, arity)``: for each node at that depth, in
    breadth-first order, the tree it belongs to and its number of children (0 for a leaf). A tree whose
    length reaches ``max_length`` stops growing; its length then only says "too long".
    """
    tree = np.arange(BATCH)
    lengths = np.zeros(BATCH, np.int64)
    levels = []
    for depth in range(1, max_depth + 1):
        is_op = rng.random(len(tree)) <= VALUE_P if depth < max_depth else np.zeros(len(tree), bool)
        arity = np.where(is_op, rng.integers(2, max_args + 1, len(tree)), 0)
        # a digit is one token, an operator two ("[MAX" and "]")
        lengths += np.bincount(tree, minlength=BATCH) + np.bincount(tree[is_op], minlength=BATCH)
        levels.append((tree, arity))
        growing = lengths[tree] < max_length
        tree = np.repeat(tree[growing], arity[growing])  # children follow their parents' order
        if len(tree) == 0:
            break
    return lengths, levels


def _build(rng: np.random.Generator, levels, index: int) -> tuple[str, int]:
    """Text and value of tree ``index``, drawing its digits and operators."""
    arities = []  # per depth, this tree's nodes (breadth-first = left to right)
    for tree, arity in levels:
        start, stop = np.searchsorted(tree, [index, index + 1])  # ``tree`` is sorted
        if start == stop:
            break
        arities.append(arity[start:stop].tolist())
    n_nodes = sum(map(len, arities))
    digits, ops = rng.integers(10, size=n_nodes).tolist(), rng.integers(4, size=n_nodes).tolist()
    position = [0] * len(arities)  # next unvisited node per depth
    visited = iter(range(n_nodes))

    def node(depth: int) -> tuple[str, int]:
        # depth first, left to right: visits each depth's nodes in their breadth-first order
        k, i = arities[depth][position[depth]], next(visited)
        position[depth] += 1
        if k == 0:
            return str(digits[i]), digits[i]
        children = [node(depth + 1) for _ in range(k)]
        op = OPERATORS[ops[i]]
        # ((((op a1) a2) ... ak) ]): every (function, argument) pair in parentheses
        text = "( " * (k + 1) + f"{op} " + " ) ".join(text for text, _ in children) + " ) ] )"
        return text, evaluate(op, [value for _, value in children])

    return node(0)


def generate_listops(n: int, min_length: int = 500, max_length: int = 2000, max_depth: int = 10,
                     max_args: int = 10, seed: int = 0, progress: bool = False) -> list[tuple[str, int]]:
    """``n`` distinct ``(expression, value)`` pairs with ``min_length < length < max_length``."""
    if not 0 <= min_length < max_length - 1:
        raise UserError(f"need 0 <= min_length < max_length - 1, got {min_length} and {max_length}")
    rng = np.random.default_rng(seed)
    samples: dict[str, int] = {}
    fruitless = 0  # batches in a row that found nothing new: the window holds too few distinct trees
    with tqdm(total=n, desc="listops", unit="expr", disable=not progress) as bar:
        while len(samples) < n:
            if fruitless == STALL_BATCHES:
                raise UserError(f"found only {len(samples)} distinct expressions with {min_length} < length < "
                                f"{max_length} in {STALL_BATCHES * BATCH} tries; widen the length range")
            found = len(samples)
            lengths, levels = _draw_shapes(rng, max_depth, max_args, max_length)
            for index in np.flatnonzero((lengths > min_length) & (lengths < max_length)):
                text, value = _build(rng, levels, index)
                if text not in samples:
                    samples[text] = value
                    bar.update()
                    if len(samples) == n:
                        break
            fruitless = 0 if len(samples) > found else fruitless + 1
    return list(samples.items())


def write_listops(out: Path, train: int = 96000, val: int = 2000, test: int = 2000, *,
                  min_length: int = 500, max_length: int = 2000, seed: int = 0,
                  progress: bool = False) -> Path:
    """Generate and write ``out/listops-1000/basic_{train,val,test}.tsv``; returns that folder.

    Defaults are LRA's (96,000 / 2,000 / 2,000, lengths 500-2000); short lengths such as 50-200
    make a data set small enough for CPU runs.
    """
    samples = generate_listops(train + val + test, min_length, max_length, seed=seed, progress=progress)
    folder = Path(out) / "listops-1000"
    folder.mkdir(parents=True, exist_ok=True)
    bounds = {"train": (0, train), "val": (train, train + val), "test": (train + val, train + val + test)}
    for split, (start, stop) in bounds.items():
        with open(folder / f"basic_{split}.tsv", "w", encoding="utf-8", newline="") as f:
            f.write("Source\tTarget\n")
            f.writelines(f"{text}\t{value}\n" for text, value in samples[start:stop])
    return folder
