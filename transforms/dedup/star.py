"""Star clustering of a similarity graph in Beam: every removed node is tied to a centre it
resembles, never to a node it reaches only through a chain.

Connected components chain near-duplicates: A~B~C is one cluster even when A and C share
little, so keeping one member removes documents whose only survivor is far from them. Here a
cluster is a star instead: a *centre* and members that each have an edge (a verified
similarity) to it. The centres are the greedy maximal independent set of the graph in a fixed
node order (the nodes are bytes that begin with a seeded hash of the record id, so the order is
seeded and independent of input order): walking the nodes in that order, a node becomes a
centre unless a neighbour already is; every other node is tied to its most similar neighbouring
centre (ties: the smallest centre). Every node has a centre neighbour or is a centre, so no
node is removed without a similar survivor.

In Beam the walk runs as rounds of message passing (Pregel-style), one GroupByKey each, with
per-node work bounded by the node's degree and nothing gathered on one worker:

- a node still open keeps its neighbours that are not known to be removed;
- it becomes a centre when every such neighbour is larger (its smaller neighbours are all
  removed, so none of them is a centre), and tells its open neighbours;
- an open node told of a centre is removed, and tells its open neighbours, which forget it;
- after the rounds, one pass over the edges ties every node next to a centre to the most
  similar of its centres.

Messages sent in one round arrive in the next, so a node decides on what it knew at the start
of the round; two neighbours never both become centres (the larger waits for the smaller to be
removed), and the centres are exactly those of the sequential greedy walk, whatever the number
of rounds, workers or bundles. For a random order the walk has O(log² n) dependent steps
(Blelloch, Fineman and Shun, "Greedy Sequential Maximal Independent Set and Matching are
Parallel on Average", SPAA 2012); each takes two rounds (a centre, then its removed neighbours).
Near-duplicate graphs are mostly small cliques, settled in two rounds. A node still open after
the last round is left as its own centre and counted as *unsettled*: a run that needed more
rounds removes less, never more.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

Node = bytes
Edge = tuple[Node, Node, float]  # (a, b, similarity), either order
Assignment = tuple[Node, Node, float]  # (removed node, its centre, their similarity)

# Values grouped under a node in one round: its open neighbours (only while it is open) and the
# messages its neighbours sent in the previous round.
OPEN = 0  # (OPEN, ((neighbour, similarity), ...))
CENTRE = 1  # (CENTRE, sender): the sender became a centre
REMOVED = 2  # (REMOVED, sender): the sender was removed (tied to some centre)

ASSIGNED = "assigned"
CENTRES = "centres"
UNSETTLED = "unsettled"


def adjacency(node: Node, neighbours: Iterable[tuple[Node, float]]) -> tuple[Node, tuple]:
    """A node's first state: its distinct neighbours, sorted, each with its similarity (the
    highest, if an edge came twice); self-loops left out."""
    best: dict[Node, float] = {}
    for other, similarity in neighbours:
        if other != node and similarity > best.get(other, -1.0):
            best[other] = similarity
    return node, (OPEN, tuple(sorted(best.items())))


def star_step(node: Node, values: Iterable[tuple[int, Any]], final: bool) -> Iterator[Any]:
    """One round for one node: yields `(node, value)` for the next round (its state, or
    messages to its neighbours) and tagged `CENTRES` / `UNSETTLED` nodes.

    A node that has already decided receives no state, only late messages, and yields nothing.
    In the `final` round an open node that is neither removed nor a centre is unsettled.
    """
    neighbours: tuple | None = None
    heard_centre = False
    removed: set[Node] = set()
    for kind, payload in values:
        if kind == OPEN:
            neighbours = payload
        elif kind == CENTRE:
            heard_centre = True
            removed.add(payload)  # it needs no message from us either
        else:
            removed.add(payload)
    if neighbours is None:
        return
    still_open = tuple(item for item in neighbours if item[0] not in removed)
    if heard_centre:
        for other, _ in still_open:
            yield other, (REMOVED, node)
    elif all(other > node for other, _ in still_open):
        yield beam.pvalue.TaggedOutput(CENTRES, node)
        for other, _ in still_open:
            yield other, (CENTRE, node)
    elif final:
        yield beam.pvalue.TaggedOutput(UNSETTLED, node)
    else:
        yield node, (OPEN, still_open)


def tie_to_centres(node: Node, values: Iterable[tuple]) -> Iterator[tuple[Node, tuple]]:
    """From a centre (its values: `(CENTRE,)` and its edges `(neighbour, similarity)`), an offer
    `(neighbour, (centre, similarity))` to each neighbour; other nodes yield nothing."""
    if not any(value == (CENTRE,) for value in values):
        return
    for value in values:
        if value != (CENTRE,):
            yield value[0], (node, value[1])


def best_centre(node: Node, offers: Iterable[tuple[Node, float]]) -> Assignment:
    """The most similar of a node's neighbouring centres (ties: the smallest centre)."""
    centre, similarity = min(offers, key=lambda offer: (-offer[1], offer[0]))
    return node, centre, similarity


def _both_ways(edge: Edge) -> Iterator[tuple[Node, tuple[Node, float]]]:
    a, b, similarity = edge
    yield a, (b, similarity)
    yield b, (a, similarity)


class _StepFn(beam.DoFn):
    def __init__(self, final: bool, namespace: str):
        self._final = final
        self._unsettled = Metrics.counter(namespace, "star_unsettled_nodes")

    def process(self, element: tuple[Node, Iterable[tuple]]) -> Iterator[Any]:
        node, values = element
        for out in star_step(node, values, self._final):
            if isinstance(out, beam.pvalue.TaggedOutput) and out.tag == UNSETTLED:
                self._unsettled.inc()
            yield out


class StarClusters(beam.PTransform):
    """Edges `(a, b, similarity)` in; out `{"assigned": (node, centre, similarity),
    "unsettled": node}`: every removed node with the centre it is tied to, and the nodes the
    rounds left open (they stay unless a neighbour is a centre, which they are then tied to).
    A node without edges, and a centre, is in neither."""

    def __init__(self, rounds: int, metrics_namespace: str):
        super().__init__()
        self._rounds = rounds
        self._namespace = metrics_namespace

    def expand(self, edges):
        both_ways = edges | "Both ways" >> beam.FlatMap(_both_ways)
        state = both_ways | "Neighbours" >> beam.GroupByKey() | "Open" >> beam.MapTuple(adjacency)
        centres, unsettled = [], []
        for i in range(1, self._rounds + 1):
            step = (
                state
                | f"Round {i} group" >> beam.GroupByKey()
                | f"Round {i}"
                >> beam.ParDo(_StepFn(i == self._rounds, self._namespace)).with_outputs(
                    CENTRES, UNSETTLED, main="next"
                )
            )
            state = step["next"]
            centres.append(step[CENTRES])
            unsettled.append(step[UNSETTLED])
        # Every node next to a centre is tied to the most similar one: the rounds decided who
        # the centres are; this pass sees all of a node's centres at once.
        assigned = (
            (
                centres
                | "All centres" >> beam.Flatten()
                | "Centre marks" >> beam.Map(lambda node: (node, (CENTRE,))),
                both_ways,
            )
            | "Centres and edges" >> beam.Flatten()
            | "By node" >> beam.GroupByKey()
            | "Offers" >> beam.FlatMapTuple(tie_to_centres)
            | "By neighbour" >> beam.GroupByKey()
            | "Best centre" >> beam.MapTuple(best_centre)
        )
        return {ASSIGNED: assigned, UNSETTLED: unsettled | "All unsettled" >> beam.Flatten()}
