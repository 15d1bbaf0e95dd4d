"""Datasets: Tiny ImageNet extraction (good, corrupt, truncated, hostile), ImageFolder, synthetic."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
import torch

from densebench import data
from densebench.data import DataError, imagenet_synsets
from tests.conftest import TINY_WNIDS, jpeg_bytes, make_tiny_zip


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "tiny-imagenet-200.zip")


def test_imagenet_synsets_from_timm() -> None:
    synsets = imagenet_synsets()
    assert len(synsets) == 1000
    assert synsets[:2] == ["n01440764", "n01443537"]


def test_extract_parse_and_map_labels(tiny_zip: Path) -> None:
    data_dir = tiny_zip.parent
    root = data.prepare_tiny_imagenet(data_dir, download_ok=False, md5=md5(tiny_zip))
    assert (root / data.COMPLETE_MARKER).is_file()
    assert not (root / "train").exists(), "only the validation split is extracted"
    pairs = data.val_annotations(root)
    assert len(pairs) == 6
    # Labels are ImageNet-1k indices: goldfish is class 1 in the synset order.
    index = {w: i for i, w in enumerate(imagenet_synsets())}
    assert index[TINY_WNIDS[0]] == 1
    assert leftovers(data_dir) == ["tiny-imagenet-200"], "no temporary directory is left behind"


def test_load_tiny_imagenet_end_to_end(tiny_zip: Path) -> None:
    data.prepare_tiny_imagenet(tiny_zip.parent, download_ok=False, md5=md5(tiny_zip))
    loaded = data.load("tiny-imagenet", tiny_zip.parent, 6, 48, offline=True)
    assert loaded.images.shape == (6, 3, 48, 48)
    index = {w: i for i, w in enumerate(imagenet_synsets())}
    assert sorted(set(loaded.labels.tolist())) == sorted(index[w] for w in TINY_WNIDS)
    assert loaded.info.source == "tiny-imagenet" and loaded.info.label_space == "imagenet-1k"


def test_md5_mismatch_is_refused(tiny_zip: Path) -> None:
    with pytest.raises(DataError, match="has MD5 .* expected 0123"):
        data.prepare_tiny_imagenet(tiny_zip.parent, download_ok=False, md5="0123" * 8)
    assert leftovers(tiny_zip.parent) == []


def test_truncated_archive(tiny_zip: Path) -> None:
    blob = tiny_zip.read_bytes()
    tiny_zip.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        data.prepare_tiny_imagenet(tiny_zip.parent, download_ok=False, md5=md5(tiny_zip))
    assert leftovers(tiny_zip.parent) == [], "a failed extraction leaves nothing behind"


def test_corrupt_member(tiny_zip: Path) -> None:
    blob = bytearray(tiny_zip.read_bytes())
    with zipfile.ZipFile(tiny_zip) as zf:
        info = zf.getinfo("tiny-imagenet-200/val/images/val_3.JPEG")
    start = info.header_offset + 30 + len(info.filename) + 10
    blob[start:start + 16] = bytes(16)  # damage the stored image bytes: the CRC check fails
    tiny_zip.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="corrupt or truncated"):
        data.prepare_tiny_imagenet(tiny_zip.parent, download_ok=False, md5=md5(tiny_zip))
    assert leftovers(tiny_zip.parent) == []


def test_not_a_zip(tmp_path: Path) -> None:
    archive = tmp_path / "tiny-imagenet-200.zip"
    archive.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="not a readable zip archive"):
        data.prepare_tiny_imagenet(tmp_path, download_ok=False, md5=md5(archive))


@pytest.mark.parametrize(("member", "problem"), [
    ("../evil.txt", "escapes the target directory"),
    ("tiny-imagenet-200/val/../../../evil.txt", "escapes the target directory"),
    ("/tmp/densebench-evil.txt", "is an absolute path"),
])
def test_hostile_member_names(tmp_path: Path, member: str, problem: str) -> None:
    archive = make_tiny_zip(tmp_path / "t.zip", extra={member: b"pwned"})
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    target = data_dir / "tiny-imagenet-200.zip"
    archive.rename(target)
    with pytest.raises(DataError, match=f"refusing archive .*{problem}"):
        data.prepare_tiny_imagenet(data_dir, download_ok=False, md5=md5(target))
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/densebench-evil.txt").exists()
    assert leftovers(data_dir) == []


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = make_tiny_zip(tmp_path / "tiny-imagenet-200.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        link = zipfile.ZipInfo("tiny-imagenet-200/val/images/passwd")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DataError, match="is a symbolic link"):
        data.prepare_tiny_imagenet(tmp_path, download_ok=False, md5=md5(archive))
    assert leftovers(tmp_path) == []


def test_missing_and_download_off(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="downloading is off"):
        data.prepare_tiny_imagenet(tmp_path, download_ok=False)


def test_auto_falls_back_to_synthetic_offline(tmp_path: Path) -> None:
    loaded = data.load("auto", tmp_path, 4, 32, offline=True)
    assert loaded.info.source == "synthetic"
    assert "offline" in loaded.info.fallback_reason
    assert "fell back from 'auto'" in loaded.info.describe()


def test_synthetic_is_deterministic() -> None:
    a = data.synthetic(3, 32, seed=5)
    b = data.synthetic(3, 32, seed=5)
    c = data.synthetic(3, 32, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (3, 3, 32, 32)


def _folder(root: Path, classes: list[str], per_class: int = 2) -> Path:
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"img{i}.jpg").write_bytes(jpeg_bytes(k * 10 + i, 40))
    return root


def test_folder_with_synset_names_has_labels(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", list(TINY_WNIDS))
    loaded = data.load(str(root), tmp_path, 4, 32)
    assert loaded.info.label_space == "imagenet-1k"
    assert loaded.labels is not None and len(loaded.labels) == 4


def test_folder_with_other_names_has_no_labels(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", ["cats", "dogs"])
    loaded = data.load(str(root), tmp_path, 3, 32)
    assert loaded.labels is None and loaded.info.images_available == 4


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "imgs" / "cats").mkdir(parents=True)
    (tmp_path / "imgs" / "cats" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="holds no images in its 1 class folder"):
        data.load(str(tmp_path / "imgs"), tmp_path, 3, 32)


def test_folder_with_a_non_image(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", ["cats"], per_class=1)
    (root / "cats" / "broken.jpg").write_text("this is not a JPEG")
    with pytest.raises(DataError, match=r"broken\.jpg is not a readable image"):
        data.load(str(root), tmp_path, 2, 32)


def test_batch_cycles_small_sets() -> None:
    loaded = data.load("synthetic", Path("."), 3, 32)
    batch = loaded.batch(7)
    assert batch.shape[0] == 7
    assert torch.equal(batch[3], loaded.images[0])
