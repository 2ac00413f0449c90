"""pack's memory: what crosses its shuffles is compact (2-byte ids where the vocabulary fits,
TokenizedDoc's binary coder, one shared mask for unmasked documents) and decodes exactly."""

import json
import struct

import numpy as np
import pytest

from iptkit.transforms.document import TokenizedDoc, TokenizedDocCoder, pack_ints
from iptkit.transforms.stages.pack import (
    doc_bytes,
    doc_piece,
    id_typecode,
    target_mask,
    value_tokens,
)


def test_ids_cross_the_shuffle_in_two_bytes_when_the_vocabulary_fits():
    assert [id_typecode(n) for n in (2000, 2**16, 2**16 + 1, 151_936)] == ["H", "H", "I", "I"]
    doc = TokenizedDoc("a", "s", "raw", ids=[65535, 5, 6])
    ids, mask = doc_bytes(doc, 1, 2, "H")
    assert len(ids) == 2 * 5 and mask == b""
    assert value_tokens(((0.0, 1, "a"), ids, mask), 2) == 5
    piece = doc_piece(ids, mask, True, "H")
    assert piece.ids.tolist() == [1, 65535, 5, 6, 2] and piece.mask.tolist() == [0, 1, 1, 1, 1]
    with pytest.raises(struct.error):  # an id past the vocabulary's width is never truncated
        doc_bytes(TokenizedDoc("b", "s", "raw", ids=[65536]), None, None, "H")


def test_unmasked_documents_share_one_read_only_mask():
    a, b = target_mask(3, True), target_mask(5000, False)
    assert a.tolist() == [0, 1, 1] and b.tolist() == [1] * 5000
    assert np.shares_memory(target_mask(7, False), target_mask(9, True))
    assert not a.flags.writeable and not b.flags.writeable


@pytest.mark.parametrize(
    "values, code, width",
    [([0, 1, 1], "B", 1), ([1, 2000, 65535], "H", 2), ([70000, 2**32 - 1], "I", 4),
     ([2**32, 1], "q", 8), ([-1, 5], "q", 8), ([], "B", 1)],
)  # fmt: skip
def test_int_lists_take_the_narrowest_width_that_holds_them(values, code, width):
    packed = pack_ints(values)
    assert packed[:1] == code.encode() and len(packed) == 1 + 4 + width * len(values)


def test_a_documents_ids_take_two_bytes_a_token_not_json_digits():
    """What a mix's shuffle holds per document: the ids packed, the other fields as JSON."""
    ids = list(range(1000, 3000))
    doc = TokenizedDoc("d", "s", "raw", ids=ids, mask=[1] * len(ids), difficulty=0.5)
    encoded = TokenizedDocCoder().encode(doc)
    as_json = json.dumps(doc.to_dict(), sort_keys=True, separators=(",", ":"))
    assert len(encoded) < 3 * len(ids) + 200 < len(as_json) / 2
    assert TokenizedDocCoder().decode(encoded) == doc


def test_tokenized_documents_cross_the_runner_with_their_own_coder(tmp_path):
    """format's and mix's kept documents are typed TokenizedDoc, so where a runner holds them
    (mix's select waits for the group totals) they take TokenizedDocCoder's bytes: untyped,
    Beam pickles them, 1.4 times the size for the same ids."""
    import apache_beam as beam
    from pack_helpers import write_tokenizer

    from iptkit.transforms.record import Record
    from iptkit.transforms.stage import KEPT
    from iptkit.transforms.stages.mix import Mix, MixConfig
    from iptkit.transforms.stages.pack import FormatTokenize, PackConfig

    config = PackConfig(tokenizer=str(write_tokenizer(tmp_path)), seq_len=64)
    records = [Record(id=f"r{i}", text="a few words " * (i + 5), source="s") for i in range(20)]
    p = beam.Pipeline()  # built, not run: the types are the graph's
    docs = (p | beam.Create(records) | FormatTokenize(config))[KEPT]
    mixed = docs | Mix(MixConfig(ratios={"raw": 1.0}))
    for pcoll in (docs, mixed[KEPT]):
        assert pcoll.element_type is TokenizedDoc
        assert isinstance(beam.coders.registry.get_coder(pcoll.element_type), TokenizedDocCoder)
    formatted = FormatTokenize(config)
    formatted.setup()
    doc = formatted.apply(records[-1])
    pickled = beam.coders.FastPrimitivesCoder().encode(doc)
    assert len(TokenizedDocCoder().encode(doc)) < len(pickled)
