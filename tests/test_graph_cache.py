"""The int4 decode graph kept on disk: built once per weights, never stale, never in the way."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
import torch

from storytui import graph_cache, onnx_decoder
from storytui.model import ModelConfig, StoryModel
from storytui.onnx_decoder import OnnxDecoder

CONFIG = ModelConfig(
    vocab_size=300, block_size=32, n_layer=2, n_head=4, n_embd=64, mlp_hidden=96, n_kv_head=2
)


def _model(seed: int = 0) -> StoryModel:
    torch.manual_seed(seed)
    return StoryModel(CONFIG).eval()


@pytest.fixture
def builds(monkeypatch) -> list[int]:
    """Counts the graphs actually built (not read back from the cache)."""
    calls: list[int] = []
    build = onnx_decoder.build_decode_graph

    def counting(*args, **kwargs):
        calls.append(1)
        return build(*args, **kwargs)

    monkeypatch.setattr(onnx_decoder, "build_decode_graph", counting)
    return calls


def _logits(model: StoryModel, decoder: OnnxDecoder) -> torch.Tensor:
    cache = model.new_cache()
    ids = torch.tensor([[5, 17, 200, 3]])
    rows = []
    with torch.inference_mode():
        for t in range(ids.shape[1]):
            rows.append(decoder.step(model.embed(ids[:, t : t + 1]), cache))
            cache.length += 1
    return torch.cat(rows, dim=1)


def _graphs() -> list[str]:
    return sorted(p.name for p in graph_cache.graph_dir().glob("*.onnx"))


def test_the_second_decoder_for_the_same_weights_reads_the_graph(builds) -> None:
    model = _model()
    first = OnnxDecoder(model)
    assert len(builds) == 1 and _graphs() == [
        f"{graph_cache.weights_key(model, onnx_decoder.GROUP_SIZES)}.onnx"
    ]
    second = OnnxDecoder(_model())  # another object with the same weights
    assert len(builds) == 1
    assert second.weight_bytes == first.weight_bytes == onnx_decoder.build_decode_graph(model)[1]
    torch.testing.assert_close(_logits(model, second), _logits(model, first), rtol=0, atol=0)


def test_other_weights_or_config_get_their_own_graph(builds) -> None:
    model = _model()
    OnnxDecoder(model)
    changed = _model()
    with torch.no_grad():
        changed.blocks[1].mlp.down.weight[3, 7] += 0.5
    assert graph_cache.weights_key(changed, (128,)) != graph_cache.weights_key(model, (128,))
    decoder = OnnxDecoder(changed)
    assert len(builds) == 2 and len(_graphs()) == 2
    fresh = OnnxDecoder(changed, group_sizes=(32, 16))  # another rounding: another graph
    assert len(builds) == 3
    assert not torch.equal(_logits(changed, decoder), _logits(model, OnnxDecoder(model)))
    assert len(builds) == 3  # the first model's graph was still there
    assert fresh.weight_bytes != decoder.weight_bytes


def test_a_damaged_cached_graph_is_rebuilt(builds) -> None:
    model = _model()
    reference = _logits(model, OnnxDecoder(model))
    (path,) = graph_cache.graph_dir().glob("*.onnx")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])  # truncated on disk
    decoder = OnnxDecoder(model)
    assert len(builds) == 2
    torch.testing.assert_close(_logits(model, decoder), reference, rtol=0, atol=0)
    OnnxDecoder(model)
    assert len(builds) == 2  # the rebuilt graph replaced the damaged one


def test_a_cache_that_cannot_be_written_only_costs_the_build(builds) -> None:
    graph_cache.graph_dir().parent.mkdir(parents=True, exist_ok=True)
    graph_cache.graph_dir().write_text("not a directory")
    model = _model()
    reference = _logits(model, OnnxDecoder(model))
    torch.testing.assert_close(_logits(model, OnnxDecoder(model)), reference, rtol=0, atol=0)
    assert len(builds) == 2


def test_only_the_most_recently_used_graphs_are_kept(builds, monkeypatch) -> None:
    monkeypatch.setattr(graph_cache, "KEEP", 2)
    models = [_model(seed) for seed in range(3)]
    keys = [graph_cache.weights_key(m, onnx_decoder.GROUP_SIZES) for m in models]
    OnnxDecoder(models[0])
    OnnxDecoder(models[1])
    path = graph_cache.graph_dir() / f"{keys[0]}.onnx"
    os.utime(path, ns=(1, 1))  # long unused...
    OnnxDecoder(models[0])  # ...until read again now
    OnnxDecoder(models[2])
    assert _graphs() == sorted(f"{key}.onnx" for key in (keys[0], keys[2]))
    assert len(builds) == 3


def test_unquantised_graphs_are_not_cached(builds) -> None:
    OnnxDecoder(_model(), quantize=False)
    assert _graphs() == []


def test_a_cached_graph_without_its_byte_count_is_rebuilt(builds) -> None:
    import onnx

    model = _model()
    reference = _logits(model, OnnxDecoder(model))
    (path,) = graph_cache.graph_dir().glob("*.onnx")
    graph = onnx.load_from_string(path.read_bytes())
    del graph.metadata_props[:]  # loads in ONNX Runtime, but says nothing of its matrices
    path.write_bytes(graph.SerializeToString())
    decoder = OnnxDecoder(model)
    assert len(builds) == 2 and decoder.weight_bytes > 0
    torch.testing.assert_close(_logits(model, decoder), reference, rtol=0, atol=0)


def test_the_key_covers_the_config_and_the_code_that_builds(builds, monkeypatch) -> None:
    model = _model()
    key = graph_cache.weights_key(model, onnx_decoder.GROUP_SIZES)
    other_eps = _model()
    other_eps.config = dataclasses.replace(CONFIG, norm_eps=1e-3)  # same tensors, other graph
    assert graph_cache.weights_key(other_eps, onnx_decoder.GROUP_SIZES) != key
    OnnxDecoder(model)
    OnnxDecoder(other_eps)
    assert len(builds) == 2
    monkeypatch.setattr(graph_cache, "_builder_source", lambda: "an upgraded builder")
    assert graph_cache.weights_key(model, onnx_decoder.GROUP_SIZES) != key
    OnnxDecoder(model)
    assert len(builds) == 3


def test_temp_files_of_killed_writes_are_cleared(builds) -> None:
    directory = graph_cache.graph_dir()
    directory.mkdir(parents=True)
    killed = directory / ".abc.onnx.x1y2.tmp"
    under_way = directory / ".def.onnx.z3w4.tmp"
    killed.write_bytes(b"half a graph")
    under_way.write_bytes(b"another process writing")
    hours_ago = time.time() - 2 * graph_cache.STALE_TEMP_SECONDS
    os.utime(killed, (hours_ago, hours_ago))
    OnnxDecoder(_model())
    assert not killed.exists() and under_way.exists()
